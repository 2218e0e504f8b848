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
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A command for the binary, run from the workspace root with a clean environment for the
/// variables that change its behaviour.
pub fn command(args: &[&str]) -> Command {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    command_for(&cloudtest_bin(), &args)
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

/// The status (`passed`, `failed`, `skipped`) of `phase` in a results.json requirement entry.
pub fn phase_status(requirement: &Value, phase: &str) -> Option<String> {
    requirement["phases"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == phase)
        .and_then(|p| p["status"].as_str())
        .map(str::to_string)
}

/// Every resource a mock-state.json still lists, as `emulator: id` (empty when clean).
pub fn mock_leftovers(state: &Value) -> Vec<String> {
    let Some(emulators) = state.as_object() else {
        return vec![format!("mock-state.json is not an object: {state}")];
    };
    emulators
        .iter()
        .flat_map(|(emulator, items)| match items.as_array() {
            Some(list) => list
                .iter()
                .map(|item| format!("{emulator}: {}", item.get("id").unwrap_or(item)))
                .collect::<Vec<_>>(),
            None => vec![format!("{emulator}: not a list: {items}")],
        })
        .collect()
}

/// Runs the binary with exactly `args` (no `--out` added) from the workspace root, for runs
/// whose output directory the test chooses itself (bad input: nothing may be written).
pub fn run_raw(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawning cloudtest")
}

// ---------------------------------------------------------------------------------------
// Running the binary outside `cargo test` (the benchmark) and against moto's server.

/// Variables that change the binary's behaviour, removed from every child's environment.
const SCRUBBED_ENV: &[&str] = &[
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
    "AZURE_AUTHORITY_HOST",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "CLOUDTEST_AZURE_CREDENTIAL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "CLOUDTEST_HEALTH_TIMEOUT",
    "CLOUDTEST_ADMIN_PASSWORD",
    "CLOUDTEST_RUN_URL",
    "RUST_LOG",
];

/// Like [`command`], for a binary given by path (the benchmark's `--bin`): run from the
/// workspace root, without credentials or behaviour-changing variables, HOME empty.
pub fn command_for(bin: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(workspace_root()).args(args);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("HOME", empty_home());
    cmd
}

/// The `moto_server` executable: `CLOUDTEST_MOTO_SERVER`, then `.venv/bin/moto_server` in
/// the workspace root (what `.ci/run` creates), then `moto_server` on `PATH`.
pub fn find_moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLOUDTEST_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// A `moto_server` listening on 127.0.0.1, killed (by its own pid) when dropped.
pub struct MotoServer {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`, for `--aws-endpoint`.
    pub url: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether moto could be started.
pub enum MotoStart {
    Running(MotoServer),
    /// Not installed and `CI` unset: the reason, for the caller to print before skipping.
    NotInstalled(String),
}

/// Starts moto on a free loopback port and waits (up to 30 s) for the port to open. Missing
/// moto is an error when `CI` is set (CI installs it), a [`MotoStart::NotInstalled`] otherwise.
pub fn start_moto_server() -> Result<MotoStart, String> {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::Stdio;
    use std::time::Duration;

    let Some(bin) = find_moto_server() else {
        let why = "moto_server not found (set CLOUDTEST_MOTO_SERVER, create .venv with \
                   `pip install 'moto[server]'`, or put it on PATH)"
            .to_string();
        return if std::env::var_os("CI").is_some() {
            Err(format!("{why}; CI is set, so moto is required"))
        } else {
            Ok(MotoStart::NotInstalled(why))
        };
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port for moto: {e}"))?
        .port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
    let server = MotoServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // moto needs a second or two to import: wait for its port, not a fixed time.
    for _ in 0..300 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(MotoStart::Running(server));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto_server at {} did not open its port within 30 s",
        server.url
    ))
}

/// Wait-condition data the booted server and client would signal, base64 of a placeholder
/// PEM (the run replaces the CA output with the embedded emulator's through
/// `--probe-via-mock`).
const MOTO_CA_DATA: &str = r#"'{"ca":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBRUNBd1FGQmdjSUNRPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="}'"#;
const MOTO_ENROLL_DATA: &str = r#"'{"nonce":"moto-fixed-nonce"}'"#;

/// The CloudFormation template moto can run: the real one with each wait condition's
/// `!GetAtt <Name>.Data` replaced by the JSON the instance would signal. moto ignores
/// `AWS::CloudFormation::WaitCondition` (nothing ever signals it, and a `GetAtt` of its
/// `Data` makes CreateStack fail with "references undefined resource"); nothing else changes.
pub fn moto_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("!GetAtt ") {
        let after = &rest[at + "!GetAtt ".len()..];
        let name_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        if after[name_len..].starts_with(".Data") {
            let data = if after[..name_len].contains("Enroll") {
                MOTO_ENROLL_DATA
            } else {
                MOTO_CA_DATA
            };
            out.push_str(&rest[..at]);
            out.push_str(data);
            rest = &after[name_len + ".Data".len()..];
        } else {
            out.push_str(&rest[..at + "!GetAtt ".len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Writes [`moto_template`] of `templates-cfn/velociraptor.yaml` into `dir`.
pub fn write_moto_template(dir: &Path) -> std::io::Result<PathBuf> {
    let body = std::fs::read_to_string(workspace_root().join("templates-cfn/velociraptor.yaml"))?;
    let path = dir.join("velociraptor-moto.yaml");
    std::fs::write(&path, moto_template(&body))?;
    Ok(path)
}

/// `cloudtest run` arguments for CLOUD-01 against moto, health and enrollment probed on
/// the embedded Velociraptor emulator. moto answers CreateStack synchronously and takes
/// several seconds for it on a cold server, far beyond the mock-mode deadlines (a few
/// seconds): the cloud-facing phases get live-like room.
pub fn moto_run_args(moto_url: &str, template: &Path, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--provider",
        "aws",
        "--aws-endpoint",
        moto_url,
        "--probe-via-mock",
        "--no-gap-doc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--aws-template".to_string(), template.display().to_string()]);
    args.extend(["--out".to_string(), out.display().to_string()]);
    for phase in ["create", "wait_ready", "teardown", "leak_check"] {
        args.extend(["--deadline".to_string(), format!("{phase}=120s")]);
    }
    args
}

/// The numbers in the AWS provider's "N AWS API attempts in this lifecycle" progress lines.
pub fn aws_api_attempts(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_suffix(" AWS API attempts in this lifecycle"))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect()
}

impl Run {
    /// The phase record `name` of requirement `id` (first region).
    pub fn phase(&self, id: &str, name: &str) -> Value {
        self.requirement(id)["phases"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{id} has no {name} phase\n{}", self.transcript()))
    }

    /// True when results.json was written (a usage error writes nothing).
    pub fn has_results(&self) -> bool {
        self.out().join("results.json").is_file()
    }
}

/// Every regular file under `dir`, recursively, for scanning outputs.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
