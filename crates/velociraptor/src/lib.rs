//! Velociraptor probes: is the server healthy with auth enforced, did the expected clients
//! enroll and get interrogated, and do they run the pinned release?
//!
//! Every request goes over TLS whose only trust root is the CA the deployment published
//! (see `docs/dev/CONTRACTS.md`), to the name its certificate carries. Used by both
//! providers through [`VelociraptorProbe`] and by `cloudtest probe` through
//! [`probe_existing`].

pub mod diagnose;
mod enrollment;
pub mod errors;
mod existing;
mod health;
mod probe;
mod progress;
pub mod protojson;
mod settings;
mod target;
pub mod tls;

pub use diagnose::{MismatchReason, TlsMismatch};
pub use errors::ProbeError;
pub use existing::{probe_existing, ExistingServer, ProbeDeadlines, ProbeReport};
pub use probe::VelociraptorProbe;
pub use progress::ProgressFn;
pub use settings::ProbeSettings;
