//! OS signals become cancel reasons. The first SIGINT/SIGTERM cancels the run (teardown still
//! runs); a second is ignored with a message; only a third aborts at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use cloudtest_core::{CancelReason, Shutdown};

/// Listens for SIGINT and SIGTERM for the life of the process.
pub fn install(shutdown: Shutdown) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let count = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        loop {
            let reason = tokio::select! {
                _ = int.recv() => CancelReason::Interrupt,
                _ = term.recv() => CancelReason::Terminate,
            };
            match on_signal(&shutdown, &count, reason) {
                SignalAction::Cancelled => eprintln!(
                    "\n{}: cancelling; tearing down what was created (a second signal is ignored, a third aborts)",
                    reason.signal_name()
                ),
                SignalAction::Ignored => eprintln!(
                    "\n{}: teardown is in progress and must finish to avoid leaving paid resources; ignored. Send once more to abort anyway.",
                    reason.signal_name()
                ),
                SignalAction::Abort => {
                    eprintln!(
                        "\n{}: aborting now. Resources may remain: run `cloudtest sweep` to remove them.",
                        reason.signal_name()
                    );
                    std::process::exit(reason.exit_code());
                }
            }
        }
    });
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum SignalAction {
    Cancelled,
    Ignored,
    Abort,
}

/// The escalation rule, apart from the OS so it can be tested.
pub fn on_signal(shutdown: &Shutdown, count: &AtomicU32, reason: CancelReason) -> SignalAction {
    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
    match n {
        1 => {
            shutdown.cancel(reason);
            SignalAction::Cancelled
        }
        2 => SignalAction::Ignored,
        _ => SignalAction::Abort,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_cancels_second_is_ignored_third_aborts() {
        let s = Shutdown::new();
        let c = AtomicU32::new(0);
        assert_eq!(
            on_signal(&s, &c, CancelReason::Terminate),
            SignalAction::Cancelled
        );
        assert_eq!(s.reason(), Some(CancelReason::Terminate));
        assert_eq!(
            on_signal(&s, &c, CancelReason::Interrupt),
            SignalAction::Ignored
        );
        assert_eq!(
            on_signal(&s, &c, CancelReason::Terminate),
            SignalAction::Abort
        );
    }
}
