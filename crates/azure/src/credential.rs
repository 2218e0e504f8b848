//! Credentials that last a whole run: a client-assertion credential (Microsoft Entra ID
//! `client_credentials` grant with a federated JWT as `client_assertion`) that fetches a
//! fresh assertion every time it renews its access token. The Azure CLI cannot renew a
//! federated login (AADSTS700024 after 60–90 minutes, Azure/azure-cli#28708), and
//! azure_identity 0.21's `WorkloadIdentityCredential` reads the token file once.
//!
//! Assertion sources: GitHub Actions' OIDC endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL` with
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, audience `api://AzureADTokenExchange`) or a token file
//! re-read at each renewal (`AZURE_FEDERATED_TOKEN_FILE`: GitLab, Kubernetes). The same
//! code also sends a client secret (`secret`) and, in mock mode, a fixed fake assertion to
//! the ARM emulator's Entra-like token endpoint, so mock runs renew tokens as live ones do.
//!
//! [`CredentialChoice`] is what the user asked for (`[azure] credential`,
//! `--azure-credential`); [`CredentialPlan`] is what it resolved to in this environment,
//! with the reason, decided without any network call.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use cloudtest_core::skip::Environment;
use cloudtest_core::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::errors::AzureError;

/// The audience Entra ID expects in a federated assertion.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Renew this long before the access token expires, or halfway through a shorter lifetime
/// (see [`renewal_due`]).
pub const RENEW_BEFORE: time::Duration = time::Duration::minutes(5);

/// Where "now" comes from (the wall clock; tests move it).
pub type Clock = Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(time::OffsetDateTime::now_utc)
}

/// Whether a token issued at `issued` and expiring at `expires_on` must be renewed `now`:
/// when less than min(5 minutes, half its lifetime) remains. Entra's hour-long tokens are
/// renewed 5 minutes early; a token of a few seconds (the emulator's) halfway through, so a
/// short lifetime neither renews on every call nor reaches ARM expired.
pub fn renewal_due(
    issued: time::OffsetDateTime,
    expires_on: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> bool {
    let lifetime = (expires_on - issued).max(time::Duration::ZERO);
    let margin = RENEW_BEFORE.min(lifetime / 2);
    now >= expires_on - margin
}

/// Where the federated JWT comes from.
#[derive(Clone)]
pub enum AssertionSource {
    /// GitHub Actions: `GET {url}&audience=...` with `Authorization: bearer {token}`.
    GitHubOidc {
        request_url: String,
        request_token: Secret,
    },
    /// A file rewritten by the platform (re-read at every renewal).
    TokenFile(PathBuf),
    /// Not an assertion: an application secret (`client_secret`, `AZURE_CLIENT_SECRET`).
    ClientSecret(Secret),
    /// Mock mode only: a fixed fake assertion the ARM emulator's token endpoint accepts.
    MockAssertion(Secret),
}

impl AssertionSource {
    pub fn describe(&self) -> &'static str {
        match self {
            AssertionSource::GitHubOidc { .. } => "GitHub OIDC (ACTIONS_ID_TOKEN_REQUEST_URL)",
            AssertionSource::TokenFile(_) => "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            AssertionSource::ClientSecret(_) => "client secret (AZURE_CLIENT_SECRET)",
            AssertionSource::MockAssertion(_) => "mock federated assertion",
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Secret, String> {
        match self {
            AssertionSource::ClientSecret(s) | AssertionSource::MockAssertion(s) => Ok(s.clone()),
            AssertionSource::TokenFile(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| Secret::new(t.trim()))
                .map_err(|e| format!("reading {}: {e}", path.display())),
            AssertionSource::GitHubOidc {
                request_url,
                request_token,
            } => {
                let mut url = url::Url::parse(request_url)
                    .map_err(|e| format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}"))?;
                url.query_pairs_mut()
                    .append_pair("audience", FEDERATED_AUDIENCE);
                let response = http
                    .get(url)
                    .bearer_auth(request_token.expose())
                    .send()
                    .await
                    .map_err(|e| format!("asking GitHub for an ID token: {e}"))?;
                let status = response.status();
                let body = response
                    .text()
                    .await
                    .map_err(|e| format!("reading GitHub's ID token answer: {e}"))?;
                if !status.is_success() {
                    return Err(format!(
                        "GitHub's ID token endpoint answered HTTP {status}: {} (does the job have `permissions: id-token: write`?)",
                        body.chars().take(300).collect::<String>()
                    ));
                }
                #[derive(Deserialize)]
                struct IdToken {
                    value: String,
                }
                serde_json::from_str::<IdToken>(&body)
                    .map(|t| Secret::new(t.value))
                    .map_err(|e| format!("GitHub's ID token answer has no `value`: {e}"))
            }
        }
    }
}

/// Entra ID's token answer (or its error, with the AADSTS code in the description).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<i64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A `TokenCredential` that exchanges a fresh federated assertion for each new token.
pub struct ClientAssertionCredential {
    /// `https://login.microsoftonline.com/` (or an emulator's token endpoint in mock mode).
    authority: url::Url,
    tenant_id: String,
    client_id: String,
    source: AssertionSource,
    http: reqwest::Client,
    clock: Clock,
    /// The token and when it was issued (renewal starts halfway through short lifetimes).
    cached: Mutex<Option<(AccessToken, time::OffsetDateTime)>>,
}

impl fmt::Debug for ClientAssertionCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertionCredential")
            .field("authority", &self.authority.as_str())
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("source", &self.source.describe())
            .finish_non_exhaustive()
    }
}

