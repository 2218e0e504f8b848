//! ARM long-running operations, followed the way ARM documents them: poll the
//! `Azure-AsyncOperation` URL until its `status` is terminal, else poll `Location` until it
//! stops answering 202; honour `Retry-After` as the earliest next poll; otherwise back off
//! with the shared capped backoff, bounded by the phase deadline.
//!
//! Why this is not the generated client's: in `azure_mgmt_resources` 0.21 awaiting a
//! deployment's `create_or_update` re-sends the PUT on every poll and reads the wrong status
//! key, and awaiting a resource group `delete` returns before the group is gone. The crate
//! has no call for "GET this operation-status URL", so that one call is made here over
//! `reqwest` (the same client the generated pipeline uses); everything else stays on the
//! crate. Create (deployment PUT) and delete (resource group DELETE) share this module.

use std::sync::Mutex;
use std::time::Duration;

use cloudtest_core::{poll_until, Backoff, PhaseContext, PollStep};
use serde::Deserialize;
use tokio::time::Instant;

use crate::connection::{same_origin, ArmClients};
use crate::errors::AzureError;
use cloudtest_core::Strikes;

/// Where ARM said to watch an operation it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Monitor {
    AsyncOperation(url::Url),
    Location(url::Url),
    /// No header: the operation finished synchronously (or the caller must GET the
    /// resource itself).
    None,
}

/// The start of a long-running operation, read from the initial response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub monitor: Monitor,
    pub retry_after: Option<Duration>,
}

impl Started {
    /// Reads `Azure-AsyncOperation`, `Location` and `Retry-After`. Relative URLs are
    /// resolved against `base` (the ARM endpoint); absolute ones must name that endpoint's
    /// scheme, host and port, since the poller sends the bearer token to them.
    pub fn from_reqwest(
        base: &url::Url,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Self, AzureError> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self::from_values(
            base,
            get("azure-asyncoperation"),
            get("location"),
            get("retry-after"),
        )
    }

    pub fn from_values(
        base: &url::Url,
        async_operation: Option<&str>,
        location: Option<&str>,
        retry_after: Option<&str>,
    ) -> Result<Self, AzureError> {
        let resolve = |raw: &str, header: &str| {
            let url = base.join(raw.trim()).map_err(|e| AzureError::Malformed {
                operation: "long-running operation start".into(),
                why: format!("{header} header `{raw}` is not a URL: {e}"),
            })?;
            if same_origin(base, &url) {
                Ok(url)
            } else {
                Err(AzureError::UntrustedUrl {
                    url: url.as_str().to_string(),
                    endpoint: base.as_str().to_string(),
                })
            }
        };
        let monitor = match (async_operation, location) {
            (Some(a), _) if !a.trim().is_empty() => {
                Monitor::AsyncOperation(resolve(a, "Azure-AsyncOperation")?)
            }
            (_, Some(l)) if !l.trim().is_empty() => Monitor::Location(resolve(l, "Location")?),
            _ => Monitor::None,
        };
        Ok(Self {
            monitor,
            retry_after: retry_after.and_then(parse_retry_after),
        })
    }
}

/// `Retry-After` in seconds (ARM's form). HTTP-date values are ignored: the backoff applies.
pub(crate) fn parse_retry_after(raw: &str) -> Option<Duration> {
    raw.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The body of an `Azure-AsyncOperation` status resource.
#[derive(Debug, Deserialize)]
struct OperationStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<ArmError>,
}

/// ARM's error object (`{"error": {"code", "message"}}` or the bare inner object).
#[derive(Debug, Default, Deserialize, Clone)]
pub(crate) struct ArmError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: Option<ArmError>,
}

/// Reads ARM's error body, tolerating both the wrapped and the bare form.
pub(crate) fn error_from_body(body: &[u8]) -> ArmError {
    if let Ok(ErrorEnvelope { error: Some(e) }) = serde_json::from_slice::<ErrorEnvelope>(body) {
        return e;
    }
    serde_json::from_slice::<ArmError>(body).unwrap_or_default()
}

/// Follows `started` until the operation is terminal. `Ok(())` on success; a failed or
/// canceled operation is [`AzureError::OperationFailed`] with ARM's code and message.
pub(crate) async fn wait(
    clients: &ArmClients,
    cx: &PhaseContext,
    operation: &str,
    started: Started,
    backoff: Backoff,
) -> Result<(), AzureError> {
    let (url, via_async_operation) = match &started.monitor {
        Monitor::AsyncOperation(u) => (u.clone(), true),
        Monitor::Location(u) => (u.clone(), false),
        Monitor::None => return Ok(()),
    };
    let not_before: Mutex<Option<Instant>> =
        Mutex::new(started.retry_after.map(|d| Instant::now() + d));
    let deadline = cx.deadline();
    let strikes = Strikes::default();
    let result = poll_until(deadline, backoff, |attempt| {
        let url = url.clone();
        let (not_before, strikes) = (&not_before, &strikes);
        async move {
            let earliest = not_before.lock().map(|g| *g).unwrap_or(None);
            if let Some(at) = earliest {
                if Instant::now() < at {
                    tokio::time::sleep_until(at.min(deadline)).await;
                }
            }
            let step = poll_once(clients, operation, &url, via_async_operation).await;
            if let Ok(mut g) = not_before.lock() {
                *g = step.retry_after.map(|d| Instant::now() + d);
            }
            // A status body that does not parse is asked for again, a few times in a row.
            let step = match step.step {
                PollStep::Fail(e @ AzureError::Malformed { .. }) => strikes.step(e, |e| e),
                PollStep::Fail(e) => PollStep::Fail(e),
                other => {
                    strikes.clear();
                    other
                }
            };
            if let PollStep::Pending(seen) = &step {
                cx.progress(format!("{operation}: {seen} (poll {})", attempt + 1));
            }
            step
        }
    })
    .await;
    result
        .map(|((), _)| ())
        .map_err(|e| e.into_error(|o| AzureError::overdue(operation, o)))
}

