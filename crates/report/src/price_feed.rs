//! Reads the two clouds' public price feeds into [`Price`] rows for `cloudtest prices
//! refresh`: the AWS Price List (`products`/`terms` offer files, or the `PriceList` items of
//! `pricing:GetProducts`) and the Azure Retail Prices API (`Items` pages). Pure functions:
//! the CLI does the HTTP and feeds the bodies here.

use serde_json::Value;
use thiserror::Error;

use cloudtest_core::ResourceKind;

use crate::cost::{Price, PriceUnit};

/// The Azure Retail Prices API (no authentication).
pub const AZURE_RETAIL_PRICES_URL: &str = "https://prices.azure.com/api/retail/prices";

#[derive(Debug, Error)]
pub enum PriceFeedError {
    #[error("{feed} response is not JSON: {source}")]
    Json {
        feed: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{feed} response has no `{field}`; is this the right endpoint?")]
    Shape {
        feed: &'static str,
        field: &'static str,
    },
}

/// The Azure query for the VM sizes, disks and IPs cloudtest deploys in `region`; follow
/// [`AzurePage::next_page`] until it is `None`.
pub fn azure_query_url(region: &str) -> String {
    let filter = format!(
        "armRegionName eq '{region}' and priceType eq 'Consumption' and (serviceName eq 'Virtual Machines' or serviceName eq 'Storage' or serviceName eq 'Virtual Network')"
    );
    let encoded: String = filter
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_string(),
            '\'' => "%27".to_string(),
            '(' => "%28".to_string(),
            ')' => "%29".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("{AZURE_RETAIL_PRICES_URL}?$filter={encoded}")
}

/// One page of the Azure Retail Prices API.
#[derive(Debug, Clone, PartialEq)]
pub struct AzurePage {
    pub prices: Vec<Price>,
    pub next_page: Option<String>,
}

/// Managed-disk tiers priced per GB from their size (cloudtest's disks are 32 GiB or less).
const AZURE_DISK_TIERS: [(&str, &str, f64); 3] = [
    ("Standard HDD Managed Disks", "S4", 32.0),
    ("Standard SSD Managed Disks", "E4", 32.0),
    ("Premium SSD Managed Disks", "P4", 32.0),
];

fn azure_disk_sku(product: &str) -> Option<&'static str> {
    match product {
        "Standard HDD Managed Disks" => Some("Standard_LRS"),
        "Standard SSD Managed Disks" => Some("StandardSSD_LRS"),
        "Premium SSD Managed Disks" => Some("Premium_LRS"),
        _ => None,
    }
}

/// Parses one page: Linux pay-as-you-go and Spot VM hours, LRS managed disks (per GB-month
/// from the 32 GiB tier) and Standard/Basic public IPv4 hours. Other items are ignored.
pub fn parse_azure_retail(json: &str) -> Result<AzurePage, PriceFeedError> {
    const FEED: &str = "Azure Retail Prices";
    let v: Value =
        serde_json::from_str(json).map_err(|source| PriceFeedError::Json { feed: FEED, source })?;
    let items = v
        .get("Items")
        .and_then(Value::as_array)
        .ok_or(PriceFeedError::Shape {
            feed: FEED,
            field: "Items",
        })?;
    let s = |item: &Value, key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut prices = Vec::new();
    for item in items {
        let Some(usd) = item.get("retailPrice").and_then(Value::as_f64) else {
            continue;
        };
        if s(item, "currencyCode") != "USD" || s(item, "type") != "Consumption" {
            continue;
        }
        let (service, product, sku_name, meter, unit) = (
            s(item, "serviceName"),
            s(item, "productName"),
            s(item, "skuName"),
            s(item, "meterName"),
            s(item, "unitOfMeasure"),
        );
        let price =
            |kind: ResourceKind, sku: String, spot: bool, unit: PriceUnit, usd: f64| Price {
                provider: "azure".into(),
                kind,
                sku,
                spot,
                unit,
                usd,
            };
        if service == "Virtual Machines" {
            let arm_sku = s(item, "armSkuName");
            if product.contains("Windows")
                || sku_name.contains("Low Priority")
                || arm_sku.is_empty()
                || unit != "1 Hour"
            {
                continue;
            }
            let spot = sku_name.ends_with(" Spot");
            prices.push(price(
                ResourceKind::Instance,
                arm_sku,
                spot,
                PriceUnit::Hour,
                usd,
            ));
        } else if service == "Storage" {
            let Some(disk_sku) = azure_disk_sku(&product) else {
                continue;
            };
            let Some((_, tier, gb)) = AZURE_DISK_TIERS.iter().find(|(p, _, _)| *p == product)
            else {
                continue;
            };
            if sku_name == format!("{tier} LRS") && meter.ends_with("Disk") && unit == "1/Month" {
                prices.push(price(
                    ResourceKind::Volume,
                    disk_sku.into(),
                    false,
                    PriceUnit::GbMonth,
                    usd / gb,
                ));
            }
        } else if service == "Virtual Network" && product == "IP Addresses" && unit == "1 Hour" {
            for ip_sku in ["Standard", "Basic"] {
                if meter == format!("{ip_sku} IPv4 Static Public IP") {
                    prices.push(price(
                        ResourceKind::PublicIp,
                        ip_sku.into(),
                        false,
                        PriceUnit::Hour,
                        usd,
                    ));
                }
            }
        }
    }
    let next_page = v
        .get("NextPageLink")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(AzurePage { prices, next_page })
}

