//! The two HTTPS listeners' routes: the frontend (`/healthz`, `/server.pem`) and the GUI
//! (`/app/index.html` and `/api/v1/SearchClients`, both behind HTTP Basic auth).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde_json::json;
use tokio::time::Instant;

use crate::faults::{FaultKind, FaultPlan};
use crate::http::reset_response;

use super::registry::{wall_clock_us, Registry};

/// What every handler shares.
pub struct Shared {
    pub registry: Mutex<Registry>,
    pub faults: Arc<FaultPlan>,
    /// The frontend certificate, served by `GET /server.pem`.
    pub server_pem: String,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn frontend_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/server.pem", get(server_pem))
        .with_state(shared)
}

pub fn gui_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/SearchClients", get(search_clients))
        .route("/app/index.html", get(app_index))
        .fallback(|| async { Redirect::temporary("/app/index.html") })
        .with_state(shared)
}

/// Records the call and turns an injected fault into the response to send, if it replaces
/// the real one (a `timeout` fault only delays it).
async fn injected_fault(shared: &Shared, operation: &str) -> Option<Response> {
    let kind = shared.faults.on_call("vr", operation)?;
    tracing::debug!(operation, fault = kind.as_str(), "injecting fault");
    match kind {
        FaultKind::Error => {
            Some((StatusCode::INTERNAL_SERVER_ERROR, "injected internal error").into_response())
        }
        FaultKind::Throttle => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "too many requests",
            )
                .into_response(),
        ),
        FaultKind::Timeout => {
            tokio::time::sleep(shared.faults.timeout_delay).await;
            None
        }
        FaultKind::Reset => Some(reset_response()),
        FaultKind::Malformed => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"items\": [{\"client_id\": ",
            )
                .into_response(),
        ),
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(r) = injected_fault(&shared, "healthz").await {
        return r;
    }
    if shared.registry().healthy(Instant::now()) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

async fn server_pem(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(r) = injected_fault(&shared, "server.pem").await {
        return r;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        shared.server_pem.clone(),
    )
        .into_response()
}

/// `401` with the challenge Velociraptor's basic authenticator sends.
fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "Not authorized\n").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Restricted\""),
    );
    r
}

fn authenticated(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some((user, password)) = basic_credentials(headers) else {
        return false;
    };
    shared.registry().authenticates(&user, &password)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn app_index(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = injected_fault(&shared, "gui").await {
        return r;
    }
    if !authenticated(&shared, &headers) {
        return unauthorized();
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><title>Velociraptor</title><div id=\"root\"></div>\n",
    )
        .into_response()
}

async fn search_clients(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = injected_fault(&shared, "SearchClients").await {
        return r;
    }
    let Some((user, password)) =
        basic_credentials(&headers).filter(|(u, p)| shared.registry().authenticates(u, p))
    else {
        return unauthorized();
    };
    let query = params.get("query").map(String::as_str).unwrap_or("all");
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(50);
    let offset: usize = params
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let clients = shared
        .registry()
        .clients_for(&user, &password, Instant::now(), wall_clock_us());
    let matching: Vec<_> = clients
        .into_iter()
        .filter(|c| matches_query(c, query))
        .collect();
    let total = matching.len();
    let items: Vec<_> = matching.into_iter().skip(offset).take(limit).collect();
    // protojson leaves out empty repeated fields and zero numbers, but the request echo is
    // always there (`search_term`, as Velociraptor 0.77.2's ListClients answers).
    let mut search_term = json!({ "query": query, "limit": limit.to_string() });
    if offset > 0 {
        search_term["offset"] = json!(offset.to_string());
    }
    let mut body = json!({ "search_term": search_term });
    if !items.is_empty() {
        body["items"] = json!(items);
        body["total"] = json!(total.to_string());
    }
    axum::Json(body).into_response()
}

/// `all` (or nothing) lists every client; otherwise a client id or hostname substring.
fn matches_query(client: &serde_json::Value, query: &str) -> bool {
    let query = query.trim();
    if query.is_empty() || query == "all" {
        return true;
    }
    let needle = query.strip_prefix("host:").unwrap_or(query).to_lowercase();
    ["client_id", "os_info"].iter().any(|field| {
        let text = match *field {
            "os_info" => client["os_info"]["hostname"].as_str(),
            other => client[other].as_str(),
        };
        text.is_some_and(|t| t.to_lowercase().contains(&needle))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials() {
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("admin:p:w");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).expect("header"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("admin".to_string(), "p:w".to_string()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn query_matches_all_ids_and_hostnames() {
        let c = json!({"client_id": "C.0123456789abcdef", "os_info": {"hostname": "web-1"}});
        assert!(matches_query(&c, "all"));
        assert!(matches_query(&c, "C.0123"));
        assert!(matches_query(&c, "host:WEB"));
        assert!(!matches_query(&c, "db"));
    }
}
