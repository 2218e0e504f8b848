//! Enrollment and version probes: poll `SearchClients` until the expected clients checked
//! in recently *and* were interrogated (their host name is filled), then check that each
//! reports the pinned agent version.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloudtest_core::{poll_until, EnrolledClient, EnrollmentFacts, PollStep};
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::errors::{secs, ProbeError};
use crate::progress::Progress;
use crate::protojson::{ApiClient, SearchClientsResponse};
use crate::settings::ProbeSettings;
use crate::target::Target;
use crate::tls::RequestFailure;

const SEARCH_CLIENTS: &str = "api/v1/SearchClients";

pub(crate) async fn probe_enrollment(
    target: &Target,
    settings: &ProbeSettings,
    deadline: Instant,
    progress: &Progress<'_>,
) -> Result<EnrollmentFacts, ProbeError> {
    let started = Instant::now();
    let expected = target.expected_clients;
    let url = target.gui.shown(SEARCH_CLIENTS);
    let polled = poll_until(deadline, settings.poll, |_| async {
        let step = match search_clients(target, &url).await {
            Err(SearchStep::Pending(seen)) => PollStep::Pending(seen),
            Err(SearchStep::Fail(e)) => PollStep::Fail(e),
            Ok(listed) => {
                let a = Assessment::of(listed, wall_clock_us(), settings.fresh_within);
                if a.ready.len() >= expected as usize {
                    PollStep::Done(a.ready)
                } else {
                    PollStep::Pending(a.summary(expected, settings.fresh_within))
                }
            }
        };
        if let PollStep::Pending(seen) = &step {
            progress.note(&format!("SearchClients: {seen}"));
        }
        step
    })
    .await;
    let (ready, _) = polled.map_err(|e| {
        e.into_error(|o| ProbeError::EnrollmentTimeout {
            expected,
            waited: o.waited,
            last: o.last_or("nothing").into(),
            attempts: o.attempts,
        })
    })?;
    let time_to_enroll = started.elapsed();
    if let Some(version) = &target.expected_version {
        check_versions(version, &ready)?;
    }
    progress.note(&format!(
        "{} client(s) enrolled and interrogated after {} ms",
        ready.len(),
        time_to_enroll.as_millis()
    ));
    Ok(EnrollmentFacts {
        time_to_enroll_ms: u64::try_from(time_to_enroll.as_millis()).unwrap_or(u64::MAX),
        expected_clients: expected,
        clients: ready.into_iter().map(enrolled).collect(),
    })
}

/// Why one `SearchClients` call did not produce a client list.
enum SearchStep {
    Pending(String),
    Fail(ProbeError),
}

async fn search_clients(target: &Target, url: &str) -> Result<Vec<ApiClient>, SearchStep> {
    let limit = (target.expected_clients.saturating_mul(2))
        .max(100)
        .to_string();
    let request = target
        .gui
        .get(SEARCH_CLIENTS)
        .query(&[("query", "all"), ("limit", limit.as_str())])
        .basic_auth(&target.user, Some(target.password.expose()));
    let response = match target.gui.send(request).await {
        Ok(r) => r,
        Err(RequestFailure::Tls(m)) => return Err(SearchStep::Fail(ProbeError::Tls(Box::new(m)))),
        Err(RequestFailure::Transport(why)) => return Err(SearchStep::Pending(why)),
    };
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(SearchStep::Fail(ProbeError::CredentialsRejected {
            url: url.to_string(),
            user: target.user.clone(),
            status: status.as_u16(),
        }));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(SearchStep::Pending(format!("HTTP {}", status.as_u16())));
    }
    if status != StatusCode::OK {
        return Err(SearchStep::Fail(ProbeError::UnexpectedStatus {
            url: url.to_string(),
            status: status.as_u16(),
            hint: "expected 200 from the GUI's SearchClients API",
        }));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| SearchStep::Pending(format!("reading the answer failed: {e}")))?;
    serde_json::from_slice::<SearchClientsResponse>(&body)
        .map(|r| r.items)
        .map_err(|e| SearchStep::Pending(format!("unparseable answer ({e})")))
}

/// Which listed clients count as enrolled, and a summary for the timeout message.
#[derive(Debug)]
pub(crate) struct Assessment {
    listed: usize,
    fresh: usize,
    /// Fresh and interrogated: these count.
    ready: Vec<ApiClient>,
    newest_check_in_age: Option<Duration>,
}

