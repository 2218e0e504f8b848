//! `cloudtest sweep` for Azure: finds resource groups and stray resources that carry a
//! `cloudtest:run-id` tag and whose `cloudtest:expires-at` has passed (or that are older than
//! a limit), and deletes them one by one, groups first. Untagged things are never touched.
//!
//! Ages: ARM's resource list gives `createdTime` on request (`$expand=createdTime`); the
//! 2021-04-01 resource group model has no creation time, so a group's age is read from its
//! run id, which starts with the run's UTC start time (`20240131120000-abc123`). Where
//! neither is known, only the expiry tag can make something due.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudtest_core::{
    poll_until, Backoff, LifecycleId, NullSink, Phase, PhaseContext, PollStep, RequirementId,
    ResourceKind, ResourceRef,
};
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use crate::connection::{ArmClients, ArmConnection};
use crate::errors::AzureError;
use crate::leak::RUN_ID_TAG;
use crate::lro::{self, Monitor, Started};
use crate::resource_group;
use crate::resource_kind::resource_ref;

/// The rule both clouds' sweeps apply (tagged, and expired or older than the limit).
pub use cloudtest_core::tags::sweep_due as due;
use cloudtest_core::tags::{run_started, SweepScope};

/// What a sweep would delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepTarget {
    /// A tagged resource group; deleting it deletes everything inside.
    ResourceGroup { name: String },
    /// A tagged resource outside every tagged resource group.
    Resource(ResourceRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepItem {
    /// The Azure location (`eastus`), `-` when ARM did not say.
    pub location: String,
    pub run_id: String,
    pub target: SweepTarget,
    /// Why it is due (`expired at ...`, `created ..., older than 6h`).
    pub why: String,
}

/// ARM tags as a map, string values only (ARM allows nothing else).
fn string_tags(tags: Option<&Value>) -> BTreeMap<String, String> {
    tags.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The resource group segment of an ARM id, lowercased (ARM names are case-insensitive).
fn group_of(id: &str) -> Option<String> {
    let mut parts = id.trim_matches('/').split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("resourcegroups") {
            return parts.next().map(str::to_ascii_lowercase);
        }
    }
    None
}

/// Deletion order for stray resources: what holds others first, networks last; child
/// resources (extensions) after their parents, which usually take them along.
fn order(kind: &ResourceKind) -> u8 {
    match kind {
        ResourceKind::Instance => 0,
        ResourceKind::NetworkInterface => 1,
        ResourceKind::Volume => 2,
        ResourceKind::PublicIp => 3,
        ResourceKind::SecurityGroup => 4,
        ResourceKind::Vnet => 5,
        _ => 6,
    }
}

/// ARM's OData filter for "has this tag, any value".
fn tag_name_filter(tag: &str) -> String {
    format!("tagName eq '{}'", tag.replace('\'', "''"))
}

/// Everything in the subscription that is due: resource groups first, then tagged resources
/// outside every tagged group (a group's deletion takes its own resources), holders first.
///
/// Groups are listed with a tag-name filter. Resources are listed unfiltered and checked
/// here: ARM documents that a tag filter on the resource list may drop each resource's tags
/// and the `$expand` properties, and both are needed to decide.
pub async fn find_expired(
    conn: &ArmConnection,
    now: DateTime<Utc>,
    older_than: Option<Duration>,
) -> Result<Vec<SweepItem>, AzureError> {
    find_due(conn, now, &SweepScope::Expired { older_than }).await
}

/// What `scope` makes due in the subscription, in the order [`find_expired`] gives: a run's
/// own cleanup uses [`SweepScope::Run`].
pub async fn find_due(
    conn: &ArmConnection,
    now: DateTime<Utc>,
    scope: &SweepScope,
) -> Result<Vec<SweepItem>, AzureError> {
    let clients = ArmClients::new(conn.clone())?;
    let sub = conn.subscription_id.clone();
    let mut items = Vec::new();

    let mut tagged_groups = BTreeSet::new();
    let mut groups = clients
        .mgmt
        .resource_groups_client()
        .list(sub.clone())
        .filter(tag_name_filter(RUN_ID_TAG))
        .into_stream();
    while let Some(page) = groups.next().await {
        let page = page.map_err(|e| clients.sdk_error("list tagged resource groups", e))?;
        for g in page.value {
            let Some(name) = g.name.clone() else {
                continue;
            };
            let tags = string_tags(g.tags.as_ref());
            let Some(run_id) = tags.get(RUN_ID_TAG).cloned() else {
                continue;
            };
            tagged_groups.insert(name.to_ascii_lowercase());
            if let Some(why) = scope.due(&tags, run_started(&run_id), now) {
                items.push(SweepItem {
                    location: g.location.clone(),
                    run_id,
                    target: SweepTarget::ResourceGroup { name },
                    why,
                });
            }
        }
    }

    let mut strays = Vec::new();
    let mut resources = clients
        .mgmt
        .resources_client()
        .list(sub)
        .expand("createdTime")
        .into_stream();
    while let Some(page) = resources.next().await {
        let page = page.map_err(|e| clients.sdk_error("list resources", e))?;
        for r in page.value {
            let g = &r.generic_resource;
            let Some(id) = g.resource.id.as_deref() else {
                continue;
            };
            if group_of(id).is_some_and(|rg| tagged_groups.contains(&rg)) {
                continue;
            }
            let tags = string_tags(g.resource.tags.as_ref());
            let Some(run_id) = tags.get(RUN_ID_TAG).cloned() else {
                continue;
            };
            let created = r
                .created_time
                .and_then(|t| DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()))
                .or_else(|| run_started(&run_id));
            if let Some(why) = scope.due(&tags, created, now) {
                let sku = g.sku.as_ref().and_then(|s| s.name.clone());
                strays.push(SweepItem {
                    location: g.resource.location.clone().unwrap_or_else(|| "-".into()),
                    run_id,
                    target: SweepTarget::Resource(resource_ref(
                        id,
                        g.resource.type_.as_deref(),
                        sku,
                        false,
                    )),
                    why,
                });
            }
        }
    }
    strays.sort_by_key(|i| match &i.target {
        SweepTarget::Resource(r) => order(&r.kind),
        SweepTarget::ResourceGroup { .. } => 0,
    });
    items.extend(strays);
    Ok(items)
}

