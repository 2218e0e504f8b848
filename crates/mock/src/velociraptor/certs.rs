//! The per-run CA and the server certificate it signs, shaped like the ones Velociraptor
//! 0.77.2 makes (`crypto/ca.go`): RSA-2048 keys, a CA whose subject is only
//! `O=Velociraptor CA`, and a server certificate whose common name and only DNS name is the
//! pinned server name `VelociraptorServer` (no `localhost`: a client must pin the name).
//! Its listeners speak TLS 1.3 only, with the NIST curves only (`api/builder.go`).

use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_RSA_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name Velociraptor pins its server certificate to (`Client.pinned_server_name`).
pub const PINNED_SERVER_NAME: &str = "VelociraptorServer";

/// Key material for one emulator run.
pub struct ServerCertificates {
    /// The CA certificate the deployment "publishes" (PEM).
    pub ca_pem: String,
    /// The frontend certificate, what `GET /server.pem` returns (PEM).
    pub server_pem: String,
    pub server_der: CertificateDer<'static>,
    pub server_key: PrivateKeyDer<'static>,
}

impl ServerCertificates {
    /// A fresh CA (its own key: a CA with another run's key would verify this server) and a
    /// server certificate for `VelociraptorServer` only. The server's key is made once per
    /// process, since RSA generation costs about half a second in a debug build.
    pub fn generate() -> Result<Self, rcgen::Error> {
        // Two RSA-2048 keys are most of a mock run's start-up; made side by side they cost
        // the slower one instead of both.
        let (ca_key, server_key) = std::thread::scope(|s| {
            let ca = s.spawn(|| KeyPair::generate_for(&PKCS_RSA_SHA256));
            let server = process_server_key();
            let ca = ca
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (ca, server)
        });
        let (ca_key, server_key) = (ca_key?, server_key?);
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        // rcgen starts every subject with a CN of its own; Velociraptor's CA has none.
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "Velociraptor CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let mut params = CertificateParams::new(vec![PINNED_SERVER_NAME.to_string()])?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, PINNED_SERVER_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Velociraptor");
        let server_cert = params.signed_by(&server_key, &ca_cert, &ca_key)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            server_pem: server_cert.pem(),
            server_der: server_cert.der().clone(),
            server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        })
    }
}

/// This process's RSA-2048 server key.
fn process_server_key() -> Result<KeyPair, rcgen::Error> {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    let der = match KEY.get() {
        Some(der) => der,
        None => {
            let made = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
            // Two racing first calls both generate; either key is as good.
            KEY.get_or_init(|| made.serialize_der())
        }
    };
    KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &PKCS_RSA_SHA256,
    )
}

/// The listeners' TLS: 1.3 only; key exchange on P-384 and P-256 only (the real server also
/// offers P-521, which rustls lacks; it offers no X25519, so a rustls client's first key
/// share is refused with a HelloRetryRequest, as by the real server).
pub fn velociraptor_tls_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups.retain(|g| {
        matches!(
            g.name(),
            rustls::NamedGroup::secp384r1 | rustls::NamedGroup::secp256r1
        )
    });
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(Arc::new(config))
}
