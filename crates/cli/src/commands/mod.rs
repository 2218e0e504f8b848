//! One module per subcommand.

mod mock;
mod plan;
pub mod preflight;
mod prices;
mod probe;
mod report;
mod run;
mod sweep;

use anyhow::Result;
use cloudtest_core::ExitCode;

use crate::args::{Command, MockCommand, PricesCommand};

pub async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Preflight(args) => preflight::preflight(args).await,
        Command::Plan(args) => plan::plan(args).await,
        Command::Report(args) => report::report(args).await,
        Command::Probe(args) => probe::probe(args).await,
        Command::Mock {
            command:
                MockCommand::Serve {
                    scenario,
                    mock_latency,
                },
        } => mock::serve(scenario, mock_latency).await,
        Command::Sweep(args) => sweep::sweep(args).await,
        Command::Prices {
            command: PricesCommand::Refresh { out },
        } => prices::refresh(out).await,
    }
}
