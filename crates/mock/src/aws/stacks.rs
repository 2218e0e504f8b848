//! Emulated stacks and their lifecycles. An operation (create, rollback, delete) is a
//! timeline of steps spread over the emulator latency; each request first applies the steps
//! whose time has come, so state follows elapsed time without background tasks. A final
//! step also waits until the client has seen the stack in progress once.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::inventory::{Inventory, Kind, Resource};
use super::template::plan::ec2_id;
use super::template::{PlannedOutput, PlannedResource, ResolvedParameter};
use crate::hooks::{EmulatedServers, ServerDeployment};

pub const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

/// One `StackEvent`.
#[derive(Debug, Clone)]
pub struct StackEvent {
    pub event_id: String,
    pub logical_id: String,
    pub physical_id: String,
    pub resource_type: String,
    pub timestamp: DateTime<Utc>,
    pub status: &'static str,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StackResource {
    pub planned: PlannedResource,
    /// `None` until CloudFormation starts on it.
    pub status: Option<&'static str>,
    pub reason: Option<String>,
    pub updated: DateTime<Utc>,
    /// Inventory ids this resource materialised as.
    pub owned: Vec<String>,
}

#[derive(Debug, Clone)]
enum Action {
    Stack(&'static str, Option<String>),
    Resource(usize, &'static str, Option<String>),
}

#[derive(Debug, Clone)]
struct Step {
    at: Duration,
    action: Action,
}

#[derive(Debug)]
struct Operation {
    started: Instant,
    polls_at_start: u64,
    steps: VecDeque<Step>,
    /// `teardown-leaks`: this volume survives the delete.
    leak: Option<String>,
}

/// Scenario choices a timeline is built with.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeletePlan {
    pub fail_once: bool,
    pub leak_volume: bool,
}

#[derive(Debug)]
pub struct Stack {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub parameters: Vec<ResolvedParameter>,
    pub tags: Vec<(String, String)>,
    pub capabilities: Vec<String>,
    pub client_request_token: Option<String>,
    /// The service role CreateStack carried (`RoleARN`), as DescribeStacks returns it.
    pub role_arn: Option<String>,
    pub created: DateTime<Utc>,
    pub deleted: Option<DateTime<Utc>>,
    pub status: &'static str,
    pub reason: Option<String>,
    pub resources: Vec<StackResource>,
    pub outputs: Vec<PlannedOutput>,
    /// Newest last.
    pub events: Vec<StackEvent>,
    /// How often `DescribeStacks` returned this stack.
    pub polls: u64,
    /// The resource that boots the Velociraptor server.
    pub server: Option<usize>,
    pub deployed: bool,
    deployment: Option<ServerDeployment>,
    /// Fingerprint of the server's real CA, which its boot script prints on the console.
    console_ca: Option<String>,
    client_boot_fails: bool,
    op: Option<Operation>,
}

/// What a new stack is made of.
pub struct NewStack {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub parameters: Vec<ResolvedParameter>,
    pub tags: Vec<(String, String)>,
    pub capabilities: Vec<String>,
    pub client_request_token: Option<String>,
    pub role_arn: Option<String>,
    pub resources: Vec<PlannedResource>,
    pub outputs: Vec<PlannedOutput>,
    pub deployment: Option<ServerDeployment>,
    /// Fingerprint of the server's real CA (printed on its console).
    pub console_ca: Option<String>,
    /// `client-boot-fails`: the client's boot script stops at the checksum and says so on
    /// its console.
    pub client_boot_fails: bool,
}

/// Spreads `steps` evenly over `latency`.
fn spread(actions: Vec<Action>, latency: Duration) -> VecDeque<Step> {
    let n = u32::try_from(actions.len()).unwrap_or(u32::MAX).max(1);
    actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| Step {
            at: latency * (u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1)) / n,
            action,
        })
        .collect()
}

pub(crate) fn handler_message(msg: &str) -> String {
    format!(
        "Resource handler returned message: \"{msg} (Service: Ec2, Status Code: 400, Request ID: {})\" (RequestToken: {}, HandlerErrorCode: GeneralServiceException)",
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    )
}

