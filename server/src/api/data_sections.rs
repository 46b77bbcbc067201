//! The data document's `Schema` and `connectionConfig` sections: the schema registry and the
//! named connections, exported with the ruleset and written back by an import before its
//! streams are checked, so streams and rules find the schemas and connections they name.
//!
//! - `Schema`: eKuiper's `<type>_<name>` keys, each an `Info` as `POST /schemas/{type}` takes
//!   it. A protobuf schema carries its `.proto` text (`content`); a custom one names its
//!   library by path (`soFile`, `file://` the stored `.so`), as eKuiper's export does.
//! - `connectionConfig`: eKuiper's `connections.<type>.<id>` keys, each the connection's
//!   properties. Secrets are exported as stored, as the rules' are: the document is a backup
//!   that must import again (guard it like the catalog file).
//!
//! An import creates or replaces the schemas and connections it names and keeps the others.
//! What it wrote is put back as it was ([`Undo`]) when the import fails later.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::schemas::{SchemaRequest, custom_library, read_body};
use super::{ApiError, State};
use crate::connections;
use crate::schemas::{SchemaBody, SchemaType, rule_schemas, stream_schema};
use quiver_connectors::codec::custom;

const SCHEMA_TYPES: [SchemaType; 2] = [SchemaType::Protobuf, SchemaType::Custom];

/// The `Schema` key of schema `name` of type `t`.
fn schema_key(t: SchemaType, name: &str) -> String {
    format!("{}_{name}", t.name())
}

/// The `connectionConfig` key of connection `id` of type `typ`.
fn connection_key(typ: &str, id: &str) -> String {
    format!("connections.{typ}.{id}")
}

/// The `Schema` section: every schema, or (`keep`) those the kept streams and rules use.
pub(super) fn export_schemas(
    state: &State,
    keep: Option<&Kept>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for t in SCHEMA_TYPES {
        let used = keep.map(|k| k.schemas(state, t)).transpose()?;
        for name in state.schemas.list(t)? {
            if used.as_ref().is_some_and(|u| !u.contains(&name)) {
                continue;
            }
            let info = state.schemas.get(t, &name)?;
            let entry = match t {
                SchemaType::Protobuf => serde_json::json!({
                    "type": t.name(), "name": name, "content": info.content,
                }),
                SchemaType::Custom => serde_json::json!({
                    "type": t.name(), "name": name, "soFile": format!("file://{}", info.so_file),
                }),
            };
            out.insert(schema_key(t, &name), entry.to_string());
        }
    }
    Ok(out)
}

/// The `connectionConfig` section: every connection's stored properties, or (`keep`) those
/// of the connections the kept streams and rules use.
pub(super) fn export_connections(
    state: &State,
    keep: Option<&Kept>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (id, typ, props) in state.catalog.connections()? {
        if let Some(keep) = keep {
            let users = connections::users(&state.engine, &state.catalog, &state.profiles, &id)?;
            if !users.iter().any(|u| keep.users.contains(u)) {
                continue;
            }
        }
        out.insert(connection_key(&typ, &id), props);
    }
    Ok(out)
}

/// What `POST /data/export` keeps: the rules asked for and the streams they read.
pub(super) struct Kept {
    /// `rule "r"` and `stream "s"`, as [`connections::users`] names users.
    users: BTreeSet<String>,
    rules: BTreeSet<String>,
    streams: BTreeSet<String>,
}

impl Kept {
    /// The rules `rules` and the streams and tables `streams`.
    pub(super) fn new(rules: &[String], streams: &BTreeSet<String>) -> Kept {
        let users = rules
            .iter()
            .map(|r| format!("rule \"{r}\""))
            .chain(streams.iter().map(|s| format!("stream \"{s}\"")))
            .collect();
        Kept {
            users,
            rules: rules.iter().cloned().collect(),
            streams: streams.clone(),
        }
    }

    /// The names of the schemas of type `t` the kept streams and rules use.
    fn schemas(&self, state: &State, t: SchemaType) -> Result<BTreeSet<String>, ApiError> {
        let mut used = BTreeSet::new();
        for (name, sql) in state.catalog.streams()? {
            if self.streams.contains(&name)
                && let Some((schema, _)) = stream_schema(t, &sql)
            {
                used.insert(schema);
            }
        }
        for rule in state.catalog.rules()? {
            if self.rules.contains(&rule.id) {
                used.extend(rule_schemas(t, &rule.json).into_iter().map(|(s, _)| s));
            }
        }
        Ok(used)
    }
}

/// A `Schema` entry: eKuiper's `Info`, the body of `POST /schemas/{type}` with its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaEntry {
    #[serde(rename = "type")]
    schema_type: String,
    name: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default, rename = "soFile")]
    so_file: Option<String>,
}

