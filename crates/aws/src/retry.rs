//! Riding out a short burst of transient failures where asking again is safe: reads of
//! state, inside poll loops and out. The SDK retries each call already; this covers what it
//! does not (an answer it could not parse) and a burst longer than its attempts, while a
//! failure that persists still ends the phase with its own message.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use cloudtest_core::{Backoff, PollStep};

use crate::errors::AwsError;

/// Consecutive transient failures of one read tolerated before its error is reported.
pub const TRANSIENT_TOLERANCE: u32 = 3;

/// Calls `read` until it succeeds, fails with a non-transient error, or has failed
/// transiently [`TRANSIENT_TOLERANCE`] times in a row, waiting `backoff` between attempts.
pub async fn read_again<T, F, Fut>(backoff: Backoff, mut read: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut failures = 0;
    loop {
        match read().await {
            Err(e) if e.is_transient() && failures + 1 < TRANSIENT_TOLERANCE => {
                tracing::warn!("{e}; asking again");
                tokio::time::sleep(backoff.delay(failures)).await;
                failures += 1;
            }
            other => return other,
        }
    }
}

/// Consecutive transient failures inside a poll loop (shared by reference with the
/// loop's check, hence atomic).
#[derive(Debug, Default)]
pub struct Strikes(AtomicU32);

impl Strikes {
    /// A poll read state successfully: the count starts over.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The step for a failed read: "not yet" for a transient error while under
    /// [`TRANSIENT_TOLERANCE`] in a row, else `fail(e)`.
    pub fn step<T, E>(&self, e: AwsError, fail: impl FnOnce(AwsError) -> E) -> PollStep<T, E> {
        if e.is_transient() && self.0.fetch_add(1, Ordering::Relaxed) + 1 < TRANSIENT_TOLERANCE {
            PollStep::Pending(format!("{e} (transient; asking again)"))
        } else {
            PollStep::Fail(fail(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transient() -> AwsError {
        AwsError::Other {
            operation: "DescribeStacks",
            target: "s".into(),
            detail: "error parsing XML".into(),
        }
    }

    fn permanent() -> AwsError {
        AwsError::MissingField {
            operation: "DescribeStacks",
            target: "s".into(),
            field: "StackId",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reads_ride_out_a_short_burst_but_not_a_persistent_failure() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        let mut calls = 0;
        let r = read_again(backoff, || {
            calls += 1;
            let n = calls;
            async move {
                if n < TRANSIENT_TOLERANCE {
                    Err(transient())
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(TRANSIENT_TOLERANCE));

        let mut calls = 0;
        let r: Result<(), AwsError> = read_again(backoff, || {
            calls += 1;
            async { Err(transient()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, TRANSIENT_TOLERANCE);

        let mut calls = 0;
        let r: Result<(), AwsError> = read_again(backoff, || {
            calls += 1;
            async { Err(permanent()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1, "a permanent error is not asked again");
    }

    #[test]
    fn strikes_count_in_a_row_and_start_over() {
        let s = Strikes::default();
        for _ in 0..TRANSIENT_TOLERANCE - 1 {
            assert!(matches!(
                s.step::<(), _>(transient(), |e| e),
                PollStep::Pending(_)
            ));
        }
        assert!(matches!(
            s.step::<(), _>(transient(), |e| e),
            PollStep::Fail(_)
        ));
        s.clear();
        assert!(matches!(
            s.step::<(), _>(transient(), |e| e),
            PollStep::Pending(_)
        ));
        assert!(matches!(
            s.step::<(), _>(permanent(), |e| e),
            PollStep::Fail(_)
        ));
    }
}
