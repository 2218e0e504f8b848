//! The four outputs of a run: written, parseable, consistent, and free of secrets.

use cloudtest_core::{DeploymentFacts, RequirementId, RequirementStatus, RunMode, Secret};
use cloudtest_report::{cost, cross_cloud, gap_region, merge, sample, ReportSettings};
use quick_xml::events::Event;

fn settings() -> ReportSettings {
    ReportSettings {
        run_url: Some("https://ci.example/runs/42".into()),
        ..Default::default()
    }
    .with_prices(&cost::PriceTable::embedded())
}

fn full_run() -> cloudtest_core::RunResults {
    let mut run = sample::two_provider_run();
    cost::apply_costs(&mut run, &cost::PriceTable::embedded());
    cross_cloud::attach(&mut run);
    run
}

/// Every element name with its attributes, and the text under each `<failure>`.
struct Parsed {
    testcases: Vec<(String, String)>,
    failures: Vec<String>,
    system_out: Vec<String>,
    root: String,
}

fn parse_junit(xml: &str) -> Parsed {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut p = Parsed {
        testcases: vec![],
        failures: vec![],
        system_out: vec![],
        root: String::new(),
    };
    let mut in_out = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf8");
                if p.root.is_empty() {
                    p.root = name.clone();
                }
                let attr = |key: &str| {
                    e.attributes()
                        .map(|a| a.expect("attribute"))
                        .find(|a| a.key.as_ref() == key.as_bytes())
                        .map(|a| a.unescape_value().expect("value").into_owned())
                        .unwrap_or_default()
                };
                match name.as_str() {
                    "testcase" => p.testcases.push((attr("name"), attr("classname"))),
                    "failure" => p.failures.push(attr("message")),
                    "system-out" => in_out = true,
                    _ => {}
                }
            }
            Event::Text(t) if in_out => p.system_out.push(t.decode().expect("text").into_owned()),
            Event::End(e) if e.name().as_ref() == b"system-out" => in_out = false,
            Event::Eof => break,
            _ => {}
        }
    }
    p
}

#[test]
fn write_all_produces_four_consistent_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = full_run();
    let files = cloudtest_report::write_all(dir.path(), &run, &settings()).expect("written");
    let back: cloudtest_core::RunResults =
        serde_json::from_str(&std::fs::read_to_string(&files.results_json).expect("read"))
            .expect("contract");
    assert_eq!(back, run);
    let md = std::fs::read_to_string(&files.report_md).expect("md");
    assert!(
        md.contains("| CLOUD-03 | us-east-1+eastus | **passed**"),
        "{md}"
    );
    assert!(md.contains("https://ci.example/runs/42"));
    let html = std::fs::read_to_string(&files.report_html).expect("html");
    assert!(html.contains("id=\"timeline\""));
    // The only URLs are the SVG namespace and the run link: nothing is fetched.
    let without_known = html
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace("https://ci.example/runs/42", "");
    assert!(!without_known.contains("http://") && !without_known.contains("https://"));
    assert!(
        !html.contains("<script") && !html.contains("<link") && !html.contains("src="),
        "self-contained"
    );
    assert_eq!(
        html.matches("class=\"phase ").count(),
        12,
        "six phases per provider on the timeline"
    );
}