/// Parses an AWS offer file (`{"products": {...}, "terms": {"OnDemand": {...}}}`).
pub fn parse_aws_offer(json: &str) -> Result<Vec<Price>, PriceFeedError> {
    const FEED: &str = "AWS Price List offer file";
    let v: Value =
        serde_json::from_str(json).map_err(|source| PriceFeedError::Json { feed: FEED, source })?;
    let products = v
        .get("products")
        .and_then(Value::as_object)
        .ok_or(PriceFeedError::Shape {
            feed: FEED,
            field: "products",
        })?;
    let on_demand = v
        .pointer("/terms/OnDemand")
        .and_then(Value::as_object)
        .ok_or(PriceFeedError::Shape {
            feed: FEED,
            field: "terms.OnDemand",
        })?;
    Ok(products
        .iter()
        .filter_map(|(sku, product)| aws_price(product, on_demand.get(sku)?))
        .collect())
}

/// Parses the `PriceList` strings of `pricing:GetProducts` (each `{"product", "terms"}`).
pub fn parse_aws_price_list(items: &[String]) -> Result<Vec<Price>, PriceFeedError> {
    const FEED: &str = "AWS GetProducts PriceList";
    let mut out = Vec::new();
    for item in items {
        let v: Value = serde_json::from_str(item)
            .map_err(|source| PriceFeedError::Json { feed: FEED, source })?;
        let product = v.get("product").ok_or(PriceFeedError::Shape {
            feed: FEED,
            field: "product",
        })?;
        let terms = v.pointer("/terms/OnDemand").ok_or(PriceFeedError::Shape {
            feed: FEED,
            field: "terms.OnDemand",
        })?;
        out.extend(aws_price(product, terms));
    }
    Ok(out)
}

