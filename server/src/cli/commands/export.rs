//! `export ruleset FILE` (`POST /ruleset/export`) and `export data FILE` (`GET /data/export`):
//! the server's document written to FILE unchanged (`-` for standard output), then a count of
//! what it holds.

use std::path::PathBuf;

use serde_json::Value;

use super::{Ctx, Run};
use crate::client::Method;
use crate::error::CliError;
use crate::input::write_file;

/// `export ...`
#[derive(Debug, clap::Args)]
pub struct Export {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Streams, tables and rules, in eKuiper's ruleset format
    Ruleset {
        /// Where to write it (`-` for standard output)
        file: PathBuf,
    },
    /// Everything eKuiper's data export holds
    Data {
        /// Where to write it (`-` for standard output)
        file: PathBuf,
    },
}

impl Run for Export {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let client = ctx.client()?;
        let (reply, file) = match self.what {
            What::Ruleset { file } => (
                client.send(Method::POST, "/ruleset/export", None).await?,
                file,
            ),
            What::Data { file } => (
                ctx.out
                    .waiting("exporting", client.get("/data/export"))
                    .await?,
                file,
            ),
        };
        let document = reply.json()?;
        write_file(&file, &reply.body)?;
        if file == std::path::Path::new("-") {
            return Ok(());
        }
        // Per section with entries: how many.
        let counts: serde_json::Map<String, Value> = document
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let n = v.as_object()?.len();
                (n > 0).then(|| (k.clone(), Value::from(n)))
            })
            .collect();
        if ctx.out.json {
            let summary =
                serde_json::json!({ "file": file.display().to_string(), "exported": counts });
            ctx.out.line(&summary.to_string());
        } else {
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let what = if parts.is_empty() {
                "nothing".to_string()
            } else {
                parts.join(", ")
            };
            ctx.out
                .line(&format!("exported {what} to {}", file.display()));
        }
        Ok(())
    }
}
