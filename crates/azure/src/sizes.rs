//! The VM sizes a deployment will use, read from the template's `*VmSize` parameters (their
//! defaults, or the config's overrides), and what Azure allows with them.

use std::collections::BTreeMap;

use cloudtest_core::{ResourceKind, ResourceRef};
use serde_json::Value;

use crate::resources::resource_ref;

/// The OS disk when the template does not say: Azure Linux images' 30 GB on Standard SSD.
const DEFAULT_OS_DISK: &str = "StandardSSD_LRS:30";

/// A Spot-capable general-purpose size to suggest instead of a B-series one.
pub const SPOT_CAPABLE_SIZE: &str = "Standard_D2as_v5";

/// `(parameter, size)` for each template parameter whose name ends in `VmSize`, with the
/// config's override (matched case-insensitively) winning over the template's default.
pub fn vm_sizes(template: &Value, overrides: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let Some(Value::Object(declared)) = template.get("parameters") else {
        return Vec::new();
    };
    declared
        .iter()
        .filter(|(name, _)| name.to_ascii_lowercase().ends_with("vmsize"))
        .filter_map(|(name, decl)| {
            let overridden = overrides
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone());
            let size = overridden.or_else(|| {
                decl.get("defaultValue")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })?;
            Some((name.clone(), size))
        })
        .collect()
}

/// B-series (burstable) sizes cannot run as Spot VMs (Azure's Spot documentation; see
/// templates-arm/README.md).
pub fn is_burstable(size: &str) -> bool {
    size.get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("Standard_B"))
}

/// The usage error for `use_spot` with sizes that cannot run as Spot, naming them and a
/// Spot-capable alternative; `None` when every size can.
pub fn spot_refusal(template: &Value, overrides: &BTreeMap<String, String>) -> Option<String> {
    let burstable: Vec<String> = vm_sizes(template, overrides)
        .into_iter()
        .filter(|(_, size)| is_burstable(size))
        .map(|(param, size)| format!("{param}={size}"))
        .collect();
    (!burstable.is_empty()).then(|| {
        format!(
            "[azure] use_spot = true, but B-series sizes cannot run as Azure Spot VMs: {}. Set a Spot-capable size in [azure.parameters] (e.g. serverVmSize = \"{SPOT_CAPABLE_SIZE}\", clientVmSize = \"{SPOT_CAPABLE_SIZE}\") or turn use_spot off",
            burstable.join(", ")
        )
    })
}

/// `StorageAccountType:GB` of the first VM in the template with literal OS-disk values.
fn os_disk_sku(template: &Value) -> String {
    template
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.get("type").and_then(Value::as_str) == Some("Microsoft.Compute/virtualMachines")
        })
        .find_map(|r| {
            let disk = r.pointer("/properties/storageProfile/osDisk")?;
            let kind = disk.pointer("/managedDisk/storageAccountType")?.as_str()?;
            let gb = disk.get("diskSizeGB")?.as_u64()?;
            (!kind.starts_with('[')).then(|| format!("{kind}:{gb}"))
        })
        .unwrap_or_else(|| DEFAULT_OS_DISK.to_string())
}

/// The size of VM `name`: the `<role>VmSize` parameter for a VM named `...-<role>`, or the
/// only size the template has.
fn size_of_vm(name: &str, sizes: &[(String, String)]) -> Option<String> {
    let role = name.rsplit('-').next().unwrap_or(name).to_ascii_lowercase();
    sizes
        .iter()
        .find(|(param, _)| param.to_ascii_lowercase() == format!("{role}vmsize"))
        .or_else(|| (sizes.len() == 1).then(|| &sizes[0]))
        .map(|(_, size)| size.clone())
}

