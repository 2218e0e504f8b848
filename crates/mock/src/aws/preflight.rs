//! The read-only calls `cloudtest preflight` makes, in the shapes of the SDK models: STS
//! `GetCallerIdentity` and IAM `GetRole` / `SimulatePrincipalPolicy` (awsQuery), EC2
//! `DescribeAvailabilityZones` / `DescribeInstanceTypeOfferings` / `DescribeInstanceTypes`
//! / `DescribeSpotPriceHistory` (ec2Query) and Service Quotas `GetServiceQuota` (awsJson1.1).
//!
//! The emulated caller is an assumed-role session whose role has a path, as a CI's OIDC role
//! would be: the simulator refuses the session ARN and the role ARN without its path, and
//! the shipped policy's conditional statements come back `implicitDeny` unless the request
//! carries the context keys the real calls would. Scenarios make one check fail each.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::api::ApiError;
use super::query::QueryRequest;
use super::xml::Node;
use super::ACCOUNT_ID;
use crate::scenario::Scenario;

pub const STS_VERSION: &str = "2011-06-15";
pub const IAM_VERSION: &str = "2010-05-08";
/// The `X-Amz-Target` prefix of Service Quotas (awsJson1.1).
pub const QUOTAS_TARGET_PREFIX: &str = "ServiceQuotasV20190624.";

/// The emulated CI role: a path, as roles made by infrastructure code often have.
pub const ROLE_NAME: &str = "cloudtest-ci";
pub const ROLE_PATH: &str = "/ci/";
const SESSION_NAME: &str = "cloudtest-mock-session";
const ROLE_ID: &str = "AROAEXAMPLEMOCKROLE01";

/// The emulated CloudFormation service role (`--aws-cloudformation-role`), without a path.
pub const SERVICE_ROLE_NAME: &str = "cloudtest-cloudformation";

/// The ARN of [`SERVICE_ROLE_NAME`].
pub fn service_role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{SERVICE_ROLE_NAME}")
}

/// The action the `no-permission` scenario denies.
pub const DENIED_ACTION: &str = "ec2:RunInstances";

/// vCPU limit of both EC2 standard quotas in a healthy account.
const HEALTHY_VCPU_QUOTA: f64 = 32.0;

/// Instance types the emulator knows: name, default vCPUs.
const INSTANCE_TYPES: &[(&str, u32)] = &[
    ("t3.nano", 2),
    ("t3.micro", 2),
    ("t3.small", 2),
    ("t3.medium", 2),
    ("t3.large", 2),
    ("m5.large", 2),
    ("m5.xlarge", 4),
    ("c5.large", 2),
];

/// Context keys the emulated roles' policies test, per action (the CI role's CreateStack and
/// PassRole conditions as in ci/aws/iam-policy.json; EC2, IAM and Secrets Manager writes as
/// the earlier `aws:CalledVia` policy did, which the preflight still sends). The service
/// role also needs `iam:PermissionsBoundary` on iam:CreateRole (see `simulate`).
fn required_context(action: &str) -> &'static [&'static str] {
    match action {
        "cloudformation:CreateStack" | "cloudformation:TagResource" => &[
            "aws:RequestTag/cloudtest:run-id",
            "aws:RequestTag/cloudtest:expires-at",
        ],
        "iam:PassRole" => &["iam:PassedToService"],
        a if a.starts_with("ec2:Create")
            || a.starts_with("ec2:Delete")
            || a.starts_with("ec2:Run")
            || a.starts_with("ec2:Terminate")
            || a.starts_with("ec2:Authorize")
            || a.starts_with("ec2:Associate")
            || a.starts_with("ec2:Attach")
            || a.starts_with("ec2:Allocate")
            || (a.starts_with("iam:") && a != "iam:PassRole")
            || a.starts_with("secretsmanager:") =>
        {
            &["aws:CalledVia"]
        }
        _ => &[],
    }
}

fn role_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role{ROLE_PATH}{ROLE_NAME}")
}

/// Whether `preflight` serves this awsQuery/ec2Query action.
pub fn serves(version: &str, action: &str) -> bool {
    match version {
        STS_VERSION => action == "GetCallerIdentity",
        IAM_VERSION => matches!(action, "GetRole" | "SimulatePrincipalPolicy"),
        super::query::EC2_VERSION => matches!(
            action,
            "DescribeAvailabilityZones"
                | "DescribeInstanceTypeOfferings"
                | "DescribeInstanceTypes"
                | "DescribeSpotPriceHistory"
        ),
        _ => false,
    }
}

/// `ExpiredToken` for every call under `token-expired`: the credentials are stale, as after an
/// SSO session ends.
pub fn expired(scenario: Scenario) -> Option<ApiError> {
    (scenario == Scenario::TokenExpired).then(|| ApiError {
        status: StatusCode::FORBIDDEN,
        code: "ExpiredToken".into(),
        message: "The security token included in the request is expired".into(),
        sender: true,
    })
}

