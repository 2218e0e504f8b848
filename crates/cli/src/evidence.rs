//! Failure evidence on disk: each failed lifecycle's items go to
//! `OUT/evidence/<requirement>-<region>/`, redacted twice over (registered secrets, then
//! anything shaped like a signed URL or a bearer token), and results.json names the files.

use std::path::Path;

use anyhow::{Context, Result};
use cloudtest_core::RunResults;

use crate::redact;

/// The directory below the output directory that holds one lifecycle's evidence.
pub fn dir_name(requirement: &str, region: &str) -> String {
    format!("evidence/{}-{}", safe_name(requirement), safe_name(region))
}

/// Writes every lifecycle's evidence and records where it went. Items stay in memory only.
pub fn write(out: &Path, results: &mut RunResults) -> Result<()> {
    for r in &mut results.requirements {
        let items = std::mem::take(&mut r.facts.evidence);
        if items.is_empty() {
            continue;
        }
        let rel = dir_name(r.id.as_str(), &r.region);
        let dir = out.join(&rel);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the evidence directory {}", dir.display()))?;
        let mut files = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let mut name = safe_name(&item.name);
            if name.is_empty() || files.contains(&format!("{rel}/{name}")) {
                name = format!("item-{}.txt", n + 1);
            }
            let text = scrub(&item.text);
            std::fs::write(dir.join(&name), text)
                .with_context(|| format!("writing evidence {}/{name}", dir.display()))?;
            files.push(format!("{rel}/{name}"));
        }
        r.facts.evidence_dir = Some(rel);
        r.facts.evidence_files = files;
    }
    Ok(())
}

/// A file name made only of letters, digits, `.`, `-` and `_`, never starting with a dot.
fn safe_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.trim_start_matches('.').to_string()
}

/// Registered secrets out, then the query of any URL that carries a signature (pre-signed
/// S3/wait-condition URLs, SAS tokens) and the value after `Bearer `.
pub fn scrub(text: &str) -> String {
    let text = redact::redact(text);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&scrub_line(line));
    }
    out
}

const SIGNED_QUERY_KEYS: [&str; 6] = [
    "signature=",
    "x-amz-signature=",
    "x-amz-credential=",
    "x-amz-security-token=",
    "sig=",
    "awsaccesskeyid=",
];

fn scrub_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        let lower = rest.to_ascii_lowercase();
        let url_at = ["https://", "http://"]
            .iter()
            .filter_map(|p| lower.find(p))
            .min();
        let bearer_at = lower.find("bearer ");
        let next = match (url_at, bearer_at) {
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            (Some(u), Some(b)) if b < u => Next::Bearer(b),
            (Some(u), _) => Next::Url(u),
            (None, Some(b)) => Next::Bearer(b),
        };
        match next {
            Next::Url(u) => {
                out.push_str(&rest[..u]);
                let end = rest[u..]
                    .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                    .map_or(rest.len(), |e| u + e);
                let url = &rest[u..end];
                match url.find('?') {
                    Some(q)
                        if SIGNED_QUERY_KEYS
                            .iter()
                            .any(|k| url[q..].to_ascii_lowercase().contains(k)) =>
                    {
                        out.push_str(&url[..q]);
                        out.push_str("?[redacted]");
                    }
                    _ => out.push_str(url),
                }
                rest = &rest[end..];
            }
            Next::Bearer(b) => {
                let start = b + "bearer ".len();
                out.push_str(&rest[..start]);
                let end = rest[start..]
                    .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\''))
                    .map_or(rest.len(), |e| start + e);
                out.push_str("[redacted]");
                rest = &rest[end..];
            }
        }
    }
}

/// What [`scrub_line`] found first.
enum Next {
    Url(usize),
    Bearer(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudtest_core::{
        EvidenceItem, RequirementId, RequirementResult, RequirementStatus, RunMode,
    };

    fn results_with(items: Vec<EvidenceItem>) -> RunResults {
        let mut r = RequirementResult::not_run(
            RequirementId::Cloud01,
            "us-east-1",
            RequirementStatus::Failed,
            "health: broke",
        );
        r.facts.evidence = items;
        RunResults {
            run_id: "r".into(),
            mode: RunMode::Mock,
            started_at: chrono::Utc::now(),
            duration_ms: 1,
            interrupted_by: None,
            requirements: vec![r],
        }
    }

    #[test]
    fn signed_urls_and_bearer_tokens_never_reach_a_file() {
        let text = "signal to https://cloudformation-waitcondition-us-east-1.s3.amazonaws.com/arn%3Aaws/ServerReady?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc123 done\n\
                    poll https://management.azure.com/x?api-version=2021-04-01 ok\n\
                    sas https://acct.blob.core.windows.net/c/b?sv=2020&sig=ZZZ%3D end\n\
                    Authorization: Bearer eyJ0eXAiOiJKV1Qi.payload.sig\n";
        let out = scrub(text);
        assert!(!out.contains("abc123"), "{out}");
        assert!(!out.contains("ZZZ"), "{out}");
        assert!(!out.contains("eyJ0eXAi"), "{out}");
        assert!(out.contains("/ServerReady?[redacted] done"), "{out}");
        // An unsigned query stays readable.
        assert!(out.contains("?api-version=2021-04-01 ok"), "{out}");
        assert!(out.contains("Bearer [redacted]"), "{out}");
    }

    #[test]
    fn items_land_in_one_directory_per_lifecycle_with_safe_names() {
        let out = tempfile::tempdir().expect("tmp");
        let mut results = results_with(vec![
            EvidenceItem {
                name: "../../etc/passwd".into(),
                text: "console\n".into(),
            },
            EvidenceItem {
                name: "stack-events.txt".into(),
                text: "CREATE_FAILED Server: boom\n".into(),
            },
        ]);
        write(out.path(), &mut results).expect("write");
        let r = &results.requirements[0];
        assert_eq!(
            r.facts.evidence_dir.as_deref(),
            Some("evidence/CLOUD-01-us-east-1")
        );
        assert!(r.facts.evidence.is_empty());
        assert_eq!(r.facts.evidence_files.len(), 2);
        for f in &r.facts.evidence_files {
            let name = f
                .strip_prefix("evidence/CLOUD-01-us-east-1/")
                .unwrap_or_else(|| panic!("{f} is outside the lifecycle's directory"));
            assert!(!name.contains('/') && !name.starts_with('.'), "{f}");
            assert!(out.path().join(f).is_file(), "{f}");
        }
        assert!(!out.path().join("etc").exists());
        let events = std::fs::read_to_string(
            out.path()
                .join("evidence/CLOUD-01-us-east-1/stack-events.txt"),
        )
        .expect("read");
        assert_eq!(events, "CREATE_FAILED Server: boom\n");
    }

    #[test]
    fn no_items_no_directory() {
        let out = tempfile::tempdir().expect("tmp");
        let mut results = results_with(vec![]);
        write(out.path(), &mut results).expect("write");
        assert!(!out.path().join("evidence").exists());
        assert_eq!(results.requirements[0].facts.evidence_dir, None);
    }
}
