//! Process edge: parse the command line, run one subcommand, print a one-line error.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use volsync_dr::cli::{Cli, Command};
use volsync_dr::cmd;

/// mimalloc gives freed memory back to the system; with the system allocator the process kept
/// the peak of its first pass over 10,000 PVCs for good (see Performance in the README).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => cmd::run::run(args).await,
        Command::Render(args) => cmd::render::run(args),
        Command::Certs(args) => cmd::certs::run(args),
        Command::Crd => cmd::crd::run(),
        Command::Status(args) => cmd::status::run(args).await,
        Command::Doctor(args) => cmd::doctor::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
