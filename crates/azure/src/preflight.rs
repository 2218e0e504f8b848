//! `cloudtest preflight` for one Azure location: read-only ARM calls that tell before
//! anything is created whether a run would fail on the login, the subscription, provider
//! registration, permissions, VM size availability, vCPU quota or Spot. Returns [`Check`]s;
//! never formats output.
//!
//! Calls go over the provider's own `reqwest` client with a bearer token from the
//! connection's credential (as [`crate::lro`] does): the generated management crate has no
//! clients for Compute SKUs, usages or authorization. Throttled (429) and 5xx answers are
//! retried, honouring `Retry-After`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use cloudtest_core::preflight::Check;
use cloudtest_core::Secret;
use serde_json::Value;

use crate::connection::{ArmClients, ArmConnection};
use crate::errors::AzureError;
use crate::lro::{error_from_body, parse_retry_after};

const PROVIDER: &str = "azure";
const SUBSCRIPTION_API: &str = "2022-12-01";
const PROVIDERS_API: &str = "2021-04-01";
const AUTHORIZATION_API: &str = "2022-04-01";
const SKUS_API: &str = "2021-07-01";
const USAGES_API: &str = "2023-07-01";
/// Attempts per call (first included) for 429 / 5xx / dropped connections.
const ATTEMPTS: u32 = 5;

/// Providers a deployment of the template needs registered.
const PROVIDERS: [&str; 2] = ["Microsoft.Compute", "Microsoft.Network"];

/// What one location's run would do, as far as the preflight needs to know.
#[derive(Debug, Clone)]
pub struct ArmPreflightPlan {
    pub location: String,
    pub template: Value,
    /// Non-secret parameter overrides from config (they may change VM sizes).
    pub parameters: BTreeMap<String, String>,
    pub use_spot: bool,
}

/// VM sizes the template deploys: every `*VmSize` parameter, from config or the default,
/// one VM each.
pub fn vm_sizes(template: &Value, parameters: &BTreeMap<String, String>) -> Vec<String> {
    let Some(params) = template.get("parameters").and_then(Value::as_object) else {
        return Vec::new();
    };
    params
        .iter()
        .filter(|(name, _)| name.to_ascii_lowercase().ends_with("vmsize"))
        .filter_map(|(name, decl)| {
            parameters.get(name).cloned().or_else(|| {
                decl.get("defaultValue")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        })
        .collect()
}

/// The actions a run needs at subscription scope: its own calls (resource group,
/// deployment, leak check) and, for every resource type the template declares, write and
/// read (the deployment creates them as the caller).
pub fn needed_actions(template: &Value) -> Vec<String> {
    let mut out: BTreeSet<String> = [
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.Resources/subscriptions/resourceGroups/write",
        "Microsoft.Resources/subscriptions/resourceGroups/delete",
        "Microsoft.Resources/subscriptions/resources/read",
        "Microsoft.Resources/deployments/read",
        "Microsoft.Resources/deployments/write",
        "Microsoft.Resources/deployments/operationstatuses/read",
        "Microsoft.Resources/deployments/operations/read",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/networkSecurityGroups/join/action",
        "Microsoft.Network/publicIPAddresses/join/action",
        "Microsoft.Network/networkInterfaces/join/action",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    let mut types = Vec::new();
    collect_types(template.get("resources"), "", &mut types);
    for t in types {
        out.insert(format!("{t}/write"));
        out.insert(format!("{t}/read"));
    }
    out.into_iter().collect()
}

/// Resource types, nested child resources included (`parent/child`).
fn collect_types(resources: Option<&Value>, parent: &str, out: &mut Vec<String>) {
    for r in resources.and_then(Value::as_array).into_iter().flatten() {
        let Some(t) = r.get("type").and_then(Value::as_str) else {
            continue;
        };
        let full = if parent.is_empty() || t.contains('.') {
            t.to_string()
        } else {
            format!("{parent}/{t}")
        };
        collect_types(r.get("resources"), &full, out);
        out.push(full);
    }
}

/// ARM's action wildcard: `*` matches any run of characters, `/` included; no case.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let a: Vec<char> = action.to_ascii_lowercase().chars().collect();
    // Iterative glob with backtracking to the last star.
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while j < a.len() {
        if i < p.len() && p[i] != '*' && p[i] == a[j] {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// One role definition's `permissions` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
}

impl Permission {
    /// `actions` minus `notActions`, within this one entry (as ARM evaluates them).
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action))
            && !self.not_actions.iter().any(|p| action_matches(p, action))
    }
}

/// Needed actions no permission entry grants.
pub fn missing_actions(needed: &[String], granted: &[Permission]) -> Vec<String> {
    needed
        .iter()
        .filter(|a| !granted.iter().any(|p| p.allows(a)))
        .cloned()
        .collect()
}

/// The object id (`oid`) of the principal a JWT access token was issued to.
pub fn principal_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("oid")?.as_str().map(str::to_string)
}

