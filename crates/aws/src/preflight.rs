//! `cloudtest preflight` for one AWS region: read-only, free calls that tell before
//! anything is created whether a run would fail on identity, template, permissions,
//! capacity, quota or spot. Returns [`Check`]s; never formats output.
//!
//! Why each call: `sts:GetCallerIdentity` names the principal; the IAM policy simulator
//! does not take an assumed-role session ARN, which also lacks the role's path, so the
//! role's ARN comes from `iam:GetRole`; the shipped policy's statements are conditional
//! (`aws:RequestTag/...`, `aws:CalledVia`, `iam:PassedToService`), so the simulation carries
//! the context keys the real calls would. vCPU quotas come from Service Quotas (the limit
//! only), usage from counting pending and running instances' vCPUs.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, InstanceLifecycleType, InstanceType, LocationType};
use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use cloudtest_core::preflight::Check;

use crate::calls::CallCounter;
use crate::connection::credential_source;
use crate::errors::{AwsError, ErrorContext};
use crate::inventory::Ec2Inventory;
use crate::inventory::{EXPIRES_AT_TAG, RUN_ID_TAG};
use crate::parameters::declared_parameters;
pub use crate::parameters::instance_types;
use crate::provider::stack_name;
use crate::zones::{first_zone_offering, ZONE_PARAMETER};

const PROVIDER: &str = "aws";

/// Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs.
pub const ON_DEMAND_STANDARD_QUOTA: &str = "L-1216C47A";
/// All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests, in vCPUs.
pub const SPOT_STANDARD_QUOTA: &str = "L-34B43A08";

/// What one region's run would do, as far as the preflight needs to know.
#[derive(Debug, Clone)]
pub struct AwsPreflightPlan {
    pub region: String,
    pub run_id: String,
    pub template_body: String,
    /// Non-secret parameter overrides from config (they may change instance types).
    pub parameters: BTreeMap<String, String>,
    pub use_spot: bool,
    /// The CloudFormation service role, when one is configured: its actions are simulated
    /// for the role instead of the caller.
    pub service_role_arn: Option<String>,
    /// The server role's permissions boundary (the template's `PermissionsBoundaryArn`):
    /// simulated as the `iam:PermissionsBoundary` of `iam:CreateRole`, which the shipped
    /// service-role policy requires.
    pub permissions_boundary_arn: Option<String>,
}

/// `no zone in us-east-1 offers all of t3.medium, t3.micro: t3.medium is offered in none`.
fn no_zone_offers_all(
    region: &str,
    types: &[String],
    offers: &BTreeMap<String, BTreeSet<String>>,
) -> String {
    let nowhere: Vec<&str> = types
        .iter()
        .filter(|t| !offers.values().any(|o| o.contains(*t)))
        .map(String::as_str)
        .collect();
    let why = if nowhere.is_empty() {
        "each is offered somewhere, but never together".to_string()
    } else {
        format!("{} offered in none of them", nowhere.join(", "))
    };
    format!(
        "no zone in {region} offers all of {}: {why}",
        types.join(", ")
    )
}

/// Whether the run chooses the zone itself: the template takes an `AvailabilityZone`
/// parameter and config does not set it.
fn chooses_zone(plan: &AwsPreflightPlan) -> bool {
    !plan.parameters.contains_key(ZONE_PARAMETER)
        && declared_parameters(&plan.template_body, std::path::Path::new("template"))
            .is_ok_and(|declared| declared.iter().any(|d| d.name == ZONE_PARAMETER))
}

