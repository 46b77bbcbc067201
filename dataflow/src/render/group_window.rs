//! The window operator of a rule group: the open windows of every window rule in the group,
//! on the worker their rows are exchanged to, closed as processing time passes.
//!
//! Rows and closed windows travel tagged with their rule (`container::member`); the exchange spreads a
//! rule's groups by key over the workers, or keeps a rule without spreadable groups on one
//! worker chosen by the rule, so many such rules still share the workers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use super::group::{Known, Member, RuleGroup};
use crate::container::ArrowBatch;
use crate::container::member::{tag, tag_of, untag};
use crate::exchange::MemberDistributor;
use crate::window::Windows;

/// A window rule's open windows on this worker.
struct Open {
    member: Arc<Member>,
    windows: Windows,
    /// The earliest time a window of it closes, while one is open (its key in `due`).
    next: Option<i64>,
}

/// The group's window operator (see the module docs). Closed windows leave at time `end - 1`,
/// the same time on every worker, so the emit operator can merge one window's parts.
pub(super) fn render_group_windows<'s>(
    stream: Stream<'s, u64, ArrowBatch>,
    group: Arc<RuleGroup>,
) -> Stream<'s, u64, ArrowBatch> {
    let scope = stream.scope();
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        DistributorPact(|_| MemberDistributor),
        "GroupWindows",
        move |_cap, info| {
            let waker = scope.worker().sync_activator_for(info.address.to_vec());
            group.wakers.lock().expect("wakers lock").push(waker);
            // The earliest time this operator may still emit at, while any window is open.
            let mut held: Option<Capability<u64>> = None;
            // Every member's windows on this worker, made on its first row.
            let mut states: HashMap<u64, Open> = HashMap::new();
            // Members with open windows by when their first one closes: only those due are
            // looked at as time passes, however many members there are.
            let mut due: BTreeSet<(i64, u64)> = BTreeSet::new();
            let mut known = Known::default();
            move |(input, frontier), output| {
                if known.refresh(&group) {
                    // A rule that left takes its open windows with it.
                    states.retain(|id, _| known.members.contains_key(id));
                    due.retain(|(_, id)| known.members.contains_key(id));
                }
                let started = Instant::now();
                let mut counts: HashMap<u64, (usize, usize)> = HashMap::new();
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    super::rows_taken(&group.to_windows, batch.num_rows());
                    let Some((id, _)) = tag_of(&batch) else {
                        return;
                    };
                    let Some(state) = state_of(&mut states, &mut known, &group, id) else {
                        return;
                    };
                    let Some(cap) = time.retain_least(0) else {
                        return;
                    };
                    if state.member.fault.failed() {
                        return;
                    }
                    if held.as_ref().is_none_or(|h| cap.time() < h.time()) {
                        held = Some(cap.clone());
                    }
                    counts.entry(id).or_default().0 += batch.num_rows();
                    let m = &state.member;
                    let batch = untag(batch);
                    // Tumbling and hopping windows close on time only: inserting emits nothing.
                    let _ = m.fault.contain("the window operator", || {
                        quiver_compiler::eval::with_rule_context(&m.rule, || {
                            state.windows.insert(&batch)
                        })
                    });
                    reschedule(state, id, &mut due);
                });
                let f = frontier.frontier().iter().next().copied();
                let upto = f.unwrap_or(u64::MAX);
                let upto_ms = i64::try_from(upto).unwrap_or(i64::MAX);
                let mut ready = Vec::new();
                while let Some(&(at, id)) = due.first()
                    && at <= upto_ms
                {
                    due.pop_first();
                    ready.push(id);
                }
                for id in ready {
                    let Some(state) = states.get_mut(&id) else {
                        continue;
                    };
                    state.next = None;
                    let m = state.member.clone();
                    let w = m.window.as_ref().expect("window members only");
                    let closes = m
                        .fault
                        .contain("the window operator", || {
                            quiver_compiler::eval::with_rule_context(&m.rule, || {
                                state.windows.advance(upto)
                            })
                        })
                        .unwrap_or_default();
                    for e in closes {
                        let Some(h) = held.as_ref() else { break };
                        let at = (e.end.max(1) as u64 - 1).max(*h.time());
                        counts.entry(id).or_default().1 += e.batch.num_rows();
                        // Not spread: one window's parts gather on one worker.
                        let tagged = tag(e.batch, id, false);
                        output
                            .session(&h.delayed(&at))
                            .give_container(&mut ArrowBatch(Some(tagged)));
                    }
                    let bad = state.windows.take_bad_rows();
                    if bad > 0 {
                        m.metrics
                            .at(w.node)
                            .exceptions(bad, "run Aggregate error: a value of the wrong type");
                    }
                    if m.fault.failed() {
                        states.remove(&id);
                    } else {
                        reschedule(state, id, &mut due);
                    }
                }
                for (id, (rows_in, emitted)) in counts {
                    if let Some(state) = states.get(&id)
                        && let Some(w) = &state.member.window
                    {
                        state
                            .member
                            .metrics
                            .at(w.node)
                            .batch(rows_in, emitted, started);
                    }
                }
                match f {
                    Some(t) if !due.is_empty() => {
                        if let Some(h) = held.as_mut()
                            && t > *h.time()
                        {
                            h.downgrade(&t);
                        }
                    }
                    _ => held = None,
                }
                if f.is_none() {
                    // Time ended and every window closed: let the members (and their sinks) go.
                    states.clear();
                    due.clear();
                    known.members.clear();
                }
            }
        },
    )
}

/// Files a member under the time its first open window closes (or nowhere, with none open).
fn reschedule(state: &mut Open, id: u64, due: &mut BTreeSet<(i64, u64)>) {
    let next = state.windows.next_deadline();
    if next != state.next {
        if let Some(old) = state.next {
            due.remove(&(old, id));
        }
        if let Some(new) = next {
            due.insert((new, id));
        }
        state.next = next;
    }
}

/// Member `id`'s windows on this worker, made on its first row; none for a member that left.
fn state_of<'a>(
    states: &'a mut HashMap<u64, Open>,
    known: &mut Known,
    group: &RuleGroup,
    id: u64,
) -> Option<&'a mut Open> {
    match states.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => {
            let member = known.find(group, id)?;
            let spec = member.window.as_ref()?.spec.clone();
            Some(v.insert(Open {
                member,
                windows: Windows::new(spec, false),
                next: None,
            }))
        }
    }
}
