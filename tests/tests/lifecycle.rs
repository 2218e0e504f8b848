//! The `cloudtest` binary end to end in mock mode: the default run, every named scenario,
//! provider selection, live-mode skip guards (without ever reaching a cloud: no credentials
//! are present, and only `plan` is run when fake ones are), configuration errors,
//! `--keep-on-failure`, the gap-document writer and secret handling.
//!
//! Every test reads what the binary wrote (exit code, results.json, mock-state.json, the
//! reports), so each fails when the binary misbehaves.

use std::path::Path;

use cloudtest_e2e::{files_under, read_json, run_cloudtest, workspace_root, Run};
use serde_json::Value;

const PHASES: [&str; 6] = [
    "create",
    "wait_ready",
    "health",
    "enrollment",
    "teardown",
    "leak_check",
];
const PINNED_VERSION: &str = "0.77.2";
const GAP_BEGIN: &str = "<!-- cloudtest:results:begin -->";
const GAP_END: &str = "<!-- cloudtest:results:end -->";

// ------------------------------------------------------------------------- helpers

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn ids(run: &Run) -> Vec<String> {
    run.results()["requirements"]
        .as_array()
        .map(|a| a.iter().map(|r| str_of(&r["id"]).to_string()).collect())
        .unwrap_or_default()
}

fn assert_exit(run: &Run, code: i32) {
    assert_eq!(
        run.code(),
        code,
        "unexpected exit code\n{}",
        run.transcript()
    );
}

/// mock-state.json lists nothing left in any emulator.
fn assert_state_empty(run: &Run) {
    let state = run.mock_state();
    for key in ["aws", "azure", "velociraptor"] {
        let list = state[key]
            .as_array()
            .unwrap_or_else(|| panic!("mock-state.json has no `{key}` array: {state}"));
        assert!(
            list.is_empty(),
            "mock-state.json `{key}` should be empty after teardown: {state}\n{}",
            run.transcript()
        );
    }
}

fn state_list(run: &Run, key: &str) -> Vec<Value> {
    run.mock_state()[key]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn assert_phase(run: &Run, id: &str, name: &str, status: &str) -> String {
    let p = run.phase(id, name);
    assert_eq!(
        p["status"],
        status,
        "{id} {name} should be {status}: {p}\n{}",
        run.transcript()
    );
    str_of(&p["detail"]).to_string()
}

/// Teardown and the leak check both ran and passed, and the facts say nothing remains.
fn assert_torn_down(run: &Run, id: &str) {
    assert_phase(run, id, "teardown", "passed");
    assert_phase(run, id, "leak_check", "passed");
    assert_eq!(
        run.requirement(id)["facts"]["resources_remaining"],
        0,
        "{id}\n{}",
        run.transcript()
    );
}

/// CLOUD-03 never passes when a side failed.
fn assert_cloud03_not_passed(run: &Run) {
    let c3 = run.requirement("CLOUD-03");
    assert!(
        c3["status"] == "failed" || c3["status"] == "skipped",
        "CLOUD-03 must be failed or skipped when a side failed: {c3}"
    );
}

/// A health timeout reports the last status the server gave, in the probe's own words (the
/// engine's hard stop comes after a grace period, so the probe's message is never lost).
fn assert_last_health_status(_run: &Run, id: &str, detail: &str, status: &str) {
    assert!(
        detail.contains("did not answer") && detail.contains(&format!("HTTP {status}")),
        "{id}: `{detail}` should give the last status {status}"
    );
}

/// The first phase that did not pass, with its detail.
fn first_failure(run: &Run, id: &str) -> (String, String) {
    run.requirement(id)["phases"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["status"] == "failed"))
        .map(|p| {
            (
                str_of(&p["name"]).to_string(),
                str_of(&p["detail"]).to_string(),
            )
        })
        .unwrap_or_else(|| panic!("{id} has no failed phase\n{}", run.transcript()))
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a fixture");
    path.to_string_lossy().into_owned()
}

/// A usage error: exit 2, the message on stderr, and nothing run or written.
fn assert_usage_error(run: &Run, needles: &[&str]) {
    assert_exit(run, 2);
    for n in needles {
        assert!(
            run.stderr().contains(n),
            "stderr should mention `{n}`\n{}",
            run.transcript()
        );
    }
    assert!(
        !run.has_results(),
        "a usage error must not produce results.json\n{}",
        run.transcript()
    );
    assert!(
        !run.out().join("mock-state.json").exists(),
        "a usage error must not start the mock cloud\n{}",
        run.transcript()
    );
}

// ------------------------------------------------------------------------- default run

#[test]
fn default_run_passes_cloud_01_02_03() {
    let run = run_cloudtest(&["run"], &[]);
    assert_exit(&run, 0);
    let results = run.results();
    assert_eq!(results["mode"], "mock");
    assert!(!str_of(&results["run_id"]).is_empty(), "run_id missing");
    assert!(results.get("interrupted_by").is_none(), "{results}");
    assert_eq!(ids(&run), ["CLOUD-01", "CLOUD-02", "CLOUD-03"]);

    for (id, provider, region) in [
        ("CLOUD-01", "aws", "us-east-1"),
        ("CLOUD-02", "azure", "eastus"),
        ("CLOUD-03", "cross-cloud", "us-east-1+eastus"),
    ] {
        let r = run.requirement(id);
        assert_eq!(r["provider"], provider, "{r}");
        assert_eq!(r["region"], region, "{r}");
        assert_eq!(r["status"], "passed", "{r}");
    }

    for id in ["CLOUD-01", "CLOUD-02"] {
        let r = run.requirement(id);
        let phases = r["phases"].as_array().expect("phases array");
        let names: Vec<&str> = phases.iter().map(|p| str_of(&p["name"])).collect();
        assert_eq!(names, PHASES, "{id} phases out of order");
        let mut previous_start = String::new();
        let mut total_ms = 0;
        for p in phases {
            assert_eq!(p["status"], "passed", "{id}: {p}");
            let ms = p["duration_ms"]
                .as_u64()
                .unwrap_or_else(|| panic!("{id}: duration_ms missing: {p}"));
            total_ms += ms;
            // RFC 3339 UTC timestamps of one format compare as strings.
            let started = str_of(&p["started_at"]).to_string();
            assert!(!started.is_empty(), "{id}: started_at missing: {p}");
            assert!(
                started >= previous_start,
                "{id}: phases started out of order"
            );
            previous_start = started;
            assert!(!str_of(&p["detail"]).is_empty(), "{id}: empty detail: {p}");
        }
        assert!(total_ms > 0, "{id}: phase durations add up to 0 ms");

        let facts = &r["facts"];
        assert_eq!(facts["velociraptor_version"], PINNED_VERSION, "{id}");
        assert_eq!(facts["enrolled_clients"], 1, "{id}");
        assert!(
            facts["resources_created"].as_u64().unwrap_or(0) > 0,
            "{id}: resources_created: {facts}"
        );
        assert_eq!(facts["resources_remaining"], 0, "{id}");
        assert_eq!(facts["tls"], "pinned-self-signed-ca", "{id}");
        assert_eq!(facts["agent_versions"], serde_json::json!([PINNED_VERSION]));
    }

    for file in ["junit.xml", "report.md", "report.html"] {
        let path = run.out().join(file);
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{file} not written: {e}"))
            .len();
        assert!(len > 0, "{file} is empty");
    }
    assert_state_empty(&run);
    assert!(run.stdout().contains("exit code 0"), "{}", run.transcript());
}

