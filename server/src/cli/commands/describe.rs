//! `describe stream|table|rule|plugin`: a stream or table as its fields and options (as
//! eKuiper's CLI prints them), a rule or plugin as indented JSON.

use serde_json::Value;

use super::{Ctx, Run, Target};
use crate::error::CliError;
use crate::output::Cell;

/// `describe ...`
#[derive(Debug, clap::Args)]
pub struct Describe {
    #[command(subcommand)]
    target: Target,
}

impl Run for Describe {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let Some(reply) = ctx.fetch(&self.target.path()).await? else {
            return Ok(());
        };
        let value = reply.json()?;
        match self.target {
            Target::Stream { .. } | Target::Table { .. } => print_stream(ctx, &value),
            Target::Rule { .. } | Target::Plugin { .. } => ctx.out.pretty_json(&value),
        }
        Ok(())
    }
}

/// eKuiper's type name of a describe `FieldType` (`{"Type": code}`, arrays and structs nested).
fn type_name(field_type: &Value) -> String {
    if let Some(fields) = field_type.get("StreamFields").and_then(Value::as_array) {
        let inner: Vec<String> = fields
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["Name"].as_str().unwrap_or("?"),
                    type_name(&f["FieldType"])
                )
            })
            .collect();
        return format!("struct({})", inner.join(", "));
    }
    match field_type.get("Type").and_then(Value::as_u64) {
        Some(1) => "bigint".into(),
        Some(2) => "float".into(),
        Some(3) => "string".into(),
        Some(4) => "bytea".into(),
        Some(5) => "datetime".into(),
        Some(6) => "boolean".into(),
        Some(7) => format!("array({})", type_name(&field_type["FieldType"])),
        _ => field_type.to_string(),
    }
}

/// `Fields` as a table (or "schemaless"), then `KEY: value` per option.
fn print_stream(ctx: &Ctx<'_>, value: &Value) {
    match value["StreamFields"].as_array() {
        Some(fields) => {
            let rows: Vec<Vec<Cell>> = fields
                .iter()
                .map(|f| {
                    vec![
                        Cell::plain(f["Name"].as_str().unwrap_or("?")),
                        Cell::plain(type_name(&f["FieldType"])),
                    ]
                })
                .collect();
            ctx.out.table(&["FIELD", "TYPE"], &rows);
        }
        None => ctx.out.line("schemaless: no declared fields"),
    }
    if let Some(options) = value["Options"].as_object() {
        ctx.out.line("");
        for (key, v) in options {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            ctx.out.line(&format!("{key}: {shown}"));
        }
    }
}