/// Deletes one item and waits until ARM says it is gone, bounded by `deadline`: a group by
/// DELETE, its long-running operation, then HEAD until 404; a resource by DELETE on its id
/// with an api-version for its type, then its long-running operation.
pub async fn delete(
    conn: &ArmConnection,
    item: &SweepItem,
    deadline: Instant,
    poll: Backoff,
) -> Result<(), AzureError> {
    let clients = ArmClients::new(conn.clone())?;
    let cx = sweep_context(&item.location, deadline);
    match &item.target {
        SweepTarget::ResourceGroup { name } => {
            cx.progress(format!("deleting resource group {name} ({})", item.why));
            if let Some(started) = resource_group::begin_delete(&clients, name).await? {
                lro::wait(
                    &clients,
                    &cx,
                    &format!("delete resource group {name}"),
                    started,
                    poll,
                )
                .await?;
            }
            resource_group::wait_gone(&clients, &cx, name, poll).await
        }
        SweepTarget::Resource(r) => delete_resource(&clients, &cx, r, poll).await,
    }
}

/// api-versions for DELETE by id, by ARM type (lowercase). Each resource provider has its
/// own versions; the template's own versions where it uses the type.
const API_VERSIONS: [(&str, &str); 11] = [
    ("microsoft.compute/virtualmachines", "2023-09-01"),
    ("microsoft.compute/virtualmachines/extensions", "2023-03-01"),
    ("microsoft.compute/disks", "2023-04-02"),
    ("microsoft.compute/snapshots", "2023-04-02"),
    ("microsoft.network/networkinterfaces", "2023-09-01"),
    ("microsoft.network/publicipaddresses", "2023-09-01"),
    ("microsoft.network/networksecuritygroups", "2023-09-01"),
    ("microsoft.network/virtualnetworks", "2023-09-01"),
    ("microsoft.storage/storageaccounts", "2023-01-01"),
    (
        "microsoft.managedidentity/userassignedidentities",
        "2023-01-31",
    ),
    ("microsoft.resources/deployments", "2021-04-01"),
];

/// Used for types not in [`API_VERSIONS`]; when ARM refuses it, the versions ARM lists in
/// its refusal are tried once.
const FALLBACK_API_VERSION: &str = "2021-04-01";

