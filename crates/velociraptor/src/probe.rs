//! [`VelociraptorProbe`]: the engine's [`ServerProbe`], used by every provider.

use async_trait::async_trait;
use cloudtest_core::{
    DeploymentFacts, EnrollmentFacts, HealthFacts, PhaseContext, PhaseError, ServerProbe,
};

use crate::enrollment::probe_enrollment;
use crate::health::probe_health;
use crate::progress::Progress;
use crate::settings::ProbeSettings;
use crate::target::Target;

/// Probes a deployed server over TLS pinned to the CA the deployment published.
#[derive(Debug, Clone, Default)]
pub struct VelociraptorProbe {
    settings: ProbeSettings,
}

impl VelociraptorProbe {
    pub fn new(settings: ProbeSettings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }
}

#[async_trait]
impl ServerProbe for VelociraptorProbe {
    async fn health(
        &self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<HealthFacts, PhaseError> {
        let target = Target::from_deployment(deployment, &self.settings).await?;
        let sink = |line: String| cx.progress(line);
        let progress = Progress::new(&sink);
        Ok(probe_health(&target, &self.settings, cx.deadline(), &progress).await?)
    }

    async fn enrollment(
        &self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<EnrollmentFacts, PhaseError> {
        let target = Target::from_deployment(deployment, &self.settings).await?;
        let sink = |line: String| cx.progress(line);
        let progress = Progress::new(&sink);
        Ok(probe_enrollment(&target, &self.settings, cx.deadline(), &progress).await?)
    }
}
