//! The CloudFormation + EC2 emulator driven by the real AWS SDK clients.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus, Tag};
use aws_sdk_ec2::types::Filter;
use base64::Engine;
use cloudtest_mock::aws::AwsEmulator;
use cloudtest_mock::faults::{FaultKind, FaultPlan, FaultSpec};
use cloudtest_mock::hooks::{RecordingServers, PLACEHOLDER_CA_PEM};
use cloudtest_mock::{EmulatorContext, EmulatorState, Scenario};

const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Description: emulator test stack
Parameters:
  RunId: {Type: String}
  AdminUser: {Type: String, Default: cloudtest-admin}
  AdminPassword: {Type: String, NoEcho: true, MinLength: 8}
  VelociraptorVersion: {Type: String, Default: 0.77.2}
  ImageId:
    Type: AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>
    Default: /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: 10.9.0.0/16
      Tags: [{Key: "cloudtest:run-id", Value: !Ref RunId}]
  Subnet:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      CidrBlock: !Select [0, !Cidr [!GetAtt Vpc.CidrBlock, 4, 8]]
      AvailabilityZone: !Select [0, !GetAZs ""]
  Group:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: !Sub "server group of ${AWS::StackName}"
      VpcId: !Ref Vpc
  ReadyHandle:
    Type: AWS::CloudFormation::WaitConditionHandle
  ServerInstance:
    Type: AWS::EC2::Instance
    Properties:
      ImageId: !Ref ImageId
      InstanceType: t3.medium
      SubnetId: !Ref Subnet
      SecurityGroupIds: [!GetAtt Group.GroupId]
      UserData: !Base64 {"Fn::Sub": "handle=${ReadyHandle} user=${AdminUser}"}
  Address:
    Type: AWS::EC2::EIP
    Properties:
      InstanceId: !Ref ServerInstance
  ServerReady:
    Type: AWS::CloudFormation::WaitCondition
    DependsOn: ServerInstance
    Properties: {Handle: !Ref ReadyHandle, Timeout: "600"}
Outputs:
  ServerAddress: {Value: !Ref Address}
  GuiUrl: {Value: !Sub "https://${Address}:8889/"}
  PrivateIp: {Value: !GetAtt ServerInstance.PrivateIp}
  Allocation: {Value: !GetAtt Address.AllocationId}
  CaCertificate: {Value: !GetAtt ServerReady.Data}
  Version: {Value: !Ref VelociraptorVersion}
"#;

const RUN_ID: &str = "run-42";
const PASSWORD: &str = "correct-horse-battery-staple";

struct Harness {
    emulator: AwsEmulator,
    servers: Arc<RecordingServers>,
    cfn: aws_sdk_cloudformation::Client,
    ec2: aws_sdk_ec2::Client,
}

async fn harness_with(scenario: Scenario, faults: Vec<FaultSpec>) -> Harness {
    let servers = Arc::new(RecordingServers::default());
    let ctx = EmulatorContext {
        scenario,
        latency: Duration::from_millis(40),
        faults: Arc::new(FaultPlan::new(faults, Duration::from_millis(1500))),
        servers: servers.clone(),
    };
    let emulator = AwsEmulator::start(ctx).await.expect("start emulator");
    let retry = aws_sdk_cloudformation::config::retry::RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20));
    let timeouts = aws_sdk_cloudformation::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_millis(500))
        .build();
    let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(creds.clone())
            .endpoint_url(emulator.endpoint())
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone())
            .build(),
    );
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("eu-west-1"))
            .credentials_provider(creds)
            .endpoint_url(emulator.endpoint())
            .retry_config(retry)
            .timeout_config(timeouts)
            .build(),
    );
    Harness {
        emulator,
        servers,
        cfn,
        ec2,
    }
}

async fn harness(scenario: Scenario) -> Harness {
    harness_with(scenario, Vec::new()).await
}

fn param(k: &str, v: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(k)
        .parameter_value(v)
        .build()
}

