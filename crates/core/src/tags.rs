//! The tags every cloudtest resource carries, and the rule `cloudtest sweep` applies to
//! them: one rule for both clouds.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::regions;

/// Which run created a resource. Nothing without it is ever touched by a sweep.
pub const RUN_ID_TAG: &str = "cloudtest:run-id";
/// `CLOUD-01` / `CLOUD-02`.
pub const REQUIREMENT_TAG: &str = "cloudtest:requirement";
/// RFC 3339 time after which `cloudtest sweep` may delete the resource.
pub const EXPIRES_AT_TAG: &str = "cloudtest:expires-at";
/// Set (to [`KEEP_UNTIL_EXPIRY`]) on the resources of a run started with
/// `--keep-on-failure`: what such a run leaves behind was kept on purpose, for inspection,
/// so a sweep deletes it only once it has expired, whatever `--run-id` or `--older-than` say.
pub const KEEP_TAG: &str = "cloudtest:keep";
pub const KEEP_UNTIL_EXPIRY: &str = "until-expiry";

/// Longest run id `cloudtest run --run-id` accepts: `cloudtest-<run id>-<region>` must stay
/// within a resource-group name (90 characters) and a stack name (128).
pub const MAX_RUN_ID_LEN: usize = 40;

/// Which resources a sweep deletes. Both need the run-id tag: untagged is never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepScope {
    /// The daily sweep: expired, or older than the limit when one is given.
    Expired { older_than: Option<Duration> },
    /// A run's own cleanup: everything of that run (its id, or its id plus `-<region>`
    /// for per-region lifecycles), expired or not; what a `--keep-on-failure` run kept
    /// only with `include_kept` (the engineer is done inspecting it).
    Run { run_id: String, include_kept: bool },
}

impl SweepScope {
    /// Why a resource with these tags is due, or `None`. A kept resource ([`KEEP_TAG`]
    /// with an expiry) is due only once expired.
    pub fn due(
        &self,
        tags: &BTreeMap<String, String>,
        created: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let tagged_run = tags.get(RUN_ID_TAG)?;
        if let SweepScope::Run { run_id, .. } = self {
            if !belongs_to_run(tagged_run, run_id) {
                return None;
            }
        }
        let expiry = tags.get(EXPIRES_AT_TAG).and_then(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .ok()
                .map(|at| (raw, at.with_timezone(&Utc)))
        });
        if let Some((raw, at)) = expiry {
            if at <= now {
                return Some(format!("expired at {raw}"));
            }
        }
        let kept = expiry.is_some()
            && tags
                .get(KEEP_TAG)
                .is_some_and(|v| v.eq_ignore_ascii_case(KEEP_UNTIL_EXPIRY));
        let include_kept = matches!(
            self,
            SweepScope::Run {
                include_kept: true,
                ..
            }
        );
        if kept && !include_kept {
            return None;
        }
        match self {
            SweepScope::Run { run_id, .. } if kept => Some(format!(
                "belongs to run {run_id}, kept until now (--include-kept)"
            )),
            SweepScope::Run { run_id, .. } => Some(format!("belongs to run {run_id}")),
            SweepScope::Expired { older_than } => {
                let (limit, created) = ((*older_than)?, created?);
                let limit_c = chrono::Duration::from_std(limit).ok()?;
                (now - created >= limit_c).then(|| {
                    format!(
                        "created {}, older than {}",
                        created.to_rfc3339(),
                        humantime::format_duration(limit)
                    )
                })
            }
        }
    }
}

/// Whether a resource tagged with run id `tagged` belongs to run `run_id`: the same id, or
/// the id of one of its per-region lifecycles (`<run_id>-<region>` with a known region).
/// Another run whose id merely starts with `run_id` (`abc` and `abcd-...`) does not.
pub fn belongs_to_run(tagged: &str, run_id: &str) -> bool {
    if tagged == run_id {
        return true;
    }
    tagged
        .strip_prefix(run_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|region| regions::is_aws_region(region) || regions::is_azure_location(region))
}

/// Checks a run id given with `--run-id`: 1 to [`MAX_RUN_ID_LEN`] lower-case letters,
/// digits and dashes, starting and ending with a letter or digit (valid in stack,
/// resource-group and deployment names and in tags), and not ending in `-<region>`,
/// which would make it look like a per-region lifecycle of a shorter run id.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if run_id.is_empty() || run_id.len() > MAX_RUN_ID_LEN {
        return Err(format!(
            "must be 1 to {MAX_RUN_ID_LEN} characters long (it is {})",
            run_id.len()
        ));
    }
    if let Some(c) = run_id.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "`{c}` is not allowed: use lower-case letters, digits and dashes"
        ));
    }
    if run_id.starts_with('-') || run_id.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    let region_suffix = run_id
        .char_indices()
        .filter(|(_, c)| *c == '-')
        .find_map(|(i, _)| {
            let rest = &run_id[i + 1..];
            (regions::is_aws_region(rest) || regions::is_azure_location(rest)).then_some(rest)
        });
    if let Some(region) = region_suffix {
        return Err(format!(
            "must not end in `-{region}`: per-region lifecycles are tagged `<run id>-<region>`"
        ));
    }
    Ok(())
}

