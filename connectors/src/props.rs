//! Connector properties as eKuiper reads them: names match case-insensitively, a null value
//! counts as absent, and errors name the property as the user wrote it. Each connector adds
//! its own readers (`impl Props` blocks beside its config) on top of these.

use serde_json::{Map, Value};

use crate::ConnectorError;

/// A connector's properties with lower-cased keys.
pub(crate) struct Props<'a> {
    /// The connector's name, for errors.
    connector: &'static str,
    entries: Vec<(String, &'a str, &'a Value)>,
}

impl<'a> Props<'a> {
    /// Reads `map` for connector `connector`.
    pub(crate) fn new(connector: &'static str, map: &'a Map<String, Value>) -> Self {
        Props {
            connector,
            entries: map
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), k.as_str(), v))
                .collect(),
        }
    }

    /// A configuration error of this connector.
    pub(crate) fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::Config {
            connector: self.connector,
            reason,
        }
    }

    /// The value of `key` (lower case) with the name as written; null counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<(&'a str, &'a Value)> {
        self.entries
            .iter()
            .find(|(k, _, v)| k == key && !v.is_null())
            .map(|(_, name, v)| (*name, *v))
    }

    /// Warns about keys that are neither `used` nor `common` (handled by the runtime); keys in
    /// `ignored` are known but not supported by this build. `what` names the connector role in
    /// the warning (e.g. `mqtt source`).
    pub(crate) fn check_keys(&self, what: &str, used: &[&str], common: &[&str], ignored: &[&str]) {
        for (key, name, _) in &self.entries {
            let key = key.as_str();
            if used.contains(&key) || common.contains(&key) {
                continue;
            }
            if ignored.contains(&key) {
                tracing::warn!(
                    "{what}: property \"{name}\" is not supported by this build and is ignored"
                );
            } else {
                tracing::warn!("{what}: unknown property \"{name}\" is ignored");
            }
        }
    }

    /// A string property.
    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, ConnectorError> {
        match self.get(key) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s.as_str())),
            Some((name, other)) => {
                Err(self.error(format!("\"{name}\" must be a string, got {other}")))
            }
        }
    }

    /// A boolean property: `true`/`false` or those words as a string.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, ConnectorError> {
        match self.get(key) {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(*b)),
            Some((_, Value::String(s))) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some((_, Value::String(s))) if s.trim().eq_ignore_ascii_case("false") => {
                Ok(Some(false))
            }
            Some((name, other)) => {
                Err(self.error(format!("\"{name}\" must be true or false, got {other}")))
            }
        }
    }
}
