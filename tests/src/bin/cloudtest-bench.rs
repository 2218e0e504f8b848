//! `cloudtest-bench`: the benchmark of issue 11, measuring the `cloudtest` binary as a user
//! runs it (one child process per run, wall time from spawn to exit, peak RSS from `wait4`).
//!
//! 1. mock-mode full run (CLOUD-01/02/03), median wall time;
//! 2. overhead: wall time over the emulated cloud's own waits with `--mock-latency`;
//! 3. scale: 1, 10 and every nameable region at once: wall, peak RSS, API calls per lifecycle;
//! 4. API calls per lifecycle against moto's server.
//!
//! Prints one JSON object per line on stdout. `--short` runs tiny sizes and checks only that
//! every run worked and every line is well-formed JSON (CI); the default runs the real sizes
//! and rewrites `docs/PERFORMANCE.md`.
//!
//! Usage: `cloudtest-bench [--short] [--bin PATH] [--doc PATH | --no-doc]`
//! (default `--bin target/release/cloudtest`, `--doc docs/PERFORMANCE.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudtest_e2e::{
    aws_api_attempts, command_for, moto_run_args, read_json, start_moto_server, workspace_root,
    write_moto_template, MotoStart,
};
use serde_json::{json, Value};

/// The region names the CLI accepts (one list, in cloudtest-core).
use cloudtest_core::regions::{AWS_REGIONS, AZURE_LOCATIONS};

/// The issue's targets.
const FULL_RUN_TARGET_MS: f64 = 1000.0;
const OVERHEAD_TARGET: f64 = 1.05;
/// The default run's emulated critical path in units of `--mock-latency` (the Azure
/// lifecycle's: deployment, boot, interrogation, deletion; see docs/PERFORMANCE.md §2).
const CRITICAL_PATH_LATENCIES: u32 = 4;
const SCALE_WALL_TARGET: f64 = 1.2;
const SCALE_RSS_TARGET_KIB: u64 = 200 * 1024;

/// `cloudtest preflight` for both clouds in one region each must finish within this.
const PREFLIGHT_TARGET_MS: f64 = 30_000.0;
const PREFLIGHT_LATENCY: Duration = Duration::from_millis(200);

/// From the preflight's last line, `preflight: N checks, ... in 0.1s (API calls: aws 10,
/// azure 9)`: the seconds and the calls per provider.
fn parse_preflight_summary(stdout: &str) -> Option<(f64, Vec<(String, u64)>)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("preflight: "))?;
    let secs = line
        .split(" in ")
        .nth(1)?
        .split('s')
        .next()?
        .trim()
        .parse()
        .ok()?;
    let calls = line
        .split("API calls: ")
        .nth(1)?
        .trim_end_matches(')')
        .split(", ")
        .filter_map(|pair| {
            let (p, n) = pair.split_once(' ')?;
            Some((p.to_string(), n.parse().ok()?))
        })
        .collect();
    Some((secs, calls))
}

struct Options {
    short: bool,
    bin: PathBuf,
    doc: Option<PathBuf>,
}

/// Sizes and repetitions: `--short` checks that everything runs; the default measures.
struct Plan {
    full_runs: usize,
    latencies: Vec<(Duration, usize)>,
    scale_sizes: Vec<usize>,
    scale_latency: Duration,
    scale_runs: usize,
    moto_runs: usize,
    preflight_runs: usize,
}

