//! The CloudFormation (awsQuery) actions: `CreateStack`, `DescribeStacks`,
//! `DescribeStackEvents`, `DescribeStackResources`, `DeleteStack`, `ListStacks`,
//! `ValidateTemplate`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use cloudtest_core::memo::LastParsed;

use super::api::ApiError;
use super::launch;
use super::query::QueryRequest;
use super::stacks::{handler_message, DeletePlan, NewStack, Stack};
use super::template::{plan_stack, resolve_parameters, BootFacts, StackIdentity, Template};
use super::xml::Node;
use super::{StackRequest, World, ACCOUNT_ID};
use crate::hooks::{EmulatedServers, ServerDeployment};
use crate::scenario::Scenario;

/// What `ca-spoofed` publishes instead of the server's CA: a well-formed PEM whose
/// fingerprint is not the server's.
const SPOOFED_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nY2xvdWR0ZXN0OiBub3QgdGhlIHNlcnZlcidzIENBOyBzaWduYWxsZWQgZmlyc3QgYnkgc29tZW9uZSBlbHNl\n-----END CERTIFICATE-----\n";

/// Events per `DescribeStackEvents` page.
pub const EVENTS_PAGE_SIZE: usize = 10;

/// What the CloudFormation actions need besides the request.
pub struct CfnContext<'a> {
    pub scenario: Scenario,
    pub latency: Duration,
    pub servers: &'a dyn EmulatedServers,
    pub region: &'a str,
}

/// The `<ActionResult>` children, or `None` for actions without a result element.
pub type CfnResult = Result<Option<Vec<Node>>, ApiError>;

pub fn handle(action: &str, q: &QueryRequest, world: &mut World, cx: &CfnContext) -> CfnResult {
    match action {
        "CreateStack" => create_stack(q, world, cx),
        "DescribeStacks" => describe_stacks(q, world),
        "DescribeStackEvents" => describe_stack_events(q, world),
        "DescribeStackResources" => describe_stack_resources(q, world),
        "DeleteStack" => delete_stack(q, world, cx),
        "ListStacks" => list_stacks(q, world),
        "ValidateTemplate" => validate_template(q),
        other => Err(ApiError::sender(
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-05-15"),
        )),
    }
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn missing(param: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        lower_first(param)
    ))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn does_not_exist(name: &str) -> ApiError {
    ApiError::validation(format!("Stack with id {name} does not exist"))
}

/// By stack id: any stack, deleted ones included. By name: the live stack of that name.
fn find(world: &World, name_or_id: &str) -> Option<usize> {
    if name_or_id.starts_with("arn:") {
        world.stacks.iter().position(|s| s.id == name_or_id)
    } else {
        world
            .stacks
            .iter()
            .rposition(|s| s.name == name_or_id && !s.is_deleted())
    }
}

/// Every region's ValidateTemplate and CreateStack send the same body; parsing 46 KB of YAML
/// for each was most of a large run's emulator time.
static TEMPLATES: LastParsed<Template> = LastParsed::new();

fn template_body(q: &QueryRequest) -> Result<Arc<Template>, ApiError> {
    let body = match (q.get("TemplateBody"), q.get("TemplateURL")) {
        (Some(b), _) => b,
        (None, Some(_)) => {
            return Err(ApiError::validation(
                "TemplateURL is not supported by the cloudtest emulator; send TemplateBody",
            ))
        }
        (None, None) => {
            return Err(ApiError::validation(
                "Either Template URL or Template Body must be specified.",
            ))
        }
    };
    TEMPLATES
        .get_or_parse(body, Template::parse)
        .map_err(|e| ApiError::validation(e.to_string()))
}

fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn create_stack(q: &QueryRequest, world: &mut World, cx: &CfnContext) -> CfnResult {
    let name = q
        .get("StackName")
        .ok_or_else(|| missing("StackName"))?
        .to_string();
    if !valid_stack_name(&name) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )));
    }
    let token = q.get("ClientRequestToken").map(str::to_string);
    if let Some(i) = find(world, &name) {
        let existing = &world.stacks[i];
        if token.is_some() && existing.client_request_token == token {
            // A retry of the same request: CloudFormation answers it again.
            return Ok(Some(vec![Node::text("StackId", &existing.id)]));
        }
        return Err(ApiError::sender(
            "AlreadyExistsException",
            format!("Stack [{name}] already exists"),
        ));
    }
    let role_arn = role_arn(q)?;
    let template = template_body(q)?;
    let given: Vec<(String, String)> = q
        .structs("Parameters.member")
        .into_iter()
        .filter_map(|m| {
            Some((
                m.get("ParameterKey")?.clone(),
                m.get("ParameterValue").cloned().unwrap_or_default(),
            ))
        })
        .collect();
    let params = resolve_parameters(&template.parameters, &given)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let capabilities = q.values("Capabilities.member");
    let required = template.required_capabilities();
    let satisfied = required.iter().all(|r| {
        capabilities
            .iter()
            .any(|c| c == r || (*r == "CAPABILITY_IAM" && c == "CAPABILITY_NAMED_IAM"))
    });
    if !satisfied {
        return Err(ApiError::sender(
            "InsufficientCapabilitiesException",
            format!("Requires capabilities : [{}]", required.join(", ")),
        ));
    }
    let identity = StackIdentity {
        id: format!(
            "arn:aws:cloudformation:{}:{ACCOUNT_ID}:stack/{name}/{}",
            cx.region,
            uuid::Uuid::new_v4()
        ),
        name: name.clone(),
        region: cx.region.to_string(),
        account: ACCOUNT_ID.to_string(),
    };
    let real_ca = cx.servers.ca_pem();
    let console_ca = cloudtest_core::outputs::pem_fingerprint(&real_ca).ok();
    // `ca-spoofed`: someone signalled the wait condition first, with their own CA.
    let published_ca = if cx.scenario == Scenario::CaSpoofed {
        SPOOFED_CA_PEM.to_string()
    } else {
        real_ca
    };
    let boot = BootFacts {
        address: cx.servers.address(),
        ca_pem: published_ca,
    };
    let planned = plan_stack(&template, &params, &identity, &boot)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let param = |k: &str| params.get(k).map(|p| p.value.clone());
    let server = super::stacks::server_index(&planned.resources);
    let deployment = server.map(|_| ServerDeployment {
        deployment: identity.id.clone(),
        admin_user: param("AdminUser").unwrap_or_else(|| "cloudtest-admin".into()),
        admin_password: param("AdminPassword").unwrap_or_default(),
        version: param("VelociraptorVersion").unwrap_or_default(),
        expected_clients: 1,
    });
    let fail = if cx.scenario.create_fails() {
        let at = server.unwrap_or(planned.resources.len().saturating_sub(1));
        let ty =
            launch::instance_type(&planned.resources, at).unwrap_or_else(|| "t3.medium".into());
        Some((
            at,
            handler_message(&format!(
                "We currently do not have sufficient {ty} capacity in the Availability Zone you requested. Our system will be working on provisioning additional capacity."
            )),
        ))
    } else {
        launch::unsupported_in_zone(&planned.resources, cx.region, cx.scenario)
    };
    let disable_rollback =
        q.get("DisableRollback") == Some("true") || q.get("OnFailure") == Some("DO_NOTHING");
    let id = identity.id.clone();
    tracing::debug!(stack = %name, resources = planned.resources.len(), "emulated CreateStack accepted");
    let stack = Stack::create(
        NewStack {
            id: id.clone(),
            name,
            description: template.description.clone(),
            parameters: params.into_values().collect(),
            tags: q.cfn_tags(),
            capabilities,
            client_request_token: token,
            role_arn: role_arn.clone(),
            resources: planned.resources,
            outputs: planned.outputs,
            deployment,
            console_ca,
            client_boot_fails: cx.scenario == Scenario::ClientBootFails,
        },
        cx.latency,
        cx.latency * cx.scenario.rollback_latencies(),
        fail,
        disable_rollback,
    );
    world.stacks.push(stack);
    world.stack_requests.push(StackRequest {
        action: "CreateStack",
        stack: identity.name,
        role_arn,
    });
    Ok(Some(vec![Node::text("StackId", id)]))
}

/// `RoleARN`, checked as CloudFormation's model does (20 to 2048 characters).
fn role_arn(q: &QueryRequest) -> Result<Option<String>, ApiError> {
    match q.get("RoleARN") {
        None => Ok(None),
        Some(arn) if (20..=2048).contains(&arn.len()) => Ok(Some(arn.to_string())),
        Some(arn) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{arn}' at 'roleARN' failed to satisfy constraint: Member must have length greater than or equal to 20"
        ))),
    }
}

