//! Teardown's decisions as pure logic over stack statuses: when to send `DeleteStack`, with
//! which `ClientRequestToken`, and when to give up.
//!
//! CloudFormation refuses `DeleteStack` while a stack is busy (`ValidationError ... cannot be
//! deleted while in status ...`); a create that failed is still `ROLLBACK_IN_PROGRESS` when
//! `wait_ready` ends. So teardown sends once, and after a refusal waits for a settled state
//! before sending again. A token names one request: retries of an accepted (or
//! unanswered) request reuse it, so CloudFormation treats them as the same request; a
//! refused request or a `DELETE_FAILED` gets a fresh one (a reused token would be answered
//! as the old, finished request).

/// Where a stack is, seen from teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePhase {
    /// Nothing is running on it: `CREATE_COMPLETE`, `ROLLBACK_COMPLETE`, `ROLLBACK_FAILED`,
    /// `CREATE_FAILED` (and any other `*_COMPLETE`/`*_FAILED` but the delete ones).
    Settled,
    /// Another operation runs: `CREATE_IN_PROGRESS`, `ROLLBACK_IN_PROGRESS`, ...
    Busy,
    Deleting,
    Deleted,
    DeleteFailed,
}

pub fn delete_phase(status: &str) -> DeletePhase {
    match status {
        "DELETE_COMPLETE" => DeletePhase::Deleted,
        "DELETE_IN_PROGRESS" => DeletePhase::Deleting,
        "DELETE_FAILED" => DeletePhase::DeleteFailed,
        s if s.ends_with("_IN_PROGRESS") => DeletePhase::Busy,
        _ => DeletePhase::Settled,
    }
}

/// What teardown does after one look at the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Send `DeleteStack` with this token.
    Send(String),
    /// Look again later; why.
    Wait(&'static str),
    Done,
    /// Deletion failed after the allowed retries.
    GiveUp,
}

/// How a `DeleteStack` call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Accepted,
    /// "cannot be deleted while in status ...".
    Refused,
    /// Throttled, timed out, unreadable: it may or may not have been received.
    Unknown,
    /// Rejected for another reason (moto deletes synchronously and reports a resource it
    /// could not delete this way); counts like `DELETE_FAILED`.
    Failed,
}

/// The `DeleteStack` requests of one teardown.
#[derive(Debug, Clone)]
pub struct DeleteRequests {
    run_id: String,
    /// Number of the current token (1-based); each fresh token increments it.
    token_no: u32,
    /// Nothing sent yet.
    first: bool,
    /// The last request was refused or failed: the next one gets a fresh token.
    fresh_next: bool,
    /// `DELETE_FAILED` seen and not yet retried: retry on the next look, after a pause.
    retry_due: bool,
    failures: u32,
}

/// `DELETE_FAILED` is retried this many times (with a fresh token) before teardown fails.
pub const DELETE_FAILED_RETRIES: u32 = 1;

