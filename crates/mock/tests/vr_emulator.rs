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

/// Waits until `n` clients are listed and interrogated (their `os_info` filled in).
async fn wait_clients(c: &reqwest::Client, vr: &VelociraptorEmulator, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let body = search(c, vr).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n && items.iter().all(|i| i.get("os_info").is_some()) {
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

// ---------- the listener as a TLS client sees it (Velociraptor 0.77.2's api/builder.go) ----------

mod tls_shape {
    use super::*;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, NamedGroup, RootCertStore};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    fn ca_der(vr: &VelociraptorEmulator) -> CertificateDer<'static> {
        let pem = vr.ca_pem();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine;
        CertificateDer::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("CA base64"),
        )
    }

    fn roots(vr: &VelociraptorEmulator) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(ca_der(vr)).expect("CA");
        roots
    }

    /// A rustls client with the given versions and key-exchange groups, trusting only the CA.
    fn config(
        vr: &VelociraptorEmulator,
        versions: &[&'static rustls::SupportedProtocolVersion],
        groups: Option<&[NamedGroup]>,
    ) -> Arc<ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(keep) = groups {
            provider.kx_groups.retain(|g| keep.contains(&g.name()));
        }
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots(vr))
                .with_no_client_auth(),
        )
    }

    /// Handshakes with the frontend; the negotiated group, or the error.
    async fn handshake(
        vr: &VelociraptorEmulator,
        cfg: Arc<ClientConfig>,
        name: &'static str,
    ) -> Result<(NamedGroup, Vec<CertificateDer<'static>>), String> {
        let tcp = TcpStream::connect(("127.0.0.1", vr.frontend_port()))
            .await
            .map_err(|e| e.to_string())?;
        let server = ServerName::try_from(name).map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(cfg)
            .connect(server, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn): (_, &ClientConnection) = tls.get_ref();
        let group = conn
            .negotiated_key_exchange_group()
            .map(|g| g.name())
            .ok_or("no group")?;
        let chain = conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();
        let _ = tls.shutdown().await;
        Ok((group, chain))
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    // DER encodings: the commonName attribute's OID (2.5.4.3), rsaEncryption's OID, and the
    // header of a 2048-bit modulus (257 bytes with its leading zero).
    const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    const OID_RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const RSA_2048_MODULUS: &[u8] = &[0x02, 0x82, 0x01, 0x01, 0x00];

    #[tokio::test]
    async fn tls13_only_nist_curves_and_a_retry_for_x25519() {
        let vr = start(Scenario::Healthy, vec![]).await;
        // Default client: X25519 first; the server has no X25519, so it asks again (HRR)
        // and the handshake ends on a NIST curve.
        let (group, _) = handshake(
            &vr,
            config(&vr, &[&rustls::version::TLS13], None),
            PINNED_SERVER_NAME,
        )
        .await
        .expect("TLS 1.3 handshake");
        assert!(
            matches!(group, NamedGroup::secp384r1 | NamedGroup::secp256r1),
            "{group:?}"
        );
        // X25519 alone: no common group.
        let x25519 = handshake(
            &vr,
            config(&vr, &[&rustls::version::TLS13], Some(&[NamedGroup::X25519])),
            PINNED_SERVER_NAME,
        )
        .await;
        assert!(x25519.is_err(), "{x25519:?}");
        // TLS 1.2 alone: refused.
        let tls12 = handshake(
            &vr,
            config(&vr, &[&rustls::version::TLS12], None),
            PINNED_SERVER_NAME,
        )
        .await;
        assert!(tls12.is_err(), "{tls12:?}");
        vr.stop().await;
    }

    #[tokio::test]
    async fn certificates_look_like_velociraptors() {
        let vr = start(Scenario::Healthy, vec![]).await;
        let cfg = config(&vr, &[&rustls::version::TLS13], None);
        let (_, chain) = handshake(&vr, cfg.clone(), PINNED_SERVER_NAME)
            .await
            .expect("handshake");
        let server = chain.first().expect("server certificate");
        assert!(contains(server, OID_RSA_ENCRYPTION), "RSA key");
        assert!(contains(server, RSA_2048_MODULUS), "2048-bit modulus");
        // The only name is the pinned one: `localhost` does not verify.
        let by_localhost = handshake(&vr, cfg, "localhost").await;
        let err = by_localhost.expect_err("localhost is not a name of the certificate");
        assert!(err.to_lowercase().contains("name"), "{err}");
        // The CA's subject (and issuer) carry no common name: only O=Velociraptor CA.
        let ca = ca_der(&vr);
        assert!(!contains(&ca, OID_COMMON_NAME), "CA has a CN");
        assert!(contains(&ca, b"Velociraptor CA"));
        assert!(contains(&ca, RSA_2048_MODULUS), "RSA-2048 CA key");
        vr.stop().await;
    }
}

#[tokio::test]
async fn search_clients_echoes_the_search_term_even_with_no_items() {
    let vr = start(Scenario::Healthy, vec![]).await;
    let c = client(&vr);
    vr.deploy(deployment("stack-1", 1));
    let body = search(&c, &vr).await;
    assert_eq!(body["search_term"]["query"], "all");
    assert_eq!(body["search_term"]["limit"], "10");
    assert!(body.get("items").is_none(), "{body}");
    vr.stop().await;
}