/// One group of actions simulated together: the resources they act on and the context
/// keys the real calls carry.
struct Simulation {
    what: &'static str,
    /// CloudFormation makes these calls (as the service role, when one is configured).
    via_cloudformation: bool,
    actions: Vec<(&'static str, String)>,
    context: Vec<(String, Vec<String>, ContextKeyTypeEnum)>,
}

/// The actions a run calls directly, and those CloudFormation calls with the caller's
/// permissions (`aws:CalledVia`), each with the resource it acts on.
fn simulations(account: &str, plan: &AwsPreflightPlan) -> Vec<Simulation> {
    let region = &plan.region;
    let stack = format!(
        "arn:aws:cloudformation:{region}:{account}:stack/{}/00000000-0000-0000-0000-000000000000",
        stack_name(&plan.run_id)
    );
    let any = "*".to_string();
    let tags = vec![
        (
            format!("aws:RequestTag/{RUN_ID_TAG}"),
            vec![plan.run_id.clone()],
            ContextKeyTypeEnum::String,
        ),
        (
            format!("aws:RequestTag/{EXPIRES_AT_TAG}"),
            vec!["2099-01-01T00:00:00Z".to_string()],
            ContextKeyTypeEnum::String,
        ),
    ];
    let mut direct_context = tags.clone();
    let mut direct: Vec<(&'static str, String)> = [
        "cloudformation:CreateStack",
        "cloudformation:TagResource",
        "cloudformation:DeleteStack",
        "cloudformation:DescribeStackEvents",
        "cloudformation:DescribeStackResources",
    ]
    .into_iter()
    .map(|a| (a, stack.clone()))
    .collect();
    direct.extend(
        [
            "cloudformation:DescribeStacks",
            "cloudformation:ValidateTemplate",
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeAddresses",
            "ec2:DescribeVpcs",
        ]
        .into_iter()
        .map(|a| (a, any.clone())),
    );
    if let Some(service_role) = &plan.service_role_arn {
        // The caller hands the service role to CloudFormation with every CreateStack and
        // DeleteStack.
        direct.push(("iam:PassRole", service_role.clone()));
        direct_context.push((
            "iam:PassedToService".to_string(),
            vec!["cloudformation.amazonaws.com".to_string()],
            ContextKeyTypeEnum::String,
        ));
        // CreateStack carries it as RoleARN; ci/aws/iam-policy.json allows CreateStack only
        // with that role.
        direct_context.push((
            "cloudformation:RoleArn".to_string(),
            vec![service_role.clone()],
            ContextKeyTypeEnum::String,
        ));
    }
    let ec2 = |kind: &str| format!("arn:aws:ec2:{region}:{account}:{kind}/*");
    let role = format!("arn:aws:iam::{account}:role/cloudtest-{}", plan.run_id);
    let via: Vec<(&'static str, String)> = vec![
        ("ec2:CreateVpc", ec2("vpc")),
        ("ec2:CreateSubnet", ec2("subnet")),
        ("ec2:CreateInternetGateway", ec2("internet-gateway")),
        ("ec2:CreateRouteTable", ec2("route-table")),
        ("ec2:CreateSecurityGroup", ec2("security-group")),
        ("ec2:AuthorizeSecurityGroupIngress", ec2("security-group")),
        ("ec2:RunInstances", ec2("instance")),
        ("ec2:TerminateInstances", ec2("instance")),
        ("ec2:CreateTags", ec2("instance")),
        ("ec2:DeleteVpc", ec2("vpc")),
        ("iam:CreateRole", role.clone()),
        ("iam:DeleteRole", role.clone()),
        ("iam:PassRole", role),
        (
            "secretsmanager:CreateSecret",
            format!("arn:aws:secretsmanager:{region}:{account}:secret:cloudtest-*"),
        ),
    ];
    let mut via_context = tags.clone();
    via_context.push((
        "aws:CalledVia".to_string(),
        vec!["cloudformation.amazonaws.com".to_string()],
        ContextKeyTypeEnum::StringList,
    ));
    via_context.push((
        "iam:PassedToService".to_string(),
        vec!["ec2.amazonaws.com".to_string()],
        ContextKeyTypeEnum::String,
    ));
    if let Some(boundary) = &plan.permissions_boundary_arn {
        via_context.push((
            "iam:PermissionsBoundary".to_string(),
            vec![boundary.clone()],
            ContextKeyTypeEnum::String,
        ));
    }
    vec![
        Simulation {
            what: "the run's own calls",
            via_cloudformation: false,
            actions: direct,
            context: direct_context,
        },
        Simulation {
            what: "what CloudFormation creates for the run",
            via_cloudformation: true,
            actions: via,
            context: via_context,
        },
    ]
}

/// The preflight's AWS clients for one region.
pub struct AwsPreflight {
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
    quotas: aws_sdk_servicequotas::Client,
    cfn: aws_sdk_cloudformation::Client,
    ec2: aws_sdk_ec2::Client,
    counter: CallCounter,
    errors: ErrorContext,
}

/// What a failed read means for a check: the caller may not read it, or the endpoint does
/// not implement it, or something else went wrong. Never a crash, never a FAIL: the check
/// could not be made.
fn could_not(errors: &ErrorContext, region: &str, check: &str, e: &AwsError) -> Check {
    let detail = match e {
        AwsError::PermissionDenied { operation, .. } => format!(
            "not checked: this principal may not call {operation} ({e}); add it from ci/aws/iam-policy.json to check this"
        ),
        _ if errors.endpoint.is_some() => {
            format!("not supported by this endpoint: {e}")
        }
        _ => format!("not checked: {e}"),
    };
    Check::warn(PROVIDER, region, check, detail)
}

impl AwsPreflight {
    pub fn new(sdk: &SdkConfig, region: &str) -> Self {
        let counter = CallCounter::new();
        let errors = ErrorContext {
            region: region.to_string(),
            endpoint: sdk.endpoint_url().map(str::to_string),
            credential_source: credential_source(false),
        };
        Self {
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            quotas: aws_sdk_servicequotas::Client::from_conf(
                aws_sdk_servicequotas::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            cfn: aws_sdk_cloudformation::Client::from_conf(
                aws_sdk_cloudformation::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(sdk)
                    .interceptor(counter.clone())
                    .build(),
            ),
            counter,
            errors,
        }
    }

    /// Names the credential source in messages.
    pub fn with_credential_source(mut self, source: impl Into<String>) -> Self {
        self.errors.credential_source = source.into();
        self
    }

    /// HTTP attempts sent so far (SDK retries included).
    pub fn api_calls(&self) -> u32 {
        self.counter.get()
    }

    /// Every check for this region, in the order a person reads them. A failed identity
    /// stops the rest: every other call would fail the same way.
    pub async fn run(&self, plan: &AwsPreflightPlan) -> Vec<Check> {
        let region = plan.region.as_str();
        let mut out = Vec::new();
        let (account, principal) = match self.identity(region).await {
            Ok((account, principal, check)) => {
                out.push(check);
                (account, principal)
            }
            Err(check) => {
                out.push(check);
                return out;
            }
        };
        out.push(self.template(plan).await);
        out.extend(self.permissions(plan, &account, &principal).await);
        let types = instance_types(&plan.template_body, &plan.parameters);
        let zone = if chooses_zone(plan) {
            // The run passes the first zone offering every type: check that one exists.
            let (check, zone) = self.run_zone(region, &types).await;
            out.push(check);
            zone
        } else {
            let zone = match self.first_zone(region).await {
                Ok(z) => z,
                Err(e) => {
                    out.push(could_not(&self.errors, region, "capacity", &e));
                    None
                }
            };
            if let Some(zone) = &zone {
                out.push(self.offerings(region, zone, &types).await);
            }
            zone
        };
        out.push(self.quota(plan, &types).await);
        if plan.use_spot {
            if let Some(zone) = &zone {
                out.push(self.spot(region, zone, &types).await);
            }
        }
        out
    }

    async fn identity(&self, region: &str) -> Result<(String, String, Check), Check> {
        match self.sts.get_caller_identity().send().await {
            Ok(o) => {
                let account = o.account().unwrap_or_default().to_string();
                let arn = o.arn().unwrap_or_default().to_string();
                let detail = format!(
                    "account {account}, principal {arn} (credentials: {})",
                    self.errors.credential_source
                );
                Ok((
                    account,
                    arn,
                    Check::ok(PROVIDER, region, "identity", detail),
                ))
            }
            Err(e) => {
                let e = self.errors.sdk("GetCallerIdentity", "the caller", "sts", e);
                let fix = match &e {
                    AwsError::BadCredentials { .. } | AwsError::NoCredentials { .. } => {
                        "log in again (`aws sso login`, or refresh AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; in CI check the OIDC role)"
                    }
                    _ => "check the region, --aws-endpoint and network access to STS",
                };
                Err(Check::fail(
                    PROVIDER,
                    region,
                    "identity",
                    e.to_string(),
                    fix,
                ))
            }
        }
    }

    async fn template(&self, plan: &AwsPreflightPlan) -> Check {
        let region = plan.region.as_str();
        match self
            .cfn
            .validate_template()
            .template_body(&plan.template_body)
            .send()
            .await
        {
            Ok(o) => {
                let caps: Vec<&str> = o.capabilities().iter().map(|c| c.as_str()).collect();
                let detail = if caps.is_empty() {
                    "CloudFormation accepts the template".to_string()
                } else {
                    format!(
                        "CloudFormation accepts the template (needs {})",
                        caps.join(", ")
                    )
                };
                Check::ok(PROVIDER, region, "template", detail)
            }
            Err(e) => {
                let e = self
                    .errors
                    .sdk("ValidateTemplate", "the template", "cloudformation", e);
                match &e {
                    AwsError::Api { code, message, .. } if code == "ValidationError" => {
                        Check::fail(
                            PROVIDER,
                            region,
                            "template",
                            format!("CloudFormation rejects the template: {message}"),
                            "fix the template (or pass another with --aws-template)",
                        )
                    }
                    _ => could_not(&self.errors, region, "template", &e),
                }
            }
        }
    }

    /// The ARN the simulator accepts: a role's own ARN (with its path) for an assumed-role
    /// session, the principal's ARN otherwise.
    async fn simulation_source(&self, principal: &str) -> Result<String, AwsError> {
        // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
        let Some(rest) = principal.split(":assumed-role/").nth(1) else {
            return Ok(principal.to_string());
        };
        let role = rest.split('/').next().unwrap_or_default();
        let o = self
            .iam
            .get_role()
            .role_name(role)
            .send()
            .await
            .map_err(|e| self.errors.sdk("GetRole", role, "iam", e))?;
        o.role()
            .map(|r| r.arn().to_string())
            .ok_or(AwsError::MissingField {
                operation: "GetRole",
                target: role.to_string(),
                field: "Role",
            })
    }

    async fn permissions(
        &self,
        plan: &AwsPreflightPlan,
        account: &str,
        principal: &str,
    ) -> Vec<Check> {
        let region = plan.region.as_str();
        let source = match self.simulation_source(principal).await {
            Ok(s) => s,
            Err(e) => return vec![could_not(&self.errors, region, "permissions", &e)],
        };
        let mut out = Vec::new();
        for sim in simulations(account, plan) {
            // With a service role, CloudFormation acts as that role, not as the caller.
            let (who, subject) = match &plan.service_role_arn {
                Some(role) if sim.via_cloudformation => {
                    (role.clone(), "the CloudFormation service role")
                }
                _ => (source.clone(), "the caller"),
            };
            match self.simulate(&who, &sim).await {
                Ok(denied) if denied.is_empty() => out.push(Check::ok(
                    PROVIDER,
                    region,
                    "permissions",
                    format!(
                        "{subject} ({who}) may do {} ({} actions simulated)",
                        sim.what,
                        sim.actions.len()
                    ),
                )),
                Ok(denied) => out.push(Check::fail(
                    PROVIDER,
                    region,
                    "permissions",
                    format!(
                        "{subject} ({who}) may not do {}: {}",
                        sim.what,
                        denied.join(", ")
                    ),
                    format!(
                        "grant {} to {who} (see ci/aws/iam-policy.json)",
                        denied
                            .iter()
                            .map(|d| d.split(' ').next().unwrap_or(d))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                Err(e) => {
                    out.push(could_not(&self.errors, region, "permissions", &e));
                    break;
                }
            }
        }
        out
    }

    /// Denied actions as `action (decision)`, in request order.
    async fn simulate(&self, source: &str, sim: &Simulation) -> Result<Vec<String>, AwsError> {
        let resources: BTreeSet<&str> = sim.actions.iter().map(|(_, r)| r.as_str()).collect();
        let actions: BTreeSet<&str> = sim.actions.iter().map(|(a, _)| *a).collect();
        let mut decisions: BTreeMap<(String, String), (String, Vec<String>)> = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let mut call = self
                .iam
                .simulate_principal_policy()
                .policy_source_arn(source)
                .set_marker(marker.clone());
            for a in &actions {
                call = call.action_names(*a);
            }
            for r in &resources {
                call = call.resource_arns(*r);
            }
            for (key, values, kind) in &sim.context {
                call = call.context_entries(
                    ContextEntry::builder()
                        .context_key_name(key)
                        .set_context_key_values(Some(values.clone()))
                        .context_key_type(kind.clone())
                        .build(),
                );
            }
            let o = call
                .send()
                .await
                .map_err(|e| self.errors.sdk("SimulatePrincipalPolicy", source, "iam", e))?;
            // The simulator now answers one result per action, its top-level decision the
            // most restrictive over every resource given; the decision for each resource is
            // in ResourceSpecificResults (older answers had one result per resource).
            for r in o.evaluation_results() {
                let action = r.eval_action_name().to_string();
                for rs in r.resource_specific_results() {
                    decisions.insert(
                        (action.clone(), rs.eval_resource_name().to_string()),
                        (
                            rs.eval_resource_decision().as_str().to_string(),
                            rs.missing_context_values().to_vec(),
                        ),
                    );
                }
                if let Some(resource) = r.eval_resource_name() {
                    decisions
                        .entry((action.clone(), resource.to_string()))
                        .or_insert_with(|| {
                            (
                                r.eval_decision().as_str().to_string(),
                                r.missing_context_values().to_vec(),
                            )
                        });
                }
            }
            match (o.is_truncated(), o.marker()) {
                (true, Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        let mut denied = Vec::new();
        for (action, resource) in &sim.actions {
            let key = (action.to_string(), resource.clone());
            match decisions.get(&key) {
                Some((d, _)) if d == PolicyEvaluationDecisionType::Allowed.as_str() => {}
                Some((d, missing)) if !missing.is_empty() => denied.push(format!(
                    "{action} ({d}; the policy needs context {} this check does not know)",
                    missing.join(", ")
                )),
                Some((d, _)) => denied.push(format!("{action} ({d})")),
                None => denied.push(format!("{action} (not evaluated)")),
            }
        }
        Ok(denied)
    }

    /// The zone the template uses: `!Select [0, !GetAZs ""]`, the first available zone.
    async fn first_zone(&self, region: &str) -> Result<Option<String>, AwsError> {
        let o = self
            .ec2
            .describe_availability_zones()
            .filters(
                Filter::builder()
                    .name("zone-type")
                    .values("availability-zone")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.errors
                    .sdk("DescribeAvailabilityZones", region, "ec2", e)
            })?;
        let mut zones: Vec<String> = o
            .availability_zones()
            .iter()
            .filter(|z| z.state().is_none_or(|s| s.as_str() == "available"))
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        zones.sort();
        Ok(zones.into_iter().next())
    }

    /// The zone the run will use (the first offering every type), as the capacity check.
    async fn run_zone(&self, region: &str, types: &[String]) -> (Check, Option<String>) {
        let inventory = Ec2Inventory::from_client(self.ec2.clone(), self.errors.clone());
        let offers = match inventory.zone_offerings(types).await {
            Ok(offers) => offers,
            Err(e) => return (could_not(&self.errors, region, "capacity", &e), None),
        };
        let listed = types.join(", ");
        match first_zone_offering(&offers, types) {
            Some(zone) => (
                Check::ok(
                    PROVIDER,
                    region,
                    "capacity",
                    format!("{listed} offered in {zone}, the first zone offering all of them (the run deploys there)"),
                ),
                Some(zone),
            ),
            None => (
                Check::fail(
                    PROVIDER,
                    region,
                    "capacity",
                    no_zone_offers_all(region, types, &offers),
                    "pick instance types offered together in one zone ([aws.parameters] ServerInstanceType / ClientInstanceType) or another region",
                ),
                None,
            ),
        }
    }

    async fn offerings(&self, region: &str, zone: &str, types: &[String]) -> Check {
        let mut call = self
            .ec2
            .describe_instance_type_offerings()
            .location_type(LocationType::AvailabilityZone)
            .filters(Filter::builder().name("location").values(zone).build());
        let mut filter = Filter::builder().name("instance-type");
        for t in types {
            filter = filter.values(t);
        }
        call = call.filters(filter.build());
        match call.send().await {
            Ok(o) => {
                let offered: BTreeSet<&str> = o
                    .instance_type_offerings()
                    .iter()
                    .filter_map(|x| x.instance_type().map(|t| t.as_str()))
                    .collect();
                let missing: Vec<&String> = types
                    .iter()
                    .filter(|t| !offered.contains(t.as_str()))
                    .collect();
                if missing.is_empty() {
                    Check::ok(
                        PROVIDER,
                        region,
                        "capacity",
                        format!("{} offered in {zone}", types.join(", ")),
                    )
                } else {
                    let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    Check::fail(
                        PROVIDER,
                        region,
                        "capacity",
                        format!(
                            "{} not offered in {zone}, the zone the template picks",
                            names.join(", ")
                        ),
                        "pick an instance type offered there ([aws.parameters] ServerInstanceType / ClientInstanceType) or another region",
                    )
                }
            }
            Err(e) => could_not(
                &self.errors,
                region,
                "capacity",
                &self
                    .errors
                    .sdk("DescribeInstanceTypeOfferings", zone, "ec2", e),
            ),
        }
    }

    /// vCPUs per instance type, from `DescribeInstanceTypes`.
    async fn vcpus(&self, types: &BTreeSet<String>) -> Result<BTreeMap<String, u32>, AwsError> {
        let mut out = BTreeMap::new();
        if types.is_empty() {
            return Ok(out);
        }
        let mut call = self.ec2.describe_instance_types();
        for t in types {
            call = call.instance_types(InstanceType::from(t.as_str()));
        }
        let o = call.send().await.map_err(|e| {
            self.errors
                .sdk("DescribeInstanceTypes", "instance types", "ec2", e)
        })?;
        for info in o.instance_types() {
            if let (Some(t), Some(v)) = (
                info.instance_type(),
                info.v_cpu_info().and_then(|c| c.default_v_cpus()),
            ) {
                out.insert(t.as_str().to_string(), v.max(0) as u32);
            }
        }
        Ok(out)
    }

    /// vCPUs of pending and running standard-class instances of one purchase option.
    async fn used_vcpus(&self, region: &str, spot: bool) -> Result<u32, AwsError> {
        let mut per_type: BTreeMap<String, u32> = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let o = self
                .ec2
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .build(),
                )
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| self.errors.sdk("DescribeInstances", region, "ec2", e))?;
            for i in o.reservations().iter().flat_map(|r| r.instances()) {
                let is_spot = i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot);
                let Some(t) = i.instance_type().map(|t| t.as_str().to_string()) else {
                    continue;
                };
                if is_spot == spot && is_standard_class(&t) {
                    *per_type.entry(t).or_default() += 1;
                }
            }
            match o.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let vcpus = self.vcpus(&per_type.keys().cloned().collect()).await?;
        Ok(per_type
            .iter()
            .map(|(t, n)| n * vcpus.get(t).copied().unwrap_or(2))
            .sum())
    }

    async fn quota(&self, plan: &AwsPreflightPlan, types: &[String]) -> Check {
        let region = plan.region.as_str();
        let (code, label) = if plan.use_spot {
            (SPOT_STANDARD_QUOTA, "Standard Spot Instance Requests")
        } else {
            (
                ON_DEMAND_STANDARD_QUOTA,
                "Running On-Demand Standard instances",
            )
        };
        let limit = match self
            .quotas
            .get_service_quota()
            .service_code("ec2")
            .quota_code(code)
            .send()
            .await
        {
            Ok(o) => o.quota().and_then(|q| q.value()).unwrap_or(0.0),
            Err(e) => {
                return could_not(
                    &self.errors,
                    region,
                    "quota",
                    &self.errors.sdk("GetServiceQuota", code, "servicequotas", e),
                )
            }
        };
        let needed_types: BTreeSet<String> = types.iter().cloned().collect();
        let sizes = match self.vcpus(&needed_types).await {
            Ok(v) => v,
            Err(e) => return could_not(&self.errors, region, "quota", &e),
        };
        let need: u32 = types
            .iter()
            .map(|t| sizes.get(t).copied().unwrap_or(2))
            .sum();
        let used = match self.used_vcpus(region, plan.use_spot).await {
            Ok(u) => u,
            Err(e) => return could_not(&self.errors, region, "quota", &e),
        };
        let limit = limit.max(0.0).floor() as u32;
        let free = limit.saturating_sub(used);
        let detail =
            format!("{label} ({code}): limit {limit} vCPUs, {used} in use, this run needs {need}");
        if need <= free {
            Check::ok(PROVIDER, region, "quota", detail)
        } else {
            Check::fail(
                PROVIDER,
                region,
                "quota",
                detail,
                format!(
                    "request a vCPU quota increase for {label} in {region}: need {need}, have {free} (aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} --desired-value {} --region {region})",
                    used + need
                ),
            )
        }
    }

    async fn spot(&self, region: &str, zone: &str, types: &[String]) -> Check {
        let mut call = self
            .ec2
            .describe_spot_price_history()
            .product_descriptions("Linux/UNIX")
            .availability_zone(zone)
            .start_time(aws_sdk_ec2::primitives::DateTime::from(
                std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600),
            ));
        for t in types {
            call = call.instance_types(InstanceType::from(t.as_str()));
        }
        match call.send().await {
            Ok(o) => {
                let priced: BTreeSet<&str> = o
                    .spot_price_history()
                    .iter()
                    .filter_map(|p| p.instance_type().map(|t| t.as_str()))
                    .collect();
                let missing: Vec<&str> = types
                    .iter()
                    .map(String::as_str)
                    .filter(|t| !priced.contains(t))
                    .collect();
                if missing.is_empty() {
                    Check::ok(
                        PROVIDER,
                        region,
                        "spot",
                        format!("recent spot prices for {} in {zone}", types.join(", ")),
                    )
                } else {
                    Check::fail(
                        PROVIDER,
                        region,
                        "spot",
                        format!(
                            "no spot price in the last day for {} in {zone}: no spot market there",
                            missing.join(", ")
                        ),
                        "set [aws] use_spot = false, or pick instance types with a spot market",
                    )
                }
            }
            Err(e) => could_not(
                &self.errors,
                region,
                "spot",
                &self.errors.sdk("DescribeSpotPriceHistory", zone, "ec2", e),
            ),
        }
    }
}

/// The instance families the standard vCPU quotas count (A, C, D, H, I, M, R, T, Z).
fn is_standard_class(instance_type: &str) -> bool {
    instance_type
        .chars()
        .next()
        .is_some_and(|c| "acdhimrtz".contains(c.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types_come_from_config_then_template_defaults() {
        let body = "Parameters:\n  ServerInstanceType:\n    Type: String\n    Default: t3.medium\n  ClientInstanceType:\n    Type: String\n    Default: t3.micro\n  RunId:\n    Type: String\nResources: {}\n";
        let mut params = BTreeMap::new();
        assert_eq!(instance_types(body, &params), ["t3.medium", "t3.micro"]);
        params.insert("ClientInstanceType".into(), "m5.large".into());
        assert_eq!(instance_types(body, &params), ["t3.medium", "m5.large"]);
    }

    #[test]
    fn standard_class_is_by_family_letter() {
        assert!(is_standard_class("t3.micro"));
        assert!(is_standard_class("m5.large"));
        assert!(!is_standard_class("g5.xlarge"));
        assert!(!is_standard_class("p4d.24xlarge"));
    }
}