/// An ARM answer that was not 2xx, or no answer.
#[derive(Debug)]
struct CallError {
    status: Option<u16>,
    code: String,
    message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s} {}: {}", self.code, self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// The preflight's ARM client for one subscription.
pub struct ArmPreflight {
    clients: ArmClients,
    calls: AtomicU32,
}

impl ArmPreflight {
    pub fn new(conn: ArmConnection) -> Result<Self, AzureError> {
        if conn.subscription_id.trim().is_empty() {
            return Err(AzureError::NoSubscription);
        }
        Ok(Self {
            clients: ArmClients::new(conn)?,
            calls: AtomicU32::new(0),
        })
    }

    /// HTTP requests sent so far (retries included).
    pub fn api_calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    fn sub(&self) -> &str {
        &self.clients.conn.subscription_id
    }

    fn source(&self) -> &str {
        &self.clients.conn.credential_source
    }

    /// GET `path` (with its query) on the ARM endpoint.
    async fn get(&self, token: &Secret, path: &str) -> Result<Value, CallError> {
        let base = self.clients.conn.base_url().map_err(|e| CallError {
            status: None,
            code: String::new(),
            message: e.to_string(),
        })?;
        let url = base
            .join(path.trim_start_matches('/'))
            .map_err(|e| CallError {
                status: None,
                code: String::new(),
                message: format!("{path} is not a URL path: {e}"),
            })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .clients
                .http
                .get(url.clone())
                .bearer_auth(token.expose())
                .send()
                .await;
            let backoff = Duration::from_millis(100 * 2u64.pow(attempt - 1));
            match sent {
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!("ARM GET {path}: {e}; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    return Err(CallError {
                        status: None,
                        code: String::new(),
                        message: format!("could not reach ARM: {e}"),
                    })
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let body = resp.bytes().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return serde_json::from_slice(&body).map_err(|e| CallError {
                            status: Some(status),
                            code: "Malformed".into(),
                            message: format!("the answer is not JSON: {e}"),
                        });
                    }
                    if (status == 429 || status >= 500) && attempt < ATTEMPTS {
                        tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
                        continue;
                    }
                    let e = error_from_body(&body);
                    return Err(CallError {
                        status: Some(status),
                        code: e.code.unwrap_or_else(|| "Unknown".into()),
                        message: e.message.unwrap_or_else(|| "no message".into()),
                    });
                }
            }
        }
    }

    /// A check that could not be made (permission to read it missing, endpoint without it).
    fn could_not(&self, location: &str, check: &str, what: &str, e: &CallError) -> Check {
        let detail = match e.status {
            Some(403) => format!(
                "not checked: the identity from {} may not read {what} ({e}); add the read from ci/azure/role.json",
                self.source()
            ),
            Some(404) | Some(405) if self.clients.conn.endpoint.is_some() => {
                format!("not supported by this endpoint: {what} ({e})")
            }
            _ => format!("not checked: {what}: {e}"),
        };
        Check::warn(PROVIDER, location, check, detail)
    }

    /// Every check for this location, in reading order. Without a token, or with a
    /// subscription ARM refuses, the rest is not attempted.
    pub async fn run(&self, plan: &ArmPreflightPlan) -> Vec<Check> {
        let location = plan.location.as_str();
        let mut out = Vec::new();
        let token = match self.identity(location).await {
            Ok((token, check)) => {
                out.push(check);
                token
            }
            Err(check) => {
                out.push(check);
                return out;
            }
        };
        out.extend(self.registration(&token, location).await);
        out.push(self.permissions(&token, plan).await);
        let sizes = vm_sizes(&plan.template, &plan.parameters);
        match self.skus(&token, location).await {
            Ok(skus) => {
                let (check, found) = capacity(location, &sizes, &skus);
                out.push(check);
                if plan.use_spot {
                    out.push(spot(location, &found));
                }
                out.push(self.quota(&token, location, &found, plan.use_spot).await);
            }
            Err(e) => out.push(self.could_not(location, "capacity", "Microsoft.Compute/skus", &e)),
        }
        out
    }

    async fn identity(&self, location: &str) -> Result<(Secret, Check), Check> {
        let token = self.clients.bearer().await.map_err(|e| {
            Check::fail(
                PROVIDER,
                location,
                "identity",
                format!("no token from {}: {e}", self.source()),
                "log in again: `az login` (or renew the federated token / AZURE_CLIENT_SECRET the credential uses)",
            )
        })?;
        let sub = self.sub().to_string();
        match self
            .get(
                &token,
                &format!("subscriptions/{sub}?api-version={SUBSCRIPTION_API}"),
            )
            .await
        {
            Ok(v) => {
                let state = v["state"].as_str().unwrap_or("unknown");
                let name = v["displayName"].as_str().unwrap_or(&sub);
                let detail = format!(
                    "token from {}; subscription {sub} ({name}) is {state}",
                    self.source()
                );
                if state.eq_ignore_ascii_case("Enabled") {
                    Ok((token, Check::ok(PROVIDER, location, "identity", detail)))
                } else {
                    Err(Check::fail(
                        PROVIDER,
                        location,
                        "identity",
                        detail,
                        "use an Enabled subscription (AZURE_SUBSCRIPTION_ID / [azure] subscription_id), or re-enable this one in the portal",
                    ))
                }
            }
            Err(e) => {
                let fix = match (e.status, e.code.as_str()) {
                    (Some(401), _) => "log in again: `az login` (the token ARM got is expired or for another tenant: `az login --tenant <id>`)",
                    (Some(403), _) | (Some(404), _) | (_, "SubscriptionNotFound") => "check AZURE_SUBSCRIPTION_ID and that the identity has a role on that subscription",
                    _ => "check --azure-endpoint and network access to ARM",
                };
                Err(Check::fail(
                    PROVIDER,
                    location,
                    "identity",
                    format!(
                        "subscription {sub} with the token from {}: {e}",
                        self.source()
                    ),
                    fix,
                ))
            }
        }
    }

    async fn registration(&self, token: &Secret, location: &str) -> Vec<Check> {
        let sub = self.sub().to_string();
        let mut out = Vec::new();
        for ns in PROVIDERS {
            let path = format!("subscriptions/{sub}/providers/{ns}?api-version={PROVIDERS_API}");
            match self.get(token, &path).await {
                Ok(v) => {
                    let state = v["registrationState"].as_str().unwrap_or("unknown");
                    let detail = format!("{ns} is {state}");
                    if state.eq_ignore_ascii_case("Registered") {
                        out.push(Check::ok(PROVIDER, location, "registration", detail));
                    } else {
                        out.push(Check::fail(
                            PROVIDER,
                            location,
                            "registration",
                            detail,
                            format!(
                                "register {ns}: az provider register -n {ns} --subscription {sub}"
                            ),
                        ));
                    }
                }
                Err(e) => out.push(self.could_not(location, "registration", ns, &e)),
            }
        }
        out
    }

    async fn permissions(&self, token: &Secret, plan: &ArmPreflightPlan) -> Check {
        let location = plan.location.as_str();
        const POLICY_NOTE: &str = "Azure Policy denials are not visible this way; the run's resource group does not exist yet, so only subscription-scope (and inherited) assignments count";
        let Some(principal) = principal_of(token.expose()) else {
            return Check::warn(
                PROVIDER,
                location,
                "permissions",
                format!(
                    "not checked: the token from {} names no principal (no `oid` claim); {POLICY_NOTE}",
                    self.source()
                ),
            );
        };
        let sub = self.sub().to_string();
        let path = format!(
            "subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHORIZATION_API}&$filter=assignedTo('{principal}')"
        );
        let assignments = match self.get(token, &path).await {
            Ok(v) => v["value"].as_array().cloned().unwrap_or_default(),
            Err(e) => return self.could_not(location, "permissions", "role assignments", &e),
        };
        let scope = format!("/subscriptions/{sub}");
        let mut roles = BTreeSet::new();
        for a in &assignments {
            let s = a["properties"]["scope"].as_str().unwrap_or_default();
            // Inherited from above (root, management groups) or at the subscription itself.
            let covers = s == "/"
                || s.eq_ignore_ascii_case(&scope)
                || s.to_ascii_lowercase()
                    .starts_with("/providers/microsoft.management/managementgroups/");
            if let (true, Some(r)) = (covers, a["properties"]["roleDefinitionId"].as_str()) {
                roles.insert(r.to_string());
            }
        }
        let mut granted = Vec::new();
        let mut names = Vec::new();
        for role in &roles {
            let path = format!(
                "{}?api-version={AUTHORIZATION_API}",
                role.trim_start_matches('/')
            );
            let def = match self.get(token, &path).await {
                Ok(v) => v,
                Err(e) => return self.could_not(location, "permissions", "role definitions", &e),
            };
            names.push(
                def["properties"]["roleName"]
                    .as_str()
                    .unwrap_or(role)
                    .to_string(),
            );
            for p in def["properties"]["permissions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let list = |k: &str| -> Vec<String> {
                    p[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                };
                granted.push(Permission {
                    actions: list("actions"),
                    not_actions: list("notActions"),
                });
            }
        }
        let needed = needed_actions(&plan.template);
        let missing = missing_actions(&needed, &granted);
        if missing.is_empty() {
            Check::ok(
                PROVIDER,
                location,
                "permissions",
                format!(
                    "principal {principal} has the {} actions the run needs at {scope} (roles: {}); {POLICY_NOTE}",
                    needed.len(),
                    names.join(", ")
                ),
            )
        } else {
            Check::fail(
                PROVIDER,
                location,
                "permissions",
                format!(
                    "principal {principal} lacks {} at {scope} (roles: {}); {POLICY_NOTE}",
                    missing.join(", "),
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ),
                format!(
                    "grant {} to {principal} on {scope} (ci/azure/role.json has them: az role definition create --role-definition ci/azure/role.json, then az role assignment create)",
                    missing.join(", ")
                ),
            )
        }
    }

    async fn skus(&self, token: &Secret, location: &str) -> Result<Vec<Value>, CallError> {
        let sub = self.sub().to_string();
        let mut path = format!(
            "subscriptions/{sub}/providers/Microsoft.Compute/skus?api-version={SKUS_API}&$filter=location eq '{location}'"
        );
        let mut out = Vec::new();
        // nextLink pages (absolute URLs) are followed on the same endpoint.
        for _ in 0..20 {
            let v = self.get(token, &path).await?;
            out.extend(
                v["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["resourceType"].as_str() == Some("virtualMachines"))
                    .cloned(),
            );
            match v["nextLink"].as_str().and_then(|l| url::Url::parse(l).ok()) {
                Some(next) => {
                    path = match next.query() {
                        Some(q) => format!("{}?{q}", next.path()),
                        None => next.path().to_string(),
                    }
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn quota(&self, token: &Secret, location: &str, sizes: &[Size], spot: bool) -> Check {
        let sub = self.sub().to_string();
        let path = format!(
            "subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/usages?api-version={USAGES_API}"
        );
        let usages = match self.get(token, &path).await {
            Ok(v) => v["value"].as_array().cloned().unwrap_or_default(),
            Err(e) => return self.could_not(location, "quota", "Microsoft.Compute usages", &e),
        };
        quota_check(location, sizes, spot, &usages)
    }
}

/// One VM size of the run, as `Microsoft.Compute/skus` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub name: String,
    pub family: String,
    pub vcpus: u32,
    pub spot_capable: bool,
}

fn capability<'a>(sku: &'a Value, name: &str) -> Option<&'a str> {
    sku["capabilities"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str() == Some(name))?["value"]
        .as_str()
}

/// Each size is offered in the location without a restriction for this subscription.
fn capacity(location: &str, sizes: &[String], skus: &[Value]) -> (Check, Vec<Size>) {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for size in sizes {
        let Some(sku) = skus.iter().find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(size))
        }) else {
            problems.push(format!("{size} is not offered in {location}"));
            continue;
        };
        let restricted: Vec<String> = sku["restrictions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["type"].as_str() == Some("Location"))
            .map(|r| r["reasonCode"].as_str().unwrap_or("restricted").to_string())
            .collect();
        if !restricted.is_empty() {
            problems.push(format!(
                "{size} is restricted in {location} for this subscription ({})",
                restricted.join(", ")
            ));
        }
        found.push(Size {
            name: size.clone(),
            family: sku["family"].as_str().unwrap_or_default().to_string(),
            vcpus: capability(sku, "vCPUs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            spot_capable: capability(sku, "LowPriorityCapable")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        });
    }
    let check = if problems.is_empty() {
        Check::ok(
            PROVIDER,
            location,
            "capacity",
            format!(
                "{} offered in {location} without restriction",
                sizes.join(", ")
            ),
        )
    } else {
        Check::fail(
            PROVIDER,
            location,
            "capacity",
            problems.join("; "),
            "pick a size offered there ([azure.parameters] serverVmSize / clientVmSize) or another location (--azure-locations); `az vm list-skus -l <location> --size <size>` shows restrictions",
        )
    };
    (check, found)
}

fn spot(location: &str, sizes: &[Size]) -> Check {
    let not: Vec<&str> = sizes
        .iter()
        .filter(|s| !s.spot_capable)
        .map(|s| s.name.as_str())
        .collect();
    if !not.is_empty() {
        Check::fail(
            PROVIDER,
            location,
            "spot",
            format!(
                "{} cannot run as Spot (LowPriorityCapable is False)",
                not.join(", ")
            ),
            "set [azure] use_spot = false, or pick Spot-capable sizes (e.g. Standard_D2as_v5)",
        )
    } else {
        Check::ok(PROVIDER, location, "spot", "every size can run as Spot")
    }
}

/// Room in the usages the run's VMs count against: the family and regional vCPUs, or
/// `lowPriorityCores` for Spot.
fn quota_check(location: &str, sizes: &[Size], spot: bool, usages: &[Value]) -> Check {
    let mut need: BTreeMap<String, u32> = BTreeMap::new();
    for s in sizes {
        if spot {
            *need.entry("lowPriorityCores".into()).or_default() += s.vcpus;
        } else {
            *need.entry(s.family.clone()).or_default() += s.vcpus;
            *need.entry("cores".into()).or_default() += s.vcpus;
        }
    }
    let mut lines = Vec::new();
    let mut short = Vec::new();
    for (name, n) in &need {
        let Some(u) = usages.iter().find(|u| {
            u["name"]["value"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(name))
        }) else {
            lines.push(format!("{name}: no usage reported"));
            continue;
        };
        let limit = u["limit"].as_u64().unwrap_or(0) as u32;
        let current = u["currentValue"].as_u64().unwrap_or(0) as u32;
        let free = limit.saturating_sub(current);
        let label = u["name"]["localizedValue"]
            .as_str()
            .unwrap_or(name)
            .to_string();
        lines.push(format!("{label}: {current}/{limit}, need {n}"));
        if *n > free {
            short.push(format!(
                "request a vCPU quota increase for {label} in {location}: need {n}, have {free}"
            ));
        }
    }
    if short.is_empty() {
        Check::ok(PROVIDER, location, "quota", lines.join("; "))
    } else {
        Check::fail(
            PROVIDER,
            location,
            "quota",
            lines.join("; "),
            format!(
                "{} (portal: Subscriptions > Usage + quotas)",
                short.join("; ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_across_segments_and_ignore_case() {
        assert!(action_matches(
            "*",
            "Microsoft.Compute/virtualMachines/write"
        ));
        assert!(action_matches("*/read", "Microsoft.Compute/skus/read"));
        assert!(!action_matches(
            "*/read",
            "Microsoft.Compute/virtualMachines/write"
        ));
        assert!(action_matches(
            "microsoft.compute/*",
            "Microsoft.Compute/virtualMachines/extensions/write"
        ));
        assert!(action_matches(
            "Microsoft.*/virtualMachines/*",
            "Microsoft.Compute/virtualMachines/write"
        ));
        assert!(!action_matches(
            "Microsoft.Network/*",
            "Microsoft.Compute/disks/read"
        ));
    }

    #[test]
    fn not_actions_subtract_within_their_own_role_only() {
        let owner_minus = Permission {
            actions: vec!["*".into()],
            not_actions: vec!["Microsoft.Compute/virtualMachines/write".into()],
        };
        let needed = vec![
            "Microsoft.Compute/virtualMachines/write".to_string(),
            "Microsoft.Network/virtualNetworks/write".to_string(),
        ];
        assert_eq!(
            missing_actions(&needed, std::slice::from_ref(&owner_minus)),
            ["Microsoft.Compute/virtualMachines/write"]
        );
        let vm_contributor = Permission {
            actions: vec!["Microsoft.Compute/virtualMachines/*".into()],
            not_actions: vec![],
        };
        assert!(missing_actions(&needed, &[owner_minus, vm_contributor]).is_empty());
    }

    #[test]
    fn needed_actions_follow_the_template_types() {
        let t = json!({"resources": [
            {"type": "Microsoft.Compute/virtualMachines", "resources": [{"type": "extensions"}]},
            {"type": "Microsoft.Network/publicIPAddresses"}
        ]});
        let a = needed_actions(&t);
        for want in [
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Compute/virtualMachines/extensions/write",
            "Microsoft.Network/publicIPAddresses/write",
            "Microsoft.Resources/deployments/write",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
    }

    #[test]
    fn spot_counts_against_low_priority_cores_only() {
        let sizes = vec![Size {
            name: "Standard_D2as_v5".into(),
            family: "standardDASv5Family".into(),
            vcpus: 2,
            spot_capable: true,
        }];
        let usages = vec![
            json!({"name": {"value": "cores", "localizedValue": "Total Regional vCPUs"}, "currentValue": 10, "limit": 10}),
            json!({"name": {"value": "standardDASv5Family", "localizedValue": "Standard DASv5 Family vCPUs"}, "currentValue": 10, "limit": 10}),
            json!({"name": {"value": "lowPriorityCores", "localizedValue": "Total Regional Low-priority vCPUs"}, "currentValue": 0, "limit": 3}),
        ];
        assert_eq!(
            quota_check("eastus", &sizes, true, &usages).status,
            cloudtest_core::CheckStatus::Ok
        );
        let regular = quota_check("eastus", &sizes, false, &usages);
        assert_eq!(regular.status, cloudtest_core::CheckStatus::Fail);
        assert!(regular.fix.contains("need 2, have 0"), "{}", regular.fix);
    }

    #[test]
    fn principal_comes_from_the_oid_claim() {
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.sig",
            enc(json!({"alg": "RS256"})),
            enc(json!({"oid": "abc"}))
        );
        assert_eq!(principal_of(&token).as_deref(), Some("abc"));
        assert_eq!(principal_of("opaque-token"), None);
    }
}
