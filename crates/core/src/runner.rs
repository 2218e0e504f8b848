//! Runs one lifecycle: the six phases in order, each under its deadline, with teardown and
//! the leak check guaranteed once `create` was attempted.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cancel::{CancelReason, Shutdown};
use crate::config::{DeadlinesConfig, HEALTH_TIMEOUT_ENV};
use crate::events::{EventSink, RunEvent, RunEventKind};
use crate::facts::{DeploymentFacts, RequirementFacts};
use crate::phase::{Phase, PhaseRecord, PhaseStatus};
use crate::probe::ServerProbe;
use crate::provider::{PhaseContext, PhaseError, PhaseErrorKind, Provider};
use crate::requirement::{LifecycleId, RequirementStatus};
use crate::results::{Cost, RequirementResult};
use crate::skip::Environment;

/// One deadline per phase, with where each came from (for timeout messages).
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseDeadlines {
    limits: [(Duration, String); 6],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct DeadlineError {
    pub origin: String,
    pub message: String,
}

impl PhaseDeadlines {
    /// Real clouds: minutes.
    pub fn live_defaults() -> Self {
        Self::from_secs([20 * 60, 30 * 60, 120, 15 * 60, 30 * 60, 5 * 60], "default")
    }

    /// Emulators: seconds, stretched by `--mock-latency` so slow mock runs still fit.
    pub fn mock_defaults(latency: Duration) -> Self {
        let base = [5.0, 10.0, 5.0, 5.0, 10.0, 5.0];
        let mut secs = [0u64; 6];
        for (i, b) in base.iter().enumerate() {
            // Each phase may wait through a few emulated delays.
            secs[i] = (b + latency.as_secs_f64() * 6.0).ceil() as u64;
        }
        Self::from_secs(secs, "mock default")
    }

    fn from_secs(secs: [u64; 6], origin: &str) -> Self {
        Self {
            limits: secs.map(|s| (Duration::from_secs(s), origin.to_string())),
        }
    }

    pub fn get(&self, phase: Phase) -> Duration {
        self.limits[phase as usize].0
    }

    pub fn origin(&self, phase: Phase) -> &str {
        &self.limits[phase as usize].1
    }

    pub fn set(&mut self, phase: Phase, limit: Duration, origin: impl Into<String>) {
        self.limits[phase as usize] = (limit, origin.into());
    }

    /// Applies the config file, then `CLOUDTEST_HEALTH_TIMEOUT`. Flags are applied by the
    /// caller afterwards with [`PhaseDeadlines::set`], so they win.
    pub fn apply(
        &mut self,
        config: &DeadlinesConfig,
        config_origin: &str,
        env: &dyn Environment,
    ) -> Result<(), DeadlineError> {
        let pairs = [
            (Phase::Create, config.create),
            (Phase::WaitReady, config.wait_ready),
            (Phase::Health, config.health),
            (Phase::Enrollment, config.enrollment),
            (Phase::Teardown, config.teardown),
            (Phase::LeakCheck, config.leak_check),
        ];
        for (phase, value) in pairs {
            if let Some(d) = value {
                if d.is_zero() {
                    return Err(DeadlineError {
                        origin: config_origin.to_string(),
                        message: format!("deadlines.{phase} must be longer than 0s"),
                    });
                }
                self.set(phase, d, format!("deadlines.{phase} in {config_origin}"));
            }
        }
        if let Some(raw) = env.var(HEALTH_TIMEOUT_ENV) {
            let secs = parse_seconds(&raw).map_err(|message| DeadlineError {
                origin: HEALTH_TIMEOUT_ENV.to_string(),
                message,
            })?;
            self.set(Phase::Health, Duration::from_secs(secs), HEALTH_TIMEOUT_ENV);
        }
        Ok(())
    }
}

/// Whole seconds greater than zero, as `CLOUDTEST_HEALTH_TIMEOUT` takes them.
pub fn parse_seconds(raw: &str) -> Result<u64, String> {
    let t = raw.trim();
    match t.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n as u64),
        Ok(n) => Err(format!("must be a positive number of seconds, got {n}")),
        Err(_) => Err(format!(
            "must be a whole number of seconds (e.g. 300), got `{t}`"
        )),
    }
}

