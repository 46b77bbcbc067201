//! quiverd end to end with the Redis connectors against the machine's Redis (127.0.0.1:6379,
//! database 2, keys and channels under a prefix of this test): a `redisSub` stream feeding a
//! rule whose results go to the `redis` sink and the `redisPub` sink.

mod common;

#[path = "../../connectors/tests/support/redis.rs"]
mod private_redis;

use std::time::{Duration, Instant};

use common::{Server, temp_dir, wait_metric};
use private_redis::delete_prefixed;
use serde_json::{Value, json};

const DB: i64 = 2;

fn connect() -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:6379/{DB}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("Redis on 127.0.0.1:6379")
}

/// Deletes the test's keys when it ends, even when it fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_prefixed(&mut connect(), &self.0);
    }
}

#[test]
fn redis_sub_stream_feeds_redis_and_redis_pub_sinks() {
    let prefix = format!("quiver-redis-e2e:{}:", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let (input, output) = (format!("{prefix}in"), format!("{prefix}out"));
    let dir = temp_dir("redis-e2e");
    let profiles = dir.join("profiles.yaml");
    std::fs::write(
        &profiles,
        format!("redisSub:\n  readings:\n    address: 127.0.0.1:6379\n    db: {DB}\n    channels: [\"{input}\"]\n"),
    )
    .unwrap();
    let server = Server::start_with(&dir, Some(&profiles));
    server.create_stream(
        r#"CREATE STREAM readings (id STRING, temperature FLOAT) WITH (TYPE="redisSub", CONF_KEY="readings", FORMAT="json")"#,
    );

    // Properties are checked when the rule is created: the error names the property.
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "typo", "sql": "SELECT * FROM readings",
                    "actions": [{"redis": {"field": "id", "expire": 10}}]})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown property \"expire\""),
        "{body}"
    );

    let rule = json!({
        "id": "hot",
        "sql": "SELECT id, temperature, meta(topic) AS channel FROM readings WHERE temperature > 20",
        "actions": [
            {"redis": {"addr": "127.0.0.1:6379", "db": DB, "field": "id", "expiration": 600}},
            {"redisPub": {"address": "127.0.0.1:6379", "db": DB, "channel": output,
                          "sendSingle": true}}
        ]
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);

    // Listen to the redisPub sink's channel, then publish until the rule's source listens.
    let (tx, published) = std::sync::mpsc::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let channel = output.clone();
    std::thread::spawn(move || {
        let mut conn = connect();
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        ready_tx.send(()).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            if tx.send(msg.get_payload::<String>().unwrap()).is_err() {
                return;
            }
        }
    });
    ready.recv().unwrap();
    let mut conn = connect();
    let payload = json!([
        {"id": format!("{prefix}a"), "temperature": 25},
        {"id": format!("{prefix}b"), "temperature": 10},
        {"id": format!("{prefix}c"), "temperature": 30}
    ])
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(&input)
            .arg(&payload)
            .query(&mut conn)
            .unwrap();
        if receivers > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the stream never subscribed");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Two rows pass the filter: each is a key of the redis sink and a message of redisPub.
    let st = wait_metric(&server, "hot", "sink_redis_0_0_records_out_total", 2);
    assert_eq!(st["sink_redis_0_0_exceptions_total"], json!(0), "{st}");
    let get = |conn: &mut redis::Connection, k: &str| -> Option<Value> {
        let text: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}{k}"))
            .query(conn)
            .unwrap();
        text.map(|t| serde_json::from_str(&t).unwrap())
    };
    assert_eq!(
        get(&mut conn, "a"),
        Some(json!({"id": format!("{prefix}a"), "temperature": 25, "channel": input}))
    );
    assert_eq!(get(&mut conn, "b"), None);
    assert!(get(&mut conn, "c").is_some());
    let mut got: Vec<Value> = (0..2)
        .map(|_| {
            let text = published.recv_timeout(Duration::from_secs(20)).unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    got.sort_by_key(|v| v["id"].as_str().unwrap_or("").to_string());
    assert_eq!(got[0]["id"], json!(format!("{prefix}a")));
    assert_eq!(got[1]["temperature"], json!(30));
}
