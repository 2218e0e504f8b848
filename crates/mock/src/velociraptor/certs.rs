//! The per-run CA and the server certificate it signs, shaped like the ones
//! `velociraptor config generate` makes: a self-signed CA and a frontend certificate whose
//! DNS name is the pinned server name `VelociraptorServer`, not a real host name.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
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
    /// A fresh CA and a server certificate for `VelociraptorServer` and `localhost`.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cloudtest emulated Velociraptor CA");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "Velociraptor CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            PINNED_SERVER_NAME.to_string(),
            "localhost".to_string(),
        ])?;
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
