//! The CLOUD-02 [`Provider`]: one resource group per run, one incremental template
//! deployment in it, teardown by cancelling what still runs and deleting the group, and a
//! leak check by tag over the whole subscription.

use async_trait::async_trait;
use chrono::SecondsFormat;
use cloudtest_core::outputs::{parse_outputs, OutputContext};
use cloudtest_core::{
    poll_until, CreateFacts, DeploymentFacts, EvidenceItem, LeakFacts, LifecycleId, Phase,
    PhaseContext, PhaseError, PollError, PollStep, Provider, RequirementId, TeardownFacts,
};
use serde_json::json;
use tokio::time::Instant;

use crate::connection::ArmClients;
use crate::connection::ArmConnection;
use crate::deploy::DeploymentState;
use crate::errors::AzureError;
use crate::lro::{self, Monitor, Started};
use crate::parameters::Offered;
use crate::{deploy, leak, parameters, teardown};
use cloudtest_core::tags::{KEEP_TAG, KEEP_UNTIL_EXPIRY};
use cloudtest_core::{read_again, LifecyclePlan, Strikes};

/// Everything one Azure lifecycle deploys, decided by the CLI before any call.
/// Holds the admin password, so it has no `Debug`.
pub struct DeploymentPlan {
    /// The fields every lifecycle has; `region` is the Azure location.
    pub common: LifecyclePlan,
    /// The ARM template, parsed.
    pub template: serde_json::Value,
}

/// The CLOUD-02 provider for one location.
pub struct ArmProvider {
    clients: ArmClients,
    plan: DeploymentPlan,
    group: String,
    deployment: String,
    started: Option<Started>,
    /// `--keep-on-failure`: the resource group carries the keep tag.
    keep_until_expiry: bool,
}

impl ArmProvider {
    /// Builds the clients and fixes the names teardown will use, before anything exists.
    pub fn new(conn: ArmConnection, plan: DeploymentPlan) -> Result<Self, AzureError> {
        if conn.subscription_id.trim().is_empty() {
            return Err(AzureError::NoSubscription);
        }
        let clients = ArmClients::new(conn)?;
        let group = teardown::group_name(&plan.common.run_id);
        // ARM deployment names are at most 64 characters.
        let deployment: String = format!("cloudtest-{}", plan.common.run_id)
            .chars()
            .take(64)
            .collect();
        Ok(Self {
            clients,
            plan,
            group,
            deployment,
            started: None,
            keep_until_expiry: false,
        })
    }

    /// For `--keep-on-failure` runs: tags the resource group `cloudtest:keep=until-expiry`,
    /// so `cloudtest sweep` leaves a group a failed run kept (and everything in it) until
    /// it expires.
    pub fn with_keep_until_expiry(mut self, keep: bool) -> Self {
        self.keep_until_expiry = keep;
        self
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
        let mut tags = json!({
            leak::RUN_ID_TAG: self.plan.common.run_id,
            leak::REQUIREMENT_TAG: RequirementId::Cloud02.as_str(),
            leak::EXPIRES_AT_TAG: self.expires_at(),
        });
        if self.keep_until_expiry {
            tags[KEEP_TAG] = json!(KEEP_UNTIL_EXPIRY);
        }
        tags
    }

    fn expires_at(&self) -> String {
        self.plan
            .common
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn parameters(&self) -> Result<serde_json::Map<String, serde_json::Value>, AzureError> {
        let p = &self.plan.common;
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
            &self.plan.template,
            offered,
            &p.parameters,
        )
    }

