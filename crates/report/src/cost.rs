//! What a run cost: Σ resource-hours × price over instances, disks and public IPs, from an
//! embedded price table (source and date stated) that config can override.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudtest_core::config::PriceOverride;
use cloudtest_core::{Phase, RequirementResult, ResourceKind, ResourceRef, RunMode, RunResults};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Hours in a billing month, as both clouds count them for per-month prices.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// How long the budget guard assumes a lifecycle's resources live: the top of the gap
/// document's 15–30 minute estimate.
pub const PLANNED_LIFETIME: Duration = Duration::from_secs(30 * 60);

const EMBEDDED: &str = include_str!("price_table.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriceUnit {
    /// Per resource-hour (instances, public IPs, NAT gateways).
    #[serde(rename = "hour")]
    Hour,
    /// Per GB per month (disks); converted with [`HOURS_PER_MONTH`].
    #[serde(rename = "gb-month")]
    GbMonth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub provider: String,
    /// The [`ResourceRef::kind`] this prices.
    pub kind: ResourceKind,
    /// Instance type / VM size, disk type (`gp3`, `StandardSSD_LRS`) or IP SKU.
    pub sku: String,
    #[serde(default)]
    pub spot: bool,
    pub unit: PriceUnit,
    pub usd: f64,
}

/// The prices in force, with where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    pub source: String,
    /// When the prices were read (ISO date).
    pub retrieved: String,
    /// The region each provider's prices are for.
    #[serde(default)]
    pub regions: BTreeMap<String, String>,
    pub prices: Vec<Price>,
}

#[derive(Debug, Error)]
pub enum PriceTableError {
    #[error("price table {origin} is not valid JSON of the expected shape: {source} (hint: compare with crates/report/src/price_table.json)")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
}

impl PriceTable {
    /// The table compiled into the binary (`crates/report/src/price_table.json`).
    pub fn embedded() -> PriceTable {
        // The embedded table is part of the source, not input; a unit test parses it.
        Self::from_json(EMBEDDED, "embedded price_table.json")
            .expect("embedded price table is valid (checked by the cost tests)")
    }

