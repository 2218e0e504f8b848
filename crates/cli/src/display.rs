//! Shows a run as it happens: plain timestamped lines in CI or when not a terminal, and in a
//! terminal the same lines plus a status line of what is being waited on.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudtest_core::{EventSink, LifecycleId, Phase, PhaseStatus, RunEvent, RunEventKind};

use crate::redact;

pub struct Display {
    live: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Phases in flight: lifecycle → (phase, since).
    active: BTreeMap<String, (Phase, Instant)>,
    status_shown: bool,
}

impl Display {
    /// Live status line only on a terminal and outside CI.
    pub fn new() -> Arc<Self> {
        let live = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Arc::new(Self {
            live,
            state: Mutex::new(State::default()),
        })
    }

    /// Redraws the status line every 250 ms while a run is in flight (terminal only).
    pub fn start_ticker(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.live {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let mut st = me.state.lock().unwrap_or_else(|e| e.into_inner());
                me.redraw(&mut st);
            }
        }))
    }

    /// Clears the status line before the final summary.
    pub fn finish(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.active.clear();
        self.clear_status(&mut st);
    }

    fn clear_status(&self, st: &mut State) {
        if self.live && st.status_shown {
            eprint!("\r\x1b[2K");
            st.status_shown = false;
        }
    }

    fn redraw(&self, st: &mut State) {
        if !self.live || st.active.is_empty() {
            return;
        }
        let parts: Vec<String> = st
            .active
            .iter()
            .map(|(lc, (phase, since))| format!("{lc} {phase} {}s", since.elapsed().as_secs()))
            .collect();
        let mut line = format!("⏳ {}", parts.join(" | "));
        if line.len() > 160 {
            line.truncate(157);
            line.push_str("...");
        }
        eprint!("\r\x1b[2K{line}");
        let _ = std::io::stderr().flush();
        st.status_shown = true;
    }

    fn line(&self, st: &mut State, text: &str) {
        self.clear_status(st);
        let stamp = chrono::Utc::now().format("%H:%M:%S%.3f");
        eprintln!("{stamp} {}", redact::redact(text));
        self.redraw(st);
    }
}

fn label(id: &LifecycleId) -> String {
    format!("{} {}", id.requirement, id.region)
}

impl EventSink for Display {
    fn event(&self, event: &RunEvent) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let lc = label(&event.lifecycle);
        match &event.kind {
            RunEventKind::PhaseStarted { phase } => {
                st.active.insert(lc.clone(), (*phase, Instant::now()));
                self.line(&mut st, &format!("{lc:<22} {phase:<10} started"));
            }
            RunEventKind::Progress { phase, message } => {
                self.line(&mut st, &format!("{lc:<22} {phase:<10} {message}"));
            }
            RunEventKind::PhaseFinished { record } => {
                st.active.remove(&lc);
                let status = match record.status {
                    PhaseStatus::Passed => "passed",
                    PhaseStatus::Failed => "FAILED",
                    PhaseStatus::Skipped => "skipped",
                };
                let took = if record.status == PhaseStatus::Skipped {
                    String::new()
                } else {
                    format!(" {:.1}s", record.duration_ms as f64 / 1000.0)
                };
                self.line(
                    &mut st,
                    &format!(
                        "{lc:<22} {:<10} {status}{took}: {}",
                        record.name, record.detail
                    ),
                );
            }
            RunEventKind::CancelRequested { reason } => {
                self.line(
                    &mut st,
                    &format!("{lc:<22} cancel requested ({})", reason.signal_name()),
                );
            }
            RunEventKind::KeptResources { what } => {
                self.line(&mut st, &format!("!!! {lc}: {what}"));
            }
        }
    }
}
