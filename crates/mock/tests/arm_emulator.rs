//! The ARM emulator over real HTTP: shapes, long-running operations, template evaluation,
//! scenarios and faults, as a client such as `azure_mgmt_resources` sees them.

use std::sync::Arc;
use std::time::Duration;

use cloudtest_mock::arm::{custom_script_message, ArmEmulator, MOCK_SUBSCRIPTION_ID};
use cloudtest_mock::hooks::{RecordingServers, PLACEHOLDER_CA_PEM};
use cloudtest_mock::{EmulatorContext, EmulatorState, FaultPlan, FaultSpec, Scenario};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SUB: &str = MOCK_SUBSCRIPTION_ID;
const API: &str = "api-version=2021-04-01";

struct Harness {
    arm: ArmEmulator,
    servers: Arc<RecordingServers>,
    http: reqwest::Client,
}

impl Harness {
    async fn start(scenario: Scenario, latency: Duration, faults: Vec<FaultSpec>) -> Self {
        let servers = Arc::new(RecordingServers::default());
        let ctx = EmulatorContext {
            scenario,
            latency,
            faults: Arc::new(FaultPlan::new(faults, Duration::from_millis(50))),
            servers: servers.clone(),
        };
        let arm = ArmEmulator::start(ctx).await.expect("start ARM emulator");
        Harness {
            arm,
            servers,
            http: reqwest::Client::new(),
        }
    }

    async fn healthy() -> Self {
        Self::start(Scenario::Healthy, Duration::ZERO, Vec::new()).await
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            return path.to_string();
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{sep}{API}", self.arm.endpoint())
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth("test-token");
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let r = self.send(method, path, body).await;
        let status = r.status();
        let text = r.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, v)
    }

    async fn put_rg(&self, rg: &str, tags: Value) -> (StatusCode, Value) {
        self.json(
            Method::PUT,
            &rg_path(rg),
            Some(json!({"location": "westeurope", "tags": tags})),
        )
        .await
    }

    async fn put_deployment(&self, rg: &str, name: &str, params: Value) -> reqwest::Response {
        let body = json!({"properties": {"template": test_template(), "parameters": params, "mode": "Incremental"}});
        self.send(Method::PUT, &deployment_path(rg, name), Some(body))
            .await
    }

    /// Polls an LRO URL until it leaves its in-progress answer; returns the last answer.
    async fn poll(&self, url: &str) -> (StatusCode, Value) {
        for _ in 0..10 {
            let (status, v) = self.json(Method::GET, url, None).await;
            let running = status == StatusCode::ACCEPTED
                || v.get("status")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s == "Running" || s == "Accepted");
            if !running {
                return (status, v);
            }
        }
        panic!("{url} never finished");
    }

    async fn delete_rg(&self, rg: &str) -> (StatusCode, Value) {
        let r = self.send(Method::DELETE, &rg_path(rg), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = header(&r, "location");
        assert!(location.starts_with(&self.arm.endpoint()), "{location}");
        self.poll(&location).await
    }

    async fn tagged_resources(&self, run_id: &str) -> Vec<Value> {
        let filter = format!("tagName eq 'cloudtest:run-id' and tagValue eq '{run_id}'");
        let q = format!(
            "/subscriptions/{SUB}/resources?$filter={}",
            urlencode(&filter)
        );
        let (status, v) = self.json(Method::GET, &q, None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["value"].as_array().cloned().expect("value array")
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_string()
}

fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourcegroups/{rg}")
}

fn deployment_path(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourcegroups/{rg}/providers/Microsoft.Resources/deployments/{name}"
    )
}

