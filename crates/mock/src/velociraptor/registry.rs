//! What the emulated server knows: registered deployments (admin users), boot time and the
//! clients each deployment enrolled. Pure state, driven by the caller's clock, so the timing
//! rules are unit-tested without a listener.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::hooks::ServerDeployment;
use crate::scenario::Scenario;

/// How `first_seen_at`/`last_seen_at` are written. protojson writes uint64 as a string, but
/// parsers must accept numbers too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimestampEncoding {
    #[default]
    String,
    Number,
}

/// Test knob for how enrolled clients look to `SearchClients`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStyle {
    pub timestamps: TimestampEncoding,
    /// How long ago clients last checked in; zero means "just now", as a live client.
    pub stale_by: Duration,
    /// Clients enrolled but never interrogated: `os_info.hostname` stays empty.
    pub uninterrogated: bool,
}

/// The agent version clients report under the `version-mismatch` scenario.
pub const MISMATCHED_AGENT_VERSION: &str = "0.76.3";
const MISMATCHED_AGENT_VERSION_ALT: &str = "0.75.6";

/// A point in time that every observer sees as "not yet" at least once, so a zero latency
/// is never synchronous (see [`crate::scenario::EmulatorContext::latency`]).
#[derive(Debug, Clone, Copy)]
struct Milestone {
    at: Instant,
    pending_seen: bool,
}

impl Milestone {
    fn new(at: Instant) -> Self {
        Self {
            at,
            pending_seen: false,
        }
    }

    fn reached(&mut self, now: Instant) -> bool {
        if now >= self.at && self.pending_seen {
            return true;
        }
        self.pending_seen = true;
        false
    }
}

#[derive(Debug, Clone)]
struct EmulatedClient {
    client_id: String,
    hostname: String,
    agent_version: String,
    first_seen_at_us: u64,
    /// The interrogation flow the server starts at enrollment.
    interrogate_flow_id: String,
    /// Interrogation finishes a latency after enrollment; until then the client is listed
    /// with empty `os_info` and `agent_information`, as Velociraptor lists it.
    interrogated: Milestone,
}

#[derive(Debug)]
struct DeployedServer {
    spec: ServerDeployment,
    enrollment: Milestone,
    clients: Vec<EmulatedClient>,
    enrolled: bool,
}

/// The emulated server's state.
#[derive(Debug)]
pub struct Registry {
    scenario: Scenario,
    latency: Duration,
    boot: Option<Milestone>,
    deployments: Vec<DeployedServer>,
    next_client: u32,
    style: ClientStyle,
}

impl Registry {
    pub fn new(scenario: Scenario, latency: Duration) -> Self {
        Self {
            scenario,
            latency,
            boot: None,
            deployments: Vec::new(),
            next_client: 1,
            style: ClientStyle::default(),
        }
    }

    pub fn set_style(&mut self, style: ClientStyle) {
        self.style = style;
    }

    /// Registers a deployment's admin user; the first one boots the server. Deploying the
    /// same id again replaces it (a stack update).
    pub fn deploy(&mut self, spec: ServerDeployment, now: Instant) {
        self.deployments
            .retain(|d| d.spec.deployment != spec.deployment);
        if self.boot.is_none() {
            self.boot = Some(Milestone::new(now + self.latency));
        }
        self.deployments.push(DeployedServer {
            spec,
            enrollment: Milestone::new(now + self.latency),
            clients: Vec::new(),
            enrolled: false,
        });
    }

    /// Removes a deployment's user and clients; with none left the server is gone.
    pub fn undeploy(&mut self, deployment: &str) {
        self.deployments.retain(|d| d.spec.deployment != deployment);
        if self.deployments.is_empty() {
            self.boot = None;
        }
    }

    /// `/healthz`: true once booted (and never under `health-timeout`).
    pub fn healthy(&mut self, now: Instant) -> bool {
        let Some(boot) = self.boot.as_mut() else {
            return false;
        };
        let booted = boot.reached(now);
        booted && self.scenario != Scenario::HealthTimeout
    }

    /// True when some registered deployment has this admin user and password.
    pub fn authenticates(&self, user: &str, password: &str) -> bool {
        self.deployments
            .iter()
            .any(|d| d.spec.admin_user == user && d.spec.admin_password == password)
    }

