//! Rows/s through a rule into the `rest` sink, against `curl` and against a bare hyper client
//! posting the same bodies to the same local HTTP server over one keep-alive connection, in
//! the same invocation.
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-dataflow --test rest_sink_bench
//! --no-capture` gives the figures (BENCHMARKS.md); without it CI runs a small load so the
//! harness cannot rot.

mod common;
#[path = "../../connectors/tests/support/rows.rs"]
mod rows;
#[path = "common/sink_bench.rs"]
mod sink_bench;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::{Duration, Instant};

use http::TestServer;
use quiver_connectors::codec::encode::{batch_to_json_array, batch_to_json_objects};
use quiver_dataflow::Action;
use serde_json::{Value, json};

/// Rows the server received on `path`: JSON arrays of rows, or one object each.
fn rows_received(server: &TestServer, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| match r.json() {
            Value::Array(rows) => rows.len(),
            Value::Object(_) => 1,
            _ => 0,
        })
        .sum()
}

/// One case: `batches` emissions of `rows_per_batch` rows through rule `id` (one request per
/// emission, or per row with `send_single`), then curl posting the same bodies.
fn case(id: &str, batches: usize, rows_per_batch: usize, send_single: bool) -> Value {
    let total = batches * rows_per_batch;
    let server = TestServer::start();
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    let input = sink_bench::input(batches, rows_per_batch);

    // 1. A rule into the rest sink: Arrow rows encoded to JSON and POSTed until the sink has
    // closed.
    let action = Action {
        sink_type: "rest".into(),
        props: json!({"url": format!("{}/rule", server.base), "method": "post",
                      "sendSingle": send_single}),
    };
    let rule_secs = sink_bench::time_rule(&rt, &engine, id, action, &input);
    assert_eq!(rows_received(&server, "/rule"), total);

    // 2. curl posting the same bodies (encoded before timing) over one connection.
    let dir = std::env::temp_dir().join(format!("quiver-rest-bench-{}-{id}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bodies: Vec<Vec<u8>> = input
        .iter()
        .flat_map(|b| {
            if send_single {
                batch_to_json_objects(b, false)
            } else {
                vec![batch_to_json_array(b, false)]
            }
        })
        .collect();
    let mut config = String::new();
    for (i, body) in bodies.iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, body).unwrap();
        if i > 0 {
            config.push_str("next\n");
        }
        config.push_str(&format!(
            "url = \"{}/curl\"\ndata-binary = \"@{}\"\nheader = \"Content-Type: application/json\"\noutput = \"/dev/null\"\nsilent\n",
            server.base,
            path.display()
        ));
    }
    let config_path = dir.join("curl.cfg");
    std::fs::write(&config_path, config).unwrap();
    let started = Instant::now();
    let status = std::process::Command::new("curl")
        .arg("-K")
        .arg(&config_path)
        .status()
        .expect("curl runs");
    let curl_secs = started.elapsed().as_secs_f64();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rows_received(&server, "/curl"), total);

    // 3. The sink's own HTTP client posting the same pre-encoded bodies in a loop, one at a
    // time: the transport's ceiling for a sender that waits for each answer, as the sink does.
    let client = quiver_connectors::http::HttpClient::new(
        Some(Duration::from_secs(5)),
        &quiver_connectors::tls::TlsClient::without_roots(),
    );
    let uri: hyper::Uri = format!("{}/client", server.base).parse().unwrap();
    let posted = bodies.clone();
    // On a runtime worker, as the sink task runs (not on the thread that blocks on it).
    let client_task = rt.spawn(async move {
        let started = Instant::now();
        for body in &posted {
            let request = hyper::Request::post(uri.clone())
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
                .unwrap();
            let response = client.send(request).await.unwrap();
            assert!(response.status.is_success());
        }
        started.elapsed().as_secs_f64()
    });
    let client_secs = rt.block_on(client_task).unwrap();
    assert_eq!(rows_received(&server, "/client"), total);
    let connections = |path: &str| -> usize {
        let peers: std::collections::BTreeSet<_> = server
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.peer)
            .collect();
        peers.len()
    };
    let report = json!({
        "case": id,
        "rows": total,
        "requests": bodies.len(),
        "rule_rows_per_s": (total as f64 / rule_secs).round(),
        "curl_rows_per_s": (total as f64 / curl_secs).round(),
        "client_rows_per_s": (total as f64 / client_secs).round(),
        "rule_over_curl": ((curl_secs / rule_secs) * 100.0).round() / 100.0,
        "rule_over_client": ((client_secs / rule_secs) * 100.0).round() / 100.0,
        "rule_connections": connections("/rule"),
        "curl_connections": connections("/curl"),
    });
    println!("rest sink bench: {report}");
    // Keep-alive: the sink sent everything over one connection.
    assert_eq!(report["rule_connections"], Value::from(1));
    engine.shutdown();
    report
}

#[test]
fn bench_rest_sink_against_curl() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    // A JSON array of 1,000 rows per request.
    let (batches, rows) = if full { (300, 1000) } else { (10, 100) };
    case("batches", batches, rows, false);
    // One request per row (`sendSingle`).
    let (batches, rows) = if full { (20, 1000) } else { (2, 100) };
    case("single", batches, rows, true);
}
