//! Named connections (eKuiper's `/connections`): validated with the connector's property
//! table, stored in the catalog, registered with the connectors so streams and sinks that
//! name one in `connectionSelector` share its client.
//!
//! Only `mqtt` connections can be shared in this build; eKuiper's other connection types
//! (`sql`, `http`, `websocket`, ...) are refused by name, never accepted and ignored.
//! A connection is in use while a stream's profile or a rule's action names it, or while a
//! running source or sink holds it: deleting it is then refused, naming the users; replacing
//! it (`PUT`) is refused while a running source or sink holds it, as eKuiper does.

use quiver_connectors::mqtt::MqttConnectionConfig;
use quiver_dataflow::Engine;
use serde_json::{Map, Value};

use crate::catalog::{Catalog, CatalogError};
use crate::profiles::Profiles;

/// The connection types this build shares.
pub const TYPES: &[&str] = &["mqtt"];

/// eKuiper's connection types this build does not share, refused by name.
const EKUIPER_ONLY: &[&str] = &[
    "nng",
    "httppush",
    "http",
    "websocket",
    "edgex",
    "sql",
    "kafka",
];

/// The longest connection id.
pub const MAX_ID: usize = 128;

/// The most connections that can be made.
pub const MAX_CONNECTIONS: usize = 256;