    /// Like [`Registry::clients_for`], for every deployment: the unfiltered view tests read.
    #[cfg(test)]
    pub fn clients(&mut self, now: Instant, wall_now_us: u64) -> Vec<Value> {
        self.render_clients(now, wall_now_us, |_| true)
    }

    /// Enrolls clients whose time has come and returns, as protojson `ApiClient` objects
    /// with `last_seen_at` refreshed to `wall_now_us` as live clients would, the clients of
    /// the deployments that `user` and `password` log in to: each deployment is its own
    /// server in real life, reached with its own admin credentials, so one lifecycle never
    /// counts another's clients.
    pub fn clients_for(
        &mut self,
        user: &str,
        password: &str,
        now: Instant,
        wall_now_us: u64,
    ) -> Vec<Value> {
        self.render_clients(now, wall_now_us, |d| {
            d.spec.admin_user == user && d.spec.admin_password == password
        })
    }

    /// Enrolls the clients whose time has come, then renders those of the deployments
    /// `visible` keeps. Only those are rendered: with every lifecycle polling at once,
    /// rendering all clients for each search made a large run's searches quadratic.
    fn render_clients(
        &mut self,
        now: Instant,
        wall_now_us: u64,
        visible: impl Fn(&DeployedServer) -> bool,
    ) -> Vec<Value> {
        self.enroll_due(now, wall_now_us);
        let stale_us = u64::try_from(self.style.stale_by.as_micros()).unwrap_or(u64::MAX);
        let last_seen = wall_now_us.saturating_sub(stale_us);
        let style = self.style;
        self.deployments
            .iter_mut()
            .filter(|d| visible(d))
            .flat_map(|d| d.clients.iter_mut())
            .map(|c| {
                let interrogated = c.interrogated.reached(now) && !style.uninterrogated;
                client_json(c, last_seen, interrogated, style)
            })
            .collect()
    }

    /// Every deployment whose enrollment time has passed gets its expected clients, once.
    fn enroll_due(&mut self, now: Instant, wall_now_us: u64) {
        let scenario = self.scenario;
        for d in &mut self.deployments {
            if d.enrolled || scenario.clients_never_enroll() || !d.enrollment.reached(now) {
                continue;
            }
            d.enrolled = true;
            for _ in 0..d.spec.expected_clients {
                let n = self.next_client;
                self.next_client += 1;
                let client_id = new_client_id();
                d.clients.push(EmulatedClient {
                    interrogate_flow_id: format!("F.{}", &client_id[2..10].to_uppercase()),
                    client_id,
                    hostname: format!("cloudtest-client-{n}"),
                    agent_version: agent_version(scenario, &d.spec.version),
                    first_seen_at_us: wall_now_us,
                    // Interrogation starts when the client enrolls, not when a search
                    // first notices it: a slower poller must not also delay the client.
                    interrogated: Milestone::new(d.enrollment.at + self.latency),
                });
            }
        }
    }

