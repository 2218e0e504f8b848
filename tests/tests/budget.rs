//! The budget sees both clouds: two live-shaped runs, priced from the resources they
//! reported, go through the ledger the way a live run records them; the month-to-date
//! totals per provider are their sums, and a live run that would push a provider past its
//! budget is refused with exit 4 on AWS and on Azure, before any cloud call.

use std::path::Path;

use chrono::{Duration, Utc};
use cloudtest_core::RunResults;
use cloudtest_e2e::command;
use cloudtest_report::cost::{apply_costs, PriceTable};
use cloudtest_report::ledger::{record_run, Ledger};
use cloudtest_report::sample;

/// The sample live run (CLOUD-01 us-east-1 and CLOUD-02 eastus), `n` days later, priced.
fn priced_live_run(n: i64) -> RunResults {
    let mut run = sample::two_provider_run();
    run.run_id = format!("live-{n}");
    run.started_at += Duration::days(n);
    apply_costs(&mut run, &PriceTable::embedded());
    run
}

fn cost_of(run: &RunResults, provider: &str) -> f64 {
    run.requirements
        .iter()
        .filter(|r| r.provider == provider)
        .map(|r| r.cost.estimated_usd)
        .sum()
}

/// `cloudtest run --mode live` for one provider with fake credentials, every endpoint on a
/// closed loopback port (so a guard that failed to refuse still reaches no cloud).
fn live_run(provider: &str, config: &Path, ledger: &Path, dir: &Path) -> std::process::Output {
    let token = dir.join("federated-token");
    std::fs::write(&token, "not-a-real-token").expect("token file");
    let out = dir.join(format!("out-{provider}"));
    let args = [
        "run",
        "--mode",
        "live",
        "--provider",
        provider,
        "--config",
        &config.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
        "--no-gap-doc",
        "--no-preflight",
        "--allowed-cidr",
        "198.51.100.7/32",
        "--aws-endpoint",
        "http://127.0.0.1:9",
        "--azure-endpoint",
        "http://127.0.0.1:9",
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command(&args)
        .env("CLOUDTEST_LEDGER", ledger)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEFAKE")
        .env("AWS_SECRET_ACCESS_KEY", "fake-secret-for-the-budget-test")
        .env(
            "AZURE_SUBSCRIPTION_ID",
            "00000000-0000-0000-0000-000000000000",
        )
        .env("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001")
        .env("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002")
        .env("AZURE_FEDERATED_TOKEN_FILE", &token)
        .output()
        .expect("spawn cloudtest")
}

#[test]
fn two_live_runs_are_totalled_per_provider_and_the_next_is_refused_on_both_clouds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger_path = dir.path().join("ledger.jsonl");
    let now = Utc::now();
    let runs = [priced_live_run(0), priced_live_run(1)];
    for run in &runs {
        assert_eq!(record_run(&ledger_path, run, now).expect("recorded"), 2);
    }
    let ledger = Ledger::load(&ledger_path).expect("ledger");
    let mut totals = Vec::new();
    for provider in ["aws", "azure"] {
        let expected: f64 = runs.iter().map(|r| cost_of(r, provider)).sum();
        assert!(
            expected > 0.0,
            "{provider}: the sample resources are priced"
        );
        let month_to_date = ledger.month_to_date(provider, now);
        assert!(
            (month_to_date - expected).abs() < 1e-9,
            "{provider}: ledger says {month_to_date}, the two runs cost {expected}"
        );
        totals.push((provider, month_to_date));
    }
    // The providers are kept apart: neither total includes the other's spend.
    assert!((totals[0].1 - totals[1].1).abs() > 1e-6, "{totals:?}");

    for (provider, month_to_date) in totals {
        // A budget a tenth of a cent above what was spent: this run's estimate cannot fit.
        let config = dir.path().join(format!("{provider}.toml"));
        std::fs::write(
            &config,
            format!("[budget]\nmonthly_usd = {:.6}\n", month_to_date + 0.001),
        )
        .expect("config");
        let out = live_run(provider, &config, &ledger_path, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{provider}:\n{stderr}");
        let spent = format!("month-to-date spend ${month_to_date:.2}");
        assert!(
            stderr.contains(&format!("{provider}: ")) && stderr.contains(&spent),
            "{provider}: the refusal names the provider and `{spent}`:\n{stderr}"
        );
        assert!(!dir
            .path()
            .join(format!("out-{provider}/results.json"))
            .exists());
    }
}
