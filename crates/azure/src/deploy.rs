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
use crate::resources::resource_ref;

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

/// Sends the deployment PUT and returns where to watch it. The generated LRO `.await` is
/// not used (see [`crate::lro`]).
pub(crate) async fn start(
    clients: &ArmClients,
    resource_group: &str,
    name: &str,
    template: Value,
    parameters: Map<String, Value>,
) -> Result<Started, AzureError> {
    let mut properties =
        models::DeploymentProperties::new(models::deployment_properties::Mode::Incremental);
    properties.template = Some(template);
    properties.parameters = Some(Value::Object(parameters));
    let response = clients
        .mgmt
        .deployments_client()
        .create_or_update(
            resource_group,
            name,
            models::Deployment::new(properties),
            clients.conn.subscription_id.clone(),
        )
        .send()
        .await
        .map_err(|e| clients.sdk_error("create deployment", e))?;
    let started = Started::from_headers(
        &clients.conn.base_url()?,
        response.as_raw_response().headers(),
    )?;
    // ARM answers with the deployment it accepted; an answer that does not parse cannot be
    // taken as proof that it did (teardown removes whatever exists).
    response
        .into_body()
        .await
        .map_err(|e| clients.sdk_error("create deployment", e))?;
    Ok(started)
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

/// What ARM says about a deployment's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeploymentState {
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

/// Resources the deployment reports creating (`outputResources`), for pricing.
pub(crate) fn output_resources(d: &models::DeploymentExtended, spot: bool) -> Vec<ResourceRef> {
    d.properties
        .as_ref()
        .map(|p| {
            p.output_resources
                .iter()
                .filter_map(|r| r.id.as_deref())
                .map(|id| {
                    let r = resource_ref(id, None, None, false);
                    let is_vm = r.kind == "instance";
                    ResourceRef {
                        spot: spot && is_vm,
                        ..r
                    }
                })
                .collect()
        })
        .unwrap_or_default()
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
