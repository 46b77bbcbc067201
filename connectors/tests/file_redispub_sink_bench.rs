//! Rows/s into the `file` and `redisPub` sinks, against writing the same rows directly in the
//! same invocation, at the connector level (`collect_list` per emission, then `close`, as the
//! rule's sink task calls them):
//! - `file` (`lines` and `json` with `sendSingle`, `csv`): against a `BufWriter` writing the
//!   same bytes (encoded before the clock starts) to a file of its own, synced at the end as
//!   the sink syncs at close; both files must be equal;
//! - `redisPub` (`sendSingle`): against the `redis` crate publishing the same payloads in the
//!   same 1-pipeline-per-emission shape, on a private redis-server, a subscriber counting every
//!   message of both.
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-connectors --test
//! file_redispub_sink_bench --no-capture` gives the figures (BENCHMARKS.md); without it CI runs
//! a small load so the harness cannot rot.

#[path = "support/redis.rs"]
mod private_redis;
#[path = "support/rows.rs"]
mod rows;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use private_redis::{PrivateRedis, free_port};
use quiver_connectors::Connectors;
use quiver_connectors::codec::encode::batch_to_json_objects;
use serde_json::{Value, json};

/// `batches` emissions of `per_batch` readings.
fn input(batches: usize, per_batch: usize) -> Vec<RecordBatch> {
    (0..batches)
        .map(|b| rows::readings((b * per_batch) as i64, per_batch))
        .collect()
}

/// Writes `input` through a sink of `sink_type`; the seconds from the first emission until
/// the sink has closed.
async fn time_sink(sink_type: &str, props: Value, input: &[RecordBatch]) -> f64 {
    let mut sink = Connectors::new().sink(sink_type, &props).unwrap();
    sink.connect().await.unwrap();
    let start = Instant::now();
    for b in input {
        sink.collect_list(b).await.unwrap();
    }
    sink.close().await.unwrap();
    start.elapsed().as_secs_f64()
}

/// The JSON line of one case.
fn report(case: &str, rows: usize, sink_secs: f64, client_secs: f64) -> Value {
    let r = json!({
        "case": case,
        "rows": rows,
        "sink_rows_per_s": (rows as f64 / sink_secs).round(),
        "client_rows_per_s": (rows as f64 / client_secs).round(),
        "sink_over_client": ((client_secs / sink_secs) * 100.0).round() / 100.0,
    });
    println!("sink bench: {r}");
    r
}

