//! Typed facts that providers and probes return. Providers never return text for people;
//! the report crate decides how facts look.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The normalised kind of a cloud resource, used for pricing, sweep order and leak messages.
///
/// results.json is a contract: a kind is written as one of these strings, exactly:
/// `instance`, `volume`, `public_ip`, `network_interface`, `security_group`, `vpc`, `vnet`
/// (an Azure virtual network), `subnet`, `route_table`, `internet_gateway`,
/// `launch_template`, `nat_gateway`, `stack`, `resource_group`, `other` (a cloud type
/// cloudtest does not classify).
///
/// A string outside that list (a results file written by a newer cloudtest) still loads, as
/// [`ResourceKind::Unrecognised`], and is written back unchanged, so merging results files
/// never rewrites what another version recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum ResourceKind {
    Instance,
    Volume,
    PublicIp,
    NetworkInterface,
    SecurityGroup,
    Vpc,
    /// An Azure virtual network (`Microsoft.Network/virtualNetworks`).
    Vnet,
    Subnet,
    RouteTable,
    InternetGateway,
    LaunchTemplate,
    NatGateway,
    Stack,
    ResourceGroup,
    /// A cloud type cloudtest does not classify (`other`).
    Other,
    /// A kind this version does not know, read from a results file; kept verbatim.
    Unrecognised(String),
}

impl ResourceKind {
    /// Every kind this version writes, in the documented order.
    pub const KNOWN: [ResourceKind; 15] = [
        ResourceKind::Instance,
        ResourceKind::Volume,
        ResourceKind::PublicIp,
        ResourceKind::NetworkInterface,
        ResourceKind::SecurityGroup,
        ResourceKind::Vpc,
        ResourceKind::Vnet,
        ResourceKind::Subnet,
        ResourceKind::RouteTable,
        ResourceKind::InternetGateway,
        ResourceKind::LaunchTemplate,
        ResourceKind::NatGateway,
        ResourceKind::Stack,
        ResourceKind::ResourceGroup,
        ResourceKind::Other,
    ];

    /// The results.json string (`public_ip`, `vnet`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::Volume => "volume",
            ResourceKind::PublicIp => "public_ip",
            ResourceKind::NetworkInterface => "network_interface",
            ResourceKind::SecurityGroup => "security_group",
            ResourceKind::Vpc => "vpc",
            ResourceKind::Vnet => "vnet",
            ResourceKind::Subnet => "subnet",
            ResourceKind::RouteTable => "route_table",
            ResourceKind::InternetGateway => "internet_gateway",
            ResourceKind::LaunchTemplate => "launch_template",
            ResourceKind::NatGateway => "nat_gateway",
            ResourceKind::Stack => "stack",
            ResourceKind::ResourceGroup => "resource_group",
            ResourceKind::Other => "other",
            ResourceKind::Unrecognised(s) => s,
        }
    }

    /// The kind a results.json string names; never fails (see [`ResourceKind::Unrecognised`]).
    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or_else(|| ResourceKind::Unrecognised(s.to_string()))
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ResourceKind {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

impl From<String> for ResourceKind {
    fn from(s: String) -> Self {
        Self::parse(&s)
    }
}

impl From<ResourceKind> for String {
    fn from(k: ResourceKind) -> Self {
        match k {
            ResourceKind::Unrecognised(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

/// A cloud resource the run created or found, enough to price it and to name it in a leak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Normalised kind used for pricing, serialised as one of the strings listed on
    /// [`ResourceKind`].
    pub kind: ResourceKind,
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

/// A deployment `--keep-on-failure` left running after a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptDeployment {
    /// The stack ARN or resource-group id (the deployment id when create got that far).
    pub deployment: String,
    /// The command that removes it before it expires, when the run id is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_with: Option<String>,
}

impl KeptDeployment {
    /// What a person is told: that it still runs, and how it goes away. The teardown's
    /// detail and the run summary's `KEPT` line both say exactly this.
    pub fn notice(&self) -> String {
        let removal = match &self.remove_with {
            Some(command) => format!(
                "when done, remove it with `{command}` (the daily sweep removes it once it expires)"
            ),
            None => {
                "remove it with `cloudtest sweep` once it expires, or in the cloud console".into()
            }
        };
        format!(
            "--keep-on-failure: {} was NOT torn down and is still costing money; {removal}",
            self.deployment
        )
    }
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
    /// Set when `--keep-on-failure` skipped teardown: what still runs (and costs money).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<KeptDeployment>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented results.json strings, in the documented order (facts.rs, CONTRACTS.md).
    const DOCUMENTED: [&str; 15] = [
        "instance",
        "volume",
        "public_ip",
        "network_interface",
        "security_group",
        "vpc",
        "vnet",
        "subnet",
        "route_table",
        "internet_gateway",
        "launch_template",
        "nat_gateway",
        "stack",
        "resource_group",
        "other",
    ];

    #[test]
    fn every_kind_round_trips_to_its_documented_string() {
        for (kind, text) in ResourceKind::KNOWN.iter().zip(DOCUMENTED) {
            let json = serde_json::to_string(kind).expect("serialises");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(kind.as_str(), text);
            assert_eq!(kind.to_string(), text);
            let back: ResourceKind = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(&back, kind);
            assert_eq!(text.parse::<ResourceKind>(), Ok(kind.clone()));
        }
        assert_eq!(ResourceKind::KNOWN.len(), DOCUMENTED.len());
    }

    #[test]
    fn the_contract_document_lists_every_kind() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dev/CONTRACTS.md");
        let doc = std::fs::read_to_string(&path).expect("docs/dev/CONTRACTS.md");
        let listed: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(k, _)| k))
            .collect();
        assert_eq!(
            listed,
            DOCUMENTED,
            "the resource kinds table in {}",
            path.display()
        );
    }

    #[test]
    fn an_unknown_kind_loads_and_is_written_back_unchanged() {
        let old = r#"{"kind":"load_balancer","cloud_type":"AWS::ElasticLoadBalancingV2::LoadBalancer","id":"lb-1"}"#;
        let r: ResourceRef = serde_json::from_str(old).expect("an unknown kind still loads");
        assert_eq!(r.kind, ResourceKind::Unrecognised("load_balancer".into()));
        assert_eq!(r.kind.to_string(), "load_balancer");
        assert_eq!(serde_json::to_string(&r).expect("serialises"), old);
    }

    #[test]
    fn a_resource_ref_keeps_its_results_json_shape() {
        let r = ResourceRef {
            kind: ResourceKind::PublicIp,
            cloud_type: "AWS::EC2::EIP".into(),
            id: "eipalloc-1".into(),
            sku: Some("public_ip".into()),
            spot: false,
        };
        assert_eq!(
            serde_json::to_value(&r).expect("serialises"),
            serde_json::json!({"kind": "public_ip", "cloud_type": "AWS::EC2::EIP", "id": "eipalloc-1", "sku": "public_ip"})
        );
        assert_eq!(format!("{} {}", r.kind, r.id), "public_ip eipalloc-1");
    }
}
