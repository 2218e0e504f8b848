//! Runs one lifecycle: the six phases in order, each under its deadline, with teardown and
//! the leak check guaranteed once `create` was attempted. The runner calls the probe itself
//! for health and enrollment; the provider's two hooks (`verify_server` before the probes,
//! `collect_evidence` before teardown of a failure) run under their own short deadlines.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cancel::{CancelReason, Shutdown};
use crate::config::{Hook, PhaseDeadlines};
use crate::events::{EventSink, RunEvent, RunEventKind};
use crate::facts::{
    DeploymentFacts, EnrollmentFacts, EvidenceItem, HealthFacts, KeptDeployment, LeakFacts,
    RequirementFacts, TeardownFacts,
};
use crate::phase::{Phase, PhaseRecord, PhaseStatus};
use crate::probe::ServerProbe;
use crate::provider::{PhaseContext, PhaseError, PhaseErrorKind, Provider};
use crate::requirement::{LifecycleId, RequirementStatus};
use crate::results::{Cost, RequirementResult};

#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    pub deadlines: PhaseDeadlines,
    /// Skip teardown after a failure (the user asked); said loudly.
    pub keep_on_failure: bool,
}

/// Runs lifecycles. Shared by every (requirement, region) of a run; a clone shares its sink,
/// probe and shutdown.
#[derive(Clone)]
pub struct LifecycleRunner {
    options: LifecycleOptions,
    events: Arc<dyn EventSink>,
    probe: Arc<dyn ServerProbe>,
    shutdown: Shutdown,
}

/// What is being driven under a deadline: a phase, or a provider hook inside one.
#[derive(Debug, Clone, Copy)]
enum Step {
    Phase(Phase),
    Hook(Phase, Hook),
}

impl Step {
    fn phase(self) -> Phase {
        match self {
            Step::Phase(p) | Step::Hook(p, _) => p,
        }
    }
}

/// How driving one step ended.
enum Driven<T> {
    Ok(T),
    Err(PhaseError),
    TimedOut,
    Panicked(String),
    Cancelled(CancelReason),
}

/// One lifecycle's state between steps.
struct Lifecycle {
    id: LifecycleId,
    started: Instant,
    records: Vec<PhaseRecord>,
    facts: RequirementFacts,
    first_problem: Option<(Phase, PhaseError)>,
    cancelled: Option<CancelReason>,
    create_attempted: bool,
    /// The run id the provider tagged its resources with (from create).
    run_id: Option<String>,
    deployment: Option<DeploymentFacts>,
}

impl Lifecycle {
    fn new(id: LifecycleId) -> Self {
        Self {
            id,
            started: Instant::now(),
            records: Vec::new(),
            facts: RequirementFacts::default(),
            first_problem: None,
            cancelled: None,
            create_attempted: false,
            run_id: None,
            deployment: None,
        }
    }

    fn failed(&self) -> bool {
        self.first_problem.is_some() || self.cancelled.is_some()
    }

    /// Remembers the run's first problem; a cancellation is not one (it has its own reason).
    fn note_problem(&mut self, phase: Phase, err: &PhaseError) {
        if self.first_problem.is_none() && self.cancelled.is_none() {
            self.first_problem = Some((phase, err.clone()));
        }
    }