#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    pub deadlines: PhaseDeadlines,
    /// Skip teardown after a failure (the user asked); said loudly.
    pub keep_on_failure: bool,
}

/// Runs lifecycles. Shared by every (requirement, region) of a run.
pub struct LifecycleRunner {
    options: LifecycleOptions,
    events: Arc<dyn EventSink>,
    probe: Arc<dyn ServerProbe>,
    shutdown: Shutdown,
}

/// How driving one phase ended.
enum Driven<T> {
    Ok(T),
    Err(PhaseError),
    TimedOut(Duration),
    Panicked(String),
    Cancelled(CancelReason),
}

impl LifecycleRunner {
    pub fn new(
        options: LifecycleOptions,
        events: Arc<dyn EventSink>,
        probe: Arc<dyn ServerProbe>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            options,
            events,
            probe,
            shutdown,
        }
    }

    /// Runs many lifecycles, at most `max_parallel` at once; results keep the input order.
    /// One lifecycle's failure never stops another.
    pub async fn run_all(
        &self,
        providers: Vec<Box<dyn Provider>>,
        max_parallel: usize,
    ) -> Vec<RequirementResult> {
        let permits = Arc::new(Semaphore::new(max_parallel.max(1)));
        let runs = providers.into_iter().map(|mut provider| {
            let permits = permits.clone();
            async move {
                let id = provider.lifecycle();
                let permit = tokio::select! {
                    biased;
                    p = permits.acquire_owned() => p.ok(),
                    _ = self.shutdown.cancelled() => None,
                };
                match permit {
                    Some(_permit) => self.run(provider.as_mut()).await,
                    None => {
                        let reason = self.shutdown.reason().unwrap_or(CancelReason::Terminate);
                        RequirementResult::not_run(
                            id.requirement,
                            id.region,
                            RequirementStatus::Error,
                            format!(
                                "cancelled by {} before it started; nothing was created",
                                reason.signal_name()
                            ),
                        )
                    }
                }
            }
        });
        futures::future::join_all(runs).await
    }

    /// Runs one lifecycle to the end and returns its result.
    pub async fn run(&self, provider: &mut dyn Provider) -> RequirementResult {
        let id = provider.lifecycle();
        let started = Instant::now();
        let mut records: Vec<PhaseRecord> = Vec::new();
        let mut facts = RequirementFacts::default();
        let mut first_problem: Option<(Phase, PhaseError)> = None;
        let mut cancelled: Option<CancelReason> = None;
        let mut create_attempted = false;
        let mut deployment: Option<DeploymentFacts> = None;

        for phase in [
            Phase::Create,
            Phase::WaitReady,
            Phase::Health,
            Phase::Enrollment,
        ] {
            if let Some(reason) = cancelled.or(self.shutdown.reason()) {
                cancelled = Some(reason);
                records.push(self.skip(
                    &id,
                    started,
                    phase,
                    format!("not run: cancelled by {}", reason.signal_name()),
                ));
                continue;
            }
            if let Some((failed, _)) = &first_problem {
                records.push(self.skip(
                    &id,
                    started,
                    phase,
                    format!("not run: {failed} did not pass"),
                ));
                continue;
            }
            let cx = self.context(&id, phase, started);
            self.emit(&id, started, RunEventKind::PhaseStarted { phase });
            let t0 = Instant::now();
            let at = chrono::Utc::now();
            let (status, detail) = match phase {
                Phase::Create => {
                    create_attempted = true;
                    match self.drive(&cx, provider.create(&cx), true).await {
                        Driven::Ok(c) => {
                            facts.deployment_id = Some(c.deployment_id.clone());
                            (PhaseStatus::Passed, format!("created {}", c.deployment_id))
                        }
                        other => self.problem(phase, other, &mut first_problem, &mut cancelled),
                    }
                }
                Phase::WaitReady => match self.drive(&cx, provider.wait_ready(&cx), true).await {
                    Driven::Ok(d) => {
                        facts.velociraptor_version = Some(d.velociraptor_version.clone());
                        facts.server_address = Some(d.server_address.clone());
                        facts.frontend_port = Some(d.frontend_port);
                        facts.gui_port = Some(d.gui_port);
                        facts.ca_fingerprint = Some(d.ca_fingerprint.clone());
                        facts.expected_clients = Some(d.expected_clients);
                        facts.resources_created = Some(d.resources.len() as u32);
                        facts.resources = d.resources.clone();
                        let detail = format!(
                            "ready: Velociraptor {} at {} ({} resources)",
                            d.velociraptor_version,
                            d.server_address,
                            d.resources.len()
                        );
                        deployment = Some(d);
                        (PhaseStatus::Passed, detail)
                    }
                    other => self.problem(phase, other, &mut first_problem, &mut cancelled),
                },
                Phase::Health => {
                    let Some(d) = deployment.as_ref() else {
                        unreachable_phase(&mut first_problem, phase);
                        continue;
                    };
                    match self.drive(&cx, provider.health(&cx, d), true).await {
                        Driven::Ok(h) => {
                            facts.time_to_healthy_ms = Some(h.time_to_healthy_ms);
                            facts.tls = Some(h.tls.clone());
                            facts.gui_auth = Some(h.gui_auth.clone());
                            let detail = format!(
                                "healthy after {} ms; GUI answered {} without and {} with credentials; TLS {}",
                                h.time_to_healthy_ms, h.gui_unauthenticated_status, h.gui_authenticated_status, h.tls
                            );
                            (PhaseStatus::Passed, detail)
                        }
                        other => self.problem(phase, other, &mut first_problem, &mut cancelled),
                    }
                }
                Phase::Enrollment => {
                    let Some(d) = deployment.as_ref() else {
                        unreachable_phase(&mut first_problem, phase);
                        continue;
                    };
                    match self.drive(&cx, provider.enrollment(&cx, d), true).await {
                        Driven::Ok(e) => {
                            facts.time_to_enroll_ms = Some(e.time_to_enroll_ms);
                            facts.enrolled_clients = Some(e.clients.len() as u32);
                            let mut versions: Vec<String> =
                                e.clients.iter().map(|c| c.agent_version.clone()).collect();
                            versions.sort();
                            versions.dedup();
                            facts.agent_versions = versions;
                            let names: Vec<String> = e
                                .clients
                                .iter()
                                .map(|c| format!("{} ({})", c.client_id, c.hostname))
                                .collect();
                            facts.clients = e.clients;
                            let detail = format!(
                                "{} of {} expected clients enrolled after {} ms: {}",
                                names.len(),
                                e.expected_clients,
                                e.time_to_enroll_ms,
                                names.join(", ")
                            );
                            (PhaseStatus::Passed, detail)
                        }
                        other => self.problem(phase, other, &mut first_problem, &mut cancelled),
                    }
                }
                Phase::Teardown | Phase::LeakCheck => continue,
            };
            self.finish(&id, started, &mut records, phase, status, at, t0, detail);
        }

        // Cleanup: always once create was attempted.
        let failed = first_problem.is_some() || cancelled.is_some();
        if !create_attempted {
            records.push(self.skip(
                &id,
                started,
                Phase::Teardown,
                "not run: nothing was created",
            ));
            records.push(self.skip(
                &id,
                started,
                Phase::LeakCheck,
                "not run: nothing was created",
            ));
        } else if failed && self.options.keep_on_failure && cancelled.is_none() {
            let what = format!(
                "--keep-on-failure: {} was NOT torn down and is still costing money; delete it with `cloudtest sweep` or the cloud console",
                facts.deployment_id.as_deref().unwrap_or("the deployment")
            );
            tracing::warn!(lifecycle = %id, "{what}");
            self.emit(
                &id,
                started,
                RunEventKind::KeptResources { what: what.clone() },
            );
            records.push(self.skip(&id, started, Phase::Teardown, what));
            records.push(self.skip(
                &id,
                started,
                Phase::LeakCheck,
                "not run: teardown was skipped (--keep-on-failure)",
            ));
        } else {
            let cx = self.context(&id, Phase::Teardown, started);
            self.emit(
                &id,
                started,
                RunEventKind::PhaseStarted {
                    phase: Phase::Teardown,
                },
            );
            let t0 = Instant::now();
            let at = chrono::Utc::now();
            let (status, detail) = match self.drive(&cx, provider.teardown(&cx), false).await {
                Driven::Ok(t) => {
                    facts.teardown_complete = Some(true);
                    facts.deletion_ms = Some(t.deletion_ms);
                    let retry = if t.retries > 0 {
                        format!(
                            " after {} retr{}",
                            t.retries,
                            if t.retries == 1 { "y" } else { "ies" }
                        )
                    } else {
                        String::new()
                    };
                    (
                        PhaseStatus::Passed,
                        format!("deleted in {} ms{retry}", t.deletion_ms),
                    )
                }
                other => {
                    facts.teardown_complete = Some(false);
                    self.problem(Phase::Teardown, other, &mut first_problem, &mut cancelled)
                }
            };
            self.finish(
                &id,
                started,
                &mut records,
                Phase::Teardown,
                status,
                at,
                t0,
                detail,
            );

            let cx = self.context(&id, Phase::LeakCheck, started);
            self.emit(
                &id,
                started,
                RunEventKind::PhaseStarted {
                    phase: Phase::LeakCheck,
                },
            );
            let t0 = Instant::now();
            let at = chrono::Utc::now();
            let (status, detail) = match self.drive(&cx, provider.leak_check(&cx), false).await {
                Driven::Ok(l) => {
                    facts.resources_remaining = Some(l.remaining.len() as u32);
                    facts.leak_checked_types = l.checked.clone();
                    if l.remaining.is_empty() {
                        (
                            PhaseStatus::Passed,
                            format!(
                                "nothing tagged with this run remains (checked {})",
                                l.checked.join(", ")
                            ),
                        )
                    } else {
                        let ids: Vec<String> = l
                            .remaining
                            .iter()
                            .map(|r| format!("{} {}", r.kind, r.id))
                            .collect();
                        let msg = format!(
                            "{} resource(s) remain after teardown: {}",
                            ids.len(),
                            ids.join(", ")
                        );
                        facts.remaining_resources = l.remaining;
                        if first_problem.is_none() {
                            first_problem =
                                Some((Phase::LeakCheck, PhaseError::failed(msg.clone())));
                        }
                        (PhaseStatus::Failed, msg)
                    }
                }
                other => self.problem(Phase::LeakCheck, other, &mut first_problem, &mut cancelled),
            };
            self.finish(
                &id,
                started,
                &mut records,
                Phase::LeakCheck,
                status,
                at,
                t0,
                detail,
            );
        }

        let (status, reason) = match (&first_problem, cancelled) {
            (_, Some(sig)) => (
                RequirementStatus::Error,
                format!(
                    "cancelled by {}; {}",
                    sig.signal_name(),
                    if create_attempted {
                        "teardown ran"
                    } else {
                        "nothing was created"
                    }
                ),
            ),
            (Some((phase, e)), None) => (
                match e.kind {
                    PhaseErrorKind::Failed => RequirementStatus::Failed,
                    PhaseErrorKind::Error => RequirementStatus::Error,
                },
                format!("{phase}: {}", e.message),
            ),
            (None, None) => (RequirementStatus::Passed, String::new()),
        };
        RequirementResult {
            id: id.requirement,
            provider: id.requirement.provider().to_string(),
            region: id.region.clone(),
            status,
            reason,
            phases: records,
            facts,
            cost: Cost::default(),
        }
    }

    fn context(&self, id: &LifecycleId, phase: Phase, started: Instant) -> PhaseContext {
        PhaseContext::new(
            id.clone(),
            phase,
            self.options.deadlines.get(phase),
            started,
            self.events.clone(),
            self.probe.clone(),
        )
    }

    async fn drive<T>(
        &self,
        cx: &PhaseContext,
        fut: impl Future<Output = Result<T, PhaseError>>,
        cancellable: bool,
    ) -> Driven<T> {
        let guarded = AssertUnwindSafe(fut).catch_unwind();
        // Providers and probes stop at `cx.deadline()` with their own, better message ("last
        // seen HTTP 503"); the engine's hard stop comes a little later so it never wins that
        // race and only catches a phase that ignores its deadline.
        let limit = self.options.deadlines.get(cx.phase());
        let grace = (limit / 50).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let timed = tokio::time::timeout_at(cx.deadline() + grace, guarded);
        let outcome = if cancellable {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    return Driven::Cancelled(self.shutdown.reason().unwrap_or(CancelReason::Terminate));
                }
                r = timed => r,
            }
        } else {
            timed.await
        };
        match outcome {
            Err(_elapsed) => Driven::TimedOut(self.options.deadlines.get(cx.phase())),
            Ok(Err(payload)) => Driven::Panicked(panic_message(payload.as_ref())),
            Ok(Ok(Ok(v))) => Driven::Ok(v),
            Ok(Ok(Err(e))) => Driven::Err(e),
        }
    }

    /// Turns a bad ending into the phase's record, remembering the run's first problem.
    fn problem<T>(
        &self,
        phase: Phase,
        driven: Driven<T>,
        first: &mut Option<(Phase, PhaseError)>,
        cancelled: &mut Option<CancelReason>,
    ) -> (PhaseStatus, String) {
        let err = match driven {
            Driven::Ok(_) => return (PhaseStatus::Passed, String::new()),
            Driven::Err(e) => e,
            Driven::TimedOut(limit) => PhaseError::failed(format!(
                "{phase} did not finish within {} (limit from {}); raise it there if the cloud is slow",
                humantime::format_duration(limit),
                self.options.deadlines.origin(phase)
            )),
            Driven::Panicked(msg) => PhaseError::error(format!("provider panicked during {phase}: {msg}")),
            Driven::Cancelled(reason) => {
                *cancelled = Some(reason);
                PhaseError::error(format!("cancelled by {} during {phase}", reason.signal_name()))
            }
        };
        let detail = err.message.clone();
        if first.is_none() && cancelled.is_none() {
            *first = Some((phase, err));
        }
        (PhaseStatus::Failed, detail)
    }

    fn skip(
        &self,
        id: &LifecycleId,
        started: Instant,
        phase: Phase,
        detail: impl Into<String>,
    ) -> PhaseRecord {
        let record = PhaseRecord::skipped(phase, detail);
        self.emit(
            id,
            started,
            RunEventKind::PhaseFinished {
                record: record.clone(),
            },
        );
        record
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        id: &LifecycleId,
        started: Instant,
        records: &mut Vec<PhaseRecord>,
        phase: Phase,
        status: PhaseStatus,
        at: chrono::DateTime<chrono::Utc>,
        t0: Instant,
        detail: String,
    ) {
        let record = PhaseRecord {
            name: phase,
            status,
            started_at: Some(at),
            duration_ms: t0.elapsed().as_millis() as u64,
            detail,
        };
        self.emit(
            id,
            started,
            RunEventKind::PhaseFinished {
                record: record.clone(),
            },
        );
        records.push(record);
    }

    fn emit(&self, id: &LifecycleId, started: Instant, kind: RunEventKind) {
        self.events.event(&RunEvent {
            at: chrono::Utc::now(),
            elapsed: started.elapsed(),
            lifecycle: id.clone(),
            kind,
        });
    }
}

/// Health/enrollment without a deployment cannot happen (wait_ready passed); recorded as a
/// tool error rather than a panic if it ever does.
fn unreachable_phase(first: &mut Option<(Phase, PhaseError)>, phase: Phase) {
    if first.is_none() {
        *first = Some((
            phase,
            PhaseError::error("internal: no deployment facts after wait_ready"),
        ));
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests;
