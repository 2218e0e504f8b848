//! Planning a stack: which resources exist (conditions), in which order (references and
//! `DependsOn`), their physical ids, evaluated properties, `Ref` values and `Fn::GetAtt`
//! attributes, and the outputs, all decided when `CreateStack` is accepted.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::eval::{collect_references, Pseudo, Reference, ResourceFacts, Scope};
use super::params::{scalar, ResolvedParameter};
use super::{depends_on, Template, TemplateError};

/// Who the stack is, for pseudo parameters and generated names.
#[derive(Debug, Clone)]
pub struct StackIdentity {
    pub name: String,
    pub id: String,
    pub region: String,
    pub account: String,
}

/// What the emulated instances answer on and what their boot publishes.
#[derive(Debug, Clone)]
pub struct BootFacts {
    pub address: String,
    pub ca_pem: String,
}

#[derive(Debug, Clone)]
pub struct PlannedResource {
    pub logical_id: String,
    pub ty: String,
    pub physical_id: String,
    pub facts: ResourceFacts,
    /// Properties after evaluation (`AWS::NoValue` removed).
    pub properties: Value,
    /// The resource's own `Tags` property.
    pub tags: Vec<(String, String)>,
    /// `DeletionPolicy: Retain`: deleting the stack leaves it behind.
    pub retain: bool,
}

