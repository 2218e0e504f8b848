//! `cloudtest report RESULTS...` and `cloudtest report merge DIR...`: render outputs from
//! results.json files without running anything, merging CI shards.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cloudtest_core::ExitCode;
use cloudtest_report::{gap_doc, gap_region, merge, ReportSettings, RUN_URL_ENV};

use crate::args::{ReportArgs, ReportCommand};
use crate::error::usage;
use crate::plan::load_config;

pub async fn report(args: ReportArgs) -> Result<ExitCode> {
    match args.merge {
        Some(ReportCommand::Merge {
            shards,
            out,
            gap_doc,
            config,
        }) => render(&shards, &out, gap_doc.as_deref(), config.as_deref()),
        None => {
            if args.results.is_empty() {
                return Err(usage("cloudtest report needs at least one results.json (or use `cloudtest report merge DIR...`)"));
            }
            render(
                &args.results,
                &args.out,
                args.gap_doc.as_deref(),
                args.config.as_deref(),
            )
        }
    }
}

fn render(
    inputs: &[PathBuf],
    out: &Path,
    gap: Option<&Path>,
    config: Option<&Path>,
) -> Result<ExitCode> {
    let (config, _) = load_config(config)?;
    if let Some(path) = gap {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--gap-doc {}: {e}", path.display())))?;
        gap_doc::splice(&text, "")
            .map_err(|e| usage(format!("gap document {}: {e}", path.display())))?;
    }
    let mut shards = Vec::new();
    for input in inputs {
        let file = if input.is_dir() {
            input.join("results.json")
        } else {
            input.clone()
        };
        shards.push(merge::load_shard(&file).map_err(|e| usage(e.to_string()))?);
    }
    let run = merge::merge(shards).map_err(|e| usage(e.to_string()))?;
    let table = crate::wiring::price_table(&config)?;
    let settings = ReportSettings {
        run_url: std::env::var(RUN_URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty()),
        ..Default::default()
    }
    .with_prices(&table);
    let written = cloudtest_report::write_all(out, &run, &settings)
        .with_context(|| format!("writing reports into {}", out.display()))?;
    if let Some(path) = gap {
        // Newest live result per requirement and region wins; a mock results file only
        // replaces the "latest mock run" block.
        gap_doc::rewrite(path, |region| gap_region::merge(region, &run, &settings))
            .with_context(|| format!("writing results into {}", path.display()))?;
        println!("updated {}", path.display());
    }
    println!("wrote {}", written.results_json.display());
    crate::commands::run::print_summary(&run);
    Ok(run.exit_code())
}
