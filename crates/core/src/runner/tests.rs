//! The engine's guarantees, proven with a scripted test-only provider.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::events::NullSink;
use crate::facts::{
    CreateFacts, EnrolledClient, EnrollmentFacts, EvidenceItem, HealthFacts, LeakFacts,
    ResourceKind, ResourceRef, ServerIdentity, TeardownFacts,
};
use crate::outputs::OutputContext;
use crate::requirement::RequirementId;
use crate::secret::Secret;

/// What the scripted provider does in one phase.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Act {
    Pass,
    Fail,
    Hang,
    Panic,
}

/// What each phase does and which were called, shared by the provider and the probe.
#[derive(Clone)]
struct Script {
    acts: [Act; 6],
    calls: Arc<Mutex<Vec<Phase>>>,
}

impl Script {
    async fn act(&self, phase: Phase) -> Result<(), PhaseError> {
        self.calls.lock().expect("lock").push(phase);
        scripted(self.acts[phase as usize], phase.as_str()).await
    }
}

async fn scripted(act: Act, what: &str) -> Result<(), PhaseError> {
    match act {
        Act::Pass => Ok(()),
        Act::Fail => Err(PhaseError::failed(format!("{what} broke"))),
        Act::Hang => {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            Ok(())
        }
        Act::Panic => panic!("scripted panic in {what}"),
    }
}

struct Scripted {
    script: Script,
    leak: bool,
    /// What `verify_server` and `collect_evidence` do; `None` keeps the trait's defaults.
    verify: Option<Act>,
    evidence: Option<Act>,
    /// `watch_clients` reports a client whose boot failed after this long; `None` keeps
    /// the trait's default (never).
    client_boot_fails_after: Option<Duration>,
    hooks_called: Arc<Mutex<Vec<&'static str>>>,
}

impl Scripted {
    fn new(calls: Arc<Mutex<Vec<Phase>>>) -> Self {
        Self {
            script: Script {
                acts: [Act::Pass; 6],
                calls,
            },
            leak: false,
            verify: None,
            evidence: None,
            client_boot_fails_after: None,
            hooks_called: Arc::new(Mutex::new(vec![])),
        }
    }

    fn with(mut self, phase: Phase, act: Act) -> Self {
        self.script.acts[phase as usize] = act;
        self
    }

    async fn act(&self, phase: Phase) -> Result<(), PhaseError> {
        self.script.act(phase).await
    }

    fn probe(&self) -> Arc<dyn ServerProbe> {
        Arc::new(ScriptedProbe(self.script.clone()))
    }
}

fn deployment() -> DeploymentFacts {
    let mut outputs = std::collections::BTreeMap::new();
    outputs.insert("ServerAddress".into(), "127.0.0.1".into());
    outputs.insert("FrontendUrl".into(), "https://127.0.0.1:8000/".into());
    outputs.insert("GuiUrl".into(), "https://127.0.0.1:8889/".into());
    outputs.insert(
        "CaCertificate".into(),
        "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----".into(),
    );
    outputs.insert("ExpectedClients".into(), "1".into());
    outputs.insert("VelociraptorVersion".into(), "0.77.2".into());
    crate::outputs::parse_outputs(
        &outputs,
        OutputContext {
            admin_user: "admin".into(),
            admin_password: Secret::new("pw"),
            resources: vec![ResourceRef {
                kind: ResourceKind::Instance,
                cloud_type: "AWS::EC2::Instance".into(),
                id: "i-1".into(),
                sku: Some("t3.medium".into()),
                spot: false,
            }],
        },
    )
    .expect("outputs")
}

