//! CLOUD-02: Velociraptor on Azure Resource Manager.
//!
//! One resource group per run (`cloudtest-<run_id>`, tagged with the run id, requirement
//! and expiry), one incremental template deployment in it, outputs parsed by the shared
//! [`cloudtest_core::outputs`] parser, teardown by deleting the group and waiting for ARM to
//! answer 404, and a leak check by tag over the whole subscription.
//!
//! Calls go through `azure_mgmt_resources` 0.21 except following long-running operations,
//! which [`lro`] does over `reqwest` (the crate's own LRO futures are wrong in 0.21).

pub mod connection;
mod deployment;
pub mod errors;
pub mod leak;
mod lro;
mod parameters;
pub mod preflight;
pub mod resource_group;
pub mod resource_kind;
pub mod sweep;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudtest_core::outputs::{parse_outputs, OutputContext};
use cloudtest_core::{
    poll_until, Backoff, CreateFacts, DeploymentFacts, LeakFacts, LifecycleId, PhaseContext,
    PhaseError, PollError, PollStep, Provider, RequirementId, Secret, TeardownFacts,
};
use serde_json::json;
use tokio::time::Instant;

pub use connection::{
    live_credential, static_token_credential, ArmConnection, ARM_SCOPE, PUBLIC_ARM_ENDPOINT,
};
pub use errors::AzureError;
pub use preflight::{ArmPreflight, ArmPreflightPlan};

use cloudtest_core::{read_again, Strikes};
use connection::ArmClients;
use deployment::DeploymentState;
use lro::{Monitor, Started};
use parameters::Offered;

/// Everything one Azure lifecycle deploys, decided by the CLI before any call.
/// Holds the admin password, so it has no `Debug`.
pub struct DeploymentPlan {
    pub run_id: String,
    pub location: String,
    pub template_path: PathBuf,
    pub template: serde_json::Value,
    /// Config overrides (non-secret), e.g. `frontendPort`; sent only if declared.
    pub parameters: BTreeMap<String, String>,
    pub admin_user: String,
    pub admin_password: Secret,
    pub velociraptor_version: String,
    pub velociraptor_sha256: Option<String>,
    pub allowed_cidr: String,
    pub use_spot: bool,
    pub expires_at: DateTime<Utc>,
    pub poll: Backoff,
}

/// The CLOUD-02 provider for one location.
pub struct ArmProvider {
    clients: ArmClients,
    plan: DeploymentPlan,
    group: String,
    deployment: String,
    started: Option<Started>,
}

impl ArmProvider {
    /// Builds the clients and fixes the names teardown will use, before anything exists.
    pub fn new(conn: ArmConnection, plan: DeploymentPlan) -> Result<Self, AzureError> {
        if conn.subscription_id.trim().is_empty() {
            return Err(AzureError::NoSubscription);
        }
        let clients = ArmClients::new(conn)?;
        let group = resource_group::group_name(&plan.run_id);
        // ARM deployment names are at most 64 characters.
        let deployment: String = format!("cloudtest-{}", plan.run_id)
            .chars()
            .take(64)
            .collect();
        Ok(Self {
            clients,
            plan,
            group,
            deployment,
            started: None,
        })
    }

    /// The resource group this run uses.
    pub fn resource_group(&self) -> &str {
        &self.group
    }

