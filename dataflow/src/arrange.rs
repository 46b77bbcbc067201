//! Scan tables as differential-dataflow arrangements, shared by the rules that join them.
//!
//! - The table's feeder task (one per table) turns decoded rows into upserts keyed by row
//!   identity: the text of the `KEY` value, or an arrival number for a table without `KEY`
//!   (its rows past `RETAIN_SIZE` are upserted away, oldest first).
//! - Every worker runs the table's dataflow. Worker 0 reads the upserts, one timestamp per
//!   batch; `arrange_from_upsert` exchanges them by row identity and keeps the current row of
//!   each identity. That base arrangement's trace stays in the worker's registry for as long
//!   as the table exists.
//! - An index is the table's rows arranged by one join key, in one placement: partitioned
//!   (each worker holds the keys that hash to it, and stream rows are exchanged the same way)
//!   or replicated (every worker holds every row, for joins that run wherever the rule's rows
//!   are). It lives in a dataflow of its own that imports the base trace, is built by the first
//!   rule that needs it, and is shared by every later rule joining on the same key. A
//!   partitioned join on the table's `KEY` reads the base arrangement itself.
//! - A rule's join operator holds a handle on its index's trace and, for each stream batch,
//!   reads the rows of the batch's keys from a cursor. The stream drives: a table update is
//!   seen by the stream rows processed after it and never re-emits a past result (eKuiper's
//!   semantics; differential's own `join` would retract and re-emit past results).
//!
//! Rows are kept as (arrival number, JSON object text): ordered by arrival, compact, and
//! decoded back with the table's decoder when a join needs their columns.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use differential_dataflow::Hashable;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::arrange::arrangement::{Arranged, arrange_core};
use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::{ValBatcher, ValBuilder, ValSpine};
use quiver_compiler::eval::EvalContext;
use quiver_compiler::expr::Expr;
use quiver_connectors::RawMessage;
use quiver_connectors::codec::json::JsonDecoder;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::progress::Antichain;
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

/// A row's key in an arrangement: the key's text as [`crate::table::keys_of`] makes it.
pub type RowKey = Vec<u8>;
/// A table row: its arrival number and its JSON object text.
pub type Row = (u64, String);
type Spine = ValSpine<RowKey, Row, u64, isize>;
/// A worker's handle on a table arrangement.
pub type TableTrace = TraceAgent<Spine>;
/// One batch of upserts from the feeder, with the number of source rows it stands for.
type UpsertBatch = (Vec<(RowKey, Option<Row>)>, u64);

impl std::fmt::Debug for TableFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableFeed")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Upserts a feeder may queue for worker 0 before it waits.
const QUEUE: usize = 16;
/// Upsert batches worker 0 takes per activation before letting other operators run.
const BATCHES_PER_ACTIVATION: usize = 16;
/// The id of a table's base arrangement (by row identity).
const BASE: &str = "base";

/// How an index's rows are spread over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Each worker holds the keys that hash to it; stream rows are exchanged by the same hash.
    Partitioned,
    /// Every worker holds every row.
    Replicated,
}

/// The worker a partitioned arrangement keeps `key` on, among `peers` (timely's exchange
/// rule applied to differential's hash, so stream rows go where the table rows went).
pub fn owner(key: &RowKey, peers: usize) -> usize {
    (key.hashed() % peers.max(1) as u64) as usize
}

/// One index of a table: the rows arranged by `keys` (over the table's columns).
#[derive(Clone)]
pub struct IndexSpec {
    /// The table.
    pub feed: Arc<TableFeed>,
    /// The join key, evaluated on the table's rows.
    pub keys: Vec<Expr>,
    /// Where its rows live.
    pub placement: Placement,
    /// How many times an index of this key and placement was dropped (with its last rule)
    /// before: a rebuilt index has an id of its own (`Partitioned(room)#1`).
    pub generation: u64,
}

impl IndexSpec {
    /// An index of `feed` by `keys` in `placement` (its generation is set by
    /// [`TableFeed::acquire`]).
    pub fn new(feed: Arc<TableFeed>, keys: Vec<Expr>, placement: Placement) -> Self {
        IndexSpec {
            feed,
            keys,
            placement,
            generation: 0,
        }
    }