impl ClientAssertionCredential {
    pub fn new(
        authority: url::Url,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        source: AssertionSource,
    ) -> Arc<Self> {
        Self::with_clock(authority, tenant_id, client_id, source, system_clock())
    }

    /// [`ClientAssertionCredential::new`] with another clock (tests).
    pub fn with_clock(
        authority: url::Url,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        source: AssertionSource,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            authority,
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            source,
            http: reqwest::Client::new(),
            clock,
            cached: Mutex::new(None),
        })
    }

    async fn request(&self, scopes: &[&str]) -> Result<AccessToken, String> {
        let assertion = self.source.fetch(&self.http).await?;
        let url = self
            .authority
            .join(&format!("{}/oauth2/v2.0/token", self.tenant_id))
            .map_err(|e| format!("token endpoint: {e}"))?;
        let scope = scopes.join(" ");
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        if let AssertionSource::ClientSecret(_) = self.source {
            form.push(("client_secret", assertion.expose()));
        } else {
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            form.push(("client_assertion", assertion.expose()));
        }
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("token request: {e}"))?;
        let status = response.status();
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| format!("token answer (HTTP {status}) is not JSON: {e}"))?;
        match (answer.access_token, answer.expires_in) {
            (Some(token), Some(secs)) if status.is_success() => Ok(AccessToken::new(
                token,
                (self.clock)() + time::Duration::seconds(secs),
            )),
            // The whole description, on one line: it carries the AADSTS code, what to do,
            // and the trace and correlation ids Microsoft support asks for.
            _ => Err(format!(
                "Entra ID refused the {} (HTTP {status}): {}: {}",
                self.source.describe(),
                answer.error.unwrap_or_else(|| "(no error)".into()),
                one_line(
                    &answer
                        .error_description
                        .unwrap_or_else(|| "(no description)".into())
                )
            )),
        }
    }
}

#[async_trait]
impl TokenCredential for ClientAssertionCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        let now = (self.clock)();
        if let Some((t, issued)) = cached.as_ref() {
            if !renewal_due(*issued, t.expires_on, now) {
                return Ok(t.clone());
            }
        }
        tracing::debug!(
            source = self.source.describe(),
            "requesting an access token"
        );
        let fresh = self.request(scopes).await.map_err(|message| {
            azure_core::Error::message(azure_core::error::ErrorKind::Credential, message)
        })?;
        *cached = Some((fresh.clone(), now));
        Ok(fresh)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        *self.cached.lock().await = None;
        Ok(())
    }
}