impl Assessment {
    pub fn of(listed: Vec<ApiClient>, now_us: u64, window: Duration) -> Self {
        let newest = listed
            .iter()
            .map(|c| c.last_seen_at)
            .filter(|t| *t > 0)
            .max();
        let newest_check_in_age = newest.map(|t| Duration::from_micros(now_us.saturating_sub(t)));
        let count = listed.len();
        let fresh: Vec<ApiClient> = listed
            .into_iter()
            .filter(|c| c.seen_within(now_us, window))
            .collect();
        let fresh_count = fresh.len();
        let ready = fresh.into_iter().filter(ApiClient::interrogated).collect();
        Self {
            listed: count,
            fresh: fresh_count,
            ready,
            newest_check_in_age,
        }
    }

    pub fn summary(&self, expected: u32, window: Duration) -> String {
        if self.listed == 0 {
            return format!("no clients listed (expected {expected})");
        }
        let newest = self
            .newest_check_in_age
            .map(|age| format!("; newest check-in {} ago", secs(age)))
            .unwrap_or_default();
        format!(
            "{} client(s) listed, {} checked in within the last {}, {} of those interrogated \
             (os_info.hostname set); expected {expected}{newest}",
            self.listed,
            self.fresh,
            secs(window),
            self.ready.len(),
        )
    }
}

/// Every client must report the pinned release (a leading `v` is ignored).
pub(crate) fn check_versions(expected: &str, clients: &[ApiClient]) -> Result<(), ProbeError> {
    let want = normalise_version(expected);
    let mismatched: Vec<(String, String)> = clients
        .iter()
        .filter(|c| normalise_version(&c.agent_information.version) != want)
        .map(|c| {
            let v = c.agent_information.version.trim();
            let shown = if v.is_empty() { "no version" } else { v };
            (c.client_id.clone(), shown.to_string())
        })
        .collect();
    if mismatched.is_empty() {
        Ok(())
    } else {
        Err(ProbeError::VersionMismatch {
            expected: want.to_string(),
            mismatched,
        })
    }
}

fn normalise_version(v: &str) -> &str {
    v.trim().trim_start_matches('v')
}

fn enrolled(c: ApiClient) -> EnrolledClient {
    let first_seen_at_us = c.first_seen_at_us();
    EnrolledClient {
        client_id: c.client_id,
        hostname: c.os_info.hostname,
        agent_version: c.agent_information.version,
        first_seen_at_us,
        last_seen_at_us: c.last_seen_at,
    }
}

fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protojson::{AgentInformation, Uname};

    const NOW: u64 = 2_000_000_000_000_000;
    const WINDOW: Duration = Duration::from_secs(600);

    fn client(id: &str, host: &str, version: &str, age: Duration) -> ApiClient {
        ApiClient {
            client_id: id.into(),
            agent_information: AgentInformation {
                version: version.into(),
                name: "velociraptor".into(),
            },
            os_info: Uname {
                hostname: host.into(),
                system: "linux".into(),
            },
            first_seen_at: NOW - 3_600_000_000,
            last_seen_at: NOW - age.as_micros() as u64,
        }
    }

    #[test]
    fn only_fresh_interrogated_clients_count() {
        let listed = vec![
            client("C.1", "a", "0.77.2", Duration::from_secs(5)),
            client("C.2", "", "0.77.2", Duration::from_secs(5)),
            client("C.3", "c", "0.77.2", Duration::from_secs(3600)),
        ];
        let a = Assessment::of(listed, NOW, WINDOW);
        assert_eq!(a.ready.len(), 1);
        assert_eq!(a.ready[0].client_id, "C.1");
        let s = a.summary(2, WINDOW);
        assert!(s.contains("3 client(s) listed, 2 checked in"), "{s}");
        assert!(s.contains("1 of those interrogated"), "{s}");
    }

    #[test]
    fn stale_clients_are_summarised_with_their_age() {
        let a = Assessment::of(
            vec![client("C.1", "a", "0.77.2", Duration::from_secs(3600))],
            NOW,
            WINDOW,
        );
        assert!(a.ready.is_empty());
        let s = a.summary(1, WINDOW);
        assert!(s.contains("0 checked in within the last 600.0s"), "{s}");
        assert!(s.contains("newest check-in 3600.0s ago"), "{s}");
        assert_eq!(
            Assessment::of(vec![], NOW, WINDOW).summary(1, WINDOW),
            "no clients listed (expected 1)"
        );
    }

    #[test]
    fn versions_must_match_ignoring_a_leading_v() {
        let ok = [client("C.1", "a", "0.77.2", Duration::ZERO)];
        check_versions("v0.77.2", &ok).expect("same release");
        let bad = [
            client("C.1", "a", "0.77.2", Duration::ZERO),
            client("C.2", "b", "0.76.3", Duration::ZERO),
        ];
        let err = check_versions("0.77.2", &bad).expect_err("mismatch");
        let m = err.to_string();
        assert!(
            m.contains("0.77.2") && m.contains("C.2 reports 0.76.3"),
            "{m}"
        );
        assert!(!m.contains("C.1"), "{m}");
    }
}