/// The api-version for a type, and whether it is the fallback.
fn api_version_for(arm_type: &str) -> (&'static str, bool) {
    let t = arm_type.to_ascii_lowercase();
    match API_VERSIONS.iter().find(|(k, _)| *k == t) {
        Some((_, v)) => (v, false),
        None if t.starts_with("microsoft.network/") => ("2023-09-01", false),
        None => (FALLBACK_API_VERSION, true),
    }
}

/// ARM error codes that mean "wrong api-version for this type"; their message lists the
/// versions the type supports.
const API_VERSION_CODES: [&str; 2] = ["NoRegisteredProviderFound", "InvalidApiVersionParameter"];

/// The newest stable version named in an api-version refusal (`... The supported
/// api-versions are '2016-04-30-preview, 2023-04-02'.`), else the newest preview.
fn newest_listed_api_version(message: &str) -> Option<String> {
    let mut found: Vec<(bool, String)> = Vec::new();
    for word in message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        let (date, preview) = match word.strip_suffix("-preview") {
            Some(d) => (d, true),
            None => (word, false),
        };
        let shaped = date.len() == 10
            && date.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            });
        if shaped {
            found.push((!preview, word.to_string()));
        }
    }
    found
        .into_iter()
        .max_by(|a, b| (a.0, &a.1[..10]).cmp(&(b.0, &b.1[..10])))
        .map(|(_, v)| v)
}

/// Codes of a 404 that means the resource is already gone (not "no such type/route").
const GONE_CODES: [&str; 4] = [
    "ResourceNotFound",
    "ResourceGroupNotFound",
    "ParentResourceNotFound",
    "NotFound",
];

/// What the DELETE answered.
enum DeleteAnswer {
    Gone,
    Accepted(Started),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

async fn delete_resource(
    clients: &ArmClients,
    cx: &PhaseContext,
    r: &ResourceRef,
    poll: Backoff,
) -> Result<(), AzureError> {
    let (first, fallback) = api_version_for(&r.cloud_type);
    let mut version = first.to_string();
    // The version ARM refused, once it has: then `version` is one ARM listed.
    let mut refused: Option<String> = None;
    loop {
        let operation = match (&refused, fallback) {
            (Some(old), _) => format!(
                "delete {} (api-version {version}, listed by ARM after it refused {old})",
                r.id
            ),
            (None, true) => format!(
                "delete {} (api-version {version}, a default: {} is not in cloudtest's api-version table)",
                r.id, r.cloud_type
            ),
            (None, false) => format!("delete {} (api-version {version})", r.id),
        };
        cx.progress(operation.clone());
        match send_delete(clients, cx, &operation, &r.id, &version, poll).await? {
            DeleteAnswer::Gone => return Ok(()),
            DeleteAnswer::Accepted(started) => {
                if started.monitor == Monitor::None {
                    return Ok(());
                }
                return lro::wait(clients, cx, &operation, started, poll).await;
            }
            DeleteAnswer::Refused {
                status,
                code,
                message,
            } => {
                let listed = API_VERSION_CODES
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&code))
                    .then(|| newest_listed_api_version(&message))
                    .flatten()
                    .filter(|v| *v != version);
                match listed {
                    Some(v) if refused.is_none() => {
                        tracing::info!(id = %r.id, refused = %version, retry = %v, "ARM refused the api-version; retrying with the newest it lists");
                        refused = Some(std::mem::replace(&mut version, v));
                    }
                    _ => {
                        let conn = &clients.conn;
                        return Err(AzureError::from_status(
                            &operation,
                            &conn.credential_source,
                            &conn.subscription_id,
                            status,
                            code,
                            message,
                        ));
                    }
                }
            }
        }
    }
}

