//! Create: the run's resource group, then the template deployment: start it (PUT, incremental), read it back, turn its outputs
//! into the shared output map, and explain a failure by its first failed operation.

use std::collections::BTreeMap;

use azure_mgmt_resources::package_resources_2021_04::models;
use cloudtest_core::ResourceRef;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::connection::ArmClients;
use crate::errors::AzureError;
use crate::lro::Started;

/// Creates (or updates) the run's resource group with the run's tags.
pub(crate) async fn create_group(
    clients: &ArmClients,
    name: &str,
    location: &str,
    tags: Value,
) -> Result<models::ResourceGroup, AzureError> {
    let mut group = models::ResourceGroup::new(location.to_string());
    group.tags = Some(tags);
    clients
        .mgmt
        .resource_groups_client()
        .create_or_update(name, group, clients.conn.subscription_id.clone())
        .await
        .map_err(|e| clients.sdk_error("create resource group", e))
}

/// The api-version of the calls made here (the generated client's).
const API_VERSION: &str = "2021-04-01";

/// How often a throttled or failing (5xx) deployment PUT is sent again.
const PUT_ATTEMPTS: u32 = 4;

/// Sends the deployment PUT and returns where to watch it. Sent here rather than through
/// the generated client, whose error keeps only the top-level code: ARM's pre-flight
/// refusals (`SkuNotAvailable`, `QuotaExceeded`, `RequestDisallowedByPolicy`,
/// `MissingSubscriptionRegistration`) arrive as `InvalidTemplateDeployment` with the cause
/// in `error.details[]`. The generated LRO `.await` is not used either (see [`crate::lro`]).
pub(crate) async fn start(
    clients: &ArmClients,
    resource_group: &str,
    name: &str,
    template: Value,
    parameters: Map<String, Value>,
) -> Result<Started, AzureError> {
    const OPERATION: &str = "create deployment";
    let mut properties =
        models::DeploymentProperties::new(models::deployment_properties::Mode::Incremental);
    properties.template = Some(template);
    properties.parameters = Some(Value::Object(parameters));
    let body = serde_json::to_value(models::Deployment::new(properties)).map_err(|e| {
        AzureError::Malformed {
            operation: OPERATION.into(),
            why: e.to_string(),
        }
    })?;
    let mut url = crate::teardown::group_url(clients, resource_group)?;
    // A URL group_url built carries a path, so it can take more segments.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.extend(["providers", "Microsoft.Resources", "deployments", name]);
    }
    url.query_pairs_mut()
        .append_pair("api-version", API_VERSION);
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A PUT of the same deployment is idempotent: a lost request or answer is sent again.
        let response = match clients
            .call_with_body(reqwest::Method::PUT, url.clone(), OPERATION, Some(&body))
            .await
        {
            Ok(r) => r,
            Err(e @ AzureError::Transport { .. }) if attempt < PUT_ATTEMPTS => {
                tracing::debug!(error = %e, "deployment PUT not sent; sending it again");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            // ARM answers with the deployment it accepted; an answer that does not parse
            // cannot be taken as proof that it did (teardown removes whatever exists).
            serde_json::from_slice::<models::DeploymentExtended>(&bytes).map_err(|e| {
                AzureError::Malformed {
                    operation: OPERATION.into(),
                    why: format!("the accepted deployment does not parse: {e}"),
                }
            })?;
            return Started::from_reqwest(&clients.conn.base_url()?, &headers);
        }
        let retryable = status == 408 || status == 429 || status >= 500;
        if retryable && attempt < PUT_ATTEMPTS {
            let wait = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::lro::parse_retry_after)
                .unwrap_or_else(|| backoff(attempt))
                .min(std::time::Duration::from_secs(60));
            tracing::debug!(
                status,
                ?wait,
                "deployment PUT throttled or failing; sending it again"
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        return Err(rejection(clients, name, status, &bytes));
    }
}

/// The wait before sending the PUT again without a `Retry-After`: 100 ms, doubling, as the
/// generated client's pipeline does.
fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(100 << attempt.min(6))
}

