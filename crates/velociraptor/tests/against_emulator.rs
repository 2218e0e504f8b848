//! The probes against the emulated Velociraptor server, over real pinned TLS. Poll intervals
//! and deadlines are injected (milliseconds), so nothing waits for real seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudtest_core::outputs::{der_fingerprint, first_pem_der, pem_fingerprint};
use cloudtest_core::{
    Backoff, DeploymentFacts, LifecycleId, NullSink, Phase, PhaseContext, PhaseError,
    PhaseErrorKind, RequirementId, Secret, ServerProbe,
};
use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::velociraptor::{
    ClientStyle, TimestampEncoding, VelociraptorEmulator, MISMATCHED_AGENT_VERSION,
    PINNED_SERVER_NAME,
};
use cloudtest_mock::{
    EmulatedServers, EmulatorContext, FaultPlan, FaultSpec, Scenario, ServerDeployment,
};
use cloudtest_velociraptor::{
    probe_existing, ExistingServer, ProbeDeadlines, ProbeSettings, VelociraptorProbe,
};
use tokio::time::Instant;

const USER: &str = "cloudtest-admin";
const PASSWORD: &str = "Xk7pQ2mZr9Lw4Tn8Vb3Hs6Jd";
const VERSION: &str = "0.77.2";
const PASS_BUDGET: Duration = Duration::from_secs(3);
const FAIL_BUDGET: Duration = Duration::from_millis(800);

fn settings() -> ProbeSettings {
    ProbeSettings {
        poll: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            factor: 2.0,
            jitter: 0.0,
        },
        request_timeout: Duration::from_millis(400),
        fresh_within: ProbeSettings::FRESH_WITHIN,
    }
}

struct Harness {
    vr: Arc<VelociraptorEmulator>,
    probe: Arc<VelociraptorProbe>,
}

async fn start(scenario: Scenario, faults: Vec<FaultSpec>) -> Arc<VelociraptorEmulator> {
    VelociraptorEmulator::start(EmulatorContext {
        scenario,
        latency: Duration::from_millis(30),
        faults: Arc::new(FaultPlan::new(faults, Duration::from_millis(1500))),
        servers: Arc::new(RecordingServers::default()),
    })
    .await
    .expect("emulator starts")
}

async fn deployed(scenario: Scenario, faults: Vec<FaultSpec>, clients: u32) -> Harness {
    let vr = start(scenario, faults).await;
    vr.deploy(ServerDeployment {
        deployment: "stack-1".into(),
        admin_user: USER.into(),
        admin_password: PASSWORD.into(),
        version: VERSION.into(),
        expected_clients: clients,
    });
    Harness {
        vr,
        probe: Arc::new(VelociraptorProbe::new(settings())),
    }
}

impl Harness {
    /// The facts `wait_ready` would parse from this deployment's outputs.
    fn facts(&self, expected_clients: u32) -> DeploymentFacts {
        let ca_pem = self.vr.ca_pem();
        DeploymentFacts {
            server_address: "127.0.0.1".into(),
            frontend_url: format!("https://127.0.0.1:{}/", self.vr.frontend_port()),
            gui_url: format!("https://127.0.0.1:{}", self.vr.gui_port()),
            frontend_port: self.vr.frontend_port(),
            gui_port: self.vr.gui_port(),
            ca_fingerprint: pem_fingerprint(&ca_pem).expect("fingerprint"),
            ca_pem,
            pinned_server_name: PINNED_SERVER_NAME.into(),
            expected_clients,
            velociraptor_version: VERSION.into(),
            admin_user: USER.into(),
            admin_password: Secret::new(PASSWORD),
            raw_outputs: BTreeMap::new(),
            resources: vec![],
        }
    }

    fn cx(&self, phase: Phase, budget: Duration) -> PhaseContext {
        PhaseContext::new(
            LifecycleId::new(RequirementId::Cloud01, "mock"),
            phase,
            budget,
            Instant::now(),
            Arc::new(NullSink),
        )
    }

