//! The rule half of the sink benchmarks (`rest_sink_bench`, `redis_sink_bench`): the input
//! batches (including files must declare `mod rows` from the connectors' test support), and
//! one timed run of a rule from a memory stream into the sink under test.

use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use quiver_connectors::memory::MemoryPayload;
use quiver_dataflow::{Action, Engine, RuleSpec};

/// `rows` sensor readings `{id, device, temperature}` with ids from `first_id` (the rows the
/// connectors' sink benchmarks write too).
pub fn batch(first_id: i64, rows: usize) -> RecordBatch {
    crate::rows::readings(first_id, rows)
}

/// `batches` emissions of `rows_per_batch` readings.
pub fn input(batches: usize, rows_per_batch: usize) -> Vec<RecordBatch> {
    (0..batches)
        .map(|b| batch((b * rows_per_batch) as i64, rows_per_batch))
        .collect()
}

/// Runs rule `id` (`SELECT id, device, temperature` from the memory stream `id`) into
/// `action` over `input`; returns the seconds from the first publish until the rule has
/// finished (every write answered and the sink closed).
pub fn time_rule(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    id: &str,
    action: Action,
    input: &[RecordBatch],
) -> f64 {
    engine
        .create_stream(&format!(
            r#"CREATE STREAM {id} (id BIGINT, device STRING, temperature FLOAT) WITH (DATASOURCE="{id}", TYPE="memory")"#
        ))
        .unwrap();
    engine
        .create_rule(RuleSpec {
            id: id.into(),
            name: id.into(),
            sql: format!("SELECT id, device, temperature FROM {id}"),
            actions: vec![action],
            options: Default::default(),
        })
        .unwrap();
    let bus = engine.connectors().memory().clone();
    let started = rt.block_on(async {
        // The rule's source subscribes as it starts: wait for it.
        while bus.subscribers(id) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        for b in input {
            bus.publish(id, MemoryPayload::Batch(b.clone())).await;
        }
        bus.close(id);
        assert!(
            engine
                .wait_finished(id, Duration::from_secs(600))
                .await
                .unwrap(),
            "the rule did not finish"
        );
        started
    });
    started.elapsed().as_secs_f64()
}
