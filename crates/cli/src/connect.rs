//! The one place a command's AWS and Azure connections are built (run, preflight, sweep,
//! prices): the endpoint (flag or config, else the embedded emulator in mock mode), the
//! emulator's stand-in credentials, and the SDK retry and per-attempt timeout rules of
//! `cloudtest_aws::load_sdk_config` and `ArmConnection`.

use std::time::Duration;

use anyhow::Result;
use aws_config::SdkConfig;
use cloudtest_aws::{load_sdk_config, AwsConnection};
use cloudtest_azure::{ArmConnection, CredentialChoice, CredentialPlan};
use cloudtest_core::skip::{Environment, ProcessEnvironment};
use cloudtest_mock::MockCloud;

use crate::error::usage;
use crate::plan::AzurePlan;
use crate::wiring::Guards;

/// The AWS emulator accepts any credentials; these make the SDK sign requests as usual.
const MOCK_ACCESS_KEY: &str = "cloudtest-mock";

/// Per-attempt timeout of one AWS call: the embedded emulator answers at once; AWS and
/// external endpoints get 30 s (moto takes seconds to create a stack).
fn aws_attempt_timeout(mock: bool, external_endpoint: bool) -> Duration {
    if mock && !external_endpoint {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(30)
    }
}

/// The SDK configuration for `region`: `endpoint` when given, else the embedded emulator's
/// in mock mode, else AWS's regional endpoint; the emulator's stand-in credentials in mock
/// mode, else the default credential chain.
pub async fn aws_sdk(
    region: &str,
    endpoint: Option<String>,
    mock: Option<&MockCloud>,
) -> SdkConfig {
    let attempt_timeout = aws_attempt_timeout(mock.is_some(), endpoint.is_some());
    let conn = AwsConnection {
        endpoint: endpoint.or_else(|| mock.map(|m| m.aws.endpoint())),
        region: region.to_string(),
        static_credentials: mock
            .map(|_| (MOCK_ACCESS_KEY.to_string(), MOCK_ACCESS_KEY.to_string())),
        attempt_timeout,
    };
    load_sdk_config(&conn).await
}

/// The ARM connection `run` and `preflight` use for a plan: its endpoint (flag or config,
/// else the emulator's in mock mode) and the credential the skip guards resolved.
pub fn plan_arm_connection(
    az: &AzurePlan,
    guards: &Guards,
    mock: Option<&MockCloud>,
) -> Result<ArmConnection> {
    let endpoint = match az
        .endpoint
        .clone()
        .or_else(|| mock.map(|m| m.arm.endpoint()))
    {
        Some(e) => Some(
            url::Url::parse(&e)
                .map_err(|err| usage(format!("--azure-endpoint `{e}` is not a URL: {err}")))?,
        ),
        None => None,
    };
    let credential = guards
        .azure_credential
        .as_ref()
        .ok_or_else(|| usage("Azure runs, but no credential source was resolved"))?;
    azure_connection(credential, az.subscription_id.clone(), endpoint, mock)
}

/// The Azure connection for one command: the emulator's token endpoint in mock mode,
/// Entra ID's public cloud otherwise (`auto` keeps azure_identity's chain exactly).
pub fn azure_connection(
    credential: &CredentialPlan,
    subscription: Option<String>,
    endpoint: Option<url::Url>,
    mock: Option<&MockCloud>,
) -> Result<ArmConnection> {
    match mock {
        Some(m) => {
            let authority = url::Url::parse(&m.arm.endpoint())
                .map_err(|e| usage(format!("the ARM emulator's endpoint is not a URL: {e}")))?;
            let endpoint = endpoint.unwrap_or_else(|| authority.clone());
            ArmConnection::emulated(m.arm.subscription_id(), endpoint, authority, credential)
                .map_err(|e| usage(e.to_string()))
        }
        None => {
            let subscription = subscription
                .or_else(|| ProcessEnvironment.var("AZURE_SUBSCRIPTION_ID"))
                .ok_or_else(|| {
                    usage("no Azure subscription: set AZURE_SUBSCRIPTION_ID or [azure] subscription_id")
                })?;
            let conn = if credential.choice == CredentialChoice::Auto {
                ArmConnection::live(subscription, endpoint, &ProcessEnvironment)
            } else {
                ArmConnection::live_with_plan(
                    subscription,
                    endpoint,
                    &ProcessEnvironment,
                    credential,
                )
            };
            conn.map_err(|e| usage(e.to_string()))
        }
    }
}
