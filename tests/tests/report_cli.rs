//! `cloudtest report` and `cloudtest report merge` on results.json files the binary wrote:
//! shards from a CI matrix merge into one set of outputs with CLOUD-03 computed across them,
//! and the JUnit file is well-formed XML with one test case per requirement.

use std::path::Path;

use cloudtest_e2e::{read_json, run_cloudtest, Run};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::Value;

fn assert_exit(run: &Run, code: i32) {
    assert_eq!(
        run.code(),
        code,
        "unexpected exit code\n{}",
        run.transcript()
    );
}

fn requirement(results: &Value, id: &str) -> Value {
    results["requirements"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == id).cloned())
        .unwrap_or_else(|| panic!("{id} missing: {results}"))
}

/// What a JUnit file holds: the root element, and each test case's name and whether it has
/// a `<failure>` or `<error>` child.
struct Junit {
    root: String,
    cases: Vec<(String, bool)>,
}

fn parse_junit(path: &Path) -> Junit {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = Reader::from_str(&text);
    let mut root = None;
    let mut cases: Vec<(String, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut in_case = false;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                if e.name().as_ref() == b"testcase" {
                    in_case = false;
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let Some(el) = start else { continue };
        let name = String::from_utf8_lossy(el.name().as_ref()).into_owned();
        if depth == 0 {
            assert!(root.is_none(), "{} has two root elements", path.display());
            root = Some(name.clone());
        }
        match name.as_str() {
            "testcase" => {
                let case_name = el
                    .attributes()
                    .flatten()
                    .find(|a| a.key.as_ref() == b"name")
                    .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                    .unwrap_or_default();
                cases.push((case_name, false));
                in_case = !empty;
            }
            "failure" | "error" if in_case => {
                if let Some(last) = cases.last_mut() {
                    last.1 = true;
                }
            }
            _ => {}
        }
        if !empty {
            depth += 1;
        }
    }
    assert_eq!(depth, 0, "{}: unbalanced elements", path.display());
    Junit {
        root: root.unwrap_or_default(),
        cases,
    }
}

/// One test case per requirement, named after it, failed exactly when the requirement is.
fn assert_junit_matches(path: &Path, results: &Value) {
    let junit = parse_junit(path);
    assert_eq!(junit.root, "testsuites", "{}", path.display());
    let reqs = results["requirements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        junit.cases.len(),
        reqs.len(),
        "one <testcase> per requirement: {:?}",
        junit.cases
    );
    for r in &reqs {
        let id = r["id"].as_str().unwrap_or_default();
        let (name, failed) = junit
            .cases
            .iter()
            .find(|(n, _)| n.starts_with(id))
            .unwrap_or_else(|| panic!("no <testcase> for {id}: {:?}", junit.cases));
        let should_fail = r["status"] == "failed" || r["status"] == "error";
        assert_eq!(
            *failed, should_fail,
            "<testcase name=\"{name}\"> failure marking vs status {}",
            r["status"]
        );
    }
}

fn shard(provider: &str) -> Run {
    let run = run_cloudtest(&["run", "--provider", provider], &[]);
    assert_exit(&run, 0);
    run
}

fn merge(a: &Run, b: &Run) -> (Run, tempfile::TempDir) {
    let merged = tempfile::tempdir().expect("tempdir");
    let run = run_cloudtest(
        &[
            "report",
            "merge",
            &a.out().to_string_lossy(),
            &b.out().to_string_lossy(),
            "--out",
            &merged.path().to_string_lossy(),
        ],
        &[],
    );
    (run, merged)
}

#[test]
fn merge_of_provider_shards_computes_cloud03() {
    let (aws, azure) = (shard("aws"), shard("azure"));
    // Alone, each shard cannot compare.
    assert_eq!(requirement(&aws.results(), "CLOUD-03")["status"], "skipped");
    assert_eq!(
        requirement(&azure.results(), "CLOUD-03")["status"],
        "skipped"
    );

    let (run, merged) = merge(&aws, &azure);
    assert!(run.code() == 0 || run.code() == 1, "{}", run.transcript());
    let results = read_json(&merged.path().join("results.json"));
    let ids: Vec<&str> = results["requirements"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["CLOUD-01", "CLOUD-02", "CLOUD-03"], "{results}");
    assert_eq!(requirement(&results, "CLOUD-01")["status"], "passed");
    assert_eq!(requirement(&results, "CLOUD-02")["status"], "passed");
    let c3 = requirement(&results, "CLOUD-03");
    assert_ne!(
        c3["status"], "skipped",
        "CLOUD-03 must be computed across shards: {c3}"
    );
    assert_eq!(c3["region"], "us-east-1+eastus", "{c3}");
    // The merged run id names both shards.
    let run_id = results["run_id"].as_str().unwrap_or_default();
    for shard in [&aws, &azure] {
        let id = shard.results()["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            run_id.contains(&id),
            "merged run id `{run_id}` should name {id}"
        );
    }
    for file in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(merged.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for id in ["CLOUD-01", "CLOUD-02", "CLOUD-03"] {
            assert!(text.contains(id), "{file} should mention {id}");
        }
    }
    assert_junit_matches(&merged.path().join("junit.xml"), &results);
    // The exit code follows the merged results.
    let expected = if c3["status"] == "passed" { 0 } else { 1 };
    assert_exit(&run, expected);
}

/// Two passing mock shards agree on everything CLOUD-03 compares.
#[test]
fn merge_of_passing_mock_shards_passes_cloud03() {
    let (aws, azure) = (shard("aws"), shard("azure"));
    let (run, merged) = merge(&aws, &azure);
    let results = read_json(&merged.path().join("results.json"));
    let c3 = requirement(&results, "CLOUD-03");
    assert_eq!(c3["status"], "passed", "{}", run.transcript());
    assert_exit(&run, 0);
}

#[test]
fn report_renders_a_results_file() {
    let source = run_cloudtest(&["run", "--scenario", "version-mismatch"], &[]);
    assert_exit(&source, 1);
    let rendered = tempfile::tempdir().expect("tempdir");
    let input = source.out().join("results.json");
    let run = run_cloudtest(
        &[
            "report",
            &input.to_string_lossy(),
            "--out",
            &rendered.path().to_string_lossy(),
        ],
        &[],
    );
    // The exit code is the results' own: failed requirements are exit 1.
    assert_exit(&run, 1);
    let original = source.results();
    let results = read_json(&rendered.path().join("results.json"));
    assert_eq!(results["run_id"], original["run_id"]);
    assert_eq!(results["requirements"], original["requirements"]);
    let md = std::fs::read_to_string(rendered.path().join("report.md")).expect("report.md");
    assert!(
        md.contains(original["run_id"].as_str().unwrap_or("?")),
        "{md}"
    );
    assert!(rendered.path().join("report.html").is_file());
    assert_junit_matches(&rendered.path().join("junit.xml"), &results);
    assert!(
        run.stdout().contains("CLOUD-01") && run.stdout().contains("failed"),
        "{}",
        run.transcript()
    );
}

#[test]
fn report_without_inputs_or_with_a_missing_file_is_a_usage_error() {
    let out = tempfile::tempdir().expect("tempdir");
    let out_arg = out.path().to_string_lossy().into_owned();
    let run = run_cloudtest(&["report", "--out", &out_arg], &[]);
    assert_exit(&run, 2);
    assert!(
        run.stderr().contains("results.json"),
        "{}",
        run.transcript()
    );

    let missing = out.path().join("nope").join("results.json");
    let missing_arg = missing.to_string_lossy().into_owned();
    let run = run_cloudtest(&["report", &missing_arg, "--out", &out_arg], &[]);
    assert_exit(&run, 2);
    assert!(run.stderr().contains(&missing_arg), "{}", run.transcript());
    assert!(!out.path().join("results.json").exists());
}

#[test]
fn merge_refuses_a_corrupt_shard() {
    let good = shard("aws");
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::write(bad.path().join("results.json"), "{\"run_id\": ").expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let run = run_cloudtest(
        &[
            "report",
            "merge",
            &good.out().to_string_lossy(),
            &bad.path().to_string_lossy(),
            "--out",
            &out.path().to_string_lossy(),
        ],
        &[],
    );
    assert_exit(&run, 2);
    assert!(
        run.stderr().contains(&*bad.path().to_string_lossy()),
        "the error should name the bad shard\n{}",
        run.transcript()
    );
    assert!(!out.path().join("results.json").exists());
}