/// A small template in the shape of the Velociraptor one: tagged public IP, VM with a nested
/// CustomScript extension, a copy loop, outputs through reference()/format()/resourceId().
fn test_template() -> Value {
    json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "runId": {"type": "string"},
            "adminUser": {"type": "string", "defaultValue": "cloudtest-admin"},
            "adminPassword": {"type": "securestring", "minLength": 24},
            "velociraptorVersion": {"type": "string", "defaultValue": "0.77.2"},
            "useSpot": {"type": "bool", "defaultValue": false},
            "frontendPort": {"type": "int", "defaultValue": 8000},
            "requirement": {"type": "string", "defaultValue": "CLOUD-02", "allowedValues": ["CLOUD-01", "CLOUD-02"]}
        },
        "variables": {
            "prefix": "[concat('vr-', take(parameters('runId'), 8))]",
            "vmName": "[concat(variables('prefix'), '-server')]",
            "tags": {"cloudtest:run-id": "[parameters('runId')]", "cloudtest:requirement": "[parameters('requirement')]"}
        },
        "resources": [
            {
                "type": "Microsoft.Network/publicIPAddresses",
                "apiVersion": "2023-04-01",
                "name": "[concat(variables('prefix'), '-ip')]",
                "location": "[resourceGroup().location]",
                "tags": "[variables('tags')]",
                "properties": {"publicIPAllocationMethod": "Static"}
            },
            {
                "type": "Microsoft.Network/networkSecurityGroups",
                "apiVersion": "2023-04-01",
                "name": "[concat(variables('prefix'), '-nsg', copyIndex())]",
                "location": "[resourceGroup().location]",
                "tags": "[variables('tags')]",
                "copy": {"name": "nsgs", "count": 2}
            },
            {
                "type": "Microsoft.Compute/virtualMachines",
                "apiVersion": "2023-03-01",
                "name": "[variables('vmName')]",
                "location": "[resourceGroup().location]",
                "tags": "[variables('tags')]",
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_B2s"},
                    "priority": "[if(parameters('useSpot'), 'Spot', 'Regular')]",
                    "osProfile": {"adminUsername": "azureuser", "customData": "[base64(parameters('velociraptorVersion'))]"}
                },
                "resources": [
                    {
                        "type": "extensions",
                        "apiVersion": "2023-03-01",
                        "name": "boot",
                        "location": "[resourceGroup().location]",
                        "dependsOn": ["[variables('vmName')]"],
                        "properties": {
                            "publisher": "Microsoft.Azure.Extensions",
                            "type": "CustomScript",
                            "typeHandlerVersion": "2.1"
                        }
                    }
                ]
            }
        ],
        "outputs": {
            "ServerAddress": {"type": "string", "value": "[reference(resourceId('Microsoft.Network/publicIPAddresses', concat(variables('prefix'), '-ip'))).ipAddress]"},
            "FrontendUrl": {"type": "string", "value": "[format('https://{0}:{1}/', reference(resourceId('Microsoft.Network/publicIPAddresses', concat(variables('prefix'), '-ip')), '2023-04-01').ipAddress, parameters('frontendPort'))]"},
            "CaCertificate": {"type": "string", "value": "[reference(resourceId('Microsoft.Compute/virtualMachines/extensions', variables('vmName'), 'boot'), '2023-03-01', 'Full').properties.instanceView.statuses[0].message]"},
            "ExpectedClients": {"type": "int", "value": 1},
            "VelociraptorVersion": {"type": "string", "value": "[parameters('velociraptorVersion')]"},
            "Priority": {"type": "string", "value": "[reference(variables('vmName')).priority]"}
        }
    })
}

fn good_params(run_id: &str) -> Value {
    json!({
        "runId": {"value": run_id},
        "adminPassword": {"value": "correct-horse-battery-staple-0123"},
        "useSpot": {"value": true},
        "frontendPort": {"value": 18000}
    })
}

/// PUT → 201 + Azure-AsyncOperation (Accepted) → poll until terminal; returns the status body.
async fn deploy(h: &Harness, rg: &str, name: &str, params: Value) -> Value {
    let r = h.put_deployment(rg, name, params).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let status_url = header(&r, "azure-asyncoperation");
    assert!(status_url.starts_with(&h.arm.endpoint()), "{status_url}");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["properties"]["provisioningState"], "Accepted");
    h.poll(&status_url).await.1
}

