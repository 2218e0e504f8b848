//! The one place an AWS SDK configuration is built: region, endpoint, credentials, retries
//! and per-attempt timeouts. Nothing here knows whether the endpoint is AWS, moto or the
//! embedded emulator; the caller decides that by what it passes in.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_cloudformation::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, Builder, ConnectorBuilder};
use cloudtest_core::skip::{aws_credentials, Credentials as FoundCredentials, ProcessEnvironment};

/// Attempts per SDK call (first try included), in the SDK's standard retry mode: throttling,
/// 5xx, timeouts and dropped connections are retried with jittered exponential backoff.
/// Callers add no retries of their own for those: they ask again only for an answer that did
/// not parse ([`crate::AwsError::is_transient`]), and only inside the phase's deadline.
///
/// Not adaptive mode: its client-side rate limiter is shared by every client of a service in
/// the process and answers one `Throttling` with a multi-second pause and about one request
/// a second afterwards, which turns a short throttling burst in one lifecycle into phase
/// timeouts in all of them.
pub const MAX_ATTEMPTS: u32 = 5;

/// How to reach AWS (or something that speaks its APIs).
#[derive(Clone)]
pub struct AwsConnection {
    /// Send every call here (`--aws-endpoint`, LocalStack, moto, the embedded emulator).
    /// When `None`, aws-config still honours `AWS_ENDPOINT_URL` and the profile's
    /// `endpoint_url` on its own.
    pub endpoint: Option<String>,
    pub region: String,
    /// Access key id and secret access key, used instead of the default chain when given
    /// (the CLI gives fixed test keys in mock mode). `None`: the default chain (env vars,
    /// profiles, SSO, web identity/OIDC, container and instance credentials).
    pub static_credentials: Option<(String, String)>,
    /// Limit for one HTTP attempt; a hung response is abandoned and retried by the SDK.
    pub attempt_timeout: Duration,
}

impl std::fmt::Debug for AwsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConnection")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|_| "[redacted]"),
            )
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl AwsConnection {
    /// Names where credentials come from, for error messages ("which credential source was
    /// used"); never reads or prints a secret.
    pub fn credential_source(&self) -> String {
        credential_source(self.static_credentials.is_some())
    }
}

/// The credential source an error message should name.
pub(crate) fn credential_source(static_given: bool) -> String {
    if static_given {
        return "static credentials supplied by the caller".to_string();
    }
    match aws_credentials(&ProcessEnvironment) {
        FoundCredentials::Found { source } => format!("default chain: {source}"),
        FoundCredentials::Missing { looked_for } => {
            format!(
                "default chain (found none of: {looked_for}; instance/SSO roles may still apply)"
            )
        }
    }
}

/// The SDK's 1 s base backoff, shortened for callers that give attempts less than 4 s (the
/// emulators answer in milliseconds): retries back off `base × 2^n` with full jitter, and
/// three throttled answers at a 1 s base can cost up to 7 s, longer than a mock phase.
fn initial_backoff(attempt_timeout: Duration) -> Duration {
    (attempt_timeout / 4).min(Duration::from_secs(1))
}

/// The HTTPS client every SDK configuration of the process uses. Left to itself, every
/// service client builds its own and parses the platform's root certificates again: seven
/// clients a region between the preflight and the run, most of a many-region preflight's
/// time. Built as aws-smithy-runtime's default client is (rustls with aws-lc, the proxy from
/// `HTTPS_PROXY`/`NO_PROXY`), so a shared client behaves as each private one would have;
/// connectors are still made per timeout setting, from the settings each client passes.
fn shared_http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Builder::new().build_with_connector_fn(|settings, components| {
                let mut connector = ConnectorBuilder::default().tls_provider(
                    tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc),
                );
                connector.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    connector.set_sleep_impl(components.sleep_impl());
                }
                connector.set_proxy_config(Some(ProxyConfig::from_env()));
                connector.build()
            })
        })
        .clone()
}

/// Loads the SDK configuration once for every client of a lifecycle.
pub async fn load_sdk_config(conn: &AwsConnection) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared_http_client())
        .region(Region::new(conn.region.clone()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(initial_backoff(conn.attempt_timeout)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(conn.attempt_timeout)
                .build(),
        );
    if let Some(url) = &conn.endpoint {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some((key_id, secret)) = &conn.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            key_id.clone(),
            secret.clone(),
            None,
            None,
            "cloudtest-static",
        ));
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn config_carries_endpoint_region_retries_and_timeout() {
        let conn = AwsConnection {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "eu-west-1".into(),
            static_credentials: Some(("AKIDTEST".into(), "not-a-real-secret".into())),
            attempt_timeout: Duration::from_secs(7),
        };
        let sdk = load_sdk_config(&conn).await;
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:1"));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        // The process's one client, not a default built per service client.
        assert!(
            sdk.http_client().is_some(),
            "the shared HTTPS client is set"
        );
        let retry = sdk.retry_config().expect("retry config set");
        assert_eq!(retry.max_attempts(), MAX_ATTEMPTS);
        assert_eq!(retry.mode(), aws_config::retry::RetryMode::Standard);
        assert_eq!(retry.initial_backoff(), Duration::from_secs(1));
        assert_eq!(
            initial_backoff(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        let timeouts = sdk.timeout_config().expect("timeouts set");
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(7))
        );
        assert!(sdk.credentials_provider().is_some());
        assert!(!format!("{conn:?}").contains("not-a-real-secret"));
        assert_eq!(
            conn.credential_source(),
            "static credentials supplied by the caller"
        );
    }
}
