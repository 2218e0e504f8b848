//! The spend ledger: one JSON line per live lifecycle, kept between CI runs (the workflows
//! restore and save the file), read back to guard the monthly budget per provider.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use cloudtest_core::{RunMode, RunResults};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One recorded live lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub recorded_at: DateTime<Utc>,
    pub run_id: String,
    pub requirement: String,
    pub provider: String,
    pub region: String,
    pub usd: f64,
}

/// Whether the budget guard knows past spend. A missing ledger is said aloud, never
/// silently counted as zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendHistory {
    Known,
    Missing { path: PathBuf },
}

/// Said before a live run when the ledger does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSpendHistory {
    pub path: PathBuf,
}

impl fmt::Display for NoSpendHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no spend history: budget guard counts this run only (ledger {} not found; CI must restore it between runs)",
            self.path.display()
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    pub path: PathBuf,
    pub entries: Vec<LedgerEntry>,
    pub history: SpendHistory,
}

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("cannot read spend ledger {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spend ledger {path} line {line} is not a ledger entry: {source} (fix or remove the line; the budget guard will not guess)")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot append to spend ledger {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A live run refused because it would exceed a provider's monthly budget (exit code 4).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{provider}: month-to-date spend ${month_to_date_usd:.2} + this run's estimate ${estimate_usd:.2} = ${total:.2} exceeds the monthly budget of ${budget_usd:.2}; live run refused (raise [budget] monthly_usd or wait for next month)", total = month_to_date_usd + estimate_usd)]
pub struct BudgetRefusal {
    pub provider: String,
    pub month_to_date_usd: f64,
    pub estimate_usd: f64,
    pub budget_usd: f64,
}

/// The guard's go-ahead, with the figures for the report and the notice to say, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCheck {
    pub provider: String,
    pub month_to_date_usd: f64,
    pub estimate_usd: f64,
    pub budget_usd: f64,
    pub notice: Option<NoSpendHistory>,
}

impl Ledger {
    /// Reads the ledger; a missing file is an empty ledger whose history is `Missing`.
    pub fn load(path: &Path) -> Result<Ledger, LedgerError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Ledger {
                    path: path.to_path_buf(),
                    entries: Vec::new(),
                    history: SpendHistory::Missing {
                        path: path.to_path_buf(),
                    },
                })
            }
            Err(source) => {
                return Err(LedgerError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry = serde_json::from_str(line).map_err(|source| LedgerError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
            entries.push(entry);
        }
        Ok(Ledger {
            path: path.to_path_buf(),
            entries,
            history: SpendHistory::Known,
        })
    }

    /// Spend of `provider` in `now`'s UTC calendar month.
    pub fn month_to_date(&self, provider: &str, now: DateTime<Utc>) -> f64 {
        self.entries
            .iter()
            .filter(|e| e.provider == provider)
            .filter(|e| e.recorded_at.year() == now.year() && e.recorded_at.month() == now.month())
            .map(|e| e.usd)
            .sum()
    }

    /// Refuses when month-to-date + `estimate_usd` exceeds `budget_usd`.
    pub fn check_budget(
        &self,
        provider: &str,
        estimate_usd: f64,
        budget_usd: f64,
        now: DateTime<Utc>,
    ) -> Result<BudgetCheck, BudgetRefusal> {
        let month_to_date_usd = self.month_to_date(provider, now);
        if month_to_date_usd + estimate_usd > budget_usd {
            return Err(BudgetRefusal {
                provider: provider.to_string(),
                month_to_date_usd,
                estimate_usd,
                budget_usd,
            });
        }
        let notice = match &self.history {
            SpendHistory::Known => None,
            SpendHistory::Missing { path } => Some(NoSpendHistory { path: path.clone() }),
        };
        Ok(BudgetCheck {
            provider: provider.to_string(),
            month_to_date_usd,
            estimate_usd,
            budget_usd,
            notice,
        })
    }
}