/// One file case: the sink with `props` (its `path` set here), then a `BufWriter` writing the
/// bytes `expected` makes from the rows and the sink's file.
async fn file_case(
    case: &str,
    dir: &Path,
    props: Value,
    input: &[RecordBatch],
    expected: impl Fn(&[RecordBatch], &[u8]) -> Vec<Vec<u8>>,
) -> Value {
    let rows: usize = input.iter().map(|b| b.num_rows()).sum();
    let sink_path = dir.join(format!("{case}.sink"));
    let mut props = props;
    props["path"] = json!(sink_path.display().to_string());
    let sink_secs = time_sink("file", props, input).await;
    let written = std::fs::read(&sink_path).unwrap();

    let pieces = expected(input, &written);
    let client_path = dir.join(format!("{case}.client"));
    let start = Instant::now();
    let file = std::fs::File::create(&client_path).unwrap();
    let mut w = std::io::BufWriter::new(file);
    for p in &pieces {
        w.write_all(p).unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();
    let client_secs = start.elapsed().as_secs_f64();
    assert_eq!(
        std::fs::read(&client_path).unwrap(),
        written,
        "the same bytes"
    );
    report(&format!("file {case}"), rows, sink_secs, client_secs)
}

/// Each row's JSON object on a line.
fn json_lines(input: &[RecordBatch], _: &[u8]) -> Vec<Vec<u8>> {
    input
        .iter()
        .flat_map(|b| batch_to_json_objects(b, false))
        .map(|mut o| {
            o.push(b'\n');
            o
        })
        .collect()
}

/// One JSON array of every row.
fn json_array(input: &[RecordBatch], _: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![b"[".to_vec()];
    for (i, o) in input
        .iter()
        .flat_map(|b| batch_to_json_objects(b, false))
        .enumerate()
    {
        if i > 0 {
            out.push(b",".to_vec());
        }
        out.push(o);
    }
    out.push(b"]".to_vec());
    out
}

/// The sink's CSV lines, each written on its own (the CSV encoding is not measured).
fn csv_lines(input: &[RecordBatch], written: &[u8]) -> Vec<Vec<u8>> {
    let lines: Vec<Vec<u8>> = written
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let rows: usize = input.iter().map(|b| b.num_rows()).sum();
    assert_eq!(lines.len(), rows, "one line a row");
    lines
}

/// A subscriber to channel `bench` on its own thread, subscribed when this returns; it
/// gives back how many messages it got (stopping at `n`, or after a quiet `PATIENCE`) and
/// the last one.
fn subscriber(server: &PrivateRedis, n: usize) -> std::thread::JoinHandle<(usize, Vec<u8>)> {
    let mut conn = server.connection();
    let (ready, subscribed) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe("bench").unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        ready.send(()).unwrap();
        let mut got = 0;
        let mut last = Vec::new();
        while got < n {
            match pubsub.get_message() {
                Ok(m) => {
                    got += 1;
                    last = m.get_payload_bytes().to_vec();
                }
                Err(_) => break,
            }
        }
        (got, last)
    });
    subscribed.recv().unwrap();
    handle
}

/// The redisPub sink (`sendSingle`) against the `redis` crate publishing the same payloads,
/// one pipeline per emission; a subscriber must get every message of each.
async fn redis_pub(input: &[RecordBatch]) -> Value {
    let server = PrivateRedis::start(free_port());
    let addr = server.addr();
    server.unlimit_subscribers();
    let mut conn = server.connection();
    let bodies: Vec<Vec<Vec<u8>>> = input
        .iter()
        .map(|b| batch_to_json_objects(b, false))
        .collect();
    let rows: usize = bodies.iter().map(Vec::len).sum();
    let last = bodies.last().and_then(|b| b.last()).unwrap().clone();

    let counting = subscriber(&server, rows);
    let props = json!({"address": addr, "channel": "bench", "sendSingle": true});
    let sink_secs = time_sink("redisPub", props, input).await;
    assert_eq!(counting.join().unwrap(), (rows, last.clone()));

    let pipes: Vec<redis::Pipeline> = bodies
        .iter()
        .map(|batch| {
            let mut p = redis::pipe();
            for b in batch {
                p.cmd("PUBLISH").arg("bench").arg(b.as_slice()).ignore();
            }
            p
        })
        .collect();
    let counting = subscriber(&server, rows);
    let start = Instant::now();
    for p in &pipes {
        let _: () = p.query(&mut conn).unwrap();
    }
    let client_secs = start.elapsed().as_secs_f64();
    assert_eq!(counting.join().unwrap(), (rows, last));
    report("redisPub sendSingle", rows, sink_secs, client_secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_file_and_redispub_sinks_against_direct_writers() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let (batches, per_batch) = if full { (300, 1000) } else { (5, 100) };
    let input = input(batches, per_batch);
    let dir = std::env::temp_dir().join(format!("quiver-sink-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines = json!({"fileType": "lines", "sendSingle": true});
    file_case("lines", &dir, lines, &input, json_lines).await;
    let array = json!({"fileType": "json", "sendSingle": true});
    file_case("json", &dir, array, &input, json_array).await;
    let csv = json!({"fileType": "csv", "format": "delimited"});
    file_case("csv", &dir, csv, &input, csv_lines).await;
    let _ = std::fs::remove_dir_all(&dir);
    redis_pub(&input).await;
}
