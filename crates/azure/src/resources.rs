//! ARM resource types mapped to the normalised kinds the report prices, shared by
//! deployment outputs, teardown and the leak check.

use cloudtest_core::{ResourceKind, ResourceRef};

/// The normalised kind of an ARM type (`Microsoft.Compute/virtualMachines` → `instance`).
pub fn kind_for_type(arm_type: &str) -> ResourceKind {
    match arm_type.to_ascii_lowercase().as_str() {
        "microsoft.compute/virtualmachines" => ResourceKind::Instance,
        "microsoft.compute/disks" => ResourceKind::Volume,
        "microsoft.network/publicipaddresses" => ResourceKind::PublicIp,
        "microsoft.network/networkinterfaces" => ResourceKind::NetworkInterface,
        "microsoft.network/networksecuritygroups" => ResourceKind::SecurityGroup,
        "microsoft.network/virtualnetworks" => ResourceKind::Vnet,
        "microsoft.resources/resourcegroups" => ResourceKind::ResourceGroup,
        _ => ResourceKind::Other,
    }
}

/// The type named in an ARM resource id: `/subscriptions/s/resourceGroups/g/providers/
/// Microsoft.Compute/virtualMachines/vm` → `Microsoft.Compute/virtualMachines`; a bare
/// group id → `Microsoft.Resources/resourceGroups`.
pub fn type_from_id(id: &str) -> String {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    if let Some(p) = parts
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    {
        let rest = &parts[p + 1..];
        if let Some(ns) = rest.first() {
            // namespace, then alternating type/name segments: keep the types.
            let types: Vec<&str> = rest[1..].iter().step_by(2).copied().collect();
            if !types.is_empty() {
                return format!("{ns}/{}", types.join("/"));
            }
        }
    }
    if parts.len() == 4 && parts[2].eq_ignore_ascii_case("resourcegroups") {
        return "Microsoft.Resources/resourceGroups".into();
    }
    String::new()
}

/// A [`ResourceRef`] for an ARM resource.
pub fn resource_ref(
    id: &str,
    arm_type: Option<&str>,
    sku: Option<String>,
    spot: bool,
) -> ResourceRef {
    let cloud_type = arm_type
        .map(str::to_string)
        .unwrap_or_else(|| type_from_id(id));
    ResourceRef {
        kind: kind_for_type(&cloud_type),
        cloud_type,
        id: id.to_string(),
        sku,
        spot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_to_kinds() {
        assert_eq!(
            kind_for_type("Microsoft.Compute/virtualMachines"),
            ResourceKind::Instance
        );
        assert_eq!(
            kind_for_type("microsoft.network/publicIPAddresses"),
            ResourceKind::PublicIp
        );
        assert_eq!(
            kind_for_type("Microsoft.Network/virtualNetworks"),
            ResourceKind::Vnet
        );
        assert_eq!(
            kind_for_type("Microsoft.Storage/storageAccounts"),
            ResourceKind::Other
        );
    }

    #[test]
    fn ids_name_their_type() {
        assert_eq!(
            type_from_id("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/extensions/boot"),
            "Microsoft.Compute/virtualMachines/extensions"
        );
        assert_eq!(
            type_from_id("/subscriptions/s/resourceGroups/g"),
            "Microsoft.Resources/resourceGroups"
        );
        assert_eq!(type_from_id("nonsense"), "");
    }
}
