//! The text written between the gap document's results markers. It keeps, per requirement
//! and region, the newest result of a **live** run; a mock run never replaces one and only
//! writes a separate "latest mock run" block, which the next live run removes.
//!
//! The region has up to three parts, each opened by a comment line so the next writer can
//! find them again:
//!
//! 1. `<!-- cloudtest:live-results [...] -->`: the live rows as JSON, then their table;
//! 2. `<!-- cloudtest:live-run-detail -->`: CLOUD-03 and spend of the newest live run that
//!    contributed a row;
//! 3. `<!-- cloudtest:mock-run -->`: the latest mock run, when one asked to be written.
//!
//! A mock run keeps parts 1 and 2 byte for byte; a live run rewrites them and drops part 3.

use chrono::{DateTime, Utc};
use cloudtest_core::{RequirementId, RequirementResult, RequirementStatus, RunMode, RunResults};
use serde::{Deserialize, Serialize};

use crate::estimates;
use crate::human;
use crate::junit;
use crate::markdown;
use crate::settings::ReportSettings;

const LIVE_RESULTS: &str = "<!-- cloudtest:live-results ";
const LIVE_DETAIL: &str = "<!-- cloudtest:live-run-detail -->";
const MOCK_RUN: &str = "<!-- cloudtest:mock-run -->";
const COMMENT_END: &str = " -->";

/// The newest live result of one requirement in one region, as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRow {
    pub requirement: String,
    pub region: String,
    /// When the lifecycle started: the newer row wins.
    pub started_at: DateTime<Utc>,
    pub status: String,
    pub duration: String,
    pub cost: String,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl LiveRow {
    fn key(&self) -> (&str, &str) {
        (&self.requirement, &self.region)
    }
}

/// What an earlier writer left in the region.
#[derive(Debug, Default, PartialEq)]
struct Parsed<'a> {
    rows: Vec<LiveRow>,
    /// Parts 1 and 2 exactly as written (empty when there were none).
    live_part: &'a str,
    /// Part 2 exactly as written.
    detail: Option<&'a str>,
}

/// Offsets of the lines of `text` that start with `prefix`.
fn line_starting(text: &str, prefix: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(prefix) {
            return Some(at);
        }
        at += line.len();
    }
    None
}

fn parse(region: &str) -> Parsed<'_> {
    let Some(live_at) = line_starting(region, LIVE_RESULTS) else {
        // No live results yet (or a region from before live results were kept).
        return Parsed::default();
    };
    let mock_at = line_starting(region, MOCK_RUN).unwrap_or(region.len());
    let json_line = region[live_at..]
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
        .trim_start_matches(LIVE_RESULTS)
        .trim_end_matches(COMMENT_END.trim_start())
        .trim();
    let rows = serde_json::from_str(json_line).unwrap_or_default();
    let detail = line_starting(region, LIVE_DETAIL)
        .filter(|d| *d < mock_at)
        .map(|d| &region[d..mock_at]);
    Parsed {
        rows,
        live_part: &region[..mock_at],
        detail,
    }
}

/// The live rows a run contributes: one per requirement and region that ran (skipped ones
/// say nothing about the cloud). None for mock runs.
pub fn live_rows(run: &RunResults, settings: &ReportSettings) -> Vec<LiveRow> {
    if run.mode != RunMode::Live {
        return Vec::new();
    }
    run.requirements
        .iter()
        .filter(|r| r.status != RequirementStatus::Skipped)
        .map(|r| row(run, r, settings))
        .collect()
}

fn row(run: &RunResults, r: &RequirementResult, settings: &ReportSettings) -> LiveRow {
    let started_at = r
        .phases
        .iter()
        .find_map(|p| p.started_at)
        .unwrap_or(run.started_at);
    let (duration, cost) = if r.id == RequirementId::Cloud03 {
        ("—".to_string(), "—".to_string())
    } else {
        (
            estimates::duration_vs_estimate(r),
            estimates::cost_vs_estimate(r, false),
        )
    };
    LiveRow {
        requirement: r.id.as_str().to_string(),
        region: r.region.clone(),
        started_at,
        status: human::requirement_status(r.status).to_string(),
        duration,
        cost,
        run_id: run.run_id.clone(),
        run_url: settings.run_url.clone(),
        detail: match r.status {
            RequirementStatus::Passed => String::new(),
            _ => junit::failure_detail(r),
        },
    }
}

/// `current` with `incoming` merged in: per requirement and region the newer row wins (an
/// older one never replaces a newer one). Returns the rows, sorted, and whether any
/// incoming row was taken.
pub fn merge_rows(current: Vec<LiveRow>, incoming: Vec<LiveRow>) -> (Vec<LiveRow>, bool) {
    let mut rows = current;
    let mut taken = false;
    for new in incoming {
        match rows.iter_mut().find(|r| r.key() == new.key()) {
            Some(old) if old.started_at >= new.started_at => {}
            Some(old) => {
                *old = new;
                taken = true;
            }
            None => {
                rows.push(new);
                taken = true;
            }
        }
    }
    rows.sort_by(|a, b| a.key().cmp(&b.key()));
    (rows, taken)
}

