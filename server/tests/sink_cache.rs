//! The sink cache (`enableCache`) end to end: quiverd writing to a real HTTP server on
//! loopback that goes away and comes back, across a restart of quiverd itself.

mod common;

#[path = "../../connectors/tests/support/http.rs"]
mod http;

use std::time::Duration;

use common::{Server, temp_dir, wait_metric, wait_rule_status};
use http::TestServer;
use serde_json::{Value, json};

const STREAM: &str = r#"CREATE STREAM readings (v BIGINT) WITH (DATASOURCE="/readings", TYPE="httppush", FORMAT="json")"#;

/// A rule posting each row to `url`, with the cache properties `cache` merged in.
fn rule(id: &str, url: &str, cache: Value) -> Value {
    let mut rest = json!({"url": url, "method": "post", "sendSingle": true});
    rest.as_object_mut()
        .unwrap()
        .extend(cache.as_object().unwrap().clone());
    json!({"id": id, "sql": "SELECT v FROM readings", "actions": [{"rest": rest}]})
}

fn push_each(server: &Server, values: std::ops::Range<i64>) {
    for v in values {
        let (status, body) = server.push("/readings", &json!({"v": v}).to_string());
        assert_eq!(status, 200, "{body}");
    }
}

/// The `v` of every request to `path`, in arrival order.
fn values_at(web: &TestServer, path: &str) -> Vec<Value> {
    web.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.json())
        .collect()
}

#[test]
fn results_a_sink_could_not_write_wait_in_the_cache_across_a_restart_and_arrive_in_order() {
    // The HTTP server's address, then the server goes away: requests are refused.
    let web = TestServer::start();
    let base = web.base.clone();
    drop(web);

    let dir = temp_dir("sink-cache");
    // One worker: rows reach the sink in the order they were pushed, so the order the cache
    // keeps is visible (with more, rows of separate pushes may pass each other on the way).
    let one = ["--workers".to_string(), "1".to_string()];
    let server = Server::start_args(&dir, &one, None);
    server.create_stream(STREAM);
    let cache = json!({"enableCache": true, "memoryCacheThreshold": 2, "bufferPageSize": 2,
                       "maxDiskCache": 100, "resendIndicatorField": "resent"});
    let created = server.call(
        "POST",
        "/rules",
        Some(rule("cached", &format!("{base}/cached"), cache)),
    );
    assert_eq!(created.0, 201, "{created:?}");
    // The same rule without a cache: what fails is dropped and counted, as in eKuiper.
    let created = server.call(
        "POST",
        "/rules",
        Some(rule("plain", &format!("{base}/plain"), json!({}))),
    );
    assert_eq!(created.0, 201, "{created:?}");

    push_each(&server, 0..10);
    wait_metric(&server, "cached", "sink_rest_0_0_records_in_total", 10);
    let plain = wait_metric(&server, "plain", "sink_rest_0_0_exceptions_total", 10);
    assert_eq!(
        plain["sink_rest_0_0_records_out_total"],
        json!(0),
        "{plain}"
    );
    // Rows pushed close together may travel as one emission: the cache holds 1 to 10.
    let st = wait_rule_status(&server, "cached", |st| {
        st["sink_rest_0_0_buffer_length"].as_u64() >= Some(1)
    });
    assert_eq!(st["sink_rest_0_0_records_out_total"], json!(0), "{st}");
    assert_eq!(st["status"], json!("running"), "{st}");

    // An update keeps the cache of a sink that still caches: the new run starts with it (and
    // no new rows come, so only the old cache can fill its buffer).
    let cache = json!({"enableCache": true, "memoryCacheThreshold": 2, "bufferPageSize": 2,
                       "maxDiskCache": 100, "resendIndicatorField": "resent", "resendInterval": 1});
    let updated = server.call(
        "PUT",
        "/rules/cached",
        Some(rule("cached", &format!("{base}/cached"), cache)),
    );
    assert_eq!(updated.0, 200, "{updated:?}");
    wait_rule_status(&server, "cached", |st| {
        st["sink_rest_0_0_buffer_length"].as_u64() >= Some(1)
    });

    // A clean stop keeps what waits on disk; the next run sends it first, in order.
    server.stop();
    let server = Server::start_args(&dir, &one, None);
    let web = TestServer::start_on(base.trim_start_matches("http://"));
    let resent = || values_at(&web, "/cached");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while resent().len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "resent so far: {:?}",
            resent()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let want: Vec<Value> = (0..10).map(|v| json!({"v": v, "resent": true})).collect();
    assert_eq!(resent(), want);

    // Live rows go straight out once the cache is empty, without the indicator.
    push_each(&server, 10..12);
    let st = wait_metric(&server, "cached", "sink_rest_0_0_records_out_total", 12);
    assert_eq!(st["sink_rest_0_0_records_in_total"], json!(2), "{st}");
    let got = resent();
    assert_eq!(got[10..], [json!({"v": 10}), json!({"v": 11})], "{got:?}");
    // The rule without a cache lost what it could not write.
    wait_metric(&server, "plain", "sink_rest_0_0_records_out_total", 2);
    assert_eq!(
        values_at(&web, "/plain"),
        [json!({"v": 10}), json!({"v": 11})]
    );
    server.stop();
}

