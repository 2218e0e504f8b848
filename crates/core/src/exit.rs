//! Exit codes: the interface scripts and CI depend on. Decided in one place.

/// Documented in `cloudtest --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Every requirement that ran passed (skips allowed).
    Success,
    /// A requirement failed or errored.
    RequirementFailed,
    /// Usage, configuration or input error; nothing was deployed.
    UsageError,
    /// Resources remained after teardown: money and exposure.
    ResourcesRemain,
    /// The monthly budget would be exceeded; the live run was refused.
    BudgetExceeded,
    /// The preflight found a problem a live run would hit; nothing was deployed.
    PreflightFailed,
    /// Interrupted by SIGINT, after teardown.
    Interrupted,
    /// Terminated by SIGTERM, after teardown.
    Terminated,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::RequirementFailed => 1,
            ExitCode::UsageError => 2,
            ExitCode::ResourcesRemain => 3,
            ExitCode::BudgetExceeded => 4,
            ExitCode::PreflightFailed => 5,
            ExitCode::Interrupted => 130,
            ExitCode::Terminated => 143,
        }
    }
}

/// The text `--help` and the README show.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    every requirement that ran passed (skipped requirements allowed)
  1    a requirement failed or errored
  2    usage, configuration or input error (nothing deployed); also a live run that tested nothing
  3    resources remained after teardown (worst outcome: money and exposure)
  4    the monthly budget would be exceeded; the live run was refused
  5    preflight failed: nothing was deployed (`cloudtest preflight`, or `run` before it starts)
  130  interrupted by SIGINT (after teardown and leak check)
  143  terminated by SIGTERM (after teardown and leak check)";