impl Harness {
    async fn create(&self, name: &str, body: &str, params: Vec<Parameter>) -> String {
        self.cfn
            .create_stack()
            .stack_name(name)
            .template_body(body)
            .set_parameters(Some(params))
            .capabilities(Capability::CapabilityIam)
            .tags(Tag::builder().key("cloudtest:run-id").value(RUN_ID).build())
            .send()
            .await
            .expect("CreateStack")
            .stack_id
            .expect("stack id")
    }

    async fn create_test_stack(&self, name: &str) -> String {
        self.create(
            name,
            TEMPLATE,
            vec![param("RunId", RUN_ID), param("AdminPassword", PASSWORD)],
        )
        .await
    }

    async fn status(&self, name: &str) -> aws_sdk_cloudformation::types::Stack {
        let out = self
            .cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .expect("DescribeStacks");
        out.stacks
            .unwrap_or_default()
            .into_iter()
            .next()
            .expect("one stack")
    }

    /// Polls until the stack leaves `*_IN_PROGRESS`.
    async fn settle(&self, name: &str) -> aws_sdk_cloudformation::types::Stack {
        for _ in 0..400 {
            let s = self.status(name).await;
            let status = s.stack_status.clone().expect("status");
            if !status.as_str().ends_with("_IN_PROGRESS") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("stack {name} never settled");
    }

    async fn all_events(
        &self,
        name: &str,
    ) -> (Vec<aws_sdk_cloudformation::types::StackEvent>, usize) {
        let mut events = Vec::new();
        let mut pages = 0;
        let mut token = None;
        loop {
            let out = self
                .cfn
                .describe_stack_events()
                .stack_name(name)
                .set_next_token(token)
                .send()
                .await
                .expect("DescribeStackEvents");
            pages += 1;
            events.extend(out.stack_events.unwrap_or_default());
            match out.next_token {
                Some(t) => token = Some(t),
                None => return (events, pages),
            }
        }
    }

    /// Ids of live resources tagged with the run id, per EC2 listing.
    async fn tagged(&self) -> Vec<String> {
        let f = Filter::builder()
            .name("tag:cloudtest:run-id")
            .values(RUN_ID)
            .build();
        let mut ids = Vec::new();
        let inst = self
            .ec2
            .describe_instances()
            .filters(f.clone())
            .send()
            .await
            .expect("DescribeInstances");
        for i in inst.reservations().iter().flat_map(|r| r.instances()) {
            if i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated") {
                ids.push(i.instance_id().expect("id").to_string());
            }
        }
        let v = self
            .ec2
            .describe_volumes()
            .filters(f.clone())
            .send()
            .await
            .expect("DescribeVolumes");
        ids.extend(
            v.volumes()
                .iter()
                .map(|x| x.volume_id().expect("id").to_string()),
        );
        let g = self
            .ec2
            .describe_security_groups()
            .filters(f.clone())
            .send()
            .await
            .expect("DescribeSecurityGroups");
        ids.extend(
            g.security_groups()
                .iter()
                .map(|x| x.group_id().expect("id").to_string()),
        );
        let n = self
            .ec2
            .describe_network_interfaces()
            .filters(f.clone())
            .send()
            .await
            .expect("DescribeNetworkInterfaces");
        ids.extend(
            n.network_interfaces()
                .iter()
                .map(|x| x.network_interface_id().expect("id").to_string()),
        );
        let a = self
            .ec2
            .describe_addresses()
            .filters(f.clone())
            .send()
            .await
            .expect("DescribeAddresses");
        ids.extend(
            a.addresses()
                .iter()
                .map(|x| x.allocation_id().expect("id").to_string()),
        );
        let vpcs = self
            .ec2
            .describe_vpcs()
            .filters(f)
            .send()
            .await
            .expect("DescribeVpcs");
        ids.extend(
            vpcs.vpcs()
                .iter()
                .map(|x| x.vpc_id().expect("id").to_string()),
        );
        ids.sort();
        ids
    }

    async fn delete(&self, name_or_id: &str) {
        self.cfn
            .delete_stack()
            .stack_name(name_or_id)
            .send()
            .await
            .expect("DeleteStack");
    }
}

fn output(stack: &aws_sdk_cloudformation::types::Stack, key: &str) -> String {
    stack
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value())
        .unwrap_or_else(|| panic!("output {key} missing"))
        .to_string()
}