    fn existing(&self) -> ExistingServer {
        let f = self.facts(1);
        ExistingServer {
            frontend_url: f.frontend_url,
            gui_url: f.gui_url,
            ca_pem: f.ca_pem,
            user: USER.into(),
            password: Secret::new(PASSWORD),
            expect_clients: 1,
            expect_version: Some(VERSION.into()),
            pinned_server_name: PINNED_SERVER_NAME.into(),
        }
    }

    /// Fingerprint of the server certificate, fetched from `/server.pem` over pinned TLS.
    async fn server_cert_fingerprint(&self) -> String {
        let ca = reqwest::Certificate::from_pem(self.vr.ca_pem().as_bytes()).expect("CA");
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve(PINNED_SERVER_NAME, SocketAddr::from(([127, 0, 0, 1], 0)))
            .no_proxy()
            .build()
            .expect("client");
        let pem = client
            .get(format!(
                "https://{PINNED_SERVER_NAME}:{}/server.pem",
                self.vr.frontend_port()
            ))
            .send()
            .await
            .expect("server.pem")
            .text()
            .await
            .expect("text");
        der_fingerprint(&first_pem_der(&pem).expect("PEM"))
    }
}

fn failed(result: Result<impl std::fmt::Debug, PhaseError>) -> String {
    match result {
        Err(e) => {
            assert_eq!(e.kind, PhaseErrorKind::Failed, "{e}");
            assert!(!e.message.contains(PASSWORD), "password leaked: {e}");
            e.message
        }
        Ok(v) => panic!("expected a failure, got {v:?}"),
    }
}

#[tokio::test]
async fn healthy_server_passes_health_and_enrollment() {
    let h = deployed(Scenario::Healthy, vec![], 2).await;
    let facts = h.facts(2);
    let health = h
        .probe
        .health(&h.cx(Phase::Health, PASS_BUDGET), &facts)
        .await
        .expect("healthy");
    assert_eq!(health.gui_unauthenticated_status, 401);
    assert_eq!(health.gui_authenticated_status, 200);
    assert_eq!(health.gui_auth, "basic");
    assert_eq!(health.tls, "pinned-self-signed-ca");
    assert_eq!(health.ca_fingerprint, facts.ca_fingerprint);
    assert!(health.time_to_healthy_ms < PASS_BUDGET.as_millis() as u64);

    let enrollment = h
        .probe
        .enrollment(&h.cx(Phase::Enrollment, PASS_BUDGET), &facts)
        .await
        .expect("enrolled");
    assert_eq!(enrollment.expected_clients, 2);
    assert_eq!(enrollment.clients.len(), 2);
    for c in &enrollment.clients {
        assert!(
            c.client_id.starts_with("C.") && c.client_id.len() == 18,
            "{c:?}"
        );
        assert!(c.hostname.starts_with("cloudtest-client-"), "{c:?}");
        assert_eq!(c.agent_version, VERSION);
        // The server sends seconds; results.json's field says microseconds, and is.
        assert!(c.first_seen_at_us > 1_600_000_000_000_000, "{c:?}");
        assert!(c.last_seen_at_us >= c.first_seen_at_us, "{c:?}");
    }
    h.vr.stop().await;
}

/// The probe's client must not follow redirects, so a GUI that answers 3xx is seen as one
/// (the health check's "auth not enforced" branch) rather than as wherever it leads.
#[tokio::test]
async fn the_probe_client_does_not_follow_redirects() {
    use cloudtest_velociraptor::tls::{EndpointSpec, PinnedEndpoint};
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    let ca = h.vr.ca_pem();
    let gui_url = format!("https://127.0.0.1:{}/", h.vr.gui_port());
    let endpoint = PinnedEndpoint::new(EndpointSpec {
        what: "GUI",
        url: &gui_url,
        connect_host: None,
        pinned_name: PINNED_SERVER_NAME,
        ca_pem: &ca,
        request_timeout: Duration::from_secs(2),
    })
    .await
    .expect("endpoint");
    // The GUI's catch-all answers 307 to /app/index.html, which would answer 401.
    let answer = match endpoint.send(endpoint.get("no-such-page")).await {
        Ok(r) => r,
        Err(_) => panic!("request failed"),
    };
    assert_eq!(answer.status().as_u16(), 307);
    assert_eq!(
        answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/app/index.html")
    );
    h.vr.stop().await;
}

