//! `cloudtest sweep` in mock mode with planted leftovers: only tagged, expired resources are
//! deleted; untagged and unexpired ones survive; `--dry-run` deletes nothing.

use cloudtest_e2e::command;
use serde_json::Value;

struct Sweep {
    code: i32,
    stdout: String,
    state: Value,
}

fn sweep(extra: &[&str]) -> Sweep {
    let mut args = vec![
        "sweep",
        "--mode",
        "mock",
        "--plant",
        "tagged-expired",
        "--plant",
        "untagged",
        "--plant",
        "tagged-fresh",
    ];
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
