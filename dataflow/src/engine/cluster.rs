//! The control plane of a cluster: every process runs a whole engine over its share of the
//! workers ("mirrored engines"), and the commands that build or drop dataflows go through the
//! workers' sequence (`runtime.rs`), so every process applies them in one order and every
//! worker builds the same dataflows in the same order, as timely needs.
//!
//! Process 0, the leader, takes the API's calls: it checks a command (bad SQL answers with its
//! position before anything is sequenced), puts it in the sequence and answers once it has
//! applied it itself, as it comes out. The followers apply what comes out, and every second
//! put their rules' counters in the sequence, which the leader adds to its status answers.
//! The leader's `restartStrategy` restarts and schedule steps go through the sequence too.
//! What would build or drop a dataflow on its own (shared streams, tables, checkpoints) is
//! refused by name.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use quiver_compiler::{StreamDef, StreamKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use quiver_connectors::file::Listing;

use super::Engine;
use super::entry::{Decided, RuleEntry};
use super::spec::{Action, RuleSpec};
use crate::error::EngineError;

/// How long an API call waits for its command to come out of the sequence and be applied.
const SLOW_APPLY: Duration = Duration::from_secs(30);
/// How often a follower reports its rules' counters.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A rule's counters as one process last reported them: its run's key and every `_total`
/// counter of its nodes.
pub(super) type Counters = (String, Vec<(String, i64)>);

/// A command every process applies in the sequence's order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Control {
    /// `CREATE STREAM`.
    CreateStream { sql: String },
    /// Drop a stream.
    DropStream { name: String },
    /// Create a rule, started or not; the rule as its JSON fields.
    CreateRule { rule: Value, start: bool },
    /// Start a rule.
    StartRule { id: String },
    /// Stop a rule.
    StopRule { id: String },
    /// Restart a rule.
    RestartRule { id: String },
    /// The leader's `restartStrategy` restarts a failed rule: its run torn down and started
    /// again, its restart count kept.
    RecoverRule { id: String, at: Decided },
    /// The leader's schedule (`cron`, `duration`) starts the run of the window beginning at
    /// `start` (ms), or (`None`) ends the scheduled run with `message`.
    ScheduleStep {
        id: String,
        at: Decided,
        start: Option<i64>,
        message: String,
    },
    /// A run-building command of the leader's own (a restart, a scheduled start) failed there:
    /// the other processes tear down the run they built, run `key` (the leader tries again
    /// later).
    UndoRun { id: String, key: String },
    /// Delete a rule, its caches kept for a new definition or not.
    DeleteRule { id: String, keep_caches: bool },
    /// A follower's counters, by rule id.
    Counters { rules: BTreeMap<String, Counters> },
    /// The input of run `key` of rule `id` ended on the leader: read there alone, or (`split`)
    /// the leader's byte ranges of a file every process reads a part of.
    InputEnded {
        id: String,
        key: String,
        #[serde(default)]
        split: bool,
        /// How the leader made the source ([`super::input_share::spec_digest`]).
        #[serde(default)]
        digest: u64,
    },
    /// A connection profile made (`Some`) or removed over REST on the leader.
    SetProfile {
        source_type: String,
        name: String,
        props: Option<serde_json::Map<String, Value>>,
    },
    /// The source of run `key` of rule `id` failed on the follower that put this in (a file
    /// it cannot read, say): the leader's status says so, as one process's would.
    SourceFailed {
        id: String,
        key: String,
        error: String,
    },
    /// The files (and lengths) of run `key` of rule `id`'s split file input as the leader
    /// listed them, which every process reads (`None`: too many to send; each lists its own).
    InputListing {
        id: String,
        key: String,
        files: Option<Listing>,
    },
}

/// One item of the sequence: the command, and who put it in (to answer its caller).
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    process: usize,
    ticket: u64,
    control: Control,
}

