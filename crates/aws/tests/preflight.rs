//! The AWS preflight against the embedded emulator: every check passes in a healthy account,
//! each preflight scenario fails the check it targets with a fix, and nothing is created.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cloudtest_aws::{load_sdk_config, AwsConnection, AwsPreflight, AwsPreflightPlan};
use cloudtest_core::{Check, CheckStatus};
use cloudtest_mock::aws::AwsEmulator;
use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::{EmulatorContext, EmulatorState, FaultPlan, Scenario};

const TEMPLATE: &str = include_str!("../../../templates-cfn/velociraptor.yaml");

async fn preflight(scenario: Scenario, use_spot: bool) -> (Vec<Check>, u32, AwsEmulator) {
    preflight_with(scenario, use_spot, None, None).await
}

async fn preflight_with(
    scenario: Scenario,
    use_spot: bool,
    service_role_arn: Option<String>,
    permissions_boundary_arn: Option<String>,
) -> (Vec<Check>, u32, AwsEmulator) {
    let emulator = AwsEmulator::start(EmulatorContext {
        scenario,
        latency: Duration::ZERO,
        faults: Arc::new(FaultPlan::default()),
        servers: Arc::new(RecordingServers::default()),
    })
    .await
    .expect("emulator starts");
    let sdk = load_sdk_config(&AwsConnection {
        endpoint: Some(emulator.endpoint()),
        region: "us-east-1".into(),
        static_credentials: Some(("AKIDEXAMPLE".into(), "not-a-secret".into())),
        attempt_timeout: Duration::from_secs(2),
    })
    .await;
    let pf = AwsPreflight::new(&sdk, "us-east-1");
    let checks = pf
        .run(&AwsPreflightPlan {
            region: "us-east-1".into(),
            run_id: "20260105090000-abc123".into(),
            template_body: TEMPLATE.into(),
            parameters: BTreeMap::new(),
            use_spot,
            service_role_arn,
            permissions_boundary_arn,
        })
        .await;
    let calls = pf.api_calls();
    (checks, calls, emulator)
}

fn by_check<'a>(checks: &'a [Check], name: &str) -> Vec<&'a Check> {
    checks.iter().filter(|c| c.check == name).collect()
}

fn failed<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    by_check(checks, name)
        .into_iter()
        .find(|c| c.status == CheckStatus::Fail)
        .unwrap_or_else(|| panic!("no failed {name} check in {checks:#?}"))
}

#[tokio::test]
async fn a_healthy_account_passes_every_check_and_nothing_is_created() {
    for spot in [false, true] {
        let (checks, calls, emulator) = preflight(Scenario::Healthy, spot).await;
        for c in &checks {
            assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
        }
        let names: Vec<&str> = checks.iter().map(|c| c.check.as_str()).collect();
        for want in ["identity", "template", "permissions", "capacity", "quota"] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        assert_eq!(names.contains(&"spot"), spot, "{names:?}");
        // The session ARN was traded for the role's, path included.
        let perms = by_check(&checks, "permissions");
        assert_eq!(perms.len(), 2);
        assert!(
            perms[0].detail.contains("role/ci/cloudtest-ci"),
            "{}",
            perms[0].detail
        );
        assert!(calls >= 8, "{calls} calls");
        assert!(
            emulator.remaining().is_empty(),
            "{:?}",
            emulator.remaining()
        );
        let served = emulator.calls();
        assert!(!served.contains_key("aws:CreateStack"), "{served:?}");
    }
}

#[tokio::test]
async fn no_permission_names_the_denied_action_and_the_grant() {
    let (checks, _, _) = preflight(Scenario::NoPermission, false).await;
    let c = failed(&checks, "permissions");
    assert!(c.detail.contains("ec2:RunInstances"), "{c:#?}");
    assert!(c.fix.contains("grant ec2:RunInstances"), "{c:#?}");
}

#[tokio::test]
async fn quota_exhausted_says_how_many_vcpus_are_needed_and_how_to_ask() {
    let (checks, _, _) = preflight(Scenario::QuotaExhausted, false).await;
    let c = failed(&checks, "quota");
    assert!(c.detail.contains("L-1216C47A"), "{c:#?}");
    assert!(c.fix.contains("need 4, have 0"), "{c:#?}");
    let (spot, _, _) = preflight(Scenario::QuotaExhausted, true).await;
    assert!(failed(&spot, "quota").detail.contains("L-34B43A08"));
}

#[tokio::test]
async fn sku_restricted_names_the_type_no_zone_offers() {
    let (checks, _, _) = preflight(Scenario::SkuRestricted, false).await;
    let c = failed(&checks, "capacity");
    // The server size is offered in no zone of the region: named as the missing one.
    assert!(
        c.detail.contains(
            "no zone in us-east-1 offers all of t3.medium, t3.micro: t3.medium offered in none"
        ),
        "{c:#?}"
    );
}

#[tokio::test]
async fn an_expired_login_fails_identity_and_stops_there() {
    let (checks, _, _) = preflight(Scenario::TokenExpired, false).await;
    assert_eq!(checks.len(), 1, "{checks:#?}");
    let c = &checks[0];
    assert_eq!(
        (c.check.as_str(), c.status),
        ("identity", CheckStatus::Fail)
    );
    assert!(c.detail.contains("ExpiredToken"), "{c:#?}");
    assert!(c.fix.contains("aws sso login"), "{c:#?}");
}

#[tokio::test]
async fn scenarios_for_the_other_cloud_leave_aws_green() {
    let (checks, _, _) = preflight(Scenario::ProviderUnregistered, false).await;
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Ok),
        "{checks:#?}"
    );
}

#[tokio::test]
async fn a_service_role_is_simulated_for_what_cloudformation_creates() {
    let role = cloudtest_mock::aws::preflight::service_role_arn();
    let boundary = "arn:aws:iam::123456789012:policy/cloudtest-boundary".to_string();
    let (checks, _, _emulator) =
        preflight_with(Scenario::Healthy, false, Some(role.clone()), Some(boundary)).await;
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
    }
    let perms = by_check(&checks, "permissions");
    assert!(
        perms
            .iter()
            .any(|c| c.detail.contains("the CloudFormation service role")
                && c.detail.contains(&role)),
        "{perms:#?}"
    );
    // The caller passes the role: iam:PassRole is simulated among its own calls.
    assert!(
        perms.iter().any(|c| c.detail.contains("the caller")),
        "{perms:#?}"
    );

    // Without the boundary, the service role may not create the server's role.
    let (checks, _, _emulator) = preflight_with(Scenario::Healthy, false, Some(role), None).await;
    let fail = failed(&checks, "permissions");
    assert!(
        fail.detail.contains("iam:CreateRole") && fail.detail.contains("service role"),
        "{fail:#?}"
    );
}
