//! How durations, dollars and statuses look to people, shared by every writer so the
//! Markdown, HTML and gap-document outputs say the same thing the same way.

use cloudtest_core::{PhaseStatus, RequirementStatus, ServerIdentity};

/// `4m 12s`, `850 ms`, `1h 02m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let secs = ms / 1_000;
    if secs < 60 {
        let tenths = (ms % 1_000) / 100;
        return format!("{secs}.{tenths} s");
    }
    let (h, m, s) = (secs / 3_600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// `$0.14`; under a cent, at least four decimals and two significant digits (up to eight
/// decimals) so a short run does not read as free.
pub fn usd(amount: f64) -> String {
    if amount != 0.0 && amount.abs() < 0.01 {
        let first_digit = (-amount.abs().log10()).ceil() as usize;
        let decimals = (first_digit + 1).clamp(4, 8);
        format!("${amount:.decimals$}")
    } else {
        format!("${amount:.2}")
    }
}

pub fn requirement_status(status: RequirementStatus) -> &'static str {
    match status {
        RequirementStatus::Passed => "passed",
        RequirementStatus::Failed => "failed",
        RequirementStatus::Error => "error",
        RequirementStatus::Skipped => "skipped",
    }
}

pub fn phase_status(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Passed => "passed",
        PhaseStatus::Failed => "failed",
        PhaseStatus::Skipped => "skipped",
    }
}

/// Text safe inside a Markdown table cell: one line, no column breaks, and no HTML comment
/// openers (a reason quoting a gap-document marker must not create a second marker).
/// "verified: ..." or "not verifiable: ...", as the reports print it.
pub fn server_identity(identity: &ServerIdentity) -> String {
    match identity {
        ServerIdentity::Verified(d) => format!("verified: {d}"),
        ServerIdentity::NotVerifiable(d) => format!("not verifiable: {d}"),
    }
}

pub fn md_cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    one_line
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text safe inside HTML element content and double-quoted attributes.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_345), "12.3 s");
        assert_eq!(duration_ms(252_000), "4m 12s");
        assert_eq!(duration_ms(3_720_000), "1h 02m");
    }

    #[test]
    fn dollars_keep_small_amounts_visible() {
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(0.1449), "$0.14");
        assert_eq!(usd(0.0042), "$0.0042");
        assert_eq!(usd(0.000_017), "$0.000017");
        assert_eq!(usd(0.000_000_001), "$0.00000000");
    }

    #[test]
    fn cells_and_html_are_escaped() {
        assert_eq!(md_cell("a|b\n<!-- x -->"), "a\\|b &lt;!-- x --&gt;");
        assert_eq!(
            html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
