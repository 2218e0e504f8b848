//! `cloudtest sweep` for Azure: against the embedded ARM emulator with planted leftovers
//! (tagged and expired, tagged and fresh, untagged), and against a small scripted ARM for
//! the by-id resource DELETE (api-version choice, its long-running operation, refusals),
//! which the emulator does not serve.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cloudtest_azure::sweep::{delete, find_due, find_expired, SweepItem, SweepTarget};
use cloudtest_azure::ArmConnection;
use cloudtest_core::tags::SweepScope;
use cloudtest_core::{Backoff, ResourceKind, ResourceRef};
use cloudtest_mock::arm::ArmEmulator;
use cloudtest_mock::hooks::RecordingServers;
use cloudtest_mock::{EmulatorContext, EmulatorState, FaultPlan, Scenario};
use serde_json::{json, Value};
use tokio::time::Instant;

const RUN_ID: &str = "cloudtest:run-id";
const EXPIRES: &str = "cloudtest:expires-at";
const DISK: &str = "Microsoft.Compute/disks";

fn poll() -> Backoff {
    Backoff::new(Duration::from_millis(1), Duration::from_millis(5))
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn past() -> String {
    (Utc::now() - chrono::Duration::hours(1)).to_rfc3339()
}

fn future() -> String {
    (Utc::now() + chrono::Duration::hours(6)).to_rfc3339()
}

async fn emulator() -> ArmEmulator {
    ArmEmulator::start(EmulatorContext {
        scenario: Scenario::Healthy,
        latency: Duration::ZERO,
        faults: Arc::new(FaultPlan::default()),
        servers: Arc::new(RecordingServers::default()),
    })
    .await
    .expect("emulator starts")
}

fn connect(endpoint: &str, sub: &str) -> ArmConnection {
    ArmConnection::with_static_token(sub, url::Url::parse(endpoint).expect("url"), "t")
}

/// Lowercased ids of everything the emulator still holds.
fn remaining_ids(arm: &ArmEmulator) -> BTreeSet<String> {
    arm.remaining()
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

fn group_id(arm: &ArmEmulator, name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{name}",
        arm.subscription_id()
    )
    .to_ascii_lowercase()
}

/// The leftovers every emulator test starts from; returns (stray id, id inside the expired
/// group, untagged resource id).
fn plant(arm: &ArmEmulator) -> (String, String, String) {
    let (past, future) = (past(), future());
    arm.plant_resource_group("rg-expired", [(RUN_ID, "r-old"), (EXPIRES, past.as_str())]);
    let inside = arm.plant_resource(
        "rg-expired",
        DISK,
        "disk-inside",
        [(RUN_ID, "r-old"), (EXPIRES, past.as_str())],
    );
    arm.plant_resource_group("rg-fresh", [(RUN_ID, "r-new"), (EXPIRES, future.as_str())]);
    // Expired by its expiry tag, but without the run-id tag: not cloudtest's to delete.
    arm.plant_resource_group(
        "rg-untagged",
        [("owner", "someone-else"), (EXPIRES, past.as_str())],
    );
    // A tagged resource in a group nobody tagged (the group is created untagged).
    let stray = arm.plant_resource(
        "rg-shared",
        DISK,
        "disk-stray",
        [(RUN_ID, "r-old"), (EXPIRES, past.as_str())],
    );
    let keep = arm.plant_resource(
        "rg-shared",
        DISK,
        "disk-keep",
        [("owner", "someone-else"), (EXPIRES, past.as_str())],
    );
    (stray, inside, keep)
}

/// A run's own cleanup (`--run-id r-new`) takes that run's fresh group and its per-region
/// lifecycle's, inside stays inside its group, and leaves another run whose id starts with
/// the same letters, a group kept by `--keep-on-failure`, and other runs' expired leftovers.
#[tokio::test]
async fn run_scope_takes_one_runs_groups_and_leaves_kept_and_longer_ids() {
    let arm = emulator().await;
    let _ = plant(&arm);
    let future = future();
    let fresh = |run: &'static str| [(RUN_ID, run), (EXPIRES, future.as_str())];
    arm.plant_resource_group("rg-region", fresh("r-new-westeurope"));
    arm.plant_resource("rg-region", DISK, "disk-region", fresh("r-new-westeurope"));
    arm.plant_resource_group("rg-longer", fresh("r-newer"));
    arm.plant_resource_group(
        "rg-kept",
        [
            (RUN_ID, "r-new-eastus"),
            (EXPIRES, future.as_str()),
            ("cloudtest:keep", "until-expiry"),
        ],
    );
    let conn = connect(&arm.endpoint(), arm.subscription_id());

    let scope = SweepScope::Run {
        run_id: "r-new".into(),
        include_kept: false,
    };
    let items = find_due(&conn, Utc::now(), &scope).await.expect("list");
    let mut names: Vec<String> = items
        .iter()
        .map(|i| match &i.target {
            SweepTarget::ResourceGroup { name } => name.clone(),
            SweepTarget::Resource(r) => r.id.clone(),
        })
        .collect();
    names.sort();
    assert_eq!(names, ["rg-fresh", "rg-region"], "{items:#?}");
    assert!(
        items.iter().all(|i| i.why == "belongs to run r-new"),
        "{items:#?}"
    );
    arm.stop().await;
}

#[tokio::test]
async fn finds_the_expired_group_then_the_stray_and_nothing_else() {
    let arm = emulator().await;
    let (stray, _inside, _keep) = plant(&arm);
    let conn = connect(&arm.endpoint(), arm.subscription_id());

    let items = find_expired(&conn, Utc::now(), None).await.expect("list");

    assert_eq!(items.len(), 2, "{items:#?}");
    assert_eq!(
        items[0].target,
        SweepTarget::ResourceGroup {
            name: "rg-expired".into()
        }
    );
    assert_eq!(items[0].run_id, "r-old");
    assert_eq!(items[0].location, "eastus");
    assert!(items[0].why.starts_with("expired at "), "{}", items[0].why);
    match &items[1].target {
        SweepTarget::Resource(r) => {
            assert_eq!(r.id, stray);
            assert_eq!(r.kind, ResourceKind::Volume);
            assert_eq!(r.cloud_type, DISK);
        }
        other => panic!("expected the stray disk second, got {other:?}"),
    }
    assert_eq!(items[1].run_id, "r-old");
    arm.stop().await;
}

#[tokio::test]
async fn deleting_the_expired_group_leaves_fresh_and_untagged_things() {
    let arm = emulator().await;
    let (stray, inside, keep) = plant(&arm);
    let conn = connect(&arm.endpoint(), arm.subscription_id());

    let items = find_expired(&conn, Utc::now(), None).await.expect("list");
    let group = items
        .iter()
        .find(|i| matches!(i.target, SweepTarget::ResourceGroup { .. }))
        .expect("the expired group is due");
    delete(&conn, group, deadline(), poll())
        .await
        .expect("group deleted");

    let left = remaining_ids(&arm);
    assert!(!left.contains(&group_id(&arm, "rg-expired")), "{left:#?}");
    assert!(!left.contains(&inside.to_ascii_lowercase()), "{left:#?}");
    for kept in [
        group_id(&arm, "rg-fresh"),
        group_id(&arm, "rg-untagged"),
        group_id(&arm, "rg-shared"),
        keep.to_ascii_lowercase(),
    ] {
        assert!(left.contains(&kept), "{kept} must survive: {left:#?}");
    }

    // A second sweep finds only the stray (the emulator has no by-id DELETE route; the
    // scripted-ARM tests below cover deleting it).
    let again = find_expired(&conn, Utc::now(), None).await.expect("list");
    assert_eq!(again.len(), 1, "{again:#?}");
    assert!(matches!(&again[0].target, SweepTarget::Resource(r) if r.id == stray));

    // Deleting a group that is already gone is not an error.
    delete(&conn, group, deadline(), poll())
        .await
        .expect("already gone");
    arm.stop().await;
}

#[tokio::test]
async fn older_than_reads_a_groups_age_from_its_run_id() {
    let arm = emulator().await;
    let future = future();
    arm.plant_resource_group(
        "rg-old-run",
        [
            (RUN_ID, "20200101000000-00abcd"),
            (EXPIRES, future.as_str()),
        ],
    );
    // Fresh and with no time in its run id: no age known, so --older-than cannot apply.
    arm.plant_resource_group(
        "rg-unknown-age",
        [(RUN_ID, "r-new"), (EXPIRES, future.as_str())],
    );
    arm.plant_resource_group("rg-untagged", [("owner", "someone-else")]);
    let conn = connect(&arm.endpoint(), arm.subscription_id());

    let none = find_expired(&conn, Utc::now(), None).await.expect("list");
    assert!(none.is_empty(), "{none:#?}");

    let items = find_expired(&conn, Utc::now(), Some(Duration::ZERO))
        .await
        .expect("list");
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(
        items[0].target,
        SweepTarget::ResourceGroup {
            name: "rg-old-run".into()
        }
    );
    assert!(
        items[0].why.starts_with("created 2020-01-01T00:00:00")
            && items[0].why.ends_with("older than 0s"),
        "{}",
        items[0].why
    );

    delete(&conn, &items[0], deadline(), poll())
        .await
        .expect("deleted");
    let left = remaining_ids(&arm);
    assert!(!left.contains(&group_id(&arm, "rg-old-run")), "{left:#?}");
    assert!(
        left.contains(&group_id(&arm, "rg-unknown-age")),
        "{left:#?}"
    );
    assert!(left.contains(&group_id(&arm, "rg-untagged")), "{left:#?}");
    arm.stop().await;
}

// ---------- scripted ARM for what the emulator does not serve ----------

/// One request the scripted ARM saw: `METHOD path?query`.
type Log = Arc<Mutex<Vec<String>>>;

/// Answers a request given the method, path, query and how many requests came before.
type Script = fn(&Method, &str, &str, usize) -> Response;

async fn scripted_arm(script: Script) -> (String, Log) {
    let log: Log = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = log.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
        let seen = seen.clone();
        async move {
            let query = uri.query().unwrap_or_default().to_string();
            let mut log = seen.lock().expect("log");
            let n = log.len();
            log.push(format!("{method} {}?{query}", uri.path()));
            script(&method, uri.path(), &query, n)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, log)
}

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        axum::Json(body),
    )
        .into_response()
}

