//! After the lifecycles: CLOUD-03, pricing, and every output file (results, reports, ledger,
//! gap document).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use cloudtest_core::{RequirementId, RequirementResult, RequirementStatus, RunMode, RunResults};
use cloudtest_report::ledger::{record_run, Ledger};
use cloudtest_report::{
    cost, cross_cloud, gap_doc, gap_region, settings, PriceTable, ReportSettings, RUN_URL_ENV,
};

use crate::error::usage;
use crate::plan::RunPlan;

use super::guards::ledger_path;

/// CLOUD-03 from the lifecycles' results.
pub fn cross_cloud(requirements: &[RequirementResult]) -> Vec<RequirementResult> {
    cross_cloud::evaluate_run(requirements)
}

/// The embedded price table, or `[budget] price_file`, with `[budget] prices` on top.
pub fn price_table(config: &cloudtest_core::config::Config) -> Result<PriceTable> {
    let base = match &config.budget.price_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("[budget] price_file {}: {e}", path.display())))?;
            PriceTable::from_json(&text, &path.display().to_string())
                .map_err(|e| usage(e.to_string()))?
        }
        None => PriceTable::embedded(),
    };
    Ok(base.with_overrides(&config.budget.prices))
}

/// Runs are priced from the resources they reported: live runs for what they cost, mock
/// runs (which cost nothing) for what the same resources would have cost live.
pub fn price(plan: &RunPlan, results: &mut RunResults) -> Result<()> {
    cost::apply_costs(results, &price_table(&plan.config)?);
    Ok(())
}

/// results.json, junit.xml, report.md, report.html; the ledger (live); the gap document.
pub fn write_outputs(plan: &RunPlan, results: &RunResults) -> Result<()> {
    let table = price_table(&plan.config)?;
    let mut report_settings = ReportSettings {
        run_url: std::env::var(RUN_URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty()),
        ..Default::default()
    }
    .with_prices(&table);
    if plan.mode == RunMode::Live {
        if let Some(path) = ledger_path(plan) {
            let before = Ledger::load(&path).map_err(|e| anyhow::anyhow!(e))?;
            let now = chrono::Utc::now();
            record_run(&path, results, now)
                .with_context(|| format!("recording costs in {}", path.display()))?;
            let after = Ledger::load(&path).map_err(|e| anyhow::anyhow!(e))?;
            let providers: Vec<&str> = results
                .requirements
                .iter()
                .filter(|r| {
                    r.id != RequirementId::Cloud03 && r.status != RequirementStatus::Skipped
                })
                .map(|r| r.provider.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            report_settings.spend = settings::spend_summary(
                &after,
                &before.history,
                &providers,
                plan.monthly_budget_usd,
                now,
            );
        }
    }
    cloudtest_report::write_all(&plan.out, results, &report_settings)
        .with_context(|| format!("writing reports into {}", plan.out.display()))?;
    if let Some(path) = &plan.gap_doc {
        gap_doc::rewrite(path, |region| {
            gap_region::merge(region, results, &report_settings)
        })
        .with_context(|| format!("writing results into the gap document {}", path.display()))?;
    }
    Ok(())
}
