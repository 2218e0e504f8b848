//! How the provider reaches ARM: endpoint, subscription, credential, and the two clients
//! built from them (the generated management client and the plain HTTP client the LRO
//! poller uses). Mode (live, mock, replay) is decided by the caller, once, through these
//! values; nothing below knows which one it got.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use azure_identity::DefaultAzureCredentialBuilder;
use cloudtest_core::skip::Environment;
use cloudtest_core::Secret;

use crate::errors::AzureError;

/// The public-cloud ARM endpoint.
pub const PUBLIC_ARM_ENDPOINT: &str = "https://management.azure.com/";

/// Microsoft Entra ID's public-cloud authority host.
pub const PUBLIC_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// True for the public cloud's authority host (with or without the trailing slash).
pub fn is_public_authority(host: &str) -> bool {
    url::Url::parse(host.trim()).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case("login.microsoftonline.com"))
            && u.path().trim_matches('/').is_empty()
    })
}

/// The token scope for ARM. Always this one, even against another endpoint: the generated
/// client would otherwise derive the scope from the endpoint (`http://127.0.0.1:x/.default`),
/// which no token service issues.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// Everything needed to talk to one subscription.
#[derive(Clone)]
pub struct ArmConnection {
    /// `None` = the public cloud; `Some` = `--azure-endpoint` (emulator, replay server).
    pub endpoint: Option<url::Url>,
    pub subscription_id: String,
    pub credential: Arc<dyn TokenCredential>,
    /// Which credential source this is, for the one-line auth error
    /// ("workload identity (AZURE_FEDERATED_TOKEN_FILE)", "static token").
    pub credential_source: String,
}

impl fmt::Debug for ArmConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmConnection")
            .field("endpoint", &self.endpoint.as_ref().map(url::Url::as_str))
            .field("subscription_id", &self.subscription_id)
            .field("credential_source", &self.credential_source)
            .finish_non_exhaustive()
    }
}

impl ArmConnection {
    /// A connection with azure_identity's default chain (see [`live_credential`]).
    pub fn live(
        subscription_id: impl Into<String>,
        endpoint: Option<url::Url>,
        env: &dyn Environment,
    ) -> Result<Self, AzureError> {
        let subscription_id = subscription_id.into();
        check_live_target(&subscription_id, endpoint.as_ref(), env)?;
        Ok(Self {
            endpoint,
            subscription_id,
            credential: live_credential()?,
            credential_source: describe_live_source(env),
        })
    }

    /// A live connection with a chosen credential (e.g. a
    /// [`crate::credential::ClientAssertionCredential`]); `source` names it in errors.
    pub fn live_with_credential(
        subscription_id: impl Into<String>,
        endpoint: Option<url::Url>,
        env: &dyn Environment,
        credential: Arc<dyn TokenCredential>,
        source: impl Into<String>,
    ) -> Result<Self, AzureError> {
        let subscription_id = subscription_id.into();
        check_live_target(&subscription_id, endpoint.as_ref(), env)?;
        Ok(Self {
            endpoint,
            subscription_id,
            credential,
            credential_source: source.into(),
        })
    }

    /// A live connection with the credential `plan` resolved to (public-cloud Entra ID).
    pub fn live_with_plan(
        subscription_id: impl Into<String>,
        endpoint: Option<url::Url>,
        env: &dyn Environment,
        plan: &crate::credential::CredentialPlan,
    ) -> Result<Self, AzureError> {
        let subscription_id = subscription_id.into();
        // Before building: azure_identity's own credentials read AZURE_AUTHORITY_HOST.
        check_live_target(&subscription_id, endpoint.as_ref(), env)?;
        let credential = plan.build(&crate::credential::Authority::Public)?;
        Self::live_with_credential(
            subscription_id,
            endpoint,
            env,
            credential,
            plan.source.clone(),
        )
    }

