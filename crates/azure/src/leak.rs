//! The leak check: everything in the subscription that still carries this run's tag,
//! resource groups included. By tag, not by a list of names, so any template is covered.

use cloudtest_core::{ResourceKind, ResourceRef};
use futures::StreamExt;

use crate::connection::ArmClients;
use crate::errors::AzureError;
use crate::resources::resource_ref;

pub use cloudtest_core::tags::{EXPIRES_AT_TAG, REQUIREMENT_TAG, RUN_ID_TAG};

/// What the report says was checked.
pub const CHECKED: [&str; 2] = [
    "resource groups tagged cloudtest:run-id",
    "resources tagged cloudtest:run-id (all types)",
];

/// ARM's OData filter for one tag value (single quotes doubled, as OData escapes them).
pub fn tag_filter(tag: &str, value: &str) -> String {
    format!(
        "tagName eq '{}' and tagValue eq '{}'",
        tag.replace('\'', "''"),
        value.replace('\'', "''")
    )
}

/// Resources and resource groups tagged `cloudtest:run-id=<run_id>`.
pub(crate) async fn find_tagged(
    clients: &ArmClients,
    run_id: &str,
) -> Result<Vec<ResourceRef>, AzureError> {
    let filter = tag_filter(RUN_ID_TAG, run_id);
    let sub = clients.conn.subscription_id.clone();
    let mut out = Vec::new();

    let mut groups = clients
        .mgmt
        .resource_groups_client()
        .list(sub.clone())
        .filter(filter.clone())
        .into_stream();
    while let Some(page) = groups.next().await {
        let page = page.map_err(|e| clients.sdk_error("list tagged resource groups", e))?;
        for g in page.value {
            if let Some(id) = g.id.as_deref() {
                out.push(resource_ref(
                    id,
                    Some("Microsoft.Resources/resourceGroups"),
                    None,
                    false,
                ));
            }
        }
    }

    let mut resources = clients
        .mgmt
        .resources_client()
        .list(sub)
        .filter(filter)
        .into_stream();
    while let Some(page) = resources.next().await {
        let page = page.map_err(|e| clients.sdk_error("list tagged resources", e))?;
        for r in page.value {
            let g = &r.generic_resource;
            if let Some(id) = g.resource.id.as_deref() {
                let sku = g.sku.as_ref().and_then(|s| s.name.clone());
                out.push(resource_ref(id, g.resource.type_.as_deref(), sku, false));
            }
        }
    }
    Ok(out)
}

/// Replaces everything inside resource group `group` by the group's own entry, its
/// `sku` set to `Deleting` so the report says why it is there.
pub(crate) fn collapse_deleting_group(
    remaining: Vec<ResourceRef>,
    group: &str,
) -> Vec<ResourceRef> {
    let marker = format!("/resourcegroups/{}", group.to_ascii_lowercase());
    let inside = |id: &str| {
        let id = id.to_ascii_lowercase();
        id.ends_with(&marker) || id.contains(&format!("{marker}/"))
    };
    let mut group_ref = None;
    let mut out = Vec::new();
    for r in remaining {
        if !inside(&r.id) {
            out.push(r);
        } else if r.kind == ResourceKind::ResourceGroup {
            group_ref = Some(ResourceRef {
                sku: Some("Deleting".into()),
                ..r
            });
        } else if group_ref.is_none() {
            // Keep one handle on the group even if its own entry was not listed.
            let id = r.id.to_ascii_lowercase();
            let end = id.find(&marker).map_or(id.len(), |i| i + marker.len());
            group_ref = Some(ResourceRef {
                sku: Some("Deleting".into()),
                ..resource_ref(
                    &r.id[..end],
                    Some("Microsoft.Resources/resourceGroups"),
                    None,
                    false,
                )
            });
        }
    }
    out.extend(group_ref);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleting_group_is_one_item_and_outside_resources_stay() {
        let sub = "/subscriptions/s/resourceGroups/";
        let vm = format!("{sub}cloudtest-r1/providers/Microsoft.Compute/virtualMachines/vm");
        let other = format!("{sub}cloudtest-r10/providers/Microsoft.Compute/disks/d");
        let group = format!("{sub}cloudtest-r1");
        let refs = vec![
            resource_ref(&vm, None, None, false),
            resource_ref(&other, None, None, false),
            resource_ref(
                &group,
                Some("Microsoft.Resources/resourceGroups"),
                None,
                false,
            ),
        ];
        let out = collapse_deleting_group(refs.clone(), "cloudtest-r1");
        let ids: Vec<&str> = out.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [other.as_str(), group.as_str()]);
        assert_eq!(out[1].sku.as_deref(), Some("Deleting"));
        // Without the group's own entry, one is made from a resource inside it.
        let out = collapse_deleting_group(refs[..2].to_vec(), "cloudtest-r1");
        assert_eq!(out.len(), 2);
        assert!(out[1].id.eq_ignore_ascii_case(&group), "{out:?}");
    }

    #[test]
    fn filter_quotes_values() {
        assert_eq!(
            tag_filter(RUN_ID_TAG, "r'1"),
            "tagName eq 'cloudtest:run-id' and tagValue eq 'r''1'"
        );
    }
}
