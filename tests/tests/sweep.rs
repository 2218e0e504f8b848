//! `cloudtest sweep` in mock mode with planted leftovers: only tagged, expired resources are
//! deleted; untagged and unexpired ones survive; `--dry-run` deletes nothing; `--run-id`
//! deletes exactly one run's resources (and its per-region lifecycles'), expired or not,
//! except what a `--keep-on-failure` run kept.

use cloudtest_e2e::command;
use serde_json::Value;

struct Sweep {
    code: i32,
    stdout: String,
    state: Value,
}

fn sweep(extra: &[&str]) -> Sweep {
    let mut args = vec![
        "--plant",
        "tagged-expired",
        "--plant",
        "untagged",
        "--plant",
        "tagged-fresh",
    ];
    args.extend_from_slice(extra);
    sweep_with(&args)
}

fn sweep_with(extra: &[&str]) -> Sweep {
    let mut args = vec!["sweep", "--mode", "mock"];
    args.extend_from_slice(extra);
    let out = command(&args).output().expect("run cloudtest sweep");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let state_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mock state after sweep: "))
        .unwrap_or_else(|| {
            panic!(
                "no mock state line in:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Sweep {
        code: out.status.code().unwrap_or(-1),
        state: serde_json::from_str(state_line).expect("state is JSON"),
        stdout,
    }
}

/// (run-id tag, owner tag) of every resource still present in a cloud.
fn surviving_tags(state: &Value, cloud: &str) -> Vec<(Option<String>, Option<String>)> {
    state[cloud]
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["tags"]["cloudtest:run-id"].as_str().map(str::to_string),
                r["tags"]["owner"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn deletes_expired_tagged_leftovers_and_nothing_else() {
    let s = sweep(&[]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(
        s.stdout.contains("2 found, 2 deleted, 0 failed"),
        "{}",
        s.stdout
    );
    for cloud in ["aws", "azure"] {
        let left = surviving_tags(&s.state, cloud);
        assert_eq!(left.len(), 2, "{cloud}: {left:?}");
        // The untagged resource survives: sweep never touches what cloudtest did not tag.
        assert!(
            left.iter()
                .any(|(run, owner)| run.is_none() && owner.as_deref() == Some("someone-else")),
            "{cloud}: {left:?}"
        );
        // The tagged one that has not expired yet survives too; the expired one (planted-0) is gone.
        assert!(
            left.iter()
                .any(|(run, _)| run.as_deref() == Some("planted-2")),
            "{cloud}: {left:?}"
        );
        assert!(
            !left
                .iter()
                .any(|(run, _)| run.as_deref() == Some("planted-0")),
            "{cloud}: {left:?}"
        );
    }
}

#[test]
fn dry_run_lists_but_deletes_nothing() {
    let s = sweep(&["--dry-run"]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(s.stdout.contains("would delete (dry run)"), "{}", s.stdout);
    for cloud in ["aws", "azure"] {
        assert_eq!(
            surviving_tags(&s.state, cloud).len(),
            3,
            "{cloud}: {}",
            s.stdout
        );
    }
}

#[test]
fn plant_is_refused_against_real_clouds() {
    let out = command(&["sweep", "--plant", "untagged"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run ids of what survived in a cloud (untagged resources as `-`), sorted.
fn surviving_runs(state: &Value, cloud: &str) -> Vec<String> {
    let mut runs: Vec<String> = surviving_tags(state, cloud)
        .into_iter()
        .map(|(run, _)| run.unwrap_or_else(|| "-".into()))
        .collect();
    runs.sort();
    runs
}

#[test]
fn run_id_deletes_that_run_and_its_regions_and_nothing_else() {
    let s = sweep_with(&[
        "--run-id",
        "abc",
        "--plant",
        "run:abc",
        "--plant",
        "run:abc-us-east-1",
        "--plant",
        "run:abc-westeurope",
        "--plant",
        "run:abcd-us-east-1",
        "--plant",
        "run:abc-foo",
        "--plant",
        "run:ab",
        "--plant",
        "kept:abc-eastus",
        "--plant",
        "untagged",
        "--plant",
        "tagged-expired",
    ]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(
        // Three per cloud: `abc`, `abc-us-east-1`, `abc-westeurope`.
        s.stdout.contains("6 found, 6 deleted, 0 failed"),
        "{}",
        s.stdout
    );
    for cloud in ["aws", "azure"] {
        // Longer ids that start with `abc`, the kept lifecycle, the untagged resource and
        // another run's expired leftover (the daily sweep's job) all survive.
        assert_eq!(
            surviving_runs(&s.state, cloud),
            [
                "-",
                "ab",
                "abc-eastus",
                "abc-foo",
                "abcd-us-east-1",
                "planted-8"
            ],
            "{cloud}: {}",
            s.stdout
        );
    }
}

/// Once the engineer is done with what `--keep-on-failure` kept, `--include-kept` removes
/// that run's kept lifecycle before it expires, and still nothing of any other run.
#[test]
fn include_kept_removes_what_that_run_kept() {
    let s = sweep_with(&[
        "--run-id",
        "abc",
        "--include-kept",
        "--plant",
        "kept:abc-eastus",
        "--plant",
        "kept:abd-eastus",
        "--plant",
        "run:abc",
        "--plant",
        "untagged",
    ]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(
        s.stdout.contains("4 found, 4 deleted, 0 failed"),
        "{}",
        s.stdout
    );
    for cloud in ["aws", "azure"] {
        assert_eq!(
            surviving_runs(&s.state, cloud),
            ["-", "abd-eastus"],
            "{cloud}: {}",
            s.stdout
        );
    }
}

#[test]
fn include_kept_needs_a_run_id() {
    let out = command(&["sweep", "--mode", "mock", "--include-kept"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--run-id"), "{stderr}");
}

#[test]
fn run_id_must_be_a_valid_run_id_and_excludes_older_than() {
    for args in [
        &["sweep", "--mode", "mock", "--run-id", "Bad_Id"][..],
        &["sweep", "--mode", "mock", "--run-id", "abc-eastus"][..],
        &[
            "sweep",
            "--mode",
            "mock",
            "--run-id",
            "abc",
            "--older-than",
            "6h",
        ][..],
    ] {
        let out = command(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--run-id") || stderr.contains("--older-than"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn run_id_sweep_deletes_the_stack_with_the_service_role() {
    let role = "arn:aws:iam::123456789012:role/cloudtest-cloudformation";
    let run_id = "20261201032300-gh77-1";
    let plant = format!("stack:{run_id}");
    let s = sweep_with(&[
        "--provider",
        "aws",
        "--plant",
        &plant,
        "--run-id",
        run_id,
        "--aws-cloudformation-role",
        role,
    ]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    assert!(
        s.stdout.contains(&format!("stack cloudtest-{run_id}")),
        "{}",
        s.stdout
    );
    let line = s
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("mock stack requests: "))
        .unwrap_or_else(|| panic!("no stack requests line:\n{}", s.stdout));
    let requests: Value = serde_json::from_str(line).expect("requests are JSON");
    let deletes: Vec<&Value> = requests
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["action"] == "DeleteStack")
        .collect();
    assert!(!deletes.is_empty(), "no DeleteStack: {requests}");
    assert!(
        deletes.iter().all(|r| r["role_arn"] == role),
        "the sweep's DeleteStack must carry the service role: {requests}"
    );

    let bad = command(&[
        "sweep",
        "--mode",
        "mock",
        "--aws-cloudformation-role",
        "nope",
    ])
    .output()
    .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--aws-cloudformation-role"));
}
