//! Lookup tables (`CREATE TABLE ... WITH (KIND="lookup", KEY="id")`, eKuiper's lookup tables).
//!
//! A lookup table holds no rows of its own: when stream rows join it, the join operator asks
//! [`LookupTable::lookup`] for the rows of their keys, once per batch with the distinct keys.
//! The answer comes from a bounded TTL cache (when the profile's `lookup.cache` is on) and, for
//! the misses, from one call to the store: the rows a memory sink published to the table's
//! topic (`TYPE="memory"`, kept by KEY), or an external store such as Redis, whose raw JSON is
//! decoded with the table's schema by the same decoder scan tables use.
//!
//! Errors are data: a value that does not decode fails only the stream rows with that key
//! (counted as exceptions by the join), and is never cached; a failed store call fails the
//! batch, the rule keeps running and the next batch asks again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use quiver_connectors::RawMessage;
use quiver_connectors::codec::json::JsonDecoder;
use quiver_connectors::lookup::{LookupCacheConfig, LookupSource};
use serde_json::Value;

use crate::tables::state::TableState;

/// What one key found: its rows (`None` when the store has none), or why they could not be read.
pub type KeyRows = Result<Option<RecordBatch>, String>;

/// Where a lookup table's rows live.
pub enum LookupStore {
    /// Rows published to a memory topic, kept by KEY (eKuiper's memory lookup table).
    Memory(Arc<TableState>),
    /// An external store; its raw rows are decoded with the table's schema.
    External {
        /// The store.
        source: Box<dyn LookupSource>,
        /// The table's JSON decoder.
        decoder: JsonDecoder,
    },
}

