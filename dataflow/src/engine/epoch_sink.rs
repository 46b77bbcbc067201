//! The sink task at qos 2 (exactly once): a checkpoint's rows are held until the checkpoint
//! is durable, then written in one transaction of the sink's far end together with the
//! checkpoint's epoch.
//!
//! Each worker's rows between two of its markers belong to one checkpoint (the sink operator
//! holds back later rows until its marker is out, and tags every batch with its worker). At a
//! marker the rows of that worker are sealed under the marker's epoch and saved as the sink's
//! part of the checkpoint, together with earlier sealed rows not yet written. Once the
//! checkpoint commits, every sealed epoch up to it is written with `commit_epoch`, which
//! records the epoch in the same transaction. After a crash the restored checkpoint gives the
//! sealed rows back; those of epochs the far end already recorded are skipped, the rest are
//! written, and everything after the checkpoint is replayed from the input log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use quiver_connectors::{ConnectorError, Sink};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::checkpoint::Checkpointing;
use crate::checkpoint::coordinator::sink_part;
use crate::error::EngineError;
use crate::metrics::NodeMetrics;
use crate::sinkprops::SinkSettings;
use crate::state::OpState;

/// The first wait after a failed commit; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to commit.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The longest a sink whose input ended waits for the input's last checkpoint to be durable.
pub(super) const FINAL_WAIT: Duration = Duration::from_secs(5);

/// The longest progress id (`<rule id>/<sink node>`): the progress table's key column is a
/// `VARCHAR(255)`.
pub(super) const MAX_ID: usize = 255;

/// A sink's place in a qos 2 run.
pub(super) struct EpochSinkSpec {
    /// The run's checkpoints.
    pub checkpointing: Arc<Checkpointing>,
    /// The sink's index among the rule's actions (its part names).
    pub index: usize,
    /// The name the far end records the sink's progress under: rule id and sink node.
    pub id: String,
    /// Held for the task's life: the rule's next run waits for it.
    pub owner: Arc<tokio::sync::Mutex<()>>,
}

/// Refuses, by name, what cannot take part in exactly-once delivery: a sink without
/// transactions, and properties that write outside the checkpoint's transaction or batch
/// differently from it.
pub(super) fn check(
    sink_type: &str,
    settings: &SinkSettings,
    props: &Value,
    sink: &dyn Sink,
) -> Result<(), EngineError> {
    if !sink.transactional() {
        return Err(EngineError::Invalid(format!(
            "rule option qos = 2 needs sinks that write in transactions (sql, or a plugin that supports epochs); the {sink_type} sink does not: use qos 1"
        )));
    }
    let refused = |what: &str, why: &str| {
        Err(EngineError::Invalid(format!(
            "sink property {what} cannot be combined with qos = 2: {why}"
        )))
    };
    if settings.cache.is_some() {
        return refused(
            "enableCache",
            "the checkpoint keeps what is not written yet",
        );
    }
    if settings.data_template.is_some() {
        return refused(
            "dataTemplate",
            "rows are written as rows in the checkpoint's transaction",
        );
    }
    let send_single = props
        .get("sendSingle")
        .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    if settings.send_single || send_single {
        return refused(
            "sendSingle",
            "a checkpoint's rows are written in one transaction",
        );
    }
    if settings.batches() {
        return refused(
            "batchSize/lingerInterval",
            "rows are written once per checkpoint",
        );
    }
    Ok(())
}

/// Rows held by the sink task: each worker's since its last marker, and the sealed epochs not
/// written yet.
struct Held {
    open: Vec<Vec<RecordBatch>>,
    /// Epoch → each worker's rows.
    sealed: BTreeMap<u64, Vec<Vec<RecordBatch>>>,
}

