//! Credentials against the ARM emulator's Entra-like token endpoint (issue 16 §1): a
//! token that is not renewed is refused by ARM with `401 ExpiredAuthenticationToken` once
//! its lifetime has passed, the renewing credential keeps working, and Entra's refusals
//! reach the caller whole. The emulator's clock is moved instead of waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use azure_core::auth::TokenCredential;
use chrono::Utc;
use cloudtest_azure::credential::{AssertionSource, ClientAssertionCredential, Clock};
use cloudtest_azure::sweep::find_due;
use cloudtest_azure::{
    static_token_credential, ArmConnection, AzureError, CredentialChoice, CredentialPlan, ARM_SCOPE,
};
use cloudtest_core::skip::MapEnvironment;
use cloudtest_core::tags::SweepScope;
use cloudtest_core::Secret;
use cloudtest_mock::arm::{ArmEmulator, ArmOptions, MOCK_SUBSCRIPTION_ID};
use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::{EmulatorContext, FaultPlan, Scenario};

async fn emulator(token_lifetime: Duration) -> (ArmEmulator, Arc<FaultPlan>) {
    let faults = Arc::new(FaultPlan::default());
    let arm = ArmEmulator::start_with(
        EmulatorContext {
            scenario: Scenario::Healthy,
            latency: Duration::ZERO,
            faults: faults.clone(),
            servers: Arc::new(RecordingServers::default()),
        },
        ArmOptions { token_lifetime },
    )
    .await
    .expect("emulator starts");
    (arm, faults)
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).expect("url")
}

/// A clock the test moves together with the emulator's.
fn shared_clock() -> (Clock, Arc<AtomicI64>) {
    let skew = Arc::new(AtomicI64::new(0));
    let s = skew.clone();
    let clock: Clock = Arc::new(move || {
        time::OffsetDateTime::now_utc() + time::Duration::seconds(s.load(Ordering::SeqCst))
    });
    (clock, skew)
}

fn connection(arm: &ArmEmulator, credential: Arc<dyn TokenCredential>) -> ArmConnection {
    let endpoint = url(&arm.endpoint());
    let mut conn = ArmConnection::with_static_token(MOCK_SUBSCRIPTION_ID, endpoint, "unused");
    conn.credential = credential;
    conn.credential_source = "test credential".into();
    conn
}

