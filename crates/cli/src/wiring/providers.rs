//! Where mode turns into endpoints and credentials, once: the providers and probe built here
//! cannot tell a mock run from a live one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cloudtest_aws::{CloudFormationProvider, IdentityCheck, StackPlan};
use cloudtest_azure::{ArmProvider, DeploymentPlan};
use cloudtest_core::{Backoff, LifecyclePlan, Provider, ServerProbe};
use cloudtest_mock::{EmulatedServers, MockCloud, MockOptions, ServerDeployment};
use cloudtest_velociraptor::{ProbeSettings, VelociraptorProbe};

use crate::args::ProviderArg;
use crate::connect;
use crate::error::usage;
use crate::plan::{MockPlan, RunPlan};

use super::guards::Guards;

/// This machine's public address as a /32, for the template's AllowedCidr.
pub async fn discover_runner_cidr() -> Result<String> {
    let hint = "set --allowed-cidr or [aws]/[azure] allowed_cidr in cloudtest.toml";
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| {
            usage(format!(
                "cannot build an HTTP client to discover this machine's address ({e}); {hint}"
            ))
        })?;
    let text = client
        .get("https://checkip.amazonaws.com/")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| {
            usage(format!(
                "could not discover this machine's public address ({e}); {hint}"
            ))
        })?
        .text()
        .await
        .map_err(|e| {
            usage(format!(
                "could not read this machine's public address ({e}); {hint}"
            ))
        })?;
    let ip: std::net::Ipv4Addr = text.trim().parse().map_err(|_| {
        usage(format!(
            "checkip answered `{}`, not an IPv4 address; {hint}",
            text.trim()
        ))
    })?;
    Ok(format!("{ip}/32"))
}

/// The embedded emulators a mock plan asks for; none in live mode.
pub async fn start_mock(m: Option<&MockPlan>) -> Result<Option<MockCloud>> {
    let Some(m) = m else {
        return Ok(None);
    };
    let cloud = MockCloud::start(MockOptions {
        scenario: m.scenario,
        latency: m.latency,
        faults: m.faults.clone(),
        timeout_delay: None,
        token_lifetime: m.token_lifetime,
    })
    .await
    .context("starting the mock cloud")?;
    Ok(Some(cloud))
}

/// Polling in mock mode tracks the emulators' speed; live mode polls like a person would.
/// The mock cap is a tenth of the emulated latency: a wait ends at most ~10% late, and a run
/// of many lifecycles is not spent answering polls.
fn poll_backoff(plan: &RunPlan) -> Backoff {
    match &plan.mock {
        None => Backoff::CLOUD,
        Some(m) => mock_backoff(m.latency),
    }
}

fn mock_backoff(latency: Duration) -> Backoff {
    Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(50).max(latency / 10),
    )
}

/// One lifecycle's run id: the run's own, plus the region when a provider runs in several
/// (Azure resource-group names are global to a subscription; tags must not overlap).
fn lifecycle_run_id(plan: &RunPlan, regions: usize, region: &str) -> String {
    if regions > 1 {
        format!("{}-{region}", plan.run_id)
    } else {
        plan.run_id.clone()
    }
}