    /// A connection to an emulator (`endpoint`) whose Entra-like token endpoint
    /// (`authority`) issues the tokens, through the same credential code as a live run
    /// (mock mode only).
    pub fn emulated(
        subscription_id: impl Into<String>,
        endpoint: url::Url,
        authority: url::Url,
        plan: &crate::credential::CredentialPlan,
    ) -> Result<Self, AzureError> {
        let credential = plan.build(&crate::credential::Authority::Emulator(authority))?;
        Ok(Self {
            endpoint: Some(endpoint),
            subscription_id: subscription_id.into(),
            credential,
            credential_source: plan.source.clone(),
        })
    }

    /// A connection with a fixed bearer token (emulators and replay servers).
    pub fn with_static_token(
        subscription_id: impl Into<String>,
        endpoint: url::Url,
        token: &str,
    ) -> Self {
        Self {
            endpoint: Some(endpoint),
            subscription_id: subscription_id.into(),
            credential: static_token_credential(token),
            credential_source: "static token".into(),
        }
    }

    /// The endpoint every ARM call goes to.
    pub fn base_url(&self) -> Result<url::Url, AzureError> {
        match &self.endpoint {
            Some(u) => Ok(u.clone()),
            None => url::Url::parse(PUBLIC_ARM_ENDPOINT).map_err(|e| AzureError::Endpoint {
                endpoint: PUBLIC_ARM_ENDPOINT.into(),
                why: e.to_string(),
            }),
        }
    }
}

/// A live run: a subscription, an https ARM endpoint, and the public cloud's authority
/// (a non-public `AZURE_AUTHORITY_HOST` is accepted only by mock wiring, which never
/// comes here).
fn check_live_target(
    subscription_id: &str,
    endpoint: Option<&url::Url>,
    env: &dyn Environment,
) -> Result<(), AzureError> {
    if subscription_id.trim().is_empty() {
        return Err(AzureError::NoSubscription);
    }
    if let Some(e) = endpoint.as_ref().filter(|e| e.scheme() != "https") {
        return Err(AzureError::Endpoint {
            endpoint: e.as_str().to_string(),
            why: "a live run sends its bearer token there, so it must be https".into(),
        });
    }
    if let Some(host) = env.var("AZURE_AUTHORITY_HOST") {
        if !is_public_authority(&host) {
            return Err(AzureError::Endpoint {
                    endpoint: format!("AZURE_AUTHORITY_HOST={host}"),
                    why: format!(
                        "only the public cloud ({PUBLIC_AUTHORITY_HOST}) is supported; sovereign clouds need another ARM endpoint and token scope, which cloudtest does not derive. Unset AZURE_AUTHORITY_HOST or use a public-cloud subscription"
                    ),
                });
        }
    }
    Ok(())
}

/// An error and every error below it, on one line: azure_identity puts the AADSTS code
/// and Entra's message in an inner error or on a later line, and both must reach the user.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        "no detail".into()
    } else {
        parts.join(": ")
    }
}

/// azure_identity's default chain: environment (workload identity federation via
/// `AZURE_FEDERATED_TOKEN_FILE`, then client secret), App Service and VM managed identity,
/// then the Azure CLI login. No network call happens here; the first token request does.
pub fn live_credential() -> Result<Arc<dyn TokenCredential>, AzureError> {
    let chain =
        DefaultAzureCredentialBuilder::new()
            .build()
            .map_err(|e| AzureError::Credential {
                source_name: LIVE_SOURCES.into(),
                message: error_chain(&e),
            })?;
    Ok(Arc::new(chain))
}

/// Names of the sources the default chain tries, in its order.
pub const LIVE_SOURCES: &str = "azure_identity default chain (workload identity \
    AZURE_FEDERATED_TOKEN_FILE, client secret AZURE_CLIENT_SECRET, managed identity, Azure CLI)";

