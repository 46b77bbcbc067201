//! The httppull lookup (eKuiper's): a lookup table over an HTTP endpoint. Each batch of keys
//! is one request; the answer's rows (an object, or an array of objects) whose key field
//! equals a key are that key's rows, as eKuiper's `lookupJoin` matches them.
//!
//! Lookups are synchronous (they run inside a dataflow operator), so the source keeps a
//! one-thread tokio runtime of its own to drive its keep-alive client; the request timeout
//! (`timeout`, default 5 s) bounds how long a batch waits.

use bytes::Bytes;
use serde_json::Value;

use super::HttpPullConfig;
use super::source::{pull, pull_times};
use crate::ConnectorError;
use crate::http::{HttpClient, OAuth};
use crate::lookup::LookupSource;

/// Looks keys up in an HTTP endpoint's answer.
pub struct HttpPullLookup {
    config: HttpPullConfig,
    /// The table's key column, matched against each answer row's field of that name.
    key: String,
    client: HttpClient,
    /// The `oAuth` session, if configured.
    oauth: Option<OAuth>,
    /// Taken at drop: shut down without blocking, since the table may be dropped on an async
    /// thread, where dropping a runtime panics.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for HttpPullLookup {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for HttpPullLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPullLookup")
            .field("url", &self.config.request.url)
            .field("key", &self.key)
            .finish()
    }
}

impl HttpPullLookup {
    /// A lookup keyed by column `key`; it connects on the first lookup.
    pub fn new(config: HttpPullConfig, key: &str) -> Result<Self, ConnectorError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io_error(format!("starting the lookup's runtime: {e}")))?;
        Ok(HttpPullLookup {
            client: HttpClient::new(config.request.timeout, &config.request.tls),
            oauth: config.oauth.clone().map(OAuth::new),
            config,
            key: key.to_string(),
            runtime: Some(runtime),
        })
    }
}

impl LookupSource for HttpPullLookup {
    fn fetch(&self, keys: &[String]) -> Result<Vec<Vec<Bytes>>, ConnectorError> {
        let now = chrono::Utc::now().timestamp_millis();
        let times = pull_times(now, now);
        let runtime = self.runtime.as_ref().expect("taken only at drop");
        let body = runtime
            .block_on(pull(
                &self.config,
                &self.client,
                self.oauth.as_ref(),
                &times,
            ))
            .map_err(io_error)?;
        let rows = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => vec![o],
            Ok(Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            Ok(_) | Err(_) => {
                return Err(io_error(format!(
                    "the answer is not a JSON object or array: {}",
                    crate::http::excerpt(&body)
                )));
            }
        };
        let mut found: Vec<Vec<Bytes>> = vec![Vec::new(); keys.len()];
        for row in rows {
            let Some(value) = row.get(&self.key) else {
                continue;
            };
            // The key as the engine names it: a string as itself, anything else as JSON.
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            for (i, key) in keys.iter().enumerate() {
                if *key == text {
                    found[i].push(Bytes::from(Value::Object(row.clone()).to_string()));
                }
            }
        }
        Ok(found)
    }
}

fn io_error(reason: String) -> ConnectorError {
    ConnectorError::Io {
        connector: "httppull",
        reason,
    }
}