#[tokio::test]
async fn healthy_stack_creates_describes_and_deletes() {
    let h = harness(Scenario::Healthy).await;
    let id = h.create_test_stack("healthy").await;
    assert!(
        id.starts_with("arn:aws:cloudformation:eu-west-1:123456789012:stack/healthy/"),
        "{id}"
    );
    let first = h.status("healthy").await;
    assert_eq!(first.stack_status, Some(StackStatus::CreateInProgress));
    assert!(first.outputs().is_empty(), "no outputs before completion");

    let stack = h.settle("healthy").await;
    assert_eq!(stack.stack_status, Some(StackStatus::CreateComplete));
    assert_eq!(output(&stack, "ServerAddress"), "127.0.0.1");
    assert_eq!(output(&stack, "GuiUrl"), "https://127.0.0.1:8889/");
    assert!(output(&stack, "PrivateIp").starts_with("10.0."));
    assert!(output(&stack, "Allocation").starts_with("eipalloc-"));
    assert_eq!(output(&stack, "Version"), "0.77.2");
    let data: serde_json::Value =
        serde_json::from_str(&output(&stack, "CaCertificate")).expect("json");
    let ca = base64::engine::general_purpose::STANDARD
        .decode(data["ca"].as_str().expect("ca"))
        .expect("b64");
    assert_eq!(String::from_utf8(ca).expect("utf8"), PLACEHOLDER_CA_PEM);
    let shown: Vec<(String, String)> = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or("").to_string(),
                p.parameter_value().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        shown.contains(&("AdminPassword".into(), "****".into())),
        "{shown:?}"
    );
    assert!(!format!("{stack:?}").contains(PASSWORD));
    let ami = stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("ImageId"))
        .expect("ImageId");
    assert!(ami.resolved_value().is_some_and(|v| v.starts_with("ami-")));

    let deployed = h.servers.deployed.lock().expect("lock").clone();
    assert_eq!(deployed.len(), 1);
    assert_eq!(deployed[0].deployment, id);
    assert_eq!(deployed[0].admin_user, "cloudtest-admin");
    assert_eq!(deployed[0].admin_password, PASSWORD);
    assert_eq!(deployed[0].version, "0.77.2");

    // 7 resources: stack start, 2 events each, stack complete = 16 events over 2 pages.
    let (events, pages) = h.all_events("healthy").await;
    assert_eq!(events.len(), 16);
    assert_eq!(pages, 2);
    assert_eq!(
        events[0].resource_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE")
    );
    assert_eq!(events[0].logical_resource_id(), Some("healthy"));
    assert!(
        events
            .windows(2)
            .all(|w| w[0].timestamp() >= w[1].timestamp()),
        "newest first"
    );

    let resources = h
        .cfn
        .describe_stack_resources()
        .stack_name("healthy")
        .send()
        .await
        .expect("resources");
    assert_eq!(resources.stack_resources().len(), 7);
    let instance = resources
        .stack_resources()
        .iter()
        .find(|r| r.logical_resource_id() == Some("ServerInstance"))
        .and_then(|r| r.physical_resource_id())
        .expect("instance")
        .to_string();

    // Instance, its root volume and ENI, the group, the address and the VPC carry the stack tag.
    let tagged = h.tagged().await;
    assert_eq!(tagged.len(), 6, "{tagged:?}");
    assert!(tagged.contains(&instance));
    let inst = h
        .ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("by id");
    let i = &inst.reservations()[0].instances()[0];
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.medium"));
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("aws:cloudformation:logical-id")
            && t.value() == Some("ServerInstance")));
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("aws:cloudformation:stack-name") && t.value() == Some("healthy")));
    assert!(!h.emulator.remaining().is_empty());

    h.delete("healthy").await;
    let by_id = h.settle(&id).await;
    assert_eq!(by_id.stack_status, Some(StackStatus::DeleteComplete));
    let err = h
        .cfn
        .describe_stacks()
        .stack_name("healthy")
        .send()
        .await
        .expect_err("gone by name");
    let meta = err.as_service_error().expect("service error");
    assert_eq!(
        aws_sdk_cloudformation::error::ProvideErrorMetadata::code(meta),
        Some("ValidationError")
    );
    assert_eq!(
        aws_sdk_cloudformation::error::ProvideErrorMetadata::message(meta),
        Some("Stack with id healthy does not exist")
    );
    assert!(h.tagged().await.is_empty());
    let terminated = h
        .ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("terminated");
    let state = terminated.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string());
    assert_eq!(state.as_deref(), Some("terminated"));
    assert!(
        h.emulator.remaining().is_empty(),
        "{:?}",
        h.emulator.remaining()
    );
    assert_eq!(
        h.servers.undeployed.lock().expect("lock").clone(),
        vec![id.clone()]
    );
    let listed = h.cfn.list_stacks().send().await.expect("ListStacks");
    assert_eq!(
        listed.stack_summaries()[0].stack_status(),
        Some(&StackStatus::DeleteComplete)
    );
    h.emulator.stop().await;
}

