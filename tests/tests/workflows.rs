//! The CI templates in `ci/` keep the promises `ci/README.md` makes: the right triggers,
//! OIDC-only credentials with `id-token: write` only where a cloud is called, serialized
//! live runs, a timeout on every job, actions pinned by commit SHA, the cost ledger carried
//! between live runs, a daily sweep, a merge job, and IAM/RBAC documents that grant no
//! wildcard writes and cover every resource the templates create.
//!
//! Both pipelines' test jobs (and `.ci/run`) install the test tools with
//! `ci/install-test-tools.sh` before `cargo test`; the live jobs end with a cleanup of their
//! own run that runs whatever happened; and the timing adds up (see ci/README.md, "Timing").
//!
//! Each check returns the problems it found, so every check is also run against a small
//! broken document to show it can fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cloudtest_core::config::DEFAULT_EXPIRES_AFTER;
use cloudtest_core::{Hook, Phase, PhaseDeadlines};

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const WORKFLOW: &str = "ci/github/cloud-tests.yml";
const GITLAB: &str = "ci/gitlab/.gitlab-ci.yml";
const IAM_POLICY: &str = "ci/aws/iam-policy.json";
const SERVICE_ROLE_POLICY: &str = "ci/aws/cloudformation-role-policy.json";
const SERVICE_ROLE_TRUST: &str = "ci/aws/cloudformation-role-trust.json";
const BOUNDARY_POLICY: &str = "ci/aws/permissions-boundary.json";
const HANDLER_PERMISSIONS: &str = "ci/aws/handler-permissions.json";
const AWS_README: &str = "ci/aws/README.md";
/// The boundary the service role requires (with the placeholder account).
const BOUNDARY_ARN: &str = "arn:aws:iam::ACCOUNT_ID:policy/cloudtest-boundary";
const TRUST_GITHUB: &str = "ci/aws/oidc-trust.json";
const TRUST_GITLAB: &str = "ci/aws/oidc-trust-gitlab.json";
const AZURE_ROLE: &str = "ci/azure/role.json";
const CFN_TEMPLATE: &str = "templates-cfn/velociraptor.yaml";
const ARM_TEMPLATE: &str = "templates-arm/velociraptor.json";
const CI_RUN: &str = ".ci/run";
/// What every job running the workspace tests calls first.
const INSTALL_SCRIPT: &str = "ci/install-test-tools.sh";

/// Long-lived cloud credentials that must never appear in a pipeline.
const FORBIDDEN_SECRETS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AZURE_CLIENT_SECRET",
    "AZURE_CREDENTIALS",
    "ARM_CLIENT_SECRET",
    "creds:",
];

// ------------------------------------------------------------------------- loading

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}

fn json(rel: &str) -> Json {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

fn assert_clean(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

fn assert_caught(what: &str, problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "{what}: expected a problem mentioning `{needle}`, got {problems:?}"
    );
}

// ------------------------------------------------------------------------- YAML helpers

fn str_of(v: Option<&Yaml>) -> &str {
    v.and_then(Yaml::as_str).unwrap_or("")
}

/// `on:` is a plain key in YAML 1.2; a YAML 1.1 reader would make it `true`.
fn triggers(wf: &Yaml) -> Option<&Yaml> {
    wf.get("on").or_else(|| wf.get(Yaml::Bool(true)))
}

fn jobs(wf: &Yaml) -> Vec<(String, &Yaml)> {
    wf.get("jobs")
        .and_then(Yaml::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or("?").to_string(), v))
                .collect()
        })
        .unwrap_or_default()
}

fn steps(job: &Yaml) -> Vec<&Yaml> {
    job.get("steps")
        .and_then(Yaml::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn uses_action(job: &Yaml, action: &str) -> bool {
    steps(job)
        .iter()
        .any(|s| str_of(s.get("uses")).starts_with(&format!("{action}@")))
}

fn runs_command(job: &Yaml, command: &str) -> bool {
    steps(job)
        .iter()
        .any(|s| str_of(s.get("run")).contains(command))
}

/// Jobs that obtain cloud credentials (cloudtest's own `github-oidc` credential asks
/// GitHub for ID tokens itself).
fn is_cloud_job(job: &Yaml) -> bool {
    uses_action(job, "aws-actions/configure-aws-credentials")
        || uses_action(job, "azure/login")
        || runs_command(job, AZURE_GITHUB_OIDC)
}

/// How a job gets Azure tokens that outlive the Azure CLI's (issue 16 §1).
const AZURE_GITHUB_OIDC: &str = "--azure-credential github-oidc";

fn permission<'a>(scope: &'a Yaml, name: &str) -> Option<&'a str> {
    scope
        .get("permissions")
        .and_then(|p| p.get(name))
        .and_then(Yaml::as_str)
}

// ------------------------------------------------------------------------- GitHub checks

fn trigger_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(on) = triggers(wf) else {
        return vec!["no `on:` triggers".into()];
    };
    for event in ["push", "pull_request", "schedule", "workflow_dispatch"] {
        if on.get(event).is_none() {
            problems.push(format!("trigger `{event}` missing"));
        }
    }
    let crons: Vec<&str> = on
        .get("schedule")
        .and_then(Yaml::as_sequence)
        .map(|s| s.iter().map(|c| str_of(c.get("cron"))).collect())
        .unwrap_or_default();
    if !crons.iter().any(|c| is_weekly(c)) {
        problems.push(format!("no weekly schedule cron among {crons:?}"));
    }
    if !crons.iter().any(|c| is_daily(c)) {
        problems.push(format!("no daily schedule cron among {crons:?}"));
    }
    let inputs = on.get("workflow_dispatch").and_then(|d| d.get("inputs"));
    for input in ["providers", "regions", "keep-on-failure"] {
        if inputs.and_then(|i| i.get(input)).is_none() {
            problems.push(format!("workflow_dispatch input `{input}` missing"));
        }
    }
    let keep_type = inputs
        .and_then(|i| i.get("keep-on-failure"))
        .map(|i| str_of(i.get("type")));
    if keep_type.is_some_and(|t| t != "boolean") {
        problems.push("workflow_dispatch input `keep-on-failure` is not a boolean".into());
    }
    problems
}

fn cron_fields(cron: &str) -> Vec<&str> {
    cron.split_whitespace().collect()
}

fn is_daily(cron: &str) -> bool {
    let f = cron_fields(cron);
    f.len() == 5 && f[2] == "*" && f[3] == "*" && f[4] == "*"
}

fn is_weekly(cron: &str) -> bool {
    let f = cron_fields(cron);
    f.len() == 5 && f[2] == "*" && f[3] == "*" && f[4].parse::<u8>().is_ok_and(|d| d <= 7)
}

fn permission_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    if permission(wf, "contents") != Some("read") || permission(wf, "id-token").is_some() {
        problems.push("top-level permissions must be `contents: read` only".into());
    }
    if str_of(wf.get("permissions")).contains("write-all") {
        problems.push("top-level permissions: write-all".into());
    }
    for (name, job) in jobs(wf) {
        if job.get("permissions").is_none() {
            problems.push(format!("job `{name}` does not declare its permissions"));
            continue;
        }
        let id_token = permission(job, "id-token");
        match (is_cloud_job(job), id_token) {
            (true, Some("write")) => {}
            (true, _) => problems.push(format!(
                "job `{name}` calls a cloud without `id-token: write`"
            )),
            (false, Some(_)) => {
                problems.push(format!("job `{name}` has `id-token` but calls no cloud"))
            }
            (false, None) => {}
        }
        let contents = permission(job, "contents");
        let opens_pr = uses_action(job, "peter-evans/create-pull-request");
        match contents {
            Some("read") => {}
            Some("write") if opens_pr => {}
            other => problems.push(format!(
                "job `{name}` has `contents: {}`",
                other.unwrap_or("unset")
            )),
        }
    }
    problems
}

fn concurrency_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, job) in jobs(wf).into_iter().filter(|(_, j)| is_cloud_job(j)) {
        let group = str_of(job.get("concurrency").and_then(|c| c.get("group")));
        if group.is_empty() {
            problems.push(format!("cloud job `{name}` has no concurrency group"));
        }
        let cancels = job
            .get("concurrency")
            .and_then(|c| c.get("cancel-in-progress"))
            .and_then(Yaml::as_bool);
        if cancels != Some(false) {
            problems.push(format!(
                "cloud job `{name}` must set cancel-in-progress: false (cancelling mid-teardown leaks resources)"
            ));
        }
    }
    problems
}

fn timeout_problems(wf: &Yaml) -> Vec<String> {
    jobs(wf)
        .into_iter()
        .filter(|(_, j)| j.get("timeout-minutes").and_then(Yaml::as_u64).unwrap_or(0) == 0)
        .map(|(name, _)| format!("job `{name}` has no timeout-minutes"))
        .collect()
}

/// Every `uses:` is a local action or pinned to a full commit SHA with a `# vX` comment.
fn pin_problems(raw: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in raw.lines().enumerate() {
        let Some((_, rest)) = line.split_once("uses:") else {
            continue;
        };
        let rest = rest.trim();
        let (reference, comment) = match rest.split_once('#') {
            Some((r, c)) => (r.trim(), c.trim()),
            None => (rest, ""),
        };
        let reference = reference.trim_matches(|c| c == '"' || c == '\'');
        if reference.starts_with("./") {
            continue;
        }
        let sha = reference.rsplit_once('@').map(|(_, s)| s).unwrap_or("");
        if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            problems.push(format!(
                "line {}: `{reference}` is not pinned to a 40-hex commit SHA",
                n + 1
            ));
        } else if !comment.starts_with('v') {
            problems.push(format!(
                "line {}: `{reference}` has no `# vX.Y.Z` comment",
                n + 1
            ));
        }
    }
    problems
}

/// Raw text, so secrets referenced anywhere (env, with:, scripts) are found.
fn secret_problems(raw: &str) -> Vec<String> {
    let mut problems: Vec<String> = FORBIDDEN_SECRETS
        .iter()
        .filter(|s| raw.contains(*s))
        .map(|s| format!("long-lived credential `{s}` referenced"))
        .collect();
    if raw.contains("secrets.") {
        problems.push("a `secrets.` reference: the pipelines need no secrets".into());
    }
    problems
}

