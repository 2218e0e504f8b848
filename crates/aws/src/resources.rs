//! EC2 and CloudFormation resource types mapped to the normalised kinds the report prices,
//! shared by deployment outputs, the leak check and sweep.

use cloudtest_core::ResourceKind;

/// The pricing kind of a CloudFormation resource type.
pub fn kind_of(resource_type: &str) -> ResourceKind {
    match resource_type {
        "AWS::EC2::Instance" => ResourceKind::Instance,
        "AWS::EC2::Volume" => ResourceKind::Volume,
        "AWS::EC2::EIP" => ResourceKind::PublicIp,
        "AWS::EC2::NetworkInterface" => ResourceKind::NetworkInterface,
        "AWS::EC2::SecurityGroup" => ResourceKind::SecurityGroup,
        "AWS::EC2::VPC" => ResourceKind::Vpc,
        "AWS::EC2::NatGateway" => ResourceKind::NatGateway,
        "AWS::CloudFormation::Stack" => ResourceKind::Stack,
        _ => ResourceKind::Other,
    }
}

/// `DescribeTags`' `resourceType` → (cloudtest kind, CloudFormation type). Types outside the
/// list are still reported, as kind `other`.
pub fn kind_of_tag_type(resource_type: &str) -> (ResourceKind, &'static str) {
    match resource_type {
        "instance" => (ResourceKind::Instance, "AWS::EC2::Instance"),
        "volume" => (ResourceKind::Volume, "AWS::EC2::Volume"),
        "network-interface" => (ResourceKind::NetworkInterface, "AWS::EC2::NetworkInterface"),
        "elastic-ip" => (ResourceKind::PublicIp, "AWS::EC2::EIP"),
        "natgateway" => (ResourceKind::NatGateway, "AWS::EC2::NatGateway"),
        "security-group" => (ResourceKind::SecurityGroup, "AWS::EC2::SecurityGroup"),
        "launch-template" => (ResourceKind::LaunchTemplate, "AWS::EC2::LaunchTemplate"),
        "route-table" => (ResourceKind::RouteTable, "AWS::EC2::RouteTable"),
        "internet-gateway" => (ResourceKind::InternetGateway, "AWS::EC2::InternetGateway"),
        "subnet" => (ResourceKind::Subnet, "AWS::EC2::Subnet"),
        "vpc" => (ResourceKind::Vpc, "AWS::EC2::VPC"),
        _ => (ResourceKind::Other, "AWS::EC2::Other"),
    }
}

/// The kind of an EC2 id by its prefix, for `DescribeTags` answers whose `resourceType` is
/// not one of the above (moto answers some that way).
pub fn kind_of_id(id: &str) -> Option<ResourceKind> {
    let prefix = id.split('-').next()?;
    Some(match prefix {
        "i" => ResourceKind::Instance,
        "vol" => ResourceKind::Volume,
        "eni" => ResourceKind::NetworkInterface,
        "eipalloc" => ResourceKind::PublicIp,
        "nat" => ResourceKind::NatGateway,
        "sg" => ResourceKind::SecurityGroup,
        "lt" => ResourceKind::LaunchTemplate,
        "rtb" => ResourceKind::RouteTable,
        "igw" => ResourceKind::InternetGateway,
        "subnet" => ResourceKind::Subnet,
        "vpc" => ResourceKind::Vpc,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_kinds_map_for_pricing() {
        assert_eq!(kind_of("AWS::EC2::Instance"), ResourceKind::Instance);
        assert_eq!(kind_of("AWS::EC2::EIP"), ResourceKind::PublicIp);
        assert_eq!(
            kind_of("AWS::EC2::SubnetRouteTableAssociation"),
            ResourceKind::Other
        );
    }

    #[test]
    fn ids_name_their_kind_when_the_type_does_not() {
        assert_eq!(kind_of_id("eipalloc-0abc"), Some(ResourceKind::PublicIp));
        assert_eq!(kind_of_id("i-0abc"), Some(ResourceKind::Instance));
        assert_eq!(kind_of_id("rtb-1"), Some(ResourceKind::RouteTable));
        assert_eq!(kind_of_id("127.0.0.1"), None);
        assert_eq!(kind_of_id("dopt-1"), None);
    }
}
