//! Connector properties as eKuiper reads them: names match case-insensitively, a null value
//! counts as absent, and errors name the property as the user wrote it. Each connector adds
//! its own readers (`impl Props` blocks beside its config) on top of these.

use std::time::Duration;

use quiver_compiler::duration::parse_config_millis;
use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::spec::{ConnectorSpec, Support};

#[cfg(test)]
thread_local! {
    /// The keys [`Props::get`] was asked for on this thread, for the property tables' test.
    static READS: std::cell::RefCell<std::collections::BTreeSet<String>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// The keys read on this thread since the last call (test builds only).
#[cfg(test)]
pub(crate) fn recorded_reads() -> std::collections::BTreeSet<String> {
    READS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

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

    /// The connector these properties configure.
    pub(crate) fn connector(&self) -> &'static str {
        self.connector
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
        #[cfg(test)]
        READS.with(|r| r.borrow_mut().insert(key.to_string()));
        self.entries
            .iter()
            .find(|(k, _, v)| k == key && !v.is_null())
            .map(|(_, name, v)| (*name, *v))
    }

    /// Warns about keys that are neither `used` nor `common` (handled by the runtime); keys in
    /// `ignored` are known but not supported by this build. `what` names the connector role in
    /// the warning (e.g. `mqtt source`). Names match case-insensitively.
    pub(crate) fn check_keys(&self, what: &str, used: &[&str], common: &[&str], ignored: &[&str]) {
        for (key, name, _) in &self.entries {
            if listed(used, key) || listed(common, key) {
                continue;
            }
            if listed(ignored, key) {
                tracing::warn!(
                    "{what}: property \"{name}\" is not supported by this build and is ignored"
                );
            } else {
                tracing::warn!("{what}: unknown property \"{name}\" is ignored");
            }
        }
    }

    /// [`Props::check_keys`] against a connector's property table: warns about a key the table
    /// does not list, or lists as ignored by this build.
    pub(crate) fn check_spec(&self, what: &str, spec: &ConnectorSpec) {
        self.check_keys(
            what,
            &spec.keys(Support::Read),
            &spec.keys(Support::Runtime),
            &spec.keys(Support::Ignored),
        );
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

impl<'a> Props<'a> {
    /// Refuses every key that is not in `used` (lower case) or one of eKuiper's common sink
    /// keys at its default; the error names the property as written. `what` names the
    /// connector role (`rest sink`).
    pub(crate) fn refuse_unknown_sink_keys(
        &self,
        what: &str,
        used: &[&str],
    ) -> Result<(), ConnectorError> {
        for spec in crate::spec::shared::SINK_DEFAULT_ONLY {
            let default = spec.default.unwrap_or("");
            let Some((name, value)) = self.get(&spec.name.to_ascii_lowercase()) else {
                continue;
            };
            let text = match value {
                Value::String(s) => s.trim().to_ascii_lowercase(),
                other => other.to_string(),
            };
            if text != default {
                return Err(self.error(format!(
                    "{what}: \"{name}\" {value} is not supported by this build (only {default})"
                )));
            }
        }
        // Known sink keys, besides the ones at their default checked above.
        let defaults = crate::spec::shared::SINK_DEFAULT_ONLY
            .iter()
            .map(|p| p.name);
        let used: Vec<&str> = used.iter().copied().chain(defaults).collect();
        self.refuse_unknown(what, &used)
    }

    /// Refuses every key that is not in `used` (any case), naming it as written.
    pub(crate) fn refuse_unknown(&self, what: &str, used: &[&str]) -> Result<(), ConnectorError> {
        match self
            .entries
            .iter()
            .find(|(key, _, value)| !value.is_null() && !listed(used, key))
        {
            Some((_, name, _)) => Err(self.error(format!("{what}: unknown property \"{name}\""))),
            None => Ok(()),
        }
    }

    /// A duration: milliseconds, or a duration text such as `"10s"`; 0 counts as absent.
    pub(crate) fn duration(&self, key: &str) -> Result<Option<Duration>, ConnectorError> {
        let Some((name, value)) = self.get(key) else {
            return Ok(None);
        };
        let bad = || {
            self.error(format!(
                "\"{name}\" must be milliseconds or a duration like \"10s\", got {value}"
            ))
        };
        let ms = match value {
            Value::Number(n) => n.as_u64().ok_or_else(bad)?,
            Value::String(s) => parse_config_millis(s).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }

    /// A non-negative integer property: a JSON number or its string form.
    pub(crate) fn uint(&self, key: &str) -> Result<Option<u64>, ConnectorError> {
        match self.get(key) {
            None => Ok(None),
            Some((name, value)) => value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!(
                        "\"{name}\" must be a non-negative integer, got {value}"
                    ))
                }),
        }
    }
}

/// Whether `key` (lower case) is one of `names` (any case).
fn listed(names: &[&str], key: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(key))
}

/// The properties of a rule action for connector `connector`: a JSON object (null: none).
pub(crate) fn action_props<'a>(
    connector: &'static str,
    props: &'a Value,
) -> Result<Props<'a>, ConnectorError> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    match props {
        Value::Object(map) => Ok(Props::new(connector, map)),
        Value::Null => Ok(Props::new(connector, &EMPTY)),
        other => Err(ConnectorError::Config {
            connector,
            reason: format!("the action's properties must be an object, got {other}"),
        }),
    }
}
