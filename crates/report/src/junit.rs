//! JUnit XML for CI dashboards (GitHub, GitLab, Jenkins): one testcase per requirement and
//! region, phases in `<system-out>`, the failure detail as the failure message. Built with
//! quick-junit's types, never by string formatting.

use std::time::Duration;

use cloudtest_core::{
    PhaseStatus, RequirementId, RequirementResult, RequirementStatus, RunResults,
};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use thiserror::Error;

use crate::{cross_cloud, human};

#[derive(Debug, Error)]
#[error("cannot serialise the JUnit report: {0}")]
pub struct JunitError(#[from] quick_junit::SerializeError);

/// The JUnit document for a run.
pub fn render(run: &RunResults) -> Result<String, JunitError> {
    let mut report = Report::new(format!("cloudtest {}", run.run_id));
    report.set_timestamp(run.started_at.fixed_offset());
    report.set_time(Duration::from_millis(run.duration_ms));
    for id in [
        RequirementId::Cloud01,
        RequirementId::Cloud02,
        RequirementId::Cloud03,
    ] {
        let reqs: Vec<&RequirementResult> =
            run.requirements.iter().filter(|r| r.id == id).collect();
        if reqs.is_empty() {
            continue;
        }
        let mut suite = TestSuite::new(suite_name(id));
        if let Some(at) = reqs
            .iter()
            .flat_map(|r| &r.phases)
            .filter_map(|p| p.started_at)
            .min()
        {
            suite.set_timestamp(at.fixed_offset());
        }
        suite.set_time(reqs.iter().map(|r| total(r)).sum());
        suite.add_test_cases(reqs.into_iter().map(test_case));
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

fn suite_name(id: RequirementId) -> &'static str {
    match id {
        RequirementId::Cloud01 => "CLOUD-01 AWS CloudFormation deployment",
        RequirementId::Cloud02 => "CLOUD-02 Azure ARM deployment",
        RequirementId::Cloud03 => "CLOUD-03 cross-cloud consistency",
    }
}

fn total(r: &RequirementResult) -> Duration {
    Duration::from_millis(r.phases.iter().map(|p| p.duration_ms).sum())
}

/// The first failed phase's detail, else the requirement's reason.
pub fn failure_detail(r: &RequirementResult) -> String {
    r.phases
        .iter()
        .find(|p| p.status == PhaseStatus::Failed)
        .map(|p| format!("{}: {}", p.name, p.detail))
        .unwrap_or_else(|| r.reason.clone())
}

fn test_case(r: &RequirementResult) -> TestCase {
    let status = match r.status {
        RequirementStatus::Passed => TestCaseStatus::success(),
        RequirementStatus::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(r.reason.clone());
            s
        }
        RequirementStatus::Failed | RequirementStatus::Error => {
            let kind = if r.status == RequirementStatus::Failed {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_message(failure_detail(r));
            s.set_type(if r.status == RequirementStatus::Failed {
                "requirement-failed"
            } else {
                "requirement-error"
            });
            if !r.reason.is_empty() {
                s.set_description(r.reason.clone());
            }
            s
        }
    };
    let mut case = TestCase::new(format!("{} {}", r.id, r.region), status);
    case.set_classname(format!("cloudtest.{}", r.provider));
    case.set_time(total(r));
    if let Some(at) = r.phases.first().and_then(|p| p.started_at) {
        case.set_timestamp(at.fixed_offset());
    }
    case.set_system_out(system_out(r));
    case
}

fn system_out(r: &RequirementResult) -> String {
    let mut out = String::new();
    for p in &r.phases {
        out.push_str(&format!(
            "{:<11} {:<7} {:>9}  {}\n",
            p.name.as_str(),
            human::phase_status(p.status),
            human::duration_ms(p.duration_ms),
            p.detail
        ));
    }
    for row in cross_cloud::rows(r) {
        out.push_str(&format!(
            "{} {}: aws {} | azure {}\n",
            if row.agrees { "same" } else { "DIFF" },
            row.aspect,
            row.aws,
            row.azure
        ));
    }
    if r.cost.estimated_usd > 0.0 {
        out.push_str(&format!(
            "cost estimate: {}\n",
            human::usd(r.cost.estimated_usd)
        ));
    }
    out
}