async fn validation_message(h: &Harness, params: Vec<Parameter>) -> (String, String) {
    let err = h
        .cfn
        .create_stack()
        .stack_name("bad")
        .template_body(TEMPLATE)
        .set_parameters(Some(params))
        .send()
        .await
        .expect_err("must be rejected");
    let meta = err.as_service_error().expect("service error");
    use aws_sdk_cloudformation::error::ProvideErrorMetadata;
    (
        meta.code().unwrap_or("").to_string(),
        meta.message().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn parameters_are_validated_like_cloudformation() {
    let h = harness(Scenario::Healthy).await;
    let (code, msg) = validation_message(&h, vec![param("RunId", RUN_ID)]).await;
    assert_eq!(code, "ValidationError");
    assert_eq!(msg, "Parameters: [AdminPassword] must have values");
    let (code, msg) = validation_message(
        &h,
        vec![
            param("RunId", RUN_ID),
            param("AdminPassword", PASSWORD),
            param("Bogus", "1"),
        ],
    )
    .await;
    assert_eq!(code, "ValidationError");
    assert_eq!(msg, "Parameters: [Bogus] do not exist in the template");
    let (_, msg) = validation_message(
        &h,
        vec![param("RunId", RUN_ID), param("AdminPassword", "short")],
    )
    .await;
    assert_eq!(
        msg,
        "Parameter 'AdminPassword' must contain at least 8 characters"
    );

    let v = h
        .cfn
        .validate_template()
        .template_body(TEMPLATE)
        .send()
        .await
        .expect("ValidateTemplate");
    let pw = v
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("AdminPassword"))
        .expect("declared");
    assert_eq!(pw.no_echo(), Some(true));
    let err = h
        .cfn
        .validate_template()
        .template_body("Resources: {}")
        .send()
        .await
        .expect_err("empty");
    assert!(format!("{err:?}").contains("At least one Resources member must be defined"));
    assert!(h.emulator.remaining().is_empty());
}

#[tokio::test]
async fn create_fails_rolls_back_and_deletes_cleanly() {
    let h = harness(Scenario::CreateFails).await;
    let id = h.create_test_stack("failing").await;
    let stack = h.settle("failing").await;
    assert_eq!(stack.stack_status, Some(StackStatus::RollbackComplete));
    let (events, _) = h.all_events("failing").await;
    let rollback = events
        .iter()
        .find(|e| e.resource_status().map(|s| s.as_str()) == Some("ROLLBACK_IN_PROGRESS"))
        .expect("a ROLLBACK_IN_PROGRESS event");
    assert!(rollback
        .resource_status_reason()
        .is_some_and(|r| r.contains("[ServerInstance]")));
    let failed = events
        .iter()
        .find(|e| e.resource_status().map(|s| s.as_str()) == Some("CREATE_FAILED"))
        .expect("a CREATE_FAILED event");
    assert_eq!(failed.logical_resource_id(), Some("ServerInstance"));
    assert!(failed
        .resource_status_reason()
        .is_some_and(|r| r.contains("capacity")));
    assert!(h.servers.deployed.lock().expect("lock").is_empty());
    assert!(
        h.tagged().await.is_empty(),
        "rollback removed what was created"
    );
    h.delete("failing").await;
    assert_eq!(
        h.settle(&id).await.stack_status,
        Some(StackStatus::DeleteComplete)
    );
    assert!(h.emulator.remaining().is_empty());
}

/// Issue 15 §1: a failed create rolls back resource by resource, and DeleteStack is
/// refused (as on AWS while a stack is busy) until the rollback has settled.
#[tokio::test]
async fn rollback_slow_refuses_delete_until_the_rollback_settles() {
    let h = harness(Scenario::RollbackSlow).await;
    let id = h.create_test_stack("rolling").await;
    let mut refused = 0;
    let mut accepted_after_rollback = false;
    let mut statuses = Vec::new();
    let started = tokio::time::Instant::now();
    loop {
        let status = h.status("rolling").await.stack_status.expect("status");
        statuses.push(status.as_str().to_string());
        if status == StackStatus::RollbackComplete {
            break;
        }
        if status == StackStatus::RollbackInProgress {
            let sent = h.cfn.delete_stack().stack_name("rolling").send().await;
            let Err(err) = sent else {
                // The rollback settled between DescribeStacks and DeleteStack (a slow
                // machine): then, and only then, the delete is accepted.
                let (events, _) = h.all_events("rolling").await;
                assert!(
                    events.iter().any(|e| {
                        e.resource_type() == Some("AWS::CloudFormation::Stack")
                            && e.resource_status().map(|s| s.as_str()) == Some("ROLLBACK_COMPLETE")
                    }),
                    "DeleteStack was accepted while the stack was still rolling back: {statuses:?}"
                );
                accepted_after_rollback = true;
                break;
            };
            let meta = aws_sdk_cloudformation::error::ProvideErrorMetadata::meta(&err);
            assert_eq!(meta.code(), Some("ValidationError"));
            assert!(meta.message().is_some_and(
                |m| m.contains("cannot be deleted while in status ROLLBACK_IN_PROGRESS")
            ));
            refused += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        refused >= 2,
        "the rollback outlived several polls: {statuses:?}"
    );
    // Create (1 latency) plus a rollback of 3 latencies (40 ms each).
    assert!(started.elapsed() >= Duration::from_millis(150));
    let (events, _) = h.all_events("rolling").await;
    let deleted = events
        .iter()
        .filter(|e| e.resource_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE"))
        .count();
    assert!(
        deleted >= 2,
        "each created resource is deleted by the rollback"
    );
    if !accepted_after_rollback {
        h.delete("rolling").await;
    }
    assert_eq!(
        h.settle(&id).await.stack_status,
        Some(StackStatus::DeleteComplete)
    );
    assert!(h.emulator.remaining().is_empty());
}

#[tokio::test]
async fn teardown_leaks_keeps_exactly_one_tagged_volume() {
    let h = harness(Scenario::TeardownLeaks).await;
    let id = h.create_test_stack("leaky").await;
    h.settle("leaky").await;
    h.delete("leaky").await;
    assert_eq!(
        h.settle(&id).await.stack_status,
        Some(StackStatus::DeleteComplete)
    );
    let left = h.tagged().await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("vol-"));
    let remaining = h.emulator.remaining();
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert_eq!(remaining[0]["id"], serde_json::json!(left[0]));
    assert_eq!(remaining[0]["type"], serde_json::json!("AWS::EC2::Volume"));
    assert_eq!(
        remaining[0]["tags"]["cloudtest:run-id"],
        serde_json::json!(RUN_ID)
    );
}

#[tokio::test]
async fn delete_fails_once_then_succeeds() {
    let h = harness(Scenario::DeleteFails).await;
    let id = h.create_test_stack("stubborn").await;
    h.settle("stubborn").await;
    h.delete("stubborn").await;
    let first = h.settle("stubborn").await;
    assert_eq!(first.stack_status, Some(StackStatus::DeleteFailed));
    let (events, _) = h.all_events("stubborn").await;
    let failed = events
        .iter()
        .find(|e| {
            e.resource_status().map(|s| s.as_str()) == Some("DELETE_FAILED")
                && e.resource_type() != Some("AWS::CloudFormation::Stack")
        })
        .expect("a resource DELETE_FAILED event");
    assert_eq!(failed.logical_resource_id(), Some("Group"));
    assert!(failed
        .resource_status_reason()
        .is_some_and(|r| r.contains("has a dependent object")));
    h.delete(&id).await;
    assert_eq!(
        h.settle(&id).await.stack_status,
        Some(StackStatus::DeleteComplete)
    );
    assert!(h.tagged().await.is_empty());
    assert!(h.emulator.remaining().is_empty());
}

#[tokio::test]
async fn throttled_calls_are_retried_by_the_sdk() {
    let h = harness(Scenario::Throttled).await;
    let id = h.create_test_stack("throttled").await;
    assert_eq!(
        h.settle("throttled").await.stack_status,
        Some(StackStatus::CreateComplete)
    );
    let calls = h.emulator.calls();
    assert!(
        calls.get("aws:CreateStack").copied().unwrap_or(0) > 1,
        "{calls:?}"
    );
    h.delete(&id).await;
    h.settle(&id).await;
    assert!(h.emulator.remaining().is_empty());
}

fn fault(op: &str, kind: FaultKind) -> FaultSpec {
    FaultSpec {
        operation: op.into(),
        kind,
        count: 1,
    }
}

#[tokio::test]
async fn each_fault_kind_on_describe_stacks() {
    for kind in FaultKind::ALL {
        let h = harness_with(Scenario::Healthy, vec![fault("DescribeStacks", kind)]).await;
        h.create_test_stack("faulty").await;
        let first = h.cfn.describe_stacks().stack_name("faulty").send().await;
        match kind {
            // Retryable: the SDK's next attempt succeeds.
            FaultKind::Error | FaultKind::Throttle | FaultKind::Reset | FaultKind::Timeout => {
                assert!(first.is_ok(), "{kind:?}: {first:?}");
                assert_eq!(
                    h.emulator.calls().get("aws:DescribeStacks"),
                    Some(&2),
                    "{kind:?}"
                );
            }
            FaultKind::Malformed => {
                let err = first.expect_err("malformed body surfaces");
                assert!(format!("{err:?}").contains("XmlDecodeError"), "{err:?}");
                assert_eq!(
                    h.emulator.calls().get("aws:DescribeStacks"),
                    Some(&1),
                    "not retried"
                );
                assert!(h
                    .cfn
                    .describe_stacks()
                    .stack_name("faulty")
                    .send()
                    .await
                    .is_ok());
            }
        }
    }
}

#[tokio::test]
async fn ec2_faults_use_the_ec2_error_shape() {
    let h = harness_with(
        Scenario::Healthy,
        vec![FaultSpec {
            operation: "DescribeVolumes".into(),
            kind: FaultKind::Throttle,
            count: 10,
        }],
    )
    .await;
    let err = h
        .ec2
        .describe_volumes()
        .send()
        .await
        .expect_err("throttled past retries");
    let meta = err.as_service_error().expect("service error");
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    assert_eq!(meta.code(), Some("RequestLimitExceeded"));
    let err = h
        .ec2
        .describe_vpcs()
        .vpc_ids("vpc-nope")
        .send()
        .await
        .expect_err("unknown id");
    assert_eq!(
        err.as_service_error().and_then(|e| e.code()),
        Some("InvalidVpcID.NotFound")
    );
}

#[tokio::test]
async fn planted_leftovers_can_be_found_and_swept() {
    let h = harness(Scenario::Healthy).await;
    let tagged = h.emulator.plant_volume(&[("cloudtest:run-id", "old-run")]);
    let untagged = h.emulator.plant_volume(&[]);
    let instance = h
        .emulator
        .plant_instance(&[("cloudtest:run-id", "old-run")]);
    let group = h
        .emulator
        .plant_security_group(&[("cloudtest:run-id", "old-run")]);
    let stack = h
        .emulator
        .plant_stack("old-stack", &[("cloudtest:run-id", "old-run")])
        .expect("plant stack");

    let by_key = Filter::builder()
        .name("tag-key")
        .values("cloudtest:run-id")
        .build();
    let vols = h
        .ec2
        .describe_volumes()
        .filters(by_key.clone())
        .send()
        .await
        .expect("volumes");
    let ids: Vec<&str> = vols
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id())
        .collect();
    assert_eq!(ids, vec![tagged.as_str()]);
    let groups = h
        .ec2
        .describe_security_groups()
        .filters(by_key)
        .send()
        .await
        .expect("groups");
    assert_eq!(
        groups.security_groups().len(),
        2,
        "planted group and the planted stack's group"
    );

    let stacks = h.cfn.describe_stacks().send().await.expect("all stacks");
    assert_eq!(stacks.stacks()[0].stack_id(), Some(stack.as_str()));
    assert_eq!(
        stacks.stacks()[0].stack_status(),
        Some(&StackStatus::CreateComplete)
    );

    h.ec2
        .delete_volume()
        .volume_id(&tagged)
        .send()
        .await
        .expect("DeleteVolume");
    h.ec2
        .terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("TerminateInstances");
    h.ec2
        .delete_security_group()
        .group_id(&group)
        .send()
        .await
        .expect("DeleteSecurityGroup");
    h.delete(&stack).await;
    h.settle(&stack).await;
    let remaining = h.emulator.remaining();
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert_eq!(remaining[0]["id"], serde_json::json!(untagged));
}

#[tokio::test]
async fn the_project_template_creates_and_deletes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../templates-cfn/velociraptor.yaml"
    );
    let body = std::fs::read_to_string(path).expect("templates-cfn/velociraptor.yaml exists");
    let h = harness(Scenario::Healthy).await;
    let params = vec![
        param("RunId", RUN_ID),
        param("ExpiresAt", "2030-01-01T00:00:00Z"),
        param("AdminPassword", "a-very-long-generated-password-0123"),
        param("AllowedCidr", "203.0.113.7/32"),
        param("FrontendPort", "18000"),
        param("GuiPort", "18889"),
    ];
    let id = h.create("vr", &body, params).await;
    let stack = h.settle("vr").await;
    assert_eq!(
        stack.stack_status,
        Some(StackStatus::CreateComplete),
        "{:?}",
        stack.stack_status_reason()
    );
    assert_eq!(output(&stack, "FrontendUrl"), "https://127.0.0.1:18000/");
    assert_eq!(output(&stack, "GuiUrl"), "https://127.0.0.1:18889/");
    let data: serde_json::Value =
        serde_json::from_str(&output(&stack, "CaCertificate")).expect("json");
    assert!(data["ca"].is_string());
    let deployed = h.servers.deployed.lock().expect("lock").clone();
    assert_eq!(deployed.len(), 1);
    assert_eq!(deployed[0].admin_user, "cloudtest-admin");
    assert!(!h.tagged().await.is_empty());
    h.delete("vr").await;
    assert_eq!(
        h.settle(&id).await.stack_status,
        Some(StackStatus::DeleteComplete)
    );
    assert!(h.tagged().await.is_empty());
    assert!(
        h.emulator.remaining().is_empty(),
        "{:?}",
        h.emulator.remaining()
    );
}

