//! The Velociraptor emulator over real HTTPS, verified against its own per-run CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::velociraptor::{
    ClientStyle, TimestampEncoding, VelociraptorEmulator, MISMATCHED_AGENT_VERSION,
    PINNED_SERVER_NAME,
};
use cloudtest_mock::{
    EmulatedServers, EmulatorContext, EmulatorState, FaultPlan, FaultSpec, Scenario,
    ServerDeployment,
};
use reqwest::StatusCode;
use serde_json::Value;

const LATENCY: Duration = Duration::from_millis(50);

async fn start(scenario: Scenario, faults: Vec<FaultSpec>) -> Arc<VelociraptorEmulator> {
    let ctx = EmulatorContext {
        scenario,
        latency: LATENCY,
        faults: Arc::new(FaultPlan::new(faults, Duration::from_millis(300))),
        servers: Arc::new(RecordingServers::default()),
    };
    VelociraptorEmulator::start(ctx)
        .await
        .expect("emulator starts")
}

fn deployment(id: &str, clients: u32) -> ServerDeployment {
    ServerDeployment {
        deployment: id.to_string(),
        admin_user: "cloudtest-admin".to_string(),
        admin_password: "correct-horse-battery-staple".to_string(),
        version: "0.77.2".to_string(),
        expected_clients: clients,
    }
}

/// A client that trusts only the emulator's CA and reaches it by the pinned name.
fn client(vr: &VelociraptorEmulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(vr.ca_pem().as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve(PINNED_SERVER_NAME, SocketAddr::from(([127, 0, 0, 1], 0)))
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn frontend(vr: &VelociraptorEmulator, path: &str) -> String {
    format!("https://{PINNED_SERVER_NAME}:{}{path}", vr.frontend_port())
}

fn gui(vr: &VelociraptorEmulator, path: &str) -> String {
    format!("https://{PINNED_SERVER_NAME}:{}{path}", vr.gui_port())
}

async fn status(c: &reqwest::Client, url: &str) -> StatusCode {
    c.get(url).send().await.expect("request").status()
}

/// Polls `/healthz` until 200; returns how many answers said "not yet".
async fn wait_healthy(c: &reqwest::Client, vr: &VelociraptorEmulator) -> u32 {
    for not_ready in 0..100 {
        if status(c, &frontend(vr, "/healthz")).await == StatusCode::OK {
            return not_ready;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never healthy");
}

async fn search(c: &reqwest::Client, vr: &VelociraptorEmulator) -> Value {
    c.get(gui(vr, "/api/v1/SearchClients?query=all&limit=10"))
        .basic_auth("cloudtest-admin", Some("correct-horse-battery-staple"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn wait_clients(c: &reqwest::Client, vr: &VelociraptorEmulator, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let body = search(c, vr).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("clients never enrolled");
}

#[tokio::test]
async fn healthz_is_503_until_booted_then_200() {
    let vr = start(Scenario::Healthy, vec![]).await;
    let c = client(&vr);
    assert_eq!(
        status(&c, &frontend(&vr, "/healthz")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no deployment yet"
    );
    vr.deploy(deployment("stack-1", 1));
    assert!(wait_healthy(&c, &vr).await >= 1, "booting is visible");
    let pem = c
        .get(frontend(&vr, "/server.pem"))
        .send()
        .await
        .expect("server.pem")
        .text()
        .await
        .expect("text");
    assert!(pem.contains("BEGIN CERTIFICATE"));
    assert_ne!(
        pem.trim(),
        vr.ca_pem().trim(),
        "server.pem is the frontend cert, not the CA"
    );
    vr.stop().await;
}

#[tokio::test]
async fn gui_requires_basic_auth_of_a_deployed_admin() {
    let vr = start(Scenario::Healthy, vec![]).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 1));
    let r = c
        .get(gui(&vr, "/app/index.html"))
        .send()
        .await
        .expect("gui");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"Restricted\"")
    );
    let wrong = c
        .get(gui(&vr, "/api/v1/SearchClients?query=all"))
        .basic_auth("cloudtest-admin", Some("wrong"))
        .send()
        .await
        .expect("gui");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = c
        .get(gui(&vr, "/app/index.html"))
        .basic_auth("cloudtest-admin", Some("correct-horse-battery-staple"))
        .send()
        .await
        .expect("gui");
    assert_eq!(ok.status(), StatusCode::OK);
    vr.undeploy("stack-1");
    let gone = c
        .get(gui(&vr, "/app/index.html"))
        .basic_auth("cloudtest-admin", Some("correct-horse-battery-staple"))
        .send()
        .await
        .expect("gui");
    assert_eq!(
        gone.status(),
        StatusCode::UNAUTHORIZED,
        "undeploy removes the user"
    );
    vr.stop().await;
}

#[tokio::test]
async fn clients_enroll_after_boot_in_protojson() {
    let vr = start(Scenario::Healthy, vec![]).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 2));
    let items = wait_clients(&c, &vr, 2).await;
    assert_eq!(items.len(), 2);
    let first = &items[0];
    let id = first["client_id"].as_str().expect("client_id");
    assert!(id.starts_with("C.") && id.len() == 18, "{id}");
    assert_eq!(first["agent_information"]["version"], "0.77.2");
    assert!(first["os_info"]["hostname"]
        .as_str()
        .is_some_and(|h| h.starts_with("cloudtest-client-")));
    let last_seen: u64 = first["last_seen_at"]
        .as_str()
        .expect("uint64 as a string")
        .parse()
        .expect("number");
    assert!(
        last_seen > 1_600_000_000_000_000,
        "microseconds: {last_seen}"
    );
    let body = search(&c, &vr).await;
    assert_eq!(body["total"], "2");

    vr.set_client_style(ClientStyle {
        timestamps: TimestampEncoding::Number,
        ..ClientStyle::default()
    });
    let body = search(&c, &vr).await;
    assert!(body["items"][0]["last_seen_at"].is_u64());

    assert_eq!(vr.remaining().len(), 1);
    assert_eq!(vr.name(), "velociraptor");
    // A second deployment keeps the admin user registered after the first goes.
    vr.deploy(deployment("stack-2", 0));
    vr.undeploy("stack-1");
    assert_eq!(vr.remaining().len(), 1);
    assert_eq!(
        search(&c, &vr).await["items"],
        Value::Null,
        "clients are gone"
    );
    vr.undeploy("stack-2");
    assert!(vr.remaining().is_empty());
    vr.stop().await;
}

#[tokio::test]
async fn version_mismatch_scenario_reports_another_agent_version() {
    let vr = start(Scenario::VersionMismatch, vec![]).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 1));
    let items = wait_clients(&c, &vr, 1).await;
    assert_eq!(
        items[0]["agent_information"]["version"],
        MISMATCHED_AGENT_VERSION
    );
    vr.stop().await;
}

