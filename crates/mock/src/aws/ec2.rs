//! The EC2 (ec2Query) actions the leak check and sweep use: `Describe*` with filters, and
//! the matching deletes.

use chrono::{DateTime, Utc};

use super::api::ApiError;
use super::inventory::{matches, Inventory, Kind, Resource};
use super::query::QueryRequest;
use super::xml::Node;
use super::ACCOUNT_ID;

/// The result fields of an EC2 action (under `<ActionResponse>`).
pub type Ec2Result = Result<Vec<Node>, ApiError>;

pub fn handle(action: &str, q: &QueryRequest, inv: &mut Inventory) -> Ec2Result {
    match action {
        "DescribeInstances" => describe_instances(q, inv),
        "DescribeVolumes" => describe(q, inv, Kind::Volume, "VolumeId", "volumeSet", volume_item),
        "DescribeSecurityGroups" => describe(
            q,
            inv,
            Kind::SecurityGroup,
            "GroupId",
            "securityGroupInfo",
            group_item,
        ),
        "DescribeNetworkInterfaces" => describe(
            q,
            inv,
            Kind::NetworkInterface,
            "NetworkInterfaceId",
            "networkInterfaceSet",
            eni_item,
        ),
        "DescribeAddresses" => describe(
            q,
            inv,
            Kind::Address,
            "AllocationId",
            "addressesSet",
            address_item,
        ),
        "DescribeVpcs" => describe(q, inv, Kind::Vpc, "VpcId", "vpcSet", vpc_item),
        "DescribeNatGateways" => describe(
            q,
            inv,
            Kind::NatGateway,
            "NatGatewayId",
            "natGatewaySet",
            nat_item,
        ),
        "GetConsoleOutput" => get_console_output(q, inv),
        "DescribeTags" => describe_tags(q, inv),
        "TerminateInstances" => terminate_instances(q, inv),
        "DeleteVolume" => delete_one(q, inv, Kind::Volume, "VolumeId"),
        "DeleteSecurityGroup" => delete_one(q, inv, Kind::SecurityGroup, "GroupId"),
        "DeleteNetworkInterface" => {
            delete_one(q, inv, Kind::NetworkInterface, "NetworkInterfaceId")
        }
        "ReleaseAddress" => delete_one(q, inv, Kind::Address, "AllocationId"),
        "DeleteVpc" => delete_one(q, inv, Kind::Vpc, "VpcId"),
        "DeleteNatGateway" => delete_one(q, inv, Kind::NatGateway, "NatGatewayId"),
        other => Err(ApiError::sender(
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

/// `GetConsoleOutput`: the instance's serial console, base64-encoded as AWS sends it.
/// `Latest=true` is served only while the instance runs (on AWS: Nitro instances only); a
/// terminated instance keeps its buffered output for a while.
fn get_console_output(q: &QueryRequest, inv: &mut Inventory) -> Ec2Result {
    use base64::Engine;
    let id = q.get("InstanceId").ok_or_else(|| {
        ApiError::sender(
            "MissingParameter",
            "The request must contain the parameter InstanceId",
        )
    })?;
    let r = inv
        .get(id)
        .filter(|r| r.kind() == Kind::Instance)
        .ok_or_else(|| not_found(Kind::Instance, id))?;
    if q.get("Latest") == Some("true") && r.state != "running" {
        return Err(ApiError::sender(
            "UnsupportedOperation",
            "The latest console output is only available for running instances built on the Nitro system.",
        ));
    }
    let mut out = vec![
        Node::text("instanceId", id),
        Node::text("timestamp", time(Some(Utc::now()))),
    ];
    if !r.console.is_empty() {
        let mut text = r.console.join("\r\n");
        text.push_str("\r\n");
        out.push(Node::text(
            "output",
            base64::engine::general_purpose::STANDARD.encode(text),
        ));
    }
    Ok(out)
}

/// `DescribeTags` pages hold at most this many tags unless `MaxResults` asks for fewer
/// (AWS: up to 1000); small, so callers must page.
pub const TAGS_PAGE_SIZE: usize = 10;

/// `DescribeTags`' `resourceType` of a CloudFormation type; `None` for what EC2 cannot tag
/// (routes, associations, attachments) and non-EC2 types.
pub fn tag_resource_type(cfn_type: &str) -> Option<&'static str> {
    Some(match cfn_type {
        "AWS::EC2::Instance" => "instance",
        "AWS::EC2::Volume" => "volume",
        "AWS::EC2::NetworkInterface" => "network-interface",
        "AWS::EC2::EIP" => "elastic-ip",
        "AWS::EC2::NatGateway" => "natgateway",
        "AWS::EC2::SecurityGroup" => "security-group",
        "AWS::EC2::LaunchTemplate" => "launch-template",
        "AWS::EC2::RouteTable" => "route-table",
        "AWS::EC2::InternetGateway" => "internet-gateway",
        "AWS::EC2::Subnet" => "subnet",
        "AWS::EC2::VPC" => "vpc",
        _ => return None,
    })
}

/// `DescribeTags`: one entry per tag of every EC2 resource, filtered by `key`, `value`,
/// `resource-type`, `resource-id`, paginated. As on AWS, a terminated instance keeps its
/// tags listed for a while, so callers must check its state.
fn describe_tags(q: &QueryRequest, inv: &mut Inventory) -> Ec2Result {
    let filters = q.ec2_filters();
    let page_size = q
        .get("MaxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .map_or(TAGS_PAGE_SIZE, |m| m.clamp(1, TAGS_PAGE_SIZE));
    let offset = match q.get("NextToken") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::sender("InvalidNextToken", "The token is not valid"))?,
        None => 0,
    };
    let mut all = Vec::new();
    for r in inv.all() {
        let Some(ty) = tag_resource_type(&r.cfn_type) else {
            continue;
        };
        for (k, v) in &r.tags {
            let mut keep = true;
            for (name, values) in &filters {
                let field = match name.as_str() {
                    "key" => k.as_str(),
                    "value" => v.as_str(),
                    "resource-type" => ty,
                    "resource-id" => r.id.as_str(),
                    other => {
                        return Err(ApiError::sender(
                            "InvalidParameterValue",
                            format!("The filter '{other}' is invalid"),
                        ))
                    }
                };
                keep &= values.iter().any(|x| x == field);
            }
            if keep {
                all.push(vec![
                    Node::text("resourceId", &r.id),
                    Node::text("resourceType", ty),
                    Node::text("key", k),
                    Node::text("value", v),
                ]);
            }
        }
    }
    let total = all.len();
    let page: Vec<Vec<Node>> = all.into_iter().skip(offset).take(page_size).collect();
    let mut out = vec![Node::items("tagSet", page)];
    if offset + page_size < total {
        out.push(Node::text("nextToken", (offset + page_size).to_string()));
    }
    Ok(out)
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    let (code, what) = match kind {
        Kind::Instance => ("InvalidInstanceID.NotFound", "instance ID"),
        Kind::Volume => ("InvalidVolume.NotFound", "volume"),
        Kind::SecurityGroup => ("InvalidGroup.NotFound", "security group"),
        Kind::NetworkInterface => ("InvalidNetworkInterfaceID.NotFound", "networkInterface ID"),
        Kind::Address => ("InvalidAllocationID.NotFound", "allocation ID"),
        Kind::Vpc => ("InvalidVpcID.NotFound", "vpc ID"),
        Kind::NatGateway => ("NatGatewayNotFound", "NAT gateway"),
        Kind::Other => ("InvalidParameterValue", "resource"),
    };
    ApiError::sender(code, format!("The {what} '{id}' does not exist"))
}

/// The resources of `kind` named by `id_param.N` (all when none) passing the filters.
fn select<'a>(
    q: &QueryRequest,
    inv: &'a Inventory,
    kind: Kind,
    id_param: &str,
) -> Result<Vec<&'a Resource>, ApiError> {
    let ids = q.values(id_param);
    for id in &ids {
        if inv.get(id).is_none_or(|r| r.kind() != kind) {
            return Err(not_found(kind, id));
        }
    }
    let filters = q.ec2_filters();
    let mut out = Vec::new();
    for r in inv.of_kind(kind) {
        if !ids.is_empty() && !ids.contains(&r.id) {
            continue;
        }
        if matches(r, &filters)
            .map_err(|e| ApiError::sender("InvalidParameterValue", e.to_string()))?
        {
            out.push(r);
        }
    }
    Ok(out)
}

