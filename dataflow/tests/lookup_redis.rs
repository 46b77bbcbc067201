//! Redis lookup tables against the real Redis on 127.0.0.1:6379 (database 1): INNER and LEFT
//! joins, missing keys, list values, the TTL cache and its missing-key option, and per-row
//! errors (a malformed value, an unreachable server) counted as exceptions while the rule
//! keeps running. Every test writes keys under its own prefix and deletes them at the end.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::memory::{MemoryMessage, MemoryPayload};
use quiver_dataflow::Engine;
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

const DB: i64 = 1;

/// Keys of one test, deleted when it ends (even when it fails).
struct Keys {
    prefix: String,
    conn: redis::Connection,
}

impl Keys {
    fn new(test: &str) -> Keys {
        let client = redis::Client::open(format!("redis://127.0.0.1:6379/{DB}")).unwrap();
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("Redis on 127.0.0.1:6379");
        Keys {
            prefix: format!("quiver-lookup-test:{test}:{}:", std::process::id()),
            conn,
        }
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn set(&mut self, k: &str, value: &str) {
        let key = self.key(k);
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut self.conn)
            .unwrap();
    }

    fn push(&mut self, k: &str, values: &[&str]) {
        let key = self.key(k);
        let _: () = redis::cmd("RPUSH")
            .arg(key)
            .arg(values)
            .query(&mut self.conn)
            .unwrap();
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut self.conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut self.conn);
        }
    }
}

/// An engine with a memory stream `demo` and the Redis lookup table `devices` whose profile
/// is `profile`, plus the rule `sql` writing to a memory topic it returns a receiver of.
fn setup(
    rt: &tokio::runtime::Runtime,
    profile: Value,
    sql: &str,
) -> (Engine, Receiver<MemoryMessage>) {
    let engine = common::engine(rt, 2);
    let mut redis = HashMap::new();
    redis.insert(
        "test".to_string(),
        profile.as_object().expect("profile object").clone(),
    );
    engine.set_source_profiles(HashMap::from([("redis".to_string(), redis)]));
    engine
        .create_stream(
            r#"CREATE STREAM demo (device STRING, temperature BIGINT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#,
        )
        .unwrap();
    engine
        .create_stream(&format!(
            r#"CREATE TABLE devices (id STRING, location STRING, alarm BIGINT) WITH (DATASOURCE="{DB}", TYPE="redis", KIND="lookup", KEY="id", CONF_KEY="test")"#
        ))
        .unwrap();
    let out = common::memory_rule(&engine, "lookup", sql);
    (engine, out)
}

async fn send(engine: &Engine, row: Value) {
    engine
        .connectors()
        .memory()
        .publish_json("demo", row.to_string().into_bytes())
        .await;
}

/// The next result row, waiting up to 10 s.
async fn next_row(out: &mut Receiver<MemoryMessage>) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(10), out.recv())
        .await
        .expect("a result within 10 s")
        .expect("output topic open");
    let MemoryPayload::Batch(b) = msg.payload else {
        panic!("the memory sink publishes batches")
    };
    let rows = batch_to_rows(&b, false);
    assert_eq!(rows.len(), 1, "one row per input row here: {rows:?}");
    Value::Object(rows.into_iter().next().unwrap())
}

/// Ends the input, waits for the rule to finish and returns every result row, sorted.
async fn finish(engine: &Engine, out: &mut Receiver<MemoryMessage>) -> Vec<Value> {
    common::finish_rule(engine, "lookup", "demo", out).await
}

/// Rows in the order [`finish`] returns them.
fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn exceptions(engine: &Engine) -> (u64, String) {
    common::exceptions(engine, "lookup")
}