#[tokio::test]
async fn requests_without_bearer_get_401() {
    let h = Harness::healthy().await;
    let r = h
        .http
        .get(h.url(&rg_path("rg1")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").starts_with("Bearer "));
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], "AuthenticationFailed");
    let r = h
        .http
        .get(h.url(&rg_path("rg1")))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_version_is_required() {
    let h = Harness::healthy().await;
    let url = format!("{}{}", h.arm.endpoint(), rg_path("rg1"));
    let r = h
        .http
        .get(url)
        .bearer_auth("t")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], "MissingApiVersionParameter");
}

#[tokio::test]
async fn resource_group_lifecycle_with_lro_delete() {
    let h = Harness::healthy().await;
    let (status, v) = h.put_rg("rg1", json!({"cloudtest:run-id": "r1"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(v["id"], format!("/subscriptions/{SUB}/resourceGroups/rg1"));
    assert_eq!(v["name"], "rg1");
    assert_eq!(v["type"], "Microsoft.Resources/resourceGroups");
    assert_eq!(v["location"], "westeurope");
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    assert_eq!(v["tags"]["cloudtest:run-id"], "r1");
    assert_eq!(h.put_rg("rg1", json!({})).await.0, StatusCode::OK);
    // ARM paths are case-insensitive.
    let (status, v) = h
        .json(
            Method::GET,
            &format!("/SUBSCRIPTIONS/{SUB}/resourceGroups/RG1"),
            None,
        )
        .await;
    assert_eq!((status, v["name"].clone()), (StatusCode::OK, json!("rg1")));
    assert_eq!(
        h.send(Method::HEAD, &rg_path("rg1"), None).await.status(),
        StatusCode::NO_CONTENT
    );
    let (status, v) = h
        .json(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["value"].as_array().map(Vec::len), Some(1));

    let r = h.send(Method::DELETE, &rg_path("rg1"), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    assert!(location.contains("/operationresults/"), "{location}");
    assert_eq!(header(&r, "retry-after"), "0");
    // Never synchronous: the group still shows until the operation is polled.
    assert_eq!(h.poll(&location).await.0, StatusCode::OK);
    let (status, v) = h.json(Method::GET, &rg_path("rg1"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "ResourceGroupNotFound");
    assert_eq!(
        v["error"]["message"],
        "Resource group 'rg1' could not be found."
    );
    assert_eq!(
        h.send(Method::HEAD, &rg_path("rg1"), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(h.arm.remaining().is_empty());
}

#[tokio::test]
async fn resource_group_put_needs_location() {
    let h = Harness::healthy().await;
    let (status, v) = h
        .json(Method::PUT, &rg_path("rg1"), Some(json!({"tags": {}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "LocationRequired");
}

#[tokio::test]
async fn deployment_succeeds_with_evaluated_outputs_and_boots_once() {
    let h = Harness::healthy().await;
    h.put_rg("rg1", json!({"cloudtest:run-id": "run12345abc"}))
        .await;
    let status = deploy(&h, "rg1", "vr", good_params("run12345abc")).await;
    assert_eq!(status, json!({"status": "Succeeded"}));

    let (code, d) = h
        .json(Method::GET, &deployment_path("rg1", "vr"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let id = format!(
        "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Resources/deployments/vr"
    );
    assert_eq!(d["id"], id);
    assert_eq!(d["name"], "vr");
    assert_eq!(d["type"], "Microsoft.Resources/deployments");
    let p = &d["properties"];
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(p["mode"], "Incremental");
    for field in ["timestamp", "duration", "correlationId", "templateHash"] {
        assert!(p[field].is_string(), "{field} missing: {p}");
    }
    assert!(
        chrono::DateTime::parse_from_rfc3339(p["timestamp"].as_str().unwrap_or_default()).is_ok()
    );
    assert!(p["duration"].as_str().unwrap_or_default().starts_with("PT"));
    // Secure parameters are echoed without their value.
    assert_eq!(
        p["parameters"]["adminPassword"],
        json!({"type": "SecureString"})
    );
    assert_eq!(
        p["parameters"]["frontendPort"],
        json!({"type": "Int", "value": 18000})
    );
    let outputs = &p["outputs"];
    assert_eq!(
        outputs["ServerAddress"],
        json!({"type": "String", "value": "127.0.0.1"})
    );
    assert_eq!(outputs["FrontendUrl"]["value"], "https://127.0.0.1:18000/");
    assert_eq!(
        outputs["CaCertificate"]["value"],
        custom_script_message(PLACEHOLDER_CA_PEM)
    );
    assert_eq!(
        outputs["ExpectedClients"],
        json!({"type": "Int", "value": 1})
    );
    assert_eq!(outputs["VelociraptorVersion"]["value"], "0.77.2");
    assert_eq!(outputs["Priority"]["value"], "Spot");
    assert_eq!(p["outputResources"].as_array().map(Vec::len), Some(5));

    let deployed = h.servers.deployed.lock().expect("lock").clone();
    assert_eq!(deployed.len(), 1);
    assert_eq!(deployed[0].deployment, id);
    assert_eq!(deployed[0].admin_user, "cloudtest-admin");
    assert_eq!(
        deployed[0].admin_password,
        "correct-horse-battery-staple-0123"
    );
    assert_eq!(deployed[0].version, "0.77.2");
    assert_eq!(deployed[0].expected_clients, 1);

    // The SDK's `.await` re-sends the PUT: an identical repeat neither restarts nor reboots.
    let r = h
        .put_deployment("rg1", "vr", good_params("run12345abc"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.servers.deployed.lock().expect("lock").len(), 1);

    let (code, ops) = h
        .json(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups/rg1/deployments/vr/operations"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let ops = ops["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(ops.len(), 5);
    assert!(ops
        .iter()
        .all(|o| o["properties"]["provisioningState"] == "Succeeded"));
    assert!(ops
        .iter()
        .any(|o| o["properties"]["targetResource"]["resourceType"]
            == "Microsoft.Compute/virtualMachines/extensions"
            && o["properties"]["targetResource"]["resourceName"] == "vr-run12345-server/boot"));

    // Leak check by tag sees the tagged template resources (the extension has no tags).
    let tagged = h.tagged_resources("run12345abc").await;
    let mut types: Vec<&str> = tagged.iter().filter_map(|r| r["type"].as_str()).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Network/networkSecurityGroups",
            "Microsoft.Network/networkSecurityGroups",
            "Microsoft.Network/publicIPAddresses"
        ]
    );
    assert!(tagged.iter().all(
        |r| r["id"].as_str().is_some_and(|id| id.starts_with(&format!(
            "/subscriptions/{SUB}/resourceGroups/rg1/providers/"
        )))
    ));
    let (_, in_rg) = h
        .json(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourceGroups/rg1/resources"),
            None,
        )
        .await;
    assert_eq!(in_rg["value"].as_array().map(Vec::len), Some(5));

    assert_eq!(h.delete_rg("rg1").await.0, StatusCode::OK);
    assert!(h.tagged_resources("run12345abc").await.is_empty());
    assert_eq!(h.servers.undeployed.lock().expect("lock").clone(), vec![id]);
    assert_eq!(
        h.json(Method::GET, &deployment_path("rg1", "vr"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(h.arm.remaining().is_empty(), "{:?}", h.arm.remaining());
}

#[tokio::test(start_paused = true)]
async fn deployment_runs_for_the_emulated_latency() {
    let h = Harness::start(Scenario::Healthy, Duration::from_secs(30), Vec::new()).await;
    h.put_rg("rg1", json!({})).await;
    let r = h.put_deployment("rg1", "vr", good_params("r1")).await;
    let status_url = header(&r, "azure-asyncoperation");
    let (_, s) = h.json(Method::GET, &status_url, None).await;
    assert_eq!(s["status"], "Running");
    let (_, d) = h
        .json(Method::GET, &deployment_path("rg1", "vr"), None)
        .await;
    assert_eq!(d["properties"]["provisioningState"], "Running");
    assert!(d["properties"].get("outputs").is_none());
    assert!(h.servers.deployed.lock().expect("lock").is_empty());
    tokio::time::advance(Duration::from_secs(31)).await;
    let (_, s) = h.json(Method::GET, &status_url, None).await;
    assert_eq!(s["status"], "Succeeded");

    let r = h.send(Method::DELETE, &rg_path("rg1"), None).await;
    assert_eq!(header(&r, "retry-after"), "15");
    let location = header(&r, "location");
    assert_eq!(
        h.send(Method::GET, &location, None).await.status(),
        StatusCode::ACCEPTED
    );
    let (_, g) = h.json(Method::GET, &rg_path("rg1"), None).await;
    assert_eq!(g["properties"]["provisioningState"], "Deleting");
    // Without forceDeletionTypes the group's VM shuts down gracefully: twice the latency.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        h.send(Method::GET, &location, None).await.status(),
        StatusCode::ACCEPTED
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        h.send(Method::GET, &location, None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_parameters_are_rejected_like_arm() {
    let h = Harness::healthy().await;
    h.put_rg("rg1", json!({})).await;
    let cases = [
        (
            json!({"adminPassword": {"value": "x".repeat(24)}}),
            "The value for the template parameter 'runId' is not provided.",
        ),
        (
            json!({"runId": {"value": "r"}, "adminPassword": {"value": "x".repeat(24)}, "bogus": {"value": 1}}),
            "The template parameters 'bogus' in the parameters file are not valid",
        ),
        (
            json!({"runId": {"value": "r"}, "adminPassword": {"value": "x".repeat(24)}, "useSpot": {"value": "true"}}),
            "Expected a value of type 'Boolean', but received a value of type 'String'",
        ),
        (
            json!({"runId": {"value": "r"}, "adminPassword": {"value": "x".repeat(24)}, "frontendPort": {"value": "8000"}}),
            "Expected a value of type 'Integer'",
        ),
        (
            json!({"runId": {"value": "r"}, "adminPassword": {"value": "x".repeat(24)}, "requirement": {"value": "CLOUD-09"}}),
            "is not part of the allowed value(s): 'CLOUD-01,CLOUD-02'",
        ),
        (
            json!({"runId": {"value": "r"}, "adminPassword": {"value": "short"}}),
            "less than the minimum length '24'",
        ),
    ];
    for (params, want) in cases {
        let r = h.put_deployment("rg1", "vr", params.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{params}");
        let v: Value = r.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], "InvalidTemplate", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Deployment template validation failed: '"),
            "{message}"
        );
        assert!(message.contains(want), "{message} should contain {want}");
    }
    // Nothing was created by a rejected deployment.
    assert_eq!(
        h.json(Method::GET, &deployment_path("rg1", "vr"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // validate answers the same checks without deploying.
    let body = json!({"properties": {"template": test_template(), "parameters": good_params("r"), "mode": "Incremental"}});
    let (status, v) = h
        .json(
            Method::POST,
            &format!("{}/validate", deployment_path("rg1", "vr")),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["properties"]["validatedResources"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
}

#[tokio::test]
async fn deployment_needs_its_resource_group() {
    let h = Harness::healthy().await;
    let r = h.put_deployment("missing", "vr", good_params("r")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], "ResourceGroupNotFound");
}

#[tokio::test]
async fn create_fails_scenario_fails_the_vm_with_sku_not_available() {
    let h = Harness::start(Scenario::CreateFails, Duration::ZERO, Vec::new()).await;
    h.put_rg("rg1", json!({"cloudtest:run-id": "r1"})).await;
    let status = deploy(&h, "rg1", "vr", good_params("r1")).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "DeploymentFailed");
    assert_eq!(status["error"]["details"][0]["code"], "SkuNotAvailable");
    let (_, d) = h
        .json(Method::GET, &deployment_path("rg1", "vr"), None)
        .await;
    assert_eq!(d["properties"]["provisioningState"], "Failed");
    assert!(d["properties"].get("outputs").is_none());
    let (_, ops) = h
        .json(
            Method::GET,
            &format!("{}/operations", deployment_path("rg1", "vr")),
            None,
        )
        .await;
    let failed: Vec<&Value> = ops["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["properties"]["provisioningState"] == "Failed")
        .collect();
    assert_eq!(failed.len(), 1);
    let p = &failed[0]["properties"];
    assert_eq!(p["statusCode"], "Conflict");
    assert_eq!(p["statusMessage"]["error"]["code"], "SkuNotAvailable");
    assert_eq!(
        p["targetResource"]["resourceType"],
        "Microsoft.Compute/virtualMachines"
    );
    assert_eq!(p["targetResource"]["resourceName"], "vr-r1-server");
    assert!(
        h.servers.deployed.lock().expect("lock").is_empty(),
        "a failed VM boots nothing"
    );
    // What did get created is still there for teardown to remove.
    assert_eq!(h.tagged_resources("r1").await.len(), 3);
    h.delete_rg("rg1").await;
    assert!(h.arm.remaining().is_empty());
}

#[tokio::test]
async fn teardown_leaks_scenario_leaves_one_tagged_disk() {
    let h = Harness::start(Scenario::TeardownLeaks, Duration::ZERO, Vec::new()).await;
    h.put_rg("rg1", json!({"cloudtest:run-id": "r1"})).await;
    deploy(&h, "rg1", "vr", good_params("r1")).await;
    assert_eq!(h.delete_rg("rg1").await.0, StatusCode::OK);
    assert_eq!(
        h.json(Method::GET, &rg_path("rg1"), None).await.0,
        StatusCode::NOT_FOUND
    );
    let left = h.tagged_resources("r1").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["type"], "Microsoft.Compute/disks");
    let remaining = h.arm.remaining();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["id"], left[0]["id"]);
    assert_eq!(remaining[0]["tags"]["cloudtest:run-id"], "r1");
}

#[tokio::test]
async fn delete_fails_scenario_fails_once_then_succeeds() {
    let h = Harness::start(Scenario::DeleteFails, Duration::ZERO, Vec::new()).await;
    h.put_rg("rg1", json!({})).await;
    deploy(&h, "rg1", "vr", good_params("r1")).await;
    let (status, v) = h.delete_rg("rg1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "ResourceGroupDeletionBlocked");
    let (status, g) = h.json(Method::GET, &rg_path("rg1"), None).await;
    assert_eq!(
        (status, g["properties"]["provisioningState"].clone()),
        (StatusCode::OK, json!("Succeeded"))
    );
    assert_eq!(h.delete_rg("rg1").await.0, StatusCode::OK);
    assert!(h.arm.remaining().is_empty());
}

#[tokio::test]
async fn throttled_scenario_refuses_the_first_calls_then_serves() {
    let h = Harness::start(Scenario::Throttled, Duration::ZERO, Vec::new()).await;
    for _ in 0..Scenario::THROTTLED_CALLS {
        let r = h
            .send(
                Method::GET,
                &format!("/subscriptions/{SUB}/resourcegroups"),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, "retry-after"), "1");
        let v: Value = r.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], "TooManyRequests");
    }
    assert_eq!(h.put_rg("rg1", json!({})).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn every_fault_kind_is_served() {
    let spec = |s: &str| s.parse::<FaultSpec>().expect("fault spec");
    let h = Harness::start(
        Scenario::Healthy,
        Duration::ZERO,
        vec![
            spec("ResourceGroups_Get:error"),
            spec("ResourceGroups_List:throttle"),
            spec("Resources_List:malformed"),
            spec("ResourceGroups_CheckExistence:reset"),
            spec("Deployments_Get:timeout"),
        ],
    )
    .await;
    let (status, v) = h.json(Method::GET, &rg_path("rg1"), None).await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!("InternalServerError")
        )
    );
    assert_eq!(
        h.json(Method::GET, &rg_path("rg1"), None).await.0,
        StatusCode::NOT_FOUND,
        "fires once"
    );

    let r = h
        .send(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups"),
            None,
        )
        .await;
    assert_eq!(
        (r.status(), header(&r, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, "1".to_string())
    );

    let r = h
        .send(
            Method::GET,
            &format!("/subscriptions/{SUB}/resources"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&r.text().await.expect("body")).is_err());

    let reset = h
        .http
        .head(h.url(&rg_path("rg1")))
        .bearer_auth("t")
        .send()
        .await;
    assert!(reset.is_err(), "reset must drop the connection");

    let started = std::time::Instant::now();
    let (status, _) = h
        .json(Method::GET, &deployment_path("rg1", "d"), None)
        .await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn planted_groups_are_listed_by_tag() {
    let h = Harness::healthy().await;
    h.arm.plant_resource_group(
        "old-run",
        [
            ("cloudtest:run-id", "old"),
            ("cloudtest:expires-at", "2020-01-01T00:00:00Z"),
        ],
    );
    h.arm
        .plant_resource_group("not-ours", Vec::<(String, String)>::new());
    let disk = h.arm.plant_resource(
        "old-run",
        "Microsoft.Compute/disks",
        "d1",
        [("cloudtest:run-id", "old")],
    );
    let filter = urlencode("tagName eq 'cloudtest:run-id'");
    let (_, v) = h
        .json(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups?$filter={filter}"),
            None,
        )
        .await;
    let names: Vec<&str> = v["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["old-run"]);
    assert_eq!(h.tagged_resources("old").await[0]["id"], disk);
    assert_eq!(h.arm.remaining().len(), 3);
    let (status, v) = h
        .json(
            Method::GET,
            &format!(
                "/subscriptions/{SUB}/resources?$filter={}",
                urlencode("tagValue eq 'x'")
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("InvalidFilterInQueryString"))
    );
}

/// The project's real ARM template, deployed with the parameters the Azure provider sends.
#[tokio::test]
async fn deploys_the_velociraptor_template() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../templates-arm/velociraptor.json"
    );
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(path).expect("read templates-arm/velociraptor.json"),
    )
    .expect("template is JSON");
    let h = Harness::healthy().await;
    h.put_rg("ct-run1", json!({"cloudtest:run-id": "run1"}))
        .await;
    let params = json!({
        "runId": {"value": "run1"},
        "expiresAt": {"value": "2030-01-01T00:00:00Z"},
        "requirement": {"value": "CLOUD-02"},
        "velociraptorVersion": {"value": "0.77.2"},
        "velociraptorSha256": {"value": "6c4c23c466d892788ff56ddcd3a31f844e4c0d797ade454c5e2625eb9e427077"},
        "adminUser": {"value": "cloudtest-admin"},
        "adminPassword": {"value": "a-password-of-at-least-24-chars"},
        "allowedCidr": {"value": "203.0.113.7/32"},
        "useSpot": {"value": false},
        "frontendPort": {"value": 18000},
        "guiPort": {"value": 18889}
    });
    let body =
        json!({"properties": {"template": template, "parameters": params, "mode": "Incremental"}});
    let r = h
        .send(
            Method::PUT,
            &deployment_path("ct-run1", "velociraptor"),
            Some(body),
        )
        .await;
    let status = r.status();
    let location = r
        .headers()
        .get("azure-asyncoperation")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    assert_eq!(
        status,
        StatusCode::CREATED,
        "ARM (and the emulator) reject templates-arm/velociraptor.json: {}",
        r.text().await.unwrap_or_default()
    );
    let (_, s) = h.poll(&location.expect("Azure-AsyncOperation")).await;
    assert_eq!(s["status"], "Succeeded", "{s}");
    let (_, d) = h
        .json(
            Method::GET,
            &deployment_path("ct-run1", "velociraptor"),
            None,
        )
        .await;
    let outputs = &d["properties"]["outputs"];
    assert_eq!(outputs["serverAddress"]["value"], "127.0.0.1");
    assert_eq!(outputs["frontendUrl"]["value"], "https://127.0.0.1:18000/");
    assert_eq!(outputs["guiUrl"]["value"], "https://127.0.0.1:18889/");
    assert_eq!(
        outputs["caCertificate"]["value"],
        custom_script_message(PLACEHOLDER_CA_PEM)
    );
    assert_eq!(outputs["velociraptorVersion"]["value"], "0.77.2");
    let deployed = h.servers.deployed.lock().expect("lock").clone();
    assert_eq!(
        deployed.len(),
        1,
        "two VMs, one emulated server per deployment"
    );
    assert_eq!(
        deployed[0].admin_password,
        "a-password-of-at-least-24-chars"
    );
    let tagged = h.tagged_resources("run1").await;
    assert!(tagged.len() >= 9, "{tagged:?}");
    h.delete_rg("ct-run1").await;
    assert!(h.arm.remaining().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_running_deployment_outlives_its_group_unless_cancelled() {
    // Not cancelled: the group goes, what the deployment goes on creating stays.
    let h = Harness::start(Scenario::SlowDeployment, Duration::from_secs(5), Vec::new()).await;
    h.put_rg("rg1", json!({})).await;
    let r = h.put_deployment("rg1", "vr", good_params("r1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::advance(Duration::from_secs(60)).await;
    let (_, d) = h
        .json(Method::GET, &deployment_path("rg1", "vr"), None)
        .await;
    assert_eq!(d["properties"]["provisioningState"], "Running");
    let r = h.send(Method::DELETE, &rg_path("rg1"), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        h.send(Method::GET, &location, None).await.status(),
        StatusCode::OK
    );
    assert!(
        !h.arm.remaining().is_empty(),
        "the deployment's resources should outlive the group"
    );
    assert!(!h.tagged_resources("r1").await.is_empty());

    // Cancelled and ended first: nothing is left.
    let h = Harness::start(Scenario::SlowDeployment, Duration::from_secs(5), Vec::new()).await;
    h.put_rg("rg2", json!({})).await;
    h.put_deployment("rg2", "vr", good_params("r2")).await;
    let cancel = format!("{}/cancel", deployment_path("rg2", "vr"));
    assert_eq!(
        h.send(Method::POST, &cancel, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let (_, d) = h
        .json(Method::GET, &deployment_path("rg2", "vr"), None)
        .await;
    assert_eq!(d["properties"]["provisioningState"], "Running");
    tokio::time::advance(Duration::from_secs(6)).await;
    let (_, d) = h
        .json(Method::GET, &deployment_path("rg2", "vr"), None)
        .await;
    assert_eq!(d["properties"]["provisioningState"], "Canceled");
    // Only Accepted or Running deployments can be cancelled.
    let (status, e) = h.json(Method::POST, &cancel, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    let r = h.send(Method::DELETE, &rg_path("rg2"), None).await;
    let location = header(&r, "location");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        h.send(Method::GET, &location, None).await.status(),
        StatusCode::OK
    );
    assert!(h.arm.remaining().is_empty(), "{:?}", h.arm.remaining());
}

#[tokio::test(start_paused = true)]
async fn vms_delay_the_group_delete_unless_force_deleted() {
    for (force, still_deleting) in [(false, true), (true, false)] {
        let h = Harness::start(Scenario::Healthy, Duration::from_secs(10), Vec::new()).await;
        h.put_rg("rg1", json!({})).await;
        h.put_deployment("rg1", "vr", good_params("r1")).await;
        tokio::time::advance(Duration::from_secs(11)).await;
        let (_, d) = h
            .json(Method::GET, &deployment_path("rg1", "vr"), None)
            .await;
        assert_eq!(d["properties"]["provisioningState"], "Succeeded");
        let path = if force {
            format!(
                "{}?forceDeletionTypes=Microsoft.Compute%2FvirtualMachines",
                rg_path("rg1")
            )
        } else {
            rg_path("rg1")
        };
        assert_eq!(
            h.send(Method::DELETE, &path, None).await.status(),
            StatusCode::ACCEPTED
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        let exists = h.send(Method::HEAD, &rg_path("rg1"), None).await.status();
        assert_eq!(
            exists == StatusCode::NO_CONTENT,
            still_deleting,
            "force={force}: HEAD {exists}"
        );
    }
}
