//! What the engine keeps per rule: its definition and plan, and its current or last run.

use std::sync::{Arc, Mutex};

use quiver_compiler::RulePlan;
use tokio::sync::watch;

use super::spec::RuleSpec;
use crate::metrics::RuleMetrics;

/// A rule: its definition, its compiled plan, and its current or last run.
pub(super) struct RuleEntry {
    pub(super) spec: RuleSpec,
    pub(super) plan: RulePlan,
    pub(super) run: Option<RuleRun>,
    /// The metrics of the last run, kept once it stops.
    pub(super) last_metrics: Option<Arc<RuleMetrics>>,
    pub(super) last_start_ms: i64,
    pub(super) last_stop_ms: i64,
    pub(super) stop_message: String,
    /// The engine's number of the rule's last run; its dataflow key is `<id>#<runs>`.
    pub(super) runs: u64,
    /// Starts, stops and restarts applied to the rule: the same count in every process of a
    /// cluster at each point of the command sequence, so a restart the leader decided on
    /// is skipped everywhere once another command came before it.
    pub(super) commands: u64,
    /// The rule's `restartStrategy`.
    pub(super) restart_strategy: super::restart::RestartStrategy,
    /// Where it is in its restarts.
    pub(super) restart: super::restart::RestartState,
    /// The rule's `cron`/`duration`/`cronDatetimeRange`, when it has a schedule.
    pub(super) schedule: Option<super::schedule::Schedule>,
    /// Where it is in that schedule.
    pub(super) schedule_state: super::schedule::ScheduleState,
    /// Set for a test rule (`POST /ruletest`): its mocked streams, and it is not listed.
    pub(super) test: Option<super::trial::TestInput>,
}

impl RuleEntry {
    /// The dataflow key of the rule's last launched run: `<id>#<runs>`.
    pub(super) fn run_key(&self) -> String {
        format!("{}#{}", self.spec.id, self.runs)
    }

    /// True when the rule's current run is run `key` (not stopped or replaced since).
    pub(super) fn runs_now(&self, key: &str) -> bool {
        self.run.as_ref().is_some_and(|r| r.key == key)
    }

    /// Where the rule is in the command sequence, as the leader names it in a command it
    /// decided for the rule ([`Decided`]).
    pub(super) fn decided(&self) -> Decided {
        Decided {
            commands: self.commands,
            runs: self.runs,
        }
    }
}

/// Where a rule was in the command sequence when a cluster's leader decided a restart or a
/// schedule step for it: its commands count and its run number. The same in every process at
/// each point of the sequence, so a command applied since (a stop, start or restart by hand,
/// or the rule deleted and created again) makes the decision a no-op everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Decided {
    commands: u64,
    runs: u64,
}

impl Decided {
    /// True when no run was launched between `other` and this (the commands may differ).
    pub(super) fn same_run(self, other: Decided) -> bool {
        self.runs == other.runs
    }
}

/// A running (or finished) instance of a rule.
pub(super) struct RuleRun {
    /// The run's dataflow on the workers: `<rule id>#<run>`.
    pub(super) key: String,
    /// The source's connection, when it has one (MQTT).
    pub(super) connection: Option<Arc<quiver_connectors::mqtt::ConnectionState>>,
    /// The FROM stream's source node, which the connection metrics follow.
    pub(super) source_node: String,
    pub(super) metrics: Arc<RuleMetrics>,
    /// The rule's own source task, or its membership in a shared stream's source.
    pub(super) source: SourceHandle,
    /// The sources of streams joined to the FROM stream and their decoders, and the task that
    /// stops the rule's source when an operator fails it.
    pub(super) joined_tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(super) done: watch::Receiver<bool>,
    pub(super) error: Arc<Mutex<Option<String>>>,
    /// Rows dropped behind the watermark (event time).
    pub(super) late_rows: Arc<std::sync::atomic::AtomicU64>,
    /// Events of a shared stream dropped because this rule fell behind the others.
    pub(super) dropped: Arc<std::sync::atomic::AtomicU64>,
    /// When the run finished by itself (its input ended and the sinks wrote everything), ms.
    pub(super) finished_at: Arc<std::sync::atomic::AtomicI64>,
    /// Rows read and not yet taken by the rule's keyed or window operators.
    pub(super) in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The table indexes the run reads (released when it stops).
    pub(super) indexes: Vec<crate::tables::feed::IndexSpec>,
    /// Set when the rule is deleted: its sinks drop their caches instead of keeping them.
    pub(super) discard_caches: Arc<std::sync::atomic::AtomicBool>,
    /// The run's checkpointing (qos 1), for its status.
    pub(super) checkpoint: Option<Arc<crate::checkpoint::Checkpointing>>,
    /// `enableSaveStateBeforeStop`: how to checkpoint before a stop.
    pub(super) save_before_stop: Option<super::save_state::SaveBeforeStop>,
}

/// How a rule run gets its input.
pub(super) enum SourceHandle {
    /// A source task of its own.
    Own(tokio::task::JoinHandle<()>),
    /// A subscription to the shared source of this stream (`SHARED="true"`).
    Shared(String),
    /// Membership in the rule group of this shared stream.
    Grouped(String, Arc<crate::render::group::RuleGroup>),
    /// Read in another process of the cluster (the leader). This process's workers read
    /// nothing; their queues are held open (never sent to) until the leader's input ends.
    Elsewhere(InputElsewhere),
}

/// This process's queues of a rule read by the leader of the cluster: open, so the workers'
/// time moves on, until the leader says the input ended ([`InputElsewhere::end`]).
pub(super) struct InputElsewhere {
    pub(super) queues: Vec<tokio::sync::mpsc::Sender<quiver_connectors::SourceEvent>>,
    /// Wakes a worker by its index over the cluster.
    pub(super) wake: quiver_connectors::WakeFn,
    /// This process's workers.
    pub(super) local: std::ops::Range<usize>,
}

impl InputElsewhere {
    /// The input ended on the leader: closes the queues and wakes the workers, so each sees
    /// the end of its input and the run can finish in every process.
    pub(super) fn end(&mut self) {
        self.queues.clear();
        for i in self.local.clone() {
            (self.wake)(i);
        }
    }
}
