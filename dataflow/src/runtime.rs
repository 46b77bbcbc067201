//! The timely runtime: N worker threads started once, taking rule commands while they run.
//!
//! Every command goes to every worker, in one order (a lock serialises senders), because timely
//! matches dataflows and channels across workers by creation order. Workers park when idle and
//! are unparked after each command, so a command takes effect at once.
//!
//! The workers may be one process's share of a cluster ([`ClusterConfig`]): worker indexes are
//! then global (`process * threads + thread`), and this runtime reaches only its own workers.
//! Every process must be sent the same commands in the same order. For that, a cluster's
//! workers build a timely `Sequencer` as their first dataflow: an item one process puts in
//! ([`Workers::sequence`]) comes out of every process ([`Workers::sequenced`]) in one total
//! order, which the engine's control plane (`engine/cluster.rs`) applies commands in.

mod cluster;
mod connect;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use timely::execute::execute_from;

use crate::render::{self, RuleDataflow};
pub use cluster::{ClusterConfig, Placement};

/// A command for the workers.
pub enum Command {
    /// Build this rule run's dataflow.
    Build(Arc<RuleDataflow>),
    /// Build a shared stream's rule group dataflow (its members come and go by themselves).
    BuildGroup(Arc<crate::render::group::RuleGroup>),
    /// Drop the dataflow of this rule run (or rule group).
    Drop(String),
    /// Build a scan table's dataflow (its upsert source and base arrangement).
    CreateTable(Arc<crate::tables::feed::TableFeed>),
    /// Drop a table's dataflows (its indexes, then its base arrangement).
    DropTable(String),
    /// Put this item in the cluster's sequence (sent to one worker of the process only).
    Sequence(String),
    /// Leave the worker loop.
    Shutdown,
}

/// The running workers.
pub struct Workers {
    /// Per worker, why it stopped if a panic escaped every operator's guard.
    dead: Arc<Mutex<Vec<Option<String>>>>,
    senders: Mutex<Vec<Sender<Command>>>,
    threads: Arc<Mutex<Vec<Option<Thread>>>>,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
    /// Timely's worker indexes of this process's workers; the queues above are by position in
    /// it.
    local: Range<usize>,
    /// Workers over all processes.
    peers: usize,
    /// In a cluster: what comes out of the sequence, in its order (taken once, by the engine).
    sequenced: Mutex<Option<Receiver<String>>>,
    /// In a cluster: this process's index and the number of processes.
    cluster: Option<(usize, usize)>,
}

impl Workers {
    /// Starts `n` worker threads, all in this process.
    pub fn start(n: usize) -> Result<Workers, String> {
        Workers::start_on(Placement::Process(n.max(1)))
    }

    /// Starts this process's workers of a cluster. Returns once every process of the cluster
    /// is connected (the processes not listening yet are retried).
    pub fn start_cluster(cluster: ClusterConfig) -> Result<Workers, String> {
        cluster.validate()?;
        Workers::start_on(Placement::Cluster(cluster))
    }

