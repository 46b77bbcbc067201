//! The emit stage: merges a window's parts on worker 0 and runs what follows the window.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::batch::concat_results;
use crate::chain::{BatchOperator, Chain};
use crate::container::ArrowBatch;
use crate::exchange::ToFirstWorker;

/// Runs HAVING, ORDER BY, SELECT and LIMIT on each emission, on worker 0. For windows spread
/// over workers (`merge`), results with the same time are one window's parts and are merged
/// first, once the frontier shows every worker has sent its part.
pub(super) fn render_post<'s>(
    stream: Stream<'s, u64, ArrowBatch>,
    mut chain: Chain,
    merge: bool,
    pending: Rc<Cell<usize>>,
    sinks: usize,
    rule: Arc<quiver_compiler::eval::RuleContext>,
) -> Stream<'s, u64, ArrowBatch> {
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        DistributorPact(|_| ToFirstWorker),
        "Emit",
        move |_cap, _info| {
            let mut parts: BTreeMap<u64, (Capability<u64>, Vec<RecordBatch>)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    if merge {
                        let t = time.least().copied().unwrap_or_default();
                        if let Some(entry) = parts.get_mut(&t) {
                            entry.1.push(batch);
                        } else if let Some(cap) = time.retain_least(0) {
                            parts.insert(t, (cap, vec![batch]));
                        }
                    } else if let Some(out) = run_post(&mut chain, batch, &rule) {
                        pending.set(pending.get() + sinks);
                        output
                            .session(&time)
                            .give_container(&mut ArrowBatch(Some(out)));
                    }
                });
                while let Some((&t, _)) = parts.first_key_value() {
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let (cap, batches) = parts.remove(&t).expect("first key exists");
                    let Some(batch) = concat_results(&batches) else {
                        continue;
                    };
                    if let Some(out) = run_post(&mut chain, batch, &rule) {
                        pending.set(pending.get() + sinks);
                        output
                            .session(&cap)
                            .give_container(&mut ArrowBatch(Some(out)));
                    }
                }
            }
        },
    )
}

pub(super) fn run_post(
    chain: &mut Chain,
    batch: RecordBatch,
    rule: &Arc<quiver_compiler::eval::RuleContext>,
) -> Option<RecordBatch> {
    let rows = batch.num_rows();
    let run = || quiver_compiler::eval::with_rule_context(rule, || chain.process_batch(batch));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(out) => out,
        Err(panic) => {
            tracing::error!("operator panicked, {rows} result rows dropped: {panic:?}");
            None
        }
    }
}
