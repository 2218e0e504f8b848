//! The guards that run before anything is created: credentials (skip or refuse), gap-document
//! markers, the monthly budget.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;
use cloudtest_azure::{CredentialChoice, CredentialPlan};
use cloudtest_core::skip::{self, Credentials, Environment, ProcessEnvironment};
use cloudtest_core::{RequirementId, RequirementResult, RequirementStatus, RunMode};
use cloudtest_report::ledger::Ledger;
use cloudtest_report::{cost, gap_doc};

use crate::args::ProviderArg;
use crate::error::{usage, CliError};
use crate::plan::RunPlan;

use super::outputs::price_table;

pub const LEDGER_ENV: &str = "CLOUDTEST_LEDGER";

/// What the skip guards decided.
pub struct Guards {
    pub runnable: BTreeSet<ProviderArg>,
    /// One `skipped` result per region of each provider without credentials.
    pub skipped: Vec<RequirementResult>,
    /// Credential source per runnable provider, for error messages.
    pub sources: BTreeMap<ProviderArg, String>,
    /// The Azure credential the run uses (when Azure runs), with why it was chosen.
    pub azure_credential: Option<CredentialPlan>,
}

impl Guards {
    /// "azure credential: SOURCE (WHY)", for the plan and the start of a run.
    pub fn azure_credential_line(&self, plan: &RunPlan) -> Option<String> {
        let c = self.azure_credential.as_ref()?;
        let origin = plan
            .azure
            .as_ref()
            .map_or("default", |a| a.credential_origin.as_str());
        Some(format!(
            "azure credential: {} ({origin} = {}; {})",
            c.source, c.choice, c.why
        ))
    }
}

/// Live mode with no provider left to run (none has credentials): a usage error that says
/// what was skipped and why. `what` says what did not happen ("nothing was tested").
pub fn require_runnable(plan: &RunPlan, guards: &Guards, what: &str) -> Result<()> {
    if plan.mode == RunMode::Live && guards.runnable.is_empty() {
        return Err(usage(format!(
            "{what}: no provider has credentials ({})",
            guards
                .skipped
                .iter()
                .map(|s| s.reason.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(())
}

/// The process environment, with the config file's Azure subscription standing in for
/// `AZURE_SUBSCRIPTION_ID` when the variable is absent.
struct PlanEnvironment<'a> {
    plan: &'a RunPlan,
}

impl Environment for PlanEnvironment<'_> {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnvironment.var(name).or_else(|| {
            (name == "AZURE_SUBSCRIPTION_ID")
                .then(|| {
                    self.plan
                        .azure
                        .as_ref()
                        .and_then(|a| a.subscription_id.clone())
                })
                .flatten()
        })
    }
    fn file_exists(&self, path: &std::path::Path) -> bool {
        ProcessEnvironment.file_exists(path)
    }
    fn home(&self) -> Option<PathBuf> {
        ProcessEnvironment.home()
    }
}