    fn into_result(self) -> RequirementResult {
        let (status, reason) = match (&self.first_problem, self.cancelled) {
            (_, Some(sig)) => (
                RequirementStatus::Error,
                format!(
                    "cancelled by {}; {}",
                    sig.signal_name(),
                    if self.create_attempted {
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
            id: self.id.requirement,
            provider: self.id.requirement.provider().to_string(),
            region: self.id.region.clone(),
            status,
            reason,
            phases: self.records,
            facts: self.facts,
            cost: Cost::default(),
        }
    }
}

/// How a phase ended, for its record.
type Outcome = (PhaseStatus, String);

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
        // Each lifecycle is its own task, so a large run's request building, response
        // parsing and TLS use every worker thread instead of taking turns on one. Permits
        // are taken here, in input order, so `--max-parallel` starts lifecycles in the order
        // given, however the tasks are scheduled.
        let mut tasks = Vec::with_capacity(providers.len());
        for mut provider in providers {
            let id = provider.lifecycle();
            let permit = tokio::select! {
                biased;
                p = permits.clone().acquire_owned() => p.ok(),
                _ = self.shutdown.cancelled() => None,
            };
            let task = permit.map(|permit| {
                let runner = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    runner.run(provider.as_mut()).await
                })
            });
            tasks.push((id, task));
        }
        let mut results = Vec::with_capacity(tasks.len());
        for (id, task) in tasks {
            let Some(task) = task else {
                results.push(self.not_started(id));
                continue;
            };
            results.push(match task.await {
                Ok(result) => result,
                // `run` catches a phase's panic itself; this is a panic outside every phase.
                Err(e) => RequirementResult::not_run(
                    id.requirement,
                    id.region,
                    RequirementStatus::Error,
                    format!("the lifecycle's task ended abnormally: {e}"),
                ),
            });
        }
        results
    }

    /// The result of a lifecycle a shutdown stopped before it started.
    fn not_started(&self, id: LifecycleId) -> RequirementResult {
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

    /// Runs one lifecycle to the end and returns its result.
    pub async fn run(&self, provider: &mut dyn Provider) -> RequirementResult {
        let mut lc = Lifecycle::new(provider.lifecycle());
        for phase in [
            Phase::Create,
            Phase::WaitReady,
            Phase::Health,
            Phase::Enrollment,
        ] {
            if let Some(reason) = lc.cancelled.or(self.shutdown.reason()) {
                lc.cancelled = Some(reason);
                self.skip(
                    &mut lc,
                    phase,
                    format!("not run: cancelled by {}", reason.signal_name()),
                );
            } else if let Some((failed, _)) = &lc.first_problem {
                let detail = format!("not run: {failed} did not pass");
                self.skip(&mut lc, phase, detail);
            } else {
                self.phase_step(&mut lc, provider, phase).await;
            }
        }

        if !lc.create_attempted {
            for phase in [Phase::Teardown, Phase::LeakCheck] {
                self.skip(&mut lc, phase, "not run: nothing was created");
            }
            return lc.into_result();
        }
        // Evidence first: teardown destroys it. Not after a signal: the user wants out.
        if let (Some((failed, _)), None) = (&lc.first_problem, lc.cancelled) {
            let failed = *failed;
            self.collect_evidence(&mut lc, provider, failed).await;
        }
        if lc.failed() && self.options.keep_on_failure && lc.cancelled.is_none() {
            self.keep(&mut lc);
        } else {
            self.phase_step(&mut lc, provider, Phase::Teardown).await;
            self.phase_step(&mut lc, provider, Phase::LeakCheck).await;
        }
        lc.into_result()
    }

    /// Runs one phase under its deadline and records how it ended.
    async fn phase_step(&self, lc: &mut Lifecycle, provider: &mut dyn Provider, phase: Phase) {
        self.emit(&lc.id, lc.started, RunEventKind::PhaseStarted { phase });
        let t0 = Instant::now();
        let at = chrono::Utc::now();
        let (status, detail) = match phase {
            Phase::Create => self.create(lc, provider).await,
            Phase::WaitReady => self.wait_ready(lc, provider).await,
            Phase::Health => self.health(lc, provider).await,
            Phase::Enrollment => self.enrollment(lc, provider).await,
            Phase::Teardown => self.teardown(lc, provider).await,
            Phase::LeakCheck => self.leak_check(lc, provider).await,
        };
        let record = PhaseRecord {
            name: phase,
            status,
            started_at: Some(at),
            duration_ms: t0.elapsed().as_millis() as u64,
            detail,
        };
        self.emit(
            &lc.id,
            lc.started,
            RunEventKind::PhaseFinished {
                record: record.clone(),
            },
        );
        lc.records.push(record);
    }

    async fn create(&self, lc: &mut Lifecycle, provider: &mut dyn Provider) -> Outcome {
        lc.create_attempted = true;
        let cx = self.context(lc, Phase::Create);
        match self
            .drive(&cx, Step::Phase(Phase::Create), provider.create(&cx), true)
            .await
        {
            Driven::Ok(c) => {
                lc.facts.deployment_id = Some(c.deployment_id.clone());
                lc.run_id = Some(c.run_id.clone());
                (PhaseStatus::Passed, format!("created {}", c.deployment_id))
            }
            other => self.problem(lc, Step::Phase(Phase::Create), other),
        }
    }

    async fn wait_ready(&self, lc: &mut Lifecycle, provider: &mut dyn Provider) -> Outcome {
        let cx = self.context(lc, Phase::WaitReady);
        let step = Step::Phase(Phase::WaitReady);
        match self.drive(&cx, step, provider.wait_ready(&cx), true).await {
            Driven::Ok(d) => {
                let f = &mut lc.facts;
                f.velociraptor_version = Some(d.velociraptor_version.clone());
                f.server_address = Some(d.server_address.clone());
                f.frontend_port = Some(d.frontend_port);
                f.gui_port = Some(d.gui_port);
                f.ca_fingerprint = Some(d.ca_fingerprint.clone());
                f.expected_clients = Some(d.expected_clients);
                f.resources_created = Some(d.resources.len() as u32);
                f.resources = d.resources.clone();
                let detail = format!(
                    "ready: Velociraptor {} at {} ({} resources)",
                    d.velociraptor_version,
                    d.server_address,
                    d.resources.len()
                );
                lc.deployment = Some(d);
                (PhaseStatus::Passed, detail)
            }
            other => self.problem(lc, step, other),
        }
    }

    /// The provider vouches for the server through the cloud, then the probe checks it.
    async fn health(&self, lc: &mut Lifecycle, provider: &mut dyn Provider) -> Outcome {
        let Some(d) = lc.deployment.clone() else {
            return no_deployment(lc, Phase::Health);
        };
        let hook = Step::Hook(Phase::Health, Hook::VerifyServer);
        let cx = self.hook_context(lc, Phase::Health, Hook::VerifyServer);
        match self
            .drive(&cx, hook, provider.verify_server(&cx, &d), true)
            .await
        {
            Driven::Ok(identity) => lc.facts.server_identity = identity,
            other => return self.problem(lc, hook, other),
        }
        let step = Step::Phase(Phase::Health);
        let cx = self.context(lc, Phase::Health);
        match self
            .drive(&cx, step, self.probe.health(&cx, &d), true)
            .await
        {
            Driven::Ok(h) => {
                let detail = health_detail(&h);
                lc.facts.time_to_healthy_ms = Some(h.time_to_healthy_ms);
                lc.facts.tls = Some(h.tls);
                lc.facts.gui_auth = Some(h.gui_auth);
                (PhaseStatus::Passed, detail)
            }
            other => self.problem(lc, step, other),
        }
    }

    /// The probe waits for the clients while the provider watches for one whose boot
    /// failed; whichever answers first decides.
    async fn enrollment(&self, lc: &mut Lifecycle, provider: &mut dyn Provider) -> Outcome {
        let Some(d) = lc.deployment.clone() else {
            return no_deployment(lc, Phase::Enrollment);
        };
        let step = Step::Phase(Phase::Enrollment);
        let cx = self.context(lc, Phase::Enrollment);
        let enrolled = async {
            tokio::select! {
                r = self.probe.enrollment(&cx, &d) => r,
                reason = provider.watch_clients(&cx, &d) => Err(reason),
            }
        };
        match self.drive(&cx, step, enrolled, true).await {
            Driven::Ok(e) => {
                let detail = enrollment_detail(&e);
                let mut versions: Vec<String> =
                    e.clients.iter().map(|c| c.agent_version.clone()).collect();
                versions.sort();
                versions.dedup();
                lc.facts.time_to_enroll_ms = Some(e.time_to_enroll_ms);
                lc.facts.enrolled_clients = Some(e.clients.len() as u32);
                lc.facts.agent_versions = versions;
                lc.facts.clients = e.clients;
                (PhaseStatus::Passed, detail)
            }
            other => self.problem(lc, step, other),
        }
    }

    /// Gathers what explains the failure before teardown destroys it. Bounded by its own
    /// deadline; whatever happens, teardown follows.
    async fn collect_evidence(
        &self,
        lc: &mut Lifecycle,
        provider: &mut dyn Provider,
        failed: Phase,
    ) {
        let cx = self.hook_context(lc, Phase::Teardown, Hook::Evidence);
        let step = Step::Hook(Phase::Teardown, Hook::Evidence);
        let collected = async { Ok(provider.collect_evidence(&cx, failed).await) };
        let mut items = match self.drive(&cx, step, collected, true).await {
            Driven::Ok(items) => items,
            Driven::Err(e) => vec![incomplete(e.message)],
            Driven::TimedOut => vec![incomplete(self.timeout_message(step))],
            Driven::Panicked(msg) => vec![incomplete(format!("provider panicked: {msg}"))],
            Driven::Cancelled(reason) => {
                lc.cancelled = Some(reason);
                vec![incomplete(format!("cancelled by {}", reason.signal_name()))]
            }
        };
        items.retain(|i| !i.name.is_empty());
        if !items.is_empty() {
            cx.progress(format!(
                "collected {} piece(s) of failure evidence before teardown",
                items.len()
            ));
        }
        lc.facts.evidence = items;
    }

    /// `--keep-on-failure` after a failure: teardown and leak check are skipped, loudly.
    fn keep(&self, lc: &mut Lifecycle) {
        let deployment = lc
            .facts
            .deployment_id
            .as_deref()
            .unwrap_or("the deployment");
        // The daily sweep leaves kept resources alone until they expire; name the command
        // that removes them sooner.
        // A per-region lifecycle is tagged `<run id>-<region>`; sweep takes the run's id.
        let run_id = lc
            .run_id
            .as_deref()
            .map(|id| id.strip_suffix(&format!("-{}", lc.id.region)).unwrap_or(id));
        let remove_with = run_id.map(|run_id| {
            format!(
                "cloudtest sweep --provider {} --run-id {run_id} --include-kept",
                lc.id.requirement.provider()
            )
        });
        let kept = KeptDeployment {
            deployment: deployment.to_string(),
            remove_with,
        };
        let what = kept.notice();
        lc.facts.kept = Some(kept);
        tracing::warn!(lifecycle = %lc.id, "{what}");
        self.emit(
            &lc.id,
            lc.started,
            RunEventKind::KeptResources { what: what.clone() },
        );
        self.skip(lc, Phase::Teardown, what);
        self.skip(
            lc,
            Phase::LeakCheck,
            "not run: teardown was skipped (--keep-on-failure)",
        );
    }

    async fn teardown(&self, lc: &mut Lifecycle, provider: &mut dyn Provider) -> Outcome {
        let step = Step::Phase(Phase::Teardown);
        let cx = self.context(lc, Phase::Teardown);
        match self.drive(&cx, step, provider.teardown(&cx), false).await {
            Driven::Ok(t) => {
                lc.facts.teardown_complete = Some(true);
                lc.facts.deletion_ms = Some(t.deletion_ms);
                (PhaseStatus::Passed, teardown_detail(&t))
            }
            other => {
                lc.facts.teardown_complete = Some(false);
                self.problem(lc, step, other)
            }
        }
    }

    async fn leak_check(&self, lc: &mut Lifecycle, provider: &mut dyn Provider) -> Outcome {
        let step = Step::Phase(Phase::LeakCheck);
        let cx = self.context(lc, Phase::LeakCheck);
        match self.drive(&cx, step, provider.leak_check(&cx), false).await {
            Driven::Ok(l) => {
                lc.facts.resources_remaining = Some(l.remaining.len() as u32);
                lc.facts.leak_checked_types = l.checked.clone();
                leak_outcome(lc, l)
            }
            other => self.problem(lc, step, other),
        }
    }

    fn context(&self, lc: &Lifecycle, phase: Phase) -> PhaseContext {
        let budget = self.options.deadlines.get(phase);
        PhaseContext::new(
            lc.id.clone(),
            phase,
            budget,
            lc.started,
            self.events.clone(),
        )
    }

    fn hook_context(&self, lc: &Lifecycle, phase: Phase, hook: Hook) -> PhaseContext {
        let budget = self.options.deadlines.hook(hook);
        PhaseContext::new(
            lc.id.clone(),
            phase,
            budget,
            lc.started,
            self.events.clone(),
        )
    }

    fn limit(&self, step: Step) -> (Duration, &str) {
        let d = &self.options.deadlines;
        match step {
            Step::Phase(p) => (d.get(p), d.origin(p)),
            Step::Hook(_, h) => (d.hook(h), d.hook_origin(h)),
        }
    }

    async fn drive<T>(
        &self,
        cx: &PhaseContext,
        step: Step,
        fut: impl Future<Output = Result<T, PhaseError>>,
        cancellable: bool,
    ) -> Driven<T> {
        let guarded = AssertUnwindSafe(fut).catch_unwind();
        // Providers and probes stop at `cx.deadline()` with their own, better message ("last
        // seen HTTP 503"); the engine's hard stop comes a little later so it never wins that
        // race and only catches a step that ignores its deadline.
        let (limit, _) = self.limit(step);
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
            Err(_elapsed) => Driven::TimedOut,
            Ok(Err(payload)) => Driven::Panicked(panic_message(payload.as_ref())),
            Ok(Ok(Ok(v))) => Driven::Ok(v),
            Ok(Ok(Err(e))) => Driven::Err(e),
        }
    }

    fn timeout_message(&self, step: Step) -> String {
        let (limit, origin) = self.limit(step);
        let what = match step {
            Step::Phase(p) => p.to_string(),
            Step::Hook(_, h) => h.to_string(),
        };
        format!(
            "{what} did not finish within {} (limit from {origin}); raise it there if the cloud is slow",
            humantime::format_duration(limit)
        )
    }

    /// Turns a bad ending into the phase's record, remembering the run's first problem.
    fn problem<T>(&self, lc: &mut Lifecycle, step: Step, driven: Driven<T>) -> Outcome {
        let phase = step.phase();
        let err = match driven {
            Driven::Ok(_) => return (PhaseStatus::Passed, String::new()),
            Driven::Err(e) => e,
            Driven::TimedOut => PhaseError::failed(self.timeout_message(step)),
            Driven::Panicked(msg) => {
                PhaseError::error(format!("provider panicked during {phase}: {msg}"))
            }
            Driven::Cancelled(reason) => {
                lc.cancelled = Some(reason);
                PhaseError::error(format!(
                    "cancelled by {} during {phase}",
                    reason.signal_name()
                ))
            }
        };
        lc.note_problem(phase, &err);
        (PhaseStatus::Failed, err.message)
    }

    fn skip(&self, lc: &mut Lifecycle, phase: Phase, detail: impl Into<String>) {
        let record = PhaseRecord::skipped(phase, detail);
        self.emit(
            &lc.id,
            lc.started,
            RunEventKind::PhaseFinished {
                record: record.clone(),
            },
        );
        lc.records.push(record);
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

fn health_detail(h: &HealthFacts) -> String {
    format!(
        "healthy after {} ms; GUI answered {} without and {} with credentials; TLS {}",
        h.time_to_healthy_ms, h.gui_unauthenticated_status, h.gui_authenticated_status, h.tls
    )
}

fn enrollment_detail(e: &EnrollmentFacts) -> String {
    let names: Vec<String> = e
        .clients
        .iter()
        .map(|c| format!("{} ({})", c.client_id, c.hostname))
        .collect();
    format!(
        "{} of {} expected clients enrolled after {} ms: {}",
        names.len(),
        e.expected_clients,
        e.time_to_enroll_ms,
        names.join(", ")
    )
}

fn teardown_detail(t: &TeardownFacts) -> String {
    let retry = match t.retries {
        0 => String::new(),
        1 => " after 1 retry".to_string(),
        n => format!(" after {n} retries"),
    };
    format!("deleted in {} ms{retry}", t.deletion_ms)
}

fn leak_outcome(lc: &mut Lifecycle, l: LeakFacts) -> Outcome {
    if l.remaining.is_empty() {
        return (
            PhaseStatus::Passed,
            format!(
                "nothing tagged with this run remains (checked {})",
                l.checked.join(", ")
            ),
        );
    }
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
    lc.facts.remaining_resources = l.remaining;
    lc.note_problem(Phase::LeakCheck, &PhaseError::failed(msg.clone()));
    (PhaseStatus::Failed, msg)
}

/// An evidence item saying why collection stopped short.
fn incomplete(why: String) -> EvidenceItem {
    EvidenceItem {
        name: "evidence-incomplete.txt".into(),
        text: format!("evidence collection stopped early: {why}\n"),
    }
}

/// Health/enrollment without a deployment cannot happen (wait_ready passed); recorded as a
/// tool error rather than a panic if it ever does.
fn no_deployment(lc: &mut Lifecycle, phase: Phase) -> Outcome {
    let err = PhaseError::error("internal: no deployment facts after wait_ready");
    lc.note_problem(phase, &err);
    (PhaseStatus::Failed, err.message)
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
