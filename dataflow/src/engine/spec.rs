//! A rule as submitted: eKuiper's rule JSON fields.

use serde_json::Value;

/// One action of a rule: a sink type and its properties (`{"log": {}}` in rule JSON).
#[derive(Debug, Clone)]
pub struct Action {
    /// Sink type (`log`, `memory`, ...).
    pub sink_type: String,
    /// Its properties.
    pub props: Value,
}

/// A rule as submitted: eKuiper's rule JSON fields.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Unique id.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// The SELECT.
    pub sql: String,
    /// Where results go.
    pub actions: Vec<Action>,
    /// Rule options (`bufferLength`, ...), eKuiper's names.
    pub options: serde_json::Map<String, Value>,
}
