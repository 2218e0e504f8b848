//! Writes results into the gap document between two marker lines, leaving every other byte
//! as it was. Bad markers stop the write and name their line numbers.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub const BEGIN_MARKER: &str = "<!-- cloudtest:results:begin -->";
pub const END_MARKER: &str = "<!-- cloudtest:results:end -->";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MarkerError {
    #[error("`{BEGIN_MARKER}` on line {begin_line} has no `{END_MARKER}` after it")]
    BeginWithoutEnd { begin_line: usize },
    #[error("`{END_MARKER}` on line {end_line} has no `{BEGIN_MARKER}` before it")]
    EndWithoutBegin { end_line: usize },
    #[error("`{marker}` appears more than once, on lines {}", join_lines(lines))]
    Duplicated {
        marker: &'static str,
        lines: Vec<usize>,
    },
    #[error(
        "`{END_MARKER}` on line {end_line} comes before `{BEGIN_MARKER}` on line {begin_line}"
    )]
    OutOfOrder { begin_line: usize, end_line: usize },
}

fn join_lines(lines: &[usize]) -> String {
    lines
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Error)]
pub enum GapDocError {
    #[error("cannot read gap document {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gap document {path}: {source}; file left untouched (a marker is a line holding only the marker text)")]
    Markers {
        path: PathBuf,
        #[source]
        source: MarkerError,
    },
    #[error("cannot write gap document {path}: {source}; file left untouched")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A line of `doc`: its 1-based number and byte span including its line ending.
struct Line {
    number: usize,
    start: usize,
    end: usize,
}

fn lines(doc: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, piece) in doc.split_inclusive('\n').enumerate() {
        out.push(Line {
            number: i + 1,
            start,
            end: start + piece.len(),
        });
        start += piece.len();
    }
    out
}

fn is_marker(text: &str, marker: &str) -> bool {
    text.trim() == marker
}

/// `doc` with the text between the marker lines replaced by `region`, or with a marker pair
/// holding `region` appended when the document has neither marker. Line endings of the
/// region follow the document's (CRLF stays CRLF).
pub fn splice(doc: &str, region: &str) -> Result<String, MarkerError> {
    let all = lines(doc);
    let begins: Vec<&Line> = all
        .iter()
        .filter(|l| is_marker(&doc[l.start..l.end], BEGIN_MARKER))
        .collect();
    let ends: Vec<&Line> = all
        .iter()
        .filter(|l| is_marker(&doc[l.start..l.end], END_MARKER))
        .collect();
    let numbers = |ls: &[&Line]| ls.iter().map(|l| l.number).collect::<Vec<_>>();
    if begins.len() > 1 {
        return Err(MarkerError::Duplicated {
            marker: BEGIN_MARKER,
            lines: numbers(&begins),
        });
    }
    if ends.len() > 1 {
        return Err(MarkerError::Duplicated {
            marker: END_MARKER,
            lines: numbers(&ends),
        });
    }
    // The region takes the begin marker line's ending, or the document's first line ending.
    let eol_of = |l: &Line| {
        if doc[l.start..l.end].ends_with("\r\n") {
            "\r\n"
        } else {
            "\n"
        }
    };
    let eol = begins
        .first()
        .map(|l| eol_of(l))
        .or_else(|| {
            all.iter()
                .find(|l| doc[l.start..l.end].ends_with('\n'))
                .map(eol_of)
        })
        .unwrap_or("\n");
    let body = normalise_region(region, eol);
    match (begins.first(), ends.first()) {
        (None, None) => {
            let mut out = String::with_capacity(doc.len() + body.len() + 80);
            out.push_str(doc);
            if !doc.is_empty() {
                if !doc.ends_with('\n') {
                    out.push_str(eol);
                }
                out.push_str(eol);
            }
            out.push_str(BEGIN_MARKER);
            out.push_str(eol);
            out.push_str(&body);
            out.push_str(END_MARKER);
            out.push_str(eol);
            Ok(out)
        }
        (Some(b), None) => Err(MarkerError::BeginWithoutEnd {
            begin_line: b.number,
        }),
        (None, Some(e)) => Err(MarkerError::EndWithoutBegin { end_line: e.number }),
        (Some(b), Some(e)) if e.number < b.number => Err(MarkerError::OutOfOrder {
            begin_line: b.number,
            end_line: e.number,
        }),
        (Some(b), Some(e)) => {
            let mut out = String::with_capacity(doc.len() + body.len());
            // The begin line ends with a newline: the end marker comes after it.
            out.push_str(&doc[..b.end]);
            out.push_str(&body);
            out.push_str(&doc[e.start..]);
            Ok(out)
        }
    }
}

