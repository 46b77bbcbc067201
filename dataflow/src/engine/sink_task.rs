//! The sink task: the tokio task that writes a rule's results to one sink, batching them as
//! the sink's properties ask, rendering a `dataTemplate`, and keeping what fails in the sink
//! cache when `enableCache` asks for it ([`crate::sink_cache`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use quiver_connectors::ConnectorError;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::NodeMetrics;
use crate::sink_cache::{CacheSpec, ResendPriority, SinkCache};
use crate::sinkprops::SinkSettings;

/// The first wait after a failed resend; it doubles up to [`MAX_BACKOFF`], so a sink whose far
/// end is away costs a few attempts a second at first and one every few seconds after.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two resends of a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the sink task waits for next.
enum Next {
    /// A result batch, or `None` when the workers are done.
    Batch(Option<RecordBatch>),
    /// The linger interval passed.
    Linger,
    /// An operator error to send (`sendError`).
    Error(String),
    /// Time to send the oldest cached emission again.
    Resend,
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

/// Sleeps until `due`; never ready when `due` is `None`.
async fn until(due: Option<tokio::time::Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Writes batches to one sink until the workers drop their senders, gathering them first when
/// `batchSize`/`lingerInterval` ask for it (one `collect_list` call per gathered batch); under
/// `sendError`, operator errors are written as they come, each as an emission of its own.
/// With a cache, what fails to reach the sink's far end waits in it and is sent again. With
/// `checkpoint`, a checkpoint marker is reported once what came before it is written.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_sink(
    mut sink: Box<dyn quiver_connectors::Sink>,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<RecordBatch>,
    mut errors: Option<mpsc::Receiver<String>>,
    metrics: Arc<NodeMetrics>,
    error: Arc<Mutex<Option<String>>>,
    cache: Option<(CacheSpec, Option<Box<dyn quiver_connectors::Sink>>)>,
    checkpoint: Option<(Arc<crate::checkpoint::Checkpointing>, usize)>,
) {
    if let Err(e) = sink.connect().await {
        *error.lock().expect("error lock") = Some(format!("sink connect failed: {e}"));
        metrics.exceptions(1, &e.to_string());
        return;
    }
    let (cache, mut resend_sink) = match cache {
        Some((spec, resend)) => (Some(spec), resend),
        None => (None, None),
    };
    if let Some(r) = &mut resend_sink
        && let Err(e) = r.connect().await
    {
        *error.lock().expect("error lock") = Some(format!("resend sink connect failed: {e}"));
        metrics.exceptions(1, &e.to_string());
        return;
    }
    let cache = match cache {
        None => None,
        Some(spec) => match SinkCache::open(spec).await {
            Ok(cache) => {
                sink.fail_fast();
                if let Some(r) = &mut resend_sink {
                    r.fail_fast();
                }
                Some(cache)
            }
            Err(e) => {
                *error.lock().expect("error lock") = Some(e.clone());
                metrics.exceptions(1, &e);
                return;
            }
        },
    };
    let template = settings
        .data_template
        .as_deref()
        .and_then(|t| crate::sinkprops::DataTemplate::compile(t).ok());
    let mut w = Writer {
        resend_due: cache
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|_| tokio::time::Instant::now()),
        sink,
        resend_sink,
        out: Output {
            shape: (template.is_some() && !settings.shape.is_identity())
                .then(|| settings.shape.clone()),
            template,
            send_single: settings.send_single,
        },
        metrics,
        cache,
        backoff: MIN_BACKOFF,
        last_live: false,
    };
    if let Some(c) = &w.cache
        && !c.is_empty()
    {
        tracing::info!(
            "sink cache: {} emissions kept by an earlier run are sent first",
            c.len()
        );
    }
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
        let resend_first = w.resend_first();
        // Errors first: one raised before a batch was handed over is written before it. The
        // resend branch goes before or after live data as `resendPriority` says.
        let next = tokio::select! {
            biased;
            text = next_error(&mut errors) => Next::Error(text),
            _ = until(w.resend_due), if resend_first => Next::Resend,
            next = data => next,
            _ = until(w.resend_due), if !resend_first => Next::Resend,
        };
        let step = match next {
            Next::Error(text) => write_error(&mut w.sink, &text, &w.metrics).await,
            Next::Resend => w.resend().await,
            // The linger interval passed: write what is gathered.
            Next::Linger => {
                gathered_rows = 0;
                deadline = None;
                w.deliver_all(std::mem::take(&mut gathered)).await
            }
            Next::Batch(None) => break,
            Next::Batch(Some(batch)) if crate::checkpoint::as_marker(&batch).is_some() => {
                // Everything before the checkpoint is written (or failed and counted): report.
                let step = if gathered.is_empty() {
                    Ok(())
                } else {
                    gathered_rows = 0;
                    deadline = None;
                    w.deliver_all(std::mem::take(&mut gathered)).await
                };
                if let (Some((c, sink)), Some((epoch, worker))) =
                    (&checkpoint, crate::checkpoint::as_marker(&batch))
                {
                    c.report(
                        epoch,
                        &crate::checkpoint::coordinator::sink_part(*sink, worker),
                        None,
                    );
                }
                step
            }
            Next::Batch(Some(batch)) => {
                let rows = batch.num_rows();
                let batch = match settings.shape_rows(batch) {
                    Ok(b) => b,
                    Err(e) => {
                        // The emission has nothing to send: counted, like a failing template.
                        w.metrics.batch(rows, 0, Instant::now());
                        w.metrics.exceptions(rows.max(1), &e);
                        tracing::warn!("sink write failed: {e}");
                        continue;
                    }
                };
                if !settings.batches() {
                    w.deliver(batch).await
                } else {
                    gathered_rows += batch.num_rows();
                    gathered.push(batch);
                    if deadline.is_none() {
                        deadline = settings.linger.map(|l| tokio::time::Instant::now() + l);
                    }
                    if settings.batch_size > 0 && gathered_rows >= settings.batch_size {
                        gathered_rows = 0;
                        deadline = None;
                        w.deliver_all(std::mem::take(&mut gathered)).await
                    } else {
                        Ok(())
                    }
                }
            }
        };
        // eKuiper's buffer length counts the queue in front of the sink and its cache.
        w.metrics.set_buffer_length((rx.len() + w.cached()) as i64);
        if let Err(e) = step {
            fail_sink(&error, e);
            return w.finish().await;
        }
    }
    let mut last = w.deliver_all(gathered).await;
    // Errors raised while the last batches were on their way.
    while last.is_ok()
        && let Some(text) = errors.as_mut().and_then(|rx| rx.try_recv().ok())
    {
        last = write_error(&mut w.sink, &text, &w.metrics).await;
    }
    if let Err(e) = last {
        fail_sink(&error, e);
    }
    w.finish().await;
}

