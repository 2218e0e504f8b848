//! `cloudtest sweep` for AWS: finds stacks and stray EC2 resources that carry a
//! `cloudtest:run-id` tag and whose `cloudtest:expires-at` has passed (or that are older than
//! a limit, or that belong to one run), and deletes them one by one. Untagged resources are
//! never touched.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use cloudtest_core::tags::SweepScope;
use cloudtest_core::{ResourceKind, ResourceRef};

use crate::calls::CallCounter;
use crate::connection::credential_source;
use crate::deploy::CfnStacks;
use crate::errors::{AwsError, ErrorContext};
use crate::inventory::{Ec2Inventory, RUN_ID_TAG};

/// The rule both clouds' sweeps apply (tagged, and expired or older than the limit).
pub use cloudtest_core::tags::sweep_due as due;

/// The tag CloudFormation puts on every resource a stack created.
const STACK_NAME_TAG: &str = "aws:cloudformation:stack-name";

/// What a sweep would delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepTarget {
    Stack {
        name: String,
        stack_id: String,
    },
    /// An EC2 resource no existing stack owns.
    Resource(ResourceRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepItem {
    pub region: String,
    pub run_id: String,
    pub target: SweepTarget,
    /// Why it is due (`expired at ...`, `created ... , older than 6h`).
    pub why: String,
}

/// Deletion order for stray resources, dependants before what they depend on: instances
/// (waited for), Elastic IPs, NAT gateways, left-over interfaces and volumes, launch
/// templates, security groups, route tables (after their associations), internet gateways
/// (after detaching), subnets, and the VPC last.
fn order(kind: &ResourceKind) -> u8 {
    match kind {
        ResourceKind::Instance => 0,
        ResourceKind::PublicIp => 1,
        ResourceKind::NatGateway => 2,
        ResourceKind::NetworkInterface | ResourceKind::Volume => 3,
        ResourceKind::LaunchTemplate => 4,
        ResourceKind::SecurityGroup => 5,
        ResourceKind::RouteTable => 6,
        ResourceKind::InternetGateway => 7,
        ResourceKind::Subnet => 8,
        ResourceKind::Vpc => 9,
        _ => 10,
    }
}

fn context(sdk: &SdkConfig) -> ErrorContext {
    ErrorContext {
        region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        endpoint: sdk.endpoint_url().map(str::to_string),
        credential_source: credential_source(false),
    }
}

/// Everything in the SDK config's region that is expired (or older than `older_than`):
/// stacks first, then stray resources in a deletable order.
pub async fn find_expired(
    sdk: &SdkConfig,
    now: DateTime<Utc>,
    older_than: Option<Duration>,
) -> Result<Vec<SweepItem>, AwsError> {
    find_due(sdk, now, &SweepScope::Expired { older_than }).await
}

/// Everything in the SDK config's region that `scope` makes due: stacks first, then stray
/// resources in a deletable order.
pub async fn find_due(
    sdk: &SdkConfig,
    now: DateTime<Utc>,
    scope: &SweepScope,
) -> Result<Vec<SweepItem>, AwsError> {
    let errors = context(sdk);
    let counter = CallCounter::new();
    let stacks = CfnStacks::new(sdk, &counter, errors.clone());
    let inventory = Ec2Inventory::new(sdk, &counter, errors.clone());
    let mut items = Vec::new();

    let mut live_stacks = BTreeSet::new();
    for s in stacks.list_all().await? {
        if s.status == "DELETE_COMPLETE" {
            continue;
        }
        live_stacks.insert(s.name.clone());
        let created = s
            .creation_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        if let Some(why) = scope.due(&s.tags, created, now) {
            items.push(SweepItem {
                region: errors.region.clone(),
                run_id: s.tags.get(RUN_ID_TAG).cloned().unwrap_or_default(),
                target: SweepTarget::Stack {
                    name: s.name,
                    stack_id: s.stack_id,
                },
                why,
            });
        }
    }

    let mut strays: Vec<SweepItem> = inventory
        .all_cloudtest()
        .await?
        .into_iter()
        // A live stack deletes its own resources.
        .filter(|t| {
            !t.tags
                .get(STACK_NAME_TAG)
                .is_some_and(|n| live_stacks.contains(n))
        })
        .filter_map(|t| {
            let why = scope.due(&t.tags, None, now)?;
            Some(SweepItem {
                region: errors.region.clone(),
                run_id: t.tags.get(RUN_ID_TAG).cloned().unwrap_or_default(),
                target: SweepTarget::Resource(t.resource),
                why,
            })
        })
        .collect();
    strays.sort_by_key(|i| match &i.target {
        SweepTarget::Resource(r) => order(&r.kind),
        SweepTarget::Stack { .. } => 0,
    });
    items.extend(strays);
    Ok(items)
}

/// Deletes one item: DeleteStack for a stack (deletion continues in AWS), the matching
/// EC2 delete/terminate/release call for a stray resource.
pub async fn delete(sdk: &SdkConfig, item: &SweepItem) -> Result<(), AwsError> {
    delete_as(sdk, item, None).await
}

/// [`delete`], with the stack's DeleteStack carrying `role_arn` as its CloudFormation
/// service role (the role the runs create their stacks with; without it a caller whose own
/// policy holds no resource permissions cannot delete the stack's resources).
pub async fn delete_as(
    sdk: &SdkConfig,
    item: &SweepItem,
    role_arn: Option<&str>,
) -> Result<(), AwsError> {
    let errors = context(sdk);
    let counter = CallCounter::new();
    match &item.target {
        SweepTarget::Stack { name, .. } => {
            let token = format!(
                "cloudtest-sweep-{}",
                crate::provider::stack_name(&item.run_id)
            );
            let mut token: String = token.chars().take(128).collect();
            token.retain(|c| c.is_ascii_alphanumeric() || c == '-');
            CfnStacks::new(sdk, &counter, errors)
                .with_role_arn(role_arn.map(str::to_string))
                .delete(name, &token)
                .await
        }
        SweepTarget::Resource(r) => Ec2Inventory::new(sdk, &counter, errors).delete(r).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strays_are_deleted_dependants_first_vpcs_last() {
        let mut kinds = [
            ResourceKind::Vpc,
            ResourceKind::Subnet,
            ResourceKind::InternetGateway,
            ResourceKind::RouteTable,
            ResourceKind::SecurityGroup,
            ResourceKind::LaunchTemplate,
            ResourceKind::Volume,
            ResourceKind::NatGateway,
            ResourceKind::PublicIp,
            ResourceKind::Instance,
        ];
        kinds.sort_by_key(order);
        assert_eq!(
            kinds,
            [
                ResourceKind::Instance,
                ResourceKind::PublicIp,
                ResourceKind::NatGateway,
                ResourceKind::Volume,
                ResourceKind::LaunchTemplate,
                ResourceKind::SecurityGroup,
                ResourceKind::RouteTable,
                ResourceKind::InternetGateway,
                ResourceKind::Subnet,
                ResourceKind::Vpc
            ]
        );
    }
}