/// Classifies an unsuccessful deployment PUT: a refusal of the deployment itself (the
/// innermost of `error.details[]`) is [`AzureError::DeploymentRejected`]; credential,
/// permission and not-found answers keep their own classification.
pub(crate) fn rejection(clients: &ArmClients, name: &str, status: u16, body: &[u8]) -> AzureError {
    let outer = serde_json::from_slice::<models::CloudError>(body)
        .ok()
        .and_then(|e| e.error)
        .unwrap_or_default();
    let outer_code = outer.code.clone().unwrap_or_else(|| "(no code)".into());
    let permission = status == 403
        && !outer_code.eq_ignore_ascii_case("RequestDisallowedByPolicy")
        && outer.details.is_empty();
    if status == 401 || status == 404 || permission || !(400..500).contains(&status) {
        return AzureError::from_status(
            "create deployment",
            &clients.conn.credential_source,
            &clients.conn.subscription_id,
            status,
            outer_code,
            outer.message.unwrap_or_else(|| "(no message)".into()),
        );
    }
    let (code, message) = innermost(&outer);
    AzureError::DeploymentRejected {
        deployment: name.to_string(),
        status,
        outer_code,
        code,
        message,
    }
}

/// The deepest first detail that has a code, with its message (ARM nests the cause).
pub(crate) fn innermost(error: &models::ErrorResponse) -> (String, String) {
    let mut at = error;
    while let Some(inner) = at.details.iter().find(|d| d.code.is_some()) {
        at = inner;
    }
    (
        at.code.clone().unwrap_or_else(|| "(no code)".into()),
        at.message.clone().unwrap_or_else(|| "(no message)".into()),
    )
}

/// The deployment as ARM reports it now.
pub(crate) async fn get(
    clients: &ArmClients,
    resource_group: &str,
    name: &str,
) -> Result<models::DeploymentExtended, AzureError> {
    clients
        .mgmt
        .deployments_client()
        .get(resource_group, name, clients.conn.subscription_id.clone())
        .await
        .map_err(|e| clients.sdk_error("get deployment", e))
}

/// `POST .../cancel`: ARM allows it only while the deployment is Accepted or Running
/// (409 otherwise); the deployment then ends `Canceled` with what it created so far.
pub(crate) async fn cancel(
    clients: &ArmClients,
    resource_group: &str,
    name: &str,
) -> Result<(), AzureError> {
    clients
        .mgmt
        .deployments_client()
        .cancel(resource_group, name, clients.conn.subscription_id.clone())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| clients.sdk_error("cancel deployment", e))
}

/// The deployment's state, `None` when ARM has no such deployment (or group).
pub(crate) async fn state(
    clients: &ArmClients,
    resource_group: &str,
    name: &str,
) -> Result<Option<DeploymentState>, AzureError> {
    match get(clients, resource_group, name).await {
        Ok(d) => Ok(Some(state_of(&d))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What ARM says about a deployment's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeploymentState {
    /// Accepted, Running or any other non-terminal state ARM names.
    Running(String),
    Succeeded,
    Failed,
    Canceled,
}

pub(crate) fn state_of(d: &models::DeploymentExtended) -> DeploymentState {
    use models::deployment_properties_extended::ProvisioningState as P;
    match d
        .properties
        .as_ref()
        .and_then(|p| p.provisioning_state.as_ref())
    {
        Some(P::Succeeded) => DeploymentState::Succeeded,
        Some(P::Failed) => DeploymentState::Failed,
        Some(P::Canceled) => DeploymentState::Canceled,
        Some(other) => DeploymentState::Running(format!("{other:?}")),
        None => DeploymentState::Running("no provisioningState".into()),
    }
}

/// The deployment's outputs as name → text (strings as they are, other JSON as JSON).
pub(crate) fn outputs(d: &models::DeploymentExtended) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = d.properties.as_ref().and_then(|p| p.outputs.as_ref()) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(name, out)| {
            let value = out.get("value")?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some((name.clone(), text))
        })
        .collect()
}

