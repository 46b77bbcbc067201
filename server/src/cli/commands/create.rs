//! `create stream|table|rule|plugin`, in eKuiper CLI's forms:
//! `create stream NAME '(cols) WITH (...)'`, `create stream -f FILE` (the file holds
//! `NAME (cols) WITH (...)` or a whole `CREATE STREAM` statement), `create rule ID 'JSON'` or
//! `create rule ID -f FILE`, `create plugin sink NAME 'JSON'` or `-f FILE`.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{Ctx, PluginKind, Run};
use crate::client::Method;
use crate::error::{CliError, usage};
use crate::input::definition;

/// `create ...`
#[derive(Debug, clap::Args)]
pub struct Create {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// A stream: NAME '(id bigint, ...) WITH (DATASOURCE="...", ...)', or -f FILE
    Stream(Statement),
    /// A table: NAME '(id bigint, ...) WITH (DATASOURCE="...", ...)', or -f FILE
    Table(Statement),
    /// A rule: ID '{"sql": "...", "actions": [...]}', or ID -f FILE
    Rule(RuleDef),
    /// A plugin: TYPE NAME '{"file": "https://.../name.zip"}', or TYPE NAME -f FILE
    Plugin(PluginDef),
}

/// A stream or table definition.
#[derive(Debug, clap::Args)]
struct Statement {
    /// The name (or a whole `CREATE ...` statement, alone)
    name: Option<String>,
    /// What follows the name: the columns and the WITH options
    definition: Option<String>,
    /// Read the definition from FILE (`-` for standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

/// A rule.
#[derive(Debug, clap::Args)]
struct RuleDef {
    /// The rule's id (optional when the JSON has "id")
    id: Option<String>,
    /// The rule JSON
    #[arg(value_name = "JSON")]
    inline: Option<String>,
    /// Read the rule JSON from FILE (`-` for standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

/// A plugin.
#[derive(Debug, clap::Args)]
struct PluginDef {
    /// source, sink or function
    #[arg(value_enum)]
    kind: PluginKind,
    /// The plugin's name
    name: String,
    /// The install JSON: {"file": URL, "sha256": ...}
    #[arg(value_name = "JSON")]
    inline: Option<String>,
    /// Read the install JSON from FILE (`-` for standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl Run for Create {
    async fn run(self, ctx: &Ctx<'_>) -> Result<(), CliError> {
        let (path, body, waiting) = match self.what {
            What::Stream(s) => ("/streams".to_string(), s.body("STREAM")?, None),
            What::Table(s) => ("/tables".to_string(), s.body("TABLE")?, None),
            What::Rule(r) => ("/rules".to_string(), r.body()?, None),
            What::Plugin(p) => {
                let label = format!("installing {} plugin {}", p.kind.name(), p.name);
                let path = format!("/plugins/{}", p.kind.segment());
                (path, p.body()?, Some(label))
            }
        };
        let client = ctx.client()?;
        let request = client.send(Method::POST, &path, Some(body));
        let reply = match waiting {
            Some(label) => ctx.out.waiting(&label, request).await?,
            None => request.await?,
        };
        ctx.out.message(&reply.text());
        Ok(())
    }
}

/// Whether `text` is a whole `CREATE ...` statement.
fn is_create(text: &str) -> bool {
    text.trim_start()
        .get(..7)
        .is_some_and(|w| w.eq_ignore_ascii_case("create "))
}

impl Statement {
    /// `{"sql": "CREATE <KEYWORD> ..."}`.
    fn body(self, keyword: &str) -> Result<String, CliError> {
        let noun = keyword.to_lowercase();
        let given = definition(self.definition, self.file.as_deref())?;
        let sql = match (self.name, given) {
            (Some(name), None) if is_create(&name) => name,
            (Some(name), None) => {
                return Err(usage(format!(
                    "{noun} \"{name}\" needs a definition: create {noun} {name} \
                     '(...) WITH (...)' or -f FILE"
                )));
            }
            (Some(name), Some(def)) if is_create(&def) => {
                return Err(usage(format!(
                    "the definition is a whole CREATE statement; leave out the name \"{name}\""
                )));
            }
            (Some(name), Some(def)) => format!("CREATE {keyword} {name} {}", def.trim()),
            (None, Some(def)) if is_create(&def) => def,
            (None, Some(def)) => format!("CREATE {keyword} {}", def.trim()),
            (None, None) => {
                return Err(usage(format!(
                    "create {noun} needs NAME '(...) WITH (...)' or -f FILE"
                )));
            }
        };
        // eKuiper's files may end the statement with `;`.
        let sql = sql.trim().trim_end_matches(';').trim_end();
        Ok(serde_json::json!({ "sql": sql }).to_string())
    }
}

/// `text` as a JSON object; `what` names it in errors.
fn object(text: &str, what: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(usage(format!("the {what} must be a JSON object"))),
        Err(e) => Err(usage(format!("the {what} is not valid JSON: {e}"))),
    }
}

/// Puts `value` under `key` in the JSON object `text`, or checks that the one there is the
/// same. The text is sent unchanged when it already has it (the server keeps rules as sent).
fn with_key(text: String, key: &str, value: &str, what: &str) -> Result<String, CliError> {
    let mut map = object(&text, what)?;
    match map.get(key) {
        Some(Value::String(v)) if v == value => Ok(text),
        Some(other) => Err(usage(format!(
            "the {what}'s \"{key}\" is {other}, not \"{value}\" as given on the command line"
        ))),
        None => {
            map.insert(key.to_string(), Value::String(value.to_string()));
            Ok(Value::Object(map).to_string())
        }
    }
}

impl RuleDef {
    /// The rule JSON with its id.
    fn body(self) -> Result<String, CliError> {
        // `create rule '{...}'`: the only argument is the JSON.
        let (id, inline) = match (self.id, self.inline) {
            (Some(id), None) if id.trim_start().starts_with('{') => (None, Some(id)),
            other => other,
        };
        let json = definition(inline, self.file.as_deref())?.ok_or_else(|| {
            usage("create rule needs the rule JSON: create rule ID '{...}' or -f FILE")
        })?;
        match id {
            Some(id) => with_key(json, "id", &id, "rule JSON"),
            None => match object(&json, "rule JSON")?.get("id") {
                Some(Value::String(_)) => Ok(json),
                _ => Err(usage(
                    "the rule needs an id: create rule ID ..., or \"id\" in the JSON",
                )),
            },
        }
    }
}

impl PluginDef {
    /// The install JSON with the plugin's name.
    fn body(self) -> Result<String, CliError> {
        let json = definition(self.inline, self.file.as_deref())?.ok_or_else(|| {
            usage(format!(
                "create plugin needs the install JSON: create plugin {} {} \
                 '{{\"file\": \"https://.../{}.zip\"}}' or -f FILE",
                self.kind.name(),
                self.name,
                self.name
            ))
        })?;
        with_key(json, "name", &self.name, "plugin JSON")
    }
}
