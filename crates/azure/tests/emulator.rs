//! The provider against the embedded ARM emulator playing Azure's hostile parts: a
//! deployment that outlives wait_ready, a group deletion that outlives teardown, VMs that
//! shut down slowly unless force-deleted. Time is paused: the emulator's latency and the
//! phase deadlines run on tokio's clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloudtest_azure::{ArmConnection, ArmProvider, DeploymentPlan};
use cloudtest_core::{
    Backoff, LifecycleId, LifecyclePlan, NullSink, Phase, PhaseContext, PhaseErrorKind, Provider,
    RequirementId, ResourceKind, Secret,
};
use cloudtest_mock::arm::{ArmEmulator, Refusal};
use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::{EmulatorContext, EmulatorState, FaultPlan, Scenario};
use serde_json::Value;

const RUN: &str = "em1";

fn template() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../templates-arm/velociraptor.json");
    let text = std::fs::read_to_string(&path).expect("ARM template");
    serde_json::from_str(&text).expect("template is JSON")
}

async fn emulator(scenario: Scenario, latency: Duration) -> ArmEmulator {
    ArmEmulator::start(EmulatorContext {
        scenario,
        latency,
        faults: Arc::new(FaultPlan::default()),
        servers: Arc::new(RecordingServers::default()),
    })
    .await
    .expect("emulator starts")
}

fn provider(arm: &ArmEmulator) -> ArmProvider {
    let endpoint = url::Url::parse(&arm.endpoint()).expect("url");
    let conn = ArmConnection::with_static_token(arm.subscription_id(), endpoint, "t");
    let plan = DeploymentPlan {
        common: LifecyclePlan {
            run_id: RUN.into(),
            region: "eastus".into(),
            template_path: "templates-arm/velociraptor.json".into(),
            parameters: BTreeMap::from([
                ("frontendPort".to_string(), "18000".to_string()),
                ("guiPort".to_string(), "18889".to_string()),
            ]),
            admin_user: "cloudtest-admin".into(),
            admin_password: Secret::new("Generated-Password-0123456789"),
            velociraptor_version: "0.77.2".into(),
            velociraptor_sha256: None,
            allowed_cidr: "198.51.100.7/32".into(),
            use_spot: false,
            expires_at: chrono::Utc::now() + chrono::Duration::hours(6),
            poll: Backoff::new(Duration::from_millis(200), Duration::from_secs(2)),
        },
        template: template(),
    };
    ArmProvider::new(conn, plan).expect("provider")
}

fn cx(phase: Phase, budget: Duration) -> PhaseContext {
    PhaseContext::new(
        LifecycleId::new(RequirementId::Cloud02, "eastus"),
        phase,
        budget,
        tokio::time::Instant::now(),
        Arc::new(NullSink),
    )
}

