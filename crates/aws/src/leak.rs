//! The leak check: one paginated `DescribeTags` finds every EC2 resource of any type that
//! carries the run's tag; then only the kinds whose tags outlive them (instances stay listed
//! `terminated`, NAT gateways `deleted`) have their state read.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, InstanceStateName, NatGatewayState};
use cloudtest_core::ResourceRef;

use crate::errors::AwsError;
use crate::inventory::{Ec2Inventory, TaggedResource, RUN_ID_TAG};

/// The kinds the leak check covers, in report order: the union of what cloudtest checked
/// before and what `templates-cfn/velociraptor.yaml` creates (issue 15 §5).
pub const LEAK_KINDS: [&str; 11] = [
    "instance",
    "volume",
    "network_interface",
    "public_ip",
    "nat_gateway",
    "security_group",
    "launch_template",
    "route_table",
    "internet_gateway",
    "subnet",
    "vpc",
];

/// `DescribeTags`' `resourceType` → (cloudtest kind, CloudFormation type). Types outside the
/// list are still reported, as kind `other`.
pub fn kind_of_tag_type(resource_type: &str) -> (&'static str, &'static str) {
    match resource_type {
        "instance" => ("instance", "AWS::EC2::Instance"),
        "volume" => ("volume", "AWS::EC2::Volume"),
        "network-interface" => ("network_interface", "AWS::EC2::NetworkInterface"),
        "elastic-ip" => ("public_ip", "AWS::EC2::EIP"),
        "natgateway" => ("nat_gateway", "AWS::EC2::NatGateway"),
        "security-group" => ("security_group", "AWS::EC2::SecurityGroup"),
        "launch-template" => ("launch_template", "AWS::EC2::LaunchTemplate"),
        "route-table" => ("route_table", "AWS::EC2::RouteTable"),
        "internet-gateway" => ("internet_gateway", "AWS::EC2::InternetGateway"),
        "subnet" => ("subnet", "AWS::EC2::Subnet"),
        "vpc" => ("vpc", "AWS::EC2::VPC"),
        _ => ("other", "AWS::EC2::Other"),
    }
}

fn reference(kind: &str, cloud_type: &str, id: String) -> ResourceRef {
    ResourceRef {
        kind: kind.to_string(),
        cloud_type: cloud_type.to_string(),
        id,
        sku: None,
        spot: false,
    }
}

