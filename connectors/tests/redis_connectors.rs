//! The `redis` and `redisPub` sinks and the `redisSub` source against the real Redis on
//! 127.0.0.1:6379 (database 2), each test under its own key or channel prefix, and against a
//! private `redis-server` the outage tests start on a free port and kill.

#[path = "support/redis.rs"]
mod private_redis;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use private_redis::{PrivateRedis, delete_prefixed, free_port};
use quiver_connectors::redis::{
    RedisPubConfig, RedisPubSink, RedisSink, RedisSinkConfig, RedisSubConfig, RedisSubSource,
};
use quiver_connectors::{ConnectorError, Sink, Source, SourceEvent, SourceOutput};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const DB: i64 = 2;
const SHARED: &str = "127.0.0.1:6379";

/// A test's keys and channels: a unique prefix, and its keys deleted when the test ends.
struct Scope {
    prefix: String,
    conn: redis::Connection,
}

impl Scope {
    fn new(test: &str) -> Scope {
        Scope {
            prefix: format!("quiver-redis-test:{test}:{}:", std::process::id()),
            conn: connect(SHARED),
        }
    }

    fn name(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn get(&mut self, k: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(self.name(k))
            .query(&mut self.conn)
            .unwrap()
    }

    fn list(&mut self, k: &str) -> Vec<String> {
        redis::cmd("LRANGE")
            .arg(self.name(k))
            .arg(0)
            .arg(-1)
            .query(&mut self.conn)
            .unwrap()
    }

    fn ttl(&mut self, k: &str) -> i64 {
        redis::cmd("TTL")
            .arg(self.name(k))
            .query(&mut self.conn)
            .unwrap()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        delete_prefixed(&mut self.conn, &self.prefix);
    }
}

fn connect(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/{DB}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("Redis answers")
}

/// A batch of string columns (`None` is null).
fn batch(columns: &[(&str, Vec<Option<&str>>)]) -> RecordBatch {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|(_, v)| Arc::new(StringArray::from(v.clone())) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(schema), arrays).unwrap()
}

fn redis_sink(props: Value) -> RedisSink {
    RedisSink::new(RedisSinkConfig::parse(&props).unwrap()).unwrap()
}

fn reason(e: ConnectorError) -> String {
    match e {
        ConnectorError::Io { reason, .. } => reason,
        other => panic!("expected an I/O error, got {other}"),
    }
}

#[tokio::test]
async fn rows_are_set_under_their_field_with_an_expiration() {
    let mut s = Scope::new("field");
    let (a, b) = (s.name("a"), s.name("b"));
    let mut sink = redis_sink(json!({"addr": SHARED, "db": DB, "field": "id", "expiration": 600}));
    sink.connect().await.unwrap();
    let rows = batch(&[
        ("id", vec![Some(&a), Some(&b), None]),
        ("temperature", vec![Some("20.5"), Some("30"), Some("1")]),
    ]);
    // The row without an id fails alone; the others are written.
    let e = reason(sink.collect_list(&rows).await.unwrap_err());
    assert!(
        e.contains("1 of 3 rows failed") && e.contains("\"id\" does not exist"),
        "{e}"
    );
    let got: Value = serde_json::from_str(&s.get("a").unwrap()).unwrap();
    assert_eq!(got, json!({"id": a, "temperature": "20.5"}));
    assert!(s.get("b").is_some());
    let ttl = s.ttl("a");
    assert!(ttl > 0 && ttl <= 600, "TTL {ttl}");
    sink.close().await.unwrap();
}

