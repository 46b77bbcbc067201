//! Differential test of tumbling and hopping windows in event time: seeded random in-order rows,
//! aggregated by the engine on 1 and 2 workers and by a plain-Rust reference that assigns every
//! row to the windows `[m*H, m*H+S)` containing its time. Plus a many-keys check that every
//! (window, key) group comes out exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::memory::MemoryPayload;
use quiver_dataflow::{Action, Engine, RuleSpec};
use serde_json::{Map, Value, json};

const STREAM_SQL: &str = r#"CREATE STREAM rnd (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="rnd/in", TYPE="memory", FORMAT="json", TIMESTAMP="ts")"#;

/// SplitMix64: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One input row: key, optional value, event time in ms.
#[derive(Debug, Clone)]
struct Row {
    k: String,
    v: Option<i64>,
    ts: i64,
}

impl Row {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("k".into(), json!(self.k));
        if let Some(v) = self.v {
            m.insert("v".into(), json!(v));
        }
        m.insert("ts".into(), json!(self.ts));
        Value::Object(m)
    }
}

/// A row as a canonical string: keys sorted, nulls omitted, integral numbers as integers.
fn canonical(row: &Map<String, Value>) -> String {
    let norm: BTreeMap<&String, Value> = row
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => json!(i),
                    (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
                    _ => v.clone(),
                },
                _ => v.clone(),
            };
            (k, v)
        })
        .collect();
    serde_json::to_string(&norm).expect("serializable")
}

/// Runs `rule` on a fresh engine with `workers` workers over `messages` (JSON payloads, each
/// an object or an array of objects) and returns the result rows, canonical and sorted.
fn run_rule(workers: usize, rule: &str, messages: Vec<Vec<u8>>) -> Vec<String> {
    let rt = common::runtime();
    let engine = common::engine(&rt, workers);
    engine.create_stream(STREAM_SQL).unwrap();
    let got = rt.block_on(run_engine(&engine, rule, messages));
    engine.shutdown();
    got
}

