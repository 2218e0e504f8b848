//! Helpers shared by the end-to-end tests: find the built `cloudtest` binary, run it from
//! the workspace root with a fresh output directory, and read what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root (templates and docs are found relative to it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `target/<profile>/cloudtest`, next to the test executable's `deps/` directory, or
/// `CLOUDTEST_BIN` when set.
pub fn cloudtest_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CLOUDTEST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("cloudtest");
    assert!(
        bin.is_file(),
        "{} not built: run the tests with `cargo test --workspace` (it builds the binary) or set CLOUDTEST_BIN",
        bin.display()
    );
    bin
}

/// One invocation's results.
pub struct Run {
    pub output: Output,
    pub out_dir: tempfile::TempDir,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn out(&self) -> &Path {
        self.out_dir.path()
    }
    pub fn results(&self) -> Value {
        read_json(&self.out().join("results.json"))
    }
    pub fn mock_state(&self) -> Value {
        read_json(&self.out().join("mock-state.json"))
    }
    /// The results entry for a requirement id (first region).
    pub fn requirement(&self, id: &str) -> Value {
        self.results()["requirements"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id).cloned())
            .unwrap_or_else(|| panic!("{id} missing from results.json; stderr:\n{}", self.stderr()))
    }
    /// Everything the run printed, for failure messages.
    pub fn transcript(&self) -> String {
        format!("exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code(), self.stdout(), self.stderr())
    }
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A command for the binary, run from the workspace root with a clean environment for the
/// variables that change its behaviour.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(cloudtest_bin());
    cmd.current_dir(workspace_root()).args(args);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
        "CLOUDTEST_HEALTH_TIMEOUT",
        "CLOUDTEST_ADMIN_PASSWORD",
        "CLOUDTEST_RUN_URL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    // No shared credential files either: HOME points at an empty directory.
    cmd.env("HOME", empty_home());
    cmd
}

fn empty_home() -> PathBuf {
    let dir = std::env::temp_dir().join("cloudtest-e2e-empty-home");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Runs `cloudtest run` (or another subcommand in `args[0]`) with `--out` set to a fresh
/// temporary directory and without touching the repository's gap document.
pub fn run_cloudtest(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    let is_run = matches!(args.first(), Some(&"run"));
    if is_run {
        all.extend(["--out", out.as_str()]);
        if !args.contains(&"--gap-doc") {
            all.push("--no-gap-doc");
        }
    }
    let mut cmd = command(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("spawning cloudtest");
    Run { output, out_dir }
}