/// One product with its on-demand terms (`{termCode: {priceDimensions: {..}}}`), when it is
/// something cloudtest rents: shared-tenancy Linux instances, EBS volume GB-months, or
/// in-use public IPv4 hours.
fn aws_price(product: &Value, terms: &Value) -> Option<Price> {
    let attr = |key: &str| {
        product
            .pointer(&format!("/attributes/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let family = product
        .get("productFamily")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (kind, sku, want_unit, unit) = match family {
        "Compute Instance"
            if attr("operatingSystem") == "Linux"
                && attr("tenancy") == "Shared"
                && attr("preInstalledSw") == "NA"
                && matches!(attr("capacitystatus"), "Used" | "") =>
        {
            (
                ResourceKind::Instance,
                attr("instanceType").to_string(),
                "Hrs",
                PriceUnit::Hour,
            )
        }
        "Storage" if !attr("volumeApiName").is_empty() => (
            ResourceKind::Volume,
            attr("volumeApiName").to_string(),
            "GB-Mo",
            PriceUnit::GbMonth,
        ),
        "IP Address"
            if attr("group").contains("PublicIPv4")
                && attr("usagetype").contains("InUseAddress") =>
        {
            (
                ResourceKind::PublicIp,
                "public_ip".to_string(),
                "Hrs",
                PriceUnit::Hour,
            )
        }
        _ => return None,
    };
    if sku.is_empty() {
        return None;
    }
    let usd = terms
        .as_object()?
        .values()
        .filter_map(|term| term.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter(|d| d.get("unit").and_then(Value::as_str) == Some(want_unit))
        .filter_map(|d| {
            d.pointer("/pricePerUnit/USD")?
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        // Tiered dimensions (free first hours of some IPs) list 0 first: bill the paid tier.
        .fold(None, |acc: Option<f64>, p| {
            Some(acc.map_or(p, |a| a.max(p)))
        })?;
    Some(Price {
        provider: "aws".into(),
        kind,
        sku,
        spot: false,
        unit,
        usd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_OFFER: &str = r#"{
      "formatVersion": "v1.0", "offerCode": "AmazonEC2",
      "products": {
        "AAA": {"sku": "AAA", "productFamily": "Compute Instance", "attributes": {"regionCode": "us-east-1", "instanceType": "t3.medium", "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}},
        "WIN": {"sku": "WIN", "productFamily": "Compute Instance", "attributes": {"instanceType": "t3.medium", "operatingSystem": "Windows", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}},
        "BBB": {"sku": "BBB", "productFamily": "Storage", "attributes": {"volumeApiName": "gp3"}},
        "CCC": {"sku": "CCC", "productFamily": "IP Address", "attributes": {"group": "VPCPublicIPv4Address", "usagetype": "USE1-PublicIPv4:InUseAddress"}}
      },
      "terms": {"OnDemand": {
        "AAA": {"AAA.JRTCKXETXF": {"priceDimensions": {"AAA.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0416000000"}}}}},
        "WIN": {"WIN.JRTCKXETXF": {"priceDimensions": {"WIN.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0600000000"}}}}},
        "BBB": {"BBB.JRTCKXETXF": {"priceDimensions": {"BBB.JRTCKXETXF.6YS6EN2CT7": {"unit": "GB-Mo", "pricePerUnit": {"USD": "0.0800000000"}}}}},
        "CCC": {"CCC.JRTCKXETXF": {"priceDimensions": {"CCC.1": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0000000000"}}, "CCC.2": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0050000000"}}}}}
      }}
    }"#;

    #[test]
    fn aws_offer_file_yields_linux_instances_volumes_and_ips() {
        let prices = parse_aws_offer(AWS_OFFER).expect("parses");
        let find = |kind: ResourceKind| {
            prices
                .iter()
                .find(|p| p.kind == kind)
                .unwrap_or_else(|| panic!("{kind}"))
        };
        assert_eq!(prices.len(), 3, "{prices:?}");
        assert_eq!(find(ResourceKind::Instance).sku, "t3.medium");
        assert!((find(ResourceKind::Instance).usd - 0.0416).abs() < 1e-12);
        assert_eq!(find(ResourceKind::Volume).unit, PriceUnit::GbMonth);
        assert!((find(ResourceKind::PublicIp).usd - 0.005).abs() < 1e-12);
    }

    #[test]
    fn aws_get_products_items_parse_the_same_way() {
        let item = r#"{"product": {"productFamily": "Compute Instance", "attributes": {"instanceType": "t3.micro", "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}},
          "serviceCode": "AmazonEC2",
          "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {"X.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.0104000000"}}}}}}}"#;
        let prices = parse_aws_price_list(&[item.to_string()]).expect("parses");
        assert_eq!(prices.len(), 1);
        assert_eq!(prices[0].sku, "t3.micro");
        assert!(parse_aws_price_list(&["{}".to_string()]).is_err());
        assert!(parse_aws_offer("{\"terms\": {}}")
            .unwrap_err()
            .to_string()
            .contains("products"));
    }

    #[test]
    fn azure_page_yields_vms_spot_disks_and_ips() {
        let page = r#"{"BillingCurrency": "USD", "CustomerEntityId": "Default", "Items": [
          {"currencyCode": "USD", "retailPrice": 0.0416, "armRegionName": "eastus", "meterName": "B2s", "productName": "Virtual Machines BS Series", "skuName": "B2s", "serviceName": "Virtual Machines", "armSkuName": "Standard_B2s", "type": "Consumption", "unitOfMeasure": "1 Hour"},
          {"currencyCode": "USD", "retailPrice": 0.0600, "armRegionName": "eastus", "meterName": "B2s", "productName": "Virtual Machines BS Series Windows", "skuName": "B2s", "serviceName": "Virtual Machines", "armSkuName": "Standard_B2s", "type": "Consumption", "unitOfMeasure": "1 Hour"},
          {"currencyCode": "USD", "retailPrice": 0.0172, "armRegionName": "eastus", "meterName": "D2as v5 Spot", "productName": "Virtual Machines Dasv5 Series", "skuName": "D2as v5 Spot", "serviceName": "Virtual Machines", "armSkuName": "Standard_D2as_v5", "type": "Consumption", "unitOfMeasure": "1 Hour"},
          {"currencyCode": "USD", "retailPrice": 0.0300, "armRegionName": "eastus", "meterName": "B2s", "productName": "Virtual Machines BS Series", "skuName": "B2s", "serviceName": "Virtual Machines", "armSkuName": "Standard_B2s", "type": "Reservation", "unitOfMeasure": "1 Hour"},
          {"currencyCode": "USD", "retailPrice": 2.4, "armRegionName": "eastus", "meterName": "E4 LRS Disk", "productName": "Standard SSD Managed Disks", "skuName": "E4 LRS", "serviceName": "Storage", "type": "Consumption", "unitOfMeasure": "1/Month"},
          {"currencyCode": "USD", "retailPrice": 0.005, "armRegionName": "eastus", "meterName": "Standard IPv4 Static Public IP", "productName": "IP Addresses", "skuName": "Standard", "serviceName": "Virtual Network", "type": "Consumption", "unitOfMeasure": "1 Hour"}
        ], "NextPageLink": "https://prices.azure.com/api/retail/prices?$skip=100", "Count": 6}"#;
        let page = parse_azure_retail(page).expect("parses");
        assert_eq!(
            page.next_page.as_deref(),
            Some("https://prices.azure.com/api/retail/prices?$skip=100")
        );
        assert_eq!(page.prices.len(), 4, "{:?}", page.prices);
        let b2s: Vec<_> = page
            .prices
            .iter()
            .filter(|p| p.sku == "Standard_B2s")
            .collect();
        assert_eq!(b2s.len(), 1);
        assert!((b2s[0].usd - 0.0416).abs() < 1e-12);
        assert!(page
            .prices
            .iter()
            .any(|p| p.spot && p.sku == "Standard_D2as_v5"));
        let disk = page
            .prices
            .iter()
            .find(|p| p.kind == ResourceKind::Volume)
            .expect("disk");
        assert_eq!(disk.sku, "StandardSSD_LRS");
        assert!((disk.usd - 0.075).abs() < 1e-12);
        assert!(page
            .prices
            .iter()
            .any(|p| p.kind == ResourceKind::PublicIp && p.sku == "Standard"));
        let last = parse_azure_retail(r#"{"Items": [], "NextPageLink": null}"#).expect("parses");
        assert_eq!(last.next_page, None);
        assert!(parse_azure_retail("[]").is_err());
    }

    #[test]
    fn azure_query_is_encoded() {
        let url = azure_query_url("eastus");
        assert!(url.starts_with(AZURE_RETAIL_PRICES_URL));
        assert!(url.contains("armRegionName%20eq%20%27eastus%27"));
        assert!(!url.contains(' '));
    }
}
