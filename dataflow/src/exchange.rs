//! Exchange pacts: how batches move between workers (by key hash, or all to worker 0).

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
        use arrow::array::{Array, AsArray, UInt32Array};
        use differential_dataflow::Hashable;
        let Some(batch) = container.0.take() else {
            return;
        };
        let peers = pushers.len();
        let key = batch.column_by_name(quiver_compiler::window::KEY_COLUMN);
        let Some(key) = key.filter(|_| peers > 1) else {
            let target = 0;
            timely::dataflow::channels::Message::push_at(
                &mut ArrowBatch(Some(batch)),
                stamp.clone(),
                &mut pushers[target],
            );
            return;
        };
        let key = key.as_binary::<i32>();
        let mut parts: Vec<Vec<u32>> = vec![Vec::new(); peers];
        for i in 0..key.len() {
            // Differential's hash, as its exchanges use: a row keyed like a table row goes to
            // the worker holding that row in a partitioned arrangement (`arrange::owner`).
            let h = key.value(i).hashed();
            parts[(h % peers as u64) as usize].push(i as u32);
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