fn key_values(list: &str, pairs: &[(String, String)]) -> Node {
    Node::members(
        list,
        pairs
            .iter()
            .map(|(k, v)| vec![Node::text("Key", k), Node::text("Value", v)])
            .collect(),
    )
}

fn stack_member(s: &Stack) -> Vec<Node> {
    let mut out = vec![
        Node::text("StackId", &s.id),
        Node::text("StackName", &s.name),
    ];
    out.extend(Node::opt("Description", s.description.clone()));
    out.push(Node::members(
        "Parameters",
        s.parameters
            .iter()
            .map(|p| {
                let shown = if p.no_echo {
                    "****".to_string()
                } else {
                    p.value.clone()
                };
                let mut m = vec![
                    Node::text("ParameterKey", &p.key),
                    Node::text("ParameterValue", shown),
                ];
                m.extend(Node::opt("ResolvedValue", p.resolved.clone()));
                m
            })
            .collect(),
    ));
    out.push(Node::text("CreationTime", time(s.created)));
    out.extend(Node::opt("DeletionTime", s.deleted.map(time)));
    out.push(Node::text("StackStatus", s.status));
    out.extend(Node::opt("StackStatusReason", s.reason.clone()));
    out.push(Node::text("DisableRollback", "false"));
    out.extend(Node::opt("RoleARN", s.role_arn.clone()));
    let created = s
        .events
        .iter()
        .any(|e| e.status == "CREATE_COMPLETE" && e.physical_id == s.id);
    if created && !s.is_deleted() {
        out.push(Node::members(
            "Outputs",
            s.outputs
                .iter()
                .map(|o| {
                    let mut m = vec![
                        Node::text("OutputKey", &o.key),
                        Node::text("OutputValue", &o.value),
                    ];
                    m.extend(Node::opt("Description", o.description.clone()));
                    m.extend(Node::opt("ExportName", o.export_name.clone()));
                    m
                })
                .collect(),
        ));
    }
    out.push(Node::scalar_members("Capabilities", &s.capabilities));
    out.push(key_values("Tags", &s.tags));
    out.push(Node::text("EnableTerminationProtection", "false"));
    out
}

fn describe_stacks(q: &QueryRequest, world: &mut World) -> CfnResult {
    let indices: Vec<usize> = match q.get("StackName") {
        Some(name) => vec![find(world, name).ok_or_else(|| does_not_exist(name))?],
        None => (0..world.stacks.len())
            .rev()
            .filter(|i| !world.stacks[*i].is_deleted())
            .collect(),
    };
    let mut members = Vec::new();
    for i in indices {
        let s = &mut world.stacks[i];
        members.push(stack_member(s));
        s.polls += 1;
    }
    Ok(Some(vec![Node::members("Stacks", members)]))
}

/// NextToken: how many events existed when paging began, and the offset into them.
fn encode_token(total: usize, offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{total}:{offset}"))
}

fn decode_token(token: &str) -> Option<(usize, usize)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (total, offset) = text.split_once(':')?;
    Some((total.parse().ok()?, offset.parse().ok()?))
}

fn describe_stack_events(q: &QueryRequest, world: &mut World) -> CfnResult {
    let name = q.get("StackName").ok_or_else(|| missing("StackName"))?;
    let s = &world.stacks[find(world, name).ok_or_else(|| does_not_exist(name))?];
    let (total, offset) = match q.get("NextToken") {
        Some(t) => decode_token(t)
            .filter(|(total, offset)| *total <= s.events.len() && offset <= total)
            .ok_or_else(|| ApiError::validation("Invalid NextToken"))?,
        None => (s.events.len(), 0),
    };
    let page: Vec<Vec<Node>> = s.events[..total]
        .iter()
        .rev()
        .skip(offset)
        .take(EVENTS_PAGE_SIZE)
        .map(|e| {
            let mut m = vec![
                Node::text("StackId", &s.id),
                Node::text("EventId", &e.event_id),
                Node::text("StackName", &s.name),
                Node::text("LogicalResourceId", &e.logical_id),
                Node::text("PhysicalResourceId", &e.physical_id),
                Node::text("ResourceType", &e.resource_type),
                Node::text("Timestamp", time(e.timestamp)),
                Node::text("ResourceStatus", e.status),
            ];
            m.extend(Node::opt("ResourceStatusReason", e.reason.clone()));
            m
        })
        .collect();
    let mut out = vec![Node::members("StackEvents", page)];
    if offset + EVENTS_PAGE_SIZE < total {
        out.push(Node::text(
            "NextToken",
            encode_token(total, offset + EVENTS_PAGE_SIZE),
        ));
    }
    Ok(Some(out))
}

