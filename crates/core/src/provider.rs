//! The provider trait: one method per lifecycle phase.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::time::Instant;

use crate::events::{EventSink, RunEvent, RunEventKind};
use crate::facts::{
    CreateFacts, DeploymentFacts, EvidenceItem, LeakFacts, ServerIdentity, TeardownFacts,
};
use crate::phase::Phase;
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
}

impl PhaseContext {
    pub fn new(
        lifecycle: LifecycleId,
        phase: Phase,
        budget: Duration,
        lifecycle_started: Instant,
        events: Arc<dyn EventSink>,
    ) -> Self {
        let started = Instant::now();
        Self {
            lifecycle,
            phase,
            deadline: started + budget,
            started,
            lifecycle_started,
            events,
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
/// Health and enrollment are the runner's: it calls the [`crate::ServerProbe`] itself, after
/// [`Provider::verify_server`]. `teardown` and `leak_check` are called whenever `create` was
/// attempted, even if `create` itself failed, timed out, panicked or was cancelled:
/// implementations must know what to delete from the names they chose up front
/// (`cloudtest-<run_id>`), not only from what `create` returned.
#[async_trait]
pub trait Provider: Send {
    fn lifecycle(&self) -> LifecycleId;

    async fn create(&mut self, cx: &PhaseContext) -> Result<CreateFacts, PhaseError>;

    async fn wait_ready(&mut self, cx: &PhaseContext) -> Result<DeploymentFacts, PhaseError>;

    /// Before the probes trust the deployment's CA: proves through the cloud's own API that the
    /// server is the one this deployment created. Runs inside the health phase under its own
    /// short deadline (`deadlines.verify_server`); an error fails health with its message.
    async fn verify_server(
        &mut self,
        _cx: &PhaseContext,
        _deployment: &DeploymentFacts,
    ) -> Result<Option<ServerIdentity>, PhaseError> {
        Ok(None)
    }

    /// Runs beside the enrollment probe and resolves only with the reason a client can no
    /// longer enroll (its boot failed), so enrollment fails at once with that reason instead
    /// of at its deadline. Reads the cloud sparingly (the AWS provider: one console read a
    /// minute). The default never resolves: the probe alone decides.
    async fn watch_clients(
        &mut self,
        _cx: &PhaseContext,
        _deployment: &DeploymentFacts,
    ) -> PhaseError {
        std::future::pending().await
    }

    /// Before teardown of a lifecycle whose `failed` phase did not pass: what explains the
    /// failure (console output, failed operations), under its own short deadline
    /// (`deadlines.evidence`). Never fails: what could not be read becomes an item saying so.
    async fn collect_evidence(&mut self, _cx: &PhaseContext, _failed: Phase) -> Vec<EvidenceItem> {
        Vec::new()
    }

    async fn teardown(&mut self, cx: &PhaseContext) -> Result<TeardownFacts, PhaseError>;

    async fn leak_check(&mut self, cx: &PhaseContext) -> Result<LeakFacts, PhaseError>;
}
