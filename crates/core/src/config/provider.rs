//! `[run]`, `[aws]` and `[azure]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[run] expires_after` when unset: longer than the longest live run (the CI jobs'
/// timeout, see ci/README.md "Timing"), shorter than the daily sweep's cadence.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Lifecycles run at once (default 8).
    pub max_parallel: Option<usize>,
    /// How long a run's resources may live before `cloudtest sweep` deletes them (the
    /// `cloudtest:expires-at` tag); default 6h.
    #[serde(with = "humantime_serde")]
    pub expires_after: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Default `["us-east-1"]`.
    pub regions: Option<Vec<String>>,
    /// Default `templates-cfn/velociraptor.yaml`.
    pub template: Option<PathBuf>,
    /// Send every AWS call here (LocalStack, moto); `AWS_ENDPOINT_URL` works too.
    pub endpoint: Option<String>,
    /// Who may reach the GUI/API port; default: the runner's address as a /32.
    pub allowed_cidr: Option<String>,
    /// Extra template parameters.
    pub parameters: BTreeMap<String, String>,
    pub use_spot: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Default `["eastus"]`.
    pub locations: Option<Vec<String>>,
    /// Default: `AZURE_SUBSCRIPTION_ID`.
    pub subscription_id: Option<String>,
    /// Default `templates-arm/velociraptor.json`.
    pub template: Option<PathBuf>,
    /// Send every ARM call here (mock, replay).
    pub endpoint: Option<String>,
    pub allowed_cidr: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub use_spot: Option<bool>,
    /// Where Azure tokens come from: `auto` (default: azure_identity's chain), `cli`,
    /// `secret`, `workload`, `github-oidc` or `managed-identity`; `--azure-credential`
    /// overrides it. Checked by the CLI, which names the allowed values.
    pub credential: Option<String>,
}

/// Region and location names are lower-case words joined by dashes or not (`us-east-1`,
/// `westeurope`). Rejecting anything else catches typos before any cloud call.
pub(crate) fn looks_like_region(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}
