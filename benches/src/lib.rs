//! Shared pieces of Quiver's benchmarks: a seeded, dependency-free generator of the demo
//! sensor messages, the demo stream's DDL and schema, and small process helpers.
//!
//! The messages look like `{"device":"dev-17","temperature":23.4,"humidity":61,"ts":1700000000000}`:
//! 1,000 devices, temperature uniform in `[0, 40)` with one decimal, humidity an integer in
//! `[0, 100)`, and `ts` starting at 1,700,000,000,000 and stepping by 1 ms per message.
//! The same seed always yields the same messages.

use std::io::Write as _;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Number of distinct devices the generator draws from.
pub const DEVICES: u32 = 1_000;

/// Timestamp of the first generated message, ms since the epoch.
pub const FIRST_TS: i64 = 1_700_000_000_000;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0x5EED_2026_0000_0001;

/// The benchmark stream, reading JSON from the memory topic `bench/in`.
pub const DEMO_STREAM_SQL: &str = "CREATE STREAM demo (device STRING, temperature FLOAT, \
     humidity BIGINT, ts BIGINT) WITH (DATASOURCE=\"bench/in\", TYPE=\"memory\", FORMAT=\"json\")";

/// The end-to-end rule: a filter and a projection.
pub const DEMO_RULE_SQL: &str = "SELECT device, temperature FROM demo WHERE temperature > 20";

/// The event-time variant of the benchmark stream (`ts` is the event time).
pub const DEMO_EVENT_STREAM_SQL: &str = "CREATE STREAM demo (device STRING, temperature FLOAT, \
     humidity BIGINT, ts BIGINT) WITH (DATASOURCE=\"bench/in\", TYPE=\"memory\", FORMAT=\"json\", \
     TIMESTAMP=\"ts\")";

/// The window rule (W2): per-device aggregates over 10-second event-time windows.
pub const WINDOW_RULE_SQL: &str = "SELECT device, avg(temperature), count(*), max(humidity) \
     FROM demo GROUP BY device, TUMBLINGWINDOW(ss, 10)";

/// The Arrow schema the typed decoder uses for the demo stream (what `DEMO_STREAM_SQL` declares).
pub fn demo_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device", DataType::Utf8, true),
        Field::new("temperature", DataType::Float64, true),
        Field::new("humidity", DataType::Int64, true),
        Field::new("ts", DataType::Int64, true),
    ]))
}

/// `n` generated messages (default seed) decoded into one Arrow batch by the typed JSON
/// decoder: the input the criterion benches evaluate, aggregate and encode.
pub fn demo_batch(n: usize) -> arrow::record_batch::RecordBatch {
    use quiver_connectors::RawMessage;
    let topic: Arc<str> = Arc::from("bench/in");
    let msgs: Vec<RawMessage> = Workload::generate(n, DEFAULT_SEED)
        .payloads
        .into_iter()
        .map(|payload| RawMessage::new(payload, topic.clone()))
        .collect();
    let out =
        quiver_connectors::codec::json::JsonDecoder::new(Some(demo_schema()), false).decode(&msgs);
    assert!(out.errors.is_empty(), "{:?}", out.errors.first());
    assert_eq!(out.batches.len(), 1, "one batch");
    out.batches.into_iter().next().expect("rows")
}

/// SplitMix64: a tiny, fast, well-mixed 64-bit PRNG (Steele, Lea, Flood 2014). Not for crypto.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniform in `[0, n)` (Lemire's multiply-shift; the bias is below 2^-32 for the
    /// small `n` used here).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// One sensor reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Device number; the device name is `dev-{device}`.
    pub device: u32,
    /// Temperature in tenths of a degree, `0..400` (so the value is `0.0..=39.9`).
    pub temperature_tenths: u32,
    /// Relative humidity, `0..100`.
    pub humidity: u32,
    /// Timestamp, ms since the epoch.
    pub ts: i64,
}

impl Reading {
    /// The temperature as the float the JSON carries.
    pub fn temperature(&self) -> f64 {
        f64::from(self.temperature_tenths) / 10.0
    }

    /// Whether the demo rule's `temperature > 20` keeps this reading (exact: compared in tenths).
    pub fn is_hot(&self) -> bool {
        self.temperature_tenths > 200
    }