/// STS and IAM: the `<XResult>` children.
pub fn handle_query(
    action: &str,
    q: &QueryRequest,
    scenario: Scenario,
) -> Result<Vec<Node>, ApiError> {
    match action {
        "GetCallerIdentity" => Ok(vec![
            Node::text(
                "Arn",
                format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/{SESSION_NAME}"),
            ),
            Node::text("UserId", format!("{ROLE_ID}:{SESSION_NAME}")),
            Node::text("Account", ACCOUNT_ID),
        ]),
        "GetRole" => get_role(q),
        "SimulatePrincipalPolicy" => simulate(q, scenario),
        other => Err(ApiError::sender(
            "InvalidAction",
            format!("Could not find operation {other}"),
        )),
    }
}

fn get_role(q: &QueryRequest) -> Result<Vec<Node>, ApiError> {
    let name = q.get("RoleName").unwrap_or_default();
    if name != ROLE_NAME {
        return Err(ApiError::sender(
            "NoSuchEntity",
            format!("The role with name {name} cannot be found."),
        ));
    }
    Ok(vec![Node::parent(
        "Role",
        vec![
            Node::text("Path", ROLE_PATH),
            Node::text("RoleName", ROLE_NAME),
            Node::text("RoleId", ROLE_ID),
            Node::text("Arn", role_arn()),
            Node::text("CreateDate", "2026-01-05T09:00:00Z"),
            Node::text(
                "AssumeRolePolicyDocument",
                "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D",
            ),
            Node::text("MaxSessionDuration", "3600"),
        ],
    )])
}

fn simulate(q: &QueryRequest, scenario: Scenario) -> Result<Vec<Node>, ApiError> {
    let source = q.get("PolicySourceArn").unwrap_or_default();
    if source.contains(":assumed-role/") {
        return Err(ApiError::sender(
            "InvalidInput",
            format!("Invalid Entity Arn: {source} does not clearly define entity type and name."),
        ));
    }
    let service_role = source == service_role_arn();
    if source != role_arn() && !service_role {
        return Err(ApiError::sender(
            "NoSuchEntity",
            format!("Entity {source} does not exist."),
        ));
    }
    let actions = q.values("ActionNames.member");
    if actions.is_empty() {
        return Err(ApiError::sender(
            "ValidationError",
            "1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null",
        ));
    }
    let mut resources = q.values("ResourceArns.member");
    if resources.is_empty() {
        resources.push("*".into());
    }
    let context: Vec<String> = q
        .structs("ContextEntries.member")
        .into_iter()
        .filter_map(|m| m.get("ContextKeyName").cloned())
        .collect();
    // One result per action, its decision the most restrictive over every resource given,
    // with the per-resource decisions in ResourceSpecificResults (the simulator's current
    // behaviour). An action on another service's resource matches no statement: a client
    // that reads only the top-level decision of a mixed group sees denials.
    let mut results = Vec::new();
    for action in &actions {
        // ci/aws/cloudformation-role-policy.json: the service role creates roles only with
        // the permissions boundary.
        let boundary: &[&str] = if service_role && action == "iam:CreateRole" {
            &["iam:PermissionsBoundary"]
        } else {
            &[]
        };
        let missing: Vec<String> = required_context(action)
            .iter()
            .chain(boundary)
            .filter(|k| !context.iter().any(|c| c.eq_ignore_ascii_case(k)))
            .map(|k| k.to_string())
            .collect();
        let denied = scenario == Scenario::NoPermission && action == DENIED_ACTION;
        let service = action.split(':').next().unwrap_or_default();
        let mut aggregate = "allowed";
        let mut specific = Vec::new();
        for resource in &resources {
            let same_service =
                resource == "*" || resource.split(':').nth(2).is_some_and(|s| s == service);
            let decision = if denied || !missing.is_empty() || !same_service {
                "implicitDeny"
            } else {
                "allowed"
            };
            if decision != "allowed" {
                aggregate = decision;
            }
            specific.push(vec![
                Node::text("EvalResourceName", resource),
                Node::text("EvalResourceDecision", decision),
                Node::members("MatchedStatements", Vec::new()),
                Node::scalar_members("MissingContextValues", &missing),
            ]);
        }
        results.push(vec![
            Node::text("EvalActionName", action),
            Node::text("EvalDecision", aggregate),
            Node::members("MatchedStatements", Vec::new()),
            Node::scalar_members("MissingContextValues", &missing),
            Node::members("ResourceSpecificResults", specific),
        ]);
    }
    Ok(vec![
        Node::members("EvaluationResults", results),
        Node::text("IsTruncated", "false"),
    ])
}