/// What the engine keeps of the cluster it is a process of.
pub(super) struct ClusterState {
    /// This process's index.
    pub(super) process: usize,
    /// Processes in the cluster.
    pub(super) processes: usize,
    next_ticket: AtomicU64,
    /// Callers waiting for their command to be applied, by ticket.
    waiting: Mutex<HashMap<u64, std::sync::mpsc::Sender<Result<(), EngineError>>>>,
    /// The leader's view of the followers' counters: by process, by rule.
    reported: Mutex<BTreeMap<usize, BTreeMap<String, Counters>>>,
    /// Set when every process runs in this OS process over one memory bus
    /// ([`Engine::start_cluster_in_process`]): the memory sink then works as on one process.
    pub(super) one_bus: bool,
    /// On a follower, the leader's listings of split file inputs not yet taken by their
    /// sources: by rule id, with the run's key (one per rule: a newer run's replaces it).
    pub(super) listings: Mutex<HashMap<String, (String, Option<Listing>)>>,
    /// Signalled when a listing arrives.
    pub(super) listed: Condvar,
}

impl ClusterState {
    /// The state of process `process` of `processes`.
    pub(super) fn new(process: usize, processes: usize, one_bus: bool) -> ClusterState {
        ClusterState {
            process,
            processes,
            next_ticket: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
            reported: Mutex::new(BTreeMap::new()),
            one_bus,
            listings: Mutex::new(HashMap::new()),
            listed: Condvar::new(),
        }
    }
}

/// The error for a feature that would build or drop dataflows outside the sequence.
fn refused(what: &str) -> EngineError {
    EngineError::Invalid(format!("{what} is not supported in cluster mode yet"))
}

impl Engine {
    /// The cluster this engine is a process of, if any.
    pub(super) fn cluster(&self) -> Option<&ClusterState> {
        self.inner.cluster.as_ref()
    }

    /// True for a follower: a process of a cluster other than the leader (process 0).
    pub(super) fn is_follower(&self) -> bool {
        self.cluster().is_some_and(|c| c.process != 0)
    }

    /// In a cluster, this process's index and the number of processes.
    pub fn cluster_process(&self) -> Option<(usize, usize)> {
        self.cluster().map(|c| (c.process, c.processes))
    }

    /// Starts the control plane: the thread that applies what comes out of the sequence, and
    /// on a follower the task that reports its counters.
    pub(super) fn start_control_plane(&self) {
        let Some(sequenced) = self.inner.workers.sequenced() else {
            return;
        };
        let weak = std::sync::Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("quiver-control".into())
            .spawn(move || {
                // Ends when the workers stop (they hold the sending side).
                while let Ok(text) = sequenced.recv() {
                    let Some(inner) = weak.upgrade() else { return };
                    Engine { inner }.apply_item(&text);
                }
            })
            .expect("spawning the control plane thread");
        if self.is_follower() {
            self.every(REPORT_EVERY, Engine::report_counters);
        }
    }

    /// On a follower: puts its rules' counters in the sequence, for the leader's status.
    pub(super) fn report_counters(&self) {
        if self.workers_stopped().is_some() {
            return;
        }
        let rules = self.counters();
        if !rules.is_empty() {
            self.put_in_sequence(Control::Counters { rules });
        }
    }

    /// On the leader, once the input of run `key` of rule `id` ended here: tells the other
    /// processes, whose workers hold that input open until then when it was read here alone,
    /// and who check they read it as the leader did (`split`: in byte ranges).
    pub(super) fn announce_input_end(&self, id: &str, key: &str, split: bool, digest: u64) {
        if self.cluster().is_some_and(|c| c.process == 0) && self.workers_stopped().is_none() {
            self.put_in_sequence(Control::InputEnded {
                id: id.to_string(),
                key: key.to_string(),
                split,
                digest,
            });
        }
    }

    /// On a follower, once its own source of run `key` of rule `id` failed: tells the leader,
    /// whose status would otherwise show the rule ending well with fewer rows. Blocks until
    /// the report came out of the sequence here: the caller closes its workers' input only
    /// then, so the leader, which applies the sequence in the same order, has the error
    /// before the run can finish (the run's end and the sequence are separate channels, so
    /// this narrows the gap rather than closing it).
    pub(super) fn report_source_failure(&self, id: &str, key: &str, error: &str) {
        if self.is_follower() {
            let control = Control::SourceFailed {
                id: id.to_string(),
                key: key.to_string(),
                error: error.to_string(),
            };
            if let Some(Err(e)) = self.sequenced(control) {
                tracing::warn!(rule = %id, "source failure not reported to the leader: {e}");
            }
        }
    }