async fn console(h: &Harness, instance: &str, latest: bool) -> Result<String, String> {
    let mut call = h.ec2.get_console_output().instance_id(instance);
    if latest {
        call = call.latest(true);
    }
    match call.send().await {
        Ok(out) => {
            let raw = out.output.unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| format!("not base64: {e}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) => Err(aws_sdk_ec2::error::ProvideErrorMetadata::code(&e)
            .unwrap_or("no code")
            .to_string()),
    }
}

async fn server_instance(h: &Harness, name: &str) -> String {
    h.cfn
        .describe_stack_resources()
        .stack_name(name)
        .logical_resource_id("ServerInstance")
        .send()
        .await
        .expect("DescribeStackResources")
        .stack_resources()
        .first()
        .and_then(|r| r.physical_resource_id())
        .expect("server instance id")
        .to_string()
}

/// Issue 15 §3/§4: the server's console (base64, as AWS sends it) carries the boot log and
/// the CA fingerprint line; `Latest=true` only while it runs, the buffered output after.
#[tokio::test]
async fn console_output_carries_the_boot_log_and_the_ca_fingerprint() {
    let h = harness(Scenario::Healthy).await;
    let id = h.create_test_stack("console").await;
    h.settle("console").await;
    let instance = server_instance(&h, "console").await;
    let live = console(&h, &instance, true).await.expect("latest console");
    let fp = cloudtest_core::outputs::pem_fingerprint(PLACEHOLDER_CA_PEM).expect("fingerprint");
    assert!(
        live.contains(&format!("cloudtest-ca-sha256={fp}")),
        "{live}"
    );
    assert!(live.contains("cloudtest-boot[server]"), "{live}");
    assert!(!live.contains(PASSWORD), "no secret on the console");
    h.delete("console").await;
    h.settle(&id).await;
    assert_eq!(
        console(&h, &instance, true).await,
        Err("UnsupportedOperation".to_string()),
        "no live console once terminated"
    );
    let buffered = console(&h, &instance, false)
        .await
        .expect("buffered console");
    assert!(buffered.contains("cloudtest-ca-sha256="), "{buffered}");
}

/// Issue 15 §4: `ca-spoofed` publishes a CA through the wait condition whose fingerprint is
/// not the one on the server's console.
#[tokio::test]
async fn ca_spoofed_publishes_a_ca_the_console_does_not_show() {
    let h = harness(Scenario::CaSpoofed).await;
    h.create_test_stack("spoofed").await;
    let stack = h.settle("spoofed").await;
    let published = output(&stack, "CaCertificate");
    let pem = cloudtest_core::outputs::decode_ca(&published).expect("a CA");
    let published_fp = cloudtest_core::outputs::pem_fingerprint(&pem).expect("fingerprint");
    let instance = server_instance(&h, "spoofed").await;
    let text = console(&h, &instance, true).await.expect("console");
    let real_fp = cloudtest_core::outputs::pem_fingerprint(PLACEHOLDER_CA_PEM).expect("fp");
    assert!(
        text.contains(&format!("cloudtest-ca-sha256={real_fp}")),
        "{text}"
    );
    assert_ne!(published_fp, real_fp);
}

/// Issue 15 §5: DescribeTags lists every tagged EC2 resource of any type, page by page,
/// and keeps a terminated instance's tags (so the caller must check its state).
#[tokio::test]
async fn describe_tags_pages_through_every_tagged_type() {
    let h = harness(Scenario::Healthy).await;
    let id = h.create_test_stack("tags").await;
    h.settle("tags").await;
    let mut types = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let out = h
            .ec2
            .describe_tags()
            .filters(
                Filter::builder()
                    .name("key")
                    .values("cloudtest:run-id")
                    .build(),
            )
            .filters(Filter::builder().name("value").values(RUN_ID).build())
            .max_results(5)
            .set_next_token(token.take())
            .send()
            .await
            .expect("DescribeTags");
        pages += 1;
        for t in out.tags() {
            types.insert(t.resource_type().expect("type").as_str().to_string());
            ids.insert(t.resource_id().expect("id").to_string());
        }
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    for ty in [
        "vpc",
        "subnet",
        "security-group",
        "instance",
        "volume",
        "network-interface",
        "elastic-ip",
    ] {
        assert!(types.contains(ty), "no {ty} in {types:?}");
    }
    assert!(!types.iter().any(|t| t.contains("Wait")), "{types:?}");
    let instance = server_instance(&h, "tags").await;
    h.delete("tags").await;
    h.settle(&id).await;
    let after = h
        .ec2
        .describe_tags()
        .filters(Filter::builder().name("value").values(RUN_ID).build())
        .send()
        .await
        .expect("DescribeTags");
    let left: Vec<&str> = after
        .tags()
        .iter()
        .filter_map(|t| t.resource_id())
        .collect();
    assert!(
        left.contains(&instance.as_str()),
        "terminated instance keeps its tags: {left:?}"
    );
    assert!(pages >= 2 && ids.len() >= 7, "{pages} pages, {ids:?}");
}
