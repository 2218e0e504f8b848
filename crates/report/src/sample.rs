//! Realistic sample results: fixtures for tests, the browser check and report previews.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cloudtest_core::{
    Cost, EnrolledClient, Phase, PhaseRecord, PhaseStatus, RequirementFacts, RequirementId,
    RequirementResult, RequirementStatus, ResourceKind, ResourceRef, RunMode, RunResults,
};

/// When the sample run started.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 3, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// A live run where CLOUD-01 (us-east-1) and CLOUD-02 (eastus) both passed; no CLOUD-03.
pub fn two_provider_run() -> RunResults {
    let aws = lifecycle(
        RequirementId::Cloud01,
        "us-east-1",
        start(),
        [372_000, 95_000, 41_000, 118_000, 254_000, 6_000],
        aws_resources(),
    );
    let azure = lifecycle(
        RequirementId::Cloud02,
        "eastus",
        start() + Duration::milliseconds(1_500),
        [498_000, 120_000, 37_000, 142_000, 431_000, 9_000],
        azure_resources(),
    );
    let end = [&aws, &azure]
        .iter()
        .map(|r| r.phases.iter().map(|p| p.duration_ms).sum::<u64>())
        .max()
        .unwrap_or(0)
        + 1_500;
    RunResults {
        run_id: "ct-20250602-0300-sample".into(),
        mode: RunMode::Live,
        started_at: start(),
        duration_ms: end,
        interrupted_by: None,
        requirements: vec![aws, azure],
    }
}

/// One of the two lifecycles of [`two_provider_run`] alone, as one CI matrix shard would
/// record it: the shard starts with its first phase and lasts as long as its phases.
pub fn shard(id: RequirementId) -> RunResults {
    let mut run = two_provider_run();
    run.requirements.retain(|r| r.id == id);
    if let Some(first) = run
        .requirements
        .first()
        .and_then(|r| r.phases.first())
        .and_then(|p| p.started_at)
    {
        run.started_at = first;
    }
    run.duration_ms = run
        .requirements
        .iter()
        .flat_map(|r| &r.phases)
        .map(|p| p.duration_ms)
        .sum();
    run
}

fn aws_resources() -> Vec<ResourceRef> {
    vec![
        res(
            ResourceKind::Instance,
            "AWS::EC2::Instance",
            "i-0a1b2c3d4e5f00001",
            Some("t3.medium"),
        ),
        res(
            ResourceKind::Instance,
            "AWS::EC2::Instance",
            "i-0a1b2c3d4e5f00002",
            Some("t3.micro"),
        ),
        res(
            ResourceKind::Volume,
            "AWS::EC2::Volume",
            "vol-0a1b2c3d4e5f00001",
            Some("gp3:20"),
        ),
        res(
            ResourceKind::Volume,
            "AWS::EC2::Volume",
            "vol-0a1b2c3d4e5f00002",
            Some("gp3:8"),
        ),
        res(
            ResourceKind::PublicIp,
            "AWS::EC2::EIP",
            "eipalloc-0a1b2c3d4e5f0001",
            Some("ipv4"),
        ),
        res(
            ResourceKind::SecurityGroup,
            "AWS::EC2::SecurityGroup",
            "sg-0a1b2c3d4e5f00001",
            None,
        ),
    ]
}

fn azure_resources() -> Vec<ResourceRef> {
    let rg =
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ct-sample/providers";
    vec![
        res(
            ResourceKind::Instance,
            "Microsoft.Compute/virtualMachines",
            &format!("{rg}/Microsoft.Compute/virtualMachines/ct-server"),
            Some("Standard_B2s"),
        ),
        res(
            ResourceKind::Instance,
            "Microsoft.Compute/virtualMachines",
            &format!("{rg}/Microsoft.Compute/virtualMachines/ct-client-1"),
            Some("Standard_B1s"),
        ),
        res(
            ResourceKind::Volume,
            "Microsoft.Compute/disks",
            &format!("{rg}/Microsoft.Compute/disks/ct-server-os"),
            Some("StandardSSD_LRS:30"),
        ),
        res(
            ResourceKind::Volume,
            "Microsoft.Compute/disks",
            &format!("{rg}/Microsoft.Compute/disks/ct-client-os"),
            Some("StandardSSD_LRS:30"),
        ),
        res(
            ResourceKind::PublicIp,
            "Microsoft.Network/publicIPAddresses",
            &format!("{rg}/Microsoft.Network/publicIPAddresses/ct-pip"),
            Some("Standard"),
        ),
    ]
}

