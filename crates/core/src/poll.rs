//! The one shared poll helper: capped exponential backoff with jitter, bounded by a
//! deadline, timed on tokio's clock so paused-time tests run instantly.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use thiserror::Error;

use tokio::time::Instant;

/// Capped exponential backoff with full jitter on the upper half of each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    /// Fraction of each delay that is randomised (0 = none, 0.5 = delay in [d/2, d]).
    pub jitter: f64,
}

impl Backoff {
    /// Cloud control-plane polling: ~2 s, doubling, capped at 15 s.
    pub const CLOUD: Backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(15),
        factor: 2.0,
        jitter: 0.3,
    };

    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            factor: 2.0,
            jitter: 0.3,
        }
    }

    /// Scales every delay (mock mode shrinks the cloud backoff to the emulators' speed).
    pub fn scaled(self, by: f64) -> Self {
        Self {
            initial: self.initial.mul_f64(by),
            max: self.max.mul_f64(by),
            ..self
        }
    }

    /// The delay before attempt `n` (0-based), without jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        let mult = self.factor.powi(n.min(30) as i32);
        self.initial.mul_f64(mult).min(self.max)
    }

    /// The delay before attempt `n`, jittered.
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.base_delay(n);
        if self.jitter <= 0.0 {
            return base;
        }
        let j = self.jitter.clamp(0.0, 1.0);
        let low = base.mul_f64(1.0 - j);
        let span = base.saturating_sub(low);
        if span.is_zero() {
            return base;
        }
        let extra = rand::thread_rng().gen_range(0..=span.as_micros() as u64);
        low + Duration::from_micros(extra)
    }
}

/// What a poll that ran out of time saw: the numbers every timeout message reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    /// Checks made, the last look at the deadline included.
    pub attempts: u32,
    /// Time from the first check to giving up (tokio's clock).
    pub waited: Duration,
    /// The last observation, for the message.
    pub last: Option<String>,
}