/// A mock run rents nothing, but prices what both clouds reported as a live run would:
/// results.json, the summary and report.md say what it would have cost, and the two clouds'
/// hourly rates are in the same range (both priced from their instances, disks and IPs).
#[test]
fn mock_runs_say_what_each_cloud_would_have_cost_live() {
    let run = run_cloudtest(&["run"], &[]);
    assert_exit(&run, 0);
    let mut hourly = Vec::new();
    for id in ["CLOUD-01", "CLOUD-02"] {
        let r = run.requirement(id);
        assert_eq!(r["cost"]["estimated_usd"], 0.0, "{id}: {r}");
        let usd = r["cost"]["would_cost_usd"]
            .as_f64()
            .unwrap_or_else(|| panic!("{id}: no would_cost_usd: {}", r["cost"]));
        let ms: u64 = r["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .filter(|p| p["name"] != "leak_check")
            .filter_map(|p| p["duration_ms"].as_u64())
            .sum();
        assert!(usd > 0.0 && ms > 0, "{id}: ${usd} over {ms} ms");
        hourly.push(usd * 3_600_000.0 / ms as f64);
        assert!(
            run.stdout()
                .lines()
                .any(|l| l.starts_with(&format!("would cost live: {id} "))),
            "{id}: the summary should say what it would have cost\n{}",
            run.transcript()
        );
    }
    // Two small VMs, their IPs (and Azure's disks): cents per hour on both clouds.
    for rate in &hourly {
        assert!((0.02..0.5).contains(rate), "hourly rates {hourly:?}");
    }
    let ratio = hourly[0].max(hourly[1]) / hourly[0].min(hourly[1]);
    assert!(
        ratio < 3.0,
        "AWS and Azure hourly rates differ {ratio:.1}x: {hourly:?}"
    );
    assert!(run.results()["requirements"]
        .as_array()
        .expect("requirements")
        .iter()
        .filter(|r| r["id"] == "CLOUD-03")
        .all(|r| r["cost"].get("would_cost_usd").is_none()));
    let report = std::fs::read_to_string(run.out().join("report.md")).expect("report.md");
    assert!(report.contains("would cost"), "{report}");
}

// ------------------------------------------------------------------------- scenarios

#[test]
fn scenario_slow_deployment_is_cancelled_before_its_group_is_deleted() {
    let run = run_cloudtest(
        &[
            "run",
            "--scenario",
            "slow-deployment",
            "--deadline",
            "wait_ready=2s",
        ],
        &[],
    );
    assert_exit(&run, 1);
    let detail = assert_phase(&run, "CLOUD-02", "wait_ready", "failed");
    assert!(detail.contains("deadline"), "{detail}");
    assert_torn_down(&run, "CLOUD-02");
    assert_eq!(run.requirement("CLOUD-01")["status"], "passed");
    assert_state_empty(&run);
}

#[test]
fn scenario_create_fails_names_the_resource_and_tears_down() {
    let run = run_cloudtest(&["run", "--scenario", "create-fails"], &[]);
    assert_exit(&run, 1);
    for (id, resource, reason) in [
        (
            "CLOUD-01",
            "ServerInstance (AWS::EC2::Instance)",
            "capacity",
        ),
        (
            "CLOUD-02",
            "(Microsoft.Compute/virtualMachines)",
            "SkuNotAvailable",
        ),
    ] {
        assert_eq!(run.requirement(id)["status"], "failed");
        let (phase, detail) = first_failure(&run, id);
        assert!(
            phase == "create" || phase == "wait_ready",
            "{id} failed in {phase}, expected create or wait_ready"
        );
        assert!(
            detail.contains(resource),
            "{id}: `{detail}` should name {resource}"
        );
        assert!(
            detail.contains(reason),
            "{id}: `{detail}` should give the reason"
        );
        assert_phase(&run, id, "health", "skipped");
        assert_phase(&run, id, "enrollment", "skipped");
        assert_torn_down(&run, id);
    }
    assert_cloud03_not_passed(&run);
    assert_state_empty(&run);
}

/// Issue 15 §7: a client whose boot fails says so on its serial console. Enrollment reads
/// the console while it waits and fails at once with that reason, not at its deadline; the
/// console is kept as evidence and teardown still runs.
#[test]
fn a_failed_client_boot_ends_enrollment_early_with_the_console_reason() {
    let run = run_cloudtest(
        &[
            "run",
            "--provider",
            "aws",
            "--scenario",
            "client-boot-fails",
            "--deadline",
            "enrollment=120s",
        ],
        &[],
    );
    assert_exit(&run, 1);
    let (phase, detail) = first_failure(&run, "CLOUD-01");
    assert_eq!(phase, "enrollment", "{detail}");
    assert!(
        detail
            .contains("failed to boot: velociraptor-v0.77.2-linux-amd64 failed its SHA-256 check"),
        "{detail}"
    );
    let enrollment_ms = run.requirement("CLOUD-01")["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "enrollment")
        .and_then(|p| p["duration_ms"].as_u64())
        .expect("enrollment duration");
    assert!(
        enrollment_ms < 60_000,
        "ended by the console, not by the 120 s deadline: {enrollment_ms} ms"
    );
    assert_torn_down(&run, "CLOUD-01");
    assert_state_empty(&run);
    let evidence = files_under(&run.out().join("evidence"));
    assert!(
        evidence.iter().any(|f| f.ends_with("console-client.txt")),
        "{evidence:?}"
    );
}

/// Issue 15 §7: the region's first zone does not offer the server size (as us-east-1e
/// lacks t3 sizes on real accounts). The provider puts the subnets in the first zone that
/// offers both sizes and the run passes; the same template with the region's first zone
/// fixed fails its launch there with EC2's `Unsupported` answer, and still tears down.
#[test]
fn first_zone_restricted_deploys_into_a_zone_offering_both_sizes() {
    let run = run_cloudtest(
        &[
            "run",
            "--provider",
            "aws",
            "--scenario",
            "first-zone-restricted",
        ],
        &[],
    );
    assert_exit(&run, 0);
    assert_eq!(run.requirement("CLOUD-01")["status"], "passed");
    assert!(
        run.stderr()
            .contains("availability zone us-east-1b: the first in us-east-1 that offers"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout()
            .contains("offered in us-east-1b, the first zone offering all of them"),
        "the preflight names the zone the run uses\n{}",
        run.transcript()
    );
    assert_state_empty(&run);

    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = std::fs::read_to_string(workspace_root().join("templates-cfn/velociraptor.yaml"))
        .expect("template");
    let chosen = r#"!If [FirstZone, !Select [0, !GetAZs ""], !Ref AvailabilityZone]"#;
    assert_eq!(
        shipped.matches(chosen).count(),
        2,
        "both subnets take the chosen zone"
    );
    let first_zone = write_file(
        dir.path(),
        "first-zone.yaml",
        &shipped.replace(chosen, r#"!Select [0, !GetAZs ""]"#),
    );
    let run = run_cloudtest(
        &[
            "run",
            "--provider",
            "aws",
            "--scenario",
            "first-zone-restricted",
            "--aws-template",
            &first_zone,
        ],
        &[],
    );
    assert_exit(&run, 1);
    let (phase, detail) = first_failure(&run, "CLOUD-01");
    assert!(
        phase == "create" || phase == "wait_ready",
        "failed in {phase}: {detail}"
    );
    assert!(
        detail.contains("ServerInstance")
            && detail.contains(
                "Your requested instance type (t3.medium) is not supported in your requested Availability Zone (us-east-1a)"
            ),
        "{detail}"
    );
    assert_torn_down(&run, "CLOUD-01");
    assert_state_empty(&run);
}

/// Issue 15 §1: the stack is still `ROLLBACK_IN_PROGRESS` when wait_ready fails, and the
/// emulator refuses DeleteStack until the rollback settles (3 × latency). Teardown waits
/// and sends it again; the leak check runs only after deletion finished.
#[test]
fn scenario_rollback_slow_waits_for_the_rollback_then_tears_down() {
    let run = run_cloudtest(
        &[
            "run",
            "--provider",
            "aws",
            "--scenario",
            "rollback-slow",
            "--mock-latency",
            "300ms",
        ],
        &[],
    );
    assert_exit(&run, 1);
    let (phase, detail) = first_failure(&run, "CLOUD-01");
    assert!(
        phase == "create" || phase == "wait_ready",
        "failed in {phase}: {detail}"
    );
    assert!(detail.contains("ServerInstance"), "{detail}");
    assert_torn_down(&run, "CLOUD-01");
    assert!(
        run.stderr()
            .contains("cannot be deleted while in status ROLLBACK_IN_PROGRESS")
            || run
                .stdout()
                .contains("cannot be deleted while in status ROLLBACK_IN_PROGRESS"),
        "the refusal should be visible as progress\n{}",
        run.transcript()
    );
    assert_state_empty(&run);
}

/// Issue 15 §4: the wait condition publishes a CA other than the one the server printed on
/// its console; health fails before any probe trusts it.
#[test]
fn scenario_ca_spoofed_fails_health_with_the_console_mismatch() {
    let run = run_cloudtest(
        &["run", "--provider", "aws", "--scenario", "ca-spoofed"],
        &[],
    );
    assert_exit(&run, 1);
    assert_phase(&run, "CLOUD-01", "wait_ready", "passed");
    let detail = assert_phase(&run, "CLOUD-01", "health", "failed");
    assert!(
        detail.contains(
            "the CA published through the wait condition does not match the one the server printed on its console"
        ),
        "{detail}"
    );
    assert_phase(&run, "CLOUD-01", "enrollment", "skipped");
    assert_torn_down(&run, "CLOUD-01");
    assert_state_empty(&run);
}

/// Issue 15 §4: in a healthy run the CA is checked against the server's console, and no
/// pre-signed wait-condition URL reaches results.json.
#[test]
fn healthy_run_verifies_the_ca_and_writes_no_presigned_url() {
    let run = run_cloudtest(&["run", "--provider", "aws"], &[]);
    assert_exit(&run, 0);
    let identity = &run.requirement("CLOUD-01")["facts"]["server_identity"];
    assert_eq!(identity["status"], "verified", "{identity}");
    let results = std::fs::read_to_string(run.out().join("results.json")).expect("results.json");
    for needle in ["waitcondition", "X-Amz-Signature", "https://cloudformation"] {
        assert!(
            !results.contains(needle),
            "results.json must not carry a pre-signed URL ({needle})"
        );
    }
}

#[test]
fn scenario_health_timeout_reports_last_status_and_tears_down() {
    let run = run_cloudtest(
        &[
            "run",
            "--scenario",
            "health-timeout",
            "--deadline",
            "health=1s",
        ],
        &[],
    );
    assert_exit(&run, 1);
    for id in ["CLOUD-01", "CLOUD-02"] {
        assert_eq!(run.requirement(id)["status"], "failed");
        assert_phase(&run, id, "wait_ready", "passed");
        let detail = assert_phase(&run, id, "health", "failed");
        assert!(
            detail.contains("within 1"),
            "{id}: `{detail}` should say the health check timed out"
        );
        assert_last_health_status(&run, id, &detail, "503");
        assert_phase(&run, id, "enrollment", "skipped");
        assert_torn_down(&run, id);
    }
    assert_cloud03_not_passed(&run);
    assert_state_empty(&run);
}

#[test]
fn scenario_no_enrollment_fails_enrollment_and_tears_down() {
    let run = run_cloudtest(
        &[
            "run",
            "--scenario",
            "no-enrollment",
            "--deadline",
            "enrollment=1s",
        ],
        &[],
    );
    assert_exit(&run, 1);
    for id in ["CLOUD-01", "CLOUD-02"] {
        assert_eq!(run.requirement(id)["status"], "failed");
        assert_phase(&run, id, "health", "passed");
        let detail = assert_phase(&run, id, "enrollment", "failed");
        // The probe's own message ("... within 1.0s, last seen: no clients listed").
        assert!(
            detail.contains("within 1") && detail.contains("no clients"),
            "{id}: `{detail}` should say no client enrolled within the 1 s deadline"
        );
        assert!(run.requirement(id)["facts"]
            .get("enrolled_clients")
            .is_none());
        assert_torn_down(&run, id);
    }
    assert_cloud03_not_passed(&run);
    assert_state_empty(&run);
}

#[test]
fn scenario_teardown_leaks_exits_3_and_names_exactly_the_leaked_resources() {
    let run = run_cloudtest(&["run", "--scenario", "teardown-leaks"], &[]);
    assert_exit(&run, 3);
    for (id, key) in [("CLOUD-01", "aws"), ("CLOUD-02", "azure")] {
        let r = run.requirement(id);
        assert_eq!(r["status"], "failed", "{r}");
        let detail = assert_phase(&run, id, "leak_check", "failed");
        let facts = &r["facts"];
        assert_eq!(facts["resources_remaining"], 1, "{id}: {facts}");
        let reported: Vec<String> = facts["remaining_resources"]
            .as_array()
            .map(|a| a.iter().map(|x| str_of(&x["id"]).to_string()).collect())
            .unwrap_or_default();
        let in_state: Vec<String> = state_list(&run, key)
            .iter()
            .map(|x| str_of(&x["id"]).to_string())
            .collect();
        assert_eq!(
            reported.len(),
            1,
            "{id}: one leaked resource per cloud: {facts}"
        );
        assert_eq!(
            reported, in_state,
            "{id}: results facts.remaining_resources must match what mock-state.json still holds"
        );
        assert!(
            detail.contains(&reported[0]),
            "{id}: `{detail}` should name the leak"
        );
        assert!(
            run.stdout().contains(&reported[0]),
            "summary should name the leak\n{}",
            run.transcript()
        );
    }
    assert!(
        state_list(&run, "velociraptor").is_empty(),
        "no server should survive"
    );
    assert!(
        run.stdout().contains("RESOURCES REMAIN"),
        "{}",
        run.transcript()
    );
    assert_cloud03_not_passed(&run);
}

/// Each emulator throttles its first calls; the providers' retries must carry the run.
#[test]
fn scenario_throttled_still_passes() {
    let run = run_cloudtest(&["run", "--scenario", "throttled"], &[]);
    assert_exit(&run, 0);
    for id in ["CLOUD-01", "CLOUD-02", "CLOUD-03"] {
        assert_eq!(
            run.requirement(id)["status"],
            "passed",
            "{}",
            run.transcript()
        );
    }
    assert_state_empty(&run);
    // The throttling is meant for the lifecycle, not for the preflight that runs first:
    // each lifecycle's first call (the zone lookup before CreateStack, the resource group's
    // PUT) is refused three times and sent a fourth.
    let calls = cloudtest_e2e::read_json(&run.out().join("mock-calls.json"));
    for op in [
        "aws:DescribeInstanceTypeOfferings",
        "arm:ResourceGroups_CreateOrUpdate",
    ] {
        assert_eq!(calls[op], 4, "{op}: {calls}");
    }
    for op in [
        "preflight:aws:GetCallerIdentity",
        "preflight:arm:Subscriptions_Get",
    ] {
        assert_eq!(calls[op], 1, "{op}: {calls}");
    }
}

/// Deletion fails once on each cloud; teardown retries and says so.
#[test]
fn scenario_delete_fails_is_retried() {
    let run = run_cloudtest(&["run", "--scenario", "delete-fails"], &[]);
    assert_exit(&run, 0);
    for id in ["CLOUD-01", "CLOUD-02"] {
        assert_eq!(
            run.requirement(id)["status"],
            "passed",
            "{}",
            run.transcript()
        );
        let detail = assert_phase(&run, id, "teardown", "passed");
        assert!(
            detail.contains("retr"),
            "{id}: `{detail}` should mention the retry"
        );
        assert_torn_down(&run, id);
    }
    assert_eq!(run.requirement("CLOUD-03")["status"], "passed");
    assert_state_empty(&run);
}

#[test]
fn scenario_version_mismatch_names_both_versions() {
    let run = run_cloudtest(&["run", "--scenario", "version-mismatch"], &[]);
    assert_exit(&run, 1);
    for id in ["CLOUD-01", "CLOUD-02"] {
        assert_eq!(run.requirement(id)["status"], "failed");
        let detail = assert_phase(&run, id, "enrollment", "failed");
        assert!(
            detail.contains(PINNED_VERSION),
            "{id}: `{detail}` should name the pinned version"
        );
        let reported = detail
            .split("reports ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{id}: `{detail}` should name the reported version"));
        assert_ne!(reported, PINNED_VERSION, "{id}: `{detail}`");
        assert!(
            reported.chars().next().is_some_and(|c| c.is_ascii_digit()) && reported.contains('.'),
            "{id}: `{reported}` is not a version"
        );
        assert_torn_down(&run, id);
    }
    assert_cloud03_not_passed(&run);
    assert_state_empty(&run);
}

// ------------------------------------------------------------------------- providers

#[test]
fn provider_aws_only_skips_cloud03_with_a_reason() {
    let run = run_cloudtest(&["run", "--provider", "aws"], &[]);
    assert_exit(&run, 0);
    assert_eq!(run.requirement("CLOUD-01")["status"], "passed");
    let results = run.results();
    let cloud02 = results["requirements"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == "CLOUD-02"));
    if let Some(c2) = cloud02 {
        assert_eq!(c2["status"], "skipped", "CLOUD-02 must not run: {c2}");
    }
    let c3 = run.requirement("CLOUD-03");
    assert_eq!(c3["status"], "skipped", "{c3}");
    let reason = str_of(&c3["reason"]);
    assert!(
        reason.contains("CLOUD-02") || reason.contains("Azure"),
        "CLOUD-03 skip reason should say Azure did not run: `{reason}`"
    );
    assert!(state_list(&run, "azure").is_empty());
    assert_state_empty(&run);
}

/// The emulator's service role (crates/mock/src/aws/preflight.rs `SERVICE_ROLE_NAME`).
const SERVICE_ROLE: &str = "arn:aws:iam::123456789012:role/cloudtest-cloudformation";

/// `mock-stack-requests.json`: (action, role ARN) of every CreateStack and DeleteStack.
fn stack_requests(run: &Run) -> Vec<(String, Option<String>)> {
    cloudtest_e2e::read_json(&run.out().join("mock-stack-requests.json"))
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "mock-stack-requests.json is not a list\n{}",
                run.transcript()
            )
        })
        .iter()
        .map(|r| {
            (
                str_of(&r["action"]).to_string(),
                r["role_arn"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn service_role_is_carried_by_create_and_delete_stack() {
    let run = run_cloudtest(
        &[
            "run",
            "--provider",
            "aws",
            "--aws-cloudformation-role",
            SERVICE_ROLE,
        ],
        &[],
    );
    assert_exit(&run, 0);
    assert_torn_down(&run, "CLOUD-01");
    assert_state_empty(&run);
    let requests = stack_requests(&run);
    for action in ["CreateStack", "DeleteStack"] {
        let carried: Vec<&Option<String>> = requests
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, role)| role)
            .collect();
        assert!(
            !carried.is_empty(),
            "no {action} was served: {requests:?}\n{}",
            run.transcript()
        );
        assert!(
            carried.iter().all(|r| r.as_deref() == Some(SERVICE_ROLE)),
            "every {action} must carry RoleARN {SERVICE_ROLE}: {requests:?}"
        );
    }
    // The preflight simulated the service role's actions for that role, with the boundary
    // derived from its account (the emulated role creates roles only with a boundary).
    let preflight = std::fs::read_to_string(run.out().join("preflight.json")).unwrap_or_default();
    assert!(
        preflight.contains("the CloudFormation service role") && preflight.contains(SERVICE_ROLE),
        "preflight.json should name the service role: {preflight}\n{}",
        run.transcript()
    );
}

#[test]
fn without_a_service_role_no_role_arn_is_sent() {
    let run = run_cloudtest(&["run", "--provider", "aws"], &[]);
    assert_exit(&run, 0);
    let requests = stack_requests(&run);
    assert!(
        requests.iter().any(|(a, _)| a == "CreateStack")
            && requests.iter().any(|(a, _)| a == "DeleteStack"),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|(_, role)| role.is_none()),
        "no RoleARN without --aws-cloudformation-role: {requests:?}"
    );
}

#[test]
fn service_role_that_is_not_a_role_arn_is_a_usage_error() {
    for bad in [
        "cloudtest-cloudformation",
        "arn:aws:iam::123456789012:user/cloudtest",
        "arn:aws:iam::1234:role/cloudtest-cloudformation",
    ] {
        let run = run_cloudtest(&["run", "--aws-cloudformation-role", bad], &[]);
        assert_usage_error(&run, &["--aws-cloudformation-role", bad, "IAM role ARN"]);
        assert!(
            !run.out().join("results.json").exists(),
            "a refused run wrote results"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_file(
        dir.path(),
        "cloudtest.toml",
        "[aws]\ncloudformation_role_arn = \"role/cloudtest\"\n",
    );
    let run = run_cloudtest(&["run", "--config", &config], &[]);
    assert_usage_error(&run, &["aws.cloudformation_role_arn", "role/cloudtest"]);
}

#[test]
fn plan_prints_the_service_role_and_the_boundary() {
    let (run, _out) = plan(&["--aws-cloudformation-role", SERVICE_ROLE], &[]);
    assert_exit(&run, 0);
    let out = run.stdout();
    assert!(
        out.contains(&format!("aws CloudFormation service role: {SERVICE_ROLE}")),
        "{out}"
    );
    assert!(
        out.contains("arn:aws:iam::123456789012:policy/cloudtest-boundary"),
        "the boundary derived from the role's account:\n{out}"
    );
    let (run, _out) = plan(&[], &[]);
    assert!(
        !run.stdout().contains("service role"),
        "no service role line without one:\n{}",
        run.stdout()
    );
}

// ------------------------------------------------------------------------- skip guards (live)

#[test]
fn live_run_without_credentials_tests_nothing_and_exits_2() {
    let run = run_cloudtest(&["run", "--mode", "live"], &[]);
    let err = run.stderr();
    assert_usage_error(&run, &["nothing was tested"]);
    for looked_for in ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AZURE_SUBSCRIPTION_ID"] {
        assert!(
            err.contains(looked_for),
            "stderr should say it looked for {looked_for}: {err}"
        );
    }
}

#[test]
fn live_run_naming_aws_without_credentials_exits_2() {
    let run = run_cloudtest(&["run", "--mode", "live", "--provider", "aws"], &[]);
    assert_usage_error(
        &run,
        &[
            "--provider aws",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "~/.aws/credentials",
        ],
    );
}

#[test]
fn live_run_refuses_mock_only_flags() {
    let run = run_cloudtest(&["run", "--mode", "live", "--scenario", "x"], &[]);
    assert_usage_error(&run, &["--scenario", "mock mode"]);
}

/// `plan` never calls a cloud; its output dir goes to a temporary directory.
fn plan(extra: &[&str], env: &[(&str, &str)]) -> (Run, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let out_arg = out.path().to_string_lossy().into_owned();
    let mut args = vec!["plan", "--no-gap-doc", "--out", out_arg.as_str()];
    args.extend_from_slice(extra);
    (run_cloudtest(&args, env), out)
}

fn plan_line<'a>(stdout: &'a str, id: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("plan prints no {id} line:\n{stdout}"))
}