impl DeleteRequests {
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            token_no: 1,
            first: true,
            fresh_next: false,
            retry_due: false,
            failures: 0,
        }
    }

    /// Fresh tokens used after the first: the teardown's retries.
    pub fn retries(&self) -> u32 {
        self.token_no - 1
    }

    fn send(&mut self) -> NextStep {
        if self.fresh_next {
            self.token_no += 1;
            self.fresh_next = false;
        }
        self.first = false;
        NextStep::Send(crate::provider::token(
            &format!("delete{}", self.token_no),
            &self.run_id,
        ))
    }

    fn failed(&mut self) -> NextStep {
        if self.failures >= DELETE_FAILED_RETRIES {
            return NextStep::GiveUp;
        }
        self.failures += 1;
        self.fresh_next = true;
        NextStep::Wait("deletion failed; trying again with a fresh request after a pause")
    }

    /// Decides from the stack's status.
    pub fn on_status(&mut self, status: &str) -> NextStep {
        match delete_phase(status) {
            DeletePhase::Deleted => NextStep::Done,
            DeletePhase::Deleting => NextStep::Wait("deleting"),
            DeletePhase::DeleteFailed if self.retry_due => {
                self.retry_due = false;
                self.send()
            }
            DeletePhase::DeleteFailed => match self.failed() {
                NextStep::GiveUp => NextStep::GiveUp,
                wait => {
                    self.retry_due = true;
                    wait
                }
            },
            // CloudFormation may accept a delete of a busy stack (it cancels a create), so
            // the first request goes out at once; after a refusal, wait for it to settle.
            DeletePhase::Busy if self.first => self.send(),
            DeletePhase::Busy => {
                NextStep::Wait("waiting for the stack to settle before DeleteStack")
            }
            // First request, a resend after a refusal, or a request that did not take
            // effect (same token: AWS treats it as the same request).
            DeletePhase::Settled => self.send(),
        }
    }

    /// Records how the request just sent was answered.
    pub fn on_sent(&mut self, outcome: SendOutcome) -> NextStep {
        match outcome {
            SendOutcome::Accepted => NextStep::Wait("DeleteStack accepted"),
            SendOutcome::Unknown => {
                NextStep::Wait("DeleteStack unanswered; checking whether it took effect")
            }
            SendOutcome::Refused => {
                self.fresh_next = true;
                NextStep::Wait(
                    "DeleteStack refused while the stack is busy; waiting for it to settle",
                )
            }
            SendOutcome::Failed => self.failed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u32) -> NextStep {
        NextStep::Send(format!("cloudtest-delete{n}-r1"))
    }

    #[test]
    fn statuses_map_to_phases() {
        assert_eq!(delete_phase("ROLLBACK_IN_PROGRESS"), DeletePhase::Busy);
        assert_eq!(delete_phase("CREATE_IN_PROGRESS"), DeletePhase::Busy);
        assert_eq!(delete_phase("ROLLBACK_COMPLETE"), DeletePhase::Settled);
        assert_eq!(delete_phase("ROLLBACK_FAILED"), DeletePhase::Settled);
        assert_eq!(delete_phase("CREATE_FAILED"), DeletePhase::Settled);
        assert_eq!(delete_phase("DELETE_IN_PROGRESS"), DeletePhase::Deleting);
        assert_eq!(delete_phase("DELETE_FAILED"), DeletePhase::DeleteFailed);
        assert_eq!(delete_phase("DELETE_COMPLETE"), DeletePhase::Deleted);
    }

    #[test]
    fn a_refusal_waits_for_a_settled_state_then_resends_with_a_fresh_token() {
        let mut r = DeleteRequests::new("r1");
        assert_eq!(r.on_status("ROLLBACK_IN_PROGRESS"), token(1));
        assert!(matches!(r.on_sent(SendOutcome::Refused), NextStep::Wait(_)));
        assert!(matches!(
            r.on_status("ROLLBACK_IN_PROGRESS"),
            NextStep::Wait(_)
        ));
        assert!(matches!(
            r.on_status("ROLLBACK_IN_PROGRESS"),
            NextStep::Wait(_)
        ));
        assert_eq!(r.on_status("ROLLBACK_COMPLETE"), token(2));
        assert!(matches!(
            r.on_sent(SendOutcome::Accepted),
            NextStep::Wait(_)
        ));
        assert!(matches!(
            r.on_status("DELETE_IN_PROGRESS"),
            NextStep::Wait(_)
        ));
        assert_eq!(r.on_status("DELETE_COMPLETE"), NextStep::Done);
        assert_eq!(r.retries(), 1);
    }

    #[test]
    fn an_unanswered_request_is_resent_with_the_same_token() {
        let mut r = DeleteRequests::new("r1");
        assert_eq!(r.on_status("CREATE_COMPLETE"), token(1));
        r.on_sent(SendOutcome::Unknown);
        assert_eq!(r.on_status("CREATE_COMPLETE"), token(1));
        r.on_sent(SendOutcome::Accepted);
        // Accepted but not visible yet: same request again, same token.
        assert_eq!(r.on_status("CREATE_COMPLETE"), token(1));
        assert_eq!(r.retries(), 0);
    }

    #[test]
    fn delete_failed_is_retried_once_after_a_pause_with_a_fresh_token() {
        let mut r = DeleteRequests::new("r1");
        assert_eq!(r.on_status("CREATE_COMPLETE"), token(1));
        r.on_sent(SendOutcome::Accepted);
        // The first look at DELETE_FAILED only pauses; the next one retries.
        assert!(matches!(r.on_status("DELETE_FAILED"), NextStep::Wait(_)));
        assert_eq!(r.on_status("DELETE_FAILED"), token(2));
        r.on_sent(SendOutcome::Accepted);
        assert!(matches!(
            r.on_status("DELETE_IN_PROGRESS"),
            NextStep::Wait(_)
        ));
        assert_eq!(r.on_status("DELETE_FAILED"), NextStep::GiveUp);
    }

    #[test]
    fn a_synchronous_rejection_counts_as_a_failed_delete() {
        let mut r = DeleteRequests::new("r1");
        assert_eq!(r.on_status("CREATE_COMPLETE"), token(1));
        assert!(matches!(r.on_sent(SendOutcome::Failed), NextStep::Wait(_)));
        assert_eq!(r.on_status("CREATE_COMPLETE"), token(2));
        assert_eq!(r.on_sent(SendOutcome::Failed), NextStep::GiveUp);
    }
}
