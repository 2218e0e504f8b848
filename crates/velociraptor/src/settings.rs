//! How the probes poll: injected, so tests run on milliseconds and live runs on seconds.

use std::time::Duration;

use cloudtest_core::Backoff;

/// Poll cadence and limits shared by every probe. Deadlines come from the phase
/// ([`cloudtest_core::PhaseContext::deadline`]), not from here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSettings {
    /// Wait between polls of `/healthz` and `SearchClients`.
    pub poll: Backoff,
    /// Limit for one HTTP request (connect included).
    pub request_timeout: Duration,
    /// A client counts as enrolled only if it checked in this recently.
    pub fresh_within: Duration,
}

impl ProbeSettings {
    /// Ten minutes: a live client checks in far more often.
    pub const FRESH_WITHIN: Duration = Duration::from_secs(10 * 60);
}

impl Default for ProbeSettings {
    /// Live servers: polls from 1 s up to 10 s, 10 s per request.
    fn default() -> Self {
        Self {
            poll: Backoff::new(Duration::from_secs(1), Duration::from_secs(10)),
            request_timeout: Duration::from_secs(10),
            fresh_within: Self::FRESH_WITHIN,
        }
    }
}