    /// The key and placement, without the generation.
    fn shape(&self) -> String {
        let on_key = matches!(self.keys.as_slice(), [Expr::Column { name, .. }]
            if Some(name) == self.feed.key.as_ref());
        if on_key && self.placement == Placement::Partitioned {
            return BASE.to_string();
        }
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        format!("{:?}({})", self.placement, keys.join(", "))
    }

    /// The arrangement this index reads: the base one for a partitioned join on the `KEY`.
    pub fn id(&self) -> String {
        match (self.shape(), self.generation) {
            (shape, 0) => shape,
            (shape, _) if shape == BASE => shape,
            (shape, g) => format!("{shape}#{g}"),
        }
    }
}

/// A scan table as the engine and the workers share it: the queue of upserts from its feeder,
/// its decoder, and how far each of its arrangements has got on each worker.
pub struct TableFeed {
    /// The table's name.
    pub name: String,
    /// The `KEY` column, if any.
    pub key: Option<String>,
    /// Decodes row texts back into the table's columns.
    pub decoder: JsonDecoder,
    workers: usize,
    queue: Mutex<Option<mpsc::Receiver<UpsertBatch>>>,
    activator: Mutex<Option<SyncActivator>>,
    /// Worker 0's next upsert time.
    clock: AtomicU64,
    /// Upsert batches emitted and not yet in every arrangement: (time, source rows).
    pending: Mutex<VecDeque<(u64, u64)>>,
    /// Source rows in every arrangement on every worker.
    visible: AtomicU64,
    /// The arrangements rules read, by id.
    arrangements: Mutex<HashSet<String>>,
    /// Per index shape (key and placement): the rules reading it and its generation.
    users: Mutex<HashMap<String, (usize, u64)>>,
    /// Each arrangement's frontier on each worker (`u64::MAX` once it is complete).
    frontiers: Mutex<HashMap<(String, usize), u64>>,
    /// Rows in the base arrangement, over all workers.
    live: AtomicI64,
    /// True once the table's source has ended and worker 0 has taken every upsert.
    ended: AtomicBool,
}

