//! What the emulated subscription holds (resource groups, resources, deployments, pending
//! deletions) and how long-running work advances with time and the scenario.
//!
//! Nothing here runs in the background: every request first calls [`Store::advance`], which
//! moves each deployment and deletion along by how much time has passed since it started
//! (`EmulatorContext::latency`). A client therefore always sees an in-progress state first,
//! even with zero latency, and paused tokio time drives it in tests.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::errors::ArmError;
use super::eval::unique_string;
use super::filter::Filter;
use super::template::{self, DeploymentScope, EvaluatedDeployment, PlannedResource, RuntimeFacts};
use crate::hooks::{EmulatedServers, ServerDeployment};
use crate::scenario::{EmulatorContext, Scenario};

pub const RESOURCE_GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";
pub const DEPLOYMENT_TYPE: &str = "Microsoft.Resources/deployments";
const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
const DISK_TYPE: &str = "Microsoft.Compute/disks";

/// The admin user a deployment boots with when the template declares none.
pub const DEFAULT_ADMIN_USER: &str = "cloudtest-admin";

fn key(sub: &str, rg: &str) -> String {
    format!("{}/{}", sub.to_ascii_lowercase(), rg.to_ascii_lowercase())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// ISO 8601 duration, as ARM's `duration` fields (`PT22.8356799S`).
fn iso_duration(d: Duration) -> String {
    format!("PT{:.7}S", d.as_secs_f64())
}

pub struct ResourceGroup {
    pub subscription: String,
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub managed_by: Option<String>,
    /// The token of the deletion in progress.
    pub deleting: Option<String>,
}

impl ResourceGroup {
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.name
        )
    }

    pub fn to_json(&self) -> Value {
        let state = if self.deleting.is_some() {
            "Deleting"
        } else {
            "Succeeded"
        };
        let mut v = json!({
            "id": self.id(),
            "name": self.name,
            "type": RESOURCE_GROUP_TYPE,
            "location": self.location,
            "properties": {"provisioningState": state},
        });
        if !self.tags.is_empty() {
            v["tags"] = Value::Object(self.tags.clone());
        }
        if let Some(m) = &self.managed_by {
            v["managedBy"] = json!(m);
        }
        v
    }
}

pub struct StoredResource {
    pub subscription: String,
    pub resource_group: String,
    pub resource: PlannedResource,
    pub created: DateTime<Utc>,
}

impl StoredResource {
    /// The `GenericResourceExpanded` shape of resource list calls.
    pub fn to_json(&self) -> Value {
        let r = &self.resource;
        let mut v = json!({"id": r.id, "name": r.name, "type": r.type_});
        if !r.location.is_empty() {
            v["location"] = json!(r.location);
        }
        if !r.tags.is_empty() {
            v["tags"] = Value::Object(r.tags.clone());
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    Accepted,
    Running,
    Succeeded,
    Failed,
    /// Ended by `POST .../cancel`; what it had created stays.
    Canceled,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Accepted => "Accepted",
            DeploymentState::Running => "Running",
            DeploymentState::Succeeded => "Succeeded",
            DeploymentState::Failed => "Failed",
            DeploymentState::Canceled => "Canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentState::Succeeded | DeploymentState::Failed | DeploymentState::Canceled
        )
    }
}

/// What a deployment PUT asked for.
#[derive(Clone, PartialEq)]
pub struct DeploymentRequest {
    pub template: Value,
    pub parameters: Map<String, Value>,
    pub mode: String,
}

pub struct Deployment {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub operation_id: String,
    pub request: DeploymentRequest,
    pub parameters_for_response: Map<String, Value>,
    pub boot: Option<ServerDeployment>,
    pub booted: bool,
    pub started: Instant,
    pub started_at: DateTime<Utc>,
    pub correlation_id: String,
    pub state: DeploymentState,
    pub finished_after: Option<Duration>,
    pub outputs: Option<Map<String, Value>>,
    pub output_resources: Vec<PlannedResource>,
    pub error: Option<ArmError>,
    pub operations: Vec<Value>,
    /// When `POST .../cancel` was accepted; the deployment ends `Canceled` one latency later.
    pub cancel_requested: Option<Instant>,
}

