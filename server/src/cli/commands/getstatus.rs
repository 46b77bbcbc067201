//! `getstatus rule ID`: the state, then one table row per node of the rule with its main
//! counters; metrics of no node column (e.g. connection status) follow as `key: value`.
//! `--json` prints the server's flat status object.

use quiver_dataflow::metrics::names;
use serde_json::Value;

use super::{Ctx, RuleTarget, Run};
use crate::error::CliError;
use crate::ordered::Entries;
use crate::output::{Cell, status_style};

/// `getstatus rule ID`
#[derive(Debug, clap::Args)]
pub struct GetStatus {
    #[command(subcommand)]
    target: RuleTarget,
}

/// The table's metric columns, by metric name.
const COLUMNS: [(&str, &str); 6] = [
    ("IN", names::RECORDS_IN),
    ("OUT", names::RECORDS_OUT),
    ("EXCEPTIONS", names::EXCEPTIONS),
    ("LATENCY_US", names::PROCESS_LATENCY_US),
    ("BUFFER", names::BUFFER_LENGTH),
    ("LAST_EXCEPTION", names::LAST_EXCEPTION),
];

/// The status keys that are not metrics, with their labels.
const FIELDS: [(&str, &str); 3] = [
    ("lastStartTimestamp", "last start"),
    ("lastStopTimestamp", "last stop"),
    ("nextStartTimestamp", "next start"),
];

/// A metric value as a cell: strings unquoted.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds since the epoch as UTC time; 0 is "never".
fn time(value: &Value) -> String {
    match value.as_i64() {
        Some(0) | None => "-".into(),
        Some(ms) => chrono::DateTime::from_timestamp_millis(ms).map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
    }
}

impl Run for GetStatus {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let Some(reply) = ctx.fetch(&self.target.path("/status")).await? else {
            return Ok(());
        };
        let Entries(entries) = reply.parse()?;
        // Node name -> its metrics, nodes in first-seen order.
        let mut nodes: Vec<(String, Vec<(&str, Value)>)> = Vec::new();
        let mut others = Vec::new();
        for (key, value) in entries {
            match key.as_str() {
                "status" => {
                    let status = shown(&value);
                    ctx.out
                        .styled_line("status: ", &status, status_style(&status));
                    continue;
                }
                "message" => {
                    if value.as_str().is_some_and(|m| !m.is_empty()) {
                        ctx.out.line(&format!("message: {}", shown(&value)));
                    }
                    continue;
                }
                _ => {}
            }
            if let Some((_, label)) = FIELDS.iter().find(|(k, _)| *k == key) {
                ctx.out.line(&format!("{label}: {}", time(&value)));
                continue;
            }
            let metric = names::ALL
                .iter()
                .find(|m| key.len() > m.len() + 1 && key.ends_with(&format!("_{m}")));
            match metric {
                Some(m) => {
                    let node = &key[..key.len() - m.len() - 1];
                    match nodes.iter_mut().find(|(n, _)| n == node) {
                        Some((_, metrics)) => metrics.push((m, value)),
                        None => nodes.push((node.to_string(), vec![(m, value)])),
                    }
                }
                None => others.push((key, value)),
            }
        }
        if !nodes.is_empty() {
            ctx.out.line("");
            let mut headers = vec!["NODE"];
            headers.extend(COLUMNS.iter().map(|(h, _)| *h));
            let rows: Vec<Vec<Cell>> = nodes
                .iter()
                .map(|(node, metrics)| {
                    let mut row = vec![Cell::plain(node.clone())];
                    row.extend(COLUMNS.iter().map(|(_, name)| {
                        let value = metrics.iter().find(|(m, _)| m == name);
                        Cell::plain(value.map_or_else(String::new, |(_, v)| shown(v)))
                    }));
                    row
                })
                .collect();
            ctx.out.table(&headers, &rows);
        }
        if !others.is_empty() {
            ctx.out.line("");
            for (key, value) in others {
                ctx.out.line(&format!("{key}: {}", shown(&value)));
            }
        }
        Ok(())
    }
}