    /// Reads a table written by [`PriceTable::to_json`] (e.g. by `cloudtest prices refresh`).
    pub fn from_json(text: &str, origin: &str) -> Result<PriceTable, PriceTableError> {
        serde_json::from_str(text).map_err(|source| PriceTableError::Parse {
            origin: origin.to_string(),
            source,
        })
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Applies `[[budget.prices]]`. `sku = "volume-gb-month"` sets every disk type's price
    /// per GB-month; `sku = "public_ip"` every public IP's hourly price; any other SKU
    /// replaces a matching entry (same provider, SKU and spot flag), in that entry's unit,
    /// or adds an hourly instance price.
    pub fn with_overrides(mut self, overrides: &[PriceOverride]) -> PriceTable {
        for o in overrides {
            let by_kind = match o.sku.as_str() {
                "volume-gb-month" => Some(ResourceKind::Volume),
                "public_ip" => Some(ResourceKind::PublicIp),
                _ => None,
            };
            let mut matched = false;
            for p in self.prices.iter_mut().filter(|p| p.provider == o.provider) {
                let hit = match &by_kind {
                    Some(kind) => &p.kind == kind,
                    None => p.sku == o.sku && p.spot == o.spot,
                };
                if hit {
                    p.usd = o.usd_per_hour;
                    matched = true;
                }
            }
            if !matched && by_kind.is_none() {
                self.prices.push(Price {
                    provider: o.provider.clone(),
                    kind: ResourceKind::Instance,
                    sku: o.sku.clone(),
                    spot: o.spot,
                    unit: PriceUnit::Hour,
                    usd: o.usd_per_hour,
                });
            }
        }
        if !overrides.is_empty() {
            self.source
                .push_str(" Overridden by [budget.prices] in config.");
        }
        self
    }

    /// Replaces every price of `provider` that `fresh` also has, keeping the rest.
    pub fn refresh(&mut self, fresh: &[Price], source: &str, retrieved: &str) {
        for f in fresh {
            match self.prices.iter_mut().find(|p| {
                p.provider == f.provider && p.kind == f.kind && p.sku == f.sku && p.spot == f.spot
            }) {
                Some(p) => p.usd = f.usd,
                None => self.prices.push(f.clone()),
            }
        }
        self.source = source.to_string();
        self.retrieved = retrieved.to_string();
    }

    fn lookup(&self, provider: &str, kind: &ResourceKind, sku: &str, spot: bool) -> Option<&Price> {
        let exact = |want_spot: bool| {
            self.prices.iter().find(|p| {
                p.provider == provider
                    && &p.kind == kind
                    && p.sku.eq_ignore_ascii_case(sku)
                    && p.spot == want_spot
            })
        };
        exact(spot)
            // No spot price known: the on-demand price is an upper bound.
            .or_else(|| if spot { exact(false) } else { None })
            // One price for every public IP / NAT gateway of a provider.
            .or_else(|| {
                matches!(kind, ResourceKind::PublicIp | ResourceKind::NatGateway)
                    .then(|| {
                        self.prices
                            .iter()
                            .find(|p| p.provider == provider && &p.kind == kind)
                    })
                    .flatten()
            })
    }
}

/// One priced resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    pub resource: String,
    pub kind: ResourceKind,
    pub sku: String,
    pub spot: bool,
    pub hours: f64,
    pub usd: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CostEstimate {
    pub usd: f64,
    pub lines: Vec<CostLine>,
    /// Billable resources the table has no price for, said so the total is not trusted blindly.
    pub unpriced: Vec<String>,
}

/// Kinds the clouds charge for while they exist; the rest (VPCs, security groups, NICs,
/// stacks, resource groups) are free.
fn billable(kind: &ResourceKind) -> bool {
    matches!(
        kind,
        ResourceKind::Instance
            | ResourceKind::Volume
            | ResourceKind::PublicIp
            | ResourceKind::NatGateway
    )
}

/// How long a lifecycle's resources existed: from the start of `create` to the end of
/// `teardown` (the phases run one after another).
pub fn resource_lifetime(req: &RequirementResult) -> Duration {
    let ms: u64 = req
        .phases
        .iter()
        .filter(|p| p.name != Phase::LeakCheck)
        .map(|p| p.duration_ms)
        .sum();
    Duration::from_millis(ms)
}

/// The cost of one lifecycle's resources over `lifetime`.
pub fn estimate(req: &RequirementResult, lifetime: Duration, table: &PriceTable) -> CostEstimate {
    estimate_resources(&req.provider, &req.facts.resources, lifetime, table)
}

/// The cost of `resources` on `provider` over `lifetime`: also the pre-run estimate, with
/// [`planned_resources`] and [`PLANNED_LIFETIME`].
pub fn estimate_resources(
    provider: &str,
    resources: &[ResourceRef],
    lifetime: Duration,
    table: &PriceTable,
) -> CostEstimate {
    let hours = lifetime.as_secs_f64() / 3_600.0;
    let mut out = CostEstimate::default();
    for r in resources.iter().filter(|r| billable(&r.kind)) {
        let sku = r.sku.clone().unwrap_or_default();
        let (sku_name, size_gb) = match sku.split_once(':') {
            Some((name, gb)) => (name.to_string(), gb.trim().parse::<f64>().ok()),
            None => (sku.clone(), None),
        };
        let usd = match table.lookup(provider, &r.kind, &sku_name, r.spot) {
            Some(p) => match (p.unit, size_gb) {
                (PriceUnit::Hour, _) => Some(p.usd * hours),
                (PriceUnit::GbMonth, Some(gb)) => Some(p.usd * gb * hours / HOURS_PER_MONTH),
                (PriceUnit::GbMonth, None) => None,
            },
            None => None,
        };
        match usd {
            Some(usd) => {
                out.usd += usd;
                out.lines.push(CostLine {
                    resource: r.id.clone(),
                    kind: r.kind.clone(),
                    sku,
                    spot: r.spot,
                    hours,
                    usd,
                });
            }
            None => {
                tracing::warn!(provider, kind = %r.kind, sku = %sku, "no price for resource; not counted");
                out.unpriced.push(format!(
                    "{provider} {} {}",
                    r.kind,
                    if sku.is_empty() { "(no SKU)" } else { &sku }
                ));
            }
        }
    }
    out
}

/// Fills `cost.estimated_usd` of every lifecycle: resource-hours × price in live mode,
/// `0` in mock mode (nothing was rented), where `cost.would_cost_usd` gets the same
/// resources priced as a live run would be.
pub fn apply_costs(run: &mut RunResults, table: &PriceTable) {
    let mode = run.mode;
    for req in &mut run.requirements {
        // Whole micro-dollars: exact enough, and stable through a JSON round trip.
        let priced = (estimate(req, resource_lifetime(req), table).usd * 1e6).round() / 1e6;
        match mode {
            RunMode::Mock => {
                req.cost.estimated_usd = 0.0;
                // Only where the cloud listed resources (not CLOUD-03, not a skip).
                req.cost.would_cost_usd = (!req.facts.resources.is_empty()).then_some(priced);
            }
            RunMode::Live => {
                req.cost.estimated_usd = priced;
                req.cost.would_cost_usd = None;
            }
        }
    }
}

/// What the templates deploy with their defaults (docs/dev/CONTRACTS.md): a server and one
/// client, their disks and one public IP. The budget guard prices this before a live run.
pub fn planned_resources(provider: &str, use_spot: bool) -> Vec<ResourceRef> {
    let r = |kind: ResourceKind, id: &str, sku: &str, spot: bool| ResourceRef {
        kind,
        cloud_type: String::new(),
        id: id.into(),
        sku: Some(sku.into()),
        spot,
    };
    match provider {
        "aws" => vec![
            r(ResourceKind::Instance, "server", "t3.medium", use_spot),
            r(ResourceKind::Instance, "client", "t3.micro", use_spot),
            r(ResourceKind::Volume, "server-disk", "gp3:20", false),
            r(ResourceKind::Volume, "client-disk", "gp3:8", false),
            r(ResourceKind::PublicIp, "server-ip", "public_ip", false),
        ],
        "azure" => vec![
            r(ResourceKind::Instance, "server", "Standard_B2s", use_spot),
            r(ResourceKind::Instance, "client", "Standard_B1s", use_spot),
            r(
                ResourceKind::Volume,
                "server-disk",
                "StandardSSD_LRS:30",
                false,
            ),
            r(
                ResourceKind::Volume,
                "client-disk",
                "StandardSSD_LRS:30",
                false,
            ),
            // templates-arm/velociraptor.json gives the client a public IP too.
            r(ResourceKind::PublicIp, "server-ip", "Standard", false),
            r(ResourceKind::PublicIp, "client-ip", "Standard", false),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use cloudtest_core::RequirementId;

    #[test]
    fn embedded_table_parses_and_states_source_and_date() {
        let t = PriceTable::embedded();
        assert!(t.source.contains("AWS") && t.source.contains("Azure"));
        assert_eq!(t.retrieved.len(), 10);
        assert_eq!(t.regions.get("aws").map(String::as_str), Some("us-east-1"));
        assert_eq!(t.regions.get("azure").map(String::as_str), Some("eastus"));
        assert!(t.prices.iter().any(|p| p.spot && p.provider == "aws"));
        assert!(t.prices.iter().any(|p| p.spot && p.provider == "azure"));
        let back = PriceTable::from_json(&t.to_json(), "round trip").expect("round trip");
        assert_eq!(back, t);
    }

    #[test]
    fn cost_is_resource_hours_times_price() {
        let t = PriceTable::embedded();
        let res = vec![
            ResourceRef {
                kind: ResourceKind::Instance,
                cloud_type: String::new(),
                id: "i-1".into(),
                sku: Some("t3.medium".into()),
                spot: false,
            },
            ResourceRef {
                kind: ResourceKind::Volume,
                cloud_type: String::new(),
                id: "v-1".into(),
                sku: Some("gp3:73".into()),
                spot: false,
            },
            ResourceRef {
                kind: ResourceKind::PublicIp,
                cloud_type: String::new(),
                id: "ip".into(),
                sku: None,
                spot: false,
            },
            ResourceRef {
                kind: ResourceKind::SecurityGroup,
                cloud_type: String::new(),
                id: "sg".into(),
                sku: None,
                spot: false,
            },
        ];
        let e = estimate_resources("aws", &res, Duration::from_secs(7_200), &t);
        // 2 h: 0.0416*2 + 0.08*73*2/730 + 0.005*2
        let want = 0.0832 + 0.016 + 0.01;
        assert!((e.usd - want).abs() < 1e-9, "{} vs {want}", e.usd);
        assert_eq!(e.lines.len(), 3);
        assert!(e.unpriced.is_empty());
    }

    #[test]
    fn spot_is_cheaper_and_unknown_skus_are_named() {
        let t = PriceTable::embedded();
        let od = estimate_resources(
            "aws",
            &planned_resources("aws", false),
            PLANNED_LIFETIME,
            &t,
        );
        let spot = estimate_resources("aws", &planned_resources("aws", true), PLANNED_LIFETIME, &t);
        assert!(spot.usd < od.usd);
        let odd = vec![ResourceRef {
            kind: ResourceKind::Instance,
            cloud_type: String::new(),
            id: "i".into(),
            sku: Some("x9.huge".into()),
            spot: false,
        }];
        let e = estimate_resources("aws", &odd, PLANNED_LIFETIME, &t);
        assert_eq!(e.usd, 0.0);
        assert_eq!(e.unpriced, vec!["aws instance x9.huge".to_string()]);
    }

    #[test]
    fn planned_runs_fit_the_gap_documents_estimate() {
        let t = PriceTable::embedded();
        for provider in ["aws", "azure"] {
            let e = estimate_resources(
                provider,
                &planned_resources(provider, false),
                PLANNED_LIFETIME,
                &t,
            );
            assert!(e.unpriced.is_empty(), "{provider}: {:?}", e.unpriced);
            assert!(e.usd > 0.0 && e.usd <= 0.20, "{provider}: {}", e.usd);
        }
    }

    #[test]
    fn overrides_replace_prices() {
        let t = PriceTable::embedded().with_overrides(&[
            PriceOverride {
                provider: "aws".into(),
                sku: "t3.medium".into(),
                usd_per_hour: 1.0,
                spot: false,
            },
            PriceOverride {
                provider: "aws".into(),
                sku: "volume-gb-month".into(),
                usd_per_hour: 0.0,
                spot: false,
            },
            PriceOverride {
                provider: "aws".into(),
                sku: "public_ip".into(),
                usd_per_hour: 0.0,
                spot: false,
            },
            PriceOverride {
                provider: "aws".into(),
                sku: "m7i.large".into(),
                usd_per_hour: 0.5,
                spot: false,
            },
        ]);
        let res = planned_resources("aws", false);
        let e = estimate_resources("aws", &res[..1], Duration::from_secs(3_600), &t);
        assert!((e.usd - 1.0).abs() < 1e-9);
        let e = estimate_resources("aws", &res[2..], Duration::from_secs(3_600), &t);
        assert_eq!(e.usd, 0.0);
        assert!(t.source.contains("Overridden"));
        assert!(t.prices.iter().any(|p| p.sku == "m7i.large"));
    }

    #[test]
    fn mock_runs_cost_nothing_and_live_runs_are_priced() {
        let t = PriceTable::embedded();
        let mut live = sample::two_provider_run();
        apply_costs(&mut live, &t);
        for r in &live.requirements {
            assert!(r.cost.estimated_usd > 0.0, "{}", r.id);
        }
        let aws = live
            .requirements
            .iter()
            .find(|r| r.id == RequirementId::Cloud01)
            .expect("aws");
        assert_eq!(resource_lifetime(aws), Duration::from_millis(880_000));
        let mut mock = sample::two_provider_run();
        mock.mode = RunMode::Mock;
        apply_costs(&mut mock, &t);
        assert!(mock
            .requirements
            .iter()
            .all(|r| r.cost.estimated_usd == 0.0));
        // ...and says what the same resources would have cost live, priced the same way.
        for (m, l) in mock.requirements.iter().zip(&live.requirements) {
            assert_eq!(
                m.cost.would_cost_usd,
                Some(l.cost.estimated_usd),
                "{}",
                m.id
            );
        }
        assert!(live
            .requirements
            .iter()
            .all(|r| r.cost.would_cost_usd.is_none()));
    }
}
