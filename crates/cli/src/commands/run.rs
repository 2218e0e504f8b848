//! `cloudtest run`: plan → (mock cloud) → lifecycles → CLOUD-03 → costs → outputs → exit code.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use cloudtest_core::runner::{LifecycleOptions, LifecycleRunner};
use cloudtest_core::{ExitCode, RequirementId, RequirementStatus, RunMode, RunResults, Shutdown};

use cloudtest_report::human;

use crate::args::RunArgs;
use crate::commands::preflight;
use crate::display::Display;
use crate::plan::RunPlan;
use crate::{redact, signals, wiring};

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let plan = RunPlan::build(&args)?;
    if let Some(p) = &plan.admin_password {
        redact::register(p.expose());
    }

    // Before anything is created: credentials (live), budget (live), gap-document markers.
    let guards = wiring::skip_guards(&plan)?;
    wiring::require_runnable(&plan, &guards, "nothing was tested")?;
    wiring::check_gap_doc(&plan)?;
    if let Some(line) = guards.azure_credential_line(&plan) {
        println!("{line}");
    }
    let mut plan = plan;
    if plan.mode == RunMode::Live {
        // With the preflight, the budget is one of its lines (and a failed check wins).
        if args.no_preflight {
            wiring::check_budget(&plan, &guards)?;
        }
        if plan.allowed_cidr.is_none() {
            plan.allowed_cidr = Some(wiring::discover_runner_cidr().await?);
        }
    }
    let plan = plan;

    let mock = wiring::start_mock(plan.mock.as_ref()).await?;

    // Read-only checks before anything is created; a failure stops the run with exit 5.
    let mut preflight_calls = BTreeMap::new();
    if !args.no_preflight {
        // The faults asked for (and the `throttled` scenario's) are meant for the lifecycle.
        let hold = mock.as_ref().map(|m| m.faults.hold());
        let outcome = preflight::run_checks(&plan, &guards, mock.as_ref()).await;
        drop(hold);
        let outcome = outcome?;
        preflight::print(&outcome);
        preflight::write_json(&plan.out, &outcome.checks)?;
        if let Some(m) = &mock {
            preflight_calls = m.faults.calls();
        }
        let code = outcome.exit_code();
        if code != ExitCode::Success {
            eprintln!(
                "preflight failed: nothing was deployed (exit {}); fix the lines marked FAIL, or skip the checks with --no-preflight",
                code.code()
            );
            if let Some(m) = mock {
                m.write_state(&plan.out)
                    .with_context(|| format!("writing {}/mock-state.json", plan.out.display()))?;
                write_mock_calls(&m, &plan.out, &preflight_calls)
                    .with_context(|| format!("writing {}/mock-calls.json", plan.out.display()))?;
                m.stop().await;
            }
            return Ok(code);
        }
        println!();
    }

    let shutdown = Shutdown::new();
    signals::install(shutdown.clone()).context("installing signal handlers")?;
    let display = Display::new();
    let ticker = display.start_ticker();

    let providers = wiring::build_providers(&plan, &guards, mock.as_ref()).await?;
    let probe = wiring::build_probe(&plan, mock.as_ref());
    let runner = LifecycleRunner::new(
        LifecycleOptions {
            deadlines: plan.deadlines.clone(),
            keep_on_failure: plan.keep_on_failure,
        },
        display.clone(),
        probe,
        shutdown.clone(),
    );
    let mut requirements = runner.run_all(providers, plan.max_parallel).await;
    if let Some(t) = ticker {
        t.abort();
    }
    display.finish();

    if plan.mode == RunMode::Mock {
        for r in &mut requirements {
            r.facts.extra.insert(
                cloudtest_report::cross_cloud::EMULATED_ENDPOINTS_FACT.into(),
                serde_json::Value::Bool(true),
            );
        }
    }
    requirements.extend(guards.skipped.iter().cloned());
    requirements.sort_by(|a, b| a.id.cmp(&b.id).then(a.region.cmp(&b.region)));
    let cross = wiring::cross_cloud(&requirements);
    requirements.extend(cross);

    let duration_ms = (chrono::Utc::now() - plan.started_at)
        .num_milliseconds()
        .max(0) as u64;
    let mut results = RunResults {
        run_id: plan.run_id.clone(),
        mode: plan.mode,
        started_at: plan.started_at,
        duration_ms,
        interrupted_by: shutdown.reason(),
        requirements,
    };
    wiring::price(&plan, &mut results)?;

    if let Some(m) = &mock {
        m.write_state(&plan.out)
            .with_context(|| format!("writing {}/mock-state.json", plan.out.display()))?;
        write_mock_calls(m, &plan.out, &preflight_calls)
            .with_context(|| format!("writing {}/mock-calls.json", plan.out.display()))?;
    }
    crate::evidence::write(&plan.out, &mut results)?;
    wiring::write_outputs(&plan, &results)?;
    if let Some(m) = mock {
        m.stop().await;
    }

    print_summary(&results);
    Ok(results.exit_code())
}

