//! The leak check: everything in the subscription that still carries this run's tag,
//! resource groups included. By tag, not by a list of names, so any template is covered.

use cloudtest_core::ResourceRef;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_quotes_values() {
        assert_eq!(
            tag_filter(RUN_ID_TAG, "r'1"),
            "tagName eq 'cloudtest:run-id' and tagValue eq 'r''1'"
        );
    }
}
