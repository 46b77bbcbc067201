//! The epochs of one rule run: when a checkpoint starts, who has saved their part of it, and
//! when it is whole and can be committed.
//!
//! A checkpoint is a time `T` of the dataflow. The trigger picks `T` just past every time the
//! sources have reached, under the same lock the sources take to move their capabilities, so
//! no source can pass `T` without seeing it. Each source saves its position and state when it
//! moves to `T` or later (everything it sent before is at times before `T`); each window
//! operator saves its state once its input frontier reaches `T` (it holds back input at `T` or
//! later until then); each sink operator sends a marker after its rows before `T`, and the
//! sink task reports once it has written everything before the marker. When every registered
//! participant has reported, the checkpoint is whole: a thread of its own writes it and then
//! trims the input logs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::log::InputLog;
use super::store::{Checkpoint, CheckpointStore};
use crate::state::OpState;

/// A whole checkpoint on its way to disk: its parts, each worker's log position, its start.
type Commit = (Checkpoint, Vec<u64>, Instant);

/// How a run checkpoints.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFlags {
    /// The sources' time is a watermark, which only rows move (else the clock).
    pub event_time: bool,
    /// qos 2: sinks take part with the rows they hold.
    pub exactly_once: bool,
}

/// What the last committed checkpoint cost, for the rule's status and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    /// Its epoch (0: none yet).
    pub epoch: u64,
    /// When it was committed, ms since the epoch.
    pub at_ms: i64,
    /// From its start to durable, ms.
    pub duration_ms: u64,
    /// Bytes of state written.
    pub bytes: u64,
}

/// The checkpointing of one rule run, shared by its workers, sink tasks and trigger.
pub struct Checkpointing {
    workers: usize,
    /// Event time: the sources' time is the watermark, which only rows move.
    event_time: bool,
    fingerprint: String,
    /// The pending checkpoint's time, or 0: read by operators on every activation.
    pending_time: AtomicU64,
    epochs: Mutex<Epochs>,
    collect: Mutex<Collect>,
    restored: Option<Checkpoint>,
    log: Option<Arc<InputLog>>,
    commits: Mutex<Option<std::sync::mpsc::Sender<Commit>>>,
    stats: Arc<Mutex<CommitStats>>,
    /// qos 2: sinks hold each checkpoint's rows and commit them once it is durable.
    exactly_once: bool,
    /// The last epoch committed to disk: sinks at qos 2 wait on it.
    committed: tokio::sync::watch::Sender<u64>,
    /// The epoch of the checkpoint taken at the end of the input (0: none yet).
    final_epoch: AtomicU64,
    /// The run's fault slot, which a failed sync of the input log fails the rule through.
    fault: Arc<std::sync::OnceLock<Arc<crate::fault::Fault>>>,
}

#[derive(Default)]
struct Epochs {
    /// The latest time any source moved to.
    max_seen: u64,
    /// The pending checkpoint: (epoch, time).
    pending: Option<(u64, u64)>,
    /// The epoch the next checkpoint gets.
    next_epoch: u64,
    started: Option<Instant>,
}

#[derive(Default)]
struct Collect {
    registered: BTreeSet<String>,
    built: usize,
    parts: BTreeMap<String, Vec<u8>>,
    reported: BTreeSet<String>,
    /// Each worker's input log position at the pending checkpoint.
    positions: BTreeMap<usize, u64>,
}

