//! Writes every output of a run into `--out DIR`: results.json (the contract), junit.xml,
//! report.md and report.html. Each file is written atomically.

use std::path::{Path, PathBuf};

use cloudtest_core::RunResults;
use thiserror::Error;

use crate::gap_doc::write_atomic;
use crate::junit::JunitError;
use crate::settings::ReportSettings;
use crate::{html, junit, markdown};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFiles {
    pub results_json: PathBuf,
    pub junit_xml: PathBuf,
    pub report_md: PathBuf,
    pub report_html: PathBuf,
}

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot create output directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise results.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Junit(#[from] JunitError),
}

/// results.json as written: pretty JSON with a final newline.
pub fn results_json(run: &RunResults) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(run)?;
    text.push('\n');
    Ok(text)
}

/// Writes the four outputs into `dir` (created when absent).
pub fn write_all(
    dir: &Path,
    run: &RunResults,
    settings: &ReportSettings,
) -> Result<WrittenFiles, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = WrittenFiles {
        results_json: dir.join("results.json"),
        junit_xml: dir.join("junit.xml"),
        report_md: dir.join("report.md"),
        report_html: dir.join("report.html"),
    };
    let contents = [
        (&files.results_json, results_json(run)?),
        (&files.junit_xml, junit::render(run)?),
        (&files.report_md, markdown::render(run, settings)),
        (&files.report_html, html::render(run, settings)),
    ];
    for (path, text) in contents {
        write_atomic(path, text.as_bytes()).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        tracing::debug!(path = %path.display(), "report output written");
    }
    Ok(files)
}