fn describe(
    q: &QueryRequest,
    inv: &Inventory,
    kind: Kind,
    id_param: &str,
    list: &str,
    item: fn(&Resource) -> Vec<Node>,
) -> Ec2Result {
    let items = select(q, inv, kind, id_param)?
        .into_iter()
        .map(item)
        .collect();
    Ok(vec![Node::items(list, items)])
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.unwrap_or_else(Utc::now)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn tag_set(r: &Resource) -> Node {
    Node::items(
        "tagSet",
        r.tags
            .iter()
            .map(|(k, v)| vec![Node::text("key", k), Node::text("value", v)])
            .collect(),
    )
}

fn state_code(name: &str) -> &'static str {
    match name {
        "pending" => "0",
        "running" => "16",
        "shutting-down" => "32",
        "terminated" => "48",
        "stopping" => "64",
        _ => "80",
    }
}

fn instance_state(tag: &str, name: &str) -> Node {
    Node::parent(
        tag,
        vec![
            Node::text("code", state_code(name)),
            Node::text("name", name),
        ],
    )
}

fn describe_instances(q: &QueryRequest, inv: &Inventory) -> Ec2Result {
    let instances = select(q, inv, Kind::Instance, "InstanceId")?;
    let reservations = instances
        .into_iter()
        .map(|r| {
            let mut fields = vec![
                Node::text("instanceId", &r.id),
                Node::text(
                    "imageId",
                    r.image_id
                        .clone()
                        .unwrap_or_else(|| "ami-00000000000000000".into()),
                ),
                instance_state("instanceState", &r.state),
            ];
            fields.extend(Node::opt("privateIpAddress", r.private_ip.clone()));
            fields.extend(Node::opt("ipAddress", r.public_ip.clone()));
            fields.extend(Node::opt("instanceType", r.instance_type.clone()));
            fields.push(Node::text("launchTime", time(r.created)));
            fields.push(Node::parent(
                "placement",
                Node::opt("availabilityZone", r.availability_zone.clone()),
            ));
            fields.extend(Node::opt("subnetId", r.subnet_id.clone()));
            fields.extend(Node::opt("vpcId", r.vpc_id.clone()));
            if r.spot {
                fields.push(Node::text("instanceLifecycle", "spot"));
            }
            let volumes: Vec<Vec<Node>> = inv
                .of_kind(Kind::Volume)
                .filter(|v| v.attached_to.as_deref() == Some(r.id.as_str()))
                .map(|v| {
                    vec![
                        Node::text("deviceName", "/dev/xvda"),
                        Node::parent(
                            "ebs",
                            vec![
                                Node::text("volumeId", &v.id),
                                Node::text("status", "attached"),
                                Node::text(
                                    "deleteOnTermination",
                                    v.delete_on_termination.to_string(),
                                ),
                            ],
                        ),
                    ]
                })
                .collect();
            fields.push(Node::items("blockDeviceMapping", volumes));
            fields.push(Node::text("rootDeviceName", "/dev/xvda"));
            fields.push(tag_set(r));
            vec![
                Node::text(
                    "reservationId",
                    format!("r-{}", r.id.trim_start_matches("i-")),
                ),
                Node::text("ownerId", ACCOUNT_ID),
                Node::items("groupSet", Vec::new()),
                Node::items("instancesSet", vec![fields]),
            ]
        })
        .collect();
    Ok(vec![Node::items("reservationSet", reservations)])
}