#[tokio::test]
async fn row_kinds_upsert_and_delete_string_and_list_keys() {
    let mut s = Scope::new("rowkind");
    let (k1, k2) = (s.name("1"), s.name("2"));
    let mut strings = redis_sink(json!({"addr": SHARED, "db": DB, "field": "id",
                                  "rowkindField": "action", "sendSingle": true}));
    strings
        .collect_list(&batch(&[
            ("id", vec![Some(&k1), Some(&k2)]),
            ("action", vec![Some("insert"), Some("upsert")]),
        ]))
        .await
        .unwrap();
    assert!(s.get("1").is_some() && s.get("2").is_some());
    // Delete one, update the other, and a kind eKuiper does not know fails its row.
    let e = strings
        .collect_list(&batch(&[
            ("id", vec![Some(&k1), Some(&k2), Some(&k2)]),
            (
                "action",
                vec![Some("delete"), Some("update"), Some("merge")],
            ),
            ("v", vec![None, Some("new"), None]),
        ]))
        .await
        .unwrap_err();
    assert!(reason(e).contains("\"merge\""));
    assert_eq!(s.get("1"), None);
    let got: Value = serde_json::from_str(&s.get("2").unwrap()).unwrap();
    assert_eq!(got["v"], json!("new"));

    // A list under a fixed key: LPUSH to write, LPOP to delete.
    let mut lists = redis_sink(json!({"addr": SHARED, "db": DB, "key": s.name("list"),
                                "dataType": "list", "rowkindField": "action"}));
    lists
        .collect_list(&batch(&[
            ("n", vec![Some("a"), Some("b"), Some("c")]),
            ("action", vec![None, None, Some("delete")]),
        ]))
        .await
        .unwrap();
    let items: Vec<Value> = s
        .list("list")
        .iter()
        .map(|i| serde_json::from_str(i).unwrap())
        .collect();
    assert_eq!(items, [json!({"n": "a"})]);
}

#[tokio::test]
async fn multiple_keys_and_a_wrong_type_failing_its_row_only() {
    let mut s = Scope::new("multiple");
    let (t, h) = (s.name("temperature"), s.name("humidity"));
    let mut sink = redis_sink(json!({"addr": SHARED, "db": DB, "keyType": "multiple"}));
    sink.collect_list(&batch(&[
        (&t, vec![Some("40.9")]),
        (&h, vec![Some("30.9")]),
    ]))
    .await
    .unwrap();
    assert_eq!(s.get("temperature").as_deref(), Some("40.9"));
    assert_eq!(s.get("humidity").as_deref(), Some("30.9"));

    // LPUSH onto a string key is Redis's WRONGTYPE: that row fails, the next one is written.
    let mut lists = redis_sink(json!({"addr": SHARED, "db": DB, "field": "k", "dataType": "list"}));
    let (bad, good) = (s.name("temperature"), s.name("good"));
    let e = lists
        .collect_list(&batch(&[("k", vec![Some(&bad), Some(&good)])]))
        .await
        .unwrap_err();
    let e = reason(e);
    assert!(
        e.contains("1 of 2 rows failed") && e.contains("WRONGTYPE"),
        "{e}"
    );
    assert_eq!(s.list("good").len(), 1);
}