/// The entries a finished run adds: one per live lifecycle that cost something; none for
/// mock runs.
pub fn entries_for(run: &RunResults, recorded_at: DateTime<Utc>) -> Vec<LedgerEntry> {
    if run.mode == RunMode::Mock {
        return Vec::new();
    }
    run.requirements
        .iter()
        .filter(|r| r.cost.estimated_usd > 0.0)
        .map(|r| LedgerEntry {
            recorded_at,
            run_id: run.run_id.clone(),
            requirement: r.id.as_str().to_string(),
            provider: r.provider.clone(),
            region: r.region.clone(),
            usd: r.cost.estimated_usd,
        })
        .collect()
}

/// Appends a run's entries to the ledger at `path` (created with its directory when
/// absent). Returns how many lines were written; mock runs write none.
pub fn record_run(
    path: &Path,
    run: &RunResults,
    recorded_at: DateTime<Utc>,
) -> Result<usize, LedgerError> {
    let entries = entries_for(run, recorded_at);
    if entries.is_empty() {
        return Ok(0);
    }
    let write_err = |source| LedgerError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut text = String::new();
    for e in &entries {
        text.push_str(&serde_json::to_string(e).unwrap_or_default());
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn priced_run() -> RunResults {
        let mut run = sample::two_provider_run();
        run.requirements[0].cost.estimated_usd = 0.12;
        run.requirements[1].cost.estimated_usd = 0.15;
        run
    }

    #[test]
    fn live_runs_are_recorded_and_summed_per_provider_and_month() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/ledger.jsonl");
        assert_eq!(
            record_run(&path, &priced_run(), at(2025, 5, 31)).expect("write"),
            2
        );
        assert_eq!(
            record_run(&path, &priced_run(), at(2025, 6, 1)).expect("write"),
            2
        );
        assert_eq!(
            record_run(&path, &priced_run(), at(2025, 6, 2)).expect("write"),
            2
        );
        let ledger = Ledger::load(&path).expect("load");
        assert_eq!(ledger.history, SpendHistory::Known);
        assert_eq!(ledger.entries.len(), 6);
        assert!((ledger.month_to_date("aws", at(2025, 6, 15)) - 0.24).abs() < 1e-9);
        assert!((ledger.month_to_date("azure", at(2025, 6, 15)) - 0.30).abs() < 1e-9);
        assert_eq!(ledger.month_to_date("aws", at(2025, 7, 1)), 0.0);
    }

    #[test]
    fn mock_runs_are_not_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut run = priced_run();
        run.mode = RunMode::Mock;
        assert_eq!(record_run(&path, &run, at(2025, 6, 1)).expect("ok"), 0);
        assert!(!path.exists());
    }

    #[test]
    fn budget_refusal_gives_both_figures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut big = priced_run();
        big.requirements[0].cost.estimated_usd = 49.95;
        record_run(&path, &big, at(2025, 6, 1)).expect("write");
        let ledger = Ledger::load(&path).expect("load");
        let refusal = ledger
            .check_budget("aws", 0.10, 50.0, at(2025, 6, 20))
            .unwrap_err();
        assert!((refusal.month_to_date_usd - 49.95).abs() < 1e-9);
        let msg = refusal.to_string();
        assert!(
            msg.contains("$49.95") && msg.contains("$0.10") && msg.contains("$50.00"),
            "{msg}"
        );
        // The other provider and next month are within budget.
        assert!(ledger
            .check_budget("azure", 0.10, 50.0, at(2025, 6, 20))
            .is_ok());
        let ok = ledger
            .check_budget("aws", 0.10, 50.0, at(2025, 7, 1))
            .expect("new month");
        assert_eq!(ok.notice, None);
    }

    #[test]
    fn missing_ledger_is_said_aloud() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.jsonl");
        let ledger = Ledger::load(&path).expect("missing is not an error");
        let check = ledger
            .check_budget("aws", 0.1, 50.0, at(2025, 6, 1))
            .expect("ok");
        let notice = check.notice.expect("notice").to_string();
        assert!(
            notice.starts_with("no spend history: budget guard counts this run only"),
            "{notice}"
        );
        // Still refuses a single run over budget.
        assert!(ledger
            .check_budget("aws", 60.0, 50.0, at(2025, 6, 1))
            .is_err());
    }

    #[test]
    fn corrupt_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        record_run(&path, &priced_run(), at(2025, 6, 1)).expect("write");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{not json\n");
        std::fs::write(&path, text).expect("write");
        let err = Ledger::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
