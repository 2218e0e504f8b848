//! Every flag, in one table. Parsing only: validation that touches files, the environment or
//! the clock happens in `plan.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Deploys Velociraptor to AWS (CloudFormation) and Azure (ARM), proves the \
server answers and an agent enrolls, tears everything down, proves nothing is left, and \
reports CLOUD-01/02/03. Mock mode (the default) runs the same code against loopback \
emulators: no cloud account, no cost.";

const AFTER_HELP: &str = "\
Examples:
  cloudtest run                                   # mock mode: CLOUD-01/02/03, no cloud, no cost
  cloudtest run --scenario create-fails           # mock mode with an injected failure
  cloudtest plan --mode live                      # what a live run would do and cost; calls no cloud
  cloudtest preflight --mode live --json          # read-only checks a live run needs; exit 5 on a problem
  cloudtest run --mode live --provider aws --aws-regions us-east-1,eu-west-1 --out out/
  cloudtest report merge shard-aws/ shard-azure/ --out merged/
  cloudtest probe --frontend https://203.0.113.7:8000 --gui https://203.0.113.7:8889 --ca ca.pem --user admin

Environment:
  CLOUDTEST_HEALTH_TIMEOUT   health deadline in seconds (default 120 live, a few seconds in mock mode)
  CLOUDTEST_ADMIN_PASSWORD   admin password to use instead of a generated one (never logged or written)
  CLOUDTEST_RUN_URL          link to this run's artifacts, written into the gap document
  CLOUDTEST_AZURE_CREDENTIAL Azure credential source, as --azure-credential (auto, cli, secret, workload, github-oidc, managed-identity)
  CLOUDTEST_LEDGER           cost ledger (JSON lines) for the budget guard; overrides [budget] ledger
  RUST_LOG                   log filter (e.g. cloudtest=debug); CI=true forces plain log lines

";