    /// Deployments still registered, for `mock-state.json`.
    pub fn remaining(&self) -> Vec<Value> {
        self.deployments
            .iter()
            .map(|d| {
                json!({
                    "type": "velociraptor_deployment",
                    "id": d.spec.deployment,
                    "admin_user": d.spec.admin_user,
                    "version": d.spec.version,
                    "clients": d.clients.iter().map(|c| c.client_id.clone()).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}

/// Microseconds since the epoch, the unit Velociraptor uses for `*_seen_at`.
pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn new_client_id() -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("C.{n:016x}")
}

fn agent_version(scenario: Scenario, deployed: &str) -> String {
    if scenario != Scenario::VersionMismatch {
        return deployed.to_string();
    }
    if deployed.trim_start_matches('v') == MISMATCHED_AGENT_VERSION {
        MISMATCHED_AGENT_VERSION_ALT.to_string()
    } else {
        MISMATCHED_AGENT_VERSION.to_string()
    }
}

/// One `ApiClient` as Velociraptor 0.77.2 writes it (protojson, proto names, empty fields
/// left out): `first_seen_at` in seconds, `last_seen_at` in microseconds, `mac_addresses`
/// inside `os_info`, int64 map values as strings. Before interrogation finishes the client
/// has its flow id and `in_flight_flows` but no `os_info` or `agent_information`.
fn client_json(
    c: &EmulatedClient,
    last_seen_us: u64,
    interrogated: bool,
    style: ClientStyle,
) -> Value {
    let first_seen_us = c.first_seen_at_us.min(last_seen_us);
    let stamp = |n: u64| match style.timestamps {
        TimestampEncoding::String => Value::String(n.to_string()),
        TimestampEncoding::Number => json!(n),
    };
    let first_seen_s = first_seen_us / 1_000_000;
    let mut item = json!({
        "client_id": c.client_id,
        "first_seen_at": stamp(first_seen_s),
        "last_seen_at": stamp(last_seen_us),
        "last_ip": "127.0.0.1:49152",
        "last_interrogate_flow_id": c.interrogate_flow_id,
    });
    if interrogated {
        item["agent_information"] = json!({
            "version": c.agent_version,
            "name": "velociraptor",
        });
        item["os_info"] = json!({
            "system": "linux",
            "hostname": c.hostname,
            "release": "ubuntu24.04",
            "machine": "x86_64",
            "fqdn": c.hostname,
            "mac_addresses": ["02:00:00:00:00:01"],
        });
    } else {
        item["in_flight_flows"] = json!({ c.interrogate_flow_id.clone(): stamp(first_seen_s) });
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, clients: u32) -> ServerDeployment {
        ServerDeployment {
            deployment: id.into(),
            admin_user: "admin".into(),
            admin_password: "pw".into(),
            version: "0.77.2".into(),
            expected_clients: clients,
        }
    }

    const LATENCY: Duration = Duration::from_millis(100);

    #[test]
    fn unhealthy_before_deploy_then_after_latency_healthy() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::Healthy, LATENCY);
        assert!(!r.healthy(t0));
        r.deploy(spec("d1", 1), t0);
        assert!(!r.healthy(t0));
        assert!(!r.healthy(t0 + LATENCY / 2));
        assert!(r.healthy(t0 + LATENCY));
        r.undeploy("d1");
        assert!(!r.healthy(t0 + LATENCY * 2), "no deployment, no server");
    }

    #[test]
    fn zero_latency_still_shows_one_pending_state() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::Healthy, Duration::ZERO);
        r.deploy(spec("d1", 2), t0);
        assert!(!r.healthy(t0));
        assert!(r.healthy(t0));
        assert!(r.clients(t0, 1_000).is_empty());
        assert_eq!(r.clients(t0, 1_000).len(), 2);
    }