/// Live jobs restore the ledger before the run and save it afterwards even on failure.
fn ledger_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let live: Vec<_> = jobs(wf)
        .into_iter()
        .filter(|(_, j)| runs_command(j, "--mode live"))
        .collect();
    if live.is_empty() {
        problems.push("no job runs `cloudtest run --mode live`".into());
    }
    for (name, job) in live {
        let all = steps(job);
        let position = |pred: &dyn Fn(&Yaml) -> bool| all.iter().position(|s| pred(s));
        let restore = position(&|s| str_of(s.get("uses")).starts_with("actions/cache/restore@"));
        let run = position(&|s| str_of(s.get("run")).contains("--mode live"));
        let save = position(&|s| str_of(s.get("uses")).starts_with("actions/cache/save@"));
        match (restore, run, save) {
            (Some(r), Some(x), Some(s)) if r < x && x < s => {
                if !str_of(all[s].get("if")).contains("always()") {
                    problems.push(format!("job `{name}`: ledger save must run `if: always()`"));
                }
                let path =
                    |i: usize| str_of(all[i].get("with").and_then(|w| w.get("path"))).to_string();
                if path(r) != path(s) || !path(r).contains("ledger") {
                    problems.push(format!(
                        "job `{name}`: ledger restore and save use different paths"
                    ));
                }
            }
            _ => problems.push(format!(
                "job `{name}`: needs ledger restore, then the run, then ledger save"
            )),
        }
    }
    problems
}

/// The daily sweep: a job of its own (a live job's cleanup of its own run does not count).
fn sweep_problems(wf: &Yaml) -> Vec<String> {
    let sweepers: Vec<_> = jobs(wf)
        .into_iter()
        .filter(|(_, j)| runs_command(j, "cloudtest sweep") && !runs_command(j, "--mode live"))
        .collect();
    if sweepers.is_empty() {
        return vec!["no job runs `cloudtest sweep`".into()];
    }
    sweepers
        .into_iter()
        .filter(|(_, j)| !is_cloud_job(j))
        .map(|(name, _)| format!("sweep job `{name}` logs in to no cloud"))
        .collect()
}

fn merge_problems(wf: &Yaml) -> Vec<String> {
    let Some((name, job)) = jobs(wf)
        .into_iter()
        .find(|(_, j)| runs_command(j, "cloudtest report merge"))
    else {
        return vec!["no job runs `cloudtest report merge`".into()];
    };
    let mut problems = Vec::new();
    for (action, why) in [
        ("actions/download-artifact", "download the shards"),
        ("mikepenz/action-junit-report", "publish JUnit"),
        ("actions/upload-artifact", "upload report.html"),
        (
            "peter-evans/create-pull-request",
            "open the gap-document pull request",
        ),
    ] {
        if !uses_action(job, action) {
            problems.push(format!("merge job `{name}` does not {why} ({action})"));
        }
    }
    if !str_of(job.get("if")).contains("always()") {
        problems.push(format!(
            "merge job `{name}` must run `if: always()` so failed runs are reported"
        ));
    }
    problems
}

fn mock_problems(wf: &Yaml) -> Vec<String> {
    let found = jobs(wf)
        .into_iter()
        .find(|(_, j)| runs_command(j, "--mode mock"));
    match found {
        None => vec!["no job runs `cloudtest run --mode mock`".into()],
        Some((name, job)) => {
            let mut problems = Vec::new();
            if is_cloud_job(job) {
                problems.push(format!("mock job `{name}` must not log in to a cloud"));
            }
            for cmd in ["cargo build", "cargo test"] {
                if !runs_command(job, cmd) {
                    problems.push(format!("mock job `{name}` does not run `{cmd}`"));
                }
            }
            problems
        }
    }
}

/// Every job running `cargo test` calls the install script in an earlier step.
fn install_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, job) in jobs(wf)
        .into_iter()
        .filter(|(_, j)| runs_command(j, "cargo test"))
    {
        let all = steps(job);
        let at = |needle: &str| {
            all.iter()
                .position(|s| str_of(s.get("run")).contains(needle))
        };
        match (at(INSTALL_SCRIPT), at("cargo test")) {
            (Some(i), Some(t)) if i < t => {}
            _ => problems.push(format!(
                "job `{name}` runs `cargo test` without calling {INSTALL_SCRIPT} first"
            )),
        }
    }
    problems
}

/// Every live job records a run id, passes it to `cloudtest run --run-id`, and ends with
/// `cloudtest sweep --run-id` in a step that runs `if: always()`.
fn cleanup_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, job) in jobs(wf)
        .into_iter()
        .filter(|(_, j)| runs_command(j, "--mode live"))
    {
        let all = steps(job);
        let run = all
            .iter()
            .position(|s| str_of(s.get("run")).contains("--mode live"));
        if !all.iter().any(|s| {
            let text = str_of(s.get("run"));
            text.contains("--mode live") && text.contains("--run-id")
        }) {
            problems.push(format!("live job `{name}` does not set `--run-id`"));
        }
        let sweep = all.iter().position(|s| {
            let text = str_of(s.get("run"));
            text.contains("sweep") && text.contains("--run-id") && !text.contains("--mode live")
        });
        match (run, sweep) {
            (Some(r), Some(c)) if r < c => {
                if !str_of(all[c].get("if")).contains("always()") {
                    problems.push(format!(
                        "live job `{name}`: the cleanup sweep must run `if: always()`"
                    ));
                }
            }
            _ => problems.push(format!(
                "live job `{name}` does not end with `cloudtest sweep --run-id`"
            )),
        }
    }
    problems
}

/// Issue 16 §1: `azure/login` logs the Azure CLI in, and the CLI cannot renew a federated
/// login (AADSTS700024 once its token expires after 60-90 minutes, Azure/azure-cli#28708),
/// so a slow run's teardown lost its credentials. A job that runs cloudtest against Azure
/// uses `--azure-credential github-oidc` with the application and tenant in its
/// environment, and never `azure/login`.
fn azure_credential_problems(wf: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, job) in jobs(wf) {
        if uses_action(job, "azure/login") {
            problems.push(format!(
                "job `{name}` relies on the Azure CLI login (azure/login), whose token cannot be renewed; use `{AZURE_GITHUB_OIDC}`"
            ));
        }
        if runs_command(job, AZURE_GITHUB_OIDC) {
            let env = job.get("env");
            for var in [
                "AZURE_CLIENT_ID",
                "AZURE_TENANT_ID",
                "AZURE_SUBSCRIPTION_ID",
            ] {
                if env.and_then(|e| e.get(var)).is_none() {
                    problems.push(format!(
                        "job `{name}` uses `{AZURE_GITHUB_OIDC}` without {var} in its env"
                    ));
                }
            }
        }
    }
    problems
}

fn github_problems(raw: &str) -> Vec<String> {
    let wf = yaml(raw);
    [
        install_problems(&wf),
        cleanup_problems(&wf),
        trigger_problems(&wf),
        permission_problems(&wf),
        concurrency_problems(&wf),
        timeout_problems(&wf),
        pin_problems(raw),
        secret_problems(raw),
        ledger_problems(&wf),
        sweep_problems(&wf),
        merge_problems(&wf),
        mock_problems(&wf),
        azure_credential_problems(&wf),
    ]
    .concat()
}

#[test]
fn github_workflow_passes_every_check() {
    assert_clean(WORKFLOW, github_problems(&read(WORKFLOW)));
}

/// The live job's Azure leg gets renewable tokens: no CLI login, and every cloudtest
/// command it runs for Azure (preflight, run, the cleanup sweep) asks for `github-oidc`.
#[test]
fn the_azure_live_job_does_not_rely_on_the_cli_login() {
    let wf = yaml(&read(WORKFLOW));
    let (name, live) = jobs(&wf)
        .into_iter()
        .find(|(_, j)| runs_command(j, "--mode live"))
        .expect("a live job");
    assert!(
        !uses_action(live, "azure/login"),
        "job `{name}` uses azure/login"
    );
    assert_eq!(permission(live, "id-token"), Some("write"), "job `{name}`");
    for (step, what) in [
        ("preflight --mode live", "preflight"),
        ("run --mode live", "run"),
        ("sweep --provider", "cleanup sweep"),
    ] {
        let text = steps(live)
            .iter()
            .map(|s| str_of(s.get("run")))
            .find(|t| t.contains(step))
            .unwrap_or_else(|| panic!("job `{name}` has no {what} step"));
        assert!(
            text.contains(&format!(
                "if [ \"$PROVIDER\" = azure ]; then args+=({AZURE_GITHUB_OIDC}); fi"
            )),
            "the {what} step does not pass `{AZURE_GITHUB_OIDC}` for Azure:\n{text}"
        );
    }
    assert_clean(WORKFLOW, azure_credential_problems(&wf));
}

/// A minimal workflow that passes every check; the tests below break it one way each.
const GOOD: &str = r#"
on:
  push:
  pull_request:
  schedule:
    - cron: "0 3 * * 1"
    - cron: "0 5 * * *"
  workflow_dispatch:
    inputs:
      providers: {type: string}
      regions: {type: string}
      keep-on-failure: {type: boolean}
permissions:
  contents: read
