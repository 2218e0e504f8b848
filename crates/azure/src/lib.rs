//! CLOUD-02: Velociraptor on Azure Resource Manager.
//!
//! One resource group per run (`cloudtest-<run_id>`, tagged with the run id, requirement
//! and expiry), one incremental template deployment in it, outputs parsed by the shared
//! [`cloudtest_core::outputs`] parser, teardown by deleting the group and waiting for ARM to
//! answer 404, and a leak check by tag over the whole subscription.
//!
//! Calls go through `azure_mgmt_resources` 0.21 except following long-running operations,
//! which [`lro`] does over `reqwest` (the crate's own LRO futures are wrong in 0.21).

pub mod connection;
pub mod credential;
mod deploy;
pub mod errors;
mod evidence;
pub mod leak;
mod lro;
mod parameters;
pub mod preflight;
mod provider;
pub mod resources;
pub mod sizes;
pub mod sweep;
pub mod teardown;

/// Older names of [`teardown`] and [`resources`], kept so code written against them builds.
pub use resources as resource_kind;
pub use teardown as resource_group;

pub use connection::{
    live_credential, static_token_credential, ArmConnection, ARM_SCOPE, PUBLIC_ARM_ENDPOINT,
};
pub use credential::{Authority, CredentialChoice, CredentialPlan, UnusableCredential};
pub use errors::AzureError;
pub use preflight::{ArmPreflight, ArmPreflightPlan};
pub use provider::{ArmProvider, DeploymentPlan};
