//! HTTP front of the emulator: resolving ARM paths (case-insensitively, as ARM does) to
//! operations named after the REST spec's operationIds, then faults, authentication and
//! `api-version` checks, then the handlers.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::errors::{empty_response, json_response, ArmError};
use super::filter::Filter;
use super::store::{DeletionState, DeploymentRequest, PutOutcome, Store};
use crate::faults::FaultKind;
use crate::scenario::EmulatorContext;

/// The api-version the emulator writes into the URLs it mints.
pub const API_VERSION: &str = "2021-04-01";
/// `api-version` values accepted: this range of dates (ARM's resource manager versions that
/// share the 2021-04-01 shapes closely enough).
const OLDEST_API_VERSION: &str = "2019-05-01";
const NEWEST_API_VERSION: &str = "2025-04-01";

/// State shared by every request.
pub struct Shared {
    pub ctx: EmulatorContext,
    /// `http://127.0.0.1:PORT`, known once bound; used in `Location`/`Azure-AsyncOperation`.
    pub base_url: OnceLock<String>,
    pub store: Mutex<Store>,
    /// The token endpoint's settings and clock (see [`super::entra`]).
    pub entra: super::entra::ArmOptions,
    pub clock: super::entra::EntraClock,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn base(&self) -> &str {
        self.base_url
            .get()
            .map_or("http://127.0.0.1", String::as_str)
    }

    /// `Retry-After` for in-progress long-running operations: the emulated wait, in whole
    /// seconds (0 when latency is zero, so mock runs poll at once).
    fn lro_retry_after(&self) -> HeaderValue {
        let secs = self.ctx.latency.as_secs_f64().ceil().min(15.0) as u64;
        HeaderValue::from(secs)
    }
}

