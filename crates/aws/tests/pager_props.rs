//! Properties of the stack-event pager: however DescribeStackEvents pages its newest-first
//! answer, and however many events arrive between (and during) polls, every event is emitted
//! exactly once across polls, oldest first.

use cloudtest_aws::events::{new_events, StackEventPager, StackEventRecord};
use proptest::prelude::*;

fn event(i: usize) -> StackEventRecord {
    StackEventRecord {
        event_id: format!("e{i}"),
        timestamp: None,
        logical_id: format!("R{i}"),
        physical_id: String::new(),
        resource_type: "AWS::EC2::VPC".into(),
        status: "CREATE_IN_PROGRESS".into(),
        reason: None,
    }
}

/// Page `page` (size `size`) of the newest-first listing of the first `logged` events.
fn page_of(logged: usize, size: usize, page: usize) -> Vec<StackEventRecord> {
    (0..logged)
        .rev()
        .skip(page * size)
        .take(size)
        .map(event)
        .collect()
}

/// One poll as the provider runs it: the log holds `sizes[j]` events when page `j` is
/// requested (events arrive while paging, shifting older ones onto the next page, so pages
/// overlap); a request fails at page `fail_at`, if set.
#[derive(Debug, Clone)]
struct Poll {
    sizes: Vec<usize>,
    fail_at: Option<usize>,
}

/// Drives the pager through one poll the way `CfnStacks::new_events` does: pages until one
/// reaches an event seen before or the listing ends; a failed request discards the poll.
/// Past the end of `sizes` the log stays at its last size.
fn run_poll(
    pager: &mut StackEventPager,
    poll: &Poll,
    page_size: usize,
) -> Option<Vec<StackEventRecord>> {
    let last = poll.sizes.last().copied().unwrap_or(0);
    for j in 0.. {
        if poll.fail_at == Some(j) {
            pager.discard();
            return None;
        }
        let logged = poll.sizes.get(j).copied().unwrap_or(last);
        let more = (j + 1) * page_size < logged;
        if pager.feed(page_of(logged, page_size, j)) || !more {
            break;
        }
    }
    Some(pager.finish())
}

fn ids(events: &[StackEventRecord]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

/// Polls whose log never shrinks, ending in a stable poll that sees every event. Within a
/// poll at most a page's worth of events arrives between two page requests, so each page
/// overlaps the one before (never newer than it), as a shifted newest-first listing does.
fn polls() -> impl Strategy<Value = (usize, usize, Vec<Poll>)> {
    (1usize..40, 1usize..6, 1usize..6).prop_flat_map(|(total, page_size, n_polls)| {
        let poll = (
            0usize..=total,
            proptest::collection::vec(0usize..=page_size, 0..8),
            proptest::option::weighted(0.2, 0usize..4),
        );
        proptest::collection::vec(poll, n_polls).prop_map(move |raw| {
            let mut floor = 0;
            let mut out = Vec::new();
            for (start, arrivals, fail_at) in raw {
                let mut size = start.max(floor);
                let mut sizes = vec![size];
                for d in arrivals {
                    size = (size + d).min(total);
                    sizes.push(size);
                }
                floor = size;
                out.push(Poll { sizes, fail_at });
            }
            // The final, undisturbed poll: the whole log, stable while paging.
            out.push(Poll {
                sizes: vec![total],
                fail_at: None,
            });
            (total, page_size, out)
        })
    })
}

proptest! {
    #[test]
    fn every_event_is_emitted_once_oldest_first((total, page_size, polls) in polls()) {
        let mut pager = StackEventPager::new();
        let mut emitted = Vec::new();
        for poll in &polls {
            if let Some(fresh) = run_poll(&mut pager, poll, page_size) {
                emitted.extend(fresh);
            }
        }
        let expected: Vec<String> = (0..total).map(|i| format!("e{i}")).collect();
        prop_assert_eq!(ids(&emitted), expected, "polls: {:?}", polls);
        let newest = format!("e{}", total - 1);
        prop_assert_eq!(pager.last_seen(), Some(newest.as_str()));
    }

    #[test]
    fn one_poll_over_overlapping_pages_returns_each_new_event_once(
        total in 1usize..40,
        seen in proptest::option::of(0usize..40),
        page_size in 1usize..6,
        overlap in 0usize..3,
    ) {
        // Pages of `page_size` that each repeat the last `overlap` events of the one before.
        let step = page_size.max(overlap + 1) - overlap;
        let newest_first: Vec<usize> = (0..total).rev().collect();
        let pages: Vec<Vec<StackEventRecord>> = (0..)
            .map(|p| p * step)
            .take_while(|start| *start < total)
            .map(|start| newest_first.iter().skip(start).take(page_size.max(overlap + 1)).map(|&i| event(i)).collect())
            .collect();
        let seen = seen.filter(|s| *s < total);
        let last_seen = seen.map(|s| format!("e{s}"));
        let (fresh, used) = new_events(last_seen.as_deref(), &pages);
        let first_new = seen.map_or(0, |s| s + 1);
        let expected: Vec<String> = (first_new..total).map(|i| format!("e{i}")).collect();
        prop_assert_eq!(ids(&fresh), expected);
        prop_assert!(used >= 1 && used <= pages.len());
    }
}
