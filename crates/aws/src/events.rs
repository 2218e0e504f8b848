//! Stack events and stack states, as pure logic over plain records so it is testable without
//! a client: which events are new since the last poll, what a stack status means, and which
//! failed resource a user needs to hear about.

/// One CloudFormation stack event, copied out of the SDK type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEventRecord {
    pub event_id: String,
    /// RFC 3339, when AWS sent one.
    pub timestamp: Option<String>,
    pub logical_id: String,
    pub physical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

/// CloudFormation's reason on resources it stopped because another one failed; never the
/// cause a user is looking for.
const CANCELLED_REASONS: &[&str] = &["Resource creation cancelled", "Resource update cancelled"];

impl StackEventRecord {
    /// The stack's own events carry the stack's type.
    pub fn is_stack_itself(&self) -> bool {
        self.resource_type == "AWS::CloudFormation::Stack"
    }

    /// The line streamed as progress: `CREATE_FAILED AWS::EC2::Instance Server: reason`.
    pub fn progress_line(&self) -> String {
        let mut line = format!("{} {} {}", self.status, self.resource_type, self.logical_id);
        if let Some(reason) = self.reason.as_deref().filter(|r| !r.is_empty()) {
            line.push_str(": ");
            line.push_str(reason);
        }
        line
    }

    fn is_root_cause_failure(&self) -> bool {
        self.status.ends_with("_FAILED")
            && !self.is_stack_itself()
            && !self
                .reason
                .as_deref()
                .is_some_and(|r| CANCELLED_REASONS.iter().any(|c| r.starts_with(c)))
    }
}

/// Remembers the newest event already reported, so each poll reads only new pages.
///
/// DescribeStackEvents returns events newest-first, a page at a time. A poll feeds pages in
/// order until [`StackEventPager::feed`] says it reached a seen event (or pages run out),
/// then [`StackEventPager::finish`] returns the new events oldest-first.
#[derive(Debug, Default, Clone)]
pub struct StackEventPager {
    last_seen: Option<String>,
    pending: Vec<StackEventRecord>,
}

impl StackEventPager {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of the newest event reported so far.
    pub fn last_seen(&self) -> Option<&str> {
        self.last_seen.as_deref()
    }

    /// Takes one page (newest first). Returns `true` when the page reached an event reported
    /// by an earlier poll, so older pages need not be fetched.
    pub fn feed(&mut self, page: Vec<StackEventRecord>) -> bool {
        for event in page {
            if self.last_seen.as_deref() == Some(event.event_id.as_str()) {
                return true;
            }
            // Events arriving between page requests shift older ones onto the next page.
            if !self.pending.iter().any(|p| p.event_id == event.event_id) {
                self.pending.push(event);
            }
        }
        false
    }

    /// Ends a poll: the new events, oldest first. The newest becomes the next boundary.
    pub fn finish(&mut self) -> Vec<StackEventRecord> {
        let mut fresh = std::mem::take(&mut self.pending);
        if let Some(newest) = fresh.first() {
            self.last_seen = Some(newest.event_id.clone());
        }
        fresh.reverse();
        fresh
    }

    /// Drops a half-read poll (a page request failed); the next poll reads those again.
    pub fn discard(&mut self) {
        self.pending.clear();
    }
}

/// The pager as one pure function: pages newest-first in, new events oldest-first out, plus
/// how many pages were needed.
pub fn new_events(
    last_seen: Option<&str>,
    pages: &[Vec<StackEventRecord>],
) -> (Vec<StackEventRecord>, usize) {
    let mut pager = StackEventPager {
        last_seen: last_seen.map(str::to_string),
        pending: Vec::new(),
    };
    let mut used = 0;
    for page in pages {
        used += 1;
        if pager.feed(page.clone()) {
            break;
        }
    }
    (pager.finish(), used)
}

/// Where a stack is, seen from `wait_ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateState {
    Pending,
    Ready,
    Failed,
}

/// Mirrors the SDK's `stack_create_complete` waiter, except that `UPDATE_*` is a failure
/// (nothing here updates a stack, so an update means someone else touched it).
pub fn classify_create(status: &str) -> CreateState {
    match status {
        "CREATE_COMPLETE" => CreateState::Ready,
        "CREATE_IN_PROGRESS" | "REVIEW_IN_PROGRESS" => CreateState::Pending,
        _ => CreateState::Failed,
    }
}

/// Where a stack is, seen from `teardown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteState {
    Pending,
    Deleted,
    Failed,
}

/// A stack that is gone from DescribeStacks counts as deleted too; that is decided by the
/// caller from the error.
pub fn classify_delete(status: &str) -> DeleteState {
    match status {
        "DELETE_COMPLETE" => DeleteState::Deleted,
        "DELETE_FAILED" => DeleteState::Failed,
        _ => DeleteState::Pending,
    }
}

