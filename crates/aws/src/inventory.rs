//! `Ec2Inventory`: finds every EC2 resource that costs money or opens access by the run's
//! tag, whatever template created it. Discovery is by tag, never by logical id.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, InstanceLifecycleType, InstanceStateName, Tag};
use aws_sdk_ec2::Client;
use cloudtest_core::{ResourceKind, ResourceRef};

use crate::calls::CallCounter;
use crate::errors::{AwsError, ErrorContext};

pub(crate) const SERVICE: &str = "ec2";

/// Sweep waits for a terminated instance at most this many times this long.
const TERMINATE_POLLS: u32 = 60;
const TERMINATE_POLL_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub use cloudtest_core::tags::{EXPIRES_AT_TAG, REQUIREMENT_TAG, RUN_ID_TAG};

/// Resource kinds the leak check lists, in report order.
pub const CHECKED_KINDS: [ResourceKind; 7] = [
    ResourceKind::Instance,
    ResourceKind::Volume,
    ResourceKind::NetworkInterface,
    ResourceKind::PublicIp,
    ResourceKind::SecurityGroup,
    ResourceKind::Vpc,
    ResourceKind::NatGateway,
];

/// A tagged EC2 resource with all of its tags (sweep reads `cloudtest:expires-at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedResource {
    pub resource: ResourceRef,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Ec2Inventory {
    client: Client,
    errors: ErrorContext,
}

fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

fn reference(kind: ResourceKind, cloud_type: &str, id: String) -> ResourceRef {
    ResourceRef {
        kind,
        cloud_type: cloud_type.to_string(),
        id,
        sku: None,
        spot: false,
    }
}

impl Ec2Inventory {
    pub fn new(sdk: &SdkConfig, counter: &CallCounter, errors: ErrorContext) -> Self {
        let config = aws_sdk_ec2::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build();
        Self {
            client: Client::from_conf(config),
            errors,
        }
    }

    /// Replaces the credential source named in error messages.
    pub fn set_credential_source(&mut self, source: &str) {
        self.errors.credential_source = source.to_string();
    }

    /// Over an EC2 client built elsewhere (the preflight's), which counts its own calls.
    pub(crate) fn from_client(client: Client, errors: ErrorContext) -> Self {
        Self { client, errors }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// For the EC2 reads that live in sibling modules (leak, zones).
    pub(crate) fn errors(&self) -> &ErrorContext {
        &self.errors
    }

    /// `GetConsoleOutput`, decoded (AWS sends base64); `None` while there is none yet.
    /// `latest` asks for the live console, which AWS serves only for Nitro instances while
    /// they run; otherwise the buffered output (posted at state changes, kept for a while
    /// after termination) is returned.
    pub async fn console_output(
        &self,
        instance_id: &str,
        latest: bool,
    ) -> Result<Option<String>, AwsError> {
        use base64::Engine;
        let mut call = self.client.get_console_output().instance_id(instance_id);
        if latest {
            call = call.latest(true);
        }
        let out = call
            .send()
            .await
            .map_err(|e| self.errors.sdk("GetConsoleOutput", instance_id, SERVICE, e))?;
        let Some(encoded) = out.output.filter(|o| !o.trim().is_empty()) else {
            return Ok(None);
        };
        // Not base64 (some emulators send plain text): take it as it is.
        Ok(Some(
            match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => encoded,
            },
        ))
    }

    /// Everything tagged `cloudtest:run-id=<run_id>` that still exists (instances that are
    /// not `terminated`, volumes, ENIs, EIPs, security groups, VPCs, NAT gateways that are
    /// not `deleted`).
    pub async fn remaining(&self, run_id: &str) -> Result<Vec<ResourceRef>, AwsError> {
        let filter = Filter::builder()
            .name(format!("tag:{RUN_ID_TAG}"))
            .values(run_id)
            .build();
        let target = format!("resources tagged {RUN_ID_TAG}={run_id}");
        Ok(self
            .tagged(filter, &target)
            .await?
            .into_iter()
            .map(|t| t.resource)
            .collect())
    }

