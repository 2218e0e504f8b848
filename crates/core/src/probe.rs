//! What the engine needs from a Velociraptor prober. `cloudtest-velociraptor` implements it;
//! the runner calls it for the health and enrollment phases.

use async_trait::async_trait;

use crate::facts::{DeploymentFacts, EnrollmentFacts, HealthFacts};
use crate::provider::{PhaseContext, PhaseError};

#[async_trait]
pub trait ServerProbe: Send + Sync {
    /// Polls until the server is healthy and its GUI enforces auth, or `cx.deadline()`.
    async fn health(
        &self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<HealthFacts, PhaseError>;

    /// Polls until the expected clients have enrolled and been interrogated, and checks their
    /// agent version against the deployed one, or `cx.deadline()`.
    async fn enrollment(
        &self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<EnrollmentFacts, PhaseError>;
}