#[test]
fn plan_live_without_credentials_prints_skip_verdicts() {
    let (run, _out) = plan(&["--mode", "live"], &[]);
    assert_exit(&run, 2);
    let out = run.stdout();
    assert!(
        plan_line(&out, "CLOUD-01").contains("skipped: no AWS credentials"),
        "{out}"
    );
    assert!(
        plan_line(&out, "CLOUD-02").contains("skipped: no Azure credentials"),
        "{out}"
    );
    assert!(plan_line(&out, "CLOUD-03").contains("skipped"), "{out}");
    assert!(out.contains("nothing would be tested"), "{out}");
}

#[test]
fn plan_live_with_aws_credentials_runs_aws_only() {
    // Fake credentials, and only `plan`, which builds no client and calls nothing.
    let (run, _out) = plan(
        &["--mode", "live"],
        &[
            ("AWS_ACCESS_KEY_ID", "cloudtest-e2e-not-a-real-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "e2e-fake-secret-not-a-real-key"),
        ],
    );
    assert_exit(&run, 0);
    let out = run.stdout();
    let aws = plan_line(&out, "CLOUD-01");
    assert!(
        aws.contains("will run") && aws.contains("AWS_ACCESS_KEY_ID"),
        "{out}"
    );
    assert!(
        plan_line(&out, "CLOUD-02").contains("skipped: no Azure credentials"),
        "{out}"
    );
    assert!(
        plan_line(&out, "CLOUD-03").contains("skipped"),
        "CLOUD-03 cannot run with Azure skipped:\n{out}"
    );
    assert!(
        !out.contains("e2e-fake-secret"),
        "plan printed the secret key"
    );
}

// ------------------------------------------------------------------------- configuration

#[test]
fn config_unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(
        dir.path(),
        "cloudtest.toml",
        "[run]\nmax_parallel = 2\nbogus_key = 1\n",
    );
    let run = run_cloudtest(&["run", "--config", &cfg], &[]);
    assert_usage_error(&run, &["bogus_key", &cfg]);
}