fn remaining(arm: &ArmEmulator) -> Vec<String> {
    arm.remaining()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A deployment still running at wait_ready's deadline is cancelled before the group
/// DELETE; otherwise it goes on creating resources after the group is gone.
#[tokio::test(start_paused = true)]
async fn a_deployment_that_outlives_wait_ready_is_cancelled_and_nothing_is_left() {
    let arm = emulator(Scenario::SlowDeployment, Duration::from_secs(5)).await;
    let mut p = provider(&arm);
    p.create(&cx(Phase::Create, Duration::from_secs(60)))
        .await
        .expect("create");
    let err = p
        .wait_ready(&cx(Phase::WaitReady, Duration::from_secs(60)))
        .await
        .expect_err("the deployment outlives wait_ready");
    assert_eq!(err.kind, PhaseErrorKind::Failed, "{err}");
    let td = p
        .teardown(&cx(Phase::Teardown, Duration::from_secs(120)))
        .await
        .expect("teardown");
    assert_eq!(td.retries, 0);
    let leaks = p
        .leak_check(&cx(Phase::LeakCheck, Duration::from_secs(30)))
        .await
        .expect("leak check");
    assert!(leaks.remaining.is_empty(), "{:?}", leaks.remaining);
    assert!(remaining(&arm).is_empty(), "{:?}", remaining(&arm));
}

/// VMs are force-deleted with the group (`forceDeletionTypes`): a group holding VMs goes
/// within one latency, not the two a graceful shutdown takes in the emulator.
#[tokio::test(start_paused = true)]
async fn the_group_delete_force_deletes_vms_and_fits_a_short_teardown() {
    let arm = emulator(Scenario::Healthy, Duration::from_secs(20)).await;
    let mut p = provider(&arm);
    p.create(&cx(Phase::Create, Duration::from_secs(60)))
        .await
        .expect("create");
    p.wait_ready(&cx(Phase::WaitReady, Duration::from_secs(120)))
        .await
        .expect("ready");
    let td = p
        .teardown(&cx(Phase::Teardown, Duration::from_secs(30)))
        .await
        .expect("a forced delete fits 30 s with a 20 s latency");
    assert!(
        td.resources_deleted
            .iter()
            .any(|r| r.cloud_type == "Microsoft.Compute/virtualMachines"),
        "{:?}",
        td.resources_deleted
    );
    assert!(remaining(&arm).is_empty(), "{:?}", remaining(&arm));
}

/// A group ARM is still deleting at the teardown deadline is reported as that, with the
/// sweep command, and the leak check lists the group once instead of its contents.
#[tokio::test(start_paused = true)]
async fn a_group_still_deleting_at_the_deadline_is_named_with_the_sweep_command() {
    let arm = emulator(Scenario::Healthy, Duration::from_secs(60)).await;
    let mut p = provider(&arm);
    p.create(&cx(Phase::Create, Duration::from_secs(60)))
        .await
        .expect("create");
    p.wait_ready(&cx(Phase::WaitReady, Duration::from_secs(300)))
        .await
        .expect("ready");
    let err = p
        .teardown(&cx(Phase::Teardown, Duration::from_secs(20)))
        .await
        .expect_err("deletion takes 60 s");
    for part in [
        "cloudtest-em1",
        "still Deleting",
        "cloudtest sweep --provider azure --run-id em1",
    ] {
        assert!(
            err.message.contains(part),
            "`{}` lacks `{part}`",
            err.message
        );
    }
    let leaks = p
        .leak_check(&cx(Phase::LeakCheck, Duration::from_secs(30)))
        .await
        .expect("leak check");
    assert_eq!(leaks.remaining.len(), 1, "{:?}", leaks.remaining);
    assert_eq!(leaks.remaining[0].kind, ResourceKind::ResourceGroup);
    assert_eq!(leaks.remaining[0].sku.as_deref(), Some("Deleting"));
}

/// ARM's pre-flight refusals arrive on the deployment PUT as `InvalidTemplateDeployment`
/// with the cause nested in `details[]`: the innermost code and message are reported, as a
/// failed requirement (the create was attempted), and teardown still leaves nothing.
#[tokio::test(start_paused = true)]
async fn preflight_refusals_name_their_innermost_cause_as_a_failure() {
    let arm = emulator(Scenario::Healthy, Duration::ZERO).await;
    for refusal in Refusal::ALL {
        arm.refuse_deployments(Some(refusal));
        let mut p = provider(&arm);
        let err = p
            .create(&cx(Phase::Create, Duration::from_secs(60)))
            .await
            .expect_err("refused");
        assert_eq!(err.kind, PhaseErrorKind::Failed, "{refusal:?}: {err}");
        assert!(
            err.message.contains(&format!("{}: ", refusal.code())),
            "{refusal:?}: {}",
            err.message
        );
        assert!(
            err.message.contains("InvalidTemplateDeployment"),
            "{}",
            err.message
        );
        // The inner message, not the outer "not valid according to the validation procedure".
        assert!(
            !err.message.contains("validation procedure"),
            "{}",
            err.message
        );
        p.teardown(&cx(Phase::Teardown, Duration::from_secs(60)))
            .await
            .expect("teardown");
        assert!(remaining(&arm).is_empty(), "{:?}", remaining(&arm));
    }
}

/// The boot scripts carry the admin password: each CustomScript command pipes the decoded
/// script into bash (no copy written to disk), wrapped in one `{ ...; } < /dev/null` group so
/// bash reads all of it before running it and no command in it can read the rest as input.
#[test]
fn boot_scripts_are_piped_to_bash_and_never_written_to_disk() {
    let template = template();
    let commands: Vec<String> = template["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["properties"]["protectedSettings"]["commandToExecute"].as_str())
        .map(str::to_string)
        .collect();
    assert_eq!(commands.len(), 2, "server and client extensions");
    for c in &commands {
        assert!(
            c.starts_with("[format('echo {0} | base64 -d | bash', base64(concat('{\\n', "),
            "{c}"
        );
        assert!(c.ends_with(", '\\n} < /dev/null\\n')))]"), "{c}");
        assert!(!c.contains("/root/"), "no file under /root: {c}");
        assert!(!c.contains(" > /"), "no redirect to a file: {c}");
    }
    for r in template["resources"].as_array().expect("resources") {
        assert!(
            r["properties"]["settings"]["commandToExecute"].is_null(),
            "commands with secrets stay in protectedSettings"
        );
    }
}

/// Before teardown of a failed lifecycle: the failed deployment operations with their
/// innermost error, and each VM's instance view with the CustomScript status message.
#[tokio::test(start_paused = true)]
async fn evidence_of_a_failed_deployment_names_the_cause_and_shows_the_vm_views() {
    let arm = emulator(Scenario::CreateFails, Duration::ZERO).await;
    let mut p = provider(&arm);
    p.create(&cx(Phase::Create, Duration::from_secs(60)))
        .await
        .expect("create");
    p.wait_ready(&cx(Phase::WaitReady, Duration::from_secs(60)))
        .await
        .expect_err("create-fails");
    let items = p
        .collect_evidence(
            &cx(Phase::WaitReady, Duration::from_secs(30)),
            Phase::WaitReady,
        )
        .await;
    let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    let ops = &items
        .iter()
        .find(|i| i.name == "deployment-operations.txt")
        .unwrap_or_else(|| panic!("{names:?}"))
        .text;
    assert!(
        ops.contains("Failed") && ops.contains("SkuNotAvailable"),
        "{ops}"
    );
    assert!(ops.contains("Microsoft.Compute/virtualMachines"), "{ops}");
    let views: Vec<&str> = items
        .iter()
        .filter(|i| i.name.starts_with("vm-") && i.name.ends_with("-instance-view.txt"))
        .map(|i| i.text.as_str())
        .collect();
    assert!(!views.is_empty(), "{names:?}");
    assert!(
        views
            .iter()
            .any(|v| v.contains("PowerState/running") && v.contains("| [stdout]")),
        "{views:?}"
    );
    for i in &items {
        assert!(
            !i.text.contains("Generated-Password-0123456789"),
            "{}",
            i.name
        );
    }
    p.teardown(&cx(Phase::Teardown, Duration::from_secs(60)))
        .await
        .expect("teardown");
}
