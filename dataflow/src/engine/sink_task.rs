//! The sink task: the tokio task that writes a rule's results to one sink, batching them as
//! the sink's properties ask and rendering a `dataTemplate`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::NodeMetrics;
use crate::sinkprops::SinkSettings;

/// What the sink task waits for next.
enum Next {
    /// A result batch, or `None` when the workers are done.
    Batch(Option<RecordBatch>),
    /// The linger interval passed.
    Linger,
    /// An operator error to send (`sendError`).
    Error(String),
}

/// The next error text of `errors`; never ready when the rule does not send errors or every
/// sender is gone.
async fn next_error(errors: &mut Option<mpsc::Receiver<String>>) -> String {
    match errors {
        Some(rx) => match rx.recv().await {
            Some(text) => text,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Writes batches to one sink until the workers drop their senders, gathering them first when
/// `batchSize`/`lingerInterval` ask for it (one `collect_list` call per gathered batch); under
/// `sendError`, operator errors are written as they come, each as an emission of its own.
pub(super) async fn run_sink(
    mut sink: Box<dyn quiver_connectors::Sink>,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<RecordBatch>,
    mut errors: Option<mpsc::Receiver<String>>,
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
        let data = async {
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(next) => Next::Batch(next),
                    Err(_) => Next::Linger,
                },
                None => Next::Batch(rx.recv().await),
            }
        };
        // Errors first: one raised before a batch was handed over is written before it.
        let next = tokio::select! {
            biased;
            text = next_error(&mut errors) => Next::Error(text),
            next = data => next,
        };
        let batch = match next {
            Next::Error(text) => {
                if let Err(e) = write_error(&mut sink, &text, &metrics).await {
                    return fail_sink(&error, e);
                }
                continue;
            }
            // The linger interval passed: write what is gathered.
            Next::Linger => {
                let batches = std::mem::take(&mut gathered);
                if let Err(e) = write(&mut sink, &out, batches, &metrics).await {
                    return fail_sink(&error, e);
                }
                gathered_rows = 0;
                deadline = None;
                continue;
            }
            Next::Batch(None) => break,
            Next::Batch(Some(batch)) => batch,
        };
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
    // Errors raised while the last batches were on their way.
    while let Some(text) = errors.as_mut().and_then(|rx| rx.try_recv().ok()) {
        if let Err(e) = write_error(&mut sink, &text, &metrics).await {
            return fail_sink(&error, e);
        }
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

/// Writes one operator error as an emission of its own: the bare text to a sink that sends
/// bytes (MQTT and the like), `{"error": text}` to one that takes rows (eKuiper's
/// `bytesCollect` and `tupleCollect` in `topo/node/sink_node.go`).
async fn write_error(
    sink: &mut Box<dyn quiver_connectors::Sink>,
    text: &str,
    metrics: &NodeMetrics,
) -> Result<(), quiver_connectors::ConnectorError> {
    let started = Instant::now();
    let written = if sink.accepts_payloads() {
        sink.collect_payloads(&[text.as_bytes().to_vec()]).await
    } else {
        let batch = RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("error", arrow::datatypes::DataType::Utf8, false),
            ])),
            vec![Arc::new(arrow::array::StringArray::from(vec![text]))],
        )
        .expect("one string column");
        sink.collect_list(&batch).await
    };
    match written {
        Ok(()) => metrics.batch(1, 1, started),
        Err(e) => {
            metrics.batch(1, 0, started);
            metrics.exceptions(1, &e.to_string());
            if matches!(e, quiver_connectors::ConnectorError::Fatal { .. }) {
                return Err(e);
            }
        }
    }
    Ok(())
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