/// The schemas and connections an import writes, read and checked for shape.
#[derive(Default)]
pub(super) struct Sections {
    schemas: Vec<SchemaItem>,
    connections: Vec<ConnectionItem>,
}

/// A schema and its text or library bytes; `body` is `None` when the entry names the library
/// this registry stores for it already (a document exported here), which stays.
struct SchemaItem {
    key: String,
    t: SchemaType,
    name: String,
    body: Option<SchemaBody>,
}

/// A named connection.
struct ConnectionItem {
    key: String,
    id: String,
    typ: String,
    props: Map<String, Value>,
}

/// A failed item: its section, key and error.
pub(super) type ItemError = (&'static str, String, ApiError);

/// Reads the `Schema` and `connectionConfig` sections: every entry's shape, and the schema
/// files that `file`/`soFile` URLs name (fetched as `POST /schemas/{type}` fetches them).
pub(super) async fn read(
    state: &State,
    schemas: &BTreeMap<String, String>,
    conns: &BTreeMap<String, String>,
) -> Result<Sections, ItemError> {
    let mut out = Sections::default();
    for (key, text) in schemas {
        let fail = |m: String| ("Schema", key.clone(), ApiError::bad_request(m));
        let entry: SchemaEntry = serde_json::from_str(text).map_err(|e| {
            fail(format!(
                "Schema \"{key}\": {e}; expected {{\"type\", \"name\", \"content\" | \"file\" | \"soFile\"}}"
            ))
        })?;
        let t = SchemaType::parse(&entry.schema_type)
            .map_err(|e| fail(format!("Schema \"{key}\": {}", ApiError::from(e).message)))?;
        let request = SchemaRequest {
            name: entry.name,
            content: entry.content,
            file: entry.file,
            so_file: entry.so_file,
        };
        let name = request.name.clone();
        if *key != schema_key(t, &name) {
            return Err(fail(format!(
                "Schema \"{key}\": the key must be \"{}\" for schema {}.{name}",
                schema_key(t, &name),
                t.name()
            )));
        }
        let own = state
            .schemas
            .exists(t, &name)
            .then(|| state.schemas.get(t, &name));
        let kept = match (t, &request.so_file, own) {
            (SchemaType::Custom, Some(url), Some(Ok(info))) => {
                url.strip_prefix("file://") == Some(info.so_file.as_str())
            }
            _ => false,
        };
        let body = match kept {
            true => None,
            false => Some(
                read_body(state, t, &request)
                    .await
                    .map_err(|e| fail(format!("Schema \"{key}\": {}", e.message)))?,
            ),
        };
        out.schemas.push(SchemaItem {
            key: key.clone(),
            t,
            name,
            body,
        });
    }
    for (key, text) in conns {
        let secrets = crate::security::mask::secret_values(text);
        let fail = |m: String| {
            let e = ApiError::bad_request(m).scrubbed(&secrets);
            ("connectionConfig", key.clone(), e)
        };
        let (typ, id) = key
            .strip_prefix("connections.")
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(|| {
                fail(format!(
                    "connectionConfig \"{key}\": expected the key connections.<type>.<id>"
                ))
            })?;
        let props: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
            fail(format!(
                "connectionConfig \"{key}\": the properties must be a JSON object: {e}"
            ))
        })?;
        out.connections.push(ConnectionItem {
            key: key.clone(),
            id: id.to_string(),
            typ: typ.to_string(),
            props,
        });
    }
    Ok(out)
}

/// What an import replaced, to put back when it fails.
#[derive(Default)]
pub(super) struct Undo {
    /// Schemas written: their bytes before (`None`: new).
    schemas: Vec<(SchemaType, String, Option<SchemaBody>)>,
    /// Connections written: their type and properties before (`None`: new).
    connections: Vec<(String, Option<StoredConnection>)>,
}

/// A connection's type and properties.
type StoredConnection = (String, Map<String, Value>);

impl Sections {
    /// Writes the schemas (before the streams that name them are checked), noting in `undo`
    /// what each replaced.
    pub(super) fn apply_schemas(
        &mut self,
        state: &State,
        undo: &mut Undo,
    ) -> Result<(), ItemError> {
        for item in std::mem::take(&mut self.schemas) {
            let SchemaItem { key, t, name, body } = item;
            let Some(body) = body else {
                continue;
            };
            let fail = |e: ApiError| {
                let message = format!("Schema \"{key}\": {}", e.message);
                ("Schema", key.clone(), ApiError { message, ..e })
            };
            let before = stored_schema(state, t, &name).map_err(fail)?;
            state
                .schemas
                .check(t, &name, &body)
                .map_err(|e| fail(e.into()))?;
            let library = custom_library(&state.schemas, t, &name, &body).map_err(fail)?;
            state
                .schemas
                .store(t, &name, &body, before.is_none())
                .map_err(|e| fail(e.into()))?;
            undo.schemas.push((t, name.clone(), before));
            if let Some(library) = library {
                custom::register(&name, library);
            }
        }
        Ok(())
    }