#[async_trait]
impl Provider for Scripted {
    fn lifecycle(&self) -> LifecycleId {
        LifecycleId::new(RequirementId::Cloud01, "us-east-1")
    }
    async fn create(&mut self, _cx: &PhaseContext) -> Result<CreateFacts, PhaseError> {
        self.act(Phase::Create).await?;
        Ok(CreateFacts {
            deployment_id: "stack-1".into(),
            run_id: "r1".into(),
        })
    }
    async fn wait_ready(&mut self, _cx: &PhaseContext) -> Result<DeploymentFacts, PhaseError> {
        self.act(Phase::WaitReady).await?;
        Ok(deployment())
    }
    async fn verify_server(
        &mut self,
        _cx: &PhaseContext,
        _d: &DeploymentFacts,
    ) -> Result<Option<ServerIdentity>, PhaseError> {
        let Some(act) = self.verify else {
            return Ok(None);
        };
        self.hooks_called
            .lock()
            .expect("lock")
            .push("verify_server");
        scripted(act, "verify_server").await?;
        Ok(Some(ServerIdentity::Verified("console matches".into())))
    }
    async fn watch_clients(&mut self, _cx: &PhaseContext, _d: &DeploymentFacts) -> PhaseError {
        let Some(after) = self.client_boot_fails_after else {
            return std::future::pending().await;
        };
        tokio::time::sleep(after).await;
        PhaseError::failed("client instance i-2: cloudtest-boot-failed: checksum mismatch")
    }
    async fn collect_evidence(&mut self, _cx: &PhaseContext, failed: Phase) -> Vec<EvidenceItem> {
        let Some(act) = self.evidence else {
            return Vec::new();
        };
        self.hooks_called
            .lock()
            .expect("lock")
            .push("collect_evidence");
        match scripted(act, "collect_evidence").await {
            Ok(()) => vec![EvidenceItem {
                name: "console.txt".into(),
                text: format!("boot log after {failed} failed"),
            }],
            Err(e) => vec![EvidenceItem {
                name: "console.txt".into(),
                text: e.message,
            }],
        }
    }
    async fn teardown(&mut self, _cx: &PhaseContext) -> Result<TeardownFacts, PhaseError> {
        self.act(Phase::Teardown).await?;
        Ok(TeardownFacts {
            deletion_ms: 3,
            resources_deleted: vec![],
            retries: 0,
        })
    }
    async fn leak_check(&mut self, _cx: &PhaseContext) -> Result<LeakFacts, PhaseError> {
        self.act(Phase::LeakCheck).await?;
        let remaining = if self.leak {
            vec![ResourceRef {
                kind: ResourceKind::Volume,
                cloud_type: String::new(),
                id: "vol-9".into(),
                sku: None,
                spot: false,
            }]
        } else {
            vec![]
        };
        Ok(LeakFacts {
            remaining,
            checked: vec!["instances".into(), "volumes".into()],
        })
    }
}

/// The probe side of the script: health and enrollment are the runner's calls.
struct ScriptedProbe(Script);

#[async_trait]
impl ServerProbe for ScriptedProbe {
    async fn health(
        &self,
        _cx: &PhaseContext,
        _d: &DeploymentFacts,
    ) -> Result<HealthFacts, PhaseError> {
        self.0.act(Phase::Health).await?;
        Ok(HealthFacts {
            time_to_healthy_ms: 5,
            gui_unauthenticated_status: 401,
            gui_authenticated_status: 200,
            gui_auth: "basic".into(),
            tls: "pinned-self-signed-ca".into(),
            ca_fingerprint: "aa".into(),
        })
    }
    async fn enrollment(
        &self,
        _cx: &PhaseContext,
        _d: &DeploymentFacts,
    ) -> Result<EnrollmentFacts, PhaseError> {
        self.0.act(Phase::Enrollment).await?;
        Ok(EnrollmentFacts {
            time_to_enroll_ms: 7,
            expected_clients: 1,
            clients: vec![EnrolledClient {
                client_id: "C.0123456789abcdef".into(),
                hostname: "client-1".into(),
                agent_version: "0.77.2".into(),
                first_seen_at_us: 1,
                last_seen_at_us: 2,
            }],
        })
    }
}

fn runner(p: &Scripted, keep: bool, shutdown: Shutdown) -> LifecycleRunner {
    LifecycleRunner::new(
        LifecycleOptions {
            deadlines: PhaseDeadlines::live_defaults(),
            keep_on_failure: keep,
        },
        Arc::new(NullSink),
        p.probe(),
        shutdown,
    )
}

