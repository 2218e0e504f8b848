//! What can go wrong talking to ARM, and how each case reaches the engine: credential,
//! subscription and permission problems are `Error` (the tool could not do its job) with one
//! line naming the credential source; a deployment or deletion ARM reports as failed is
//! `Failed` (the system under test is wanting) with the first failed resource and reason.

use cloudtest_core::outputs::OutputError;
use cloudtest_core::{Overdue, PhaseError};
use thiserror::Error;

use crate::connection::first_line;

#[derive(Debug, Error)]
pub enum AzureError {
    #[error("no Azure subscription id: set AZURE_SUBSCRIPTION_ID or [azure] subscription_id")]
    NoSubscription,

    #[error("Azure credential from {source_name} failed: {message} (hint: `az login`, or check AZURE_TENANT_ID/AZURE_CLIENT_ID and the federated token)")]
    Credential {
        source_name: String,
        message: String,
    },

    #[error("ARM rejected the credential from {source_name} on {operation}: HTTP {status} {code}: {message} (hint: expired login or wrong tenant; `az login --tenant <id>`)")]
    Unauthenticated {
        source_name: String,
        operation: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error("the identity from {source_name} may not {operation}: HTTP {status} {code}: {message} (hint: it needs Contributor on the subscription)")]
    Forbidden {
        source_name: String,
        operation: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error("subscription {subscription_id} not found for the identity from {source_name}: {message} (hint: check AZURE_SUBSCRIPTION_ID and the tenant)")]
    SubscriptionNotFound {
        subscription_id: String,
        source_name: String,
        message: String,
    },

    #[error("ARM {operation} returned HTTP {status} {code}: {message}")]
    Api {
        operation: String,
        status: u16,
        code: String,
        message: String,
    },

    #[error("ARM {operation} could not be sent: {message}")]
    Transport { operation: String, message: String },

    #[error("ARM {operation} answered something unexpected: {why}")]
    Malformed { operation: String, why: String },

    #[error("ARM endpoint `{endpoint}` is unusable: {why}")]
    Endpoint { endpoint: String, why: String },

    #[error("ARM named `{url}` as a place to send the bearer token, but only the ARM endpoint `{endpoint}` gets it: refused (check --azure-endpoint and any proxy between here and ARM)")]
    UntrustedUrl { url: String, endpoint: String },

    #[error("resource group {group} is still Deleting at the teardown deadline ({waited_s} s): ARM accepted the DELETE and goes on deleting it; confirm it is gone later with `cloudtest sweep --provider azure --run-id {run_id}`")]
    StillDeleting {
        group: String,
        run_id: String,
        waited_s: u64,
    },

    #[error("template {path}: {why}")]
    Template { path: String, why: String },

    #[error("deployment {deployment} failed at {resource} ({resource_type}): {code}: {message}")]
    DeploymentFailed {
        deployment: String,
        resource: String,
        resource_type: String,
        code: String,
        message: String,
    },

    #[error("ARM refused deployment {deployment} before creating anything in it (HTTP {status} {outer_code}): {code}: {message}")]
    DeploymentRejected {
        deployment: String,
        status: u16,
        outer_code: String,
        code: String,
        message: String,
    },

    #[error("{operation} ended {status}: {code}: {message}")]
    OperationFailed {
        operation: String,
        status: String,
        code: String,
        message: String,
    },

    #[error("{operation} did not finish before the phase deadline ({waited_s} s, {attempts} polls; last seen: {last})")]
    Deadline {
        operation: String,
        waited_s: u64,
        attempts: u32,
        last: String,
    },

    #[error(transparent)]
    Outputs(#[from] OutputError),
}

impl AzureError {
    /// Classifies an error from the generated client or azure_core.
    pub(crate) fn from_sdk(
        operation: &str,
        source_name: &str,
        subscription_id: &str,
        err: azure_core::Error,
    ) -> Self {
        use azure_core::error::ErrorKind;
        match err.kind() {
            ErrorKind::Credential => AzureError::Credential {
                source_name: source_name.into(),
                message: crate::connection::error_chain(&err),
            },
            ErrorKind::HttpResponse { status, error_code } => {
                let http = err.as_http_error();
                let code = error_code
                    .clone()
                    .or_else(|| http.and_then(|h| h.error_code().map(str::to_string)))
                    .unwrap_or_else(|| "(no code)".into());
                let message = http
                    .and_then(|h| h.error_message().map(first_line))
                    .unwrap_or_else(|| "(no message)".into());
                Self::from_status(
                    operation,
                    source_name,
                    subscription_id,
                    u16::from(*status),
                    code,
                    message,
                )
            }
            ErrorKind::Io => AzureError::Transport {
                operation: operation.into(),
                message: first_line(&err.to_string()),
            },
            ErrorKind::DataConversion => AzureError::Malformed {
                operation: operation.into(),
                why: first_line(&err.to_string()),
            },
            _ => AzureError::Transport {
                operation: operation.into(),
                message: first_line(&err.to_string()),
            },
        }
    }

