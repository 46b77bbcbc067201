//! `quiver`: the command-line client of quiverd's REST API, in eKuiper CLI's forms
//! (`quiver create stream demo '(...) WITH (...)'`, `quiver show rules`, ...). See docs/cli.md.
//!
//! Each subcommand is one variant of [`args::Command`] and one file under `commands/`; this file
//! only parses the arguments, runs the command and turns its outcome into the exit code
//! ([`error::Exit`]).

mod args;
mod client;
mod commands;
mod error;
mod input;
mod ordered;
mod output;
mod trial;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and --version print to stdout and exit 0; anything else is a usage error (2).
        Err(e) => e.exit(),
    };
    let out = output::Output::new(cli.global.json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&format!("cannot start the async runtime: {e}"));
            return error::Exit::Unreachable.into();
        }
    };
    match runtime.block_on(cli.command.run(&cli.global, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e.to_string());
            e.exit().into()
        }
    }
}