    #[test]
    fn a_login_sees_only_its_own_deployments_clients() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::Healthy, Duration::ZERO);
        r.deploy(spec("d1", 1), t0);
        let mut other = spec("d2", 2);
        other.admin_user = "admin-2".into();
        r.deploy(other, t0);
        assert!(r.clients_for("admin", "pw", t0, 1_000).is_empty());
        let mine = r.clients_for("admin", "pw", t0, 1_000);
        assert_eq!(mine.len(), 1);
        // The other deployment enrolled on the same search, unseen by this login.
        assert_eq!(r.clients_for("admin-2", "pw", t0, 1_000).len(), 2);
        assert!(r.clients_for("admin", "wrong", t0, 1_000).is_empty());
        let mine_again = r.clients_for("admin", "pw", t0, 2_000);
        assert_eq!(mine_again[0]["client_id"], mine[0]["client_id"]);
    }

    #[test]
    fn interrogation_counts_from_enrolling_not_from_the_search_that_noticed_it() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::Healthy, LATENCY);
        r.deploy(spec("d1", 1), t0);
        assert!(r.clients(t0, 1).is_empty(), "not enrolled yet");
        // A slow poller notices the enrollment half a latency late: still interrogating.
        let late = r.clients(t0 + LATENCY * 3 / 2, 2);
        assert_eq!(late.len(), 1);
        assert!(late[0].get("os_info").is_none(), "{}", late[0]);
        // Enrolled at t0 + L, so interrogated at t0 + 2L, not 1.5L after it was noticed.
        let done = r.clients(t0 + LATENCY * 2, 3);
        assert!(done[0].get("os_info").is_some(), "{}", done[0]);
    }

    #[test]
    fn health_timeout_never_gets_healthy() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::HealthTimeout, Duration::ZERO);
        r.deploy(spec("d1", 1), t0);
        for _ in 0..3 {
            assert!(!r.healthy(t0 + Duration::from_secs(3600)));
        }
    }

    #[test]
    fn clients_enroll_pending_then_interrogated_as_velociraptor_lists_them() {
        let t0 = Instant::now();
        let w0 = 1_764_700_000_000_000u64;
        let mut r = Registry::new(Scenario::Healthy, LATENCY);
        r.deploy(spec("d1", 2), t0);
        assert!(r.clients(t0, w0).is_empty());
        // Enrolled, interrogation still running: a flow id, no os_info or agent_information.
        let pending = r.clients(t0 + LATENCY, w0);
        assert_eq!(pending.len(), 2);
        assert!(pending[0].get("os_info").is_none(), "{}", pending[0]);
        assert!(pending[0].get("agent_information").is_none());
        let flow = pending[0]["last_interrogate_flow_id"]
            .as_str()
            .expect("flow id");
        assert!(flow.starts_with("F."), "{flow}");
        assert!(pending[0]["in_flight_flows"][flow].is_string());

        let clients = r.clients(t0 + LATENCY * 2, w0 + 10);
        let id = clients[0]["client_id"].as_str().expect("id");
        assert!(id.starts_with("C.") && id.len() == 18, "{id}");
        assert_eq!(clients[0]["os_info"]["hostname"], "cloudtest-client-1");
        assert_eq!(clients[1]["os_info"]["hostname"], "cloudtest-client-2");
        assert_eq!(
            clients[0]["os_info"]["mac_addresses"][0],
            "02:00:00:00:00:01"
        );
        assert_eq!(clients[0]["agent_information"]["version"], "0.77.2");
        assert!(clients[0].get("in_flight_flows").is_none());
        assert_eq!(clients[0]["last_seen_at"], (w0 + 10).to_string());
        // first_seen_at is seconds, last_seen_at microseconds (Velociraptor 0.77.2).
        assert_eq!(clients[0]["first_seen_at"], "1764700000");
        // A later query refreshes last_seen_at, keeps first_seen_at.
        let again = r.clients(t0 + LATENCY * 2, w0 + 20_000_000);
        assert_eq!(again[0]["last_seen_at"], (w0 + 20_000_000).to_string());
        assert_eq!(again[0]["first_seen_at"], "1764700000");
        assert_eq!(again[0]["client_id"], clients[0]["client_id"]);
    }

    #[test]
    fn scenarios_shape_enrollment() {
        let t0 = Instant::now();
        let mut none = Registry::new(Scenario::NoEnrollment, Duration::ZERO);
        none.deploy(spec("d1", 1), t0);
        for _ in 0..3 {
            assert!(none.clients(t0, 1).is_empty());
        }
        let mut mismatch = Registry::new(Scenario::VersionMismatch, Duration::ZERO);
        mismatch.deploy(spec("d1", 1), t0);
        let _ = mismatch.clients(t0, 1); // enrollment pending
        let _ = mismatch.clients(t0, 1); // interrogation pending
        let c = mismatch.clients(t0, 1);
        assert_eq!(
            c[0]["agent_information"]["version"],
            MISMATCHED_AGENT_VERSION
        );
    }

    #[test]
    fn style_knob_changes_encoding_staleness_and_interrogation() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::Healthy, Duration::ZERO);
        r.set_style(ClientStyle {
            timestamps: TimestampEncoding::Number,
            stale_by: Duration::from_secs(3600),
            uninterrogated: true,
        });
        r.deploy(spec("d1", 1), t0);
        let _ = r.clients(t0, 0);
        let now = 10_000_000_000u64;
        let c = r.clients(t0, now);
        assert_eq!(c[0]["last_seen_at"], json!(now - 3_600_000_000));
        assert!(c[0].get("os_info").is_none(), "{}", c[0]);
    }

    #[test]
    fn undeploy_removes_user_and_clients() {
        let t0 = Instant::now();
        let mut r = Registry::new(Scenario::Healthy, Duration::ZERO);
        r.deploy(spec("d1", 1), t0);
        r.deploy(spec("d2", 1), t0);
        assert!(r.authenticates("admin", "pw"));
        assert!(!r.authenticates("admin", "wrong"));
        let _ = r.clients(t0, 1);
        assert_eq!(r.clients(t0, 1).len(), 2);
        r.undeploy("d1");
        assert_eq!(r.clients(t0, 1).len(), 1);
        assert_eq!(r.remaining().len(), 1);
        r.undeploy("d2");
        assert!(!r.authenticates("admin", "pw"));
        assert!(r.remaining().is_empty());
    }
}
