//! `[deadlines]`: one humantime duration per phase ("20m", "120s").

use std::time::Duration;

use serde::Deserialize;

/// Overrides the health deadline, in whole seconds (the gap document's recommendation 1.1).
pub const HEALTH_TIMEOUT_ENV: &str = "CLOUDTEST_HEALTH_TIMEOUT";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlinesConfig {
    #[serde(with = "humantime_serde")]
    pub create: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub wait_ready: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub health: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub enrollment: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub teardown: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub leak_check: Option<Duration>,
}
