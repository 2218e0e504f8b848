//! The binary's help is its manual: every documented flag and exit code must be in it.
//! (This integration test also makes `cargo test --workspace` build `target/*/cloudtest`,
//! which the end-to-end tests in `tests/` run.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudtest"))
        .args(args)
        .output()
        .expect("run cloudtest");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn top_level_help_documents_every_exit_code() {
    let text = help(&["--help"]);
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "130", "143"] {
        assert!(
            text.contains(&format!("  {code}")),
            "exit code {code} missing from --help:\n{text}"
        );
    }
    for sub in ["run", "plan", "report", "probe", "mock", "sweep", "prices"] {
        assert!(text.contains(sub), "subcommand {sub} missing");
    }
}

#[test]
fn run_help_explains_the_interface_flags_with_examples() {
    let text = help(&["run", "--help"]);
    for flag in [
        "--mode",
        "--provider",
        "--region",
        "--aws-regions",
        "--azure-locations",
        "--out",
        "--config",
        "--template",
        "--keep-on-failure",
        "--max-parallel",
        "--gap-doc",
        "--aws-endpoint",
        "--azure-endpoint",
        "--scenario",
        "--mock-latency",
        "--fault",
        "--probe-via-mock",
    ] {
        assert!(text.contains(flag), "{flag} missing from run --help");
    }
    assert!(text.contains("Example"), "run --help has no examples");
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudtest"))
        .args(["run", "--no-such-flag"])
        .output()
        .expect("run cloudtest");
    assert_eq!(out.status.code(), Some(2));
}
