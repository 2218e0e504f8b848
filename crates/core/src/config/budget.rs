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
    /// A price table written by `cloudtest prices refresh`, used instead of the embedded one.
    pub price_file: Option<PathBuf>,
    /// Prices that replace entries of the table in force.
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
