//! CloudFormation + EC2 emulator (awsQuery / ec2Query) on one loopback endpoint, as the
//! AWS SDK uses it when `endpoint_url` is set: every call is a form-encoded `POST /`, and
//! the `Version` field tells CloudFormation (`2010-05-15`) from EC2 (`2016-11-15`).
//!
//! Stacks are planned from their real templates (see [`template`]), move through their
//! states as time passes (see [`stacks`]), and materialise as EC2 resources the leak check
//! can list (see [`inventory`]). Faults and scenarios are applied here, per request.

pub mod api;
pub mod cfn;
pub mod ec2;
pub mod inventory;
pub mod launch;
pub mod preflight;
pub mod query;
pub mod stacks;
pub mod template;
pub mod xml;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::time::Instant;

use self::api::ApiError;
use self::inventory::{Inventory, Kind, Resource};
use self::query::{QueryRequest, EC2_VERSION};
use self::stacks::Stack;
use self::xml::Node;
use crate::faults::{FaultKind, FaultSpec};
use crate::http::{reset_response, serve, ServerHandle};
use crate::scenario::{EmulatorContext, Scenario};
use crate::state::EmulatorState;

/// The emulated account.
pub const ACCOUNT_ID: &str = "123456789012";
/// Used when a request carries no SigV4 credential scope.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Everything the emulated account holds.
#[derive(Debug, Default)]
pub struct World {
    pub stacks: Vec<Stack>,
    pub inventory: Inventory,
    /// `delete-fails` fails only the first deletion.
    pub delete_failed_once: bool,
    /// `teardown-leaks` leaks only once.
    pub leaked_once: bool,
    /// Every CreateStack and DeleteStack served, oldest first, with the `RoleARN` it carried.
    pub stack_requests: Vec<StackRequest>,
}

/// One CreateStack or DeleteStack the emulator served (for `mock-stack-requests.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StackRequest {
    pub action: &'static str,
    /// The stack name (or id) the request named.
    pub stack: String,
    /// The CloudFormation service role it carried, if any.
    pub role_arn: Option<String>,
}

impl World {
    fn advance(&mut self, now: Instant, ctx: &EmulatorContext) {
        let address = ctx.servers.address();
        let World {
            stacks, inventory, ..
        } = self;
        for s in stacks.iter_mut() {
            s.advance(now, inventory, ctx.servers.as_ref(), &address);
        }
    }
}

struct Shared {
    ctx: EmulatorContext,
    world: Mutex<World>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Cfn,
    Ec2,
}

/// The running emulator.
pub struct AwsEmulator {
    shared: Arc<Shared>,
    server: ServerHandle,
}

