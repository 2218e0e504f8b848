//! Typed AWS errors: each keeps the operation, what it acted on and the SDK error code, and
//! says in one line what to check. [`AwsError::to_phase_error`] decides whether the problem
//! is the deployment's (`Failed`) or the tool's/environment's (`Error`).

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use cloudtest_core::PhaseError;
use thiserror::Error;

/// Error codes AWS returns when the credentials themselves are wrong or expired.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
    "InvalidAccessKeyId",
    "RequestExpired",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

/// Error codes AWS returns when the identity lacks a permission.
const PERMISSION_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "OptInRequired",
    "UnauthorizedAccess",
];

/// What an error message needs to know about the connection (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorContext {
    pub region: String,
    /// The endpoint override, if any; `None` means the regional AWS endpoint.
    pub endpoint: Option<String>,
    /// Where the credentials came from (see [`crate::AwsConnection::credential_source`]).
    pub credential_source: String,
}

impl ErrorContext {
    fn endpoint_name(&self, service: &str) -> String {
        match &self.endpoint {
            Some(url) => url.clone(),
            None => format!("{service}.{}.amazonaws.com", self.region),
        }
    }

    /// Classifies an SDK error with this connection's details. `service` is the endpoint
    /// prefix (`cloudformation`, `ec2`), only used to name the regional endpoint in
    /// messages. One generic serves every client: the SDK crates all re-export smithy's
    /// `SdkError` and `HttpResponse`.
    pub fn sdk<E>(
        &self,
        operation: &'static str,
        target: &str,
        service: &str,
        err: SdkError<E, HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let target = target.to_string();
        let detail = DisplayErrorContext(&err).to_string();
        if has_credentials_error(&err) {
            return AwsError::NoCredentials {
                operation,
                target,
                detail,
                credential_source: self.credential_source.clone(),
            };
        }
        match &err {
            // A 2xx whose body did not parse arrives as a service error without a code.
            SdkError::ResponseError(_) => AwsError::Malformed {
                operation,
                target,
                detail,
            },
            SdkError::ServiceError(e)
                if e.raw().status().is_success() && e.err().code().is_none() =>
            {
                AwsError::Malformed {
                    operation,
                    target,
                    detail,
                }
            }
            SdkError::ServiceError(_) => {
                let code = err.code().unwrap_or("Unknown").to_string();
                let message = err.message().unwrap_or("no message").to_string();
                AwsError::from_code(operation, target, self, code, message, detail)
            }
            SdkError::DispatchFailure(d) if d.is_timeout() => AwsError::Timeout {
                operation,
                target,
                endpoint: self.endpoint_name(service),
                detail,
            },
            SdkError::DispatchFailure(d) if d.is_io() => AwsError::Unreachable {
                operation,
                target,
                endpoint: self.endpoint_name(service),
                region: self.region.clone(),
                detail,
            },
            SdkError::TimeoutError(_) => AwsError::Timeout {
                operation,
                target,
                endpoint: self.endpoint_name(service),
                detail,
            },
            _ => AwsError::Other {
                operation,
                target,
                detail,
            },
        }
    }
}