impl Deployment {
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{DEPLOYMENT_TYPE}/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    fn template_hash(&self) -> String {
        let d = Sha256::digest(self.request.template.to_string().as_bytes());
        u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8])).to_string()
    }

    /// The `DeploymentExtended` shape.
    pub fn to_json(&self, now: Instant) -> Value {
        let elapsed = self
            .finished_after
            .unwrap_or_else(|| now.saturating_duration_since(self.started));
        let mut props = json!({
            "templateHash": self.template_hash(),
            "parameters": self.parameters_for_response,
            "mode": self.request.mode,
            "provisioningState": self.state.as_str(),
            "timestamp": rfc3339(self.started_at + chrono::Duration::from_std(elapsed).unwrap_or_default()),
            "duration": iso_duration(elapsed),
            "correlationId": self.correlation_id,
            "providers": providers(&self.output_resources),
            "dependencies": [],
        });
        if let Some(outputs) = &self.outputs {
            props["outputs"] = Value::Object(outputs.clone());
        }
        if self.state == DeploymentState::Succeeded {
            props["outputResources"] = Value::Array(
                self.output_resources
                    .iter()
                    .map(|r| json!({"id": r.id}))
                    .collect(),
            );
        }
        if let Some(e) = &self.error {
            props["error"] = e.body();
        }
        json!({"id": self.id(), "name": self.name, "type": DEPLOYMENT_TYPE, "properties": props})
    }

    /// The body of the `Azure-AsyncOperation` status URL.
    pub fn status_json(&self) -> Value {
        let mut v = json!({"status": self.state.as_str()});
        if let Some(e) = &self.error {
            v["error"] = e.body();
        }
        v
    }
}

/// `properties.providers`: namespaces and types the deployment touched.
fn providers(resources: &[PlannedResource]) -> Value {
    let mut by_ns: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in resources {
        let Some((ns, rest)) = r.type_.split_once('/') else {
            continue;
        };
        let locations = by_ns
            .entry(ns.to_string())
            .or_default()
            .entry(rest.to_string())
            .or_default();
        if !r.location.is_empty() && !locations.contains(&r.location) {
            locations.push(r.location.clone());
        }
    }
    Value::Array(
        by_ns
            .into_iter()
            .map(|(ns, types)| {
                let types: Vec<Value> = types
                    .into_iter()
                    .map(|(t, locs)| json!({"resourceType": t, "locations": locs}))
                    .collect();
                json!({"namespace": ns, "resourceTypes": types})
            })
            .collect(),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeletionState {
    Running,
    Succeeded,
    Failed(ArmError),
}

pub struct Deletion {
    pub subscription: String,
    pub resource_group: String,
    pub started: Instant,
    pub state: DeletionState,
    /// `forceDeletionTypes` named virtual machines: they are not shut down gracefully.
    pub force_vms: bool,
}

/// Adapts the emulated servers to what templates ask of the runtime.
struct Facts<'a>(&'a dyn EmulatedServers);

impl RuntimeFacts for Facts<'_> {
    fn address(&self) -> String {
        self.0.address()
    }
    fn ca_pem(&self) -> String {
        self.0.ca_pem()
    }
}

#[derive(Default)]
pub struct Store {
    pub groups: BTreeMap<String, ResourceGroup>,
    /// Keyed by lowercase resource id.
    pub resources: BTreeMap<String, StoredResource>,
    /// Keyed by lowercase deployment id.
    pub deployments: BTreeMap<String, Deployment>,
    /// Keyed by the token in the `Location` URL.
    pub deletions: BTreeMap<String, Deletion>,
    leaked: bool,
    delete_failed: bool,
    /// Set by tests: every deployment PUT is refused with this pre-flight cause.
    pub refusal: Option<super::refusals::Refusal>,
}

/// What a deployment PUT did.
pub enum PutOutcome {
    Created,
    Existing,
}

