//! The text written between the gap document's results markers: the latest run against the
//! document's own estimates, short enough to read in the document.

use cloudtest_core::{RequirementId, RunResults};

use crate::human;
use crate::markdown;
use crate::settings::ReportSettings;

/// The region's Markdown (without the marker lines).
pub fn render(run: &RunResults, settings: &ReportSettings) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "### Latest cloudtest results\n\n_Written by `cloudtest` from run `{}` ({} mode, started {}). Do not edit between the markers; the next run replaces this text._\n\n",
        human::md_cell(&run.run_id),
        run.mode.as_str(),
        run.started_at.format("%Y-%m-%d %H:%M UTC"),
    ));
    if let Some(url) = &settings.run_url {
        out.push_str(&format!(
            "Run artifacts: [{0}]({0})\n\n",
            human::md_cell(url)
        ));
    }
    out.push_str(&markdown::requirements_table(run));
    for cross in run
        .requirements
        .iter()
        .filter(|r| r.id == RequirementId::Cloud03)
    {
        out.push_str(&format!(
            "\n#### CLOUD-03 cross-cloud consistency ({})\n\n",
            human::md_cell(&cross.region)
        ));
        out.push_str(&markdown::cross_cloud_table(cross));
    }
    out.push_str("\n#### Spend\n\n");
    out.push_str(&markdown::spend_table(run, settings));
    out
}
