//! Turns flags + config file + environment into a validated [`RunPlan`] (ripgrep's HiArgs
//! step). Everything a user can get wrong is caught here, before any cloud call, as exit 2
//! with a message naming the flag, file or key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use cloudtest_core::config::{
    iam_arn_problem, Config, IamArnKind, DEFAULT_EXPIRES_AFTER, DEFAULT_MONTHLY_BUDGET_USD,
};
use cloudtest_core::outputs::REQUIRED_OUTPUTS;
use cloudtest_core::skip::{Environment, ProcessEnvironment};
use cloudtest_core::PhaseDeadlines;
use cloudtest_core::{Phase, RunMode, Secret};

use crate::args::{ModeArg, ProviderArg, RunArgs};
use crate::error::usage;
use crate::templates::{self, Shipped, TemplateOrigin};
use cloudtest_azure::CredentialChoice;
use cloudtest_core::{regions, tags};

pub const DEFAULT_GAP_DOC: &str = "docs/GAP_ANALYSIS.md";
pub const ADMIN_PASSWORD_ENV: &str = "CLOUDTEST_ADMIN_PASSWORD";

/// Mock-mode settings.
#[derive(Debug, Clone)]
pub struct MockPlan {
    pub scenario: cloudtest_mock::Scenario,
    pub latency: Duration,
    pub faults: Vec<cloudtest_mock::FaultSpec>,
    pub probe_via_mock: bool,
    /// `--mock-token-lifetime`: the emulated Entra ID's token lifetime.
    pub token_lifetime: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct AwsPlan {
    pub regions: Vec<String>,
    pub template_path: PathBuf,
    /// Where the template came from (flag, config, working directory, embedded).
    pub template_origin: TemplateOrigin,
    pub template_body: String,
    pub endpoint: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub use_spot: bool,
    /// CloudFormation service role (`RoleARN` of CreateStack and DeleteStack).
    pub cloudformation_role_arn: Option<String>,
    /// The server role's permissions boundary (template parameter `PermissionsBoundaryArn`),
    /// and where it came from.
    pub permissions_boundary_arn: Option<String>,
    pub permissions_boundary_origin: &'static str,
}

#[derive(Debug, Clone)]
pub struct AzurePlan {
    pub locations: Vec<String>,
    pub template_path: PathBuf,
    pub template_origin: TemplateOrigin,
    pub template: serde_json::Value,
    pub endpoint: Option<String>,
    pub subscription_id: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub use_spot: bool,
    /// `--azure-credential` or `[azure] credential` (default `auto`).
    pub credential: CredentialChoice,
    /// Which input chose it, for the plan ("--azure-credential", "[azure] credential in X").
    pub credential_origin: String,
}

/// A validated run: what to deploy where, with which deadlines, and where results go.
pub struct RunPlan {
    pub mode: RunMode,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub out: PathBuf,
    pub gap_doc: Option<PathBuf>,
    pub deadlines: PhaseDeadlines,
    pub keep_on_failure: bool,
    pub max_parallel: usize,
    /// Providers the user named with --provider (missing credentials are then an error).
    pub named: BTreeSet<ProviderArg>,
    pub aws: Option<AwsPlan>,
    pub azure: Option<AzurePlan>,
    pub mock: Option<MockPlan>,
    pub config: Config,
    pub config_origin: String,
    pub velociraptor_version: String,
    pub velociraptor_sha256: Option<String>,
    pub admin_user: String,
    /// `CLOUDTEST_ADMIN_PASSWORD` when set; otherwise every lifecycle gets its own.
    pub admin_password: Option<Secret>,
    /// Set in mock mode and when configured; live runs without it discover the address.
    pub allowed_cidr: Option<String>,
    pub monthly_budget_usd: f64,
}

impl RunPlan {
    /// The admin password for one lifecycle: the user's, or a fresh random one (28
    /// characters), registered with the log redactor either way.
    pub fn lifecycle_password(&self) -> Secret {
        let secret = self
            .admin_password
            .clone()
            .unwrap_or_else(|| Secret::generate_password(28));
        crate::redact::register(secret.expose());
        secret
    }

    /// The GUI admin user for lifecycle number `index`. In mock mode with one fixed
    /// `CLOUDTEST_ADMIN_PASSWORD`, every lifecycle would log in to the one emulated
    /// Velociraptor with the same credentials and see each other's clients; a distinct user
    /// name per lifecycle keeps them apart, as separate servers are in a live run.
    pub fn lifecycle_user(&self, index: usize) -> String {
        if self.mock.is_some() && self.admin_password.is_some() {
            format!("{}-{}", self.admin_user, index + 1)
        } else {
            self.admin_user.clone()
        }
    }

