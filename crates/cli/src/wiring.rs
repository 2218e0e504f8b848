//! Where mode turns into endpoints and credentials, once: the providers and probes built
//! here cannot tell a mock run from a live one. Also the guards that run before anything is
//! created (credentials, gap-document markers, budget) and the reporting after.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cloudtest_aws::{CloudFormationProvider, IdentityCheck, StackPlan};
use cloudtest_azure::{ArmProvider, CredentialChoice, CredentialPlan, DeploymentPlan};
use cloudtest_core::skip::{self, Credentials, Environment, ProcessEnvironment};
use cloudtest_core::{
    Backoff, LifecyclePlan, Provider, RequirementId, RequirementResult, RequirementStatus, RunMode,
    RunResults, ServerProbe,
};
use cloudtest_mock::{EmulatedServers, MockCloud, MockOptions, ServerDeployment};
use cloudtest_report::ledger::{record_run, Ledger};
use cloudtest_report::{
    cost, cross_cloud, gap_doc, gap_region, settings, PriceTable, ReportSettings, RUN_URL_ENV,
};
use cloudtest_velociraptor::{ProbeSettings, VelociraptorProbe};

use crate::args::ProviderArg;
use crate::connect;
use crate::error::{usage, CliError};
use crate::plan::{MockPlan, RunPlan};

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

fn ledger_path(plan: &RunPlan) -> Option<PathBuf> {
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

/// This machine's public address as a /32, for the template's AllowedCidr.
pub async fn discover_runner_cidr() -> Result<String> {
    let hint = "set --allowed-cidr or [aws]/[azure] allowed_cidr in cloudtest.toml";
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| {
            usage(format!(
                "cannot build an HTTP client to discover this machine's address ({e}); {hint}"
            ))
        })?;
    let text = client
        .get("https://checkip.amazonaws.com/")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| {
            usage(format!(
                "could not discover this machine's public address ({e}); {hint}"
            ))
        })?
        .text()
        .await
        .map_err(|e| {
            usage(format!(
                "could not read this machine's public address ({e}); {hint}"
            ))
        })?;
    let ip: std::net::Ipv4Addr = text.trim().parse().map_err(|_| {
        usage(format!(
            "checkip answered `{}`, not an IPv4 address; {hint}",
            text.trim()
        ))
    })?;
    Ok(format!("{ip}/32"))
}

pub async fn start_mock(m: &MockPlan) -> std::io::Result<MockCloud> {
    MockCloud::start(MockOptions {
        scenario: m.scenario,
        latency: m.latency,
        faults: m.faults.clone(),
        timeout_delay: None,
        token_lifetime: m.token_lifetime,
    })
    .await
}

/// Polling in mock mode tracks the emulators' speed; live mode polls like a person would.
/// The mock cap is a tenth of the emulated latency: a wait ends at most ~10% late, and a run
/// of many lifecycles is not spent answering polls.
fn poll_backoff(plan: &RunPlan) -> Backoff {
    match &plan.mock {
        None => Backoff::CLOUD,
        Some(m) => mock_backoff(m.latency),
    }
}

fn mock_backoff(latency: Duration) -> Backoff {
    Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(50).max(latency / 10),
    )
}

/// One lifecycle's run id: the run's own, plus the region when a provider runs in several
/// (Azure resource-group names are global to a subscription; tags must not overlap).
fn lifecycle_run_id(plan: &RunPlan, regions: usize, region: &str) -> String {
    if regions > 1 {
        format!("{}-{region}", plan.run_id)
    } else {
        plan.run_id.clone()
    }
}

