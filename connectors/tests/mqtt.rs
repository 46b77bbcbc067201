//! The MQTT connector against real Mosquitto brokers: the machine's shared one on
//! 127.0.0.1:1883, and a private one per outage test (started and killed by the test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use quiver_connectors::mqtt::{MqttSink, MqttSinkConfig, MqttSource, MqttSourceConfig};
use quiver_connectors::{RawMessage, Sink, Source, SourceEvent, SourceOutput};
use rumqttc::QoS;
use serde_json::{Map, json};
use tokio::sync::mpsc;

#[path = "support/mqtt.rs"]
mod support;
use support::{PrivateBroker, TestClient, free_port, unique};
use tokio::task::JoinHandle;

const SHARED_PORT: u16 = 1883;

/// A running MQTT source and the channel its events arrive on.
struct RunningSource {
    rx: mpsc::Receiver<SourceEvent>,
    task: JoinHandle<Result<(), quiver_connectors::ConnectorError>>,
    state: Arc<quiver_connectors::mqtt::ConnectionState>,
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningSource {
    fn start(port: u16, filter: &str) -> Self {
        Self::start_with(port, filter, json!({}))
    }

    /// A source with the properties of `extra` besides the server and QoS 1.
    fn start_with(port: u16, filter: &str, extra: serde_json::Value) -> Self {
        let mut props = json!({"server": format!("tcp://127.0.0.1:{port}"), "qos": 1});
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let config = MqttSourceConfig::parse(filter, props.as_object().unwrap()).unwrap();
        let mut source = MqttSource::new(config);
        let state = source.status();
        let (tx, rx) = mpsc::channel(16);
        let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
        let task = tokio::spawn(async move { source.run(out).await });
        RunningSource { rx, task, state }
    }

    /// The messages of the next event, or none if nothing arrives `within`.
    async fn next_within(&mut self, within: Duration) -> Vec<RawMessage> {
        match tokio::time::timeout(within, self.rx.recv()).await {
            Ok(Some(SourceEvent::Raw(msgs))) => msgs,
            Ok(Some(_)) => {
                panic!("an MQTT source sends raw messages")
            }
            Ok(None) => panic!("the source stopped: {:?}", self.task),
            Err(_) => Vec::new(),
        }
    }

    /// Every message of the next events, until `n` arrived (10 s at most).
    async fn take(&mut self, n: usize) -> Vec<RawMessage> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(SourceEvent::Raw(msgs))) => got.extend(msgs),
                Ok(Some(_)) => {
                    panic!("an MQTT source sends raw messages")
                }
                Ok(None) => panic!("the source stopped"),
                Err(_) => panic!("only {} of {n} messages within 10 s", got.len()),
            }
        }
        got
    }

    /// Publishes `payload` on `topic` every 300 ms until the source receives it (the source
    /// subscribes asynchronously, after its CONNACK); gives up after `within`.
    async fn probe(
        &mut self,
        publisher: &TestClient,
        topic: &str,
        payload: &str,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let _ = publisher.client.try_publish(
                topic,
                QoS::AtMostOnce,
                false,
                payload.as_bytes().to_vec(),
            );
            let wait = Duration::from_millis(300);
            let mut got = self.next_within(wait).await;
            if !got.is_empty() {
                // Also drain the copies of the probe that are still in flight.
                loop {
                    let more = self.next_within(Duration::from_millis(300)).await;
                    if more.is_empty() {
                        break;
                    }
                    got.extend(more);
                }
                for msg in got {
                    assert_eq!(&*msg.topic, topic);
                    assert_eq!(&*msg.payload, payload.as_bytes());
                }
                return;
            }
        }
        panic!(
            "the source never received the probe on {topic} within {within:?}; state {:?}",
            self.state.snapshot()
        );
    }
}

