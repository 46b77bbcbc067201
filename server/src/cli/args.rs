//! The command line: options every subcommand takes ([`Global`]) and the subcommand
//! ([`Command`], one variant per subcommand in `commands/`).

use std::path::PathBuf;

use clap::Parser;

pub use crate::commands::Command;

/// quiver: manage streams, tables, rules and plugins of a running quiverd over its REST API
#[derive(Debug, Parser)]
#[command(
    name = "quiver",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 success, 1 the server refused the request, \
2 usage error, 3 the server cannot be reached or failed."
)]
pub struct Cli {
    /// Options of every subcommand.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes, before or after it.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// quiverd's REST API: http://HOST:PORT or https://HOST:PORT
    #[arg(
        long,
        global = true,
        env = "QUIVER_HOST",
        default_value = "http://127.0.0.1:9081",
        value_name = "URL"
    )]
    pub host: String,

    /// Token sent as `Authorization: Bearer TOKEN` (quiverd --auth jwt or --auth-token-file)
    #[arg(
        long,
        global = true,
        env = "QUIVER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// PEM file of the CA that signed an https:// server's certificate (default: the
    /// system's roots)
    #[arg(long, global = true, value_name = "PEM")]
    pub ca: Option<PathBuf>,

    /// Print the server's JSON unchanged (text answers as {"message": TEXT}), for scripts
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up on a request after SECS seconds
    #[arg(long, global = true, default_value_t = 300, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: unique names, no argument shadowing a global one, valid defaults.
        super::Cli::command().debug_assert();
    }
}
