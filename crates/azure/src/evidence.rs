//! Failure evidence for CLOUD-02, read before teardown destroys it: the deployment's
//! operations (each failed one with its innermost error) and each VM's instance view with
//! its extensions' statuses and substatuses (the CustomScript `[stdout]`/`[stderr]` tails).
//! Never fails: what could not be read becomes a line saying so.

use std::fmt::Write as _;

use azure_mgmt_resources::package_resources_2021_04::models;
use cloudtest_core::{EvidenceItem, ResourceKind, Secret};
use futures::StreamExt;
use serde_json::Value;

use crate::connection::ArmClients;
use crate::deploy::failed_operation;
use crate::errors::AzureError;
use crate::teardown;

/// The Microsoft.Compute api-version of the instance-view read.
const COMPUTE_API_VERSION: &str = "2023-09-01";

/// Everything worth keeping about a failed lifecycle; `secret` is replaced wherever it shows.
pub(crate) async fn collect(
    clients: &ArmClients,
    group: &str,
    deployment: &str,
    secret: &Secret,
) -> Vec<EvidenceItem> {
    let mut items = vec![EvidenceItem {
        name: "deployment-operations.txt".into(),
        text: operations_text(clients, group, deployment).await,
    }];
    match teardown::resources(clients, group).await {
        Ok(resources) => {
            for vm in resources
                .iter()
                .filter(|r| r.kind == ResourceKind::Instance)
            {
                let name = vm.id.rsplit('/').next().unwrap_or_default().to_string();
                let role = name.rsplit('-').next().unwrap_or(&name).to_string();
                let text = match instance_view(clients, &vm.id).await {
                    Ok(view) => render_instance_view(&name, &view),
                    Err(e) => format!("instance view of {name} could not be read: {e}\n"),
                };
                items.push(EvidenceItem {
                    name: format!("vm-{role}-instance-view.txt"),
                    text,
                });
            }
        }
        Err(e) => items.push(EvidenceItem {
            name: "vm-instance-views.txt".into(),
            text: format!("the resource group's VMs could not be listed: {e}\n"),
        }),
    }
    let secret = secret.expose();
    for item in &mut items {
        if !secret.is_empty() {
            item.text = item.text.replace(secret, "[redacted]");
        }
    }
    items
}

async fn operations_text(clients: &ArmClients, group: &str, deployment: &str) -> String {
    let mut pages = clients
        .mgmt
        .deployment_operations_client()
        .list(group, deployment, clients.conn.subscription_id.clone())
        .into_stream();
    let mut out = format!("deployment {deployment} in resource group {group}\n");
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let e = clients.sdk_error("list deployment operations", e);
                let _ = writeln!(out, "listing the operations failed: {e}");
                return out;
            }
        };
        for op in page.value {
            out.push_str(&operation_line(&op));
        }
    }
    out
}

fn operation_line(op: &models::DeploymentOperation) -> String {
    let Some(p) = op.properties.as_ref() else {
        return "(operation without properties)\n".into();
    };
    let target = p.target_resource.as_ref();
    let name = target
        .and_then(|t| t.resource_name.clone())
        .unwrap_or_else(|| "(unnamed)".into());
    let kind = target
        .and_then(|t| t.resource_type.clone())
        .unwrap_or_default();
    let state = p.provisioning_state.clone().unwrap_or_default();
    let status = p.status_code.clone().unwrap_or_default();
    let mut line = format!("{state:<10} {kind} {name} ({status})");
    if let Some(f) = failed_operation(op) {
        let _ = write!(line, ": {}: {}", f.code, f.message);
    }
    line.push('\n');
    line
}

/// `GET {vm id}/instanceView` over the checked ARM call.
async fn instance_view(clients: &ArmClients, vm_id: &str) -> Result<Value, AzureError> {
    const OPERATION: &str = "read VM instance view";
    let mut url = clients.conn.base_url()?;
    url.set_path(&format!("{}/instanceView", vm_id.trim_end_matches('/')));
    url.query_pairs_mut()
        .append_pair("api-version", COMPUTE_API_VERSION);
    let response = clients.call(reqwest::Method::GET, url, OPERATION).await?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        let err = crate::lro::error_from_body(&body);
        return Err(AzureError::from_status(
            OPERATION,
            &clients.conn.credential_source,
            &clients.conn.subscription_id,
            status,
            err.code.unwrap_or_else(|| "(no code)".into()),
            err.message.unwrap_or_else(|| "(no message)".into()),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| AzureError::Malformed {
        operation: OPERATION.into(),
        why: e.to_string(),
    })
}

/// The VM's statuses, then each extension's statuses and substatuses with their messages.
pub(crate) fn render_instance_view(vm: &str, view: &Value) -> String {
    let mut out = format!("VM {vm}\n");
    let statuses = |v: &Value, indent: &str, out: &mut String| {
        for s in v.as_array().into_iter().flatten() {
            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
            let _ = writeln!(out, "{indent}{} {}", text("code"), text("displayStatus"));
            let message = text("message");
            if !message.is_empty() {
                for l in message.lines() {
                    let _ = writeln!(out, "{indent}  | {l}");
                }
            }
        }
    };
    statuses(&view["statuses"], "  ", &mut out);
    for ext in view["extensions"].as_array().into_iter().flatten() {
        let name = ext
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        let kind = ext.get("type").and_then(Value::as_str).unwrap_or_default();
        let _ = writeln!(out, "extension {name} ({kind})");
        statuses(&ext["statuses"], "  ", &mut out);
        if ext.get("substatuses").is_some() {
            let _ = writeln!(out, "  substatuses:");
            statuses(&ext["substatuses"], "    ", &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instance_view_renders_statuses_and_extension_tails() {
        let view = json!({
            "statuses": [{"code": "PowerState/running", "displayStatus": "VM running"}],
            "extensions": [{
                "name": "velociraptor-server-boot",
                "type": "Microsoft.Azure.Extensions.CustomScript",
                "statuses": [{"code": "ProvisioningState/failed/1", "displayStatus": "Provisioning failed",
                    "message": "Enable failed: failed to execute command: command terminated with exit status=1\n[stdout]\nfetching\n[stderr]\ncurl: (22) 404"}],
                "substatuses": [{"code": "ComponentStatus/StdErr/failed", "message": "curl: (22) 404"}]
            }]
        });
        let text = render_instance_view("ct-x-server", &view);
        for part in [
            "PowerState/running",
            "extension velociraptor-server-boot",
            "| [stderr]",
            "| curl: (22) 404",
            "substatuses:",
            "ComponentStatus/StdErr/failed",
        ] {
            assert!(text.contains(part), "{part}\n{text}");
        }
    }
}
