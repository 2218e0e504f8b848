//! `cloudtest prices refresh`: current on-demand and spot prices for what the templates
//! deploy, from the Azure Retail Prices API (public) and the AWS Price List API plus EC2 spot
//! price history (AWS credentials, default chain). Writes a price table that
//! `[budget] price_file` points at.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cloudtest_core::ExitCode;
use cloudtest_report::cost::{Price, PriceUnit};
use cloudtest_report::{price_feed, PriceTable};

use crate::connect;
use crate::error::usage;

/// The sizes the templates deploy by default (CONTRACTS.md).
const AWS_INSTANCE_TYPES: [&str; 2] = ["t3.medium", "t3.micro"];
const AZURE_REGION: &str = "eastus";
const AWS_REGION: &str = "us-east-1";
/// Azure Retail Prices pages are 1,000 items; the filter keeps this well under the bound.
const MAX_AZURE_PAGES: usize = 200;

pub async fn refresh(out: PathBuf) -> Result<ExitCode> {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut table = PriceTable::embedded();

    let azure = azure_prices()
        .await
        .context("reading the Azure Retail Prices API")?;
    println!("azure: {} prices for {AZURE_REGION}", azure.len());
    table.refresh(&azure, "Azure Retail Prices API", &today);

    let aws = aws_prices()
        .await
        .context("reading the AWS Price List API")?;
    println!("aws: {} prices for {AWS_REGION}", aws.len());
    table.refresh(
        &aws,
        "AWS Price List API and EC2 spot price history; Azure Retail Prices API",
        &today,
    );

    std::fs::write(&out, table.to_json())
        .map_err(|e| usage(format!("--out {}: {e}", out.display())))?;
    println!("wrote {}; point `[budget] price_file` at it", out.display());
    Ok(ExitCode::Success)
}

async fn azure_prices() -> Result<Vec<Price>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut next = Some(price_feed::azure_query_url(AZURE_REGION));
    let mut prices = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > MAX_AZURE_PAGES {
            anyhow::bail!(
                "Azure Retail Prices returned more than {MAX_AZURE_PAGES} pages; stopping"
            );
        }
        let text = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let page = price_feed::parse_azure_retail(&text)?;
        prices.extend(page.prices);
        next = page.next_page;
    }
    Ok(prices)
}

async fn aws_prices() -> Result<Vec<Price>> {
    // The Price List API is served from us-east-1 whatever region is priced.
    let sdk = connect::aws_sdk("us-east-1", None, None).await;
    let pricing = aws_sdk_pricing::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let mut out = Vec::new();
    for instance_type in AWS_INSTANCE_TYPES {
        let filter = |field: &str, value: &str| {
            aws_sdk_pricing::types::Filter::builder()
                .r#type(aws_sdk_pricing::types::FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
        };
        let filters = [
            filter("instanceType", instance_type),
            filter("regionCode", AWS_REGION),
            filter("operatingSystem", "Linux"),
            filter("tenancy", "Shared"),
            filter("preInstalledSw", "NA"),
            filter("capacitystatus", "Used"),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let resp = pricing
            .get_products()
            .service_code("AmazonEC2")
            .set_filters(Some(filters))
            .max_results(10)
            .send()
            .await?;
        out.extend(price_feed::parse_aws_price_list(resp.price_list())?);

        let spot = ec2
            .describe_spot_price_history()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_sdk_ec2::primitives::DateTime::from(
                std::time::SystemTime::now(),
            ))
            .send()
            .await?;
        let latest: Vec<f64> = spot
            .spot_price_history()
            .iter()
            .filter_map(|p| p.spot_price().and_then(|s| s.parse::<f64>().ok()))
            .collect();
        if let Some(max) = latest.iter().cloned().reduce(f64::max) {
            out.push(Price {
                provider: "aws".into(),
                kind: cloudtest_core::ResourceKind::Instance,
                sku: instance_type.into(),
                spot: true,
                unit: PriceUnit::Hour,
                usd: max,
            });
        }
    }
    Ok(out)
}