/// One line from a multi-line description (Entra's end in trace and correlation ids on
/// lines of their own).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Azure credential sources a user can ask for (`[azure] credential`,
/// `--azure-credential`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialChoice {
    /// azure_identity's default chain, as before this option existed.
    #[default]
    Auto,
    Cli,
    Secret,
    Workload,
    GithubOidc,
    ManagedIdentity,
}

impl CredentialChoice {
    pub const ALL: [CredentialChoice; 6] = [
        CredentialChoice::Auto,
        CredentialChoice::Cli,
        CredentialChoice::Secret,
        CredentialChoice::Workload,
        CredentialChoice::GithubOidc,
        CredentialChoice::ManagedIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialChoice::Auto => "auto",
            CredentialChoice::Cli => "cli",
            CredentialChoice::Secret => "secret",
            CredentialChoice::Workload => "workload",
            CredentialChoice::GithubOidc => "github-oidc",
            CredentialChoice::ManagedIdentity => "managed-identity",
        }
    }

    /// `auto, cli, secret, workload, github-oidc, managed-identity`.
    pub fn allowed() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for CredentialChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown Azure credential source `{s}` (allowed: {})",
                    Self::allowed()
                )
            })
    }
}

/// A choice that cannot work in this environment (variables missing, or a source the
/// mock token endpoint cannot emulate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Azure credential `{choice}` cannot be used: {why}")]
pub struct UnusableCredential {
    pub choice: CredentialChoice,
    pub why: String,
}

/// Where tokens are asked for: Entra ID's public cloud, or (mock mode only) the ARM
/// emulator's Entra-like endpoint. There is no way to name another host in a live run.
#[derive(Debug, Clone)]
pub enum Authority {
    Public,
    Emulator(url::Url),
}

/// The mock tenant and application the emulator's token endpoint issues tokens for.
pub const MOCK_TENANT_ID: &str = "00000000-0000-0000-0000-0000000c7e57";
pub const MOCK_CLIENT_ID: &str = "cloudtest-mock";
const MOCK_ASSERTION: &str = "cloudtest-mock-federated-assertion";
const MOCK_GITHUB_REQUEST_TOKEN: &str = "cloudtest-mock-github-request-token";
/// The emulator's stand-in for GitHub's ID-token endpoint (below the ARM endpoint).
pub const MOCK_GITHUB_OIDC_PATH: &str = "_github/idtoken";

#[derive(Clone)]
enum PlanKind {
    DefaultChain,
    Cli,
    ManagedIdentity {
        app_service: bool,
    },
    Client {
        tenant_id: String,
        client_id: String,
        source: AssertionSource,
    },
    /// github-oidc in mock mode without GitHub's variables: the emulator's ID tokens.
    MockGitHub {
        tenant_id: String,
        client_id: String,
    },
}

/// What a [`CredentialChoice`] resolved to in one environment, and why; no network call.
#[derive(Clone)]
pub struct CredentialPlan {
    pub choice: CredentialChoice,
    kind: PlanKind,
    /// Names the source in errors and in the plan ("GitHub OIDC (...)").
    pub source: String,
    /// Why this source: the choice, and what in the environment decided it.
    pub why: String,
}

impl fmt::Debug for CredentialPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialPlan")
            .field("choice", &self.choice)
            .field("source", &self.source)
            .field("why", &self.why)
            .finish_non_exhaustive()
    }
}