fn res(kind: ResourceKind, cloud_type: &str, id: &str, sku: Option<&str>) -> ResourceRef {
    ResourceRef {
        kind,
        cloud_type: cloud_type.into(),
        id: id.into(),
        sku: sku.map(str::to_string),
        spot: false,
    }
}

fn lifecycle(
    id: RequirementId,
    region: &str,
    at: DateTime<Utc>,
    durations: [u64; 6],
    resources: Vec<ResourceRef>,
) -> RequirementResult {
    let mut phases = Vec::new();
    let mut t = at;
    for (phase, ms) in Phase::ALL.into_iter().zip(durations) {
        phases.push(PhaseRecord {
            name: phase,
            status: PhaseStatus::Passed,
            started_at: Some(t),
            duration_ms: ms,
            detail: detail(phase, id),
        });
        t += Duration::milliseconds(ms as i64);
    }
    let seen = (at.timestamp_micros().max(0) as u64) + 600_000_000;
    let clients = vec![EnrolledClient {
        client_id: format!(
            "C.{}",
            if id == RequirementId::Cloud01 {
                "4f2a9d0e11b7c3a1"
            } else {
                "8c01e5d2aa90b4f7"
            }
        ),
        hostname: format!("ct-client-1-{}", id.provider()),
        agent_version: "0.77.2".into(),
        first_seen_at_us: seen,
        last_seen_at_us: seen + 30_000_000,
    }];
    let facts = RequirementFacts {
        deployment_id: Some(format!("{}-deployment-sample", id.provider())),
        velociraptor_version: Some("0.77.2".into()),
        server_address: Some(
            if id == RequirementId::Cloud01 {
                "203.0.113.10"
            } else {
                "198.51.100.20"
            }
            .into(),
        ),
        frontend_port: Some(8000),
        gui_port: Some(8889),
        tls: Some("pinned-self-signed-ca".into()),
        ca_fingerprint: Some("ab:cd:ef:01".into()),
        gui_auth: Some("basic".into()),
        time_to_healthy_ms: Some(durations[2]),
        expected_clients: Some(1),
        enrolled_clients: Some(1),
        clients,
        agent_versions: vec!["0.77.2".into()],
        time_to_enroll_ms: Some(durations[3]),
        resources_created: Some(resources.len() as u32),
        resources_remaining: Some(0),
        remaining_resources: Vec::new(),
        resources,
        teardown_complete: Some(true),
        deletion_ms: Some(durations[4]),
        leak_checked_types: vec!["instances".into(), "volumes".into(), "public IPs".into()],
        ..Default::default()
    };
    RequirementResult {
        id,
        provider: id.provider().into(),
        region: region.into(),
        status: RequirementStatus::Passed,
        reason: String::new(),
        phases,
        facts,
        cost: Cost::default(),
    }
}

fn detail(phase: Phase, id: RequirementId) -> String {
    let cloud = if id == RequirementId::Cloud01 {
        "stack"
    } else {
        "deployment"
    };
    match phase {
        Phase::Create => format!("{cloud} created"),
        Phase::WaitReady => "server signalled ready and published its CA".into(),
        Phase::Health => {
            "GUI 401 without credentials, 200 with; TLS pinned to the deployment CA".into()
        }
        Phase::Enrollment => "1 of 1 clients enrolled".into(),
        Phase::Teardown => format!("{cloud} deleted"),
        Phase::LeakCheck => "0 tagged resources remain".into(),
    }
}