impl Stack {
    /// A stack in `CREATE_IN_PROGRESS`; `fail` makes that resource fail and the stack roll
    /// back (or stop at `CREATE_FAILED` when `disable_rollback`). The create takes `latency`;
    /// a rollback then takes `rollback` more: on AWS it deletes every created resource, one
    /// by one, and an instance takes minutes to terminate.
    pub fn create(
        new: NewStack,
        latency: Duration,
        rollback: Duration,
        fail: Option<(usize, String)>,
        disable_rollback: bool,
    ) -> Stack {
        let server = new
            .deployment
            .as_ref()
            .and_then(|_| server_index(&new.resources));
        let now = Utc::now();
        let mut stack = Stack {
            id: new.id,
            name: new.name,
            description: new.description,
            parameters: new.parameters,
            tags: new.tags,
            capabilities: new.capabilities,
            client_request_token: new.client_request_token,
            role_arn: new.role_arn,
            created: now,
            deleted: None,
            status: "CREATE_IN_PROGRESS",
            reason: Some("User Initiated".into()),
            resources: new
                .resources
                .into_iter()
                .map(|planned| StackResource {
                    planned,
                    status: None,
                    reason: None,
                    updated: now,
                    owned: Vec::new(),
                })
                .collect(),
            outputs: new.outputs,
            events: Vec::new(),
            polls: 0,
            server,
            deployed: false,
            deployment: new.deployment,
            console_ca: new.console_ca,
            client_boot_fails: new.client_boot_fails,
            op: None,
        };
        stack.stack_event("CREATE_IN_PROGRESS", Some("User Initiated".into()));
        let mut actions = Vec::new();
        let mut rollback_actions = Vec::new();
        let count = stack.resources.len();
        for i in 0..count {
            actions.push(Action::Resource(i, "CREATE_IN_PROGRESS", None));
            if let Some((_, reason)) = fail.as_ref().filter(|(at, _)| *at == i) {
                actions.push(Action::Resource(i, "CREATE_FAILED", Some(reason.clone())));
                let logical = stack.resources[i].planned.logical_id.clone();
                if disable_rollback {
                    actions.push(Action::Stack(
                        "CREATE_FAILED",
                        Some(format!(
                            "The following resource(s) failed to create: [{logical}]. "
                        )),
                    ));
                } else {
                    actions.push(Action::Stack(
                        "ROLLBACK_IN_PROGRESS",
                        Some(format!(
                            "The following resource(s) failed to create: [{logical}]. Rollback requested by user."
                        )),
                    ));
                    for j in (0..=i).rev() {
                        rollback_actions.push(Action::Resource(j, "DELETE_IN_PROGRESS", None));
                        rollback_actions.push(Action::Resource(j, "DELETE_COMPLETE", None));
                    }
                    rollback_actions.push(Action::Stack("ROLLBACK_COMPLETE", None));
                }
                break;
            }
            actions.push(Action::Resource(i, "CREATE_COMPLETE", None));
        }
        if fail.as_ref().is_none_or(|(f, _)| *f >= count) {
            actions.push(Action::Stack("CREATE_COMPLETE", None));
        }
        let mut steps = spread(actions, latency);
        if !rollback_actions.is_empty() {
            steps.extend(
                spread(rollback_actions, rollback)
                    .into_iter()
                    .map(|s| Step {
                        at: s.at + latency,
                        ..s
                    }),
            );
        }
        stack.start_steps(steps, None);
        stack
    }

    fn start(&mut self, actions: Vec<Action>, latency: Duration, leak: Option<String>) {
        self.start_steps(spread(actions, latency), leak);
    }

    fn start_steps(&mut self, steps: VecDeque<Step>, leak: Option<String>) {
        self.op = Some(Operation {
            started: Instant::now(),
            polls_at_start: self.polls,
            steps,
            leak,
        });
    }

    /// Why `DeleteStack` is refused now, if it is: AWS refuses it while the stack is in an
    /// `*_IN_PROGRESS` state other than `DELETE_IN_PROGRESS` (documented for updates;
    /// assumed for `CREATE_`/`ROLLBACK_IN_PROGRESS` too, the pessimistic reading).
    pub fn delete_refusal(&self) -> Option<String> {
        (self.status.ends_with("_IN_PROGRESS") && self.status != "DELETE_IN_PROGRESS").then(|| {
            format!(
                "Stack [{}] cannot be deleted while in status {}",
                self.name, self.status
            )
        })
    }

    pub fn is_deleted(&self) -> bool {
        self.status == "DELETE_COMPLETE"
    }

    pub fn in_progress(&self) -> bool {
        self.op.is_some()
    }

