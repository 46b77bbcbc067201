//! The kafka source and sink against a real Kafka-protocol broker: a private tansu per test on
//! a free loopback port (see support/tansu.rs), topics made with tansu's own CLI.

#[path = "support/mqtt.rs"]
mod mqtt;
#[path = "support/rows.rs"]
mod rows;
#[path = "support/tansu.rs"]
mod tansu;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use quiver_connectors::kafka::client::Client;
use quiver_connectors::kafka::records::{self, Message};
use quiver_connectors::kafka::scram::ScramHash;
use quiver_connectors::kafka::{
    Connection, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig, Sasl, SaslMechanism,
};
use quiver_connectors::{ConnectorError, Sink, Source, SourceEvent, SourceOutput};
use serde_json::{Value, json};
use tansu::{Tansu, unique};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a test waits for what it expects before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn connection(brokers: &str) -> Connection {
    Connection {
        brokers: vec![brokers.to_string()],
        sasl: None,
        tls: None,
        max_attempts: 3,
    }
}

/// Writes `values` to one partition through the client, as another producer would.
async fn produce(client: &mut Client, topic: &str, partition: i32, values: &[&str]) {
    let msgs: Vec<Message> = values
        .iter()
        .map(|v| Message::value(Bytes::copy_from_slice(v.as_bytes())))
        .collect();
    client
        .produce(topic, partition, records::encode(&msgs, false).unwrap(), -1)
        .await
        .unwrap();
}

