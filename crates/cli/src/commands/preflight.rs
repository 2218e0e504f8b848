//! `cloudtest preflight`: read-only checks, per provider and region, that a `run` with the
//! same arguments would not fail on something knowable for free. Also run by `run` before
//! anything is created (skipped with `--no-preflight`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cloudtest_aws::{AwsPreflight, AwsPreflightPlan};
use cloudtest_azure::{ArmPreflight, ArmPreflightPlan};
use cloudtest_core::preflight::{self, Check, CheckStatus, BUDGET_CHECK};
use cloudtest_core::{ExitCode, RunMode};
use cloudtest_mock::MockCloud;

use crate::args::{PreflightArgs, ProviderArg};
use crate::connect;
use crate::error::{usage, CliError};
use crate::plan::RunPlan;
use crate::redact;
use crate::wiring::{self, Guards};

/// What one preflight found, and what it cost.
pub struct Outcome {
    pub checks: Vec<Check>,
    /// HTTP requests per provider (retries included).
    pub calls: BTreeMap<&'static str, u32>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn exit_code(&self) -> ExitCode {
        preflight::verdict(&self.checks)
    }
}

pub async fn preflight(args: PreflightArgs) -> Result<ExitCode> {
    let plan = RunPlan::build(&args.run)?;
    let guards = wiring::skip_guards(&plan)?;
    wiring::require_runnable(&plan, &guards, "nothing to check")?;
    let mock = wiring::start_mock(plan.mock.as_ref()).await?;
    let outcome = run_checks(&plan, &guards, mock.as_ref()).await?;
    print(&outcome);
    if args.json {
        write_json(&plan.out, &outcome.checks)?;
    }
    if let Some(m) = mock {
        m.stop().await;
    }
    Ok(outcome.exit_code())
}

/// Every check for every provider and region the run would start, then the budget.
pub async fn run_checks(
    plan: &RunPlan,
    guards: &Guards,
    mock: Option<&MockCloud>,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut checks = Vec::new();
    let mut calls = BTreeMap::new();
    if let (Some(aws), true) = (&plan.aws, guards.runnable.contains(&ProviderArg::Aws)) {
        let source = guards.sources.get(&ProviderArg::Aws);
        let per_region = aws.regions.iter().map(|region| async move {
            let sdk = connect::aws_sdk(region, aws.endpoint.clone(), mock).await;
            let mut pf = AwsPreflight::new(&sdk, region);
            if let Some(source) = source {
                pf = pf.with_credential_source(source.clone());
            }
            let found = pf
                .run(&AwsPreflightPlan {
                    region: region.clone(),
                    run_id: plan.run_id.clone(),
                    template_body: aws.template_body.clone(),
                    parameters: aws.parameters.clone(),
                    use_spot: aws.use_spot,
                    service_role_arn: aws.cloudformation_role_arn.clone(),
                    permissions_boundary_arn: aws.permissions_boundary_arn.clone(),
                })
                .await;
            (found, pf.api_calls())
        });
        let mut total = 0;
        for (found, calls) in in_region_order(plan.max_parallel, per_region).await {
            checks.extend(found);
            total += calls;
        }
        calls.insert("aws", total);
    }
    if let (Some(az), true) = (&plan.azure, guards.runnable.contains(&ProviderArg::Azure)) {
        let connection = connect::plan_arm_connection(az, guards, mock)?;
        let pf = ArmPreflight::new(connection).map_err(|e| usage(e.to_string()))?;
        let pf = &pf;
        let per_location = az.locations.iter().map(|location| async move {
            pf.run(&ArmPreflightPlan {
                location: location.clone(),
                template: az.template.clone(),
                parameters: az.parameters.clone(),
                use_spot: az.use_spot,
            })
            .await
        });
        checks.extend(
            in_region_order(plan.max_parallel, per_location)
                .await
                .into_iter()
                .flatten(),
        );
        calls.insert("azure", pf.api_calls());
    }
    checks.push(budget_line(plan, guards)?);
    Ok(Outcome {
        checks,
        calls,
        elapsed: started.elapsed(),
    })
}