    /// Starts deleting. Returns false when a deletion is already running or done.
    pub fn delete(&mut self, latency: Duration, plan: DeletePlan, inventory: &Inventory) -> bool {
        if self.status == "DELETE_IN_PROGRESS" || self.is_deleted() {
            return false;
        }
        self.status = "DELETE_IN_PROGRESS";
        self.reason = Some("User Initiated".into());
        self.stack_event("DELETE_IN_PROGRESS", Some("User Initiated".into()));
        let pending: Vec<usize> = (0..self.resources.len())
            .rev()
            .filter(|i| {
                self.resources[*i]
                    .status
                    .is_some_and(|s| !matches!(s, "DELETE_COMPLETE" | "DELETE_SKIPPED"))
            })
            .collect();
        let fail_at = plan.fail_once.then(|| {
            pending
                .iter()
                .copied()
                .find(|i| self.resources[*i].planned.ty == "AWS::EC2::SecurityGroup")
                .or_else(|| pending.first().copied())
        });
        let leak = plan
            .leak_volume
            .then(|| self.leak_candidate(inventory))
            .flatten();
        let mut actions = Vec::new();
        let mut failed = None;
        for i in pending {
            let r = &self.resources[i];
            if r.planned.retain {
                actions.push(Action::Resource(i, "DELETE_SKIPPED", None));
                continue;
            }
            actions.push(Action::Resource(i, "DELETE_IN_PROGRESS", None));
            if fail_at.flatten() == Some(i) {
                let reason = handler_message(&format!(
                    "resource {} has a dependent object",
                    r.planned.physical_id
                ));
                actions.push(Action::Resource(i, "DELETE_FAILED", Some(reason)));
                failed = Some(r.planned.logical_id.clone());
                break;
            }
            actions.push(Action::Resource(i, "DELETE_COMPLETE", None));
        }
        match failed {
            Some(logical) => actions.push(Action::Stack(
                "DELETE_FAILED",
                Some(format!(
                    "The following resource(s) failed to delete: [{logical}]. "
                )),
            )),
            None => actions.push(Action::Stack("DELETE_COMPLETE", None)),
        }
        self.start(actions, latency, leak);
        true
    }

    /// The root volume of the first instance, else the first stack volume.
    fn leak_candidate(&self, inventory: &Inventory) -> Option<String> {
        self.resources
            .iter()
            .flat_map(|r| r.owned.iter())
            .find(|id| inventory.get(id).is_some_and(|r| r.kind() == Kind::Volume))
            .cloned()
    }

    /// Applies every step due at `now`.
    pub fn advance(
        &mut self,
        now: Instant,
        inventory: &mut Inventory,
        servers: &dyn EmulatedServers,
        address: &str,
    ) {
        loop {
            let Some(op) = &mut self.op else { return };
            let Some(step) = op.steps.front() else {
                self.op = None;
                return;
            };
            let is_last = op.steps.len() == 1;
            if now < op.started + step.at || (is_last && self.polls <= op.polls_at_start) {
                return;
            }
            let Some(step) = op.steps.pop_front() else {
                return;
            };
            let leak = op.leak.clone();
            if is_last {
                self.op = None;
            }
            self.apply(step.action, inventory, servers, address, leak.as_deref());
        }
    }

    fn apply(
        &mut self,
        action: Action,
        inventory: &mut Inventory,
        servers: &dyn EmulatedServers,
        address: &str,
        leak: Option<&str>,
    ) {
        match action {
            Action::Stack(status, reason) => {
                self.status = status;
                self.reason = reason.clone();
                if status == "DELETE_COMPLETE" {
                    self.deleted = Some(Utc::now());
                }
                self.stack_event(status, reason);
            }
            Action::Resource(i, status, reason) => {
                match status {
                    "CREATE_COMPLETE" => {
                        let owned = self.materialise(i, inventory, address);
                        self.resources[i].owned = owned;
                        if self.server == Some(i) && !self.deployed {
                            if let Some(d) = &self.deployment {
                                servers.deploy(d.clone());
                                self.deployed = true;
                            }
                        }
                    }
                    "DELETE_COMPLETE" => {
                        let owned = std::mem::take(&mut self.resources[i].owned);
                        // The leaked volume outlives its instance (DeleteOnTermination false).
                        if let Some(v) = leak
                            .filter(|l| owned.iter().any(|o| o == l))
                            .and_then(|l| inventory.get_mut(l))
                        {
                            v.delete_on_termination = false;
                        }
                        for id in owned.iter().filter(|id| leak != Some(id.as_str())) {
                            inventory.delete(id);
                        }
                        if self.server == Some(i) && self.deployed {
                            servers.undeploy(&self.id);
                            self.deployed = false;
                        }
                    }
                    _ => {}
                }
                let now = Utc::now();
                let r = &mut self.resources[i];
                r.status = Some(status);
                r.reason = reason.clone();
                r.updated = now;
                let event = StackEvent {
                    event_id: format!("{}-{status}-{}", r.planned.logical_id, uuid::Uuid::new_v4()),
                    logical_id: r.planned.logical_id.clone(),
                    // As on AWS, the first event of a resource has no physical id yet.
                    physical_id: if status == "CREATE_IN_PROGRESS" {
                        String::new()
                    } else {
                        r.planned.physical_id.clone()
                    },
                    resource_type: r.planned.ty.clone(),
                    timestamp: now,
                    status,
                    reason,
                };
                self.events.push(event);
            }
        }
    }

