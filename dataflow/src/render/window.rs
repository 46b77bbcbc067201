//! The window stage: open windows of this worker's groups, closed as time passes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::container::ArrowBatch;
use crate::metrics::NodeMetrics;
use crate::window::Windows;

/// The window operator: keeps the open windows of this worker's groups and emits each closed
/// window at time `end - 1`, the same time on every worker, so the gathering operator can
/// merge one window's results from all workers into one emission.
pub(super) fn render_window<'s, P>(
    stream: Stream<'s, u64, ArrowBatch>,
    windows: Windows,
    metrics: Arc<NodeMetrics>,
    pact: P,
    to_windows: Arc<std::sync::atomic::AtomicUsize>,
    (rule, fault): super::RunContext,
) -> Stream<'s, u64, ArrowBatch>
where
    P: timely::dataflow::channels::pact::ParallelizationContract<u64, ArrowBatch>,
{
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        pact,
        "Window",
        move |_cap, _info| {
            let to_windows = to_windows.clone();
            // The earliest time this operator may still emit at.
            let mut held: Option<Capability<u64>> = None;
            // Dropped (with every open window) when the rule fails.
            let mut windows = Some(windows);
            move |(input, frontier), output| {
                let mut emitted = 0usize;
                let started = Instant::now();
                let mut rows_in = 0usize;
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    rows_in += batch.num_rows();
                    to_windows.fetch_sub(batch.num_rows(), Ordering::AcqRel);
                    let t = time.least().copied().unwrap_or_default();
                    if held.as_ref().is_none_or(|h| t < *h.time()) {
                        held = time.retain_least(0);
                    }
                    let Some(w) = windows.as_mut().filter(|_| !fault.failed()) else {
                        return;
                    };
                    let closed = fault
                        .contain("the window operator", || {
                            quiver_compiler::eval::with_rule_context(&rule, || w.insert(&batch))
                        })
                        .unwrap_or_default();
                    for e in closed {
                        emitted += e.batch.num_rows();
                        output
                            .session(&time)
                            .give_container(&mut ArrowBatch(Some(e.batch)));
                    }
                });
                let f = frontier.frontier().iter().next().copied();
                if fault.failed() {
                    // The rule failed: its windows and their rows go, time is let go of.
                    windows = None;
                    held = None;
                    return;
                }
                let Some(windows) = windows.as_mut() else {
                    return;
                };
                let closes = fault
                    .contain("the window operator", || {
                        quiver_compiler::eval::with_rule_context(&rule, || {
                            windows.advance(f.unwrap_or(u64::MAX))
                        })
                    })
                    .unwrap_or_default();
                for e in closes {
                    let Some(h) = held.as_ref() else { break };
                    let at = (e.end.max(1) as u64 - 1).max(*h.time());
                    let cap = h.delayed(&at);
                    emitted += e.batch.num_rows();
                    output
                        .session(&cap)
                        .give_container(&mut ArrowBatch(Some(e.batch)));
                }
                let bad = windows.take_bad_rows();
                if bad > 0 {
                    metrics.exceptions(bad, "run Aggregate error: a value of the wrong type");
                }
                if rows_in > 0 || emitted > 0 {
                    metrics.batch(rows_in, emitted, started);
                }
                match (f, !windows.is_idle()) {
                    (Some(t), true) => {
                        if let Some(h) = held.as_mut()
                            && t > *h.time()
                        {
                            h.downgrade(&t);
                        }
                    }
                    _ => held = None,
                }
            }
        },
    )
}