impl TableFeed {
    /// A table on `workers` workers, with the sender its feeder writes upserts to.
    pub fn new(
        name: &str,
        key: Option<String>,
        retain: Option<usize>,
        decoder: JsonDecoder,
        workers: usize,
    ) -> (Arc<TableFeed>, Upserts) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let feed = Arc::new(TableFeed {
            name: name.to_string(),
            key: key.clone(),
            decoder,
            workers: workers.max(1),
            queue: Mutex::new(Some(rx)),
            activator: Mutex::new(None),
            clock: AtomicU64::new(0),
            pending: Mutex::new(VecDeque::new()),
            visible: AtomicU64::new(0),
            arrangements: Mutex::new(HashSet::from([BASE.to_string()])),
            users: Mutex::new(HashMap::new()),
            frontiers: Mutex::new(HashMap::new()),
            live: AtomicI64::new(0),
            ended: AtomicBool::new(false),
        });
        let upserts = Upserts {
            feed: feed.clone(),
            tx: Some(tx),
            key,
            retain,
            seq: 0,
            order: VecDeque::new(),
        };
        (feed, upserts)
    }

    /// The earliest frontier over every arrangement rules read, on every worker.
    fn frontier(&self) -> u64 {
        let ids = self.arrangements.lock().expect("arrangements lock");
        let frontiers = self.frontiers.lock().expect("frontiers lock");
        ids.iter()
            .flat_map(|id| (0..self.workers).map(move |w| (id.clone(), w)))
            .map(|k| frontiers.get(&k).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Source rows every arrangement holds on every worker, upserts and skipped rows included:
    /// a row counted here is seen by every stream row joined after.
    pub fn applied(&self) -> u64 {
        let frontier = self.frontier();
        let mut pending = self.pending.lock().expect("pending lock");
        while let Some(&(t, rows)) = pending.front() {
            if t >= frontier {
                break;
            }
            self.visible.fetch_add(rows, Ordering::AcqRel);
            pending.pop_front();
        }
        self.visible.load(Ordering::Acquire)
    }

    /// Rows the table holds now.
    pub fn rows(&self) -> usize {
        self.live.load(Ordering::Acquire).max(0) as usize
    }

    /// True once the source has ended and every row it read is in every arrangement.
    pub fn loaded(&self) -> bool {
        let ended = self.ended.load(Ordering::Acquire);
        self.applied();
        ended && self.pending.lock().expect("pending lock").is_empty()
    }

    /// Registers a rule reading `spec` (setting its generation), so [`TableFeed::applied`]
    /// waits for that arrangement.
    pub fn acquire(&self, spec: &mut IndexSpec) {
        let mut users = self.users.lock().expect("users lock");
        let (count, generation) = users.entry(spec.shape()).or_default();
        *count += 1;
        spec.generation = *generation;
        self.arrangements
            .lock()
            .expect("arrangements lock")
            .insert(spec.id());
    }

    /// A rule reading `spec` stopped. The last one takes the index out of what
    /// [`TableFeed::applied`] waits for (the workers drop it); the next one gets a new one.
    pub fn release(&self, spec: &IndexSpec) {
        let id = spec.id();
        if id == BASE {
            return;
        }
        let mut users = self.users.lock().expect("users lock");
        let Some((count, generation)) = users.get_mut(&spec.shape()) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            *generation += 1;
            self.arrangements
                .lock()
                .expect("arrangements lock")
                .remove(&id);
            self.frontiers
                .lock()
                .expect("frontiers lock")
                .retain(|(a, _), _| a != &id);
        }
    }

    /// The ids of the arrangements rules read, sorted.
    pub fn arrangements(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .arrangements
            .lock()
            .expect("arrangements lock")
            .iter()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Waits (up to `timeout`) until the arrangement `id` holds, on every worker, what the base
    /// held when called: a new index is filled from the base before the rule that asked for it
    /// reads it.
    pub fn wait_current(&self, id: &str, timeout: Duration) -> bool {
        let target = self.clock.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        let reached = || {
            let frontiers = self.frontiers.lock().expect("frontiers lock");
            (0..self.workers).all(|w| {
                frontiers
                    .get(&(id.to_string(), w))
                    .is_some_and(|f| *f >= target)
            })
        };
        let wait = || {
            while !reached() {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            true
        };
        // Called from REST handlers: let the runtime move its other tasks off this thread.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    fn record_frontier(&self, id: &str, worker: usize, frontier: u64) {
        // A dropped index may report once more before its dataflow goes: not kept.
        if !self
            .arrangements
            .lock()
            .expect("arrangements lock")
            .contains(id)
        {
            return;
        }
        self.frontiers
            .lock()
            .expect("frontiers lock")
            .insert((id.to_string(), worker), frontier);
    }
}

impl Drop for Upserts {
    /// Closes the queue, then wakes worker 0 to see it closed: its source marks the table
    /// loaded only then, and nothing else would schedule it once the queue has gone quiet.
    fn drop(&mut self) {
        drop(self.tx.take());
        self.wake();
    }
}

/// The feeder's side of a table: turns decoded rows into upserts and queues them for worker 0.
pub struct Upserts {
    feed: Arc<TableFeed>,
    /// `None` only while dropping: the queue closes before worker 0 is woken to see it closed.
    tx: Option<mpsc::Sender<UpsertBatch>>,
    key: Option<String>,
    retain: Option<usize>,
    /// Arrival numbers handed out so far.
    seq: u64,
    /// Without `KEY`: the arrival numbers of the rows held, oldest first.
    order: VecDeque<u64>,
}

impl Upserts {
    /// Queues the rows of `batch` (waiting while worker 0 is behind); returns how many rows
    /// were skipped for lacking a `KEY` value, or `None` once the table is gone.
    pub async fn send(&mut self, batch: &RecordBatch) -> Option<usize> {
        let (updates, skipped) = self.upserts(batch);
        self.tx
            .as_ref()?
            .send((updates, batch.num_rows() as u64))
            .await
            .ok()?;
        self.wake();
        Some(skipped)
    }

    /// Schedules worker 0's table source, which reads the queue only when woken.
    fn wake(&self) {
        // Poison-tolerant: this also runs in `drop`, where a second panic would abort.
        let activator = self
            .feed
            .activator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(a) = activator.as_ref() {
            // A worker that has shut down has no one to wake.
            let _ = a.activate();
        }
    }

    fn upserts(&mut self, batch: &RecordBatch) -> (Vec<(RowKey, Option<Row>)>, usize) {
        let rows: Vec<Row> = quiver_connectors::codec::encode::batch_to_json_objects(batch, true)
            .into_iter()
            .map(|r| {
                self.seq += 1;
                (
                    self.seq,
                    String::from_utf8(r).expect("the encoder writes UTF-8"),
                )
            })
            .collect();
        let Some(key) = &self.key else {
            let mut updates = Vec::with_capacity(rows.len());
            for row in rows {
                self.order.push_back(row.0);
                updates.push((row.0.to_be_bytes().to_vec(), Some(row)));
            }
            if let Some(n) = self.retain {
                while self.order.len() > n {
                    let old = self.order.pop_front().expect("longer than the limit");
                    updates.push((old.to_be_bytes().to_vec(), None));
                }
            }
            // An evicted row of this batch is upserted and removed at the same time: keep
            // only its removal.
            let removed: HashSet<RowKey> = updates
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            updates.retain(|(k, v)| v.is_none() || !removed.contains(k));
            return (updates, 0);
        };
        let Some(col) = quiver_compiler::eval::column_by_name(batch, key).cloned() else {
            return (Vec::new(), rows.len());
        };
        let keys = crate::table::keys_of(&[col], batch.num_rows());
        // The last row of a key in a batch wins, as if applied one by one (upserts at one
        // time would otherwise keep the greatest value).
        let mut last: HashMap<RowKey, Row> = HashMap::new();
        let mut order: Vec<RowKey> = Vec::new();
        let mut skipped = 0;
        for (k, row) in keys.into_iter().zip(rows) {
            match k {
                Some(k) => {
                    let k = k.into_bytes();
                    if last.insert(k.clone(), row).is_none() {
                        order.push(k);
                    }
                }
                None => skipped += 1,
            }
        }
        let updates = order
            .into_iter()
            .map(|k| {
                let row = last.remove(&k);
                (k, row)
            })
            .collect();
        (updates, skipped)
    }
}

/// A table's arrangements on one worker.
struct WorkerTable {
    feed: Arc<TableFeed>,
    base: TableTrace,
    /// The dataflow holding the base arrangement.
    dataflow: usize,
    indexes: HashMap<String, WorkerIndex>,
    /// What this worker's joins have read from the table.
    views: Views,
}

/// An index on one worker: its trace, its dataflow, and the rules reading it there.
struct WorkerIndex {
    trace: TableTrace,
    dataflow: usize,
    uses: usize,
}

/// What the joins of one worker have read from a table, shared by every rule there: each row
/// version decoded once, and each arrangement's rows by key while the table is unchanged.
#[derive(Default)]
struct Views {
    rows: RowCache,
    /// By arrangement id.
    memos: HashMap<String, Memo>,
}

/// The arrival numbers of each key's rows read from one arrangement, valid while its upper
/// stays `upper`: a table that has not changed is not read again.
#[derive(Default)]
struct Memo {
    upper: Option<Option<u64>>,
    keys: HashMap<String, Vec<u64>>,
}

thread_local! {
    /// The tables' arrangements on this worker (each timely worker is a thread of its own).
    static TABLES: RefCell<HashMap<String, WorkerTable>> = RefCell::new(HashMap::new());
}

/// Builds the table's dataflow on this worker: its upsert source and base arrangement.
pub fn build_table(worker: &mut timely::worker::Worker, feed: &Arc<TableFeed>) {
    let index = worker.index();
    let id = worker.next_dataflow_index();
    let trace = worker.dataflow::<u64, _, _>(|scope| {
        let mut queue = if index == 0 {
            feed.queue.lock().expect("queue lock").take()
        } else {
            None
        };
        let reader = feed.clone();
        let upserts = source::<_, CapacityContainerBuilder<Vec<(RowKey, Option<Row>, u64)>>, _, _>(
            scope,
            "TableSource",
            move |cap, info| {
                // Only worker 0 reads upserts; the others hold no time back.
                let mut cap = queue.as_ref().map(|_| cap);
                if queue.is_some() {
                    *reader.activator.lock().expect("activator lock") =
                        Some(scope.worker().sync_activator_for(info.address.to_vec()));
                }
                let again = scope.activator_for(info.address.clone());
                move |output| {
                    let Some(q) = queue.as_mut() else {
                        cap = None;
                        return;
                    };
                    for _ in 0..BATCHES_PER_ACTIVATION {
                        match q.try_recv() {
                            Ok((updates, rows)) => {
                                let c = cap.as_mut().expect("held while the queue is open");
                                let t = *c.time();
                                let mut session = output.session(&*c);
                                for (k, v) in updates {
                                    session.give((k, v, t));
                                }
                                drop(session);
                                reader
                                    .pending
                                    .lock()
                                    .expect("pending lock")
                                    .push_back((t, rows));
                                c.downgrade(&(t + 1));
                                reader.clock.store(t + 1, Ordering::Release);
                            }
                            Err(mpsc::error::TryRecvError::Empty) => return,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                reader.ended.store(true, Ordering::Release);
                                queue = None;
                                cap = None;
                                return;
                            }
                        }
                    }
                    again.activate();
                }
            },
        );
        let base = arrange_from_upsert::<ValBuilder<RowKey, Row, u64, isize>, Spine, RowKey, Row>(
            upserts, "Table",
        );
        watch(&base, feed, BASE, index, true);
        base.trace
    });
    TABLES.with(|t| {
        t.borrow_mut().insert(
            feed.name.clone(),
            WorkerTable {
                feed: feed.clone(),
                base: trace,
                dataflow: id,
                indexes: HashMap::new(),
                views: Views::default(),
            },
        )
    });
}

/// Records how far an arrangement has got on this worker (and, for the base, how many rows it
/// holds), and lets the registry's handle on it compact up to there.
fn watch(
    arranged: &Arranged<'_, TableTrace>,
    feed: &Arc<TableFeed>,
    id: &str,
    worker: usize,
    count: bool,
) {
    let feed = feed.clone();
    let id = id.to_string();
    let name = feed.name.clone();
    arranged.clone().as_collection(|_, _| ()).inner.sink(
        Pipeline,
        "TableProgress",
        move |(input, frontier)| {
            input.for_each(|_, data| {
                if count {
                    let n: isize = data.iter().map(|(_, _, d)| *d).sum();
                    feed.live.fetch_add(n as i64, Ordering::AcqRel);
                }
            });
            let at = frontier.frontier().first().copied().unwrap_or(u64::MAX);
            feed.record_frontier(&id, worker, at);
            let upto = Antichain::from_elem(at);
            TABLES.with(|t| {
                // By the feed, not the name: a table dropped and created again under the same
                // name is another table.
                if let Ok(mut tables) = t.try_borrow_mut()
                    && let Some(table) = tables.get_mut(&name)
                    && Arc::ptr_eq(&table.feed, &feed)
                {
                    let trace = if id == BASE {
                        Some(&mut table.base)
                    } else {
                        table.indexes.get_mut(&id).map(|i| &mut i.trace)
                    };
                    if let Some(trace) = trace {
                        trace.set_logical_compaction(upto.borrow());
                        trace.set_physical_compaction(upto.borrow());
                    }
                }
            });
        },
    );
}

/// Builds the index `spec` on this worker for one more rule, unless it exists (every worker
/// builds the same ones in the same order, as the commands reach them in one order).
pub fn build_index(worker: &mut timely::worker::Worker, spec: &IndexSpec) {
    let id = spec.id();
    let name = spec.feed.name.clone();
    let exists = TABLES.with(|t| match t.borrow_mut().get_mut(&name) {
        None => true,
        Some(_) if id == BASE => true,
        Some(table) => table.indexes.get_mut(&id).map(|i| i.uses += 1).is_some(),
    });
    if exists {
        return;
    }
    let index = worker.index();
    let dataflow = worker.next_dataflow_index();
    let trace = worker.dataflow::<u64, _, _>(|scope| {
        let base = TABLES.with(|t| {
            t.borrow_mut()
                .get_mut(&name)
                .expect("checked above")
                .base
                .import(scope)
        });
        let decoder = spec.feed.decoder.clone();
        let keys = spec.keys.clone();
        let keyed = base
            .as_collection(|_, row: &Row| row.clone())
            .inner
            .unary::<CapacityContainerBuilder<Vec<((RowKey, Row), u64, isize)>>, _, _, _>(
                Pipeline,
                "TableKeys",
                move |_, _| {
                    move |input, output| {
                        input.for_each(|time, data| {
                            let updates = std::mem::take(data);
                            let texts: Vec<&str> =
                                updates.iter().map(|((_, t), _, _)| t.as_str()).collect();
                            let row_keys = key_texts(&decoder, &keys, &texts);
                            let mut session = output.session(&time);
                            for ((row, t, d), k) in updates.into_iter().zip(row_keys) {
                                // A row without a key value never matches: it is left out.
                                if let Some(k) = k {
                                    session.give(((k.into_bytes(), row), t, d));
                                }
                            }
                        });
                    }
                },
            );
        let arranged = match spec.placement {
            Placement::Partitioned => arrange_core::<_, _, _, Spine>(
                keyed,
                Exchange::new(|u: &((RowKey, Row), u64, isize)| (u.0).0.hashed()),
                "TableIndex",
                ValBatcher::<RowKey, Row, u64, isize>::new,
            ),
            Placement::Replicated => arrange_core::<_, _, _, Spine>(
                keyed.broadcast(),
                Pipeline,
                "TableIndex",
                ValBatcher::<RowKey, Row, u64, isize>::new,
            ),
        };
        watch(&arranged, &spec.feed, &id, index, false);
        arranged.trace
    });
    TABLES.with(|t| {
        if let Some(table) = t.borrow_mut().get_mut(&name) {
            table.indexes.insert(
                id,
                WorkerIndex {
                    trace,
                    dataflow,
                    uses: 1,
                },
            );
        }
    });
}

/// A rule that read the index `id` of `table` on this worker is gone: the last one drops it.
pub fn release_index(worker: &mut timely::worker::Worker, table: &str, id: &str) {
    let dropped = TABLES.with(|t| {
        let mut tables = t.borrow_mut();
        let table = tables.get_mut(table)?;
        let index = table.indexes.get_mut(id)?;
        index.uses = index.uses.saturating_sub(1);
        if index.uses > 0 {
            return None;
        }
        table.views.memos.remove(id);
        table.indexes.remove(id)
    });
    if let Some(index) = dropped {
        let dataflow = index.dataflow;
        drop(index);
        if worker.installed_dataflows().contains(&dataflow) {
            worker.drop_dataflow(dataflow);
        }
    }
}

/// Drops the table's dataflows on this worker, its indexes first.
pub fn drop_table(worker: &mut timely::worker::Worker, name: &str) {
    let Some(table) = TABLES.with(|t| t.borrow_mut().remove(name)) else {
        return;
    };
    let mut dataflows: Vec<usize> = table.indexes.values().map(|i| i.dataflow).collect();
    dataflows.push(table.dataflow);
    drop(table);
    for id in dataflows {
        if worker.installed_dataflows().contains(&id) {
            worker.drop_dataflow(id);
        }
    }
}

/// Drops every table's dataflows on this worker (at shutdown).
pub fn drop_all(worker: &mut timely::worker::Worker) {
    let names: Vec<String> = TABLES.with(|t| t.borrow().keys().cloned().collect());
    for name in names {
        drop_table(worker, &name);
    }
}

/// This worker's handle on the arrangement `spec` reads. It holds no compaction back: a join
/// reads the current contents (summing over all times), and the registry's own handle keeps
/// the trace open to readers. A handle that stayed at its first frontier would stop the trace
/// from merging on a worker whose join never gets a row.
pub fn trace(spec: &IndexSpec) -> Option<TableTrace> {
    let id = spec.id();
    let mut handle = TABLES.with(|t| {
        let tables = t.borrow();
        let table = tables.get(&spec.feed.name)?;
        if id == BASE {
            Some(table.base.clone())
        } else {
            table.indexes.get(&id).map(|i| i.trace.clone())
        }
    })?;
    let done = Antichain::new();
    handle.set_logical_compaction(done.borrow());
    handle.set_physical_compaction(done.borrow());
    Some(handle)
}

/// Calls `found(i, row)` for each row of `keys[i]` in the arrangement as it is now, in arrival
/// order. `keys` must be sorted and distinct: the cursor only moves forward.
pub fn read(trace: &mut TableTrace, keys: &[RowKey], mut found: impl FnMut(usize, &Row)) {
    let batches = trace
        .batches_through(Antichain::new().borrow())
        .unwrap_or_default();
    let (mut cursor, storage) = cursor_list(batches);
    for (i, key) in keys.iter().enumerate() {
        cursor.seek_key(&storage, key);
        if cursor.get_key(&storage) != Some(key) {
            continue;
        }
        while let Some(row) = cursor.get_val(&storage) {
            let mut count = 0isize;
            cursor.map_times(&storage, |_, d| count += *d);
            for _ in 0..count.max(0) {
                found(i, row);
            }
            cursor.step_val(&storage);
        }
    }
}

/// The time up to which the arrangement is complete (`None` once it is closed): a handle that
/// saw the same upper before sees the same contents now.
pub fn upper(trace: &mut TableTrace) -> Option<u64> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    upper.first().copied()
}

