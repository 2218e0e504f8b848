//! Turns `results.json` into what people read (JUnit, Markdown, a self-contained HTML page),
//! computes CLOUD-03 and costs, guards the monthly budget, and writes results back into the
//! gap document. Never calls a cloud and depends on no cloud SDK.

pub mod cost;
pub mod cross_cloud;
pub mod estimates;
pub mod gap_doc;
pub mod gap_region;
pub mod html;
pub mod human;
pub mod junit;
pub mod ledger;
pub mod markdown;
pub mod merge;
pub mod outputs;
pub mod price_feed;
pub mod sample;
pub mod settings;

pub use cost::{PriceTable, PriceTableError};
pub use gap_doc::{GapDocError, MarkerError, BEGIN_MARKER, END_MARKER};
pub use ledger::{BudgetCheck, BudgetRefusal, Ledger, LedgerError, NoSpendHistory, SpendHistory};
pub use merge::MergeError;
pub use outputs::{write_all, ReportError, WrittenFiles};
pub use settings::{ProviderSpend, ReportSettings, RUN_URL_ENV};