/// A lookup table: its store and the cache in front of it, shared by every rule joining it.
pub struct LookupTable {
    store: LookupStore,
    config: LookupCacheConfig,
    cache: Mutex<LookupCache>,
    /// Store calls made so far (one per batch with misses), for tests and status.
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LookupTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupTable")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LookupTable {
    /// A lookup table over `store` with the profile's cache settings.
    pub fn new(store: LookupStore, config: LookupCacheConfig) -> Self {
        LookupTable {
            store,
            config,
            cache: Mutex::new(LookupCache::default()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The memory table behind a memory lookup table.
    pub fn memory_state(&self) -> Option<&Arc<TableState>> {
        match &self.store {
            LookupStore::Memory(s) => Some(s),
            LookupStore::External { .. } => None,
        }
    }

    /// Calls made to the store so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Keys held in the cache now.
    pub fn cached_keys(&self) -> usize {
        self.cache.lock().expect("lookup cache lock").entries.len()
    }

    /// The rows of each of `keys` (distinct, non-null), in order. An error means the store
    /// could not be asked at all.
    pub fn lookup(&self, keys: &[Value]) -> Result<Vec<KeyRows>, String> {
        let now = Instant::now();
        let mut found: Vec<Option<KeyRows>> = vec![None; keys.len()];
        if self.config.enabled {
            let mut cache = self.cache.lock().expect("lookup cache lock");
            for (slot, key) in found.iter_mut().zip(keys) {
                if let Some(rows) = cache.get(&key.to_string(), now, &self.config) {
                    *slot = Some(Ok(rows));
                }
            }
        }
        let misses: Vec<usize> = (0..keys.len()).filter(|i| found[*i].is_none()).collect();
        if !misses.is_empty() {
            let fetched = self.fetch(&misses.iter().map(|i| &keys[*i]).collect::<Vec<_>>())?;
            let mut cache = self
                .config
                .enabled
                .then(|| self.cache.lock().expect("lookup cache lock"));
            for (i, rows) in misses.into_iter().zip(fetched) {
                if let (Some(cache), Ok(r)) = (cache.as_mut(), &rows)
                    && (r.is_some() || self.config.cache_missing_key)
                {
                    cache.put(keys[i].to_string(), r.clone(), now, &self.config);
                }
                found[i] = Some(rows);
            }
        }
        Ok(found
            .into_iter()
            .map(|f| f.expect("every key is a hit or was fetched"))
            .collect())
    }

    fn fetch(&self, keys: &[&Value]) -> Result<Vec<KeyRows>, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        match &self.store {
            // Memory tables key rows by the key's JSON text (see `TableState::apply`).
            LookupStore::Memory(state) => {
                Ok(keys.iter().map(|k| Ok(state.get(&k.to_string()))).collect())
            }
            LookupStore::External { source, decoder } => {
                let texts: Vec<String> = keys.iter().map(|k| store_key(k)).collect();
                let raw = source.fetch(&texts).map_err(|e| e.to_string())?;
                if raw.len() != texts.len() {
                    return Err(format!(
                        "the lookup source answered {} keys for {} asked",
                        raw.len(),
                        texts.len()
                    ));
                }
                let topic: Arc<str> = Arc::from("");
                Ok(raw
                    .into_iter()
                    .zip(&texts)
                    .map(|(payloads, key)| {
                        if payloads.is_empty() {
                            return Ok(None);
                        }
                        let messages: Vec<RawMessage> = payloads
                            .into_iter()
                            .map(|p| RawMessage::new(p, topic.clone()))
                            .collect();
                        let decoded = decoder.decode(&messages);
                        if let Some(first) = decoded.errors.first() {
                            return Err(format!("malformed value of key \"{key}\": {first}"));
                        }
                        Ok(crate::batch::concat_results(&decoded.batches))
                    })
                    .collect())
            }
        }
    }
}

/// The key as the store names it (eKuiper formats the value with `%v`): a string as itself,
/// anything else as its JSON text.
fn store_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A cached answer.
struct Entry {
    rows: Option<RecordBatch>,
    stored: Instant,
    seq: u64,
}

/// Keys' rows with their age, bounded by `max_entries`: the oldest insertions go first.
#[derive(Default)]
struct LookupCache {
    entries: HashMap<String, Entry>,
    /// Insertion order (sequence, key); an item whose sequence no longer matches its entry
    /// was replaced and is skipped.
    order: VecDeque<(u64, String)>,
    seq: u64,
}

impl LookupCache {
    /// The cached rows of `key` when still fresh; `Some(None)` is a cached missing key.
    fn get(
        &mut self,
        key: &str,
        now: Instant,
        config: &LookupCacheConfig,
    ) -> Option<Option<RecordBatch>> {
        let e = self.entries.get(key)?;
        if config
            .ttl
            .is_some_and(|ttl| now.duration_since(e.stored) >= ttl)
        {
            self.entries.remove(key);
            return None;
        }
        Some(e.rows.clone())
    }

    fn put(
        &mut self,
        key: String,
        rows: Option<RecordBatch>,
        now: Instant,
        config: &LookupCacheConfig,
    ) {
        self.seq += 1;
        let seq = self.seq;
        self.order.push_back((seq, key.clone()));
        self.entries.insert(
            key,
            Entry {
                rows,
                stored: now,
                seq,
            },
        );
        while self.entries.len() > config.max_entries {
            let Some((s, k)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&k).is_some_and(|e| e.seq == s) {
                self.entries.remove(&k);
            }
        }
        // Replaced and expired keys leave stale items behind: drop them before the queue
        // outgrows the map, so memory stays bounded by the entry count.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(s, k)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn batch(v: i64) -> RecordBatch {
        let a: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![v]));
        RecordBatch::try_from_iter(vec![("v", a)]).unwrap()
    }

    #[test]
    fn cache_honours_ttl_and_size() {
        let config = LookupCacheConfig {
            enabled: true,
            ttl: Some(Duration::from_secs(10)),
            cache_missing_key: true,
            max_entries: 2,
        };
        let mut c = LookupCache::default();
        let t0 = Instant::now();
        c.put("a".into(), Some(batch(1)), t0, &config);
        c.put("b".into(), None, t0, &config);
        assert!(c.get("a", t0, &config).is_some());
        assert_eq!(c.get("b", t0, &config), Some(None));
        assert!(c.get("a", t0 + Duration::from_secs(10), &config).is_none());
        c.put("c".into(), Some(batch(3)), t0, &config);
        c.put("d".into(), Some(batch(4)), t0, &config);
        assert_eq!(c.entries.len(), 2);
        assert!(c.get("b", t0, &config).is_none(), "oldest evicted first");
        for i in 0..1000 {
            c.put("c".into(), Some(batch(i)), t0, &config);
        }
        assert!(c.order.len() <= 2 * c.entries.len() + 64);
    }

    #[test]
    fn store_keys_are_plain_text() {
        assert_eq!(store_key(&Value::from("a")), "a");
        assert_eq!(store_key(&Value::from(1)), "1");
        assert_eq!(store_key(&Value::from(1.5)), "1.5");
    }
}