    /// Puts a command in the sequence without waiting for it; its ticket.
    pub(super) fn put_in_sequence(&self, control: Control) -> u64 {
        let cluster = self.cluster().expect("a cluster engine");
        let ticket = cluster.next_ticket.fetch_add(1, Ordering::Relaxed);
        let item = Item {
            process: cluster.process,
            ticket,
            control,
        };
        let text = serde_json::to_string(&item).expect("a control item serialises");
        self.inner.workers.sequence(text);
        ticket
    }

    /// In a cluster, puts `control` in the sequence and waits until this process applied it:
    /// its result. `None` outside a cluster (the caller applies the command itself).
    pub(super) fn sequenced(&self, control: Control) -> Option<Result<(), EngineError>> {
        let cluster = self.cluster()?;
        if let Some(reason) = self.workers_stopped() {
            return Some(Err(EngineError::Runtime(reason)));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        // The applier takes this lock to answer: holding it while the item goes in puts the
        // ticket in the map before its result can come.
        let mut waiting = cluster.waiting.lock().expect("waiting lock");
        let ticket = self.put_in_sequence(control);
        waiting.insert(ticket, tx);
        drop(waiting);
        // No deadline while the workers live: an item in the sequence is applied by every
        // process sooner or later, so answering "failed" before that would be untrue (the rule
        // would then run, and be missing from the catalog after a restart).
        let started = std::time::Instant::now();
        let mut warned = 0;
        let mut wait = || loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(result) => return Some(result),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if self.inner.workers.dead().is_none() =>
                {
                    let waited = started.elapsed().as_secs() / SLOW_APPLY.as_secs();
                    if waited > warned {
                        warned = waited;
                        tracing::warn!(
                            "a command is still waiting for every process to reach it after {} s (a slow process, or clocks out of step)",
                            started.elapsed().as_secs()
                        );
                    }
                }
                Err(_) => return None,
            }
        };
        // API handlers call this from the async runtime: the wait must not hold up the other
        // tasks of the runtime thread it blocks.
        let in_pool = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let applied = if in_pool {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        };
        if applied.is_some() {
            return applied;
        }
        cluster
            .waiting
            .lock()
            .expect("waiting lock")
            .remove(&ticket);
        Some(Err(EngineError::Runtime(
            self.workers_stopped()
                .unwrap_or_else(|| "the cluster stopped before it applied the command".to_string()),
        )))
    }

    /// Why this process's workers stopped, if one did. In a cluster that is most often a
    /// lost process or connection, which timely cannot recover from.
    pub fn workers_stopped(&self) -> Option<String> {
        let reason = self.inner.workers.dead()?;
        Some(match self.cluster() {
            None => reason,
            Some(_) => format!(
                "the cluster stopped: a process or its connection was lost ({reason}); its rules \
                 start again once every process is running and reachable (a lost one restarted): \
                 the cluster then forms again by itself"
            ),
        })
    }

    /// Applies one item of the sequence and answers its caller if it is one of ours.
    fn apply_item(&self, text: &str) {
        let item: Item = match serde_json::from_str(text) {
            Ok(item) => item,
            Err(e) => {
                tracing::error!("unreadable control item: {e}");
                return;
            }
        };
        let cluster = self.cluster().expect("a cluster engine");
        // What undoes a run-building command elsewhere when it fails here.
        let undo = match &item.control {
            Control::CreateRule { rule, .. } => rule["id"].as_str().map(|id| Control::DeleteRule {
                id: id.to_string(),
                keep_caches: true,
            }),
            Control::StartRule { id } | Control::RestartRule { id } => {
                Some(Control::StopRule { id: id.clone() })
            }
            // The run's key is known once it was launched (below).
            Control::RecoverRule { id, .. } | Control::ScheduleStep { id, .. } => {
                Some(Control::UndoRun {
                    id: id.clone(),
                    key: String::new(),
                })
            }
            _ => None,
        };
        let result = self.apply(item.process, item.control);
        // A name taken or unknown is the same in every process (they apply the same commands
        // in the same order): such a failure built nothing anywhere.
        let everywhere = matches!(
            result,
            Err(EngineError::NotFound(_) | EngineError::Duplicate(_) | EngineError::InUse(_))
        );
        if let (Err(e), Some(mut undo), false) = (&result, undo, everywhere) {
            if let Control::UndoRun { id, key } = &mut undo {
                let rules = self.inner.rules.lock().expect("rules lock");
                *key = rules.get(id).map(RuleEntry::run_key).unwrap_or_default();
            }
            if item.process == cluster.process {
                // It failed where it was asked for (the leader checked it, but a source is
                // made on the leader only): the others built it, so they take it down again,
                // in the sequence's order, and every process keeps the same dataflows.
                tracing::warn!("a command failed here ({e}); undoing it on the other processes");
                self.put_in_sequence(undo);
            } else {
                // It worked where it was asked for and not here: this process would build
                // other dataflows than the rest of the cluster, which timely cannot survive.
                // Leaving makes the others report a lost process instead of computing wrong
                // results.
                tracing::error!(
                    "process {} cannot apply a command process {} applied: {e}; leaving the cluster (restart this process once the cause is fixed)",
                    cluster.process,
                    item.process
                );
                std::process::exit(1);
            }
        }
        if item.process == cluster.process {
            if let Some(tx) = cluster
                .waiting
                .lock()
                .expect("waiting lock")
                .remove(&item.ticket)
            {
                let _ = tx.send(result);
            }
        } else if let Err(e) = result {
            tracing::warn!(
                "process {} could not apply a command of process {}: {e}",
                cluster.process,
                item.process
            );
        }
    }

    /// Applies a command here.
    fn apply(&self, from: usize, control: Control) -> Result<(), EngineError> {
        match control {
            Control::CreateStream { sql } => self.create_stream_here(&sql).map(drop),
            Control::DropStream { name } => self.drop_stream_here(&name),
            Control::CreateRule { rule, start } => {
                let spec = spec_from_json(&rule)?;
                self.insert_rule(spec, start, None)
            }
            Control::StartRule { id } => self.start_rule_here(&id),
            Control::StopRule { id } => self.stop_rule_here(&id),
            Control::RestartRule { id } => self.restart_rule_here(&id),
            Control::RecoverRule { id, at } => self.recover_rule_here(&id, at),
            Control::ScheduleStep {
                id,
                at,
                start,
                message,
            } => self.schedule_step_here(&id, at, start, message),
            Control::UndoRun { id, key } => {
                if self.cluster().is_some_and(|c| c.process != from) {
                    self.undo_run_here(&id, &key);
                }
                Ok(())
            }
            Control::DeleteRule { id, keep_caches } => self.remove_rule(&id, keep_caches),
            Control::InputEnded {
                id,
                key,
                split,
                digest,
            } => {
                let mut rules = self.inner.rules.lock().expect("rules lock");
                // A run stopped or replaced since has nothing to end.
                let Some(entry) = rules.get_mut(&id).filter(|e| e.runs_now(&key)) else {
                    return Ok(());
                };
                let ours = self
                    .rule_stream(entry)
                    .map(|def| super::input_share::spec_digest(&self.rule_source_spec(entry, &def)))
                    .unwrap_or(digest);
                let Some(run) = entry.run.as_mut() else {
                    return Ok(());
                };
                // The leader split a file this process did not, or the other way round (their
                // profiles of the stream differ): this process's part was not read, or was read
                // twice. Said in the leader's status rather than left to a hang or a count.
                let handled_otherwise = match &mut run.source {
                    super::entry::SourceHandle::Elsewhere(input) => {
                        input.end();
                        split
                    }
                    _ => {
                        if !split && self.is_follower() {
                            // The leader read it whole and listed nothing: a source here that
                            // waits for its listing reads nothing and ends.
                            self.put_listing(&id, &key, Some(Vec::new()));
                        }
                        !split
                    }
                };
                let disagreed =
                    self.is_follower() && (handled_otherwise || (split && ours != digest));
                if disagreed {
                    let error = format!(
                        "this process and the leader read the input of stream \"{}\" differently ({}): give every process the same profile of it in its --config file",
                        run.source_node.trim_start_matches("source_"),
                        match (split, handled_otherwise) {
                            (true, true) =>
                                "the leader split its files, this process left them to the leader: its part was not read",
                            (false, _) => "this process split the files the leader read whole",
                            (true, false) =>
                                "both split its files, with other profiles: parts may be missing or read twice",
                        }
                    );
                    tracing::error!(rule = %id, "{error}");
                    drop(rules);
                    self.put_in_sequence(Control::SourceFailed { id, key, error });
                }
                Ok(())
            }
            Control::SetProfile {
                source_type,
                name,
                props,
            } => {
                self.set_sequenced_profile(&source_type, &name, props);
                Ok(())
            }
            Control::SourceFailed { id, key, error } => {
                if self.cluster().is_some_and(|c| c.process == 0) {
                    let rules = self.inner.rules.lock().expect("rules lock");
                    if let Some(run) = rules
                        .get(&id)
                        .filter(|e| e.runs_now(&key))
                        .and_then(|e| e.run.as_ref())
                    {
                        tracing::error!(rule = %id, "process {from}: source failed: {error}");
                        let mut slot = run.error.lock().expect("error lock");
                        if slot.is_none() {
                            *slot = Some(format!("process {from}: {error}"));
                        }
                    }
                }
                Ok(())
            }
            Control::InputListing { id, key, files } => {
                if self.is_follower() {
                    self.take_listing(&id, &key, files);
                }
                Ok(())
            }
            Control::Counters { rules } => {
                if let Some(c) = self.cluster()
                    && c.process == 0
                {
                    c.reported
                        .lock()
                        .expect("reported lock")
                        .insert(from, rules);
                }
                Ok(())
            }
        }
    }

    /// Every rule run's `_total` counters here, by rule id.
    fn counters(&self) -> BTreeMap<String, Counters> {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules
            .iter()
            .filter_map(|(id, entry)| {
                let run = entry.run.as_ref()?;
                let counters = run
                    .metrics
                    .flatten()
                    .into_iter()
                    .filter(|(k, _)| k.ends_with("_total"))
                    .filter_map(|(k, v)| Some((k, v.as_i64()?)))
                    .collect();
                Some((id.clone(), (run.key.clone(), counters)))
            })
            .collect()
    }

    /// On the leader: adds the followers' counters of run `key` of rule `id` to `metrics`
    /// (every `_total` counter summed over the processes), then lists each process's records
    /// in and out per node as `process_<p>_<node>_records_{in,out}_total`.
    pub(super) fn cluster_metrics(&self, id: &str, key: &str, metrics: &mut Vec<(String, Value)>) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let per_process = |metrics: &[(String, Value)]| -> Vec<(String, i64)> {
            metrics
                .iter()
                .filter(|(k, _)| {
                    k.ends_with("_0_records_in_total") || k.ends_with("_0_records_out_total")
                })
                .filter_map(|(k, v)| Some((k.replacen("_0_", "_", 1), v.as_i64()?)))
                .collect()
        };
        let mut listed: Vec<(usize, Vec<(String, i64)>)> = vec![(0, per_process(metrics))];
        let reported = cluster.reported.lock().expect("reported lock");
        for (process, rules) in reported.iter() {
            let Some((run, counters)) = rules.get(id) else {
                continue;
            };
            if run != key {
                continue;
            }
            let theirs: HashMap<&str, i64> =
                counters.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            for (k, v) in metrics.iter_mut() {
                if let Some(n) = theirs.get(k.as_str())
                    && let Some(mine) = v.as_i64()
                {
                    *v = Value::from(mine + n);
                }
            }
            let as_values: Vec<(String, Value)> = counters
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect();
            listed.push((*process, per_process(&as_values)));
        }
        drop(reported);
        // The leader's own counters were taken before the sums.
        for (process, counters) in listed {
            for (k, v) in counters {
                metrics.push((format!("process_{process}_{k}"), Value::from(v)));
            }
        }
    }

    /// Refuses, in a cluster, a stream the cluster cannot run yet.
    pub(super) fn refuse_stream_in_cluster(&self, def: &StreamDef) -> Result<(), EngineError> {
        if self.cluster().is_none() {
            return Ok(());
        }
        if def.kind == StreamKind::Table {
            return Err(refused("CREATE TABLE (tables)"));
        }
        if def.options.shared {
            return Err(refused("a shared stream (SHARED=\"true\")"));
        }
        Ok(())
    }

    /// Refuses, in a cluster, a rule that would build or drop dataflows on its own.
    pub(super) fn refuse_rule_in_cluster(&self, spec: &RuleSpec) -> Result<(), EngineError> {
        if self.cluster().is_none() {
            return Ok(());
        }
        let options = &spec.options;
        if super::recovery::qos(options)?.checkpointed().is_some() {
            return Err(refused("rule option qos 1 or 2 (checkpoints)"));
        }
        // Named connections are registered on the leader only (`/connections`); a follower
        // could not make the sink, and would build other dataflows than the leader.
        let named = |props: &Value| {
            props.as_object().is_some_and(|p| {
                p.keys()
                    .any(|k| k.eq_ignore_ascii_case("connectionSelector"))
            })
        };
        if spec.actions.iter().any(|a| named(&a.props)) {
            return Err(refused(
                "sink property connectionSelector (named connections)",
            ));
        }
        // Sinks run in every process: a memory sink would publish each process's share to
        // that process's own bus, and one MQTT client id would connect from every process.
        let one_bus = self.cluster().is_some_and(|c| c.one_bus);
        if !one_bus && spec.actions.iter().any(|a| a.sink_type == "memory") {
            return Err(refused(
                "the memory sink (each process would publish to its own bus)",
            ));
        }
        let client_id = |props: &Value| {
            props
                .as_object()
                .is_some_and(|p| p.keys().any(|k| k.eq_ignore_ascii_case("clientid")))
        };
        if spec
            .actions
            .iter()
            .any(|a| a.sink_type == "mqtt" && client_id(&a.props))
        {
            return Err(refused(
                "mqtt sink property clientid (every process would connect with it)",
            ));
        }
        // Its store is opened by the leader only: a follower would answer defaults.
        if spec.sql.to_ascii_lowercase().contains("get_keyed_state") {
            return Err(refused("function get_keyed_state"));
        }
        Ok(())
    }

    /// Refuses, in a cluster, what runs on the leader alone (rule tests).
    pub(super) fn refuse_in_cluster(&self, what: &str) -> Result<(), EngineError> {
        match self.cluster() {
            Some(_) => Err(refused(what)),
            None => Ok(()),
        }
    }

    /// Checks a rule on the leader before it is sequenced: its SQL and what a cluster
    /// refuses.
    pub(super) fn check_rule_for_cluster(&self, spec: &RuleSpec) -> Result<(), EngineError> {
        let plan = self.compile(&spec.sql)?;
        self.validate_options(&spec.options)?;
        self.refuse_rule_in_cluster(spec)?;
        self.check_mqtt_input(&spec.id, &plan)?;
        for a in &spec.actions {
            self.validate_action(a)?;
        }
        Ok(())
    }
}

/// A rule as JSON fields, for the sequence.
pub(super) fn spec_to_json(spec: &RuleSpec) -> Value {
    serde_json::json!({
        "id": spec.id,
        "name": spec.name,
        "sql": spec.sql,
        "actions": spec.actions.iter().map(|a| serde_json::json!({
            "type": a.sink_type,
            "props": a.props,
        })).collect::<Vec<_>>(),
        "options": spec.options,
    })
}

/// The rule [`spec_to_json`] wrote.
fn spec_from_json(v: &Value) -> Result<RuleSpec, EngineError> {
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let actions = v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| Action {
                    sink_type: a["type"].as_str().unwrap_or_default().to_string(),
                    props: a["props"].clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RuleSpec {
        id: text("id"),
        name: text("name"),
        sql: text("sql"),
        actions,
        options: v["options"].as_object().cloned().unwrap_or_default(),
    })
}
