//! Exchange pacts: how batches move between workers (by key hash, all to worker 0, or by the
//! rule-group member a batch is tagged with).

use crate::container::ArrowBatch;

/// Sends every row to the worker its `__key` column hashes to (all rows to worker 0 when the
/// batch has no key column), so each group lives on exactly one worker. Hashing is seeded
/// identically on every worker, as it must be.
pub struct KeyDistributor;

impl timely::dataflow::channels::pushers::exchange::Distributor<ArrowBatch> for KeyDistributor {
    fn partition<
        T: Clone,
        P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
    >(
        &mut self,
        container: &mut ArrowBatch,
        stamp: &timely::progress::Stamp<T>,
        pushers: &mut [P],
    ) {
        let Some(batch) = container.0.take() else {
            return;
        };
        // Differential's hash, as its exchanges use: a row keyed like a table row goes to the
        // worker holding that row in a partitioned arrangement (`arrange::owner`).
        push_by_key(batch, 0, stamp, pushers);
    }

    fn flush<
        T: Clone,
        P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
    >(
        &mut self,
        _stamp: &timely::progress::Stamp<T>,
        _pushers: &mut [P],
    ) {
    }
}

/// Pushes each row of `batch` to the worker its `__key` hashes to, the hash xor-ed with
/// `salt`; a batch without a key column (or with one worker) goes whole to worker
/// `salt % workers`.
fn push_by_key<T: Clone, P>(
    batch: arrow::record_batch::RecordBatch,
    salt: u64,
    stamp: &timely::progress::Stamp<T>,
    pushers: &mut [P],
) where
    P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
{
    use arrow::array::{Array, AsArray, UInt32Array};
    use differential_dataflow::Hashable;
    let peers = pushers.len() as u64;
    let key = batch.column_by_name(quiver_compiler::window::KEY_COLUMN);
    let Some(key) = key.filter(|_| peers > 1) else {
        timely::dataflow::channels::Message::push_at(
            &mut ArrowBatch(Some(batch)),
            stamp.clone(),
            &mut pushers[(salt % peers) as usize],
        );
        return;
    };
    let key = key.as_binary::<i32>();
    let mut parts: Vec<Vec<u32>> = vec![Vec::new(); peers as usize];
    for i in 0..key.len() {
        let h = key.value(i).hashed() ^ salt;
        parts[(h % peers) as usize].push(i as u32);
    }
    for (peer, rows) in parts.into_iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let part = if rows.len() == batch.num_rows() {
            batch.clone()
        } else {
            match arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("partitioning a batch failed: {e}");
                    continue;
                }
            }
        };
        timely::dataflow::channels::Message::push_at(
            &mut ArrowBatch(Some(part)),
            stamp.clone(),
            &mut pushers[peer],
        );
    }
}

/// Sends every batch to worker 0 (windows whose bounds depend on all rows, and the final
/// gathering of a window's results from all workers).
pub struct ToFirstWorker;

impl timely::dataflow::channels::pushers::exchange::Distributor<ArrowBatch> for ToFirstWorker {
    fn partition<
        T: Clone,
        P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
    >(
        &mut self,
        container: &mut ArrowBatch,
        stamp: &timely::progress::Stamp<T>,
        pushers: &mut [P],
    ) {
        timely::dataflow::channels::Message::push_at(container, stamp.clone(), &mut pushers[0]);
    }

    fn flush<
        T: Clone,
        P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
    >(
        &mut self,
        _stamp: &timely::progress::Stamp<T>,
        _pushers: &mut [P],
    ) {
    }
}

/// Moves a rule group's tagged batches (`container::member`): a member's rows spread
/// by key go where their member and `__key` hash to; every other batch of a member goes to one
/// worker picked by the member, so the group's rules spread over the workers rule by rule.
pub struct MemberDistributor;

impl timely::dataflow::channels::pushers::exchange::Distributor<ArrowBatch> for MemberDistributor {
    fn partition<
        T: Clone,
        P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
    >(
        &mut self,
        container: &mut ArrowBatch,
        stamp: &timely::progress::Stamp<T>,
        pushers: &mut [P],
    ) {
        let Some(batch) = container.0.take() else {
            return;
        };
        let Some((id, spread)) = crate::container::member::tag_of(&batch) else {
            return;
        };
        if spread {
            // The member's number goes into the hash, so two rules' groups of one key need
            // not meet on one worker.
            push_by_key(
                batch,
                id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                stamp,
                pushers,
            );
        } else {
            let peer = (id % pushers.len() as u64) as usize;
            timely::dataflow::channels::Message::push_at(
                &mut ArrowBatch(Some(batch)),
                stamp.clone(),
                &mut pushers[peer],
            );
        }
    }

    fn flush<
        T: Clone,
        P: timely::communication::Push<timely::dataflow::channels::Message<T, ArrowBatch>>,
    >(
        &mut self,
        _stamp: &timely::progress::Stamp<T>,
        _pushers: &mut [P],
    ) {
    }
}
