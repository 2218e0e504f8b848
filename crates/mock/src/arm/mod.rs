//! Azure Resource Manager emulator: resource groups, resource-group-scope template
//! deployments (with a real template evaluator), deployment operations and resource lists,
//! over ARM's REST/JSON wire format (api-version 2021-04-01 shapes), so the Azure provider's
//! generated `azure_mgmt_resources` client runs unchanged against it.
//!
//! Long-running operations follow ARM: resource group `DELETE` answers `202` + `Location`,
//! deployment `PUT` answers `201` + `Azure-AsyncOperation`, and both advance with
//! [`EmulatorContext::latency`]. Scenarios and faults are applied here, never in providers.

pub mod entra;
mod errors;
pub mod eval;
pub mod expr;
mod filter;
pub mod preflight;
mod refusals;
mod routes;
mod store;
pub mod template;

use std::sync::{Arc, Mutex, OnceLock};

use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::faults::{FaultKind, FaultSpec};
use crate::http::{serve, ServerHandle};
use crate::scenario::{EmulatorContext, Scenario};
use crate::state::EmulatorState;
use routes::Shared;
use store::Store;

pub use entra::{ArmOptions, DEFAULT_TOKEN_LIFETIME};
pub use refusals::Refusal;
pub use routes::API_VERSION;
pub use store::DEFAULT_ADMIN_USER;
pub use template::custom_script_message;

/// The subscription mock runs use; any other id works too (each has its own state), but
/// [`ArmEmulator::plant_resource_group`] plants here.
pub const MOCK_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-00000000c7e5";

/// A running ARM emulator on `127.0.0.1`.
pub struct ArmEmulator {
    shared: Arc<Shared>,
    server: ServerHandle,
}

impl ArmEmulator {
    /// Binds a free loopback port and starts serving. The `throttled` scenario queues
    /// [`Scenario::THROTTLED_CALLS`] throttled answers for the first ARM calls.
    pub async fn start(ctx: EmulatorContext) -> std::io::Result<ArmEmulator> {
        Self::start_with(ctx, ArmOptions::default()).await
    }

    /// [`ArmEmulator::start`] with the token endpoint's options (token lifetime).
    pub async fn start_with(
        ctx: EmulatorContext,
        options: ArmOptions,
    ) -> std::io::Result<ArmEmulator> {
        if ctx.scenario == Scenario::Throttled {
            ctx.faults.add(FaultSpec {
                operation: "arm:*".into(),
                kind: FaultKind::Throttle,
                count: Scenario::THROTTLED_CALLS,
            });
        }
        let shared = Arc::new(Shared {
            ctx,
            base_url: OnceLock::new(),
            store: Mutex::new(Store::default()),
            entra: options,
            clock: entra::EntraClock::default(),
        });
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
            .route("/_github/idtoken", get(entra::github_id_token))
            .fallback(routes::handle)
            .with_state(shared.clone());
        let server = serve(router, None).await?;
        let _ = shared.base_url.set(server.url());
        tracing::debug!(endpoint = %server.url(), "ARM emulator listening");
        Ok(ArmEmulator { shared, server })
    }

    /// `http://127.0.0.1:PORT`: the ARM endpoint to give the SDK client.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// A bearer token naming the emulated principal (see [`preflight::bearer_token`]).
    pub fn bearer_token(&self) -> String {
        preflight::bearer_token()
    }

    /// Moves the emulator's clock (token issuance and expiry checks) forward, as if `by`
    /// had passed: for tests of expiry without waiting.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.shared.clock.advance(by);
    }

    /// The subscription id mock runs should use.
    pub fn subscription_id(&self) -> &'static str {
        MOCK_SUBSCRIPTION_ID
    }

    /// Plants a resource group in [`MOCK_SUBSCRIPTION_ID`] as if an earlier run had left it
    /// (for sweep tests). Location `eastus`.
    pub fn plant_resource_group<I, K, V>(&self, name: &str, tags: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let tags = to_tags(tags);
        let mut store = self.shared.store();
        if let Err(e) = store.put_group(MOCK_SUBSCRIPTION_ID, name, "eastus", tags, None) {
            tracing::warn!(
                resource_group = name,
                "could not plant resource group: {}",
                e.message
            );
        }
    }

    /// Plants a resource (`type_` like `Microsoft.Compute/disks`) in an existing or new
    /// resource group of [`MOCK_SUBSCRIPTION_ID`]; returns its ARM id.
    pub fn plant_resource<I, K, V>(
        &self,
        resource_group: &str,
        type_: &str,
        name: &str,
        tags: I,
    ) -> String
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let (namespace, rest) = type_.split_once('/').unwrap_or((type_, "resources"));
        let id = format!("/subscriptions/{MOCK_SUBSCRIPTION_ID}/resourceGroups/{resource_group}/providers/{namespace}/{rest}/{name}");
        let resource = template::PlannedResource {
            id: id.clone(),
            name: name.to_string(),
            type_: type_.to_string(),
            api_version: String::new(),
            location: "eastus".into(),
            tags: to_tags(tags),
            properties: json!({"provisioningState": "Succeeded"}),
        };
        let mut store = self.shared.store();
        if store.group(MOCK_SUBSCRIPTION_ID, resource_group).is_err() {
            let _ = store.put_group(
                MOCK_SUBSCRIPTION_ID,
                resource_group,
                "eastus",
                Map::new(),
                None,
            );
        }
        store.plant_resource(MOCK_SUBSCRIPTION_ID, resource_group, resource);
        id
    }

    /// Refuses every later deployment PUT before creating anything, as ARM's pre-flight
    /// validation does (`None` stops refusing).
    pub fn refuse_deployments(&self, refusal: Option<Refusal>) {
        self.shared.store().refusal = refusal;
    }

    /// Stops serving; state stays readable through [`EmulatorState`] until dropped.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn to_tags<I, K, V>(tags: I) -> Map<String, Value>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    tags.into_iter()
        .map(|(k, v)| (k.into(), Value::String(v.into())))
        .collect()
}

impl EmulatorState for ArmEmulator {
    fn name(&self) -> &'static str {
        "azure"
    }

    /// Every resource group and resource still present, as `{type, id, tags}`.
    fn remaining(&self) -> Vec<Value> {
        self.shared.store().remaining()
    }
}
