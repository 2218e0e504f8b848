//! The gap document's planning figures, and how an actual run compares with them.

use std::time::Duration;

use cloudtest_core::RequirementResult;

use crate::{cost, human};

/// "Estimated Test Duration: 15-30 minutes per full cycle".
pub const DURATION_MIN: Duration = Duration::from_secs(15 * 60);
pub const DURATION_MAX: Duration = Duration::from_secs(30 * 60);
/// "Est. Cost/Test: $0.10-0.20".
pub const COST_MIN_USD: f64 = 0.10;
pub const COST_MAX_USD: f64 = 0.20;

/// `14m 40s (under the 15–30 min estimate)`.
pub fn duration_vs_estimate(r: &RequirementResult) -> String {
    let d = cost::resource_lifetime(r);
    if d.is_zero() {
        return "—".into();
    }
    let verdict = if d < DURATION_MIN {
        "under"
    } else if d > DURATION_MAX {
        "over"
    } else {
        "within"
    };
    format!(
        "{} ({verdict} the 15–30 min estimate)",
        human::duration_ms(d.as_millis() as u64)
    )
}

/// `$0.08 (under the $0.10–0.20 estimate)`; mock runs say they cost nothing.
pub fn cost_vs_estimate(r: &RequirementResult, mock: bool) -> String {
    if mock {
        return match r.cost.would_cost_usd {
            Some(usd) => format!("$0.00 (mock run; would cost {} live)", human::usd(usd)),
            None => "$0.00 (mock run)".into(),
        };
    }
    let usd = r.cost.estimated_usd;
    if usd == 0.0 && r.phases.is_empty() {
        return "—".into();
    }
    let verdict = if usd < COST_MIN_USD {
        "under"
    } else if usd > COST_MAX_USD {
        "over"
    } else {
        "within"
    };
    format!("{} ({verdict} the $0.10–0.20 estimate)", human::usd(usd))
}