    pub fn build(args: &RunArgs) -> Result<RunPlan> {
        Self::build_with(args, &ProcessEnvironment, Utc::now())
    }

    pub fn build_with(
        args: &RunArgs,
        env: &dyn Environment,
        now: DateTime<Utc>,
    ) -> Result<RunPlan> {
        let mode = match args.mode {
            ModeArg::Mock => RunMode::Mock,
            ModeArg::Live => RunMode::Live,
        };
        let (config, config_origin) = load_config(args.config.as_deref())?;

        // Mock-only flags make no sense against real clouds.
        if mode == RunMode::Live {
            for (set, flag) in [
                (args.scenario.is_some(), "--scenario"),
                (args.mock_latency.is_some(), "--mock-latency"),
                (!args.fault.is_empty(), "--fault"),
                (args.probe_via_mock, "--probe-via-mock"),
                (args.mock_token_lifetime.is_some(), "--mock-token-lifetime"),
            ] {
                if set {
                    return Err(usage(format!(
                        "{flag} works only in mock mode (drop --mode live)"
                    )));
                }
            }
        }
        let mock = match mode {
            RunMode::Live => None,
            RunMode::Mock => Some(mock_plan(args)?),
        };
        if let Some(m) = &mock {
            if m.probe_via_mock && args.aws_endpoint.is_none() && config.aws.endpoint.is_none() {
                return Err(usage(
                    "--probe-via-mock is for runs against an external emulator: give --aws-endpoint URL too",
                ));
            }
        }

        // Which providers, and where.
        let named: BTreeSet<ProviderArg> = args.provider.iter().copied().collect();
        let want = |p: ProviderArg| named.is_empty() || named.contains(&p);
        let (mut aws_regions, mut azure_locations) =
            (args.aws_regions.clone(), args.azure_locations.clone());
        for r in &args.region {
            if looks_like_aws_region(r) {
                aws_regions.push(r.clone());
            } else {
                azure_locations.push(r.clone());
            }
        }
        let aws_regions = pick_regions(aws_regions, config.aws.regions.clone(), "us-east-1", true)?;
        let azure_locations = pick_regions(
            azure_locations,
            config.azure.locations.clone(),
            "eastus",
            false,
        )?;

        if args.template.is_some() && named.len() != 1 {
            return Err(usage(
                "--template is ambiguous unless exactly one --provider is given; use --aws-template or --azure-template",
            ));
        }
        // A flag names a template for one provider; --template only when exactly one is named.
        let flag_for = |p: ProviderArg, specific: &Option<PathBuf>| {
            specific.clone().or_else(|| {
                if named.contains(&p) {
                    args.template.clone()
                } else {
                    None
                }
            })
        };
        let cwd = std::env::current_dir().unwrap_or_default();

        let aws = if want(ProviderArg::Aws) {
            let t = templates::resolve(
                Shipped::Aws,
                flag_for(ProviderArg::Aws, &args.aws_template),
                config.aws.template.clone(),
                &cwd,
            )?;
            check_cfn_template(&t.path, &t.body)?;
            tracing::info!(template = %t.describe(), "CloudFormation template");
            let cloudformation_role_arn =
                cloudformation_role(args.aws_cloudformation_role.as_deref(), &config)?;
            let (permissions_boundary_arn, permissions_boundary_origin) =
                permissions_boundary(cloudformation_role_arn.as_deref(), &config);
            Some(AwsPlan {
                regions: aws_regions,
                template_path: t.path,
                template_origin: t.origin,
                template_body: t.body,
                endpoint: args
                    .aws_endpoint
                    .clone()
                    .or_else(|| config.aws.endpoint.clone()),
                parameters: config.aws.parameters.clone(),
                use_spot: config.aws.use_spot.unwrap_or(false),
                cloudformation_role_arn,
                permissions_boundary_arn,
                permissions_boundary_origin,
            })
        } else {
            None
        };
        let azure = if want(ProviderArg::Azure) {
            let t = templates::resolve(
                Shipped::Azure,
                flag_for(ProviderArg::Azure, &args.azure_template),
                config.azure.template.clone(),
                &cwd,
            )?;
            let template = check_arm_template(&t.path, &t.body)?;
            tracing::info!(template = %t.describe(), "ARM template");
            let (credential, credential_origin) = azure_credential_choice(
                args.azure_credential.as_deref(),
                config.azure.credential.as_deref(),
                &config_origin,
            )?;
            if mode == RunMode::Mock {
                // Mock mode resolves the choice now: the emulator cannot stand in for
                // every source, and that is a usage error, not a skip.
                cloudtest_azure::CredentialPlan::resolve(credential, env, true)
                    .map_err(|e| usage(format!("{credential_origin}: {e}")))?;
            }
            let use_spot = config.azure.use_spot.unwrap_or(false);
            if use_spot {
                if let Some(why) =
                    cloudtest_azure::sizes::spot_refusal(&template, &config.azure.parameters)
                {
                    return Err(usage(why));
                }
            }
            Some(AzurePlan {
                locations: azure_locations,
                template_path: t.path,
                template_origin: t.origin,
                template,
                endpoint: args
                    .azure_endpoint
                    .clone()
                    .or_else(|| config.azure.endpoint.clone()),
                subscription_id: config
                    .azure
                    .subscription_id
                    .clone()
                    .or_else(|| env.var("AZURE_SUBSCRIPTION_ID")),
                parameters: config.azure.parameters.clone(),
                use_spot,
                credential,
                credential_origin,
            })
        } else {
            None
        };

        // Deadlines: mode default, then file, then CLOUDTEST_HEALTH_TIMEOUT, then flags.
        let mut deadlines = match &mock {
            Some(m) => PhaseDeadlines::mock_defaults(m.latency),
            None => PhaseDeadlines::live_defaults(),
        };
        // An external emulator (moto, LocalStack) is slower than the embedded one: its
        // CreateStack alone can take several seconds.
        if mock.is_some() && aws.as_ref().is_some_and(|a| a.endpoint.is_some()) {
            for phase in [
                Phase::Create,
                Phase::WaitReady,
                Phase::Teardown,
                Phase::LeakCheck,
            ] {
                let d = deadlines.get(phase).max(Duration::from_secs(120));
                deadlines.set(
                    phase,
                    d,
                    "default for an external AWS emulator (--aws-endpoint)",
                );
            }
        }
        deadlines
            .apply(&config.deadlines, &config_origin, env)
            .map_err(|e| usage(e.to_string()))?;
        for spec in &args.deadline {
            let (phase, value) = spec.split_once('=').ok_or_else(|| {
                usage(format!(
                    "--deadline `{spec}` must look like PHASE=DURATION, e.g. health=5m"
                ))
            })?;
            let phase = Phase::parse(phase.trim()).ok_or_else(|| {
                usage(format!(
                    "--deadline `{spec}`: unknown phase `{phase}` (phases: create, wait_ready, health, enrollment, teardown, leak_check)"
                ))
            })?;
            let d = parse_duration(value.trim())
                .map_err(|e| usage(format!("--deadline `{spec}`: {e}")))?;
            deadlines.set(phase, d, format!("--deadline {phase}=..."));
        }

        let max_parallel = args.max_parallel.or(config.run.max_parallel).unwrap_or(8);
        if max_parallel == 0 {
            return Err(usage("--max-parallel must be at least 1"));
        }
        let expires_after = config.run.expires_after.unwrap_or(DEFAULT_EXPIRES_AFTER);
        let expires_at = now
            + chrono::Duration::from_std(expires_after)
                .map_err(|_| usage(format!("run.expires_after in {config_origin} is too large")))?;

        let gap_doc = if args.no_gap_doc {
            None
        } else {
            match args
                .gap_doc
                .clone()
                .or_else(|| config.report.gap_doc.clone())
            {
                Some(p) => {
                    if !p.is_file() {
                        return Err(usage(format!("--gap-doc {}: no such file", p.display())));
                    }
                    Some(p)
                }
                // Live runs record their results by default; a mock run writes only when
                // asked, so the README's first command leaves the work tree clean.
                None if mode == RunMode::Live => {
                    Some(PathBuf::from(DEFAULT_GAP_DOC)).filter(|p| p.is_file())
                }
                None => None,
            }
        };
        check_out_dir(&args.out)?;

        let run_id = match &args.run_id {
            Some(id) => {
                tags::check_run_id(id).map_err(|why| usage(format!("--run-id `{id}`: {why}")))?;
                id.clone()
            }
            None => new_run_id(now),
        };

        let admin_password = match env.var(ADMIN_PASSWORD_ENV) {
            Some(p) => {
                if p.len() < 24 {
                    tracing::warn!("{ADMIN_PASSWORD_ENV} is shorter than 24 characters; the templates may reject it");
                }
                Some(Secret::new(p))
            }
            None => None,
        };

        let allowed_cidr = match (&mock, args.allowed_cidr.clone()) {
            (_, Some(c)) => Some(c),
            (Some(_), None) => Some("127.0.0.1/32".to_string()),
            (None, None) => config
                .aws
                .allowed_cidr
                .clone()
                .or_else(|| config.azure.allowed_cidr.clone()),
        };
        if let Some(c) = &allowed_cidr {
            check_cidr(c)?;
        }

        Ok(RunPlan {
            mode,
            run_id,
            started_at: now,
            expires_at,
            out: args.out.clone(),
            gap_doc,
            deadlines,
            keep_on_failure: args.keep_on_failure,
            max_parallel,
            named,
            aws,
            azure,
            mock,
            velociraptor_version: config.velociraptor.version().to_string(),
            velociraptor_sha256: config.velociraptor.sha256.clone(),
            admin_user: config.velociraptor.admin_user().to_string(),
            admin_password,
            allowed_cidr,
            monthly_budget_usd: config
                .budget
                .monthly_usd
                .unwrap_or(DEFAULT_MONTHLY_BUDGET_USD),
            config,
            config_origin,
        })
    }
}

/// The Azure credential source: the flag, else the config file, else `auto`; a value
/// outside the allowed ones is a usage error naming the input.
pub fn azure_credential_choice(
    flag: Option<&str>,
    configured: Option<&str>,
    config_origin: &str,
) -> Result<(CredentialChoice, String)> {
    let (value, origin) = match (flag, configured) {
        (Some(v), _) => (
            v,
            "--azure-credential (or CLOUDTEST_AZURE_CREDENTIAL)".to_string(),
        ),
        (None, Some(v)) => (v, format!("[azure] credential in {config_origin}")),
        (None, None) => return Ok((CredentialChoice::Auto, "default".into())),
    };
    let choice = value
        .parse::<CredentialChoice>()
        .map_err(|e| usage(format!("{origin}: {e}")))?;
    Ok((choice, origin))
}

/// `cloudtest.toml` from --config, else ./cloudtest.toml when present, else defaults.
pub fn load_config(path: Option<&Path>) -> Result<(Config, String)> {
    match path {
        Some(p) => {
            if !p.is_file() {
                return Err(usage(format!("--config {}: no such file", p.display())));
            }
            let c = Config::load(p).map_err(|e| usage(e.to_string()))?;
            Ok((c, p.display().to_string()))
        }
        None => {
            let default = Path::new("cloudtest.toml");
            if default.is_file() {
                let c = Config::load(default).map_err(|e| usage(e.to_string()))?;
                Ok((c, "cloudtest.toml".into()))
            } else {
                Ok((Config::default(), "built-in defaults".into()))
            }
        }
    }
}

/// The boundary policy's name in `ci/aws/` (the service role may create roles only with it).
pub const DEFAULT_BOUNDARY_POLICY: &str = "cloudtest-boundary";

/// `--aws-cloudformation-role`, else `[aws] cloudformation_role_arn` (checked when the
/// config was loaded); the flag must look like an IAM role ARN.
pub fn cloudformation_role(flag: Option<&str>, config: &Config) -> Result<Option<String>> {
    match flag {
        Some(arn) => {
            let arn = arn.trim();
            if let Some(why) = iam_arn_problem(arn, IamArnKind::Role) {
                return Err(usage(format!("--aws-cloudformation-role `{arn}` {why}")));
            }
            Ok(Some(arn.to_string()))
        }
        None => Ok(config.aws.cloudformation_role_arn.clone()),
    }
}

/// `[aws] permissions_boundary_arn` (an empty string: none); unset with a service role:
/// the `cloudtest-boundary` policy of the role's account, which ci/README.md creates and
/// the service role's policy requires on every role it creates.
fn permissions_boundary(role: Option<&str>, config: &Config) -> (Option<String>, &'static str) {
    match config.aws.permissions_boundary_arn.as_deref() {
        Some("") => (None, "[aws] permissions_boundary_arn is empty"),
        Some(arn) => (Some(arn.to_string()), "[aws] permissions_boundary_arn"),
        None => match role.and_then(|r| {
            let mut fields = r.split(':');
            let partition = fields.nth(1)?;
            let account = fields.nth(2)?;
            Some(format!(
                "arn:{partition}:iam::{account}:policy/{DEFAULT_BOUNDARY_POLICY}"
            ))
        }) {
            Some(arn) => (Some(arn), "derived from the service role's account"),
            None => (None, "none configured"),
        },
    }
}

fn mock_plan(args: &RunArgs) -> Result<MockPlan> {
    let scenario = match &args.scenario {
        Some(s) => s
            .parse()
            .map_err(|e: String| usage(format!("--scenario: {e}")))?,
        None => cloudtest_mock::Scenario::Healthy,
    };
    let latency = match &args.mock_latency {
        Some(s) => parse_duration(s).map_err(|e| usage(format!("--mock-latency `{s}`: {e}")))?,
        None => Duration::ZERO,
    };
    let faults = args
        .fault
        .iter()
        .map(|f| {
            f.parse()
                .map_err(|e: String| usage(format!("--fault: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let token_lifetime = match &args.mock_token_lifetime {
        Some(s) => {
            let d = parse_duration(s)
                .map_err(|e| usage(format!("--mock-token-lifetime `{s}`: {e}")))?;
            if d < Duration::from_secs(1) {
                return Err(usage(format!(
                    "--mock-token-lifetime `{s}`: tokens live whole seconds (`expires_in`); give at least 1s"
                )));
            }
            Some(d)
        }
        None => None,
    };
    Ok(MockPlan {
        scenario,
        latency,
        faults,
        probe_via_mock: args.probe_via_mock,
        token_lifetime,
    })
}

/// humantime durations ("90s", "5m", "1h 30m"); negative or malformed values are refused.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("must not be negative".into());
    }
    humantime::parse_duration(s.trim()).map_err(|e| format!("not a duration like 90s or 5m ({e})"))
}

fn looks_like_aws_region(r: &str) -> bool {
    r.contains('-') && r.ends_with(|c: char| c.is_ascii_digit())
}

fn pick_regions(
    flag: Vec<String>,
    configured: Option<Vec<String>>,
    default: &str,
    aws: bool,
) -> Result<Vec<String>> {
    let list = if !flag.is_empty() {
        flag
    } else {
        configured.unwrap_or_else(|| vec![default.to_string()])
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in list {
        let r = r.trim().to_string();
        let (ok, known, what) = if aws {
            (
                regions::is_aws_region(&r),
                regions::AWS_REGIONS,
                "AWS region",
            )
        } else {
            (
                regions::is_azure_location(&r),
                regions::AZURE_LOCATIONS,
                "Azure location",
            )
        };
        if !ok {
            let hint = regions::suggest(&r, known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(usage(format!("unknown {what} `{r}`{hint}")));
        }
        if seen.insert(r.clone()) {
            out.push(r);
        }
    }
    Ok(out)
}

/// A CloudFormation template must parse as YAML or JSON and publish the outputs the
/// providers need.
fn check_cfn_template(path: &Path, body: &str) -> Result<()> {
    let doc: serde_norway::Value = serde_norway::from_str(body).map_err(|e| {
        usage(format!(
            "template {} is neither YAML nor JSON: {e}",
            path.display()
        ))
    })?;
    let outputs = doc
        .get("Outputs")
        .and_then(|o| o.as_mapping())
        .ok_or_else(|| {
            usage(format!(
                "template {} has no Outputs section",
                path.display()
            ))
        })?;
    let names: Vec<String> = outputs
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    if doc.get("Resources").and_then(|r| r.as_mapping()).is_none() {
        return Err(usage(format!(
            "template {} has no Resources section",
            path.display()
        )));
    }
    check_outputs(path, &names)
}

/// An ARM template must be JSON with a deploymentTemplate schema, resources and the outputs.
fn check_arm_template(path: &Path, body: &str) -> Result<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| usage(format!("template {} is not JSON: {e}", path.display())))?;
    if doc.get("resources").and_then(|r| r.as_array()).is_none() {
        return Err(usage(format!(
            "template {} has no `resources` array (is it an ARM template?)",
            path.display()
        )));
    }
    let names: Vec<String> = doc
        .get("outputs")
        .and_then(|o| o.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    check_outputs(path, &names)?;
    Ok(doc)
}

fn check_outputs(path: &Path, names: &[String]) -> Result<()> {
    let missing: Vec<&str> = REQUIRED_OUTPUTS
        .iter()
        .copied()
        .filter(|req| !names.iter().any(|n| n.eq_ignore_ascii_case(req)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(usage(format!(
            "template {} lacks required output(s) {} (the probes need them; see docs/dev/CONTRACTS.md)",
            path.display(),
            missing.join(", ")
        )))
    }
}

/// The output directory must exist or be creatable, and be writable, before anything runs.
fn check_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| {
        usage(format!(
            "--out {}: cannot create directory: {e}",
            out.display()
        ))
    })?;
    let probe = out.join(".cloudtest-write-check");
    std::fs::write(&probe, b"ok")
        .map_err(|e| usage(format!("--out {}: not writable: {e}", out.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn check_cidr(c: &str) -> Result<()> {
    let bad = || {
        usage(format!(
            "allowed CIDR `{c}` is not an IPv4 CIDR like 198.51.100.7/32"
        ))
    };
    let (ip, bits) = c.split_once('/').ok_or_else(bad)?;
    ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    if bits > 32 {
        return Err(bad());
    }
    if bits == 0 {
        return Err(usage(format!(
            "allowed CIDR `{c}` would open the Velociraptor GUI to the whole internet; give your address or range"
        )));
    }
    Ok(())
}

/// Sortable, unique enough, and valid in stack and resource-group names.
fn new_run_id(now: DateTime<Utc>) -> String {
    let suffix: u32 = rand_suffix();
    format!("{}-{:06x}", now.format("%Y%m%d%H%M%S"), suffix & 0xff_ffff)
}

fn rand_suffix() -> u32 {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_refuse_negative_and_garbage() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn regions_are_checked_with_suggestions() {
        let err = pick_regions(vec!["us-eats-1".into()], None, "us-east-1", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("us-east-1"), "{err}");
        assert_eq!(
            pick_regions(vec![], None, "eastus", false).expect("default"),
            vec!["eastus"]
        );
        assert_eq!(
            pick_regions(
                vec!["eu-west-1".into(), "eu-west-1".into()],
                None,
                "x",
                true
            )
            .expect("dedup"),
            vec!["eu-west-1"]
        );
    }

    #[test]
    fn azure_credential_flag_beats_config_and_bad_values_name_their_input() {
        let (c, origin) =
            azure_credential_choice(Some("github-oidc"), Some("cli"), "x.toml").expect("ok");
        assert_eq!(c, CredentialChoice::GithubOidc);
        assert!(origin.starts_with("--azure-credential"), "{origin}");
        let (c, origin) = azure_credential_choice(None, Some("workload"), "x.toml").expect("ok");
        assert_eq!(c, CredentialChoice::Workload);
        assert!(origin.contains("[azure] credential in x.toml"), "{origin}");
        assert_eq!(
            azure_credential_choice(None, None, "x").expect("ok").0,
            CredentialChoice::Auto
        );
        let err = azure_credential_choice(None, Some("oidc"), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[azure] credential in x.toml") && err.contains("`oidc`"),
            "{err}"
        );
        assert!(
            err.contains("auto, cli, secret, workload, github-oidc, managed-identity"),
            "{err}"
        );
        let err = crate::error::exit_code_of(
            &azure_credential_choice(Some("az"), None, "x").unwrap_err(),
        );
        assert_eq!(err, cloudtest_core::ExitCode::UsageError);
    }

    #[test]
    fn service_role_flag_is_checked_and_the_boundary_derived() {
        let config = Config::default();
        let err = cloudformation_role(Some("cloudtest-cloudformation"), &config)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--aws-cloudformation-role") && err.contains("cloudtest-cloudformation"),
            "{err}"
        );
        let role = "arn:aws:iam::123456789012:role/cloudtest-cloudformation";
        assert_eq!(
            cloudformation_role(Some(role), &config).expect("valid"),
            Some(role.to_string())
        );
        assert_eq!(cloudformation_role(None, &config).expect("none"), None);
        let (boundary, origin) = permissions_boundary(Some(role), &config);
        assert_eq!(
            boundary.as_deref(),
            Some("arn:aws:iam::123456789012:policy/cloudtest-boundary"),
            "{origin}"
        );
        assert_eq!(permissions_boundary(None, &config).0, None);
        let mut off = Config::default();
        off.aws.permissions_boundary_arn = Some(String::new());
        assert_eq!(permissions_boundary(Some(role), &off).0, None);
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(check_cidr("198.51.100.7/32").is_ok());
        assert!(check_cidr("0.0.0.0/0").is_err());
        assert!(check_cidr("example").is_err());
        assert!(check_cidr("10.0.0.0/33").is_err());
    }

    #[test]
    fn run_ids_are_name_safe_and_distinct() {
        let now = Utc::now();
        let a = new_run_id(now);
        let b = new_run_id(now);
        assert_ne!(a, b);
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{a}"
        );
    }
}