/// Marks the rule failed by a fatal sink error (a plugin panic). The sink task ends, so the
/// dataflow drops what it would send to it; other rules are untouched.
fn fail_sink(error: &Mutex<Option<String>>, e: ConnectorError) {
    tracing::error!("sink failed: {e}");
    *error.lock().expect("error lock") = Some(format!("sink failed: {e}"));
}

/// How a sink's input is handed over: as rows, or rendered through a `dataTemplate`.
struct Output {
    template: Option<crate::sinkprops::DataTemplate>,
    /// `dataField`, `fields` and `excludeFields` over the template's output (eKuiper's order).
    shape: Option<crate::sink_shape::Shape>,
    send_single: bool,
}

/// What became of one write.
enum Outcome {
    /// The sink took it.
    Written,
    /// The far end failed (an I/O error): worth sending again.
    Retry,
    /// The emission itself was refused (a template that fails on it, a configuration the
    /// sink rejects): sending it again would fail again.
    Dropped,
    /// The sink cannot go on (a plugin panicked).
    Fatal(ConnectorError),
}

/// One sink with its output shape, metrics and cache: what the task loop writes through.
struct Writer {
    sink: Box<dyn quiver_connectors::Sink>,
    /// Where resent results go when `resendDestination` names another topic or URL.
    resend_sink: Option<Box<dyn quiver_connectors::Sink>>,
    out: Output,
    metrics: Arc<NodeMetrics>,
    cache: Option<SinkCache>,
    /// When the oldest cached emission is tried again; `None` while nothing is cached.
    resend_due: Option<tokio::time::Instant>,
    /// The wait after the next failed resend.
    backoff: Duration,
    /// Under `resendPriority` 0: the last write was live data, so a resend goes next.
    last_live: bool,
}

