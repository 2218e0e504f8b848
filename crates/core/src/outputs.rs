//! One parser for the outputs both templates publish, so CLOUD-01 and CLOUD-02 fill the
//! same [`DeploymentFacts`] and CLOUD-03 compares like with like.
//!
//! Output names are matched case-insensitively (CloudFormation writes `ServerAddress`, ARM
//! `serverAddress`). The contract:
//!
//! | output | meaning |
//! |---|---|
//! | `ServerAddress` | public IP or DNS name of the server |
//! | `FrontendUrl` | `https://<address>:<frontend port>/` |
//! | `GuiUrl` | `https://<address>:<gui port>/` |
//! | `CaCertificate` | the CA the server generated, published at boot through the cloud API (see below) |
//! | `CaFingerprint` | optional: SHA-256 of the CA's DER; when present it must match |
//! | `ExpectedClients` | number of clients the template deploys |
//! | `VelociraptorVersion` | the pinned release the template installed |
//! | `PinnedServerName` | optional: DNS name in the server certificate, default `VelociraptorServer` |
//!
//! `CaCertificate` may be a PEM, base64 of a PEM, a CloudFormation wait-condition `Data`
//! object (`{"<id>":"<base64 PEM>"}`), or a script status message that contains a line
//! `CLOUDTEST_CA_B64=<base64 PEM>` (ARM CustomScript extension output).

use std::collections::BTreeMap;

use base64::Engine;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::facts::{DeploymentFacts, ResourceRef};
use crate::secret::Secret;

pub const DEFAULT_PINNED_SERVER_NAME: &str = "VelociraptorServer";

/// Output names the providers require; `cloudtest plan` and template checks use this list.
pub const REQUIRED_OUTPUTS: [&str; 6] = [
    "ServerAddress",
    "FrontendUrl",
    "GuiUrl",
    "CaCertificate",
    "ExpectedClients",
    "VelociraptorVersion",
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OutputError {
    #[error("the deployment has no output `{name}` (the template must publish it; outputs present: {present})")]
    Missing { name: String, present: String },
    #[error("output `{name}` is malformed: {why} (value: {value:?})")]
    Malformed {
        name: String,
        why: String,
        value: String,
    },
}

/// Credentials and expectations that do not come from the outputs.
#[derive(Debug, Clone)]
pub struct OutputContext {
    pub admin_user: String,
    pub admin_password: Secret,
    pub resources: Vec<ResourceRef>,
}

/// Turns a provider's output map into [`DeploymentFacts`], naming the first missing or
/// malformed output.
pub fn parse_outputs(
    outputs: &BTreeMap<String, String>,
    ctx: OutputContext,
) -> Result<DeploymentFacts, OutputError> {
    let lookup = |name: &str| -> Option<&String> {
        outputs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let present = || {
        let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let need = |name: &str| -> Result<&String, OutputError> {
        lookup(name).ok_or_else(|| OutputError::Missing {
            name: name.to_string(),
            present: present(),
        })
    };
    let malformed = |name: &str, why: &str, value: &str| OutputError::Malformed {
        name: name.to_string(),
        why: why.to_string(),
        value: value.chars().take(120).collect(),
    };

    let server_address = need("ServerAddress")?.trim().to_string();
    if server_address.is_empty() {
        return Err(malformed("ServerAddress", "empty", ""));
    }
    let frontend_url = need("FrontendUrl")?.trim().to_string();
    let frontend_port =
        https_port(&frontend_url).map_err(|why| malformed("FrontendUrl", &why, &frontend_url))?;
    let gui_url = need("GuiUrl")?.trim().to_string();
    let gui_port = https_port(&gui_url).map_err(|why| malformed("GuiUrl", &why, &gui_url))?;

    let ca_raw = need("CaCertificate")?;
    let ca_pem = decode_ca(ca_raw).map_err(|why| malformed("CaCertificate", &why, ca_raw))?;
    let ca_fingerprint =
        pem_fingerprint(&ca_pem).map_err(|why| malformed("CaCertificate", &why, ca_raw))?;
    if let Some(published) = lookup("CaFingerprint") {
        if normalise_fingerprint(published) != ca_fingerprint {
            return Err(malformed(
                "CaFingerprint",
                &format!("does not match the published CA certificate ({ca_fingerprint})"),
                published,
            ));
        }
    }

    let expected_raw = need("ExpectedClients")?;
    let expected_clients: u32 = expected_raw
        .trim()
        .parse()
        .map_err(|_| malformed("ExpectedClients", "not a whole number", expected_raw))?;
    let version_raw = need("VelociraptorVersion")?;
    let velociraptor_version = version_raw.trim().trim_start_matches('v').to_string();
    if velociraptor_version.is_empty() || !velociraptor_version.contains('.') {
        return Err(malformed(
            "VelociraptorVersion",
            "expected a release such as 0.77.2",
            version_raw,
        ));
    }
    let pinned_server_name = lookup("PinnedServerName")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_PINNED_SERVER_NAME.to_string());

    let raw_outputs = outputs
        .iter()
        .filter(|(k, _)| !k.to_ascii_lowercase().contains("password"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    Ok(DeploymentFacts {
        server_address,
        frontend_url,
        gui_url,
        frontend_port,
        gui_port,
        ca_pem,
        ca_fingerprint,
        pinned_server_name,
        expected_clients,
        velociraptor_version,
        admin_user: ctx.admin_user,
        admin_password: ctx.admin_password,
        raw_outputs,
        resources: ctx.resources,
    })
}

fn https_port(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| "expected an https:// URL".to_string())?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("no host in URL".into());
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => port
            .parse::<u16>()
            .map_err(|_| format!("port `{port}` is not a number 1-65535")),
        _ => Ok(443),
    }
}

/// Accepts the encodings listed in the module docs and returns a PEM.
pub fn decode_ca(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.contains("-----BEGIN CERTIFICATE-----") && !raw.contains("CLOUDTEST_CA_B64=") {
        return Ok(raw.to_string());
    }
    if let Some(idx) = raw.find("CLOUDTEST_CA_B64=") {
        let b64: String = raw[idx + "CLOUDTEST_CA_B64=".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
            .collect();
        return decode_b64_pem(&b64);
    }
    if raw.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("not valid JSON: {e}"))?;
        let first = value
            .as_object()
            .and_then(|o| o.values().find_map(|v| v.as_str()))
            .ok_or_else(|| "wait-condition data has no string value".to_string())?;
        return decode_ca(first);
    }
    decode_b64_pem(raw)
}

fn decode_b64_pem(b64: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not PEM and not base64: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| "base64 does not decode to text".to_string())?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err("decoded value is not a PEM certificate".into());
    }
    Ok(text)
}