    /// Everything of any EC2 type carrying a `cloudtest:run-id` tag at all, with all of
    /// its tags (for `sweep`): see [`Ec2Inventory::all_tagged_resources`].
    pub async fn all_cloudtest(&self) -> Result<Vec<TaggedResource>, AwsError> {
        self.all_tagged_resources().await
    }

    async fn tagged(&self, filter: Filter, target: &str) -> Result<Vec<TaggedResource>, AwsError> {
        self.tagged_of_kinds(filter, target, &crate::leak::LEAK_KINDS)
            .await
    }

    /// The resources of `kinds` matching `filter`, one paginated describe per kind, with
    /// their tags (terminated instances and deleted NAT gateways left out).
    pub(crate) async fn tagged_of_kinds(
        &self,
        filter: Filter,
        target: &str,
        kinds: &[ResourceKind],
    ) -> Result<Vec<TaggedResource>, AwsError> {
        let want = |k: &ResourceKind| kinds.contains(k);
        let mut out = Vec::new();

        if want(&ResourceKind::Instance) {
            let mut pages = self
                .client
                .describe_instances()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| self.errors.sdk("DescribeInstances", target, SERVICE, e))?;
                for inst in page.reservations().iter().flat_map(|r| r.instances()) {
                    let state = inst.state().and_then(|s| s.name()).map(|n| n.as_str());
                    if state == Some("terminated") {
                        continue;
                    }
                    let Some(id) = inst.instance_id() else {
                        continue;
                    };
                    let mut r =
                        reference(ResourceKind::Instance, "AWS::EC2::Instance", id.to_string());
                    r.sku = inst.instance_type().map(|t| t.as_str().to_string());
                    r.spot = inst.instance_lifecycle() == Some(&InstanceLifecycleType::Spot);
                    out.push(TaggedResource {
                        resource: r,
                        tags: tags_of(inst.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::Volume) {
            let mut pages = self
                .client
                .describe_volumes()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| self.errors.sdk("DescribeVolumes", target, SERVICE, e))?;
                for v in page.volumes() {
                    let Some(id) = v.volume_id() else { continue };
                    let mut r = reference(ResourceKind::Volume, "AWS::EC2::Volume", id.to_string());
                    r.sku = match (v.volume_type(), v.size()) {
                        (Some(t), Some(size)) => Some(format!("{}:{size}", t.as_str())),
                        _ => None,
                    };
                    out.push(TaggedResource {
                        resource: r,
                        tags: tags_of(v.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::NetworkInterface) {
            let mut pages = self
                .client
                .describe_network_interfaces()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    self.errors
                        .sdk("DescribeNetworkInterfaces", target, SERVICE, e)
                })?;
                for n in page.network_interfaces() {
                    let Some(id) = n.network_interface_id() else {
                        continue;
                    };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::NetworkInterface,
                            "AWS::EC2::NetworkInterface",
                            id.to_string(),
                        ),
                        tags: tags_of(n.tag_set()),
                    });
                }
            }
        }

        if want(&ResourceKind::PublicIp) {
            let addrs = self
                .client
                .describe_addresses()
                .filters(filter.clone())
                .send()
                .await
                .map_err(|e| self.errors.sdk("DescribeAddresses", target, SERVICE, e))?;
            for a in addrs.addresses() {
                let Some(id) = a.allocation_id().or(a.public_ip()) else {
                    continue;
                };
                out.push(TaggedResource {
                    resource: reference(ResourceKind::PublicIp, "AWS::EC2::EIP", id.to_string()),
                    tags: tags_of(a.tags()),
                });
            }
        }

        if want(&ResourceKind::SecurityGroup) {
            let mut pages = self
                .client
                .describe_security_groups()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    self.errors
                        .sdk("DescribeSecurityGroups", target, SERVICE, e)
                })?;
                for g in page.security_groups() {
                    let Some(id) = g.group_id() else { continue };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::SecurityGroup,
                            "AWS::EC2::SecurityGroup",
                            id.to_string(),
                        ),
                        tags: tags_of(g.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::Vpc) {
            let mut pages = self
                .client
                .describe_vpcs()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.errors.sdk("DescribeVpcs", target, SERVICE, e))?;
                for v in page.vpcs() {
                    let Some(id) = v.vpc_id() else { continue };
                    out.push(TaggedResource {
                        resource: reference(ResourceKind::Vpc, "AWS::EC2::VPC", id.to_string()),
                        tags: tags_of(v.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::NatGateway) {
            let mut pages = self
                .client
                .describe_nat_gateways()
                .filter(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| self.errors.sdk("DescribeNatGateways", target, SERVICE, e))?;
                for g in page.nat_gateways() {
                    let state = g.state().map(|s| s.as_str());
                    if state == Some("deleted") {
                        continue;
                    }
                    let Some(id) = g.nat_gateway_id() else {
                        continue;
                    };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::NatGateway,
                            "AWS::EC2::NatGateway",
                            id.to_string(),
                        ),
                        tags: tags_of(g.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::LaunchTemplate) {
            let mut pages = self
                .client
                .describe_launch_templates()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    self.errors
                        .sdk("DescribeLaunchTemplates", target, SERVICE, e)
                })?;
                for x in page.launch_templates() {
                    let Some(id) = x.launch_template_id() else {
                        continue;
                    };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::LaunchTemplate,
                            "AWS::EC2::LaunchTemplate",
                            id.to_string(),
                        ),
                        tags: tags_of(x.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::RouteTable) {
            let mut pages = self
                .client
                .describe_route_tables()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| self.errors.sdk("DescribeRouteTables", target, SERVICE, e))?;
                for x in page.route_tables() {
                    let Some(id) = x.route_table_id() else {
                        continue;
                    };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::RouteTable,
                            "AWS::EC2::RouteTable",
                            id.to_string(),
                        ),
                        tags: tags_of(x.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::InternetGateway) {
            let mut pages = self
                .client
                .describe_internet_gateways()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    self.errors
                        .sdk("DescribeInternetGateways", target, SERVICE, e)
                })?;
                for x in page.internet_gateways() {
                    let Some(id) = x.internet_gateway_id() else {
                        continue;
                    };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::InternetGateway,
                            "AWS::EC2::InternetGateway",
                            id.to_string(),
                        ),
                        tags: tags_of(x.tags()),
                    });
                }
            }
        }

        if want(&ResourceKind::Subnet) {
            let mut pages = self
                .client
                .describe_subnets()
                .filters(filter.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| self.errors.sdk("DescribeSubnets", target, SERVICE, e))?;
                for x in page.subnets() {
                    let Some(id) = x.subnet_id() else { continue };
                    out.push(TaggedResource {
                        resource: reference(
                            ResourceKind::Subnet,
                            "AWS::EC2::Subnet",
                            id.to_string(),
                        ),
                        tags: tags_of(x.tags()),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Instance types and spot flags for instance ids (pricing of a deployment).
    pub async fn instance_details(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, (Option<String>, bool)>, AwsError> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = self
            .client
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| {
                self.errors
                    .sdk("DescribeInstances", &ids.join(","), SERVICE, e)
            })?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some((
                    i.instance_id()?.to_string(),
                    (
                        i.instance_type().map(|t| t.as_str().to_string()),
                        i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot),
                    ),
                ))
            })
            .collect())
    }

    /// Terminates an instance and waits (bounded) until it is `terminated`: its volumes,
    /// interfaces and addresses cannot go before.
    async fn terminate_and_wait(&self, id: &str) -> Result<(), AwsError> {
        self.client
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| self.errors.sdk("TerminateInstances", id, SERVICE, e))?;
        for _ in 0..TERMINATE_POLLS {
            let out = self
                .client
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| self.errors.sdk("DescribeInstances", id, SERVICE, e))?;
            let terminated = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .all(|i| i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Terminated));
            if terminated {
                return Ok(());
            }
            tokio::time::sleep(TERMINATE_POLL_EVERY).await;
        }
        Err(AwsError::Other {
            operation: "TerminateInstances",
            target: id.to_string(),
            detail: "still not terminated after waiting; run the sweep again later".into(),
        })
    }

    /// Disassociates an Elastic IP (if associated), then releases it.
    async fn release_address(&self, allocation: &str) -> Result<(), AwsError> {
        let out = self
            .client
            .describe_addresses()
            .allocation_ids(allocation)
            .send()
            .await
            .map_err(|e| self.errors.sdk("DescribeAddresses", allocation, SERVICE, e))?;
        for association in out.addresses().iter().filter_map(|a| a.association_id()) {
            self.client
                .disassociate_address()
                .association_id(association)
                .send()
                .await
                .map_err(|e| {
                    self.errors
                        .sdk("DisassociateAddress", association, SERVICE, e)
                })?;
        }
        self.client
            .release_address()
            .allocation_id(allocation)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.errors.sdk("ReleaseAddress", allocation, SERVICE, e))
    }

    /// Removes a route table's subnet associations (its routes go with it), then deletes it.
    async fn delete_route_table(&self, id: &str) -> Result<(), AwsError> {
        let out = self
            .client
            .describe_route_tables()
            .route_table_ids(id)
            .send()
            .await
            .map_err(|e| self.errors.sdk("DescribeRouteTables", id, SERVICE, e))?;
        for assoc in out
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| a.main() != Some(true))
            .filter_map(|a| a.route_table_association_id())
        {
            self.client
                .disassociate_route_table()
                .association_id(assoc)
                .send()
                .await
                .map_err(|e| self.errors.sdk("DisassociateRouteTable", assoc, SERVICE, e))?;
        }
        self.client
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.errors.sdk("DeleteRouteTable", id, SERVICE, e))
    }

    /// Detaches an internet gateway from its VPCs, then deletes it.
    async fn delete_internet_gateway(&self, id: &str) -> Result<(), AwsError> {
        let out = self
            .client
            .describe_internet_gateways()
            .internet_gateway_ids(id)
            .send()
            .await
            .map_err(|e| self.errors.sdk("DescribeInternetGateways", id, SERVICE, e))?;
        for vpc in out
            .internet_gateways()
            .iter()
            .flat_map(|g| g.attachments())
            .filter_map(|a| a.vpc_id())
        {
            self.client
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| self.errors.sdk("DetachInternetGateway", id, SERVICE, e))?;
        }
        self.client
            .delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.errors.sdk("DeleteInternetGateway", id, SERVICE, e))
    }

    /// Deletes one stray resource (sweep) the way its kind must go: instances terminated
    /// (and waited for), addresses disassociated and released, route tables disassociated,
    /// gateways detached. Order (instances first, VPCs last) is the caller's.
    pub async fn delete(&self, r: &ResourceRef) -> Result<(), AwsError> {
        let id = r.id.clone();
        let c = &self.client;
        match &r.kind {
            ResourceKind::Instance => self.terminate_and_wait(&id).await,
            ResourceKind::RouteTable => self.delete_route_table(&id).await,
            ResourceKind::InternetGateway => self.delete_internet_gateway(&id).await,
            ResourceKind::LaunchTemplate => c
                .delete_launch_template()
                .launch_template_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteLaunchTemplate", &id, SERVICE, e)),
            ResourceKind::Subnet => c
                .delete_subnet()
                .subnet_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteSubnet", &id, SERVICE, e)),
            ResourceKind::Volume => c
                .delete_volume()
                .volume_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteVolume", &id, SERVICE, e)),
            ResourceKind::NetworkInterface => c
                .delete_network_interface()
                .network_interface_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteNetworkInterface", &id, SERVICE, e)),
            ResourceKind::PublicIp => self.release_address(&id).await,
            ResourceKind::SecurityGroup => c
                .delete_security_group()
                .group_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteSecurityGroup", &id, SERVICE, e)),
            ResourceKind::Vpc => c
                .delete_vpc()
                .vpc_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteVpc", &id, SERVICE, e)),
            ResourceKind::NatGateway => c
                .delete_nat_gateway()
                .nat_gateway_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.errors.sdk("DeleteNatGateway", &id, SERVICE, e)),
            other => Err(AwsError::Other {
                operation: "Delete",
                target: id,
                detail: format!("no delete call for resource kind `{other}`"),
            }),
        }
    }
}