#[test]
fn junit_parses_back_with_one_testcase_per_requirement_and_region() {
    let mut run = full_run();
    // Make CLOUD-02 fail in health so a failure message appears.
    let azure = run
        .requirements
        .iter_mut()
        .find(|r| r.id == RequirementId::Cloud02)
        .expect("azure");
    azure.status = RequirementStatus::Failed;
    azure.reason = "health failed".into();
    let health = azure
        .phases
        .iter_mut()
        .find(|p| p.name == cloudtest_core::Phase::Health)
        .expect("health");
    health.status = cloudtest_core::PhaseStatus::Failed;
    health.detail = "GUI answered 503 <Service Unavailable> for 120 s".into();
    cross_cloud::attach(&mut run);

    let xml = cloudtest_report::junit::render(&run).expect("junit");
    let parsed = parse_junit(&xml);
    assert_eq!(parsed.root, "testsuites");
    let names: Vec<&str> = parsed.testcases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "CLOUD-01 us-east-1",
            "CLOUD-02 eastus",
            "CLOUD-03 us-east-1+eastus"
        ]
    );
    assert_eq!(parsed.testcases[0].1, "cloudtest.aws");
    assert_eq!(
        parsed.failures,
        [
            "health: GUI answered 503 <Service Unavailable> for 120 s",
            "differs: Lifecycle outcome (aws: passed, azure: failed)"
        ]
    );
    let out = parsed.system_out.join("\n");
    assert!(
        out.contains("create") && out.contains("leak_check"),
        "{out}"
    );
    // quick-junit's own reader agrees on the counts.
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("junit reader");
    assert_eq!(report.tests, 3);
    assert_eq!(
        report.failures, 2,
        "CLOUD-02 and the CLOUD-03 it makes inconsistent"
    );
}

#[test]
fn merging_two_shards_equals_a_single_two_provider_run() {
    let single = {
        let mut run = sample::two_provider_run();
        cross_cloud::attach(&mut run);
        run
    };
    let mut aws = sample::shard(RequirementId::Cloud01);
    let mut azure = sample::shard(RequirementId::Cloud02);
    // Each shard computed its own (skipped) CLOUD-03; merge must recompute it.
    cross_cloud::attach(&mut aws);
    cross_cloud::attach(&mut azure);
    assert!(aws
        .requirements
        .iter()
        .any(|r| r.id == RequirementId::Cloud03 && r.status == RequirementStatus::Skipped));
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, z) = (dir.path().join("aws"), dir.path().join("azure"));
    cloudtest_report::write_all(&a, &aws, &ReportSettings::default()).expect("shard a");
    cloudtest_report::write_all(&z, &azure, &ReportSettings::default()).expect("shard z");
    let shards = vec![
        merge::load_shard(&z).expect("z"),
        merge::load_shard(&a).expect("a"),
    ];
    let merged = merge::merge(shards).expect("merge");
    assert_eq!(merged, single);
    // And the same outputs follow.
    let s = ReportSettings::default();
    assert_eq!(
        cloudtest_report::markdown::render(&merged, &s),
        cloudtest_report::markdown::render(&single, &s)
    );
}

