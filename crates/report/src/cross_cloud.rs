//! CLOUD-03: the AWS and Azure deployments behave the same. Computed from the CLOUD-01 and
//! CLOUD-02 facts alone, so a merged CI matrix and a single run reach the same verdict.

use cloudtest_core::{
    Phase, PhaseStatus, RequirementFacts, RequirementId, RequirementResult, RequirementStatus,
    RunResults,
};
use serde::{Deserialize, Serialize};

use crate::human;

/// The key under `facts` (flattened into the requirement's `facts` object) holding the rows.
pub const COMPARISON_KEY: &str = "comparison";

/// The TLS fact both probes must report.
pub const PINNED_TLS: &str = "pinned-self-signed-ca";

/// One row of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub aspect: String,
    pub aws: String,
    pub azure: String,
    pub agrees: bool,
}

/// Compares one AWS lifecycle with one Azure lifecycle. `None` (or a skipped side) makes
/// CLOUD-03 `skipped` with the reason; otherwise `passed` only when every row agrees.
pub fn evaluate(
    aws: Option<&RequirementResult>,
    azure: Option<&RequirementResult>,
) -> RequirementResult {
    let region = format!(
        "{}+{}",
        aws.map_or("none", |r| r.region.as_str()),
        azure.map_or("none", |r| r.region.as_str())
    );
    let (aws, azure) = match (aws, azure) {
        (Some(a), Some(z)) => (a, z),
        (a, z) => {
            let mut missing = Vec::new();
            if a.is_none() {
                missing.push("CLOUD-01 (AWS)");
            }
            if z.is_none() {
                missing.push("CLOUD-02 (Azure)");
            }
            return skipped(
                region,
                format!(
                    "{} did not run, so there is nothing to compare",
                    missing.join(" and ")
                ),
            );
        }
    };
    let not_run: Vec<String> = [aws, azure]
        .into_iter()
        .filter(|r| r.status == RequirementStatus::Skipped)
        .map(|r| format!("{} {} was skipped ({})", r.id, r.region, r.reason))
        .collect();
    if !not_run.is_empty() {
        return skipped(region, not_run.join("; "));
    }

    let rows = compare(aws, azure);
    let differing: Vec<String> = rows
        .iter()
        .filter(|r| !r.agrees)
        .map(|r| format!("{} (aws: {}, azure: {})", r.aspect, r.aws, r.azure))
        .collect();
    let (status, reason) = if differing.is_empty() {
        (RequirementStatus::Passed, String::new())
    } else {
        (
            RequirementStatus::Failed,
            format!("differs: {}", differing.join("; ")),
        )
    };
    let mut result = RequirementResult::not_run(RequirementId::Cloud03, region, status, reason);
    if differing.is_empty() {
        result.facts.velociraptor_version = aws.facts.velociraptor_version.clone();
    }
    result
        .facts
        .extra
        .insert(COMPARISON_KEY.into(), rows_to_json(&rows));
    result
}

/// CLOUD-03 for a whole run: every AWS region against every Azure location (one pair with
/// the default regions). Any CLOUD-03 entries already in `results` are ignored.
pub fn evaluate_run(results: &[RequirementResult]) -> Vec<RequirementResult> {
    let aws: Vec<&RequirementResult> = results
        .iter()
        .filter(|r| r.id == RequirementId::Cloud01)
        .collect();
    let azure: Vec<&RequirementResult> = results
        .iter()
        .filter(|r| r.id == RequirementId::Cloud02)
        .collect();
    if aws.is_empty() || azure.is_empty() {
        return vec![evaluate(aws.first().copied(), azure.first().copied())];
    }
    aws.iter()
        .flat_map(|a| azure.iter().map(move |z| evaluate(Some(a), Some(z))))
        .collect()
}

/// Replaces any CLOUD-03 entries of `run` with ones recomputed from its CLOUD-01/02 entries.
pub fn attach(run: &mut RunResults) {
    run.requirements.retain(|r| r.id != RequirementId::Cloud03);
    let cross = evaluate_run(&run.requirements);
    run.requirements.extend(cross);
}