impl Plan {
    fn for_mode(short: bool) -> Self {
        if short {
            Plan {
                full_runs: 3,
                latencies: vec![(Duration::from_millis(200), 2)],
                scale_sizes: vec![1, 3],
                scale_latency: Duration::from_millis(200),
                scale_runs: 1,
                moto_runs: 1,
                preflight_runs: 2,
            }
        } else {
            Plan {
                full_runs: 15,
                latencies: vec![(Duration::from_secs(1), 7), (Duration::from_secs(3), 3)],
                scale_sizes: vec![1, 10, AWS_REGIONS.len() + AZURE_LOCATIONS.len()],
                scale_latency: Duration::from_secs(1),
                scale_runs: 3,
                moto_runs: 3,
                preflight_runs: 7,
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cloudtest-bench: {e}\nusage: cloudtest-bench [--short] [--bin PATH] [--doc PATH | --no-doc]");
            return std::process::ExitCode::from(2);
        }
    };
    if !options.bin.is_file() {
        eprintln!(
            "cloudtest-bench: {} not found; build it first (`cargo build --release -p cloudtest-cli`) or pass --bin",
            options.bin.display()
        );
        return std::process::ExitCode::from(2);
    }
    let mut bench = Bench::new(options);
    bench.run_all();
    if let Some(doc) = bench.options.doc.clone() {
        match std::fs::write(&doc, render_doc(&bench)) {
            Ok(()) => eprintln!("cloudtest-bench: wrote {}", doc.display()),
            Err(e) => bench.fail(format!("writing {}: {e}", doc.display())),
        }
    }
    if bench.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        for f in &bench.failures {
            eprintln!("cloudtest-bench: FAILED: {f}");
        }
        std::process::ExitCode::FAILURE
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut short = false;
    let mut bin = None;
    let mut doc = Some(workspace_root().join("docs/PERFORMANCE.md"));
    let mut doc_given = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => short = true,
            "--bin" => bin = Some(PathBuf::from(args.next().ok_or("--bin needs a path")?)),
            "--doc" => {
                doc = Some(PathBuf::from(args.next().ok_or("--doc needs a path")?));
                doc_given = true;
            }
            "--no-doc" => {
                doc = None;
                doc_given = true;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    // Short mode checks that the benchmark works; its figures are not worth publishing.
    if short && !doc_given {
        doc = None;
    }
    let bin = bin.unwrap_or_else(|| PathBuf::from("target/release/cloudtest"));
    // Relative paths: from the current directory, else from the workspace root.
    let bin = if bin.is_relative() && !bin.is_file() {
        workspace_root().join(bin)
    } else {
        bin
    };
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    Ok(Options { short, bin, doc })
}

/// One finished child process.
struct ChildRun {
    wall: Duration,
    exit: i32,
    peak_rss_kib: u64,
    /// User + system CPU time of the child.
    cpu: Duration,
    stderr: String,
    /// Holds `out/` (the run's outputs) until dropped.
    work: tempfile::TempDir,
}

impl ChildRun {
    fn out(&self) -> PathBuf {
        self.work.path().join("out")
    }
    fn results(&self) -> Option<Value> {
        let path = self.out().join("results.json");
        path.is_file().then(|| read_json(&path))
    }
    fn calls(&self) -> BTreeMap<String, u64> {
        let path = self.out().join("mock-calls.json");
        if !path.is_file() {
            return BTreeMap::new();
        }
        serde_json::from_value(read_json(&path)).unwrap_or_default()
    }
    fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

/// Spawns `cloudtest` with `args` and `--out <temp>/out` appended (unless `out_in_args`),
/// waits for it with `wait4` to get its own peak RSS, and times it from spawn to exit.
fn run_child(
    bin: &Path,
    mut args: Vec<String>,
    work: tempfile::TempDir,
    out_in_args: bool,
) -> Result<ChildRun, String> {
    if !out_in_args {
        args.extend([
            "--out".into(),
            work.path().join("out").display().to_string(),
        ]);
    }
    let stdout_path = work.path().join("stdout.txt");
    let stderr_path = work.path().join("stderr.txt");
    let stdout =
        File::create(&stdout_path).map_err(|e| format!("{}: {e}", stdout_path.display()))?;
    let stderr =
        File::create(&stderr_path).map_err(|e| format!("{}: {e}", stderr_path.display()))?;
    let mut cmd: Command = command_for(bin, &args);
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
    let (status, rusage) = wait4(child.id())?;
    let wall = start.elapsed();
    // The child is reaped: `child` must not be waited on again (dropping it does not wait).
    drop(child);
    let exit = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Ok(ChildRun {
        wall,
        exit,
        // ru_maxrss is in KiB on Linux.
        peak_rss_kib: u64::try_from(rusage.ru_maxrss).unwrap_or(0),
        cpu: timeval(rusage.ru_utime) + timeval(rusage.ru_stime),
        stderr,
        work,
    })
}

/// Waits for one child by pid and returns its wait status and resource usage.
fn wait4(pid: u32) -> Result<(i32, libc::rusage), String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {err}"));
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The first `n` lifecycles of the scale runs, alternating Azure and AWS (Azure first: its
/// lifecycle has the longer emulated critical path, so one lifecycle is the fair baseline).
fn scale_regions(n: usize) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut aws, mut azure) = (Vec::new(), Vec::new());
    let (mut a, mut z) = (AWS_REGIONS.iter(), AZURE_LOCATIONS.iter());
    while aws.len() + azure.len() < n {
        let next_aws =
            |a: &mut std::slice::Iter<'static, &'static str>| a.next().map(|r| (true, *r));
        let next_azure =
            |z: &mut std::slice::Iter<'static, &'static str>| z.next().map(|l| (false, *l));
        let next = if azure.len() <= aws.len() {
            next_azure(&mut z).or_else(|| next_aws(&mut a))
        } else {
            next_aws(&mut a).or_else(|| next_azure(&mut z))
        };
        match next {
            Some((true, r)) => aws.push(r),
            Some((false, l)) => azure.push(l),
            None => break,
        }
    }
    (aws, azure)
}

/// Polls a capped doubling backoff needs to see a wait of `wait` end (no jitter), for the
/// explanation of figure 4.
fn backoff_polls(wait: Duration, initial: Duration, max: Duration) -> u32 {
    let (mut elapsed, mut delay, mut polls) = (Duration::ZERO, initial, 0);
    while elapsed < wait {
        elapsed += delay;
        polls += 1;
        delay = (delay * 2).min(max);
    }
    polls
}

struct Bench {
    options: Options,
    plan: Plan,
    lines: Vec<Value>,
    failures: Vec<String>,
}

impl Bench {
    fn new(options: Options) -> Self {
        let plan = Plan::for_mode(options.short);
        Bench {
            options,
            plan,
            lines: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, why: String) {
        eprintln!("cloudtest-bench: {why}");
        self.failures.push(why);
    }

    /// Prints one JSON line, after checking it parses back to the same value.
    fn emit(&mut self, line: Value) {
        let text = line.to_string();
        match serde_json::from_str::<Value>(&text) {
            Ok(back) if back == line && text.lines().count() == 1 => {
                println!("{text}");
                self.lines.push(line);
            }
            _ => self.fail(format!("emitted line is not well-formed JSON: {text}")),
        }
    }

    fn run_all(&mut self) {
        self.emit(json!({
            "bench": "machine",
            "mode": if self.options.short { "short" } else { "full" },
            "bin": self.options.bin.display().to_string(),
            "machine": machine(),
        }));
        self.full_run();
        self.overhead();
        self.scale();
        self.moto();
        self.preflight();
    }

    /// Figure 5: `cloudtest preflight` for both clouds, one region each, with
    /// `--mock-latency 200ms`: wall time and API calls per provider (from its summary line).
    fn preflight(&mut self) {
        let mut walls = Vec::new();
        let mut inside = Vec::new();
        let mut calls: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for i in 0..self.plan.preflight_runs {
            let work = match tempfile::tempdir() {
                Ok(w) => w,
                Err(e) => return self.fail(format!("preflight {i}: temp dir: {e}")),
            };
            let args = vec![
                "preflight".into(),
                "--no-gap-doc".into(),
                "--json".into(),
                "--mock-latency".into(),
                format!("{}ms", PREFLIGHT_LATENCY.as_millis()),
            ];
            let run = match run_child(&self.options.bin, args, work, false) {
                Ok(r) => r,
                Err(e) => return self.fail(format!("preflight {i}: {e}")),
            };
            let stdout =
                std::fs::read_to_string(run.work.path().join("stdout.txt")).unwrap_or_default();
            let Some(summary) = parse_preflight_summary(&stdout) else {
                return self.fail(format!(
                    "preflight {i}: exit {}, no summary line; stderr ends:\n{}",
                    run.exit,
                    run.stderr_tail()
                ));
            };
            if run.exit != 0 {
                return self.fail(format!("preflight {i}: exit {}", run.exit));
            }
            walls.push(ms(run.wall));
            inside.push(summary.0 * 1000.0);
            for (provider, n) in summary.1 {
                calls.entry(provider).or_default().push(n as f64);
            }
        }
        let med = median(&walls);
        let per_provider: BTreeMap<String, f64> =
            calls.iter().map(|(p, v)| (p.clone(), median(v))).collect();
        self.emit(json!({
            "bench": "preflight",
            "runs": walls.len(),
            "mock_latency_ms": ms(PREFLIGHT_LATENCY),
            "wall_ms_median": med,
            "preflight_ms_median": median(&inside),
            "api_calls_per_provider": per_provider,
            "target_ms": PREFLIGHT_TARGET_MS,
            "met": med < PREFLIGHT_TARGET_MS,
        }));
    }

    /// Runs `cloudtest run` once; a run that did not work (wrong exit code, missing or
    /// unexpected results) is a benchmark failure, since its timing would mean nothing.
    fn run_cloudtest(
        &mut self,
        what: &str,
        args: Vec<String>,
        lifecycles: usize,
    ) -> Option<ChildRun> {
        let work = match tempfile::tempdir() {
            Ok(w) => w,
            Err(e) => {
                self.fail(format!("{what}: temp dir: {e}"));
                return None;
            }
        };
        let run = match run_child(&self.options.bin, args, work, false) {
            Ok(r) => r,
            Err(e) => {
                self.fail(format!("{what}: {e}"));
                return None;
            }
        };
        let passed = run.results().map(|r| {
            let reqs = r["requirements"].as_array().cloned().unwrap_or_default();
            let ran: Vec<&Value> = reqs.iter().filter(|q| q["id"] != "CLOUD-03").collect();
            (
                ran.len(),
                ran.iter().filter(|q| q["status"] == "passed").count(),
            )
        });
        if run.exit != 0 || passed != Some((lifecycles, lifecycles)) {
            let tail = run.stderr_tail();
            self.fail(format!(
                "{what}: exit {}, (lifecycles, passed) = {passed:?}, expected ({lifecycles}, {lifecycles}); stderr ends:\n{tail}",
                run.exit
            ));
            return None;
        }
        Some(run)
    }

    /// Figure 1: the default mock run, repeated.
    fn full_run(&mut self) {
        let mut walls = Vec::new();
        let mut in_process = Vec::new();
        let mut rss = 0;
        for i in 0..self.plan.full_runs {
            let Some(run) = self.run_cloudtest(
                &format!("full run {i}"),
                vec!["run".into(), "--no-gap-doc".into()],
                2,
            ) else {
                return;
            };
            walls.push(ms(run.wall));
            in_process.push(
                run.results()
                    .and_then(|r| r["duration_ms"].as_f64())
                    .unwrap_or(f64::NAN),
            );
            rss = rss.max(run.peak_rss_kib);
        }
        let med = median(&walls);
        self.emit(json!({
            "bench": "mock_full_run",
            "runs": walls.len(),
            "wall_ms_median": med,
            "wall_ms_min": walls.iter().copied().fold(f64::INFINITY, f64::min),
            "wall_ms_max": walls.iter().copied().fold(0.0, f64::max),
            "run_duration_ms_median": median(&in_process),
            "peak_rss_kib": rss,
            "target_ms": FULL_RUN_TARGET_MS,
            "met": med < FULL_RUN_TARGET_MS,
        }));
    }

    /// Figure 2: wall / T, where T is the emulated cloud's own waits on the critical path
    /// (4 × latency; see docs/PERFORMANCE.md).
    fn overhead(&mut self) {
        for (latency, runs) in self.plan.latencies.clone() {
            let t = latency * CRITICAL_PATH_LATENCIES;
            let mut walls = Vec::new();
            let mut in_process = Vec::new();
            let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            let latency_arg = format!("{}ms", latency.as_millis());
            for i in 0..runs {
                let args = vec![
                    "run".into(),
                    "--no-gap-doc".into(),
                    "--mock-latency".into(),
                    latency_arg.clone(),
                ];
                let Some(run) =
                    self.run_cloudtest(&format!("overhead {latency_arg} run {i}"), args, 2)
                else {
                    return;
                };
                walls.push(ms(run.wall));
                let results = run.results().unwrap_or(Value::Null);
                in_process.push(results["duration_ms"].as_f64().unwrap_or(f64::NAN));
                for req in results["requirements"].as_array().into_iter().flatten() {
                    for p in req["phases"].as_array().into_iter().flatten() {
                        let key = format!(
                            "{}:{}",
                            req["provider"].as_str().unwrap_or("?"),
                            p["name"].as_str().unwrap_or("?")
                        );
                        phases
                            .entry(key)
                            .or_default()
                            .push(p["duration_ms"].as_f64().unwrap_or(f64::NAN));
                    }
                }
            }
            let med = median(&walls);
            let ratio = med / ms(t);
            let phase_medians: BTreeMap<String, f64> =
                phases.iter().map(|(k, v)| (k.clone(), median(v))).collect();
            self.emit(json!({
                "bench": "latency_overhead",
                "mock_latency_ms": ms(latency),
                "emulated_wait_ms": ms(t),
                "runs": walls.len(),
                "wall_ms_median": med,
                "ratio": round3(ratio),
                "run_duration_ms_median": median(&in_process),
                "in_process_ratio": round3(median(&in_process) / ms(t)),
                "phase_ms_median": phase_medians,
                "target_ratio": OVERHEAD_TARGET,
                "met": ratio <= OVERHEAD_TARGET,
            }));
        }
    }

    /// Figure 3: many lifecycles at once, `--max-parallel` = their number.
    fn scale(&mut self) {
        let latency = self.plan.scale_latency;
        let latency_arg = format!("{}ms", latency.as_millis());
        let mut one_wall = None;
        let mut rows = Vec::new();
        for n in self.plan.scale_sizes.clone() {
            let (aws, azure) = scale_regions(n);
            let lifecycles = aws.len() + azure.len();
            let mut args: Vec<String> = vec![
                "run".into(),
                "--no-gap-doc".into(),
                "--mock-latency".into(),
                latency_arg.clone(),
            ];
            args.extend(["--max-parallel".into(), lifecycles.to_string()]);
            let providers: Vec<&str> = [
                (!aws.is_empty()).then_some("aws"),
                (!azure.is_empty()).then_some("azure"),
            ]
            .into_iter()
            .flatten()
            .collect();
            args.extend(["--provider".into(), providers.join(",")]);
            if !aws.is_empty() {
                args.extend(["--aws-regions".into(), aws.join(",")]);
            }
            if !azure.is_empty() {
                args.extend(["--azure-locations".into(), azure.join(",")]);
            }
            let (mut walls, mut rss, mut calls, mut attempts) =
                (Vec::new(), 0u64, BTreeMap::new(), Vec::new());
            let (mut cpu, mut in_run) = (Vec::new(), Vec::new());
            for i in 0..self.plan.scale_runs {
                let Some(run) = self.run_cloudtest(
                    &format!("scale {lifecycles} run {i}"),
                    args.clone(),
                    lifecycles,
                ) else {
                    return;
                };
                walls.push(ms(run.wall));
                cpu.push(ms(run.cpu));
                in_run.push(
                    run.results()
                        .and_then(|r| r["duration_ms"].as_f64())
                        .unwrap_or(f64::NAN),
                );
                rss = rss.max(run.peak_rss_kib);
                calls = run.calls();
                attempts.extend(aws_api_attempts(&run.stderr));
            }
            let per = |prefix: &str, count: usize| -> Value {
                if count == 0 {
                    return Value::Null;
                }
                let total: u64 = calls
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v)
                    .sum();
                json!(round2(total as f64 / count as f64))
            };
            let med = median(&walls);
            let base = *one_wall.get_or_insert(med);
            let row = json!({
                "bench": "scale",
                "lifecycles": lifecycles,
                "aws_regions": aws.len(),
                "azure_locations": azure.len(),
                "mock_latency_ms": ms(latency),
                "runs": walls.len(),
                "wall_ms_median": med,
                "wall_vs_one": round3(med / base),
                "cpu_ms_median": median(&cpu),
                "run_duration_ms_median": median(&in_run),
                "peak_rss_kib": rss,
                "peak_rss_mib": round2(rss as f64 / 1024.0),
                "api_calls_per_lifecycle": {
                    "aws": per("aws:", aws.len()),
                    "azure_arm": per("arm:", azure.len()),
                    "velociraptor": per("vr:", lifecycles),
                },
                "aws_attempts_per_lifecycle_median": if attempts.is_empty() { Value::Null } else {
                    json!(median(&attempts.iter().map(|&a| a as f64).collect::<Vec<_>>()))
                },
                "calls_by_operation_last_run": calls,
            });
            rows.push(row.clone());
            self.emit(row);
        }
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            let ratio = last["wall_ms_median"].as_f64().unwrap_or(f64::NAN)
                / first["wall_ms_median"].as_f64().unwrap_or(f64::NAN);
            let rss = rows
                .iter()
                .filter_map(|r| r["peak_rss_kib"].as_u64())
                .max()
                .unwrap_or(0);
            self.emit(json!({
                "bench": "scale_summary",
                "largest_lifecycles": last["lifecycles"],
                "note": "every region name the CLI accepts (36 AWS + 57 distinct Azure) is the most lifecycles one run can hold",
                "wall_largest_vs_one": round3(ratio),
                "target_wall_ratio": SCALE_WALL_TARGET,
                "wall_met": ratio <= SCALE_WALL_TARGET,
                "peak_rss_mib": round2(rss as f64 / 1024.0),
                "target_rss_mib": SCALE_RSS_TARGET_KIB / 1024,
                "rss_met": rss < SCALE_RSS_TARGET_KIB,
            }));
        }
    }

    /// Figure 4: CLOUD-01 against moto's server through the CLI, calls per lifecycle.
    fn moto(&mut self) {
        let moto = match start_moto_server() {
            Ok(MotoStart::Running(m)) => m,
            Ok(MotoStart::NotInstalled(why)) => {
                self.emit(json!({"bench": "moto_api_calls", "skipped": why}));
                return;
            }
            Err(e) => {
                self.fail(format!("moto: {e}"));
                return;
            }
        };
        let (mut walls, mut attempts, mut leak_notes) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..self.plan.moto_runs {
            let work = match tempfile::tempdir() {
                Ok(w) => w,
                Err(e) => return self.fail(format!("moto: temp dir: {e}")),
            };
            let template = match write_moto_template(work.path()) {
                Ok(t) => t,
                Err(e) => return self.fail(format!("moto: writing the template copy: {e}")),
            };
            let args = moto_run_args(&moto.url, &template, &work.path().join("out"));
            let run = match run_child(&self.options.bin, args, work, true) {
                Ok(r) => r,
                Err(e) => return self.fail(format!("moto run {i}: {e}")),
            };
            // moto's DeleteStack leaves the VPC (a documented moto limitation): exit 3 with
            // everything else passed is the expected outcome; anything else is a failure.
            let results = run.results().unwrap_or(Value::Null);
            let cloud01 = results["requirements"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["id"] == "CLOUD-01").cloned())
                .unwrap_or(Value::Null);
            let failed_phases: Vec<String> = cloud01["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["status"] != "passed")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            let remaining: Vec<String> = cloud01["facts"]["remaining_resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["kind"].as_str().map(str::to_string))
                .collect();
            // moto's DeleteStack leaves the VPC and what is still linked to it (its route
            // table and internet gateway): the leak check names exactly those.
            let left_by_moto = remaining.iter().any(|k| k == "vpc")
                && remaining
                    .iter()
                    .all(|k| ["vpc", "route_table", "internet_gateway"].contains(&k.as_str()));
            let expected = (run.exit == 0 && failed_phases.is_empty())
                || (run.exit == 3 && failed_phases == ["leak_check"] && left_by_moto);
            if !expected {
                let tail = run.stderr_tail();
                return self.fail(format!(
                    "moto run {i}: exit {}, failed phases {failed_phases:?}, remaining {remaining:?}; stderr ends:\n{tail}",
                    run.exit
                ));
            }
            leak_notes.push(if run.exit == 3 {
                "vpc, route table and gateway left by moto"
            } else {
                "clean"
            });
            walls.push(ms(run.wall));
            attempts.extend(aws_api_attempts(&run.stderr));
        }
        let live_polls = backoff_polls(
            Duration::from_secs(300),
            Duration::from_secs(2),
            Duration::from_secs(15),
        );
        let fixed_polls = 300 / 2;
        self.emit(json!({
            "bench": "moto_api_calls",
            "runs": walls.len(),
            "wall_ms_median": median(&walls),
            "aws_api_attempts_per_lifecycle": attempts,
            "aws_api_attempts_median": median(&attempts.iter().map(|&a| a as f64).collect::<Vec<_>>()),
            "leak_check": leak_notes,
            "live_backoff_polls_for_5min_wait": live_polls,
            "fixed_2s_polls_for_5min_wait": fixed_polls,
        }));
    }
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let git = |args: &[&str]| -> String {
        Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "memory_gib": round2(mem_kib as f64 / 1024.0 / 1024.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
        "load_average_at_start": load,
        "date": date,
        "git_commit": git(&["rev-parse", "--short", "HEAD"]),
        "uncommitted_changes": dirty,
    })
}