#[derive(Debug, Error)]
pub enum AwsError {
    #[error("{operation} on {target}: no AWS credentials could be loaded ({detail}); credential source: {credential_source}; run `aws sso login`, set AWS_PROFILE, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    NoCredentials {
        operation: &'static str,
        target: String,
        detail: String,
        credential_source: String,
    },
    #[error("{operation} on {target}: AWS rejected the credentials ({code}: {message}); credential source: {credential_source}; check that the keys or session are current and belong to the intended account")]
    BadCredentials {
        operation: &'static str,
        target: String,
        code: String,
        message: String,
        credential_source: String,
    },
    /// `target` includes the region (`cloudtest-x in us-east-1`).
    #[error("{operation} on {target}: permission denied ({code}: {message}); the identity from {credential_source} needs permission for {operation} there")]
    PermissionDenied {
        operation: &'static str,
        target: String,
        code: String,
        message: String,
        credential_source: String,
    },
    #[error("{operation} on {target}: could not reach {endpoint} ({detail}); check that region `{region}` is spelled right (e.g. us-east-1) and that --aws-endpoint / AWS_ENDPOINT_URL, if set, points at a running server")]
    Unreachable {
        operation: &'static str,
        target: String,
        endpoint: String,
        region: String,
        detail: String,
    },
    #[error("{operation} on {target} timed out on every attempt ({detail}); the endpoint {endpoint} is slow or not answering")]
    Timeout {
        operation: &'static str,
        target: String,
        endpoint: String,
        detail: String,
    },
    #[error("{operation} on {target} failed: {code}: {message}")]
    Api {
        operation: &'static str,
        target: String,
        code: String,
        message: String,
    },
    /// AWS answered, but the answer could not be read (a truncated or garbled body). The
    /// only error a caller asks again for: the SDK does not retry it.
    #[error("{operation} on {target}: the answer could not be read ({detail})")]
    Malformed {
        operation: &'static str,
        target: String,
        detail: String,
    },
    #[error("{operation} on {target} failed: {detail}")]
    Other {
        operation: &'static str,
        target: String,
        detail: String,
    },
    #[error("{operation} on {target}: the response has no {field}")]
    MissingField {
        operation: &'static str,
        target: String,
        field: &'static str,
    },
}

impl AwsError {
    /// Classifies a modeled AWS error by its code.
    pub fn from_code(
        operation: &'static str,
        target: String,
        cx: &ErrorContext,
        code: String,
        message: String,
        detail: String,
    ) -> AwsError {
        if CREDENTIAL_CODES.contains(&code.as_str()) {
            AwsError::BadCredentials {
                operation,
                target,
                code,
                message,
                credential_source: cx.credential_source.clone(),
            }
        } else if PERMISSION_CODES.contains(&code.as_str()) {
            AwsError::PermissionDenied {
                operation,
                target: format!("{target} in {}", cx.region),
                code,
                message,
                credential_source: cx.credential_source.clone(),
            }
        } else if code == "Unknown" && message == "no message" {
            AwsError::Other {
                operation,
                target,
                detail,
            }
        } else {
            AwsError::Api {
                operation,
                target,
                code,
                message,
            }
        }
    }

    /// The SDK error code, when AWS sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::BadCredentials { code, .. }
            | AwsError::PermissionDenied { code, .. }
            | AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Worth asking again: only an answer that could not be read. Throttling, 5xx,
    /// timeouts and dropped connections were already retried by the SDK
    /// ([`crate::connection::MAX_ATTEMPTS`] attempts); asking again on top would multiply
    /// those attempts. Unclassified errors are not transient either.
    pub fn is_transient(&self) -> bool {
        matches!(self, AwsError::Malformed { .. })
    }

    /// CloudFormation's answer for a stack name it does not know: `ValidationError` with
    /// "Stack with id X does not exist". The code alone also covers bad templates, so the
    /// message is checked too (the SDK's own delete waiter relies on the same answer).
    pub fn is_stack_missing(&self) -> bool {
        matches!(self, AwsError::Api { code, message, .. }
            if code == "ValidationError" && message.contains("does not exist"))
    }

    /// CloudFormation refusing `DeleteStack` because the stack is busy: `ValidationError`
    /// "Stack [X] cannot be deleted while in status ..." (AWS documents it for updates; it
    /// is treated the same in any `*_IN_PROGRESS` state). Pending, not failed: the stack
    /// settles and the request is sent again.
    pub fn is_delete_refused(&self) -> bool {
        matches!(self, AwsError::Api { code, message, .. }
            if code == "ValidationError" && message.contains("cannot be deleted while in status"))
    }

    /// `Failed` when AWS rejected what the template asked for (validation, capabilities,
    /// limits); `Error` when the tool could not do its job (credentials, permissions,
    /// network, a response without a required field).
    pub fn to_phase_error(&self) -> PhaseError {
        match self {
            AwsError::Api { code, .. }
                if matches!(
                    code.as_str(),
                    "ValidationError"
                        | "InsufficientCapabilitiesException"
                        | "LimitExceededException"
                ) =>
            {
                PhaseError::failed(self.to_string())
            }
            _ => PhaseError::error(self.to_string()),
        }
    }
}

