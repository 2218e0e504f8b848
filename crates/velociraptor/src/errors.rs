//! Why a probe failed, in the words a user needs, and how that maps to a phase outcome.

use std::time::Duration;

use cloudtest_core::PhaseError;
use thiserror::Error;

use crate::diagnose::TlsMismatch;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The server's certificate does not match what the deployment published.
    #[error(transparent)]
    Tls(Box<TlsMismatch>),

    #[error(
        "the CA certificate the deployment published cannot be used as a trust root: {why} \
         (check the CaCertificate output, or the file given with --ca)"
    )]
    InvalidCa { why: String },

    #[error("the {what} URL `{url}` cannot be probed: {why}")]
    InvalidUrl {
        what: &'static str,
        url: String,
        why: String,
    },

    #[error("cannot resolve the {what} host `{host}`: {source}")]
    Resolve {
        what: &'static str,
        host: String,
        #[source]
        source: std::io::Error,
    },

    #[error("building the HTTPS client for {url} failed: {source}")]
    Client {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "the frontend's /healthz at {url} did not answer 200 within {}: last seen {last} after \
         {attempts} attempts (if the server needs longer to start, raise CLOUDTEST_HEALTH_TIMEOUT \
         or [deadlines] health)",
        secs(*.waited)
    )]
    HealthTimeout {
        url: String,
        waited: Duration,
        last: String,
        attempts: u32,
    },

    #[error(
        "the GUI at {url} answered HTTP {status} without credentials: it must refuse with 401, \
         so authentication is not enforced"
    )]
    GuiAuthNotEnforced { url: String, status: u16 },

    #[error(
        "the GUI at {url} refused user `{user}` with HTTP {status}: the admin password does not \
         work (check the AdminPassword the template received, or CLOUDTEST_ADMIN_PASSWORD)"
    )]
    CredentialsRejected {
        url: String,
        user: String,
        status: u16,
    },

    #[error("{url} answered HTTP {status}, which a Velociraptor GUI never does here ({hint})")]
    UnexpectedStatus {
        url: String,
        status: u16,
        hint: &'static str,
    },

    #[error(
        "the GUI at {url} did not finish the authentication check within {}: last seen {last}",
        secs(*.waited)
    )]
    GuiTimeout {
        url: String,
        waited: Duration,
        last: String,
    },

    #[error(
        "{expected} client(s) expected to enroll and be interrogated within {}, last seen: {last} \
         ({attempts} SearchClients calls; check the clients can reach the frontend port and \
         that their config names this server)",
        secs(*.waited)
    )]
    EnrollmentTimeout {
        expected: u32,
        waited: Duration,
        last: String,
        attempts: u32,
    },

    #[error(
        "agent version mismatch: the deployment pinned Velociraptor {expected} but {}",
        mismatched.iter().map(|(id, v)| format!("client {id} reports {v}")).collect::<Vec<_>>().join(", ")
    )]
    VersionMismatch {
        expected: String,
        /// (client id, reported version) of every client that differs.
        mismatched: Vec<(String, String)>,
    },
}

impl ProbeError {
    /// `Error` when the tool could not do its job; `Failed` when the server fell short.
    pub fn is_tool_error(&self) -> bool {
        matches!(self, ProbeError::Client { .. })
    }
}

impl From<ProbeError> for PhaseError {
    fn from(e: ProbeError) -> Self {
        if e.is_tool_error() {
            PhaseError::error(e.to_string())
        } else {
            PhaseError::failed(e.to_string())
        }
    }
}

/// `12.3s`: durations in messages.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudtest_core::PhaseErrorKind;

    #[test]
    fn version_mismatch_names_both_versions_and_clients() {
        let e = ProbeError::VersionMismatch {
            expected: "0.77.2".into(),
            mismatched: vec![("C.0123456789abcdef".into(), "0.76.3".into())],
        };
        let m = e.to_string();
        assert!(m.contains("0.77.2") && m.contains("0.76.3") && m.contains("C.0123456789abcdef"));
        assert_eq!(PhaseError::from(e).kind, PhaseErrorKind::Failed);
    }

    #[test]
    fn health_timeout_states_limit_and_last_status() {
        let e = ProbeError::HealthTimeout {
            url: "https://x:8000/healthz".into(),
            waited: Duration::from_millis(1500),
            last: "HTTP 503".into(),
            attempts: 4,
        };
        let m = e.to_string();
        assert!(
            m.contains("1.5s") && m.contains("HTTP 503") && m.contains("CLOUDTEST_HEALTH_TIMEOUT")
        );
    }
}