pub async fn build_providers(
    plan: &RunPlan,
    guards: &Guards,
    mock: Option<&MockCloud>,
) -> Result<Vec<Box<dyn Provider>>> {
    let mut out: Vec<Box<dyn Provider>> = Vec::new();
    // Lifecycle number, for per-lifecycle mock credentials (see RunPlan::lifecycle_user).
    let mut index = 0usize;
    let allowed_cidr = plan
        .allowed_cidr
        .clone()
        .unwrap_or_else(|| "127.0.0.1/32".into());
    if let (Some(aws), true) = (&plan.aws, guards.runnable.contains(&ProviderArg::Aws)) {
        // The embedded emulators answer in milliseconds; an external one (moto) can take
        // seconds for a CreateStack, and a retried CreateStack there creates resources twice.
        let mut parameters = aws.parameters.clone();
        if let Some(m) = mock {
            parameters
                .entry("FrontendPort".into())
                .or_insert_with(|| m.velociraptor.frontend_port().to_string());
            parameters
                .entry("GuiPort".into())
                .or_insert_with(|| m.velociraptor.gui_port().to_string());
        }
        for region in &aws.regions {
            let admin_user = plan.lifecycle_user(index);
            index += 1;
            let sdk = connect::aws_sdk(region, aws.endpoint.clone(), mock).await;
            let admin_password = plan.lifecycle_password();
            let run_id = lifecycle_run_id(plan, aws.regions.len(), region);
            let stack_plan = StackPlan {
                common: LifecyclePlan {
                    run_id: run_id.clone(),
                    region: region.clone(),
                    template_path: aws.template_path.clone(),
                    parameters: parameters.clone(),
                    admin_user: admin_user.clone(),
                    admin_password: admin_password.clone(),
                    velociraptor_version: plan.velociraptor_version.clone(),
                    velociraptor_sha256: plan.velociraptor_sha256.clone(),
                    allowed_cidr: allowed_cidr.clone(),
                    use_spot: aws.use_spot,
                    expires_at: plan.expires_at,
                    poll: poll_backoff(plan),
                },
                template_body: aws.template_body.clone(),
                keep_on_failure: plan.keep_on_failure,
                cloudformation_role_arn: aws.cloudformation_role_arn.clone(),
                permissions_boundary_arn: aws.permissions_boundary_arn.clone(),
            };
            let mut provider = CloudFormationProvider::new(&sdk, stack_plan)
                .with_keep_until_expiry(plan.keep_on_failure);
            if let Some(endpoint) = &aws.endpoint {
                // An external endpoint (moto) answers GetConsoleOutput with canned text, not
                // the console of an instance that booted the server.
                provider = provider.with_identity_check(IdentityCheck::NotVerifiable(format!(
                    "{endpoint} does not serve the instances' real console output"
                )));
            }
            if let Some(source) = guards.sources.get(&ProviderArg::Aws) {
                provider = provider.with_credential_source(source.clone());
            }
            if let (Some(m), Some(mp)) = (mock, &plan.mock) {
                if mp.probe_via_mock {
                    provider = provider.with_output_overrides(mock_server_outputs(m));
                    // The external emulator boots no server: the embedded Velociraptor stands in
                    // for the one this stack would boot, with this lifecycle's admin login.
                    m.velociraptor.deploy(ServerDeployment {
                        deployment: format!("probe-via-mock:{run_id}"),
                        admin_user: admin_user.clone(),
                        admin_password: admin_password.expose().to_string(),
                        version: plan.velociraptor_version.clone(),
                        expected_clients: 1,
                    });
                }
            }
            out.push(Box::new(provider));
        }
    }
    if let (Some(az), true) = (&plan.azure, guards.runnable.contains(&ProviderArg::Azure)) {
        let mut parameters = az.parameters.clone();
        if let Some(m) = mock {
            parameters
                .entry("frontendPort".into())
                .or_insert_with(|| m.velociraptor.frontend_port().to_string());
            parameters
                .entry("guiPort".into())
                .or_insert_with(|| m.velociraptor.gui_port().to_string());
        }
        let connection = connect::plan_arm_connection(az, guards, mock)?;
        for location in &az.locations {
            let admin_user = plan.lifecycle_user(index);
            index += 1;
            let conn = connection.clone();
            let deployment_plan = DeploymentPlan {
                common: LifecyclePlan {
                    run_id: lifecycle_run_id(plan, az.locations.len(), location),
                    region: location.clone(),
                    template_path: az.template_path.clone(),
                    parameters: parameters.clone(),
                    admin_user: admin_user.clone(),
                    admin_password: plan.lifecycle_password(),
                    velociraptor_version: plan.velociraptor_version.clone(),
                    velociraptor_sha256: plan.velociraptor_sha256.clone(),
                    allowed_cidr: allowed_cidr.clone(),
                    use_spot: az.use_spot,
                    expires_at: plan.expires_at,
                    poll: poll_backoff(plan),
                },
                template: az.template.clone(),
            };
            let provider = ArmProvider::new(conn, deployment_plan)
                .map_err(|e| usage(format!("Azure provider for {location}: {e}")))?
                .with_keep_until_expiry(plan.keep_on_failure);
            out.push(Box::new(provider));
        }
    }
    Ok(out)
}

