//! The cloudtest lifecycle engine.
//!
//! Providers implement [`Provider`]: one method per lifecycle phase, each returning typed
//! facts. [`LifecycleRunner`] runs those phases under per-phase deadlines and guarantees
//! that teardown and the leak check run once `create` was attempted, whatever happened
//! before (failure, timeout, panic, cancellation). Nothing here formats output: the engine
//! emits [`RunEvent`]s and returns [`RequirementResult`]s, and `cloudtest-report` turns
//! those into what people read.

pub mod cancel;
pub mod config;
pub mod events;
pub mod exit;
pub mod facts;
pub mod memo;
pub mod outputs;
pub mod phase;
pub mod plan;
pub mod poll;
pub mod preflight;
pub mod probe;
pub mod provider;
pub mod regions;
pub mod requirement;
pub mod results;
pub mod runner;
pub mod secret;
pub mod skip;
pub mod tags;

pub use cancel::{CancelReason, Shutdown};
pub use config::{Hook, PhaseDeadlines};
pub use events::{EventSink, NullSink, RunEvent, RunEventKind};
pub use exit::ExitCode;
pub use facts::{
    CreateFacts, DeploymentFacts, EnrolledClient, EnrollmentFacts, EvidenceItem, HealthFacts,
    KeptDeployment, LeakFacts, RequirementFacts, ResourceKind, ResourceRef, ServerIdentity,
    TeardownFacts,
};
pub use phase::{Phase, PhaseRecord, PhaseStatus};
pub use plan::LifecyclePlan;
pub use poll::{poll_until, read_again, Backoff, Overdue, PollError, PollStep, Strikes, Transient};
pub use preflight::{Check, CheckStatus};
pub use probe::ServerProbe;
pub use provider::{PhaseContext, PhaseError, PhaseErrorKind, Provider};
pub use requirement::{LifecycleId, RequirementId, RequirementStatus};
pub use results::{Cost, RequirementResult, RunMode, RunResults};
pub use runner::{LifecycleOptions, LifecycleRunner};
pub use secret::Secret;
