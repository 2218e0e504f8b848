//! What every lifecycle needs to know before it starts, whichever cloud runs it. Each
//! provider's plan embeds a [`LifecyclePlan`] and adds only its own fields (AWS: the template
//! text, the CloudFormation service role, the permissions boundary, `OnFailure`; Azure: the
//! parsed ARM template).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::poll::Backoff;
use crate::secret::Secret;

/// The fields both providers' plans share. Holds the admin password, so it has no `Debug`.
#[derive(Clone)]
pub struct LifecyclePlan {
    /// Value of the `cloudtest:run-id` tag on everything this lifecycle creates.
    pub run_id: String,
    /// AWS region or Azure location.
    pub region: String,
    /// Where the template was read from (for messages).
    pub template_path: PathBuf,
    /// Extra, non-secret template parameters from config; they win over the standard ones
    /// and are sent only when the template declares them.
    pub parameters: BTreeMap<String, String>,
    pub admin_user: String,
    pub admin_password: Secret,
    pub velociraptor_version: String,
    pub velociraptor_sha256: Option<String>,
    /// Who may reach the GUI/API.
    pub allowed_cidr: String,
    pub use_spot: bool,
    /// Value of the `cloudtest:expires-at` tag: when `cloudtest sweep` may delete the run.
    pub expires_at: DateTime<Utc>,
    /// How often the provider polls the cloud.
    pub poll: Backoff,
}