    /// Turns a failed deployment into the first failed resource's type, code and message.
    async fn explain_failure(&self, fallback: AzureError) -> AzureError {
        match deploy::first_failed_operation(&self.clients, &self.group, &self.deployment).await {
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
        let strikes = Strikes::default();
        let result = poll_until(cx.deadline(), self.plan.common.poll, |_| async {
            match deploy::get(&self.clients, &self.group, &self.deployment).await {
                Ok(d) => {
                    strikes.clear();
                    match deploy::state_of(&d) {
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
        result.map(|_| ()).map_err(|e| {
            e.into_error(|o| AzureError::overdue(format!("deployment {}", self.deployment), o))
        })
    }

    /// Cancels the run's deployment if ARM still runs it, and waits (bounded by a third of
    /// the teardown time left) for it to end. Never fails: the group DELETE follows anyway.
    async fn cancel_running_deployment(&self, cx: &PhaseContext) {
        let state = match deploy::state(&self.clients, &self.group, &self.deployment).await {
            Ok(Some(DeploymentState::Running(s))) => s,
            Ok(_) => return,
            Err(e) => {
                cx.progress(format!(
                    "could not read deployment {}: {e}; deleting the group anyway",
                    self.deployment
                ));
                return;
            }
        };
        cx.progress(format!(
            "deployment {} is still {state}: cancelling it before the group DELETE",
            self.deployment
        ));
        if let Err(e) = deploy::cancel(&self.clients, &self.group, &self.deployment).await {
            // 409: it ended between the read and the cancel.
            cx.progress(format!("cancel deployment {}: {e}", self.deployment));
        }
        let left = cx.deadline().saturating_duration_since(Instant::now());
        let until = Instant::now() + left / 3;
        let waited = poll_until(until, self.plan.common.poll, |_| async {
            match deploy::state(&self.clients, &self.group, &self.deployment).await {
                Ok(Some(DeploymentState::Running(s))) => PollStep::Pending(s),
                Ok(_) => PollStep::Done(()),
                Err(e) if e.is_transient() => PollStep::Pending(e.to_string()),
                Err(e) => PollStep::Fail(e),
            }
        })
        .await;
        match waited {
            Ok(_) => cx.progress(format!("deployment {} ended", self.deployment)),
            Err(PollError::Failed(e)) => cx.progress(format!(
                "waiting for deployment {} to cancel: {e}; deleting the group anyway",
                self.deployment
            )),
            Err(PollError::Deadline(o)) => cx.progress(format!(
                "deployment {} still {} after cancelling; deleting the group anyway",
                self.deployment,
                o.last_or("")
            )),
        }
    }

    /// True when ARM reports the group as `Deleting` (its DELETE is under way).
    async fn group_is_deleting(&self) -> bool {
        matches!(
            teardown::state(&self.clients, &self.group).await,
            Ok(Some(s)) if s.eq_ignore_ascii_case("Deleting")
        )
    }

    /// One DELETE of the group, followed until ARM answers 404 for it. The group's
    /// resources are listed after the DELETE was sent, not before: the DELETE goes first.
    async fn delete_group(
        &self,
        cx: &PhaseContext,
        resources: &mut Option<Vec<cloudtest_core::ResourceRef>>,
    ) -> Result<(), AzureError> {
        let started = match teardown::begin_delete(&self.clients, &self.group).await {
            Ok(started) => started,
            // Whether ARM received it is unknown: waiting re-reads the group and sends the
            // DELETE again if no deletion is under way.
            Err(e) if e.is_retryable() => {
                cx.progress(format!("{e}; checking whether the delete took effect"));
                None
            }
            Err(e) => return Err(e),
        };
        if resources.is_none() {
            match teardown::resources(&self.clients, &self.group).await {
                Ok(r) => {
                    cx.progress(format!(
                        "resource group {} is deleting {} resources",
                        self.group,
                        r.len()
                    ));
                    *resources = Some(r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, group = %self.group, "could not list the group's resources")
                }
            }
        }
        if let Some(started) = started {
            lro::wait(
                &self.clients,
                cx,
                "delete resource group",
                started,
                self.plan.common.poll,
            )
            .await?;
        }
        teardown::wait_gone(&self.clients, cx, &self.group, self.plan.common.poll).await
    }
}

#[async_trait]
impl Provider for ArmProvider {
    fn lifecycle(&self) -> LifecycleId {
        LifecycleId::new(RequirementId::Cloud02, self.plan.common.region.clone())
    }

    async fn create(&mut self, cx: &PhaseContext) -> Result<CreateFacts, PhaseError> {
        // Validate inputs before creating anything.
        let parameters = self.parameters()?;
        cx.progress(format!(
            "creating resource group {} in {}",
            self.group, self.plan.common.region
        ));
        deploy::create_group(
            &self.clients,
            &self.group,
            &self.plan.common.region,
            self.tags(),
        )
        .await?;
        cx.progress(format!(
            "starting deployment {} (incremental)",
            self.deployment
        ));
        let started = deploy::start(
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
            run_id: self.plan.common.run_id.clone(),
        })
    }

    async fn wait_ready(&mut self, cx: &PhaseContext) -> Result<DeploymentFacts, PhaseError> {
        let started = self.started.clone().unwrap_or(Started {
            monitor: Monitor::None,
            retry_after: None,
        });
        let waited = if started.monitor == Monitor::None {
            self.wait_provisioning_state(cx).await
        } else {
            lro::wait(
                &self.clients,
                cx,
                "deployment",
                started,
                self.plan.common.poll,
            )
            .await
        };
        match waited {
            Ok(()) => {}
            Err(e @ AzureError::OperationFailed { .. }) => {
                return Err(self.explain_failure(e).await.into())
            }
            Err(e) => return Err(e.into()),
        }
        let d = read_again(self.plan.common.poll, || {
            deploy::get(&self.clients, &self.group, &self.deployment)
        })
        .await?;
        match deploy::state_of(&d) {
            DeploymentState::Succeeded => {}
            other => {
                let fallback = AzureError::OperationFailed {
                    operation: "deployment".into(),
                    status: format!("{other:?}"),
                    code: "(see deployment operations)".into(),
                    message: "the operation finished but the deployment is not Succeeded".into(),
                };
                return Err(self.explain_failure(fallback).await.into());
            }
        }
        let outputs = deploy::outputs(&d);
        parse_outputs(
            &outputs,
            OutputContext {
                admin_user: self.plan.common.admin_user.clone(),
                admin_password: self.plan.common.admin_password.clone(),
                resources: deploy::output_resources(
                    &d,
                    self.plan.common.use_spot,
                    &self.plan.template,
                    &self.plan.common.parameters,
                ),
            },
        )
        .map_err(|e| AzureError::Outputs(e).into())
    }

    async fn teardown(&mut self, cx: &PhaseContext) -> Result<TeardownFacts, PhaseError> {
        let begun = Instant::now();
        if !read_again(self.plan.common.poll, || {
            teardown::exists(&self.clients, &self.group)
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
        // A deployment still creating resources would go on after the group's DELETE and
        // could bring resources back once the group is gone (Azure/azure-sdk-tools#611).
        self.cancel_running_deployment(cx).await;
        cx.progress(format!(
            "deleting resource group {} (forceDeletionTypes={})",
            self.group,
            teardown::FORCE_DELETION_TYPES
        ));
        // A deletion ARM reports as failed (a resource that would not go, a conflict) is
        // retried once, as on AWS: the blocking condition is often gone a moment later.
        let mut retries = 0;
        let mut resources = None;
        loop {
            match self.delete_group(cx, &mut resources).await {
                Ok(()) => break,
                Err(
                    e @ (AzureError::OperationFailed { .. } | AzureError::Api { status: 409, .. }),
                ) if retries == 0 => {
                    cx.progress(format!("{e}; retrying the delete once"));
                    retries += 1;
                }
                Err(AzureError::Deadline { waited_s, .. }) if self.group_is_deleting().await => {
                    return Err(AzureError::StillDeleting {
                        group: self.group.clone(),
                        run_id: self.plan.common.run_id.clone(),
                        waited_s: waited_s.max(begun.elapsed().as_secs()),
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let deletion_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        cx.progress(format!(
            "resource group {} gone after {deletion_ms} ms",
            self.group
        ));
        Ok(TeardownFacts {
            deletion_ms,
            resources_deleted: resources.unwrap_or_default(),
            retries,
        })
    }

    async fn collect_evidence(&mut self, _cx: &PhaseContext, _failed: Phase) -> Vec<EvidenceItem> {
        crate::evidence::collect(
            &self.clients,
            &self.group,
            &self.deployment,
            &self.plan.common.admin_password,
        )
        .await
    }

    async fn leak_check(&mut self, _cx: &PhaseContext) -> Result<LeakFacts, PhaseError> {
        let remaining = read_again(self.plan.common.poll, || {
            leak::find_tagged(&self.clients, &self.plan.common.run_id)
        })
        .await?;
        // A group ARM is still deleting is one item (the group), not a list of its contents:
        // they go with it, and the teardown phase already named it and the sweep command.
        let remaining = if self.group_is_deleting().await {
            leak::collapse_deleting_group(remaining, &self.group)
        } else {
            remaining
        };
        Ok(LeakFacts {
            remaining,
            checked: leak::CHECKED.iter().map(|s| s.to_string()).collect(),
        })
    }
}