fn describe_stack_resources(q: &QueryRequest, world: &mut World) -> CfnResult {
    let name = q.get("StackName").ok_or_else(|| missing("StackName"))?;
    let s = &world.stacks[find(world, name).ok_or_else(|| does_not_exist(name))?];
    let logical = q.get("LogicalResourceId");
    let members = s
        .resources
        .iter()
        .filter(|r| logical.is_none_or(|l| l == r.planned.logical_id))
        .filter_map(|r| {
            let status = r.status?;
            let mut m = vec![
                Node::text("StackName", &s.name),
                Node::text("StackId", &s.id),
                Node::text("LogicalResourceId", &r.planned.logical_id),
                Node::text("PhysicalResourceId", &r.planned.physical_id),
                Node::text("ResourceType", &r.planned.ty),
                Node::text("Timestamp", time(r.updated)),
                Node::text("ResourceStatus", status),
            ];
            m.extend(Node::opt("ResourceStatusReason", r.reason.clone()));
            Some(m)
        })
        .collect();
    Ok(Some(vec![Node::members("StackResources", members)]))
}

fn delete_stack(q: &QueryRequest, world: &mut World, cx: &CfnContext) -> CfnResult {
    let name = q.get("StackName").ok_or_else(|| missing("StackName"))?;
    world.stack_requests.push(StackRequest {
        action: "DeleteStack",
        stack: name.to_string(),
        role_arn: role_arn(q)?,
    });
    // Deleting a stack that does not exist succeeds, as on AWS.
    let Some(i) = find(world, name) else {
        return Ok(None);
    };
    if let Some(refusal) = world.stacks[i].delete_refusal() {
        return Err(ApiError::validation(refusal));
    }
    let plan = DeletePlan {
        fail_once: cx.scenario == Scenario::DeleteFails && !world.delete_failed_once,
        leak_volume: cx.scenario == Scenario::TeardownLeaks && !world.leaked_once,
    };
    let World {
        stacks, inventory, ..
    } = world;
    if stacks[i].delete(cx.latency, plan, inventory) {
        world.delete_failed_once |= plan.fail_once;
        world.leaked_once |= plan.leak_volume;
    }
    Ok(None)
}

fn list_stacks(q: &QueryRequest, world: &mut World) -> CfnResult {
    let wanted = q.values("StackStatusFilter.member");
    let members = world
        .stacks
        .iter()
        .rev()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s.status))
        .map(|s| {
            let mut m = vec![
                Node::text("StackId", &s.id),
                Node::text("StackName", &s.name),
            ];
            m.extend(Node::opt("TemplateDescription", s.description.clone()));
            m.push(Node::text("CreationTime", time(s.created)));
            m.extend(Node::opt("DeletionTime", s.deleted.map(time)));
            m.push(Node::text("StackStatus", s.status));
            m.extend(Node::opt("StackStatusReason", s.reason.clone()));
            m
        })
        .collect();
    Ok(Some(vec![Node::members("StackSummaries", members)]))
}

fn validate_template(q: &QueryRequest) -> CfnResult {
    let template = template_body(q)?;
    let params = template
        .parameters
        .iter()
        .map(|p| {
            let mut m = vec![Node::text("ParameterKey", &p.name)];
            m.extend(Node::opt("DefaultValue", p.default.clone()));
            m.push(Node::text("NoEcho", p.no_echo.to_string()));
            m.extend(Node::opt("Description", p.description.clone()));
            m
        })
        .collect();
    let mut out = vec![Node::members("Parameters", params)];
    out.extend(Node::opt("Description", template.description.clone()));
    let caps = template.required_capabilities();
    if !caps.is_empty() {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        out.push(Node::scalar_members("Capabilities", &caps));
        out.push(Node::text(
            "CapabilitiesReason",
            "The following resource(s) require capabilities: [AWS::IAM::Role]",
        ));
    }
    Ok(Some(out))
}