#[test]
fn merge_rejects_duplicates_and_mixed_modes() {
    let aws = sample::shard(RequirementId::Cloud01);
    let err = merge::merge(vec![aws.clone(), aws.clone()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CLOUD-01 us-east-1"), "{err}");
    let mut mock = sample::shard(RequirementId::Cloud02);
    mock.mode = RunMode::Mock;
    assert!(merge::merge(vec![aws, mock])
        .unwrap_err()
        .to_string()
        .contains("mock"));
    assert!(merge::merge(vec![]).is_err());
}

#[test]
fn no_secret_reaches_any_output() {
    // The admin password lives only in DeploymentFacts (a Secret); the results a provider
    // returns are derived from those facts. Build them the way a provider would and check
    // that no writer leaks the password.
    const PASSWORD: &str = "Zq7-cloudtest-never-print-me-93";
    let facts = DeploymentFacts {
        server_address: "203.0.113.10".into(),
        frontend_url: "https://203.0.113.10:8000/".into(),
        gui_url: "https://203.0.113.10:8889/".into(),
        frontend_port: 8000,
        gui_port: 8889,
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ca_fingerprint: "ab:cd".into(),
        pinned_server_name: "VelociraptorServer".into(),
        expected_clients: 1,
        velociraptor_version: "0.77.2".into(),
        admin_user: "cloudtest-admin".into(),
        admin_password: Secret::new(PASSWORD),
        raw_outputs: Default::default(),
        resources: Vec::new(),
    };
    let mut run = full_run();
    for r in &mut run.requirements {
        // Everything a provider might copy from the facts, including their Debug form.
        r.reason = format!("deployed with {facts:?}");
        r.facts.extra.insert(
            "deployment_debug".into(),
            serde_json::Value::String(format!("{facts:?}")),
        );
        if let Some(p) = r.phases.first_mut() {
            p.detail = format!("admin {} / {}", facts.admin_user, facts.admin_password);
        }
        r.status = RequirementStatus::Failed;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = cloudtest_report::write_all(dir.path(), &run, &settings()).expect("written");
    let region = gap_region::render(&run, &settings());
    let mut all = vec![region];
    for f in [
        files.results_json,
        files.junit_xml,
        files.report_md,
        files.report_html,
    ] {
        all.push(std::fs::read_to_string(f).expect("read"));
    }
    for text in &all {
        assert!(
            text.contains("cloudtest-admin"),
            "the facts did reach the outputs"
        );
        assert!(!text.contains(PASSWORD), "secret leaked");
    }
}

#[test]
fn gap_region_compares_against_the_documents_estimates() {
    let mut run = full_run();
    let mut s = settings();
    s.spend = vec![cloudtest_report::ProviderSpend {
        provider: "aws".into(),
        month_to_date_usd: 1.25,
        monthly_budget_usd: 50.0,
        note: None,
    }];
    let text = gap_region::render(&run, &s);
    assert!(text.contains("within the 15–30 min estimate"), "{text}");
    assert!(text.contains("the $0.10–0.20 estimate"), "{text}");
    assert!(text.contains("| aws | $1.25 | $50.00 |"), "{text}");
    assert!(
        text.contains("| Velociraptor version | 0.77.2 | 0.77.2 | yes |"),
        "{text}"
    );
    assert!(text.contains("https://ci.example/runs/42"));
    run.mode = RunMode::Mock;
    cost::apply_costs(&mut run, &cost::PriceTable::embedded());
    let text = gap_region::render(&run, &s);
    // Nothing rented, but priced as live would be: the sample's 14m 40s of AWS resources.
    assert!(
        text.contains("| $0.00 (mock run; would cost $0.01 live) |"),
        "{text}"
    );
    assert!(text.contains("not recorded in the spend ledger"), "{text}");
    // Results quoting a marker cannot create a second marker.
    run.requirements[0].reason = cloudtest_report::END_MARKER.into();
    run.requirements[0].status = RequirementStatus::Failed;
    let text = gap_region::render(&run, &s);
    let doc = cloudtest_report::gap_doc::splice("# Doc\n", &text).expect("splice");
    assert!(cloudtest_report::gap_doc::splice(&doc, &text).is_ok());
}

#[test]
fn evidence_and_server_identity_are_linked_from_both_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = full_run();
    let aws = &mut run.requirements[0];
    aws.facts.evidence_dir = Some("evidence/CLOUD-01-us-east-1".into());
    aws.facts.evidence_files = vec![
        "evidence/CLOUD-01-us-east-1/console-server.txt".into(),
        "evidence/CLOUD-01-us-east-1/stack-events.txt".into(),
    ];
    aws.facts.server_identity = Some(cloudtest_core::ServerIdentity::NotVerifiable(
        "moto's console output is canned".into(),
    ));
    let files = cloudtest_report::write_all(dir.path(), &run, &settings()).expect("written");
    let md = std::fs::read_to_string(&files.report_md).expect("md");
    assert!(
        md.contains("- [evidence/CLOUD-01-us-east-1/stack-events.txt](evidence/CLOUD-01-us-east-1/stack-events.txt)"),
        "{md}"
    );
    assert!(
        md.contains("Server identity: not verifiable: moto's console output is canned"),
        "{md}"
    );
    let html = std::fs::read_to_string(&files.report_html).expect("html");
    assert!(
        html.contains("<a href=\"evidence/CLOUD-01-us-east-1/console-server.txt\">"),
        "{html}"
    );
    let back: cloudtest_core::RunResults =
        serde_json::from_str(&std::fs::read_to_string(&files.results_json).expect("read"))
            .expect("contract");
    assert_eq!(back.requirements[0].facts.evidence_files.len(), 2);
    assert_eq!(
        back.requirements[0].facts.server_identity,
        run.requirements[0].facts.server_identity
    );
}