impl AwsEmulator {
    /// Serves on `127.0.0.1:0`. The `throttled` scenario queues its throttling faults here.
    pub async fn start(ctx: EmulatorContext) -> std::io::Result<AwsEmulator> {
        if ctx.scenario == Scenario::Throttled {
            ctx.faults.add(FaultSpec {
                operation: "aws:*".into(),
                kind: FaultKind::Throttle,
                count: Scenario::THROTTLED_CALLS,
            });
        }
        let shared = Arc::new(Shared {
            ctx,
            world: Mutex::new(World::default()),
        });
        let router = Router::new()
            .route("/", post(handle))
            .with_state(shared.clone());
        let server = serve(router, None).await?;
        tracing::debug!(endpoint = %server.url(), "AWS emulator listening");
        Ok(AwsEmulator { shared, server })
    }

    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }

    fn plant(&self, r: Resource) -> String {
        let id = r.id.clone();
        self.shared.world().inventory.insert(r);
        id
    }

    fn planted(
        kind: Kind,
        cfn_type: &str,
        id: String,
        state: &str,
        tags: &[(&str, &str)],
    ) -> Resource {
        Resource {
            id,
            kind: Some(kind),
            cfn_type: cfn_type.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: state.into(),
            created: Some(chrono::Utc::now()),
            availability_zone: Some(format!("{DEFAULT_REGION}a")),
            ..Default::default()
        }
    }

    /// A stray, unattached EBS volume (for sweep tests); returns its id.
    pub fn plant_volume(&self, tags: &[(&str, &str)]) -> String {
        let id = template::plan::ec2_id("vol");
        self.plant(Self::planted(
            Kind::Volume,
            "AWS::EC2::Volume",
            id,
            "available",
            tags,
        ))
    }

    /// A stray running instance; returns its id.
    pub fn plant_instance(&self, tags: &[(&str, &str)]) -> String {
        let id = template::plan::ec2_id("i");
        let mut r = Self::planted(Kind::Instance, "AWS::EC2::Instance", id, "running", tags);
        r.instance_type = Some("t3.micro".into());
        self.plant(r)
    }

    /// A stray security group; returns its id.
    pub fn plant_security_group(&self, tags: &[(&str, &str)]) -> String {
        let id = template::plan::ec2_id("sg");
        let mut r = Self::planted(
            Kind::SecurityGroup,
            "AWS::EC2::SecurityGroup",
            id.clone(),
            "available",
            tags,
        );
        r.group_name = Some(format!("planted-{id}"));
        self.plant(r)
    }

    /// A left-over `CREATE_COMPLETE` stack holding one security group, carrying `tags` (and
    /// propagating them to the group); returns its stack id.
    pub fn plant_stack(&self, name: &str, tags: &[(&str, &str)]) -> Result<String, ApiError> {
        let mut form: Vec<(String, String)> = vec![
            ("Action".into(), "CreateStack".into()),
            ("StackName".into(), name.into()),
            (
                "TemplateBody".into(),
                "Resources:\n  LeftOver:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: planted\n".into(),
            ),
        ];
        for (n, (k, v)) in tags.iter().enumerate() {
            form.push((format!("Tags.member.{}.Key", n + 1), k.to_string()));
            form.push((format!("Tags.member.{}.Value", n + 1), v.to_string()));
        }
        let body =
            serde_urlencoded::to_string(&form).map_err(|e| ApiError::validation(e.to_string()))?;
        let q = QueryRequest::parse(body.as_bytes())
            .map_err(|e| ApiError::validation(e.to_string()))?;
        let ctx = &self.shared.ctx;
        let cx = cfn::CfnContext {
            scenario: Scenario::Healthy,
            latency: std::time::Duration::ZERO,
            servers: ctx.servers.as_ref(),
            region: DEFAULT_REGION,
        };
        let mut world = self.shared.world();
        cfn::handle("CreateStack", &q, &mut world, &cx)?;
        let address = ctx.servers.address();
        let World {
            stacks, inventory, ..
        } = &mut *world;
        let stack = stacks
            .last_mut()
            .ok_or_else(|| ApiError::validation("planting the stack failed"))?;
        // Settle it now: the planted stack is already complete.
        stack.polls += 1;
        stack.advance(Instant::now(), inventory, ctx.servers.as_ref(), &address);
        Ok(stack.id.clone())
    }

    /// Every CreateStack and DeleteStack served so far, oldest first, with its `RoleARN`.
    pub fn stack_requests(&self) -> Vec<StackRequest> {
        self.shared.world().stack_requests.clone()
    }

    /// Every call the emulator served so far, keyed `aws:Action`.
    pub fn calls(&self) -> std::collections::BTreeMap<String, u32> {
        self.shared
            .ctx
            .faults
            .calls()
            .into_iter()
            .filter(|(k, _)| k.starts_with("aws:"))
            .collect()
    }
}

impl EmulatorState for AwsEmulator {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn remaining(&self) -> Vec<Value> {
        let mut world = self.shared.world();
        world.advance(Instant::now(), &self.shared.ctx);
        let mut out: Vec<Value> = world
            .stacks
            .iter()
            .filter(|s| !s.is_deleted())
            .map(|s| {
                let tags: serde_json::Map<String, Value> = s
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!({ "type": stacks::STACK_TYPE, "id": s.id, "tags": tags, "status": s.status })
            })
            .collect();
        out.extend(world.inventory.remaining());
        out
    }
}

/// The region of the SigV4 credential scope (`Credential=AKID/DATE/REGION/SERVICE/...`).
fn region_of(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| {
            let scope = auth.split("Credential=").nth(1)?;
            let region = scope.split('/').nth(2)?;
            (!region.is_empty()).then(|| region.to_string())
        })
        .unwrap_or_else(|| DEFAULT_REGION.to_string())
}

fn xml_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml"),
    );
    r
}

fn render(doc: Node, status: StatusCode, namespace: Option<&str>) -> Response {
    match doc.to_bytes(namespace) {
        Ok(body) => xml_response(status, body),
        Err(e) => {
            tracing::error!("writing an emulated AWS response failed: {e}");
            xml_response(StatusCode::INTERNAL_SERVER_ERROR, Vec::new())
        }
    }
}

fn render_error(protocol: Protocol, err: &ApiError, request_id: &str) -> Response {
    let doc = match protocol {
        Protocol::Cfn => xml::cfn_error(err.sender, &err.code, &err.message, request_id),
        Protocol::Ec2 => xml::ec2_error(&err.code, &err.message, request_id),
    };
    render(doc, err.status, None)
}

