//! `cloudtest sweep`: delete what earlier runs left behind. Only resources carrying the
//! `cloudtest:run-id` tag are touched: those whose `cloudtest:expires-at` has passed (or
//! older than `--older-than`), or with `--run-id` every resource of that run, expired or
//! not, except what a `--keep-on-failure` run kept (until it expires). Stacks and resource
//! groups first, then stray resources.

use std::time::Duration;

use anyhow::{Context, Result};
use cloudtest_aws::sweep as aws_sweep;
use cloudtest_azure::sweep as azure_sweep;
use cloudtest_azure::CredentialPlan;
use cloudtest_core::skip::{Environment, ProcessEnvironment};
use cloudtest_core::tags::{self, SweepScope, KEEP_TAG, KEEP_UNTIL_EXPIRY};
use cloudtest_core::{Backoff, ExitCode};
use cloudtest_mock::{MockCloud, MockOptions};

use crate::args::{ModeArg, ProviderArg, SweepArgs};
use crate::connect;
use crate::error::usage;
use crate::plan::{azure_credential_choice, load_config, parse_duration};
use cloudtest_core::regions;

/// One row of the table sweep prints.
struct Row {
    cloud: &'static str,
    region: String,
    what: String,
    why: String,
    outcome: String,
}

pub async fn sweep(args: SweepArgs) -> Result<ExitCode> {
    let (config, config_origin) = load_config(args.config.as_deref())?;
    let (azure_choice, azure_choice_origin) = azure_credential_choice(
        args.azure_credential.as_deref(),
        config.azure.credential.as_deref(),
        &config_origin,
    )?;
    let older_than = match &args.older_than {
        Some(s) => Some(parse_duration(s).map_err(|e| usage(format!("--older-than `{s}`: {e}")))?),
        None => None,
    };
    let scope = match &args.run_id {
        Some(id) => {
            tags::check_run_id(id).map_err(|why| usage(format!("--run-id `{id}`: {why}")))?;
            SweepScope::Run {
                run_id: id.clone(),
                include_kept: args.include_kept,
            }
        }
        None => SweepScope::Expired { older_than },
    };
    if args.mode == ModeArg::Live && !args.plant.is_empty() {
        return Err(usage("--plant works only with --mode mock"));
    }
    let want = |p: ProviderArg| args.provider.is_empty() || args.provider.contains(&p);
    let cloudformation_role =
        crate::plan::cloudformation_role(args.aws_cloudformation_role.as_deref(), &config)?;
    let aws_regions: Vec<String> = if !args.aws_regions.is_empty() {
        args.aws_regions.clone()
    } else {
        config
            .aws
            .regions
            .clone()
            .unwrap_or_else(|| vec!["us-east-1".into()])
    };
    for r in &aws_regions {
        if !regions::is_aws_region(r) {
            return Err(usage(format!("unknown AWS region `{r}`")));
        }
    }

    let mock = match args.mode {
        ModeArg::Mock => {
            let cloud = MockCloud::start(MockOptions::default())
                .await
                .context("starting the mock cloud")?;
            plant(&cloud, &args.plant)?;
            Some(cloud)
        }
        ModeArg::Live => None,
    };
    let now = chrono::Utc::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut failures = 0usize;

    if want(ProviderArg::Aws) {
        for region in &aws_regions {
            let endpoint = args
                .aws_endpoint
                .clone()
                .or_else(|| config.aws.endpoint.clone());
            let sdk = connect::aws_sdk(region, endpoint, mock.as_ref()).await;
            let items = match aws_sweep::find_due(&sdk, now, &scope).await {
                Ok(items) => items,
                Err(e) => {
                    failures += 1;
                    rows.push(Row {
                        cloud: "aws",
                        region: region.clone(),
                        what: "(listing)".into(),
                        why: String::new(),
                        outcome: format!("FAILED: {e}"),
                    });
                    continue;
                }
            };
            for item in items {
                let what = match &item.target {
                    aws_sweep::SweepTarget::Stack { name, .. } => format!("stack {name}"),
                    aws_sweep::SweepTarget::Resource(r) => format!("{} {}", r.kind, r.id),
                };
                let outcome = if args.dry_run {
                    "would delete (dry run)".to_string()
                } else {
                    match aws_sweep::delete_as(&sdk, &item, cloudformation_role.as_deref()).await {
                        Ok(()) => "deleted".to_string(),
                        Err(e) => {
                            failures += 1;
                            format!("FAILED: {e}")
                        }
                    }
                };
                rows.push(Row {
                    cloud: "aws",
                    region: item.region.clone(),
                    what,
                    why: item.why.clone(),
                    outcome,
                });
            }
        }
    }

    if want(ProviderArg::Azure) {
        let endpoint = match args
            .azure_endpoint
            .clone()
            .or_else(|| config.azure.endpoint.clone())
            .or_else(|| mock.as_ref().map(|m| m.arm.endpoint()))
        {
            Some(e) => Some(
                url::Url::parse(&e)
                    .map_err(|err| usage(format!("--azure-endpoint `{e}`: {err}")))?,
            ),
            None => None,
        };
        let sub = config
            .azure
            .subscription_id
            .clone()
            .or_else(|| ProcessEnvironment.var("AZURE_SUBSCRIPTION_ID"));
        let named = args.provider.contains(&ProviderArg::Azure);
        let credential = CredentialPlan::resolve(azure_choice, &ProcessEnvironment, mock.is_some())
            .map_err(|e| format!("{azure_choice_origin}: {e}"));
        let conn = match (credential, &sub, &mock) {
            (Err(why), _, _) if named || mock.is_some() => return Err(usage(why)),
            (Err(why), _, _) => {
                eprintln!("azure: skipped ({why})");
                None
            }
            (Ok(_), None, None) if named => {
                return Err(usage(
                    "--provider azure: set AZURE_SUBSCRIPTION_ID or [azure] subscription_id",
                ));
            }
            (Ok(_), None, None) => {
                eprintln!("azure: skipped (no AZURE_SUBSCRIPTION_ID)");
                None
            }
            (Ok(credential), _, mock) => Some(connect::azure_connection(
                &credential,
                sub.clone(),
                endpoint,
                mock.as_ref(),
            )?),
        };
        if let Some(conn) = conn {
            match azure_sweep::find_due(&conn, now, &scope).await {
                Err(e) => {
                    failures += 1;
                    rows.push(Row {
                        cloud: "azure",
                        region: "-".into(),
                        what: "(listing)".into(),
                        why: String::new(),
                        outcome: format!("FAILED: {e}"),
                    });
                }
                Ok(items) => {
                    for item in items {
                        let what = match &item.target {
                            azure_sweep::SweepTarget::ResourceGroup { name } => {
                                format!("resource group {name}")
                            }
                            azure_sweep::SweepTarget::Resource(r) => format!("{} {}", r.kind, r.id),
                        };
                        let outcome = if args.dry_run {
                            "would delete (dry run)".to_string()
                        } else {
                            let deadline =
                                tokio::time::Instant::now() + Duration::from_secs(30 * 60);
                            match azure_sweep::delete(&conn, &item, deadline, Backoff::CLOUD).await
                            {
                                Ok(()) => "deleted".to_string(),
                                Err(e) => {
                                    failures += 1;
                                    format!("FAILED: {e}")
                                }
                            }
                        };
                        rows.push(Row {
                            cloud: "azure",
                            region: item.location.clone(),
                            what,
                            why: item.why.clone(),
                            outcome,
                        });
                    }
                }
            }
        }
    }

    println!(
        "{:<6} {:<14} {:<60} {:<40} OUTCOME",
        "CLOUD", "REGION", "RESOURCE", "WHY"
    );
    for r in &rows {
        println!(
            "{:<6} {:<14} {:<60} {:<40} {}",
            r.cloud, r.region, r.what, r.why, r.outcome
        );
    }
    println!(
        "\n{} found, {} {}, {} failed",
        rows.iter().filter(|r| r.what != "(listing)").count(),
        rows.iter()
            .filter(|r| r.outcome == "deleted" || r.outcome.starts_with("would"))
            .count(),
        if args.dry_run {
            "would be deleted"
        } else {
            "deleted"
        },
        failures
    );
    if let Some(m) = mock {
        println!(
            "mock state after sweep: {}",
            serde_json::to_string(&m.state()).unwrap_or_default()
        );
        println!(
            "mock stack requests: {}",
            serde_json::to_string(&m.aws.stack_requests()).unwrap_or_default()
        );
        m.stop().await;
    }
    Ok(if failures > 0 {
        ExitCode::ResourcesRemain
    } else {
        ExitCode::Success
    })
}