/// Which live source will answer first, judged from the environment the way the chain does.
pub fn describe_live_source(env: &dyn Environment) -> String {
    let tenant_client =
        env.var("AZURE_TENANT_ID").is_some() && env.var("AZURE_CLIENT_ID").is_some();
    let source = if tenant_client && env.var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        "workload identity federation (AZURE_FEDERATED_TOKEN_FILE)"
    } else if tenant_client && env.var("AZURE_CLIENT_SECRET").is_some() {
        "client secret (AZURE_CLIENT_SECRET)"
    } else if env.var("IDENTITY_ENDPOINT").is_some() || env.var("MSI_ENDPOINT").is_some() {
        "managed identity"
    } else {
        "managed identity (IMDS) or Azure CLI login"
    };
    source.to_string()
}

/// A credential that always returns the same bearer token, for emulators and replay.
pub fn static_token_credential(token: &str) -> Arc<dyn TokenCredential> {
    Arc::new(StaticTokenCredential {
        token: Secret::new(token),
    })
}

struct StaticTokenCredential {
    token: Secret,
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticTokenCredential([redacted])")
    }
}

#[async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        Ok(AccessToken::new(self.token.expose().to_string(), expires))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

/// The clients one provider uses, sharing one `reqwest::Client` (one connection pool,
/// rustls with the platform's webpki roots).
#[derive(Clone)]
pub(crate) struct ArmClients {
    pub mgmt: azure_mgmt_resources::package_resources_2021_04::Client,
    pub http: reqwest::Client,
    pub conn: ArmConnection,
}

impl ArmClients {
    pub fn new(conn: ArmConnection) -> Result<Self, AzureError> {
        // No client-side timeouts: phase deadlines bound every wait, and a timer here would
        // fire early under tests' paused tokio clock.
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| AzureError::Endpoint {
                endpoint: "HTTP client".into(),
                why: e.to_string(),
            })?;
        let transport = azure_core::TransportOptions::new(Arc::new(http.clone()));
        // The pipeline retries 408/429/5xx and honours Retry-After on 429/503; cap it well
        // below a phase deadline so a throttled call cannot eat the whole phase. ARM sends
        // Retry-After with every 429 and the pipeline waits at least that long, so the
        // exponential part (initial × 2^n from the first retry) only spaces out 5xx and
        // transport retries: a 500 ms start made three throttled answers cost 7 s.
        let retry = azure_core::RetryOptions::exponential(azure_core::ExponentialRetryOptions {
            initial_delay: Duration::from_millis(100),
            max_retries: 5,
            max_total_elapsed: Duration::from_secs(120),
            max_delay: Duration::from_secs(30),
        });
        let mut builder = azure_mgmt_resources::package_resources_2021_04::Client::builder(
            conn.credential.clone(),
        )
        .scopes(&[ARM_SCOPE])
        .transport(transport)
        .retry(retry);
        if let Some(endpoint) = &conn.endpoint {
            builder = builder.endpoint(endpoint.clone());
        }
        let mgmt = builder.build().map_err(|e| AzureError::Endpoint {
            endpoint: conn
                .endpoint
                .as_ref()
                .map_or(PUBLIC_ARM_ENDPOINT.to_string(), |u| u.to_string()),
            why: e.to_string(),
        })?;
        Ok(Self { mgmt, http, conn })
    }

    /// Classifies an error from the generated client for `operation`.
    pub fn sdk_error(&self, operation: &str, e: azure_core::Error) -> AzureError {
        AzureError::from_sdk(
            operation,
            &self.conn.credential_source,
            &self.conn.subscription_id,
            e,
        )
    }

    /// A bearer token for ARM, or the one-line credential error naming the source.
    pub async fn bearer(&self) -> Result<Secret, AzureError> {
        self.conn
            .credential
            .get_token(&[ARM_SCOPE])
            .await
            .map(|t| Secret::new(t.token.secret()))
            .map_err(|e| AzureError::Credential {
                source_name: self.conn.credential_source.clone(),
                message: error_chain(&e),
            })
    }
}