impl CredentialPlan {
    /// Resolves `choice` against `env`. Mock mode sends every choice the token endpoint can
    /// serve (client credentials) to the emulator; `cli` and `managed-identity` cannot be
    /// emulated there and are refused.
    pub fn resolve(
        choice: CredentialChoice,
        env: &dyn Environment,
        mock: bool,
    ) -> Result<Self, UnusableCredential> {
        let unusable = |why: String| UnusableCredential { choice, why };
        let need = |names: &[&str]| -> Result<Vec<String>, UnusableCredential> {
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| env.var(n).is_none())
                .collect();
            if missing.is_empty() {
                Ok(names.iter().filter_map(|n| env.var(n)).collect())
            } else {
                Err(unusable(format!("{} not set", missing.join(", "))))
            }
        };
        // Tenant and application: the environment's, or the emulator's in mock mode.
        let ids = || -> Result<(String, String), UnusableCredential> {
            if mock {
                Ok((
                    env.var("AZURE_TENANT_ID")
                        .unwrap_or_else(|| MOCK_TENANT_ID.into()),
                    env.var("AZURE_CLIENT_ID")
                        .unwrap_or_else(|| MOCK_CLIENT_ID.into()),
                ))
            } else {
                let v = need(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID"])?;
                Ok((v[0].clone(), v[1].clone()))
            }
        };
        let plan = |kind: PlanKind, source: String, why: String| CredentialPlan {
            choice,
            kind,
            source,
            why,
        };
        Ok(match choice {
            CredentialChoice::Auto if mock => {
                let (tenant_id, client_id) = (MOCK_TENANT_ID.to_string(), MOCK_CLIENT_ID.to_string());
                plan(
                    PlanKind::Client {
                        tenant_id,
                        client_id,
                        source: AssertionSource::MockAssertion(Secret::new(MOCK_ASSERTION)),
                    },
                    "mock federated assertion (emulated Entra ID token endpoint)".into(),
                    "in mock mode, the client-assertion credential live runs use, against the ARM emulator's token endpoint".into(),
                )
            }
            CredentialChoice::Auto => {
                let source = crate::connection::describe_live_source(env);
                let mut why = format!(
                    "the first source present in azure_identity's chain order, here {source}"
                );
                if env.var("ACTIONS_ID_TOKEN_REQUEST_URL").is_some() {
                    why.push_str("; in GitHub Actions `--azure-credential github-oidc` renews its tokens for a run of any length");
                }
                plan(PlanKind::DefaultChain, crate::connection::LIVE_SOURCES.into(), why)
            }
            CredentialChoice::Cli | CredentialChoice::ManagedIdentity if mock => {
                return Err(unusable(
                    "mock mode emulates Entra ID's client-credentials endpoint only; use auto, secret, workload or github-oidc".into(),
                ))
            }
            CredentialChoice::Cli => plan(
                PlanKind::Cli,
                "Azure CLI login".into(),
                "the CLI cannot renew a federated login (AADSTS700024 after 60-90 minutes)".into(),
            ),
            CredentialChoice::ManagedIdentity => {
                let app_service = env.var("IDENTITY_ENDPOINT").is_some();
                plan(
                    PlanKind::ManagedIdentity { app_service },
                    if app_service {
                        "managed identity (IDENTITY_ENDPOINT)".into()
                    } else {
                        "managed identity (IMDS)".into()
                    },
                    "the platform's managed identity endpoint".into(),
                )
            }
            CredentialChoice::Secret => {
                let (tenant_id, client_id) = ids()?;
                let secret = if mock {
                    env.var("AZURE_CLIENT_SECRET")
                        .unwrap_or_else(|| "cloudtest-mock-secret".into())
                } else {
                    need(&["AZURE_CLIENT_SECRET"])?.remove(0)
                };
                plan(
                    PlanKind::Client {
                        tenant_id,
                        client_id,
                        source: AssertionSource::ClientSecret(Secret::new(secret)),
                    },
                    "client secret (AZURE_CLIENT_SECRET)".into(),
                    "AZURE_CLIENT_SECRET for AZURE_CLIENT_ID in AZURE_TENANT_ID".into(),
                )
            }
            CredentialChoice::Workload => {
                let (tenant_id, client_id) = ids()?;
                let file = need(&["AZURE_FEDERATED_TOKEN_FILE"])?.remove(0);
                plan(
                    PlanKind::Client {
                        tenant_id,
                        client_id,
                        source: AssertionSource::TokenFile(PathBuf::from(&file)),
                    },
                    "workload identity (AZURE_FEDERATED_TOKEN_FILE)".into(),
                    format!("{file} is read again at every renewal"),
                )
            }
            CredentialChoice::GithubOidc => {
                let (tenant_id, client_id) = ids()?;
                let vars = ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"];
                let source_name = "GitHub OIDC (ACTIONS_ID_TOKEN_REQUEST_URL)".to_string();
                let why = format!(
                    "a fresh GitHub ID token (audience {FEDERATED_AUDIENCE}) at every renewal"
                );
                if mock && vars.iter().all(|v| env.var(v).is_none()) {
                    plan(
                        PlanKind::MockGitHub { tenant_id, client_id },
                        source_name,
                        format!("{why}, from the emulator's stand-in for GitHub"),
                    )
                } else {
                    let v = need(&vars).map_err(|e| UnusableCredential {
                        why: format!("{} (the job needs `permissions: id-token: write`)", e.why),
                        ..e
                    })?;
                    plan(
                        PlanKind::Client {
                            tenant_id,
                            client_id,
                            source: AssertionSource::GitHubOidc {
                                request_url: v[0].clone(),
                                request_token: Secret::new(v[1].clone()),
                            },
                        },
                        source_name,
                        why,
                    )
                }
            }
        })
    }