#[tokio::test(start_paused = true)]
async fn happy_path_passes_every_phase_and_fills_facts() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone());
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Passed, "{}", r.reason);
    assert!(r.phases.iter().all(|p| p.status == PhaseStatus::Passed));
    assert_eq!(r.phases.len(), 6);
    assert_eq!(r.facts.enrolled_clients, Some(1));
    assert_eq!(r.facts.resources_remaining, Some(0));
    assert_eq!(r.facts.velociraptor_version.as_deref(), Some("0.77.2"));
    assert_eq!(*calls.lock().expect("lock"), Phase::ALL.to_vec());
}

#[tokio::test(start_paused = true)]
async fn teardown_and_leak_check_run_after_each_failing_phase() {
    for failing in [
        Phase::Create,
        Phase::WaitReady,
        Phase::Health,
        Phase::Enrollment,
    ] {
        for act in [Act::Fail, Act::Hang, Act::Panic] {
            let calls = Arc::new(Mutex::new(vec![]));
            let mut p = Scripted::new(calls.clone()).with(failing, act);
            let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
            let seen = calls.lock().expect("lock").clone();
            assert!(
                seen.ends_with(&[Phase::Teardown, Phase::LeakCheck]),
                "{failing:?}/{act:?}: {seen:?}"
            );
            assert_ne!(r.status, RequirementStatus::Passed);
            assert!(
                r.reason.starts_with(failing.as_str()),
                "{failing:?}/{act:?}: {}",
                r.reason
            );
            let rec = r.phases.iter().find(|x| x.name == failing).expect("record");
            assert_eq!(rec.status, PhaseStatus::Failed);
            match act {
                Act::Hang => assert!(
                    rec.detail.contains("did not finish within"),
                    "{}",
                    rec.detail
                ),
                Act::Panic => {
                    assert!(rec.detail.contains("panicked"), "{}", rec.detail);
                    assert_eq!(r.status, RequirementStatus::Error);
                }
                _ => assert_eq!(r.status, RequirementStatus::Failed),
            }
            // Later phases are recorded as skipped, not silently dropped.
            assert_eq!(r.phases.len(), 6, "{failing:?}/{act:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_message_names_the_limit_and_where_it_came_from() {
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![]))).with(Phase::Health, Act::Hang);
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    let rec = r
        .phases
        .iter()
        .find(|x| x.name == Phase::Health)
        .expect("health");
    assert!(rec.detail.contains("2m"), "{}", rec.detail);
    assert!(rec.detail.contains("default"), "{}", rec.detail);
}

#[tokio::test(start_paused = true)]
async fn cancellation_mid_phase_still_tears_down() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::WaitReady, Act::Hang);
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.cancel(crate::cancel::CancelReason::Terminate);
    });
    let r = runner(&p, false, shutdown).run(&mut p).await;
    let seen = calls.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            Phase::Create,
            Phase::WaitReady,
            Phase::Teardown,
            Phase::LeakCheck
        ]
    );
    assert!(r.reason.contains("SIGTERM"), "{}", r.reason);
    let teardown = r
        .phases
        .iter()
        .find(|x| x.name == Phase::Teardown)
        .expect("teardown");
    assert_eq!(teardown.status, PhaseStatus::Passed);
}

#[tokio::test(start_paused = true)]
async fn cancelled_before_start_creates_nothing() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone());
    let shutdown = Shutdown::new();
    shutdown.cancel(crate::cancel::CancelReason::Interrupt);
    let r = runner(&p, false, shutdown).run(&mut p).await;
    assert!(calls.lock().expect("lock").is_empty());
    assert_eq!(r.status, RequirementStatus::Error);
}