#[test]
fn config_wrong_type_names_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(
        dir.path(),
        "cloudtest.toml",
        "[run]\nmax_parallel = \"eight\"\n",
    );
    let run = run_cloudtest(&["run", "--config", &cfg], &[]);
    assert_usage_error(&run, &["max_parallel", &cfg]);
}

#[test]
fn config_missing_file_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir
        .path()
        .join("missing.toml")
        .to_string_lossy()
        .into_owned();
    let run = run_cloudtest(&["run", "--config", &missing], &[]);
    assert_usage_error(&run, &[&missing]);
}

#[test]
fn health_timeout_env_that_is_not_a_number_is_a_usage_error() {
    let run = run_cloudtest(&["run"], &[("CLOUDTEST_HEALTH_TIMEOUT", "abc")]);
    assert_usage_error(&run, &["CLOUDTEST_HEALTH_TIMEOUT", "abc"]);
}

#[test]
fn health_timeout_env_sets_the_health_deadline() {
    let run = run_cloudtest(
        &["run", "--scenario", "health-timeout"],
        &[("CLOUDTEST_HEALTH_TIMEOUT", "1")],
    );
    assert_exit(&run, 1);
    for id in ["CLOUD-01", "CLOUD-02"] {
        let detail = assert_phase(&run, id, "health", "failed");
        assert!(
            detail.contains("within 1"),
            "{id}: `{detail}` should use the 1 s limit"
        );
        assert!(
            detail.contains("CLOUDTEST_HEALTH_TIMEOUT"),
            "{id}: `{detail}` should name CLOUDTEST_HEALTH_TIMEOUT"
        );
        // The 1 s limit, not the mock default: the phase ends well before 5 s.
        let ms = run.phase(id, "health")["duration_ms"]
            .as_u64()
            .unwrap_or(u64::MAX);
        assert!(ms < 4000, "{id}: health took {ms} ms with a 1 s limit");
        assert_torn_down(&run, id);
    }
    assert_state_empty(&run);

    let (plan_run, _out) = plan(&[], &[("CLOUDTEST_HEALTH_TIMEOUT", "1")]);
    let health = plan_run
        .stdout()
        .lines()
        .find(|l| l.trim_start().starts_with("health "))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        health.contains("1s") && health.contains("CLOUDTEST_HEALTH_TIMEOUT"),
        "plan should show the health deadline and its origin: `{health}`\n{}",
        plan_run.transcript()
    );
}