/// The ARM path shapes the emulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ResourceGroups {
        sub: String,
    },
    ResourceGroup {
        sub: String,
        rg: String,
    },
    GroupResources {
        sub: String,
        rg: String,
    },
    Deployment {
        sub: String,
        rg: String,
        name: String,
    },
    DeploymentValidate {
        sub: String,
        rg: String,
        name: String,
    },
    DeploymentCancel {
        sub: String,
        rg: String,
        name: String,
    },
    DeploymentOperations {
        sub: String,
        rg: String,
        name: String,
    },
    DeploymentStatus {
        sub: String,
        rg: String,
        name: String,
        op: String,
    },
    Resources {
        sub: String,
    },
    VmInstanceView {
        sub: String,
        rg: String,
        name: String,
    },
    OperationResult {
        sub: String,
        token: String,
    },
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let is = |i: usize, want: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(want));
    if !is(0, "subscriptions") || s.len() < 3 {
        return None;
    }
    let sub = s[1].to_string();
    let rest = &s[2..];
    let at = |i: usize| rest[i].to_string();
    let r = |i: usize, want: &str| rest.get(i).is_some_and(|x| x.eq_ignore_ascii_case(want));
    Some(match rest.len() {
        1 if r(0, "resourcegroups") => Route::ResourceGroups { sub },
        1 if r(0, "resources") => Route::Resources { sub },
        2 if r(0, "resourcegroups") => Route::ResourceGroup { sub, rg: at(1) },
        2 if r(0, "operationresults") => Route::OperationResult { sub, token: at(1) },
        3 if r(0, "resourcegroups") && r(2, "resources") => {
            Route::GroupResources { sub, rg: at(1) }
        }
        // The spec's deployment operations path has no `providers/Microsoft.Resources`.
        5 if r(0, "resourcegroups") && r(2, "deployments") && r(4, "operations") => {
            Route::DeploymentOperations {
                sub,
                rg: at(1),
                name: at(3),
            }
        }
        7 if r(0, "resourcegroups")
            && r(2, "providers")
            && r(3, "microsoft.compute")
            && r(4, "virtualmachines")
            && r(6, "instanceview") =>
        {
            Route::VmInstanceView {
                sub,
                rg: at(1),
                name: at(5),
            }
        }
        n if n >= 5
            && r(0, "resourcegroups")
            && r(2, "providers")
            && r(3, "microsoft.resources")
            && r(4, "deployments") =>
        {
            let (rg, name) = (
                at(1),
                rest.get(5).map(|x| x.to_string()).unwrap_or_default(),
            );
            match n {
                6 => Route::Deployment { sub, rg, name },
                7 if r(6, "validate") => Route::DeploymentValidate { sub, rg, name },
                7 if r(6, "cancel") => Route::DeploymentCancel { sub, rg, name },
                7 if r(6, "operations") => Route::DeploymentOperations { sub, rg, name },
                8 if r(6, "operationstatuses") => Route::DeploymentStatus {
                    sub,
                    rg,
                    name,
                    op: at(7),
                },
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The REST spec's operationId for a method on a route (fault names use these).
fn operation(method: &Method, route: &Route) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("PUT", Route::ResourceGroup { .. }) => "ResourceGroups_CreateOrUpdate",
        ("GET", Route::ResourceGroup { .. }) => "ResourceGroups_Get",
        ("HEAD", Route::ResourceGroup { .. }) => "ResourceGroups_CheckExistence",
        ("DELETE", Route::ResourceGroup { .. }) => "ResourceGroups_Delete",
        ("GET", Route::ResourceGroups { .. }) => "ResourceGroups_List",
        ("PUT", Route::Deployment { .. }) => "Deployments_CreateOrUpdate",
        ("GET", Route::Deployment { .. }) => "Deployments_Get",
        ("POST", Route::DeploymentValidate { .. }) => "Deployments_Validate",
        ("POST", Route::DeploymentCancel { .. }) => "Deployments_Cancel",
        ("GET", Route::DeploymentOperations { .. }) => "DeploymentOperations_List",
        ("GET", Route::Resources { .. }) => "Resources_List",
        ("GET", Route::VmInstanceView { .. }) => "VirtualMachines_InstanceView",
        ("GET", Route::GroupResources { .. }) => "Resources_ListByResourceGroup",
        ("GET", Route::DeploymentStatus { .. }) | ("GET", Route::OperationResult { .. }) => {
            "AsyncOperation_Get"
        }
        _ => return None,
    })
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default()
}

fn query<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_api_version(pairs: &[(String, String)]) -> Result<(), ArmError> {
    let Some(v) = query(pairs, "api-version") else {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let well_formed = date.len() == 10
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if well_formed && (OLDEST_API_VERSION..=NEWEST_API_VERSION).contains(&date) {
        return Ok(());
    }
    Err(ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidApiVersionParameter",
        format!(
            "The api-version '{v}' is invalid. The supported versions are '{API_VERSION}' and others from '{OLDEST_API_VERSION}' to '{NEWEST_API_VERSION}'."
        ),
    ))
}

fn unauthorized(why: &str, code: &str) -> Response {
    let mut r = ArmError::new(
        StatusCode::UNAUTHORIZED,
        code,
        format!("Authentication failed. {why}"),
    )
    .into_response();
    let challenge = format!(
        "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\", error_description=\"{why}\""
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `Some(401)` unless the request carries `Authorization: Bearer <token>` that has not
/// expired: a JWT past its `exp` (the emulator's own tokens) is refused as ARM refuses it.
fn refused_bearer(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if let Some(r) = missing_bearer(headers) {
        return Some(r);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())?;
    let exp = super::entra::expiry(token)?;
    let now = shared.clock.now();
    (exp <= now).then(|| super::entra::expired(exp, now))
}

/// `Some(401)` unless the request carries `Authorization: Bearer <token>`.
fn missing_bearer(headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some(unauthorized(
            "The 'Authorization' header is missing.",
            "AuthenticationFailed",
        ));
    };
    match value.to_str().unwrap_or_default().split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            None
        }
        _ => Some(unauthorized(
            "The 'Authorization' header is not in a valid format; expected 'Bearer <token>'.",
            "InvalidAuthenticationToken",
        )),
    }
}

