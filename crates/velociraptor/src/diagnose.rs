//! Turning a failed TLS verification into words a user understands.
//!
//! When a pinned request fails on the certificate, we open one more raw TLS connection with
//! a verifier that records the chain the server presented and then delegates to the same
//! webpki verification (so it rejects exactly what the probe rejected, and never accepts
//! anything the probe would not). From the recorded chain and the rustls error we say what
//! was presented, what was expected and why it does not match.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudtest_core::outputs::{der_fingerprint, first_pem_der, pem_fingerprint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why the presented certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MismatchReason {
    /// Not issued by the published CA (another CA, a regenerated CA, a different host).
    NotSignedByCa,
    /// Issued by the published CA but not for the pinned server name.
    NameMismatch,
    Expired,
    NotYetValid,
    /// Anything else rustls rejected, in its words.
    Other(String),
}

/// A refused server certificate, described for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMismatch {
    pub reason: MismatchReason,
    /// The URL that was being probed, as the user gave or the deployment published it.
    pub endpoint: String,
    /// SHA-256 fingerprints of the presented chain, leaf first.
    pub presented: Vec<String>,
    /// DNS names the presented leaf certificate carries.
    pub presented_names: Vec<String>,
    /// Fingerprint of the CA the deployment published.
    pub expected_ca: String,
    pub pinned_name: String,
}

impl fmt::Display for TlsMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaf = self
            .presented
            .first()
            .map(String::as_str)
            .unwrap_or("(no certificate)");
        let names = if self.presented_names.is_empty() {
            "no DNS names".to_string()
        } else {
            self.presented_names.join(", ")
        };
        write!(f, "TLS verification of {} failed: ", self.endpoint)?;
        match &self.reason {
            MismatchReason::NotSignedByCa => {
                write!(
                    f,
                    "the server presented a certificate not signed by the CA this deployment \
                     published: fingerprint {leaf}"
                )?;
                if self.presented.len() > 1 {
                    write!(f, " (issuer chain: {})", self.presented[1..].join(", "))?;
                }
                write!(
                    f,
                    ", expected a certificate issued by CA {}. The server may have regenerated \
                     its CA, or another host answers at this address; verification was not relaxed",
                    self.expected_ca
                )
            }
            MismatchReason::NameMismatch => write!(
                f,
                "the server's certificate (fingerprint {leaf}) is signed by the published CA {} \
                 but is not issued for the pinned server name `{}` (it names: {names}); set \
                 PinnedServerName to the name the certificate carries",
                self.expected_ca, self.pinned_name
            ),
            MismatchReason::Expired => write!(
                f,
                "the server's certificate (fingerprint {leaf}) has expired; the server must \
                 renew its frontend certificate"
            ),
            MismatchReason::NotYetValid => write!(
                f,
                "the server's certificate (fingerprint {leaf}) is not valid yet; check the \
                 server's and this machine's clocks"
            ),
            MismatchReason::Other(why) => write!(
                f,
                "the server's certificate (fingerprint {leaf}, names: {names}) was rejected: \
                 {why}; expected a certificate for `{}` issued by CA {}",
                self.pinned_name, self.expected_ca
            ),
        }
    }
}

impl std::error::Error for TlsMismatch {}

/// What a second, recording handshake found.
#[derive(Debug)]
pub enum Diagnosis {
    /// The handshake verified: the original failure was not about the certificate.
    Verified,
    Rejected(TlsMismatch),
    /// No conclusion (unreachable, CA unusable); the reason, for logs.
    Inconclusive(String),
}

/// Where and how to redo the handshake.
pub struct DiagnoseTarget<'a> {
    pub addr: SocketAddr,
    pub endpoint: &'a str,
    pub pinned_name: &'a str,
    pub ca_pem: &'a str,
    pub timeout: Duration,
}

