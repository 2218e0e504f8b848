//! Turns `results.json` into what people read (JUnit, Markdown, a self-contained HTML page),
//! computes CLOUD-03 and costs, guards the monthly budget, and writes results back into the
//! gap document. Never calls a cloud and depends on no cloud SDK.

pub mod cost;
pub mod cross_cloud;
pub mod gap_doc;
pub mod human;
pub mod ledger;
pub mod sample;
pub mod estimates;
pub mod gap_region;
pub mod junit;
pub mod markdown;
pub mod settings;
pub mod html;