impl Overdue {
    /// The last observation, or `default` when nothing was seen.
    pub fn last_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.last.as_deref().unwrap_or(default)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PollError<E> {
    /// The deadline passed.
    #[error("deadline reached after {} attempts", .0.attempts)]
    Deadline(Overdue),
    /// The check said to stop.
    #[error(transparent)]
    Failed(E),
}

impl<E> PollError<E> {
    /// The check's own error, or what `on_deadline` makes of the timeout: every caller
    /// reports a failed check as it is and words the timeout itself.
    pub fn into_error(self, on_deadline: impl FnOnce(Overdue) -> E) -> E {
        match self {
            PollError::Failed(e) => e,
            PollError::Deadline(overdue) => on_deadline(overdue),
        }
    }
}

/// What one poll observed.
pub enum PollStep<T, E> {
    Done(T),
    /// Not yet; the string describes what was seen (for the timeout message).
    Pending(String),
    Fail(E),
}

/// Calls `check` until it returns `Done` or `Fail`, or `deadline` passes. Checks at once,
/// then waits `backoff.delay(n)` (never past the deadline) between attempts. The returned
/// attempt count lets callers report API calls per lifecycle.
pub async fn poll_until<T, E, F, Fut>(
    deadline: Instant,
    backoff: Backoff,
    mut check: F,
) -> Result<(T, u32), PollError<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = PollStep<T, E>>,
{
    let started = Instant::now();
    let overdue = |attempts, last| {
        PollError::Deadline(Overdue {
            attempts,
            waited: started.elapsed(),
            last,
        })
    };
    let mut attempt: u32 = 0;
    loop {
        let last = match check(attempt).await {
            PollStep::Done(v) => return Ok((v, attempt + 1)),
            PollStep::Fail(e) => return Err(PollError::Failed(e)),
            PollStep::Pending(seen) => Some(seen),
        };
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            return Err(overdue(attempt, last));
        }
        let wait = backoff.delay(attempt - 1).min(deadline - now);
        tokio::time::sleep(wait).await;
        if Instant::now() >= deadline {
            // One last look exactly at the deadline, so a state reached while sleeping counts.
            match check(attempt).await {
                PollStep::Done(v) => return Ok((v, attempt + 1)),
                PollStep::Fail(e) => return Err(PollError::Failed(e)),
                PollStep::Pending(seen) => return Err(overdue(attempt + 1, Some(seen))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::CLOUD
        };
        assert_eq!(b.delay(0), Duration::from_secs(2));
        assert_eq!(b.delay(1), Duration::from_secs(4));
        assert_eq!(b.delay(2), Duration::from_secs(8));
        assert_eq!(b.delay(3), Duration::from_secs(15));
        assert_eq!(b.delay(20), Duration::from_secs(15));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::CLOUD;
        for n in 0..10 {
            let d = b.delay(n);
            let base = b.base_delay(n);
            assert!(d <= base && d >= base.mul_f64(0.7), "{d:?} vs {base:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn poll_succeeds_after_pending_steps() {
        let deadline = Instant::now() + Duration::from_secs(120);
        let r: Result<(u32, u32), PollError<()>> =
            poll_until(deadline, Backoff::CLOUD, |n| async move {
                if n < 3 {
                    PollStep::Pending(format!("try {n}"))
                } else {
                    PollStep::Done(n)
                }
            })
            .await;
        assert_eq!(r, Ok((3, 4)));
    }

    #[tokio::test(start_paused = true)]
    async fn poll_stops_at_deadline_with_last_observation() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let r: Result<((), u32), PollError<()>> = poll_until(deadline, Backoff::CLOUD, |_| async {
            PollStep::Pending("503".into())
        })
        .await;
        match r {
            Err(PollError::Deadline(Overdue { attempts, last, .. })) => {
                assert_eq!(last.as_deref(), Some("503"));
                // 2+4+8+15+15+15 = 59 s, then the last look at 60 s: never one 30 s sleep.
                assert!((6..=9).contains(&attempts), "attempts {attempts}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(Instant::now(), deadline);
    }

    /// What a caller makes of a poll: its check's own refusal, or the timeout.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Refused,
        TimedOut(Overdue),
    }

    #[tokio::test(start_paused = true)]
    async fn into_error_words_the_deadline_and_passes_a_failure_through() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let r: Result<((), u32), PollError<Outcome>> =
            poll_until(deadline, Backoff::CLOUD, |_| async {
                PollStep::Pending("creating".into())
            })
            .await;
        match r.map_err(|e| e.into_error(Outcome::TimedOut)) {
            Err(Outcome::TimedOut(o)) => {
                assert!(o.attempts >= 2, "attempts {}", o.attempts);
                assert_eq!(o.waited, Duration::from_secs(30));
                assert_eq!(o.last_or("nothing"), "creating");
            }
            other => panic!("unexpected {other:?}"),
        }

        let r: Result<((), u32), PollError<Outcome>> =
            poll_until(deadline, Backoff::CLOUD, |_| async {
                PollStep::Fail(Outcome::Refused)
            })
            .await;
        assert_eq!(
            r.map_err(|e| e.into_error(Outcome::TimedOut)),
            Err(Outcome::Refused)
        );
    }

    #[test]
    fn last_or_falls_back_only_when_nothing_was_seen() {
        let mut o = Overdue {
            attempts: 1,
            waited: Duration::ZERO,
            last: None,
        };
        assert_eq!(o.last_or("nothing"), "nothing");
        o.last = Some("HTTP 503".into());
        assert_eq!(o.last_or("nothing"), "HTTP 503");
    }
}

/// An error that may go away if the same read is simply asked again: an answer that did not
/// parse. Throttling and transport failures are the SDKs' to retry (they already did), and a
/// missing stack or a refused credential will not go away.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// Consecutive transient failures of one read tolerated before its error is reported.
pub const TRANSIENT_TOLERANCE: u32 = 3;

/// Calls `read` until it succeeds, fails with a non-transient error, or has failed
/// transiently [`TRANSIENT_TOLERANCE`] times in a row, waiting `backoff` between attempts.
///
/// Only for reads of state, where asking again is safe, and always inside a phase whose
/// deadline bounds it. The SDKs retry throttling and transport failures themselves; this
/// covers only what they do not (an answer that does not parse, see [`Transient`]), while a
/// failure that persists still ends the phase with its own message.
pub async fn read_again<T, E, F, Fut>(backoff: Backoff, mut read: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
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

/// Consecutive transient failures inside a [`poll_until`] loop (shared by reference with
/// the loop's check, hence atomic).
#[derive(Debug, Default)]
pub struct Strikes(std::sync::atomic::AtomicU32);

impl Strikes {
    /// A poll read state successfully: the count starts over.
    pub fn clear(&self) {
        self.0.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The step for a failed read: "not yet" for a transient error while under
    /// [`TRANSIENT_TOLERANCE`] in a row, else `fail(e)`.
    pub fn step<T, E, F>(&self, e: E, fail: impl FnOnce(E) -> F) -> PollStep<T, F>
    where
        E: Transient + std::fmt::Display,
    {
        if e.is_transient()
            && self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 < TRANSIENT_TOLERANCE
        {
            PollStep::Pending(format!("{e} (transient; asking again)"))
        } else {
            PollStep::Fail(fail(e))
        }
    }
}

#[cfg(test)]
mod transient_tests {
    use super::*;

    #[derive(Debug)]
    struct E(bool);
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transient={}", self.0)
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
                    Err(E(true))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(TRANSIENT_TOLERANCE));

        let mut calls = 0;
        let r: Result<(), E> = read_again(backoff, || {
            calls += 1;
            async { Err(E(true)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, TRANSIENT_TOLERANCE);

        let mut calls = 0;
        let r: Result<(), E> = read_again(backoff, || {
            calls += 1;
            async { Err(E(false)) }
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
                s.step::<(), _, _>(E(true), |e| e),
                PollStep::Pending(_)
            ));
        }
        assert!(matches!(
            s.step::<(), _, _>(E(true), |e| e),
            PollStep::Fail(_)
        ));
        s.clear();
        assert!(matches!(
            s.step::<(), _, _>(E(true), |e| e),
            PollStep::Pending(_)
        ));
        assert!(matches!(
            s.step::<(), _, _>(E(false), |e| e),
            PollStep::Fail(_)
        ));
    }
}
