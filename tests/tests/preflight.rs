//! `cloudtest preflight` and the preflight `run` starts with, end to end in mock mode: every
//! check passes against healthy emulators, each preflight scenario makes `run` stop with
//! exit 5 having created nothing, `--no-preflight` skips it, and its calls are counted apart.

use cloudtest_e2e::{mock_leftovers, read_json, run_cloudtest, Run};
use serde_json::Value;

const PREFLIGHT_SCENARIOS: [(&str, &str); 5] = [
    ("no-permission", "permissions"),
    ("quota-exhausted", "quota"),
    ("provider-unregistered", "registration"),
    ("sku-restricted", "capacity"),
    ("token-expired", "identity"),
];

fn preflight(extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_string_lossy().into_owned();
    let mut args = vec!["preflight", "--no-gap-doc", "--out", out.as_str(), "--json"];
    args.extend(extra);
    let run = run_cloudtest(&args, &[]);
    Run {
        output: run.output,
        out_dir: dir,
    }
}

fn checks(run: &Run) -> Vec<Value> {
    read_json(&run.out().join("preflight.json"))["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn calls(run: &Run) -> serde_json::Map<String, Value> {
    read_json(&run.out().join("mock-calls.json"))
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn healthy_emulators_pass_every_check_on_both_clouds() {
    let run = preflight(&[]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let all = checks(&run);
    for provider in ["aws", "azure"] {
        assert!(
            all.iter().filter(|c| c["provider"] == provider).count() >= 5,
            "{provider}: {all:#?}"
        );
    }
    for c in &all {
        assert_eq!(c["status"], "ok", "{c}\n{}", run.transcript());
        for key in ["provider", "region", "check", "status", "detail", "fix"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }
    assert!(all.iter().any(|c| c["check"] == "budget"));
    assert!(run.stdout().contains("ok    aws"), "{}", run.transcript());
}

#[test]
fn each_preflight_scenario_fails_its_check_with_a_fix() {
    for (scenario, check) in PREFLIGHT_SCENARIOS {
        let run = preflight(&["--scenario", scenario]);
        assert_eq!(run.code(), 5, "{scenario}\n{}", run.transcript());
        let all = checks(&run);
        let failed: Vec<&Value> = all.iter().filter(|c| c["status"] == "fail").collect();
        assert!(
            failed
                .iter()
                .any(|c| c["check"] == check && !c["fix"].as_str().unwrap_or("").is_empty()),
            "{scenario}: no failed `{check}` with a fix in {all:#?}"
        );
        assert!(run.stdout().contains("FAIL"), "{}", run.transcript());
        assert!(run.stdout().contains("fix: "), "{}", run.transcript());
    }
}

#[test]
fn a_run_under_each_preflight_scenario_stops_with_exit_5_creating_nothing() {
    for (scenario, _) in PREFLIGHT_SCENARIOS {
        let run = run_cloudtest(&["run", "--scenario", scenario], &[]);
        assert_eq!(run.code(), 5, "{scenario}\n{}", run.transcript());
        assert!(
            mock_leftovers(&run.mock_state()).is_empty(),
            "{scenario}: {}",
            run.mock_state()
        );
        let served = calls(&run);
        for never in [
            "aws:CreateStack",
            "arm:Deployments_CreateOrUpdate",
            "arm:ResourceGroups_CreateOrUpdate",
        ] {
            assert!(
                !served.contains_key(never),
                "{scenario}: {never} in {served:?}"
            );
        }
        assert!(
            !run.out().join("results.json").exists(),
            "{scenario}: a stopped run writes no results"
        );
        assert!(
            run.stderr().contains("nothing was deployed"),
            "{}",
            run.transcript()
        );
        assert!(!checks(&run).is_empty(), "{scenario}: no preflight.json");
    }
}

#[test]
fn no_preflight_skips_the_checks_and_the_run_goes_ahead() {
    let run = run_cloudtest(
        &["run", "--scenario", "quota-exhausted", "--no-preflight"],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.transcript());
    assert!(!run.out().join("preflight.json").exists());
    assert!(!calls(&run).keys().any(|k| k.starts_with("preflight:")));
}

#[test]
fn a_healthy_run_counts_preflight_calls_apart_from_the_lifecycles() {
    let run = run_cloudtest(&["run"], &[]);
    assert_eq!(run.code(), 0, "{}", run.transcript());
    let served = calls(&run);
    assert!(
        served.contains_key("preflight:aws:GetCallerIdentity"),
        "{served:?}"
    );
    assert!(
        served.contains_key("preflight:arm:Usage_List"),
        "{served:?}"
    );
    assert!(served.contains_key("aws:CreateStack"), "{served:?}");
    assert!(!served.contains_key("aws:GetCallerIdentity"), "{served:?}");
    assert!(
        !served.contains_key("preflight:aws:CreateStack"),
        "{served:?}"
    );
    assert!(run.stdout().contains("PREFLIGHT"), "{}", run.transcript());
}
