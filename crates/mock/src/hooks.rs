//! How emulated clouds "boot" an emulated Velociraptor server: what a real instance's boot
//! script does (create the admin user, start the service, publish the CA, enroll clients).

use std::sync::Mutex;

/// A server a stack or deployment brought up.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerDeployment {
    /// Stack id or deployment id, to undeploy it later.
    pub deployment: String,
    pub admin_user: String,
    pub admin_password: String,
    pub version: String,
    pub expected_clients: u32,
}

impl std::fmt::Debug for ServerDeployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerDeployment")
            .field("deployment", &self.deployment)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"[redacted]")
            .field("version", &self.version)
            .field("expected_clients", &self.expected_clients)
            .finish()
    }
}

/// Implemented by the Velociraptor emulator; called by the CloudFormation and ARM emulators.
pub trait EmulatedServers: Send + Sync {
    /// The instance booted: register its admin user, start "booting" and schedule client
    /// enrollment. Called when the stack/deployment's server resource is created.
    fn deploy(&self, deployment: ServerDeployment);
    /// The instance was deleted: its user and clients go away.
    fn undeploy(&self, deployment: &str);
    /// The CA certificate (PEM) the boot script publishes through the cloud API.
    fn ca_pem(&self) -> String;
    /// The address the emulated instance answers on (a public IP in real life).
    fn address(&self) -> String {
        "127.0.0.1".to_string()
    }
}

/// Records deployments; for emulator tests that do not need a live Velociraptor.
#[derive(Default)]
pub struct RecordingServers {
    pub deployed: Mutex<Vec<ServerDeployment>>,
    pub undeployed: Mutex<Vec<String>>,
}

/// A well-formed PEM wrapper (not a real certificate) for tests that only pass it along.
pub const PLACEHOLDER_CA_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nY2xvdWR0ZXN0LXBsYWNlaG9sZGVyLWNh\n-----END CERTIFICATE-----\n";

impl EmulatedServers for RecordingServers {
    fn deploy(&self, deployment: ServerDeployment) {
        self.deployed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(deployment);
    }
    fn undeploy(&self, deployment: &str) {
        self.undeployed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(deployment.to_string());
    }
    fn ca_pem(&self) -> String {
        PLACEHOLDER_CA_PEM.to_string()
    }
}