impl Store {
    pub fn group(&self, sub: &str, rg: &str) -> Result<&ResourceGroup, ArmError> {
        self.groups
            .get(&key(sub, rg))
            .ok_or_else(|| ArmError::resource_group_not_found(rg))
    }

    /// Creates or updates a resource group; `true` when it is new.
    pub fn put_group(
        &mut self,
        sub: &str,
        name: &str,
        location: &str,
        tags: Map<String, Value>,
        managed_by: Option<String>,
    ) -> Result<bool, ArmError> {
        match self.groups.get_mut(&key(sub, name)) {
            Some(g) if g.deleting.is_some() => Err(ArmError::being_deleted(&g.name)),
            Some(g) if !g.location.eq_ignore_ascii_case(location) => Err(ArmError::new(
                StatusCode::CONFLICT,
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                    g.location
                ),
            )),
            Some(g) => {
                g.tags = tags;
                if managed_by.is_some() {
                    g.managed_by = managed_by;
                }
                Ok(false)
            }
            None => {
                self.groups.insert(
                    key(sub, name),
                    ResourceGroup {
                        subscription: sub.to_string(),
                        name: name.to_string(),
                        location: location.to_string(),
                        tags,
                        managed_by,
                        deleting: None,
                    },
                );
                Ok(true)
            }
        }
    }

    /// Starts deleting a resource group; returns the operation token for `Location`.
    /// `force_vms`: the request's `forceDeletionTypes` named `Microsoft.Compute/virtualMachines`.
    pub fn start_delete(
        &mut self,
        sub: &str,
        rg: &str,
        now: Instant,
        force_vms: bool,
    ) -> Result<String, ArmError> {
        let g = self
            .groups
            .get_mut(&key(sub, rg))
            .ok_or_else(|| ArmError::resource_group_not_found(rg))?;
        if let Some(token) = &g.deleting {
            return Ok(token.clone());
        }
        let token = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        g.deleting = Some(token.clone());
        let name = g.name.clone();
        self.deletions.insert(
            token.clone(),
            Deletion {
                subscription: sub.to_string(),
                resource_group: name,
                started: now,
                state: DeletionState::Running,
                force_vms,
            },
        );
        Ok(token)
    }

    pub fn list_groups(&self, sub: &str, filter: &Filter) -> Vec<Value> {
        self.groups
            .values()
            .filter(|g| g.subscription.eq_ignore_ascii_case(sub))
            .filter(|g| filter.matches(&g.name, RESOURCE_GROUP_TYPE, &g.location, &g.tags))
            .map(ResourceGroup::to_json)
            .collect()
    }

    pub fn list_resources(&self, sub: &str, rg: Option<&str>, filter: &Filter) -> Vec<Value> {
        self.resources
            .values()
            .filter(|r| r.subscription.eq_ignore_ascii_case(sub))
            .filter(|r| rg.is_none_or(|rg| r.resource_group.eq_ignore_ascii_case(rg)))
            .filter(|r| {
                filter.matches(
                    &r.resource.name,
                    &r.resource.type_,
                    &r.resource.location,
                    &r.resource.tags,
                )
            })
            .map(StoredResource::to_json)
            .collect()
    }

    /// Adds a resource as if something outside any deployment had created it.
    pub fn plant_resource(&mut self, sub: &str, rg: &str, resource: PlannedResource) {
        self.resources.insert(
            resource.id.to_ascii_lowercase(),
            StoredResource {
                subscription: sub.to_string(),
                resource_group: rg.to_string(),
                resource,
                created: Utc::now(),
            },
        );
    }

    fn resources_in(&self, sub: &str, rg: &str) -> Vec<PlannedResource> {
        self.resources
            .values()
            .filter(|r| {
                r.subscription.eq_ignore_ascii_case(sub)
                    && r.resource_group.eq_ignore_ascii_case(rg)
            })
            .map(|r| r.resource.clone())
            .collect()
    }

    fn scope(&self, sub: &str, rg: &str, deployment: &str) -> Result<DeploymentScope, ArmError> {
        let g = self.group(sub, rg)?;
        Ok(DeploymentScope {
            subscription_id: sub.to_string(),
            resource_group: g.name.clone(),
            location: g.location.clone(),
            resource_group_tags: g.tags.clone(),
            deployment_name: deployment.to_string(),
        })
    }

    fn evaluate(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        request: &DeploymentRequest,
        servers: &dyn EmulatedServers,
    ) -> Result<EvaluatedDeployment, ArmError> {
        let scope = self.scope(sub, rg, name)?;
        let existing = self.resources_in(sub, rg);
        template::evaluate(
            &request.template,
            &request.parameters,
            &scope,
            &existing,
            &Facts(servers),
        )
        .map_err(|e| ArmError::new(StatusCode::BAD_REQUEST, "InvalidTemplate", e.to_string()))
    }

    /// `POST .../validate`: the checks of a PUT without deploying.
    pub fn validate(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        request: &DeploymentRequest,
        servers: &dyn EmulatedServers,
    ) -> Result<Value, ArmError> {
        let evaluated = self.evaluate(sub, rg, name, request, servers)?;
        let g = self.group(sub, rg)?;
        Ok(json!({
            "id": format!("{}/providers/{DEPLOYMENT_TYPE}/{name}", g.id()),
            "name": name,
            "type": DEPLOYMENT_TYPE,
            "properties": {
                "templateHash": "0",
                "parameters": evaluated.parameters_for_response(),
                "mode": request.mode,
                "provisioningState": "Succeeded",
                "timestamp": rfc3339(Utc::now()),
                "duration": iso_duration(Duration::ZERO),
                "correlationId": uuid::Uuid::new_v4().to_string(),
                "providers": providers(&evaluated.resources),
                "dependencies": [],
                "validatedResources": evaluated.resources.iter().map(|r| json!({"id": r.id})).collect::<Vec<_>>(),
            }
        }))
    }

    /// `PUT .../deployments/{name}`: validates, then starts (or, for a repeated identical
    /// request, returns) the deployment. Returns its lowercase id.
    pub fn put_deployment(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        request: DeploymentRequest,
        now: Instant,
        servers: &dyn EmulatedServers,
    ) -> Result<(String, PutOutcome), ArmError> {
        let g = self.group(sub, rg)?;
        if g.deleting.is_some() {
            return Err(ArmError::being_deleted(&g.name));
        }
        if let Some(refusal) = self.refusal {
            return Err(refusal.error(name, &g.location));
        }
        let rg_name = g.name.clone();
        let id_key = format!("{}/providers/{DEPLOYMENT_TYPE}/{name}", g.id()).to_ascii_lowercase();
        let mut booted = false;
        if let Some(existing) = self.deployments.get(&id_key) {
            // The generated SDK's `.await` re-sends the PUT to poll; a repeat of the same
            // request must not restart the deployment.
            if !existing.state.is_terminal()
                || (existing.request == request && existing.state == DeploymentState::Succeeded)
            {
                return Ok((id_key, PutOutcome::Existing));
            }
            booted = existing.booted;
        }
        let evaluated = self.evaluate(sub, &rg_name, name, &request, servers)?;
        let deployment_id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg_name}/providers/{DEPLOYMENT_TYPE}/{name}"
        );
        let boot = evaluated
            .resources
            .iter()
            .any(|r| r.is_type(VM_TYPE))
            .then(|| {
                let text = |n: &str| {
                    evaluated
                        .parameter(n)
                        .and_then(Value::as_str)
                        .map(String::from)
                };
                ServerDeployment {
                    deployment: deployment_id.clone(),
                    admin_user: text("adminUser").unwrap_or_else(|| DEFAULT_ADMIN_USER.to_string()),
                    admin_password: text("adminPassword").unwrap_or_default(),
                    version: text("velociraptorVersion").unwrap_or_default(),
                    expected_clients: 1,
                }
            });
        self.deployments.insert(
            id_key.clone(),
            Deployment {
                subscription: sub.to_string(),
                resource_group: rg_name,
                name: name.to_string(),
                operation_id: uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
                parameters_for_response: evaluated.parameters_for_response(),
                request,
                boot,
                booted,
                started: now,
                started_at: Utc::now(),
                correlation_id: uuid::Uuid::new_v4().to_string(),
                state: DeploymentState::Accepted,
                finished_after: None,
                outputs: None,
                output_resources: Vec::new(),
                error: None,
                operations: Vec::new(),
                cancel_requested: None,
            },
        );
        Ok((id_key, PutOutcome::Created))
    }

    pub fn deployment(&self, sub: &str, rg: &str, name: &str) -> Result<&Deployment, ArmError> {
        let g = self.group(sub, rg)?;
        let id_key = format!("{}/providers/{DEPLOYMENT_TYPE}/{name}", g.id()).to_ascii_lowercase();
        self.deployments
            .get(&id_key)
            .ok_or_else(|| ArmError::deployment_not_found(name))
    }

    /// `POST .../cancel`: accepted only while the deployment is Accepted or Running (ARM's
    /// documented rule); it ends `Canceled` one latency later, having created nothing more.
    pub fn cancel_deployment(
        &mut self,
        sub: &str,
        rg: &str,
        name: &str,
        now: Instant,
    ) -> Result<(), ArmError> {
        let g = self.group(sub, rg)?;
        let id_key = format!("{}/providers/{DEPLOYMENT_TYPE}/{name}", g.id()).to_ascii_lowercase();
        let d = self
            .deployments
            .get_mut(&id_key)
            .ok_or_else(|| ArmError::deployment_not_found(name))?;
        if d.state.is_terminal() {
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "The deployment '{name}' cannot be canceled: its provisioning state is '{}'; only Accepted or Running deployments can be canceled.",
                    d.state.as_str()
                ),
            ));
        }
        d.cancel_requested.get_or_insert(now);
        Ok(())
    }

    /// Moves every deployment and deletion along to `now`. A `slow-deployment` runs for
    /// [`Scenario::SLOW_DEPLOYMENT`] past the latency; a cancelled one ends one latency after
    /// its cancel; a group holding VMs takes twice the latency to delete unless
    /// `forceDeletionTypes` named them (no graceful shutdown).
    pub fn advance(&mut self, now: Instant, ctx: &EmulatorContext) {
        let runs_for = if ctx.scenario == Scenario::SlowDeployment {
            ctx.latency + Scenario::SLOW_DEPLOYMENT
        } else {
            ctx.latency
        };
        let mut due = Vec::new();
        for (k, d) in self.deployments.iter_mut() {
            if d.state.is_terminal() {
                continue;
            }
            if let Some(at) = d.cancel_requested {
                if now.saturating_duration_since(at) >= ctx.latency {
                    d.state = DeploymentState::Canceled;
                    d.finished_after = Some(now.saturating_duration_since(d.started));
                    tracing::debug!(deployment = %d.id(), "emulated deployment canceled");
                    continue;
                }
            }
            if now.saturating_duration_since(d.started) >= runs_for {
                due.push(k.clone());
            } else {
                d.state = DeploymentState::Running;
            }
        }
        for k in due {
            self.finish_deployment(&k, now, ctx);
        }
        let due: Vec<String> = self
            .deletions
            .iter()
            .filter(|(_, d)| {
                let holds_vms = self.resources.values().any(|r| {
                    r.resource_group.eq_ignore_ascii_case(&d.resource_group)
                        && r.resource.is_type(VM_TYPE)
                });
                let takes = if holds_vms && !d.force_vms {
                    ctx.latency * 2
                } else {
                    ctx.latency
                };
                d.state == DeletionState::Running
                    && now.saturating_duration_since(d.started) >= takes
            })
            .map(|(k, _)| k.clone())
            .collect();
        for token in due {
            self.finish_deletion(&token, ctx);
        }
    }

    fn finish_deployment(&mut self, id_key: &str, now: Instant, ctx: &EmulatorContext) {
        let Some(d) = self.deployments.get(id_key) else {
            return;
        };
        let (sub, rg, name, request) = (
            d.subscription.clone(),
            d.resource_group.clone(),
            d.name.clone(),
            d.request.clone(),
        );
        let deployment_id = d.id();
        let boot = d.boot.clone();
        let already_booted = d.booted;
        let fails = ctx.scenario.create_fails();
        if let (Some(boot), false, false) = (&boot, already_booted, fails) {
            tracing::debug!(deployment = %deployment_id, "emulated VM boots a Velociraptor server");
            ctx.servers.deploy(boot.clone());
        }
        let result = self.evaluate(&sub, &rg, &name, &request, ctx.servers.as_ref());
        let finished = Utc::now();
        let (state, error, outputs, created, operations) = match result {
            Err(e) => (
                DeploymentState::Failed,
                Some(e),
                None,
                Vec::new(),
                Vec::new(),
            ),
            Ok(evaluated) if fails && !evaluated.resources.is_empty() => {
                let failing_at = evaluated
                    .resources
                    .iter()
                    .position(|r| r.is_type(VM_TYPE))
                    .unwrap_or(evaluated.resources.len() - 1);
                let failing = evaluated.resources[failing_at].clone();
                let child_prefix = format!("{}/", failing.id.to_ascii_lowercase());
                let created: Vec<PlannedResource> = evaluated
                    .resources
                    .iter()
                    .filter(|r| {
                        r.id != failing.id && !r.id.to_ascii_lowercase().starts_with(&child_prefix)
                    })
                    .cloned()
                    .collect();
                let cause = sku_not_available(&failing);
                let mut ops: Vec<Value> = created
                    .iter()
                    .map(|r| operation_json(&deployment_id, r, None, finished))
                    .collect();
                ops.push(operation_json(
                    &deployment_id,
                    &failing,
                    Some(&cause),
                    finished,
                ));
                let mut error = ArmError::new(
                    StatusCode::BAD_REQUEST,
                    "DeploymentFailed",
                    "At least one resource deployment operation failed. Please list deployment operations for details. Please see https://aka.ms/arm-deployment-operations for usage details.",
                );
                error.details = vec![cause.body()];
                (DeploymentState::Failed, Some(error), None, created, ops)
            }
            Ok(evaluated) => {
                let ops = evaluated
                    .resources
                    .iter()
                    .map(|r| operation_json(&deployment_id, r, None, finished))
                    .collect();
                (
                    DeploymentState::Succeeded,
                    None,
                    Some(evaluated.outputs),
                    evaluated.resources,
                    ops,
                )
            }
        };
        if state == DeploymentState::Succeeded && request.mode.eq_ignore_ascii_case("Complete") {
            let keep: Vec<String> = created.iter().map(|r| r.id.to_ascii_lowercase()).collect();
            self.resources.retain(|k, r| {
                !(r.subscription.eq_ignore_ascii_case(&sub)
                    && r.resource_group.eq_ignore_ascii_case(&rg))
                    || keep.contains(k)
            });
        }
        for r in &created {
            let k = r.id.to_ascii_lowercase();
            let created_at = self.resources.get(&k).map_or(finished, |x| x.created);
            self.resources.insert(
                k,
                StoredResource {
                    subscription: sub.clone(),
                    resource_group: rg.clone(),
                    resource: r.clone(),
                    created: created_at,
                },
            );
        }
        if let Some(d) = self.deployments.get_mut(id_key) {
            d.booted = already_booted || (boot.is_some() && !fails);
            d.state = state;
            d.finished_after = Some(now.saturating_duration_since(d.started));
            d.error = error;
            d.outputs = outputs;
            d.output_resources = created;
            d.operations = operations;
        }
        tracing::debug!(deployment = %deployment_id, state = state.as_str(), "emulated deployment finished");
    }

    fn finish_deletion(&mut self, token: &str, ctx: &EmulatorContext) {
        let Some(del) = self.deletions.get(token) else {
            return;
        };
        let (sub, rg) = (del.subscription.clone(), del.resource_group.clone());
        if ctx.scenario == Scenario::DeleteFails && !self.delete_failed {
            self.delete_failed = true;
            let blocking = self
                .resources_in(&sub, &rg)
                .first()
                .map(|r| r.id.clone())
                .unwrap_or_else(|| format!("/subscriptions/{sub}/resourceGroups/{rg}"));
            let error = ArmError::new(
                StatusCode::CONFLICT,
                "ResourceGroupDeletionBlocked",
                format!(
                    "Deletion of resource group '{rg}' failed as resources with identifiers '{blocking}' could not be deleted. The provisioning state of the resource group will be rolled back. The tracking Id is '{token}'. Please check audit logs for more details."
                ),
            );
            if let Some(d) = self.deletions.get_mut(token) {
                d.state = DeletionState::Failed(error);
            }
            if let Some(g) = self.groups.get_mut(&key(&sub, &rg)) {
                g.deleting = None;
            }
            tracing::debug!(resource_group = %rg, "emulated resource group deletion fails once (delete-fails)");
            return;
        }
        // A deployment still running when its group goes keeps creating what it had left
        // (Azure/azure-sdk-tools#611): its resources outlive the group, unless it was
        // cancelled and had ended first.
        let orphans = self.still_deploying_into(&sub, &rg, ctx);
        let leak = (ctx.scenario == Scenario::TeardownLeaks && !self.leaked)
            .then(|| self.leak_candidate(&sub, &rg))
            .flatten();
        if leak.is_some() {
            self.leaked = true;
        }
        let leak_key = leak.as_ref().map(|r| r.id.to_ascii_lowercase());
        self.resources.retain(|k, r| {
            Some(k) == leak_key.as_ref()
                || !(r.subscription.eq_ignore_ascii_case(&sub)
                    && r.resource_group.eq_ignore_ascii_case(&rg))
        });
        if let Some(leaked) = leak {
            tracing::debug!(id = %leaked.id, "emulated resource survives its resource group (teardown-leaks)");
            self.plant_resource(&sub, &rg, leaked);
        }
        let gone: Vec<String> = self
            .deployments
            .iter()
            .filter(|(_, d)| {
                d.subscription.eq_ignore_ascii_case(&sub)
                    && d.resource_group.eq_ignore_ascii_case(&rg)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(d) = self.deployments.remove(&k) {
                if d.booted {
                    ctx.servers.undeploy(&d.id());
                }
            }
        }
        self.groups.remove(&key(&sub, &rg));
        for r in orphans {
            tracing::debug!(id = %r.id, "emulated resource created by a deployment that outlived its group");
            self.plant_resource(&sub, &rg, r);
        }
        if let Some(d) = self.deletions.get_mut(token) {
            d.state = DeletionState::Succeeded;
        }
    }

    /// The resources the non-terminal deployments of a group would still create.
    fn still_deploying_into(
        &self,
        sub: &str,
        rg: &str,
        ctx: &EmulatorContext,
    ) -> Vec<PlannedResource> {
        let running: Vec<(String, DeploymentRequest)> = self
            .deployments
            .values()
            .filter(|d| {
                d.subscription.eq_ignore_ascii_case(sub)
                    && d.resource_group.eq_ignore_ascii_case(rg)
                    && !d.state.is_terminal()
            })
            .map(|d| (d.name.clone(), d.request.clone()))
            .collect();
        running
            .iter()
            .filter_map(|(name, request)| {
                self.evaluate(sub, rg, name, request, ctx.servers.as_ref())
                    .ok()
            })
            .flat_map(|e| e.resources)
            .collect()
    }

    /// The tagged resource that survives in `teardown-leaks`: a managed disk from the group,
    /// or the OS disk a tagged VM implicitly owns.
    fn leak_candidate(&self, sub: &str, rg: &str) -> Option<PlannedResource> {
        let inside = self.resources_in(sub, rg);
        let tagged: Vec<&PlannedResource> = inside.iter().filter(|r| !r.tags.is_empty()).collect();
        if let Some(disk) = tagged.iter().find(|r| r.is_type(DISK_TYPE)) {
            return Some((*disk).clone());
        }
        let owner = tagged
            .iter()
            .find(|r| r.is_type(VM_TYPE))
            .or_else(|| tagged.first())?;
        let base = owner.name.split('/').next().unwrap_or("cloudtest");
        let name = format!("{base}_OsDisk_1_{}", unique_string(&[&owner.id]));
        Some(PlannedResource {
            id: format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{DISK_TYPE}/{name}"),
            name,
            type_: DISK_TYPE.to_string(),
            api_version: "2023-04-02".into(),
            location: owner.location.clone(),
            tags: owner.tags.clone(),
            properties: json!({"provisioningState": "Succeeded", "diskState": "Unattached"}),
        })
    }

    /// `GET .../virtualMachines/{vm}/instanceView` (Microsoft.Compute
    /// `VirtualMachineInstanceView`): the VM's provisioning and power states and the
    /// instance views of its extensions (the CustomScript status message included).
    pub fn vm_instance_view(&self, sub: &str, rg: &str, vm: &str) -> Result<Value, ArmError> {
        self.group(sub, rg)?;
        let found = self.resources.values().find(|r| {
            r.subscription.eq_ignore_ascii_case(sub)
                && r.resource_group.eq_ignore_ascii_case(rg)
                && r.resource.is_type(VM_TYPE)
                && r.resource.name.eq_ignore_ascii_case(vm)
        });
        let Some(found) = found else {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!("The Resource 'Microsoft.Compute/virtualMachines/{vm}' under resource group '{rg}' was not found."),
            ));
        };
        let prefix = format!("{}/extensions/", found.resource.id.to_ascii_lowercase());
        let extensions: Vec<Value> = self
            .resources
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, r)| r.resource.properties.get("instanceView").cloned())
            .collect();
        Ok(json!({
            "computerName": vm,
            "osName": "ubuntu",
            "vmAgent": {"vmAgentVersion": "2.9.1.1", "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready", "message": "Guest Agent is running"}]},
            "extensions": extensions,
            "statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
                {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"}
            ]
        }))
    }

    /// Everything still present, for `mock-state.json`.
    pub fn remaining(&self) -> Vec<Value> {
        let groups = self
            .groups
            .values()
            .map(|g| json!({"type": RESOURCE_GROUP_TYPE, "id": g.id(), "tags": g.tags}));
        let resources = self.resources.values().map(
            |r| json!({"type": r.resource.type_, "id": r.resource.id, "tags": r.resource.tags}),
        );
        groups.chain(resources).collect()
    }
}