fn find<'a>(bench: &'a Bench, name: &str) -> Vec<&'a Value> {
    bench.lines.iter().filter(|l| l["bench"] == name).collect()
}

fn met(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "met"
    } else {
        "**not met**"
    }
}

/// docs/PERFORMANCE.md: every figure against its target, how it was measured, and how to
/// reproduce it.
fn render_doc(bench: &Bench) -> String {
    let mut d = String::new();
    let machine = find(bench, "machine")
        .first()
        .map(|m| m["machine"].clone())
        .unwrap_or(Value::Null);
    let _ = writeln!(d, "# Performance\n");
    let _ = writeln!(
        d,
        "Measured by `cloudtest-bench` (tests/src/bin/cloudtest-bench.rs), which runs the release \
`cloudtest` binary as a user would, one child process at a time: wall time from spawn to exit \
(process start-up, planning, the emulators, every lifecycle, CLOUD-03, all reports), peak RSS \
of that child from `wait4`. This file is generated; do not edit the figures by hand.\n"
    );
    let _ = writeln!(d, "Reproduce:\n\n```sh\ncargo build --release -p cloudtest-cli\ncargo run --release -p cloudtest-e2e --bin cloudtest-bench   # rewrites this file\n```\n");
    let _ = writeln!(
        d,
        "`--short` (what `.ci/run` uses) runs tiny sizes and only checks that every run works and \
every line is well-formed JSON; it does not check the targets. Every JSON line is also printed \
on stdout.\n"
    );
    let _ = writeln!(d, "## Machine\n");
    let _ = writeln!(
        d,
        "| | |\n|---|---|\n| CPU | {} × {} |\n| Memory | {} GiB |\n| Kernel | {} |\n| Load average at start | {} |\n| Date (UTC) | {} |\n| Commit | {}{} |\n",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["load_average_at_start"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("?"),
        machine["git_commit"].as_str().unwrap_or("?"),
        if machine["uncommitted_changes"].as_bool() == Some(true) { " (with uncommitted changes)" } else { "" },
    );
    let _ = writeln!(
        d,
        "The machine is a shared 2-CPU container; other builds may have been running, which \
inflates wall times. Figures are medians to damp that.\n"
    );

    let _ = writeln!(
        d,
        "## Summary\n\n| # | Figure | Target | Measured | |\n|---|---|---|---|---|"
    );
    if let Some(f) = find(bench, "mock_full_run").first() {
        let _ = writeln!(
            d,
            "| 1 | Mock full run (CLOUD-01/02/03), median of {} | < 1 s | {:.0} ms | {} |",
            f["runs"],
            f["wall_ms_median"].as_f64().unwrap_or(f64::NAN),
            met(&f["met"])
        );
    }
    for o in find(bench, "latency_overhead") {
        let _ = writeln!(
            d,
            "| 2 | Overhead, `--mock-latency {}ms` (T = {} ms), median of {} | wall / T ≤ 1.05 | {:.3} | {} |",
            num(&o["mock_latency_ms"]), num(&o["emulated_wait_ms"]), o["runs"], o["ratio"].as_f64().unwrap_or(f64::NAN), met(&o["met"])
        );
    }
    if let Some(s) = find(bench, "scale_summary").first() {
        let _ = writeln!(
            d,
            "| 3 | Scale: {} lifecycles vs 1, same latency | ≤ 1.2× | {:.3}× | {} |",
            s["largest_lifecycles"],
            s["wall_largest_vs_one"].as_f64().unwrap_or(f64::NAN),
            met(&s["wall_met"])
        );
        let _ = writeln!(
            d,
            "| 3 | Scale: peak RSS, largest run | < 200 MiB | {} MiB | {} |",
            s["peak_rss_mib"],
            met(&s["rss_met"])
        );
    }
    if let Some(m) = find(bench, "moto_api_calls").first() {
        if let Some(why) = m["skipped"].as_str() {
            let _ = writeln!(
                d,
                "| 4 | AWS API calls per lifecycle against moto | (none) | not measured: {why} | |"
            );
        } else {
            let _ = writeln!(
                d,
                "| 4 | AWS API calls per lifecycle against moto, median of {} | (none; kept low) | {} | |",
                m["runs"], m["aws_api_attempts_median"]
            );
        }
    }
    if let Some(p) = find(bench, "preflight").first() {
        let _ = writeln!(
            d,
            "| 5 | Preflight, both clouds, `--mock-latency {}ms`, median of {} | < {} ms | {} ms | {} |",
            p["mock_latency_ms"],
            p["runs"],
            num(&p["target_ms"]),
            num(&p["wall_ms_median"]),
            met(&p["met"])
        );
    }
    let _ = writeln!(d);

    let _ = writeln!(d, "## 1. Mock-mode full run\n");
    if let Some(f) = find(bench, "mock_full_run").first() {
        let _ = writeln!(
            d,
            "`cloudtest run --no-gap-doc --out <tmp>` (CLOUD-01 in us-east-1, CLOUD-02 in eastus, CLOUD-03), \
zero emulated latency, {} runs: median {} ms, min {} ms, max {} ms; the run's own `duration_ms` \
(results.json, from planning to the end of the lifecycles) median {} ms; peak RSS {} KiB. The \
rest of the wall time is process start-up, starting the three emulators and writing the reports.\n",
            f["runs"], num(&f["wall_ms_median"]), num(&f["wall_ms_min"]), num(&f["wall_ms_max"]), num(&f["run_duration_ms_median"]), f["peak_rss_kib"]
        );
    }

    let _ = writeln!(d, "## 2. Overhead over the emulated cloud's own time\n");
    let _ = writeln!(
        d,
        "With `--mock-latency L` the emulators make these waits take L each (crates/mock):\n\n\
- AWS: stack creation spreads its resource events over L and reaches `CREATE_COMPLETE` at L; the \
server instance's `CREATE_COMPLETE` (at 38/49 of L for the real template) hands the server to the \
Velociraptor emulator, which answers `/healthz` and enrolls its client L after that; the client \
is interrogated (has a hostname and agent version) L after enrolling; stack deletion takes L. \
Critical path: 0.78 L + 2 L + L ≈ 3.78 L.\n\
- Azure: the deployment completes L after it starts and only then boots the VM (server deployed); \
the client enrolls L after that and is interrogated L later; resource-group deletion takes L. \
Critical path: 4 L.\n\n\
Both lifecycles run concurrently, so the emulated cloud's own time for the default run is \
**T = 4 L** (the Azure path). Everything above T is cloudtest's overhead: process start-up, \
emulator start, the preflight, polling granularity (mock-mode backoff starts at 10 ms and is \
capped at max(50 ms, L/10); ARM's `Retry-After` is the latency rounded up to whole seconds), \
probes, reports.\n"
    );
    if find(bench, "latency_overhead")
        .iter()
        .any(|o| o["mock_latency_ms"].as_f64().is_some_and(|l| l < 1000.0))
    {
        let _ = writeln!(
            d,
            "Below L = 1 s the ratio says little: the ARM emulator's `Retry-After` is whole seconds \
(as ARM's is), and the Azure client waits at least that long before polling a long-running \
operation again, so each Azure deployment and deletion takes at least 1 s whatever L is.\n"
        );
    }
    let _ = writeln!(d, "| L | T | runs | wall median | wall − T | of which outside the run (wall − `duration_ms`) | wall / T | target |\n|---|---|---|---|---|---|---|---|");
    for o in find(bench, "latency_overhead") {
        let _ = writeln!(
            d,
            "| {} ms | {} ms | {} | {} ms | {:.0} ms | {:.0} ms | {:.3} | {} |",
            num(&o["mock_latency_ms"]),
            num(&o["emulated_wait_ms"]),
            o["runs"],
            num(&o["wall_ms_median"]),
            o["wall_ms_median"].as_f64().unwrap_or(f64::NAN)
                - o["emulated_wait_ms"].as_f64().unwrap_or(f64::NAN),
            o["wall_ms_median"].as_f64().unwrap_or(f64::NAN)
                - o["run_duration_ms_median"].as_f64().unwrap_or(f64::NAN),
            o["ratio"].as_f64().unwrap_or(f64::NAN),
            met(&o["met"])
        );
    }
    let _ = writeln!(d, "\nPhase medians (ms) per provider, from results.json:\n");
    for o in find(bench, "latency_overhead") {
        let phases = o["phase_ms_median"].as_object().map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let _ = writeln!(
            d,
            "- L = {} ms: {}",
            num(&o["mock_latency_ms"]),
            phases.unwrap_or_default()
        );
    }
    let _ = writeln!(d);

    let _ = writeln!(d, "## 3. Scale\n");
    let _ = writeln!(
        d,
        "Lifecycles alternate Azure and AWS regions (Azure first: one lifecycle is the longer Azure \
path), `--max-parallel` equal to their number, `--mock-latency` as shown. The CLI accepts only \
real region names (crates/core/src/regions.rs: 36 AWS regions, 57 distinct Azure locations), and \
each (requirement, region) is one lifecycle, so **93 is the most lifecycles one run can hold**; \
the largest run is 93, not 100. API calls are counted by the emulators themselves \
(`mock-calls.json` in the output directory) and divided by that provider's lifecycle count \
(the preflight's calls, counted apart, are not in these columns); the Velociraptor column is the \
probes' HTTP requests. Every run includes its preflight, as `cloudtest run` does by default.\n\n\
What keeps a large run close to one lifecycle (issue 14 §8): the preflight checks regions \
concurrently (up to `--max-parallel`, printed in region order); each lifecycle runs as its own \
task, so both CPUs serve it; every AWS SDK configuration shares one HTTPS client instead of \
each service client building its own TLS configuration from the platform's root certificates; \
the template body is parsed once per text, in cloudtest and in the emulator, instead of once \
per region and call; the Velociraptor emulator renders only the searching login's clients \
(it rendered every lifecycle's, for every search); and mock-mode polling is capped at L/10.\n"
    );
    let _ = writeln!(
        d,
        "| lifecycles (AWS + Azure) | L | runs | wall median | vs 1 | outside the run (wall − `duration_ms`) | CPU (user + sys) | peak RSS | AWS calls / lifecycle | ARM calls / lifecycle | Velociraptor requests / lifecycle |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in find(bench, "scale") {
        let c = &s["api_calls_per_lifecycle"];
        let _ = writeln!(
            d,
            "| {} ({} + {}) | {} ms | {} | {} ms | {:.3}× | {:.0} ms | {} ms | {} MiB | {} | {} | {} |",
            s["lifecycles"],
            s["aws_regions"],
            s["azure_locations"],
            num(&s["mock_latency_ms"]),
            s["runs"],
            num(&s["wall_ms_median"]),
            s["wall_vs_one"].as_f64().unwrap_or(f64::NAN),
            s["wall_ms_median"].as_f64().unwrap_or(f64::NAN)
                - s["run_duration_ms_median"].as_f64().unwrap_or(f64::NAN),
            num(&s["cpu_ms_median"]),
            s["peak_rss_mib"],
            dash(&c["aws"]),
            dash(&c["azure_arm"]),
            dash(&c["velociraptor"])
        );
    }
    if let Some(s) = find(bench, "scale_summary").first() {
        let _ = writeln!(
            d,
            "\n{} lifecycles took {:.3}× the wall time of one (target ≤ 1.2×: {}); peak RSS {} MiB \
(target < 200 MiB: {}).\n",
            s["largest_lifecycles"], s["wall_largest_vs_one"].as_f64().unwrap_or(f64::NAN), met(&s["wall_met"]),
            s["peak_rss_mib"], met(&s["rss_met"])
        );
        if s["wall_met"].as_bool() == Some(false) {
            let _ = writeln!(
                d,
                "Why the wall target is missed: all lifecycles start at the same instant, so every \
lifecycle's preflight, CreateStack / deployment and polls, and every emulator answering them, \
share one process on {} CPUs. The columns above show where it goes: the time outside \
`duration_ms` (writing results/JUnit/Markdown/HTML for every entry) grows with their number, \
and so does the CPU time. The emulated waits themselves do not grow.\n",
                machine["cpus"]
            );
        }
    }
    // Calls by operation per lifecycle, from the first run that has both providers.
    let rows = find(bench, "scale");
    if let Some(s) = rows
        .iter()
        .find(|s| s["aws_regions"].as_u64() > Some(0) && s["azure_locations"].as_u64() > Some(0))
    {
        let _ = writeln!(
            d,
            "Calls by operation per lifecycle ({} lifecycles, L = {} ms, last run):\n\n| operation | per lifecycle |\n|---|---|",
            s["lifecycles"],
            num(&s["mock_latency_ms"])
        );
        for (op, count) in s["calls_by_operation_last_run"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let per = match op.split(':').next() {
                Some("aws") => s["aws_regions"].as_f64(),
                Some("arm") => s["azure_locations"].as_f64(),
                _ => s["lifecycles"].as_f64(),
            };
            let value = count.as_f64().unwrap_or(f64::NAN) / per.unwrap_or(f64::NAN);
            let _ = writeln!(d, "| `{op}` | {} |", num(&json!(round2(value))));
        }
        let _ = writeln!(d);
    }

    let _ = writeln!(
        d,
        "## 4. API calls per lifecycle against moto, and polling backoff\n"
    );
    if let Some(m) = find(bench, "moto_api_calls").first() {
        if let Some(why) = m["skipped"].as_str() {
            let _ = writeln!(d, "Not measured on this machine: {why}.\n");
        } else {
            let _ = writeln!(
                d,
                "`cloudtest run --provider aws --aws-endpoint <moto> --probe-via-mock --aws-template <copy>` \
(see tests/tests/moto_cli.rs): the real template with only the wait conditions' `GetAtt .Data` \
replaced, since moto ignores wait conditions. {} runs; AWS API attempts per lifecycle (the \
provider's own count, retries included): {} (median {}); wall median {} ms. Leak check: {} — \
moto's DeleteStack leaves the stack's VPC (it does not delete the route table, its subnet \
association and the gateway attachment, answers `DependencyViolation`, and drops the stack), so \
the run ends with exit 3 naming exactly that VPC; every other phase passes.\n",
                m["runs"], m["aws_api_attempts_per_lifecycle"], m["aws_api_attempts_median"], num(&m["wall_ms_median"]), m["leak_check"]
            );
            let _ = writeln!(
                d,
                "How backoff keeps the count low: every wait (stack creation, deletion, health, \
enrollment) polls with capped exponential backoff and jitter (crates/core/src/poll.rs). moto \
completes stack operations synchronously, so one or two `DescribeStacks` per wait suffice. \
Against real clouds the live backoff starts at 2 s, doubles, and is capped at 15 s: a \
5-minute stack creation costs {} polls instead of {} at a fixed 2 s interval (computed, not \
measured). In mock mode the same shape is scaled to the emulators (10 ms start, cap \
max(50 ms, L/50)), which is what the per-operation counts in section 3 show.\n",
                m["live_backoff_polls_for_5min_wait"], m["fixed_2s_polls_for_5min_wait"]
            );
        }
    }
    if let Some(p) = find(bench, "preflight").first() {
        let _ = writeln!(
            d,
            "## 5. Preflight\n\n`cloudtest preflight --json --mock-latency {}ms` (AWS us-east-1 and Azure eastus against \
the embedded emulators, every check, the budget line), {} runs: wall median {} ms (process start to exit, \
emulator start-up included; target < {} ms: {}), the checks themselves {} ms. API calls per provider \
(HTTP requests, retries included): {}. `--mock-latency` slows the emulators' long-running operations, \
which the preflight never starts: its calls are all read-only and answer at once. In a `run` the same \
calls appear in `mock-calls.json` under `preflight:`.\n",
            p["mock_latency_ms"],
            p["runs"],
            num(&p["wall_ms_median"]),
            num(&p["target_ms"]),
            met(&p["met"]),
            num(&p["preflight_ms_median"]),
            p["api_calls_per_provider"]
                .as_object()
                .map(|m| m
                    .iter()
                    .map(|(k, v)| format!("{k} {}", num(v)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    d
}

/// A JSON number as a person writes it: `200`, not `200.0`.
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        Some(x) => format!("{x}"),
        None => v.to_string(),
    }
}

fn dash(v: &Value) -> String {
    if v.is_null() {
        "-".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn scale_regions_alternate_azure_first_and_stop_at_the_known_names() {
        assert_eq!(scale_regions(1), (vec![], vec!["eastus"]));
        let (aws, azure) = scale_regions(10);
        assert_eq!((aws.len(), azure.len()), (5, 5));
        let (aws, azure) = scale_regions(1000);
        assert_eq!(
            (aws.len(), azure.len()),
            (AWS_REGIONS.len(), AZURE_LOCATIONS.len())
        );
        let mut all: Vec<&str> = azure.clone();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), AZURE_LOCATIONS.len(), "Azure names are distinct");
    }

    #[test]
    fn backoff_polls_counts_capped_doubling() {
        // 2+4+8+15+15 = 44 s ≥ 40 s: five polls.
        assert_eq!(
            backoff_polls(
                Duration::from_secs(40),
                Duration::from_secs(2),
                Duration::from_secs(15)
            ),
            5
        );
        assert_eq!(
            backoff_polls(
                Duration::ZERO,
                Duration::from_secs(2),
                Duration::from_secs(15)
            ),
            0
        );
    }

    #[test]
    fn preflight_summary_gives_seconds_and_calls_per_provider() {
        let out = "PREFLIGHT\nok    aws ...\npreflight: 14 checks, 0 failed, 0 warnings in 0.3s (API calls: aws 11, azure 9)\n";
        let (secs, calls) = parse_preflight_summary(out).expect("summary");
        assert!((secs - 0.3).abs() < 1e-9);
        assert_eq!(
            calls,
            vec![("aws".to_string(), 11), ("azure".to_string(), 9)]
        );
        assert!(parse_preflight_summary("no summary").is_none());
    }

    #[test]
    fn arguments_parse() {
        let o = parse_args(
            ["--short", "--bin", "/bin/sh"]
                .map(String::from)
                .into_iter(),
        )
        .expect("parses");
        assert!(o.short && o.doc.is_none());
        let o = parse_args(["--doc", "/tmp/x.md"].map(String::from).into_iter()).expect("parses");
        assert_eq!(o.doc, Some(PathBuf::from("/tmp/x.md")));
        assert!(parse_args(["--bogus"].map(String::from).into_iter()).is_err());
    }
}
