//! `cloudtest probe`: the lifecycle's health, enrollment and version probes against a server
//! that already exists. Creates nothing.

use std::time::Duration;

use anyhow::Result;
use cloudtest_core::config::parse_seconds;
use cloudtest_core::config::HEALTH_TIMEOUT_ENV;
use cloudtest_core::{ExitCode, Secret};
use cloudtest_velociraptor::{probe_existing, ExistingServer, ProbeDeadlines, ProbeSettings};

use crate::args::ProbeArgs;
use crate::error::usage;
use crate::plan::{parse_duration, ADMIN_PASSWORD_ENV};
use crate::redact;

pub async fn probe(args: ProbeArgs) -> Result<ExitCode> {
    let password = std::env::var(ADMIN_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            usage(format!(
                "set {ADMIN_PASSWORD_ENV} to the GUI password of --user {}",
                args.user
            ))
        })?;
    redact::register(&password);
    let raw = std::fs::read_to_string(&args.ca)
        .map_err(|e| usage(format!("--ca {}: {e}", args.ca.display())))?;
    let ca_pem = cloudtest_core::outputs::decode_ca(&raw).map_err(|e| {
        usage(format!(
            "--ca {}: not a CA certificate ({e})",
            args.ca.display()
        ))
    })?;
    let health = match (&args.health_timeout, std::env::var(HEALTH_TIMEOUT_ENV).ok()) {
        (Some(s), _) => {
            parse_duration(s).map_err(|e| usage(format!("--health-timeout `{s}`: {e}")))?
        }
        (None, Some(env)) => Duration::from_secs(
            parse_seconds(&env).map_err(|e| usage(format!("{HEALTH_TIMEOUT_ENV}: {e}")))?,
        ),
        (None, None) => Duration::from_secs(120),
    };
    let enrollment = parse_duration(&args.enrollment_timeout).map_err(|e| {
        usage(format!(
            "--enrollment-timeout `{}`: {e}",
            args.enrollment_timeout
        ))
    })?;
    for (flag, url) in [("--frontend", &args.frontend), ("--gui", &args.gui)] {
        if !url.starts_with("https://") {
            return Err(usage(format!("{flag} `{url}` must be an https:// URL")));
        }
    }
    let report = probe_existing(
        ExistingServer {
            frontend_url: args.frontend.clone(),
            gui_url: args.gui.clone(),
            ca_pem,
            user: args.user.clone(),
            password: Secret::new(password),
            expect_clients: args.expect_clients,
            expect_version: args.expect_version.clone(),
            pinned_server_name: args.server_name.clone(),
        },
        &ProbeSettings::default(),
        ProbeDeadlines { health, enrollment },
    )
    .await;
    if let Ok(h) = &report.health {
        println!(
            "health: passed in {} ms; GUI {} without / {} with credentials; TLS pinned to CA {}",
            h.time_to_healthy_ms,
            h.gui_unauthenticated_status,
            h.gui_authenticated_status,
            h.ca_fingerprint
        );
    }
    if let Some(Ok(e)) = &report.enrollment {
        println!(
            "enrollment: {} client(s) after {} ms",
            e.clients.len(),
            e.time_to_enroll_ms
        );
        for c in &e.clients {
            println!("  {} {} agent {}", c.client_id, c.hostname, c.agent_version);
        }
    }
    for f in report.failures() {
        println!("{}", redact::redact(&f));
    }
    Ok(if report.passed() {
        ExitCode::Success
    } else {
        ExitCode::RequirementFailed
    })
}
