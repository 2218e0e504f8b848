//! SIGTERM / SIGINT on the running binary: the run stops, tears down everything it created,
//! writes results.json with `interrupted_by`, leaves nothing in the emulators, and exits
//! 143 / 130. A second signal during teardown is ignored.
//!
//! `--mock-latency 2s` makes the emulated waits take seconds, so each target phase is in
//! flight when the signal lands; the signal is sent as soon as stderr shows the phase start.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cloudtest_e2e::{command, read_json};
use serde_json::Value;

/// Longest a signalled run may take from spawn to exit (phase + teardown at 2 s latency).
const RUN_LIMIT: Duration = Duration::from_secs(45);

/// The binary running in the background, its stderr read line by line.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<String>>,
    out: tempfile::TempDir,
    started: Instant,
}

impl Running {
    fn spawn(extra: &[&str]) -> Running {
        let out = tempfile::tempdir().expect("tempdir");
        let out_arg = out.path().to_string_lossy().into_owned();
        let mut args = vec!["run", "--out", out_arg.as_str(), "--no-gap-doc"];
        args.extend_from_slice(extra);
        let mut child = command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning cloudtest");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let collected = stderr.clone();
        let pipe = child.stderr.take().expect("stderr piped");
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut pipe = child.stdout.take().expect("stdout piped");
        let stdout_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        });
        Running {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            stdout_reader: Some(stdout_reader),
            out,
            started: Instant::now(),
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Blocks until a stderr line satisfies `want`; returns it.
    fn wait_for_line(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        loop {
            let left = RUN_LIMIT.saturating_sub(self.started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line {what} within {RUN_LIMIT:?}:\n{}",
                        self.stderr_text()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    panic!("cloudtest exited before {what}:\n{}", self.stderr_text());
                }
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of a child this test spawned and has not yet reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Waits for exit (killing the process if it overstays) and collects what it wrote.
    fn finish(mut self) -> Finished {
        let code = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status.code(),
                None if self.started.elapsed() > RUN_LIMIT => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "cloudtest still running after {RUN_LIMIT:?}:\n{}",
                        self.stderr_text()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        let stdout = self
            .stdout_reader
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self.stderr_text();
        Finished {
            code,
            stdout,
            stderr,
            out: self.out,
        }
    }
}

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    out: tempfile::TempDir,
}

impl Finished {
    fn transcript(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
    fn results(&self) -> Value {
        read_json(&self.out.path().join("results.json"))
    }
    fn mock_state(&self) -> Value {
        read_json(&self.out.path().join("mock-state.json"))
    }
    fn requirement(&self, id: &str) -> Option<Value> {
        self.results()["requirements"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id).cloned())
    }
}

/// `HH:MM:SS.mmm CLOUD-0N REGION PHASE started`: the display's phase-start line, for
/// `lifecycle` (`CLOUD-02 eastus`) or, with None, for any lifecycle.
fn phase_started(line: &str, phase: &str, lifecycle: Option<&str>) -> bool {
    let toks: Vec<&str> = line.split_whitespace().collect();
    toks.len() == 5
        && toks[3] == phase
        && toks[4] == "started"
        && lifecycle.is_none_or(|want| want == format!("{} {}", toks[1], toks[2]))
}

fn lifecycle_of(line: &str) -> String {
    let toks: Vec<&str> = line.split_whitespace().collect();
    format!("{} {}", toks[1], toks[2])
}

/// What every interrupted run must show: the exit code, `interrupted_by`, teardown passed for
/// every lifecycle that started (or "nothing was created"), CLOUD-03 not passed, and empty
/// emulators.
fn assert_interrupted_cleanly(run: &Finished, code: i32, reason: &str, signal: &str) {
    assert_eq!(run.code, Some(code), "exit code\n{}", run.transcript());
    let results = run.results();
    assert_eq!(
        results["interrupted_by"],
        reason,
        "interrupted_by\n{}",
        run.transcript()
    );
    assert!(
        run.stderr.contains(&format!("{signal}: cancelling")),
        "stderr should acknowledge {signal}\n{}",
        run.transcript()
    );
    let mut lifecycles = 0;
    for id in ["CLOUD-01", "CLOUD-02"] {
        let Some(r) = run.requirement(id) else {
            panic!("{id} missing from results.json\n{}", run.transcript());
        };
        lifecycles += 1;
        assert_eq!(r["status"], "error", "{id} was interrupted: {r}");
        let why = r["reason"].as_str().unwrap_or("");
        assert!(
            why.contains(&format!("cancelled by {signal}")),
            "{id}: reason `{why}`"
        );
        let phases = r["phases"].as_array().cloned().unwrap_or_default();
        let phase = |name: &str| phases.iter().find(|p| p["name"] == name).cloned();
        let create_started = phase("create").is_some_and(|p| p["status"] != "skipped");
        if create_started {
            let teardown = phase("teardown").unwrap_or(Value::Null);
            assert_eq!(
                teardown["status"],
                "passed",
                "{id}: teardown must run and pass after {signal}: {teardown}\n{}",
                run.transcript()
            );
            let leak = phase("leak_check").unwrap_or(Value::Null);
            assert_eq!(leak["status"], "passed", "{id}: {leak}");
            assert_eq!(r["facts"]["resources_remaining"], 0, "{id}");
        } else {
            assert!(
                why.contains("nothing was created"),
                "{id}: create never started, so the reason should say nothing was created: `{why}`"
            );
        }
    }
    assert_eq!(lifecycles, 2);
    if let Some(c3) = run.requirement("CLOUD-03") {
        assert_ne!(
            c3["status"], "passed",
            "CLOUD-03 cannot pass an interrupted run"
        );
    }
    let state = run.mock_state();
    for key in ["aws", "azure", "velociraptor"] {
        assert_eq!(
            state[key].as_array().map(Vec::len),
            Some(0),
            "mock-state.json `{key}` must be empty after an interrupted run: {state}"
        );
    }
}

/// The phase record of `lifecycle` (`CLOUD-02 eastus`) for `phase`.
fn phase_record(run: &Finished, lifecycle: &str, phase: &str) -> Value {
    let id = lifecycle.split_whitespace().next().unwrap_or_default();
    run.requirement(id)
        .and_then(|r| {
            r["phases"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == phase).cloned())
        })
        .unwrap_or(Value::Null)
}

