//! The tags every cloudtest resource carries, and the rule `cloudtest sweep` applies to
//! them: one rule for both clouds.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Which run created a resource. Nothing without it is ever touched by a sweep.
pub const RUN_ID_TAG: &str = "cloudtest:run-id";
/// `CLOUD-01` / `CLOUD-02`.
pub const REQUIREMENT_TAG: &str = "cloudtest:requirement";
/// RFC 3339 time after which `cloudtest sweep` may delete the resource.
pub const EXPIRES_AT_TAG: &str = "cloudtest:expires-at";

/// Whether a tagged resource is due for deletion, and why. `None` without the run-id tag,
/// or when neither its expiry nor (when `older_than` is given and its age is known) its
/// age says so.
pub fn sweep_due(
    tags: &BTreeMap<String, String>,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    older_than: Option<Duration>,
) -> Option<String> {
    tags.get(RUN_ID_TAG)?;
    if let Some(raw) = tags.get(EXPIRES_AT_TAG) {
        if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
            if at.with_timezone(&Utc) <= now {
                return Some(format!("expired at {raw}"));
            }
        }
    }
    let (limit, created) = (older_than?, created?);
    let limit_c = chrono::Duration::from_std(limit).ok()?;
    (now - created >= limit_c).then(|| {
        format!(
            "created {}, older than {}",
            created.to_rfc3339(),
            humantime::format_duration(limit)
        )
    })
}

/// The start time a run id begins with (`%Y%m%d%H%M%S-...`), when it has that shape:
/// the age of a resource whose cloud does not report a creation time.
pub fn run_started(run_id: &str) -> Option<DateTime<Utc>> {
    let stamp = run_id.get(..14)?;
    if !run_id.get(14..)?.starts_with('-') {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_tagged_and_expired_or_old_resources_are_due() {
        let now = Utc::now();
        let past = (now - chrono::Duration::hours(1)).to_rfc3339();
        let future = (now + chrono::Duration::hours(1)).to_rfc3339();
        assert!(sweep_due(
            &tags(&[(RUN_ID_TAG, "r"), (EXPIRES_AT_TAG, &past)]),
            None,
            now,
            None
        )
        .is_some());
        assert!(sweep_due(
            &tags(&[(RUN_ID_TAG, "r"), (EXPIRES_AT_TAG, &future)]),
            None,
            now,
            None
        )
        .is_none());
        // Untagged is never due, however old or expired.
        assert!(sweep_due(
            &tags(&[(EXPIRES_AT_TAG, &past)]),
            Some(now - chrono::Duration::days(9)),
            now,
            Some(Duration::ZERO)
        )
        .is_none());
        let old = Some(now - chrono::Duration::hours(7));
        let why = sweep_due(
            &tags(&[(RUN_ID_TAG, "r")]),
            old,
            now,
            Some(Duration::from_secs(6 * 3600)),
        );
        assert!(why.is_some_and(|w| w.contains("older than 6h")));
        assert!(sweep_due(&tags(&[(RUN_ID_TAG, "r")]), old, now, None).is_none());
    }

    #[test]
    fn run_ids_carry_their_start_time() {
        let t = run_started("20261125194500-a1b2c3").expect("shaped");
        assert_eq!(t.to_rfc3339(), "2026-11-25T19:45:00+00:00");
        assert!(run_started("planted-1").is_none());
        assert!(run_started("20261125194500").is_none());
    }
    #[test]
    fn untagged_is_never_due() {
        let now = t("2030-01-01T00:00:00Z");
        let untagged = tags(&[(EXPIRES_AT_TAG, "2020-01-01T00:00:00Z")]);
        assert_eq!(
            sweep_due(
                &untagged,
                Some(t("2020-01-01T00:00:00Z")),
                now,
                Some(Duration::from_secs(1))
            ),
            None
        );
    }

    #[test]
    fn expiry_and_age_decide() {
        let now = t("2030-01-01T12:00:00Z");
        let expired = tags(&[(RUN_ID_TAG, "r1"), (EXPIRES_AT_TAG, "2030-01-01T06:00:00Z")]);
        assert_eq!(
            sweep_due(&expired, None, now, None).as_deref(),
            Some("expired at 2030-01-01T06:00:00Z")
        );
        let fresh = tags(&[(RUN_ID_TAG, "r1"), (EXPIRES_AT_TAG, "2030-01-01T18:00:00Z")]);
        assert_eq!(
            sweep_due(&fresh, Some(t("2030-01-01T11:00:00Z")), now, None),
            None
        );
        assert_eq!(
            sweep_due(
                &fresh,
                Some(t("2030-01-01T11:00:00Z")),
                now,
                Some(Duration::from_secs(6 * 3600))
            ),
            None
        );
        let old = sweep_due(
            &fresh,
            Some(t("2030-01-01T05:00:00Z")),
            now,
            Some(Duration::from_secs(6 * 3600)),
        );
        assert!(
            old.as_deref().is_some_and(|w| w.contains("older than 6h")),
            "{old:?}"
        );
        let garbage = tags(&[(RUN_ID_TAG, "r1"), (EXPIRES_AT_TAG, "soon")]);
        assert_eq!(sweep_due(&garbage, None, now, None), None);
    }

    #[test]
    fn run_ids_give_their_start_time_only_in_the_generated_shape() {
        assert_eq!(
            run_started("20240131120000-00abcd"),
            Some(t("2024-01-31T12:00:00Z"))
        );
        assert_eq!(run_started("20240131120000"), None);
        assert_eq!(run_started("my-run"), None);
        assert_eq!(run_started("20241399120000-x"), None);
        assert_eq!(run_started("2024013112000é-x"), None);
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }
}