/// The error a capacity-constrained VM size gives (`create-fails`).
fn sku_not_available(r: &PlannedResource) -> ArmError {
    let size = r
        .properties
        .get("hardwareProfile")
        .and_then(|h| h.get("vmSize"))
        .and_then(Value::as_str)
        .unwrap_or("Standard_B2s");
    ArmError::new(
        StatusCode::CONFLICT,
        "SkuNotAvailable",
        format!(
            "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details.",
            r.location
        ),
    )
}

/// One `DeploymentOperation`; `failure` makes it the failed one.
fn operation_json(
    deployment_id: &str,
    r: &PlannedResource,
    failure: Option<&ArmError>,
    at: DateTime<Utc>,
) -> Value {
    let op_id = unique_string(&[deployment_id, &r.id]).to_uppercase();
    let mut props = json!({
        "provisioningOperation": "Create",
        "provisioningState": if failure.is_some() { "Failed" } else { "Succeeded" },
        "timestamp": rfc3339(at),
        "duration": iso_duration(Duration::from_millis(1500)),
        "trackingId": uuid::Uuid::new_v4().to_string(),
        "serviceRequestId": uuid::Uuid::new_v4().to_string(),
        "statusCode": if failure.is_some() { "Conflict" } else { "OK" },
        "targetResource": {
            "id": r.id,
            "resourceType": r.type_,
            "resourceName": r.name,
        },
    });
    if let Some(e) = failure {
        props["statusMessage"] = json!({"status": "Failed", "error": e.body()});
    }
    json!({"id": format!("{deployment_id}/operations/{op_id}"), "operationId": op_id, "properties": props})
}