#[test]
fn a_refused_request_is_dropped_not_resent_and_bad_cache_settings_are_refused() {
    let web = TestServer::start();
    let dir = temp_dir("sink-cache-refused");
    let server = Server::start(&dir);
    server.create_stream(STREAM);
    let cache = json!({"enableCache": true, "resendInterval": 10});
    let created = server.call(
        "POST",
        "/rules",
        Some(rule(
            "refused",
            &format!("{}/status/400", web.base),
            cache.clone(),
        )),
    );
    assert_eq!(created.0, 201, "{created:?}");
    let created = server.call(
        "POST",
        "/rules",
        Some(rule("failing", &format!("{}/status/503", web.base), cache)),
    );
    assert_eq!(created.0, 201, "{created:?}");
    // The first row alone, so that it is the first emission; the others once it failed.
    push_each(&server, 0..1);
    wait_metric(&server, "failing", "sink_rest_0_0_exceptions_total", 1);
    push_each(&server, 1..3);
    // A 400 is the request's own fault: each row is tried once and dropped.
    let st = wait_metric(&server, "refused", "sink_rest_0_0_exceptions_total", 3);
    assert_eq!(st["sink_rest_0_0_buffer_length"], json!(0), "{st}");
    assert_eq!(values_at(&web, "/status/400").len(), 3);
    // A 503 is the far end's: the first row is tried again and again, and the others wait
    // behind it without being tried.
    let st = wait_rule_status(&server, "failing", |st| {
        st["sink_rest_0_0_exceptions_total"].as_u64() >= Some(6)
            && st["sink_rest_0_0_records_in_total"].as_u64() == Some(3)
    });
    assert_eq!(st["sink_rest_0_0_records_out_total"], json!(0), "{st}");
    let tries: Vec<Value> = values_at(&web, "/status/503");
    assert!(tries.len() >= 6, "{tries:?}");
    assert!(tries.iter().all(|v| *v == json!({"v": 0})), "{tries:?}");

    // Settings eKuiper's SinkConf refuses are a 400 naming the property.
    for (props, named) in [
        (
            json!({"enableCache": true, "resendDestination": "http://h/x"}),
            "resendAlterQueue",
        ),
        (
            json!({"enableCache": true, "memoryCacheThreshold": 1000}),
            "memoryCacheThreshold",
        ),
        (
            json!({"enableCache": true, "resendPriority": 3}),
            "resendPriority",
        ),
        (json!({"enableCache": "yes"}), "enableCache"),
    ] {
        let (status, body) = server.json(
            "POST",
            "/rules",
            Some(rule("bad", &format!("{}/x", web.base), props)),
        );
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    }
    // eKuiper's resend destinations are a topic or URL: sinks without one refuse it.
    let log = json!({"id": "bad", "sql": "SELECT v FROM readings", "actions": [{"log": {
        "enableCache": true, "resendAlterQueue": true, "resendDestination": "elsewhere"}}]});
    let (status, body) = server.json("POST", "/rules", Some(log));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not supported by the log sink"),
        "{body}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_sink_keeps_what_it_could_not_publish_and_sends_it_after_the_outage() {
    use common::mqtt::{TestClient, unique};
    use common::proxy::Proxy;
    // The sink reaches the machine's Mosquitto through a proxy the test cuts; the subscriber
    // connects directly, so it never misses what comes back.
    let proxy = Proxy::start("127.0.0.1:1883");
    let topic = format!("quiver-cache/{}", unique());
    let mut subscriber = TestClient::start(1883, Some(topic.clone()));
    subscriber.subscribed().await;
    let dir = temp_dir("sink-cache-mqtt");
    let one = ["--workers".to_string(), "1".to_string()];
    let log = dir.join("quiverd.log");
    let server = tokio::task::block_in_place(|| Server::start_args(&dir, &one, Some(&log)));
    server.create_stream(STREAM);
    let rule = json!({"id": "m", "sql": "SELECT v FROM readings", "actions": [{"mqtt": {
        "server": format!("tcp://127.0.0.1:{}", proxy.port), "topic": topic, "qos": 1,
        "sendSingle": true, "enableCache": true, "memoryCacheThreshold": 4, "bufferPageSize": 2}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);

    let received = |p: rumqttc::Publish| -> i64 {
        serde_json::from_slice::<Value>(&p.payload).unwrap()["v"]
            .as_i64()
            .unwrap()
    };
    server.push("/readings", r#"{"v": 0}"#);
    assert_eq!(received(subscriber.next_publish().await), 0);

    // Cut: rows pushed before the sink notices may still go into its client's queue; probes
    // (v = -1) are pushed until a publish fails, and only the rows after that are checked.
    proxy.cut();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut probes = 0;
    loop {
        server.push("/readings", r#"{"v": -1}"#);
        probes += 1;
        let (_, st) = server.json("GET", "/rules/m/status", None);
        if st["sink_mqtt_0_0_exceptions_total"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed publish: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for v in 1..=9 {
        server.push("/readings", &json!({"v": v}).to_string());
    }
    // Every row reached the sink and waits in its cache (rows pushed close together may
    // travel as one emission, so the cache holds at least one and at most nine more). A probe
    // pushed before the sink noticed the cut may have gone into its client's queue and been
    // counted as written: that is the gap the probes step over.
    let st = wait_metric(&server, "m", "sink_mqtt_0_0_records_in_total", 10 + probes);
    assert!(
        st["sink_mqtt_0_0_buffer_length"].as_u64() >= Some(2),
        "{st}"
    );
    assert_eq!(st["status"], json!("running"), "{st}");

    proxy.restore();
    let mut got = Vec::new();
    while got.len() < 9 {
        let v = received(subscriber.next_publish().await);
        if v > 0 {
            got.push(v);
        }
    }
    assert_eq!(got, (1..=9).collect::<Vec<_>>());
    tokio::task::block_in_place(|| server.stop());
}

#[test]
fn with_resend_alter_queue_live_results_go_out_beside_the_resent_ones() {
    let web = TestServer::start();
    let base = web.base.clone();
    drop(web);
    let dir = temp_dir("sink-cache-alter");
    let one = ["--workers".to_string(), "1".to_string()];
    let server = Server::start_args(&dir, &one, None);
    server.create_stream(STREAM);
    // A slow resend (one cached row every 300 ms), live rows first, and resent rows to a
    // URL of their own (`resendDestination`).
    let cache = json!({"enableCache": true, "resendAlterQueue": true, "resendPriority": -1,
                       "resendInterval": 300, "resendIndicatorField": "resent",
                       "resendDestination": format!("{base}/resent")});
    let created = server.call(
        "POST",
        "/rules",
        Some(rule("alter", &format!("{base}/alter"), cache)),
    );
    assert_eq!(created.0, 201, "{created:?}");
    push_each(&server, 0..5);
    wait_rule_status(&server, "alter", |st| {
        st["sink_rest_0_0_records_in_total"].as_u64() == Some(5)
            && st["sink_rest_0_0_buffer_length"].as_u64() >= Some(1)
    });

    let web = TestServer::start_on(base.trim_start_matches("http://"));
    // Live rows are not queued behind the cache: they are tried (and written) at once.
    push_each(&server, 5..10);
    let st = wait_metric(&server, "alter", "sink_rest_0_0_records_out_total", 10);
    assert_eq!(st["sink_rest_0_0_buffer_length"], json!(0), "{st}");
    let live = values_at(&web, "/alter");
    let resent = values_at(&web, "/resent");
    assert!(
        resent.iter().all(|v| v["resent"] == json!(true)),
        "{resent:?}"
    );
    assert!(live.iter().all(|v| v.get("resent").is_none()), "{live:?}");
    let mut live_values: Vec<i64> = live.iter().map(|v| v["v"].as_i64().unwrap()).collect();
    live_values.sort();
    assert_eq!(live_values, [5, 6, 7, 8, 9]);
    // The resent rows keep their order among themselves.
    let order: Vec<i64> = resent.iter().map(|v| v["v"].as_i64().unwrap()).collect();
    assert_eq!(order, [0, 1, 2, 3, 4]);
    server.stop();
}