/// Records the presented chain, then verifies exactly as the probe does.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Redoes the handshake against `target` trusting only the published CA, and explains a
/// refusal.
pub async fn diagnose(target: DiagnoseTarget<'_>) -> Diagnosis {
    let expected_ca = match pem_fingerprint(target.ca_pem) {
        Ok(fp) => fp,
        Err(why) => return Diagnosis::Inconclusive(format!("published CA unusable: {why}")),
    };
    let verifier = match recording_verifier(target.ca_pem) {
        Ok(v) => v,
        Err(why) => return Diagnosis::Inconclusive(why),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        // `dangerous()` is only how rustls lets a custom verifier in: this one delegates
        // every decision to webpki and relaxes nothing.
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth(),
        Err(e) => return Diagnosis::Inconclusive(format!("TLS configuration: {e}")),
    };
    let server_name = match ServerName::try_from(target.pinned_name.to_string()) {
        Ok(n) => n,
        Err(e) => {
            return Diagnosis::Inconclusive(format!(
                "pinned server name `{}` is not a valid DNS name: {e}",
                target.pinned_name
            ))
        }
    };
    let handshake = async {
        let tcp = TcpStream::connect(target.addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
    };
    let error = match tokio::time::timeout(target.timeout, handshake).await {
        Err(_) => return Diagnosis::Inconclusive("TLS handshake timed out".into()),
        Ok(Ok(_stream)) => return Diagnosis::Verified,
        Ok(Err(e)) => e,
    };
    let Some(rustls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return Diagnosis::Inconclusive(format!("handshake failed: {error}"));
    };
    let reason = match rustls_error {
        rustls::Error::InvalidCertificate(cert_error) => classify(cert_error),
        rustls::Error::NoCertificatesPresented => {
            MismatchReason::Other("the server presented no certificate".into())
        }
        other => return Diagnosis::Inconclusive(format!("handshake failed: {other}")),
    };
    let chain = verifier
        .chain
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Diagnosis::Rejected(TlsMismatch {
        reason,
        endpoint: target.endpoint.to_string(),
        presented: chain.iter().map(|c| der_fingerprint(c)).collect(),
        presented_names: chain.first().map(dns_names).unwrap_or_default(),
        expected_ca,
        pinned_name: target.pinned_name.to_string(),
    })
}

fn recording_verifier(ca_pem: &str) -> Result<Arc<RecordingVerifier>, String> {
    let der = first_pem_der(ca_pem).map_err(|why| format!("published CA unusable: {why}"))?;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .map_err(|e| format!("published CA is not a usable trust anchor: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("building the certificate verifier: {e}"))?;
    Ok(Arc::new(RecordingVerifier {
        inner,
        chain: Mutex::new(Vec::new()),
    }))
}

fn classify(error: &CertificateError) -> MismatchReason {
    match error {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            MismatchReason::NotSignedByCa
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            MismatchReason::NameMismatch
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            MismatchReason::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            MismatchReason::NotYetValid
        }
        other => MismatchReason::Other(other.to_string()),
    }
}

/// DNS names in a certificate, for the message only (never used to decide trust).
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(cert)
        .map(|ee| ee.valid_dns_names().map(str::to_string).collect())
        .unwrap_or_default()
}

/// True when `error` (or anything it wraps) is rustls refusing a certificate.
pub fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return is_certificate_rustls_error(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // io::Error's source() skips the error it wraps, and connectors nest io::Errors.
            return io_wraps_certificate_error(io);
        }
        current = e.source();
    }
    false
}

fn io_wraps_certificate_error(io: &std::io::Error) -> bool {
    let mut inner = io.get_ref();
    while let Some(e) = inner {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return is_certificate_rustls_error(r);
        }
        inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
    }
    false
}

fn is_certificate_rustls_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(reason: MismatchReason) -> TlsMismatch {
        TlsMismatch {
            reason,
            endpoint: "https://203.0.113.7:8000/".into(),
            presented: vec!["aa:bb".into(), "cc:dd".into()],
            presented_names: vec!["VelociraptorServer".into()],
            expected_ca: "ee:ff".into(),
            pinned_name: "VelociraptorServer".into(),
        }
    }

    #[test]
    fn messages_name_both_fingerprints_and_what_to_do() {
        let m = mismatch(MismatchReason::NotSignedByCa).to_string();
        assert!(
            m.contains("not signed by the CA this deployment published"),
            "{m}"
        );
        assert!(m.contains("fingerprint aa:bb") && m.contains("cc:dd") && m.contains("ee:ff"));
        let m = mismatch(MismatchReason::NameMismatch).to_string();
        assert!(m.contains("pinned server name `VelociraptorServer`"), "{m}");
        assert!(m.contains("PinnedServerName"), "{m}");
    }

    #[test]
    fn classifies_rustls_certificate_errors() {
        assert_eq!(
            classify(&CertificateError::UnknownIssuer),
            MismatchReason::NotSignedByCa
        );
        assert_eq!(
            classify(&CertificateError::NotValidForName),
            MismatchReason::NameMismatch
        );
        assert_eq!(
            classify(&CertificateError::Expired),
            MismatchReason::Expired
        );
        assert!(matches!(
            classify(&CertificateError::Revoked),
            MismatchReason::Other(_)
        ));
    }

    #[test]
    fn finds_certificate_errors_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(is_certificate_error(&io));
        // How hyper-rustls hands it to reqwest: an io::Error inside an io::Error.
        let nested = std::io::Error::other(io);
        assert!(is_certificate_error(&nested));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&refused));
    }
}
