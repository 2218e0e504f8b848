//! The provider trait: one method per lifecycle phase.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::time::Instant;

use crate::events::{EventSink, RunEvent, RunEventKind};
use crate::facts::{
    CreateFacts, DeploymentFacts, EnrollmentFacts, HealthFacts, LeakFacts, TeardownFacts,
};
use crate::phase::Phase;
use crate::probe::ServerProbe;
use crate::requirement::LifecycleId;

/// Whether a phase found the system under test wanting (`Failed`) or could not do its job
/// (`Error`: credentials, permissions, tool bug). Maps to the requirement's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseErrorKind {
    Failed,
    Error,
}

/// How a phase ended badly. `message` is the one line a user needs (first failed resource,
/// its type and reason; the credential source tried; the limit that was hit).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct PhaseError {
    pub kind: PhaseErrorKind,
    pub message: String,
}

impl PhaseError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: PhaseErrorKind::Failed,
            message: message.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            kind: PhaseErrorKind::Error,
            message: message.into(),
        }
    }
}

/// Everything a phase gets besides the provider's own state.
#[derive(Clone)]
pub struct PhaseContext {
    lifecycle: LifecycleId,
    phase: Phase,
    deadline: Instant,
    started: Instant,
    lifecycle_started: Instant,
    events: Arc<dyn EventSink>,
    probe: Arc<dyn ServerProbe>,
}

impl PhaseContext {
    pub fn new(
        lifecycle: LifecycleId,
        phase: Phase,
        budget: Duration,
        lifecycle_started: Instant,
        events: Arc<dyn EventSink>,
        probe: Arc<dyn ServerProbe>,
    ) -> Self {
        let started = Instant::now();
        Self {
            lifecycle,
            phase,
            deadline: started + budget,
            started,
            lifecycle_started,
            events,
            probe,
        }
    }

    pub fn lifecycle(&self) -> &LifecycleId {
        &self.lifecycle
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When this phase's deadline expires; poll loops stop here.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What is left of the phase's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Time since this phase started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn probe(&self) -> &Arc<dyn ServerProbe> {
        &self.probe
    }

    /// Reports one line of progress (a stack event, a poll result). Never print directly.
    pub fn progress(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(lifecycle = %self.lifecycle, phase = %self.phase, "{message}");
        self.events.event(&RunEvent {
            at: chrono::Utc::now(),
            elapsed: self.lifecycle_started.elapsed(),
            lifecycle: self.lifecycle.clone(),
            kind: RunEventKind::Progress {
                phase: self.phase,
                message,
            },
        });
    }
}

/// A cloud provider's lifecycle. Each method returns typed facts; none prints.
///
/// `teardown` and `leak_check` are called whenever `create` was attempted, even if `create`
/// itself failed, timed out, panicked or was cancelled: implementations must know what to
/// delete from the names they chose up front (`cloudtest-<run_id>`), not only from what
/// `create` returned.
#[async_trait]
pub trait Provider: Send {
    fn lifecycle(&self) -> LifecycleId;

    async fn create(&mut self, cx: &PhaseContext) -> Result<CreateFacts, PhaseError>;

    async fn wait_ready(&mut self, cx: &PhaseContext) -> Result<DeploymentFacts, PhaseError>;

    async fn health(
        &mut self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<HealthFacts, PhaseError> {
        cx.probe().health(cx, deployment).await
    }

    async fn enrollment(
        &mut self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<EnrollmentFacts, PhaseError> {
        cx.probe().enrollment(cx, deployment).await
    }

    async fn teardown(&mut self, cx: &PhaseContext) -> Result<TeardownFacts, PhaseError>;

    async fn leak_check(&mut self, cx: &PhaseContext) -> Result<LeakFacts, PhaseError>;
}