/// The table rows stored in a CLOUD-03 result; empty when it was skipped or is malformed.
pub fn rows(result: &RequirementResult) -> Vec<ComparisonRow> {
    result
        .facts
        .extra
        .get(COMPARISON_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn skipped(region: String, reason: String) -> RequirementResult {
    RequirementResult::not_run(
        RequirementId::Cloud03,
        region,
        RequirementStatus::Skipped,
        reason,
    )
}

fn rows_to_json(rows: &[ComparisonRow]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "aspect": r.aspect, "aws": r.aws, "azure": r.azure, "agrees": r.agrees,
                })
            })
            .collect(),
    )
}

const UNKNOWN: &str = "unknown";

fn compare(aws: &RequirementResult, azure: &RequirementResult) -> Vec<ComparisonRow> {
    let (a, z) = (&aws.facts, &azure.facts);
    vec![
        outcome_row(aws, azure),
        same(
            "Velociraptor version",
            a.velociraptor_version.clone(),
            z.velociraptor_version.clone(),
        ),
        port_row("Frontend port", a, a.frontend_port, z, z.frontend_port),
        port_row("GUI/API port", a, a.gui_port, z, z.gui_port),
        tls_row(a, z),
        same("GUI authentication", a.gui_auth.clone(), z.gui_auth.clone()),
        clients_row(a, z),
        same("Agent version", agent_versions(a), agent_versions(z)),
        phase_row(
            "Enrolled within deadline",
            aws,
            azure,
            Phase::Enrollment,
            |f| f.time_to_enroll_ms,
        ),
        teardown_row(aws, azure),
        leak_row(aws, azure),
    ]
}

/// A lifecycle that failed cannot show consistent behaviour, whatever facts it gathered.
fn outcome_row(aws: &RequirementResult, azure: &RequirementResult) -> ComparisonRow {
    let show = |r: &RequirementResult| human::requirement_status(r.status).to_string();
    ComparisonRow {
        aspect: "Lifecycle outcome".into(),
        aws: show(aws),
        azure: show(azure),
        agrees: aws.status == RequirementStatus::Passed
            && azure.status == RequirementStatus::Passed,
    }
}

/// Agrees when both sides know the value and it is the same.
fn same(aspect: &str, aws: Option<String>, azure: Option<String>) -> ComparisonRow {
    let agrees = aws.is_some() && aws == azure;
    ComparisonRow {
        aspect: aspect.into(),
        aws: aws.unwrap_or_else(|| UNKNOWN.into()),
        azure: azure.unwrap_or_else(|| UNKNOWN.into()),
        agrees,
    }
}

/// Set by the CLI on mock-mode lifecycles: their ports are the emulator's ephemeral ones.
pub const EMULATED_ENDPOINTS_FACT: &str = "emulated_endpoints";

fn emulated(f: &RequirementFacts) -> bool {
    f.extra
        .get(EMULATED_ENDPOINTS_FACT)
        .and_then(|v| v.as_bool())
        == Some(true)
}

/// Ports must match, except between two emulated servers: shards from separate mock runs
/// each had their own emulator on its own ephemeral port, which says nothing about the
/// templates' configuration.
fn port_row(
    aspect: &str,
    a: &RequirementFacts,
    a_port: Option<u16>,
    z: &RequirementFacts,
    z_port: Option<u16>,
) -> ComparisonRow {
    if emulated(a) && emulated(z) && a_port.is_some() && z_port.is_some() {
        let show = |p: Option<u16>| p.map(|p| format!("{p} (emulator)"));
        let mut row = same(aspect, show(a_port), show(z_port));
        row.agrees = true;
        return row;
    }
    same(
        aspect,
        a_port.map(|p| p.to_string()),
        z_port.map(|p| p.to_string()),
    )
}

fn tls_row(a: &RequirementFacts, z: &RequirementFacts) -> ComparisonRow {
    let mut row = same("TLS (pinned self-signed CA)", a.tls.clone(), z.tls.clone());
    row.agrees = row.agrees && a.tls.as_deref() == Some(PINNED_TLS);
    row
}

