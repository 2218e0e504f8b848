//! Health probe: `/healthz` answers 200, then the GUI refuses anonymous requests (401) and
//! accepts the admin credentials (200), proving auth is on and the password works.

use cloudtest_core::{poll_until, HealthFacts, PollStep};
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::errors::ProbeError;
use crate::progress::Progress;
use crate::settings::ProbeSettings;
use crate::target::Target;
use crate::tls::RequestFailure;

const HEALTHZ: &str = "healthz";
/// Velociraptor serves the GUI app here, behind its authenticator.
const GUI_PAGE: &str = "app/index.html";

pub(crate) async fn probe_health(
    target: &Target,
    settings: &ProbeSettings,
    deadline: Instant,
    progress: &Progress<'_>,
) -> Result<HealthFacts, ProbeError> {
    let started = Instant::now();
    wait_healthz(target, settings, deadline, progress).await?;
    let time_to_healthy = started.elapsed();
    progress.note(&format!(
        "/healthz answered 200 after {} ms",
        time_to_healthy.as_millis()
    ));
    let (unauthenticated, authenticated) =
        check_gui_auth(target, settings, deadline, progress).await?;
    Ok(HealthFacts {
        time_to_healthy_ms: u64::try_from(time_to_healthy.as_millis()).unwrap_or(u64::MAX),
        gui_unauthenticated_status: unauthenticated,
        gui_authenticated_status: authenticated,
        gui_auth: "basic".to_string(),
        tls: "pinned-self-signed-ca".to_string(),
        ca_fingerprint: target.ca_fingerprint.clone(),
    })
}

async fn wait_healthz(
    target: &Target,
    settings: &ProbeSettings,
    deadline: Instant,
    progress: &Progress<'_>,
) -> Result<(), ProbeError> {
    let polled = poll_until(deadline, settings.poll, |_| async {
        let step = match target.frontend.send(target.frontend.get(HEALTHZ)).await {
            Ok(r) if r.status() == StatusCode::OK => PollStep::Done(()),
            Ok(r) => PollStep::Pending(format!("HTTP {}", r.status().as_u16())),
            Err(RequestFailure::Tls(m)) => PollStep::Fail(ProbeError::Tls(Box::new(m))),
            Err(RequestFailure::Transport(why)) => PollStep::Pending(why),
        };
        if let PollStep::Pending(seen) = &step {
            progress.note(&format!("/healthz: {seen}"));
        }
        step
    })
    .await;
    polled.map(|((), _)| ()).map_err(|e| {
        e.into_error(|o| ProbeError::HealthTimeout {
            url: target.frontend.shown(HEALTHZ),
            waited: o.waited,
            last: o.last_or("nothing").into(),
            attempts: o.attempts,
        })
    })
}

/// One GUI request's outcome as the auth check sees it.
enum GuiAnswer {
    Status(StatusCode),
    /// Throttled, a server error or a transport failure: worth another try.
    Transient(String),
}

async fn gui_answer(target: &Target, authenticated: bool) -> Result<GuiAnswer, ProbeError> {
    let mut request = target.gui.get(GUI_PAGE);
    if authenticated {
        request = request.basic_auth(&target.user, Some(target.password.expose()));
    }
    match target.gui.send(request).await {
        Ok(r) => {
            let status = r.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                Ok(GuiAnswer::Transient(format!("HTTP {}", status.as_u16())))
            } else {
                Ok(GuiAnswer::Status(status))
            }
        }
        Err(RequestFailure::Tls(m)) => Err(ProbeError::Tls(Box::new(m))),
        Err(RequestFailure::Transport(why)) => Ok(GuiAnswer::Transient(why)),
    }
}

/// Returns the (anonymous, authenticated) status codes once they are 401 and 200.
async fn check_gui_auth(
    target: &Target,
    settings: &ProbeSettings,
    deadline: Instant,
    progress: &Progress<'_>,
) -> Result<(u16, u16), ProbeError> {
    let url = target.gui.shown(GUI_PAGE);
    let polled = poll_until(deadline, settings.poll, |_| async {
        let step = match gui_step(target, &url).await {
            Ok(codes) => PollStep::Done(codes),
            Err(GuiStep::Pending(seen)) => PollStep::Pending(seen),
            Err(GuiStep::Fail(e)) => PollStep::Fail(e),
        };
        if let PollStep::Pending(seen) = &step {
            progress.note(&format!("GUI: {seen}"));
        }
        step
    })
    .await;
    polled.map(|(codes, _)| codes).map_err(|e| {
        e.into_error(|o| ProbeError::GuiTimeout {
            url,
            waited: o.waited,
            last: o.last_or("nothing").into(),
        })
    })
}

/// Why an auth check attempt did not finish.
enum GuiStep {
    Pending(String),
    Fail(ProbeError),
}

/// One anonymous and one authenticated request.
async fn gui_step(target: &Target, url: &str) -> Result<(u16, u16), GuiStep> {
    let anonymous = match gui_answer(target, false).await.map_err(GuiStep::Fail)? {
        GuiAnswer::Transient(seen) => {
            return Err(GuiStep::Pending(format!("{seen} without credentials")))
        }
        GuiAnswer::Status(s) if s == StatusCode::UNAUTHORIZED => s,
        GuiAnswer::Status(s) if s.is_success() || s.is_redirection() => {
            return Err(GuiStep::Fail(ProbeError::GuiAuthNotEnforced {
                url: url.to_string(),
                status: s.as_u16(),
            }))
        }
        GuiAnswer::Status(s) => {
            return Err(GuiStep::Fail(ProbeError::UnexpectedStatus {
                url: url.to_string(),
                status: s.as_u16(),
                hint: "expected 401 without credentials; is GuiUrl the Velociraptor GUI?",
            }))
        }
    };
    let authenticated = match gui_answer(target, true).await.map_err(GuiStep::Fail)? {
        GuiAnswer::Transient(seen) => {
            return Err(GuiStep::Pending(format!("{seen} with credentials")))
        }
        GuiAnswer::Status(s) if s == StatusCode::OK => s,
        GuiAnswer::Status(s) if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
            return Err(GuiStep::Fail(ProbeError::CredentialsRejected {
                url: url.to_string(),
                user: target.user.clone(),
                status: s.as_u16(),
            }))
        }
        GuiAnswer::Status(s) => {
            return Err(GuiStep::Fail(ProbeError::UnexpectedStatus {
                url: url.to_string(),
                status: s.as_u16(),
                hint: "expected 200 with the admin credentials",
            }))
        }
    };
    Ok((anonymous.as_u16(), authenticated.as_u16()))
}
