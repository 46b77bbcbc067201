//! `completions bash|zsh|fish`: the shell's completion script for `quiver`, generated from
//! the same argument definition, on stdout.

use clap::CommandFactory as _;

use super::{Ctx, Run};
use crate::args::Cli;
use crate::error::CliError;

/// `completions SHELL`
#[derive(Debug, clap::Args)]
pub struct Completions {
    /// The shell
    #[arg(value_enum)]
    shell: Shell,
}

/// The shells scripts are generated for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Run for Completions {
    async fn run(self, _ctx: &Ctx<'_>) -> Result<(), CliError> {
        let shell = match self.shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        };
        let mut out = std::io::stdout().lock();
        clap_complete::generate(shell, &mut Cli::command(), "quiver", &mut out);
        Ok(())
    }
}