async fn run_engine(engine: &Engine, rule: &str, messages: Vec<Vec<u8>>) -> Vec<String> {
    let bus = engine.connectors().memory().clone();
    // Drained while the rule runs, so a bounded output queue never holds the sink back.
    let mut out = bus.subscribe("rnd/out");
    let collector = tokio::spawn(async move {
        let mut rows = Vec::new();
        while let Some(m) = out.recv().await {
            if let MemoryPayload::Batch(b) = m.payload {
                rows.extend(batch_to_rows(&b, false).iter().map(canonical));
            }
        }
        rows
    });
    engine
        .create_rule(RuleSpec {
            id: "r".into(),
            name: "r".into(),
            sql: rule.to_string(),
            actions: vec![Action {
                sink_type: "memory".into(),
                props: json!({"topic": "rnd/out"}),
            }],
            options: json!({"isEventTime": true, "lateTolerance": 0})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
    for m in messages {
        bus.publish_json("rnd/in", m).await;
    }
    bus.close("rnd/in");
    assert!(
        engine
            .wait_finished("r", Duration::from_secs(60))
            .await
            .unwrap(),
        "rule did not finish: {rule}"
    );
    bus.close("rnd/out");
    let mut got = collector.await.expect("collector task");
    got.sort();
    engine.delete_rule("r").unwrap();
    got
}

/// Packs rows into messages of `sizes` rows each: one object alone, several as a JSON array.
fn pack(rows: &[Row], mut size: impl FnMut() -> usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = size().clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let payload = match chunk {
            [one] => one.to_json(),
            many => Value::Array(many.iter().map(Row::to_json).collect()),
        };
        out.push(payload.to_string().into_bytes());
    }
    out
}

/// The aggregates of one (window, key) group.
#[derive(Default)]
struct Agg {
    c: i64,
    cv: i64,
    s: Option<i64>,
    mn: Option<i64>,
    mx: Option<i64>,
}

/// Windows `[m*hop, m*hop+size)` for every integer `m`; each group with a row gives one result.
/// The first window (the one ending first after the first row) reports eKuiper's first
/// trigger time as its start: the first row's time, minus the hop for hopping windows, when
/// that is positive.
fn reference(rows: &[Row], size: i64, hop: i64, by_key: bool) -> Vec<String> {
    let first_ts = rows.first().map_or(0, |r| r.ts);
    let first_end = (first_ts.div_euclid(hop) + 1) * hop;
    let first_start = if size == hop {
        first_ts
    } else {
        first_ts - hop
    };
    let mut groups: BTreeMap<(i64, Option<&str>), Agg> = BTreeMap::new();
    for row in rows {
        let mut start = row.ts.div_euclid(hop) * hop;
        while start + size > row.ts {
            let key = by_key.then_some(row.k.as_str());
            let a = groups.entry((start, key)).or_default();
            a.c += 1;
            if let Some(v) = row.v {
                a.cv += 1;
                a.s = Some(a.s.unwrap_or(0) + v);
                a.mn = Some(a.mn.map_or(v, |m| m.min(v)));
                a.mx = Some(a.mx.map_or(v, |m| m.max(v)));
            }
            start -= hop;
        }
    }
    let mut out: Vec<String> = groups
        .into_iter()
        .map(|((ws, key), a)| {
            let mut m = Map::new();
            if let Some(k) = key {
                m.insert("k".into(), json!(k));
            }
            m.insert("c".into(), json!(a.c));
            m.insert("cv".into(), json!(a.cv));
            for (name, v) in [("s", a.s), ("mn", a.mn), ("mx", a.mx)] {
                if let Some(v) = v {
                    m.insert(name.into(), json!(v));
                }
            }
            let reported = if ws + size == first_end && first_start > 0 {
                first_start
            } else {
                ws
            };
            m.insert("ws".into(), json!(reported));
            m.insert("we".into(), json!(ws + size));
            canonical(&m)
        })
        .collect();
    out.sort();
    out
}

/// Lines of `a` not in `b` (as multisets), for a readable failure message.
fn missing(a: &[String], b: &[String]) -> Vec<String> {
    let mut left: BTreeMap<&String, usize> = BTreeMap::new();
    for x in b {
        *left.entry(x).or_default() += 1;
    }
    a.iter()
        .filter(|x| match left.get_mut(x) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .take(10)
        .cloned()
        .collect()
}

#[test]
fn tumbling_and_hopping_match_the_reference() {
    const SEED: u64 = 0x51de_5eed;
    const WINDOWS: [(i64, i64); 7] = [
        (100, 100),
        (250, 250),
        (1000, 1000),
        (1000, 250),
        (1000, 500),
        (600, 200),
        (300, 100),
    ];
    let mut rng = Rng(SEED);
    for round in 0..40 {
        let (size, hop) = WINDOWS[rng.below(WINDOWS.len() as u64) as usize];
        let by_key = rng.below(2) == 0;
        let keys = 1 + rng.below(20);
        let n = 200 + rng.below(601) as usize;
        let missing_v = 2 + rng.below(8);
        let mut ts = if rng.below(2) == 0 {
            1_700_000_000_000 + rng.below(1_000_000) as i64
        } else {
            rng.below(5_000) as i64
        };
        let rows: Vec<Row> = (0..n)
            .map(|_| {
                ts += rng.below(301) as i64;
                Row {
                    k: format!("k{}", rng.below(keys)),
                    v: (rng.below(missing_v) != 0).then(|| rng.below(100) as i64 - 50),
                    ts,
                }
            })
            .collect();
        let max_pack = [1, 1, 5, 64][rng.below(4) as usize];
        let messages = pack(&rows, || 1 + rng.below(max_pack) as usize);
        let window = if size == hop {
            format!("TUMBLINGWINDOW(ms, {size})")
        } else {
            format!("HOPPINGWINDOW(ms, {size}, {hop})")
        };
        let (select_k, group_k) = if by_key { ("k, ", "k, ") } else { ("", "") };
        let rule = format!(
            "SELECT {select_k}count(*) AS c, count(v) AS cv, sum(v) AS s, min(v) AS mn, \
             max(v) AS mx, window_start() AS ws, window_end() AS we \
             FROM rnd GROUP BY {group_k}{window}"
        );
        let expected = reference(&rows, size, hop, by_key);
        for workers in [1, 2] {
            let got = run_rule(workers, &rule, messages.clone());
            assert!(
                got == expected,
                "seed {SEED:#x}, round {round}, {workers} worker(s), rule: {rule}\n\
                 {} rows in {} messages, {} expected results, {} got\n\
                 expected but missing (first 10): {:#?}\n\
                 unexpected (first 10): {:#?}",
                rows.len(),
                messages.len(),
                expected.len(),
                got.len(),
                missing(&expected, &got),
                missing(&got, &expected),
            );
        }
    }
}

#[test]
fn many_keys_produce_one_row_per_group() {
    const KEYS: i64 = 100_000;
    const ROWS: i64 = 300_000;
    const SPAN_MS: i64 = 30_000;
    let started = Instant::now();
    // Start on a window boundary; row i goes to key i % KEYS, times spread evenly over 30 s.
    let base = 1_700_000_000_000_i64;
    let rows: Vec<Row> = (0..ROWS)
        .map(|i| Row {
            k: format!("k{}", i % KEYS),
            v: None,
            ts: base + i * SPAN_MS / ROWS,
        })
        .collect();
    // Per key: (windows it has rows in, rows).
    let groups: BTreeSet<(i64, &str)> = rows
        .iter()
        .map(|r| (r.ts.div_euclid(10_000), r.k.as_str()))
        .collect();
    let mut expected: BTreeMap<&str, (usize, i64)> = BTreeMap::new();
    for (_, k) in &groups {
        expected.entry(k).or_default().0 += 1;
    }
    for r in &rows {
        expected.get_mut(r.k.as_str()).expect("key has a group").1 += 1;
    }
    let messages = pack(&rows, || 1000);
    let got = run_rule(
        2,
        "SELECT k, count(*) AS c FROM rnd GROUP BY k, TUMBLINGWINDOW(ss, 10)",
        messages,
    );
    assert_eq!(got.len(), groups.len(), "one row per (window, key)");
    let mut seen: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for s in &got {
        let v: Value = serde_json::from_str(s).unwrap();
        let k = v["k"].as_str().expect("k is a string").to_string();
        let c = v["c"].as_i64().expect("c is an integer");
        let e = seen.entry(k).or_default();
        e.0 += 1;
        e.1 += c;
    }
    let total: i64 = seen.values().map(|(_, c)| c).sum();
    assert_eq!(total, ROWS, "every row counted once");
    assert_eq!(seen.len(), expected.len(), "every key has results");
    for (k, want) in &expected {
        assert_eq!(seen.get(*k), Some(want), "key {k}: (result rows, sum of c)");
    }
    eprintln!(
        "{} groups from {ROWS} rows in {:.1} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
}