/// A source on `<base>/#` (a fresh base) of the broker on `port` that already receives, and
/// a publisher.
async fn subscribed_source(port: u16) -> (String, RunningSource, TestClient) {
    let base = format!("quiver-test/{}", unique());
    let mut source = RunningSource::start(port, &format!("{base}/#"));
    let publisher = TestClient::start(port, None);
    source
        .probe(
            &publisher,
            &format!("{base}/probe"),
            "{}",
            Duration::from_secs(10),
        )
        .await;
    (base, source, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_receives_publishes_with_their_topics() {
    let (base, mut source, publisher) = subscribed_source(SHARED_PORT).await;
    assert!(source.state.snapshot().connected);

    let sent = [
        (
            format!("{base}/dev1"),
            r#"{"temperature":20.5,"device":"dev1"}"#,
        ),
        (
            format!("{base}/dev2"),
            r#"{"temperature":21,"device":"dev2"}"#,
        ),
        (format!("{base}/dev1"), r#"[{"a":1},{"a":2}]"#),
    ];
    for (topic, payload) in &sent {
        publisher.publish(topic, payload).await;
    }
    let got = source.take(3).await;
    let got: Vec<(String, String)> = got
        .iter()
        .map(|m| {
            (
                m.topic.to_string(),
                String::from_utf8(m.payload.to_vec()).unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = sent
        .iter()
        .map(|(t, p)| (t.clone(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}

fn batch() -> RecordBatch {
    // Columns out of alphabetical order and a null: the output sorts keys and omits nulls.
    let schema = Arc::new(Schema::new(vec![
        Field::new("b", DataType::Utf8, true),
        Field::new("a", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("x"), None])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_burst_arrives_whole_and_in_order() {
    // Above 20k msgs/s the source waits between reads so that events carry more messages;
    // nothing may be lost or reordered by that. QoS 1 end to end, on a broker of its own
    // that queues every message for a slow subscriber (Mosquitto drops QoS 1 messages past
    // 1,000 queued by default), so any loss is the source's.
    let port = free_port();
    let _broker = PrivateBroker::start_with(port, "max_queued_messages 0\n");
    let (base, mut source, publisher) = subscribed_source(port).await;
    const N: usize = 30_000;
    let topic = format!("{base}/burst");
    let sender = {
        let client = publisher.client.clone();
        tokio::spawn(async move {
            for i in 0..N {
                client
                    .publish(&topic, QoS::AtLeastOnce, false, i.to_string().into_bytes())
                    .await
                    .unwrap();
            }
        })
    };
    let mut got = Vec::with_capacity(N);
    let mut events = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < N {
        let left = deadline.saturating_duration_since(Instant::now());
        let msgs = source.next_within(left).await;
        assert!(
            !msgs.is_empty(),
            "only {} of {N} messages within 60 s",
            got.len()
        );
        events += 1;
        got.extend(
            msgs.iter()
                .map(|m| String::from_utf8(m.payload.to_vec()).unwrap()),
        );
    }
    sender.await.unwrap();
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert!(got == want, "messages lost or reordered");
    println!("{N} messages in {events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_ekuiper_json() {
    for send_single in [false, true] {
        let topic = format!("quiver-test/{}/out", unique());
        let mut subscriber = TestClient::start(SHARED_PORT, Some(topic.clone()));
        subscriber.subscribed().await;

        let config = MqttSinkConfig::parse(&json!({
            "server": "tcp://127.0.0.1:1883",
            "topic": topic,
            "sendSingle": send_single,
            "qos": 1,
        }))
        .unwrap();
        let mut sink = MqttSink::new(config);
        sink.connect().await.unwrap();
        sink.collect_list(&batch()).await.unwrap();

        let expected: &[&str] = if send_single {
            &[r#"{"a":1,"b":"x"}"#, r#"{"a":2}"#]
        } else {
            &[r#"[{"a":1,"b":"x"},{"a":2}]"#]
        };
        for want in expected {
            let p = subscriber.next_publish().await;
            assert_eq!(p.topic, topic);
            assert_eq!(
                std::str::from_utf8(&p.payload).unwrap(),
                *want,
                "sendSingle {send_single}"
            );
            assert!(!p.retain);
        }
        assert!(sink.status().snapshot().connected);
        sink.close().await.unwrap();
        assert!(!sink.status().snapshot().connected);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), subscriber.publishes.recv())
                .await
                .is_err(),
            "no extra messages"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_source_and_sink_speak_protocol_5() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("quiver-mqtt5-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    // Run as root, Mosquitto writes its log as the user it drops to.
    let mut open = std::fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut open, 0o777);
    std::fs::set_permissions(&dir, open).unwrap();
    let log = dir.join("broker.log");
    // The broker's log names each client's protocol: "as <id> (p5, ...)" for MQTT 5.
    let _broker = PrivateBroker::start_with(
        port,
        &format!("log_dest file {}\nlog_type all\n", log.display()),
    );
    let base = format!("quiver-test/{}", unique());
    let (source_id, sink_id) = (format!("src-{}", unique()), format!("sink-{}", unique()));
    let mut source = RunningSource::start_with(
        port,
        &format!("{base}/in/#"),
        json!({"protocolVersion": "5", "clientid": source_id}),
    );
    let publisher = TestClient::start(port, None);
    source
        .probe(
            &publisher,
            &format!("{base}/in/probe"),
            "{}",
            Duration::from_secs(10),
        )
        .await;
    publisher
        .publish(&format!("{base}/in/a"), r#"{"v":5}"#)
        .await;
    let got = source.take(1).await;
    assert_eq!(&*got[0].topic, format!("{base}/in/a"));
    assert_eq!(&*got[0].payload, br#"{"v":5}"#);
    assert_eq!(got[0].qos, Some(1));

    let topic = format!("{base}/out");
    let mut subscriber = TestClient::start(port, Some(topic.clone()));
    subscriber.subscribed().await;
    let config = MqttSinkConfig::parse(&json!({
        "server": format!("tcp://127.0.0.1:{port}"), "topic": topic, "qos": 1,
        "protocolVersion": "5", "clientId": sink_id, "sendSingle": true,
    }))
    .unwrap();
    let mut sink = MqttSink::new(config);
    sink.connect().await.unwrap();
    sink.collect_list(&batch()).await.unwrap();
    let p = subscriber.next_publish().await;
    assert_eq!(
        std::str::from_utf8(&p.payload).unwrap(),
        r#"{"a":1,"b":"x"}"#
    );
    sink.close().await.unwrap();

    let said = std::fs::read_to_string(&log).unwrap();
    for id in [&source_id, &sink_id] {
        assert!(
            said.contains(&format!("as {id} (p5")),
            "{id} not MQTT 5:\n{said}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_reports_a_missing_broker_and_connects_when_it_appears() {
    let port = free_port();
    let config = MqttSinkConfig::parse(&json!({
        "server": format!("127.0.0.1:{port}"),
        "topic": "quiver-test/late",
    }))
    .unwrap();
    let mut sink = MqttSink::new(config);
    let state = sink.status();
    sink.connect().await.unwrap();
    wait_for(
        "the sink to report the refused connection",
        Duration::from_secs(5),
        || {
            let s = state.snapshot();
            !s.connected && s.last_error.is_some()
        },
    )
    .await;

    let _broker = PrivateBroker::start(port);
    let mut subscriber = TestClient::start(port, Some("quiver-test/late".into()));
    subscriber.subscribed().await;
    wait_for("the sink to connect", Duration::from_secs(10), || {
        state.is_connected()
    })
    .await;
    sink.collect_list(&batch()).await.unwrap();
    let p = subscriber.next_publish().await;
    assert_eq!(&p.payload[..], br#"[{"a":1,"b":"x"},{"a":2}]"#);
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_survives_a_broker_restart() {
    let port = free_port();
    let broker = PrivateBroker::start(port);
    let base = format!("quiver-test/{}", unique());
    let mut source = RunningSource::start(port, &format!("{base}/+"));
    let publisher = TestClient::start(port, None);
    source
        .probe(
            &publisher,
            &format!("{base}/before"),
            "1",
            Duration::from_secs(10),
        )
        .await;
    let first_connect = source.state.snapshot().last_connected_ms.unwrap();

    drop(broker);
    wait_for(
        "the source to see the broker go",
        Duration::from_secs(10),
        || {
            let s = source.state.snapshot();
            !s.connected && s.last_error.is_some()
        },
    )
    .await;

    let _broker = PrivateBroker::start(port);
    source
        .probe(
            &publisher,
            &format!("{base}/after"),
            "2",
            Duration::from_secs(20),
        )
        .await;
    let s = source.state.snapshot();
    assert!(s.connected, "{s:?}");
    assert!(s.last_connected_ms.unwrap() >= first_connect);
    assert!(!source.task.is_finished());
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn registry_knows_mqtt() {
    let c = quiver_connectors::Connectors::new();
    assert!(c.source_types().contains(&"mqtt"));
    assert!(c.sink_types().contains(&"mqtt"));
    let spec = quiver_connectors::SourceSpec {
        source_type: "mqtt".into(),
        datasource: "a/#".into(),
        props: Map::new(),
        ..Default::default()
    };
    assert!(c.source(&spec).is_ok());
    assert!(c.sink("mqtt", &json!({"topic": "x"})).is_ok());
    assert!(c.sink("mqtt", &json!({})).is_err());
}
