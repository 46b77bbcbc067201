//! Sink batch encoding: 1,024 demo rows (device, temperature, humidity, ts) to JSON, one
//! message per row (`sendSingle`) and one array per batch, by the direct row encoder the sinks
//! use and, as the baseline in the same run, by building `serde_json` values and serialising
//! them (the path data templates still take).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_connectors::codec::encode;
use serde_json::Value;

const ROWS: usize = 1_024;

/// The baseline: one `serde_json` map per row, serialised.
fn by_values(batch: &arrow::record_batch::RecordBatch) -> Vec<Vec<u8>> {
    encode::batch_to_rows(batch, false)
        .into_iter()
        .map(|row| serde_json::to_vec(&Value::Object(row)).expect("serializes"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = quiver_benches::demo_batch(ROWS);
    assert_eq!(batch.num_rows(), ROWS);
    // Sanity: both paths write the same bytes.
    assert_eq!(
        encode::batch_to_json_objects(&batch, false),
        by_values(&batch)
    );

    let mut group = c.benchmark_group("sink_encode");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("send_single_direct_1024", |b| {
        b.iter(|| black_box(encode::batch_to_json_objects(black_box(&batch), false)))
    });
    group.bench_function("send_single_values_1024", |b| {
        b.iter(|| black_box(by_values(black_box(&batch))))
    });
    group.bench_function("array_direct_1024", |b| {
        b.iter(|| black_box(encode::batch_to_json_array(black_box(&batch), false)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
