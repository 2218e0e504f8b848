//! report.md: the run as Markdown, for CI job summaries and pull-request comments.

use cloudtest_core::{RequirementId, RequirementResult, RunMode, RunResults};

use crate::settings::ReportSettings;
use crate::{cross_cloud, estimates, human, junit};

/// The whole report.md.
pub fn render(run: &RunResults, settings: &ReportSettings) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# cloudtest run {}\n\n",
        human::md_cell(&run.run_id)
    ));
    out.push_str(&format!(
        "- Mode: **{}**\n- Started: {}\n- Duration: {}\n- Outcome: exit code {}\n",
        run.mode.as_str(),
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        human::duration_ms(run.duration_ms),
        run.exit_code().code()
    ));
    if let Some(reason) = run.interrupted_by {
        out.push_str(&format!(
            "- Interrupted: {reason:?} (teardown and leak check still ran)\n"
        ));
    }
    if let Some(url) = &settings.run_url {
        out.push_str(&format!("- Artifacts: [{0}]({0})\n", human::md_cell(url)));
    }
    out.push_str("\n## Requirements\n\n");
    out.push_str(&requirements_table(run));
    for cross in run
        .requirements
        .iter()
        .filter(|r| r.id == RequirementId::Cloud03)
    {
        out.push_str(&format!(
            "\n## CLOUD-03 cross-cloud consistency ({})\n\n",
            human::md_cell(&cross.region)
        ));
        out.push_str(&cross_cloud_table(cross));
    }
    out.push_str("\n## Phases\n");
    for r in run.requirements.iter().filter(|r| !r.phases.is_empty()) {
        out.push_str(&format!("\n### {} {}\n\n", r.id, human::md_cell(&r.region)));
        out.push_str("| Phase | Status | Duration | Detail |\n|---|---|---|---|\n");
        for p in &r.phases {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                p.name,
                human::phase_status(p.status),
                human::duration_ms(p.duration_ms),
                human::md_cell(&p.detail)
            ));
        }
        if !r.facts.remaining_resources.is_empty() {
            out.push_str("\n**Resources still present after teardown:**\n\n");
            for res in &r.facts.remaining_resources {
                out.push_str(&format!(
                    "- `{}` {}\n",
                    human::md_cell(&res.id),
                    human::md_cell(&res.cloud_type)
                ));
            }
        }
        if let Some(identity) = &r.facts.server_identity {
            out.push_str(&format!(
                "\nServer identity: {}\n",
                human::md_cell(&human::server_identity(identity))
            ));
        }
        if !r.facts.evidence_files.is_empty() {
            out.push_str("\n**Failure evidence** (collected before teardown):\n\n");
            for f in &r.facts.evidence_files {
                out.push_str(&format!("- [{0}]({0})\n", human::md_cell(f)));
            }
        }
    }
    out.push_str("\n## Costs\n\n");
    out.push_str(&spend_table(run, settings));
    if let Some(source) = &settings.price_source {
        out.push_str(&format!("\nPrices: {}\n", human::md_cell(source)));
    }
    out
}

/// Requirement, region, status, date, duration and cost against the gap document's estimates.
pub(crate) fn requirements_table(run: &RunResults) -> String {
    let mock = run.mode == RunMode::Mock;
    let mut out = String::from(
        "| Requirement | Region | Status | Date | Duration (est. 15–30 min) | Cost (est. $0.10–0.20) | Detail |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &run.requirements {
        let date = r
            .phases
            .iter()
            .find_map(|p| p.started_at)
            .unwrap_or(run.started_at)
            .format("%Y-%m-%d")
            .to_string();
        let detail = match r.status {
            cloudtest_core::RequirementStatus::Passed => String::new(),
            _ => junit::failure_detail(r),
        };
        let (duration, cost) = if r.id == RequirementId::Cloud03 {
            ("—".to_string(), "—".to_string())
        } else {
            (
                estimates::duration_vs_estimate(r),
                estimates::cost_vs_estimate(r, mock),
            )
        };
        out.push_str(&format!(
            "| {} | {} | **{}** | {} | {} | {} | {} |\n",
            r.id,
            human::md_cell(&r.region),
            human::requirement_status(r.status),
            date,
            duration,
            cost,
            human::md_cell(&detail)
        ));
    }
    out
}

/// The side-by-side CLOUD-03 table, or the reason it was skipped.
pub(crate) fn cross_cloud_table(cross: &RequirementResult) -> String {
    let rows = cross_cloud::rows(cross);
    let mut out = format!("**Status: {}**", human::requirement_status(cross.status));
    if !cross.reason.is_empty() {
        out.push_str(&format!(" ({})", human::md_cell(&cross.reason)));
    }
    out.push_str("\n\n");
    if rows.is_empty() {
        return out;
    }
    out.push_str("| Aspect | AWS (CLOUD-01) | Azure (CLOUD-02) | Agrees |\n|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            human::md_cell(&row.aspect),
            human::md_cell(&row.aws),
            human::md_cell(&row.azure),
            if row.agrees { "yes" } else { "**no**" }
        ));
    }
    out
}

/// Month-to-date spend against the monthly budget, per provider.
pub(crate) fn spend_table(run: &RunResults, settings: &ReportSettings) -> String {
    if run.mode == RunMode::Mock {
        return "Mock run: nothing was rented, costs $0.00 and is not recorded in the spend ledger.\n".into();
    }
    let this_run: f64 = run.requirements.iter().map(|r| r.cost.estimated_usd).sum();
    let mut out = format!("This run: {}\n\n", human::usd(this_run));
    if settings.spend.is_empty() {
        out.push_str("Month-to-date spend: not available (no ledger configured).\n");
        return out;
    }
    out.push_str(
        "| Provider | Month-to-date | Monthly budget | Used | Note |\n|---|---|---|---|---|\n",
    );
    for s in &settings.spend {
        let used = if s.monthly_budget_usd > 0.0 {
            format!("{:.1}%", 100.0 * s.month_to_date_usd / s.monthly_budget_usd)
        } else {
            "—".into()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            human::md_cell(&s.provider),
            human::usd(s.month_to_date_usd),
            human::usd(s.monthly_budget_usd),
            used,
            human::md_cell(s.note.as_deref().unwrap_or(""))
        ));
    }
    out
}
