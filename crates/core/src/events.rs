//! The only channel from the engine to whatever displays a run (terminal, CI log, tests).

use std::sync::Arc;
use std::time::Duration;

use crate::cancel::CancelReason;
use crate::phase::{Phase, PhaseRecord};
use crate::requirement::LifecycleId;

#[derive(Debug, Clone)]
pub struct RunEvent {
    pub at: chrono::DateTime<chrono::Utc>,
    /// Time since the lifecycle started.
    pub elapsed: Duration,
    pub lifecycle: LifecycleId,
    pub kind: RunEventKind,
}

#[derive(Debug, Clone)]
pub enum RunEventKind {
    PhaseStarted {
        phase: Phase,
    },
    /// A line of progress inside a phase (a stack event, a poll result).
    Progress {
        phase: Phase,
        message: String,
    },
    PhaseFinished {
        record: PhaseRecord,
    },
    CancelRequested {
        reason: CancelReason,
    },
    /// `--keep-on-failure` left resources behind: said loudly, once per lifecycle.
    KeptResources {
        what: String,
    },
}

/// Receives events as they happen. Implementations must not block for long.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &RunEvent);
}

/// Discards every event (tests, `--quiet`).
pub struct NullSink;

impl EventSink for NullSink {
    fn event(&self, _event: &RunEvent) {}
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn event(&self, event: &RunEvent) {
        (**self).event(event)
    }
}
