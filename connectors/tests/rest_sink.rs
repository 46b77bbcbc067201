//! The rest sink against a real HTTP server on loopback.

#[path = "support/http.rs"]
mod http;
#[path = "support/rows.rs"]
mod rows;

use std::time::Duration;

use http::TestServer;
use quiver_connectors::rest::{RestSink, RestSinkConfig};
use quiver_connectors::{ConnectorError, Connectors, Sink};
use serde_json::{Value, json};

fn batch(rows: &[(&str, i64)]) -> arrow::record_batch::RecordBatch {
    rows::full_batch(rows)
}

fn rest(props: Value) -> RestSink {
    RestSink::new(RestSinkConfig::parse(&props).expect("valid properties"))
}

fn io_reason(e: ConnectorError) -> String {
    match e {
        ConnectorError::Io { reason, .. } => reason,
        other => panic!("expected an I/O error, got {other}"),
    }
}

/// The reason of a refusal of the data itself (which a sink cache does not resend).
fn rejected_reason(e: ConnectorError) -> String {
    match e {
        ConnectorError::Rejected { reason, .. } => reason,
        other => panic!("expected a rejection, got {other}"),
    }
}

#[tokio::test]
async fn batches_are_json_arrays_over_one_kept_alive_connection() {
    let server = TestServer::start();
    let mut sink = rest(json!({
        "url": format!("{}/ingest?src=quiver", server.base),
        "method": "post",
        "headers": {"Authorization": "Bearer t0k3n", "X-Count": 2}
    }));
    sink.connect().await.unwrap();
    for i in 0..3 {
        sink.collect_list(&batch(&[("a", i), ("b", i + 10)]))
            .await
            .unwrap();
    }
    sink.close().await.unwrap();
    let got = server.requests();
    assert_eq!(got.len(), 3);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/ingest?src=quiver");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer t0k3n"));
        assert_eq!(r.header("x-count"), Some("2"));
        let i = i as i64;
        assert_eq!(
            r.json(),
            json!([{"device": "a", "v": i}, {"device": "b", "v": i + 10}])
        );
    }
    // Keep-alive: every request came over the first connection.
    assert!(
        got.iter().all(|r| r.peer == got[0].peer),
        "connections were not reused: {:?}",
        got.iter().map(|r| r.peer).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn send_single_posts_one_object_per_row_and_templates_pick_the_target() {
    let server = TestServer::start();
    let mut sink = rest(json!({
        "url": format!("{}/devices/{{{{.device}}}}", server.base),
        "method": "{{if eq .device \"b\"}}put{{else}}post{{end}}",
        "headers": {"X-Device": "{{.device}}"},
        "sendSingle": true
    }));
    sink.collect_list(&batch(&[("a", 1), ("b", 2)]))
        .await
        .unwrap();
    let got = server.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/devices/a")
    );
    assert_eq!(got[0].json(), json!({"device": "a", "v": 1}));
    assert_eq!(got[0].header("x-device"), Some("a"));
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("PUT", "/devices/b")
    );
    assert_eq!(got[1].json(), json!({"device": "b", "v": 2}));
}

#[tokio::test]
async fn a_batch_with_a_templated_url_goes_out_as_one_request_per_run_of_rows() {
    let server = TestServer::start();
    let mut sink = rest(json!({
        "url": format!("{}/d/{{{{.device}}}}", server.base),
        "method": "post",
    }));
    sink.collect_list(&batch(&[("a", 1), ("a", 2), ("b", 3), ("a", 4)]))
        .await
        .unwrap();
    let got: Vec<(String, Value)> = server
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.json()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/d/a".to_string(),
                json!([{"device": "a", "v": 1}, {"device": "a", "v": 2}])
            ),
            ("/d/b".to_string(), json!([{"device": "b", "v": 3}])),
            ("/d/a".to_string(), json!([{"device": "a", "v": 4}])),
        ]
    );
}

