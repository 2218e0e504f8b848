//! Where CloudFormation's instance handler launches each instance of a planned stack, and
//! whether EC2 offers the instance's type in that zone. A launch into a zone without the
//! type fails the way EC2 answers it (`Unsupported: Your requested instance type (...) is
//! not supported in your requested Availability Zone (...)`), which is what a template
//! with a fixed first zone meets on accounts whose first zone lacks the type.

use super::preflight::{offered, zones};
use super::stacks::handler_message;
use super::template::{params_scalar, PlannedResource};
use crate::scenario::Scenario;

/// The instance type of resource `at`: its own `InstanceType`, else its launch template's.
pub fn instance_type(resources: &[PlannedResource], at: usize) -> Option<String> {
    let r = resources.get(at)?;
    r.prop_str("InstanceType").or_else(|| {
        launch_template_data(resources, r)?
            .get("InstanceType")
            .and_then(params_scalar)
    })
}

/// `LaunchTemplateData` of the stack's launch template that instance `r` names, if any.
pub fn launch_template_data<'a>(
    resources: impl IntoIterator<Item = &'a PlannedResource>,
    r: &PlannedResource,
) -> Option<&'a serde_json::Value> {
    let lt = r.properties.get("LaunchTemplate")?;
    let id = lt
        .get("LaunchTemplateId")
        .or_else(|| lt.get("LaunchTemplateName"))?
        .as_str()?;
    resources
        .into_iter()
        .find(|x| {
            x.ty == "AWS::EC2::LaunchTemplate"
                && (x.physical_id == id || x.prop_str("LaunchTemplateName").as_deref() == Some(id))
        })?
        .properties
        .get("LaunchTemplateData")
}

/// The zone an instance lands in: its subnet's (its own `SubnetId` or its first network
/// interface's); the region's first zone when neither names a zone.
pub fn instance_zone(resources: &[PlannedResource], r: &PlannedResource, region: &str) -> String {
    let subnet = r.prop_str("SubnetId").or_else(|| {
        r.properties
            .get("NetworkInterfaces")?
            .get(0)?
            .get("SubnetId")
            .and_then(params_scalar)
    });
    subnet
        .and_then(|s| {
            resources
                .iter()
                .find(|x| x.ty == "AWS::EC2::Subnet" && x.physical_id == s)?
                .prop_str("AvailabilityZone")
        })
        .unwrap_or_else(|| format!("{region}a"))
}

/// The first instance EC2 would refuse to launch where the template puts it, with the
/// failure reason CloudFormation reports for it; `None` when every launch is offered.
pub fn unsupported_in_zone(
    resources: &[PlannedResource],
    region: &str,
    scenario: Scenario,
) -> Option<(usize, String)> {
    resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.ty == "AWS::EC2::Instance")
        .find_map(|(i, r)| {
            let ty = instance_type(resources, i)?;
            let zone = instance_zone(resources, r, region);
            if offered(scenario, &zone, &ty) {
                return None;
            }
            let elsewhere: Vec<String> = zones(region)
                .into_iter()
                .filter(|z| offered(scenario, z, &ty))
                .collect();
            Some((
                i,
                handler_message(&format!(
                    "Your requested instance type ({ty}) is not supported in your requested Availability Zone ({zone}). Please retry your request by not specifying an Availability Zone or choosing {}.",
                    elsewhere.join(", ")
                )),
            ))
        })
}