fn accepted_at(location: &str) -> Response {
    let mut r = StatusCode::ACCEPTED.into_response();
    r.headers_mut()
        .insert("location", location.parse().expect("header"));
    r.headers_mut().insert("retry-after", 0.into());
    r
}

const SUB: &str = "sub-1";

fn stray(cloud_type: &str, name: &str) -> SweepItem {
    let (ns, ty) = cloud_type.split_once('/').expect("type");
    SweepItem {
        location: "eastus".into(),
        run_id: "r-old".into(),
        target: SweepTarget::Resource(ResourceRef {
            kind: ResourceKind::Volume,
            cloud_type: cloud_type.into(),
            id: format!("/subscriptions/{SUB}/resourceGroups/rg-shared/providers/{ns}/{ty}/{name}"),
            sku: None,
            spot: false,
        }),
        why: "expired at 2020-01-01T00:00:00Z".into(),
    }
}

fn seen(log: &Log) -> Vec<String> {
    log.lock().expect("log").clone()
}

#[tokio::test]
async fn a_stray_disk_is_deleted_by_id_and_its_operation_followed() {
    let (base, log) = scripted_arm(|method, path, _query, n| match (method.as_str(), n) {
        ("DELETE", 0) => accepted_at("/subscriptions/sub-1/operationresults/op1"),
        ("GET", 1) if path.ends_with("/op1") => {
            accepted_at("/subscriptions/sub-1/operationresults/op1")
        }
        ("GET", _) if path.ends_with("/op1") => StatusCode::OK.into_response(),
        _ => reply(
            500,
            json!({"error": {"code": "Unexpected", "message": path}}),
        ),
    })
    .await;
    let conn = connect(&base, SUB);

    delete(&conn, &stray(DISK, "disk-stray"), deadline(), poll())
        .await
        .expect("deleted");

    let log = seen(&log);
    assert_eq!(
        log[0],
        "DELETE /subscriptions/sub-1/resourceGroups/rg-shared/providers/Microsoft.Compute/disks/disk-stray?api-version=2023-04-02"
    );
    assert_eq!(log.len(), 3, "{log:#?}");
    assert!(log[1..]
        .iter()
        .all(|l| l.starts_with("GET /subscriptions/sub-1/operationresults/op1")));
}