#[tokio::test]
async fn data_templates_and_send_error_texts_become_rows() {
    let mut s = Scope::new("template");
    let mut sink = redis_sink(json!({"addr": SHARED, "db": DB, "field": "id"}));
    assert!(sink.accepts_payloads());
    let id = s.name("t");
    let rendered = format!(r#"[{{"id": "{id}", "x": 1}}]"#).into_bytes();
    let any = batch(&[("unused", vec![Some("x")])]);
    sink.collect_rendered(&any, &[rendered]).await.unwrap();
    let got: Value = serde_json::from_str(&s.get("t").unwrap()).unwrap();
    assert_eq!(got, json!({"id": id, "x": 1}));
    let e = sink
        .collect_rendered(&any, &[b"not json".to_vec()])
        .await
        .unwrap_err();
    assert!(reason(e).contains("dataTemplate"));

    // sendError hands a row sink `{"error": text}`.
    let mut errors = redis_sink(json!({"addr": SHARED, "db": DB, "key": s.name("errors"),
                                       "dataType": "list"}));
    errors.collect_payloads(&[b"boom".to_vec()]).await.unwrap();
    assert_eq!(s.list("errors"), [r#"{"error":"boom"}"#]);
}

/// A subscriber on the shared Redis: the messages of `channel`, read on a thread of its own.
fn subscriber(channel: &str) -> std::sync::mpsc::Receiver<(String, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let channel = channel.to_string();
    std::thread::spawn(move || {
        let mut conn = connect(SHARED);
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        ready_tx.send(()).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            let payload: String = msg.get_payload().unwrap();
            if tx
                .send((msg.get_channel_name().to_string(), payload))
                .is_err()
            {
                return;
            }
        }
    });
    ready_rx.recv().unwrap();
    rx
}

#[tokio::test]
async fn redis_pub_publishes_a_batch_or_each_row() {
    let s = Scope::new("pub");
    let channel = s.name("out");
    let rx = subscriber(&channel);
    let rows = batch(&[("device", vec![Some("a"), Some("b")])]);
    let mut batches = RedisPubSink::new(
        RedisPubConfig::parse(&json!({"address": SHARED, "db": DB, "channel": channel})).unwrap(),
    )
    .unwrap();
    batches.connect().await.unwrap();
    batches.collect_list(&rows).await.unwrap();
    let mut single = RedisPubSink::new(
        RedisPubConfig::parse(
            &json!({"address": SHARED, "db": DB, "channel": channel, "sendSingle": true}),
        )
        .unwrap(),
    )
    .unwrap();
    single.collect_list(&rows).await.unwrap();
    single
        .collect_payloads(&[b"templated".to_vec()])
        .await
        .unwrap();
    let got: Vec<String> = (0..4)
        .map(|_| {
            let (ch, payload) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(ch, channel);
            payload
        })
        .collect();
    assert_eq!(
        got,
        [
            r#"[{"device":"a"},{"device":"b"}]"#,
            r#"{"device":"a"}"#,
            r#"{"device":"b"}"#,
            "templated"
        ]
    );
}

/// Runs a redisSub source with one worker queue of `capacity` events.
fn start_sub(
    datasource: &str,
    props: Value,
    capacity: usize,
) -> (mpsc::Receiver<SourceEvent>, tokio::task::JoinHandle<()>) {
    let (rx, task, _) = start_sub_with_state(datasource, props, capacity);
    (rx, task)
}

/// [`start_sub`], also giving the source's connection state (the rule status's
/// `connection_*` metrics).
fn start_sub_with_state(
    datasource: &str,
    props: Value,
    capacity: usize,
) -> (
    mpsc::Receiver<SourceEvent>,
    tokio::task::JoinHandle<()>,
    Arc<quiver_connectors::mqtt::ConnectionState>,
) {
    let config = RedisSubConfig::parse(datasource, props.as_object().unwrap()).unwrap();
    let (tx, rx) = mpsc::channel(capacity);
    let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
    let mut source = RedisSubSource::new(config);
    let state = source
        .connection()
        .expect("redisSub reports its connection");
    let task = tokio::spawn(async move {
        let _ = source.run(out).await;
    });
    (rx, task, state)
}

/// Waits until the connection state says `connected`.
async fn wait_connected(state: &quiver_connectors::mqtt::ConnectionState, connected: bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state.is_connected() != connected {
        assert!(
            std::time::Instant::now() < deadline,
            "connected never became {connected}: {:?}",
            state.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message as (topic, payload).
async fn next_message(rx: &mut mpsc::Receiver<SourceEvent>) -> (String, String) {
    let event = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a message within 20 s")
        .expect("the source is running");
    let m = event
        .into_messages()
        .expect("raw messages")
        .pop()
        .expect("one");
    (
        m.topic.to_string(),
        String::from_utf8(m.payload.to_vec()).unwrap(),
    )
}

/// Publishes `payload` on `channel` until someone receives it; returns how many did.
fn publish(conn: &mut redis::Connection, channel: &str, payload: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query(conn)
        .unwrap()
}

/// Publishes until the subscriber is there (PUBLISH answers how many received it).
async fn publish_when_subscribed(conn: &mut redis::Connection, channel: &str, payload: &str) {
    for _ in 0..400 {
        if publish(conn, channel, payload) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nobody subscribed to {channel}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sub_receives_patterned_channels_and_holds_back_when_the_rule_is_behind() {
    let s = Scope::new("sub");
    let mut conn = connect(SHARED);
    // One event of room: the subscriber has to wait for the consumer.
    let (mut rx, task) = start_sub(
        "",
        json!({"address": SHARED, "db": DB, "channels": [s.name("a"), s.name("p*")]}),
        1,
    );
    publish_when_subscribed(&mut conn, &s.name("a"), r#"{"n": 0}"#).await;
    for n in 1..=20 {
        let channel = if n % 2 == 0 {
            s.name("a")
        } else {
            s.name("p1")
        };
        assert_eq!(publish(&mut conn, &channel, &format!(r#"{{"n": {n}}}"#)), 1);
    }
    // Every message arrives, in order, with its channel as the topic.
    for n in 0..=20 {
        let (topic, payload) = next_message(&mut rx).await;
        let want = if n % 2 == 0 {
            s.name("a")
        } else {
            s.name("p1")
        };
        assert_eq!(topic, want);
        let v: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["n"], json!(n));
    }
    task.abort();
    let _ = task.await;
    // The stopped source unsubscribes (within its poll interval).
    for _ in 0..100 {
        if publish(&mut conn, &s.name("a"), "{}") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stopped source is still subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_batches_until_redis_is_back_and_the_subscriber_resubscribes() {
    let port = free_port();
    let server = PrivateRedis::start(port);
    let addr = server.addr();
    let mut sink = redis_sink(json!({"addr": addr, "db": DB, "key": "k", "dataType": "list"}));
    let (mut rx, task, state) = start_sub_with_state("news", json!({"address": addr, "db": DB}), 8);
    let one = batch(&[("n", vec![Some("1")])]);
    sink.connect().await.unwrap();
    sink.collect_list(&one).await.unwrap();
    let mut conn = connect(&addr);
    publish_when_subscribed(&mut conn, "news", "before").await;
    assert_eq!(next_message(&mut rx).await.1, "before");
    assert!(state.is_connected());

    // Redis goes away: a batch fails with the server's address in the error, and the
    // source's connection state says it is down and why.
    drop(server);
    let e = reason(sink.collect_list(&one).await.unwrap_err());
    assert!(e.contains(&addr), "{e}");
    wait_connected(&state, false).await;
    assert!(
        state.snapshot().last_error.is_some(),
        "{:?}",
        state.snapshot()
    );

    // Back on the same port (empty): the sink reconnects at its next batch and the source
    // subscribes again by itself.
    let server = PrivateRedis::start(port);
    sink.collect_list(&one).await.unwrap();
    let mut conn = connect(&server.addr());
    let len: i64 = redis::cmd("LLEN").arg("k").query(&mut conn).unwrap();
    assert_eq!(len, 1);
    publish_when_subscribed(&mut conn, "news", "after").await;
    // Publishes before the resubscription reached nobody: the first message is this one.
    assert_eq!(next_message(&mut rx).await.1, "after");
    wait_connected(&state, true).await;
    task.abort();
}

#[tokio::test]
async fn credentials_reach_a_server_that_wants_them() {
    let server = PrivateRedis::start_with(free_port(), &["--requirepass", "s3cret"]);
    let addr = server.addr();
    let one = batch(&[("n", vec![Some("1")])]);
    let mut wrong = redis_sink(json!({"addr": addr, "key": "k", "password": "nope"}));
    let e = reason(wrong.collect_list(&one).await.unwrap_err());
    assert!(e.contains(&addr), "{e}");
    let mut right = redis_sink(json!({"addr": addr, "key": "k", "password": "s3cret"}));
    right.collect_list(&one).await.unwrap();
    let mut conn = redis::Client::open(format!("redis://:s3cret@{addr}/0"))
        .unwrap()
        .get_connection()
        .unwrap();
    let got: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(got, r#"{"n":"1"}"#);
}