/// Mock mode: leftovers to sweep, for demonstrations and tests. `run:ID` is an unexpired
/// resource of run ID, `kept:ID` the same kept by `--keep-on-failure`.
fn plant(cloud: &MockCloud, kinds: &[String]) -> Result<()> {
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let future = (chrono::Utc::now() + chrono::Duration::hours(6)).to_rfc3339();
    for (i, kind) in kinds.iter().enumerate() {
        let tagged = |run_id: String, expires: &str| {
            vec![
                (tags::RUN_ID_TAG.to_string(), run_id),
                (tags::EXPIRES_AT_TAG.to_string(), expires.to_string()),
            ]
        };
        let tags: Vec<(String, String)> = match kind.split_once(':') {
            Some(("stack", id)) if !id.is_empty() => {
                // A left-over stack of run ID (unexpired), for `--run-id ID` sweeps.
                let tags = tagged(id.to_string(), &future);
                let pairs: Vec<(&str, &str)> =
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                cloud
                    .aws
                    .plant_stack(&cloudtest_aws::stack_name(id), &pairs)
                    .map_err(|e| usage(format!("--plant `{kind}`: {}", e.message)))?;
                continue;
            }
            Some(("run", id)) if !id.is_empty() => tagged(id.to_string(), &future),
            Some(("kept", id)) if !id.is_empty() => {
                let mut t = tagged(id.to_string(), &future);
                t.push((KEEP_TAG.to_string(), KEEP_UNTIL_EXPIRY.to_string()));
                t
            }
            _ => match kind.as_str() {
                "tagged-expired" => tagged(format!("planted-{i}"), &past),
                "tagged-fresh" => tagged(format!("planted-{i}"), &future),
                "untagged" => vec![("owner".into(), "someone-else".into())],
                other => {
                    return Err(usage(format!(
                        "--plant `{other}`: expected tagged-expired, tagged-fresh, untagged, run:ID, kept:ID or stack:ID"
                    )))
                }
            },
        };
        let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cloud.aws.plant_volume(&pairs);
        cloud
            .arm
            .plant_resource_group(&format!("planted-{i}"), tags.clone());
    }
    Ok(())
}