/// A fault's answer, or `None` to carry on (after a `timeout` fault's delay).
/// What every emulated operation goes through first, in ARM's order: an injected fault, the
/// bearer token, the `api-version`. The query pairs, or the answer that refuses the call.
async fn admit(
    shared: &Shared,
    op: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Vec<(String, String)>, Response> {
    if let Some(fault) = inject(shared, op).await {
        return Err(fault);
    }
    if let Some(r) = refused_bearer(shared, headers) {
        return Err(r);
    }
    let pairs = query_pairs(uri);
    check_api_version(&pairs).map_err(IntoResponse::into_response)?;
    Ok(pairs)
}

async fn inject(shared: &Shared, op: &str) -> Option<Response> {
    let kind = shared.ctx.faults.on_call("arm", op)?;
    tracing::debug!(operation = op, fault = kind.as_str(), "injecting ARM fault");
    match kind {
        FaultKind::Error => Some(
            ArmError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                format!("Encountered internal server error (injected fault on '{op}')."),
            )
            .into_response(),
        ),
        FaultKind::Throttle => {
            let mut r = ArmError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!("The request is being throttled as the limit has been reached for operation '{op}'. For more information, refer to - https://aka.ms/armthrottling"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(r)
        }
        FaultKind::Timeout => {
            tokio::time::sleep(shared.ctx.faults.timeout_delay).await;
            None
        }
        FaultKind::Reset => Some(crate::http::reset_response()),
        FaultKind::Malformed => {
            let mut r = Response::new(Body::from("{\"id\": \"/subscriptions/"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            Some(r)
        }
    }
}

/// The single entry point: ARM routing is case-insensitive, which axum's router is not.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.ctx.scenario == crate::scenario::Scenario::TokenExpired {
        return super::preflight::expired_token();
    }
    if let Some(op) = super::preflight::route(&method, uri.path()) {
        let pairs = match admit(&shared, op.name(), &headers, &uri).await {
            Ok(pairs) => pairs,
            Err(refusal) => return refusal,
        };
        return super::preflight::answer(&op, &pairs, shared.ctx.scenario);
    }
    let Some(route) = parse_route(uri.path()) else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!(
                "The resource type could not be found for the path '{}' (not emulated).",
                uri.path()
            ),
        )
        .into_response();
    };
    let Some(op) = operation(&method, &route) else {
        return ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The method '{method}' is not allowed on '{}' (not emulated).",
                uri.path()
            ),
        )
        .into_response();
    };
    let pairs = match admit(&shared, op, &headers, &uri).await {
        Ok(pairs) => pairs,
        Err(refusal) => return refusal,
    };
    let now = Instant::now();
    shared.store().advance(now, &shared.ctx);
    match dispatch(&shared, &method, route, &pairs, &body, now) {
        Ok(r) => r,
        Err(e) => {
            if method == Method::HEAD {
                empty_response(e.status)
            } else {
                e.into_response()
            }
        }
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ArmError> {
    serde_json::from_slice(body).map_err(ArmError::invalid_request_content)
}

fn parse_filter(pairs: &[(String, String)]) -> Result<Filter, ArmError> {
    match query(pairs, "$filter") {
        None => Ok(Filter::default()),
        Some(f) => Filter::parse(f).map_err(|why| {
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidFilterInQueryString",
                format!("The $filter '{f}' is not valid: {why}."),
            )
        }),
    }
}

fn string_map(v: Option<&Value>, what: &str) -> Result<Map<String, Value>, ArmError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(m.clone()),
        Some(_) => Err(ArmError::invalid_request_content(format!(
            "'{what}' must be an object of strings"
        ))),
    }
}

fn deployment_request(body: &Bytes) -> Result<DeploymentRequest, ArmError> {
    let v = parse_json(body)?;
    let props = v
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| ArmError::invalid_request_content("the 'properties' object is required"))?;
    if props.get("templateLink").is_some_and(|x| !x.is_null())
        || props.get("parametersLink").is_some_and(|x| !x.is_null())
    {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidTemplate",
            "Deployment template validation failed: 'templateLink/parametersLink are not emulated; send 'template' and 'parameters' inline.'.",
        ));
    }
    let template = props
        .get("template")
        .filter(|t| t.is_object())
        .cloned()
        .ok_or_else(|| {
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidDeployment",
                "The 'template' property of the deployment is required and must be an object.",
            )
        })?;
    let parameters = match props.get("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ArmError::invalid_request_content(
                "'properties.parameters' must be an object",
            ))
        }
    };
    let mode = props
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("Incremental");
    let mode = if mode.eq_ignore_ascii_case("incremental") {
        "Incremental"
    } else if mode.eq_ignore_ascii_case("complete") {
        "Complete"
    } else {
        return Err(ArmError::invalid_request_content(format!(
            "the deployment mode '{mode}' is not 'Incremental' or 'Complete'"
        )));
    };
    Ok(DeploymentRequest {
        template,
        parameters,
        mode: mode.to_string(),
    })
}