#[tokio::test]
async fn non_2xx_answers_are_errors_with_status_and_body_and_the_rest_still_go_out() {
    let server = TestServer::start();
    let mut sink = rest(json!({
        "url": format!("{}/status/503", server.base),
        "method": "post"
    }));
    let e = io_reason(sink.collect_list(&batch(&[("a", 1)])).await.unwrap_err());
    assert_eq!(
        e,
        format!(
            "POST {}/status/503 answered 503 Service Unavailable: failed with 503",
            server.base
        )
    );

    // Per row: the failing row is reported, the others are delivered.
    let mut sink = rest(json!({
        "url": format!("{}/{{{{.device}}}}", server.base),
        "method": "post",
        "sendSingle": true
    }));
    let e = io_reason(
        sink.collect_list(&batch(&[("ok", 1), ("status/500", 2), ("ok", 3)]))
            .await
            .unwrap_err(),
    );
    assert!(
        e.starts_with("1 of 3 requests failed; the first: POST "),
        "{e}"
    );
    assert!(
        e.ends_with("answered 500 Internal Server Error: failed with 500"),
        "{e}"
    );
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/status/503", "/ok", "/status/500", "/ok"]);

    // A 4xx refuses the request itself (sending it again cannot help), except 408 and 429.
    for (code, refused) in [(400, true), (404, true), (408, false), (429, false)] {
        let mut sink = rest(json!({
            "url": format!("{}/status/{code}", server.base), "method": "post"
        }));
        let e = sink.collect_list(&batch(&[("a", 1)])).await.unwrap_err();
        assert_eq!(
            matches!(e, ConnectorError::Rejected { .. }),
            refused,
            "{code}: {e}"
        );
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_errors() {
    let server = TestServer::start();
    let mut sink = rest(json!({
        "url": format!("{}/slow/2000", server.base),
        "method": "post",
        "timeout": 100
    }));
    let started = std::time::Instant::now();
    let e = io_reason(sink.collect_list(&batch(&[("a", 1)])).await.unwrap_err());
    assert!(e.ends_with("no response within 100 ms"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = rest(json!({"url": format!("http://127.0.0.1:{port}/x"), "method": "post"}));
    let e = io_reason(sink.collect_list(&batch(&[("a", 1)])).await.unwrap_err());
    assert!(
        e.starts_with(&format!("POST http://127.0.0.1:{port}/x: ")),
        "{e}"
    );
    assert!(e.to_lowercase().contains("refused"), "{e}");
}

#[tokio::test]
async fn body_types_form_text_and_none() {
    let server = TestServer::start();
    let mut form = rest(json!({
        "url": format!("{}/form", server.base), "method": "post", "bodyType": "form"
    }));
    form.collect_list(&batch(&[("a b&c", 7)])).await.unwrap();
    // A form holds one row: a batch of two is refused, naming the fix.
    let e = rejected_reason(
        form.collect_list(&batch(&[("a", 1), ("b", 2)]))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("set \"sendSingle\": true"), "{e}");

    let mut text = rest(json!({
        "url": format!("{}/text", server.base), "method": "put", "bodyType": "text",
        "headers": {"Content-Type": "text/csv"}
    }));
    text.collect_list(&batch(&[("a", 1)])).await.unwrap();

    // GET sends no body by default (bodyType none).
    let mut get = rest(json!({"url": format!("{}/ping", server.base)}));
    get.collect_list(&batch(&[("a", 1)])).await.unwrap();

    let got = server.requests();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(got[0].body, "device=a+b%26c&v=7");
    // The user's Content-Type wins over the body type's.
    assert_eq!(got[1].method, "PUT");
    assert_eq!(got[1].header("content-type"), Some("text/csv"));
    assert_eq!(got[1].body, r#"[{"device":"a","v":1}]"#);
    assert_eq!((got[2].method.as_str(), got[2].body.as_str()), ("GET", ""));
    assert_eq!(got[2].header("content-type"), None);
}

#[tokio::test]
async fn rendered_payloads_use_the_rows_for_templated_properties() {
    let server = TestServer::start();
    let mut sink = rest(json!({
        "url": format!("{}/t/{{{{.device}}}}", server.base),
        "method": "post",
        "bodyType": "text",
        "sendSingle": true
    }));
    assert!(sink.accepts_payloads());
    let rows = batch(&[("a", 1), ("b", 2)]);
    sink.collect_rendered(&rows, &[b"one".to_vec(), b"two".to_vec()])
        .await
        .unwrap();
    let got: Vec<(String, String)> = server
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.body.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("/t/a".to_string(), "one".to_string()),
            ("/t/b".to_string(), "two".to_string())
        ]
    );
}

#[tokio::test]
async fn response_type_body_checks_the_code_field() {
    let server = TestServer::start();
    let mut ok = rest(json!({
        "url": format!("{}/code/201", server.base), "method": "post", "responseType": "body"
    }));
    ok.collect_list(&batch(&[("a", 1)])).await.unwrap();
    let mut bad = rest(json!({
        "url": format!("{}/code/400", server.base), "method": "post", "responseType": "body"
    }));
    let e = io_reason(bad.collect_list(&batch(&[("a", 1)])).await.unwrap_err());
    assert!(
        e.ends_with(r#"answered code 400 in the body: {"code": 400}"#),
        "{e}"
    );
}

#[test]
fn the_registry_makes_rest_sinks_and_refuses_unknown_properties() {
    let connectors = Connectors::new();
    assert!(connectors.sink_types().contains(&"rest"));
    connectors
        .sink("rest", &json!({"url": "http://127.0.0.1:1/x"}))
        .unwrap();
    let Err(e) = connectors.sink(
        "rest",
        &json!({"url": "http://127.0.0.1:1/x", "retries": 3}),
    ) else {
        panic!("an unknown property was accepted");
    };
    let e = e.to_string();
    assert_eq!(
        e,
        "invalid rest configuration: rest sink: unknown property \"retries\""
    );
}

#[tokio::test]
async fn compressed_bodies_say_their_content_encoding() {
    use std::io::Read;
    let server = TestServer::start();
    for (compression, token) in [
        ("gzip", Some("gzip")),
        ("zlib", Some("deflate")),
        ("flate", None),
    ] {
        let mut sink = rest(json!({
            "url": format!("{}/{compression}", server.base),
            "method": "post",
            "compression": compression,
        }));
        sink.collect_list(&batch(&[("a", 1)])).await.unwrap();
        sink.close().await.unwrap();
        let got = server.requests();
        let r = got.last().unwrap();
        assert_eq!(r.header("content-encoding"), token, "{compression}");
        let mut text = String::new();
        match compression {
            "gzip" => flate2::read::GzDecoder::new(&r.bytes[..]).read_to_string(&mut text),
            "zlib" => flate2::read::ZlibDecoder::new(&r.bytes[..]).read_to_string(&mut text),
            _ => flate2::read::DeflateDecoder::new(&r.bytes[..]).read_to_string(&mut text),
        }
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!([{"device": "a", "v": 1}])
        );
    }
    // The action's own header wins.
    let mut sink = rest(json!({
        "url": format!("{}/own", server.base),
        "method": "post",
        "compression": "gzip",
        "headers": {"Content-Encoding": "x-gzip"},
    }));
    sink.collect_list(&batch(&[("a", 1)])).await.unwrap();
    let got = server.requests();
    assert_eq!(
        got.last().unwrap().header("content-encoding"),
        Some("x-gzip")
    );
}