/// The outputs a real deployment would publish, pointing at the embedded Velociraptor
/// emulator (for `--probe-via-mock` runs against an external cloud emulator).
fn mock_server_outputs(m: &MockCloud) -> BTreeMap<String, String> {
    let vr = &m.velociraptor;
    let mut o = BTreeMap::new();
    o.insert("ServerAddress".into(), "127.0.0.1".into());
    o.insert(
        "FrontendUrl".into(),
        format!("https://127.0.0.1:{}/", vr.frontend_port()),
    );
    o.insert(
        "GuiUrl".into(),
        format!("https://127.0.0.1:{}/", vr.gui_port()),
    );
    o.insert("CaCertificate".into(), vr.ca_pem());
    o.insert("PinnedServerName".into(), "VelociraptorServer".into());
    o
}

pub fn build_probe(plan: &RunPlan, mock: Option<&MockCloud>) -> Arc<dyn ServerProbe> {
    let settings = match (&plan.mock, mock) {
        (Some(m), Some(_)) => ProbeSettings {
            poll: mock_backoff(m.latency),
            request_timeout: Duration::from_secs(1),
            ..ProbeSettings::default()
        },
        _ => ProbeSettings::default(),
    };
    Arc::new(VelociraptorProbe::new(settings))
}

pub fn cross_cloud(requirements: &[RequirementResult]) -> Vec<RequirementResult> {
    cross_cloud::evaluate_run(requirements)
}

/// The embedded price table, or `[budget] price_file`, with `[budget] prices` on top.
pub fn price_table(config: &cloudtest_core::config::Config) -> Result<PriceTable> {
    let base = match &config.budget.price_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("[budget] price_file {}: {e}", path.display())))?;
            PriceTable::from_json(&text, &path.display().to_string())
                .map_err(|e| usage(e.to_string()))?
        }
        None => PriceTable::embedded(),
    };
    Ok(base.with_overrides(&config.budget.prices))
}

/// Runs are priced from the resources they reported: live runs for what they cost, mock
/// runs (which cost nothing) for what the same resources would have cost live.
pub fn price(plan: &RunPlan, results: &mut RunResults) -> Result<()> {
    cost::apply_costs(results, &price_table(&plan.config)?);
    Ok(())
}

/// results.json, junit.xml, report.md, report.html; the ledger (live); the gap document.
pub fn write_outputs(plan: &RunPlan, results: &RunResults) -> Result<()> {
    let table = price_table(&plan.config)?;
    let mut report_settings = ReportSettings {
        run_url: std::env::var(RUN_URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty()),
        ..Default::default()
    }
    .with_prices(&table);
    if plan.mode == RunMode::Live {
        if let Some(path) = ledger_path(plan) {
            let before = Ledger::load(&path).map_err(|e| anyhow::anyhow!(e))?;
            let now = chrono::Utc::now();
            record_run(&path, results, now)
                .with_context(|| format!("recording costs in {}", path.display()))?;
            let after = Ledger::load(&path).map_err(|e| anyhow::anyhow!(e))?;
            let providers: Vec<&str> = results
                .requirements
                .iter()
                .filter(|r| {
                    r.id != RequirementId::Cloud03 && r.status != RequirementStatus::Skipped
                })
                .map(|r| r.provider.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            report_settings.spend = settings::spend_summary(
                &after,
                &before.history,
                &providers,
                plan.monthly_budget_usd,
                now,
            );
        }
    }
    cloudtest_report::write_all(&plan.out, results, &report_settings)
        .with_context(|| format!("writing reports into {}", plan.out.display()))?;
    if let Some(path) = &plan.gap_doc {
        gap_doc::rewrite(path, |region| {
            gap_region::merge(region, results, &report_settings)
        })
        .with_context(|| format!("writing results into the gap document {}", path.display()))?;
    }
    Ok(())
}
