//! All three emulators started together, wired to each other: what `cloudtest run --mode
//! mock` and `cloudtest mock serve` use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::arm::ArmEmulator;
use crate::aws::AwsEmulator;
use crate::faults::{FaultPlan, FaultSpec};
use crate::hooks::EmulatedServers;
use crate::scenario::{EmulatorContext, Scenario};
use crate::state::{self, EmulatorState};
use crate::velociraptor::VelociraptorEmulator;

/// How a mock cloud is started.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    pub scenario: Scenario,
    pub latency: Duration,
    pub faults: Vec<FaultSpec>,
    /// How long a `timeout` fault holds its response (default: 3 s, longer than the
    /// clients' mock-mode attempt timeouts).
    pub timeout_delay: Option<Duration>,
    /// `expires_in` of the access tokens the ARM emulator's token endpoint issues
    /// (default [`crate::arm::DEFAULT_TOKEN_LIFETIME`]).
    pub token_lifetime: Option<Duration>,
}

/// A running mock cloud.
pub struct MockCloud {
    pub aws: AwsEmulator,
    pub arm: ArmEmulator,
    pub velociraptor: Arc<VelociraptorEmulator>,
    pub faults: Arc<FaultPlan>,
}

impl MockCloud {
    pub async fn start(options: MockOptions) -> std::io::Result<MockCloud> {
        let faults = Arc::new(FaultPlan::new(
            options.faults,
            options.timeout_delay.unwrap_or(Duration::from_secs(3)),
        ));
        let placeholder: Arc<dyn EmulatedServers> =
            Arc::new(crate::hooks::RecordingServers::default());
        let base = EmulatorContext {
            scenario: options.scenario,
            latency: options.latency,
            faults: faults.clone(),
            servers: placeholder,
        };
        let velociraptor = VelociraptorEmulator::start(base.clone()).await?;
        let servers: Arc<dyn EmulatedServers> = velociraptor.clone();
        let ctx = EmulatorContext { servers, ..base };
        let aws = AwsEmulator::start(ctx.clone()).await?;
        let arm = ArmEmulator::start_with(
            ctx,
            crate::arm::ArmOptions {
                token_lifetime: options
                    .token_lifetime
                    .unwrap_or(crate::arm::DEFAULT_TOKEN_LIFETIME),
            },
        )
        .await?;
        Ok(MockCloud {
            aws,
            arm,
            velociraptor,
            faults,
        })
    }

    /// `mock-state.json`: every emulated resource still present, per emulator.
    pub fn state(&self) -> Value {
        let emulators: [&dyn EmulatorState; 3] = [&self.aws, &self.arm, self.velociraptor.as_ref()];
        state::snapshot(&emulators)
    }

    /// Writes `mock-state.json` into `dir`.
    pub fn write_state(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.state()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("mock-state.json"), text + "\n")
    }

    pub async fn stop(self) {
        self.aws.stop().await;
        self.arm.stop().await;
        self.velociraptor.stop().await;
    }
}