fn clients_row(a: &RequirementFacts, z: &RequirementFacts) -> ComparisonRow {
    let show = |f: &RequirementFacts| match (f.enrolled_clients, f.expected_clients) {
        (Some(n), Some(e)) => Some(format!("{n} of {e}")),
        (Some(n), None) => Some(format!("{n} of {UNKNOWN}")),
        _ => None,
    };
    let complete = |f: &RequirementFacts| matches!((f.enrolled_clients, f.expected_clients), (Some(n), Some(e)) if n == e && n > 0);
    let mut row = same("Enrolled clients", show(a), show(z));
    row.agrees = row.agrees && complete(a) && complete(z);
    row
}

fn agent_versions(f: &RequirementFacts) -> Option<String> {
    let mut versions: Vec<&str> = f.agent_versions.iter().map(String::as_str).collect();
    if versions.is_empty() {
        versions = f.clients.iter().map(|c| c.agent_version.as_str()).collect();
    }
    versions.sort_unstable();
    versions.dedup();
    (!versions.is_empty()).then(|| versions.join(", "))
}

fn phase_passed(r: &RequirementResult, phase: Phase) -> bool {
    r.phases
        .iter()
        .any(|p| p.name == phase && p.status == PhaseStatus::Passed)
}

/// "yes, 1m 32s" per side: agreement is both phases passing; the times are shown side by
/// side for people and never compared (clouds differ in speed, not in behaviour).
fn phase_row(
    aspect: &str,
    aws: &RequirementResult,
    azure: &RequirementResult,
    phase: Phase,
    time: impl Fn(&RequirementFacts) -> Option<u64>,
) -> ComparisonRow {
    let show = |r: &RequirementResult| {
        let ok = if phase_passed(r, phase) { "yes" } else { "no" };
        match time(&r.facts) {
            Some(ms) => format!("{ok}, {}", human::duration_ms(ms)),
            None => ok.to_string(),
        }
    };
    ComparisonRow {
        aspect: aspect.into(),
        aws: show(aws),
        azure: show(azure),
        agrees: phase_passed(aws, phase) && phase_passed(azure, phase),
    }
}

fn teardown_row(aws: &RequirementResult, azure: &RequirementResult) -> ComparisonRow {
    let complete = |r: &RequirementResult| r.facts.teardown_complete == Some(true);
    let show = |r: &RequirementResult| {
        let word = match r.facts.teardown_complete {
            Some(true) => "complete",
            Some(false) => "incomplete",
            None => UNKNOWN,
        };
        match r.facts.deletion_ms {
            Some(ms) => format!("{word}, {}", human::duration_ms(ms)),
            None => word.to_string(),
        }
    };
    ComparisonRow {
        aspect: "Teardown complete (deletion time)".into(),
        aws: show(aws),
        azure: show(azure),
        agrees: complete(aws) && complete(azure),
    }
}