/// Runs one future per region, as many at once as the run would start lifecycles
/// (`--max-parallel`: the same load on the same APIs), and gives their outputs in the
/// regions' order, so the printed checks read the same however the calls interleave.
async fn in_region_order<F: std::future::Future>(
    at_once: usize,
    per_region: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    use futures::StreamExt;
    futures::stream::iter(per_region)
        .buffered(at_once.max(1))
        .collect()
        .await
}

/// The budget guard as a line: live runs only (mock runs cost nothing). A refusal is a
/// `FAIL` that keeps its own exit code (4) unless another check fails too.
fn budget_line(plan: &RunPlan, guards: &Guards) -> Result<Check> {
    let providers: Vec<&str> = guards
        .runnable
        .iter()
        .map(|p| match p {
            ProviderArg::Aws => "aws",
            ProviderArg::Azure => "azure",
        })
        .collect();
    let who = providers.join(",");
    if plan.mode == RunMode::Mock {
        return Ok(Check::ok(
            &who,
            "-",
            BUDGET_CHECK,
            "mock mode costs nothing",
        ));
    }
    match wiring::check_budget(plan, guards) {
        Ok(()) => Ok(Check::ok(
            &who,
            "-",
            BUDGET_CHECK,
            format!(
                "this run's estimate fits the monthly budget of ${:.2}",
                plan.monthly_budget_usd
            ),
        )),
        Err(e) => match e.downcast_ref::<CliError>() {
            Some(CliError::Budget(msg)) => Ok(Check::fail(
                &who,
                "-",
                BUDGET_CHECK,
                msg.clone(),
                "raise [budget] monthly_usd, or wait for the next month",
            )),
            _ => Err(e),
        },
    }
}

/// One line per check on stdout; a failure's fix on the line below it.
pub fn print(outcome: &Outcome) {
    println!("PREFLIGHT (read-only; nothing is created)");
    for c in &outcome.checks {
        println!(
            "{:<4}  {:<9} {:<14} {:<12} {}",
            c.status.label(),
            c.provider,
            c.region,
            c.check,
            redact::redact(&c.detail)
        );
        if c.status == CheckStatus::Fail && !c.fix.is_empty() {
            println!("{:<4}  fix: {}", "", redact::redact(&c.fix));
        }
    }
    let failed = outcome
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .count();
    let warned = outcome
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Warn)
        .count();
    let calls: Vec<String> = outcome
        .calls
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    println!(
        "preflight: {} checks, {failed} failed, {warned} warnings in {:.1}s (API calls: {})",
        outcome.checks.len(),
        outcome.elapsed.as_secs_f64(),
        if calls.is_empty() {
            "none".to_string()
        } else {
            calls.join(", ")
        }
    );
}

/// `preflight.json` in the output directory.
pub fn write_json(out: &Path, checks: &[Check]) -> Result<()> {
    let text = preflight::to_json(checks).context("serialising preflight.json")?;
    let path = out.join("preflight.json");
    std::fs::write(&path, redact::redact(&text) + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each region's work takes longer the earlier it stands, so the fastest finishes first.
    async fn finish_in_reverse(at_once: usize, regions: u64) -> (Vec<u64>, Duration) {
        let started = tokio::time::Instant::now();
        let per_region = (0..regions).map(|i| async move {
            tokio::time::sleep(Duration::from_secs(regions - i)).await;
            i
        });
        let out = in_region_order(at_once, per_region).await;
        (out, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn regions_run_together_and_report_in_their_own_order() {
        let (out, took) = finish_in_reverse(8, 4).await;
        assert_eq!(out, [0, 1, 2, 3]);
        assert_eq!(
            took,
            Duration::from_secs(4),
            "all four at once: the longest wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_parallel_regions_run_at_once() {
        // One at a time: the waits add up (4 + 3 + 2 + 1 s).
        let (out, took) = finish_in_reverse(1, 4).await;
        assert_eq!(out, [0, 1, 2, 3]);
        assert_eq!(took, Duration::from_secs(10));
        // Zero is read as one, never as "no progress".
        let (_, took) = finish_in_reverse(0, 2).await;
        assert_eq!(took, Duration::from_secs(3));
    }
}
