//! The read-only ARM calls `cloudtest preflight` makes, in the shapes of the REST specs'
//! examples: `Subscriptions_Get`, `Providers_Get`, `RoleAssignments_ListForSubscription`
//! (`$filter=assignedTo('{oid}')`), `RoleDefinitions_GetById`, `ResourceSkus_List`
//! (`$filter=location eq '{l}'`) and `Usage_List`.
//!
//! The emulated principal (the `oid` of [`bearer_token`]) holds two roles at the
//! subscription: Reader (`*/read`) and the shipped `ci/azure/role.json`, so a test passing
//! here proves the shipped role covers what the run needs. Scenarios make one check fail
//! each; `token-expired` answers every ARM call, lifecycle ones included, with
//! `401 ExpiredAuthenticationToken`.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use super::errors::{json_response, ArmError};
use crate::scenario::Scenario;

/// The emulated principal's object id (the token's `oid` claim).
pub const MOCK_PRINCIPAL_ID: &str = "11111111-2222-3333-4444-555555555555";
const MOCK_TENANT_ID: &str = "00000000-0000-0000-0000-0000000c7e57";
const READER_ROLE_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const RUNNER_ROLE_ID: &str = "c7e57000-0000-4000-8000-00000000c7e5";
/// The action `no-permission` removes from the runner role (with `notActions`).
pub const DENIED_ACTION: &str = "Microsoft.Compute/virtualMachines/write";
/// The shipped custom role; the emulated principal holds exactly this.
const SHIPPED_ROLE: &str = include_str!("../../../../ci/azure/role.json");

/// A bearer token shaped like Entra ID's (header.payload.signature, base64url), carrying
/// the emulated principal's `oid` and `tid`. Not signed: the emulator checks only presence.
pub fn bearer_token() -> String {
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.bW9jaw",
        enc(&json!({"alg": "none", "typ": "JWT"})),
        enc(&json!({
            "aud": "https://management.azure.com/",
            "oid": MOCK_PRINCIPAL_ID,
            "tid": MOCK_TENANT_ID,
            "appid": "cloudtest-mock",
        }))
    )
}

/// The preflight operation a request is, by its REST spec operationId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    SubscriptionGet { sub: String },
    ProviderGet { sub: String, namespace: String },
    RoleAssignmentsList { sub: String },
    RoleDefinitionGet { sub: String, id: String },
    SkusList { sub: String },
    UsageList { sub: String, location: String },
}

impl Operation {
    /// The operationId, for fault specs and `mock-calls.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::SubscriptionGet { .. } => "Subscriptions_Get",
            Operation::ProviderGet { .. } => "Providers_Get",
            Operation::RoleAssignmentsList { .. } => "RoleAssignments_ListForSubscription",
            Operation::RoleDefinitionGet { .. } => "RoleDefinitions_GetById",
            Operation::SkusList { .. } => "ResourceSkus_List",
            Operation::UsageList { .. } => "Usage_List",
        }
    }
}

/// Resolves a GET on one of the preflight's paths (case-insensitively, as ARM does).
pub fn route(method: &Method, path: &str) -> Option<Operation> {
    if method != Method::GET {
        return None;
    }
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let is = |i: usize, want: &str| segs.get(i).is_some_and(|x| x.eq_ignore_ascii_case(want));
    // Built-in role definitions are tenant-level: `/providers/Microsoft.Authorization/...`.
    if segs.len() == 4
        && is(0, "providers")
        && is(1, "microsoft.authorization")
        && is(2, "roledefinitions")
    {
        return Some(Operation::RoleDefinitionGet {
            sub: String::new(),
            id: segs[3].clone(),
        });
    }
    if !is(0, "subscriptions") || segs.len() < 2 {
        return None;
    }
    let sub = segs[1].clone();
    Some(match segs.len() {
        2 => Operation::SubscriptionGet { sub },
        4 if is(2, "providers") => Operation::ProviderGet {
            sub,
            namespace: segs[3].clone(),
        },
        5 if is(2, "providers") && is(3, "microsoft.authorization") && is(4, "roleassignments") => {
            Operation::RoleAssignmentsList { sub }
        }
        6 if is(2, "providers") && is(3, "microsoft.authorization") && is(4, "roledefinitions") => {
            Operation::RoleDefinitionGet {
                sub,
                id: segs[5].clone(),
            }
        }
        5 if is(2, "providers") && is(3, "microsoft.compute") && is(4, "skus") => {
            Operation::SkusList { sub }
        }
        7 if is(2, "providers")
            && is(3, "microsoft.compute")
            && is(4, "locations")
            && is(6, "usages") =>
        {
            Operation::UsageList {
                sub,
                location: segs[5].clone(),
            }
        }
        _ => return None,
    })
}