#[tokio::test(start_paused = true)]
async fn keep_on_failure_skips_teardown_loudly_only_after_a_failure() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::Health, Act::Fail);
    let r = runner(&p, true, Shutdown::new()).run(&mut p).await;
    assert!(!calls.lock().expect("lock").contains(&Phase::Teardown));
    let teardown = r
        .phases
        .iter()
        .find(|x| x.name == Phase::Teardown)
        .expect("teardown");
    assert_eq!(teardown.status, PhaseStatus::Skipped);
    assert!(
        teardown.detail.contains("NOT torn down"),
        "{}",
        teardown.detail
    );
    // The scripted provider created `stack-1` tagged with run id `r1` on AWS.
    assert!(
        teardown.detail.contains("stack-1")
            && teardown
                .detail
                .contains("`cloudtest sweep --provider aws --run-id r1 --include-kept`"),
        "{}",
        teardown.detail
    );

    // On success, --keep-on-failure changes nothing.
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone());
    let r = runner(&p, true, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Passed);
    assert!(calls.lock().expect("lock").contains(&Phase::Teardown));
}

#[tokio::test(start_paused = true)]
async fn a_leak_fails_the_requirement_with_the_ids() {
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![])));
    p.leak = true;
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Failed);
    assert_eq!(r.resources_remaining(), 1);
    assert!(r.reason.contains("vol-9"), "{}", r.reason);
}

#[tokio::test(start_paused = true)]
async fn teardown_failure_fails_the_requirement_but_leak_check_still_runs() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::Teardown, Act::Fail);
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Failed);
    assert!(calls.lock().expect("lock").contains(&Phase::LeakCheck));
    assert_eq!(r.facts.teardown_complete, Some(false));
}

#[tokio::test(start_paused = true)]
async fn run_all_runs_lifecycles_independently_and_in_order() {
    let ok = Scripted::new(Arc::new(Mutex::new(vec![])));
    let bad = Scripted::new(Arc::new(Mutex::new(vec![]))).with(Phase::Create, Act::Panic);
    let results = runner(&ok, false, Shutdown::new())
        .run_all(vec![Box::new(bad), Box::new(ok)], 1)
        .await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].status, RequirementStatus::Error);
    assert_eq!(results[1].status, RequirementStatus::Passed);
}

#[tokio::test(start_paused = true)]
async fn verify_server_runs_before_the_probe_and_its_failure_fails_health() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone());
    p.verify = Some(Act::Fail);
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Failed);
    assert!(
        r.reason.starts_with("health: verify_server broke"),
        "{}",
        r.reason
    );
    // The probe never ran: calls holds only the provider's phases.
    let seen = calls.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            Phase::Create,
            Phase::WaitReady,
            Phase::Teardown,
            Phase::LeakCheck
        ]
    );
    assert_eq!(r.facts.server_identity, None);
}

#[tokio::test(start_paused = true)]
async fn verify_server_outcome_is_recorded_and_its_timeout_names_its_own_limit() {
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![])));
    p.verify = Some(Act::Pass);
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Passed, "{}", r.reason);
    assert_eq!(
        r.facts.server_identity,
        Some(ServerIdentity::Verified("console matches".into()))
    );

    let mut p = Scripted::new(Arc::new(Mutex::new(vec![])));
    p.verify = Some(Act::Hang);
    let started = Instant::now();
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    let health = r
        .phases
        .iter()
        .find(|x| x.name == Phase::Health)
        .expect("health");
    assert!(
        health
            .detail
            .starts_with("verify_server did not finish within 3m"),
        "{}",
        health.detail
    );
    // Its own 3-minute limit, not the hour-long sum of the others: the run ends soon after.
    assert!(
        started.elapsed() < Duration::from_secs(4 * 60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn evidence_is_collected_after_a_failure_and_before_teardown() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::Enrollment, Act::Fail);
    p.evidence = Some(Act::Pass);
    let hooks = p.hooks_called.clone();
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(*hooks.lock().expect("lock"), vec!["collect_evidence"]);
    assert_eq!(r.facts.evidence.len(), 1);
    assert_eq!(r.facts.evidence[0].text, "boot log after enrollment failed");
    assert!(calls
        .lock()
        .expect("lock")
        .ends_with(&[Phase::Teardown, Phase::LeakCheck]));
    // Never serialized: evidence goes to files, results.json only names the directory.
    let json = serde_json::to_string(&r).expect("json");
    assert!(!json.contains("boot log"), "{json}");

    // Nothing to explain after a pass.
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![])));
    p.evidence = Some(Act::Pass);
    let hooks = p.hooks_called.clone();
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert!(hooks.lock().expect("lock").is_empty());
    assert!(r.facts.evidence.is_empty());
}