    fn deployment_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Resources/deployments/{}",
            self.clients.conn.subscription_id, self.group, self.deployment
        )
    }

    fn tags(&self) -> serde_json::Value {
        json!({
            leak::RUN_ID_TAG: self.plan.run_id,
            leak::REQUIREMENT_TAG: RequirementId::Cloud02.as_str(),
            leak::EXPIRES_AT_TAG: self.expires_at(),
        })
    }

    fn expires_at(&self) -> String {
        self.plan
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn parameters(&self) -> Result<serde_json::Map<String, serde_json::Value>, AzureError> {
        let p = &self.plan;
        let mut offered = vec![
            ("runId", Offered::Plain(p.run_id.clone())),
            ("expiresAt", Offered::Plain(self.expires_at())),
            (
                "requirement",
                Offered::Plain(RequirementId::Cloud02.as_str().into()),
            ),
            (
                "velociraptorVersion",
                Offered::Plain(p.velociraptor_version.clone()),
            ),
            ("adminUser", Offered::Plain(p.admin_user.clone())),
            ("adminPassword", Offered::Secret(p.admin_password.clone())),
            ("allowedCidr", Offered::Plain(p.allowed_cidr.clone())),
            ("useSpot", Offered::Plain(p.use_spot.to_string())),
        ];
        if let Some(sha) = &p.velociraptor_sha256 {
            offered.push(("velociraptorSha256", Offered::Plain(sha.clone())));
        }
        parameters::build(
            &p.template_path.display().to_string(),
            &p.template,
            offered,
            &p.parameters,
        )
    }

    /// Turns a failed deployment into the first failed resource's type, code and message.
    async fn explain_failure(&self, fallback: AzureError) -> AzureError {
        match deployment::first_failed_operation(&self.clients, &self.group, &self.deployment).await
        {
            Ok(Some(f)) => AzureError::DeploymentFailed {
                deployment: self.deployment.clone(),
                resource: f.resource,
                resource_type: f.resource_type,
                code: f.code,
                message: f.message,
            },
            Ok(None) => fallback,
            Err(e) => {
                tracing::warn!(error = %e, "could not list deployment operations");
                fallback
            }
        }
    }

    /// Polls the deployment's own provisioningState (when ARM gave no monitor URL).
    async fn wait_provisioning_state(&self, cx: &PhaseContext) -> Result<(), AzureError> {
        let begun = Instant::now();
        let strikes = Strikes::default();
        let result = poll_until(cx.deadline(), self.plan.poll, |_| async {
            match deployment::get(&self.clients, &self.group, &self.deployment).await {
                Ok(d) => {
                    strikes.clear();
                    match deployment::state_of(&d) {
                        DeploymentState::Succeeded => PollStep::Done(()),
                        DeploymentState::Running(s) => PollStep::Pending(s),
                        s @ (DeploymentState::Failed | DeploymentState::Canceled) => {
                            PollStep::Fail(AzureError::OperationFailed {
                                operation: "deployment".into(),
                                status: format!("{s:?}"),
                                code: "(see deployment operations)".into(),
                                message: "(no message)".into(),
                            })
                        }
                    }
                }
                Err(e) => strikes.step(e, |e| e),
            }
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(PollError::Failed(e)) => Err(e),
            Err(PollError::Deadline { attempts, last }) => Err(AzureError::Deadline {
                operation: format!("deployment {}", self.deployment),
                waited_s: begun.elapsed().as_secs(),
                attempts,
                last: last.unwrap_or_default(),
            }),
        }
    }

    async fn do_create(&mut self, cx: &PhaseContext) -> Result<CreateFacts, AzureError> {
        // Validate inputs before creating anything.
        let parameters = self.parameters()?;
        cx.progress(format!(
            "creating resource group {} in {}",
            self.group, self.plan.location
        ));
        resource_group::create(&self.clients, &self.group, &self.plan.location, self.tags())
            .await?;
        cx.progress(format!(
            "starting deployment {} (incremental)",
            self.deployment
        ));
        let started = deployment::start(
            &self.clients,
            &self.group,
            &self.deployment,
            self.plan.template.clone(),
            parameters,
        )
        .await?;
        self.started = Some(started);
        Ok(CreateFacts {
            deployment_id: self.deployment_id(),
            run_id: self.plan.run_id.clone(),
        })
    }

    async fn do_wait_ready(&mut self, cx: &PhaseContext) -> Result<DeploymentFacts, AzureError> {
        let started = self.started.clone().unwrap_or(Started {
            monitor: Monitor::None,
            retry_after: None,
        });
        let waited = if started.monitor == Monitor::None {
            self.wait_provisioning_state(cx).await
        } else {
            lro::wait(&self.clients, cx, "deployment", started, self.plan.poll).await
        };
        match waited {
            Ok(()) => {}
            Err(e @ AzureError::OperationFailed { .. }) => {
                return Err(self.explain_failure(e).await)
            }
            Err(e) => return Err(e),
        }
        let d = read_again(self.plan.poll, || {
            deployment::get(&self.clients, &self.group, &self.deployment)
        })
        .await?;
        match deployment::state_of(&d) {
            DeploymentState::Succeeded => {}
            other => {
                let fallback = AzureError::OperationFailed {
                    operation: "deployment".into(),
                    status: format!("{other:?}"),
                    code: "(see deployment operations)".into(),
                    message: "the operation finished but the deployment is not Succeeded".into(),
                };
                return Err(self.explain_failure(fallback).await);
            }
        }
        let outputs = deployment::outputs(&d);
        let facts = parse_outputs(
            &outputs,
            OutputContext {
                admin_user: self.plan.admin_user.clone(),
                admin_password: self.plan.admin_password.clone(),
                resources: deployment::output_resources(&d, self.plan.use_spot),
            },
        )?;
        Ok(facts)
    }

    async fn do_teardown(&mut self, cx: &PhaseContext) -> Result<TeardownFacts, AzureError> {
        let begun = Instant::now();
        if !read_again(self.plan.poll, || {
            resource_group::exists(&self.clients, &self.group)
        })
        .await?
        {
            cx.progress(format!(
                "resource group {} does not exist: nothing to delete",
                self.group
            ));
            return Ok(TeardownFacts {
                deletion_ms: 0,
                resources_deleted: vec![],
                retries: 0,
            });
        }
        let resources = match resource_group::resources(&self.clients, &self.group).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, group = %self.group, "could not list the group's resources");
                vec![]
            }
        };
        cx.progress(format!(
            "deleting resource group {} ({} resources)",
            self.group,
            resources.len()
        ));
        // A deletion ARM reports as failed (a resource that would not go, a conflict) is
        // retried once, as on AWS: the blocking condition is often gone a moment later.
        let mut retries = 0;
        loop {
            match self.delete_group(cx).await {
                Ok(()) => break,
                Err(
                    e @ (AzureError::OperationFailed { .. } | AzureError::Api { status: 409, .. }),
                ) if retries == 0 => {
                    cx.progress(format!("{e}; retrying the delete once"));
                    retries += 1;
                }
                Err(e) => return Err(e),
            }
        }
        let deletion_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        cx.progress(format!(
            "resource group {} gone after {deletion_ms} ms",
            self.group
        ));
        Ok(TeardownFacts {
            deletion_ms,
            resources_deleted: resources,
            retries,
        })
    }

    /// One DELETE of the group, followed until ARM answers 404 for it.
    async fn delete_group(&self, cx: &PhaseContext) -> Result<(), AzureError> {
        let started = match resource_group::begin_delete(&self.clients, &self.group).await {
            Ok(started) => started,
            // Whether ARM received it is unknown: waiting re-reads the group and sends the
            // DELETE again if no deletion is under way.
            Err(e) if e.is_transient() => {
                cx.progress(format!("{e}; checking whether the delete took effect"));
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(started) = started {
            lro::wait(
                &self.clients,
                cx,
                "delete resource group",
                started,
                self.plan.poll,
            )
            .await?;
        }
        resource_group::wait_gone(&self.clients, cx, &self.group, self.plan.poll).await
    }
}

#[async_trait]
impl Provider for ArmProvider {
    fn lifecycle(&self) -> LifecycleId {
        LifecycleId::new(RequirementId::Cloud02, self.plan.location.clone())
    }

    async fn create(&mut self, cx: &PhaseContext) -> Result<CreateFacts, PhaseError> {
        self.do_create(cx).await.map_err(PhaseError::from)
    }

    async fn wait_ready(&mut self, cx: &PhaseContext) -> Result<DeploymentFacts, PhaseError> {
        self.do_wait_ready(cx).await.map_err(PhaseError::from)
    }

    async fn teardown(&mut self, cx: &PhaseContext) -> Result<TeardownFacts, PhaseError> {
        self.do_teardown(cx).await.map_err(PhaseError::from)
    }

    async fn leak_check(&mut self, _cx: &PhaseContext) -> Result<LeakFacts, PhaseError> {
        let remaining = read_again(self.plan.poll, || {
            leak::find_tagged(&self.clients, &self.plan.run_id)
        })
        .await
        .map_err(PhaseError::from)?;
        Ok(LeakFacts {
            remaining,
            checked: leak::CHECKED.iter().map(|s| s.to_string()).collect(),
        })
    }
}
