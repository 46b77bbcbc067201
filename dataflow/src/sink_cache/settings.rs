//! eKuiper's sink cache properties (`enableCache`, `memoryCacheThreshold`, `maxDiskCache`,
//! `bufferPageSize`, `resendInterval`, `cleanCacheAtStop`, `resendAlterQueue`,
//! `resendPriority`, `resendIndicatorField`), read and checked the way eKuiper's `SinkConf`
//! checks them, except that a bad value is refused instead of being replaced by a default.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::EngineError;

/// The cache keys the host consumes; the connector never sees them.
pub const CACHE_KEYS: &[&str] = &[
    "enableCache",
    "memoryCacheThreshold",
    "maxDiskCache",
    "bufferPageSize",
    "resendInterval",
    "cleanCacheAtStop",
    "resendAlterQueue",
    "resendPriority",
    "resendIndicatorField",
    "resendDestination",
];

/// The most emissions one sink may hold in memory (`memoryCacheThreshold`): each can be a whole
/// result batch, so the memory tier is bounded like the sink's queue (`bufferLength`).
pub const MAX_MEMORY_CACHE: u64 = 1 << 20;

/// The most emissions one sink may hold on disk (`maxDiskCache`): a hundred times eKuiper's
/// default of 1,024,000, and far below what the page numbers can count.
pub const MAX_DISK_CACHE: u64 = 100 << 20;

/// The longest wait between two resent emissions (`resendInterval`): one hour.
pub const MAX_RESEND_INTERVAL_MS: u64 = 3_600_000;

/// Which queue goes first when cached emissions are resent beside live ones
/// (`resendAlterQueue`): eKuiper's `resendPriority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendPriority {
    /// `-1`: live results first; cached ones go when no live result waits.
    Live,
    /// `0`: both in turn.
    Equal,
    /// `1`: cached results first; live ones wait while the cache can be sent.
    Cache,
}

/// A sink's cache settings; present only when `enableCache` is true.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Emissions kept in memory before pages spill to disk.
    pub memory_threshold: usize,
    /// Emissions kept on disk at most; beyond, the oldest page is dropped and counted.
    pub max_disk: usize,
    /// Emissions per disk page (one write and one read each).
    pub page_size: usize,
    /// Wait between two resent emissions.
    pub resend_interval: Duration,
    /// Drop the cache when the rule stops instead of keeping it on disk for the next run.
    pub clean_at_stop: bool,
    /// Resend cached emissions beside live ones instead of queueing live ones behind them.
    pub alter_queue: bool,
    /// Who goes first under `alter_queue`.
    pub priority: ResendPriority,
    /// A boolean column set to true on resent rows, when named.
    pub indicator_field: Option<String>,
    /// Where resent results go instead (`resendDestination`: a topic or URL), when set.
    pub destination: Option<String>,
}

fn bad(key: &str, what: &str) -> EngineError {
    EngineError::Invalid(format!("sink property \"{key}\" {what}"))
}

fn flag(map: &Map<String, Value>, key: &str) -> Result<bool, EngineError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(bad(key, "must be true or false")),
    }
}

/// An integer property within `min..=max`, or `default` when absent.
fn int(
    map: &Map<String, Value>,
    key: &str,
    default: i64,
    min: i64,
    max: u64,
) -> Result<i64, EngineError> {
    let n = match map.get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| bad(key, "must be an integer"))?,
    };
    if n < min {
        return Err(bad(key, &format!("must be at least {min}, got {n}")));
    }
    if n > 0 && n as u64 > max {
        return Err(EngineError::Invalid(format!(
            "{key} {n} is above the limit of {max}"
        )));
    }
    Ok(n)
}

