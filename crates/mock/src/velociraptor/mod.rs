//! Velociraptor server emulator: the frontend (`/healthz`, `/server.pem`) and the GUI's JSON
//! API (`/api/v1/SearchClients` behind HTTP Basic auth), each on its own HTTPS listener with
//! a certificate for `VelociraptorServer` signed by a CA generated for this run.
//!
//! It is the [`EmulatedServers`] the CloudFormation and ARM emulators "boot": a deployment
//! registers its admin user, the server becomes healthy `latency` after the first one, and
//! each deployment's clients enroll `latency` after it was deployed.

mod certs;
mod registry;
mod routes;

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::time::Instant;

use crate::faults::{FaultKind, FaultSpec};
use crate::hooks::{EmulatedServers, ServerDeployment};
use crate::http::{serve, ServerHandle};
use crate::scenario::{EmulatorContext, Scenario};
use crate::state::EmulatorState;

pub use certs::PINNED_SERVER_NAME;
pub use registry::{ClientStyle, TimestampEncoding, MISMATCHED_AGENT_VERSION};

use certs::{velociraptor_tls_config, ServerCertificates};
use registry::Registry;
use routes::Shared;

/// A running emulated Velociraptor server.
pub struct VelociraptorEmulator {
    shared: Arc<Shared>,
    ca_pem: String,
    frontend_port: u16,
    gui_port: u16,
    listeners: Mutex<Vec<ServerHandle>>,
}

impl VelociraptorEmulator {
    /// Generates this run's CA and server certificate and starts both listeners on
    /// 127.0.0.1. `ctx.servers` is not used: this emulator is the servers.
    pub async fn start(ctx: EmulatorContext) -> std::io::Result<Arc<VelociraptorEmulator>> {
        let certs = ServerCertificates::generate()
            .map_err(|e| std::io::Error::other(format!("generating the emulator's CA: {e}")))?;
        let tls = velociraptor_tls_config(certs.server_der.clone(), certs.server_key.clone_key())
            .map_err(|e| std::io::Error::other(format!("emulator TLS config: {e}")))?;
        if ctx.scenario == Scenario::Throttled {
            ctx.faults.add(FaultSpec {
                operation: "vr:*".to_string(),
                kind: FaultKind::Throttle,
                count: Scenario::THROTTLED_CALLS,
            });
        }
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::new(ctx.scenario, ctx.latency)),
            faults: ctx.faults.clone(),
            server_pem: certs.server_pem.clone(),
        });
        let frontend = serve(routes::frontend_router(shared.clone()), Some(tls.clone())).await?;
        let gui = serve(routes::gui_router(shared.clone()), Some(tls)).await?;
        tracing::debug!(
            frontend = %frontend.url(),
            gui = %gui.url(),
            "emulated Velociraptor server listening"
        );
        Ok(Arc::new(Self {
            shared,
            ca_pem: certs.ca_pem,
            frontend_port: frontend.addr().port(),
            gui_port: gui.addr().port(),
            listeners: Mutex::new(vec![frontend, gui]),
        }))
    }

    pub fn frontend_port(&self) -> u16 {
        self.frontend_port
    }

    pub fn gui_port(&self) -> u16 {
        self.gui_port
    }

    /// The per-run CA certificate (PEM), the only trust root the probes should accept.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Test knob: how clients look to `SearchClients` from now on.
    pub fn set_client_style(&self, style: ClientStyle) {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_style(style);
    }

    /// Stops both listeners.
    pub async fn stop(&self) {
        let handles: Vec<ServerHandle> =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            h.stop().await;
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl EmulatedServers for VelociraptorEmulator {
    fn deploy(&self, deployment: ServerDeployment) {
        tracing::debug!(deployment = %deployment.deployment, "emulated Velociraptor deployed");
        self.registry().deploy(deployment, Instant::now());
    }

    fn undeploy(&self, deployment: &str) {
        tracing::debug!(deployment, "emulated Velociraptor undeployed");
        self.registry().undeploy(deployment);
    }

    fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }
}

impl EmulatorState for VelociraptorEmulator {
    fn name(&self) -> &'static str {
        "velociraptor"
    }

    fn remaining(&self) -> Vec<Value> {
        self.registry().remaining()
    }
}
