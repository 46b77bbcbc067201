//! Window aggregation over one decoded 1,024-row batch of W2's rule (`avg`, `count(*)`, `max`
//! by device in a tumbling window, 1,000 devices): preparing the rows (key encoding, argument
//! columns), updating the group table, and closing the window into its result rows.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_benches::{DEMO_STREAM_SQL, WINDOW_RULE_SQL};
use quiver_compiler::{Registry, compile_rule, parse_create};
use quiver_dataflow::window::{Failures, Prepare, Windows};

const ROWS: usize = 1_024;

fn bench(c: &mut Criterion) {
    let def = parse_create(DEMO_STREAM_SQL).expect("the stream parses");
    let catalog = HashMap::from([(def.name.clone(), def)]);
    // W2's rule over the processing-time stream: the window reads the arrival time given to
    // `prepare`.
    let plan =
        compile_rule(WINDOW_RULE_SQL, &catalog, Registry::builtin()).expect("the rule compiles");
    let spec = Arc::new(plan.plan.aggregate().expect("W2 aggregates").clone());
    let batch = quiver_benches::demo_batch(ROWS);
    let prepare = Prepare::new(spec.clone());
    // Inside the first 10 s window, so every row lands in one window.
    let time = 1_000;

    // Sanity: one result row per device of the batch, and every row counted.
    let mut failures = Failures::default();
    let prepared = prepare
        .prepare(batch.clone(), time, &mut failures)
        .expect("rows");
    assert_eq!(failures.rows, 0, "{:?}", failures.first);
    let mut windows = Windows::new(spec.clone(), false);
    windows.insert(&prepared);
    let emitted = windows.finish();
    assert_eq!(emitted.len(), 1, "one window");
    let groups = emitted[0].batch.num_rows();
    assert!(groups > 500 && groups <= 1_000, "{groups} groups");

    let mut group = c.benchmark_group("window_agg");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("prepare_1024", |b| {
        b.iter(|| {
            let mut failures = Failures::default();
            black_box(prepare.prepare(black_box(batch.clone()), time, &mut failures))
        })
    });
    group.bench_function("update_1024", |b| {
        b.iter(|| {
            let mut windows = Windows::new(spec.clone(), false);
            windows.insert(black_box(&prepared));
            black_box(windows)
        })
    });
    group.bench_function("update_and_emit_1024", |b| {
        b.iter(|| {
            let mut windows = Windows::new(spec.clone(), false);
            windows.insert(black_box(&prepared));
            black_box(windows.finish())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
