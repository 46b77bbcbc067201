//! Rows/s into a private tansu broker two ways in one invocation: the kafka sink writing Arrow
//! result batches (JSON per row, partitioning, record batches, produce), and the client
//! producing the same rows' JSON, encoded before the clock starts, in the same batch sizes.
//! Every message is counted at the broker (read back) after each run. Then rows/s out of the
//! broker: the kafka source reading the topic into a rule's queue, against the client
//! fetching and decoding the same messages.
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-connectors --test kafka_bench
//! --no-capture` prints the figures of BENCHMARKS.md; without it the same harness runs on a
//! small load (so CI keeps it working).

#[path = "support/mqtt.rs"]
mod mqtt;
#[path = "support/tansu.rs"]
mod tansu;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use quiver_connectors::codec::encode;
use quiver_connectors::kafka::client::Client;
use quiver_connectors::kafka::records::{self, Message};
use quiver_connectors::kafka::{
    Connection, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig,
};
use quiver_connectors::{Sink, Source, SourceOutput};
use serde_json::json;
use tansu::{Tansu, unique};

/// `rows` readings `(id, device, temperature)`.
fn readings(start: i64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("device", DataType::Utf8, false),
        Field::new("temperature", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + rows as i64)),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("device-{}", i % 10)),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| 20.0 + (i % 100) as f64 / 10.0),
            )),
        ],
    )
    .unwrap()
}

/// Counts the messages of partition 0 by reading them all back (tansu 0.6 answers the latest
/// offset with the last record batch's first offset + 1, so that is not a count).
async fn count(client: &mut Client, topic: &str) -> i64 {
    let mut next = 0;
    let mut n = 0;
    loop {
        let fetched = client
            .fetch(topic, &[(0, next)], 8 << 20, 100)
            .await
            .unwrap();
        let Some(data) = fetched.into_iter().find_map(|f| f.records) else {
            return n;
        };
        let msgs = records::decode(data.clone(), next).unwrap();
        if msgs.is_empty() {
            return n;
        }
        n += msgs.len() as i64;
        next = records::next_offset(&data).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_against_the_client_producing_directly() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let (emissions, rows_per) = if full { (200, 1000) } else { (5, 100) };
    let total = (emissions * rows_per) as i64;
    let broker = Tansu::start();
    let settings = Connection {
        brokers: vec![broker.brokers()],
        sasl: None,
        tls: None,
        max_attempts: 1,
    };
    let mut client = Client::new(settings);
    let batches: Vec<RecordBatch> = (0..emissions)
        .map(|e| readings((e * rows_per) as i64, rows_per))
        .collect();

    // The sink: one collect_list per emission, as the rule's sink task calls it.
    let sink_topic = format!("bench-sink-{}", unique());
    broker.create_topic(&sink_topic, 1);
    let config = KafkaSinkConfig::parse(&json!({
        "brokers": broker.brokers(), "topic": sink_topic, "kafkaBatchSize": rows_per
    }))
    .unwrap();
    let mut sink = KafkaSink::new(config);
    let start = Instant::now();
    for b in &batches {
        sink.collect_list(b).await.unwrap();
    }
    let sink_secs = start.elapsed().as_secs_f64();
    assert_eq!(count(&mut client, &sink_topic).await, total);

    // The client: the same rows' JSON, already encoded; one produce per emission.
    let client_topic = format!("bench-client-{}", unique());
    broker.create_topic(&client_topic, 1);
    let prepared: Vec<Vec<Message>> = batches
        .iter()
        .map(|b| {
            encode::batch_to_json_objects(b, false)
                .into_iter()
                .map(|v| Message::value(Bytes::from(v)))
                .collect()
        })
        .collect();
    let start = Instant::now();
    for msgs in &prepared {
        let data = records::encode(msgs, false).unwrap();
        client.produce(&client_topic, 0, data, -1).await.unwrap();
    }
    let client_secs = start.elapsed().as_secs_f64();
    assert_eq!(count(&mut client, &client_topic).await, total);

    // Out of the broker: the kafka source reading the sink's topic from the start into a
    // rule's queue, against the client fetching (and decoding) the same messages itself.
    let start = Instant::now();
    assert_eq!(count(&mut client, &sink_topic).await, total);
    let fetch_secs = start.elapsed().as_secs_f64();
    let config = KafkaSourceConfig::parse(
        &sink_topic,
        json!({"brokers": broker.brokers(), "offsetReset": "earliest"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
    let start = Instant::now();
    let reader = tokio::spawn(async move { KafkaSource::new(config).run(out).await });
    let mut read = 0i64;
    while read < total {
        let event = rx.recv().await.expect("the source runs");
        read += event.into_messages().expect("raw messages").len() as i64;
    }
    let source_secs = start.elapsed().as_secs_f64();
    reader.abort();
    assert_eq!(read, total);

    let rate = |secs: f64| total as f64 / secs;
    println!(
        "kafka bench: {emissions} emissions of {rows_per} rows: sink {:.0} rows/s, client {:.0} rows/s, sink/client {:.2}; source {:.0} rows/s, client fetch {:.0} rows/s, source/client {:.2}",
        rate(sink_secs),
        rate(client_secs),
        client_secs / sink_secs,
        rate(source_secs),
        rate(fetch_secs),
        fetch_secs / source_secs
    );
}
