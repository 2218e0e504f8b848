//! The server under probe: two pinned endpoints, credentials and expectations, built the
//! same way from a deployment's facts or from an operator's flags.

use cloudtest_core::outputs::pem_fingerprint;
use cloudtest_core::{DeploymentFacts, Secret};

use crate::errors::ProbeError;
use crate::existing::ExistingServer;
use crate::settings::ProbeSettings;
use crate::tls::{EndpointSpec, PinnedEndpoint};

pub(crate) struct Target {
    pub frontend: PinnedEndpoint,
    pub gui: PinnedEndpoint,
    pub ca_fingerprint: String,
    pub user: String,
    pub password: Secret,
    pub expected_clients: u32,
    /// The pinned release clients must report; `None` skips the version check.
    pub expected_version: Option<String>,
}

impl Target {
    pub async fn from_deployment(
        d: &DeploymentFacts,
        settings: &ProbeSettings,
    ) -> Result<Self, ProbeError> {
        let endpoint = |what, url| EndpointSpec {
            what,
            url,
            connect_host: Some(d.server_address.as_str()),
            pinned_name: d.pinned_server_name.as_str(),
            ca_pem: d.ca_pem.as_str(),
            request_timeout: settings.request_timeout,
        };
        Ok(Self {
            frontend: PinnedEndpoint::new(endpoint("frontend", &d.frontend_url)).await?,
            gui: PinnedEndpoint::new(endpoint("GUI", &d.gui_url)).await?,
            ca_fingerprint: d.ca_fingerprint.clone(),
            user: d.admin_user.clone(),
            password: d.admin_password.clone(),
            expected_clients: d.expected_clients,
            expected_version: Some(d.velociraptor_version.clone()),
        })
    }

    pub async fn from_existing(
        s: &ExistingServer,
        settings: &ProbeSettings,
    ) -> Result<Self, ProbeError> {
        let ca_fingerprint =
            pem_fingerprint(&s.ca_pem).map_err(|why| ProbeError::InvalidCa { why })?;
        let endpoint = |what, url| EndpointSpec {
            what,
            url,
            connect_host: None,
            pinned_name: s.pinned_server_name.as_str(),
            ca_pem: s.ca_pem.as_str(),
            request_timeout: settings.request_timeout,
        };
        Ok(Self {
            frontend: PinnedEndpoint::new(endpoint("frontend", &s.frontend_url)).await?,
            gui: PinnedEndpoint::new(endpoint("GUI", &s.gui_url)).await?,
            ca_fingerprint,
            user: s.user.clone(),
            password: s.password.clone(),
            expected_clients: s.expect_clients,
            expected_version: s.expect_version.clone(),
        })
    }
}
