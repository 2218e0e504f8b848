//! The Azure preflight against the ARM emulator: every check passes for the shipped role,
//! each preflight scenario fails the check it targets with a fix, a credential that cannot
//! produce a token fails identity, and nothing is created.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use cloudtest_azure::{ArmConnection, ArmPreflight, ArmPreflightPlan};
use cloudtest_core::{Check, CheckStatus};
use cloudtest_mock::arm::ArmEmulator;
use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::{EmulatorContext, EmulatorState, FaultPlan, Scenario};
use serde_json::Value;

const TEMPLATE: &str = include_str!("../../../templates-arm/velociraptor.json");

async fn emulator(scenario: Scenario) -> ArmEmulator {
    ArmEmulator::start(EmulatorContext {
        scenario,
        latency: Duration::ZERO,
        faults: Arc::new(FaultPlan::default()),
        servers: Arc::new(RecordingServers::default()),
    })
    .await
    .expect("emulator starts")
}

fn plan(use_spot: bool, parameters: BTreeMap<String, String>) -> ArmPreflightPlan {
    ArmPreflightPlan {
        location: "eastus".into(),
        template: serde_json::from_str::<Value>(TEMPLATE).expect("template"),
        parameters,
        use_spot,
    }
}

async fn run_with(scenario: Scenario, plan: ArmPreflightPlan) -> (Vec<Check>, ArmEmulator) {
    let arm = emulator(scenario).await;
    let conn = ArmConnection::with_static_token(
        arm.subscription_id(),
        url::Url::parse(&arm.endpoint()).expect("url"),
        &arm.bearer_token(),
    );
    let pf = ArmPreflight::new(conn).expect("preflight");
    let checks = pf.run(&plan).await;
    if scenario == Scenario::Healthy {
        assert!(pf.api_calls() >= 6, "{} calls", pf.api_calls());
    }
    (checks, arm)
}

async fn run(scenario: Scenario) -> Vec<Check> {
    run_with(scenario, plan(false, BTreeMap::new())).await.0
}

fn failed<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == name && c.status == CheckStatus::Fail)
        .unwrap_or_else(|| panic!("no failed {name} check in {checks:#?}"))
}

#[tokio::test]
async fn the_shipped_role_passes_every_check_and_nothing_is_created() {
    let (checks, arm) = run_with(Scenario::Healthy, plan(false, BTreeMap::new())).await;
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
    }
    let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
    for want in [
        "identity",
        "registration",
        "permissions",
        "capacity",
        "quota",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    let perms = checks
        .iter()
        .find(|c| c.check == "permissions")
        .expect("perms");
    assert!(perms.detail.contains("Policy"), "{}", perms.detail);
    assert!(arm.remaining().is_empty());
}

#[tokio::test]
async fn spot_needs_spot_capable_sizes_and_counts_low_priority_cores() {
    let b_series = run_with(Scenario::Healthy, plan(true, BTreeMap::new()))
        .await
        .0;
    let c = failed(&b_series, "spot");
    assert!(c.detail.contains("Standard_B2s"), "{c:#?}");
    let sizes: BTreeMap<String, String> = [
        ("serverVmSize".to_string(), "Standard_D2as_v5".to_string()),
        ("clientVmSize".to_string(), "Standard_D2as_v5".to_string()),
    ]
    .into();
    let d_series = run_with(Scenario::Healthy, plan(true, sizes)).await.0;
    assert!(d_series
        .iter()
        .any(|c| c.check == "spot" && c.status == CheckStatus::Ok));
    // Two 2-vCPU Spot VMs do not fit the emulated 3 low-priority vCPUs.
    let q = failed(&d_series, "quota");
    assert!(
        q.fix.contains("Low-priority") && q.fix.contains("need 4, have 3"),
        "{q:#?}"
    );
}

#[tokio::test]
async fn no_permission_lists_the_missing_action() {
    let checks = run(Scenario::NoPermission).await;
    let c = failed(&checks, "permissions");
    assert!(
        c.detail.contains("Microsoft.Compute/virtualMachines/write"),
        "{c:#?}"
    );
    assert!(
        c.fix
            .contains("grant Microsoft.Compute/virtualMachines/write"),
        "{c:#?}"
    );
}

#[tokio::test]
async fn quota_exhausted_names_family_region_need_and_have() {
    let checks = run(Scenario::QuotaExhausted).await;
    let c = failed(&checks, "quota");
    assert!(
        c.fix
            .contains("Standard BS Family vCPUs in eastus: need 3, have 0"),
        "{c:#?}"
    );
}

#[tokio::test]
async fn an_unregistered_provider_says_how_to_register_it() {
    let checks = run(Scenario::ProviderUnregistered).await;
    let c = failed(&checks, "registration");
    assert!(
        c.fix.contains("az provider register -n Microsoft.Compute"),
        "{c:#?}"
    );
    assert!(checks
        .iter()
        .any(|c| c.detail == "Microsoft.Network is Registered" && c.status == CheckStatus::Ok));
}

#[tokio::test]
async fn a_restricted_size_is_named_with_the_reason() {
    let checks = run(Scenario::SkuRestricted).await;
    let c = failed(&checks, "capacity");
    assert!(
        c.detail.contains("Standard_B2s") && c.detail.contains("NotAvailableForSubscription"),
        "{c:#?}"
    );
}

#[tokio::test]
async fn an_expired_token_fails_identity_and_stops_there() {
    let checks = run(Scenario::TokenExpired).await;
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0].status, CheckStatus::Fail);
    assert!(
        checks[0].detail.contains("ExpiredAuthenticationToken"),
        "{:#?}",
        checks[0]
    );
    assert!(checks[0].fix.contains("az login"));
}

/// A credential that cannot produce a token at all (an expired `az login`).
#[derive(Debug)]
struct NoToken;

#[async_trait]
impl TokenCredential for NoToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Err(azure_core::Error::message(
            azure_core::error::ErrorKind::Credential,
            "AADSTS700024: Client assertion is not within its valid time range.",
        ))
    }
    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_credential_without_a_token_names_its_source_and_calls_nothing() {
    let arm = emulator(Scenario::Healthy).await;
    let conn = ArmConnection {
        endpoint: Some(url::Url::parse(&arm.endpoint()).expect("url")),
        subscription_id: arm.subscription_id().into(),
        credential: Arc::new(NoToken),
        credential_source: "workload identity federation (AZURE_FEDERATED_TOKEN_FILE)".into(),
    };
    let pf = ArmPreflight::new(conn).expect("preflight");
    let checks = pf.run(&plan(false, BTreeMap::new())).await;
    assert_eq!(checks.len(), 1);
    assert!(
        checks[0].detail.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{:#?}",
        checks[0]
    );
    assert!(checks[0].detail.contains("AADSTS700024"));
    assert_eq!(pf.api_calls(), 0);
}