#[tokio::test]
async fn health_timeout_and_no_enrollment_scenarios() {
    let vr = start(Scenario::HealthTimeout, vec![]).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 1));
    tokio::time::sleep(LATENCY * 2).await;
    for _ in 0..3 {
        assert_eq!(
            status(&c, &frontend(&vr, "/healthz")).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    vr.stop().await;

    let vr = start(Scenario::NoEnrollment, vec![]).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 1));
    wait_healthy(&c, &vr).await;
    tokio::time::sleep(LATENCY * 2).await;
    for _ in 0..3 {
        assert_eq!(search(&c, &vr).await["items"], Value::Null);
    }
    vr.stop().await;
}

#[tokio::test]
async fn throttled_scenario_refuses_the_first_calls_with_retry_after() {
    let vr = start(Scenario::Throttled, vec![]).await;
    let c = client(&vr);
    for _ in 0..Scenario::THROTTLED_CALLS {
        let r = c
            .get(frontend(&vr, "/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
    assert_eq!(
        status(&c, &frontend(&vr, "/healthz")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    vr.stop().await;
}

#[tokio::test]
async fn injected_faults_error_reset_malformed_and_timeout() {
    let faults = vec![
        "healthz:error".parse().expect("spec"),
        "server.pem:reset".parse().expect("spec"),
        "SearchClients:malformed".parse().expect("spec"),
        "gui:timeout".parse().expect("spec"),
    ];
    let vr = start(Scenario::Healthy, faults).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 1));
    assert_eq!(
        status(&c, &frontend(&vr, "/healthz")).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        c.get(frontend(&vr, "/server.pem")).send().await.is_err(),
        "reset"
    );
    let r = c
        .get(gui(&vr, "/api/v1/SearchClients?query=all"))
        .basic_auth("cloudtest-admin", Some("correct-horse-battery-staple"))
        .send()
        .await
        .expect("malformed still answers");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Value>().await.is_err(), "body must not parse");
    let impatient = c
        .get(gui(&vr, "/app/index.html"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));
    // Each fault fired once; the next calls are normal.
    assert_eq!(
        status(&c, &frontend(&vr, "/server.pem")).await,
        StatusCode::OK
    );
    vr.stop().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let vr = start(Scenario::Healthy, vec![]).await;
    let other = start(Scenario::Healthy, vec![]).await;
    let c = client(&other);
    let err = c
        .get(frontend(&vr, "/healthz"))
        .send()
        .await
        .expect_err("another run's CA must not verify this server");
    assert!(err.is_connect(), "{err:?}");
    vr.stop().await;
    other.stop().await;
}
