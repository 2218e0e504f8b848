//! The results.json contract. Other tools read these names: change them only with care.

use serde::{Deserialize, Serialize};

use crate::cancel::CancelReason;
use crate::exit::ExitCode;
use crate::facts::RequirementFacts;
use crate::phase::PhaseRecord;
use crate::requirement::{RequirementId, RequirementStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    Mock,
    Live,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Mock => "mock",
            RunMode::Live => "live",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub estimated_usd: f64,
    /// Mock runs only: what the same resources would have cost on the real cloud for the
    /// lifecycle's duration, priced exactly as a live run is (cost accounting is exercised
    /// by every mock run). Absent in live runs, where `estimated_usd` is that figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_cost_usd: Option<f64>,
}

/// One (requirement, region): one entry of results.json's `requirements`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementResult {
    pub id: RequirementId,
    pub provider: String,
    pub region: String,
    pub status: RequirementStatus,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
    #[serde(default)]
    pub facts: RequirementFacts,
    #[serde(default)]
    pub cost: Cost,
}

impl RequirementResult {
    /// A requirement that did not run, with the reason (skip guard, not built, budget).
    pub fn not_run(
        id: RequirementId,
        region: impl Into<String>,
        status: RequirementStatus,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            id,
            provider: id.provider().to_string(),
            region: region.into(),
            status,
            reason: reason.into(),
            phases: Vec::new(),
            facts: RequirementFacts::default(),
            cost: Cost::default(),
        }
    }

    /// Resources left after teardown; any is exit code 3.
    pub fn resources_remaining(&self) -> u32 {
        self.facts.resources_remaining.unwrap_or(0)
    }
}

/// The whole of results.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub run_id: String,
    pub mode: RunMode,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u64,
    /// Set when a signal cut the run short (teardown still ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<CancelReason>,
    pub requirements: Vec<RequirementResult>,
}

impl RunResults {
    /// Worst outcome first: leaked resources (3) outrank an interruption (130/143), which
    /// outranks a failed requirement (1).
    pub fn exit_code(&self) -> ExitCode {
        if self
            .requirements
            .iter()
            .any(|r| r.resources_remaining() > 0)
        {
            return ExitCode::ResourcesRemain;
        }
        match self.interrupted_by {
            Some(CancelReason::Interrupt) => return ExitCode::Interrupted,
            Some(CancelReason::Terminate) => return ExitCode::Terminated,
            None => {}
        }
        let worst = self
            .requirements
            .iter()
            .map(|r| r.status)
            .max()
            .unwrap_or(RequirementStatus::Skipped);
        match worst {
            RequirementStatus::Failed | RequirementStatus::Error => ExitCode::RequirementFailed,
            RequirementStatus::Passed | RequirementStatus::Skipped => ExitCode::Success,
        }
    }

    /// True when at least one requirement actually ran (passed or failed).
    pub fn anything_ran(&self) -> bool {
        self.requirements
            .iter()
            .any(|r| r.status != RequirementStatus::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(reqs: Vec<RequirementResult>, sig: Option<CancelReason>) -> RunResults {
        RunResults {
            run_id: "r".into(),
            mode: RunMode::Mock,
            started_at: chrono::Utc::now(),
            duration_ms: 1,
            interrupted_by: sig,
            requirements: reqs,
        }
    }

    fn req(status: RequirementStatus, remaining: u32) -> RequirementResult {
        let mut r = RequirementResult::not_run(RequirementId::Cloud01, "us-east-1", status, "");
        r.facts.resources_remaining = Some(remaining);
        r
    }

    #[test]
    fn exit_code_ranks_outcomes() {
        use RequirementStatus::*;
        assert_eq!(
            results(vec![req(Passed, 0), req(Skipped, 0)], None).exit_code(),
            ExitCode::Success
        );
        assert_eq!(
            results(vec![req(Passed, 0), req(Error, 0)], None).exit_code(),
            ExitCode::RequirementFailed
        );
        assert_eq!(
            results(vec![req(Failed, 0)], Some(CancelReason::Terminate)).exit_code(),
            ExitCode::Terminated
        );
        assert_eq!(
            results(vec![req(Failed, 2)], Some(CancelReason::Interrupt)).exit_code(),
            ExitCode::ResourcesRemain
        );
    }

    #[test]
    fn contract_field_names_are_stable() {
        let r = results(vec![req(RequirementStatus::Passed, 0)], None);
        let v = serde_json::to_value(&r).expect("serialises");
        for key in [
            "run_id",
            "mode",
            "started_at",
            "duration_ms",
            "requirements",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let first = &v["requirements"][0];
        assert_eq!(first["id"], "CLOUD-01");
        assert_eq!(first["provider"], "aws");
        assert_eq!(first["status"], "passed");
        assert_eq!(first["facts"]["resources_remaining"], 0);
        assert!(first["cost"]["estimated_usd"].is_number());
        let back: RunResults = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, r);
    }
}
