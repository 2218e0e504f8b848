//! CLOUD-01: Velociraptor on AWS through CloudFormation and EC2.
//!
//! [`load_sdk_config`] builds the one SDK configuration (endpoint, credentials, standard
//! retries, attempt timeout); [`CloudFormationProvider`] implements the lifecycle on top of
//! two small wrappers, [`CfnStacks`] and [`Ec2Inventory`]. Nothing here knows whether it
//! talks to AWS, moto or the embedded emulator.

pub mod calls;
pub mod connection;
pub mod deploy;
pub mod errors;
pub mod events;
pub mod evidence;
pub mod identity;
pub mod inventory;
pub mod leak;
pub mod parameters;
pub mod preflight;
pub mod provider;
pub mod resources;
pub mod sweep;
pub mod teardown;
pub mod zones;

/// Older names of [`deploy`] and [`parameters`], kept so code written against them builds.
pub use deploy as stacks;
pub use parameters as template;

pub use calls::CallCounter;
pub use connection::{load_sdk_config, AwsConnection, MAX_ATTEMPTS};
pub use deploy::{CfnStacks, StackSnapshot};
pub use errors::{AwsError, ErrorContext};
pub use events::{StackEventPager, StackEventRecord};
pub use identity::IdentityCheck;
pub use inventory::{Ec2Inventory, RUN_ID_TAG};
pub use preflight::{AwsPreflight, AwsPreflightPlan};
pub use provider::{stack_name, CloudFormationProvider, StackPlan, PERMISSIONS_BOUNDARY_PARAMETER};