#[derive(Debug, Parser)]
#[command(name = "cloudtest", version, about = ABOUT, after_help = format!("{AFTER_HELP}{}", cloudtest_core::exit::EXIT_CODES_HELP))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the lifecycle (create, wait, health, enrollment, teardown, leak check) and report.
    Run(RunArgs),
    /// Read-only checks that a `run` with the same arguments would not fail on something
    /// knowable for free (identity, template, permissions, capacity, quota, spot, budget).
    /// Creates nothing; exit 5 when a check fails.
    Preflight(PreflightArgs),
    /// Print what `run` would do: requirements, regions, skip-guard verdicts, deadlines and
    /// estimated cost. Calls no cloud.
    Plan(RunArgs),
    /// Render reports from results.json files, or merge CI shards.
    Report(ReportArgs),
    /// Probe an existing Velociraptor server (health, enrollment, version); creates nothing.
    Probe(ProbeArgs),
    /// Mock-mode tools.
    Mock {
        #[command(subcommand)]
        command: MockCommand,
    },
    /// Delete expired cloudtest resources (tagged cloudtest:run-id) left by earlier runs, or
    /// every resource of one run (`--run-id`).
    Sweep(SweepArgs),
    /// Price table maintenance.
    Prices {
        #[command(subcommand)]
        command: PricesCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Loopback emulators; no credentials, no cost (default).
    Mock,
    /// Real clouds: real money. Needs credentials.
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum ProviderArg {
    Aws,
    Azure,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// `mock` (default) or `live`. A live run happens only when asked for: `--mode live`.
    #[arg(long, value_enum, default_value_t = ModeArg::Mock)]
    pub mode: ModeArg,

    /// Providers to run, comma-separated (default: both). Naming a provider makes missing
    /// credentials an error instead of a skip. Example: `--provider aws`.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub provider: Vec<ProviderArg>,

    /// Regions for whichever provider they belong to (`us-east-1` is AWS-shaped, `eastus`
    /// Azure-shaped). Example: `--region us-east-1,westeurope`.
    #[arg(long, value_delimiter = ',')]
    pub region: Vec<String>,

    /// AWS regions, one lifecycle each. Example: `--aws-regions us-east-1,eu-west-1`.
    #[arg(long, value_delimiter = ',')]
    pub aws_regions: Vec<String>,

    /// Azure locations, one lifecycle each. Example: `--azure-locations eastus,westeurope`.
    #[arg(long, value_delimiter = ',')]
    pub azure_locations: Vec<String>,

    /// Directory for results.json, junit.xml, report.md, report.html (and mock-state.json).
    #[arg(long, default_value = "cloudtest-out")]
    pub out: PathBuf,

    /// Config file (default: ./cloudtest.toml when it exists). Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Template for the single provider selected with --provider. With both providers use
    /// --aws-template / --azure-template.
    #[arg(long)]
    pub template: Option<PathBuf>,

    /// CloudFormation template (default templates-cfn/velociraptor.yaml).
    #[arg(long)]
    pub aws_template: Option<PathBuf>,

    /// ARM template (default templates-arm/velociraptor.json).
    #[arg(long)]
    pub azure_template: Option<PathBuf>,

    /// Leave a failed deployment running for inspection (said loudly). Its resources carry
    /// the tag `cloudtest:keep=until-expiry`: `cloudtest sweep` removes them once they
    /// expire, not before. Successful runs are always torn down.
    #[arg(long)]
    pub keep_on_failure: bool,

    /// Run id to tag every resource with (default: generated, `<UTC start>-<random>`), so
    /// a CI job can clean up after itself with `cloudtest sweep --run-id ID`. 1 to 40
    /// lower-case letters, digits and dashes; not ending in `-<region>`.
    /// Example: `--run-id 20261201032300-gh1234-1`.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// Lifecycles run at once (default 8).
    #[arg(long)]
    pub max_parallel: Option<usize>,

    /// Gap document to write results into. Live runs write docs/GAP_ANALYSIS.md (when it
    /// exists) by default; mock runs only when given this flag or `[report] gap_doc`, and
    /// then into a separate "latest mock run" block that never replaces a live result.
    #[arg(long)]
    pub gap_doc: Option<PathBuf>,

    /// Do not write into the gap document (also for live runs).
    #[arg(long, conflicts_with = "gap_doc")]
    pub no_gap_doc: bool,

    /// Send every AWS call to this endpoint (LocalStack, moto). AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,

    /// Send every Azure Resource Manager call to this endpoint (mock, replay).
    #[arg(long, value_name = "URL")]
    pub azure_endpoint: Option<String>,

    /// Where Azure tokens come from: auto (default: azure_identity's chain), cli, secret,
    /// workload (re-reads AZURE_FEDERATED_TOKEN_FILE at each renewal), github-oidc (a fresh
    /// GitHub ID token at each renewal) or managed-identity. Overrides `[azure] credential`.
    /// Example: `--azure-credential github-oidc`.
    #[arg(long, value_name = "SOURCE", env = "CLOUDTEST_AZURE_CREDENTIAL")]
    pub azure_credential: Option<String>,

    /// CloudFormation service role: sent as `RoleARN` with CreateStack and DeleteStack, so
    /// CloudFormation creates and deletes the stack's resources with this role's permissions
    /// (see ci/aws/). Overrides `[aws] cloudformation_role_arn`.
    /// Example: `--aws-cloudformation-role arn:aws:iam::123456789012:role/cloudtest-cloudformation`.
    #[arg(long, value_name = "ARN")]
    pub aws_cloudformation_role: Option<String>,

    /// Who may reach the GUI/API port (default: this machine's public address as /32 in live
    /// mode, 127.0.0.1/32 in mock mode). Example: `--allowed-cidr 198.51.100.0/24`.
    #[arg(long, value_name = "CIDR")]
    pub allowed_cidr: Option<String>,

    /// Override a phase deadline: PHASE=DURATION, repeatable. Example: `--deadline health=5m`.
    #[arg(long, value_name = "PHASE=DURATION")]
    pub deadline: Vec<String>,

    /// Mock mode: inject a named failure (create-fails, health-timeout, no-enrollment,
    /// teardown-leaks, throttled, delete-fails, version-mismatch).
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,

    /// Mock mode: how long each emulated wait takes (stack creation, boot, enrollment).
    /// Example: `--mock-latency 2s`.
    #[arg(long, value_name = "DURATION")]
    pub mock_latency: Option<String>,

    /// Mock mode: lifetime of the access tokens the emulated Entra ID issues (default 1h).
    /// A run longer than it passes only if the credential renews its tokens.
    /// Example: `--mock-token-lifetime 5s`.
    #[arg(long, value_name = "DURATION")]
    pub mock_token_lifetime: Option<String>,

    /// Mock mode: inject a fault OPERATION:KIND[:COUNT], repeatable; KIND is error, timeout,
    /// throttle, reset or malformed. Example: `--fault CreateStack:throttle:2`.
    #[arg(long, value_name = "SPEC")]
    pub fault: Vec<String>,

    /// Emulator runs only (mock mode with --aws-endpoint, e.g. moto): send the health and
    /// enrollment probes to the embedded Velociraptor emulator, since an external emulator's
    /// outputs point at no real server. Refused in live mode.
    #[arg(long)]
    pub probe_via_mock: bool,

    /// `run` only: skip the preflight that otherwise runs before anything is created.
    #[arg(long)]
    pub no_preflight: bool,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Also write preflight.json (one object per check: provider, region, check, status,
    /// detail, fix) into --out.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub merge: Option<ReportCommand>,

    /// results.json files to render (several are merged).
    #[arg(value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// Directory for the rendered outputs.
    #[arg(long, default_value = "cloudtest-out")]
    pub out: PathBuf,

    /// Gap document to merge the results into: per requirement and region the newest live
    /// result wins; mock results only replace the "latest mock run" block.
    #[arg(long)]
    pub gap_doc: Option<PathBuf>,

    /// Config file (for the budget and prices).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Combine shards from a CI matrix into one set of outputs, with CLOUD-03 across them.
    Merge {
        /// Shard directories (each holding a results.json) or results.json files.
        #[arg(required = true, value_name = "DIR")]
        shards: Vec<PathBuf>,
        #[arg(long, default_value = "cloudtest-out")]
        out: PathBuf,
        /// Gap document to merge the merged results into (newest live result wins).
        #[arg(long)]
        gap_doc: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Frontend URL. Example: `https://203.0.113.7:8000`.
    #[arg(long)]
    pub frontend: String,
    /// GUI URL. Example: `https://203.0.113.7:8889`.
    #[arg(long)]
    pub gui: String,
    /// The server's CA certificate (PEM), e.g. from `velociraptor config show` (Client.ca_certificate).
    #[arg(long)]
    pub ca: PathBuf,
    /// GUI user; the password comes from CLOUDTEST_ADMIN_PASSWORD.
    #[arg(long)]
    pub user: String,
    /// Clients that must be enrolled and interrogated.
    #[arg(long, default_value_t = 1)]
    pub expect_clients: u32,
    /// Agent version the clients must report (default: not checked).
    #[arg(long)]
    pub expect_version: Option<String>,
    /// Name the server certificate carries.
    #[arg(long, default_value = "VelociraptorServer")]
    pub server_name: String,
    /// Health deadline (default 120s or CLOUDTEST_HEALTH_TIMEOUT).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Enrollment deadline.
    #[arg(long, default_value = "10m")]
    pub enrollment_timeout: String,
}

#[derive(Debug, Subcommand)]
pub enum MockCommand {
    /// Start the emulators and print their endpoints and the variables to export, so the
    /// AWS CLI or another tool can use them. Runs until Ctrl-C.
    Serve {
        #[arg(long, value_name = "NAME")]
        scenario: Option<String>,
        #[arg(long, value_name = "DURATION")]
        mock_latency: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// `live` (default for sweep: it exists to clean real clouds) or `mock`.
    #[arg(long, value_enum, default_value_t = ModeArg::Live)]
    pub mode: ModeArg,
    #[arg(long, value_enum, value_delimiter = ',')]
    pub provider: Vec<ProviderArg>,
    #[arg(long, value_delimiter = ',')]
    pub aws_regions: Vec<String>,
    /// Also delete anything older than this, expired or not. Example: `--older-than 6h`.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Delete one run's resources, expired or not: tagged with this run id or with
    /// `<ID>-<region>` (its per-region lifecycles). Resources of a `--keep-on-failure` run
    /// stay until they expire. Example: `--run-id 20261201032300-gh1234-1`.
    #[arg(long, value_name = "ID", conflicts_with = "older_than")]
    pub run_id: Option<String>,
    /// With `--run-id`: also delete what that run kept with `--keep-on-failure`, before it
    /// expires (once you are done inspecting it).
    #[arg(long, requires = "run_id")]
    pub include_kept: bool,
    /// List only; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,
    #[arg(long, value_name = "URL")]
    pub azure_endpoint: Option<String>,
    /// Where Azure tokens come from (see `run --help`); overrides `[azure] credential`.
    #[arg(long, value_name = "SOURCE", env = "CLOUDTEST_AZURE_CREDENTIAL")]
    pub azure_credential: Option<String>,
    /// CloudFormation service role the stacks were created with: DeleteStack carries it as
    /// `RoleARN`. Overrides `[aws] cloudformation_role_arn`.
    #[arg(long, value_name = "ARN")]
    pub aws_cloudformation_role: Option<String>,
    /// Mock mode only: resources to plant before sweeping, for demonstrations and tests:
    /// `tagged-expired`, `tagged-fresh`, `untagged`. Repeatable.
    #[arg(long, hide = true)]
    pub plant: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Fetch current prices from the AWS Price List API and the Azure Retail Prices API
    /// (network; no credentials needed) and write them to a price file config can use.
    Refresh {
        #[arg(long, default_value = "cloudtest-prices.toml")]
        out: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flag_table_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_to_mock() {
        let cli = Cli::try_parse_from(["cloudtest", "run"]).expect("parses");
        match cli.command {
            Command::Run(a) => {
                assert_eq!(a.mode, ModeArg::Mock);
                assert!(a.provider.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_split_on_commas() {
        let cli = Cli::try_parse_from([
            "cloudtest",
            "run",
            "--provider",
            "aws,azure",
            "--aws-regions",
            "us-east-1,eu-west-1",
        ])
        .expect("parses");
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.provider, vec![ProviderArg::Aws, ProviderArg::Azure]);
        assert_eq!(a.aws_regions.len(), 2);
    }
}
