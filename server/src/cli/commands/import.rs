//! `import ruleset -f FILE` (`POST /ruleset/import`) and `import data -f FILE [--stop]
//! [--partial]` (`POST /data/import`): the file's content is sent as `{"content": ...}`, as
//! eKuiper's REST API takes it, and the server's answer printed.

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::client::Method;
use crate::error::CliError;
use crate::input::read_text;

/// `import ...`
#[derive(Debug, clap::Args)]
pub struct Import {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Streams, tables and rules: {"streams": {...}, "tables": {...}, "rules": {...}}
    Ruleset {
        /// The ruleset file (`-` for standard input)
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// Everything eKuiper's data export holds; replaces what the server has unless --partial
    Data {
        /// The data file (`-` for standard input)
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Stop the server after the import (eKuiper's stop=1), for plugin changes to take
        /// effect on its restart
        #[arg(short = 's', long)]
        stop: bool,
        /// Keep existing data and add or overwrite what the file holds (eKuiper's partial=1)
        #[arg(short = 'p', long)]
        partial: bool,
    },
}

impl Run for Import {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let (path, file) = match self.what {
            What::Ruleset { file } => ("/ruleset/import".to_string(), file),
            What::Data {
                file,
                stop,
                partial,
            } => {
                let query: Vec<&str> = [(stop, "stop=1"), (partial, "partial=1")]
                    .into_iter()
                    .filter_map(|(on, q)| on.then_some(q))
                    .collect();
                let path = if query.is_empty() {
                    "/data/import".to_string()
                } else {
                    format!("/data/import?{}", query.join("&"))
                };
                (path, file)
            }
        };
        let content = read_text(&file)?;
        let body = serde_json::json!({ "content": content }).to_string();
        let client = ctx.client()?;
        let label = format!("importing {}", file.display());
        let reply = ctx
            .out
            .waiting(&label, client.send(Method::POST, &path, Some(body)))
            .await?;
        // eKuiper answers a ruleset import with text and a data import with JSON.
        match reply.json() {
            Ok(_) if ctx.out.json => ctx.out.raw_json(&reply.body),
            Ok(value) => ctx.out.pretty_json(&value),
            Err(_) => ctx.out.message(&reply.text()),
        }
        Ok(())
    }
}
