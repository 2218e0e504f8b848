//! `cloudtest`: a thin binary over the library crates. Parsing is in `args`, validation in
//! `plan`, one function per subcommand in `commands`, exit codes decided in `error` and
//! `cloudtest_core::ExitCode`.

mod args;
mod commands;
mod connect;
mod display;
mod error;
mod evidence;
mod plan;
mod redact;

mod signals;
mod templates;
mod wiring;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit(cloudtest_core::ExitCode::RequirementFailed);
        }
    };
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(code) => exit(code),
        Err(err) => {
            eprintln!("error: {}", redact::redact(&format!("{err:#}")));
            exit(error::exit_code_of(&err))
        }
    }
}

fn exit(code: cloudtest_core::ExitCode) -> std::process::ExitCode {
    std::process::ExitCode::from(code.code() as u8)
}

/// `RUST_LOG` decides verbosity (default: warnings); every line goes through the redactor.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| redact::RedactingStderr)
        .with_ansi(false)
        .try_init();
}
