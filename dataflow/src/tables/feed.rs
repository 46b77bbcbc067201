//! A scan table's feed: upserts from its source, its indexes and their placement.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use differential_dataflow::Hashable;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::ValSpine;
use quiver_compiler::expr::Expr;
use quiver_connectors::codec::json::JsonDecoder;
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

/// A row's key in an arrangement: the key's text as [`crate::keys::keys_of`] makes it.
pub type RowKey = Vec<u8>;
/// A table row: its arrival number and its JSON object text.
pub type Row = (u64, String);
pub(crate) type Spine = ValSpine<RowKey, Row, u64, isize>;
/// A worker's handle on a table arrangement.
pub type TableTrace = TraceAgent<Spine>;
/// One batch of upserts from the feeder, with the number of source rows it stands for.
pub(crate) type UpsertBatch = (Vec<(RowKey, Option<Row>)>, u64);

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
/// The id of a table's base arrangement (by row identity).
pub(crate) const BASE: &str = "base";

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
    /// The `RETAIN_SIZE` of a table without `KEY`.
    pub retain: Option<usize>,
    /// Decodes row texts back into the table's columns.
    pub decoder: JsonDecoder,
    workers: usize,
    pub(crate) queue: Mutex<Option<mpsc::Receiver<UpsertBatch>>>,
    pub(crate) activator: Mutex<Option<SyncActivator>>,
    /// Worker 0's next upsert time.
    pub(crate) clock: AtomicU64,
    /// Upsert batches emitted and not yet in every arrangement: (time, source rows).
    pub(crate) pending: Mutex<VecDeque<(u64, u64)>>,
    /// Source rows in every arrangement on every worker.
    visible: AtomicU64,
    /// The arrangements rules read, by id.
    arrangements: Mutex<HashSet<String>>,
    /// Per index shape (key and placement): the rules reading it and its generation.
    users: Mutex<HashMap<String, (usize, u64)>>,
    /// Each arrangement's frontier on each worker (`u64::MAX` once it is complete).
    frontiers: Mutex<HashMap<(String, usize), u64>>,
    /// Rows in the base arrangement, over all workers.
    pub(crate) live: AtomicI64,
    /// True once the table's source has ended and worker 0 has taken every upsert.
    pub(crate) ended: AtomicBool,
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
            retain,
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

    pub(crate) fn record_frontier(&self, id: &str, worker: usize, frontier: u64) {
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
        let keys = crate::keys::keys_of(&[col], batch.num_rows());
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
