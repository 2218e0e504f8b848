//! `cloudtest mock serve`: the emulators on their own, for the AWS CLI or any other tool.

use anyhow::{Context, Result};
use cloudtest_core::ExitCode;
use cloudtest_mock::{MockCloud, MockOptions, Scenario};

use crate::error::usage;
use crate::plan::parse_duration;

pub async fn serve(scenario: Option<String>, latency: Option<String>) -> Result<ExitCode> {
    let scenario: Scenario = match scenario {
        Some(s) => s
            .parse()
            .map_err(|e: String| usage(format!("--scenario: {e}")))?,
        None => Scenario::Healthy,
    };
    let latency = match latency {
        Some(s) => parse_duration(&s).map_err(|e| usage(format!("--mock-latency `{s}`: {e}")))?,
        None => std::time::Duration::ZERO,
    };
    let cloud = MockCloud::start(MockOptions {
        scenario,
        latency,
        ..Default::default()
    })
    .await
    .context("starting the emulators")?;
    let vr = &cloud.velociraptor;
    println!("# cloudtest mock cloud (scenario {scenario}); Ctrl-C stops it");
    println!("export AWS_ENDPOINT_URL={}", cloud.aws.endpoint());
    println!("export AWS_ACCESS_KEY_ID=mock AWS_SECRET_ACCESS_KEY=mock AWS_REGION=us-east-1");
    println!("# Azure Resource Manager (any bearer token whose JWT `exp` has not passed; tokens from POST <endpoint>/<tenant>/oauth2/v2.0/token):");
    println!("export CLOUDTEST_AZURE_ENDPOINT={}", cloud.arm.endpoint());
    println!("# Velociraptor: frontend https://127.0.0.1:{} GUI https://127.0.0.1:{} (server name VelociraptorServer)", vr.frontend_port(), vr.gui_port());
    println!("# CA certificate:\n{}", vr.ca_pem().trim_end());
    println!("# e.g.: aws cloudformation create-stack --stack-name demo --template-body file://templates-cfn/velociraptor.yaml ...");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let state = cloud.state();
    cloud.stop().await;
    println!(
        "{}",
        serde_json::to_string_pretty(&state).unwrap_or_default()
    );
    Ok(ExitCode::Success)
}