/// Prices a deployment's `outputResources` ids: VM sizes, one OS disk per VM, public IP SKU.
pub fn priced(
    ids: &[&str],
    spot: bool,
    template: &Value,
    overrides: &BTreeMap<String, String>,
) -> Vec<ResourceRef> {
    let sizes = vm_sizes(template, overrides);
    let disk = os_disk_sku(template);
    let mut out = Vec::new();
    for id in ids {
        let r = resource_ref(id, None, None, false);
        match r.kind {
            ResourceKind::Instance => {
                let name = id.rsplit('/').next().unwrap_or(id);
                out.push(ResourceRef {
                    sku: size_of_vm(name, &sizes),
                    spot,
                    ..r
                });
                out.push(ResourceRef {
                    kind: ResourceKind::Volume,
                    cloud_type: "Microsoft.Compute/disks".into(),
                    id: format!("{id}/osDisk"),
                    sku: Some(disk.clone()),
                    spot: false,
                });
            }
            ResourceKind::PublicIp => out.push(ResourceRef {
                sku: Some("Standard".into()),
                ..r
            }),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({"parameters": {
            "serverVmSize": {"type": "string", "defaultValue": "Standard_B2s"},
            "clientVmSize": {"type": "string", "defaultValue": "Standard_B1s"},
            "runId": {"type": "string"}
        }})
    }

    #[test]
    fn a_deployment_shaped_like_azure_s_is_priced_per_vm_disk_and_ip() {
        // outputResources as ARM lists them (ids only; no OS disks, no sizes).
        let sub = "/subscriptions/s/resourceGroups/g/providers";
        let ids = [
            format!("{sub}/Microsoft.Compute/virtualMachines/ct-abc-server"),
            format!("{sub}/Microsoft.Compute/virtualMachines/ct-abc-client"),
            format!("{sub}/Microsoft.Network/publicIPAddresses/ct-abc-server-ip"),
            format!("{sub}/Microsoft.Network/publicIPAddresses/ct-abc-client-ip"),
            format!("{sub}/Microsoft.Network/virtualNetworks/ct-abc-vnet"),
        ];
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut t = template();
        t["resources"] = json!([{
            "type": "Microsoft.Compute/virtualMachines",
            "properties": {"storageProfile": {"osDisk": {"diskSizeGB": 30, "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}}}
        }]);
        let lines: Vec<(ResourceKind, Option<String>, bool)> =
            priced(&ids, false, &t, &BTreeMap::new())
                .into_iter()
                .map(|r| (r.kind, r.sku, r.spot))
                .collect();
        let line = |k: ResourceKind, s: &str| (k, Some(s.to_string()), false);
        assert_eq!(
            lines,
            vec![
                line(ResourceKind::Instance, "Standard_B2s"),
                line(ResourceKind::Volume, "StandardSSD_LRS:30"),
                line(ResourceKind::Instance, "Standard_B1s"),
                line(ResourceKind::Volume, "StandardSSD_LRS:30"),
                line(ResourceKind::PublicIp, "Standard"),
                line(ResourceKind::PublicIp, "Standard"),
                (ResourceKind::Vnet, None, false),
            ]
        );
        let spot = priced(&ids[..1], true, &t, &BTreeMap::new());
        assert!(spot[0].spot && !spot[1].spot, "{spot:?}");
    }

    #[test]
    fn spot_with_the_default_b_series_sizes_is_refused_naming_them() {
        let why = spot_refusal(&template(), &BTreeMap::new()).expect("refused");
        for part in [
            "serverVmSize=Standard_B2s",
            "clientVmSize=Standard_B1s",
            SPOT_CAPABLE_SIZE,
        ] {
            assert!(why.contains(part), "{why}");
        }
    }

    #[test]
    fn overrides_win_and_spot_capable_sizes_pass() {
        let mut o = BTreeMap::new();
        o.insert("SERVERVMSIZE".to_string(), "Standard_D2as_v5".to_string());
        let why = spot_refusal(&template(), &o).expect("client still B-series");
        assert!(!why.contains("serverVmSize=Standard_"), "{why}");
        o.insert("clientVmSize".to_string(), "Standard_D2as_v5".to_string());
        assert_eq!(spot_refusal(&template(), &o), None);
        assert_eq!(
            vm_sizes(&template(), &o),
            vec![
                ("clientVmSize".to_string(), "Standard_D2as_v5".to_string()),
                ("serverVmSize".to_string(), "Standard_D2as_v5".to_string())
            ]
        );
    }
}
