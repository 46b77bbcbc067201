//! The keyed stage: rows exchanged by key, then the rest of the chain where the key lives.

use std::cell::Cell;
use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::operators::generic::Operator;

use super::emit::run_post;
use super::{MAX_PENDING_BATCHES, RETRY, RuleDataflow};
use crate::chain::Chain;
use crate::container::ArrowBatch;
use crate::exchange::KeyDistributor;

/// Runs the rest of a keyed rule (its analytic node, or its partitioned table join, and what
/// follows) on the worker that owns each key, then hands the results to that worker's sinks. It takes input only
/// while its sinks keep up; rows left queued hold the source back through `to_windows`.
pub(super) fn render_keyed<'s>(
    stream: Stream<'s, u64, ArrowBatch>,
    mut chain: Chain,
    pending: Rc<Cell<usize>>,
    rule: &RuleDataflow,
) -> Stream<'s, u64, ArrowBatch> {
    let sinks = rule.sinks.len().max(1);
    let ctx = (rule.rule.clone(), rule.fault.clone());
    let to_windows = rule.to_windows.clone();
    let scope = stream.scope();
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        DistributorPact(|_| KeyDistributor),
        "Partitioned",
        move |_cap, info| {
            let retry = scope.activator_for(info.address.clone());
            move |(input, _frontier), output| {
                if pending.get() >= MAX_PENDING_BATCHES * sinks {
                    retry.activate_after(RETRY);
                    return;
                }
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    let rows = batch.num_rows();
                    let out = run_post(&mut chain, batch, &ctx);
                    // Only now are the rows through (a partitioned join has read its table).
                    super::rows_taken(&to_windows, rows);
                    if let Some(out) = out {
                        pending.set(pending.get() + sinks);
                        output
                            .session(&time)
                            .give_container(&mut ArrowBatch(Some(out)));
                    }
                });
            }
        },
    )
}
