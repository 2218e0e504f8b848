//! `[budget]`: the monthly cap, the ledger file and price overrides.

use std::path::PathBuf;

use serde::Deserialize;

pub const DEFAULT_MONTHLY_BUDGET_USD: f64 = 50.0;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Monthly budget per provider in US dollars (default 50, as the gap document plans).
    pub monthly_usd: Option<f64>,
    /// JSON-lines ledger of live-run costs; CI restores and saves it between runs.
    pub ledger: Option<PathBuf>,
    /// Prices that replace the embedded table.
    pub prices: Vec<PriceOverride>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    /// `aws` or `azure`.
    pub provider: String,
    /// Instance type / VM size / `public_ip` / `volume-gb-month`.
    pub sku: String,
    pub usd_per_hour: f64,
    #[serde(default)]
    pub spot: bool,
}