    fn stack_event(&mut self, status: &'static str, reason: Option<String>) {
        self.events.push(StackEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            logical_id: self.name.clone(),
            physical_id: self.id.clone(),
            resource_type: STACK_TYPE.into(),
            timestamp: Utc::now(),
            status,
            reason,
        });
    }

    /// Tags CloudFormation puts on what it creates.
    fn resource_tags(&self, r: &PlannedResource) -> Vec<(String, String)> {
        let mut tags = self.tags.clone();
        for (k, v) in &r.tags {
            tags.retain(|(x, _)| x != k);
            tags.push((k.clone(), v.clone()));
        }
        tags.push(("aws:cloudformation:stack-name".into(), self.name.clone()));
        tags.push(("aws:cloudformation:stack-id".into(), self.id.clone()));
        tags.push(("aws:cloudformation:logical-id".into(), r.logical_id.clone()));
        tags
    }

    /// Creates the inventory records of resource `i`; returns their ids.
    fn materialise(&self, i: usize, inventory: &mut Inventory, address: &str) -> Vec<String> {
        let r = &self.resources[i].planned;
        let tags = self.resource_tags(r);
        let attr = |k: &str| {
            r.facts
                .attributes
                .get(k)
                .and_then(super::template::params_scalar)
        };
        let base = Resource {
            id: r.physical_id.clone(),
            cfn_type: r.ty.clone(),
            tags: tags.clone(),
            state: "available".into(),
            created: Some(Utc::now()),
            ..Default::default()
        };
        match r.ty.as_str() {
            "AWS::EC2::Instance" => {
                let template_data = self.launch_template_data(r);
                let from = |k: &str| {
                    r.prop_str(k).or_else(|| {
                        template_data
                            .as_ref()
                            .and_then(|d| d.get(k))
                            .and_then(super::template::params_scalar)
                    })
                };
                let spot = r.properties.get("InstanceMarketOptions").is_some()
                    || template_data
                        .as_ref()
                        .is_some_and(|d| d.get("InstanceMarketOptions").is_some());
                let subnet = from("SubnetId").or_else(|| {
                    r.properties
                        .get("NetworkInterfaces")
                        .and_then(|n| n.get(0))
                        .and_then(|n| n.get("SubnetId"))
                        .and_then(super::template::params_scalar)
                });
                let vpc_id = subnet
                    .as_ref()
                    .and_then(|s| self.resources.iter().find(|x| &x.planned.physical_id == s))
                    .and_then(|s| s.planned.prop_str("VpcId"));
                let az = attr("AvailabilityZone");
                let volume_id = ec2_id("vol");
                let eni_id = ec2_id("eni");
                let console = self.console_lines(i);
                inventory.insert(Resource {
                    kind: Some(Kind::Instance),
                    state: "running".into(),
                    console,
                    instance_type: Some(from("InstanceType").unwrap_or_else(|| "m1.small".into())),
                    image_id: from("ImageId"),
                    private_ip: attr("PrivateIp"),
                    public_ip: Some(address.to_string()),
                    subnet_id: subnet.clone(),
                    vpc_id: vpc_id.clone(),
                    availability_zone: az.clone(),
                    spot,
                    ..base.clone()
                });
                inventory.insert(Resource {
                    id: volume_id.clone(),
                    kind: Some(Kind::Volume),
                    cfn_type: "AWS::EC2::Volume".into(),
                    state: "in-use".into(),
                    attached_to: Some(r.physical_id.clone()),
                    availability_zone: az.clone(),
                    size_gib: Some(8),
                    delete_on_termination: true,
                    ..base.clone()
                });
                inventory.insert(Resource {
                    id: eni_id.clone(),
                    kind: Some(Kind::NetworkInterface),
                    cfn_type: "AWS::EC2::NetworkInterface".into(),
                    state: "in-use".into(),
                    attached_to: Some(r.physical_id.clone()),
                    private_ip: attr("PrivateIp"),
                    subnet_id: subnet,
                    vpc_id,
                    availability_zone: az,
                    ..base
                });
                vec![r.physical_id.clone(), volume_id, eni_id]
            }
            "AWS::EC2::EIP" => {
                let allocation = attr("AllocationId").unwrap_or_else(|| ec2_id("eipalloc"));
                inventory.insert(Resource {
                    id: allocation.clone(),
                    kind: Some(Kind::Address),
                    public_ip: Some(address.to_string()),
                    allocation_id: Some(allocation.clone()),
                    attached_to: r.prop_str("InstanceId"),
                    ..base
                });
                vec![allocation]
            }
            ty => {
                let kind = match ty {
                    "AWS::EC2::Volume" => Kind::Volume,
                    "AWS::EC2::SecurityGroup" => Kind::SecurityGroup,
                    "AWS::EC2::NetworkInterface" => Kind::NetworkInterface,
                    "AWS::EC2::VPC" => Kind::Vpc,
                    "AWS::EC2::NatGateway" => Kind::NatGateway,
                    _ => Kind::Other,
                };
                inventory.insert(Resource {
                    kind: Some(kind),
                    vpc_id: r.prop_str("VpcId"),
                    subnet_id: r.prop_str("SubnetId"),
                    cidr: r.prop_str("CidrBlock"),
                    availability_zone: r.prop_str("AvailabilityZone"),
                    group_name: (kind == Kind::SecurityGroup).then(|| {
                        r.prop_str("GroupName").unwrap_or_else(|| {
                            format!(
                                "{}-{}-{}",
                                self.name,
                                r.logical_id,
                                super::template::plan::hex(12).to_uppercase()
                            )
                        })
                    }),
                    description: r.prop_str("GroupDescription"),
                    size_gib: r.prop_str("Size").and_then(|s| s.parse().ok()),
                    private_ip: attr("PrimaryPrivateIpAddress"),
                    ..base
                });
                vec![r.physical_id.clone()]
            }
        }
    }

    /// What an instance's serial console shows once booted: kernel and cloud-init noise, the
    /// boot script's log lines (it copies them to the console), and on the server the CA
    /// fingerprint line (templates-cfn/scripts/server-boot.sh).
    fn console_lines(&self, i: usize) -> Vec<String> {
        let r = &self.resources[i].planned;
        let version = self
            .deployment
            .as_ref()
            .map(|d| d.version.clone())
            .unwrap_or_default();
        let mut lines = vec![
            "[    0.000000] Linux version 6.1.0-1.amzn2023.x86_64 (cloudtest emulator)".to_string(),
            "[    4.215731] cloud-init[1203]: Cloud-init v. 22.2.2 running 'modules:final'"
                .to_string(),
        ];
        let role = if self.server == Some(i) {
            "server"
        } else {
            "client"
        };
        let log =
            |msg: &str| format!("[   12.400000] cloud-init[1203]: cloudtest-boot[{role}]: {msg}");
        lines.push(log(&format!("downloading Velociraptor {version}")));
        if self.client_boot_fails && self.server != Some(i) {
            // What templates-common/boot-lib.sh's install_binary prints when `sha256sum -c` fails.
            lines.push(
                "[   12.900000] cloud-init[1203]: sha256sum: WARNING: 1 computed checksum did NOT match"
                    .to_string(),
            );
            lines.push(format!(
                "[   12.900100] cloud-init[1203]: cloudtest-boot-failed: velociraptor-v{version}-linux-amd64 failed its SHA-256 check (expected {})", "0".repeat(64)
            ));
            return lines;
        }
        lines.push(log("checksum verified"));
        if self.server == Some(i) {
            lines.push(log("configuration generated"));
            if let Some(fp) = &self.console_ca {
                lines.push(format!(
                    "[   13.100000] cloud-init[1203]: cloudtest-ca-sha256={fp}"
                ));
            }
            lines.push(log("server ready; signalling ServerReady"));
        } else {
            lines.push(log(&format!("{} started; enrolling", r.logical_id)));
        }
        lines
    }

    /// `LaunchTemplateData` of the stack's launch template an instance names, if any.
    fn launch_template_data(&self, r: &PlannedResource) -> Option<serde_json::Value> {
        super::launch::launch_template_data(self.resources.iter().map(|x| &x.planned), r).cloned()
    }
}

/// The instance that runs the server: the first whose logical id contains `Server`, else
/// the first instance.
pub fn server_index(resources: &[PlannedResource]) -> Option<usize> {
    let instances = || {
        resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ty == "AWS::EC2::Instance")
    };
    instances()
        .find(|(_, r)| r.logical_id.contains("Server"))
        .or_else(|| instances().next())
        .map(|(i, _)| i)
}