    /// Starts the workers `placement` puts in this process.
    fn start_on(placement: Placement) -> Result<Workers, String> {
        let (local, peers) = (placement.local(), placement.peers());
        let cluster = match &placement {
            Placement::Process(_) => None,
            Placement::Cluster(c) => Some((c.process, c.addresses.len())),
        };
        let first = local.start;
        // The sequence's output leaves the process through its first worker only, so the
        // engine sees each item once.
        let (sequenced_tx, sequenced_rx) = channel::<String>();
        let sequenced_tx = Mutex::new(Some(sequenced_tx));
        let sequence_clock = sequence_clock();
        let n = local.len();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| channel::<Command>()).unzip();
        let receivers: Arc<Mutex<Vec<Option<Receiver<Command>>>>> =
            Arc::new(Mutex::new(receivers.into_iter().map(Some).collect()));
        let threads: Arc<Mutex<Vec<Option<Thread>>>> = Arc::new(Mutex::new(vec![None; n]));
        let worker_threads = threads.clone();
        let dead: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; n]));
        let worker_dead = dead.clone();
        let (allocators, network) = placement.allocators()?;
        let config = timely::WorkerConfig::default();
        let guards = execute_from(allocators, network, config, move |worker| {
            let index = worker.index();
            // This worker's position among the process's own workers.
            let slot = index - first;
            let rx = receivers.lock().expect("receivers lock")[slot]
                .take()
                .expect("each worker takes its own command queue once");
            worker_threads.lock().expect("threads lock")[slot] = Some(std::thread::current());
            // Before any other dataflow: timely matches dataflows by creation order, and every
            // worker of every process builds this one first.
            let mut sequencer = cluster
                .map(|_| timely::synchronization::Sequencer::<String>::new(worker, sequence_clock));
            let sequenced_out = if slot == 0 {
                sequenced_tx.lock().expect("sequence lock").take()
            } else {
                None
            };
            // Each rule run's dataflow and the table indexes (table, id) it reads.
            let mut dataflows: HashMap<String, (usize, Vec<(String, String)>)> = HashMap::new();
            loop {
                while let Ok(cmd) = rx.try_recv() {
                    match cmd {
                        Command::Build(rule) => {
                            // The table indexes the rule reads come first, so they are
                            // scheduled (and filled) before the rule's own operators.
                            for index in &rule.tables.indexes {
                                crate::tables::arrangement::build_index(worker, index);
                            }
                            let id = worker.next_dataflow_index();
                            worker.dataflow::<u64, _, _>(|scope| render::build(scope, &rule));
                            if let Some(c) = &rule.checkpoint {
                                c.built();
                            }
                            let indexes = rule
                                .tables
                                .indexes
                                .iter()
                                .map(|i| (i.feed.name.clone(), i.id()))
                                .collect();
                            dataflows.insert(rule.key.clone(), (id, indexes));
                        }
                        Command::BuildGroup(group) => {
                            let id = worker.next_dataflow_index();
                            worker.dataflow::<u64, _, _>(|scope| {
                                crate::render::group::build(scope, &group)
                            });
                            dataflows.insert(group.key.clone(), (id, Vec::new()));
                        }
                        Command::Drop(key) => {
                            if let Some((id, indexes)) = dataflows.remove(&key) {
                                if worker.installed_dataflows().contains(&id) {
                                    worker.drop_dataflow(id);
                                }
                                // After the rule's own dataflow, whose joins read them.
                                for (table, index) in indexes {
                                    crate::tables::arrangement::release_index(
                                        worker, &table, &index,
                                    );
                                }
                            }
                        }
                        Command::CreateTable(feed) => {
                            crate::tables::arrangement::build_table(worker, &feed);
                        }
                        Command::DropTable(name) => {
                            crate::tables::arrangement::drop_table(worker, &name)
                        }
                        Command::Sequence(item) => {
                            if let Some(s) = sequencer.as_mut() {
                                s.push(item);
                            }
                        }
                        Command::Shutdown => {
                            drop(sequencer.take());
                            crate::tables::arrangement::drop_all(worker);
                            // timely waits for installed dataflows to complete after this
                            // closure returns; running rules never complete, so drop them.
                            for id in worker.installed_dataflows() {
                                worker.drop_dataflow(id);
                            }
                            return;
                        }
                    }
                }
                // Operators contain their own panics (`crate::fault`); one that escapes leaves
                // this worker's dataflows in an unknown state, so the worker stops, and says so:
                // every rule's status reports it from then on.
                let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker.step_or_park(Some(Duration::from_millis(100)))
                }));
                if let Some(s) = sequencer.as_mut() {
                    for item in s.by_ref() {
                        if let Some(out) = &sequenced_out {
                            // The engine may be gone while the workers stop.
                            let _ = out.send(item);
                        }
                    }
                }
                if let Err(panic) = step {
                    let reason = crate::fault::panic_message(&panic);
                    tracing::error!("timely worker {index} stopped after a panic: {reason}");
                    worker_dead.lock().expect("dead lock")[slot] =
                        Some(format!("worker {index} stopped after a panic: {reason}"));
                    return;
                }
            }
        })?;
        // Wait until every worker registered its thread, so unpark reaches all of them.
        while threads
            .lock()
            .expect("threads lock")
            .iter()
            .any(Option::is_none)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Workers {
            dead,
            senders: Mutex::new(senders),
            threads,
            guards: Mutex::new(Some(guards)),
            local,
            peers,
            sequenced: Mutex::new(cluster.map(|_| sequenced_rx)),
            cluster,
        })
    }

    /// In a cluster, this process's index and the number of processes.
    pub fn cluster(&self) -> Option<(usize, usize)> {
        self.cluster
    }

    /// Puts `item` in the cluster's sequence: every process gets it from [`Workers::sequenced`],
    /// in the same order relative to every other item. Ignored outside a cluster.
    pub fn sequence(&self, item: String) {
        if self.cluster.is_none() {
            return;
        }
        let senders = self.senders.lock().expect("senders lock");
        if let Some(tx) = senders.first() {
            let _ = tx.send(Command::Sequence(item));
        }
        drop(senders);
        self.unpark_all();
    }

    /// The items of the cluster's sequence as they come out, in order; `None` outside a
    /// cluster or once taken.
    pub fn sequenced(&self) -> Option<Receiver<String>> {
        self.sequenced.lock().expect("sequenced lock").take()
    }

    /// Why a worker stopped, if one did (a panic that escaped the operators' guards).
    pub fn dead(&self) -> Option<String> {
        self.dead
            .lock()
            .expect("dead lock")
            .iter()
            .flatten()
            .next()
            .cloned()
    }

    /// Number of workers over all processes: timely's worker indexes are `0..count()`, and
    /// per-worker slots of a dataflow (ingest queues, activators) are indexed by them.
    pub fn count(&self) -> usize {
        self.peers
    }

    /// The worker indexes of this process: the only workers its commands and queues reach.
    pub fn local(&self) -> Range<usize> {
        self.local.clone()
    }

    /// Sends a command to every worker, in the same order for all, and wakes them.
    pub fn broadcast(&self, make: impl Fn() -> Command) {
        let senders = self.senders.lock().expect("senders lock");
        for tx in senders.iter() {
            // A worker that has shut down ignores commands.
            let _ = tx.send(make());
        }
        self.unpark_all();
    }

    /// Wakes every worker.
    pub fn unpark_all(&self) {
        for t in self.threads.lock().expect("threads lock").iter().flatten() {
            t.unpark();
        }
    }

    /// Stops the workers and waits for them. In a cluster that wait includes timely's network
    /// threads, which end once every other process has stopped its workers too.
    pub fn shutdown(&self) {
        self.broadcast(|| Command::Shutdown);
        let guards = self
            .guards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(guards) = guards {
            // Timely's network threads panic when another process is lost, and joining them
            // re-raises it: the workers are stopped all the same.
            let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(guards.join());
            }));
            if let Err(panic) = joined {
                let reason = crate::fault::panic_message(&panic);
                tracing::warn!("timely's threads ended with a panic: {reason}");
            }
        }
    }
}

/// The sequencers' clock: the Unix epoch as an `Instant`. A sequencer stamps items with the
/// time since it and releases one only once every worker's clock has passed its stamp, so
/// clocks started at each process's own start would hold every command back by the time
/// between the processes' starts; the wall clock holds it back by the machines' skew only.
fn sequence_clock() -> std::time::Instant {
    let now = std::time::Instant::now();
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| now.checked_sub(since))
        .unwrap_or(now)
}

impl Drop for Workers {
    /// Dropping the runtime stops the workers instead of waiting forever for them to exit.
    fn drop(&mut self) {
        self.shutdown();
    }
}