/// One SIGTERM case: the phase to interrupt, the lifecycle whose start line triggers it
/// (None: whichever gets there first), and the flags that keep that phase in flight.
struct Case {
    phase: &'static str,
    lifecycle: Option<&'static str>,
    args: &'static [&'static str],
    /// A requirement that must not have started when the signal landed.
    never_started: Option<&'static str>,
}

const SIGTERM_CASES: &[Case] = &[
    // Creation is quick even with latency; one throttled ARM call (429, Retry-After: 1)
    // holds Azure's create for about a second.
    Case {
        phase: "create",
        lifecycle: Some("CLOUD-02 eastus"),
        args: &[
            "--mock-latency",
            "2s",
            "--fault",
            "ResourceGroups_CreateOrUpdate:throttle:1",
        ],
        never_started: None,
    },
    Case {
        phase: "wait_ready",
        lifecycle: None,
        args: &["--mock-latency", "2s"],
        never_started: None,
    },
    // One lifecycle at a time: the other has not started when the signal lands.
    Case {
        phase: "wait_ready",
        lifecycle: Some("CLOUD-01 us-east-1"),
        args: &["--mock-latency", "2s", "--max-parallel", "1"],
        never_started: Some("CLOUD-02"),
    },
    Case {
        phase: "health",
        lifecycle: None,
        args: &["--mock-latency", "2s"],
        never_started: None,
    },
    // Enrollment is quick once the client boots; with no client it waits for its deadline.
    Case {
        phase: "enrollment",
        lifecycle: None,
        args: &["--mock-latency", "2s", "--scenario", "no-enrollment"],
        never_started: None,
    },
];

