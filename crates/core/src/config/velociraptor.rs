//! `[velociraptor]`: what is deployed and who logs in.

use serde::Deserialize;

pub const DEFAULT_VERSION: &str = "0.77.2";
pub const DEFAULT_ADMIN_USER: &str = "cloudtest-admin";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VelociraptorConfig {
    /// The pinned release to deploy (never "latest"); default 0.77.2.
    pub version: Option<String>,
    /// SHA-256 of `velociraptor-v<version>-linux-amd64`, passed to the template.
    pub sha256: Option<String>,
    pub admin_user: Option<String>,
    /// Clients the template deploys, when the template has such a parameter.
    pub expected_clients: Option<u32>,
}

impl VelociraptorConfig {
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or(DEFAULT_VERSION)
    }
    pub fn admin_user(&self) -> &str {
        self.admin_user.as_deref().unwrap_or(DEFAULT_ADMIN_USER)
    }
}