#[tokio::test]
async fn healthz_503_until_the_deadline_names_the_last_status() {
    let h = deployed(Scenario::HealthTimeout, vec![], 1).await;
    let started = Instant::now();
    let m = failed(
        h.probe
            .health(&h.cx(Phase::Health, FAIL_BUDGET), &h.facts(1))
            .await,
    );
    assert!(
        m.contains("/healthz") && m.contains("did not answer 200"),
        "{m}"
    );
    assert!(m.contains("last seen HTTP 503"), "{m}");
    assert!(m.contains("CLOUDTEST_HEALTH_TIMEOUT"), "{m}");
    assert!(started.elapsed() < FAIL_BUDGET * 3, "stops at the deadline");
    h.vr.stop().await;
}

#[tokio::test]
async fn a_server_signed_by_another_ca_fails_with_both_fingerprints() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    let impostor_ca = start(Scenario::Healthy, vec![]).await;
    let mut facts = h.facts(1);
    facts.ca_pem = impostor_ca.ca_pem();
    facts.ca_fingerprint = pem_fingerprint(&facts.ca_pem).expect("fp");
    let started = Instant::now();
    let m = failed(
        h.probe
            .health(&h.cx(Phase::Health, PASS_BUDGET), &facts)
            .await,
    );
    assert!(
        m.contains(
            "the server presented a certificate not signed by the CA this deployment published"
        ),
        "{m}"
    );
    let presented = h.server_cert_fingerprint().await;
    assert!(m.contains(&format!("fingerprint {presented}")), "{m}");
    assert!(
        m.contains(&format!("issued by CA {}", facts.ca_fingerprint)),
        "{m}"
    );
    assert!(
        started.elapsed() < PASS_BUDGET,
        "a refused certificate is not retried"
    );
    h.vr.stop().await;
    impostor_ca.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_explained() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    let mut facts = h.facts(1);
    facts.pinned_server_name = "SomeOtherServer".into();
    let m = failed(
        h.probe
            .health(&h.cx(Phase::Health, PASS_BUDGET), &facts)
            .await,
    );
    assert!(
        m.contains("not issued for the pinned server name `SomeOtherServer`"),
        "{m}"
    );
    assert!(
        m.contains("VelociraptorServer"),
        "names what the certificate carries: {m}"
    );
    h.vr.stop().await;
}

#[tokio::test]
async fn a_wrong_password_fails_health() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    let mut facts = h.facts(1);
    facts.admin_password = Secret::new("not-the-password-at-all-1234");
    let m = failed(
        h.probe
            .health(&h.cx(Phase::Health, PASS_BUDGET), &facts)
            .await,
    );
    assert!(
        m.contains(&format!("refused user `{USER}` with HTTP 401")),
        "{m}"
    );
    assert!(!m.contains("not-the-password"), "{m}");
    h.vr.stop().await;
}

#[tokio::test]
async fn no_clients_fails_enrollment() {
    let h = deployed(Scenario::NoEnrollment, vec![], 1).await;
    let m = failed(
        h.probe
            .enrollment(&h.cx(Phase::Enrollment, FAIL_BUDGET), &h.facts(1))
            .await,
    );
    assert!(m.contains("1 client(s) expected"), "{m}");
    assert!(m.contains("no clients listed"), "{m}");
    h.vr.stop().await;
}

#[tokio::test]
async fn stale_clients_do_not_count() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    h.vr.set_client_style(ClientStyle {
        stale_by: Duration::from_secs(3600),
        ..ClientStyle::default()
    });
    let m = failed(
        h.probe
            .enrollment(&h.cx(Phase::Enrollment, FAIL_BUDGET), &h.facts(1))
            .await,
    );
    assert!(m.contains("0 checked in within the last 600.0s"), "{m}");
    assert!(m.contains("newest check-in 3600"), "{m}");
    h.vr.stop().await;
}

