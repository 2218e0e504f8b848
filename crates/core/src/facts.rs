//! Typed facts that providers and probes return. Providers never return text for people;
//! the report crate decides how facts look.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A cloud resource the run created or found, enough to price it and to name it in a leak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Normalised kind used for pricing: `instance`, `volume`, `public_ip`, `network_interface`,
    /// `security_group`, `vpc`, `nat_gateway`, `stack`, `resource_group`, `other`.
    pub kind: String,
    /// The cloud's own type name (`AWS::EC2::Instance`, `Microsoft.Compute/virtualMachines`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cloud_type: String,
    pub id: String,
    /// Size or SKU when it matters for cost (`t3.medium`, `Standard_B2s`, `gp3:8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// True when the resource runs on spot/preemptible capacity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spot: bool,
}

/// What `create` learned: the handle teardown and the leak check use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateFacts {
    /// Stack id / deployment id.
    pub deployment_id: String,
    /// The tag value every resource of this run carries (`cloudtest:run-id`).
    pub run_id: String,
}

/// The deployed server, parsed from the stack/deployment outputs (see [`crate::outputs`]).
/// Holds the admin password, so it is neither `Debug`-printable with the secret nor
/// serialisable.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentFacts {
    pub server_address: String,
    pub frontend_url: String,
    pub gui_url: String,
    pub frontend_port: u16,
    pub gui_port: u16,
    /// The self-signed CA certificate (PEM) that the deployment published through the cloud
    /// API; the only trust root the probes use.
    pub ca_pem: String,
    /// SHA-256 of the CA certificate's DER, lower-case hex with colons.
    pub ca_fingerprint: String,
    /// The DNS name the server certificate carries (Velociraptor: `VelociraptorServer`).
    pub pinned_server_name: String,
    pub expected_clients: u32,
    pub velociraptor_version: String,
    pub admin_user: String,
    pub admin_password: Secret,
    /// Every output as returned by the cloud, minus anything secret.
    pub raw_outputs: BTreeMap<String, String>,
    /// Resources the deployment reports, for pricing.
    pub resources: Vec<ResourceRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthFacts {
    pub time_to_healthy_ms: u64,
    /// Status code of the GUI without credentials (expected 401).
    pub gui_unauthenticated_status: u16,
    /// Status code of the GUI with the admin credentials (expected 200).
    pub gui_authenticated_status: u16,
    /// `basic` for HTTP Basic (what Velociraptor's GUI uses with a user database).
    pub gui_auth: String,
    /// `pinned-self-signed-ca` when the only trust root was the deployment's CA.
    pub tls: String,
    /// Fingerprint of the CA the TLS connection was verified against.
    pub ca_fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledClient {
    pub client_id: String,
    pub hostname: String,
    pub agent_version: String,
    /// Microseconds since the epoch, as the server reports it.
    pub first_seen_at_us: u64,
    pub last_seen_at_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollmentFacts {
    pub time_to_enroll_ms: u64,
    pub expected_clients: u32,
    pub clients: Vec<EnrolledClient>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeardownFacts {
    pub deletion_ms: u64,
    /// Resources the stack/resource group held when deletion started.
    pub resources_deleted: Vec<ResourceRef>,
    /// Retries the provider needed (e.g. DELETE_FAILED once).
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakFacts {
    /// Everything still present that carries this run's tag.
    pub remaining: Vec<ResourceRef>,
    /// Resource types that were checked, for the report ("instances, volumes, ...").
    pub checked: Vec<String>,
}

/// What the cloud said about the server the probes were about to trust (AWS: the CA the
/// instance printed on its own console against the one published through the wait condition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum ServerIdentity {
    /// Checked and matching; the detail says against what.
    Verified(String),
    /// This endpoint cannot show it (an external emulator's canned console); the run goes on.
    NotVerifiable(String),
}

/// One file of failure evidence (`console-server.txt`, `stack-events.txt`): plain text that
/// the CLI writes under `OUT/evidence/<requirement>-<region>/`, redacted again on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceItem {
    /// A plain file name, no directories.
    pub name: String,
    pub text: String,
}

/// The `facts` object of one requirement in results.json. Every field is optional because a
/// run that stopped early knows only some of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequirementFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velociraptor_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gui_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gui_auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_healthy_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_clients: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_clients: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<EnrolledClient>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_enroll_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_created: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_remaining: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining_resources: Vec<ResourceRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown_complete: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leak_checked_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_identity: Option<ServerIdentity>,
    /// Failure evidence as collected; written to files by the CLI, never into results.json.
    #[serde(skip)]
    pub evidence: Vec<EvidenceItem>,
    /// Where the evidence files were written, relative to the output directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_dir: Option<String>,
    /// Each evidence file, relative to the output directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_files: Vec<String>,
    /// Facts a provider or reporter adds beyond the common set (CLOUD-03 rows, for one).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}