/// Table rows one worker's joins have decoded, by arrival number, for a table with a schema
/// (so every decoded chunk has the same columns). A row version never changes (an update is a
/// new row with a new number), so entries never go stale.
#[derive(Default)]
struct RowCache {
    chunks: Vec<RecordBatch>,
    at: HashMap<u64, (usize, usize)>,
}

impl RowCache {
    /// True when the row with this arrival number is decoded already.
    pub fn contains(&self, seq: u64) -> bool {
        self.at.contains_key(&seq)
    }

    /// Rows held.
    fn len(&self) -> usize {
        self.at.len()
    }

    /// Decodes `rows` (not held yet) as one more chunk.
    pub fn add(&mut self, decoder: &JsonDecoder, rows: &[(u64, &str)]) -> Result<(), String> {
        let texts: Vec<&str> = rows.iter().map(|(_, t)| *t).collect();
        let Some(chunk) = decode(decoder, &texts)? else {
            return Ok(());
        };
        if let Some(first) = self.chunks.first()
            && first.schema() != chunk.schema()
        {
            return Err("table rows decoded with different columns".into());
        }
        let c = self.chunks.len();
        for (r, (seq, _)) in rows.iter().enumerate() {
            self.at.insert(*seq, (c, r));
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// The held rows `seqs`, in order, as one batch.
    pub fn take(&self, seqs: &[u64]) -> Result<Option<RecordBatch>, String> {
        let Some(first) = self.chunks.first().filter(|_| !seqs.is_empty()) else {
            return Ok(None);
        };
        let indices: Vec<(usize, usize)> = seqs
            .iter()
            .map(|seq| {
                self.at
                    .get(seq)
                    .copied()
                    .ok_or("a table row is not decoded")
            })
            .collect::<Result<_, _>>()?;
        let columns = (0..first.num_columns())
            .map(|col| {
                let arrays: Vec<&dyn arrow::array::Array> =
                    self.chunks.iter().map(|b| b.column(col).as_ref()).collect();
                arrow::compute::interleave(&arrays, &indices)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        RecordBatch::try_new(first.schema(), columns)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// Rows as one batch, with the positions of each key's rows in it.
pub type KeyedRows = (Option<RecordBatch>, HashMap<String, Vec<u32>>);

/// The rows of `wanted` (sorted, distinct key texts) in the arrangement `id` of `table`, read
/// through `trace` (this worker's handle on it): one batch, decoded with `decoder`, and each
/// key's rows in it. Rows and keys read before by any join on this worker are not read or
/// decoded again; what is kept is bounded by twice the table's `held` rows.
pub fn lookup(
    table: &str,
    id: &str,
    trace: &mut TableTrace,
    decoder: &JsonDecoder,
    held: usize,
    wanted: &[&String],
) -> Result<KeyedRows, String> {
    TABLES.with(|t| {
        let mut tables = t.borrow_mut();
        let views = &mut tables
            .get_mut(table)
            .ok_or_else(|| format!("table \"{table}\" is not arranged on this worker"))?
            .views;
        if views.rows.len() > 2 * held + 4096 {
            *views = Views::default();
        }
        let memo = views.memos.entry(id.to_string()).or_default();
        let upper = upper(trace);
        if memo.upper != Some(upper) {
            memo.keys.clear();
            memo.upper = Some(upper);
        }
        let unread: Vec<RowKey> = wanted
            .iter()
            .filter(|k| !memo.keys.contains_key(k.as_str()))
            .map(|k| k.as_bytes().to_vec())
            .collect();
        if !unread.is_empty() {
            // Row texts are copied out of the trace only for rows not decoded yet.
            let mut seqs: Vec<Vec<u64>> = vec![Vec::new(); unread.len()];
            let mut misses: Vec<(u64, String)> = Vec::new();
            let cache = &views.rows;
            read(trace, &unread, |i, (seq, text)| {
                seqs[i].push(*seq);
                if !cache.contains(*seq) && misses.last().is_none_or(|(s, _)| s != seq) {
                    misses.push((*seq, text.clone()));
                }
            });
            let misses: Vec<(u64, &str)> = misses.iter().map(|(s, t)| (*s, t.as_str())).collect();
            views.rows.add(decoder, &misses)?;
            for (key, seqs) in unread.into_iter().zip(seqs) {
                memo.keys
                    .insert(String::from_utf8(key).unwrap_or_default(), seqs);
            }
        }
        let mut take: Vec<u64> = Vec::new();
        let mut index: HashMap<String, Vec<u32>> = HashMap::with_capacity(wanted.len());
        for key in wanted {
            let seqs = &memo.keys[key.as_str()];
            if seqs.is_empty() {
                continue;
            }
            let at = take.len() as u32;
            take.extend_from_slice(seqs);
            index.insert((*key).clone(), (at..take.len() as u32).collect());
        }
        Ok((views.rows.take(&take)?, index))
    })
}

/// Decodes row texts into the table's columns: one batch whose row `i` is `texts[i]`, or
/// `None` when there is no row.
pub fn decode(decoder: &JsonDecoder, texts: &[&str]) -> Result<Option<RecordBatch>, String> {
    if texts.is_empty() {
        return Ok(None);
    }
    let topic: Arc<str> = Arc::from("");
    let messages: Vec<RawMessage> = texts
        .iter()
        .map(|t| RawMessage::new(t.as_bytes().to_vec(), topic.clone()))
        .collect();
    let decoded = decoder.decode(&messages);
    if decoded.batches.len() == 1 && decoded.rows() == texts.len() {
        return Ok(decoded.batches.into_iter().next());
    }
    // Schemaless rows whose fields change type decode in groups: row by row keeps the order.
    let mut parts = Vec::with_capacity(messages.len());
    for m in &messages {
        let one = decoder.decode(std::slice::from_ref(m));
        match one.batches.into_iter().next() {
            Some(b) if b.num_rows() == 1 => parts.push(b),
            _ => {
                return Err(one
                    .errors
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "a table row no longer decodes".into()));
            }
        }
    }
    Ok(crate::window::concat_results(&parts))
}

/// The key text of each row (`None` where a key value is missing).
fn key_texts(decoder: &JsonDecoder, keys: &[Expr], texts: &[&str]) -> Vec<Option<String>> {
    let batch = match decode(decoder, texts) {
        Ok(Some(b)) => b,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!("table rows left out of an index: {e}");
            return vec![None; texts.len()];
        }
    };
    let rows = batch.num_rows();
    let mut ctx = EvalContext::new(rows);
    let arrays: Result<Vec<ArrayRef>, String> = keys
        .iter()
        .map(|k| k.eval(&batch, &mut ctx).map(|v| v.into_array(rows)))
        .collect();
    match arrays {
        Ok(arrays) => crate::table::keys_of(&arrays, rows),
        Err(e) => {
            tracing::warn!("table rows left out of an index: {e}");
            vec![None; rows]
        }
    }
}
