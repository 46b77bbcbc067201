//! `test rule -f FILE [--duration SECS]`: eKuiper's rule test from the terminal. The file is
//! `POST /ruletest`'s body (`{"id", "sql", "mockSource", "sinkProps"}`); the results are
//! printed one row per line as they arrive, until the server ends the test, `--duration`
//! passes or Ctrl-C, and the test is then deleted.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{Ctx, Run};
use crate::error::{CliError, usage};
use crate::input::read_text;
use crate::trial::{Trial, rows};

/// `test rule ...`
#[derive(Debug, clap::Args)]
pub struct Test {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Run a rule on mock rows (or its live streams) and print its results as they arrive
    Rule {
        /// The test: {"id", "sql", "mockSource": {stream: {"data", "interval", "loop"}},
        /// "sinkProps"} (`-` for standard input)
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Stop after this many seconds (default: when the test ends, or Ctrl-C)
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
}

impl Run for Test {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let What::Rule { file, duration } = self.what;
        let text = read_text(&file)?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("{}: not JSON: {e}", file.display())))?;
        let mut trial = Trial::open(ctx.client()?, &body).await?;
        let deadline = duration.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        let outcome = loop {
            let until = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = trial.next() => match message {
                    Some(Ok(message)) => print(ctx, &message),
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                },
                () = until => break Ok(()),
                _ = tokio::signal::ctrl_c() => break Ok(()),
            }
        };
        let closed = trial.close().await;
        outcome.and(closed)
    }
}

/// One result message: as sent under `--json`, else a row per line.
pub(super) fn print(ctx: &Ctx<'_>, message: &str) {
    if ctx.out.json {
        ctx.out.line(message.trim_end());
    } else {
        for row in rows(message) {
            ctx.out.line(&row);
        }
    }
}