/// Resources the deployment reports creating (`outputResources`), priced: each VM carries
/// its size (from the template parameters it was deployed with), each VM's OS disk is
/// added (ARM does not list it in `outputResources`) with its SKU and size, each public IP
/// its SKU.
pub(crate) fn output_resources(
    d: &models::DeploymentExtended,
    spot: bool,
    template: &Value,
    overrides: &BTreeMap<String, String>,
) -> Vec<ResourceRef> {
    let ids: Vec<&str> = d
        .properties
        .as_ref()
        .map(|p| {
            p.output_resources
                .iter()
                .filter_map(|r| r.id.as_deref())
                .collect()
        })
        .unwrap_or_default();
    crate::sizes::priced(&ids, spot, template, overrides)
}

/// The first failed operation of a deployment, as ARM records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedOperation {
    pub resource: String,
    pub resource_type: String,
    pub code: String,
    pub message: String,
}

/// Lists the deployment's operations and returns the first one whose provisioning state is
/// `Failed`, with the innermost error code/message from its `statusMessage`.
pub(crate) async fn first_failed_operation(
    clients: &ArmClients,
    resource_group: &str,
    name: &str,
) -> Result<Option<FailedOperation>, AzureError> {
    let mut pages = clients
        .mgmt
        .deployment_operations_client()
        .list(resource_group, name, clients.conn.subscription_id.clone())
        .into_stream();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| clients.sdk_error("list deployment operations", e))?;
        for op in page.value {
            if let Some(failed) = failed_operation(&op) {
                return Ok(Some(failed));
            }
        }
    }
    Ok(None)
}

pub(crate) fn failed_operation(op: &models::DeploymentOperation) -> Option<FailedOperation> {
    let p = op.properties.as_ref()?;
    if !p
        .provisioning_state
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("failed"))
    {
        return None;
    }
    let target = p.target_resource.as_ref();
    let resource = target
        .and_then(|t| t.resource_name.clone().or_else(|| t.id.clone()))
        .unwrap_or_else(|| "(unnamed resource)".into());
    let resource_type = target
        .and_then(|t| t.resource_type.clone())
        .unwrap_or_else(|| "(unknown type)".into());
    let mut error = p.status_message.as_ref().and_then(|m| m.error.as_ref());
    // ARM wraps the cause: descend to the first detail that carries one.
    while let Some(inner) = error.and_then(|e| e.details.first()) {
        error = Some(inner);
    }
    Some(FailedOperation {
        resource,
        resource_type,
        code: error
            .and_then(|e| e.code.clone())
            .or_else(|| p.status_code.clone())
            .unwrap_or_else(|| "(no code)".into()),
        message: error
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| "(no message)".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failed_operation_reads_the_innermost_status_message_error() {
        let op: models::DeploymentOperation = serde_json::from_value(json!({
            "operationId": "1",
            "properties": {
                "provisioningState": "Failed",
                "statusCode": "Conflict",
                "statusMessage": {"status": "Failed", "error": {
                    "code": "ResourceDeploymentFailure",
                    "message": "outer",
                    "details": [{"code": "SkuNotAvailable", "message": "Standard_B2s is not available in eastus"}]
                }},
                "targetResource": {"id": "/x", "resourceName": "vr-server", "resourceType": "Microsoft.Compute/virtualMachines"}
            }
        }))
        .expect("model");
        let f = failed_operation(&op).expect("failed");
        assert_eq!(f.resource, "vr-server");
        assert_eq!(f.resource_type, "Microsoft.Compute/virtualMachines");
        assert_eq!(f.code, "SkuNotAvailable");
        assert!(f.message.contains("Standard_B2s"));
    }

    #[test]
    fn outputs_keep_strings_and_render_other_json() {
        let d: models::DeploymentExtended = serde_json::from_value(json!({
            "properties": {"provisioningState": "Succeeded", "outputs": {
                "serverAddress": {"type": "String", "value": "203.0.113.9"},
                "expectedClients": {"type": "Int", "value": 1},
                "nothing": {"type": "String", "value": null}
            }}
        }))
        .expect("model");
        let o = outputs(&d);
        assert_eq!(
            o.get("serverAddress").map(String::as_str),
            Some("203.0.113.9")
        );
        assert_eq!(o.get("expectedClients").map(String::as_str), Some("1"));
        assert!(!o.contains_key("nothing"));
        assert_eq!(state_of(&d), DeploymentState::Succeeded);
    }
}