impl PlannedResource {
    pub fn prop_str(&self, key: &str) -> Option<String> {
        self.properties.get(key).and_then(scalar)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOutput {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
    pub export_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PlannedStack {
    /// In creation order.
    pub resources: Vec<PlannedResource>,
    pub outputs: Vec<PlannedOutput>,
}

/// Random lower-case hex, as in EC2 ids.
pub fn hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// An EC2-style id: `vpc-0123456789abcdef0`.
pub fn ec2_id(prefix: &str) -> String {
    format!("{prefix}-0{}", hex(16))
}

fn suffix() -> String {
    hex(12).to_uppercase()
}

pub fn plan_stack(
    template: &Template,
    params: &BTreeMap<String, ResolvedParameter>,
    identity: &StackIdentity,
    boot: &BootFacts,
) -> Result<PlannedStack, TemplateError> {
    let pseudo = Pseudo {
        region: identity.region.clone(),
        account: identity.account.clone(),
        stack_name: identity.name.clone(),
        stack_id: identity.id.clone(),
    };
    let mappings = template.section("Mappings");
    let conditions = template.section("Conditions");
    let raw_resources = template.section("Resources");
    let mut facts: BTreeMap<String, ResourceFacts> = BTreeMap::new();
    let invalid = TemplateError::Validation;

    // Which resources exist.
    let mut kept = Map::new();
    {
        let scope = Scope {
            params,
            pseudo: &pseudo,
            mappings: &mappings,
            conditions: &conditions,
            resources: &facts,
        };
        for (name, res) in &raw_resources {
            let keep = match res.get("Condition").and_then(Value::as_str) {
                Some(c) => scope.condition(c).map_err(invalid)?,
                None => true,
            };
            if keep {
                kept.insert(name.clone(), res.clone());
            }
        }
    }
    let order = creation_order(&kept)?;

    let mut resources = Vec::new();
    for name in order {
        let Some(raw) = kept.get(&name) else { continue };
        let ty = raw
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let scope = Scope {
            params,
            pseudo: &pseudo,
            mappings: &mappings,
            conditions: &conditions,
            resources: &facts,
        };
        let properties = match raw.get("Properties") {
            Some(p) => scope
                .eval(p)
                .map_err(|e| invalid(format!("{e} (in resource {name})")))?
                .unwrap_or(Value::Object(Map::new())),
            None => Value::Object(Map::new()),
        };
        let physical_id = physical_id(&ty, &name, &properties, identity, boot);
        let resource_facts = resource_facts(&ty, &name, &physical_id, &properties, identity, boot);
        facts.insert(name.clone(), resource_facts.clone());
        let tags = properties
            .get("Tags")
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| {
                        Some((
                            t.get("Key").and_then(scalar)?,
                            t.get("Value").and_then(scalar).unwrap_or_default(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        resources.push(PlannedResource {
            logical_id: name.clone(),
            ty,
            physical_id,
            facts: resource_facts,
            properties,
            tags,
            retain: raw.get("DeletionPolicy").and_then(Value::as_str) == Some("Retain"),
        });
    }

    let scope = Scope {
        params,
        pseudo: &pseudo,
        mappings: &mappings,
        conditions: &conditions,
        resources: &facts,
    };
    let mut outputs = Vec::new();
    for (key, out) in template.section("Outputs") {
        if let Some(c) = out.get("Condition").and_then(Value::as_str) {
            if !scope.condition(c).map_err(invalid)? {
                continue;
            }
        }
        let Some(raw_value) = out.get("Value") else {
            return Err(TemplateError::Format(format!(
                "Every Outputs member must contain a Value object (output {key})"
            )));
        };
        let value = scope
            .eval(raw_value)
            .map_err(|e| invalid(format!("{e} (in output {key})")))?
            .and_then(|v| scalar(&v))
            .unwrap_or_default();
        let export_name = match out.get("Export").and_then(|e| e.get("Name")) {
            Some(n) => scope.eval(n).map_err(invalid)?.and_then(|v| scalar(&v)),
            None => None,
        };
        outputs.push(PlannedOutput {
            key: key.clone(),
            value,
            description: out.get("Description").and_then(scalar),
            export_name,
        });
    }
    Ok(PlannedStack { resources, outputs })
}

/// Dependencies first; among resources that are ready, template-name order.
fn creation_order(resources: &Map<String, Value>) -> Result<Vec<String>, TemplateError> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, res) in resources {
        let mut refs = Vec::new();
        collect_references(res, &mut refs);
        let mut set: BTreeSet<String> = refs
            .into_iter()
            .filter_map(|r| match r {
                Reference::Ref(n) | Reference::GetAtt(n) => Some(n),
                Reference::Condition(_) => None,
            })
            .filter(|n| resources.contains_key(n) && n != name)
            .collect();
        set.extend(
            depends_on(res)
                .into_iter()
                .filter(|d| resources.contains_key(d)),
        );
        deps.insert(name.clone(), set);
    }
    let mut order: Vec<String> = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    while order.len() < deps.len() {
        let ready = deps
            .iter()
            .find(|(n, d)| !done.contains(*n) && d.iter().all(|x| done.contains(x)))
            .map(|(n, _)| n.clone());
        match ready {
            Some(n) => {
                done.insert(n.clone());
                order.push(n);
            }
            None => {
                let stuck: Vec<String> = deps
                    .keys()
                    .filter(|n| !done.contains(*n))
                    .cloned()
                    .collect();
                return Err(TemplateError::Validation(format!(
                    "Circular dependency between resources: [{}]",
                    stuck.join(", ")
                )));
            }
        }
    }
    Ok(order)
}

fn physical_id(
    ty: &str,
    logical: &str,
    props: &Value,
    id: &StackIdentity,
    boot: &BootFacts,
) -> String {
    let named = |key: &str| props.get(key).and_then(scalar);
    let generic = || format!("{}-{logical}-{}", id.name, suffix());
    let prefix = match ty {
        "AWS::EC2::VPC" => "vpc",
        "AWS::EC2::Subnet" => "subnet",
        "AWS::EC2::SecurityGroup" => "sg",
        "AWS::EC2::SecurityGroupIngress" | "AWS::EC2::SecurityGroupEgress" => "sgr",
        "AWS::EC2::Instance" => "i",
        "AWS::EC2::Volume" => "vol",
        "AWS::EC2::NetworkInterface" => "eni",
        "AWS::EC2::InternetGateway" => "igw",
        "AWS::EC2::RouteTable" => "rtb",
        "AWS::EC2::SubnetRouteTableAssociation" => "rtbassoc",
        "AWS::EC2::LaunchTemplate" => "lt",
        "AWS::EC2::NatGateway" => "nat",
        "AWS::EC2::NetworkAcl" => "acl",
        "AWS::EC2::EIPAssociation" => "eipassoc",
        "AWS::EC2::VPCEndpoint" => "vpce",
        "AWS::EC2::EIP" => return boot.address.clone(),
        "AWS::EC2::KeyPair" => return named("KeyName").unwrap_or_else(generic),
        "AWS::IAM::Role" => return named("RoleName").unwrap_or_else(generic),
        "AWS::IAM::InstanceProfile" => return named("InstanceProfileName").unwrap_or_else(generic),
        "AWS::Logs::LogGroup" => return named("LogGroupName").unwrap_or_else(generic),
        "AWS::SSM::Parameter" => return named("Name").unwrap_or_else(|| format!("CFN-{logical}-{}", suffix())),
        "AWS::SecretsManager::Secret" => {
            let name = named("Name").unwrap_or_else(|| format!("{logical}-{}", suffix()));
            return format!("arn:aws:secretsmanager:{}:{}:secret:{name}-{}", id.region, id.account, hex(6));
        }
        "AWS::S3::Bucket" => return named("BucketName").unwrap_or_else(|| generic().to_lowercase()),
        "AWS::CloudFormation::WaitConditionHandle" => {
            return format!(
                "https://cloudformation-waitcondition-{}.s3.amazonaws.com/{}/{logical}?X-Amz-Signature={}",
                id.region,
                id.id.replace(':', "%3A").replace('/', "%2F"),
                hex(32)
            )
        }
        "AWS::CloudFormation::WaitCondition" => {
            return format!("arn:aws:cloudformation:{}:{}:stack/{}/{logical}", id.region, id.account, id.name)
        }
        _ => return generic(),
    };
    ec2_id(prefix)
}

fn private_ip() -> String {
    let mut rng = rand::thread_rng();
    format!("10.0.{}.{}", rng.gen_range(0..16), rng.gen_range(4..250))
}

fn resource_facts(
    ty: &str,
    logical: &str,
    physical: &str,
    props: &Value,
    id: &StackIdentity,
    boot: &BootFacts,
) -> ResourceFacts {
    let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
    // Properties double as attributes of the same name (Subnet.VpcId, VPC.CidrBlock, ...).
    if let Some(m) = props.as_object() {
        for (k, v) in m {
            if scalar(v).is_some() && !v.is_array() {
                attrs.insert(k.clone(), v.clone());
            }
        }
    }
    let az = props
        .get("AvailabilityZone")
        .and_then(scalar)
        .unwrap_or_else(|| format!("{}a", id.region));
    let mut ref_value = physical.to_string();
    let mut set = |k: &str, v: Value| {
        attrs.insert(k.to_string(), v);
    };
    match ty {
        "AWS::EC2::Instance" => {
            let ip = private_ip();
            set("InstanceId", json!(physical));
            set("PublicIp", json!(boot.address));
            set(
                "PublicDnsName",
                json!(format!(
                    "ec2-{}.compute-1.amazonaws.com",
                    boot.address.replace('.', "-")
                )),
            );
            set(
                "PrivateDnsName",
                json!(format!("ip-{}.ec2.internal", ip.replace('.', "-"))),
            );
            set("PrivateIp", json!(ip));
            set("AvailabilityZone", json!(az));
        }
        "AWS::EC2::EIP" => {
            set("PublicIp", json!(boot.address));
            set("AllocationId", json!(ec2_id("eipalloc")));
            ref_value = boot.address.clone();
        }
        "AWS::EC2::SecurityGroup" => set("GroupId", json!(physical)),
        "AWS::EC2::VPC" => {
            let cidr = props
                .get("CidrBlock")
                .and_then(scalar)
                .unwrap_or_else(|| "10.0.0.0/16".into());
            set("VpcId", json!(physical));
            set("CidrBlock", json!(cidr));
            set("CidrBlockAssociations", json!([ec2_id("vpc-cidr-assoc")]));
            set("DefaultSecurityGroup", json!(ec2_id("sg")));
            set("DefaultNetworkAcl", json!(ec2_id("acl")));
            set("Ipv6CidrBlocks", json!([]));
        }
        "AWS::EC2::Subnet" => {
            set("SubnetId", json!(physical));
            set("AvailabilityZone", json!(az));
            set("AvailabilityZoneId", json!("use1-az1"));
        }
        "AWS::EC2::LaunchTemplate" => {
            set("LaunchTemplateId", json!(physical));
            set("LatestVersionNumber", json!("1"));
            set("DefaultVersionNumber", json!("1"));
        }
        "AWS::EC2::NetworkInterface" => {
            set("Id", json!(physical));
            set("PrimaryPrivateIpAddress", json!(private_ip()));
            set("SecondaryPrivateIpAddresses", json!([]));
        }
        "AWS::EC2::InternetGateway" => set("InternetGatewayId", json!(physical)),
        "AWS::EC2::RouteTable" => set("RouteTableId", json!(physical)),
        "AWS::EC2::NatGateway" => set("NatGatewayId", json!(physical)),
        "AWS::EC2::Volume" => set("VolumeId", json!(physical)),
        "AWS::CloudFormation::WaitCondition" => {
            // What the server's boot script signals: base64 of its CA under the id `ca`, or,
            // for an enrollment handle, the client enrollment nonce under `nonce`.
            let data = if logical.contains("Enroll") {
                json!({ "nonce": hex(16) })
            } else {
                json!({ "ca": base64::engine::general_purpose::STANDARD.encode(boot.ca_pem.as_bytes()) })
            };
            set("Data", json!(data.to_string()));
        }
        "AWS::IAM::Role" => {
            set(
                "Arn",
                json!(format!("arn:aws:iam::{}:role/{physical}", id.account)),
            );
            set("RoleId", json!(format!("AROA{}", suffix())));
        }
        "AWS::IAM::InstanceProfile" => {
            set(
                "Arn",
                json!(format!(
                    "arn:aws:iam::{}:instance-profile/{physical}",
                    id.account
                )),
            );
        }
        "AWS::Logs::LogGroup" => {
            set(
                "Arn",
                json!(format!(
                    "arn:aws:logs:{}:{}:log-group:{physical}:*",
                    id.region, id.account
                )),
            );
        }
        "AWS::S3::Bucket" => {
            set("Arn", json!(format!("arn:aws:s3:::{physical}")));
            set("DomainName", json!(format!("{physical}.s3.amazonaws.com")));
        }
        _ => {}
    }
    if !attrs.contains_key("Arn") {
        let service = ty.split("::").nth(1).unwrap_or("unknown").to_lowercase();
        let kind = ty.rsplit("::").next().unwrap_or("resource").to_lowercase();
        attrs.insert(
            "Arn".into(),
            json!(format!(
                "arn:aws:{service}:{}:{}:{kind}/{physical}",
                id.region, id.account
            )),
        );
    }
    ResourceFacts {
        ty: ty.to_string(),
        ref_value,
        attributes: attrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::template::resolve_parameters;

    #[test]
    fn plans_in_dependency_order_with_outputs() {
        let t = Template::parse(
            "Parameters:\n  Env: {Type: String, Default: dev}\nConditions:\n  Never: !Equals [!Ref Env, prod]\nResources:\n  Z:\n    Type: AWS::EC2::VPC\n    Properties: {CidrBlock: 10.1.0.0/16}\n  A:\n    Type: AWS::EC2::Subnet\n    Properties: {VpcId: !Ref Z, Tags: [{Key: k, Value: !Sub '${Env}-x'}]}\n  Ip:\n    Type: AWS::EC2::EIP\n  Skipped:\n    Type: AWS::EC2::VPC\n    Condition: Never\nOutputs:\n  Vpc: {Value: !GetAtt A.VpcId}\n  Addr: {Value: !Ref Ip}\n  Alloc: {Value: !GetAtt Ip.AllocationId}\n",
        )
        .expect("parse");
        let params = resolve_parameters(&t.parameters, &[]).expect("params");
        let identity = StackIdentity {
            name: "s".into(),
            id: "arn:x".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        };
        let boot = BootFacts {
            address: "127.0.0.1".into(),
            ca_pem: "PEM".into(),
        };
        let plan = plan_stack(&t, &params, &identity, &boot).expect("plan");
        let names: Vec<&str> = plan
            .resources
            .iter()
            .map(|r| r.logical_id.as_str())
            .collect();
        assert_eq!(names, vec!["Ip", "Z", "A"]);
        let vpc = &plan.resources[1].physical_id;
        assert!(vpc.starts_with("vpc-0") && vpc.len() == 21, "{vpc}");
        assert_eq!(
            plan.resources[2].tags,
            vec![("k".to_string(), "dev-x".to_string())]
        );
        let out: BTreeMap<&str, &str> = plan
            .outputs
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(out["Vpc"], vpc.as_str());
        assert_eq!(out["Addr"], "127.0.0.1");
        assert!(out["Alloc"].starts_with("eipalloc-"));
    }

    #[test]
    fn cycles_are_rejected() {
        let t = Template::parse(
            "Resources:\n  A: {Type: AWS::EC2::VPC, DependsOn: B}\n  B: {Type: AWS::EC2::VPC, DependsOn: A}\n",
        )
        .expect("parse");
        let identity = StackIdentity {
            name: "s".into(),
            id: "x".into(),
            region: "r".into(),
            account: "1".into(),
        };
        let boot = BootFacts {
            address: "127.0.0.1".into(),
            ca_pem: String::new(),
        };
        let err = plan_stack(&t, &BTreeMap::new(), &identity, &boot).expect_err("cycle");
        assert!(err.to_string().contains("Circular dependency"));
    }
}