impl Held {
    /// Sealed rows from the checkpoint the run resumes from.
    fn restore(c: &Checkpointing, index: usize) -> Result<Held, String> {
        let workers = c.workers();
        let mut held = Held {
            open: vec![Vec::new(); workers],
            sealed: BTreeMap::new(),
        };
        for w in 0..workers {
            let Some(state) = c.restored(&sink_part(index, w))? else {
                continue;
            };
            let epochs = state.need_number("epochs")?;
            for k in 0..epochs {
                let epoch = state.need_number(&format!("epoch.{k}"))? as u64;
                let count = state.need_number(&format!("count.{k}"))?;
                let rows = held
                    .sealed
                    .entry(epoch)
                    .or_insert_with(|| vec![Vec::new(); workers]);
                for i in 0..count {
                    rows[w].push(state.need_batch(&format!("rows.{k}.{i}"))?.clone());
                }
            }
        }
        Ok(held)
    }

    /// Seals worker `w`'s open rows under `epoch` and returns the worker's part of the
    /// checkpoint: every sealed epoch's rows of that worker.
    fn seal(&mut self, epoch: u64, w: usize) -> Option<OpState> {
        let workers = self.open.len();
        let rows = std::mem::take(&mut self.open[w]);
        self.sealed
            .entry(epoch)
            .or_insert_with(|| vec![Vec::new(); workers])[w] = rows;
        let mut state = OpState::default();
        let mut k = 0i64;
        for (e, per_worker) in &self.sealed {
            let batches = &per_worker[w];
            if batches.is_empty() {
                continue;
            }
            state.push_number(format!("epoch.{k}"), *e as i64);
            state.push_number(format!("count.{k}"), batches.len() as i64);
            for (i, b) in batches.iter().enumerate() {
                state.push_batch(format!("rows.{k}.{i}"), b.clone());
            }
            k += 1;
        }
        if k == 0 {
            return None;
        }
        state.push_number("epochs", k);
        Some(state)
    }

    /// The sealed epochs up to `through`: the last of them and their rows in order.
    fn due(&self, through: u64) -> Option<(u64, Vec<RecordBatch>)> {
        let last = *self.sealed.range(..=through).next_back()?.0;
        let rows = self
            .sealed
            .range(..=through)
            .flat_map(|(_, per_worker)| per_worker.iter().flatten().cloned())
            .collect();
        Some((last, rows))
    }

    /// Forgets the sealed epochs up to `through` (written, or written by an earlier run).
    fn written(&mut self, through: u64) {
        self.sealed = self.sealed.split_off(&(through + 1));
    }
}