/// One ARM call through the provider code (the sweep's resource-group listing).
async fn list(conn: &ArmConnection) -> Result<(), AzureError> {
    find_due(conn, Utc::now(), &SweepScope::Expired { older_than: None })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn without_renewal_arm_refuses_the_expired_token_and_the_renewing_credential_goes_on() {
    let (arm, faults) = emulator(Duration::from_secs(60)).await;
    let (clock, skew) = shared_clock();
    let renewing = ClientAssertionCredential::with_clock(
        url(&arm.endpoint()),
        "tenant",
        "client",
        AssertionSource::MockAssertion(Secret::new("fake-assertion")),
        clock,
    );
    let first = renewing.get_token(&[ARM_SCOPE]).await.expect("token");
    // A credential that never renews: the same token for ever.
    let frozen = connection(&arm, static_token_credential(first.token.secret()));
    let live = connection(&arm, renewing.clone());
    list(&frozen).await.expect("a fresh token is accepted");
    list(&live).await.expect("a fresh token is accepted");

    // Three lifetimes pass.
    arm.advance_clock(Duration::from_secs(180));
    skew.store(180, Ordering::SeqCst);

    let err = list(&frozen).await.expect_err("the old token has expired");
    match &err {
        AzureError::Unauthenticated {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(*status, 401, "{err}");
            assert_eq!(code, "ExpiredAuthenticationToken", "{err}");
            assert!(
                message.starts_with("The access token expiry UTC time '")
                    && message.contains("' is earlier than current UTC time '"),
                "{message}"
            );
        }
        other => panic!("expected 401 ExpiredAuthenticationToken, got {other}"),
    }
    list(&live)
        .await
        .expect("the renewing credential fetched a new token");
    assert_eq!(
        faults.calls().get("entra:Token").copied(),
        Some(2),
        "one token at the start, one renewal: {:?}",
        faults.calls()
    );
}

#[tokio::test]
async fn a_token_is_renewed_halfway_through_a_short_lifetime_not_on_every_call() {
    let (arm, faults) = emulator(Duration::from_secs(10)).await;
    let (clock, skew) = shared_clock();
    let c = ClientAssertionCredential::with_clock(
        url(&arm.endpoint()),
        "tenant",
        "client",
        AssertionSource::MockAssertion(Secret::new("fake-assertion")),
        clock,
    );
    let conn = connection(&arm, c);
    for _ in 0..5 {
        list(&conn).await.expect("valid");
    }
    assert_eq!(faults.calls().get("entra:Token").copied(), Some(1));
    // 6 s of 10: past half, so the next call renews; ARM never sees an expired token.
    for step in 1..=6 {
        arm.advance_clock(Duration::from_secs(6));
        skew.store(6 * step, Ordering::SeqCst);
        list(&conn).await.expect("renewed in time");
    }
    assert_eq!(faults.calls().get("entra:Token").copied(), Some(7));
}

#[tokio::test]
async fn every_mock_choice_gets_tokens_through_the_emulator() {
    let (arm, faults) = emulator(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("federated-token");
    std::fs::write(&file, "not-a-jwt-but-accepted").expect("write");
    let env = MapEnvironment::default().with("AZURE_FEDERATED_TOKEN_FILE", &file.to_string_lossy());
    for choice in [
        CredentialChoice::Auto,
        CredentialChoice::Secret,
        CredentialChoice::Workload,
        CredentialChoice::GithubOidc,
    ] {
        let plan = CredentialPlan::resolve(choice, &env, true).expect("usable in mock mode");
        let conn = ArmConnection::emulated(
            MOCK_SUBSCRIPTION_ID,
            url(&arm.endpoint()),
            url(&arm.endpoint()),
            &plan,
        )
        .expect("connection");
        list(&conn)
            .await
            .unwrap_or_else(|e| panic!("{choice}: {e}"));
    }
    let calls = faults.calls();
    assert_eq!(calls.get("entra:Token").copied(), Some(4), "{calls:?}");
    assert_eq!(calls.get("github:IdToken").copied(), Some(1), "{calls:?}");
}

#[tokio::test]
async fn entra_refusals_reach_the_caller_with_the_whole_aadsts_text() {
    let (arm, _) = emulator(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("federated-token");
    // A federated token that expired a minute ago (GitLab's and Kubernetes' files are
    // rewritten; one that stopped being rewritten looks like this).
    let exp = Utc::now().timestamp() - 60;
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let jwt = format!(
        "{}.{}.sig",
        b64(serde_json::json!({"alg": "none"})),
        b64(serde_json::json!({"exp": exp, "aud": "api://AzureADTokenExchange"}))
    );
    std::fs::write(&file, jwt).expect("write");
    let env = MapEnvironment::default().with("AZURE_FEDERATED_TOKEN_FILE", &file.to_string_lossy());
    let plan = CredentialPlan::resolve(CredentialChoice::Workload, &env, true).expect("plan");
    let conn = ArmConnection::emulated(
        MOCK_SUBSCRIPTION_ID,
        url(&arm.endpoint()),
        url(&arm.endpoint()),
        &plan,
    )
    .expect("connection");
    let err = list(&conn).await.expect_err("refused").to_string();
    for needle in [
        "AZURE_FEDERATED_TOKEN_FILE",
        "invalid_client",
        "AADSTS700024: Client assertion is not within its valid time range",
        "expiry time of assertion",
        "Trace ID:",
        "Correlation ID:",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
}
