//! The worker side of scan tables: differential arrangements, indexes and their traces.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::tables::feed::{BASE, IndexSpec, Placement, Row, RowKey, Spine, TableFeed, TableTrace};
use crate::tables::rows::{RowCache, key_texts};
use arrow::record_batch::RecordBatch;
use differential_dataflow::Hashable;
use differential_dataflow::operators::arrange::arrangement::{Arranged, arrange_core};
use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::{ValBatcher, ValBuilder};
use quiver_connectors::codec::json::JsonDecoder;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::progress::Antichain;
use tokio::sync::mpsc;

/// Upsert batches worker 0 takes per activation before letting other operators run.
const BATCHES_PER_ACTIVATION: usize = 16;
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