#[test]
fn redis_inner_join_drops_missing_keys() {
    let mut keys = Keys::new("inner");
    keys.set("a", r#"{"id": "a", "location": "hall", "alarm": 50}"#);
    keys.set("b", r#"{"id": "b", "location": "lab", "alarm": 80}"#);
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({"addr": "127.0.0.1:6379", "dataType": "string"}),
        "SELECT device, temperature, devices.location, alarm FROM demo INNER JOIN devices ON demo.device = devices.id",
    );
    let rows = rt.block_on(async {
        for (d, t) in [("a", 1), ("zz", 2), ("b", 3), ("a", 4)] {
            send(&engine, json!({"device": keys.key(d), "temperature": t})).await;
        }
        send(&engine, json!({"temperature": 5})).await;
        finish(&engine, &mut out).await
    });
    let p = &keys.prefix;
    assert_eq!(
        rows,
        sorted(vec![
            json!({"device": format!("{p}a"), "temperature": 1, "location": "hall", "alarm": 50}),
            json!({"device": format!("{p}a"), "temperature": 4, "location": "hall", "alarm": 50}),
            json!({"device": format!("{p}b"), "temperature": 3, "location": "lab", "alarm": 80}),
        ])
    );
    assert_eq!(exceptions(&engine).0, 0);
    engine.shutdown();
}

#[test]
fn redis_left_join_keeps_missing_keys_and_filters_on_residual() {
    let mut keys = Keys::new("left");
    keys.set("a", r#"{"id": "a", "location": "hall", "alarm": 50}"#);
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({}),
        "SELECT device, temperature, location FROM demo LEFT JOIN devices ON devices.id = demo.device AND temperature > devices.alarm",
    );
    let rows = rt.block_on(async {
        send(&engine, json!({"device": keys.key("a"), "temperature": 60})).await;
        send(&engine, json!({"device": keys.key("a"), "temperature": 40})).await;
        send(
            &engine,
            json!({"device": keys.key("nope"), "temperature": 70}),
        )
        .await;
        finish(&engine, &mut out).await
    });
    let p = &keys.prefix;
    assert_eq!(
        rows,
        sorted(vec![
            json!({"device": format!("{p}a"), "temperature": 40}),
            json!({"device": format!("{p}a"), "temperature": 60, "location": "hall"}),
            json!({"device": format!("{p}nope"), "temperature": 70}),
        ])
    );
    engine.shutdown();
}

#[test]
fn redis_list_values_are_rows() {
    let mut keys = Keys::new("list");
    keys.push(
        "a",
        &[
            r#"{"id": "a", "location": "hall"}"#,
            r#"{"id": "a", "location": "roof"}"#,
        ],
    );
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({"datatype": "list"}),
        "SELECT temperature, location FROM demo JOIN devices ON device = id",
    );
    let rows = rt.block_on(async {
        send(&engine, json!({"device": keys.key("a"), "temperature": 1})).await;
        send(&engine, json!({"device": keys.key("b"), "temperature": 2})).await;
        finish(&engine, &mut out).await
    });
    assert_eq!(
        rows,
        sorted(vec![
            json!({"temperature": 1, "location": "hall"}),
            json!({"temperature": 1, "location": "roof"}),
        ])
    );
    engine.shutdown();
}

#[test]
fn redis_cache_serves_old_value_until_ttl() {
    let mut keys = Keys::new("ttl");
    keys.set("a", r#"{"id": "a", "location": "hall"}"#);
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({"lookup": {"cache": true, "cacheTtl": "1s"}}),
        "SELECT temperature, location FROM demo JOIN devices ON device = id",
    );
    rt.block_on(async {
        send(&engine, json!({"device": keys.key("a"), "temperature": 1})).await;
        assert_eq!(next_row(&mut out).await["location"], "hall");
        let started = std::time::Instant::now();
        keys.set("a", r#"{"id": "a", "location": "lab"}"#);
        send(&engine, json!({"device": keys.key("a"), "temperature": 2})).await;
        let cached = next_row(&mut out).await;
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the test itself was too slow to see the cache"
        );
        assert_eq!(cached["location"], "hall", "served from the cache");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        send(&engine, json!({"device": keys.key("a"), "temperature": 3})).await;
        assert_eq!(
            next_row(&mut out).await["location"],
            "lab",
            "fetched after the TTL"
        );
    });
    engine.shutdown();
}