fn sigterm_during(case: &Case) {
    let mut running = Running::spawn(case.args);
    let line = running.wait_for_line(&format!("`{} started`", case.phase), |l| {
        phase_started(l, case.phase, case.lifecycle)
    });
    running.signal(libc::SIGTERM);
    let lifecycle = lifecycle_of(&line);
    let run = running.finish();
    assert_interrupted_cleanly(&run, 143, "terminate", "SIGTERM");

    // The lifecycle that was in the target phase was cut there.
    let record = phase_record(&run, &lifecycle, case.phase);
    assert_eq!(
        record["status"],
        "failed",
        "{lifecycle} {}: {record}\n{}",
        case.phase,
        run.transcript()
    );
    let detail = record["detail"].as_str().unwrap_or("");
    assert_eq!(
        detail,
        format!("cancelled by SIGTERM during {}", case.phase),
        "{lifecycle}"
    );
    if let Some(id) = case.never_started {
        let r = run.requirement(id).unwrap_or(Value::Null);
        let why = r["reason"].as_str().unwrap_or("");
        assert!(
            why.contains("before it started; nothing was created"),
            "{id} never started: `{why}`\n{}",
            run.transcript()
        );
        assert!(
            r["phases"].as_array().is_none_or(|p| p.is_empty()),
            "{id} has phases but never started: {r}"
        );
    }
    assert!(
        run.stdout.contains("interrupted by SIGTERM"),
        "{}",
        run.transcript()
    );
}

macro_rules! sigterm_tests {
    ($($name:ident => $index:expr;)*) => {
        $(
            #[test]
            fn $name() {
                sigterm_during(&SIGTERM_CASES[$index]);
            }
        )*
        #[test]
        fn every_sigterm_case_has_a_test() {
            assert_eq!([$($index),*].len(), SIGTERM_CASES.len());
        }
    };
}

sigterm_tests! {
    sigterm_during_create_tears_down => 0;
    sigterm_during_wait_ready_tears_down => 1;
    sigterm_before_a_lifecycle_starts_creates_nothing => 2;
    sigterm_during_health_tears_down => 3;
    sigterm_during_enrollment_tears_down => 4;
}

#[test]
fn sigint_during_wait_ready_exits_130_after_teardown() {
    let mut running = Running::spawn(&["--mock-latency", "2s"]);
    running.wait_for_line("`wait_ready started`", |l| {
        phase_started(l, "wait_ready", None)
    });
    running.signal(libc::SIGINT);
    let run = running.finish();
    assert_interrupted_cleanly(&run, 130, "interrupt", "SIGINT");
}

#[test]
fn second_sigterm_during_teardown_is_ignored() {
    let mut running = Running::spawn(&["--mock-latency", "2s"]);
    let line = running.wait_for_line("`health started`", |l| phase_started(l, "health", None));
    running.signal(libc::SIGTERM);
    let lifecycle = lifecycle_of(&line);
    running.wait_for_line("`teardown started`", |l| {
        phase_started(l, "teardown", Some(&lifecycle))
    });
    running.signal(libc::SIGTERM);
    running.wait_for_line("the second signal acknowledged", |l| l.contains("ignored"));
    let run = running.finish();
    assert!(
        run.stderr.contains("SIGTERM: teardown is in progress") && run.stderr.contains("ignored"),
        "{}",
        run.transcript()
    );
    assert!(
        !run.stderr.contains("aborting now"),
        "a second signal must not abort\n{}",
        run.transcript()
    );
    assert_interrupted_cleanly(&run, 143, "terminate", "SIGTERM");
    // Teardown of the lifecycle that was signalled twice took the emulated 2 s: it was not cut.
    let teardown = phase_record(&run, &lifecycle, "teardown");
    assert!(
        teardown["duration_ms"].as_u64().unwrap_or(0) >= 1500,
        "teardown should have run to completion: {teardown}"
    );
}