#[tokio::test]
async fn an_unknown_type_retries_once_with_the_version_arm_lists() {
    let (base, log) = scripted_arm(|method, _path, query, _n| {
        match (method.as_str(), query) {
            ("DELETE", "api-version=2021-04-01") => reply(400, json!({"error": {
                "code": "NoRegisteredProviderFound",
                "message": "No registered resource provider found for location 'eastus' and API version '2021-04-01' for type 'gadgets'. The supported api-versions are '2019-01-01, 2022-05-01, 2024-01-01-preview'. The supported locations are 'eastus'."}})),
            ("DELETE", "api-version=2022-05-01") => StatusCode::NO_CONTENT.into_response(),
            _ => reply(500, json!({"error": {"code": "Unexpected", "message": query}})),
        }
    })
    .await;
    let conn = connect(&base, SUB);

    delete(
        &conn,
        &stray("Contoso.Widgets/gadgets", "g1"),
        deadline(),
        poll(),
    )
    .await
    .expect("deleted on the second api-version");

    let queries: Vec<String> = seen(&log)
        .iter()
        .filter_map(|l| l.split_once('?').map(|(_, q)| q.to_string()))
        .collect();
    assert_eq!(
        queries,
        ["api-version=2021-04-01", "api-version=2022-05-01"]
    );
}