/// The table a person reads at the end of a run (stdout; progress went to stderr).
pub fn print_summary(results: &RunResults) {
    println!();
    println!(
        "{:<9} {:<12} {:<22} {:<8} {:>9} {:>8}  REASON",
        "REQ", "PROVIDER", "REGION", "STATUS", "DURATION", "COST"
    );
    for r in &results.requirements {
        let ms: u64 = r.phases.iter().map(|p| p.duration_ms).sum();
        let status = match r.status {
            RequirementStatus::Passed => "passed",
            RequirementStatus::Failed => "failed",
            RequirementStatus::Skipped => "skipped",
            RequirementStatus::Error => "error",
        };
        let dur = if r.id == RequirementId::Cloud03 || r.phases.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}s", ms as f64 / 1000.0)
        };
        println!(
            "{:<9} {:<12} {:<22} {:<8} {:>9} {:>8}  {}",
            r.id.as_str(),
            r.provider,
            r.region,
            status,
            dur,
            format!("${:.2}", r.cost.estimated_usd),
            redact::redact(&r.reason)
        );
    }
    // Mock runs rent nothing; what the same resources would have cost live keeps the cost
    // accounting honest (and comparable across the two clouds).
    for r in &results.requirements {
        if let Some(usd) = r.cost.would_cost_usd {
            let lifetime = cloudtest_report::cost::resource_lifetime(r);
            let per_hour = if lifetime.is_zero() {
                String::new()
            } else {
                format!(
                    " (about {}/hour)",
                    human::usd(usd * 3600.0 / lifetime.as_secs_f64())
                )
            };
            println!(
                "would cost live: {} {} {} {} for its {:.1}s{per_hour}",
                r.id.as_str(),
                r.provider,
                r.region,
                human::usd(usd),
                lifetime.as_secs_f64()
            );
        }
    }
    let code = results.exit_code();
    println!(
        "\nrun {} ({} mode) finished in {:.1}s; exit code {}",
        results.run_id,
        results.mode.as_str(),
        results.duration_ms as f64 / 1000.0,
        code.code()
    );
    if let Some(sig) = results.interrupted_by {
        println!(
            "interrupted by {}: teardown and leak checks ran before exit",
            sig.signal_name()
        );
    }
    for r in &results.requirements {
        if let Some(dir) = &r.facts.evidence_dir {
            println!(
                "evidence for {} {}: {}/ in the output directory ({} file(s))",
                r.id.as_str(),
                r.region,
                dir,
                r.facts.evidence_files.len()
            );
        }
    }
    // What --keep-on-failure kept, and the command that removes it.
    for r in &results.requirements {
        if let Some(kept) = &r.facts.kept {
            println!("KEPT {} {}: {}", r.id.as_str(), r.region, kept.notice());
        }
    }
    let leaked: Vec<String> = results
        .requirements
        .iter()
        .flat_map(|r| {
            r.facts
                .remaining_resources
                .iter()
                .map(|x| format!("{} {}", x.kind, x.id))
        })
        .collect();
    if !leaked.is_empty() {
        println!(
            "RESOURCES REMAIN after teardown: {} (remove them with `cloudtest sweep --run-id {}`)",
            leaked.join(", "),
            results.run_id
        );
    }
}

/// `mock-calls.json`: requests each embedded emulator served, keyed `emulator:operation`
/// (the benchmark divides them by the lifecycle count). The preflight's requests are
/// counted apart, keyed `preflight:emulator:operation`.
fn write_mock_calls(
    mock: &cloudtest_mock::MockCloud,
    out: &std::path::Path,
    preflight: &BTreeMap<String, u32>,
) -> std::io::Result<()> {
    let mut calls: BTreeMap<String, u32> = BTreeMap::new();
    for (key, n) in mock.faults.calls() {
        let lifecycle = n.saturating_sub(preflight.get(&key).copied().unwrap_or(0));
        if lifecycle > 0 {
            calls.insert(key, lifecycle);
        }
    }
    for (key, n) in preflight {
        calls.insert(format!("preflight:{key}"), *n);
    }
    let text = serde_json::to_string_pretty(&calls).map_err(std::io::Error::other)?;
    std::fs::write(out.join("mock-calls.json"), text + "\n")?;
    // Which service role (`RoleARN`) each CreateStack and DeleteStack carried.
    let requests =
        serde_json::to_string_pretty(&mock.aws.stack_requests()).map_err(std::io::Error::other)?;
    std::fs::write(out.join("mock-stack-requests.json"), requests + "\n")
}