jobs:
  test:
    timeout-minutes: 10
    permissions: {contents: read}
    steps:
      - run: bash ci/install-test-tools.sh
      - run: cargo build && cargo test && cloudtest run --mode mock
  live:
    timeout-minutes: 60
    permissions: {contents: read, id-token: write}
    concurrency: {group: live, cancel-in-progress: false}
    steps:
      - uses: actions/cache/restore@0123456789abcdef0123456789abcdef01234567 # v5.0.0
        with: {path: ledger.jsonl}
      - uses: aws-actions/configure-aws-credentials@0123456789abcdef0123456789abcdef01234567 # v6.0.0
      - run: cloudtest run --mode live --run-id "$ID"
      - run: cloudtest sweep --run-id "$ID"
        if: always()
      - uses: actions/cache/save@0123456789abcdef0123456789abcdef01234567 # v5.0.0
        if: always()
        with: {path: ledger.jsonl}
  report:
    if: always()
    timeout-minutes: 10
    permissions: {contents: write}
    steps:
      - uses: actions/download-artifact@0123456789abcdef0123456789abcdef01234567 # v8.0.0
      - run: cloudtest report merge shards/*
      - uses: mikepenz/action-junit-report@0123456789abcdef0123456789abcdef01234567 # v6.0.0
      - uses: actions/upload-artifact@0123456789abcdef0123456789abcdef01234567 # v7.0.0
      - uses: peter-evans/create-pull-request@0123456789abcdef0123456789abcdef01234567 # v8.0.0
  sweep:
    timeout-minutes: 10
    permissions: {contents: read, id-token: write}
    concurrency: {group: sweep, cancel-in-progress: false}
    env: {AZURE_CLIENT_ID: a, AZURE_TENANT_ID: t, AZURE_SUBSCRIPTION_ID: s}
    steps:
      - uses: actions/download-artifact@0123456789abcdef0123456789abcdef01234567 # v8.0.0
      - run: cloudtest sweep --provider azure --azure-credential github-oidc
"#;

fn broken(from: &str, to: &str) -> Vec<String> {
    assert!(GOOD.contains(from), "fixture lacks `{from}`");
    github_problems(&GOOD.replacen(from, to, 1))
}

#[test]
fn the_minimal_good_workflow_is_clean() {
    assert_clean("GOOD fixture", github_problems(GOOD));
}

#[test]
fn each_workflow_check_catches_its_fault() {
    let cases: &[(&str, &str, &str)] = &[
        ("  pull_request:\n", "", "`pull_request` missing"),
        ("    - cron: \"0 5 * * *\"\n", "", "no daily schedule"),
        ("    - cron: \"0 3 * * 1\"\n", "", "no weekly schedule"),
        ("      regions: {type: string}\n", "", "input `regions` missing"),
        ("keep-on-failure: {type: boolean}", "keep-on-failure: {type: string}", "not a boolean"),
        ("permissions:\n  contents: read\njobs", "permissions:\n  contents: write\njobs", "top-level"),
        ("{contents: read, id-token: write}\n    concurrency: {group: live", "{contents: read}\n    concurrency: {group: live", "without `id-token: write`"),
        ("    permissions: {contents: read}\n    steps:\n      - run: bash ci/install", "    permissions: {contents: read, id-token: write}\n    steps:\n      - run: bash ci/install", "calls no cloud"),
        ("    permissions: {contents: read}\n    steps:\n      - run: bash ci/install", "    steps:\n      - run: bash ci/install", "does not declare"),
        ("    permissions: {contents: read}\n    steps:\n      - run: bash ci/install", "    permissions: {contents: write}\n    steps:\n      - run: bash ci/install", "`contents: write`"),
        ("concurrency: {group: live, cancel-in-progress: false}", "", "no concurrency group"),
        ("{group: live, cancel-in-progress: false}", "{group: live, cancel-in-progress: true}", "cancel-in-progress"),
        ("    timeout-minutes: 10\n    permissions: {contents: read}\n", "    permissions: {contents: read}\n", "`test` has no timeout"),
        ("aws-actions/configure-aws-credentials@0123456789abcdef0123456789abcdef01234567", "aws-actions/configure-aws-credentials@v6", "not pinned"),
        ("# v6.0.0", "", "no `# vX.Y.Z` comment"),
        ("      - run: cloudtest sweep", "      - env: {AWS_SECRET_ACCESS_KEY: x}\n        run: cloudtest sweep", "AWS_SECRET_ACCESS_KEY"),
        ("      - run: cloudtest sweep", "      - env: {X: \"${{ secrets.X }}\"}\n        run: cloudtest sweep", "`secrets.`"),
        ("      - uses: actions/cache/restore@0123456789abcdef0123456789abcdef01234567 # v5.0.0\n        with: {path: ledger.jsonl}\n", "", "ledger restore, then the run"),
        ("        if: always()\n        with: {path: ledger.jsonl}", "        with: {path: ledger.jsonl}", "ledger save must run"),
        ("        if: always()\n        with: {path: ledger.jsonl}", "        if: always()\n        with: {path: other.jsonl}", "different paths"),
        ("      - run: cloudtest run --mode live --run-id \"$ID\"\n", "", "--mode live"),
        ("      - run: bash ci/install-test-tools.sh\n", "", "without calling ci/install-test-tools.sh"),
        ("      - run: bash ci/install-test-tools.sh\n      - run: cargo build && cargo test && cloudtest run --mode mock\n", "      - run: cargo build && cargo test && cloudtest run --mode mock\n      - run: bash ci/install-test-tools.sh\n", "without calling ci/install-test-tools.sh first"),
        ("cloudtest run --mode live --run-id \"$ID\"", "cloudtest run --mode live", "does not set `--run-id`"),
        ("      - run: cloudtest sweep --run-id \"$ID\"\n        if: always()\n", "", "does not end with `cloudtest sweep --run-id`"),
        ("      - run: cloudtest sweep --run-id \"$ID\"\n        if: always()\n", "      - run: cloudtest sweep --run-id \"$ID\"\n", "must run `if: always()`"),
        ("cloudtest sweep --provider azure --azure-credential github-oidc", "echo", "no job runs `cloudtest sweep`"),
        (" --azure-credential github-oidc", "", "logs in to no cloud"),
        ("      - run: cloudtest sweep --provider azure", "      - uses: azure/login@0123456789abcdef0123456789abcdef01234567 # v3.0.0\n      - run: cloudtest sweep --provider azure", "relies on the Azure CLI login"),
        ("AZURE_TENANT_ID: t, ", "", "without AZURE_TENANT_ID"),
        ("cloudtest report merge shards/*", "echo", "no job runs `cloudtest report merge`"),
        ("      - uses: mikepenz/action-junit-report@0123456789abcdef0123456789abcdef01234567 # v6.0.0\n", "", "publish JUnit"),
        ("      - uses: peter-evans/create-pull-request@0123456789abcdef0123456789abcdef01234567 # v8.0.0\n", "", "pull request"),
        ("  report:\n    if: always()\n", "  report:\n", "must run `if: always()`"),
        ("cargo build && cargo test && cloudtest run --mode mock", "cargo build && cloudtest run --mode mock", "`cargo test`"),
        ("cargo build && cargo test && cloudtest run --mode mock", "cargo build && cargo test", "--mode mock"),
    ];
    for (from, to, needle) in cases {
        assert_caught(&format!("replacing `{from}`"), broken(from, to), needle);
    }
}

// ------------------------------------------------------------------------- GitLab checks

fn gitlab_jobs(doc: &Yaml) -> Vec<(String, &Yaml)> {
    const RESERVED: &[&str] = &[
        "workflow",
        "stages",
        "variables",
        "default",
        "include",
        "image",
    ];
    doc.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
                .filter(|(k, _)| !k.starts_with('.') && !RESERVED.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// A key of a job, or of the hidden template it `extends`.
fn gitlab_key<'a>(doc: &'a Yaml, job: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    job.get(key).or_else(|| {
        let parent = str_of(job.get("extends"));
        (!parent.is_empty())
            .then(|| doc.get(parent))
            .flatten()
            .and_then(|p| p.get(key))
    })
}

/// Script text of a job (and its template) including `!reference` targets, flattened.
fn gitlab_text(doc: &Yaml, job: &Yaml) -> String {
    ["before_script", "script", "after_script"]
        .iter()
        .filter_map(|k| gitlab_key(doc, job, k))
        .map(|v| serde_norway::to_string(v).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn gitlab_problems(raw: &str) -> Vec<String> {
    let doc = yaml(raw);
    let mut problems = secret_problems(raw);
    let stages: Vec<&str> = doc
        .get("stages")
        .and_then(Yaml::as_sequence)
        .map(|s| s.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    for stage in ["build", "test", "live", "report", "sweep"] {
        if !stages.contains(&stage) {
            problems.push(format!("stage `{stage}` missing"));
        }
    }
    let all = gitlab_jobs(&doc);
    for (name, job) in &all {
        if gitlab_key(&doc, job, "timeout").is_none() {
            problems.push(format!("job `{name}` has no timeout"));
        }
        let cloud = job.get("id_tokens").is_some();
        if cloud && job.get("resource_group").is_none() {
            problems.push(format!("cloud job `{name}` has no resource_group"));
        }
    }
    let live: Vec<_> = all
        .iter()
        .filter(|(_, j)| gitlab_text(&doc, j).contains("--mode live"))
        .collect();
    if live.is_empty() {
        problems.push("no job runs `--mode live`".into());
    }
    for (name, job) in live {
        if job.get("id_tokens").is_none() {
            problems.push(format!("live job `{name}` has no id_tokens"));
        }
        let text = gitlab_text(&doc, job);
        if !(text.contains("ledger") && text.contains("restore") && text.contains("save")) {
            problems.push(format!(
                "live job `{name}` does not restore and save the ledger"
            ));
        }
    }
    let has = |needle: &str| {
        all.iter()
            .any(|(_, j)| gitlab_text(&doc, j).contains(needle))
    };
    for needle in [
        "--mode mock",
        "cloudtest report merge",
        "cloudtest sweep",
        "cargo test",
    ] {
        if !has(needle) {
            problems.push(format!("no job runs `{needle}`"));
        }
    }
    for (name, job) in &all {
        let text = gitlab_text(&doc, job);
        if let Some(test) = text.find("cargo test") {
            if !text[..test].contains(INSTALL_SCRIPT) {
                problems.push(format!(
                    "job `{name}` runs `cargo test` without calling {INSTALL_SCRIPT} first"
                ));
            }
        }
        if text.contains("--mode live") {
            let script = gitlab_key(&doc, job, "script")
                .map(|v| serde_norway::to_string(v).unwrap_or_default())
                .unwrap_or_default();
            if !(script.contains("--run-id") && script.contains(".cloudtest-run-id")) {
                problems.push(format!(
                    "live job `{name}` does not record its run id (--run-id, .cloudtest-run-id)"
                ));
            }
            let after = gitlab_key(&doc, job, "after_script")
                .map(|v| serde_norway::to_string(v).unwrap_or_default())
                .unwrap_or_default();
            let cleanup = doc
                .get(".cleanup")
                .map(|v| serde_norway::to_string(v).unwrap_or_default())
                .unwrap_or_default();
            let sweeps_run = after.contains(".cleanup")
                && cleanup.contains("sweep")
                && cleanup.contains("--run-id");
            if !sweeps_run {
                problems.push(format!(
                    "live job `{name}`: after_script does not sweep its run (cloudtest sweep --run-id)"
                ));
            }
        }
    }
    let report_junit = all.iter().any(|(_, j)| {
        gitlab_text(&doc, j).contains("report merge")
            && j.get("artifacts")
                .and_then(|a| a.get("reports"))
                .and_then(|r| r.get("junit"))
                .is_some()
    });
    if !report_junit {
        problems.push("the merge job does not publish JUnit".into());
    }
    for (name, job) in all
        .iter()
        .filter(|(_, j)| gitlab_text(&doc, j).contains("cloudtest sweep"))
    {
        let rules = job
            .get("rules")
            .map(|r| serde_norway::to_string(r).unwrap_or_default());
        if !rules.is_some_and(|r| r.contains("$CLOUDTEST_SCHEDULE == \"sweep\"")) {
            problems.push(format!(
                "sweep job `{name}` is not on the daily schedule (CLOUDTEST_SCHEDULE == \"sweep\")"
            ));
        }
    }
    problems
}

/// GitLab's Azure jobs use workload identity through cloudtest's own credential (the
/// token file from `id_tokens:`, read again at every renewal), never an `az login`.
#[test]
fn gitlab_azure_jobs_use_workload_identity_not_the_cli_login() {
    let raw = read(GITLAB);
    let doc = yaml(&raw);
    let azure: Vec<String> = doc
        .get(".credentials")
        .and_then(|c| c.get("azure"))
        .and_then(Yaml::as_sequence)
        .expect(".credentials.azure")
        .iter()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    assert!(
        azure
            .iter()
            .any(|l| l == "export CLOUDTEST_AZURE_CREDENTIAL=workload"),
        "{azure:?}"
    );
    assert!(
        azure
            .iter()
            .any(|l| l.starts_with("export AZURE_FEDERATED_TOKEN_FILE=")),
        "{azure:?}"
    );
    assert!(!raw.contains("az login"), "{GITLAB} logs the Azure CLI in");
    for job in ["live:azure", "sweep:azure"] {
        let aud = doc
            .get(job)
            .and_then(|j| j.get("id_tokens"))
            .and_then(|t| t.get("CLOUDTEST_AZURE_ID_TOKEN"))
            .and_then(|t| t.get("aud"))
            .and_then(Yaml::as_str);
        assert_eq!(aud, Some("api://AzureADTokenExchange"), "{job}");
    }
}

#[test]
fn gitlab_pipeline_passes_every_check() {
    assert_clean(GITLAB, gitlab_problems(&read(GITLAB)));
}

#[test]
fn gitlab_checks_catch_their_faults() {
    let good = read(GITLAB);
    let cases: &[(&str, &str, &str)] = &[
        (
            "stages: [build, test, live, report, sweep]",
            "stages: [build, test, live, report]",
            "stage `sweep`",
        ),
        ("  timeout: 20m\n", "", "`report` has no timeout"),
        (
            "  resource_group: cloudtest-live-aws\n",
            "",
            "no resource_group",
        ),
        (
            "./bin/cloudtest report merge shard",
            "./bin/cloudtest report nothing shard",
            "report merge",
        ),
        (
            "      junit: merged/junit.xml",
            "      dotenv: merged/x.env",
            "publish JUnit",
        ),
        (
            "$CLOUDTEST_SCHEDULE == \"sweep\"",
            "$CLOUDTEST_SCHEDULE == \"never\"",
            "daily schedule",
        ),
        (
            "    - !reference [.ledger, save]\n    - !reference [.cleanup]\n  rules:\n    - if: ($CI_PIPELINE_SOURCE == \"web\" || $CLOUDTEST_SCHEDULE == \"live\") && $CLOUDTEST_PROVIDERS =~ /aws/",
            "    - !reference [.cleanup]\n  rules:\n    - if: ($CI_PIPELINE_SOURCE == \"web\" || $CLOUDTEST_SCHEDULE == \"live\") && $CLOUDTEST_PROVIDERS =~ /aws/",
            "ledger",
        ),
        (
            "    - bash ci/install-test-tools.sh\n",
            "",
            "without calling ci/install-test-tools.sh",
        ),
        (
            "    - !reference [.cleanup]\n  rules:\n    - if: ($CI_PIPELINE_SOURCE == \"web\" || $CLOUDTEST_SCHEDULE == \"live\") && $CLOUDTEST_PROVIDERS =~ /azure/",
            "  rules:\n    - if: ($CI_PIPELINE_SOURCE == \"web\" || $CLOUDTEST_SCHEDULE == \"live\") && $CLOUDTEST_PROVIDERS =~ /azure/",
            "does not sweep its run",
        ),
        (
            " --run-id \"$CLOUDTEST_RUN_ID\" --config",
            " --config",
            "does not record its run id",
        ),
        (
            "    - export AZURE_CLIENT_ID=",
            "    - export AZURE_CLIENT_SECRET=x\n    - export AZURE_CLIENT_ID=",
            "AZURE_CLIENT_SECRET",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(good.contains(from), "{GITLAB} lacks `{from}`");
        assert_caught(
            &format!("replacing `{from}`"),
            gitlab_problems(&good.replacen(from, to, 1)),
            needle,
        );
    }
}

// ------------------------------------------------------------------------- AWS IAM

fn list(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_read_only(action: &str) -> bool {
    let verb = action.split_once(':').map(|(_, v)| v).unwrap_or(action);
    // `Simulate*` (the IAM policy simulator) evaluates policies and changes nothing.
    ["Describe", "List", "Get", "Validate", "Simulate"]
        .iter()
        .any(|p| verb.starts_with(p))
}

/// IAM's action matching: case-insensitive, `*` any run of characters, `?` one.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

fn statements(policy: &Json) -> Vec<Json> {
    policy["Statement"].as_array().cloned().unwrap_or_default()
}

/// Action patterns of the policy's Allow statements.
fn allowed_actions(policy: &Json) -> Vec<String> {
    statements(policy)
        .iter()
        .filter(|st| st["Effect"] == "Allow")
        .flat_map(|st| list(st.get("Action")))
        .collect()
}

fn grants(policy: &Json, action: &str) -> bool {
    allowed_actions(policy)
        .iter()
        .any(|g| action_matches(g, action))
}

/// The Allow statements whose actions match `action`.
fn allowing<'a>(statements: &'a [Json], action: &str) -> Vec<&'a Json> {
    statements
        .iter()
        .filter(|st| st["Effect"] == "Allow")
        .filter(|st| {
            list(st.get("Action"))
                .iter()
                .any(|g| action_matches(g, action))
        })
        .collect()
}

/// Writes that create the stack's resources: the service role's, never the CI principal's.
fn is_resource_write(action: &str) -> bool {
    let Some((service, verb)) = action.split_once(':') else {
        return false;
    };
    match service {
        "ec2" => [
            "Create",
            "Run",
            "Allocate",
            "Authorize",
            "Associate",
            "Attach",
            "Modify",
        ]
        .iter()
        .any(|p| verb.starts_with(p)),
        "iam" => verb != "PassRole" && !is_read_only(action),
        "secretsmanager" => !is_read_only(action),
        _ => false,
    }
}

/// What both policies must not do: grant wildcards, write on every resource, write IAM on
/// every role, or rely on `aws:CalledVia`.
fn common_iam_problems(statements: &[Json]) -> Vec<String> {
    let mut problems = Vec::new();
    for st in statements {
        let sid = st["Sid"].as_str().unwrap_or("?");
        if st.to_string().contains("aws:CalledVia") {
            problems.push(format!(
                "{sid}: aws:CalledVia (resource permissions belong to the CloudFormation service role)"
            ));
        }
        if st["Effect"] != "Allow" {
            continue;
        }
        if st.get("NotAction").is_some() || st.get("NotResource").is_some() {
            problems.push(format!(
                "{sid}: NotAction/NotResource grant more than they name"
            ));
        }
        let actions = list(st.get("Action"));
        let resources = list(st.get("Resource"));
        for a in &actions {
            if a == "*" || a.ends_with(":*") {
                problems.push(format!("{sid}: wildcard action `{a}`"));
            }
        }
        let writes: Vec<_> = actions.iter().filter(|a| !is_read_only(a)).collect();
        if resources.iter().any(|r| r == "*") && !writes.is_empty() {
            problems.push(format!("{sid}: write actions {writes:?} on Resource \"*\""));
        }
        if writes.iter().any(|a| a.starts_with("iam:"))
            && resources.iter().any(|r| r.contains(":role/*"))
        {
            problems.push(format!("{sid}: IAM writes on every role"));
        }
    }
    problems
}

/// The calls cloudtest itself makes (leak check, evidence, preflight, teardown), which the
/// CI principal must keep.
const CI_ACTIONS: &[&str] = &[
    "cloudformation:CreateStack",
    "cloudformation:DeleteStack",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStackResources",
    "cloudformation:ValidateTemplate",
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
    "ec2:DescribeTags",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:GetConsoleOutput",
    "sts:GetCallerIdentity",
    "iam:GetRole",
    "iam:SimulatePrincipalPolicy",
    "servicequotas:GetServiceQuota",
    "iam:PassRole",
];

/// The CI principal (`ci/aws/iam-policy.json`): CloudFormation on `cloudtest-*` stacks with
/// the service role, `iam:PassRole` on that role to CloudFormation only, read-only calls,
/// and tag-conditioned sweep deletes; no resource permissions of its own.
fn iam_problems(policy: &Json) -> Vec<String> {
    let statements = statements(policy);
    if statements.is_empty() {
        return vec!["no Statement array".into()];
    }
    let mut problems = common_iam_problems(&statements);
    for st in statements.iter().filter(|st| st["Effect"] == "Allow") {
        let sid = st["Sid"].as_str().unwrap_or("?");
        let actions = list(st.get("Action"));
        let resources = list(st.get("Resource"));
        let writes: Vec<_> = actions.iter().filter(|a| !is_read_only(a)).collect();
        let cfn_writes = writes.iter().any(|a| a.starts_with("cloudformation:"));
        if cfn_writes && !resources.iter().all(|r| r.contains(":stack/cloudtest-*")) {
            problems.push(format!(
                "{sid}: CloudFormation writes not limited to stack/cloudtest-*"
            ));
        }
        if let Some(w) = writes.iter().find(|a| is_resource_write(a)) {
            problems.push(format!(
                "{sid}: `{w}` is a resource permission: it belongs to the CloudFormation service role"
            ));
        }
        let deletes = writes.iter().any(|a| {
            a.starts_with("ec2:")
                || a.starts_with("iam:") && **a != "iam:PassRole"
                || a.starts_with("secretsmanager:")
        });
        if deletes && st["Condition"]["Null"]["aws:ResourceTag/cloudtest:run-id"] != "false" {
            problems.push(format!(
                "{sid}: sweep deletes not conditioned on the cloudtest:run-id resource tag"
            ));
        }
    }
    for st in allowing(&statements, "iam:PassRole") {
        let sid = st["Sid"].as_str().unwrap_or("?");
        let resources = list(st.get("Resource"));
        if resources.len() != 1 || !resources[0].ends_with(":role/cloudtest-cloudformation") {
            problems.push(format!(
                "{sid}: iam:PassRole on {resources:?}, not on the one service role"
            ));
        }
        if st["Condition"]["StringEquals"]["iam:PassedToService"] != "cloudformation.amazonaws.com"
        {
            problems.push(format!(
                "{sid}: iam:PassRole not limited to iam:PassedToService cloudformation.amazonaws.com"
            ));
        }
    }
    let creates = allowing(&statements, "cloudformation:CreateStack");
    if creates.is_empty()
        || creates
            .iter()
            .any(|st| st["Condition"]["Null"]["aws:RequestTag/cloudtest:run-id"] != "false")
    {
        problems.push("CreateStack is not conditioned on the cloudtest:run-id request tag".into());
    }
    if creates.iter().any(|st| {
        !st["Condition"]["StringEquals"]["cloudformation:RoleArn"]
            .as_str()
            .is_some_and(|r| r.ends_with(":role/cloudtest-cloudformation"))
    }) {
        problems.push(
            "CreateStack is not conditioned on cloudformation:RoleArn (the service role)".into(),
        );
    }
    for action in CI_ACTIONS {
        if !grants(policy, action) {
            problems.push(format!(
                "the CI principal lacks `{action}`, which cloudtest calls"
            ));
        }
    }
    problems
}

/// The service role (`ci/aws/cloudformation-role-policy.json`): no wildcards or writes on
/// everything; roles only with the boundary; no boundary removed or replaced, the boundary
/// policy unchangeable; roles passed to EC2 only.
fn service_role_problems(policy: &Json, boundary: &str) -> Vec<String> {
    let statements = statements(policy);
    if statements.is_empty() {
        return vec!["no Statement array".into()];
    }
    let mut problems = common_iam_problems(&statements);
    let bounded =
        |st: &Json| st["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == boundary;
    for action in [
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
    ] {
        let allowed = allowing(&statements, action);
        if allowed.is_empty() {
            problems.push(format!(
                "`{action}` is not granted (the template creates a role)"
            ));
        }
        for st in allowed {
            if !bounded(st) {
                problems.push(format!(
                    "{}: `{action}` without the iam:PermissionsBoundary condition {boundary}",
                    st["Sid"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    let denies = |action: &str, pred: &dyn Fn(&Json) -> bool| {
        statements.iter().any(|st| {
            st["Effect"] == "Deny"
                && list(st.get("Resource")).iter().any(|r| r == "*")
                && list(st.get("Action"))
                    .iter()
                    .any(|a| action_matches(a, action))
                && pred(st)
        })
    };
    if !denies("iam:DeleteRolePermissionsBoundary", &|st| {
        st.get("Condition").is_none()
    }) {
        problems.push("iam:DeleteRolePermissionsBoundary is not denied".into());
    }
    if !denies("iam:PutRolePermissionsBoundary", &|st| {
        st["Condition"]["StringNotEquals"]["iam:PermissionsBoundary"] == boundary
    }) {
        problems.push(format!(
            "iam:PutRolePermissionsBoundary is not denied for boundaries other than {boundary}"
        ));
    }
    let boundary_frozen = statements.iter().any(|st| {
        st["Effect"] == "Deny"
            && list(st.get("Resource")).iter().any(|r| r == boundary)
            && list(st.get("Action"))
                .iter()
                .any(|a| action_matches(a, "iam:CreatePolicyVersion"))
    });
    if !boundary_frozen {
        problems.push(format!(
            "a new version of the boundary {boundary} is not denied"
        ));
    }
    for st in allowing(&statements, "iam:PassRole") {
        if st["Condition"]["StringEquals"]["iam:PassedToService"] != "ec2.amazonaws.com" {
            problems.push(format!(
                "{}: iam:PassRole not limited to iam:PassedToService ec2.amazonaws.com",
                st["Sid"].as_str().unwrap_or("?")
            ));
        }
    }
    problems
}

/// The service role's trust: CloudFormation, and nobody else, may assume it.
fn service_trust_problems(trust: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let statements = statements(trust);
    if statements.is_empty() {
        problems.push("no statements".into());
    }
    for st in statements {
        if st["Action"] != "sts:AssumeRole" {
            problems.push(format!("action is {}, not sts:AssumeRole", st["Action"]));
        }
        let principal = st["Principal"].as_object().cloned().unwrap_or_default();
        if principal.len() != 1
            || principal.get("Service") != Some(&Json::from("cloudformation.amazonaws.com"))
        {
            problems.push(format!(
                "principal {} is not only cloudformation.amazonaws.com",
                st["Principal"]
            ));
        }
    }
    problems
}

/// The boundary: read-only, no IAM, nothing on every resource.
fn boundary_problems(boundary: &Json) -> Vec<String> {
    let statements = statements(boundary);
    let mut problems = common_iam_problems(&statements);
    if statements.is_empty() {
        problems.push("no statements".into());
    }
    for st in statements.iter().filter(|st| st["Effect"] == "Allow") {
        for a in list(st.get("Action")) {
            if !is_read_only(&a) || a.starts_with("iam:") || a.contains('*') {
                problems.push(format!(
                    "{}: the boundary allows `{a}`; the server only reads its secret",
                    st["Sid"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    problems
}

/// The IAM actions each CloudFormation resource type needs at creation; a type the policy
/// does not cover fails the deployment with AccessDenied, so it fails this test instead.
fn create_action_for(cfn_type: &str) -> Option<&'static str> {
    Some(match cfn_type {
        "AWS::EC2::VPC" => "ec2:CreateVpc",
        "AWS::EC2::InternetGateway" => "ec2:CreateInternetGateway",
        "AWS::EC2::VPCGatewayAttachment" => "ec2:AttachInternetGateway",
        "AWS::EC2::RouteTable" => "ec2:CreateRouteTable",
        "AWS::EC2::Route" => "ec2:CreateRoute",
        "AWS::EC2::Subnet" => "ec2:CreateSubnet",
        "AWS::EC2::SubnetRouteTableAssociation" => "ec2:AssociateRouteTable",
        "AWS::EC2::SecurityGroup" => "ec2:CreateSecurityGroup",
        "AWS::EC2::SecurityGroupIngress" => "ec2:AuthorizeSecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress" => "ec2:AuthorizeSecurityGroupEgress",
        "AWS::EC2::LaunchTemplate" => "ec2:CreateLaunchTemplate",
        "AWS::EC2::Instance" => "ec2:RunInstances",
        "AWS::EC2::EIP" => "ec2:AllocateAddress",
        "AWS::EC2::EIPAssociation" => "ec2:AssociateAddress",
        "AWS::IAM::Role" => "iam:CreateRole",
        "AWS::IAM::InstanceProfile" => "iam:CreateInstanceProfile",
        "AWS::SecretsManager::Secret" => "secretsmanager:CreateSecret",
        "AWS::CloudFormation::WaitConditionHandle" | "AWS::CloudFormation::WaitCondition" => "",
        _ => return None,
    })
}

/// The service role can create what the template declares, and every IAM role the template
/// declares carries the permissions boundary (without it the service role may not create it).
fn template_coverage_problems(template: &Yaml, policy: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let resources = template.get("Resources").and_then(Yaml::as_mapping);
    for (logical, res) in resources.into_iter().flatten() {
        let logical = logical.as_str().unwrap_or("?");
        let ty = str_of(res.get("Type"));
        match create_action_for(ty) {
            None => problems.push(format!(
                "{logical} ({ty}): resource type unknown to ci/aws/cloudformation-role-policy.json; add its actions there and here"
            )),
            Some("") => {}
            Some(action) if !grants(policy, action) => {
                problems.push(format!("{ty} needs `{action}`, which the policy does not grant"))
            }
            Some(_) => {}
        }
        if ty == "AWS::IAM::Role"
            && res
                .get("Properties")
                .and_then(|p| p.get("PermissionsBoundary"))
                .is_none()
        {
            problems.push(format!(
                "{logical} (AWS::IAM::Role) has no PermissionsBoundary: the service role may create roles only with one"
            ));
        }
    }
    let ssm_ami = template
        .get("Parameters")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .any(|(_, p)| str_of(p.get("Type")).starts_with("AWS::SSM::Parameter::Value"));
    if ssm_ami && !grants(policy, "ssm:GetParameters") {
        problems.push(
            "the template resolves an SSM parameter but ssm:GetParameters is not granted".into(),
        );
    }
    if raw_contains_type(template, "AWS::IAM::InstanceProfile") && !grants(policy, "iam:PassRole") {
        problems
            .push("the template gives an instance a role but iam:PassRole is not granted".into());
    }
    problems
}

fn raw_contains_type(template: &Yaml, ty: &str) -> bool {
    template
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .any(|(_, r)| str_of(r.get("Type")) == ty)
}

/// `(permission, resource type)` rows of the "left out on purpose" table in ci/aws/README.md.
fn omissions(readme: &str) -> Vec<(String, String)> {
    let section = readme
        .split("## Handler permissions left out on purpose")
        .nth(1)
        .unwrap_or("");
    let section = section.split("\n## ").next().unwrap_or("");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = |c: &str| c.strip_prefix('`')?.strip_suffix('`').map(str::to_string);
            Some((code(cells.get(1)?)?, code(cells.get(2)?)?))
        })
        .collect()
}

const HANDLERS: [&str; 3] = ["create", "read", "delete"];

/// Every create/read/delete handler permission of every resource type in the template is
/// granted by the service role, or named in ci/aws/README.md as left out on purpose; a type
/// without a list, and a stale README row, are problems too.
fn handler_problems(
    template: &Yaml,
    handlers: &Json,
    policy: &Json,
    omitted: &[(String, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let types: std::collections::BTreeSet<&str> = template
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .map(|(_, r)| str_of(r.get("Type")))
        .collect();
    for ty in &types {
        let entry = &handlers["types"][*ty];
        if !HANDLERS.iter().all(|h| entry[*h].is_array()) {
            problems.push(format!(
                "{ty}: no create/read/delete handler permission list in {HANDLER_PERMISSIONS} (run ci/handler-permissions.py, or add it to ci/aws/handler-permissions-manual.json with its source and date)"
            ));
            continue;
        }
        if entry["source"] != "cfn-lint"
            && (entry["source"].as_str().unwrap_or("").is_empty()
                || entry["date"].as_str().unwrap_or("").is_empty())
        {
            problems.push(format!(
                "{ty}: a list kept by hand needs its source and date"
            ));
        }
        for h in HANDLERS {
            for perm in list(Some(&entry[h])) {
                let left_out = omitted.iter().any(|(p, t)| *p == perm && t == ty);
                if !left_out && !grants(policy, &perm) {
                    problems.push(format!(
                        "{ty} {h} handler needs `{perm}`: grant it in {SERVICE_ROLE_POLICY} or name it, with the reason, in {AWS_README}"
                    ));
                }
            }
        }
    }
    for (perm, ty) in omitted {
        let listed = HANDLERS
            .iter()
            .any(|h| list(Some(&handlers["types"][ty.as_str()][*h])).contains(perm));
        if !types.contains(ty.as_str()) || !listed {
            problems.push(format!(
                "{AWS_README} leaves out `{perm}` for {ty}, which no handler of a template type lists: remove the row"
            ));
        } else if grants(policy, perm) {
            problems.push(format!(
                "{AWS_README} leaves out `{perm}` for {ty}, but {SERVICE_ROLE_POLICY} grants it: remove the row"
            ));
        }
    }
    problems
}

#[test]
fn iam_policy_is_least_privilege() {
    assert_clean(IAM_POLICY, iam_problems(&json(IAM_POLICY)));
}

#[test]
fn service_role_policy_bounds_the_roles_it_creates() {
    assert_clean(
        SERVICE_ROLE_POLICY,
        service_role_problems(&json(SERVICE_ROLE_POLICY), BOUNDARY_ARN),
    );
    assert_clean(
        SERVICE_ROLE_TRUST,
        service_trust_problems(&json(SERVICE_ROLE_TRUST)),
    );
    assert_clean(BOUNDARY_POLICY, boundary_problems(&json(BOUNDARY_POLICY)));
}

#[test]
fn service_role_covers_the_cloudformation_template() {
    let template = yaml(&read(CFN_TEMPLATE));
    assert_clean(
        CFN_TEMPLATE,
        template_coverage_problems(&template, &json(SERVICE_ROLE_POLICY)),
    );
}

#[test]
fn service_role_grants_every_handler_permission() {
    let template = yaml(&read(CFN_TEMPLATE));
    let handlers = json(HANDLER_PERMISSIONS);
    assert!(
        handlers["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("cfn-lint ")),
        "{HANDLER_PERMISSIONS} must record the cfn-lint version it came from"
    );
    assert_clean(
        HANDLER_PERMISSIONS,
        handler_problems(
            &template,
            &handlers,
            &json(SERVICE_ROLE_POLICY),
            &omissions(&read(AWS_README)),
        ),
    );
}

#[test]
fn iam_checks_catch_their_faults() {
    let base = json(IAM_POLICY);
    let with_statement = |st: Json| {
        let mut p = base.clone();
        p["Statement"].as_array_mut().expect("array").push(st);
        iam_problems(&p)
    };
    let st = |action: &str, resource: &str| serde_json::json!({"Sid": "Bad", "Effect": "Allow", "Action": action, "Resource": resource});
    assert_caught(
        "Action *",
        with_statement(st("*", "arn:aws:s3:::x")),
        "wildcard action",
    );
    assert_caught(
        "ec2:*",
        with_statement(st("ec2:*", "arn:aws:s3:::x")),
        "wildcard action",
    );
    assert_caught(
        "write on *",
        with_statement(st("ec2:DeleteVpc", "*")),
        "Resource \"*\"",
    );
    assert_caught(
        "stack scope",
        with_statement(st(
            "cloudformation:DeleteStack",
            "arn:aws:cloudformation:*:1:stack/*",
        )),
        "stack/cloudtest-*",
    );
    assert_caught(
        "untagged sweep delete",
        with_statement(st("ec2:TerminateInstances", "arn:aws:ec2:*:1:instance/*")),
        "cloudtest:run-id resource tag",
    );
    assert_caught(
        "resource permission on the CI principal",
        with_statement(
            serde_json::json!({"Sid": "Bad", "Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "arn:aws:ec2:*:1:instance/*", "Condition": {"Null": {"aws:ResourceTag/cloudtest:run-id": "false"}}}),
        ),
        "service role",
    );
    assert_caught(
        "CalledVia",
        with_statement(
            serde_json::json!({"Sid": "Old", "Effect": "Allow", "Action": "iam:GetRole", "Resource": "arn:aws:iam::1:role/cloudtest-x", "Condition": {"ForAnyValue:StringEquals": {"aws:CalledVia": ["cloudformation.amazonaws.com"]}}}),
        ),
        "aws:CalledVia",
    );
    assert_caught(
        "PassRole on every cloudtest role",
        with_statement(
            serde_json::json!({"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/cloudtest-*", "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}}),
        ),
        "not on the one service role",
    );
    assert_caught(
        "PassRole to EC2",
        with_statement(
            serde_json::json!({"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/cloudtest-cloudformation", "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}),
        ),
        "iam:PassedToService cloudformation",
    );
    let mut no_tag = base.clone();
    let mut no_role = base.clone();
    for s in no_tag["Statement"].as_array_mut().expect("array") {
        if let Some(null) = s.pointer_mut("/Condition/Null") {
            null.as_object_mut()
                .expect("object")
                .remove("aws:RequestTag/cloudtest:run-id");
        }
    }
    assert_caught("CreateStack tag", iam_problems(&no_tag), "request tag");
    for s in no_role["Statement"].as_array_mut().expect("array") {
        if let Some(c) = s.get_mut("Condition").and_then(Json::as_object_mut) {
            c.remove("StringEquals");
        }
    }
    assert_caught(
        "CreateStack role",
        iam_problems(&no_role),
        "cloudformation:RoleArn",
    );
    let mut no_console = base.clone();
    for s in no_console["Statement"].as_array_mut().expect("array") {
        if let Some(a) = s.get_mut("Action").and_then(Json::as_array_mut) {
            a.retain(|x| x != "ec2:GetConsoleOutput");
        }
    }
    assert_caught(
        "evidence",
        iam_problems(&no_console),
        "ec2:GetConsoleOutput",
    );

    let role = json(SERVICE_ROLE_POLICY);
    let edit = |f: &dyn Fn(&mut Vec<Json>)| {
        let mut p = role.clone();
        f(p["Statement"].as_array_mut().expect("array"));
        service_role_problems(&p, BOUNDARY_ARN)
    };
    assert_caught(
        "CreateRole without the boundary",
        edit(&|sts| {
            sts.push(serde_json::json!({"Sid": "Unbounded", "Effect": "Allow", "Action": "iam:CreateRole", "Resource": "arn:aws:iam::1:role/cloudtest-*"}))
        }),
        "iam:PermissionsBoundary",
    );
    assert_caught(
        "another boundary",
        edit(&|sts| {
            for s in sts.iter_mut() {
                if let Some(b) = s.pointer_mut("/Condition/StringEquals/iam:PermissionsBoundary") {
                    *b = Json::from("arn:aws:iam::aws:policy/AdministratorAccess");
                }
            }
        }),
        "iam:PermissionsBoundary",
    );
    for (action, needle) in [
        (
            "iam:DeleteRolePermissionsBoundary",
            "DeleteRolePermissionsBoundary is not denied",
        ),
        (
            "iam:PutRolePermissionsBoundary",
            "PutRolePermissionsBoundary is not denied",
        ),
        ("iam:CreatePolicyVersion", "new version of the boundary"),
    ] {
        assert_caught(
            action,
            edit(&|sts| {
                sts.retain(|s| {
                    s["Effect"] != "Deny" || !list(s.get("Action")).iter().any(|a| a == action)
                })
            }),
            needle,
        );
    }
    assert_caught(
        "server role passed anywhere",
        edit(&|sts| {
            for s in sts.iter_mut() {
                if let Some(c) = s.pointer_mut("/Condition/StringEquals/iam:PassedToService") {
                    *c = Json::from("lambda.amazonaws.com");
                }
            }
        }),
        "ec2.amazonaws.com",
    );
    assert_caught(
        "service role write on *",
        edit(&|sts| sts.push(st("ec2:RunInstances", "*"))),
        "Resource \"*\"",
    );
    let mut open_trust = json(SERVICE_ROLE_TRUST);
    open_trust["Statement"][0]["Principal"] = serde_json::json!({"AWS": "*"});
    assert_caught(
        "trust",
        service_trust_problems(&open_trust),
        "cloudformation.amazonaws.com",
    );
    let mut wide_boundary = json(BOUNDARY_POLICY);
    wide_boundary["Statement"][0]["Action"] = serde_json::json!(["iam:CreateRole"]);
    assert_caught(
        "boundary",
        boundary_problems(&wide_boundary),
        "iam:CreateRole",
    );

    let template =
        yaml("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n  Vpc:\n    Type: AWS::EC2::VPC\n  Role:\n    Type: AWS::IAM::Role\n    Properties: {}\n");
    assert_caught(
        "unknown type",
        template_coverage_problems(&template, &role),
        "AWS::S3::Bucket",
    );
    assert_caught(
        "role without a boundary",
        template_coverage_problems(&template, &role),
        "no PermissionsBoundary",
    );
    let empty = serde_json::json!({"Statement": []});
    assert_caught(
        "missing action",
        template_coverage_problems(&template, &empty),
        "ec2:CreateVpc",
    );

    // Handler coverage: a type without a list, a permission neither granted nor named, and
    // stale README rows.
    let handlers = json(HANDLER_PERMISSIONS);
    let omitted = omissions(&read(AWS_README));
    assert!(
        !omitted.is_empty(),
        "{AWS_README} names no omissions: is its table still there?"
    );
    assert_caught(
        "type without a list",
        handler_problems(&template, &handlers, &role, &omitted),
        "AWS::S3::Bucket: no create/read/delete handler permission list",
    );
    let vpc = yaml("Resources:\n  Vpc:\n    Type: AWS::EC2::VPC\n");
    let no_delete_vpc = edit_policy(&role, "ec2:DeleteVpc");
    assert_caught(
        "permission not granted",
        handler_problems(&vpc, &handlers, &no_delete_vpc, &omitted),
        "ec2:DeleteVpc",
    );
    assert_caught(
        "omission no longer listed",
        handler_problems(
            &vpc,
            &handlers,
            &role,
            &[("ec2:Imaginary".into(), "AWS::EC2::VPC".into())],
        ),
        "remove the row",
    );
    assert_caught(
        "omission granted after all",
        handler_problems(
            &vpc,
            &handlers,
            &role,
            &[("ec2:CreateVpc".into(), "AWS::EC2::VPC".into())],
        ),
        "grants it",
    );
    let mut no_source = handlers.clone();
    no_source["types"]["AWS::EC2::VPC"]["source"] = Json::from("");
    assert_caught(
        "hand-kept list without a source",
        handler_problems(&vpc, &no_source, &role, &omitted),
        "source and date",
    );
    assert!(action_matches("ec2:Describe*", "ec2:DescribeVpcs"));
    assert!(!action_matches("ec2:Describe*", "ec2:DeleteVpc"));
}

/// `policy` without `action` in any statement.
fn edit_policy(policy: &Json, action: &str) -> Json {
    let mut p = policy.clone();
    for s in p["Statement"].as_array_mut().expect("array") {
        match s.get_mut("Action") {
            Some(Json::Array(a)) => a.retain(|x| x != action),
            Some(a) if a == action => *a = Json::Array(Vec::new()),
            _ => {}
        }
    }
    p
}

fn trust_problems(trust: &Json, provider: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let statements = trust["Statement"].as_array().cloned().unwrap_or_default();
    if statements.is_empty() {
        problems.push("no statements".into());
    }
    for st in statements {
        if st["Action"] != "sts:AssumeRoleWithWebIdentity" {
            problems.push(format!(
                "action is {}, not sts:AssumeRoleWithWebIdentity",
                st["Action"]
            ));
        }
        if !st["Principal"]["Federated"]
            .as_str()
            .unwrap_or("")
            .ends_with(provider)
        {
            problems.push(format!("principal is not the {provider} OIDC provider"));
        }
        let eq = &st["Condition"]["StringEquals"];
        if eq[format!("{provider}:aud")] != "sts.amazonaws.com" {
            problems.push("audience not pinned to sts.amazonaws.com".into());
        }
        let sub = eq[format!("{provider}:sub")].as_str().unwrap_or("");
        if sub.is_empty() || sub.contains('*') {
            problems.push(format!(
                "subject `{sub}` must name one repository and environment/branch exactly"
            ));
        }
    }
    problems
}

#[test]
fn oidc_trust_policies_pin_audience_and_subject() {
    assert_clean(
        TRUST_GITHUB,
        trust_problems(&json(TRUST_GITHUB), "token.actions.githubusercontent.com"),
    );
    assert_clean(
        TRUST_GITLAB,
        trust_problems(&json(TRUST_GITLAB), "gitlab.com"),
    );
    let github = json(TRUST_GITHUB);
    let sub = github["Statement"][0]["Condition"]["StringEquals"]
        ["token.actions.githubusercontent.com:sub"]
        .as_str()
        .unwrap_or("");
    assert!(
        sub.ends_with(":environment:cloudtest-live"),
        "the GitHub trust must name the environment the workflow's cloud jobs use: {sub}"
    );
    let mut loose = github.clone();
    loose["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] =
        Json::from("repo:OWNER/*");
    assert_caught(
        "wildcard subject",
        trust_problems(&loose, "token.actions.githubusercontent.com"),
        "must name one",
    );
}

// ------------------------------------------------------------------------- Azure role

fn azure_role_problems(role: &Json, arm_types: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let scopes = list(role.get("AssignableScopes"));
    if scopes.is_empty() {
        problems.push("no AssignableScopes".into());
    }
    for s in &scopes {
        if !s.starts_with("/subscriptions/") || s.contains('*') || s.contains("managementGroups") {
            problems.push(format!(
                "assignable scope `{s}` is wider than one subscription"
            ));
        }
    }
    let actions = list(role.get("Actions"));
    for a in &actions {
        if a == "*" || a.starts_with("*/") || a.ends_with("/*/write") {
            problems.push(format!("wildcard action `{a}`"));
        }
        // The preflight reads the principal's role assignments and their definitions;
        // anything but a read there would let the role change access.
        let authorization = a.starts_with("Microsoft.Authorization/");
        if authorization && !a.ends_with("/read") {
            problems.push(format!("`{a}` lets the role change access"));
        }
        let namespace = a.split('/').next().unwrap_or("");
        if !authorization
            && ![
                "Microsoft.Resources",
                "Microsoft.Network",
                "Microsoft.Compute",
            ]
            .contains(&namespace)
        {
            problems.push(format!("`{a}` is outside what the template deploys"));
        }
    }
    if !list(role.get("DataActions")).is_empty() {
        problems.push("data actions granted".into());
    }
    for needed in [
        "Microsoft.Resources/subscriptions/resourceGroups/write",
        "Microsoft.Resources/subscriptions/resourceGroups/delete",
        "Microsoft.Resources/deployments/write",
    ] {
        if !actions.iter().any(|a| a == needed) {
            problems.push(format!("`{needed}` missing"));
        }
    }
    for ty in arm_types {
        for verb in ["write", "delete"] {
            let needed = format!("{ty}/{verb}");
            if !actions.iter().any(|a| a.eq_ignore_ascii_case(&needed)) {
                problems.push(format!(
                    "the ARM template deploys {ty} but `{needed}` is missing"
                ));
            }
        }
    }
    problems
}

fn arm_resource_types(template: &Json) -> Vec<String> {
    let mut types: Vec<String> = template["resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    types.sort();
    types.dedup();
    types
}

#[test]
fn azure_role_is_scoped_and_covers_the_arm_template() {
    let types = arm_resource_types(&json(ARM_TEMPLATE));
    assert!(!types.is_empty(), "{ARM_TEMPLATE} declares no resources");
    assert_clean(AZURE_ROLE, azure_role_problems(&json(AZURE_ROLE), &types));
}

#[test]
fn azure_role_checks_catch_their_faults() {
    let role = json(AZURE_ROLE);
    let with = |key: &str, value: Json| {
        let mut r = role.clone();
        r[key] = value;
        azure_role_problems(&r, &[])
    };
    assert_caught(
        "wide scope",
        with("AssignableScopes", serde_json::json!(["/"])),
        "wider",
    );
    assert_caught(
        "no scope",
        with("AssignableScopes", serde_json::json!([])),
        "no AssignableScopes",
    );
    assert_caught(
        "star",
        with("Actions", serde_json::json!(["*"])),
        "wildcard action",
    );
    assert_caught(
        "authz",
        with(
            "Actions",
            serde_json::json!(["Microsoft.Authorization/roleAssignments/write"]),
        ),
        "change access",
    );
    assert_caught(
        "uncovered type",
        azure_role_problems(&role, &["Microsoft.Storage/storageAccounts".to_string()]),
        "Microsoft.Storage/storageAccounts/write",
    );
}

// ------------------------------------------------------------------------- timing

/// From the start of a live job to the first phase: binary download, ledger, credentials,
/// config, budget guard.
const SETUP_MARGIN: Duration = Duration::from_secs(10 * 60);
/// The cleanup after the run: `cloudtest sweep --run-id` waits up to 30 minutes for an
/// Azure resource group to be gone (crates/cli/src/commands/sweep.rs).
const CLEANUP_MARGIN: Duration = Duration::from_secs(30 * 60);
/// The engine gives each phase up to 5 s of grace after its deadline (core runner.rs).
const PHASE_GRACE: Duration = Duration::from_secs(5);
/// The daily sweep's cadence (its cron is checked to be daily above).
const SWEEP_CADENCE: Duration = Duration::from_secs(24 * 3600);

/// `90`, `90s`, `140m`, `3h`: one number and one unit (seconds without one).
fn duration(text: &str) -> Option<Duration> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The default inside `${{ vars.NAME || 'DEFAULT' }}`, or the text itself.
fn default_of(expression: &str) -> &str {
    expression
        .rsplit_once("||")
        .map(|(_, d)| d.trim().trim_end_matches("}}").trim().trim_matches('\''))
        .unwrap_or(expression)
}

/// The longest a live run's phases can take, every deadline at its live default (health
/// as the pipeline sets it).
fn longest_run(health: Duration) -> Duration {
    let deadlines = PhaseDeadlines::live_defaults();
    let mut total: Duration = Phase::ALL
        .iter()
        .map(|p| {
            if *p == Phase::Health {
                health
            } else {
                deadlines.get(*p)
            }
        })
        .sum();
    // The two provider hooks (server identity, failure evidence) run with their own
    // deadlines and the same grace.
    let hooks = [Hook::VerifyServer, Hook::Evidence];
    total += hooks.iter().map(|h| deadlines.hook(*h)).sum::<Duration>();
    let phases = (Phase::ALL.len() + hooks.len()) as u32;
    total + PHASE_GRACE * phases
}

fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60)
}

/// The shared inequalities, given the numbers read from a pipeline.
fn timing_inequalities(
    what: &str,
    script_limit: Duration,
    job_timeout: Duration,
    health: Duration,
    sweep_older_than: Duration,
) -> Vec<String> {
    let mut problems = Vec::new();
    let run = longest_run(health);
    if script_limit <= SETUP_MARGIN + run {
        problems.push(format!(
            "{what}: {} min for the run is not more than setup {} + phases {} min",
            minutes(script_limit),
            minutes(SETUP_MARGIN),
            minutes(run)
        ));
    }
    if DEFAULT_EXPIRES_AFTER < job_timeout {
        problems.push(format!(
            "{what}: expires_after {} min is shorter than the job timeout {} min: the daily sweep could delete a running run",
            minutes(DEFAULT_EXPIRES_AFTER),
            minutes(job_timeout)
        ));
    }
    if DEFAULT_EXPIRES_AFTER > SWEEP_CADENCE {
        problems.push(format!(
            "{what}: expires_after {} min is longer than the daily sweep's cadence",
            minutes(DEFAULT_EXPIRES_AFTER)
        ));
    }
    if sweep_older_than < job_timeout || sweep_older_than > SWEEP_CADENCE {
        problems.push(format!(
            "{what}: the daily sweep's --older-than {} min must lie between the job timeout {} min and a day",
            minutes(sweep_older_than),
            minutes(job_timeout)
        ));
    }
    problems
}

fn github_timing_problems(raw: &str) -> Vec<String> {
    let wf = yaml(raw);
    let all = jobs(&wf);
    let Some((_, live)) = all.iter().find(|(_, j)| runs_command(j, "--mode live")) else {
        return vec!["no live job".into()];
    };
    let job_timeout = live
        .get("timeout-minutes")
        .and_then(Yaml::as_u64)
        .map(|m| Duration::from_secs(m * 60))
        .unwrap_or_default();
    let health = duration(default_of(str_of(
        wf.get("env")
            .and_then(|e| e.get("CLOUDTEST_HEALTH_TIMEOUT")),
    )))
    .unwrap_or_default();
    let older_than = all
        .iter()
        .find_map(|(_, j)| {
            j.get("steps")?;
            steps(j)
                .into_iter()
                .find_map(|s| s.get("env")?.get("OLDER_THAN"))
        })
        .and_then(|v| duration(default_of(str_of(Some(v)))))
        .unwrap_or_default();
    // The run step gets what the cleanup step does not need.
    let mut problems = timing_inequalities(
        "GitHub live job",
        job_timeout.saturating_sub(CLEANUP_MARGIN),
        job_timeout,
        health,
        older_than,
    );
    let session = steps(live)
        .into_iter()
        .find(|s| str_of(s.get("uses")).starts_with("aws-actions/configure-aws-credentials@"))
        .and_then(|s| s.get("with")?.get("role-duration-seconds")?.as_u64())
        .map(Duration::from_secs)
        .unwrap_or_default();
    if session < job_timeout {
        problems.push(format!(
            "GitHub live job: AWS role session {} min is shorter than the job timeout {} min",
            minutes(session),
            minutes(job_timeout)
        ));
    }
    problems
}

fn gitlab_timing_problems(raw: &str) -> Vec<String> {
    let doc = yaml(raw);
    let live = doc.get(".live");
    let var = |scope: Option<&Yaml>, name: &str| {
        scope
            .and_then(|s| s.get("variables"))
            .and_then(|v| v.get(name))
            .map(|v| match v.get("value") {
                Some(inner) => str_of(Some(inner)).to_string(),
                None => str_of(Some(v)).to_string(),
            })
            .and_then(|t| duration(&t))
            .unwrap_or_default()
    };
    let job_timeout = duration(str_of(live.and_then(|l| l.get("timeout")))).unwrap_or_default();
    let script = var(live, "RUNNER_SCRIPT_TIMEOUT");
    let after = var(live, "RUNNER_AFTER_SCRIPT_TIMEOUT");
    let mut problems = timing_inequalities(
        "GitLab live job",
        script,
        job_timeout,
        var(Some(&doc), "CLOUDTEST_HEALTH_TIMEOUT"),
        var(Some(&doc), "CLOUDTEST_SWEEP_OLDER_THAN"),
    );
    if after < CLEANUP_MARGIN {
        problems.push(format!(
            "GitLab live job: RUNNER_AFTER_SCRIPT_TIMEOUT {} min leaves the cleanup less than {} min",
            minutes(after),
            minutes(CLEANUP_MARGIN)
        ));
    }
    if script + after > job_timeout {
        problems.push(format!(
            "GitLab live job: RUNNER_SCRIPT_TIMEOUT + RUNNER_AFTER_SCRIPT_TIMEOUT ({} min) exceed the job timeout {} min, so a timed-out job skips its cleanup",
            minutes(script + after),
            minutes(job_timeout)
        ));
    }
    problems
}

#[test]
fn live_jobs_timing_adds_up() {
    assert_clean(WORKFLOW, github_timing_problems(&read(WORKFLOW)));
    assert_clean(GITLAB, gitlab_timing_problems(&read(GITLAB)));
    // The numbers ci/README.md states are the ones checked here.
    let readme = read("ci/README.md");
    let run = minutes(longest_run(Duration::from_secs(900)));
    for needle in [
        format!("{run} min"),
        "timeout-minutes: 180".to_string(),
        "role-duration-seconds: 10800".to_string(),
        "RUNNER_SCRIPT_TIMEOUT: 140m".to_string(),
        "RUNNER_AFTER_SCRIPT_TIMEOUT: 35m".to_string(),
        format!(
            "expires_after` {} h",
            DEFAULT_EXPIRES_AFTER.as_secs() / 3600
        ),
    ] {
        assert!(
            readme.contains(&needle),
            "ci/README.md does not state `{needle}`"
        );
    }
}

#[test]
fn timing_checks_catch_their_faults() {
    let github = read(WORKFLOW);
    for (from, to, needle) in [
        (
            "    timeout-minutes: 180\n",
            "    timeout-minutes: 120\n",
            "is not more than setup",
        ),
        (
            "role-duration-seconds: 10800",
            "role-duration-seconds: 7200",
            "AWS role session",
        ),
        (
            "CLOUDTEST_SWEEP_OLDER_THAN || '6h'",
            "CLOUDTEST_SWEEP_OLDER_THAN || '2h'",
            "--older-than",
        ),
        (
            "CLOUDTEST_HEALTH_TIMEOUT || '900'",
            "CLOUDTEST_HEALTH_TIMEOUT || '3600'",
            "is not more than setup",
        ),
    ] {
        assert!(github.contains(from), "{WORKFLOW} lacks `{from}`");
        assert_caught(
            from,
            github_timing_problems(&github.replacen(from, to, 1)),
            needle,
        );
    }
    let gitlab = read(GITLAB);
    for (from, to, needle) in [
        (
            "RUNNER_SCRIPT_TIMEOUT: 140m",
            "RUNNER_SCRIPT_TIMEOUT: 100m",
            "is not more than setup",
        ),
        (
            "RUNNER_AFTER_SCRIPT_TIMEOUT: 35m",
            "RUNNER_AFTER_SCRIPT_TIMEOUT: 5m",
            "leaves the cleanup",
        ),
        (
            "  timeout: 3h\n",
            "  timeout: 2h\n",
            "exceed the job timeout",
        ),
        (
            "CLOUDTEST_SWEEP_OLDER_THAN: \"6h\"",
            "CLOUDTEST_SWEEP_OLDER_THAN: \"1h\"",
            "--older-than",
        ),
    ] {
        assert!(gitlab.contains(from), "{GITLAB} lacks `{from}`");
        assert_caught(
            from,
            gitlab_timing_problems(&gitlab.replacen(from, to, 1)),
            needle,
        );
    }
}

// ------------------------------------------------------------------------- .ci/run

#[test]
fn ci_run_installs_the_test_tools_before_testing() {
    let problems = |text: &str| -> Vec<String> {
        match (
            text.find(&format!("bash {INSTALL_SCRIPT}")),
            text.find("cargo test"),
        ) {
            (Some(i), Some(t)) if i < t => Vec::new(),
            _ => vec![format!(
                "{CI_RUN} does not call {INSTALL_SCRIPT} before `cargo test`"
            )],
        }
    };
    let text = read(CI_RUN);
    assert_clean(CI_RUN, problems(&text));
    assert_caught(
        "without the script",
        problems(&text.replace("bash ci/install-test-tools.sh", "true")),
        INSTALL_SCRIPT,
    );
}

/// Every AWS preflight, live run and sweep in a pipeline passes the CloudFormation service
/// role from the repository variable `CLOUDTEST_AWS_CFN_ROLE_ARN` (the CI principal may
/// create stacks only with it).
fn service_role_pass_problems(raw: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !raw.contains("CLOUDTEST_AWS_CFN_ROLE_ARN") {
        problems.push("the pipeline never reads CLOUDTEST_AWS_CFN_ROLE_ARN".into());
    }
    let lines: Vec<&str> = raw.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // Where the arguments of a live preflight, run or sweep are put together.
        let builds_args = (line.contains("args=(") || line.contains("set -- "))
            && [
                "preflight --mode live",
                "run --mode live",
                "sweep --provider",
            ]
            .iter()
            .any(|c| line.contains(c));
        if !builds_args && !line.contains("bin/cloudtest sweep") {
            continue;
        }
        let window = lines[i.saturating_sub(3)..(i + 4).min(lines.len())].join("\n");
        if !window.contains("--aws-cloudformation-role") {
            problems.push(format!(
                "line {}: `{}` without --aws-cloudformation-role",
                i + 1,
                line.trim()
            ));
        }
    }
    problems
}

#[test]
fn pipelines_pass_the_cloudformation_service_role() {
    for pipeline in [WORKFLOW, GITLAB] {
        let raw = read(pipeline);
        assert_clean(pipeline, service_role_pass_problems(&raw));
        let dropped = raw.replace("--aws-cloudformation-role", "--aws-role-dropped");
        assert_caught(
            pipeline,
            service_role_pass_problems(&dropped),
            "without --aws-cloudformation-role",
        );
    }
}