/// Reads `partitions` of `topic` from the start until `n` messages arrived.
async fn read_back(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    n: usize,
) -> BTreeMap<i32, Vec<Message>> {
    let deadline = Instant::now() + PATIENCE;
    let mut positions: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut got: BTreeMap<i32, Vec<Message>> = BTreeMap::new();
    while got.values().map(Vec::len).sum::<usize>() < n {
        assert!(Instant::now() < deadline, "only {got:?} of {n} messages");
        let at: Vec<(i32, i64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
        for f in client.fetch(topic, &at, 1 << 20, 200).await.unwrap() {
            let Some(data) = f.records else { continue };
            let from = positions[&f.partition];
            for (offset, m) in records::decode(data, from).unwrap() {
                positions.insert(f.partition, offset + 1);
                got.entry(f.partition).or_default().push(m);
            }
        }
    }
    got
}

fn json_of(m: &Message) -> Value {
    serde_json::from_slice(&m.value).unwrap()
}

fn sink(broker: &Tansu, topic: &str, extra: Value) -> KafkaSink {
    let mut props = json!({"brokers": broker.brokers(), "topic": topic});
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    KafkaSink::new(KafkaSinkConfig::parse(&props).unwrap())
}

/// A running source and the events it sends.
struct Running {
    rx: mpsc::Receiver<SourceEvent>,
    task: JoinHandle<Result<(), ConnectorError>>,
    /// The source's connection state (the rule status's `connection_*` metrics).
    state: Arc<quiver_connectors::mqtt::ConnectionState>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    fn start(brokers: &str, topic: &str, extra: Value) -> Running {
        let mut props = json!({"brokers": brokers});
        props
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let config = KafkaSourceConfig::parse(topic, props.as_object().unwrap()).unwrap();
        let mut source = KafkaSource::new(config);
        let state = source.connection().expect("kafka reports its connection");
        let (tx, rx) = mpsc::channel(16);
        let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
        let task = tokio::spawn(async move { source.run(out).await });
        Running { rx, task, state }
    }

    /// The payloads of the next events until one equals `last` (which is included).
    async fn take_until(&mut self, last: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("\"{last}\" did not arrive; got {got:?}"))
                .expect("the source runs");
            for m in event.into_messages().expect("raw messages") {
                got.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
            if got.iter().any(|g| g == last) {
                return got;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_a_message_per_row_keyed_with_headers() {
    let broker = Tansu::start();
    let topic = format!("sink-{}", unique());
    broker.create_topic(&topic, 3);
    let mut sink = sink(
        &broker,
        &topic,
        json!({"key": "{{.device}}", "headers": {"src": "quiver", "dev": "{{.device}}"}}),
    );
    sink.connect().await.unwrap();
    let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
    sink.collect_list(&rows::full_batch(&rows)).await.unwrap();
    let mut client = Client::new(connection(&broker.brokers()));
    let got = read_back(&mut client, &topic, 3, rows.len()).await;
    let mut seen = Vec::new();
    for msgs in got.values() {
        for m in msgs {
            let v = json_of(m);
            let device = v["device"].as_str().unwrap().to_string();
            // The key and the templated header are the row's device; one device, one partition.
            assert_eq!(m.key.as_deref(), Some(device.as_bytes()));
            let headers: BTreeMap<&str, &[u8]> = m
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), &v[..]))
                .collect();
            assert_eq!(headers["src"], b"quiver");
            assert_eq!(headers["dev"], device.as_bytes());
            seen.push((device, v["v"].as_i64().unwrap()));
        }
        let devices: std::collections::BTreeSet<_> = msgs
            .iter()
            .map(|m| json_of(m)["device"].as_str().unwrap().to_string())
            .collect();
        for d in devices {
            // A device's rows stay in their order within its partition.
            let vs: Vec<i64> = msgs
                .iter()
                .map(json_of)
                .filter(|v| v["device"] == d.as_str())
                .map(|v| v["v"].as_i64().unwrap())
                .collect();
            assert!(vs.windows(2).all(|w| w[0] < w[1]), "{vs:?}");
        }
    }
    let partitions_of = |d: &str| {
        got.iter()
            .filter(|(_, ms)| ms.iter().any(|m| json_of(m)["device"] == d))
            .count()
    };
    assert!(["a", "b", "c"].iter().all(|d| partitions_of(d) == 1));
    seen.sort();
    let mut want: Vec<(String, i64)> = rows.iter().map(|(d, v)| (d.to_string(), *v)).collect();
    want.sort();
    assert_eq!(seen, want);
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_splits_batches_compresses_and_keeps_order() {
    let broker = Tansu::start();
    let topic = format!("gzip-{}", unique());
    broker.create_topic(&topic, 1);
    let mut sink = sink(
        &broker,
        &topic,
        json!({"compression": "gzip", "kafkaBatchSize": 2, "requiredACKs": 1, "sendNilField": true}),
    );
    let batch = rows::batch(&[("a", Some(1)), ("b", None), ("c", Some(3))]);
    sink.collect_list(&batch).await.unwrap();
    sink.collect_payloads(&[b"{\"t\":1}".to_vec(), b"{\"t\":2}".to_vec()])
        .await
        .unwrap();
    let mut client = Client::new(connection(&broker.brokers()));
    let got = read_back(&mut client, &topic, 1, 5).await;
    let values: Vec<Value> = got[&0].iter().map(json_of).collect();
    assert_eq!(
        values,
        [
            json!({"device": "a", "v": 1}),
            json!({"device": "b", "v": null}),
            json!({"device": "c", "v": 3}),
            json!({"t": 1}),
            json!({"t": 2}),
        ]
    );
    assert!(got[&0].iter().all(|m| m.key.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_resumes_from_the_offsets_its_group_committed() {
    let broker = Tansu::start();
    let topic = format!("src-{}", unique());
    let group = format!("g-{}", unique());
    broker.create_topic(&topic, 2);
    let mut client = Client::new(connection(&broker.brokers()));
    produce(&mut client, &topic, 0, &["a1", "a2", "a3"]).await;
    produce(&mut client, &topic, 1, &["b1", "b2"]).await;
    let props = json!({"groupID": group, "offsetReset": "earliest"});

    let mut first = Running::start(&broker.brokers(), &topic, props.clone());
    let mut got = Vec::new();
    while got.len() < 5 {
        let more = first.take_until_any().await;
        got.extend(more);
    }
    got.sort();
    assert_eq!(got, ["a1", "a2", "a3", "b1", "b2"]);
    // The source commits once the messages are with the rule; wait for that, then stop it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let committed = client.committed(&group, &topic, &[0, 1]).await.unwrap();
        if committed.get(&0) == Some(&3) && committed.get(&1) == Some(&2) {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(first);

    produce(&mut client, &topic, 0, &["a4"]).await;
    produce(&mut client, &topic, 1, &["b3", "end"]).await;
    let mut second = Running::start(&broker.brokers(), &topic, props);
    let mut again = second.take_until("end").await;
    again.sort();
    // Only what came after the commit: nothing read twice, nothing lost.
    assert_eq!(again, ["a4", "b3", "end"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_without_group_reads_its_partition_from_the_latest_offset() {
    let broker = Tansu::start();
    let topic = format!("latest-{}", unique());
    broker.create_topic(&topic, 2);
    let mut client = Client::new(connection(&broker.brokers()));
    produce(&mut client, &topic, 1, &["old"]).await;
    let mut source = Running::start(&broker.brokers(), &topic, json!({"partition": 1}));
    // The source starts at the end of the partition at some point after it runs: write
    // numbered messages until one arrives, then a last one.
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut i = 0;
    while got.is_empty() {
        assert!(Instant::now() < deadline, "nothing arrived");
        i += 1;
        produce(&mut client, &topic, 0, &[&format!("other-{i}")]).await;
        produce(&mut client, &topic, 1, &[&format!("new-{i}")]).await;
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(200), source.rx.recv()).await
        {
            for m in event.into_messages().unwrap() {
                got.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
        }
    }
    produce(&mut client, &topic, 1, &["last"]).await;
    got.extend(source.take_until("last").await);
    // Never the message from before it started, never partition 0, the rest in order.
    assert!(
        got.iter().all(|g| g.starts_with("new-") || g == "last"),
        "{got:?}"
    );
    let numbers: Vec<u32> = got
        .iter()
        .filter_map(|g| g.strip_prefix("new-").map(|n| n.parse().unwrap()))
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] + 1 == w[1]), "{got:?}");
    assert_eq!(numbers.last(), Some(&i));
}

/// The error of connecting `sink` and writing one row with it, if any.
async fn write_error(mut sink: KafkaSink) -> Option<ConnectorError> {
    if let Err(e) = sink.connect().await {
        return Some(e);
    }
    sink.collect_list(&rows::full_batch(&[("x", 0)]))
        .await
        .err()
}

/// SASL properties for a source or a sink.
fn login(kind: &str, user: &str, password: &str) -> Value {
    json!({"saslAuthType": kind, "saslUserName": user, "saslPassword": password})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logins_read_and_write_and_a_wrong_password_is_refused() {
    let broker =
        Tansu::start_authenticated(&[("plant", "s3cret-pw", true), ("line", "other-pw", false)]);
    let topic = format!("scram-{}", unique());
    // A SCRAM-SHA-256 client makes the topic and writes to it (tansu's CLI cannot log in).
    let mut admin = Client::new(Connection {
        sasl: Some(Sasl {
            mechanism: SaslMechanism::Scram(ScramHash::Sha256),
            username: "line".into(),
            password: "other-pw".into(),
        }),
        ..connection(&broker.brokers())
    });
    admin.create_topic(&topic, 1).await.unwrap();
    produce(&mut admin, &topic, 0, &["m1", "m2"]).await;

    // eKuiper's `scram` is SCRAM-SHA-512: the source reads, the sink writes.
    let mut props = login("scram", "plant", "s3cret-pw");
    props["offsetReset"] = json!("earliest");
    let mut source = Running::start(&broker.brokers(), &topic, props);
    assert_eq!(source.take_until("m2").await, ["m1", "m2"]);
    let mut writer = sink(&broker, &topic, login("scram", "plant", "s3cret-pw"));
    writer.connect().await.unwrap();
    writer
        .collect_list(&rows::full_batch(&[("a", 1)]))
        .await
        .unwrap();
    let got = read_back(&mut admin, &topic, 1, 3).await;
    assert_eq!(json_of(&got[&0][2])["device"], "a");
    writer.close().await.unwrap();

    // A wrong password, or a SHA-256 login of a SHA-512 user, is refused with the reason.
    for (kind, password) in [("scram", "wrong"), ("scram-sha-256", "s3cret-pw")] {
        let error = write_error(sink(&broker, &topic, login(kind, "plant", password)))
            .await
            .expect("refused");
        assert!(
            error
                .to_string()
                .contains("SASL login of \"plant\" refused"),
            "{kind}: {error}"
        );
    }
    // The broker requires the login: without one nothing is written.
    assert!(
        write_error(sink(&broker, &topic, json!({})))
            .await
            .is_some(),
        "an anonymous client wrote to an authenticated broker"
    );
    // Nothing else reached the topic.
    let got = read_back(&mut admin, &topic, 1, 3).await;
    assert_eq!(got[&0].len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_sink_wait_for_a_broker_that_starts_late() {
    let port = tansu::free_port();
    let brokers = format!("127.0.0.1:{port}");
    let topic = format!("late-{}", unique());
    let mut source = Running::start(
        &brokers,
        &topic,
        json!({"groupID": unique(), "offsetReset": "earliest"}),
    );
    let mut sink = KafkaSink::new(
        KafkaSinkConfig::parse(&json!({"brokers": brokers, "topic": topic})).unwrap(),
    );
    // No broker yet: the write fails (counted by the rule), the rule goes on.
    let e = sink
        .collect_list(&rows::full_batch(&[("lost", 0)]))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Io { .. }), "{e}");
    // The source says it is not connected, and why.
    let deadline = Instant::now() + PATIENCE;
    while source.state.snapshot().last_error.is_none() {
        assert!(Instant::now() < deadline, "no connection error shown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!source.state.is_connected());

    let broker = Tansu::start_on(port);
    broker.create_topic(&topic, 1);
    sink.collect_list(&rows::full_batch(&[("x", 1), ("end", 2)]))
        .await
        .unwrap();
    let got = source.take_until("{\"device\":\"end\",\"v\":2}").await;
    assert_eq!(
        got,
        ["{\"device\":\"x\",\"v\":1}", "{\"device\":\"end\",\"v\":2}"]
    );
    assert!(source.state.is_connected());
}

/// Accepts TLS on `listener` and forwards each connection to the plain broker on `upstream`.
async fn tls_proxy(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: u16,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_and_source_speak_tls() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(quiver_connectors::tls::provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let broker = Tansu::start_behind(tls_port);
    let proxy = tokio::spawn(tls_proxy(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        broker.port,
    ));
    let topic = format!("tls-{}", unique());
    broker.create_topic(&topic, 1);

    let brokers = format!("127.0.0.1:{tls_port}");
    let ca = base64::engine::general_purpose::STANDARD.encode(cert.pem());
    let tls = json!({"brokers": brokers, "rootCARaw": ca});
    let mut props = tls.clone();
    props["topic"] = json!(topic);
    let mut sink = KafkaSink::new(KafkaSinkConfig::parse(&props).unwrap());
    sink.collect_list(&rows::full_batch(&[("s", 1)]))
        .await
        .unwrap();
    let mut props = tls;
    props["offsetReset"] = json!("earliest");
    let mut source = Running::start(&brokers, &topic, props);
    let got = source.take_until("{\"device\":\"s\",\"v\":1}").await;
    assert_eq!(got.len(), 1);
    // Plain TCP to the TLS port fails, and the write is an error.
    let mut plain = KafkaSink::new(
        KafkaSinkConfig::parse(&json!({"brokers": brokers, "topic": topic})).unwrap(),
    );
    assert!(
        plain
            .collect_list(&rows::full_batch(&[("p", 1)]))
            .await
            .is_err()
    );
    proxy.abort();
}

impl Running {
    /// The payloads of the next event.
    async fn take_until_any(&mut self) -> Vec<String> {
        let event = tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("an event")
            .expect("the source runs");
        event
            .into_messages()
            .unwrap()
            .iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
            .collect()
    }
}

#[test]
fn registered_as_a_source_and_a_sink_that_refuse_what_they_cannot_do() {
    let c = quiver_connectors::Connectors::new();
    assert!(c.source_types().contains(&"kafka") && c.sink_types().contains(&"kafka"));
    // The sink reads Kafka's own `compression`, so the host passes it on.
    assert!(quiver_connectors::Connectors::sink_own_keys("kafka").contains(&"compression"));
    let sink = |props: Value| c.sink("kafka", &props).err().unwrap().to_string();
    assert!(
        sink(json!({"brokers": "a:1", "topic": "t", "saslAuthType": "kerberos"}))
            .contains("saslAuthType")
    );
    assert!(sink(json!({"brokers": "a:1", "topic": "t", "compression": "lz4"})).contains("lz4"));
    let spec = quiver_connectors::SourceSpec {
        source_type: "kafka".into(),
        datasource: "t".into(),
        props: json!({"brokers": "a:1", "offsetReset": "never"})
            .as_object()
            .unwrap()
            .clone(),
        ..Default::default()
    };
    assert!(
        c.source(&spec)
            .err()
            .unwrap()
            .to_string()
            .contains("offsetReset")
    );
}