#[tokio::test(start_paused = true)]
async fn evidence_that_hangs_or_panics_never_blocks_teardown() {
    for act in [Act::Hang, Act::Panic] {
        let calls = Arc::new(Mutex::new(vec![]));
        let mut p = Scripted::new(calls.clone()).with(Phase::WaitReady, Act::Fail);
        p.evidence = Some(act);
        let started = Instant::now();
        let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
        assert!(
            calls
                .lock()
                .expect("lock")
                .ends_with(&[Phase::Teardown, Phase::LeakCheck]),
            "{act:?}"
        );
        let teardown = r
            .phases
            .iter()
            .find(|x| x.name == Phase::Teardown)
            .expect("teardown");
        assert_eq!(teardown.status, PhaseStatus::Passed, "{act:?}");
        assert_eq!(r.facts.evidence.len(), 1, "{act:?}");
        assert_eq!(r.facts.evidence[0].name, "evidence-incomplete.txt");
        // The reason stays the failed phase, not the evidence's trouble.
        assert!(r.reason.starts_with("wait_ready"), "{act:?}: {}", r.reason);
        assert!(started.elapsed() < Duration::from_secs(3 * 60), "{act:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn keep_on_failure_still_collects_evidence() {
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![]))).with(Phase::Health, Act::Fail);
    p.evidence = Some(Act::Pass);
    let r = runner(&p, true, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.facts.evidence.len(), 1);
}

/// A client whose boot failed ends enrollment at once with the provider's reason, long
/// before the enrollment deadline the probe would have waited for; teardown still runs.
#[tokio::test(start_paused = true)]
async fn a_failed_client_boot_ends_enrollment_early_with_its_reason() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::Enrollment, Act::Hang);
    p.client_boot_fails_after = Some(Duration::from_secs(60));
    let started = tokio::time::Instant::now();
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    let enrollment = r
        .phases
        .iter()
        .find(|x| x.name == Phase::Enrollment)
        .expect("enrollment");
    assert_eq!(enrollment.status, PhaseStatus::Failed);
    assert!(
        enrollment
            .detail
            .contains("cloudtest-boot-failed: checksum mismatch"),
        "{}",
        enrollment.detail
    );
    // Failed after the watcher's minute, not at the 15-minute live enrollment deadline.
    assert!(
        started.elapsed() < PhaseDeadlines::live_defaults().get(Phase::Enrollment),
        "{:?}",
        started.elapsed()
    );
    assert!(calls.lock().expect("lock").contains(&Phase::Teardown));

    // Without a failed boot, the probe alone decides: a healthy run passes.
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![])));
    let r = runner(&p, false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Passed);
}

/// Lifecycles run as tasks on every worker thread, but `--max-parallel` still starts them in
/// the order given: with one at a time, each create begins after the previous lifecycle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_starts_lifecycles_in_input_order_whatever_the_scheduler_does() {
    let providers: Vec<Box<dyn Provider>> = (0..8)
        .map(|_| Box::new(Scripted::new(Arc::new(Mutex::new(vec![])))) as Box<dyn Provider>)
        .collect();
    let probe_source = Scripted::new(Arc::new(Mutex::new(vec![])));
    let results = runner(&probe_source, false, Shutdown::new())
        .run_all(providers, 1)
        .await;
    let starts: Vec<_> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, RequirementStatus::Passed, "{}", r.reason);
            r.phases[0].started_at
        })
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "creates began out of input order: {starts:?}"
    );
}
