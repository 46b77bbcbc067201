//! Lookup sources: external stores a lookup table (`CREATE TABLE ... WITH (KIND="lookup")`)
//! queries by key when a stream row joins it, and the cache settings every lookup table reads
//! from its profile's `lookup` object (eKuiper's `lookup: {cache, cacheTtl, cacheMissingKey}`).
//!
//! A lookup source is called from inside a dataflow operator, so it is synchronous and must
//! keep its timeouts short: a slow store slows the rule, it never loses rows.

use bytes::Bytes;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ConnectorError;
use crate::props::Props;

/// An external store answering key lookups (eKuiper's `LookupSource`).
pub trait LookupSource: Send + Sync + std::fmt::Debug {
    /// The raw JSON rows stored under each key, in the order of `keys` (an empty list for a
    /// key the store does not have). One call per batch of stream rows: implementations fetch
    /// all keys in one round trip. An error means the whole call failed (I/O, protocol).
    fn fetch(&self, keys: &[String]) -> Result<Vec<Vec<Bytes>>, ConnectorError>;
}

/// Entries a lookup cache holds when the profile does not say (`cacheSize`).
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// Cache settings of a lookup table, from the `lookup` object of its source profile.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupCacheConfig {
    /// `cache`: keep fetched rows (default false: every batch asks the store).
    pub enabled: bool,
    /// `cacheTtl`: how long a cached key is trusted (seconds, or a duration like "500ms");
    /// `None` (0 or absent) keeps entries until the size bound evicts them, as eKuiper does.
    pub ttl: Option<Duration>,
    /// `cacheMissingKey`: also remember that a key has no rows (default false).
    pub cache_missing_key: bool,
    /// `cacheSize` (Quiver only): the most keys kept; the oldest entries go first.
    pub max_entries: usize,
}

impl Default for LookupCacheConfig {
    fn default() -> Self {
        LookupCacheConfig {
            enabled: false,
            ttl: None,
            cache_missing_key: false,
            max_entries: DEFAULT_CACHE_SIZE,
        }
    }
}

impl LookupCacheConfig {
    /// Reads the `lookup` object of a source profile (absent: no cache).
    pub fn parse(props: &Map<String, Value>) -> Result<Self, ConnectorError> {
        let outer = Props::new("lookup", props);
        let Some((name, lookup)) = outer.get("lookup") else {
            return Ok(LookupCacheConfig::default());
        };
        let Value::Object(map) = lookup else {
            return Err(outer.error(format!("\"{name}\" must be an object, got {lookup}")));
        };
        let p = Props::new("lookup", map);
        p.check_keys(
            "lookup table",
            &["cache", "cachettl", "cachemissingkey", "cachesize"],
            &[],
            &[],
        );
        let ttl = match p.get("cachettl") {
            None => None,
            Some((name, v)) => {
                let d = duration_secs(v).ok_or_else(|| {
                    p.error(format!(
                        "\"{name}\" must be seconds or a duration like \"10s\", got {v}"
                    ))
                })?;
                Some(d).filter(|d| !d.is_zero())
            }
        };
        let max_entries = match p.get("cachesize") {
            None => DEFAULT_CACHE_SIZE,
            Some((name, v)) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| *n > 0)
                .ok_or_else(|| p.error(format!("\"{name}\" must be a positive count, got {v}")))?
                as usize,
        };
        Ok(LookupCacheConfig {
            enabled: p.boolean("cache")?.unwrap_or(false),
            ttl,
            cache_missing_key: p.boolean("cachemissingkey")?.unwrap_or(false),
            max_entries,
        })
    }
}

/// A TTL: a number of seconds, or a string of seconds or with a unit (`ms`, `s`, `m`, `h`).
fn duration_secs(v: &Value) -> Option<Duration> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| *f >= 0.0 && f.is_finite())
            .map(Duration::from_secs_f64),
        Value::String(s) => {
            let s = s.trim();
            let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
                (n, 0.001)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else if let Some(n) = s.strip_suffix('h') {
                (n, 3600.0)
            } else {
                (s, 1.0)
            };
            let f: f64 = num.trim().parse().ok()?;
            (f >= 0.0 && f.is_finite()).then(|| Duration::from_secs_f64(f * scale))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<LookupCacheConfig, ConnectorError> {
        LookupCacheConfig::parse(v.as_object().unwrap())
    }

    #[test]
    fn absent_lookup_object_means_no_cache() {
        assert_eq!(
            parse(serde_json::json!({"addr": "x"})).unwrap(),
            LookupCacheConfig::default()
        );
    }

    #[test]
    fn reads_ekuiper_lookup_object() {
        let c = parse(serde_json::json!({"lookup": {"cache": true, "cacheTtl": 600, "cacheMissingKey": true}}))
            .unwrap();
        assert!(c.enabled && c.cache_missing_key);
        assert_eq!(c.ttl, Some(Duration::from_secs(600)));
        let c = parse(
            serde_json::json!({"lookup": {"cache": "true", "cacheTtl": "250ms", "cacheSize": 5}}),
        )
        .unwrap();
        assert_eq!(c.ttl, Some(Duration::from_millis(250)));
        assert_eq!(c.max_entries, 5);
        assert_eq!(
            parse(serde_json::json!({"lookup": {"cacheTtl": 0}}))
                .unwrap()
                .ttl,
            None
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(serde_json::json!({"lookup": 1})).is_err());
        assert!(parse(serde_json::json!({"lookup": {"cacheTtl": "soon"}})).is_err());
        assert!(parse(serde_json::json!({"lookup": {"cacheSize": 0}})).is_err());
    }
}