/// The new region for a run written over `current` (the text between the markers now).
pub fn merge(current: &str, run: &RunResults, settings: &ReportSettings) -> String {
    let parsed = parse(current);
    match run.mode {
        RunMode::Mock => {
            let mut out = if parsed.live_part.is_empty() {
                render_live(&[], None)
            } else {
                parsed.live_part.to_string()
            };
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(&render_mock(run, settings));
            out
        }
        RunMode::Live => {
            let (rows, taken) = merge_rows(parsed.rows, live_rows(run, settings));
            let detail = if taken {
                Some(render_detail(run, settings))
            } else {
                parsed.detail.map(str::to_string)
            };
            render_live(&rows, detail.as_deref())
        }
    }
}

/// The region for a document that has none yet (or whose region is replaced).
pub fn render(run: &RunResults, settings: &ReportSettings) -> String {
    merge("", run, settings)
}

fn render_live(rows: &[LiveRow], detail: Option<&str>) -> String {
    let mut out = String::from(
        "### Latest live cloud results\n\n_Written by `cloudtest`: for each requirement and region, the newest result of a live run. Mock runs never change this table. Do not edit between the markers._\n\n",
    );
    // JSON never needs a literal `<` or `>` (only inside strings), so escaping them keeps
    // the comment closed whatever a reason says.
    let json = serde_json::to_string(rows)
        .unwrap_or_else(|_| "[]".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e");
    out.push_str(&format!("{LIVE_RESULTS}{json}{COMMENT_END}\n\n"));
    if rows.is_empty() {
        out.push_str("No live run has been recorded yet: nothing here has met a real cloud.\n");
    } else {
        out.push_str("| Requirement | Region | Status | Date | Duration (est. 15–30 min) | Cost (est. $0.10–0.20) | Run | Detail |\n|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            let run = match &r.run_url {
                Some(url) => format!("[{}]({})", human::md_cell(&r.run_id), human::md_cell(url)),
                None => human::md_cell(&r.run_id),
            };
            out.push_str(&format!(
                "| {} | {} | **{}** | {} | {} | {} | {} | {} |\n",
                human::md_cell(&r.requirement),
                human::md_cell(&r.region),
                human::md_cell(&r.status),
                r.started_at.format("%Y-%m-%d"),
                human::md_cell(&r.duration),
                human::md_cell(&r.cost),
                run,
                human::md_cell(&r.detail),
            ));
        }
    }
    if let Some(detail) = detail {
        out.push('\n');
        out.push_str(detail.trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

/// CLOUD-03 and spend of a live run.
fn render_detail(run: &RunResults, settings: &ReportSettings) -> String {
    let mut out = format!(
        "{LIVE_DETAIL}\n#### Newest live run `{}` (started {})\n",
        human::md_cell(&run.run_id),
        run.started_at.format("%Y-%m-%d %H:%M UTC"),
    );
    if let Some(url) = &settings.run_url {
        out.push_str(&format!(
            "\nRun artifacts: [{0}]({0})\n",
            human::md_cell(url)
        ));
    }
    out.push_str(&cross_cloud_sections(run));
    out.push_str("\n##### Spend\n\n");
    out.push_str(&markdown::spend_table(run, settings));
    out
}

fn cross_cloud_sections(run: &RunResults) -> String {
    let mut out = String::new();
    for cross in run
        .requirements
        .iter()
        .filter(|r| r.id == RequirementId::Cloud03)
    {
        out.push_str(&format!(
            "\n##### CLOUD-03 cross-cloud consistency ({})\n\n",
            human::md_cell(&cross.region)
        ));
        out.push_str(&markdown::cross_cloud_table(cross));
    }
    out
}

fn render_mock(run: &RunResults, settings: &ReportSettings) -> String {
    let mut out = format!(
        "{MOCK_RUN}\n### Latest mock run\n\n_Mock run `{}` (started {}): emulated clouds on loopback, no cost. It shows the code paths work, not that the clouds do; the next live run removes this block._\n\n",
        human::md_cell(&run.run_id),
        run.started_at.format("%Y-%m-%d %H:%M UTC"),
    );
    if let Some(url) = &settings.run_url {
        out.push_str(&format!(
            "Run artifacts: [{0}]({0})\n\n",
            human::md_cell(url)
        ));
    }
    out.push_str(&markdown::requirements_table(run));
    out.push_str(&cross_cloud_sections(run));
    out.push('\n');
    out.push_str(&markdown::spend_table(run, settings));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn settings(url: &str) -> ReportSettings {
        ReportSettings {
            run_url: Some(url.into()),
            ..Default::default()
        }
    }

    fn live_at(hours_later: i64, run_id: &str) -> RunResults {
        let mut run = sample::two_provider_run();
        run.run_id = run_id.into();
        let shift = chrono::Duration::hours(hours_later);
        run.started_at += shift;
        for r in &mut run.requirements {
            for p in &mut r.phases {
                p.started_at = p.started_at.map(|t| t + shift);
            }
        }
        run
    }

    #[test]
    fn live_rows_are_parsed_back_as_written() {
        let region = render(&live_at(0, "run-a"), &settings("https://ci.example/a"));
        let parsed = parse(&region);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].requirement, "CLOUD-01");
        assert_eq!(
            parsed.rows[0].run_url.as_deref(),
            Some("https://ci.example/a")
        );
        assert_eq!(parsed.live_part, region);
        assert!(parsed.detail.is_some_and(|d| d.contains("`run-a`")));
        assert!(region.contains("[run-a](https://ci.example/a)"), "{region}");
    }

    #[test]
    fn an_older_live_result_never_replaces_a_newer_one() {
        let newer = render(&live_at(24, "run-new"), &settings("https://ci.example/new"));
        let after = merge(
            &newer,
            &live_at(0, "run-old"),
            &settings("https://ci.example/old"),
        );
        assert_eq!(after, newer);
        // A newer one does, and brings its own detail.
        let newest = merge(
            &newer,
            &live_at(48, "run-newest"),
            &ReportSettings::default(),
        );
        assert!(newest.contains("| run-newest |"), "{newest}");
        assert!(!newest.contains("run-new]"), "{newest}");
        assert!(newest.contains("Newest live run `run-newest`"), "{newest}");
    }

    #[test]
    fn rows_merge_per_requirement_and_region() {
        let mut aws_only = live_at(24, "aws-later");
        aws_only
            .requirements
            .retain(|r| r.id == RequirementId::Cloud01);
        let both = render(&live_at(0, "both"), &ReportSettings::default());
        let merged = merge(&both, &aws_only, &ReportSettings::default());
        let rows = parse(&merged).rows;
        let by = |id: &str| {
            rows.iter()
                .find(|r| r.requirement == id)
                .map(|r| r.run_id.clone())
        };
        assert_eq!(by("CLOUD-01").as_deref(), Some("aws-later"));
        assert_eq!(by("CLOUD-02").as_deref(), Some("both"));
    }

    #[test]
    fn skipped_requirements_say_nothing_about_the_cloud() {
        let mut run = live_at(24, "skips");
        for r in &mut run.requirements {
            r.status = RequirementStatus::Skipped;
        }
        let before = render(&live_at(0, "real"), &ReportSettings::default());
        assert_eq!(merge(&before, &run, &ReportSettings::default()), before);
    }

    #[test]
    fn a_mock_run_keeps_the_live_part_byte_for_byte_and_the_next_live_run_drops_it() {
        let live = render(&live_at(0, "run-a"), &settings("https://ci.example/a"));
        let mut mock = live_at(1, "mock-1");
        mock.mode = RunMode::Mock;
        let with_mock = merge(&live, &mock, &ReportSettings::default());
        assert!(with_mock.starts_with(&live), "{with_mock}");
        assert!(with_mock.contains("### Latest mock run"), "{with_mock}");
        assert_eq!(parse(&with_mock).rows, parse(&live).rows);
        // A second mock run replaces the first mock block, not the live part.
        let mut mock2 = mock.clone();
        mock2.run_id = "mock-2".into();
        let again = merge(&with_mock, &mock2, &ReportSettings::default());
        assert!(again.starts_with(&live) && again.contains("mock-2") && !again.contains("mock-1"));
        // The next live run removes the block.
        let next = merge(&again, &live_at(2, "run-b"), &ReportSettings::default());
        assert!(
            !next.contains("Latest mock run") && !next.contains(MOCK_RUN),
            "{next}"
        );
        assert!(next.contains("| run-b |"), "{next}");
    }

    #[test]
    fn a_mock_run_on_a_fresh_document_says_no_live_run_yet() {
        let mut mock = sample::two_provider_run();
        mock.mode = RunMode::Mock;
        let region = render(&mock, &ReportSettings::default());
        assert!(
            region.contains("No live run has been recorded yet"),
            "{region}"
        );
        assert!(region.contains("$0.00 (mock run)"), "{region}");
        assert!(parse(&region).rows.is_empty());
    }

    #[test]
    fn reasons_cannot_close_the_results_comment() {
        let mut run = live_at(0, "r");
        run.requirements[0].status = RequirementStatus::Failed;
        run.requirements[0].reason = "boom --> <!-- cloudtest:mock-run -->".into();
        let region = render(&run, &ReportSettings::default());
        let parsed = parse(&region);
        assert_eq!(parsed.rows.len(), 2, "{region}");
        assert!(
            parsed.rows[0].detail.contains("boom -->"),
            "{:?}",
            parsed.rows[0]
        );
        assert_eq!(line_starting(&region, MOCK_RUN), None, "{region}");
    }
}