/// Why a connection request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The request is invalid (bad id, type or properties; in use).
    #[error("{0}")]
    Invalid(String),
    /// There is no such connection.
    #[error("{0}")]
    NotFound(String),
    /// A connection with that id exists.
    #[error("{0}")]
    Duplicate(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Whether `name` is 1 to `max` letters, digits, `_`, `-` or `.` (connection ids, confKeys).
pub fn is_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks a connection id: 1 to [`MAX_ID`] letters, digits, `_`, `-` or `.`.
pub fn check_id(id: &str) -> Result<(), ConnectionError> {
    if is_name(id, MAX_ID) {
        Ok(())
    } else {
        Err(ConnectionError::Invalid(format!(
            "connection id \"{id}\" must be 1 to {MAX_ID} letters, digits, '_', '-' or '.'"
        )))
    }
}

/// Validates a connection of type `typ` with `props`.
fn validate(
    typ: &str,
    props: &Map<String, Value>,
) -> Result<MqttConnectionConfig, ConnectionError> {
    match typ {
        "mqtt" => MqttConnectionConfig::parse(props)
            .map_err(|e| ConnectionError::Invalid(format!("mqtt connection: {e}"))),
        t if EKUIPER_ONLY.iter().any(|k| k.eq_ignore_ascii_case(t)) => {
            Err(ConnectionError::Invalid(format!(
                "connection type \"{t}\" is not supported by this build; only {} connections \
                 can be shared",
                quoted(TYPES)
            )))
        }
        t => Err(ConnectionError::Invalid(format!(
            "unknown connection type \"{t}\"; expected {}",
            quoted(TYPES)
        ))),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates connection `id` (or replaces it, `replace`), stores it and starts its client.
pub fn put(
    engine: &Engine,
    catalog: &Catalog,
    id: &str,
    typ: &str,
    props: &Map<String, Value>,
    replace: bool,
) -> Result<(), ConnectionError> {
    check_id(id)?;
    let config = validate(typ, props)?;
    let stored = catalog.connections()?;
    let exists = stored.iter().any(|(i, _, _)| i == id);
    match (exists, replace) {
        (true, false) => {
            return Err(ConnectionError::Duplicate(format!(
                "connection \"{id}\" already exists"
            )));
        }
        (false, true) => {
            return Err(ConnectionError::NotFound(format!("no connection \"{id}\"")));
        }
        (false, false) if stored.len() >= MAX_CONNECTIONS => {
            return Err(ConnectionError::Invalid(format!(
                "at most {MAX_CONNECTIONS} connections can be made; delete one first"
            )));
        }
        _ => {}
    }
    // The registry first: it refuses to replace a connection in use.
    engine
        .connectors()
        .mqtt_connections()
        .put(id, config, replace)
        .map_err(|e| ConnectionError::Invalid(reason(e)))?;
    catalog.put_connection(id, typ, &Value::Object(props.clone()).to_string())?;
    Ok(())
}

/// Deletes connection `id`, refused while it is in use.
pub fn delete(
    engine: &Engine,
    catalog: &Catalog,
    profiles: &Profiles,
    id: &str,
) -> Result<(), ConnectionError> {
    if !catalog.connections()?.iter().any(|(i, _, _)| i == id) {
        return Err(ConnectionError::NotFound(format!("no connection \"{id}\"")));
    }
    let users = users(engine, catalog, profiles, id)?;
    if !users.is_empty() {
        return Err(ConnectionError::Invalid(format!(
            "connection \"{id}\" is in use by {}; drop or change them first",
            users.join(", ")
        )));
    }
    engine
        .connectors()
        .mqtt_connections()
        .remove(id)
        .map_err(|e| ConnectionError::Invalid(reason(e)))?;
    catalog.delete_connection(id)?;
    Ok(())
}

/// The connector error's reason, without the `mqtt:` prefix the connectors add.
fn reason(e: quiver_connectors::ConnectorError) -> String {
    match e {
        quiver_connectors::ConnectorError::Config { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// The streams and rules that name connection `id`, as `stream "s"` and `rule "r"`.
pub fn users(
    engine: &Engine,
    catalog: &Catalog,
    profiles: &Profiles,
    id: &str,
) -> Result<Vec<String>, ConnectionError> {
    let names = |selector: Option<&Value>| {
        selector
            .and_then(Value::as_str)
            .map(str::trim)
            .is_some_and(|s| s == id || s.strip_prefix("mqtt.") == Some(id))
    };
    let mut users = Vec::new();
    let all = profiles.merged(catalog)?;
    let mut streams = engine.stream_names();
    streams.extend(engine.table_names());
    streams.sort();
    streams.dedup();
    for name in streams {
        let Some(def) = engine.stream(&name) else {
            continue;
        };
        if def.options.source_type != "mqtt" {
            continue;
        }
        let key = def.options.conf_key.as_deref().unwrap_or("default");
        let profile = all.get("mqtt").and_then(|p| p.get(key));
        if profile.is_some_and(|p| names(selector(p))) {
            users.push(format!("stream \"{name}\""));
        }
    }
    for rule in catalog.rules()? {
        let Ok(json) = serde_json::from_str::<Value>(&rule.json) else {
            continue;
        };
        let actions = json.get("actions").and_then(Value::as_array);
        let uses = actions.into_iter().flatten().any(|action| {
            action
                .get("mqtt")
                .and_then(Value::as_object)
                .is_some_and(|props| names(selector(props)))
        });
        if uses {
            users.push(format!("rule \"{}\"", rule.id));
        }
    }
    if users.is_empty()
        && let Some(status) = engine.connectors().mqtt_connections().status(id)
        && status.users > 0
    {
        users.push(format!("{} running source(s) or sink(s)", status.users));
    }
    Ok(users)
}

/// The `connectionSelector` of a profile or action (any case).
fn selector(props: &Map<String, Value>) -> Option<&Value> {
    props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("connectionSelector"))
        .map(|(_, v)| v)
}

/// Registers every stored connection with the connectors (at start, before streams and rules
/// are restored). A connection that no longer validates is logged and left out.
pub fn restore(engine: &Engine, catalog: &Catalog) -> Result<(), CatalogError> {
    for (id, typ, props) in catalog.connections()? {
        let props = match serde_json::from_str::<Map<String, Value>>(&props) {
            Ok(props) => props,
            Err(e) => {
                tracing::error!(connection = %id, "stored properties are not a JSON object: {e}");
                continue;
            }
        };
        let registered = validate(&typ, &props).and_then(|config| {
            engine
                .connectors()
                .mqtt_connections()
                .put(&id, config, true)
                .map_err(|e| ConnectionError::Invalid(reason(e)))
        });
        if let Err(e) = registered {
            tracing::error!(connection = %id, "cannot restore connection: {e}");
        }
    }
    Ok(())
}
