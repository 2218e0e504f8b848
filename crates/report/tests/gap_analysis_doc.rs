//! docs/GAP_ANALYSIS.md meets the checks of the plan it was written from (the `grep` lines
//! of the seed's `<verify>` blocks and its success criteria), and holds one results region.

use cloudtest_report::{BEGIN_MARKER, END_MARKER};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/GAP_ANALYSIS.md");
    std::fs::read_to_string(path).expect("docs/GAP_ANALYSIS.md exists")
}

/// `grep -c PATTERN`: lines containing the pattern.
fn grep_count(doc: &str, pattern: &str) -> usize {
    doc.lines().filter(|l| l.contains(pattern)).count()
}

/// The lines of the `## ` section whose heading starts with `heading`.
fn section<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    doc.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

#[test]
fn header_and_executive_summary_follow_the_plan() {
    let doc = doc();
    assert!(doc.starts_with("# Megaraptor MCP Gap Analysis\n"));
    for needle in [
        "**Version:**",
        "**Date:**",
        "**Scope:**",
        "## Executive Summary",
        "35 MCP tools",
    ] {
        assert!(doc.contains(needle), "missing {needle}");
    }
}

#[test]
fn task_1_four_workflow_tables_and_critical_gaps() {
    let doc = doc();
    assert_eq!(grep_count(&doc, "| Step | Capability |"), 4);
    let assessment = section(&doc, "## Tool Capability Assessment").join("\n");
    for workflow in ["Triage", "Collection", "Analysis", "Remediation"] {
        assert!(
            assessment.contains(&format!("### {workflow} Workflow")),
            "{workflow}"
        );
    }
    for gap in [
        "Timeline generation",
        "IOC extraction",
        "File remediation",
        "Report generation",
    ] {
        assert!(assessment.contains(gap), "{gap}");
    }
    assert!(
        doc.contains("## Tool Capability Gaps"),
        "frontmatter `contains`"
    );
}

#[test]
fn task_2_prioritised_recommendations_with_rationale() {
    let doc = doc();
    assert!(grep_count(&doc, "Priority 1:") >= 1 && grep_count(&doc, "Priority 2:") >= 1);
    assert!(doc.contains("Priority 3:"));
    let recs = section(&doc, "## Deployment Improvement Recommendations");
    let headings = recs.iter().filter(|l| l.starts_with("#### ")).count();
    let rationales = recs
        .iter()
        .filter(|l| l.starts_with("**Rationale:**"))
        .count();
    assert!(
        headings >= 5,
        "at least five recommendations, found {headings}"
    );
    assert_eq!(rationales, headings, "every recommendation has a rationale");
    assert!(
        doc.contains("## Deployment Recommendations"),
        "frontmatter `contains`"
    );
}

#[test]
fn task_3_cloud_testing_scope() {
    let doc = doc();
    assert!(grep_count(&doc, "## Cloud Testing Requirements") >= 1);
    for id in ["CLOUD-01", "CLOUD-02", "CLOUD-03"] {
        assert!(grep_count(&doc, id) >= 1, "{id}");
    }
    let scope = section(&doc, "## Cloud Testing Requirements (v2 Scope)").join("\n");
    for needle in [
        "Test Automation Considerations",
        "Skip Guards",
        "| Provider | Instance Type | Est. Cost/Test | Monthly Budget |",
        "$50",
        "15-30 minutes",
    ] {
        assert!(scope.contains(needle), "{needle}");
    }
    assert!(
        doc.contains("## Cloud Testing Scope"),
        "frontmatter `contains`"
    );
}

#[test]
fn comprehensive_and_has_one_results_region() {
    let doc = doc();
    assert!(doc.lines().count() > 200, "more than 200 lines");
    let begins: Vec<usize> = doc
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == BEGIN_MARKER)
        .map(|(i, _)| i)
        .collect();
    let ends: Vec<usize> = doc
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == END_MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(begins.len(), 1);
    assert_eq!(ends.len(), 1);
    assert!(begins[0] < ends[0]);
    // The writer accepts the document as it is.
    assert!(cloudtest_report::gap_doc::splice(&doc, "x").is_ok());
}

#[test]
fn recommendations_answered_here_link_existing_repository_paths() {
    let doc = doc();
    for link in [
        "../crates/core/src/config/deadlines.rs",
        "../crates/core/src/skip.rs",
        "../crates/velociraptor/",
        "../crates/mock/",
        "../templates-cfn/velociraptor.yaml",
        "../templates-arm/velociraptor.json",
        "../crates/report/src/cost.rs",
    ] {
        assert!(doc.contains(&format!("]({link})")), "links {link}");
    }
    // Links into this crate must resolve now; others are checked once their crates exist.
    let docs_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    for rel in [
        "../crates/report/src/cost.rs",
        "../crates/report/src/ledger.rs",
        "../crates/report/src/cross_cloud.rs",
        "../crates/report/src/price_table.json",
        "../crates/core/src/config/deadlines.rs",
        "../crates/core/src/skip.rs",
        "dev/CONTRACTS.md",
    ] {
        assert!(
            std::path::Path::new(docs_dir).join(rel).exists(),
            "{rel} exists"
        );
    }
}