impl From<AwsError> for PhaseError {
    fn from(e: AwsError) -> Self {
        e.to_phase_error()
    }
}

fn has_credentials_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Lets the shared transient-read helpers in `cloudtest_core::poll` decide what to ask again.
impl cloudtest_core::Transient for AwsError {
    fn is_transient(&self) -> bool {
        AwsError::is_transient(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudtest_core::PhaseErrorKind;

    fn cx() -> ErrorContext {
        ErrorContext {
            region: "us-east-1".into(),
            endpoint: None,
            credential_source: "default chain: profile AWS_PROFILE=ci".into(),
        }
    }

    fn by_code(code: &str, message: &str) -> AwsError {
        AwsError::from_code(
            "CreateStack",
            "cloudtest-r1".into(),
            &cx(),
            code.into(),
            message.into(),
            String::new(),
        )
    }

    #[test]
    fn credential_codes_name_the_source_and_are_errors() {
        let e = by_code(
            "ExpiredToken",
            "The security token included in the request is expired",
        );
        assert!(matches!(e, AwsError::BadCredentials { .. }));
        let line = e.to_string();
        assert!(line.contains("AWS_PROFILE=ci"), "{line}");
        assert!(line.contains("CreateStack"), "{line}");
        assert_eq!(e.to_phase_error().kind, PhaseErrorKind::Error);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn permission_codes_name_operation_and_region() {
        let e = by_code(
            "AccessDenied",
            "User is not authorized to perform cloudformation:CreateStack",
        );
        assert!(matches!(e, AwsError::PermissionDenied { .. }));
        let line = e.to_string();
        assert!(
            line.contains("us-east-1") && line.contains("permission"),
            "{line}"
        );
        assert_eq!(e.to_phase_error().kind, PhaseErrorKind::Error);
        assert_eq!(e.code(), Some("AccessDenied"));
    }

    #[test]
    fn validation_errors_are_failures_and_missing_stacks_are_recognised() {
        let e = by_code(
            "ValidationError",
            "Parameters: [AllowedCidr] must have values",
        );
        assert_eq!(e.to_phase_error().kind, PhaseErrorKind::Failed);
        assert!(e.to_string().contains("AllowedCidr"));
        assert!(!e.is_stack_missing());
        let gone = by_code(
            "ValidationError",
            "Stack with id cloudtest-r1 does not exist",
        );
        assert!(gone.is_stack_missing());
        let other = by_code("Throttling", "Rate exceeded");
        assert!(!other.is_stack_missing());
        // The SDK retried the throttling already; the caller does not ask again.
        assert!(!other.is_transient());
        assert!(!gone.is_transient());
        assert!(!by_code("InternalFailure", "oops").is_transient());
        // An error AWS sent without code or message is unclassified: not transient either.
        assert!(matches!(
            by_code("Unknown", "no message"),
            AwsError::Other { .. }
        ));
        assert!(!by_code("Unknown", "no message").is_transient());
        let garbled = AwsError::Malformed {
            operation: "DescribeStacks",
            target: "cloudtest-r1".into(),
            detail: "unexpected end of XML".into(),
        };
        assert!(garbled.is_transient());
        assert_eq!(garbled.to_phase_error().kind, PhaseErrorKind::Error);
        assert!(!by_code("AccessDenied", "no").is_transient());
        assert_eq!(other.to_phase_error().kind, PhaseErrorKind::Error);
    }

    #[test]
    fn unreachable_names_regional_endpoint_or_override() {
        let e = AwsError::Unreachable {
            operation: "DescribeStacks",
            target: "cloudtest-r1".into(),
            endpoint: cx().endpoint_name("cloudformation"),
            region: "us-esat-1".into(),
            detail: "dns error".into(),
        };
        let line = e.to_string();
        assert!(
            line.contains("cloudformation.us-east-1.amazonaws.com"),
            "{line}"
        );
        assert!(line.contains("us-esat-1"), "{line}");
        let over = ErrorContext {
            endpoint: Some("http://127.0.0.1:5000".into()),
            ..cx()
        };
        assert_eq!(over.endpoint_name("ec2"), "http://127.0.0.1:5000");
    }
}