// ------------------------------------------------------------------------- keep on failure

fn keep_on_failure(scenario: &str, extra: &[&str], aws_kept: &str, azure_kept: &str) {
    let run_id = format!("kept-{scenario}");
    let mut args = vec![
        "run",
        "--scenario",
        scenario,
        "--keep-on-failure",
        "--run-id",
        &run_id,
    ];
    args.extend_from_slice(extra);
    let run = run_cloudtest(&args, &[]);
    assert_exit(&run, 1);
    for id in ["CLOUD-01", "CLOUD-02"] {
        let detail = assert_phase(&run, id, "teardown", "skipped");
        assert!(
            detail.contains("--keep-on-failure") && detail.contains("NOT torn down"),
            "{id}: `{detail}` should say loudly that nothing was torn down"
        );
        let deployment = str_of(&run.requirement(id)["facts"]["deployment_id"]).to_string();
        assert!(
            detail.contains(&deployment),
            "{id}: `{detail}` should name {deployment}"
        );
        assert_phase(&run, id, "leak_check", "skipped");
        // The summary repeats what was kept and the command that removes it.
        let provider = if id == "CLOUD-01" { "aws" } else { "azure" };
        let removal =
            format!("`cloudtest sweep --provider {provider} --run-id {run_id} --include-kept`");
        assert!(
            detail.contains(&removal),
            "{id}: `{detail}` should name {removal}"
        );
        // results.json says the same as facts, for tools that clean up after such runs.
        let kept = &run.requirement(id)["facts"]["kept"];
        assert_eq!(str_of(&kept["deployment"]), deployment, "{id}: {kept}");
        assert_eq!(
            format!("`{}`", str_of(&kept["remove_with"])),
            removal,
            "{id}: {kept}"
        );
        assert!(
            run.stdout()
                .lines()
                .any(|l| l.starts_with(&format!("KEPT {id} ")) && l.contains(&removal)),
            "{id}: the summary should list what was kept\n{}",
            run.transcript()
        );
    }
    assert!(
        run.stderr().contains("!!!") && run.stderr().contains("NOT torn down"),
        "the kept deployment must be announced on stderr\n{}",
        run.transcript()
    );
    for (key, kind) in [("aws", aws_kept), ("azure", azure_kept)] {
        let kept = state_list(&run, key);
        assert!(
            kept.iter().any(|r| r["type"] == kind),
            "mock-state.json `{key}` should still hold a {kind}: {kept:?}"
        );
    }
    let stack = run.requirement("CLOUD-01")["facts"]["deployment_id"].clone();
    assert!(
        state_list(&run, "aws").iter().any(|r| r["id"] == stack),
        "the kept stack {stack} should be in mock-state.json"
    );
    // What was kept carries the run id given and the keep tag, so `cloudtest sweep
    // --run-id` leaves it until it expires.
    assert_eq!(run.results()["run_id"], run_id.as_str());
    for (key, kind) in [
        ("aws", "AWS::CloudFormation::Stack"),
        ("azure", "Microsoft.Resources/resourceGroups"),
    ] {
        let kept = state_list(&run, key);
        let holder = kept.iter().find(|r| r["type"] == kind);
        let tags = holder.map(|r| r["tags"].clone()).unwrap_or_default();
        assert_eq!(tags["cloudtest:run-id"], run_id.as_str(), "{key}: {kept:?}");
        assert_eq!(tags["cloudtest:keep"], "until-expiry", "{key}: {kept:?}");
    }
    assert_cloud03_not_passed(&run);
}

