//! `query`: an interactive SQL prompt, like eKuiper's `kuiper query`. Each SELECT typed runs
//! as a rule test over the live streams it reads (`/ruletest` without mock rows) and its rows
//! print as they arrive, until Enter (or Ctrl-C); then the prompt returns. `exit` or the end
//! of input quits.

use std::io::Write as _;

use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

use super::test::print;
use super::{Ctx, Run};
use crate::error::CliError;
use crate::trial::Trial;

/// `query`
#[derive(Debug, clap::Args)]
pub struct Query {}

impl Run for Query {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        ctx.out
            .note("Type a SELECT and Enter to run it on the live streams; Enter again stops it; exit quits.");
        for n in 1u64.. {
            prompt();
            let Ok(Some(line)) = lines.next_line().await else {
                return Ok(());
            };
            let sql = line.trim().trim_end_matches(';').trim();
            match sql.to_ascii_lowercase().as_str() {
                "" => continue,
                "exit" | "quit" => return Ok(()),
                _ => {}
            }
            // One id per query of this process: tests of other users are not touched.
            let body = json!({
                "id": format!("cli-query-{}-{n}", std::process::id()),
                "sql": sql,
            });
            let mut trial = match Trial::open(ctx.client()?, &body).await {
                Ok(trial) => trial,
                // A bad query is the user's to fix at the prompt, not the end of the session.
                Err(e @ CliError::Refused { .. }) => {
                    ctx.out.error(&e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let outcome = loop {
                tokio::select! {
                    message = trial.next() => match message {
                        Some(Ok(message)) => print(ctx, &message),
                        Some(Err(e)) => break Err(e),
                        None => break Ok(()),
                    },
                    _ = lines.next_line() => break Ok(()),
                    _ = tokio::signal::ctrl_c() => break Ok(()),
                }
            };
            trial.close().await?;
            outcome?;
        }
        Ok(())
    }
}

/// The prompt, on stderr so stdout holds only rows.
fn prompt() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "quiver > ");
    let _ = err.flush();
}