fn with_header(mut r: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

fn dispatch(
    shared: &Shared,
    method: &Method,
    route: Route,
    pairs: &[(String, String)],
    body: &Bytes,
    now: Instant,
) -> Result<Response, ArmError> {
    let ctx = &shared.ctx;
    match (method.as_str(), route) {
        ("PUT", Route::ResourceGroup { sub, rg }) => {
            let v = parse_json(body)?;
            let location = v
                .get("location")
                .and_then(Value::as_str)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| {
                    ArmError::new(
                        StatusCode::BAD_REQUEST,
                        "LocationRequired",
                        "The location property is required for this definition.",
                    )
                })?;
            let tags = string_map(v.get("tags"), "tags")?;
            let managed_by = v.get("managedBy").and_then(Value::as_str).map(String::from);
            let mut store = shared.store();
            let created = store.put_group(&sub, &rg, location, tags, managed_by)?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(status, &store.group(&sub, &rg)?.to_json()))
        }
        ("GET", Route::ResourceGroup { sub, rg }) => Ok(json_response(
            StatusCode::OK,
            &shared.store().group(&sub, &rg)?.to_json(),
        )),
        ("HEAD", Route::ResourceGroup { sub, rg }) => {
            shared.store().group(&sub, &rg)?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        ("DELETE", Route::ResourceGroup { sub, rg }) => {
            // `forceDeletionTypes` (api-version 2021-04-01+): comma-separated types.
            let force_vms = query(pairs, "forceDeletionTypes").is_some_and(|types| {
                types.split(',').any(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("Microsoft.Compute/virtualMachines")
                })
            });
            let token = shared.store().start_delete(&sub, &rg, now, force_vms)?;
            let location = format!(
                "{}/subscriptions/{sub}/operationresults/{token}?api-version={API_VERSION}",
                shared.base()
            );
            let mut r = with_header(empty_response(StatusCode::ACCEPTED), "location", &location);
            r.headers_mut()
                .insert(header::RETRY_AFTER, shared.lro_retry_after());
            Ok(r)
        }
        ("GET", Route::OperationResult { sub, token }) => {
            let store = shared.store();
            let deletion = store
                .deletions
                .get(&token)
                .filter(|d| d.subscription.eq_ignore_ascii_case(&sub))
                .ok_or_else(|| {
                    ArmError::new(
                        StatusCode::NOT_FOUND,
                        "OperationNotFound",
                        format!("The operation '{token}' could not be found."),
                    )
                })?;
            match &deletion.state {
                DeletionState::Running => {
                    let location = format!(
                        "{}/subscriptions/{sub}/operationresults/{token}?api-version={API_VERSION}",
                        shared.base()
                    );
                    let mut r =
                        with_header(empty_response(StatusCode::ACCEPTED), "location", &location);
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, shared.lro_retry_after());
                    Ok(r)
                }
                DeletionState::Succeeded => Ok(empty_response(StatusCode::OK)),
                DeletionState::Failed(e) => Err(e.clone()),
            }
        }
        ("GET", Route::ResourceGroups { sub }) => {
            let filter = parse_filter(pairs)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"value": shared.store().list_groups(&sub, &filter)}),
            ))
        }
        ("GET", Route::Resources { sub }) => {
            let filter = parse_filter(pairs)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"value": shared.store().list_resources(&sub, None, &filter)}),
            ))
        }
        ("GET", Route::GroupResources { sub, rg }) => {
            let filter = parse_filter(pairs)?;
            let store = shared.store();
            store.group(&sub, &rg)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"value": store.list_resources(&sub, Some(&rg), &filter)}),
            ))
        }
        ("PUT", Route::Deployment { sub, rg, name }) => {
            let request = deployment_request(body)?;
            let mut store = shared.store();
            let (id_key, outcome) =
                store.put_deployment(&sub, &rg, &name, request, now, ctx.servers.as_ref())?;
            let d = store
                .deployments
                .get(&id_key)
                .ok_or_else(|| ArmError::deployment_not_found(&name))?;
            let status = match outcome {
                PutOutcome::Created => StatusCode::CREATED,
                PutOutcome::Existing if d.state.is_terminal() => StatusCode::OK,
                PutOutcome::Existing => StatusCode::CREATED,
            };
            let async_url = format!(
                "{}/subscriptions/{}/resourcegroups/{}/providers/Microsoft.Resources/deployments/{}/operationStatuses/{}?api-version={API_VERSION}",
                shared.base(),
                d.subscription,
                d.resource_group,
                d.name,
                d.operation_id
            );
            let r = json_response(status, &d.to_json(now));
            Ok(if d.state.is_terminal() {
                r
            } else {
                with_header(r, "azure-asyncoperation", &async_url)
            })
        }
        ("GET", Route::Deployment { sub, rg, name }) => Ok(json_response(
            StatusCode::OK,
            &shared.store().deployment(&sub, &rg, &name)?.to_json(now),
        )),
        ("POST", Route::DeploymentValidate { sub, rg, name }) => {
            let request = deployment_request(body)?;
            let v = shared
                .store()
                .validate(&sub, &rg, &name, &request, ctx.servers.as_ref())?;
            Ok(json_response(StatusCode::OK, &v))
        }
        ("POST", Route::DeploymentCancel { sub, rg, name }) => {
            shared.store().cancel_deployment(&sub, &rg, &name, now)?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        ("GET", Route::VmInstanceView { sub, rg, name }) => Ok(json_response(
            StatusCode::OK,
            &shared.store().vm_instance_view(&sub, &rg, &name)?,
        )),
        ("GET", Route::DeploymentOperations { sub, rg, name }) => {
            let store = shared.store();
            let d = store.deployment(&sub, &rg, &name)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"value": d.operations}),
            ))
        }
        ("GET", Route::DeploymentStatus { sub, rg, name, op }) => {
            let store = shared.store();
            let d = store.deployment(&sub, &rg, &name)?;
            if !d.operation_id.eq_ignore_ascii_case(&op) {
                return Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "OperationNotFound",
                    format!("The operation '{op}' could not be found."),
                ));
            }
            let mut r = json_response(StatusCode::OK, &d.status_json());
            if !d.state.is_terminal() {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, shared.lro_retry_after());
            }
            Ok(r)
        }
        (m, route) => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The method '{m}' is not allowed on {route:?}."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_case_insensitively() {
        assert_eq!(
            parse_route("/subscriptions/s/resourceGroups/rg"),
            Some(Route::ResourceGroup {
                sub: "s".into(),
                rg: "rg".into()
            })
        );
        assert_eq!(
            parse_route(
                "/SUBSCRIPTIONS/s/resourcegroups/rg/providers/microsoft.resources/DEPLOYMENTS/d"
            ),
            Some(Route::Deployment {
                sub: "s".into(),
                rg: "rg".into(),
                name: "d".into()
            })
        );
        assert_eq!(
            parse_route("/subscriptions/s/resourcegroups/rg/deployments/d/operations"),
            Some(Route::DeploymentOperations {
                sub: "s".into(),
                rg: "rg".into(),
                name: "d".into()
            })
        );
        assert_eq!(
            parse_route("/subscriptions/s/resourcegroups/my%20rg"),
            Some(Route::ResourceGroup {
                sub: "s".into(),
                rg: "my rg".into()
            })
        );
        assert_eq!(
            parse_route("/subscriptions/s/providers/Microsoft.Compute/x"),
            None
        );
    }

    #[test]
    fn api_versions_near_2021_04_01_are_accepted() {
        let q = |v: &str| vec![("api-version".to_string(), v.to_string())];
        assert!(check_api_version(&q("2021-04-01")).is_ok());
        assert!(check_api_version(&q("2022-09-01")).is_ok());
        assert!(check_api_version(&q("2020-06-01-preview")).is_ok());
        assert_eq!(
            check_api_version(&q("2015-01-01")).map_err(|e| e.code),
            Err("InvalidApiVersionParameter".into())
        );
        assert_eq!(
            check_api_version(&q("latest")).map_err(|e| e.code),
            Err("InvalidApiVersionParameter".into())
        );
        assert_eq!(
            check_api_version(&[]).map_err(|e| e.code),
            Err("MissingApiVersionParameter".into())
        );
    }
}