/// Whether EC2 offers `instance_type` in `zone` under `scenario`: `sku-restricted` offers the
/// server size nowhere in the region, `first-zone-restricted` not in the region's first
/// zone (as t3 sizes are missing from us-east-1e on real accounts). Also decides which
/// launches CloudFormation's instance handler refuses (`cfn.rs`).
pub fn offered(scenario: Scenario, zone: &str, instance_type: &str) -> bool {
    let restricted = instance_type == "t3.medium";
    match scenario {
        Scenario::SkuRestricted => !restricted,
        Scenario::FirstZoneRestricted => !(restricted && zone.ends_with('a')),
        _ => true,
    }
}

/// The region's zones, first to last (`<region>a`, `b`, `c`).
pub fn zones(region: &str) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .map(|s| format!("{region}{s}"))
        .collect()
}

/// Filter values by name (`Filter.N.Name` / `Filter.N.Value.M`).
fn filters(q: &QueryRequest) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for n in 1.. {
        let Some(name) = q.get(&format!("Filter.{n}.Name")) else {
            break;
        };
        out.insert(name.to_string(), q.values(&format!("Filter.{n}.Value")));
    }
    out
}

/// EC2: the fields under `<XResponse>`.
pub fn handle_ec2(
    action: &str,
    q: &QueryRequest,
    region: &str,
    scenario: Scenario,
) -> Result<Vec<Node>, ApiError> {
    match action {
        "DescribeAvailabilityZones" => Ok(vec![Node::items(
            "availabilityZoneInfo",
            zones(region)
                .into_iter()
                .enumerate()
                .map(|(i, z)| {
                    vec![
                        Node::text("zoneName", z),
                        Node::text("zoneState", "available"),
                        Node::text("regionName", region),
                        Node::text("zoneId", format!("mock-az{}", i + 1)),
                        Node::text("zoneType", "availability-zone"),
                        Node::text("optInStatus", "opt-in-not-required"),
                    ]
                })
                .collect(),
        )]),
        "DescribeInstanceTypeOfferings" => {
            let f = filters(q);
            let wanted_types = f.get("instance-type");
            let wanted_locations = f.get("location");
            let mut items = Vec::new();
            for zone in zones(region) {
                for (name, _) in INSTANCE_TYPES {
                    if !offered(scenario, &zone, name) {
                        continue;
                    }
                    if wanted_types.is_some_and(|w| !w.iter().any(|t| t == name))
                        || wanted_locations.is_some_and(|w| !w.contains(&zone))
                    {
                        continue;
                    }
                    items.push(vec![
                        Node::text("instanceType", *name),
                        Node::text("locationType", "availability-zone"),
                        Node::text("location", zone.clone()),
                    ]);
                }
            }
            Ok(vec![Node::items("instanceTypeOfferingSet", items)])
        }
        "DescribeInstanceTypes" => {
            let mut items = Vec::new();
            for t in q.values("InstanceType") {
                let Some((_, vcpus)) = INSTANCE_TYPES.iter().find(|(n, _)| *n == t) else {
                    return Err(ApiError::sender(
                        "InvalidInstanceType",
                        format!("The following supplied instance types do not exist: [{t}]"),
                    ));
                };
                items.push(vec![
                    Node::text("instanceType", t),
                    Node::parent(
                        "vCpuInfo",
                        vec![Node::text("defaultVCpus", vcpus.to_string())],
                    ),
                    Node::parent(
                        "supportedUsageClasses",
                        vec![Node::text("item", "on-demand"), Node::text("item", "spot")],
                    ),
                ]);
            }
            Ok(vec![Node::items("instanceTypeSet", items)])
        }
        "DescribeSpotPriceHistory" => {
            let zone = q.get("AvailabilityZone").map(str::to_string);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let items = q
                .values("InstanceType")
                .into_iter()
                .filter(|t| INSTANCE_TYPES.iter().any(|(n, _)| n == t))
                .map(|t| {
                    vec![
                        Node::text("instanceType", t),
                        Node::text("productDescription", "Linux/UNIX"),
                        Node::text("spotPrice", "0.012500"),
                        Node::text("timestamp", now.clone()),
                        Node::text(
                            "availabilityZone",
                            zone.clone().unwrap_or_else(|| format!("{region}a")),
                        ),
                    ]
                })
                .collect();
            Ok(vec![Node::items("spotPriceHistorySet", items)])
        }
        other => Err(ApiError::sender(
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

/// Service Quotas `GetServiceQuota` (awsJson1.1): the JSON body of the answer.
pub fn handle_quotas(
    target: &str,
    body: &[u8],
    region: &str,
    scenario: Scenario,
) -> Result<Value, (StatusCode, Value)> {
    let error = |status: StatusCode, kind: &str, message: String| {
        (status, json!({"__type": kind, "message": message}))
    };
    let operation = target.strip_prefix(QUOTAS_TARGET_PREFIX).unwrap_or(target);
    if operation != "GetServiceQuota" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("Operation {operation} is not emulated"),
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            e.to_string(),
        )
    })?;
    let service = request["ServiceCode"].as_str().unwrap_or_default();
    let code = request["QuotaCode"].as_str().unwrap_or_default();
    let (name, class) = match (service, code) {
        ("ec2", "L-1216C47A") => (
            "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
            "Standard/OnDemand",
        ),
        ("ec2", "L-34B43A08") => (
            "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
            "Standard/Spot",
        ),
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "NoSuchResourceException",
                format!("The request failed because the specified service {service} or quota {code} does not exist."),
            ))
        }
    };
    let value = if scenario == Scenario::QuotaExhausted {
        0.0
    } else {
        HEALTHY_VCPU_QUOTA
    };
    Ok(json!({
        "Quota": {
            "ServiceCode": service,
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": format!("arn:aws:servicequotas:{region}:{ACCOUNT_ID}:ec2/{code}"),
            "QuotaCode": code,
            "QuotaName": name,
            "Value": value,
            "Unit": "None",
            "Adjustable": true,
            "GlobalQuota": false,
            "UsageMetric": {
                "MetricNamespace": "AWS/Usage",
                "MetricName": "ResourceCount",
                "MetricDimensions": {"Class": class, "Resource": "vCPU", "Service": "EC2", "Type": "Resource"},
                "MetricStatisticRecommendation": "Maximum"
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> QueryRequest {
        let body = serde_urlencoded::to_string(pairs).expect("encode");
        QueryRequest::parse(body.as_bytes()).expect("parse")
    }

    #[test]
    fn simulator_refuses_session_arns_and_denies_without_context() {
        let session = query(&[
            (
                "PolicySourceArn",
                "arn:aws:sts::123456789012:assumed-role/cloudtest-ci/s",
            ),
            ("ActionNames.member.1", "cloudformation:CreateStack"),
        ]);
        let err = handle_query("SimulatePrincipalPolicy", &session, Scenario::Healthy)
            .expect_err("session ARN refused");
        assert_eq!(err.code, "InvalidInput");
        let pathless = query(&[
            (
                "PolicySourceArn",
                "arn:aws:iam::123456789012:role/cloudtest-ci",
            ),
            ("ActionNames.member.1", "cloudformation:CreateStack"),
        ]);
        let err = handle_query("SimulatePrincipalPolicy", &pathless, Scenario::Healthy)
            .expect_err("pathless ARN refused");
        assert_eq!(err.code, "NoSuchEntity");
        let arn = role_arn();
        let bare = query(&[
            ("PolicySourceArn", &arn),
            ("ActionNames.member.1", "cloudformation:CreateStack"),
        ]);
        let xml = Node::parent(
            "r",
            handle_query("SimulatePrincipalPolicy", &bare, Scenario::Healthy).expect("ok"),
        );
        let text = String::from_utf8(xml.to_bytes(None).expect("xml")).expect("utf8");
        assert!(text.contains("implicitDeny"), "{text}");
        let tagged = query(&[
            ("PolicySourceArn", &arn),
            ("ActionNames.member.1", "cloudformation:CreateStack"),
            (
                "ContextEntries.member.1.ContextKeyName",
                "aws:RequestTag/cloudtest:run-id",
            ),
            (
                "ContextEntries.member.2.ContextKeyName",
                "aws:RequestTag/cloudtest:expires-at",
            ),
        ]);
        let xml = Node::parent(
            "r",
            handle_query("SimulatePrincipalPolicy", &tagged, Scenario::Healthy).expect("ok"),
        );
        let text = String::from_utf8(xml.to_bytes(None).expect("xml")).expect("utf8");
        assert!(
            text.contains("<EvalDecision>allowed</EvalDecision>"),
            "{text}"
        );
    }

    #[test]
    fn quota_exhausted_reports_zero_vcpus() {
        let body = br#"{"ServiceCode":"ec2","QuotaCode":"L-1216C47A"}"#;
        let ok = handle_quotas(
            "ServiceQuotasV20190624.GetServiceQuota",
            body,
            "us-east-1",
            Scenario::Healthy,
        )
        .expect("quota");
        assert_eq!(ok["Quota"]["Value"], 32.0);
        let none = handle_quotas(
            "ServiceQuotasV20190624.GetServiceQuota",
            body,
            "us-east-1",
            Scenario::QuotaExhausted,
        )
        .expect("quota");
        assert_eq!(none["Quota"]["Value"], 0.0);
    }
}
