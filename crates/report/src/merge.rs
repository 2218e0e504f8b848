//! Combines the results of a CI matrix (one job per provider or region) into one run and
//! recomputes CLOUD-03 across the shards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Duration;
use cloudtest_core::{RequirementId, RunResults};
use thiserror::Error;

use crate::cross_cloud;

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("nothing to merge: give at least one results directory")]
    Empty,
    #[error("cannot read {path}: {source} (expected a directory holding results.json, or the file itself)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a cloudtest results.json: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("shards mix mock and live runs ({first} and {second}); merge runs of one mode")]
    MixedModes { first: String, second: String },
    #[error("{requirement} {region} appears in more than one shard; each lifecycle must come from one job")]
    Duplicate { requirement: String, region: String },
}

/// Reads `DIR/results.json` (or `path` itself when it is a file).
pub fn load_shard(path: &Path) -> Result<RunResults, MergeError> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| MergeError::Read {
        path: file.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| MergeError::Parse { path: file, source })
}

/// One run from several shards: lifecycles from all shards (CLOUD-03 entries dropped and
/// recomputed), the earliest start, the latest end, the worst interruption. The run id is
/// shared when the shards agree, otherwise the ids joined with `+`.
pub fn merge(shards: Vec<RunResults>) -> Result<RunResults, MergeError> {
    let first = shards.first().ok_or(MergeError::Empty)?;
    if let Some(other) = shards.iter().find(|s| s.mode != first.mode) {
        return Err(MergeError::MixedModes {
            first: first.mode.as_str().into(),
            second: other.mode.as_str().into(),
        });
    }
    let mode = first.mode;
    let started_at = shards
        .iter()
        .map(|s| s.started_at)
        .min()
        .unwrap_or(first.started_at);
    let ended_at = shards
        .iter()
        .map(|s| s.started_at + Duration::milliseconds(s.duration_ms as i64))
        .max()
        .unwrap_or(started_at);
    let mut ids: Vec<&str> = Vec::new();
    for s in &shards {
        if !ids.contains(&s.run_id.as_str()) {
            ids.push(&s.run_id);
        }
    }
    let run_id = ids.join("+");
    let interrupted_by = shards.iter().filter_map(|s| s.interrupted_by).max();
    let mut seen = BTreeSet::new();
    let mut requirements = Vec::new();
    for r in shards
        .iter()
        .flat_map(|s| &s.requirements)
        .filter(|r| r.id != RequirementId::Cloud03)
    {
        if !seen.insert((r.id, r.region.clone())) {
            return Err(MergeError::Duplicate {
                requirement: r.id.as_str().into(),
                region: r.region.clone(),
            });
        }
        requirements.push(r.clone());
    }
    requirements.sort_by(|a, b| (a.id, &a.region).cmp(&(b.id, &b.region)));
    let mut run = RunResults {
        run_id,
        mode,
        started_at,
        duration_ms: (ended_at - started_at).num_milliseconds().max(0) as u64,
        interrupted_by,
        requirements,
    };
    cross_cloud::attach(&mut run);
    Ok(run)
}
