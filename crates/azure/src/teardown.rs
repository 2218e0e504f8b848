//! Teardown of the run's resource group: deleted last, and gone only when ARM answers the
//! existence check (HEAD) with 404.

use cloudtest_core::{poll_until, Backoff, PhaseContext, PollStep, ResourceRef};
use futures::StreamExt;

use crate::connection::ArmClients;
use crate::errors::AzureError;
use crate::lro::{error_from_body, Started};
use crate::resources::resource_ref;
use cloudtest_core::Strikes;

/// The group name for a run: chosen before anything is created, so teardown knows it.
pub fn group_name(run_id: &str) -> String {
    format!("cloudtest-{run_id}")
}

/// HEAD on the group: `true` for 204, `false` for 404.
pub(crate) async fn exists(clients: &ArmClients, name: &str) -> Result<bool, AzureError> {
    match clients
        .mgmt
        .resource_groups_client()
        .check_existence(name, clients.conn.subscription_id.clone())
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => {
            let e = clients.sdk_error("check resource group", e);
            if e.is_not_found() {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Resources in the group now (for the teardown facts).
pub(crate) async fn resources(
    clients: &ArmClients,
    name: &str,
) -> Result<Vec<ResourceRef>, AzureError> {
    let mut pages = clients
        .mgmt
        .resources_client()
        .list_by_resource_group(name, clients.conn.subscription_id.clone())
        .into_stream();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| clients.sdk_error("list resource group resources", e))?;
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

/// The resource types ARM may force-delete with the group: VMs are stopped without a
/// graceful shutdown, which shortens the deletion (ForceDeleteVMsInResourceGroup example,
/// Microsoft.Resources 2021-04-01).
pub const FORCE_DELETION_TYPES: &str = "Microsoft.Compute/virtualMachines";

/// The api-version of the calls made here (the generated client's).
const API_VERSION: &str = "2021-04-01";

/// The group's URL on the configured endpoint, with the path segments escaped.
pub(crate) fn group_url(clients: &ArmClients, name: &str) -> Result<url::Url, AzureError> {
    let mut url = clients.conn.base_url()?;
    let endpoint = url.as_str().to_string();
    url.path_segments_mut()
        .map_err(|()| AzureError::Endpoint {
            endpoint,
            why: "it cannot carry a path".into(),
        })?
        .pop_if_empty()
        .extend([
            "subscriptions",
            clients.conn.subscription_id.as_str(),
            "resourcegroups",
            name,
        ]);
    Ok(url)
}

/// Sends the DELETE with `forceDeletionTypes`; `None` when the group was already gone (404).
/// Made here because `azure_mgmt_resources` 0.21's delete has no `forceDeletionTypes`.
pub(crate) async fn begin_delete(
    clients: &ArmClients,
    name: &str,
) -> Result<Option<Started>, AzureError> {
    const OPERATION: &str = "delete resource group";
    let mut url = group_url(clients, name)?;
    url.query_pairs_mut()
        .append_pair("forceDeletionTypes", FORCE_DELETION_TYPES)
        .append_pair("api-version", API_VERSION);
    let response = clients
        .call(reqwest::Method::DELETE, url, OPERATION)
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if (200..300).contains(&status) {
        return Ok(Some(Started::from_reqwest(
            &clients.conn.base_url()?,
            &headers,
        )?));
    }
    let body = response.bytes().await.unwrap_or_default();
    let err = error_from_body(&body);
    let e = AzureError::from_status(
        OPERATION,
        &clients.conn.credential_source,
        &clients.conn.subscription_id,
        status,
        err.code.unwrap_or_else(|| "(no code)".into()),
        err.message.unwrap_or_else(|| "(no message)".into()),
    );
    if e.is_not_found() {
        Ok(None)
    } else {
        Err(e)
    }
}

/// The group's `provisioningState` (`Succeeded`, `Deleting`), `None` when it is gone.
pub(crate) async fn state(clients: &ArmClients, name: &str) -> Result<Option<String>, AzureError> {
    match clients
        .mgmt
        .resource_groups_client()
        .get(name, clients.conn.subscription_id.clone())
        .await
    {
        Ok(group) => Ok(Some(
            group
                .properties
                .and_then(|p| p.provisioning_state)
                .unwrap_or_default(),
        )),
        Err(e) => {
            let e = clients.sdk_error("get resource group", e);
            if e.is_not_found() {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Polls HEAD until 404, bounded by the phase deadline. A group that still exists without
/// `provisioningState: Deleting` never received its DELETE (the answer was lost or could not
/// be read), so the DELETE is sent again: it is idempotent.
pub(crate) async fn wait_gone(
    clients: &ArmClients,
    cx: &PhaseContext,
    name: &str,
    backoff: Backoff,
) -> Result<(), AzureError> {
    let strikes = Strikes::default();
    let result = poll_until(cx.deadline(), backoff, |_| {
        let strikes = &strikes;
        async move {
            match exists(clients, name).await {
                Ok(false) => PollStep::Done(()),
                Ok(true) => {
                    strikes.clear();
                    delete_again_unless_deleting(clients, cx, name).await
                }
                Err(e) => strikes.step(e, |e| e),
            }
        }
    })
    .await;
    result.map(|_| ()).map_err(|e| {
        e.into_error(|o| AzureError::overdue(format!("deleting resource group {name}"), o))
    })
}

/// The group exists: pending while ARM is deleting it, else the DELETE is sent again.
async fn delete_again_unless_deleting(
    clients: &ArmClients,
    cx: &PhaseContext,
    name: &str,
) -> PollStep<(), AzureError> {
    let still =
        |state: &str| PollStep::Pending(format!("resource group {name} still exists ({state})"));
    let state = match state(clients, name).await {
        Ok(Some(state)) => state,
        Ok(None) => return PollStep::Done(()),
        Err(e) if e.is_transient() => return still(&e.to_string()),
        Err(e) => return PollStep::Fail(e),
    };
    if state.eq_ignore_ascii_case("Deleting") {
        return still(&state);
    }
    cx.progress(format!(
        "resource group {name} is {state}, not Deleting: the DELETE did not take effect; sending it again"
    ));
    match begin_delete(clients, name).await {
        Ok(None) => PollStep::Done(()),
        Ok(Some(_)) => still("DELETE sent again"),
        Err(e) if e.is_retryable() => still(&format!("DELETE again: {e}")),
        Err(e) => PollStep::Fail(e),
    }
}
