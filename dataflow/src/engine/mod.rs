//! The engine: streams, tables and rules, and their lifecycle over the timely runtime.
//!
//! [`Engine`] is the entry point; its methods are spread over one file per concern:
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Engine`], its shared state, start and shutdown |
//! | `catalog.rs` | streams and tables: create/drop, the tasks that feed tables, source profiles |
//! | `spec.rs` | a rule as submitted ([`RuleSpec`], [`Action`]) |
//! | `entry.rs` | what the engine keeps per rule: definition, plan, current run |
//! | `rules.rs` | the rule API: create, start, stop, restart, delete, compile |
//! | `status.rs` | what a rule reports: status, metrics, topology, explain, waiting for the end |
//! | `launch.rs` | one run of a rule: sinks, the dataflow on every worker, its sources; teardown |
//! | `shared.rs` | the one source of a `SHARED="true"` stream and its fan-out to rule runs |
//! | `groups.rs` | the engine side of rule groups (`crate::group`): joining and leaving one |
//! | `sink_task.rs` | the tokio task that writes a rule's results to one sink, through its cache |
//! | `options.rs` | rule options (`bufferLength`, `isEventTime`, `lateTolerance`) |
//! | `planning.rs` | a rule's physical plan from its options and the catalog |
//! | `restart.rs` | the supervisor; `restartStrategy`: restarting failed rules with backoff |
//! | `schedule.rs` | scheduled rules: `cron`, `duration`, `cronDatetimeRange` |
//! | `transitions.rs` | one log line per rule state change, with its reason |
//! | `trial.rs` | test rules (`POST /ruletest`): mocked streams, kept out of the rule list |
//! | `cluster.rs` | a cluster's control plane: commands in one order, refusals, counters |
//! | `input_share.rs` | a cluster process's share of an MQTT stream (shared subscriptions) |

mod catalog;
mod cluster;
mod entry;
mod epoch_sink;
mod groups;
mod input_share;
mod launch;
mod options;
mod planning;
mod recovery;
mod restart;
mod rules;
mod save_state;
mod schedule;
mod shared;
mod sink_task;
mod spec;
mod status;
mod transitions;
mod trial;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use quiver_compiler::{Registry, StreamDef};
use quiver_connectors::Connectors;

pub use catalog::SourceProfiles;
pub use schedule::WAITING as WAITING_FOR_SCHEDULE;
pub use spec::{Action, RuleSpec};
pub use status::RuleStatus;
pub use trial::{Mocks, TestInput};

use crate::error::EngineError;
use crate::runtime::{ClusterConfig, Workers};
use catalog::TableEntry;
use entry::RuleEntry;
use shared::SharedSource;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Timely worker threads (default: the number of cores).
    pub workers: usize,
    /// Cores the physical plan may count on (default: the machine's). Where rows are placed
    /// depends on it (an event-time window spreads its groups only with more than two), so
    /// tests that compare plans fix it.
    pub cores: usize,
    /// Where sinks keep their caches (`enableCache`, `<data dir>/cache.db`); without one, a
    /// rule that asks for a cache is refused.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EngineConfig {
            workers: cores,
            cores,
            data_dir: None,
        }
    }
}

/// The lock a sink task holds on its cache for the length of its run (`CacheSpec::owner`).
type CacheOwner = Arc<tokio::sync::Mutex<()>>;

/// The stream-processing engine. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The state every clone of an [`Engine`] shares.
struct Inner {
    /// Where source, sink and table tasks run.
    runtime: tokio::runtime::Handle,
    connectors: Connectors,
    /// Built-ins plus plugin functions, which are added and removed at run time.
    registry: RwLock<Registry>,
    workers: Workers,
    /// Streams and tables, by name (sorted, as the API lists them).
    streams: RwLock<BTreeMap<String, StreamDef>>,
    /// Rules, by id (sorted, as the API lists them).
    rules: Mutex<BTreeMap<String, RuleEntry>>,
    profiles: RwLock<SourceProfiles>,
    /// Profiles set through the cluster's sequence (made over REST on the leader), by source
    /// type and name: they win over this process's own (its `--config` file's), whenever
    /// those are set, so every process reads a stream with the leader's profile.
    sequenced_profiles: RwLock<SourceProfiles>,
    /// The running sources of shared streams, by stream.
    shared: Mutex<HashMap<String, SharedSource>>,
    /// Rule groups, by shared stream: its stateless rules in one dataflow.
    groups: Mutex<HashMap<String, Arc<crate::render::group::RuleGroup>>>,
    /// Tables: their rows and the tasks that feed them.
    tables: Mutex<HashMap<String, TableEntry>>,
    /// Cores the physical plans may count on.
    cores: usize,
    /// Where sink caches live.
    data_dir: Option<std::path::PathBuf>,
    /// One owner lock per cached sink, by rule and sink node: a sink task holds it for its
    /// run. Entries of deleted rules go once no task holds them (`Engine::remove_rule`).
    cache_owners: Mutex<HashMap<(String, String), CacheOwner>>,
    /// Set when this engine is one process of a cluster (`cluster.rs`).
    cluster: Option<cluster::ClusterState>,
    /// Runs launched so far: each run's number, so run keys are never reused, not even by a
    /// rule deleted and created again under its id.
    launches: std::sync::atomic::AtomicU64,
    /// Rule entries created so far: each entry's commands count from its own base.
    entries: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Starts the timely workers. Source and sink tasks run on `runtime`.
    pub fn start(
        config: EngineConfig,
        runtime: tokio::runtime::Handle,
        connectors: Connectors,
    ) -> Result<Engine, EngineError> {
        let workers = Workers::start(config.workers).map_err(EngineError::Runtime)?;
        Ok(Engine::on_workers(
            config, workers, runtime, connectors, false,
        ))
    }

    /// Starts this process's workers of a cluster (`cluster.threads` of them; returns once
    /// every process is connected) and the control plane that orders commands over the
    /// processes. Process 0 takes the API's calls; the others apply what it sequences.
    pub fn start_cluster(
        config: EngineConfig,
        cluster: ClusterConfig,
        runtime: tokio::runtime::Handle,
        connectors: Connectors,
    ) -> Result<Engine, EngineError> {
        let workers = Workers::start_cluster(cluster).map_err(EngineError::Runtime)?;
        let engine = Engine::on_workers(config, workers, runtime, connectors, false);
        engine.start_control_plane();
        Ok(engine)
    }

    /// Starts every process of a cluster in this OS process, for tests and benchmarks of
    /// cluster mode: one engine per address (the first is the leader), `threads` workers
    /// each, connected over TCP at `addresses` as separate processes would be, all sharing
    /// `connectors` and so one memory bus (which makes the memory sink usable in the cluster).
    pub fn start_cluster_in_process(
        config: EngineConfig,
        addresses: Vec<String>,
        threads: usize,
        runtime: tokio::runtime::Handle,
        connectors: Connectors,
    ) -> Result<Vec<Engine>, EngineError> {
        let processes = addresses.len();
        let (tx, rx) = std::sync::mpsc::channel();
        // Each process's start returns only once every process is connected: side by side.
        for process in 0..processes {
            let cluster = ClusterConfig {
                process,
                addresses: addresses.clone(),
                threads,
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send((process, Workers::start_cluster(cluster)));
            });
        }
        let mut started: Vec<Option<Workers>> = (0..processes).map(|_| None).collect();
        for _ in 0..processes {
            // A process that cannot start leaves the others waiting for it: give up on them.
            let (process, workers) = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
                EngineError::Runtime("the cluster's processes did not connect within 30 s".into())
            })?;
            started[process] = Some(workers.map_err(EngineError::Runtime)?);
        }
        Ok(started
            .into_iter()
            .flatten()
            .map(|workers| {
                let engine = Engine::on_workers(
                    config.clone(),
                    workers,
                    runtime.clone(),
                    connectors.clone(),
                    true,
                );
                engine.start_control_plane();
                engine
            })
            .collect())
    }

    /// The engine over started workers.
    fn on_workers(
        config: EngineConfig,
        workers: Workers,
        runtime: tokio::runtime::Handle,
        connectors: Connectors,
        one_bus: bool,
    ) -> Engine {
        let cluster = workers
            .cluster()
            .map(|(process, processes)| cluster::ClusterState::new(process, processes, one_bus));
        let engine = Engine {
            inner: Arc::new(Inner {
                runtime,
                connectors,
                registry: RwLock::new(Registry::builtin().clone()),
                workers,
                streams: RwLock::new(BTreeMap::new()),
                rules: Mutex::new(BTreeMap::new()),
                profiles: RwLock::new(HashMap::new()),
                sequenced_profiles: RwLock::new(HashMap::new()),
                shared: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                tables: Mutex::new(HashMap::new()),
                cores: config.cores,
                data_dir: config.data_dir,
                cache_owners: Mutex::new(HashMap::new()),
                cluster,
                launches: std::sync::atomic::AtomicU64::new(0),
                entries: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        engine.start_supervisor();
        engine
    }

    /// Calls `f` every `period` (a late tick delays the next) until the engine is dropped: the
    /// task holds the engine weakly, so it never keeps one alive.
    fn every(&self, period: Duration, f: impl Fn(&Engine) + Send + 'static) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                f(&Engine { inner });
            }
        });
    }

    /// The connector registry (and its memory bus).
    pub fn connectors(&self) -> &Connectors {
        &self.inner.connectors
    }

    /// Adds (or replaces) a SQL function, e.g. a plugin's; rules compiled from now on see it.
    pub fn register_function(&self, f: Arc<dyn quiver_compiler::functions::ScalarFunction>) {
        self.inner
            .registry
            .write()
            .expect("registry lock")
            .register(f);
    }

    /// Removes a SQL function added by [`Engine::register_function`].
    pub fn unregister_function(&self, name: &str) -> bool {
        self.inner
            .registry
            .write()
            .expect("registry lock")
            .remove(name)
    }

    /// The number of timely workers.
    pub fn workers(&self) -> usize {
        self.inner.workers.count()
    }

    /// Stops every rule and the workers.
    ///
    /// Sinks get up to five seconds to write what they already received, so a SIGTERM flushes
    /// results instead of dropping them. Call it from a thread that may block.
    pub fn shutdown(&self) {
        // `enableSaveStateBeforeStop`: their checkpoints first, while everything runs. Waited
        // for on a thread of its own, which may block whatever thread calls this.
        // (A current-thread runtime drives no timers for another thread: its rules resume from
        // their last periodic checkpoint instead.)
        if self.inner.runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            std::thread::scope(|s| {
                s.spawn(|| self.inner.runtime.block_on(self.save_all_before_stop()));
            });
        }
        let mut flushing = Vec::new();
        {
            let mut rules = self.inner.rules.lock().expect("rules lock");
            for entry in rules.values_mut() {
                if let Some(run) = &entry.run {
                    flushing.push(run.done.clone());
                }
                // No restart (`restartStrategy`) may start a run on the stopping workers.
                entry.restart = Default::default();
                entry.schedule_state = Default::default();
                self.teardown(entry, "server stopped");
            }
        }
        self.inner.workers.shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        while flushing.iter().any(|d| !*d.borrow()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