fn volume_item(r: &Resource) -> Vec<Node> {
    let attachments = r
        .attached_to
        .iter()
        .map(|i| {
            vec![
                Node::text("volumeId", &r.id),
                Node::text("instanceId", i),
                Node::text("device", "/dev/xvda"),
                Node::text("status", "attached"),
                Node::text("attachTime", time(r.created)),
                Node::text("deleteOnTermination", r.delete_on_termination.to_string()),
            ]
        })
        .collect();
    let mut out = vec![
        Node::text("volumeId", &r.id),
        Node::text("size", r.size_gib.unwrap_or(8).to_string()),
    ];
    out.extend(Node::opt("availabilityZone", r.availability_zone.clone()));
    out.extend([
        Node::text("status", &r.state),
        Node::text("createTime", time(r.created)),
        Node::items("attachmentSet", attachments),
        Node::text("volumeType", "gp3"),
        Node::text("encrypted", "false"),
        tag_set(r),
    ]);
    out
}

fn group_item(r: &Resource) -> Vec<Node> {
    let mut out = vec![
        Node::text("ownerId", ACCOUNT_ID),
        Node::text("groupId", &r.id),
        Node::text(
            "groupName",
            r.group_name.clone().unwrap_or_else(|| r.id.clone()),
        ),
        Node::text(
            "groupDescription",
            r.description.clone().unwrap_or_default(),
        ),
    ];
    out.extend(Node::opt("vpcId", r.vpc_id.clone()));
    out.extend([
        Node::items("ipPermissions", Vec::new()),
        Node::items("ipPermissionsEgress", Vec::new()),
        tag_set(r),
    ]);
    out
}

