//! Credentials that last a whole run: a client-assertion credential (Microsoft Entra ID
//! `client_credentials` grant with a federated JWT as `client_assertion`) that fetches a
//! fresh assertion every time it renews its access token. The Azure CLI cannot renew a
//! federated login (AADSTS700024 after 60–90 minutes, Azure/azure-cli#28708), and
//! azure_identity 0.21's `WorkloadIdentityCredential` reads the token file once.
//!
//! Assertion sources: GitHub Actions' OIDC endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL` with
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, audience `api://AzureADTokenExchange`) or a token file
//! re-read at each renewal (`AZURE_FEDERATED_TOKEN_FILE`: GitLab, Kubernetes).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use cloudtest_core::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;

/// The audience Entra ID expects in a federated assertion.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Renew this long before the access token expires.
const RENEW_BEFORE: time::Duration = time::Duration::minutes(5);

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
}

impl AssertionSource {
    pub fn describe(&self) -> &'static str {
        match self {
            AssertionSource::GitHubOidc { .. } => "GitHub OIDC (ACTIONS_ID_TOKEN_REQUEST_URL)",
            AssertionSource::TokenFile(_) => "workload identity (AZURE_FEDERATED_TOKEN_FILE)",
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Secret, String> {
        match self {
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
                let body = response.text().await.unwrap_or_default();
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
        Arc::new(Self {
            authority,
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            source,
            http: reqwest::Client::new(),
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
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.expose()),
        ];
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
                time::OffsetDateTime::now_utc() + time::Duration::seconds(secs),
            )),
            // The whole description: it carries the AADSTS code and what to do.
            _ => Err(format!(
                "Entra ID refused the {} assertion (HTTP {status}): {}: {}",
                self.source.describe(),
                answer.error.unwrap_or_else(|| "(no error)".into()),
                answer
                    .error_description
                    .unwrap_or_else(|| "(no description)".into())
            )),
        }
    }
}

#[async_trait]
impl TokenCredential for ClientAssertionCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        let now = time::OffsetDateTime::now_utc();
        if let Some((t, issued)) = cached.as_ref() {
            let margin = RENEW_BEFORE.min((t.expires_on - *issued) / 2);
            if t.expires_on - margin > now {
                return Ok(t.clone());
            }
        }
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
