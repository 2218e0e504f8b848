//! Issue 11, bad input: every item of the corpus makes `cloudtest run` exit 2 with a message
//! naming the file, field or flag at fault, before anything is deployed or written (the
//! output directory holds no results, the gap document is untouched).

use std::path::{Path, PathBuf};

use cloudtest_e2e::{run_raw, workspace_root};

/// Files a run writes; none may exist after a refused run.
const OUTPUTS: [&str; 5] = [
    "results.json",
    "junit.xml",
    "report.md",
    "report.html",
    "mock-state.json",
];

/// One corpus item: extra arguments and environment, and words stderr must contain.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    must_mention: Vec<String>,
}

/// A scratch directory with the files a case needs.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writing a fixture");
        path.to_string_lossy().into_owned()
    }
}

/// Runs one case with `--out` in a fresh directory and checks exit 2, the message and that
/// nothing was written. `out` overrides the output directory (for the unwritable case).
fn check(case: &Case, out: Option<&Path>) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let default_out = scratch.path().join("out");
    let out = out.unwrap_or(&default_out);
    let out_arg = out.to_string_lossy().into_owned();
    let mut args: Vec<&str> = vec!["run", "--no-gap-doc", "--out", &out_arg];
    if case.args.iter().any(|a| a == "--gap-doc") {
        args.retain(|a| *a != "--no-gap-doc");
    }
    args.extend(case.args.iter().map(String::as_str));
    let output = run_raw(&args, &case.env);
    let code = output.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let transcript = format!(
        "case `{}`: cloudtest {}\nexit {code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        case.name,
        args.join(" ")
    );
    assert_eq!(code, 2, "{transcript}");
    for word in &case.must_mention {
        assert!(
            stderr.contains(word.as_str()),
            "stderr does not name `{word}`\n{transcript}"
        );
    }
    // Refused before the mock cloud started: no progress lines, no summary table.
    assert!(
        !stderr.contains(" create started"),
        "something was deployed\n{transcript}"
    );
    assert!(
        !stdout.contains("CLOUD-01"),
        "a summary was printed\n{transcript}"
    );
    if out.is_dir() {
        for name in OUTPUTS {
            assert!(
                !out.join(name).exists(),
                "{name} was written into {}\n{transcript}",
                out.display()
            );
        }
    }
}

fn case(name: &'static str, args: &[&str], must_mention: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        must_mention: must_mention.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn malformed_toml_names_the_file() {
    let s = Scratch::new();
    let cfg = s.file("broken.toml", "[run\nmax_parallel = \n");
    check(
        &case("malformed TOML", &["--config", &cfg], &["broken.toml"]),
        None,
    );
}

#[test]
fn unknown_keys_name_the_key_and_file() {
    let s = Scratch::new();
    let cfg = s.file("typo.toml", "[run]\nmax_paralel = 3\n");
    check(
        &case(
            "unknown key",
            &["--config", &cfg],
            &["typo.toml", "max_paralel"],
        ),
        None,
    );
    let cfg = s.file("section.toml", "[awz]\nregions = [\"us-east-1\"]\n");
    check(
        &case(
            "unknown section",
            &["--config", &cfg],
            &["section.toml", "awz"],
        ),
        None,
    );
}

#[test]
fn template_that_is_neither_yaml_nor_json_names_the_file() {
    let s = Scratch::new();
    let t = s.file("garbage.yaml", "Resources: [unclosed\n  - : :\n\t{\n");
    check(
        &case(
            "not YAML/JSON (AWS)",
            &["--aws-template", &t],
            &["garbage.yaml"],
        ),
        None,
    );
    let t = s.file("garbage.json", "{\"resources\": [,]}");
    check(
        &case(
            "not JSON (Azure)",
            &["--azure-template", &t],
            &["garbage.json"],
        ),
        None,
    );
}

/// `templates-cfn/velociraptor.yaml` without its `CaCertificate` output.
fn template_without_ca_output() -> String {
    let text = std::fs::read_to_string(workspace_root().join("templates-cfn/velociraptor.yaml"))
        .expect("reading templates-cfn/velociraptor.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "  CaCertificate:")
        .expect("the template has a CaCertificate output");
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && !l.starts_with("    "))
        .map_or(lines.len(), |n| start + 1 + n);
    let mut kept: Vec<&str> = lines[..start].to_vec();
    kept.extend_from_slice(&lines[end..]);
    assert!(!kept.iter().any(|l| l.trim_end() == "  CaCertificate:"));
    kept.join("\n") + "\n"
}

#[test]
fn template_missing_a_required_output_names_it() {
    let s = Scratch::new();
    let t = s.file("no-ca.yaml", &template_without_ca_output());
    check(
        &case(
            "missing output",
            &["--aws-template", &t],
            &["no-ca.yaml", "CaCertificate"],
        ),
        None,
    );
}

