//! The sink task: the tokio task that writes a rule's results to one sink, batching them as
//! the sink's properties ask and rendering a `dataTemplate`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::NodeMetrics;
use crate::sinkprops::SinkSettings;

/// Writes batches to one sink until the workers drop their senders, gathering them first when
/// `batchSize`/`lingerInterval` ask for it (one `collect_list` call per gathered batch).
pub(super) async fn run_sink(
    mut sink: Box<dyn quiver_connectors::Sink>,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<NodeMetrics>,
    error: Arc<Mutex<Option<String>>>,
) {
    if let Err(e) = sink.connect().await {
        *error.lock().expect("error lock") = Some(format!("sink connect failed: {e}"));
        metrics.exceptions(1, &e.to_string());
        return;
    }
    let template = settings
        .data_template
        .as_deref()
        .and_then(|t| crate::sinkprops::DataTemplate::compile(t).ok());
    let out = Output {
        template,
        send_single: settings.send_single,
    };
    let mut gathered: Vec<RecordBatch> = Vec::new();
    let mut gathered_rows = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(next) => next,
                // The linger interval passed: write what is gathered.
                Err(_) => {
                    let batches = std::mem::take(&mut gathered);
                    if let Err(e) = write(&mut sink, &out, batches, &metrics).await {
                        return fail_sink(&error, e);
                    }
                    gathered_rows = 0;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(batch) = next else { break };
        metrics.set_buffer_length(rx.len() as i64);
        let batch = settings.project(batch);
        if !settings.batches() {
            if let Err(e) = write(&mut sink, &out, vec![batch], &metrics).await {
                return fail_sink(&error, e);
            }
            continue;
        }
        gathered_rows += batch.num_rows();
        gathered.push(batch);
        if deadline.is_none() {
            deadline = settings.linger.map(|l| tokio::time::Instant::now() + l);
        }
        if settings.batch_size > 0 && gathered_rows >= settings.batch_size {
            let batches = std::mem::take(&mut gathered);
            if let Err(e) = write(&mut sink, &out, batches, &metrics).await {
                return fail_sink(&error, e);
            }
            gathered_rows = 0;
            deadline = None;
        }
    }
    if let Err(e) = write(&mut sink, &out, gathered, &metrics).await {
        return fail_sink(&error, e);
    }
    if let Err(e) = sink.close().await {
        metrics.exceptions(1, &e.to_string());
    }
}

/// Marks the rule failed by a fatal sink error (a plugin panic). The sink task ends, so the
/// dataflow drops what it would send to it; other rules are untouched.
fn fail_sink(error: &Mutex<Option<String>>, e: quiver_connectors::ConnectorError) {
    tracing::error!("sink failed: {e}");
    *error.lock().expect("error lock") = Some(format!("sink failed: {e}"));
}

/// How a sink's input is handed over: as rows, or rendered through a `dataTemplate`.
struct Output {
    template: Option<crate::sinkprops::DataTemplate>,
    send_single: bool,
}

/// Writes batches; per-batch failures are counted as exceptions, and only a fatal one
/// (`ConnectorError::Fatal`) is returned, which stops the sink.
async fn write(
    sink: &mut Box<dyn quiver_connectors::Sink>,
    out: &Output,
    batches: Vec<RecordBatch>,
    metrics: &NodeMetrics,
) -> Result<(), quiver_connectors::ConnectorError> {
    for batch in crate::sinkprops::merge(batches) {
        let started = Instant::now();
        let rows = batch.num_rows();
        let written = match &out.template {
            None => sink.collect_list(&batch).await,
            Some(t) => {
                let objects: Vec<Value> =
                    quiver_connectors::codec::encode::batch_to_rows(&batch, false)
                        .into_iter()
                        .map(Value::Object)
                        .collect();
                let rendered: Result<Vec<Vec<u8>>, String> = if out.send_single {
                    objects.iter().map(|o| t.render(o)).collect()
                } else {
                    t.render(&Value::Array(objects)).map(|p| vec![p])
                };
                match rendered {
                    Ok(payloads) => sink.collect_rendered(&batch, &payloads).await,
                    Err(e) => Err(quiver_connectors::ConnectorError::Io {
                        connector: "sink",
                        reason: e,
                    }),
                }
            }
        };
        match written {
            Ok(()) => metrics.batch(rows, rows, started),
            Err(e) => {
                metrics.batch(rows, 0, started);
                metrics.exceptions(rows, &e.to_string());
                if matches!(e, quiver_connectors::ConnectorError::Fatal { .. }) {
                    return Err(e);
                }
                tracing::warn!("sink write failed: {e}");
            }
        }
    }
    Ok(())
}
