//! The engine's guarantees, proven with a scripted test-only provider.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::events::NullSink;
use crate::facts::{
    CreateFacts, EnrolledClient, EnrollmentFacts, HealthFacts, LeakFacts, ResourceRef,
    TeardownFacts,
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

struct Scripted {
    acts: [Act; 6],
    calls: Arc<Mutex<Vec<Phase>>>,
    leak: bool,
}

impl Scripted {
    fn new(calls: Arc<Mutex<Vec<Phase>>>) -> Self {
        Self {
            acts: [Act::Pass; 6],
            calls,
            leak: false,
        }
    }

    fn with(mut self, phase: Phase, act: Act) -> Self {
        self.acts[phase as usize] = act;
        self
    }

    async fn act(&self, phase: Phase) -> Result<(), PhaseError> {
        self.calls.lock().expect("lock").push(phase);
        match self.acts[phase as usize] {
            Act::Pass => Ok(()),
            Act::Fail => Err(PhaseError::failed(format!("{phase} broke"))),
            Act::Hang => {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                Ok(())
            }
            Act::Panic => panic!("scripted panic in {phase}"),
        }
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
                kind: "instance".into(),
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
    async fn health(
        &mut self,
        _cx: &PhaseContext,
        _d: &DeploymentFacts,
    ) -> Result<HealthFacts, PhaseError> {
        self.act(Phase::Health).await?;
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
        &mut self,
        _cx: &PhaseContext,
        _d: &DeploymentFacts,
    ) -> Result<EnrollmentFacts, PhaseError> {
        self.act(Phase::Enrollment).await?;
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
                kind: "volume".into(),
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

/// Never called: the scripted provider overrides health and enrollment.
struct NoProbe;

#[async_trait]
impl ServerProbe for NoProbe {
    async fn health(
        &self,
        _: &PhaseContext,
        _: &DeploymentFacts,
    ) -> Result<HealthFacts, PhaseError> {
        Err(PhaseError::error("not used"))
    }
    async fn enrollment(
        &self,
        _: &PhaseContext,
        _: &DeploymentFacts,
    ) -> Result<EnrollmentFacts, PhaseError> {
        Err(PhaseError::error("not used"))
    }
}

fn runner(keep: bool, shutdown: Shutdown) -> LifecycleRunner {
    LifecycleRunner::new(
        LifecycleOptions {
            deadlines: PhaseDeadlines::live_defaults(),
            keep_on_failure: keep,
        },
        Arc::new(NullSink),
        Arc::new(NoProbe),
        shutdown,
    )
}

#[tokio::test(start_paused = true)]
async fn happy_path_passes_every_phase_and_fills_facts() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone());
    let r = runner(false, Shutdown::new()).run(&mut p).await;
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
            let r = runner(false, Shutdown::new()).run(&mut p).await;
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
    let r = runner(false, Shutdown::new()).run(&mut p).await;
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
    let r = runner(false, shutdown).run(&mut p).await;
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
    let r = runner(false, shutdown).run(&mut p).await;
    assert!(calls.lock().expect("lock").is_empty());
    assert_eq!(r.status, RequirementStatus::Error);
}

#[tokio::test(start_paused = true)]
async fn keep_on_failure_skips_teardown_loudly_only_after_a_failure() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::Health, Act::Fail);
    let r = runner(true, Shutdown::new()).run(&mut p).await;
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

    // On success, --keep-on-failure changes nothing.
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone());
    let r = runner(true, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Passed);
    assert!(calls.lock().expect("lock").contains(&Phase::Teardown));
}

#[tokio::test(start_paused = true)]
async fn a_leak_fails_the_requirement_with_the_ids() {
    let mut p = Scripted::new(Arc::new(Mutex::new(vec![])));
    p.leak = true;
    let r = runner(false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Failed);
    assert_eq!(r.resources_remaining(), 1);
    assert!(r.reason.contains("vol-9"), "{}", r.reason);
}

#[tokio::test(start_paused = true)]
async fn teardown_failure_fails_the_requirement_but_leak_check_still_runs() {
    let calls = Arc::new(Mutex::new(vec![]));
    let mut p = Scripted::new(calls.clone()).with(Phase::Teardown, Act::Fail);
    let r = runner(false, Shutdown::new()).run(&mut p).await;
    assert_eq!(r.status, RequirementStatus::Failed);
    assert!(calls.lock().expect("lock").contains(&Phase::LeakCheck));
    assert_eq!(r.facts.teardown_complete, Some(false));
}

#[tokio::test(start_paused = true)]
async fn run_all_runs_lifecycles_independently_and_in_order() {
    let ok = Scripted::new(Arc::new(Mutex::new(vec![])));
    let bad = Scripted::new(Arc::new(Mutex::new(vec![]))).with(Phase::Create, Act::Panic);
    let results = runner(false, Shutdown::new())
        .run_all(vec![Box::new(bad), Box::new(ok)], 1)
        .await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].status, RequirementStatus::Error);
    assert_eq!(results[1].status, RequirementStatus::Passed);
}

#[test]
fn deadlines_apply_file_then_env() {
    use crate::skip::MapEnvironment;
    let mut d = PhaseDeadlines::live_defaults();
    let cfg = crate::config::DeadlinesConfig {
        health: Some(Duration::from_secs(90)),
        ..Default::default()
    };
    d.apply(&cfg, "cloudtest.toml", &MapEnvironment::default())
        .expect("ok");
    assert_eq!(d.get(Phase::Health), Duration::from_secs(90));
    d.apply(
        &cfg,
        "cloudtest.toml",
        &MapEnvironment::default().with(HEALTH_TIMEOUT_ENV, "300"),
    )
    .expect("ok");
    assert_eq!(d.get(Phase::Health), Duration::from_secs(300));
    assert_eq!(d.origin(Phase::Health), HEALTH_TIMEOUT_ENV);
    for bad in ["-5", "abc", "0", "1.5"] {
        let err = d
            .apply(
                &cfg,
                "cloudtest.toml",
                &MapEnvironment::default().with(HEALTH_TIMEOUT_ENV, bad),
            )
            .unwrap_err();
        assert_eq!(err.origin, HEALTH_TIMEOUT_ENV, "{bad}");
    }
}