#[test]
fn gap_document_with_broken_markers_is_refused_and_untouched() {
    let s = Scratch::new();
    let original = std::fs::read_to_string(workspace_root().join("docs/GAP_ANALYSIS.md"))
        .expect("reading docs/GAP_ANALYSIS.md");
    let (begin, end) = cloudtest_markers(&original);
    // Swap the two markers: the region now ends before it begins.
    let reversed = original
        .replacen(&begin, "\u{0}BEGIN\u{0}", 1)
        .replacen(&end, &begin, 1)
        .replacen("\u{0}BEGIN\u{0}", &end, 1);
    assert_ne!(reversed, original);
    let doc = s.file("GAP.md", &reversed);
    check(
        &case("reversed markers", &["--gap-doc", &doc], &["GAP.md"]),
        None,
    );
    assert_eq!(
        std::fs::read_to_string(&doc).expect("reading back"),
        reversed,
        "the gap document was changed"
    );
    // Only one marker: broken too.
    let lone = s.file("LONE.md", &original.replacen(&end, "", 1));
    check(
        &case("missing end marker", &["--gap-doc", &lone], &["LONE.md"]),
        None,
    );
}

/// The begin and end marker lines of the gap document's generated region.
fn cloudtest_markers(doc: &str) -> (String, String) {
    let markers: Vec<&str> = doc
        .lines()
        .filter(|l| l.contains("<!--") && l.contains("cloudtest"))
        .collect();
    assert!(
        markers.len() >= 2,
        "docs/GAP_ANALYSIS.md has no cloudtest markers"
    );
    (
        markers[0].to_string(),
        markers[markers.len() - 1].to_string(),
    )
}

#[test]
fn unwritable_out_is_refused() {
    let s = Scratch::new();
    let file = s.file("not-a-dir", "a file where a directory should be\n");
    let out = PathBuf::from(&file).join("out");
    check(
        &case("--out under a file", &[], &["--out", "not-a-dir"]),
        Some(&out),
    );
    // A file given as the directory itself.
    check(
        &case("--out is a file", &[], &["--out", "not-a-dir"]),
        Some(Path::new(&file)),
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("reading back"),
        "a file where a directory should be\n"
    );
}

#[test]
fn unknown_regions_are_refused_with_a_suggestion() {
    check(
        &case(
            "AWS region typo",
            &["--aws-regions", "us-eats-1"],
            &["us-eats-1", "us-east-1"],
        ),
        None,
    );
    check(
        &case(
            "unknown Azure location",
            &["--azure-locations", "mars"],
            &["mars"],
        ),
        None,
    );
}

#[test]
fn negative_timeouts_are_refused_wherever_they_come_from() {
    check(
        &case(
            "negative --deadline",
            &["--deadline", "health=-5s"],
            &["--deadline", "health"],
        ),
        None,
    );
    let s = Scratch::new();
    let cfg = s.file("neg.toml", "[deadlines]\nhealth = \"-5s\"\n");
    check(
        &case(
            "negative deadline in config",
            &["--config", &cfg],
            &["neg.toml", "health"],
        ),
        None,
    );
    let mut env_case = case(
        "negative CLOUDTEST_HEALTH_TIMEOUT",
        &[],
        &["CLOUDTEST_HEALTH_TIMEOUT"],
    );
    env_case.env.push(("CLOUDTEST_HEALTH_TIMEOUT", "-5"));
    check(&env_case, None);
}

#[test]
fn budget_that_is_not_a_number_names_the_key() {
    let s = Scratch::new();
    let cfg = s.file("budget.toml", "[budget]\nmonthly_usd = \"fifty\"\n");
    check(
        &case(
            "budget not a number",
            &["--config", &cfg],
            &["budget.toml", "monthly_usd"],
        ),
        None,
    );
}

#[test]
fn run_ids_that_no_stack_or_resource_group_could_carry_are_refused() {
    for (id, why) in [
        ("Upper", "`U` is not allowed"),
        ("with space", "` ` is not allowed"),
        ("dots.in.it", "`.` is not allowed"),
        ("-leading", "start and end"),
        ("much-too-long-for-a-resource-group-name-x", "1 to 40"),
        ("looks-like-a-lifecycle-eastus", "-eastus"),
    ] {
        // `--run-id=ID`: an id starting with a dash is a value, not a flag.
        let arg = format!("--run-id={id}");
        check(&case("bad --run-id", &[&arg], &["--run-id", why]), None);
    }
}

#[test]
fn azure_spot_with_b_series_sizes_names_the_sizes_and_an_alternative() {
    let s = Scratch::new();
    let cfg = s.file("spot.toml", "[azure]\nuse_spot = true\n");
    check(
        &case(
            "azure spot with B-series defaults",
            &["--config", &cfg, "--provider", "azure"],
            &[
                "serverVmSize=Standard_B2s",
                "clientVmSize=Standard_B1s",
                "Standard_D2as_v5",
            ],
        ),
        None,
    );
}
