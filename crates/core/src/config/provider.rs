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
    /// CloudFormation service role (`RoleARN` of CreateStack and DeleteStack, the sweep's
    /// too): CloudFormation creates and deletes the stack's resources with this role's
    /// permissions instead of the caller's. `--aws-cloudformation-role` overrides it.
    pub cloudformation_role_arn: Option<String>,
    /// IAM policy the template's `PermissionsBoundaryArn` parameter receives: the
    /// permissions boundary of the role the stack creates for the server.
    pub permissions_boundary_arn: Option<String>,
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

/// What kind of IAM ARN [`iam_arn_problem`] expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamArnKind {
    /// `arn:aws:iam::<account>:role/<path/><name>`
    Role,
    /// `arn:aws:iam::<account>:policy/<path/><name>` (customer managed)
    Policy,
}

impl IamArnKind {
    fn word(self) -> &'static str {
        match self {
            IamArnKind::Role => "role",
            IamArnKind::Policy => "policy",
        }
    }
}

/// Why `arn` is not an IAM role (or customer-managed policy) ARN such as
/// `arn:aws:iam::123456789012:role/cloudtest-cloudformation`, or `None` when it is one.
/// Partitions `aws`, `aws-cn` and `aws-us-gov`; the account is 12 digits; the name after
/// `role/` (or `policy/`) is 1 to 512 characters of IAM's path and name alphabet.
pub fn iam_arn_problem(arn: &str, kind: IamArnKind) -> Option<String> {
    let word = kind.word();
    let example = format!("arn:aws:iam::123456789012:{word}/cloudtest-example");
    let bad = |why: &str| Some(format!("is not an IAM {word} ARN like {example} ({why})"));
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return bad("expected six `:`-separated fields");
    };
    if *prefix != "arn" || !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov") {
        return bad("must start with arn:aws:");
    }
    if *service != "iam" || !region.is_empty() {
        return bad("the service must be `iam` with an empty region field");
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return bad("the account must be 12 digits");
    }
    let Some(name) = resource.strip_prefix(&format!("{word}/")) else {
        return bad(&format!("the resource must start with `{word}/`"));
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c);
    if name.is_empty() || name.len() > 512 || name.ends_with('/') || !name.chars().all(allowed) {
        return bad("the name must be 1 to 512 letters, digits or +=,.@_-/ and not end in /");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_and_policy_arns_are_checked() {
        let role = IamArnKind::Role;
        assert_eq!(
            iam_arn_problem("arn:aws:iam::123456789012:role/cloudtest-cfn", role),
            None
        );
        assert_eq!(
            iam_arn_problem(
                "arn:aws-us-gov:iam::123456789012:role/ci/cloudtest-cfn",
                role
            ),
            None
        );
        for bad in [
            "",
            "cloudtest-cfn",
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:sts::123456789012:assumed-role/x/y",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/has space",
            "arn:aws:iam::123456789012:policy/x",
        ] {
            let why = iam_arn_problem(bad, role).unwrap_or_else(|| panic!("`{bad}` accepted"));
            assert!(why.contains("IAM role ARN"), "{why}");
        }
        assert_eq!(
            iam_arn_problem(
                "arn:aws:iam::123456789012:policy/cloudtest-boundary",
                IamArnKind::Policy
            ),
            None
        );
        assert!(iam_arn_problem(
            "arn:aws:iam::aws:policy/AdministratorAccess",
            IamArnKind::Policy
        )
        .is_some());
    }
}
