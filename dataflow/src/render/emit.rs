//! The emit stage: merges a window's parts on worker 0 and runs what follows the window.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

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
    rule: super::RunContext,
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
                    } else if let Some(out) = emission(&mut chain, batch, &rule) {
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
                    let (cap, mut batches) = parts.remove(&t).expect("first key exists");
                    // Empty parts (workers whose groups had no rows in this window) add nothing
                    // unless every part is empty.
                    if batches.iter().any(|b| b.num_rows() > 0) {
                        batches.retain(|b| b.num_rows() > 0);
                    }
                    let Some(batch) = concat_results(&batches) else {
                        continue;
                    };
                    if let Some(out) = emission(&mut chain, batch, &rule) {
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

/// What the sinks get for one window's results: the results after HAVING, ORDER BY, SELECT
/// and LIMIT, or, for an empty event-time window, the empty emission eKuiper sends as `[]`.
fn emission(
    chain: &mut Chain,
    batch: RecordBatch,
    rule: &super::RunContext,
) -> Option<RecordBatch> {
    if crate::container::is_empty_emission(&batch) {
        return Some(batch);
    }
    run_post(chain, batch, rule)
}

/// Runs `chain` on a batch after the window (or the key exchange); a panic fails the rule.
pub(super) fn run_post(
    chain: &mut Chain,
    batch: RecordBatch,
    (rule, fault): &super::RunContext,
) -> Option<RecordBatch> {
    if fault.failed() {
        return None;
    }
    fault
        .contain("an operator", || {
            quiver_compiler::eval::with_rule_context(rule, || chain.process_batch(batch))
        })
        .flatten()
}