impl Ec2Inventory {
    /// `DescribeTags` for `cloudtest:run-id=<run_id>`, every page: `(resource type, id)`.
    pub async fn tagged_with_run(&self, run_id: &str) -> Result<Vec<(String, String)>, AwsError> {
        let target = format!("resources tagged {RUN_ID_TAG}={run_id}");
        let mut pages = self
            .client()
            .describe_tags()
            .filters(Filter::builder().name("key").values(RUN_ID_TAG).build())
            .filters(Filter::builder().name("value").values(run_id).build())
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("DescribeTags", &target, e))?;
            for t in page.tags() {
                if let (Some(ty), Some(id)) = (t.resource_type(), t.resource_id()) {
                    out.push((ty.as_str().to_string(), id.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Of these instances, the ones that still exist (not `terminated`), with type and spot.
    async fn live_instances(&self, ids: &[String]) -> Result<Vec<ResourceRef>, AwsError> {
        let mut out = Vec::new();
        let mut pages = self
            .client()
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("DescribeInstances", &ids.join(","), e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                if i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Terminated) {
                    continue;
                }
                let Some(id) = i.instance_id() else { continue };
                let mut r = reference("instance", "AWS::EC2::Instance", id.to_string());
                r.sku = i.instance_type().map(|t| t.as_str().to_string());
                r.spot = i.instance_lifecycle()
                    == Some(&aws_sdk_ec2::types::InstanceLifecycleType::Spot);
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Of these NAT gateways, the ones not `deleted`.
    async fn live_nat_gateways(&self, ids: &[String]) -> Result<Vec<ResourceRef>, AwsError> {
        let mut out = Vec::new();
        let mut pages = self
            .client()
            .describe_nat_gateways()
            .set_nat_gateway_ids(Some(ids.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("DescribeNatGateways", &ids.join(","), e))?;
            for g in page.nat_gateways() {
                if g.state() == Some(&NatGatewayState::Deleted) {
                    continue;
                }
                if let Some(id) = g.nat_gateway_id() {
                    out.push(reference(
                        "nat_gateway",
                        "AWS::EC2::NatGateway",
                        id.to_string(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Every EC2 resource of any type with a `cloudtest:run-id` tag, with all its tags:
    /// one `DescribeTags` for the key, then its tags by resource id (200 ids a call);
    /// terminated instances and deleted NAT gateways left out.
    pub async fn all_tagged_resources(&self) -> Result<Vec<TaggedResource>, AwsError> {
        let target = format!("resources with tag {RUN_ID_TAG}");
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut pages = self
            .client()
            .describe_tags()
            .filters(Filter::builder().name("key").values(RUN_ID_TAG).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("DescribeTags", &target, e))?;
            for t in page.tags() {
                if let (Some(ty), Some(id)) = (t.resource_type(), t.resource_id()) {
                    types.insert(id.to_string(), ty.as_str().to_string());
                }
            }
        }
        let ids: Vec<String> = types.keys().cloned().collect();
        let mut tags: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for chunk in ids.chunks(200) {
            let mut pages = self
                .client()
                .describe_tags()
                .filters(
                    Filter::builder()
                        .name("resource-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.fail("DescribeTags", &target, e))?;
                for t in page.tags() {
                    if let (Some(id), Some(k)) = (t.resource_id(), t.key()) {
                        tags.entry(id.to_string()).or_default().insert(
                            k.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        );
                    }
                }
            }
        }
        let by_kind = |wanted: &str| -> Vec<String> {
            types
                .iter()
                .filter(|(_, ty)| ty.as_str() == wanted)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let (instances, nat_gateways) = (by_kind("instance"), by_kind("natgateway"));
        let mut live = Vec::new();
        if !instances.is_empty() {
            live.extend(self.live_instances(&instances).await?);
        }
        if !nat_gateways.is_empty() {
            live.extend(self.live_nat_gateways(&nat_gateways).await?);
        }
        for (id, ty) in &types {
            if ty != "instance" && ty != "natgateway" {
                let (kind, cloud_type) = kind_of_tag_type(ty);
                live.push(reference(kind, cloud_type, id.clone()));
            }
        }
        Ok(live
            .into_iter()
            .map(|resource| TaggedResource {
                tags: tags.remove(&resource.id).unwrap_or_default(),
                resource,
            })
            .collect())
    }

    /// Everything tagged `cloudtest:run-id=<run_id>` that still exists, of any EC2 type:
    /// one `DescribeTags`, plus one state read per kind that stays listed after deletion.
    pub async fn leaks(&self, run_id: &str) -> Result<Vec<ResourceRef>, AwsError> {
        let tagged = self.tagged_with_run(run_id).await?;
        let mut seen = BTreeSet::new();
        let mut instances = Vec::new();
        let mut nat_gateways = Vec::new();
        let mut out = Vec::new();
        for (ty, id) in tagged {
            if !seen.insert(id.clone()) {
                continue;
            }
            match ty.as_str() {
                "instance" => instances.push(id),
                "natgateway" => nat_gateways.push(id),
                _ => {
                    let (kind, cloud_type) = kind_of_tag_type(&ty);
                    out.push(reference(kind, cloud_type, id));
                }
            }
        }
        if !instances.is_empty() {
            out.extend(self.live_instances(&instances).await?);
        }
        if !nat_gateways.is_empty() {
            out.extend(self.live_nat_gateways(&nat_gateways).await?);
        }
        out.sort_by_key(|r| {
            (
                LEAK_KINDS
                    .iter()
                    .position(|k| *k == r.kind)
                    .unwrap_or(LEAK_KINDS.len()),
                r.id.clone(),
            )
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leak_kind_has_a_describe_tags_type() {
        let tag_types = [
            "instance",
            "volume",
            "network-interface",
            "elastic-ip",
            "natgateway",
            "security-group",
            "launch-template",
            "route-table",
            "internet-gateway",
            "subnet",
            "vpc",
        ];
        let kinds: Vec<&str> = tag_types.iter().map(|t| kind_of_tag_type(t).0).collect();
        assert_eq!(kinds, LEAK_KINDS);
        assert_eq!(kind_of_tag_type("dhcp-options").0, "other");
    }
}

#[cfg(test)]
mod coverage {
    use super::kind_of_tag_type;

    const TAG_TYPES: [&str; 11] = [
        "instance",
        "volume",
        "network-interface",
        "elastic-ip",
        "natgateway",
        "security-group",
        "launch-template",
        "route-table",
        "internet-gateway",
        "subnet",
        "vpc",
    ];

    fn repo_file(path: &str) -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Resource types under `Resources:` (entries indented by 2, their `Type:` by 4).
    fn resource_types(template: &str) -> Vec<String> {
        let mut in_resources = false;
        let mut types = Vec::new();
        for line in template.lines() {
            if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
                in_resources = line.trim_end() == "Resources:";
                continue;
            }
            if let Some(ty) = line.strip_prefix("    Type: ").filter(|_| in_resources) {
                let ty = ty.trim().trim_matches('"').to_string();
                if !types.contains(&ty) {
                    types.push(ty);
                }
            }
        }
        types
    }

    #[test]
    fn template_types_are_covered_or_explained() {
        let template = repo_file("templates-cfn/velociraptor.yaml");
        let readme = repo_file("templates-cfn/README.md");
        let types = resource_types(&template);
        assert!(types.len() >= 10, "parsed too few types: {types:?}");
        let covered: Vec<&str> = TAG_TYPES.iter().map(|t| kind_of_tag_type(t).1).collect();
        let missing: Vec<&String> = types
            .iter()
            .filter(|ty| !covered.contains(&ty.as_str()))
            .filter(|ty| {
                !readme.lines().any(|l| {
                    l.starts_with(&format!("| `{ty}` |")) && l.trim_end().ends_with('|')
                        && l.len() > ty.len() + 12
                })
            })
            .collect();
        assert!(
            missing.is_empty(),
            "resource types neither covered by the leak check nor explained in templates-cfn/README.md: {missing:?}"
        );
    }
}
