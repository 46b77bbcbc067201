//! JSON decoding of 1,024 demo messages into one Arrow batch: typed (the flat fast path, the
//! same for a rule reading two of the four columns, and arrow-json's general path as the
//! baseline) and schemaless.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_benches::{DEFAULT_SEED, Workload, demo_schema};
use quiver_connectors::RawMessage;
use quiver_connectors::codec::json::JsonDecoder;

const MESSAGES: usize = 1_024;

fn messages() -> Vec<RawMessage> {
    let topic: Arc<str> = Arc::from("bench/in");
    Workload::generate(MESSAGES, DEFAULT_SEED)
        .payloads
        .into_iter()
        .map(|payload| RawMessage::new(payload, topic.clone()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let typed = JsonDecoder::new(Some(demo_schema()), false);
    let general = JsonDecoder::general(Some(demo_schema()));
    let schemaless = JsonDecoder::new(None, false);
    // W1 reads device and temperature: the other two columns are checked, not converted.
    let w1_columns = ["device", "temperature"].map(String::from).into();
    let pruned = JsonDecoder::new(Some(demo_schema()), false).reading(Some(&w1_columns));
    // Sanity: every decoder produces every row without errors, and both typed paths agree.
    assert_eq!(typed.decode(&msgs).batches, general.decode(&msgs).batches);
    for d in [&typed, &general, &schemaless] {
        let out = d.decode(&msgs);
        assert!(out.errors.is_empty(), "{:?}", out.errors.first());
        assert_eq!(out.rows(), MESSAGES);
    }

    let mut group = c.benchmark_group("json_decode");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("typed_1024", |b| {
        b.iter(|| black_box(typed.decode(black_box(&msgs))))
    });
    group.bench_function("typed_w1_columns_1024", |b| {
        b.iter(|| black_box(pruned.decode(black_box(&msgs))))
    });
    group.bench_function("typed_general_1024", |b| {
        b.iter(|| black_box(general.decode(black_box(&msgs))))
    });
    group.bench_function("schemaless_1024", |b| {
        b.iter(|| black_box(schemaless.decode(black_box(&msgs))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
