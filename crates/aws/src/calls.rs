//! Counts HTTP attempts (SDK retries included) that a lifecycle's clients send, so a run can
//! report its API cost. Installed as an SDK interceptor on every client the provider builds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_cloudformation::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_cloudformation::config::{ConfigBag, Intercept, RuntimeComponents};

/// A shared attempt counter; clones count into the same total.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<AtomicU32>);

impl CallCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts sent so far.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "cloudtest-call-counter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