/// Live runs: look for credentials without calling any cloud. A provider the user named is
/// an error when they are missing; an unnamed one is skipped with the reason.
pub fn skip_guards(plan: &RunPlan) -> Result<Guards> {
    let mut guards = Guards {
        runnable: BTreeSet::new(),
        skipped: Vec::new(),
        sources: BTreeMap::new(),
        azure_credential: None,
    };
    let env = PlanEnvironment { plan };
    let candidates: Vec<(ProviderArg, Vec<String>)> = [
        plan.aws
            .as_ref()
            .map(|a| (ProviderArg::Aws, a.regions.clone())),
        plan.azure
            .as_ref()
            .map(|a| (ProviderArg::Azure, a.locations.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mock = plan.mode == RunMode::Mock;
    for (provider, regions) in candidates {
        // Azure: the chosen credential source, resolved against this environment.
        let azure_credential = match (provider, &plan.azure) {
            (ProviderArg::Azure, Some(az)) => Some(
                CredentialPlan::resolve(az.credential, &env, mock)
                    .map_err(|e| format!("{}: {e}", az.credential_origin)),
            ),
            _ => None,
        };
        if mock {
            let source = match azure_credential {
                Some(Ok(c)) => {
                    let source = c.source.clone();
                    guards.azure_credential = Some(c);
                    source
                }
                Some(Err(why)) => return Err(usage(why)),
                None => "mock-mode test credentials".into(),
            };
            guards.runnable.insert(provider);
            guards.sources.insert(provider, source);
            continue;
        }
        let (verdict, name, id) = match provider {
            ProviderArg::Aws => (skip::aws_credentials(&env), "AWS", RequirementId::Cloud01),
            ProviderArg::Azure => (
                azure_verdict(&env, azure_credential, &mut guards),
                "Azure",
                RequirementId::Cloud02,
            ),
        };
        match verdict {
            Credentials::Found { source } => {
                guards.runnable.insert(provider);
                guards.sources.insert(provider, source);
            }
            Credentials::Missing { looked_for } => {
                if plan.named.contains(&provider) {
                    return Err(usage(format!(
                        "--provider {} was asked for, but no {name} credentials were found (looked for {looked_for})",
                        name.to_lowercase()
                    )));
                }
                for region in regions {
                    guards.skipped.push(RequirementResult::not_run(
                        id,
                        region,
                        RequirementStatus::Skipped,
                        format!("skipped: no {name} credentials (looked for {looked_for})"),
                    ));
                }
            }
        }
    }
    Ok(guards)
}

/// Azure's skip-guard verdict: `auto` looks for any source of azure_identity's chain, as
/// before; an explicit choice needs exactly its own variables.
fn azure_verdict(
    env: &dyn Environment,
    credential: Option<std::result::Result<CredentialPlan, String>>,
    guards: &mut Guards,
) -> Credentials {
    let Some(credential) = credential else {
        return skip::azure_credentials(env);
    };
    let chain = skip::azure_credentials(env);
    match credential {
        Ok(c) if c.choice == CredentialChoice::Auto => {
            if chain.is_found() {
                guards.azure_credential = Some(c);
            }
            chain
        }
        Ok(c) => match env.var("AZURE_SUBSCRIPTION_ID") {
            Some(sub) => {
                let source = format!("{}, subscription {sub}", c.source);
                guards.azure_credential = Some(c);
                Credentials::Found { source }
            }
            None => Credentials::Missing {
                looked_for: "AZURE_SUBSCRIPTION_ID".into(),
            },
        },
        Err(why) => Credentials::Missing { looked_for: why },
    }
}

/// Broken markers are found before anything is deployed, and the file is left untouched.
pub fn check_gap_doc(plan: &RunPlan) -> Result<()> {
    if let Some(path) = &plan.gap_doc {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--gap-doc {}: {e}", path.display())))?;
        gap_doc::splice(&text, "")
            .map_err(|e| usage(format!("gap document {}: {e}", path.display())))?;
    }
    Ok(())
}

pub(super) fn ledger_path(plan: &RunPlan) -> Option<PathBuf> {
    std::env::var_os(LEDGER_ENV)
        .map(PathBuf::from)
        .or_else(|| plan.config.budget.ledger.clone())
}

/// Live runs: month-to-date spend plus this run's estimate must fit the monthly budget.
pub fn check_budget(plan: &RunPlan, guards: &Guards) -> Result<()> {
    let table = price_table(&plan.config)?;
    let ledger = match ledger_path(plan) {
        Some(path) => Ledger::load(&path).map_err(|e| usage(e.to_string()))?,
        None => {
            eprintln!(
                "warning: no cost ledger configured ([budget] ledger or {LEDGER_ENV}): no spend history, the budget guard counts this run only"
            );
            Ledger {
                path: PathBuf::new(),
                entries: Vec::new(),
                history: cloudtest_report::SpendHistory::Missing {
                    path: PathBuf::from("(none configured)"),
                },
            }
        }
    };
    let now = chrono::Utc::now();
    for provider in &guards.runnable {
        let (name, regions, spot) = match provider {
            ProviderArg::Aws => match &plan.aws {
                Some(a) => ("aws", a.regions.len(), a.use_spot),
                None => continue,
            },
            ProviderArg::Azure => match &plan.azure {
                Some(a) => ("azure", a.locations.len(), a.use_spot),
                None => continue,
            },
        };
        let per_region = cost::estimate_resources(
            name,
            &cost::planned_resources(name, spot),
            cost::PLANNED_LIFETIME,
            &table,
        )
        .usd;
        let estimate = per_region * regions as f64;
        match ledger.check_budget(name, estimate, plan.monthly_budget_usd, now) {
            Ok(check) => {
                if let Some(notice) = check.notice {
                    eprintln!("warning: {notice}");
                }
            }
            Err(refusal) => return Err(CliError::Budget(refusal.to_string()).into()),
        }
    }
    Ok(())
}