impl Checkpointing {
    /// Checkpointing for a run over `workers` workers whose plan is `fingerprint`, resuming
    /// after `restored` (if any), trimming `log` (if any) as checkpoints commit to `store`;
    /// `event_time` for rules whose time is a watermark; `exactly_once` at qos 2.
    pub fn new(
        workers: usize,
        fingerprint: String,
        store: CheckpointStore,
        restored: Option<Checkpoint>,
        log: Option<Arc<InputLog>>,
        flags: RunFlags,
    ) -> Arc<Checkpointing> {
        let RunFlags {
            event_time,
            exactly_once,
        } = flags;
        let next_epoch = restored.as_ref().map_or(1, |c| c.epoch + 1);
        let stats = Arc::new(Mutex::new(CommitStats {
            epoch: restored.as_ref().map_or(0, |c| c.epoch),
            ..CommitStats::default()
        }));
        let (tx, rx) = std::sync::mpsc::channel::<Commit>();
        let (commit_log, commit_stats) = (log.clone(), stats.clone());
        let fault = Arc::new(std::sync::OnceLock::<Arc<crate::fault::Fault>>::new());
        let commit_fault = fault.clone();
        let mut held = restored
            .as_ref()
            .map(|c| super::reread::Held::restored(&c.parts))
            .unwrap_or_default();
        let committed = tokio::sync::watch::Sender::new(restored.as_ref().map_or(0, |c| c.epoch));
        let commit_watch = committed.clone();
        // Commits are written off the workers: a sync takes milliseconds.
        std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                // The log is kept back to the older of the two checkpoints kept, so a damaged
                // newest one can fall back on the one before it.
                let mut previous: Option<Vec<u64>> = None;
                let mut log_failed = false;
                for (mut checkpoint, positions, started) in rx {
                    // What a re-reading source's checkpoint holds, saved with it: the log's
                    // record at a position may be trimmed away by the next restart.
                    if let Some(log) = &commit_log
                        && let Some(reread) = log.reread()
                    {
                        match held.update(log, reread.as_ref(), &positions) {
                            Ok(part) => {
                                checkpoint
                                    .parts
                                    .insert(super::reread::HELD_PART.to_string(), part);
                            }
                            Err(e) => tracing::warn!("the input log's held events not saved: {e}"),
                        }
                    }
                    let bytes: usize = checkpoint.parts.values().map(Vec::len).sum();
                    // A re-reading source's records are not synced one by one: those the
                    // checkpoint counts are made durable before it is. After a failed sync
                    // the kernel may have dropped unwritten pages and report the next sync
                    // fine, so no later checkpoint may commit either: the rule fails, and its
                    // restart cuts the log after what was lost.
                    if log_failed {
                        continue;
                    }
                    if let Some(Err(e)) = commit_log.as_ref().map(|l| l.sync()) {
                        log_failed = true;
                        let reason = format!("checkpoint {} not written: {e}", checkpoint.epoch);
                        match commit_fault.get() {
                            Some(fault) => fault.fail(&reason),
                            None => tracing::error!("{reason}"),
                        }
                        continue;
                    }
                    if let Err(e) = store.commit(&checkpoint) {
                        tracing::error!("checkpoint {} not written: {e}", checkpoint.epoch);
                        continue;
                    }
                    if let (Some(log), Some(older)) = (&commit_log, &previous) {
                        for (w, &p) in older.iter().enumerate() {
                            if let Err(e) = log.truncate_through(w, p) {
                                tracing::warn!("input log not trimmed: {e}");
                            }
                        }
                    }
                    previous = Some(positions);
                    commit_watch.send_replace(checkpoint.epoch);
                    *commit_stats.lock().expect("stats lock") = CommitStats {
                        epoch: checkpoint.epoch,
                        at_ms: crate::clock::now_ms(),
                        duration_ms: started.elapsed().as_millis() as u64,
                        bytes: bytes as u64,
                    };
                }
            })
            .expect("the checkpoint thread starts");
        Arc::new(Checkpointing {
            workers,
            event_time,
            fingerprint,
            pending_time: AtomicU64::new(0),
            epochs: Mutex::new(Epochs {
                next_epoch,
                ..Epochs::default()
            }),
            collect: Mutex::new(Collect::default()),
            restored,
            log,
            commits: Mutex::new(Some(tx)),
            stats,
            exactly_once,
            committed,
            final_epoch: AtomicU64::new(0),
            fault,
        })
    }

    /// Fails the run through `fault` when the input log cannot be synced for a checkpoint.
    pub fn on_fault(&self, fault: Arc<crate::fault::Fault>) {
        let _ = self.fault.set(fault);
    }

    /// True at qos 2: sinks write each checkpoint's rows in one transaction once it is
    /// durable.
    pub fn exactly_once(&self) -> bool {
        self.exactly_once
    }

    /// The number of workers the run's parts come from.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The epoch of the checkpoint this run resumes from (0: none).
    pub fn restored_epoch(&self) -> u64 {
        self.restored.as_ref().map_or(0, |c| c.epoch)
    }

    /// The last epoch committed to disk, updated as checkpoints commit.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// The input log, when the rule's source writes one.
    pub fn log(&self) -> Option<&Arc<InputLog>> {
        self.log.as_ref()
    }

    /// The last commit's figures.
    pub fn stats(&self) -> CommitStats {
        *self.stats.lock().expect("stats lock")
    }

    /// A participant says it will report at every checkpoint (called while building).
    pub fn register(&self, name: String) {
        self.collect
            .lock()
            .expect("collect lock")
            .registered
            .insert(name);
    }

    /// A worker finished building the dataflow: checkpoints may start once all have.
    pub fn built(&self) {
        self.collect.lock().expect("collect lock").built += 1;
    }

    /// The state `name` saved in the checkpoint this run resumes from.
    pub fn restored(&self, name: &str) -> Result<Option<OpState>, String> {
        match self.restored.as_ref().and_then(|c| c.parts.get(name)) {
            None => Ok(None),
            Some(bytes) => OpState::decode(bytes)
                .map(Some)
                .map_err(|e| format!("the checkpoint's state of {name} is unreadable: {e}")),
        }
    }

    /// The pending checkpoint's time, if one is pending (cheap: one atomic load).
    pub fn pending_time(&self) -> Option<u64> {
        match self.pending_time.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// The pending checkpoint (epoch, time), if any.
    pub fn pending(&self) -> Option<(u64, u64)> {
        self.epochs.lock().expect("epochs lock").pending
    }

    /// Starts a checkpoint unless one is pending, the dataflow is not built everywhere yet, or
    /// (event time) nothing moved since the last one; returns its epoch. The caller then wakes the sources so idle ones move to it.
    pub fn start(&self) -> Option<u64> {
        if self.collect.lock().expect("collect lock").built < self.workers {
            return None;
        }
        let mut epochs = self.epochs.lock().expect("epochs lock");
        if epochs.pending.is_some() || self.final_epoch.load(Ordering::Acquire) != 0 {
            // (After the input's last checkpoint no source moves again: none would complete.)
            return None;
        }
        if self.event_time && crate::event_time::is_between(epochs.max_seen) {
            // The sources last met a checkpoint between two watermark times and the watermark
            // has not moved since: that checkpoint holds everything there is.
            return None;
        }
        let epoch = epochs.next_epoch;
        epochs.next_epoch += 1;
        // Processing time: just past the clock, which every source moves to. Event time: just
        // past the watermark, the next time it moves.
        let time = if self.event_time {
            epochs.max_seen.saturating_add(1)
        } else {
            epochs
                .max_seen
                .max(crate::clock::now_time())
                .saturating_add(1)
        };
        epochs.pending = Some((epoch, time));
        epochs.started = Some(Instant::now());
        self.pending_time.store(time, Ordering::Release);
        Some(epoch)
    }

    /// Starts the run's last checkpoint once its source has handed over all of its input: its
    /// time is the end of time, which the sources reach as they see the end of their queues,
    /// after their last event, and the window operators as their input ends, after they
    /// emitted what the end of input closes. So it holds every result of the run, and a
    /// restart replays nothing. Returns its epoch; `None` while another checkpoint is pending
    /// or the dataflow is not built everywhere yet (try again).
    pub fn start_final(&self) -> Option<u64> {
        if self.collect.lock().expect("collect lock").built < self.workers {
            return None;
        }
        let mut epochs = self.epochs.lock().expect("epochs lock");
        if epochs.pending.is_some() {
            return None;
        }
        let epoch = epochs.next_epoch;
        epochs.next_epoch += 1;
        epochs.pending = Some((epoch, u64::MAX));
        epochs.started = Some(Instant::now());
        self.final_epoch.store(epoch, Ordering::Release);
        self.pending_time.store(u64::MAX, Ordering::Release);
        Some(epoch)
    }

    /// The epoch of the checkpoint taken at the end of the input, once it was started.
    pub fn final_epoch(&self) -> Option<u64> {
        match self.final_epoch.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    /// Waits (at most `limit`) until the input's last checkpoint is durable, when one was
    /// started; true when it is (or none was started). A run that ends by itself waits for it,
    /// so a rule that reports "input ended" has saved everything it did.
    pub async fn final_committed(&self, limit: std::time::Duration) -> bool {
        let Some(epoch) = self.final_epoch() else {
            return true;
        };
        let mut committed = self.committed();
        matches!(
            tokio::time::timeout(limit, committed.wait_for(|&e| e >= epoch)).await,
            Ok(Ok(_))
        )
    }

    /// A source on `worker` is about to move its time to `to`. When that passes the pending
    /// checkpoint and the worker has not saved its part yet, `save` gives it (its input log
    /// position and its state); it runs under the lock that orders sources and the trigger.
    pub fn source_moves(
        &self,
        worker: usize,
        to: u64,
        save: impl FnOnce() -> Result<(u64, OpState), String>,
    ) {
        let mut epochs = self.epochs.lock().expect("epochs lock");
        if to != u64::MAX {
            // (An ended source moves to the end of time, which no checkpoint comes after.)
            epochs.max_seen = epochs.max_seen.max(to);
        }
        let Some((epoch, time)) = epochs.pending else {
            return;
        };
        let name = source_part(worker);
        if to < time || self.has_reported(&name) {
            return;
        }
        drop(epochs);
        match save() {
            Ok((position, state)) => {
                self.collect
                    .lock()
                    .expect("collect lock")
                    .positions
                    .insert(worker, position);
                self.report(epoch, &name, Some(state));
            }
            Err(e) => self.abandon(epoch, &format!("{name}: {e}")),
        }
    }

    fn has_reported(&self, name: &str) -> bool {
        self.collect
            .lock()
            .expect("collect lock")
            .reported
            .contains(name)
    }

    /// `name` has saved its part of checkpoint `epoch` (`None`: it has nothing to save, such
    /// as a sink that has written everything before the checkpoint).
    pub fn report(&self, epoch: u64, name: &str, state: Option<OpState>) {
        let bytes = match state.map(|s| s.encode()).transpose() {
            Ok(b) => b,
            Err(e) => return self.abandon(epoch, &format!("{name}: {e}")),
        };
        let whole = {
            // Checked and counted under the epochs lock, which `abandon` takes too: a part of a
            // checkpoint given up meanwhile never counts for the next one.
            let epochs = self.epochs.lock().expect("epochs lock");
            if epochs.pending.map(|(e, _)| e) != Some(epoch) {
                return;
            }
            let mut c = self.collect.lock().expect("collect lock");
            if let Some(b) = bytes {
                c.parts.insert(name.to_string(), b);
            }
            c.reported.insert(name.to_string());
            c.registered.is_subset(&c.reported)
        };
        if whole {
            self.complete(epoch);
        }
    }

    fn complete(&self, epoch: u64) {
        let (parts, positions) = {
            let mut c = self.collect.lock().expect("collect lock");
            c.reported.clear();
            let positions = (0..self.workers)
                .map(|w| c.positions.get(&w).copied().unwrap_or(0))
                .collect::<Vec<u64>>();
            c.positions.clear();
            (std::mem::take(&mut c.parts), positions)
        };
        let started = {
            let mut epochs = self.epochs.lock().expect("epochs lock");
            epochs.pending = None;
            self.pending_time.store(0, Ordering::Release);
            epochs.started.take().unwrap_or_else(Instant::now)
        };
        let checkpoint = Checkpoint {
            epoch,
            fingerprint: self.fingerprint.clone(),
            parts,
        };
        if let Some(tx) = self.commits.lock().expect("commits lock").as_ref() {
            let _ = tx.send((checkpoint, positions, started));
        }
    }

    /// Gives up a checkpoint that cannot be taken (a part failed to save); the next one starts
    /// afresh.
    fn abandon(&self, epoch: u64, why: &str) {
        tracing::error!("checkpoint {epoch} abandoned: {why}");
        // The epochs lock first, as in `report`.
        let mut epochs = self.epochs.lock().expect("epochs lock");
        if epochs.pending.map(|(e, _)| e) != Some(epoch) {
            return;
        }
        let mut c = self.collect.lock().expect("collect lock");
        c.reported.clear();
        c.parts.clear();
        c.positions.clear();
        drop(c);
        epochs.pending = None;
        self.pending_time.store(0, Ordering::Release);
    }

    /// Stops committing (the run is over): checkpoints that complete later are not written.
    pub fn close(&self) {
        self.commits.lock().expect("commits lock").take();
    }
}

/// The part name of the source on `worker`.
pub fn source_part(worker: usize) -> String {
    format!("source.w{worker}")
}

/// The part name of the window operator of metric node `node` on `worker`.
pub fn window_part(node: usize, worker: usize) -> String {
    format!("window.{node}.w{worker}")
}

/// The part name of sink `sink` on `worker` (reported by the sink task).
pub fn sink_part(sink: usize, worker: usize) -> String {
    format!("sink.{sink}.w{worker}")
}
