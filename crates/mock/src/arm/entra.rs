//! An Entra-ID-like token endpoint beside the ARM emulator, so mock runs get, renew and
//! lose their access tokens the way live runs do:
//!
//! - `POST /{tenant}/oauth2/v2.0/token`: the `client_credentials` grant with a
//!   `client_assertion` (federated JWT) or a `client_secret`, answering
//!   `{token_type, expires_in, access_token}` with a JWT access token that carries the
//!   emulated principal's `oid` and an `exp` [`ArmOptions::token_lifetime`] ahead. Errors
//!   have Entra's shape (`error`, `error_description` starting with the AADSTS code,
//!   `error_codes`, trace and correlation ids on lines of their own).
//! - `GET /_github/idtoken?audience=...`: a stand-in for GitHub Actions' ID-token endpoint
//!   (`ACTIONS_ID_TOKEN_REQUEST_URL`), answering `{"value": "<jwt>"}`.
//!
//! Both count their calls in `mock-calls.json` (`entra:Token`, `github:IdToken`) and
//! take faults under those names.
//!
//! ARM then refuses a token whose `exp` has passed with `401 ExpiredAuthenticationToken`
//! ([`expired`]), as Azure does (docs/LIVE_NOTES.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::errors::ArmError;
use super::preflight::MOCK_PRINCIPAL_ID;
use super::routes::Shared;

/// What Entra ID expects as the audience of a federated assertion.
const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Options of the ARM emulator's token endpoint.
#[derive(Debug, Clone)]
pub struct ArmOptions {
    /// `expires_in` of every access token issued (Entra's default is 60–90 minutes).
    pub token_lifetime: Duration,
}

/// One hour less a second, as Entra answers `expires_in: 3599`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

impl Default for ArmOptions {
    fn default() -> Self {
        Self {
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }
}

/// The emulator's clock: the wall clock plus a skew tests add to "let time pass".
#[derive(Debug, Default)]
pub struct EntraClock {
    skew_ms: AtomicU64,
    issued: AtomicU64,
}

impl EntraClock {
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skew_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Seconds since the Unix epoch, skew included.
    pub fn now(&self) -> f64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        wall.as_secs_f64() + self.skew_ms.load(Ordering::SeqCst) as f64 / 1000.0
    }

    fn next_id(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// An unsigned JWT (`alg: none`): the emulators check claims, not signatures.
fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.bW9jaw",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    )
}

/// The claims of a JWT-shaped string, or `None` for anything else (fixed mock tokens).
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `exp` of a JWT-shaped token, in seconds since the epoch.
pub fn expiry(token: &str) -> Option<f64> {
    claims(token)?.get("exp")?.as_f64()
}

/// ARM's time format in its error messages: `6/15/2026 8:22:51 AM`.
fn arm_time(secs: f64) -> String {
    chrono::DateTime::from_timestamp(secs.floor() as i64, 0)
        .map(|t| t.format("%-m/%-d/%Y %-I:%M:%S %p").to_string())
        .unwrap_or_else(|| format!("{secs}"))
}

/// ARM's answer to a bearer token past its `exp`: 401 with the `WWW-Authenticate`
/// challenge and `ExpiredAuthenticationToken` naming both times.
pub fn expired(expiry: f64, now: f64) -> Response {
    let mut r = ArmError::new(
        StatusCode::UNAUTHORIZED,
        "ExpiredAuthenticationToken",
        format!(
            "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
            arm_time(expiry),
            arm_time(now)
        ),
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\", error_description=\"The access token has expired.\"",
        ),
    );
    r
}

/// Entra's error shape.
fn refuse(status: StatusCode, error: &str, code: u32, text: &str, now: f64) -> Response {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let stamp = chrono::DateTime::from_timestamp(now.floor() as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default();
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {stamp}"),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
        })),
    )
        .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let now = shared.clock.now();
    // Counted in mock-calls.json as `entra:Token`; `--fault entra:Token:error` makes Entra
    // unavailable.
    if shared.ctx.faults.on_call("entra", "Token").is_some() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again (injected fault).",
            now,
        );
    }
    let form: HashMap<String, String> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                &format!("The request body is not form-encoded: {e}."),
                now,
            )
        }
    };
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if field("grant_type") != Some("client_credentials") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type. The emulator serves 'client_credentials' only.",
            now,
        );
    }
    for required in ["client_id", "scope"] {
        if field(required).is_none() {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                &format!("The request body must contain the following parameter: '{required}'."),
                now,
            );
        }
    }
    let client_id = field("client_id").unwrap_or_default().to_string();
    match (field("client_assertion"), field("client_secret")) {
        (Some(assertion), _) => {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50027,
                    &format!("Invalid client_assertion_type; expected '{JWT_BEARER}'."),
                    now,
                );
            }
            if let Some(exp) = expiry(assertion) {
                if exp <= now {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "invalid_client",
                        700024,
                        &format!(
                            "Client assertion is not within its valid time range. Current time: {}, expiry time of assertion {}.",
                            arm_time(now),
                            arm_time(exp)
                        ),
                        now,
                    );
                }
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                now,
            )
        }
    }
    // Whole seconds, rounded up: the token never expires before `expires_in` says.
    let lifetime = shared.entra.token_lifetime.as_secs().max(1);
    let exp = now.ceil() as u64 + lifetime;
    let access_token = jwt(json!({
        "aud": "https://management.azure.com/",
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now.floor() as u64,
        "nbf": now.floor() as u64,
        "exp": exp,
        "oid": MOCK_PRINCIPAL_ID,
        "tid": tenant,
        "appid": client_id,
        "uti": format!("cloudtest-{}", shared.clock.next_id()),
    }));
    tracing::debug!(lifetime, "Entra emulator issued an access token");
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    }))
    .into_response()
}

/// `GET /_github/idtoken?audience=...`, with `Authorization: bearer <request token>`.
pub async fn github_id_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if shared.ctx.faults.on_call("github", "IdToken").is_some() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "injected fault"})),
        )
            .into_response();
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty());
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let audience = query.get("audience").cloned().unwrap_or_default();
    if audience != FEDERATED_AUDIENCE {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("audience '{audience}' is not {FEDERATED_AUDIENCE}")})),
        )
            .into_response();
    }
    let now = shared.clock.now();
    // GitHub's ID tokens are short-lived (minutes); the credential asks again each renewal.
    let value = jwt(json!({
        "iss": "https://token.actions.githubusercontent.com",
        "sub": "repo:cloudtest/cloudtest:environment:cloudtest-live",
        "aud": FEDERATED_AUDIENCE,
        "iat": now.floor() as u64,
        "exp": now.ceil() as u64 + 300,
        "jti": format!("cloudtest-gh-{}", shared.clock.next_id()),
    }));
    Json(json!({"count": 1, "value": value})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_times_look_like_azures() {
        // 2026-06-15T08:22:51Z
        assert_eq!(arm_time(1_781_511_771.0), "6/15/2026 8:22:51 AM");
    }

    #[test]
    fn expiry_comes_from_jwt_claims_only() {
        assert_eq!(expiry(&jwt(json!({"exp": 42}))), Some(42.0));
        assert_eq!(expiry("cloudtest-mock-token"), None);
    }
}