    /// Classifies an unsuccessful HTTP status with ARM's error code and message.
    pub(crate) fn from_status(
        operation: &str,
        source_name: &str,
        subscription_id: &str,
        status: u16,
        code: String,
        message: String,
    ) -> Self {
        match status {
            401 => AzureError::Unauthenticated {
                source_name: source_name.into(),
                operation: operation.into(),
                status,
                code,
                message,
            },
            403 => AzureError::Forbidden {
                source_name: source_name.into(),
                operation: operation.into(),
                status,
                code,
                message,
            },
            404 if code.eq_ignore_ascii_case("SubscriptionNotFound") => {
                AzureError::SubscriptionNotFound {
                    subscription_id: subscription_id.into(),
                    source_name: source_name.into(),
                    message,
                }
            }
            _ => AzureError::Api {
                operation: operation.into(),
                status,
                code,
                message,
            },
        }
    }

    /// `operation` ran out of phase time while ARM still reported it under way.
    pub(crate) fn overdue(operation: impl Into<String>, overdue: Overdue) -> Self {
        AzureError::Deadline {
            operation: operation.into(),
            waited_s: overdue.waited.as_secs(),
            attempts: overdue.attempts,
            last: overdue.last_or("nothing").into(),
        }
    }

    /// Worth asking again: only an answer that does not parse. The pipeline has already
    /// retried transport failures, 408, 429 and 5xx (honouring `Retry-After`); asking again
    /// on top would multiply its attempts. The operation-status polls in `lro` and
    /// `teardown`, which do not go through the pipeline, treat those as "not yet" inside
    /// the phase deadline instead.
    pub fn is_transient(&self) -> bool {
        matches!(self, AzureError::Malformed { .. })
    }

    /// Worth sending again, for the calls cloudtest sends itself over `reqwest`
    /// ([`crate::connection::ArmClients::call`]), which no pipeline retried: a transport
    /// failure, 408, 429, 5xx, or an answer that does not parse.
    pub fn is_retryable(&self) -> bool {
        match self {
            AzureError::Transport { .. } | AzureError::Malformed { .. } => true,
            AzureError::Api { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// True for the HTTP 404 "not found" answer (a group that does not exist).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, AzureError::Api { status: 404, .. })
    }

    /// `Failed` when ARM or the template says the deployment is wanting; `Error` when the
    /// tool could not do its job (credentials, permissions, transport, bad input).
    pub fn to_phase_error(&self) -> PhaseError {
        match self {
            AzureError::DeploymentFailed { .. }
            | AzureError::DeploymentRejected { .. }
            | AzureError::OperationFailed { .. }
            | AzureError::Deadline { .. }
            | AzureError::StillDeleting { .. }
            | AzureError::Outputs(_) => PhaseError::failed(self.to_string()),
            _ => PhaseError::error(self.to_string()),
        }
    }
}

impl From<AzureError> for PhaseError {
    fn from(e: AzureError) -> Self {
        e.to_phase_error()
    }
}

/// Lets the shared transient-read helpers in `cloudtest_core::poll` decide what to ask again.
impl cloudtest_core::Transient for AzureError {
    fn is_transient(&self) -> bool {
        AzureError::is_transient(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudtest_core::PhaseErrorKind;

    #[test]
    fn auth_statuses_name_the_credential_source_in_one_line() {
        for (status, code) in [
            (401, "ExpiredAuthenticationToken"),
            (403, "AuthorizationFailed"),
            (404, "SubscriptionNotFound"),
        ] {
            let e = AzureError::from_status(
                "create resource group",
                "Azure CLI login",
                "sub-1",
                status,
                code.into(),
                "nope".into(),
            );
            let p = e.to_phase_error();
            assert_eq!(p.kind, PhaseErrorKind::Error, "{e}");
            assert!(p.message.contains("Azure CLI login"), "{p}");
            assert!(!p.message.contains('\n'), "{p}");
        }
    }

    #[test]
    fn deployment_failure_is_failed_and_names_resource_type_code_message() {
        let e = AzureError::DeploymentFailed {
            deployment: "d".into(),
            resource: "vm-server".into(),
            resource_type: "Microsoft.Compute/virtualMachines".into(),
            code: "SkuNotAvailable".into(),
            message: "no capacity".into(),
        };
        let p = e.to_phase_error();
        assert_eq!(p.kind, PhaseErrorKind::Failed);
        for part in [
            "vm-server",
            "Microsoft.Compute/virtualMachines",
            "SkuNotAvailable",
            "no capacity",
        ] {
            assert!(p.message.contains(part), "{p}");
        }
    }

    #[test]
    fn only_garbled_answers_are_asked_again_after_the_pipeline_retried() {
        let api = |status| AzureError::Api {
            operation: "get deployment".into(),
            status,
            code: "c".into(),
            message: "m".into(),
        };
        let transport = || AzureError::Transport {
            operation: "delete resource group".into(),
            message: "connection reset".into(),
        };
        let garbled = AzureError::Malformed {
            operation: "get deployment".into(),
            why: "expected value at line 1".into(),
        };
        // Pipeline calls: 429, 5xx and transport failures were retried by the pipeline.
        for e in [api(429), api(500), api(503), api(408), transport()] {
            assert!(!e.is_transient(), "{e}");
            assert!(e.is_retryable(), "{e}");
        }
        assert!(garbled.is_transient() && garbled.is_retryable());
        for e in [api(400), api(403), api(404), api(409)] {
            assert!(!e.is_transient() && !e.is_retryable(), "{e}");
        }
    }
}
