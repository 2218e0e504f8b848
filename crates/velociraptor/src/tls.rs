//! HTTPS clients pinned to the deployment's CA.
//!
//! Velociraptor's certificates are issued by its own CA for the name `VelociraptorServer`,
//! not for the host's address. So each client trusts only the published CA (no built-in
//! roots), talks to `https://VelociraptorServer:PORT/` and resolves that name itself to the
//! server's address. Verification is never turned off; when it fails, [`crate::diagnose`]
//! explains why.

use std::net::SocketAddr;
use std::time::Duration;

use cloudtest_core::outputs::first_pem_der;
use reqwest::{Client, RequestBuilder, Response, Url};

use crate::diagnose::{diagnose, is_certificate_error, DiagnoseTarget, Diagnosis, TlsMismatch};
use crate::errors::{secs, ProbeError};

/// One HTTPS endpoint (frontend or GUI) reached through the pinned name.
#[derive(Debug)]
pub struct PinnedEndpoint {
    client: Client,
    /// Base URL with the pinned name as host, ending in `/`.
    base: Url,
    /// The URL as published or given, for messages.
    shown: String,
    addr: SocketAddr,
    pinned_name: String,
    ca_pem: String,
    request_timeout: Duration,
}

/// How a single request failed.
#[derive(Debug)]
pub enum RequestFailure {
    /// The certificate was refused; retrying will not help.
    Tls(TlsMismatch),
    /// Anything transient (refused, reset, timed out), described for the timeout message.
    Transport(String),
}

/// What a [`PinnedEndpoint`] needs to know.
pub struct EndpointSpec<'a> {
    /// `frontend` or `GUI`, for messages.
    pub what: &'static str,
    pub url: &'a str,
    /// Host to connect to instead of the URL's (the deployment's server address).
    pub connect_host: Option<&'a str>,
    pub pinned_name: &'a str,
    pub ca_pem: &'a str,
    pub request_timeout: Duration,
}

impl PinnedEndpoint {
    pub async fn new(spec: EndpointSpec<'_>) -> Result<Self, ProbeError> {
        let invalid = |why: String| ProbeError::InvalidUrl {
            what: spec.what,
            url: spec.url.to_string(),
            why,
        };
        let url = Url::parse(spec.url.trim()).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != "https" {
            return Err(invalid("expected an https:// URL".into()));
        }
        let url_host = url
            .host_str()
            .ok_or_else(|| invalid("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("no port".into()))?;
        let host = spec.connect_host.map(str::to_string).unwrap_or(url_host);
        let addr = resolve(spec.what, &host, port).await?;

        let mut base = url.clone();
        base.set_host(Some(spec.pinned_name)).map_err(|e| {
            invalid(format!(
                "pinned server name `{}` cannot be a host name: {e}",
                spec.pinned_name
            ))
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);

        check_trust_anchor(spec.ca_pem)?;
        let ca = reqwest::Certificate::from_pem(spec.ca_pem.as_bytes())
            .map_err(|e| ProbeError::InvalidCa { why: e.to_string() })?;
        let client = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .https_only(true)
            // A redirect is an answer to judge (the GUI's auth check), not a place to go.
            .redirect(reqwest::redirect::Policy::none())
            // The pinned name resolves only here; a proxy could not reach it.
            .no_proxy()
            .resolve(spec.pinned_name, addr)
            .timeout(spec.request_timeout)
            .connect_timeout(spec.request_timeout)
            .build()
            .map_err(|source| ProbeError::Client {
                url: spec.url.to_string(),
                source,
            })?;
        Ok(Self {
            client,
            base,
            shown: spec.url.trim().to_string(),
            addr,
            pinned_name: spec.pinned_name.to_string(),
            ca_pem: spec.ca_pem.to_string(),
            request_timeout: spec.request_timeout,
        })
    }

    /// `path` (no leading slash) under the endpoint's base URL, with the pinned host.
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone())
    }

    /// The same URL with the published host, for messages.
    pub fn shown(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.shown.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    /// Sends `request`; a refused certificate is diagnosed into a [`TlsMismatch`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, RequestFailure> {
        let error = match request.send().await {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        if is_certificate_error(&error) {
            let diagnosis = diagnose(DiagnoseTarget {
                addr: self.addr,
                endpoint: &self.shown,
                pinned_name: &self.pinned_name,
                ca_pem: &self.ca_pem,
                timeout: self.request_timeout,
            })
            .await;
            match diagnosis {
                Diagnosis::Rejected(m) => return Err(RequestFailure::Tls(m)),
                Diagnosis::Verified => {
                    tracing::debug!("certificate verified on a second handshake: {error}")
                }
                Diagnosis::Inconclusive(why) => {
                    tracing::debug!("TLS diagnosis inconclusive: {why}")
                }
            }
        }
        Err(RequestFailure::Transport(describe(
            &error,
            self.request_timeout,
        )))
    }
}

/// Refuses a CA that rustls could not use as a trust anchor, before any connection.
fn check_trust_anchor(ca_pem: &str) -> Result<(), ProbeError> {
    let der = first_pem_der(ca_pem).map_err(|why| ProbeError::InvalidCa { why })?;
    let der = rustls::pki_types::CertificateDer::from(der);
    webpki::anchor_from_trusted_cert(&der).map_err(|e| ProbeError::InvalidCa {
        why: format!("not a parsable X.509 certificate ({e})"),
    })?;
    Ok(())
}

async fn resolve(what: &'static str, host: &str, port: u16) -> Result<SocketAddr, ProbeError> {
    let resolve_error = |source| ProbeError::Resolve {
        what,
        host: host.to_string(),
        source,
    };
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(resolve_error)?;
    addrs.next().ok_or_else(|| {
        resolve_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address found",
        ))
    })
}

/// A short, human description of a transport failure: the innermost cause says most.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {}", secs(timeout));
    }
    let mut innermost: &dyn std::error::Error = error;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    let kind = if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {innermost}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";

    fn spec(url: &str) -> EndpointSpec<'_> {
        EndpointSpec {
            what: "frontend",
            url,
            connect_host: None,
            pinned_name: "VelociraptorServer",
            ca_pem: CA,
            request_timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn rejects_a_ca_that_is_not_a_certificate() {
        let err = PinnedEndpoint::new(spec("https://127.0.0.1:8000"))
            .await
            .expect_err("placeholder CA");
        assert!(matches!(err, ProbeError::InvalidCa { .. }), "{err}");
    }

    #[tokio::test]
    async fn rejects_plain_http_and_garbage_urls() {
        for bad in ["http://127.0.0.1:8000", "not a url", "https://"] {
            let err = PinnedEndpoint::new(spec(bad)).await.expect_err(bad);
            assert!(matches!(err, ProbeError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }
}
