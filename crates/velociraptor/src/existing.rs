//! `cloudtest probe`: the same health, enrollment and version probes against a server that
//! already runs, creating nothing.

use std::time::Duration;

use cloudtest_core::{EnrollmentFacts, HealthFacts, Secret};
use tokio::time::Instant;

use crate::enrollment::probe_enrollment;
use crate::errors::ProbeError;
use crate::health::probe_health;
use crate::progress::Progress;
use crate::settings::ProbeSettings;
use crate::target::Target;

/// A running server, as an operator describes it.
#[derive(Debug, Clone)]
pub struct ExistingServer {
    /// `https://HOST:8000/`
    pub frontend_url: String,
    /// `https://HOST:8889/`
    pub gui_url: String,
    /// The server's CA certificate (PEM): the only trust root.
    pub ca_pem: String,
    pub user: String,
    pub password: Secret,
    pub expect_clients: u32,
    /// The release every client must report; `None` skips the version check.
    pub expect_version: Option<String>,
    /// Name in the server certificate, normally `VelociraptorServer`.
    pub pinned_server_name: String,
}

/// How long each probe may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeDeadlines {
    pub health: Duration,
    pub enrollment: Duration,
}

/// What `probe_existing` found.
#[derive(Debug)]
pub struct ProbeReport {
    pub health: Result<HealthFacts, ProbeError>,
    /// `None` when health failed, so enrollment was not tried.
    pub enrollment: Option<Result<EnrollmentFacts, ProbeError>>,
}

impl ProbeReport {
    /// True when every probe ran and passed (the CLI exits 0).
    pub fn passed(&self) -> bool {
        self.health.is_ok() && matches!(self.enrollment, Some(Ok(_)))
    }

    /// One line per failed probe, the same messages a lifecycle run shows.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.health {
            out.push(format!("health: {e}"));
        }
        match &self.enrollment {
            Some(Err(e)) => out.push(format!("enrollment: {e}")),
            None if self.health.is_err() => {
                out.push("enrollment: not run because health failed".to_string())
            }
            _ => {}
        }
        out
    }
}

/// Runs health, then enrollment and version, against `server`. Progress goes to `tracing`.
pub async fn probe_existing(
    server: ExistingServer,
    settings: &ProbeSettings,
    deadlines: ProbeDeadlines,
) -> ProbeReport {
    let target = match Target::from_existing(&server, settings).await {
        Ok(t) => t,
        Err(e) => {
            return ProbeReport {
                health: Err(e),
                enrollment: None,
            }
        }
    };
    let sink = |line: String| tracing::info!(target: "cloudtest::probe", "{line}");
    let progress = Progress::new(&sink);
    let health = probe_health(
        &target,
        settings,
        Instant::now() + deadlines.health,
        &progress,
    )
    .await;
    if health.is_err() {
        return ProbeReport {
            health,
            enrollment: None,
        };
    }
    let enrollment = probe_enrollment(
        &target,
        settings,
        Instant::now() + deadlines.enrollment,
        &progress,
    )
    .await;
    ProbeReport {
        health,
        enrollment: Some(enrollment),
    }
}