/// The response an injected fault replaces the real one with; `None` for `timeout`, which
/// only delays the real answer.
async fn fault_response(
    kind: FaultKind,
    protocol: Protocol,
    action: &str,
    ctx: &EmulatorContext,
    request_id: &str,
) -> Option<Response> {
    let err = match (kind, protocol) {
        (FaultKind::Reset, _) => return Some(reset_response()),
        (FaultKind::Timeout, _) => {
            tokio::time::sleep(ctx.faults.timeout_delay).await;
            return None;
        }
        (FaultKind::Malformed, _) => {
            // Broken before the root element: every XML reader rejects it.
            let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<<{action}Response><{action}Result><Sta");
            return Some(xml_response(StatusCode::OK, body.into_bytes()));
        }
        (FaultKind::Error, Protocol::Cfn) => ApiError::receiver(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "An internal error occurred. Please retry your request.",
        ),
        (FaultKind::Error, Protocol::Ec2) => ApiError::receiver(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occurred.",
        ),
        (FaultKind::Throttle, Protocol::Cfn) => ApiError::sender("Throttling", "Rate exceeded"),
        (FaultKind::Throttle, Protocol::Ec2) => ApiError::receiver(
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ),
    };
    Some(render_error(protocol, &err, request_id))
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return handle_json(&shared, &headers, target, &body, &request_id).await;
    }
    let q = match QueryRequest::parse(&body) {
        Ok(q) => q,
        Err(e) => {
            let err = ApiError::sender("MalformedQueryString", e.to_string());
            return render_error(Protocol::Cfn, &err, &request_id);
        }
    };
    let action = q.action().to_string();
    let protocol = if q.version() == EC2_VERSION {
        Protocol::Ec2
    } else {
        Protocol::Cfn
    };
    let ctx = &shared.ctx;
    if let Some(kind) = ctx.faults.on_call("aws", &action) {
        tracing::debug!(%action, fault = kind.as_str(), "injecting fault");
        if let Some(resp) = fault_response(kind, protocol, &action, ctx, &request_id).await {
            return resp;
        }
    }
    let region = region_of(&headers);
    if let Some(err) = preflight::expired(ctx.scenario) {
        return render_error(protocol, &err, &request_id);
    }
    if preflight::serves(q.version(), &action) {
        return match protocol {
            Protocol::Ec2 => match preflight::handle_ec2(&action, &q, &region, ctx.scenario) {
                Ok(fields) => render(
                    xml::ec2_response(&action, fields, &request_id),
                    StatusCode::OK,
                    Some(xml::EC2_NAMESPACE),
                ),
                Err(e) => render_error(protocol, &e, &request_id),
            },
            Protocol::Cfn => match preflight::handle_query(&action, &q, ctx.scenario) {
                Ok(result) => render(
                    xml::cfn_response(&action, Some(result), &request_id),
                    StatusCode::OK,
                    None,
                ),
                Err(e) => render_error(protocol, &e, &request_id),
            },
        };
    }
    let mut world = shared.world();
    world.advance(Instant::now(), ctx);
    match protocol {
        Protocol::Cfn => {
            let cx = cfn::CfnContext {
                scenario: ctx.scenario,
                latency: ctx.latency,
                servers: ctx.servers.as_ref(),
                region: &region,
            };
            match cfn::handle(&action, &q, &mut world, &cx) {
                Ok(result) => render(
                    xml::cfn_response(&action, result, &request_id),
                    StatusCode::OK,
                    Some(xml::CFN_NAMESPACE),
                ),
                Err(e) => render_error(Protocol::Cfn, &e, &request_id),
            }
        }
        Protocol::Ec2 => match ec2::handle(&action, &q, &mut world.inventory) {
            Ok(fields) => render(
                xml::ec2_response(&action, fields, &request_id),
                StatusCode::OK,
                Some(xml::EC2_NAMESPACE),
            ),
            Err(e) => render_error(Protocol::Ec2, &e, &request_id),
        },
    }
}

/// awsJson1.1 calls (`X-Amz-Target`): Service Quotas, for the preflight.
async fn handle_json(
    shared: &Shared,
    headers: &HeaderMap,
    target: &str,
    body: &[u8],
    request_id: &str,
) -> Response {
    let operation = target.rsplit('.').next().unwrap_or(target).to_string();
    let ctx = &shared.ctx;
    let json_error = |status: StatusCode, body: Value| {
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        if let Ok(v) = header::HeaderValue::from_str(request_id) {
            r.headers_mut().insert("x-amzn-requestid", v);
        }
        r
    };
    if let Some(kind) = ctx.faults.on_call("aws", &operation) {
        match kind {
            FaultKind::Reset => return reset_response(),
            FaultKind::Timeout => tokio::time::sleep(ctx.faults.timeout_delay).await,
            FaultKind::Malformed => return json_error(StatusCode::OK, Value::String("{".into())),
            FaultKind::Throttle => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    json!({"__type": "TooManyRequestsException", "message": "Rate exceeded"}),
                )
            }
            FaultKind::Error => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"__type": "ServiceException", "message": "An internal error occurred."}),
                )
            }
        }
    }
    if let Some(err) = preflight::expired(ctx.scenario) {
        return json_error(
            err.status,
            json!({"__type": err.code, "message": err.message}),
        );
    }
    let region = region_of(headers);
    match preflight::handle_quotas(target, body, &region, ctx.scenario) {
        Ok(v) => json_error(StatusCode::OK, v),
        Err((status, v)) => json_error(status, v),
    }
}