/// Writes a qos 2 rule's results to one transactional sink (see the module's docs), until
/// the workers drop their senders.
pub(super) async fn run_epoch_sink(
    mut sink: Box<dyn Sink>,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<NodeMetrics>,
    error: Arc<Mutex<Option<String>>>,
    spec: EpochSinkSpec,
) {
    let fail = |why: String| {
        tracing::error!("sink failed: {why}");
        metrics.exceptions(1, &why);
        *error.lock().expect("error lock") = Some(why);
    };
    let _owner = spec.owner.lock_owned().await;
    if let Err(e) = sink.connect().await {
        return fail(format!("sink connect failed: {e}"));
    }
    let c = spec.checkpointing.clone();
    let mut held = match Held::restore(&c, spec.index) {
        Ok(h) => h,
        Err(e) => return fail(format!("sink state not restored: {e}")),
    };
    let mut committed = c.committed();
    let mut w = EpochWriter {
        sink,
        id: spec.id,
        metrics: metrics.clone(),
        backoff: MIN_BACKOFF,
        retry_due: None,
        uncertain: None,
    };
    let restored = c.restored_epoch();
    if restored == 0 {
        // A fresh start numbers its epochs from 1 again: an earlier rule of the same id (or
        // this rule's state set aside) may have left a higher epoch behind, which would make
        // a later restore skip rows it never wrote.
        if w.until_answered(&rx, true).await.is_none() {
            return w.close().await;
        }
    } else {
        // The far end may have written some sealed epochs before the crash: it says which.
        let done = match w.until_answered(&rx, false).await {
            Some(done) => done,
            None => return w.close().await,
        };
        if done > restored {
            // The newest checkpoint was damaged and an older one restored: the epochs after
            // it are replayed under new boundaries, so their rows are written again (at least
            // once, not lost).
            tracing::warn!(
                "sink {}: the far end has epochs up to {done}, past the checkpoint restored ({restored}); the results of epochs {}..={done} are written again",
                w.id,
                restored + 1
            );
        }
        held.written(done.min(restored));
        if let Err(e) = w.commit(&mut held, restored).await {
            fail(e);
            return w.close().await;
        }
    }
    loop {
        let reading = w.retry_due.is_none();
        tokio::select! {
            biased;
            _ = until(w.retry_due) => {
                let through = *committed.borrow();
                if let Err(e) = w.commit(&mut held, through).await {
                    fail(e);
                    return w.close().await;
                }
                if w.retry_due.is_some() && rx.is_closed() {
                    // The run is over; the rows stay in the checkpoint for the next run.
                    break;
                }
            }
            changed = committed.changed(), if reading => {
                if changed.is_err() {
                    // The run's checkpoints are gone: nothing more will be committed.
                    break;
                }
                let through = *committed.borrow_and_update();
                if let Err(e) = w.commit(&mut held, through).await {
                    fail(e);
                    return w.close().await;
                }
            }
            next = rx.recv(), if reading => {
                let Some(batch) = next else { break };
                if let Some((epoch, worker)) = crate::checkpoint::as_marker(&batch) {
                    let part = held.seal(epoch, worker);
                    c.report(epoch, &sink_part(spec.index, worker), part);
                } else {
                    let (worker, batch) = crate::checkpoint::marker::untag(batch);
                    let worker = worker.unwrap_or(0).min(held.open.len() - 1);
                    let rows = batch.num_rows();
                    w.metrics.batch(rows, 0, Instant::now());
                    match settings.shape_rows(batch) {
                        Ok(b) => held.open[worker].push(b),
                        Err(e) => w.metrics.exceptions(rows.max(1), &e),
                    }
                }
            }
        }
        metrics.set_buffer_length(rx.len() as i64);
    }
    // The input ended: its last checkpoint holds the rows the end of input flushed; they are
    // written once it is durable.
    if c.final_epoch().is_some() && !c.final_committed(FINAL_WAIT).await {
        tracing::warn!(
            "sink {}: the input's last checkpoint was not durable within {FINAL_WAIT:?}; its rows are written by the next run",
            w.id
        );
    }
    // Checkpoints that became durable while the last rows came in.
    if w.retry_due.is_none() {
        let through = *committed.borrow();
        if let Err(e) = w.commit(&mut held, through).await {
            fail(e);
        }
    }
    w.close().await;
}