#[tokio::test]
async fn a_refused_default_api_version_is_named_in_the_error() {
    let (base, log) = scripted_arm(|_method, _path, _query, _n| {
        reply(400, json!({"error": {"code": "InvalidResourceType",
            "message": "The resource type 'gadgets' could not be found in the namespace 'Contoso.Widgets'."}}))
    })
    .await;
    let conn = connect(&base, SUB);

    let err = delete(
        &conn,
        &stray("Contoso.Widgets/gadgets", "g1"),
        deadline(),
        poll(),
    )
    .await
    .expect_err("ARM refused");

    let text = err.to_string();
    for part in [
        "g1",
        "api-version 2021-04-01",
        "Contoso.Widgets/gadgets is not in cloudtest's api-version table",
        "InvalidResourceType",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }
    assert_eq!(seen(&log).len(), 1, "no retry without a listed version");
}

#[tokio::test]
async fn a_404_counts_as_gone_only_when_arm_says_the_resource_is_not_found() {
    let (base, _log) = scripted_arm(|_method, path, _query, _n| {
        if path.ends_with("/gone") {
            reply(
                404,
                json!({"error": {"code": "ResourceNotFound", "message": "not found"}}),
            )
        } else {
            reply(
                404,
                json!({"error": {"code": "InvalidResourceType", "message": "no such route"}}),
            )
        }
    })
    .await;
    let conn = connect(&base, SUB);

    delete(&conn, &stray(DISK, "gone"), deadline(), poll())
        .await
        .expect("already gone is success");
    let err = delete(&conn, &stray(DISK, "route"), deadline(), poll())
        .await
        .expect_err("a 404 for the route is not success");
    assert!(err.to_string().contains("InvalidResourceType"), "{err}");
}

#[tokio::test]
async fn throttled_deletes_are_retried_until_arm_accepts() {
    let (base, log) = scripted_arm(|_method, _path, _query, n| {
        if n < 2 {
            reply(
                429,
                json!({"error": {"code": "TooManyRequests", "message": "slow down"}}),
            )
        } else {
            StatusCode::OK.into_response()
        }
    })
    .await;
    let conn = connect(&base, SUB);

    delete(&conn, &stray(DISK, "disk-stray"), deadline(), poll())
        .await
        .expect("deleted after throttling");
    assert_eq!(seen(&log).len(), 3);
}

#[tokio::test]
async fn resource_age_comes_from_created_time_when_arm_gives_it() {
    let (base, log) = scripted_arm(|_method, path, _query, _n| {
        if path.ends_with("/resourcegroups") {
            reply(200, json!({"value": []}))
        } else {
            reply(200, json!({"value": [
                {"id": "/subscriptions/sub-1/resourceGroups/rg-shared/providers/Microsoft.Compute/disks/old",
                 "name": "old", "type": "Microsoft.Compute/disks", "location": "westeurope",
                 "tags": {"cloudtest:run-id": "r-1", "cloudtest:expires-at": "2999-01-01T00:00:00Z"},
                 "createdTime": "2020-01-01T00:00:00Z"},
                {"id": "/subscriptions/sub-1/resourceGroups/rg-shared/providers/Microsoft.Compute/disks/untagged",
                 "name": "untagged", "type": "Microsoft.Compute/disks", "location": "westeurope",
                 "createdTime": "2020-01-01T00:00:00Z"}
            ]}))
        }
    })
    .await;
    let conn = connect(&base, SUB);
    let now: DateTime<Utc> = Utc::now();

    assert!(find_expired(&conn, now, None)
        .await
        .expect("list")
        .is_empty());
    let items = find_expired(&conn, now, Some(Duration::from_secs(3600)))
        .await
        .expect("list");
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0].location, "westeurope");
    assert!(
        items[0].why.starts_with("created 2020-01-01T00:00:00")
            && items[0].why.ends_with("older than 1h"),
        "{}",
        items[0].why
    );
    let log = seen(&log);
    assert!(
        log.iter()
            .any(|l| l.contains("/resources?") && l.contains("%24expand=createdTime")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("/resourcegroups?")
            && l.contains("%24filter=tagName+eq+%27cloudtest%3Arun-id%27")),
        "{log:#?}"
    );
}
