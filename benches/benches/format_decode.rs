//! The cost per message of each payload format: the same 1,024 demo readings as JSON,
//! delimited and protobuf payloads, decoded into one Arrow batch of the demo schema by the
//! stream decoder a rule uses (`Decoder`, `connectors/src/codec/decoder.rs`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_benches::{DEFAULT_SEED, Workload, demo_batch, demo_schema};
use quiver_connectors::RawMessage;
use quiver_connectors::codec::protobuf::{ProtobufEncoder, message_descriptor, set_schema_dir};
use quiver_connectors::codec::{Decoder, Format};
use serde_json::Value;

const MESSAGES: usize = 1_024;

/// The demo reading as a protobuf message.
const PROTO: &str = r#"syntax = "proto3";
message Reading {
  string device = 1;
  double temperature = 2;
  int64 humidity = 3;
  int64 ts = 4;
}
"#;

fn messages(payloads: Vec<Vec<u8>>) -> Vec<RawMessage> {
    let topic: Arc<str> = Arc::from("bench/in");
    payloads
        .into_iter()
        .map(|payload| RawMessage::new(payload, topic.clone()))
        .collect()
}

/// The JSON payloads as `device,temperature,humidity,ts` lines.
fn delimited(json: &[Vec<u8>]) -> Vec<Vec<u8>> {
    json.iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(p).expect("JSON payload");
            let cell = |k: &str| match &v[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "{},{},{},{}",
                cell("device"),
                cell("temperature"),
                cell("humidity"),
                cell("ts")
            )
            .into_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("quiver-format-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("schema dir");
    std::fs::write(dir.join("demo.proto"), PROTO).expect("write demo.proto");
    set_schema_dir(dir.clone());
    let json: Vec<Vec<u8>> = Workload::generate(MESSAGES, DEFAULT_SEED)
        .payloads
        .iter()
        .map(|b| b.to_vec())
        .collect();
    let encoder = ProtobufEncoder::new(
        "demo.Reading",
        message_descriptor("demo.Reading").expect("descriptor"),
    );
    let protobuf = encoder.batch(&demo_batch(MESSAGES)).expect("encode");
    let cases = [
        ("json", Format::Json, messages(json.clone())),
        (
            "delimited",
            Format::Delimited {
                delimiter: ",".into(),
            },
            messages(delimited(&json)),
        ),
        (
            "protobuf",
            Format::Protobuf {
                schema_id: "demo.Reading".into(),
            },
            messages(protobuf),
        ),
    ];
    let mut group = c.benchmark_group("format_decode");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    let mut first = None;
    for (name, format, msgs) in &cases {
        let decoder = Decoder::new(format, Some(demo_schema()), false).expect("decoder");
        // Sanity: every format decodes every row, to the same values.
        let out = decoder.decode(msgs);
        assert!(out.errors.is_empty(), "{name}: {:?}", out.errors.first());
        let batch = arrow::compute::concat_batches(&out.batches[0].schema(), &out.batches)
            .expect("one schema");
        assert_eq!(batch.num_rows(), MESSAGES, "{name}");
        match &first {
            None => first = Some(batch),
            Some(f) => assert_eq!(f.columns(), batch.columns(), "{name} differs from json"),
        }
        group.bench_function(format!("{name}_{MESSAGES}"), |b| {
            b.iter(|| black_box(decoder.decode(black_box(msgs))))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
