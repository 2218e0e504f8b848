//! Why a run stops early, and the shutdown handle passed into the engine as a value.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Ordered by severity; the recorded reason only ever upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// SIGINT / Ctrl-C.
    Interrupt,
    /// SIGTERM, which CI cancellation sends.
    Terminate,
}

impl CancelReason {
    pub fn signal_name(self) -> &'static str {
        match self {
            CancelReason::Interrupt => "SIGINT",
            CancelReason::Terminate => "SIGTERM",
        }
    }

    /// The conventional exit code, used after teardown has finished.
    pub fn exit_code(self) -> i32 {
        match self {
            CancelReason::Interrupt => 130,
            CancelReason::Terminate => 143,
        }
    }
}

/// A cloneable shutdown handle. The binary triggers it from signal handlers; tests trigger it
/// directly. Teardown is never cancelled through it.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation; returns `true` the first time.
    pub fn cancel(&self, reason: CancelReason) -> bool {
        let mut guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let first = guard.is_none();
        *guard = Some(match *guard {
            Some(prev) => prev.max(reason),
            None => reason,
        });
        drop(guard);
        self.token.cancel();
        first
    }

    pub fn reason(&self) -> Option<CancelReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when cancellation is requested.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_only_upgrades() {
        let s = Shutdown::new();
        assert!(s.cancel(CancelReason::Terminate));
        assert!(!s.cancel(CancelReason::Interrupt));
        assert_eq!(s.reason(), Some(CancelReason::Terminate));
        assert!(s.is_cancelled());
    }
}
