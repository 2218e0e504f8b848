//! CLOUD-01: Velociraptor on AWS through CloudFormation and EC2.
//!
//! [`load_sdk_config`] builds the one SDK configuration (endpoint, credentials, standard
//! retries, attempt timeout); [`CloudFormationProvider`] implements the lifecycle on top of
//! two small wrappers, [`CfnStacks`] and [`Ec2Inventory`]. Nothing here knows whether it
//! talks to AWS, moto or the embedded emulator.

pub mod calls;
pub mod connection;
pub mod errors;
pub mod events;
pub mod evidence;
pub mod identity;
pub mod inventory;
pub mod leak;
pub mod preflight;
pub mod provider;
pub mod stacks;
pub mod sweep;
pub mod teardown;
pub mod template;
pub mod zones;

pub use calls::CallCounter;
pub use connection::{load_sdk_config, AwsConnection, MAX_ATTEMPTS};
pub use errors::{AwsError, ErrorContext};
pub use events::{StackEventPager, StackEventRecord};
pub use identity::IdentityCheck;
pub use inventory::{Ec2Inventory, RUN_ID_TAG};
pub use preflight::{AwsPreflight, AwsPreflightPlan};
pub use provider::{stack_name, CloudFormationProvider, StackPlan, PERMISSIONS_BOUNDARY_PARAMETER};
pub use stacks::{CfnStacks, StackSnapshot};
