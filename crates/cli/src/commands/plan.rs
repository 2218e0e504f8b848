//! `cloudtest plan`: what `run` would do, with skip-guard verdicts and estimated cost.
//! Builds no cloud client and calls nothing.

use anyhow::Result;
use cloudtest_core::{ExitCode, Phase, RunMode};
use cloudtest_report::cost;

use crate::args::{ProviderArg, RunArgs};
use crate::plan::RunPlan;
use crate::wiring;

pub async fn plan(args: RunArgs) -> Result<ExitCode> {
    let plan = RunPlan::build(&args)?;
    let guards = wiring::skip_guards(&plan)?;
    wiring::check_gap_doc(&plan)?;
    let table = wiring::price_table(&plan.config)?;

    println!(
        "cloudtest plan: {} mode, config from {}; no cloud is called",
        plan.mode.as_str(),
        plan.config_origin
    );
    println!();
    let mut lines = Vec::new();
    if let Some(aws) = &plan.aws {
        let est = cost::estimate_resources(
            "aws",
            &cost::planned_resources("aws", aws.use_spot),
            cost::PLANNED_LIFETIME,
            &table,
        )
        .usd;
        for r in &aws.regions {
            lines.push((
                "CLOUD-01",
                "aws",
                r.clone(),
                format!(
                    "{} ({})",
                    aws.template_path.display(),
                    aws.template_origin.as_str()
                ),
                est,
            ));
        }
    }
    if let Some(az) = &plan.azure {
        let est = cost::estimate_resources(
            "azure",
            &cost::planned_resources("azure", az.use_spot),
            cost::PLANNED_LIFETIME,
            &table,
        )
        .usd;
        for r in &az.locations {
            lines.push((
                "CLOUD-02",
                "azure",
                r.clone(),
                format!(
                    "{} ({})",
                    az.template_path.display(),
                    az.template_origin.as_str()
                ),
                est,
            ));
        }
    }
    println!(
        "{:<9} {:<6} {:<16} {:<56} {:>9}  VERDICT",
        "REQ", "CLOUD", "REGION", "TEMPLATE", "EST. COST"
    );
    for (id, provider, region, template, est) in &lines {
        let skipped = guards
            .skipped
            .iter()
            .find(|s| s.provider == *provider && s.region == *region)
            .map(|s| s.reason.clone());
        let verdict = match skipped {
            Some(reason) => reason,
            None => {
                let src = guards
                    .sources
                    .iter()
                    .find(|(p, _)| format!("{p:?}").eq_ignore_ascii_case(provider))
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                format!("will run ({src})")
            }
        };
        let est = if plan.mode == RunMode::Mock {
            0.0
        } else {
            *est
        };
        println!(
            "{id:<9} {provider:<6} {region:<16} {template:<56} {:>9}  {verdict}",
            format!("${est:.2}")
        );
    }
    // CLOUD-03 runs only when both sides will run: a skipped provider leaves nothing to compare.
    let both = guards.runnable.contains(&ProviderArg::Aws)
        && guards.runnable.contains(&ProviderArg::Azure);
    println!(
        "CLOUD-03  cross  {}",
        if both {
            "compares CLOUD-01 and CLOUD-02 side by side"
        } else {
            "skipped: needs both providers to run"
        }
    );
    if let Some(line) = guards.azure_credential_line(&plan) {
        println!("{line}");
    }
    if let Some(aws) = &plan.aws {
        if let Some(role) = &aws.cloudformation_role_arn {
            println!(
                "aws CloudFormation service role: {role} (RoleARN of CreateStack and DeleteStack)"
            );
        }
        if let Some(boundary) = &aws.permissions_boundary_arn {
            println!(
                "aws permissions boundary of the server role: {boundary} ({})",
                aws.permissions_boundary_origin
            );
        }
    }
    println!();
    println!("deadlines:");
    for phase in Phase::ALL {
        println!(
            "  {:<11} {:>8}  ({})",
            phase.as_str(),
            humantime::format_duration(plan.deadlines.get(phase)).to_string(),
            plan.deadlines.origin(phase)
        );
    }
    println!();
    println!(
        "prices: {} (retrieved {}); budget ${:.2} per provider per month",
        table.source, table.retrieved, plan.monthly_budget_usd
    );
    if plan.mode == RunMode::Live && guards.runnable.is_empty() {
        println!("nothing would be tested: `cloudtest run --mode live` would exit 2");
        return Ok(ExitCode::UsageError);
    }
    Ok(ExitCode::Success)
}