/// SHA-256 fingerprint of the first certificate in a PEM, as `aa:bb:...`.
pub fn pem_fingerprint(pem: &str) -> Result<String, String> {
    let der = first_pem_der(pem)?;
    Ok(der_fingerprint(&der))
}

pub fn der_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// DER bytes of the first `CERTIFICATE` block in a PEM.
pub fn first_pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = pem
        .find(begin)
        .ok_or_else(|| "no BEGIN CERTIFICATE line".to_string())?;
    let body_start = start + begin.len();
    let stop = pem[body_start..]
        .find(end)
        .ok_or_else(|| "no END CERTIFICATE line".to_string())?;
    let body: String = pem[body_start..body_start + stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("certificate body is not base64: {e}"))
}

/// Lower-case, colon-separated form of a fingerprint written any common way.
pub fn normalise_fingerprint(s: &str) -> String {
    let hex: String = s
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .trim_start_matches("SHA256 Fingerprint=")
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase();
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    // A syntactically valid PEM wrapper; the engine only hashes the DER, it does not parse it.
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";

    fn ctx() -> OutputContext {
        OutputContext {
            admin_user: "admin".into(),
            admin_password: Secret::new("pw"),
            resources: vec![],
        }
    }

    fn full() -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("ServerAddress".into(), "203.0.113.7".into());
        m.insert("FrontendUrl".into(), "https://203.0.113.7:8000/".into());
        m.insert("guiUrl".into(), "https://203.0.113.7:8889".into());
        m.insert("CaCertificate".into(), PEM.into());
        m.insert("ExpectedClients".into(), "1".into());
        m.insert("VelociraptorVersion".into(), "v0.77.2".into());
        m
    }

    #[test]
    fn parses_all_outputs_case_insensitively() {
        let f = parse_outputs(&full(), ctx()).expect("valid outputs");
        assert_eq!(f.frontend_port, 8000);
        assert_eq!(f.gui_port, 8889);
        assert_eq!(f.velociraptor_version, "0.77.2");
        assert_eq!(f.pinned_server_name, "VelociraptorServer");
        assert_eq!(f.ca_fingerprint.len(), 95);
    }

    #[test]
    fn names_the_missing_output() {
        let mut m = full();
        m.remove("CaCertificate");
        let err = parse_outputs(&m, ctx()).unwrap_err();
        assert!(matches!(&err, OutputError::Missing { name, .. } if name == "CaCertificate"));
        assert!(err.to_string().contains("ServerAddress"), "{err}");
    }

    #[test]
    fn rejects_malformed_values_by_name() {
        let mut m = full();
        m.insert("ExpectedClients".into(), "one".into());
        let err = parse_outputs(&m, ctx()).unwrap_err();
        assert!(err.to_string().contains("ExpectedClients"), "{err}");
        let mut m = full();
        m.insert("FrontendUrl".into(), "http://x:8000".into());
        let err = parse_outputs(&m, ctx()).unwrap_err();
        assert!(err.to_string().contains("FrontendUrl"), "{err}");
    }

    #[test]
    fn ca_encodings_all_decode_to_the_same_pem() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        let forms = [
            PEM.to_string(),
            b64.clone(),
            format!("{{\"ca\":\"{b64}\"}}"),
            format!("Enable succeeded: \n[stdout]\nCLOUDTEST_CA_B64={b64}\n[stderr]\n"),
        ];
        let want = pem_fingerprint(PEM).expect("fingerprint");
        for f in forms {
            let pem = decode_ca(&f).expect("decodes");
            assert_eq!(pem_fingerprint(&pem).expect("fp"), want, "form {f}");
        }
    }

    #[test]
    fn fingerprint_mismatch_is_an_error() {
        let mut m = full();
        m.insert("CaFingerprint".into(), "00".repeat(32));
        let err = parse_outputs(&m, ctx()).unwrap_err();
        assert!(err.to_string().contains("CaFingerprint"), "{err}");
        let mut m = full();
        let fp = pem_fingerprint(PEM)
            .expect("fp")
            .to_uppercase()
            .replace(':', "");
        m.insert("CaFingerprint".into(), fp);
        parse_outputs(&m, ctx()).expect("same fingerprint in another spelling");
    }

    #[test]
    fn password_outputs_never_reach_raw_outputs() {
        let mut m = full();
        m.insert("AdminPassword".into(), "leak".into());
        let f = parse_outputs(&m, ctx()).expect("valid");
        assert!(!f.raw_outputs.values().any(|v| v == "leak"));
    }
}
