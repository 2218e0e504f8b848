//! Which availability zone the stack's subnets go into. Not every zone offers every
//! instance type (t3 sizes are missing from us-east-1e, for one), and a template that takes
//! the region's first zone fails its instance launch there with `Unsupported`. The provider
//! passes the first zone, by name, that offers every type the template launches.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, LocationType};

use crate::errors::AwsError;
use crate::inventory::{Ec2Inventory, SERVICE};

/// The template parameter carrying the zone (empty: the region's first zone).
pub const ZONE_PARAMETER: &str = "AvailabilityZone";

/// The first zone, by name, offering every one of `types`; `None` when no zone offers
/// them all. `offers` maps each zone to the types it offers.
pub fn first_zone_offering(
    offers: &BTreeMap<String, BTreeSet<String>>,
    types: &[String],
) -> Option<String> {
    offers
        .iter()
        .find(|(_, offered)| types.iter().all(|t| offered.contains(t)))
        .map(|(zone, _)| zone.clone())
}

impl Ec2Inventory {
    /// `DescribeInstanceTypeOfferings` by zone for `types` (paginated): each zone of the
    /// region with the types among `types` it offers.
    pub async fn zone_offerings(
        &self,
        types: &[String],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, AwsError> {
        let mut filter = Filter::builder().name("instance-type");
        for t in types {
            filter = filter.values(t);
        }
        let mut pages = self
            .client()
            .describe_instance_type_offerings()
            .location_type(LocationType::AvailabilityZone)
            .filters(filter.build())
            .into_paginator()
            .send();
        let mut offers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.errors().sdk(
                    "DescribeInstanceTypeOfferings",
                    "instance types",
                    SERVICE,
                    e,
                )
            })?;
            for o in page.instance_type_offerings() {
                if let (Some(zone), Some(ty)) = (o.location(), o.instance_type()) {
                    offers
                        .entry(zone.to_string())
                        .or_default()
                        .insert(ty.as_str().to_string());
                }
            }
        }
        Ok(offers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_zone_offering_every_type_wins() {
        let types = vec!["t3.medium".to_string(), "t3.micro".to_string()];
        let offers: BTreeMap<String, BTreeSet<String>> = [
            ("us-east-1a", vec!["t3.micro"]),
            ("us-east-1c", vec!["t3.micro", "t3.medium"]),
            ("us-east-1b", vec!["t3.medium", "t3.micro"]),
        ]
        .into_iter()
        .map(|(z, ts)| (z.to_string(), ts.into_iter().map(str::to_string).collect()))
        .collect();
        assert_eq!(
            first_zone_offering(&offers, &types).as_deref(),
            Some("us-east-1b")
        );
        let none: BTreeMap<String, BTreeSet<String>> = [(
            "us-east-1a".to_string(),
            BTreeSet::from(["t3.micro".to_string()]),
        )]
        .into();
        assert_eq!(first_zone_offering(&none, &types), None);
    }
}
