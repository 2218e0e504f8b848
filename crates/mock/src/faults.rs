//! Injected faults (`--fault OPERATION:KIND[:COUNT]`), shared by every emulator.
//!
//! OPERATION is an emulator's operation name (`CreateStack`, `DescribeStacks`,
//! `Deployments_CreateOrUpdate`, `healthz`, `SearchClients`, ...), or `aws:*`, `arm:*`,
//! `vr:*` for any call to that emulator, or `*` for any call at all.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A server error (`InternalFailure` / HTTP 500).
    Error,
    /// The answer comes only after [`FaultPlan::timeout_delay`]: the client must give up and
    /// retry on its own attempt timeout.
    Timeout,
    /// `Throttling` (AWS) or `429` with `Retry-After` (ARM, Velociraptor).
    Throttle,
    /// The connection is closed without a response.
    Reset,
    /// `200` with a body that does not parse.
    Malformed,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Error,
        FaultKind::Timeout,
        FaultKind::Throttle,
        FaultKind::Reset,
        FaultKind::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Timeout => "timeout",
            FaultKind::Throttle => "throttle",
            FaultKind::Reset => "reset",
            FaultKind::Malformed => "malformed",
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault kind `{s}`; known: error, timeout, throttle, reset, malformed"
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub operation: String,
    pub kind: FaultKind,
    /// How many matching calls fail (default 1).
    pub count: u32,
}

impl FromStr for FaultSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let (Some(first), Some(second)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "fault `{s}` must look like OPERATION:KIND[:COUNT], e.g. CreateStack:throttle:2"
            ));
        };
        // `aws:*` style operations contain a colon themselves.
        let (operation, kind_str, rest) = if second == "*" {
            let Some(kind) = parts.next() else {
                return Err(format!("fault `{s}` names no kind"));
            };
            (format!("{first}:*"), kind, parts.next())
        } else {
            (first.to_string(), second, parts.next())
        };
        if operation.is_empty() {
            return Err(format!("fault `{s}` names no operation"));
        }
        let kind = kind_str.parse()?;
        let count = match rest {
            None => 1,
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("fault `{s}`: COUNT must be a whole number above 0"))?,
        };
        Ok(FaultSpec {
            operation,
            kind,
            count,
        })
    }
}

/// The faults still to fire, and a count of every call each emulator served.
#[derive(Debug)]
pub struct FaultPlan {
    pending: Mutex<Vec<FaultSpec>>,
    calls: Mutex<BTreeMap<String, u32>>,
    /// While set, calls are counted but no fault fires (see [`FaultPlan::hold`]).
    held: AtomicBool,
    /// How long a `timeout` fault holds the response.
    pub timeout_delay: Duration,
}

/// Keeps the faults for later while it lives; dropping it lets them fire again.
#[must_use = "the faults fire again as soon as the hold is dropped"]
pub struct FaultHold<'a>(&'a FaultPlan);

impl Drop for FaultHold<'_> {
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::SeqCst);
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::new(Vec::new(), Duration::from_secs(10))
    }
}

impl FaultPlan {
    pub fn new(specs: Vec<FaultSpec>, timeout_delay: Duration) -> Self {
        Self {
            pending: Mutex::new(specs),
            calls: Mutex::new(BTreeMap::new()),
            held: AtomicBool::new(false),
            timeout_delay,
        }
    }

    pub fn add(&self, spec: FaultSpec) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(spec);
    }

    /// Keeps every pending fault, scenario faults included, for the calls after the hold:
    /// `run` holds them during its preflight, so the faults meant for the lifecycle (the
    /// `throttled` scenario's first calls, `--fault CreateStack:...`) still reach it.
    pub fn hold(&self) -> FaultHold<'_> {
        self.held.store(true, Ordering::SeqCst);
        FaultHold(self)
    }

    /// Records a call to `emulator`'s `operation` and returns the fault to inject, if any.
    /// Every emulator calls this once per request, before doing anything else.
    pub fn on_call(&self, emulator: &str, operation: &str) -> Option<FaultKind> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(format!("{emulator}:{operation}"))
            .or_insert(0) += 1;
        if self.held.load(Ordering::SeqCst) {
            return None;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let wildcard = format!("{emulator}:*");
        let qualified = format!("{emulator}:{operation}");
        let idx = pending.iter().position(|f| {
            f.count > 0
                && (f.operation == operation
                    || f.operation == qualified
                    || f.operation == wildcard
                    || f.operation == "*")
        })?;
        let spec = &mut pending[idx];
        spec.count -= 1;
        let kind = spec.kind;
        if spec.count == 0 {
            pending.remove(idx);
        }
        Some(kind)
    }

    /// Calls served so far, keyed `emulator:operation`.
    pub fn calls(&self) -> BTreeMap<String, u32> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let f: FaultSpec = "CreateStack:throttle:2".parse().expect("ok");
        assert_eq!(
            f,
            FaultSpec {
                operation: "CreateStack".into(),
                kind: FaultKind::Throttle,
                count: 2
            }
        );
        let f: FaultSpec = "aws:*:reset".parse().expect("ok");
        assert_eq!(f.operation, "aws:*");
        assert_eq!(f.count, 1);
        assert!("CreateStack".parse::<FaultSpec>().is_err());
        assert!("CreateStack:boom".parse::<FaultSpec>().is_err());
        assert!("CreateStack:error:0".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn faults_fire_their_count_then_stop() {
        let plan = FaultPlan::new(
            vec!["DescribeStacks:error:2".parse().expect("ok")],
            Duration::ZERO,
        );
        assert_eq!(plan.on_call("aws", "CreateStack"), None);
        assert_eq!(
            plan.on_call("aws", "DescribeStacks"),
            Some(FaultKind::Error)
        );
        assert_eq!(
            plan.on_call("aws", "DescribeStacks"),
            Some(FaultKind::Error)
        );
        assert_eq!(plan.on_call("aws", "DescribeStacks"), None);
        assert_eq!(plan.calls().get("aws:DescribeStacks"), Some(&3));
    }

    #[test]
    fn wildcards_match_only_their_emulator() {
        let plan = FaultPlan::new(
            vec!["arm:*:throttle:1".parse().expect("ok")],
            Duration::ZERO,
        );
        assert_eq!(plan.on_call("aws", "CreateStack"), None);
        assert_eq!(
            plan.on_call("arm", "ResourceGroups_Get"),
            Some(FaultKind::Throttle)
        );
    }

    #[test]
    fn held_faults_wait_for_the_calls_after_the_hold() {
        let plan = FaultPlan::new(
            vec!["aws:*:throttle:1".parse().expect("ok")],
            Duration::ZERO,
        );
        {
            let _hold = plan.hold();
            assert_eq!(plan.on_call("aws", "GetCallerIdentity"), None);
            assert_eq!(plan.on_call("aws", "ValidateTemplate"), None);
        }
        assert_eq!(
            plan.on_call("aws", "CreateStack"),
            Some(FaultKind::Throttle)
        );
        assert_eq!(plan.on_call("aws", "CreateStack"), None);
        assert_eq!(plan.calls().get("aws:ValidateTemplate"), Some(&1));
    }
}
