//! Deadlines: the `[deadlines]` table (one humantime duration per phase and hook, "20m",
//! "120s") and the limits a run uses, with where each came from.

use std::time::Duration;

use serde::Deserialize;

use crate::phase::Phase;
use crate::skip::Environment;

/// Overrides the health deadline, in whole seconds (the gap document's recommendation 1.1).
pub const HEALTH_TIMEOUT_ENV: &str = "CLOUDTEST_HEALTH_TIMEOUT";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlinesConfig {
    #[serde(with = "humantime_serde")]
    pub create: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub wait_ready: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub health: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub enrollment: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub teardown: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub leak_check: Option<Duration>,
    /// The provider's check of the server's identity through the cloud, before the probes.
    #[serde(with = "humantime_serde")]
    pub verify_server: Option<Duration>,
    /// Collecting failure evidence before teardown.
    #[serde(with = "humantime_serde")]
    pub evidence: Option<Duration>,
}

/// The two provider hooks that run beside the phases, each with its own short deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before the probes, inside the health phase.
    VerifyServer,
    /// Before teardown of a failed lifecycle.
    Evidence,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::VerifyServer => "verify_server",
            Hook::Evidence => "evidence",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One deadline per phase and hook, with where each came from (for timeout messages).
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseDeadlines {
    limits: [(Duration, String); 6],
    hooks: [(Duration, String); 2],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct DeadlineError {
    pub origin: String,
    pub message: String,
}

impl PhaseDeadlines {
    /// Real clouds: minutes. The hooks are short: they explain or guard, they do not deploy.
    pub fn live_defaults() -> Self {
        Self::from_secs(
            [20 * 60, 30 * 60, 120, 15 * 60, 30 * 60, 5 * 60],
            [3 * 60, 2 * 60],
            "default",
        )
    }

    /// Emulators: seconds, stretched by `--mock-latency` so slow mock runs still fit.
    pub fn mock_defaults(latency: Duration) -> Self {
        let stretch =
            |base: f64, delays: f64| (base + latency.as_secs_f64() * delays).ceil() as u64;
        let phases = [5.0, 10.0, 5.0, 5.0, 10.0, 5.0].map(|b| stretch(b, 6.0));
        let hooks = [3.0, 3.0].map(|b| stretch(b, 3.0));
        Self::from_secs(phases, hooks, "mock default")
    }

    fn from_secs(phases: [u64; 6], hooks: [u64; 2], origin: &str) -> Self {
        let limit = |s: u64| (Duration::from_secs(s), origin.to_string());
        Self {
            limits: phases.map(limit),
            hooks: hooks.map(limit),
        }
    }

    pub fn get(&self, phase: Phase) -> Duration {
        self.limits[phase as usize].0
    }

    pub fn origin(&self, phase: Phase) -> &str {
        &self.limits[phase as usize].1
    }

    pub fn set(&mut self, phase: Phase, limit: Duration, origin: impl Into<String>) {
        self.limits[phase as usize] = (limit, origin.into());
    }

    pub fn hook(&self, hook: Hook) -> Duration {
        self.hooks[hook as usize].0
    }

    pub fn hook_origin(&self, hook: Hook) -> &str {
        &self.hooks[hook as usize].1
    }

    pub fn set_hook(&mut self, hook: Hook, limit: Duration, origin: impl Into<String>) {
        self.hooks[hook as usize] = (limit, origin.into());
    }

    /// The longest a lifecycle can take: every phase and hook at its limit.
    pub fn total(&self) -> Duration {
        self.limits.iter().chain(&self.hooks).map(|(d, _)| *d).sum()
    }

    /// Applies the config file, then `CLOUDTEST_HEALTH_TIMEOUT`. Flags are applied by the
    /// caller afterwards with [`PhaseDeadlines::set`], so they win.
    pub fn apply(
        &mut self,
        config: &DeadlinesConfig,
        config_origin: &str,
        env: &dyn Environment,
    ) -> Result<(), DeadlineError> {
        let positive = |key: &str, d: Duration| {
            if d.is_zero() {
                Err(DeadlineError {
                    origin: config_origin.to_string(),
                    message: format!("deadlines.{key} must be longer than 0s"),
                })
            } else {
                Ok(d)
            }
        };
        let phases = [
            (Phase::Create, config.create),
            (Phase::WaitReady, config.wait_ready),
            (Phase::Health, config.health),
            (Phase::Enrollment, config.enrollment),
            (Phase::Teardown, config.teardown),
            (Phase::LeakCheck, config.leak_check),
        ];
        for (phase, value) in phases {
            if let Some(d) = value {
                let d = positive(phase.as_str(), d)?;
                self.set(phase, d, format!("deadlines.{phase} in {config_origin}"));
            }
        }
        for (hook, value) in [
            (Hook::VerifyServer, config.verify_server),
            (Hook::Evidence, config.evidence),
        ] {
            if let Some(d) = value {
                let d = positive(hook.as_str(), d)?;
                self.set_hook(hook, d, format!("deadlines.{hook} in {config_origin}"));
            }
        }
        if let Some(raw) = env.var(HEALTH_TIMEOUT_ENV) {
            let secs = parse_seconds(&raw).map_err(|message| DeadlineError {
                origin: HEALTH_TIMEOUT_ENV.to_string(),
                message,
            })?;
            self.set(Phase::Health, Duration::from_secs(secs), HEALTH_TIMEOUT_ENV);
        }
        Ok(())
    }
}

/// Whole seconds greater than zero, as `CLOUDTEST_HEALTH_TIMEOUT` takes them.
pub fn parse_seconds(raw: &str) -> Result<u64, String> {
    let t = raw.trim();
    match t.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n as u64),
        Ok(n) => Err(format!("must be a positive number of seconds, got {n}")),
        Err(_) => Err(format!(
            "must be a whole number of seconds (e.g. 300), got `{t}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skip::MapEnvironment;

    #[test]
    fn deadlines_apply_file_then_env() {
        let mut d = PhaseDeadlines::live_defaults();
        let cfg = DeadlinesConfig {
            health: Some(Duration::from_secs(90)),
            ..Default::default()
        };
        d.apply(&cfg, "cloudtest.toml", &MapEnvironment::default())
            .expect("ok");
        assert_eq!(d.get(Phase::Health), Duration::from_secs(90));
        d.apply(
            &cfg,
            "cloudtest.toml",
            &MapEnvironment::default().with(HEALTH_TIMEOUT_ENV, "300"),
        )
        .expect("ok");
        assert_eq!(d.get(Phase::Health), Duration::from_secs(300));
        assert_eq!(d.origin(Phase::Health), HEALTH_TIMEOUT_ENV);
        for bad in ["-5", "abc", "0", "1.5"] {
            let err = d
                .apply(
                    &cfg,
                    "cloudtest.toml",
                    &MapEnvironment::default().with(HEALTH_TIMEOUT_ENV, bad),
                )
                .unwrap_err();
            assert_eq!(err.origin, HEALTH_TIMEOUT_ENV, "{bad}");
        }
    }

    #[test]
    fn hook_deadlines_come_from_the_file_and_refuse_zero() {
        let mut d = PhaseDeadlines::live_defaults();
        assert_eq!(d.hook(Hook::Evidence), Duration::from_secs(120));
        let cfg = DeadlinesConfig {
            evidence: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        d.apply(&cfg, "c.toml", &MapEnvironment::default())
            .expect("ok");
        assert_eq!(d.hook(Hook::Evidence), Duration::from_secs(30));
        assert_eq!(
            d.hook_origin(Hook::Evidence),
            "deadlines.evidence in c.toml"
        );
        let zero = DeadlinesConfig {
            verify_server: Some(Duration::ZERO),
            ..Default::default()
        };
        let err = d
            .apply(&zero, "c.toml", &MapEnvironment::default())
            .unwrap_err();
        assert!(err.message.contains("deadlines.verify_server"), "{err}");
    }

    #[test]
    fn total_counts_every_phase_and_hook() {
        let d = PhaseDeadlines::live_defaults();
        let phases: u64 = 20 * 60 + 30 * 60 + 120 + 15 * 60 + 30 * 60 + 5 * 60;
        assert_eq!(d.total(), Duration::from_secs(phases + 3 * 60 + 2 * 60));
    }
}
