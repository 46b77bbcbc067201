//! What the source benchmarks share (included with `#[path]`): the rows, making a source,
//! running it into a rule's queue until every row arrived, and the JSON line of a case.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quiver_connectors::codec::encode::batch_to_json_objects;
use quiver_connectors::{Connectors, Source, SourceEvent, SourceOutput, SourceSpec};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[path = "rows.rs"]
mod rows;

/// How long a case waits for something that should happen before it fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// `n` rows `{id, device, temperature}` as JSON objects, ids from 0.
pub fn payloads(n: usize) -> Vec<Vec<u8>> {
    batch_to_json_objects(&rows::readings(0, n), false)
}

/// A built-in source of `source_type`, as a stream with `datasource` and `props` makes it.
pub fn source(source_type: &str, datasource: &str, props: Value) -> Box<dyn Source> {
    let spec = SourceSpec {
        source_type: source_type.into(),
        datasource: datasource.into(),
        props: props.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    Connectors::new().source(&spec).unwrap()
}

/// Runs `source` into a rule's queue until `count` over its messages reaches `rows`; returns
/// the seconds since the instant `ready` gives (it gets the instant the source was started,
/// and may wait for the source and start the service's sending) and the last payload.
pub async fn drain(
    mut source: Box<dyn Source>,
    rows: usize,
    count: impl Fn(&[u8]) -> usize,
    ready: impl AsyncFnOnce(Instant) -> Instant,
) -> (f64, Bytes) {
    let (tx, mut rx) = mpsc::channel(1024);
    let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
    // Before the spawn: the source may be done before this thread runs again.
    let started = Instant::now();
    let task = tokio::spawn(async move { source.run(out).await });
    let start = ready(started).await;
    let mut got = 0;
    let mut last = Bytes::new();
    while got < rows {
        let event = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {rows} rows arrived"))
            .expect("the source runs");
        for m in SourceEvent::into_messages(event).expect("raw messages") {
            got += count(&m.payload);
            last = m.payload;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    task.abort();
    assert_eq!(got, rows, "more rows than were sent");
    (secs, last)
}

/// The JSON line of one case: rows/s of the source and of the client, and their ratio.
pub fn report(case: &str, rows: usize, source_secs: f64, client_secs: f64, extra: Value) -> Value {
    let mut r = json!({
        "case": case,
        "rows": rows,
        "source_rows_per_s": (rows as f64 / source_secs).round(),
        "client_rows_per_s": (rows as f64 / client_secs).round(),
        "source_over_client": ((client_secs / source_secs) * 100.0).round() / 100.0,
    });
    r.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    println!("source bench: {r}");
    r
}