#[tokio::test]
async fn uninterrogated_clients_do_not_count() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    h.vr.set_client_style(ClientStyle {
        uninterrogated: true,
        ..ClientStyle::default()
    });
    let m = failed(
        h.probe
            .enrollment(&h.cx(Phase::Enrollment, FAIL_BUDGET), &h.facts(1))
            .await,
    );
    assert!(m.contains("0 of those interrogated"), "{m}");
    h.vr.stop().await;
}

#[tokio::test]
async fn a_version_mismatch_names_both_versions_and_the_clients() {
    let h = deployed(Scenario::VersionMismatch, vec![], 1).await;
    let m = failed(
        h.probe
            .enrollment(&h.cx(Phase::Enrollment, PASS_BUDGET), &h.facts(1))
            .await,
    );
    assert!(m.contains("pinned Velociraptor 0.77.2"), "{m}");
    assert!(
        m.contains(&format!("reports {MISMATCHED_AGENT_VERSION}")),
        "{m}"
    );
    assert!(m.contains("client C."), "{m}");
    h.vr.stop().await;
}

#[tokio::test]
async fn last_seen_at_as_a_number_is_accepted() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    h.vr.set_client_style(ClientStyle {
        timestamps: TimestampEncoding::Number,
        ..ClientStyle::default()
    });
    let e = h
        .probe
        .enrollment(&h.cx(Phase::Enrollment, PASS_BUDGET), &h.facts(1))
        .await
        .expect("numbers parse too");
    assert_eq!(e.clients.len(), 1);
    h.vr.stop().await;
}

#[tokio::test]
async fn throttling_and_transient_faults_are_ridden_out() {
    let faults: Vec<FaultSpec> = [
        "healthz:reset",
        "healthz:error",
        "gui:throttle",
        "gui:timeout",
        "SearchClients:malformed",
        "SearchClients:error",
    ]
    .iter()
    .map(|s| s.parse().expect("spec"))
    .collect();
    let h = deployed(Scenario::Throttled, faults, 1).await;
    let facts = h.facts(1);
    let health = h
        .probe
        .health(&h.cx(Phase::Health, PASS_BUDGET), &facts)
        .await
        .expect("healthy despite faults");
    assert_eq!(health.gui_authenticated_status, 200);
    h.probe
        .enrollment(&h.cx(Phase::Enrollment, PASS_BUDGET), &facts)
        .await
        .expect("enrolled despite faults");
    h.vr.stop().await;
}

#[tokio::test]
async fn probe_existing_passes_a_healthy_server() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    let deadlines = ProbeDeadlines {
        health: PASS_BUDGET,
        enrollment: PASS_BUDGET,
    };
    let report = probe_existing(h.existing(), &settings(), deadlines).await;
    assert!(report.passed(), "{:?}", report.failures());
    assert!(report.failures().is_empty());
    h.vr.stop().await;
}

#[tokio::test]
async fn probe_existing_reports_the_same_failures() {
    let h = deployed(Scenario::Healthy, vec![], 1).await;
    let deadlines = ProbeDeadlines {
        health: FAIL_BUDGET,
        enrollment: FAIL_BUDGET,
    };
    let mut wrong = h.existing();
    wrong.password = Secret::new("wrong-password-wrong-password");
    let report = probe_existing(wrong, &settings(), deadlines).await;
    assert!(!report.passed());
    let lines = report.failures();
    assert!(
        lines[0].starts_with("health: ") && lines[0].contains("refused user"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "enrollment: not run because health failed");

    let mut mismatch = h.existing();
    mismatch.expect_version = Some("0.70.0".into());
    let report = probe_existing(mismatch, &settings(), deadlines).await;
    assert!(report.health.is_ok());
    let lines = report.failures();
    assert!(lines[0].contains("pinned Velociraptor 0.70.0"), "{lines:?}");

    let mut unchecked = h.existing();
    unchecked.expect_version = None;
    assert!(probe_existing(unchecked, &settings(), deadlines)
        .await
        .passed());
    h.vr.stop().await;
}
