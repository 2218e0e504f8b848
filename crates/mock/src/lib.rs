//! Loopback emulators for mock mode: CloudFormation/EC2 (awsQuery/ec2Query XML), Azure
//! Resource Manager (REST/JSON) and a Velociraptor server (HTTPS with a per-run CA).
//!
//! They speak the real wire protocols so the *same* provider code, with the real SDK clients,
//! runs against them; only endpoints and credentials differ. Faults and scenarios are
//! injected here, never in the providers.

pub mod faults;
pub mod hooks;
pub mod http;
pub mod scenario;
pub mod state;
#[cfg(all(feature = "aws", feature = "arm", feature = "vr"))]
pub mod suite;

#[cfg(feature = "arm")]
pub mod arm;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "vr")]
pub mod velociraptor;

pub use faults::{FaultKind, FaultPlan, FaultSpec};
pub use hooks::{EmulatedServers, ServerDeployment};
pub use scenario::{EmulatorContext, Scenario};
pub use state::EmulatorState;
#[cfg(all(feature = "aws", feature = "arm", feature = "vr"))]
pub use suite::{MockCloud, MockOptions};
