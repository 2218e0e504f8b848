//! `cloudtest.toml`: optional, every field has a default, unknown keys and wrong types are
//! errors naming the key and the file. One module per section.

mod budget;
mod deadlines;
mod provider;
mod velociraptor;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

pub use budget::{BudgetConfig, PriceOverride, DEFAULT_MONTHLY_BUDGET_USD};
pub use deadlines::{
    parse_seconds, DeadlineError, DeadlinesConfig, Hook, PhaseDeadlines, HEALTH_TIMEOUT_ENV,
};
pub use provider::{
    iam_arn_problem, AwsConfig, AzureConfig, IamArnKind, RunConfig, DEFAULT_EXPIRES_AFTER,
};
pub use velociraptor::{VelociraptorConfig, DEFAULT_ADMIN_USER, DEFAULT_VERSION};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub run: RunConfig,
    pub deadlines: DeadlinesConfig,
    pub aws: AwsConfig,
    pub azure: AzureConfig,
    pub velociraptor: VelociraptorConfig,
    pub budget: BudgetConfig,
    pub report: ReportConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Gap document to write results into; default `docs/GAP_ANALYSIS.md` when it exists.
    pub gap_doc: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: origin.to_path_buf(),
            message: describe_toml_error(&e, text),
        })?;
        config.validate(&origin.display().to_string())?;
        Ok(config)
    }

    /// Checks values serde cannot (non-empty lists, sane numbers).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.run.max_parallel == Some(0) {
            return Err(invalid("run.max_parallel", "must be at least 1"));
        }
        if let Some(b) = self.budget.monthly_usd {
            if !b.is_finite() || b < 0.0 {
                return Err(invalid(
                    "budget.monthly_usd",
                    "must be a non-negative number of dollars",
                ));
            }
        }
        for (key, list) in [
            ("aws.regions", &self.aws.regions),
            ("azure.locations", &self.azure.locations),
        ] {
            if let Some(list) = list {
                if list.is_empty() {
                    return Err(invalid(key, "must list at least one region"));
                }
                if let Some(bad) = list.iter().find(|r| !provider::looks_like_region(r)) {
                    return Err(invalid(
                        key,
                        &format!("has `{bad}`, which is not a region name (lower-case letters, digits and dashes)"),
                    ));
                }
            }
        }
        // The templates' default hash is 0.77.2's: another version without its own hash
        // fails every boot at the checksum.
        let version = self.velociraptor.version.as_deref();
        if version.is_some_and(|v| v != velociraptor::DEFAULT_VERSION)
            && self.velociraptor.sha256.is_none()
        {
            return Err(invalid(
                "velociraptor.version",
                &format!(
                    "is set to {} without `velociraptor.sha256`; the templates' default hash is {}'s, so every boot would fail its checksum: set `velociraptor.sha256` to the SHA-256 of velociraptor-v{}-linux-amd64 as well",
                    version.unwrap_or_default(),
                    velociraptor::DEFAULT_VERSION,
                    version.unwrap_or_default()
                ),
            ));
        }
        for (key, value, kind) in [
            (
                "aws.cloudformation_role_arn",
                &self.aws.cloudformation_role_arn,
                IamArnKind::Role,
            ),
            (
                "aws.permissions_boundary_arn",
                &self.aws.permissions_boundary_arn,
                IamArnKind::Policy,
            ),
        ] {
            if let Some(why) = value.as_deref().and_then(|v| iam_arn_problem(v, kind)) {
                return Err(invalid(
                    key,
                    &format!("`{}` {why}", value.as_deref().unwrap_or_default()),
                ));
            }
        }
        if let Some(n) = self.velociraptor.expected_clients {
            if n == 0 {
                return Err(invalid(
                    "velociraptor.expected_clients",
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

/// toml's message plus the offending line, so the key is visible even for type errors.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().to_string();
    match e.span() {
        Some(span) => {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!("line {line_no}: {msg} (in `{line}`)")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("cloudtest.toml"))
    }

    #[test]
    fn a_version_override_needs_its_own_hash() {
        let err = parse("[velociraptor]\nversion = \"0.78.0\"\n")
            .and_then(|c| c.validate("cloudtest.toml").map(|_| c))
            .expect_err("version without sha256");
        let text = err.to_string();
        assert!(
            text.contains("velociraptor.version") && text.contains("velociraptor.sha256"),
            "{text}"
        );
        let ok = parse("[velociraptor]\nversion = \"0.78.0\"\nsha256 = \"ab\"\n").expect("parses");
        assert!(ok.validate("cloudtest.toml").is_ok());
        let pinned = parse("[velociraptor]\nversion = \"0.77.2\"\n").expect("parses");
        assert!(pinned.validate("cloudtest.toml").is_ok());
    }

    #[test]
    fn service_role_and_boundary_must_be_iam_arns() {
        let ok = parse(
            "[aws]\ncloudformation_role_arn = \"arn:aws:iam::123456789012:role/cloudtest-cloudformation\"\npermissions_boundary_arn = \"arn:aws:iam::123456789012:policy/cloudtest-boundary\"\n",
        )
        .expect("valid ARNs");
        assert!(ok.aws.cloudformation_role_arn.is_some());
        let err = parse("[aws]\ncloudformation_role_arn = \"cloudtest-cloudformation\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aws.cloudformation_role_arn") && err.contains("IAM role ARN"),
            "{err}"
        );
        let err = parse("[aws]\npermissions_boundary_arn = \"arn:aws:iam::123456789012:role/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.permissions_boundary_arn"), "{err}");
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").expect("empty ok"), Config::default());
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = parse("[aws]\nregionz = [\"us-east-1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloudtest.toml"), "{err}");
        assert!(err.contains("regionz"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[budget]\nmonthly_usd = \"fifty\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("monthly_usd"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
[run]
max_parallel = 4
expires_after = "3h"
[deadlines]
create = "25m"
health = "90s"
[aws]
regions = ["us-east-1", "eu-west-1"]
template = "templates-cfn/velociraptor.yaml"
allowed_cidr = "198.51.100.0/24"
parameters = { ServerInstanceType = "t3.large" }
use_spot = true
[azure]
locations = ["eastus"]
subscription_id = "00000000-0000-0000-0000-000000000000"
[velociraptor]
version = "0.77.2"
admin_user = "ops"
[budget]
monthly_usd = 20.5
ledger = "ledger.jsonl"
prices = [{ provider = "aws", sku = "t3.large", usd_per_hour = 0.0832 }]
[report]
gap_doc = "docs/GAP_ANALYSIS.md"
"#,
        )
        .expect("valid");
        assert_eq!(c.run.max_parallel, Some(4));
        assert_eq!(c.deadlines.health, Some(std::time::Duration::from_secs(90)));
        assert_eq!(c.aws.regions.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            c.aws
                .parameters
                .get("ServerInstanceType")
                .map(String::as_str),
            Some("t3.large")
        );
        assert_eq!(c.budget.monthly_usd, Some(20.5));
        assert_eq!(c.budget.prices.len(), 1);
    }

    #[test]
    fn bad_region_and_negative_values_are_rejected() {
        let err = parse("[aws]\nregions = [\"US East\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("aws.regions"), "{err}");
        let err = parse("[budget]\nmonthly_usd = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("budget.monthly_usd"), "{err}");
        let err = parse("[deadlines]\nhealth = \"-5s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("health"), "{err}");
    }
}