#[test]
fn keep_on_failure_after_create_fails_keeps_the_deployment() {
    keep_on_failure(
        "create-fails",
        &[],
        "AWS::CloudFormation::Stack",
        "Microsoft.Resources/resourceGroups",
    );
}

#[test]
fn keep_on_failure_after_health_timeout_keeps_the_servers() {
    keep_on_failure(
        "health-timeout",
        &["--deadline", "health=1s"],
        "AWS::EC2::Instance",
        "Microsoft.Compute/virtualMachines",
    );
}

// ------------------------------------------------------------------------- gap document

fn gap_doc_copy(dir: &Path) -> (std::path::PathBuf, String) {
    let original = std::fs::read_to_string(workspace_root().join("docs/GAP_ANALYSIS.md"))
        .expect("docs/GAP_ANALYSIS.md");
    let path = dir.join("GAP_ANALYSIS.md");
    std::fs::write(&path, &original).expect("copy gap document");
    (path, original)
}

#[test]
fn gap_doc_region_is_replaced_and_nothing_else_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, before) = gap_doc_copy(dir.path());
    let begin = before
        .find(GAP_BEGIN)
        .expect("begin marker in the repository copy");
    let end = before
        .find(GAP_END)
        .expect("end marker in the repository copy");
    let (head, tail) = (&before[..begin], &before[end + GAP_END.len()..]);

    let run = run_cloudtest(&["run", "--gap-doc", &path.to_string_lossy()], &[]);
    assert_exit(&run, 0);
    let after = std::fs::read_to_string(&path).expect("gap document after the run");
    assert!(
        after.starts_with(head),
        "text before the begin marker changed"
    );
    assert!(after.ends_with(tail), "text after the end marker changed");
    assert_eq!(after.matches(GAP_BEGIN).count(), 1);
    assert_eq!(after.matches(GAP_END).count(), 1);
    let new_begin = after.find(GAP_BEGIN).expect("begin marker kept");
    let new_end = after.find(GAP_END).expect("end marker kept");
    let region = &after[new_begin..new_end];
    let run_id = run.results()["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!run_id.is_empty());
    for needle in [run_id.as_str(), "CLOUD-01", "CLOUD-02", "CLOUD-03"] {
        assert!(
            region.contains(needle),
            "the results region should hold `{needle}`:\n{region}"
        );
    }
}