    /// Writes the connections, noting in `undo` what each replaced. `new_only` (before the
    /// rules that name them are checked) creates the new ones and leaves the replacements for
    /// a second call once the rules they replace have stopped: a running rule's connection
    /// cannot be replaced.
    pub(super) fn apply_connections(
        &mut self,
        state: &State,
        undo: &mut Undo,
        new_only: bool,
    ) -> Result<(), ItemError> {
        let mut later = Vec::new();
        for item in std::mem::take(&mut self.connections) {
            let ConnectionItem {
                key,
                id,
                typ,
                props,
            } = item;
            let secrets =
                crate::security::mask::secret_values(&Value::Object(props.clone()).to_string());
            let fail = |e: ApiError| {
                let message = format!("connectionConfig \"{key}\": {}", e.message);
                let e = ApiError { message, ..e }.scrubbed(&secrets);
                ("connectionConfig", key.clone(), e)
            };
            let before = state
                .catalog
                .connections()
                .map_err(|e| fail(e.into()))?
                .into_iter()
                .find(|(i, _, _)| *i == id)
                .map(|(_, t, p)| (t, serde_json::from_str(&p).unwrap_or_default()));
            // The same connection stays as it is, dialed, for the rules that come back on it.
            if before.as_ref() == Some(&(typ.clone(), props.clone())) {
                continue;
            }
            if new_only && before.is_some() {
                later.push(ConnectionItem {
                    key,
                    id,
                    typ,
                    props,
                });
                continue;
            }
            put_released(state, &id, &typ, &props, before.is_some()).map_err(fail)?;
            undo.connections.push((id, before));
        }
        self.connections = later;
        Ok(())
    }
}

/// How long a replaced connection may stay held by the rules the import just removed: each
/// releases its hold when its source or sink task ends, shortly after the rule is deleted.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Creates or replaces connection `id`, waiting up to [`RELEASE_WAIT`] for removed rules to
/// let it go; a rule that still runs on it keeps it refused.
fn put_released(
    state: &State,
    id: &str,
    typ: &str,
    props: &Map<String, Value>,
    replace: bool,
) -> Result<(), ApiError> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        match connections::put(&state.engine, &state.catalog, id, typ, props, replace) {
            Err(e) if std::time::Instant::now() < deadline && is_held(&e) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other.map_err(Into::into),
        }
    }
}

/// True when the refusal is a running source's or sink's hold on the connection.
fn is_held(e: &connections::ConnectionError) -> bool {
    matches!(e, connections::ConnectionError::Invalid(m) if m.contains("is in use by"))
}

/// A stored schema's bytes, `None` when there is none.
fn stored_schema(state: &State, t: SchemaType, name: &str) -> Result<Option<SchemaBody>, ApiError> {
    if !state.schemas.exists(t, name) {
        return Ok(None);
    }
    let info = state.schemas.get(t, name)?;
    Ok(Some(match t {
        SchemaType::Protobuf => SchemaBody::Proto(info.content),
        SchemaType::Custom => SchemaBody::So(
            std::fs::read(&info.so_file)
                .map_err(|e| ApiError::internal(format!("reading {}: {e}", info.so_file)))?,
        ),
    }))
}

impl Undo {
    /// Puts back what the import wrote, newest first. Runs after the streams and rules of the
    /// failed import were removed, so nothing holds what it removes.
    pub(super) fn run(self, state: &State) {
        for (id, before) in self.connections.into_iter().rev() {
            let undone = match before {
                Some((typ, props)) => put_released(state, &id, &typ, &props, true),
                None => connections::delete(&state.engine, &state.catalog, &state.profiles, &id)
                    .map_err(Into::into),
            };
            if let Err(e) = undone {
                tracing::error!(connection = %id, "undoing a failed import: {}", crate::security::mask::mask_text(&e.message));
            }
        }
        for (t, name, before) in self.schemas.into_iter().rev() {
            let undone = match before {
                Some(body) => custom_library(&state.schemas, t, &name, &body)
                    .map_err(|e| e.message)
                    .and_then(|library| {
                        state
                            .schemas
                            .store(t, &name, &body, false)
                            .map_err(|e| e.to_string())?;
                        if let Some(library) = library {
                            custom::register(&name, library);
                        }
                        Ok(())
                    }),
                None => state
                    .schemas
                    .delete(t, &name)
                    .map_err(|e| e.to_string())
                    .map(|()| {
                        if t == SchemaType::Custom {
                            custom::unregister(&name);
                        }
                    }),
            };
            if let Err(e) = undone {
                tracing::error!(schema = %name, "undoing a failed import: {e}");
            }
        }
    }
}