#[test]
fn redis_cache_missing_key_option() {
    for cache_missing in [false, true] {
        let mut keys = Keys::new(&format!("missing-{cache_missing}"));
        let rt = common::runtime();
        let (engine, mut out) = setup(
            &rt,
            json!({"lookup": {"cache": true, "cacheTtl": 60, "cacheMissingKey": cache_missing}}),
            "SELECT temperature, location FROM demo LEFT JOIN devices ON device = id",
        );
        rt.block_on(async {
            send(&engine, json!({"device": keys.key("a"), "temperature": 1})).await;
            assert_eq!(next_row(&mut out).await, json!({"temperature": 1}));
            keys.set("a", r#"{"id": "a", "location": "hall"}"#);
            send(&engine, json!({"device": keys.key("a"), "temperature": 2})).await;
            let row = next_row(&mut out).await;
            if cache_missing {
                assert_eq!(row, json!({"temperature": 2}), "the miss is remembered");
            } else {
                assert_eq!(row, json!({"temperature": 2, "location": "hall"}));
            }
        });
        engine.shutdown();
    }
}

#[test]
fn redis_malformed_value_is_an_exception_and_the_rule_runs_on() {
    let mut keys = Keys::new("malformed");
    keys.set("good", r#"{"id": "good", "location": "hall"}"#);
    keys.set("bad", "{not json");
    let rt = common::runtime();
    let (engine, mut out) = setup(
        &rt,
        json!({}),
        "SELECT device, location FROM demo LEFT JOIN devices ON device = id",
    );
    rt.block_on(async {
        send(
            &engine,
            json!({"device": keys.key("bad"), "temperature": 1}),
        )
        .await;
        send(
            &engine,
            json!({"device": keys.key("good"), "temperature": 2}),
        )
        .await;
        let row = next_row(&mut out).await;
        assert_eq!(row["location"], "hall");
        let status = engine.rule_status("lookup").unwrap();
        assert_eq!(status.status, "running");
        // The bad row may be joined on the other worker, after the good row came out.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while exceptions(&engine).0 == 0 {
            assert!(std::time::Instant::now() < deadline, "no exception counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (total, last) = exceptions(&engine);
        assert_eq!(total, 1, "the bad key's row only");
        assert!(last.contains("malformed value"), "{last}");
    });
    engine.shutdown();
}

#[test]
fn redis_unreachable_server_counts_exceptions() {
    let rt = common::runtime();
    // Port 1 refuses connections: every batch fails fast and the rule keeps running.
    let (engine, _out) = setup(
        &rt,
        json!({"addr": "127.0.0.1:1"}),
        "SELECT device, location FROM demo JOIN devices ON device = id",
    );
    rt.block_on(async {
        send(&engine, json!({"device": "x", "temperature": 1})).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while exceptions(&engine).0 == 0 {
            assert!(std::time::Instant::now() < deadline, "no exception counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.rule_status("lookup").unwrap().status, "running");
        assert!(exceptions(&engine).1.contains("redis"));
    });
    engine.shutdown();
}

#[test]
fn redis_lookup_asks_once_per_batch_and_caches() {
    use quiver_connectors::lookup::LookupCacheConfig;
    use quiver_connectors::redis::{RedisLookup, RedisLookupConfig};
    use quiver_dataflow::tables::lookup::{LookupStore, LookupTable};

    let mut keys = Keys::new("batch");
    keys.set("a", r#"{"id": "a", "location": "hall"}"#);
    keys.set("b", r#"{"id": "b", "location": "lab"}"#);
    let config = RedisLookupConfig::parse(&DB.to_string(), &Default::default()).unwrap();
    let table = LookupTable::new(
        LookupStore::External {
            source: Box::new(RedisLookup::new(config).unwrap()),
            decoder: quiver_connectors::codec::json::JsonDecoder::new(None, false),
        },
        LookupCacheConfig {
            enabled: true,
            ..Default::default()
        },
    );
    let ask: Vec<Value> = ["a", "b", "c"].iter().map(|k| json!(keys.key(k))).collect();
    let found = table.lookup(&ask).unwrap();
    assert_eq!(table.fetches(), 1, "one MGET for the three keys");
    assert_eq!(found.iter().filter(|r| matches!(r, Ok(Some(_)))).count(), 2);
    assert!(matches!(found[2], Ok(None)));
    table.lookup(&ask[..2]).unwrap();
    assert_eq!(table.fetches(), 1, "both keys come from the cache");
    assert_eq!(
        table.cached_keys(),
        2,
        "the missing key is not cached by default"
    );
}