/// ARM's answer to an expired token (`token-expired`: expired an hour ago), for every call.
pub fn expired_token() -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    super::entra::expired(now - 3600.0, now)
}

/// Answers one preflight operation.
pub fn answer(op: &Operation, query: &[(String, String)], scenario: Scenario) -> Response {
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    match op {
        Operation::SubscriptionGet { sub } => ok(json!({
            "id": format!("/subscriptions/{sub}"),
            "subscriptionId": sub,
            "tenantId": MOCK_TENANT_ID,
            "displayName": "cloudtest mock subscription",
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off"
            },
            "authorizationSource": "RoleBased"
        })),
        Operation::ProviderGet { sub, namespace } => {
            let unregistered = scenario == Scenario::ProviderUnregistered
                && namespace.eq_ignore_ascii_case("Microsoft.Compute");
            let state = if unregistered {
                "NotRegistered"
            } else {
                "Registered"
            };
            ok(json!({
                "id": format!("/subscriptions/{sub}/providers/{namespace}"),
                "namespace": namespace,
                "registrationState": state,
                "registrationPolicy": "RegistrationRequired",
                "resourceTypes": []
            }))
        }
        Operation::RoleAssignmentsList { sub } => {
            let filter = q("$filter").unwrap_or_default();
            let mine = filter.contains(MOCK_PRINCIPAL_ID);
            let value: Vec<Value> = if mine {
                [READER_ROLE_ID, RUNNER_ROLE_ID]
                    .iter()
                    .enumerate()
                    .map(|(i, role)| {
                        let name = format!("a55a0000-0000-4000-8000-00000000000{i}");
                        // Built-in roles are named at tenant level, custom ones in the
                        // subscription (as RoleAssignments_ListForScope shows).
                        let definition = if *role == READER_ROLE_ID {
                            format!("/providers/Microsoft.Authorization/roleDefinitions/{role}")
                        } else {
                            format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}")
                        };
                        json!({
                            "id": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                            "type": "Microsoft.Authorization/roleAssignments",
                            "name": name,
                            "properties": {
                                "roleDefinitionId": definition,
                                "principalId": MOCK_PRINCIPAL_ID,
                                "principalType": "ServicePrincipal",
                                "scope": format!("/subscriptions/{sub}")
                            }
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            ok(json!({ "value": value }))
        }
        Operation::RoleDefinitionGet { sub, id } => role_definition(sub, id, scenario),
        Operation::SkusList { .. } => {
            let location = q("$filter")
                .and_then(|f| f.split('\'').nth(1))
                .unwrap_or("eastus")
                .to_string();
            ok(json!({ "value": skus(&location, scenario) }))
        }
        Operation::UsageList { location, .. } => ok(json!({ "value": usages(location, scenario) })),
    }
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

fn role_definition(sub: &str, id: &str, scenario: Scenario) -> Response {
    let (name, kind, actions, mut not_actions) = if id.eq_ignore_ascii_case(READER_ROLE_ID) {
        (
            "Reader".to_string(),
            "BuiltInRole",
            vec![Value::String("*/read".into())],
            Vec::new(),
        )
    } else if id.eq_ignore_ascii_case(RUNNER_ROLE_ID) {
        let shipped: Value = serde_json::from_str(SHIPPED_ROLE).unwrap_or(Value::Null);
        let list = |key: &str| shipped[key].as_array().cloned().unwrap_or_default();
        (
            shipped["Name"]
                .as_str()
                .unwrap_or("cloudtest runner")
                .to_string(),
            "CustomRole",
            list("Actions"),
            list("NotActions"),
        )
    } else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{id}' does not exist."),
        )
        .into_response();
    };
    if scenario == Scenario::NoPermission && id.eq_ignore_ascii_case(RUNNER_ROLE_ID) {
        not_actions.push(Value::String(DENIED_ACTION.into()));
    }
    let scope = if sub.is_empty() {
        String::new()
    } else {
        format!("/subscriptions/{sub}")
    };
    ok(json!({
        "id": format!("{scope}/providers/Microsoft.Authorization/roleDefinitions/{id}"),
        "type": "Microsoft.Authorization/roleDefinitions",
        "name": id,
        "properties": {
            "roleName": name,
            "type": kind,
            "description": "emulated",
            "assignableScopes": [if scope.is_empty() { "/".to_string() } else { scope.clone() }],
            "permissions": [{
                "actions": actions,
                "notActions": not_actions,
                "dataActions": [],
                "notDataActions": []
            }]
        }
    }))
}

/// VM sizes: name, family, vCPUs, Spot-capable.
const SIZES: &[(&str, &str, u32, bool)] = &[
    ("Standard_B1s", "standardBSFamily", 1, false),
    ("Standard_B2s", "standardBSFamily", 2, false),
    ("Standard_D2as_v5", "standardDASv5Family", 2, true),
    ("Standard_D2s_v5", "standardDSv5Family", 2, true),
];

fn skus(location: &str, scenario: Scenario) -> Vec<Value> {
    SIZES
        .iter()
        .map(|(name, family, vcpus, spot)| {
            let restricted = scenario == Scenario::SkuRestricted && *name == "Standard_B2s";
            let restrictions = if restricted {
                json!([{
                    "type": "Location",
                    "values": [location],
                    "restrictionInfo": {"locations": [location]},
                    "reasonCode": "NotAvailableForSubscription"
                }])
            } else {
                json!([])
            };
            let low_priority = if *spot { "True" } else { "False" };
            json!({
                "resourceType": "virtualMachines",
                "name": name,
                "tier": "Standard",
                "size": name.trim_start_matches("Standard_"),
                "family": family,
                "locations": [location],
                "locationInfo": [{"location": location, "zones": ["1", "2", "3"]}],
                "capabilities": [
                    {"name": "vCPUs", "value": vcpus.to_string()},
                    {"name": "LowPriorityCapable", "value": low_priority}
                ],
                "restrictions": restrictions
            })
        })
        .collect()
}

fn usages(location: &str, scenario: Scenario) -> Vec<Value> {
    let exhausted = scenario == Scenario::QuotaExhausted;
    let current = |limit: u32| if exhausted { limit } else { 0 };
    let entry = |name: &str, localized: &str, limit: u32| {
        json!({
            "unit": "Count",
            "currentValue": current(limit),
            "limit": limit,
            "name": {"value": name, "localizedValue": localized}
        })
    };
    let _ = location;
    vec![
        entry("availabilitySets", "Availability Sets", 2500),
        entry("cores", "Total Regional vCPUs", 10),
        entry("virtualMachines", "Virtual Machines", 25000),
        entry("standardBSFamily", "Standard BS Family vCPUs", 10),
        entry("standardDASv5Family", "Standard DASv5 Family vCPUs", 10),
        entry("standardDSv5Family", "Standard DSv5 Family vCPUs", 10),
        entry("lowPriorityCores", "Total Regional Low-priority vCPUs", 3),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_each_preflight_path_case_insensitively() {
        let sub = "/subscriptions/s";
        let cases = [
            (sub.to_string(), "Subscriptions_Get"),
            (
                format!("{sub}/providers/Microsoft.Compute"),
                "Providers_Get",
            ),
            (
                format!("{sub}/providers/microsoft.authorization/roleAssignments"),
                "RoleAssignments_ListForSubscription",
            ),
            (
                format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/x"),
                "RoleDefinitions_GetById",
            ),
            (
                format!("{sub}/providers/Microsoft.Compute/skus"),
                "ResourceSkus_List",
            ),
            (
                format!("{sub}/providers/Microsoft.Compute/locations/eastus/usages"),
                "Usage_List",
            ),
        ];
        for (path, name) in cases {
            let op = route(&Method::GET, &path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(op.name(), name);
        }
        assert!(route(&Method::GET, &format!("{sub}/resourcegroups")).is_none());
        assert!(route(&Method::PUT, sub).is_none());
    }

    #[test]
    fn the_shipped_role_parses_and_the_token_carries_the_principal() {
        let role: Value = serde_json::from_str(SHIPPED_ROLE).expect("ci/azure/role.json");
        assert!(role["Actions"].as_array().is_some_and(|a| !a.is_empty()));
        let token = bearer_token();
        let payload = token.split('.').nth(1).expect("payload");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url");
        let claims: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(claims["oid"], MOCK_PRINCIPAL_ID);
    }
}