/// Whether a tagged resource is due for deletion, and why. `None` without the run-id tag,
/// or when neither its expiry nor (when `older_than` is given and its age is known) its
/// age says so. Kept resources ([`KEEP_TAG`]) wait for their expiry.
pub fn sweep_due(
    tags: &BTreeMap<String, String>,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    older_than: Option<Duration>,
) -> Option<String> {
    SweepScope::Expired { older_than }.due(tags, created, now)
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

    #[test]
    fn run_scope_takes_the_run_and_its_regions_never_a_longer_id() {
        let now = t("2030-01-01T12:00:00Z");
        let fresh = "2030-01-01T18:00:00Z";
        let scope = SweepScope::Run {
            run_id: "abc".into(),
            include_kept: false,
        };
        for own in ["abc", "abc-us-east-1", "abc-eastus", "abc-westeurope"] {
            let why = scope.due(
                &tags(&[(RUN_ID_TAG, own), (EXPIRES_AT_TAG, fresh)]),
                None,
                now,
            );
            assert_eq!(why.as_deref(), Some("belongs to run abc"), "{own}");
        }
        for other in [
            "abcd",
            "abcd-us-east-1",
            "abc-foo",
            "ab",
            "xabc",
            "abc-",
            "abc-us-east-1-x",
        ] {
            assert_eq!(
                scope.due(
                    &tags(&[(RUN_ID_TAG, other), (EXPIRES_AT_TAG, fresh)]),
                    None,
                    now
                ),
                None,
                "{other}"
            );
        }
        // Another run's expired resource is the daily sweep's business, not this run's.
        let expired_other = tags(&[
            (RUN_ID_TAG, "zzz"),
            (EXPIRES_AT_TAG, "2030-01-01T06:00:00Z"),
        ]);
        assert_eq!(scope.due(&expired_other, None, now), None);
        // Untagged never, even with an expiry that has passed.
        assert_eq!(
            scope.due(
                &tags(&[(EXPIRES_AT_TAG, "2020-01-01T00:00:00Z")]),
                None,
                now
            ),
            None
        );
    }

    #[test]
    fn kept_resources_wait_for_their_expiry_in_every_scope() {
        let now = t("2030-01-01T12:00:00Z");
        let kept = |expires: &str| {
            tags(&[
                (RUN_ID_TAG, "abc-eastus"),
                (EXPIRES_AT_TAG, expires),
                (KEEP_TAG, KEEP_UNTIL_EXPIRY),
            ])
        };
        let run = SweepScope::Run {
            run_id: "abc".into(),
            include_kept: false,
        };
        let daily = SweepScope::Expired {
            older_than: Some(Duration::from_secs(60)),
        };
        let long_ago = Some(t("2029-12-01T00:00:00Z"));
        assert_eq!(run.due(&kept("2030-01-01T18:00:00Z"), long_ago, now), None);
        assert_eq!(
            daily.due(&kept("2030-01-01T18:00:00Z"), long_ago, now),
            None
        );
        let expired = kept("2030-01-01T11:00:00Z");
        assert_eq!(
            run.due(&expired, long_ago, now).as_deref(),
            Some("expired at 2030-01-01T11:00:00Z")
        );
        assert!(daily.due(&expired, long_ago, now).is_some());
        // A keep tag without a readable expiry keeps nothing: there is nothing to wait for.
        let no_expiry = tags(&[(RUN_ID_TAG, "abc"), (KEEP_TAG, KEEP_UNTIL_EXPIRY)]);
        assert!(run.due(&no_expiry, None, now).is_some());
        // Asked for by name, a kept lifecycle goes before it expires; another run's does not.
        let done = SweepScope::Run {
            run_id: "abc".into(),
            include_kept: true,
        };
        assert_eq!(
            done.due(&kept("2030-01-01T18:00:00Z"), long_ago, now)
                .as_deref(),
            Some("belongs to run abc, kept until now (--include-kept)")
        );
        let other = SweepScope::Run {
            run_id: "abd".into(),
            include_kept: true,
        };
        assert_eq!(
            other.due(&kept("2030-01-01T18:00:00Z"), long_ago, now),
            None
        );
    }

    #[test]
    fn run_ids_from_the_command_line_are_checked() {
        let longest = "a".repeat(40);
        let too_long = "a".repeat(41);
        for good in ["abc", "20261125194500-gh123456789-1", "a", "x-1", &longest] {
            assert_eq!(check_run_id(good), Ok(()), "{good}");
        }
        let bad = [
            ("", "1 to 40"),
            (too_long.as_str(), "1 to 40"),
            ("ABC", "`A` is not allowed"),
            ("a_b", "`_` is not allowed"),
            ("a b", "` ` is not allowed"),
            ("-abc", "start and end"),
            ("abc-", "start and end"),
            ("abc-eastus", "`-eastus`"),
            ("abc-us-east-1", "`-us-east-1`"),
        ];
        for (id, needle) in bad {
            let err = check_run_id(id).expect_err(id);
            assert!(err.contains(needle), "{id}: {err}");
        }
        // What cloudtest generates passes its own check.
        assert_eq!(check_run_id("20261125194500-a1b2c3"), Ok(()));
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }
}