fn eni_item(r: &Resource) -> Vec<Node> {
    let mut out = vec![Node::text("networkInterfaceId", &r.id)];
    out.extend(Node::opt("subnetId", r.subnet_id.clone()));
    out.extend(Node::opt("vpcId", r.vpc_id.clone()));
    out.extend(Node::opt("availabilityZone", r.availability_zone.clone()));
    out.push(Node::text("ownerId", ACCOUNT_ID));
    out.push(Node::text("status", &r.state));
    out.extend(Node::opt("privateIpAddress", r.private_ip.clone()));
    if let Some(instance) = &r.attached_to {
        out.push(Node::parent(
            "attachment",
            vec![
                Node::text("instanceId", instance),
                Node::text("deviceIndex", "0"),
                Node::text("status", "attached"),
                Node::text("deleteOnTermination", "true"),
            ],
        ));
    }
    out.push(tag_set(r));
    out
}

fn address_item(r: &Resource) -> Vec<Node> {
    let mut out = Vec::new();
    out.extend(Node::opt("publicIp", r.public_ip.clone()));
    out.push(Node::text("allocationId", &r.id));
    out.push(Node::text("domain", "vpc"));
    out.extend(Node::opt("instanceId", r.attached_to.clone()));
    out.push(tag_set(r));
    out
}

fn vpc_item(r: &Resource) -> Vec<Node> {
    vec![
        Node::text("vpcId", &r.id),
        Node::text("ownerId", ACCOUNT_ID),
        Node::text("state", &r.state),
        Node::text(
            "cidrBlock",
            r.cidr.clone().unwrap_or_else(|| "10.0.0.0/16".into()),
        ),
        Node::text("isDefault", "false"),
        tag_set(r),
    ]
}

fn nat_item(r: &Resource) -> Vec<Node> {
    let mut out = vec![
        Node::text("natGatewayId", &r.id),
        Node::text("state", &r.state),
        Node::text("createTime", time(r.created)),
    ];
    out.extend(Node::opt("subnetId", r.subnet_id.clone()));
    out.extend(Node::opt("vpcId", r.vpc_id.clone()));
    out.push(tag_set(r));
    out
}

fn terminate_instances(q: &QueryRequest, inv: &mut Inventory) -> Ec2Result {
    let ids = q.values("InstanceId");
    if ids.is_empty() {
        return Err(ApiError::sender(
            "MissingParameter",
            "The request must contain the parameter InstanceId",
        ));
    }
    let mut items = Vec::new();
    for id in &ids {
        let previous = match inv.get(id) {
            Some(r) if r.kind() == Kind::Instance => r.state.clone(),
            _ => return Err(not_found(Kind::Instance, id)),
        };
        inv.delete(id);
        items.push(vec![
            Node::text("instanceId", id),
            instance_state("currentState", "terminated"),
            instance_state("previousState", &previous),
        ]);
    }
    Ok(vec![Node::items("instancesSet", items)])
}

fn delete_one(q: &QueryRequest, inv: &mut Inventory, kind: Kind, param: &str) -> Ec2Result {
    let Some(id) = q.get(param).map(str::to_string) else {
        return Err(ApiError::sender(
            "MissingParameter",
            format!("The request must contain the parameter {param}"),
        ));
    };
    let r = match inv.get(&id) {
        Some(r) if r.kind() == kind && !r.is_gone() => r,
        _ => return Err(not_found(kind, &id)),
    };
    match kind {
        Kind::Volume if r.attached_to.is_some() => {
            return Err(ApiError::sender(
                "VolumeInUse",
                format!(
                    "Volume {id} is currently attached to {}",
                    r.attached_to.clone().unwrap_or_default()
                ),
            ))
        }
        Kind::NetworkInterface if r.attached_to.is_some() => {
            return Err(ApiError::sender(
                "InvalidNetworkInterface.InUse",
                format!("Interface: [{id}] in use."),
            ))
        }
        Kind::Vpc => {
            let dependants = [
                Kind::Instance,
                Kind::SecurityGroup,
                Kind::NetworkInterface,
                Kind::NatGateway,
            ]
            .into_iter()
            .flat_map(|k| inv.of_kind(k))
            .any(|x| !x.is_gone() && x.vpc_id.as_deref() == Some(id.as_str()));
            if dependants {
                return Err(ApiError::sender(
                    "DependencyViolation",
                    format!("The vpc '{id}' has dependencies and cannot be deleted."),
                ));
            }
        }
        _ => {}
    }
    inv.delete(&id);
    Ok(match kind {
        Kind::NatGateway => vec![Node::text("natGatewayId", &id)],
        Kind::SecurityGroup => vec![Node::text("return", "true"), Node::text("groupId", &id)],
        _ => vec![Node::text("return", "true")],
    })
}