/// Sleeps until `due`; never ready when `due` is `None`.
async fn until(due: Option<tokio::time::Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The sink with what writing to it needs.
struct EpochWriter {
    sink: Box<dyn Sink>,
    id: String,
    metrics: Arc<NodeMetrics>,
    backoff: Duration,
    /// When a failed commit is tried again.
    retry_due: Option<tokio::time::Instant>,
    /// The last epoch of a commit that failed: its answer may have been lost after the far
    /// end committed it, so the far end's progress is read before it is written again.
    uncertain: Option<u64>,
}

impl EpochWriter {
    /// Asks the far end until it answers (`None`: the run ended first): with `reset`, records
    /// epoch 0 for this sink (and answers 0); else reads the last epoch it recorded.
    async fn until_answered(
        &mut self,
        rx: &mpsc::Receiver<RecordBatch>,
        reset: bool,
    ) -> Option<u64> {
        loop {
            let answer = if reset {
                // Read first: the read creates the progress table where it is missing (a
                // database no qos 2 rule wrote to yet), which the reset writes to.
                match self.sink.committed_epoch(&self.id).await {
                    Ok(_) => self.sink.commit_epoch(&self.id, 0, &[]).await.map(|_| 0),
                    Err(e) => Err(e),
                }
            } else {
                self.sink.committed_epoch(&self.id).await
            };
            match answer {
                Ok(e) => {
                    self.backoff = MIN_BACKOFF;
                    return Some(e);
                }
                Err(e) => {
                    self.metrics.exceptions(1, &e.to_string());
                    tracing::warn!("sink progress not read or reset: {e}");
                }
            }
            if rx.is_closed() {
                return None;
            }
            let wait = self.back_off();
            tokio::time::sleep(wait).await;
        }
    }

    /// The wait before the next attempt; the one after it doubles, up to [`MAX_BACKOFF`].
    fn back_off(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// Writes every sealed epoch up to `through` in one transaction; on failure the rows stay
    /// and a retry is scheduled. An error is fatal: the rule fails.
    async fn commit(&mut self, held: &mut Held, through: u64) -> Result<(), String> {
        if let Some(last) = self.uncertain {
            match self.sink.committed_epoch(&self.id).await {
                Ok(done) => {
                    self.uncertain = None;
                    if done >= last {
                        tracing::info!("sink commit of epoch {last} had landed; not written again");
                        held.written(last);
                    }
                }
                Err(e) => {
                    self.metrics.exceptions(1, &e.to_string());
                    tracing::warn!("sink progress not read: {e}");
                    self.retry_due = Some(tokio::time::Instant::now() + self.back_off());
                    return Ok(());
                }
            }
        }
        let Some((epoch, rows)) = held.due(through) else {
            self.retry_due = None;
            return Ok(());
        };
        let started = Instant::now();
        let total: usize = rows.iter().map(RecordBatch::num_rows).sum();
        match self.sink.commit_epoch(&self.id, epoch, &rows).await {
            Ok(refused) => {
                let lost: usize = refused.iter().map(|r| r.rows).sum();
                for r in &refused {
                    tracing::warn!("sink write failed: {}", r.reason);
                    self.metrics.exceptions(r.rows.max(1), &r.reason);
                }
                self.metrics.batch(0, total.saturating_sub(lost), started);
                held.written(epoch);
                self.backoff = MIN_BACKOFF;
                self.retry_due = None;
                Ok(())
            }
            Err(e) => {
                self.metrics.exceptions(1, &e.to_string());
                tracing::warn!("sink commit of epoch {epoch} failed, tried again later: {e}");
                if let ConnectorError::Fatal { .. } = e {
                    // A plugin that panicked is in an unknown state: the rule fails.
                    return Err(format!("sink failed: {e}"));
                }
                self.uncertain = Some(epoch);
                self.retry_due = Some(tokio::time::Instant::now() + self.back_off());
                Ok(())
            }
        }
    }

    async fn close(mut self) {
        if let Err(e) = self.sink.close().await {
            self.metrics.exceptions(1, &e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(v: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(v.to_vec()))],
        )
        .expect("batch")
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ints")
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn sealed_epochs_are_each_workers_rows_between_its_markers() {
        let mut held = Held {
            open: vec![Vec::new(), Vec::new()],
            sealed: BTreeMap::new(),
        };
        held.open[0].push(rows(&[1]));
        held.open[1].push(rows(&[2]));
        let part0 = held.seal(1, 0).expect("worker 0 has rows");
        // Worker 0's rows after its marker belong to epoch 2, even before worker 1's marker.
        held.open[0].push(rows(&[3]));
        held.seal(1, 1).expect("worker 1 has rows");
        assert_eq!(part0.need_number("epochs").unwrap(), 1);
        let (last, due) = held.due(1).expect("epoch 1 is due");
        assert_eq!((last, values(&due)), (1, vec![1, 2]));
        // Not written yet: worker 0's next part carries epoch 1 again, with epoch 2.
        let part = held.seal(2, 0).expect("rows");
        assert_eq!(part.need_number("epochs").unwrap(), 2);
        held.written(1);
        assert_eq!(values(&held.due(2).expect("epoch 2").1), vec![3]);
        assert!(held.due(1).is_none());
        held.written(2);
        assert!(held.seal(3, 1).is_none(), "nothing held: nothing to save");
    }
}
