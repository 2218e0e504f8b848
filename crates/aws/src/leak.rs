//! The leak check: one paginated `DescribeTags` finds every EC2 resource of any type that
//! carries the run's tag; then only the kinds whose tags outlive them (instances stay listed
//! `terminated`, NAT gateways `deleted`) have their state read.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use cloudtest_core::{ResourceKind, ResourceRef};

use crate::errors::AwsError;
use crate::inventory::{Ec2Inventory, TaggedResource, RUN_ID_TAG, SERVICE};
/// Older home of the kind mappings now in [`crate::resources`].
pub use crate::resources::{kind_of_id, kind_of_tag_type};

/// The kinds the leak check covers, in report order: the union of what cloudtest checked
/// before and what `templates-cfn/velociraptor.yaml` creates (issue 15 §5).
pub const LEAK_KINDS: [ResourceKind; 11] = [
    ResourceKind::Instance,
    ResourceKind::Volume,
    ResourceKind::NetworkInterface,
    ResourceKind::PublicIp,
    ResourceKind::NatGateway,
    ResourceKind::SecurityGroup,
    ResourceKind::LaunchTemplate,
    ResourceKind::RouteTable,
    ResourceKind::InternetGateway,
    ResourceKind::Subnet,
    ResourceKind::Vpc,
];

impl Ec2Inventory {
    /// The leak kinds among the resources `DescribeTags` lists for `filters` (every page).
    async fn kinds_tagged(
        &self,
        filters: Vec<Filter>,
        target: &str,
    ) -> Result<Vec<ResourceKind>, AwsError> {
        let mut pages = self
            .client()
            .describe_tags()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut kinds = BTreeSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.errors().sdk("DescribeTags", target, SERVICE, e))?;
            for t in page.tags() {
                let by_type = t.resource_type().map(|ty| kind_of_tag_type(ty.as_str()).0);
                let kind = match by_type {
                    Some(k) if k != ResourceKind::Other => Some(k),
                    _ => t.resource_id().and_then(kind_of_id),
                };
                kinds.extend(kind);
            }
        }
        Ok(LEAK_KINDS
            .into_iter()
            .filter(|k| kinds.contains(k))
            .collect())
    }

    /// Everything tagged `cloudtest:run-id=<run_id>` that still exists, of any EC2 type:
    /// one paginated `DescribeTags`, then one describe per kind it named, which drops what
    /// is gone (a `terminated` instance keeps its tags for a while; some emulators keep the
    /// tags of deleted resources). A clean account costs one call.
    pub async fn leaks(&self, run_id: &str) -> Result<Vec<ResourceRef>, AwsError> {
        let target = format!("resources tagged {RUN_ID_TAG}={run_id}");
        let kinds = self
            .kinds_tagged(
                vec![
                    Filter::builder().name("key").values(RUN_ID_TAG).build(),
                    Filter::builder().name("value").values(run_id).build(),
                ],
                &target,
            )
            .await?;
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let filter = Filter::builder()
            .name(format!("tag:{RUN_ID_TAG}"))
            .values(run_id)
            .build();
        Ok(self
            .tagged_of_kinds(filter, &target, &kinds)
            .await?
            .into_iter()
            .map(|t| t.resource)
            .collect())
    }

    /// Every EC2 resource of any kind with a `cloudtest:run-id` tag, with all its tags (for
    /// `sweep`): `DescribeTags` for the key, then one describe per kind it named.
    pub async fn all_tagged_resources(&self) -> Result<Vec<TaggedResource>, AwsError> {
        let target = format!("resources with tag {RUN_ID_TAG}");
        let kinds = self
            .kinds_tagged(
                vec![Filter::builder().name("key").values(RUN_ID_TAG).build()],
                &target,
            )
            .await?;
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let filter = Filter::builder().name("tag-key").values(RUN_ID_TAG).build();
        self.tagged_of_kinds(filter, &target, &kinds).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leak_kind_has_a_describe_tags_type() {
        let kinds: Vec<ResourceKind> = super::coverage::TAG_TYPES
            .iter()
            .map(|t| kind_of_tag_type(t).0)
            .collect();
        assert_eq!(kinds, LEAK_KINDS);
        assert_eq!(kind_of_tag_type("dhcp-options").0, ResourceKind::Other);
    }
}

#[cfg(test)]
mod coverage {
    use super::kind_of_tag_type;

    /// DescribeTags' resource types of the kinds the leak check covers, in `LEAK_KINDS` order.
    pub(super) const TAG_TYPES: [&str; 11] = [
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
                    l.starts_with(&format!("| `{ty}` |"))
                        && l.trim_end().ends_with('|')
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
