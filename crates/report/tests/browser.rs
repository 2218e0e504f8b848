//! report.html in a real browser: headless Chromium loads the page, takes a screenshot,
//! and must log no console errors; the DOM must hold the timeline. Outside CI a missing
//! Chromium skips with a message; under CI (CI=true) it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use cloudtest_report::{cost, cross_cloud, sample, ReportSettings};

const CANDIDATES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| CANDIDATES.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// Chromium, or `None` when the test may be skipped (not CI). Panics under CI.
fn chromium_or_skip() -> Option<PathBuf> {
    match find_chromium() {
        Some(p) => Some(p),
        None if in_ci() => panic!(
            "CI is set but Chromium is not installed: .ci/run must `apt-get install -y chromium`"
        ),
        None => {
            eprintln!("skipping browser test: no chromium on PATH (install with `apt-get install -y chromium`; required when CI=true)");
            None
        }
    }
}

struct Browser {
    exe: PathBuf,
    profile: tempfile::TempDir,
}

struct Output {
    stdout: String,
    stderr: String,
}

impl Browser {
    fn new(exe: PathBuf) -> Self {
        Browser {
            exe,
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    fn run(&self, page: &Path, extra: &[String]) -> Output {
        let out = Command::new("timeout")
            .arg("120")
            .arg(&self.exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium starts");
        assert!(
            out.status.success(),
            "chromium failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Console messages the page produced (Chromium logs them as `CONSOLE` lines on stderr).
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("CONSOLE(") || l.contains("Uncaught"))
        .collect()
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run = sample::two_provider_run();
    cost::apply_costs(&mut run, &cost::PriceTable::embedded());
    cross_cloud::attach(&mut run);
    let settings = ReportSettings {
        run_url: Some("https://ci.example/runs/42".into()),
        ..Default::default()
    }
    .with_prices(&cost::PriceTable::embedded());
    let files = cloudtest_report::write_all(dir.path(), &run, &settings).expect("outputs");
    let browser = Browser::new(exe);

    let shot = std::env::var_os("CLOUDTEST_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().to_path_buf())
        .join("report.png");
    let out = browser.run(
        &files.report_html,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".into(),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot is a real PNG ({} bytes)",
        png.len()
    );
    assert_eq!(console_errors(&out.stderr), Vec::<&str>::new());

    let out = browser.run(&files.report_html, &["--dump-dom".into()]);
    assert!(
        out.stdout.contains("id=\"timeline\""),
        "timeline element in the rendered DOM"
    );
    assert!(out.stdout.contains("<svg"), "timeline is an inline SVG");
    assert!(out.stdout.contains("CLOUD-03 cross-cloud consistency"));
    assert_eq!(console_errors(&out.stderr), Vec::<&str>::new());
}

#[test]
fn console_error_detection_catches_a_broken_page() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>notDefined();</script></body></html>",
    )
    .expect("write");
    let out = Browser::new(exe).run(&page, &["--dump-dom".into()]);
    let errors = console_errors(&out.stderr);
    assert!(
        errors.iter().any(|l| l.contains("notDefined")),
        "detector must see the error: {}",
        out.stderr
    );
}