/// One DELETE by id, retried (with `poll`'s backoff, until the deadline) while ARM throttles
/// or answers a transient 5xx.
async fn send_delete(
    clients: &ArmClients,
    cx: &PhaseContext,
    operation: &str,
    id: &str,
    api_version: &str,
    poll: Backoff,
) -> Result<DeleteAnswer, AzureError> {
    let base = clients.conn.base_url()?;
    let mut url = base.clone();
    url.set_path(id);
    url.set_query(None);
    url.query_pairs_mut()
        .append_pair("api-version", api_version);
    let result = poll_until(cx.deadline(), poll, |_| {
        let (url, base) = (url.clone(), base.clone());
        async move {
            let token = match clients.bearer().await {
                Ok(t) => t,
                Err(e) => return PollStep::Fail(e),
            };
            let response = match clients
                .http
                .delete(url)
                .bearer_auth(token.expose())
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return PollStep::Pending(format!("transport error: {e}")),
            };
            let status = response.status().as_u16();
            if status == 429 || status == 408 || (500..600).contains(&status) {
                return PollStep::Pending(format!("HTTP {status} (throttled or transient)"));
            }
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if (200..300).contains(&status) {
                if status == 200 || status == 204 {
                    return PollStep::Done(DeleteAnswer::Gone);
                }
                return match Started::from_values(
                    &base,
                    header("azure-asyncoperation").as_deref(),
                    header("location").as_deref(),
                    header("retry-after").as_deref(),
                ) {
                    Ok(s) => PollStep::Done(DeleteAnswer::Accepted(s)),
                    Err(e) => PollStep::Fail(e),
                };
            }
            let body = response.bytes().await.unwrap_or_default();
            let err = lro::error_from_body(&body);
            let code = err.code.unwrap_or_else(|| "(no code)".into());
            if status == 404 && GONE_CODES.iter().any(|c| c.eq_ignore_ascii_case(&code)) {
                return PollStep::Done(DeleteAnswer::Gone);
            }
            PollStep::Done(DeleteAnswer::Refused {
                status,
                code,
                message: err.message.unwrap_or_else(|| "(no message)".into()),
            })
        }
    })
    .await;
    result
        .map(|(answer, _)| answer)
        .map_err(|e| e.into_error(|o| AzureError::overdue(operation, o)))
}

/// The context the shared LRO and existence pollers expect: the sweep's deadline, progress
/// to the log only.
fn sweep_context(location: &str, deadline: Instant) -> PhaseContext {
    let now = Instant::now();
    PhaseContext::new(
        LifecycleId::new(RequirementId::Cloud02, location),
        Phase::Teardown,
        deadline.saturating_duration_since(now),
        now,
        Arc::new(NullSink),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_group_case_insensitively() {
        assert_eq!(
            group_of("/subscriptions/s/resourceGroups/My-RG/providers/Microsoft.Compute/disks/d")
                .as_deref(),
            Some("my-rg")
        );
        assert_eq!(group_of("/subscriptions/s"), None);
    }

    #[test]
    fn api_versions_by_type_with_a_flagged_fallback() {
        assert_eq!(
            api_version_for("Microsoft.Compute/disks"),
            ("2023-04-02", false)
        );
        assert_eq!(
            api_version_for("Microsoft.Network/loadBalancers"),
            ("2023-09-01", false)
        );
        assert_eq!(
            api_version_for("Contoso.Widgets/gadgets"),
            (FALLBACK_API_VERSION, true)
        );
    }

    #[test]
    fn refusals_name_the_newest_stable_version() {
        let msg = "No registered resource provider found for location 'eastus' and API version '2021-04-01' for type 'gadgets'. The supported api-versions are '2019-01-01, 2022-05-01, 2024-01-01-preview'. The supported locations are 'eastus'.";
        assert_eq!(
            newest_listed_api_version(msg).as_deref(),
            Some("2022-05-01")
        );
        let only_preview = "The supported api-versions are '2024-01-01-preview'.";
        assert_eq!(
            newest_listed_api_version(only_preview).as_deref(),
            Some("2024-01-01-preview")
        );
        assert_eq!(newest_listed_api_version("nothing here"), None);
    }

    #[test]
    fn strays_are_deleted_holders_first_networks_last() {
        let mut kinds = [
            ResourceKind::Vnet,
            ResourceKind::Instance,
            ResourceKind::SecurityGroup,
            ResourceKind::PublicIp,
            ResourceKind::Volume,
        ];
        kinds.sort_by_key(order);
        assert_eq!(
            kinds,
            [
                ResourceKind::Instance,
                ResourceKind::Volume,
                ResourceKind::PublicIp,
                ResourceKind::SecurityGroup,
                ResourceKind::Vnet
            ]
        );
    }
}
