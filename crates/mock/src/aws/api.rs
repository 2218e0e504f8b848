//! An API error as both protocols report it: HTTP status, error code, message.

use axum::http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// The caller's fault (`Sender`) or the service's (`Receiver`).
    pub sender: bool,
}

impl ApiError {
    /// A 400 the caller caused.
    pub fn sender(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.to_string(),
            message: message.into(),
            sender: true,
        }
    }

    /// CloudFormation's catch-all 400.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::sender("ValidationError", message)
    }

    /// A 5xx the service caused.
    pub fn receiver(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            sender: false,
        }
    }
}