#[test]
fn gap_doc_with_two_begin_markers_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, original) = gap_doc_copy(dir.path());
    let mut lines: Vec<&str> = original.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains(GAP_BEGIN))
        .expect("begin marker");
    lines.insert(first + 2, GAP_BEGIN);
    let broken = lines.join("\n") + "\n";
    std::fs::write(&path, &broken).expect("write broken copy");
    // 1-based line numbers of both begin markers.
    let (l1, l2) = (first + 1, first + 3);

    let run = run_cloudtest(&["run", "--gap-doc", &path.to_string_lossy()], &[]);
    assert_usage_error(&run, &[&l1.to_string(), &l2.to_string(), GAP_BEGIN]);
    assert!(
        !run.stderr().contains("create started"),
        "something was deployed\n{}",
        run.transcript()
    );
    let after = std::fs::read(&path).expect("read back");
    assert_eq!(
        after,
        broken.as_bytes(),
        "the broken gap document must be left byte-identical"
    );
}

// ------------------------------------------------------------------------- secrets

const KNOWN_SECRET: &str = "Xq7-known-secret-value-4242-abcdef";

#[test]
fn admin_password_reaches_no_output_even_at_trace_level() {
    let run = run_cloudtest(
        &["run"],
        &[
            ("CLOUDTEST_ADMIN_PASSWORD", KNOWN_SECRET),
            ("RUST_LOG", "trace"),
        ],
    );
    // The password was used: the GUI accepted it on both clouds.
    for id in ["CLOUD-01", "CLOUD-02"] {
        assert_phase(&run, id, "health", "passed");
    }
    assert!(
        !run.stdout().contains(KNOWN_SECRET),
        "stdout holds the admin password"
    );
    assert!(
        !run.stderr().contains(KNOWN_SECRET),
        "stderr holds the admin password"
    );
    let files = files_under(run.out());
    assert!(files.len() >= 5, "expected the outputs, found {files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("read output");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(KNOWN_SECRET),
            "{} holds the admin password",
            file.display()
        );
    }
}

