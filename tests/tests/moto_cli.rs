//! CLOUD-01 through the `cloudtest` binary against moto's server, as a user would run it:
//! `cloudtest run --provider aws --aws-endpoint http://127.0.0.1:PORT --probe-via-mock
//! --aws-template COPY`. moto implements the AWS APIs independently of our emulators, so
//! this checks the CloudFormation provider against someone else's reading of the API.
//!
//! What moto (5.x) cannot do, and what this test therefore expects:
//! - it ignores `AWS::CloudFormation::WaitCondition`, so the template copy has each
//!   `!GetAtt <WaitCondition>.Data` replaced by fixed JSON (`cloudtest_e2e::moto_template`);
//! - it boots no instance, so health and enrollment are probed on the embedded Velociraptor
//!   emulator (`--probe-via-mock`);
//! - its DeleteStack does not delete the stack's route table, subnet route-table association
//!   and gateway attachment, answers `DependencyViolation` for the VPC and drops the stack
//!   anyway: the provider sends DeleteStack again, and the leak check then finds that VPC
//!   and the route table and internet gateway still linked to it (exit 3). If a later moto
//!   deletes the VPC, the run must pass cleanly instead.

use cloudtest_e2e::{
    aws_api_attempts, cloudtest_bin, command_for, moto_run_args, read_json, start_moto_server,
    write_moto_template, MotoStart,
};
use serde_json::Value;

fn phase<'a>(req: &'a Value, name: &str) -> &'a Value {
    req["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no phase {name} in {req}"))
}

#[test]
fn cloud01_runs_through_the_cli_against_moto() {
    let moto = match start_moto_server() {
        Ok(MotoStart::Running(m)) => m,
        Ok(MotoStart::NotInstalled(why)) => {
            eprintln!("skipping the moto CLI test: {why}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let work = tempfile::tempdir().expect("tempdir");
    let template = write_moto_template(work.path()).expect("template copy");
    let out = work.path().join("out");
    let output = command_for(&cloudtest_bin(), &moto_run_args(&moto.url, &template, &out))
        .output()
        .expect("spawning cloudtest");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let transcript = format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{stderr}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout)
    );

    let results = read_json(&out.join("results.json"));
    let reqs = results["requirements"].as_array().expect("requirements");
    let cloud01 = reqs
        .iter()
        .find(|r| r["id"] == "CLOUD-01")
        .unwrap_or_else(|| panic!("no CLOUD-01:\n{transcript}"));
    assert_eq!(cloud01["region"], "us-east-1");
    // Only AWS ran, so there is nothing to compare across clouds.
    let cloud03 = reqs
        .iter()
        .find(|r| r["id"] == "CLOUD-03")
        .expect("CLOUD-03");
    assert_eq!(cloud03["status"], "skipped", "{transcript}");
    assert!(reqs.iter().all(|r| r["id"] != "CLOUD-02"), "{transcript}");

    for name in ["create", "wait_ready", "health", "enrollment", "teardown"] {
        assert_eq!(
            phase(cloud01, name)["status"],
            "passed",
            "{name}:\n{transcript}"
        );
    }
    let facts = &cloud01["facts"];
    let deployment = facts["deployment_id"].as_str().unwrap_or_default();
    assert!(
        deployment.starts_with("arn:aws:cloudformation:us-east-1:"),
        "moto's stack id: {deployment}"
    );
    assert_eq!(facts["server_address"], "127.0.0.1", "{transcript}");
    assert_eq!(facts["enrolled_clients"], 1, "{transcript}");
    assert!(
        stderr.contains("output CaCertificate replaced by an emulator override"),
        "{transcript}"
    );

    let leak = phase(cloud01, "leak_check");
    let remaining = facts["remaining_resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if stderr.contains("DependencyViolation") {
        // moto's known limitation (see the module comment): its DeleteStack cannot delete
        // the VPC, nor the route table and internet gateway still linked to it. The leak
        // check (every EC2 resource tagged with the run id) names each of them.
        assert!(
            stderr.contains("trying again with a fresh request"),
            "{transcript}"
        );
        assert_eq!(
            output.status.code(),
            Some(3),
            "resources remain: exit 3\n{transcript}"
        );
        assert_eq!(leak["status"], "failed", "{transcript}");
        assert_eq!(cloud01["status"], "failed", "{transcript}");
        assert_eq!(
            facts["resources_remaining"].as_u64(),
            Some(remaining.len() as u64),
            "{transcript}"
        );
        let kinds: Vec<&str> = remaining
            .iter()
            .filter_map(|r| r["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"vpc"), "{transcript}");
        for (resource, kind) in remaining.iter().zip(&kinds) {
            assert!(
                ["vpc", "route_table", "internet_gateway"].contains(kind),
                "only what depends on the VPC remains: {kind}\n{transcript}"
            );
            let id = resource["id"].as_str().unwrap_or_default();
            assert!(
                stderr.contains(&format!("still present: {kind} {id}")),
                "{transcript}"
            );
        }
    } else {
        assert_eq!(output.status.code(), Some(0), "{transcript}");
        assert_eq!(leak["status"], "passed", "{transcript}");
        assert_eq!(cloud01["status"], "passed", "{transcript}");
        assert!(remaining.is_empty(), "{transcript}");
    }

    // One lifecycle, one count; backoff keeps it to a few dozen calls.
    let attempts = aws_api_attempts(&stderr);
    assert_eq!(attempts.len(), 1, "{transcript}");
    assert!(
        (10..=100).contains(&attempts[0]),
        "{} AWS API attempts\n{transcript}",
        attempts[0]
    );
}

#[test]
fn moto_template_replaces_only_wait_condition_data() {
    let t = "a: !GetAtt ServerReady.Data\nb: !GetAtt ServerInstance.PrivateIp\nc: [!GetAtt ClientEnrollment.Data]\n";
    let out = cloudtest_e2e::moto_template(t);
    assert!(!out.contains(".Data"), "{out}");
    assert!(out.contains("b: !GetAtt ServerInstance.PrivateIp"), "{out}");
    // base64 of a PEM, as the server would signal it; the nonce for the client.
    assert!(out.contains(r#"a: '{"ca":"LS0tLS1CRUdJTi"#), "{out}");
    assert!(out.contains(r#"c: ['{"nonce":"#), "{out}");
}

#[test]
fn the_real_template_loses_every_wait_condition_data_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_moto_template(dir.path()).expect("template copy");
    let copy = std::fs::read_to_string(path).expect("copy");
    let real = std::fs::read_to_string(
        cloudtest_e2e::workspace_root().join("templates-cfn/velociraptor.yaml"),
    )
    .expect("template");
    assert!(
        real.contains("!GetAtt ServerReady.Data") && real.contains("!GetAtt ClientEnrollment.Data")
    );
    assert!(!copy.contains(".Data]"), "a wait-condition GetAtt survived");
    assert_eq!(
        copy.matches("!GetAtt").count() + 3,
        real.matches("!GetAtt").count()
    );
}

#[test]
fn api_attempt_lines_are_parsed() {
    let err = "20:26:06.492 CLOUD-01 us-east-1     leak_check 25 AWS API attempts in this lifecycle\nother\n\
               x CLOUD-01 eu-west-1 leak_check 31 AWS API attempts in this lifecycle\n";
    assert_eq!(aws_api_attempts(err), vec![25, 31]);
    assert!(aws_api_attempts("nothing").is_empty());
}
