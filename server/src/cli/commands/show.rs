//! `show streams|tables|rules|plugins [TYPE]`: stream and table names one per line (as
//! eKuiper's CLI), rules and plugins as tables. An empty list prints nothing on stdout and says
//! so on stderr.

use serde_json::Value;

use super::{Ctx, PluginKind, Run};
use crate::error::CliError;
use crate::output::{Cell, status_style};

/// `show ...`
#[derive(Debug, clap::Args)]
pub struct Show {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Stream names
    Streams,
    /// Table names
    Tables,
    /// Rules with their name, status and tags
    Rules,
    /// Installed plugins, of one TYPE or all
    Plugins {
        /// source, sink or function (default: all three)
        #[arg(value_enum)]
        kind: Option<PluginKind>,
    },
}

/// The strings of a JSON array answer.
fn strings(value: &Value) -> Result<Vec<String>, CliError> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| CliError::BadAnswer(format!("expected a list, got {value}")))
}

impl Run for Show {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let out = ctx.out;
        match self.what {
            What::Streams | What::Tables => {
                let (path, noun) = match self.what {
                    What::Streams => ("/streams", "streams"),
                    _ => ("/tables", "tables"),
                };
                let Some(reply) = ctx.fetch(path).await? else {
                    return Ok(());
                };
                let names = strings(&reply.json()?)?;
                if names.is_empty() {
                    out.note(&format!("no {noun}"));
                }
                for name in names {
                    out.line(&name);
                }
            }
            What::Rules => {
                let Some(reply) = ctx.fetch("/rules").await? else {
                    return Ok(());
                };
                let rules = reply.json()?;
                let rules = rules
                    .as_array()
                    .ok_or_else(|| CliError::BadAnswer(format!("expected a list, got {rules}")))?;
                if rules.is_empty() {
                    out.note("no rules");
                    return Ok(());
                }
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let rows: Vec<Vec<Cell>> = rules
                    .iter()
                    .map(|r| {
                        let status = text(&r["status"]);
                        let tags = strings(&r["tags"]).unwrap_or_default().join(",");
                        vec![
                            Cell::plain(text(&r["id"])),
                            Cell::plain(text(&r["name"])),
                            Cell::styled(status.clone(), status_style(&status)),
                            Cell::plain(tags),
                        ]
                    })
                    .collect();
                out.table(&["ID", "NAME", "STATUS", "TAGS"], &rows);
            }
            What::Plugins { kind: Some(kind) } if out.json => {
                ctx.fetch(&format!("/plugins/{}", kind.segment())).await?;
            }
            What::Plugins { kind } => {
                let kinds = match kind {
                    Some(k) => vec![k],
                    None => PluginKind::ALL.to_vec(),
                };
                let mut all = serde_json::Map::new();
                let mut rows = Vec::new();
                let client = ctx.client()?;
                for kind in kinds {
                    let reply = client.get(&format!("/plugins/{}", kind.segment())).await?;
                    let value = reply.json()?;
                    for name in strings(&value)? {
                        rows.push(vec![Cell::plain(kind.name()), Cell::plain(name)]);
                    }
                    all.insert(kind.segment().to_string(), value);
                }
                if out.json {
                    // The three lists, keyed by their REST path segment.
                    out.line(&Value::Object(all).to_string());
                } else if rows.is_empty() {
                    out.note("no plugins");
                } else {
                    out.table(&["TYPE", "NAME"], &rows);
                }
            }
        }
        Ok(())
    }
}