struct Observed {
    step: PollStep<(), AzureError>,
    retry_after: Option<Duration>,
}

/// One GET of the status URL. Throttling (429) and transient 5xx are "not yet", with their
/// `Retry-After` honoured by the caller: no retry loop of its own.
async fn poll_once(
    clients: &ArmClients,
    operation: &str,
    url: &url::Url,
    via_async_operation: bool,
) -> Observed {
    let pending = |seen: String, retry_after| Observed {
        step: PollStep::Pending(seen),
        retry_after,
    };
    let fail = |e: AzureError| Observed {
        step: PollStep::Fail(e),
        retry_after: None,
    };
    let response = match clients
        .call(reqwest::Method::GET, url.clone(), operation)
        .await
    {
        Ok(r) => r,
        Err(e @ AzureError::Transport { .. }) => return pending(e.to_string(), None),
        Err(e) => return fail(e),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return pending(format!("HTTP {status}, body unreadable: {e}"), retry_after),
    };
    if status == 429 || status == 408 || (500..600).contains(&status) {
        return pending(
            format!("HTTP {status} (throttled or transient)"),
            retry_after,
        );
    }
    if !(200..300).contains(&status) {
        let err = error_from_body(&body);
        let conn = &clients.conn;
        return fail(AzureError::from_status(
            operation,
            &conn.credential_source,
            &conn.subscription_id,
            status,
            err.code.unwrap_or_else(|| "(no code)".into()),
            err.message.unwrap_or_else(|| "(no message)".into()),
        ));
    }
    if !via_async_operation {
        return if status == 202 {
            pending("HTTP 202 (in progress)".into(), retry_after)
        } else {
            Observed {
                step: PollStep::Done(()),
                retry_after: None,
            }
        };
    }
    let parsed: OperationStatus = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return fail(AzureError::Malformed {
                operation: operation.into(),
                why: format!("operation status body is not JSON: {e}"),
            })
        }
    };
    match parsed.status.to_ascii_lowercase().as_str() {
        "succeeded" => Observed {
            step: PollStep::Done(()),
            retry_after: None,
        },
        "failed" | "canceled" | "cancelled" => {
            let err = parsed.error.unwrap_or_default();
            fail(AzureError::OperationFailed {
                operation: operation.into(),
                status: parsed.status.clone(),
                code: err.code.unwrap_or_else(|| "(no code)".into()),
                message: err.message.unwrap_or_else(|| "(no message)".into()),
            })
        }
        "" => fail(AzureError::Malformed {
            operation: operation.into(),
            why: "operation status has no `status`".into(),
        }),
        other => pending(format!("status {other}"), retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("http://127.0.0.1:9/").expect("url")
    }

    #[test]
    fn async_operation_wins_over_location() {
        let s = Started::from_values(
            &base(),
            Some("http://127.0.0.1:9/op/1"),
            Some("http://127.0.0.1:9/loc/1"),
            Some("7"),
        )
        .expect("parse");
        assert!(matches!(s.monitor, Monitor::AsyncOperation(ref u) if u.path() == "/op/1"));
        assert_eq!(s.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn location_alone_and_relative_urls_resolve_against_the_endpoint() {
        let s =
            Started::from_values(&base(), None, Some("/operationresults/x"), None).expect("parse");
        assert_eq!(
            s.monitor,
            Monitor::Location(
                url::Url::parse("http://127.0.0.1:9/operationresults/x").expect("url")
            )
        );
        let none = Started::from_values(&base(), None, None, Some("soon")).expect("parse");
        assert_eq!(none.monitor, Monitor::None);
        assert_eq!(none.retry_after, None);
    }

    #[test]
    fn status_urls_on_another_host_scheme_or_port_are_refused() {
        let arm = url::Url::parse("https://management.azure.com/").expect("url");
        for (async_op, location) in [
            (Some("https://attacker.example/op/1"), None),
            (None, Some("https://attacker.example/loc/1")),
            (Some("http://management.azure.com/op/1"), None),
            (Some("https://management.azure.com:8443/op/1"), None),
            (Some("//attacker.example/op"), None),
        ] {
            let err = Started::from_values(&arm, async_op, location, None).unwrap_err();
            assert!(
                matches!(err, AzureError::UntrustedUrl { .. }),
                "{async_op:?} {location:?}: {err}"
            );
            assert!(err.to_string().contains("management.azure.com"), "{err}");
        }
        let ok = Started::from_values(
            &arm,
            Some("https://MANAGEMENT.azure.com/op/1?api-version=2021-04-01"),
            None,
            None,
        )
        .expect("same host, other case");
        assert!(matches!(ok.monitor, Monitor::AsyncOperation(_)));
    }

    #[test]
    fn error_bodies_in_both_shapes() {
        let wrapped = error_from_body(br#"{"error":{"code":"Conflict","message":"busy"}}"#);
        assert_eq!(wrapped.code.as_deref(), Some("Conflict"));
        let bare = error_from_body(br#"{"code":"X","message":"y"}"#);
        assert_eq!(bare.message.as_deref(), Some("y"));
        let junk = error_from_body(b"<html>");
        assert!(junk.code.is_none());
    }
}
