//! CLOUD-01 on CloudFormation: create the stack, wait for it while streaming its events,
//! parse its outputs, delete it and prove by tag that nothing is left.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudtest_core::outputs::{parse_outputs, OutputContext, OutputError};
use cloudtest_core::{
    poll_until, CreateFacts, DeploymentFacts, EvidenceItem, LeakFacts, LifecycleId, Overdue, Phase,
    PhaseContext, PhaseError, PollStep, Provider, RequirementId, ResourceKind, ResourceRef,
    ServerIdentity, TeardownFacts,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::calls::CallCounter;
use crate::connection::credential_source;
use crate::deploy::{CfnStacks, CreateStackRequest, StackResourceRecord, StackSnapshot};
use crate::errors::{AwsError, ErrorContext};
use crate::events::{
    classify_create, failure_line, CreateState, StackEventPager, StackEventRecord,
};
use crate::evidence::{boot_failure, boot_signal_text, failed_events_text, redact};
use crate::identity::{
    console_fingerprint, is_presigned_url, IdentityCheck, CA_CONSOLE_MARKER, CA_MISMATCH,
};
use crate::inventory::{Ec2Inventory, EXPIRES_AT_TAG, REQUIREMENT_TAG, RUN_ID_TAG};
use crate::leak::LEAK_KINDS;
use crate::parameters::{declared_parameters, instance_types, select_parameters, ParameterValue};
use crate::teardown::{DeleteRequests, NextStep, SendOutcome};
use crate::zones::{first_zone_offering, ZONE_PARAMETER};

/// Older home of [`crate::resources::kind_of`].
pub use crate::resources::kind_of;
use cloudtest_core::tags::{KEEP_TAG, KEEP_UNTIL_EXPIRY};
use cloudtest_core::{read_again, LifecyclePlan, Strikes};

/// Everything one CLOUD-01 lifecycle needs besides the SDK configuration: the fields every
/// lifecycle has, and CloudFormation's own. Holds the admin password, so it has no `Debug`.
pub struct StackPlan {
    pub common: LifecyclePlan,
    /// The template text, sent inline (`TemplateBody`).
    pub template_body: String,
    /// `--keep-on-failure`: create with `OnFailure=DO_NOTHING`, so a failed create keeps
    /// its resources (and the server's console) instead of rolling back.
    pub keep_on_failure: bool,
    /// CloudFormation service role: `RoleARN` of CreateStack and DeleteStack.
    pub cloudformation_role_arn: Option<String>,
    /// Permissions boundary of the server's IAM role: the template's
    /// `PermissionsBoundaryArn` parameter (sent only when the template declares it).
    pub permissions_boundary_arn: Option<String>,
}

impl StackPlan {
    /// The template parameters cloudtest fills for every run (sent only when declared).
    pub fn standard_parameters(&self) -> BTreeMap<String, ParameterValue> {
        let plain = |v: &str| ParameterValue::Plain(v.to_string());
        let mut m = BTreeMap::new();
        m.insert("RunId".to_string(), plain(&self.common.run_id));
        m.insert(
            "ExpiresAt".to_string(),
            plain(&expires_tag(self.common.expires_at)),
        );
        m.insert(
            "Requirement".to_string(),
            plain(RequirementId::Cloud01.as_str()),
        );
        m.insert(
            "VelociraptorVersion".to_string(),
            plain(&self.common.velociraptor_version),
        );
        if let Some(sha) = &self.common.velociraptor_sha256 {
            m.insert("VelociraptorSha256".to_string(), plain(sha));
        }
        m.insert("AdminUser".to_string(), plain(&self.common.admin_user));
        m.insert(
            "AdminPassword".to_string(),
            ParameterValue::Secret(self.common.admin_password.clone()),
        );
        m.insert("AllowedCidr".to_string(), plain(&self.common.allowed_cidr));
        m.insert(
            "UseSpot".to_string(),
            plain(if self.common.use_spot {
                "true"
            } else {
                "false"
            }),
        );
        if let Some(arn) = &self.permissions_boundary_arn {
            m.insert(PERMISSIONS_BOUNDARY_PARAMETER.to_string(), plain(arn));
        }
        m
    }

    /// Tags on the stack; CloudFormation copies them onto every resource it creates.
    pub fn stack_tags(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(RUN_ID_TAG.to_string(), self.common.run_id.clone());
        m.insert(
            REQUIREMENT_TAG.to_string(),
            RequirementId::Cloud01.as_str().to_string(),
        );
        m.insert(
            EXPIRES_AT_TAG.to_string(),
            expires_tag(self.common.expires_at),
        );
        m
    }
}

/// The template parameter that carries the server role's permissions boundary.
pub const PERMISSIONS_BOUNDARY_PARAMETER: &str = "PermissionsBoundaryArn";

fn expires_tag(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Stack names allow letters, digits and dashes, start with a letter, at most 128 long.
pub fn stack_name(run_id: &str) -> String {
    let mut name: String = format!("cloudtest-{run_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(128);
    name
}

/// Why stack outputs can be missing; added to a missing-output message.
const MISSING_OUTPUT_HINT: &str = "CloudFormation leaves out an output whose value it could \
    not resolve (e.g. `!GetAtt <Instance>.PublicIp` of an instance without a public IP, or \
    a wait condition's Data that an emulator does not implement)";

/// CLOUD-01 through CloudFormation and EC2.
pub struct CloudFormationProvider {
    plan: StackPlan,
    stack_name: String,
    stack_id: Option<String>,
    stacks: CfnStacks,
    inventory: Ec2Inventory,
    counter: CallCounter,
    pager: StackEventPager,
    events: Vec<StackEventRecord>,
    output_overrides: BTreeMap<String, String>,
    last_outputs: BTreeMap<String, String>,
    /// `--keep-on-failure`: the stack (and so every resource) carries the keep tag.
    keep_until_expiry: bool,
    /// Set when teardown's deadline passed while the stack was still being deleted.
    deletion_unfinished: Option<String>,
    identity: IdentityCheck,
    /// What wait_ready found the stack made of (teardown reports it as deleted).
    deployed_resources: Option<Vec<ResourceRef>>,
    /// Instance ids of the stack's server and client (from its resources).
    server_instance: Option<String>,
    client_instance: Option<String>,
    /// `GetConsoleOutput --latest` was refused once (not Nitro, or an emulator): use the
    /// buffered output from then on.
    console_latest_refused: bool,
}

impl CloudFormationProvider {
    pub fn new(sdk: &SdkConfig, plan: StackPlan) -> Self {
        let errors = ErrorContext {
            region: plan.common.region.clone(),
            endpoint: sdk.endpoint_url().map(str::to_string),
            credential_source: credential_source(false),
        };
        let counter = CallCounter::new();
        Self {
            stack_name: stack_name(&plan.common.run_id),
            stacks: CfnStacks::new(sdk, &counter, errors.clone())
                .with_role_arn(plan.cloudformation_role_arn.clone()),
            inventory: Ec2Inventory::new(sdk, &counter, errors),
            counter,
            plan,
            stack_id: None,
            pager: StackEventPager::new(),
            events: Vec::new(),
            output_overrides: BTreeMap::new(),
            last_outputs: BTreeMap::new(),
            keep_until_expiry: false,
            deletion_unfinished: None,
            identity: IdentityCheck::Console,
            deployed_resources: None,
            server_instance: None,
            client_instance: None,
            console_latest_refused: false,
        }
    }

    /// For `--keep-on-failure` runs: tags the stack `cloudtest:keep=until-expiry`, which
    /// CloudFormation copies onto its resources, so `cloudtest sweep` leaves what a failed
    /// run kept until it expires.
    pub fn with_keep_until_expiry(mut self, keep: bool) -> Self {
        self.keep_until_expiry = keep;
        self
    }

    /// The stack's tags: the plan's, plus the keep tag when asked for.
    fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.plan.stack_tags();
        if self.keep_until_expiry {
            tags.insert(KEEP_TAG.to_string(), KEEP_UNTIL_EXPIRY.to_string());
        }
        tags
    }

    /// Names the credential source in error messages (the CLI passes
    /// [`crate::AwsConnection::credential_source`]; default: the process environment).
    pub fn with_credential_source(mut self, source: impl Into<String>) -> Self {
        let source = source.into();
        self.stacks.set_credential_source(&source);
        self.inventory.set_credential_source(&source);
        self
    }

    /// **Emulator runs only.** Replaces stack outputs before they are parsed, so the probes
    /// reach an emulated Velociraptor (moto's outputs point at nothing that runs). Live runs
    /// never set this. Each replaced output is reported as a progress line.
    pub fn with_output_overrides(mut self, overrides: BTreeMap<String, String>) -> Self {
        self.output_overrides = overrides;
        self
    }

    /// How `verify_server` checks the CA (default: against the server's console). The CLI
    /// passes [`IdentityCheck::NotVerifiable`] for an external endpoint such as moto, whose
    /// console output is canned text.
    pub fn with_identity_check(mut self, check: IdentityCheck) -> Self {
        self.identity = check;
        self
    }

    /// The instance's console: the live one first, else the buffered one.
    async fn console(&mut self, instance: &str) -> Result<Option<String>, AwsError> {
        if !self.console_latest_refused {
            match self.inventory.console_output(instance, true).await {
                Err(AwsError::Api { code, .. })
                    if matches!(
                        code.as_str(),
                        "UnsupportedOperation" | "InvalidParameterValue" | "InvalidParameter"
                    ) =>
                {
                    self.console_latest_refused = true;
                }
                other => return other,
            }
        }
        self.inventory.console_output(instance, false).await
    }

    /// The stack name chosen up front (`cloudtest-<run_id>`).
    pub fn stack_name(&self) -> &str {
        &self.stack_name
    }

    /// HTTP attempts (SDK retries included) this lifecycle has sent to AWS so far. Also
    /// reported as the last progress line of `leak_check`.
    pub fn api_calls(&self) -> u32 {
        self.counter.get()
    }

    /// The outputs the stack itself returned at the end of `wait_ready` (before overrides).
    pub fn stack_outputs(&self) -> &BTreeMap<String, String> {
        &self.last_outputs
    }

    /// Every stack event read so far, oldest first.
    pub fn stack_events(&self) -> &[StackEventRecord] {
        &self.events
    }

    /// Reads new stack events and streams them as progress.
    async fn stream_events(
        stacks: &CfnStacks,
        name: &str,
        pager: &Mutex<StackEventPager>,
        seen: &Mutex<Vec<StackEventRecord>>,
        cx: &PhaseContext,
    ) -> Result<(), AwsError> {
        let mut pager = pager.lock().await;
        let fresh = stacks.new_events(name, &mut pager).await?;
        for e in &fresh {
            cx.progress(e.progress_line());
        }
        seen.lock().await.extend(fresh);
        Ok(())
    }

    /// `Logical (Type physical): reason` for each resource CloudFormation could not delete.
    async fn failed_resources(&self) -> String {
        match self.stacks.resources(&self.stack_name).await {
            Ok(rs) => {
                let failed: Vec<String> = rs
                    .iter()
                    .filter(|r| r.status == "DELETE_FAILED")
                    .map(|r| {
                        format!(
                            "{} ({} {}): {}",
                            r.logical_id,
                            r.resource_type,
                            r.physical_id.as_deref().unwrap_or("no physical id"),
                            r.reason.as_deref().unwrap_or("no reason given")
                        )
                    })
                    .collect();
                if failed.is_empty() {
                    "no resource reports DELETE_FAILED".to_string()
                } else {
                    failed.join("; ")
                }
            }
            Err(e) => format!("could not list the stack's resources: {e}"),
        }
    }

    async fn deployment_resources(&self, resources: &[StackResourceRecord]) -> Vec<ResourceRef> {
        let mut refs: Vec<ResourceRef> = resources
            .iter()
            // A wait-condition handle's physical id is a pre-signed URL that lets its holder
            // signal the stack: it never goes into facts, results or logs.
            .filter(|r| {
                r.resource_type != "AWS::CloudFormation::WaitConditionHandle"
                    && !r.physical_id.as_deref().is_some_and(is_presigned_url)
            })
            .filter_map(|r| {
                let kind = kind_of(&r.resource_type);
                Some(ResourceRef {
                    cloud_type: r.resource_type.clone(),
                    id: r.physical_id.clone()?,
                    // AWS charges every public IPv4 address one hourly rate: one SKU.
                    sku: (kind == ResourceKind::PublicIp).then(|| "public_ip".to_string()),
                    kind,
                    spot: false,
                })
            })
            .collect();
        let instance_ids: Vec<String> = refs
            .iter()
            .filter(|r| r.kind == ResourceKind::Instance)
            .map(|r| r.id.clone())
            .collect();
        match self.inventory.instance_details(&instance_ids).await {
            Ok(details) => {
                for r in refs.iter_mut() {
                    if let Some((sku, spot)) = details.get(&r.id) {
                        r.sku = sku.clone();
                        r.spot = *spot;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(stack = %self.stack_name, "instance types unknown, pricing will be partial: {e}")
            }
        }
        refs
    }

    /// The zone for the stack's subnets: the first, by name, that offers every instance
    /// type the template launches. `None` (the template's own first zone) when the offerings
    /// cannot be read; a failure when no zone offers them all.
    async fn choose_zone(&self, cx: &PhaseContext) -> Result<Option<String>, PhaseError> {
        let types = instance_types(&self.plan.template_body, &self.plan.common.parameters);
        if types.is_empty() {
            return Ok(None);
        }
        let listed = types.join(", ");
        let offers = match self.inventory.zone_offerings(&types).await {
            Ok(offers) => offers,
            Err(e) => {
                cx.progress(format!(
                    "could not list the zones that offer {listed} ({e}); the template takes the region's first zone"
                ));
                return Ok(None);
            }
        };
        match first_zone_offering(&offers, &types) {
            Some(zone) => {
                cx.progress(format!(
                    "availability zone {zone}: the first in {} that offers {listed}",
                    self.plan.common.region
                ));
                Ok(Some(zone))
            }
            None => Err(PhaseError::failed(format!(
                "no availability zone in {} offers all of {listed} (offered: {}); pick instance types offered in one zone ([aws.parameters] ServerInstanceType / ClientInstanceType) or another region",
                self.plan.common.region,
                describe_offers(&offers)
            ))),
        }
    }

    fn outputs_error(&self, e: OutputError) -> PhaseError {
        let mut message = format!("stack {}: {e}", self.stack_name);
        if matches!(e, OutputError::Missing { .. }) {
            message.push_str("; ");
            message.push_str(MISSING_OUTPUT_HINT);
        }
        PhaseError::failed(message)
    }
}

/// How waiting for deletion ended badly.
enum DeleteWait {
    /// `DELETE_FAILED` again after the retry.
    DeleteFailed(StackSnapshot),
    /// DeleteStack itself rejected again after the retry.
    Rejected(String),
    Error(PhaseError),
    /// The teardown deadline passed while the stack was still there.
    Overdue(Overdue),
}

/// The physical id of the first instance whose logical id contains `role`.
fn instance_of(resources: &[StackResourceRecord], role: &str) -> Option<String> {
    resources
        .iter()
        .filter(|r| r.resource_type == "AWS::EC2::Instance" && r.logical_id.contains(role))
        .find_map(|r| r.physical_id.clone())
}

pub(crate) fn token(kind: &str, run_id: &str) -> String {
    // Same alphabet as stack names: [a-zA-Z0-9-], at most 128.
    let mut t = stack_name(run_id).replacen("cloudtest-", &format!("cloudtest-{kind}-"), 1);
    t.truncate(128);
    t
}

/// `us-east-1a: t3.micro; us-east-1b: none`, for the no-zone message.
fn describe_offers(
    offers: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> String {
    if offers.is_empty() {
        return "none in any zone".into();
    }
    offers
        .iter()
        .map(|(zone, types)| {
            format!(
                "{zone}: {}",
                types.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait]
impl Provider for CloudFormationProvider {
    fn lifecycle(&self) -> LifecycleId {
        LifecycleId::new(RequirementId::Cloud01, self.plan.common.region.clone())
    }

    async fn create(&mut self, cx: &PhaseContext) -> Result<CreateFacts, PhaseError> {
        let declared =
            declared_parameters(&self.plan.template_body, &self.plan.common.template_path)
                .map_err(|e| PhaseError::error(e.to_string()))?;
        let mut standard = self.plan.standard_parameters();
        if declared.iter().any(|d| d.name == ZONE_PARAMETER)
            && !self.plan.common.parameters.contains_key(ZONE_PARAMETER)
        {
            let zone = self.choose_zone(cx).await?;
            if let Some(zone) = zone {
                standard.insert(ZONE_PARAMETER.to_string(), ParameterValue::Plain(zone));
            }
        }
        let selection = select_parameters(&declared, standard, &self.plan.common.parameters);
        if !selection.ignored_overrides.is_empty() {
            let msg = format!(
                "template {} does not declare parameter(s) {}; not sent",
                self.plan.common.template_path.display(),
                selection.ignored_overrides.join(", ")
            );
            tracing::warn!("{msg}");
            cx.progress(msg);
        }
        let request = CreateStackRequest {
            name: self.stack_name.clone(),
            template_body: self.plan.template_body.clone(),
            parameters: selection.send,
            tags: self.tags(),
            client_request_token: token("create", &self.plan.common.run_id),
            keep_on_failure: self.plan.keep_on_failure,
        };
        cx.progress(format!(
            "CreateStack {} from {} in {}",
            self.stack_name,
            self.plan.common.template_path.display(),
            self.plan.common.region
        ));
        let stack_id = self.stacks.create(&request).await?;
        self.stack_id = Some(stack_id.clone());
        Ok(CreateFacts {
            deployment_id: stack_id,
            run_id: self.plan.common.run_id.clone(),
        })
    }

    async fn wait_ready(&mut self, cx: &PhaseContext) -> Result<DeploymentFacts, PhaseError> {
        let pager = Mutex::new(std::mem::take(&mut self.pager));
        let seen = Mutex::new(Vec::new());
        let stacks = &self.stacks;
        let name = self.stack_name.as_str();
        let strikes = Strikes::default();
        let result = poll_until(cx.deadline(), self.plan.common.poll, |_| {
            let (pager, seen, strikes) = (&pager, &seen, &strikes);
            async move {
                let snap = match stacks.describe(name).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        return PollStep::Fail(PhaseError::failed(format!(
                            "stack {name} does not exist (it was never created or has been deleted)"
                        )))
                    }
                    Err(e) => return strikes.step(e, PhaseError::from),
                };
                if let Err(e) = Self::stream_events(stacks, name, pager, seen, cx).await {
                    return strikes.step(e, PhaseError::from);
                }
                strikes.clear();
                match classify_create(&snap.status) {
                    CreateState::Ready => PollStep::Done(snap),
                    CreateState::Pending => PollStep::Pending(snap.status),
                    CreateState::Failed => {
                        let all = seen.lock().await;
                        PollStep::Fail(PhaseError::failed(failure_line(
                            name,
                            &snap.status,
                            snap.reason.as_deref(),
                            &all,
                        )))
                    }
                }
            }
        })
        .await;
        self.pager = pager.into_inner();
        self.events.extend(seen.into_inner());
        let (snap, _) = result.map_err(|e| {
            e.into_error(|o| {
                PhaseError::failed(format!(
                    "stack {} was still {} when the wait_ready deadline passed ({} polls)",
                    self.stack_name,
                    o.last_or("not ready"),
                    o.attempts
                ))
            })
        })?;
        self.stack_id = Some(snap.stack_id.clone());
        self.last_outputs = snap.outputs.clone();

        let mut outputs = snap.outputs;
        for (k, v) in &self.output_overrides {
            cx.progress(format!("output {k} replaced by an emulator override"));
            outputs.insert(k.clone(), v.clone());
        }
        let resources = read_again(self.plan.common.poll, || {
            self.stacks.resources(&self.stack_name)
        })
        .await?;
        self.server_instance = instance_of(&resources, "Server");
        self.client_instance = instance_of(&resources, "Client");
        let resources = self.deployment_resources(&resources).await;
        self.deployed_resources = Some(resources.clone());
        parse_outputs(
            &outputs,
            OutputContext {
                admin_user: self.plan.common.admin_user.clone(),
                admin_password: self.plan.common.admin_password.clone(),
                resources,
            },
        )
        .map_err(|e| self.outputs_error(e))
    }

    /// Reads the client's console once per four poll caps (once a minute against AWS) while
    /// the probe waits for it to enroll; a `cloudtest-boot-failed:` line ends enrollment at
    /// once with its reason instead of at the enrollment deadline.
    async fn watch_clients(&mut self, _cx: &PhaseContext, _d: &DeploymentFacts) -> PhaseError {
        let Some(client) = self.client_instance.clone() else {
            return std::future::pending().await;
        };
        let every = self.plan.common.poll.max * 4;
        let password = self.plan.common.admin_password.expose().to_string();
        loop {
            tokio::time::sleep(every).await;
            // A console that cannot be read now is read again next time: the probe still
            // decides on its own.
            if let Ok(Some(text)) = self.console(&client).await {
                if let Some(reason) = boot_failure(&text) {
                    return PhaseError::failed(format!(
                        "client instance {client} failed to boot: {} (from its console; the whole console is in the failure evidence)",
                        redact(&reason, &[&password])
                    ));
                }
            }
        }
    }

    async fn collect_evidence(&mut self, cx: &PhaseContext, failed: Phase) -> Vec<EvidenceItem> {
        let deadline = cx.deadline();
        let mut items = Vec::new();
        // Events not streamed yet (the failure may have come from another phase).
        let fresh = {
            let mut pager = std::mem::take(&mut self.pager);
            let read = tokio::time::timeout_at(
                deadline,
                self.stacks.new_events(&self.stack_name, &mut pager),
            )
            .await;
            self.pager = pager;
            read
        };
        let events_note = match fresh {
            Ok(Ok(fresh)) => {
                self.events.extend(fresh);
                None
            }
            Ok(Err(e)) => Some(format!("(newer events could not be read: {e})\n")),
            Err(_) => {
                Some("(newer events could not be read before the evidence deadline)\n".to_string())
            }
        };
        let mut events = failed_events_text(&self.stack_name, &self.events);
        if let Some(note) = events_note {
            events.push_str(&note);
        }
        items.push(EvidenceItem {
            name: "stack-events.txt".into(),
            text: format!("{} failed; {events}", failed.as_str()),
        });
        if let Some(signal) = boot_signal_text(&self.events) {
            items.push(EvidenceItem {
                name: "boot-signal.txt".into(),
                text: signal,
            });
        }
        // wait_ready did not finish: find the instances from the stack's resources.
        if self.server_instance.is_none() || self.client_instance.is_none() {
            if let Ok(Ok(resources)) =
                tokio::time::timeout_at(deadline, self.stacks.resources(&self.stack_name)).await
            {
                self.server_instance = instance_of(&resources, "Server");
                self.client_instance = instance_of(&resources, "Client");
            }
        }
        let password = self.plan.common.admin_password.expose().to_string();
        for (role, instance) in [
            ("server", self.server_instance.clone()),
            ("client", self.client_instance.clone()),
        ] {
            let name = format!("console-{role}.txt");
            let text = match instance {
                None => format!("no {role} instance was listed by the stack; no console to read\n"),
                Some(id) => match tokio::time::timeout_at(deadline, self.console(&id)).await {
                    Ok(Ok(Some(text))) => format!(
                        "GetConsoleOutput of {role} instance {id}\n\n{}",
                        redact(&text, &[&password])
                    ),
                    Ok(Ok(None)) => format!("{role} instance {id}: no console output yet\n"),
                    Ok(Err(e)) => format!("{role} instance {id}: could not read its console: {e}\n"),
                    Err(_) => format!(
                        "{role} instance {id}: its console could not be read before the evidence deadline\n"
                    ),
                },
            };
            items.push(EvidenceItem { name, text });
        }
        items
    }

    async fn verify_server(
        &mut self,
        cx: &PhaseContext,
        deployment: &DeploymentFacts,
    ) -> Result<Option<ServerIdentity>, PhaseError> {
        if let IdentityCheck::NotVerifiable(why) = &self.identity {
            cx.progress(format!(
                "server CA: not verifiable on this endpoint ({why})"
            ));
            return Ok(Some(ServerIdentity::NotVerifiable(format!(
                "not verifiable on this endpoint: {why}"
            ))));
        }
        let Some(instance) = self.server_instance.clone() else {
            return Err(PhaseError::failed(format!(
                "stack {} lists no server instance, so the CA published through the wait condition cannot be checked against the server's console",
                self.stack_name
            )));
        };
        let published = deployment.ca_fingerprint.clone();
        let mut reads = 0u32;
        let mut last: String;
        loop {
            reads += 1;
            match self.console(&instance).await {
                Ok(Some(text)) => match console_fingerprint(&text) {
                    Some(fp) if fp == published => {
                        cx.progress(format!(
                            "server CA {published} matches the one instance {instance} printed on its console"
                        ));
                        return Ok(Some(ServerIdentity::Verified(format!(
                            "CA {published} matches the cloudtest-ca-sha256 line on the console of instance {instance}"
                        ))));
                    }
                    Some(fp) => {
                        return Err(PhaseError::failed(format!(
                            "{CA_MISMATCH} (published {published}, console of instance {instance} {fp}); the probes will not trust it"
                        )))
                    }
                    None => last = format!("console has no {CA_CONSOLE_MARKER} line yet"),
                },
                Ok(None) => last = "no console output yet".to_string(),
                Err(e) if e.is_transient() => last = e.to_string(),
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            if now >= cx.deadline() {
                break;
            }
            let wait = self
                .plan
                .common
                .poll
                .delay(reads - 1)
                .min(cx.deadline() - now);
            tokio::time::sleep(wait).await;
        }
        Err(PhaseError::failed(format!(
            "the console of server instance {instance} showed no {CA_CONSOLE_MARKER} line before the verify_server deadline ({reads} reads, last: {last}), so the CA published through the wait condition cannot be trusted"
        )))
    }

    async fn teardown(&mut self, cx: &PhaseContext) -> Result<TeardownFacts, PhaseError> {
        let started = Instant::now();
        let Some(snap) = read_again(self.plan.common.poll, || {
            self.stacks.describe(&self.stack_name)
        })
        .await?
        else {
            cx.progress(format!(
                "stack {} does not exist; nothing to delete",
                self.stack_name
            ));
            return Ok(TeardownFacts {
                deletion_ms: 0,
                resources_deleted: Vec::new(),
                retries: 0,
            });
        };
        // wait_ready listed them already when it finished; a create that failed did not.
        let resources_deleted = match self.deployed_resources.clone() {
            Some(known) => known,
            None => match self.stacks.resources(&self.stack_name).await {
                Ok(rs) => self.deployment_resources(&rs).await,
                Err(e) => {
                    tracing::warn!(stack = %self.stack_name, "could not list resources before delete: {e}");
                    Vec::new()
                }
            },
        };
        cx.progress(format!(
            "DeleteStack {} (was {}, {} resources)",
            self.stack_name,
            snap.status,
            resources_deleted.len()
        ));
        let requests = Mutex::new(DeleteRequests::new(&self.plan.common.run_id));
        let pager = Mutex::new(std::mem::take(&mut self.pager));
        let seen = Mutex::new(Vec::new());
        let strikes = Strikes::default();
        let stacks = &self.stacks;
        let name = self.stack_name.as_str();
        let error = |e: AwsError| DeleteWait::Error(e.into());
        // The first round uses the state just read instead of asking again at once.
        let first = Mutex::new(Some(snap));
        let result = poll_until(cx.deadline(), self.plan.common.poll, |_| {
            let (requests, pager, seen, strikes) = (&requests, &pager, &seen, &strikes);
            let first = &first;
            async move {
                let fresh = first.lock().await.take();
                let reused = fresh.is_some();
                let snap = match fresh {
                    Some(s) => s,
                    None => match stacks.describe(name).await {
                        Ok(Some(s)) => s,
                        Ok(None) => return PollStep::Done(()),
                        Err(e) => return strikes.step(e, error),
                    },
                };
                // Before the first DeleteStack nothing new has happened since wait_ready read
                // the events; the pager picks up from there in the next round.
                let events = if reused {
                    Ok(())
                } else {
                    Self::stream_events(stacks, name, pager, seen, cx).await
                };
                if let Err(e) = events {
                    // The stack can finish deleting between DescribeStacks and
                    // DescribeStackEvents; by name, a deleted stack "does not exist".
                    return match stacks.describe(name).await {
                        Ok(None) => PollStep::Done(()),
                        _ => strikes.step(e, error),
                    };
                }
                strikes.clear();
                let mut requests = requests.lock().await;
                let token = match requests.on_status(&snap.status) {
                    NextStep::Done => return PollStep::Done(()),
                    NextStep::GiveUp => return PollStep::Fail(DeleteWait::DeleteFailed(snap)),
                    NextStep::Wait(why) => {
                        return PollStep::Pending(format!("{} ({why})", snap.status))
                    }
                    NextStep::Send(token) => token,
                };
                let (outcome, said) = match stacks.delete(name, &token).await {
                    Ok(()) => (SendOutcome::Accepted, None),
                    Err(e) if e.is_stack_missing() => return PollStep::Done(()),
                    Err(e) if e.is_delete_refused() => (SendOutcome::Refused, Some(e)),
                    Err(e) if e.is_transient() => (SendOutcome::Unknown, Some(e)),
                    Err(e @ AwsError::Api { .. }) => (SendOutcome::Failed, Some(e)),
                    Err(e) => return PollStep::Fail(error(e)),
                };
                match requests.on_sent(outcome) {
                    NextStep::GiveUp => PollStep::Fail(DeleteWait::Rejected(
                        said.map(|e| e.to_string()).unwrap_or_default(),
                    )),
                    NextStep::Wait(why) => {
                        if let Some(e) = &said {
                            cx.progress(format!("DeleteStack {name}: {e}; {why}"));
                        }
                        PollStep::Pending(format!("{} ({why})", snap.status))
                    }
                    _ => PollStep::Pending(snap.status),
                }
            }
        })
        .await;
        self.pager = pager.into_inner();
        self.events.extend(seen.into_inner());
        let retries = requests.into_inner().retries();
        let failure = match result.map_err(|e| e.into_error(DeleteWait::Overdue)) {
            Ok(((), _)) => {
                return Ok(TeardownFacts {
                    deletion_ms: started.elapsed().as_millis() as u64,
                    resources_deleted,
                    retries,
                })
            }
            Err(DeleteWait::Error(e)) => return Err(e),
            Err(DeleteWait::Rejected(e)) => e,
            Err(DeleteWait::DeleteFailed(snap)) => format!(
                "DELETE_FAILED ({}); failed resources: {}",
                snap.reason.as_deref().unwrap_or("no reason given"),
                self.failed_resources().await
            ),
            Err(DeleteWait::Overdue(o)) => {
                let message = format!(
                    "stack {} was still {} when the teardown deadline passed ({} polls); deletion is NOT finished: check the CloudFormation console or run `cloudtest sweep`",
                    self.stack_name,
                    o.last_or("present"),
                    o.attempts
                );
                self.deletion_unfinished = Some(message.clone());
                return Err(PhaseError::failed(message));
            }
        };
        Err(PhaseError::failed(format!(
            "stack {} could not be deleted on the second attempt either: {failure}; delete what is left by hand or with `cloudtest sweep`",
            self.stack_name
        )))
    }

    async fn leak_check(&mut self, cx: &PhaseContext) -> Result<LeakFacts, PhaseError> {
        // Resources CloudFormation is still deleting would all look like leaks.
        if let Some(unfinished) = &self.deletion_unfinished {
            return Err(PhaseError::failed(format!(
                "not checked: {unfinished}; its resources are still being deleted, so listing them now would report them as leaks"
            )));
        }
        let remaining = read_again(self.plan.common.poll, || {
            self.inventory.leaks(&self.plan.common.run_id)
        })
        .await?;
        for r in &remaining {
            cx.progress(format!("still present: {} {}", r.kind, r.id));
        }
        cx.progress(format!(
            "{} AWS API attempts in this lifecycle",
            self.counter.get()
        ));
        Ok(LeakFacts {
            remaining,
            checked: LEAK_KINDS.iter().map(|k| k.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudtest_core::{Backoff, Secret};
    use std::time::Duration;

    fn plan() -> StackPlan {
        StackPlan {
            common: LifecyclePlan {
                run_id: "20240101t000000z-ab12".into(),
                region: "us-east-1".into(),
                template_path: "t.yaml".into(),
                parameters: BTreeMap::new(),
                admin_user: "cloudtest-admin".into(),
                admin_password: Secret::new("A".repeat(28)),
                velociraptor_version: "0.77.2".into(),
                velociraptor_sha256: None,
                allowed_cidr: "198.51.100.7/32".into(),
                use_spot: true,
                expires_at: DateTime::parse_from_rfc3339("2024-01-01T06:00:00Z")
                    .expect("valid")
                    .with_timezone(&Utc),
                poll: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
            },
            template_body: String::new(),
            keep_on_failure: false,
            cloudformation_role_arn: None,
            permissions_boundary_arn: None,
        }
    }

    #[test]
    fn names_and_tokens_use_the_allowed_alphabet() {
        assert_eq!(stack_name("r_1.x"), "cloudtest-r-1-x");
        assert_eq!(stack_name(&"x".repeat(300)).len(), 128);
        assert_eq!(token("create", "r1"), "cloudtest-create-r1");
        assert_eq!(token("delete2", "r1"), "cloudtest-delete2-r1");
    }

    #[test]
    fn standard_parameters_and_tags() {
        let p = plan();
        let params = p.standard_parameters();
        assert_eq!(params["UseSpot"].expose(), "true");
        assert_eq!(params["Requirement"].expose(), "CLOUD-01");
        assert_eq!(params["ExpiresAt"].expose(), "2024-01-01T06:00:00Z");
        assert!(!params.contains_key("VelociraptorSha256"));
        assert!(!params.contains_key(PERMISSIONS_BOUNDARY_PARAMETER));
        let boundary = "arn:aws:iam::123456789012:policy/cloudtest-boundary";
        let with_boundary = StackPlan {
            permissions_boundary_arn: Some(boundary.into()),
            ..plan()
        };
        assert_eq!(
            with_boundary.standard_parameters()[PERMISSIONS_BOUNDARY_PARAMETER].expose(),
            boundary
        );
        assert!(matches!(params["AdminPassword"], ParameterValue::Secret(_)));
        let tags = p.stack_tags();
        assert_eq!(tags[RUN_ID_TAG], "20240101t000000z-ab12");
        assert_eq!(tags[REQUIREMENT_TAG], "CLOUD-01");
        assert_eq!(tags[EXPIRES_AT_TAG], "2024-01-01T06:00:00Z");
    }
}
