//! The preflight's check model: one [`Check`] per thing a live run needs (identity,
//! template, permissions, capacity, spot, budget), each `ok`, `warn` or `fail` with the
//! detail and, on failure, what to do. Providers return checks; the binary prints them,
//! writes `preflight.json` and decides the exit code with [`verdict`].

use serde::{Deserialize, Serialize};

use crate::exit::ExitCode;

/// A check's outcome. Order is severity: `Ok < Warn < Fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    /// Could not be checked here (not supported by the endpoint, not visible to the
    /// principal); the run may still work.
    Warn,
    /// A live run would fail: the fix says what to do.
    Fail,
}

impl CheckStatus {
    /// What a person reads: `ok`, `warn`, `FAIL` (loud on purpose).
    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        }
    }
}

/// Which check a line is; the budget keeps its own exit code (4), so it is told apart.
pub const BUDGET_CHECK: &str = "budget";

/// One preflight line, and one object in `preflight.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `aws` or `azure`.
    pub provider: String,
    pub region: String,
    /// `identity`, `template`, `permissions`, `registration`, `capacity`, `quota`, `spot`,
    /// `budget`.
    pub check: String,
    pub status: CheckStatus,
    pub detail: String,
    /// What to do; empty when there is nothing to do.
    #[serde(default)]
    pub fix: String,
}

impl Check {
    fn new(
        provider: &str,
        region: &str,
        check: &str,
        status: CheckStatus,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.to_string(),
            region: region.to_string(),
            check: check.to_string(),
            status,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    pub fn ok(provider: &str, region: &str, check: &str, detail: impl Into<String>) -> Self {
        Self::new(provider, region, check, CheckStatus::Ok, detail, "")
    }

    pub fn warn(provider: &str, region: &str, check: &str, detail: impl Into<String>) -> Self {
        Self::new(provider, region, check, CheckStatus::Warn, detail, "")
    }

    pub fn fail(
        provider: &str,
        region: &str,
        check: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(provider, region, check, CheckStatus::Fail, detail, fix)
    }

    pub fn is_budget(&self) -> bool {
        self.check == BUDGET_CHECK
    }
}

/// The exit code a preflight means: any failure but the budget's is 5 ("nothing was
/// deployed"); a budget failure alone keeps its own code, 4; otherwise success.
pub fn verdict(checks: &[Check]) -> ExitCode {
    let failed = |budget: bool| {
        checks
            .iter()
            .any(|c| c.status == CheckStatus::Fail && c.is_budget() == budget)
    };
    if failed(false) {
        ExitCode::PreflightFailed
    } else if failed(true) {
        ExitCode::BudgetExceeded
    } else {
        ExitCode::Success
    }
}

/// `preflight.json`: the checks in the order they were printed.
pub fn to_json(checks: &[Check]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(check: &str, status: CheckStatus) -> Check {
        Check::new("aws", "us-east-1", check, status, "d", "f")
    }

    #[test]
    fn another_failure_wins_over_the_budget() {
        let budget = line(BUDGET_CHECK, CheckStatus::Fail);
        let quota = line("quota", CheckStatus::Fail);
        let warn = line("permissions", CheckStatus::Warn);
        assert_eq!(verdict(std::slice::from_ref(&warn)), ExitCode::Success);
        assert_eq!(
            verdict(&[warn.clone(), budget.clone()]),
            ExitCode::BudgetExceeded
        );
        assert_eq!(verdict(&[budget, quota, warn]), ExitCode::PreflightFailed);
        assert_eq!(ExitCode::PreflightFailed.code(), 5);
    }

    #[test]
    fn json_has_one_object_per_check_with_the_contract_fields() {
        let text = to_json(&[line("identity", CheckStatus::Fail)]).expect("json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("parses");
        let c = &v["checks"][0];
        for key in ["provider", "region", "check", "status", "detail", "fix"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        assert_eq!(c["status"], "fail");
        assert_eq!(CheckStatus::Fail.label(), "FAIL");
    }
}
