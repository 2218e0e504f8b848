//! Teardown of the run's resource group: deleted last, and gone only when ARM answers the
//! existence check (HEAD) with 404.

use cloudtest_core::{poll_until, Backoff, PhaseContext, PollError, PollStep, ResourceRef};
use futures::StreamExt;
use tokio::time::Instant;

use crate::connection::ArmClients;
use crate::errors::AzureError;
use crate::lro::Started;
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

/// Sends the DELETE; `None` when the group was already gone (404).
pub(crate) async fn begin_delete(
    clients: &ArmClients,
    name: &str,
) -> Result<Option<Started>, AzureError> {
    match clients
        .mgmt
        .resource_groups_client()
        .delete(name, clients.conn.subscription_id.clone())
        .send()
        .await
    {
        Ok(response) => Ok(Some(Started::from_headers(
            &clients.conn.base_url()?,
            response.as_raw_response().headers(),
        )?)),
        Err(e) => {
            let e = clients.sdk_error("delete resource group", e);
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
    let begun = Instant::now();
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
    match result {
        Ok(_) => Ok(()),
        Err(PollError::Failed(e)) => Err(e),
        Err(PollError::Deadline { attempts, last }) => Err(AzureError::Deadline {
            operation: format!("deleting resource group {name}"),
            waited_s: begun.elapsed().as_secs(),
            attempts,
            last: last.unwrap_or_default(),
        }),
    }
}

/// The group exists: pending while ARM is deleting it, else the DELETE is sent again.
async fn delete_again_unless_deleting(
    clients: &ArmClients,
    cx: &PhaseContext,
    name: &str,
) -> PollStep<(), AzureError> {
    let still =
        |state: &str| PollStep::Pending(format!("resource group {name} still exists ({state})"));
    let state = match clients
        .mgmt
        .resource_groups_client()
        .get(name, clients.conn.subscription_id.clone())
        .await
    {
        Ok(group) => group
            .properties
            .and_then(|p| p.provisioning_state)
            .unwrap_or_default(),
        Err(e) => {
            let e = clients.sdk_error("get resource group", e);
            return if e.is_not_found() {
                PollStep::Done(())
            } else if e.is_transient() {
                still(&e.to_string())
            } else {
                PollStep::Fail(e)
            };
        }
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
        Err(e) if e.is_transient() => still(&format!("DELETE again: {e}")),
        Err(e) => PollStep::Fail(e),
    }
}