impl Writer {
    /// Emissions waiting in the cache.
    fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, SinkCache::len)
    }

    /// Whether a due resend goes before live data: always when live data queues behind the
    /// cache; under `resendAlterQueue`, as `resendPriority` says.
    fn resend_first(&self) -> bool {
        let Some(c) = &self.cache else {
            return false;
        };
        if !c.settings().alter_queue {
            return true;
        }
        match c.settings().priority {
            ResendPriority::Cache => true,
            ResendPriority::Live => false,
            ResendPriority::Equal => self.last_live,
        }
    }

    /// Writes one emission and counts it: rows in when `fresh` (not a resend), rows out when
    /// written, exceptions when not. A resend goes to the `resendDestination` sink if any.
    async fn attempt(&mut self, batch: &RecordBatch, fresh: bool) -> Outcome {
        let started = Instant::now();
        let rows = batch.num_rows();
        let rows_in = if fresh { rows } else { 0 };
        let sink = match (&mut self.resend_sink, fresh) {
            (Some(resend), false) => resend,
            _ => &mut self.sink,
        };
        let written = match &self.out.template {
            None => sink.collect_list(batch).await,
            Some(t) => {
                let objects: Vec<Value> =
                    quiver_connectors::codec::encode::batch_to_rows(batch, false)
                        .into_iter()
                        .map(Value::Object)
                        .collect();
                let rendered: Result<Vec<Vec<u8>>, String> = if self.out.send_single {
                    objects.iter().map(|o| t.render(o)).collect()
                } else {
                    t.render(&Value::Array(objects)).map(|p| vec![p])
                };
                let rendered = match &self.out.shape {
                    Some(shape) => rendered
                        .and_then(|payloads| payloads.iter().map(|p| shape.json(p)).collect()),
                    None => rendered,
                };
                match rendered {
                    Ok(payloads) => sink.collect_rendered(batch, &payloads).await,
                    Err(e) => {
                        self.metrics.batch(rows_in, 0, started);
                        self.metrics.exceptions(rows, &e);
                        tracing::warn!("sink write failed: {e}");
                        return Outcome::Dropped;
                    }
                }
            }
        };
        match written {
            Ok(()) => {
                self.metrics.batch(rows_in, rows, started);
                Outcome::Written
            }
            Err(e) => {
                self.metrics.batch(rows_in, 0, started);
                self.metrics.exceptions(rows, &e.to_string());
                match e {
                    ConnectorError::Fatal { .. } => Outcome::Fatal(e),
                    ConnectorError::Io { .. } => {
                        tracing::warn!("sink write failed: {e}");
                        Outcome::Retry
                    }
                    _ => {
                        tracing::warn!("sink write failed: {e}");
                        Outcome::Dropped
                    }
                }
            }
        }
    }

    /// Writes gathered emissions, merged into as few batches as their schemas allow.
    async fn deliver_all(&mut self, batches: Vec<RecordBatch>) -> Result<(), ConnectorError> {
        for batch in crate::sinkprops::merge(batches) {
            self.deliver(batch).await?;
        }
        Ok(())
    }

    /// Writes one live emission. Without a cache a failure drops it (counted); with one, it
    /// waits in the cache, as does every emission that comes while older ones wait there
    /// (unless `resendAlterQueue` sends live data beside the cache).
    async fn deliver(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        if let Some(c) = &self.cache
            && !c.settings().alter_queue
            && !c.is_empty()
        {
            self.metrics
                .batch(batch.num_rows(), 0, std::time::Instant::now());
            self.keep(batch).await;
            return Ok(());
        }
        self.last_live = true;
        match self.attempt(&batch, true).await {
            Outcome::Written | Outcome::Dropped => Ok(()),
            Outcome::Fatal(e) => Err(e),
            Outcome::Retry => {
                if self.cache.is_some() {
                    self.keep(batch).await;
                }
                Ok(())
            }
        }
    }

    /// Puts an emission at the end of the cache; counts and logs what the cache had to drop.
    async fn keep(&mut self, batch: RecordBatch) {
        let Some(cache) = &mut self.cache else {
            return;
        };
        if let Err(loss) = cache.push(batch).await {
            tracing::warn!("{}", loss.reason);
            self.metrics.exceptions(loss.emissions, &loss.reason);
        }
        if self.resend_due.is_none() {
            self.resend_due = Some(tokio::time::Instant::now() + self.backoff);
        }
    }

    /// Sends the oldest cached emission again (with `resendIndicatorField` set). Written: the
    /// next one goes after `resendInterval`; failed: it is tried again after a backoff.
    async fn resend(&mut self) -> Result<(), ConnectorError> {
        self.last_live = false;
        let Some(cache) = &mut self.cache else {
            self.resend_due = None;
            return Ok(());
        };
        let interval = cache.settings().resend_interval;
        let indicator = cache.settings().indicator_field.clone();
        let batch = match cache.front().await {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                self.resend_due = None;
                return Ok(());
            }
            Err(loss) => {
                self.metrics.exceptions(loss.emissions, &loss.reason);
                return Ok(());
            }
        };
        let batch = match &indicator {
            Some(field) => with_indicator(batch, field),
            None => batch,
        };
        let now = tokio::time::Instant::now();
        match self.attempt(&batch, false).await {
            Outcome::Written | Outcome::Dropped => {
                let cache = self.cache.as_mut().expect("cache checked above");
                cache.pop().await;
                self.backoff = MIN_BACKOFF;
                self.resend_due = (!cache.is_empty()).then(|| now + interval);
                if cache.is_empty() {
                    tracing::info!("sink cache: every cached emission was sent");
                }
            }
            Outcome::Retry => {
                self.resend_due = Some(now + self.backoff.max(interval));
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Fatal(e) => return Err(e),
        }
        Ok(())
    }

    /// Closes the sink and leaves the cache for the next run (or drops it, as it was asked).
    async fn finish(mut self) {
        if let Err(e) = self.sink.close().await {
            self.metrics.exceptions(1, &e.to_string());
        }
        if let Some(mut resend) = self.resend_sink.take()
            && let Err(e) = resend.close().await
        {
            self.metrics.exceptions(1, &e.to_string());
        }
        if let Some(cache) = self.cache.take() {
            match cache.stop().await {
                Ok(0) => {}
                Ok(kept) => tracing::info!(
                    "sink cache: {kept} emissions kept on disk for the rule's next run"
                ),
                Err(e) => {
                    tracing::error!("sink cache: could not keep what waited: {e}");
                    self.metrics.exceptions(1, &e);
                }
            }
        }
    }
}

/// `batch` with a boolean column `field` set to true on every row (eKuiper's
/// `resendIndicatorField`), replacing a column of that name.
fn with_indicator(batch: RecordBatch, field: &str) -> RecordBatch {
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if f.name() != field {
            fields.push(f.clone());
            columns.push(c.clone());
        }
    }
    fields.push(Arc::new(Field::new(field, DataType::Boolean, false)));
    columns.push(Arc::new(arrow::array::BooleanArray::from(vec![
        true;
        batch
            .num_rows(
            )
    ])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or(batch)
}

/// Writes one operator error as an emission of its own: the bare text to a sink that sends
/// bytes (MQTT and the like), `{"error": text}` to one that takes rows (eKuiper's
/// `bytesCollect` and `tupleCollect` in `topo/node/sink_node.go`). Only a fatal failure is
/// returned; error texts are not cached.
async fn write_error(
    sink: &mut Box<dyn quiver_connectors::Sink>,
    text: &str,
    metrics: &NodeMetrics,
) -> Result<(), ConnectorError> {
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
            if matches!(e, ConnectorError::Fatal { .. }) {
                return Err(e);
            }
        }
    }
    Ok(())
}
