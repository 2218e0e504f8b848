//! The gap document keeps the newest live result per requirement and region: a default
//! mock run (the README's first command) does not touch it at all, a mock run asked to
//! write it adds only a separate block, and an older live results file never replaces a
//! newer one (`cloudtest report --gap-doc`).

use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::Duration;
use cloudtest_e2e::{cloudtest_bin, command, workspace_root};
use cloudtest_report::sample;

/// A scratch project: a copy of the repository's gap document under `docs/`, where a run
/// started in this directory looks for it by default.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("docs")).expect("mkdir docs");
        let original = std::fs::read(workspace_root().join("docs/GAP_ANALYSIS.md"))
            .expect("docs/GAP_ANALYSIS.md");
        std::fs::write(dir.path().join("docs/GAP_ANALYSIS.md"), original).expect("copy");
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn doc_path(&self) -> PathBuf {
        self.root().join("docs/GAP_ANALYSIS.md")
    }

    fn doc(&self) -> String {
        std::fs::read_to_string(self.doc_path()).expect("gap document")
    }

    /// A live-shaped results.json started `hours` after the sample run.
    fn live_results(&self, name: &str, hours: i64) -> String {
        let mut run = sample::two_provider_run();
        run.run_id = name.into();
        let shift = Duration::hours(hours);
        run.started_at += shift;
        for r in &mut run.requirements {
            for p in &mut r.phases {
                p.started_at = p.started_at.map(|t| t + shift);
            }
        }
        let path = self.root().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&run).expect("json")).expect("write");
        path.to_string_lossy().into_owned()
    }

    /// `cloudtest ARGS` started in the scratch project (templates from the repository).
    fn cloudtest(&self, args: &[&str]) -> Output {
        let out = self.root().join("out");
        let out = out.to_string_lossy();
        let templates = [
            workspace_root().join("templates-cfn/velociraptor.yaml"),
            workspace_root().join("templates-arm/velociraptor.json"),
        ]
        .map(|p| p.to_string_lossy().into_owned());
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--out", &out]);
        if args.first() == Some(&"run") {
            all.extend([
                "--aws-template",
                &templates[0],
                "--azure-template",
                &templates[1],
            ]);
        }
        let output = command(&all)
            .current_dir(self.root())
            .output()
            .expect("spawn cloudtest");
        assert!(cloudtest_bin().is_file());
        output
    }
}

fn transcript(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", transcript(o));
}

#[test]
fn a_default_mock_run_leaves_the_gap_document_byte_for_byte() {
    let p = Project::new();
    let before = std::fs::read(p.doc_path()).expect("read");
    assert_exit(&p.cloudtest(&["run"]), 0);
    assert_eq!(std::fs::read(p.doc_path()).expect("read"), before);
}

#[test]
fn live_results_survive_mock_runs_and_only_newer_live_results_replace_them() {
    let p = Project::new();
    let newer = p.live_results("live-newer", 48);
    let doc = p.doc_path().to_string_lossy().into_owned();
    assert_exit(&p.cloudtest(&["report", &newer, "--gap-doc", &doc]), 0);
    let with_live = p.doc();
    assert!(
        with_live.contains("### Latest live cloud results"),
        "{with_live}"
    );
    assert!(with_live.contains("| live-newer |"), "{with_live}");

    // The README's first command: mock mode, no --gap-doc. Not a byte changes.
    assert_exit(&p.cloudtest(&["run"]), 0);
    assert_eq!(p.doc(), with_live);

    // Asked to, a mock run adds its own block after the live results, which stay as they were.
    assert_exit(&p.cloudtest(&["run", "--gap-doc", &doc]), 0);
    let with_mock = p.doc();
    let end = "<!-- cloudtest:results:end -->";
    let live_part = &with_live[..with_live.find(end).expect("end marker")];
    assert!(with_mock.starts_with(live_part), "{with_mock}");
    assert!(with_mock.contains("### Latest mock run"), "{with_mock}");

    // An older live result replaces nothing, but as a live write it drops the mock block.
    let older = p.live_results("live-older", 0);
    assert_exit(&p.cloudtest(&["report", &older, "--gap-doc", &doc]), 0);
    assert_eq!(p.doc(), with_live);

    // A newer one takes the rows over.
    let newest = p.live_results("live-newest", 72);
    assert_exit(
        &p.cloudtest(&["report", "merge", &newest, "--gap-doc", &doc]),
        0,
    );
    let after = p.doc();
    assert!(
        after.contains("| live-newest |") && !after.contains("| live-newer |"),
        "{after}"
    );
}
