//! ARM's error responses: `{"error": {"code", "message"}}` with the status ARM uses, plus
//! the headers every ARM response carries.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An error answer, as ARM shapes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Vec<Value>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn resource_group_not_found(rg: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    }

    pub fn deployment_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            format!("Deployment '{name}' could not be found."),
        )
    }

    pub fn being_deleted(rg: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ResourceGroupBeingDeleted",
            format!("The resource group '{rg}' is in deprovisioning state and cannot perform this operation."),
        )
    }

    pub fn invalid_request_content(why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{why}'."),
        )
    }

    /// The `error` object alone, as embedded in deployments and operation statuses.
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            e["details"] = Value::Array(self.details.clone());
        }
        e
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({"error": self.body()}))
    }
}

/// A JSON answer with ARM's standard headers.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    add_standard_headers(&mut r);
    r
}

/// A bodiless answer (`HEAD`, `202`/`204` of long-running operations).
pub fn empty_response(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    add_standard_headers(&mut r);
    r
}

fn add_standard_headers(r: &mut Response) {
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-ms-request-id", v.clone());
        r.headers_mut().insert("x-ms-correlation-request-id", v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}