    /// Appends the reading as one JSON object to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"device\":\"dev-{}\",\"temperature\":{}.{},\"humidity\":{},\"ts\":{}}}",
            self.device,
            self.temperature_tenths / 10,
            self.temperature_tenths % 10,
            self.humidity,
            self.ts
        );
    }

    /// The reading as one JSON object.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        self.write_json(&mut out);
        out
    }
}

/// An endless, deterministic stream of readings.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: SplitMix64,
    next_ts: i64,
}

impl Generator {
    /// A generator seeded with `seed`; the first reading has `ts` = [`FIRST_TS`].
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: SplitMix64::new(seed),
            next_ts: FIRST_TS,
        }
    }

    /// The next reading.
    pub fn next_reading(&mut self) -> Reading {
        let r = Reading {
            device: self.rng.below(DEVICES),
            temperature_tenths: self.rng.below(400),
            humidity: self.rng.below(100),
            ts: self.next_ts,
        };
        self.next_ts += 1;
        r
    }
}

impl Iterator for Generator {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        Some(self.next_reading())
    }
}

/// Pre-generated message payloads and what the demo rule should output for them.
#[derive(Debug, Clone)]
pub struct Workload {
    /// One JSON object per message.
    pub payloads: Vec<bytes::Bytes>,
    /// How many of them have `temperature > 20`.
    pub hot: u64,
    /// Total payload bytes.
    pub bytes: u64,
    /// Distinct (10-second window, device) pairs: the rows the window rule outputs.
    pub window_groups: u64,
}

impl Workload {
    /// Generates `n` messages from `seed`.
    pub fn generate(n: usize, seed: u64) -> Self {
        let mut payloads = Vec::with_capacity(n);
        let mut hot = 0;
        let mut bytes = 0;
        let mut buf = Vec::with_capacity(96);
        let mut groups = std::collections::HashSet::new();
        for r in Generator::new(seed).take(n) {
            groups.insert((r.ts.div_euclid(10_000), r.device));
            buf.clear();
            r.write_json(&mut buf);
            hot += u64::from(r.is_hot());
            bytes += buf.len() as u64;
            payloads.push(bytes::Bytes::copy_from_slice(&buf));
        }
        Workload {
            payloads,
            hot,
            bytes,
            window_groups: groups.len() as u64,
        }
    }

    /// The messages packed `per` at a time into JSON arrays (`[{..},{..}]`), the last one
    /// possibly shorter. The JSON decoder flattens an array payload into one row per object.
    pub fn packed(&self, per: usize) -> Vec<bytes::Bytes> {
        let per = per.max(1);
        self.payloads
            .chunks(per)
            .map(|chunk| {
                let mut out =
                    Vec::with_capacity(chunk.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
                out.push(b'[');
                for (i, p) in chunk.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(p);
                }
                out.push(b']');
                bytes::Bytes::from(out)
            })
            .collect()
    }
}

/// A field of `/proc/self/status` in kB (`VmHWM`: peak resident set, `VmRSS`: current).
/// `None` where procfs is not available. The numbers are for the whole process.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let a: Vec<Reading> = Generator::new(7).take(10_000).collect();
        let b: Vec<Reading> = Generator::new(7).take(10_000).collect();
        assert_eq!(a, b);
        for (i, r) in a.iter().enumerate() {
            assert!(r.device < DEVICES);
            assert!(r.temperature_tenths < 400);
            assert!(r.humidity < 100);
            assert_eq!(r.ts, FIRST_TS + i as i64);
        }
        // Roughly half the readings are above 20 degrees (201..=399 of 400 tenths).
        let hot = a.iter().filter(|r| r.is_hot()).count();
        assert!((4_700..5_300).contains(&hot), "{hot}");
    }

    #[test]
    fn json_shape() {
        let r = Reading {
            device: 17,
            temperature_tenths: 200,
            humidity: 61,
            ts: FIRST_TS,
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"device":"dev-17","temperature":20.0,"humidity":61,"ts":1700000000000}"#
        );
        assert!(!r.is_hot());
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["temperature"].as_f64(), Some(20.0));
    }

    #[test]
    fn packing_keeps_every_message() {
        let w = Workload::generate(10, 1);
        let packed = w.packed(4);
        assert_eq!(packed.len(), 3);
        let total: usize = packed
            .iter()
            .map(|p| {
                serde_json::from_slice::<serde_json::Value>(p)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(total, 10);
    }
}