    /// Whether tokens come through [`ClientAssertionCredential`] (and so renew with a fresh
    /// assertion, and work against the emulator).
    pub fn is_client_credential(&self) -> bool {
        matches!(
            self.kind,
            PlanKind::Client { .. } | PlanKind::MockGitHub { .. }
        )
    }

    /// The credential. The authority is Entra ID's public cloud unless mock wiring passes
    /// the emulator's endpoint.
    pub fn build(&self, authority: &Authority) -> Result<Arc<dyn TokenCredential>, AzureError> {
        let failed = |message: String| AzureError::Credential {
            source_name: self.source.clone(),
            message,
        };
        let authority_url = match authority {
            Authority::Public => url::Url::parse(crate::connection::PUBLIC_AUTHORITY_HOST)
                .map_err(|e| failed(e.to_string()))?,
            Authority::Emulator(u) => u.clone(),
        };
        if matches!(authority, Authority::Emulator(_)) && !self.is_client_credential() {
            return Err(failed(
                "mock mode emulates Entra ID's client-credentials endpoint only".into(),
            ));
        }
        Ok(match &self.kind {
            PlanKind::DefaultChain => crate::connection::live_credential()?,
            PlanKind::Cli => Arc::new(azure_identity::AzureCliCredential::new()),
            PlanKind::ManagedIdentity { app_service: true } => Arc::new(
                azure_identity::AppServiceManagedIdentityCredential::create(
                    azure_identity::TokenCredentialOptions::default(),
                )
                .map_err(|e| failed(crate::connection::error_chain(&e)))?,
            ),
            PlanKind::ManagedIdentity { app_service: false } => Arc::new(
                azure_identity::VirtualMachineManagedIdentityCredential::new(
                    azure_identity::TokenCredentialOptions::default(),
                ),
            ),
            PlanKind::Client {
                tenant_id,
                client_id,
                source,
            } => ClientAssertionCredential::new(
                authority_url,
                tenant_id.clone(),
                client_id.clone(),
                source.clone(),
            ),
            PlanKind::MockGitHub {
                tenant_id,
                client_id,
            } => {
                let mut request_url = authority_url
                    .join(MOCK_GITHUB_OIDC_PATH)
                    .map_err(|e| failed(e.to_string()))?;
                request_url.set_query(Some("api-version=2.0"));
                ClientAssertionCredential::new(
                    authority_url,
                    tenant_id.clone(),
                    client_id.clone(),
                    AssertionSource::GitHubOidc {
                        request_url: request_url.to_string(),
                        request_token: Secret::new(MOCK_GITHUB_REQUEST_TOKEN),
                    },
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::{Form, Json, Router};
    use serde_json::json;
    use std::collections::HashMap;

    type Seen = Arc<std::sync::Mutex<Vec<String>>>;

    /// An Entra-like token endpoint: tokens valid `expires_in` seconds; an assertion
    /// `expired-jwt` is refused the way Entra refuses a stale federated token.
    async fn token(
        State((seen, expires_in)): State<(Seen, i64)>,
        Form(form): Form<HashMap<String, String>>,
    ) -> axum::response::Response {
        let assertion = form.get("client_assertion").cloned().unwrap_or_default();
        seen.lock().expect("lock").push(assertion.clone());
        if assertion == "expired-jwt" {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_client", "error_description": "AADSTS700024: Client assertion is not within its valid time range. Current time: 2026-12-02T20:00:00Z. Trace ID: t"})),
            )
                .into_response();
        }
        Json(json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": format!("at-for-{assertion}")}))
            .into_response()
    }

    async fn entra(expires_in: i64) -> (url::Url, Seen) {
        let seen: Seen = Arc::default();
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state((seen.clone(), expires_in));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (
            url::Url::parse(&format!("http://{addr}/")).expect("url"),
            seen,
        )
    }

    #[test]
    fn renewal_starts_five_minutes_early_or_halfway_through_short_lifetimes() {
        let t0 = time::OffsetDateTime::UNIX_EPOCH;
        let s = time::Duration::seconds;
        // (lifetime, elapsed, renew?)
        let cases = [
            (3600, 0, false),
            (3600, 3294, false), // 5 min 6 s left
            (3600, 3300, true),  // 5 min left
            (3600, 3599, true),
            (4, 0, false), // a few seconds: halfway, not on every call
            (4, 1, false),
            (4, 2, true),
            (4, 5, true), // already expired
            (600, 299, false),
            (600, 300, true), // 10 min: halfway = 5 min
            (0, 0, true),     // expires_in 0: always renew
        ];
        for (lifetime, elapsed, want) in cases {
            assert_eq!(
                renewal_due(t0, t0 + s(lifetime), t0 + s(elapsed)),
                want,
                "lifetime {lifetime}s, {elapsed}s elapsed"
            );
        }
    }

    #[test]
    fn choices_parse_from_their_names_only() {
        for c in CredentialChoice::ALL {
            assert_eq!(c.as_str().parse::<CredentialChoice>(), Ok(c));
        }
        let err = "oidc".parse::<CredentialChoice>().unwrap_err();
        assert!(
            err.contains("`oidc`")
                && err.contains("auto, cli, secret, workload, github-oidc, managed-identity"),
            "{err}"
        );
    }

    #[test]
    fn explicit_choices_need_their_own_variables_and_say_which() {
        use cloudtest_core::skip::MapEnvironment;
        let ids = MapEnvironment::default()
            .with("AZURE_TENANT_ID", "t")
            .with("AZURE_CLIENT_ID", "c");
        let err = CredentialPlan::resolve(CredentialChoice::GithubOidc, &ids, false).unwrap_err();
        assert!(
            err.why.contains("ACTIONS_ID_TOKEN_REQUEST_URL")
                && err.why.contains("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
                && err.why.contains("id-token: write"),
            "{err}"
        );
        let gh = ids
            .clone()
            .with(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                "https://gh.example/t?api-version=2.0",
            )
            .with("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "rt");
        let plan = CredentialPlan::resolve(CredentialChoice::GithubOidc, &gh, false).expect("ok");
        assert!(plan.source.contains("GitHub OIDC") && plan.why.contains("every renewal"));
        assert!(plan.is_client_credential());
        assert!(!format!("{plan:?}").contains("rt\""), "{plan:?}");

        let err =
            CredentialPlan::resolve(CredentialChoice::Secret, &MapEnvironment::default(), false)
                .unwrap_err();
        assert!(
            err.why.contains("AZURE_TENANT_ID, AZURE_CLIENT_ID"),
            "{err}"
        );
        let err = CredentialPlan::resolve(CredentialChoice::Workload, &ids, false).unwrap_err();
        assert!(err.why.contains("AZURE_FEDERATED_TOKEN_FILE"), "{err}");

        // Mock mode: the emulator serves client credentials only.
        for c in [CredentialChoice::Cli, CredentialChoice::ManagedIdentity] {
            let err = CredentialPlan::resolve(c, &MapEnvironment::default(), true).unwrap_err();
            assert!(err.why.contains("mock mode"), "{err}");
        }
        for c in [
            CredentialChoice::Auto,
            CredentialChoice::Secret,
            CredentialChoice::GithubOidc,
        ] {
            let plan = CredentialPlan::resolve(c, &MapEnvironment::default(), true).expect("mock");
            assert!(plan.is_client_credential(), "{c}");
        }
        // `auto` live keeps azure_identity's chain and says which source leads it.
        let plan = CredentialPlan::resolve(CredentialChoice::Auto, &gh, false).expect("auto");
        assert!(!plan.is_client_credential());
        assert!(plan.why.contains("github-oidc"), "{}", plan.why);
    }

    #[test]
    fn a_live_choice_cannot_be_pointed_at_the_emulator_unless_it_is_a_client_credential() {
        use cloudtest_core::skip::MapEnvironment;
        let plan =
            CredentialPlan::resolve(CredentialChoice::Cli, &MapEnvironment::default(), false)
                .expect("cli");
        let emulator = Authority::Emulator(url::Url::parse("http://127.0.0.1:1/").expect("url"));
        let err = plan.build(&emulator).unwrap_err().to_string();
        assert!(err.contains("mock mode"), "{err}");
    }

    #[tokio::test]
    async fn each_renewal_re_reads_the_token_file() {
        let (authority, seen) = entra(0).await;
        let dir = std::env::temp_dir().join(format!("ct-fed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "jwt-1\n").expect("write");
        let c = ClientAssertionCredential::new(
            authority,
            "tenant",
            "client",
            AssertionSource::TokenFile(file.clone()),
        );
        let t1 = c
            .get_token(&["https://management.azure.com/.default"])
            .await
            .expect("token");
        assert_eq!(t1.token.secret(), "at-for-jwt-1");
        // The platform rotates the file; an expired token is renewed with the new one.
        std::fs::write(&file, "jwt-2").expect("write");
        let t2 = c
            .get_token(&["https://management.azure.com/.default"])
            .await
            .expect("token");
        assert_eq!(t2.token.secret(), "at-for-jwt-2");
        assert_eq!(*seen.lock().expect("lock"), ["jwt-1", "jwt-2"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_valid_token_is_reused_and_refusals_keep_the_whole_aadsts_text() {
        let (authority, seen) = entra(3600).await;
        let dir = std::env::temp_dir().join(format!("ct-fed2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "jwt-1").expect("write");
        let c = ClientAssertionCredential::new(
            authority.clone(),
            "tenant",
            "client",
            AssertionSource::TokenFile(file.clone()),
        );
        for _ in 0..3 {
            c.get_token(&["s"]).await.expect("token");
        }
        assert_eq!(seen.lock().expect("lock").len(), 1, "cached while valid");

        std::fs::write(&file, "expired-jwt").expect("write");
        let c = ClientAssertionCredential::new(
            authority,
            "tenant",
            "client",
            AssertionSource::TokenFile(file),
        );
        let err = c.get_token(&["s"]).await.expect_err("refused").to_string();
        assert!(
            err.contains("AADSTS700024") && err.contains("valid time range"),
            "{err}"
        );
        assert!(err.contains("AZURE_FEDERATED_TOKEN_FILE"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
