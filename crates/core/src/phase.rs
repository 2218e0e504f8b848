//! Lifecycle phases and how each one ended.

use serde::{Deserialize, Serialize};

/// The six phases every provider goes through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Create,
    WaitReady,
    Health,
    Enrollment,
    Teardown,
    LeakCheck,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Create,
        Phase::WaitReady,
        Phase::Health,
        Phase::Enrollment,
        Phase::Teardown,
        Phase::LeakCheck,
    ];

    /// The name used in results.json, config keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::WaitReady => "wait_ready",
            Phase::Health => "health",
            Phase::Enrollment => "enrollment",
            Phase::Teardown => "teardown",
            Phase::LeakCheck => "leak_check",
        }
    }

    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Phases that clean up: they run whenever `create` was attempted.
    pub fn is_cleanup(self) -> bool {
        matches!(self, Phase::Teardown | Phase::LeakCheck)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Passed,
    Failed,
    Skipped,
}

/// One phase as it happened: the unit of results.json's `phases` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub name: Phase,
    pub status: PhaseStatus,
    /// RFC 3339 start time; absent for phases that never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_ms: u64,
    pub detail: String,
}

impl PhaseRecord {
    pub fn skipped(name: Phase, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: PhaseStatus::Skipped,
            started_at: None,
            duration_ms: 0,
            detail: detail.into(),
        }
    }
}
