//! Rows/s through a rule into the `redis` sink, against `redis-benchmark` and against the
//! sink's own client sending the same pipelines, all on one private `redis-server` in the same
//! invocation.
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-dataflow --test redis_sink_bench
//! --no-capture` gives the figures (BENCHMARKS.md); without it CI runs a small load so the
//! harness cannot rot.

mod common;
#[path = "../../connectors/tests/support/rows.rs"]
mod rows;
#[path = "common/sink_bench.rs"]
mod sink_bench;

#[path = "../../connectors/tests/support/redis.rs"]
mod private_redis;

use std::time::Instant;

use arrow::array::Int64Array;
use private_redis::{PrivateRedis, free_port};
use quiver_connectors::codec::encode::batch_to_json_objects;
use quiver_dataflow::Action;
use serde_json::{Value, json};

/// How many rows the server holds: keys for SET, the list's length for LPUSH.
fn stored(conn: &mut redis::Connection, list: bool) -> usize {
    let n: i64 = if list {
        redis::cmd("LLEN").arg("bench-list").query(conn).unwrap()
    } else {
        redis::cmd("DBSIZE").query(conn).unwrap()
    };
    n as usize
}

fn flush(conn: &mut redis::Connection) {
    let _: () = redis::cmd("FLUSHALL").query(conn).unwrap();
}

/// `redis-benchmark -t <test> -n <n> -d <size> -c <clients> -P <pipeline>`: requests/s.
fn redis_benchmark(port: u16, test: &str, n: usize, size: usize, clients: u32, pipe: u32) -> f64 {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", test, "-n", &n.to_string()])
        .args(["-d", &size.to_string(), "-c", &clients.to_string()])
        .args(["-P", &pipe.to_string(), "--csv", "-q"])
        .output()
        .expect("redis-benchmark on PATH");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // "SET","557103.06",...
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("\"{}\"", test.to_ascii_uppercase())))
        .unwrap_or_else(|| panic!("no {test} line in {text}"));
    line.split(',')
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// One case: `batches` emissions of `rows_per_batch` rows through a rule into the redis sink
/// (SET under each row's `key`, or LPUSH onto one list), then the same commands from the
/// sink's client, then redis-benchmark.
fn case(server: &PrivateRedis, list: bool, batches: usize, rows_per_batch: usize) -> Value {
    let id = if list { "lpush" } else { "set" };
    let total = batches * rows_per_batch;
    let mut conn = redis::Client::open(format!("redis://{}/", server.addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    flush(&mut conn);
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    let input = sink_bench::input(batches, rows_per_batch);
    let props = if list {
        json!({"addr": server.addr(), "key": "bench-list", "dataType": "list"})
    } else {
        json!({"addr": server.addr(), "field": "id"})
    };

    // 1. The rule: Arrow rows encoded to JSON and written, one pipeline per emission, until
    // the sink has closed.
    let action = Action {
        sink_type: "redis".into(),
        props,
    };
    let rule_secs = sink_bench::time_rule(&rt, &engine, id, action, &input);
    assert_eq!(stored(&mut conn, list), total);
    engine.shutdown();

    // 2. The same commands, encoded before timing, pipelined per batch over one connection.
    flush(&mut conn);
    let bodies: Vec<Vec<Vec<u8>>> = input
        .iter()
        .map(|b| batch_to_json_objects(b, false))
        .collect();
    let mut bytes = 0;
    let pipes: Vec<redis::Pipeline> = bodies
        .iter()
        .zip(&input)
        .map(|(rows, b)| {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let mut pipe = redis::pipe();
            for (i, body) in rows.iter().enumerate() {
                bytes += body.len();
                if list {
                    pipe.cmd("LPUSH").arg("bench-list").arg(body.as_slice());
                } else {
                    pipe.cmd("SET").arg(ids.value(i)).arg(body.as_slice());
                }
            }
            pipe.ignore_errors();
            pipe
        })
        .collect();
    let started = Instant::now();
    for pipe in &pipes {
        let _: Vec<redis::RedisResult<redis::Value>> = pipe.query(&mut conn).unwrap();
    }
    let client_secs = started.elapsed().as_secs_f64();
    assert_eq!(stored(&mut conn, list), total);
    flush(&mut conn);

    // 3. redis-benchmark with values of the rows' mean size: one connection with 16 and with
    // `rows_per_batch` commands in flight, and its default 50 connections with 16.
    let size = bytes / total;
    let test = if list { "lpush" } else { "set" };
    let port = server.port();
    let bench_1x16 = redis_benchmark(port, test, total, size, 1, 16);
    let bench_1xb = redis_benchmark(port, test, total, size, 1, rows_per_batch as u32);
    let bench_50x16 = redis_benchmark(port, test, total, size, 50, 16);
    flush(&mut conn);
    let report = json!({
        "case": id,
        "rows": total,
        "rows_per_batch": rows_per_batch,
        "value_bytes": size,
        "rule_rows_per_s": (total as f64 / rule_secs).round(),
        "client_rows_per_s": (total as f64 / client_secs).round(),
        "benchmark_c1_p16": bench_1x16.round(),
        "benchmark_c1_pbatch": bench_1xb.round(),
        "benchmark_c50_p16": bench_50x16.round(),
        "rule_over_client": ((client_secs / rule_secs) * 100.0).round() / 100.0,
        "rule_over_benchmark_c1_p16": ((total as f64 / rule_secs / bench_1x16) * 100.0).round() / 100.0,
    });
    println!("redis sink bench: {report}");
    report
}

#[test]
fn bench_redis_sink_against_redis_benchmark() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let server = PrivateRedis::start(free_port());
    let (batches, rows) = if full { (300, 1000) } else { (10, 100) };
    case(&server, false, batches, rows);
    case(&server, true, batches, rows);
}