impl CacheSettings {
    /// Reads the cache properties of one action: `None` unless `enableCache` is true. The
    /// other cache keys are checked either way, so a typo never waits for the day the cache
    /// is switched on.
    pub fn parse(map: &Map<String, Value>) -> Result<Option<CacheSettings>, EngineError> {
        let enabled = flag(map, "enableCache")?;
        let page_size = int(map, "bufferPageSize", 256, 1, MAX_MEMORY_CACHE)? as usize;
        let memory_threshold =
            int(map, "memoryCacheThreshold", 1024, 0, MAX_MEMORY_CACHE)? as usize;
        let max_disk = int(map, "maxDiskCache", 1_024_000, 0, MAX_DISK_CACHE)? as usize;
        // eKuiper moves pages between the tiers whole, so both sizes are whole pages.
        for (key, n) in [
            ("memoryCacheThreshold", memory_threshold),
            ("maxDiskCache", max_disk),
        ] {
            if n < page_size || n % page_size != 0 {
                return Err(bad(
                    key,
                    &format!("must be a multiple of bufferPageSize ({page_size}), got {n}"),
                ));
            }
        }
        // Milliseconds or a duration text; either way within the one limit below.
        let resend_ms = match map.get("resendInterval") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) => quiver_compiler::duration::parse_config_millis(s)
                .ok_or_else(|| bad("resendInterval", "must be milliseconds or a duration"))?,
            Some(_) => int(map, "resendInterval", 0, 0, u64::MAX)? as u64,
        };
        if resend_ms > MAX_RESEND_INTERVAL_MS {
            return Err(EngineError::Invalid(format!(
                "resendInterval {resend_ms} is above the limit of {MAX_RESEND_INTERVAL_MS}"
            )));
        }
        let priority = match int(map, "resendPriority", 0, -1, 1)? {
            -1 => ResendPriority::Live,
            0 => ResendPriority::Equal,
            _ => ResendPriority::Cache,
        };
        let indicator_field = match map.get("resendIndicatorField") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("resendIndicatorField", "must be a field name")),
        };
        let destination = match map.get("resendDestination") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("resendDestination", "must be a topic or URL")),
        };
        let alter_queue = flag(map, "resendAlterQueue")?;
        if destination.is_some() && !alter_queue {
            // eKuiper sends to the destination from the alternate queue only.
            return Err(bad(
                "resendDestination",
                "needs \"resendAlterQueue\": true (resent results go out beside live ones)",
            ));
        }
        let settings = CacheSettings {
            memory_threshold,
            max_disk,
            page_size,
            resend_interval: Duration::from_millis(resend_ms),
            clean_at_stop: flag(map, "cleanCacheAtStop")?,
            alter_queue,
            priority,
            indicator_field,
            destination,
        };
        Ok(enabled.then_some(settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<CacheSettings>, EngineError> {
        CacheSettings::parse(v.as_object().expect("object"))
    }

    fn reason(v: Value) -> String {
        parse(v).expect_err("refused").to_string()
    }

    #[test]
    fn defaults_follow_ekuiper() {
        assert_eq!(parse(json!({})).unwrap(), None);
        let s = parse(json!({"enableCache": true})).unwrap().unwrap();
        assert_eq!(
            (s.memory_threshold, s.max_disk, s.page_size),
            (1024, 1_024_000, 256)
        );
        assert_eq!(s.resend_interval, Duration::ZERO);
        assert!(!s.clean_at_stop && !s.alter_queue);
        assert_eq!(s.priority, ResendPriority::Equal);
        let s = parse(
            json!({"enableCache": "true", "resendInterval": "2s", "resendPriority": -1,
            "bufferPageSize": 1, "memoryCacheThreshold": 1, "maxDiskCache": 3,
            "resendIndicatorField": "resent"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.resend_interval, Duration::from_secs(2));
        assert_eq!(s.priority, ResendPriority::Live);
        assert_eq!(s.indicator_field.as_deref(), Some("resent"));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        assert!(reason(json!({"enableCache": 1})).contains("enableCache"));
        assert!(reason(json!({"bufferPageSize": 0})).contains("bufferPageSize"));
        assert!(reason(json!({"memoryCacheThreshold": 1000})).contains("multiple of"));
        assert!(reason(json!({"maxDiskCache": 100})).contains("maxDiskCache"));
        assert!(reason(json!({"resendPriority": 2})).contains("resendPriority"));
        assert!(reason(json!({"resendInterval": -5})).contains("resendInterval"));
        assert!(reason(json!({"resendInterval": "forever"})).contains("resendInterval"));
        assert!(reason(json!({"maxDiskCache": 1u64 << 40})).contains("limit"));
        assert!(reason(json!({"resendDestination": "t/resent"})).contains("resendAlterQueue"));
        let s = parse(json!({"enableCache": true, "resendAlterQueue": true,
            "resendDestination": "t/resent"}))
        .unwrap()
        .unwrap();
        assert_eq!(s.destination.as_deref(), Some("t/resent"));
    }
}
