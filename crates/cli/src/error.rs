//! Errors the binary maps to exit codes; everything else is exit 1.

use cloudtest_core::ExitCode;

/// An error a user caused or must act on, with the exit code it means.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Usage, configuration or input error: nothing was deployed (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The monthly budget would be exceeded (exit 4).
    #[error("{0}")]
    Budget(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::UsageError,
            CliError::Budget(_) => ExitCode::BudgetExceeded,
        }
    }
}

/// Shorthand for a usage error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    CliError::Usage(msg.into()).into()
}

/// The exit code an error means.
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    match err.downcast_ref::<CliError>() {
        Some(e) => e.exit_code(),
        None => ExitCode::RequirementFailed,
    }
}