pub async fn build_providers(
    plan: &RunPlan,
    guards: &Guards,
    mock: Option<&MockCloud>,
) -> Result<Vec<Box<dyn Provider>>> {
    let mut out: Vec<Box<dyn Provider>> = Vec::new();
    // Lifecycle number, for per-lifecycle mock credentials (see RunPlan::lifecycle_user).
    let mut index = 0usize;
    let allowed_cidr = plan
        .allowed_cidr
        .clone()
        .unwrap_or_else(|| "127.0.0.1/32".into());
    if let (Some(aws), true) = (&plan.aws, guards.runnable.contains(&ProviderArg::Aws)) {
        let parameters = with_mock_ports(&aws.parameters, mock, "FrontendPort", "GuiPort");
        for region in &aws.regions {
            let admin_user = plan.lifecycle_user(index);
            index += 1;
            let sdk = connect::aws_sdk(region, aws.endpoint.clone(), mock).await;
            let admin_password = plan.lifecycle_password();
            let run_id = lifecycle_run_id(plan, aws.regions.len(), region);
            let stack_plan = StackPlan {
                common: LifecyclePlan {
                    run_id: run_id.clone(),
                    region: region.clone(),
                    template_path: aws.template_path.clone(),
                    parameters: parameters.clone(),
                    admin_user: admin_user.clone(),
                    admin_password: admin_password.clone(),
                    velociraptor_version: plan.velociraptor_version.clone(),
                    velociraptor_sha256: plan.velociraptor_sha256.clone(),
                    allowed_cidr: allowed_cidr.clone(),
                    use_spot: aws.use_spot,
                    expires_at: plan.expires_at,
                    poll: poll_backoff(plan),
                },
                template_body: aws.template_body.clone(),
                keep_on_failure: plan.keep_on_failure,
                cloudformation_role_arn: aws.cloudformation_role_arn.clone(),
                permissions_boundary_arn: aws.permissions_boundary_arn.clone(),
            };
            let mut provider = CloudFormationProvider::new(&sdk, stack_plan)
                .with_keep_until_expiry(plan.keep_on_failure);
            if let Some(endpoint) = &aws.endpoint {
                // An external endpoint (moto) answers GetConsoleOutput with canned text, not
                // the console of an instance that booted the server.
                provider = provider.with_identity_check(IdentityCheck::NotVerifiable(format!(
                    "{endpoint} does not serve the instances' real console output"
                )));
            }
            if let Some(source) = guards.sources.get(&ProviderArg::Aws) {
                provider = provider.with_credential_source(source.clone());
            }
            if let (Some(m), Some(mp)) = (mock, &plan.mock) {
                if mp.probe_via_mock {
                    provider = provider.with_output_overrides(mock_server_outputs(m));
                    // The external emulator boots no server: the embedded Velociraptor stands in
                    // for the one this stack would boot, with this lifecycle's admin login.
                    m.velociraptor.deploy(ServerDeployment {
                        deployment: format!("probe-via-mock:{run_id}"),
                        admin_user: admin_user.clone(),
                        admin_password: admin_password.expose().to_string(),
                        version: plan.velociraptor_version.clone(),
                        expected_clients: 1,
                    });
                }
            }
            out.push(Box::new(provider));
        }
    }
    if let (Some(az), true) = (&plan.azure, guards.runnable.contains(&ProviderArg::Azure)) {
        let parameters = with_mock_ports(&az.parameters, mock, "frontendPort", "guiPort");
        let connection = connect::plan_arm_connection(az, guards, mock)?;
        for location in &az.locations {
            let admin_user = plan.lifecycle_user(index);
            index += 1;
            let conn = connection.clone();
            let deployment_plan = DeploymentPlan {
                common: LifecyclePlan {
                    run_id: lifecycle_run_id(plan, az.locations.len(), location),
                    region: location.clone(),
                    template_path: az.template_path.clone(),
                    parameters: parameters.clone(),
                    admin_user: admin_user.clone(),
                    admin_password: plan.lifecycle_password(),
                    velociraptor_version: plan.velociraptor_version.clone(),
                    velociraptor_sha256: plan.velociraptor_sha256.clone(),
                    allowed_cidr: allowed_cidr.clone(),
                    use_spot: az.use_spot,
                    expires_at: plan.expires_at,
                    poll: poll_backoff(plan),
                },
                template: az.template.clone(),
            };
            let provider = ArmProvider::new(conn, deployment_plan)
                .map_err(|e| usage(format!("Azure provider for {location}: {e}")))?
                .with_keep_until_expiry(plan.keep_on_failure);
            out.push(Box::new(provider));
        }
    }
    Ok(out)
}

/// The template parameters from config, plus, in mock mode, the embedded Velociraptor's
/// ports under the template's own parameter names (a port the config sets wins).
fn with_mock_ports(
    configured: &BTreeMap<String, String>,
    mock: Option<&MockCloud>,
    frontend: &str,
    gui: &str,
) -> BTreeMap<String, String> {
    let mut parameters = configured.clone();
    if let Some(m) = mock {
        parameters
            .entry(frontend.into())
            .or_insert_with(|| m.velociraptor.frontend_port().to_string());
        parameters
            .entry(gui.into())
            .or_insert_with(|| m.velociraptor.gui_port().to_string());
    }
    parameters
}

/// The outputs a real deployment would publish, pointing at the embedded Velociraptor
/// emulator (for `--probe-via-mock` runs against an external cloud emulator).
fn mock_server_outputs(m: &MockCloud) -> BTreeMap<String, String> {
    let vr = &m.velociraptor;
    let mut o = BTreeMap::new();
    o.insert("ServerAddress".into(), "127.0.0.1".into());
    o.insert(
        "FrontendUrl".into(),
        format!("https://127.0.0.1:{}/", vr.frontend_port()),
    );
    o.insert(
        "GuiUrl".into(),
        format!("https://127.0.0.1:{}/", vr.gui_port()),
    );
    o.insert("CaCertificate".into(), vr.ca_pem());
    o.insert("PinnedServerName".into(), "VelociraptorServer".into());
    o
}

pub fn build_probe(plan: &RunPlan, mock: Option<&MockCloud>) -> Arc<dyn ServerProbe> {
    let settings = match (&plan.mock, mock) {
        (Some(m), Some(_)) => ProbeSettings {
            poll: mock_backoff(m.latency),
            request_timeout: Duration::from_secs(1),
            ..ProbeSettings::default()
        },
        _ => ProbeSettings::default(),
    };
    Arc::new(VelociraptorProbe::new(settings))
}