fn keys_containing(v: &Value, needle: &str, path: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k.to_ascii_lowercase().contains(needle) {
                    found.push(here.clone());
                }
                keys_containing(child, needle, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                keys_containing(child, needle, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn generated_password_is_not_in_results() {
    let run = run_cloudtest(&["run"], &[]);
    assert_exit(&run, 0);
    let mut found = Vec::new();
    keys_containing(&run.results(), "password", "", &mut found);
    assert!(
        found.is_empty(),
        "results.json has password-like keys: {found:?}"
    );
    let text = std::fs::read_to_string(run.out().join("results.json")).expect("results.json");
    assert!(
        !text.contains("AdminPassword="),
        "results.json holds an AdminPassword value"
    );
}

/// With one fixed admin password, each lifecycle must still see only its own client.
#[test]
fn fixed_admin_password_keeps_the_clouds_apart() {
    let run = run_cloudtest(&["run"], &[("CLOUDTEST_ADMIN_PASSWORD", KNOWN_SECRET)]);
    assert_exit(&run, 0);
    for id in ["CLOUD-01", "CLOUD-02"] {
        assert_eq!(run.requirement(id)["facts"]["enrolled_clients"], 1, "{id}");
    }
    assert_eq!(
        run.requirement("CLOUD-03")["status"],
        "passed",
        "{}",
        run.transcript()
    );
}

/// Outside a checkout the binary uses the templates compiled into it, and says so.
#[test]
fn runs_from_any_directory_with_the_embedded_templates() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = elsewhere.path().join("out");
    let plan = cloudtest_e2e::command(&["plan"])
        .current_dir(elsewhere.path())
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{text}");
    assert!(
        text.contains("templates-cfn/velociraptor.yaml (embedded in the binary)"),
        "{text}"
    );
    assert!(
        text.contains("templates-arm/velociraptor.json (embedded in the binary)"),
        "{text}"
    );
    let run = cloudtest_e2e::command(&["run", "--no-gap-doc", "--out"])
        .arg(&out)
        .current_dir(elsewhere.path())
        .output()
        .expect("run");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join("results.json").is_file());

    // From the checkout, the working-directory copy is used.
    let here = cloudtest_e2e::command(&["plan"]).output().expect("plan");
    let text = String::from_utf8_lossy(&here.stdout);
    assert!(
        text.contains("templates-cfn/velociraptor.yaml (working directory)"),
        "{text}"
    );
}

// ------------------------------------------------------------------------- credentials

/// Issue 16 §1: the emulated Entra ID issues 1-second tokens, and a CLOUD-02 lifecycle
/// lasting several seconds passes with the credential the GitHub workflow uses: a fresh
/// (emulated) GitHub ID token and a new access token at each renewal. The ARM emulator
/// refuses any token past its `exp` (crates/azure/tests/credentials.rs shows a token that
/// is not renewed being refused), so passing proves the renewals.
#[test]
fn a_lifecycle_longer_than_three_token_lifetimes_passes_with_github_oidc() {
    let run = run_cloudtest(
        &[
            "run",
            "--provider",
            "azure",
            "--azure-credential",
            "github-oidc",
            "--mock-token-lifetime",
            "1s",
            "--mock-latency",
            "1s",
        ],
        &[],
    );
    assert_exit(&run, 0);
    let r = run.requirement("CLOUD-02");
    assert_eq!(r["status"], "passed", "{r}");
    let total_ms: u64 = r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["duration_ms"].as_u64())
        .sum();
    assert!(
        total_ms > 3_000,
        "the lifecycle must outlive three 1 s tokens; it took {total_ms} ms"
    );
    let calls = read_json(&run.out().join("mock-calls.json"));
    let count = |key: &str| calls[key].as_u64().unwrap_or(0);
    assert!(
        count("entra:Token") >= 3 && count("github:IdToken") >= 3,
        "each renewal asks GitHub, then Entra: {calls}"
    );
    assert!(
        run.stdout()
            .contains("azure credential: GitHub OIDC (ACTIONS_ID_TOKEN_REQUEST_URL) (--azure-credential (or CLOUDTEST_AZURE_CREDENTIAL) = github-oidc;"),
        "the run names its credential source\n{}",
        run.transcript()
    );
    assert_state_empty(&run);
}

#[test]
fn an_unknown_azure_credential_is_a_usage_error_naming_the_input_and_the_choices() {
    let run = run_cloudtest(&["run", "--azure-credential", "oidc"], &[]);
    assert_usage_error(
        &run,
        &[
            "--azure-credential",
            "`oidc`",
            "auto, cli, secret, workload, github-oidc, managed-identity",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_file(
        dir.path(),
        "cloudtest.toml",
        "[azure]\ncredential = \"az-cli\"\n",
    );
    let run = run_cloudtest(&["run", "--config", &config], &[]);
    assert_usage_error(&run, &["[azure] credential in", "`az-cli`", "github-oidc"]);
    // The emulator serves client credentials only.
    let run = run_cloudtest(&["run", "--azure-credential", "cli"], &[]);
    assert_usage_error(&run, &["--azure-credential", "mock mode"]);
    let run = run_cloudtest(
        &["run", "--mode", "live", "--mock-token-lifetime", "5s"],
        &[],
    );
    assert_usage_error(&run, &["--mock-token-lifetime", "mock mode"]);
}

#[test]
fn plan_live_names_the_azure_credential_and_why() {
    let azure = [
        (
            "AZURE_SUBSCRIPTION_ID",
            "00000000-0000-0000-0000-000000000001",
        ),
        ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000002"),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000003"),
    ];
    // github-oidc without GitHub's variables: Azure is skipped, saying what is missing.
    let (run, _out) = plan(
        &[
            "--mode",
            "live",
            "--provider",
            "aws",
            "--azure-credential",
            "github-oidc",
        ],
        &azure,
    );
    let out = run.stdout();
    assert!(!out.contains("CLOUD-02"), "{out}");
    let (run, _out) = plan(
        &["--mode", "live", "--azure-credential", "github-oidc"],
        &azure,
    );
    assert_exit(&run, 2);
    let out = run.stdout();
    assert!(
        plan_line(&out, "CLOUD-02").contains("ACTIONS_ID_TOKEN_REQUEST_URL"),
        "{out}"
    );

    let mut env = azure.to_vec();
    env.push((
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "https://example.invalid/token?api-version=2.0",
    ));
    env.push(("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "e2e-fake-request-token"));
    let (run, _out) = plan(
        &["--mode", "live", "--azure-credential", "github-oidc"],
        &env,
    );
    assert_exit(&run, 0);
    let out = run.stdout();
    assert!(
        plan_line(&out, "CLOUD-02").contains("will run (GitHub OIDC"),
        "{out}"
    );
    assert!(
        out.contains("azure credential: GitHub OIDC (ACTIONS_ID_TOKEN_REQUEST_URL) (--azure-credential (or CLOUDTEST_AZURE_CREDENTIAL) = github-oidc; a fresh GitHub ID token"),
        "{out}"
    );
    assert!(!out.contains("e2e-fake-request-token"), "{out}");

    // `auto` keeps the chain and says which source leads it.
    let mut env = azure.to_vec();
    env.push(("AZURE_CLIENT_SECRET", "e2e-fake-client-secret"));
    let (run, _out) = plan(&["--mode", "live"], &env);
    let out = run.stdout();
    assert!(
        out.contains("(default = auto; the first source present in azure_identity's chain order, here client secret"),
        "{out}"
    );
    assert!(!out.contains("e2e-fake-client-secret"), "{out}");
}