impl ArmClients {
    /// Refuses to send the bearer token anywhere but the configured ARM endpoint: same
    /// scheme, host and port. A status URL naming any other host (a compromised or spoofed
    /// `Azure-AsyncOperation`/`Location` header) would otherwise receive the token.
    pub fn check_token_destination(&self, url: &url::Url) -> Result<(), AzureError> {
        let base = self.conn.base_url()?;
        if same_origin(&base, url) {
            Ok(())
        } else {
            Err(AzureError::UntrustedUrl {
                url: url.as_str().to_string(),
                endpoint: base.as_str().to_string(),
            })
        }
    }

    /// One ARM request made here rather than through the generated client (status URLs,
    /// calls with parameters the 0.21 client lacks), with the token only for the ARM host.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: url::Url,
        operation: &str,
    ) -> Result<reqwest::Response, AzureError> {
        self.call_with_body(method, url, operation, None).await
    }

    /// [`ArmClients::call`] with a JSON body.
    pub async fn call_with_body(
        &self,
        method: reqwest::Method,
        url: url::Url,
        operation: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, AzureError> {
        self.check_token_destination(&url)?;
        let token = self.bearer().await?;
        let mut request = self.http.request(method, url).bearer_auth(token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|e| AzureError::Transport {
            operation: operation.into(),
            message: first_line(&e.to_string()),
        })
    }
}

/// Same scheme, host (case-insensitively) and port.
pub(crate) fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The first non-empty line of an SDK error (its aggregate errors run over many lines).
pub(crate) fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no detail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudtest_core::skip::MapEnvironment;

    #[tokio::test]
    async fn static_token_is_returned_for_any_scope_and_hidden_in_debug() {
        let c = static_token_credential("tok-123");
        let t = c.get_token(&[ARM_SCOPE]).await.expect("token");
        assert_eq!(t.token.secret(), "tok-123");
        assert!(!format!("{c:?}").contains("tok-123"));
    }

    #[test]
    fn live_source_follows_the_chain_order() {
        let base = MapEnvironment::default()
            .with("AZURE_TENANT_ID", "t")
            .with("AZURE_CLIENT_ID", "c");
        let both = base
            .clone()
            .with("AZURE_FEDERATED_TOKEN_FILE", "/f")
            .with("AZURE_CLIENT_SECRET", "s");
        assert!(describe_live_source(&both).contains("workload identity"));
        let secret = base.with("AZURE_CLIENT_SECRET", "s");
        assert!(describe_live_source(&secret).contains("AZURE_CLIENT_SECRET"));
        let none = MapEnvironment::default();
        assert!(describe_live_source(&none).contains("Azure CLI"));
    }

    #[test]
    fn live_mode_refuses_plain_http_endpoints_and_sovereign_authorities() {
        let env = MapEnvironment::default();
        let http = url::Url::parse("http://arm.example:8080/").expect("url");
        let err = ArmConnection::live("sub", Some(http), &env).unwrap_err();
        assert!(err.to_string().contains("must be https"), "{err}");
        let https = url::Url::parse("https://arm.example/").expect("url");
        assert!(ArmConnection::live("sub", Some(https), &env).is_ok());

        let china = MapEnvironment::default()
            .with("AZURE_AUTHORITY_HOST", "https://login.chinacloudapi.cn/");
        let err = ArmConnection::live("sub", None, &china).unwrap_err();
        assert!(err.to_string().contains("only the public cloud"), "{err}");
        let public = MapEnvironment::default()
            .with("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com");
        assert!(ArmConnection::live("sub", None, &public).is_ok());
    }

    #[test]
    fn empty_subscription_is_refused_before_any_call() {
        let err = ArmConnection::live(" ", None, &MapEnvironment::default()).unwrap_err();
        assert!(err.to_string().contains("AZURE_SUBSCRIPTION_ID"), "{err}");
    }
}