/// The one line a user needs when a stack did not come up: the first failed resource, its
/// type and CloudFormation's reason; else the stack's own reason.
pub fn failure_line(
    stack: &str,
    status: &str,
    stack_reason: Option<&str>,
    events_oldest_first: &[StackEventRecord],
) -> String {
    match events_oldest_first
        .iter()
        .find(|e| e.is_root_cause_failure())
    {
        Some(e) => format!(
            "stack {stack} is {status}: first failed resource {} ({}): {}",
            e.logical_id,
            e.resource_type,
            e.reason.as_deref().unwrap_or("no reason given")
        ),
        None => format!(
            "stack {stack} is {status}: {} (no resource-level failure event was reported)",
            stack_reason
                .filter(|r| !r.is_empty())
                .unwrap_or("no reason given")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(
        id: u32,
        logical: &str,
        ty: &str,
        status: &str,
        reason: Option<&str>,
    ) -> StackEventRecord {
        StackEventRecord {
            event_id: format!("e{id}"),
            timestamp: None,
            logical_id: logical.into(),
            physical_id: String::new(),
            resource_type: ty.into(),
            status: status.into(),
            reason: reason.map(str::to_string),
        }
    }

    fn plain(id: u32) -> StackEventRecord {
        ev(id, "R", "AWS::EC2::VPC", "CREATE_IN_PROGRESS", None)
    }

    fn ids(v: &[StackEventRecord]) -> Vec<&str> {
        v.iter().map(|e| e.event_id.as_str()).collect()
    }

    #[test]
    fn first_poll_reads_all_pages_oldest_first() {
        let pages = vec![
            vec![plain(5), plain(4)],
            vec![plain(3), plain(2)],
            vec![plain(1)],
        ];
        let (fresh, used) = new_events(None, &pages);
        assert_eq!(ids(&fresh), ["e1", "e2", "e3", "e4", "e5"]);
        assert_eq!(used, 3);
    }

    #[test]
    fn later_polls_stop_at_the_last_seen_event() {
        let mut pager = StackEventPager::new();
        assert!(!pager.feed(vec![plain(2), plain(1)]));
        assert_eq!(ids(&pager.finish()), ["e1", "e2"]);
        assert_eq!(pager.last_seen(), Some("e2"));
        // Two new events, and the old ones start on the same page: one page is enough.
        assert!(pager.feed(vec![plain(4), plain(3), plain(2), plain(1)]));
        assert_eq!(ids(&pager.finish()), ["e3", "e4"]);
        // Nothing new.
        assert!(pager.feed(vec![plain(4), plain(3)]));
        assert!(pager.finish().is_empty());
        assert_eq!(pager.last_seen(), Some("e4"));
    }

    #[test]
    fn shifted_pages_do_not_repeat_events_and_discard_rereads() {
        let (fresh, _) = new_events(None, &[vec![plain(3), plain(2)], vec![plain(2), plain(1)]]);
        assert_eq!(ids(&fresh), ["e1", "e2", "e3"]);
        let mut pager = StackEventPager::new();
        pager.feed(vec![plain(1)]);
        pager.discard();
        assert!(pager.finish().is_empty());
        assert_eq!(pager.last_seen(), None);
    }

    #[test]
    fn states_follow_the_waiter_acceptors() {
        assert_eq!(classify_create("CREATE_COMPLETE"), CreateState::Ready);
        assert_eq!(classify_create("CREATE_IN_PROGRESS"), CreateState::Pending);
        for s in [
            "CREATE_FAILED",
            "ROLLBACK_IN_PROGRESS",
            "ROLLBACK_COMPLETE",
            "DELETE_COMPLETE",
            "UPDATE_COMPLETE",
        ] {
            assert_eq!(classify_create(s), CreateState::Failed, "{s}");
        }
        assert_eq!(classify_delete("DELETE_COMPLETE"), DeleteState::Deleted);
        assert_eq!(classify_delete("DELETE_FAILED"), DeleteState::Failed);
        assert_eq!(classify_delete("DELETE_IN_PROGRESS"), DeleteState::Pending);
        assert_eq!(classify_delete("CREATE_COMPLETE"), DeleteState::Pending);
    }

    #[test]
    fn failure_line_names_the_first_real_failure() {
        let events = vec![
            ev(
                1,
                "stk",
                "AWS::CloudFormation::Stack",
                "CREATE_IN_PROGRESS",
                Some("User Initiated"),
            ),
            ev(2, "Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", None),
            ev(
                3,
                "Client",
                "AWS::EC2::Instance",
                "CREATE_FAILED",
                Some("Resource creation cancelled"),
            ),
            ev(
                4,
                "Server",
                "AWS::EC2::Instance",
                "CREATE_FAILED",
                Some("The requested configuration is currently not supported."),
            ),
            ev(
                5,
                "stk",
                "AWS::CloudFormation::Stack",
                "ROLLBACK_IN_PROGRESS",
                Some("The following resource(s) failed to create: [Server, Client]."),
            ),
        ];
        let line = failure_line("stk", "ROLLBACK_IN_PROGRESS", None, &events);
        assert_eq!(
            line,
            "stack stk is ROLLBACK_IN_PROGRESS: first failed resource Server (AWS::EC2::Instance): The requested configuration is currently not supported."
        );
    }

    #[test]
    fn failure_line_falls_back_to_the_stack_reason() {
        let events = vec![ev(
            1,
            "stk",
            "AWS::CloudFormation::Stack",
            "CREATE_FAILED",
            None,
        )];
        let line = failure_line(
            "stk",
            "CREATE_FAILED",
            Some("Template error: unresolved"),
            &events,
        );
        assert!(line.contains("Template error: unresolved"), "{line}");
        let line = failure_line("stk", "ROLLBACK_COMPLETE", None, &[]);
        assert!(line.contains("no reason given"), "{line}");
    }

    #[test]
    fn progress_line_has_status_type_id_and_reason() {
        let e = ev(
            1,
            "Server",
            "AWS::EC2::Instance",
            "CREATE_FAILED",
            Some("quota"),
        );
        assert_eq!(
            e.progress_line(),
            "CREATE_FAILED AWS::EC2::Instance Server: quota"
        );
        assert_eq!(
            plain(1).progress_line(),
            "CREATE_IN_PROGRESS AWS::EC2::VPC R"
        );
    }
}