fn leak_row(aws: &RequirementResult, azure: &RequirementResult) -> ComparisonRow {
    let clean = |r: &RequirementResult| {
        r.facts.resources_remaining == Some(0) && phase_passed(r, Phase::LeakCheck)
    };
    let show = |r: &RequirementResult| match r.facts.resources_remaining {
        Some(n) => format!("{n} remaining"),
        None => UNKNOWN.to_string(),
    };
    ComparisonRow {
        aspect: "Leak check".into(),
        aws: show(aws),
        azure: show(azure),
        agrees: clean(aws) && clean(azure),
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn emulated_ports_may_differ_but_real_ones_may_not() {
        let mut a = RequirementFacts {
            frontend_port: Some(1000),
            ..Default::default()
        };
        let mut z = RequirementFacts {
            frontend_port: Some(2000),
            ..Default::default()
        };
        assert!(!port_row("Frontend port", &a, a.frontend_port, &z, z.frontend_port).agrees);
        a.extra.insert(
            EMULATED_ENDPOINTS_FACT.into(),
            serde_json::Value::Bool(true),
        );
        assert!(
            !port_row("Frontend port", &a, a.frontend_port, &z, z.frontend_port).agrees,
            "only one side emulated"
        );
        z.extra.insert(
            EMULATED_ENDPOINTS_FACT.into(),
            serde_json::Value::Bool(true),
        );
        let row = port_row("Frontend port", &a, a.frontend_port, &z, z.frontend_port);
        assert!(row.agrees);
        assert!(row.aws.contains("emulator"), "{row:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn identical_deployments_pass_with_every_row_agreeing() {
        let run = sample::two_provider_run();
        let aws = &run.requirements[0];
        let azure = &run.requirements[1];
        let r = evaluate(Some(aws), Some(azure));
        assert_eq!(r.id, RequirementId::Cloud03);
        assert_eq!(r.provider, "cross-cloud");
        assert_eq!(r.region, "us-east-1+eastus");
        assert_eq!(r.status, RequirementStatus::Passed, "{}", r.reason);
        let rows = rows(&r);
        assert_eq!(rows.len(), 11);
        assert!(rows.iter().all(|row| row.agrees));
        let enrol = rows
            .iter()
            .find(|row| row.aspect.starts_with("Enrolled within"))
            .expect("row");
        assert_ne!(enrol.aws, enrol.azure, "times shown side by side");
    }

    #[test]
    fn each_difference_is_listed() {
        let run = sample::two_provider_run();
        let aws = run.requirements[0].clone();
        let mut azure = run.requirements[1].clone();
        azure.facts.velociraptor_version = Some("0.76.1".into());
        azure.facts.resources_remaining = Some(2);
        azure.facts.tls = Some("system-roots".into());
        let r = evaluate(Some(&aws), Some(&azure));
        assert_eq!(r.status, RequirementStatus::Failed);
        assert!(
            r.reason
                .contains("Velociraptor version (aws: 0.77.2, azure: 0.76.1)"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("Leak check"), "{}", r.reason);
        assert!(r.reason.contains("TLS"), "{}", r.reason);
        assert_eq!(rows(&r).iter().filter(|row| !row.agrees).count(), 3);
    }

    #[test]
    fn same_but_unpinned_tls_or_short_enrollment_disagrees() {
        let run = sample::two_provider_run();
        let mut aws = run.requirements[0].clone();
        let mut azure = run.requirements[1].clone();
        for r in [&mut aws, &mut azure] {
            r.facts.tls = Some("system-roots".into());
            r.facts.enrolled_clients = Some(0);
        }
        let r = evaluate(Some(&aws), Some(&azure));
        assert_eq!(r.status, RequirementStatus::Failed);
        assert!(
            r.reason.contains("TLS") && r.reason.contains("Enrolled clients"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_side_that_did_not_run_skips_with_the_reason() {
        let run = sample::two_provider_run();
        let r = evaluate(Some(&run.requirements[0]), None);
        assert_eq!(r.status, RequirementStatus::Skipped);
        assert!(
            r.reason.contains("CLOUD-02 (Azure) did not run"),
            "{}",
            r.reason
        );
        assert_eq!(r.region, "us-east-1+none");

        let skipped = RequirementResult::not_run(
            RequirementId::Cloud02,
            "eastus",
            RequirementStatus::Skipped,
            "AZURE_SUBSCRIPTION_ID not set",
        );
        let r = evaluate(Some(&run.requirements[0]), Some(&skipped));
        assert_eq!(r.status, RequirementStatus::Skipped);
        assert!(
            r.reason.contains("AZURE_SUBSCRIPTION_ID not set"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn attach_replaces_stale_cross_cloud_entries() {
        let mut run = sample::two_provider_run();
        run.requirements.push(skipped("x+y".into(), "stale".into()));
        attach(&mut run);
        let cross: Vec<_> = run
            .requirements
            .iter()
            .filter(|r| r.id == RequirementId::Cloud03)
            .collect();
        assert_eq!(cross.len(), 1);
        assert_eq!(cross[0].status, RequirementStatus::Passed);
    }
}