/// The text between the marker lines (without them), or `None` when the document has
/// neither marker. Errors as [`splice`] does.
pub fn region(doc: &str) -> Result<Option<&str>, MarkerError> {
    splice(doc, "")?;
    let all = lines(doc);
    let find = |marker: &str| all.iter().find(|l| is_marker(&doc[l.start..l.end], marker));
    Ok(match (find(BEGIN_MARKER), find(END_MARKER)) {
        (Some(b), Some(e)) => Some(&doc[b.end..e.start]),
        _ => None,
    })
}

/// The region with `eol` line endings and a final line ending, or empty.
fn normalise_region(region: &str, eol: &str) -> String {
    if region.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(region.len() + 16);
    for line in region.lines() {
        out.push_str(line.trim_end_matches('\r'));
        out.push_str(eol);
    }
    out
}

/// Rewrites the results region of the gap document at `path`: atomically (temporary file
/// in the same directory, then rename) and keeping the file's permissions. On any error
/// the file is untouched.
pub fn update(path: &Path, region_text: &str) -> Result<(), GapDocError> {
    let doc = std::fs::read_to_string(path).map_err(|source| GapDocError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let new = splice(&doc, region_text).map_err(|source| GapDocError::Markers {
        path: path.to_path_buf(),
        source,
    })?;
    if new == doc {
        return Ok(());
    }
    write_atomic(path, new.as_bytes()).map_err(|source| GapDocError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Rewrites the results region of the gap document at `path` with `f(current region)`
/// (empty when the document has no markers yet), as [`update`] does: atomically, and
/// leaving the file untouched on any error or when nothing changes.
pub fn rewrite(path: &Path, f: impl FnOnce(&str) -> String) -> Result<(), GapDocError> {
    let doc = std::fs::read_to_string(path).map_err(|source| GapDocError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let markers = |source| GapDocError::Markers {
        path: path.to_path_buf(),
        source,
    };
    let current = region(&doc).map_err(markers)?.unwrap_or("");
    let new = splice(&doc, &f(current)).map_err(markers)?;
    if new == doc {
        return Ok(());
    }
    write_atomic(path, new.as_bytes()).map_err(|source| GapDocError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers see the old or the new file, never half of one. Keeps an existing file's mode.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut tmp = tempfile::Builder::new()
        .prefix(".cloudtest-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if let Some(p) = permissions {
        std::fs::set_permissions(tmp.path(), p)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = BEGIN_MARKER;
    const E: &str = END_MARKER;

    #[test]
    fn no_markers_appends_a_pair_at_the_end() {
        assert_eq!(
            splice("# Doc\n", "r1\n").expect("ok"),
            format!("# Doc\n\n{B}\nr1\n{E}\n")
        );
        assert_eq!(
            splice("# Doc", "r1").expect("ok"),
            format!("# Doc\n\n{B}\nr1\n{E}\n")
        );
        assert_eq!(splice("", "").expect("ok"), format!("{B}\n{E}\n"));
    }

    #[test]
    fn one_pair_replaces_only_the_region() {
        let doc = format!("head\n{B}\nold 1\nold 2\n{E}\ntail\n");
        assert_eq!(
            splice(&doc, "new").expect("ok"),
            format!("head\n{B}\nnew\n{E}\ntail\n")
        );
        assert_eq!(
            splice(&doc, "").expect("ok"),
            format!("head\n{B}\n{E}\ntail\n")
        );
        // Applying twice is stable.
        let once = splice(&doc, "new\n").expect("ok");
        assert_eq!(splice(&once, "new\n").expect("ok"), once);
    }

    #[test]
    fn two_pairs_are_duplicates_naming_lines() {
        let doc = format!("{B}\n{E}\ntext\n{B}\n{E}\n");
        let err = splice(&doc, "x").unwrap_err();
        assert_eq!(
            err,
            MarkerError::Duplicated {
                marker: BEGIN_MARKER,
                lines: vec![1, 4]
            }
        );
        assert!(err.to_string().contains("lines 1, 4"), "{err}");
    }

    #[test]
    fn reversed_and_lonely_markers_are_errors() {
        let err = splice(&format!("a\n{E}\nb\n{B}\n"), "x").unwrap_err();
        assert_eq!(
            err,
            MarkerError::OutOfOrder {
                begin_line: 4,
                end_line: 2
            }
        );
        assert!(err.to_string().contains("line 2") && err.to_string().contains("line 4"));
        assert_eq!(
            splice(&format!("a\n{B}\n"), "x").unwrap_err(),
            MarkerError::BeginWithoutEnd { begin_line: 2 }
        );
        assert_eq!(
            splice(&format!("{E}\n"), "x").unwrap_err(),
            MarkerError::EndWithoutBegin { end_line: 1 }
        );
    }

    #[test]
    fn crlf_documents_stay_crlf() {
        let doc = format!("head\r\n{B}\r\nold\r\n{E}\r\ntail\r\n");
        assert_eq!(
            splice(&doc, "a\nb\n").expect("ok"),
            format!("head\r\n{B}\r\na\r\nb\r\n{E}\r\ntail\r\n")
        );
        let appended = splice("x\r\ny", "r").expect("ok");
        assert_eq!(appended, format!("x\r\ny\r\n\r\n{B}\r\nr\r\n{E}\r\n"));
    }

    #[test]
    fn end_marker_without_trailing_newline_is_kept_as_is() {
        let doc = format!("head\n{B}\nold\n{E}");
        assert_eq!(
            splice(&doc, "new").expect("ok"),
            format!("head\n{B}\nnew\n{E}")
        );
    }

    #[test]
    fn markers_quoted_inside_prose_are_not_markers() {
        let doc = format!("Results go between `{B}` and `{E}`.\n");
        let out = splice(&doc, "r").expect("ok");
        assert!(out.starts_with(&doc));
        assert!(out.ends_with(&format!("{B}\nr\n{E}\n")));
    }

    #[test]
    fn region_is_the_text_between_the_markers() {
        let doc = format!("head\n{B}\nline 1\nline 2\n{E}\ntail\n");
        assert_eq!(region(&doc), Ok(Some("line 1\nline 2\n")));
        assert_eq!(region("no markers\n"), Ok(None));
        assert!(region(&format!("{E}\n{B}\n")).is_err());
        // Splicing the region back in gives the same bytes.
        let inner = region(&doc).expect("ok").expect("some");
        assert_eq!(splice(&doc, inner).expect("ok"), doc);
    }

    #[cfg(unix)]
    #[test]
    fn update_is_atomic_keeps_mode_and_leaves_bad_files_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("GAP.md");
        std::fs::write(&path, format!("a\n{B}\n{E}\nz\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        update(&path, "results\n").expect("update");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("a\n{B}\nresults\n{E}\nz\n")
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");

        let bad = format!("a\n{E}\n{B}\n");
        std::fs::write(&path, &bad).expect("write");
        let err = update(&path, "results").unwrap_err();
        assert!(matches!(err, GapDocError::Markers { .. }));
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), bad);
    }
}
