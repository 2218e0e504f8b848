//! What the writers need beyond results.json: the CI run link, spend against budget and
//! the price table's provenance. The CLI fills it; the writers only read it.

use chrono::{DateTime, Utc};

use crate::cost::PriceTable;
use crate::ledger::{Ledger, SpendHistory};

/// Environment variable holding a link to the CI run's artifacts.
pub const RUN_URL_ENV: &str = "CLOUDTEST_RUN_URL";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSettings {
    /// From [`RUN_URL_ENV`]; linked from every report when set.
    pub run_url: Option<String>,
    /// Month-to-date spend per provider after this run (empty for mock runs).
    pub spend: Vec<ProviderSpend>,
    /// `source (retrieved DATE)` of the prices used.
    pub price_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpend {
    pub provider: String,
    pub month_to_date_usd: f64,
    pub monthly_budget_usd: f64,
    /// Said next to the figure, e.g. that there was no spend history before this run.
    pub note: Option<String>,
}

impl ReportSettings {
    /// Provenance line for a price table.
    pub fn with_prices(mut self, table: &PriceTable) -> Self {
        self.price_source = Some(format!("{} (retrieved {})", table.source, table.retrieved));
        self
    }
}

/// Month-to-date spend for `providers`, read from the ledger after this run was recorded.
pub fn spend_summary(
    ledger: &Ledger,
    history_before_run: &SpendHistory,
    providers: &[&str],
    monthly_budget_usd: f64,
    now: DateTime<Utc>,
) -> Vec<ProviderSpend> {
    providers
        .iter()
        .map(|p| ProviderSpend {
            provider: p.to_string(),
            month_to_date_usd: ledger.month_to_date(p, now),
            monthly_budget_usd,
            note: matches!(history_before_run, SpendHistory::Missing { .. }).then(|| {
                "no spend history before this run: earlier spend this month is not counted"
                    .to_string()
            }),
        })
        .collect()
}
