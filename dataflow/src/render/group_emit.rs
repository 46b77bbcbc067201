//! The emit operator of a rule group: merges each window rule's closed window from the workers
//! that hold its groups, runs what follows its window, and hands the results to its sinks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::record_batch::RecordBatch;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use super::RETRY;
use super::emit::run_post;
use super::group::{Member, RuleGroup};
use super::sink::SinkStash;
use crate::batch::concat_results;
use crate::chain::Chain;
use crate::container::ArrowBatch;
use crate::container::member::{tag_of, untag};
use crate::exchange::MemberDistributor;

/// The closed windows that arrived at one time, with its capability: (member, rows) each.
type Parts = (Capability<u64>, Vec<(u64, RecordBatch)>);

/// A window rule's emitting end on the worker its windows' results gather on.
struct Emitter {
    member: Arc<Member>,
    chain: Chain,
    stash: SinkStash,
}

/// The group's emit operator. A rule's closed windows carry the rule's tag; the exchange
/// gathers each rule's on one worker, where the parts of one window (same time) are merged once
/// the frontier shows every worker sent its part.
pub(super) fn render_group_emit(stream: Stream<'_, u64, ArrowBatch>, group: Arc<RuleGroup>) {
    let worker = stream.scope().index();
    let scope = stream.scope();
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        // Closed windows are tagged as not spread: all of a rule's go to one worker.
        DistributorPact(|_| MemberDistributor),
        "GroupEmit",
        move |_cap, info| {
            let retry = scope.activator_for(info.address.clone());
            let mut parts: BTreeMap<u64, Parts> = BTreeMap::new();
            let mut emitters: HashMap<u64, Emitter> = HashMap::new();
            // Emitters whose stash holds results a sink has not taken.
            let mut waiting: HashSet<u64> = HashSet::new();
            let mut known: HashMap<u64, Arc<Member>> = HashMap::new();
            let mut seen = u64::MAX;
            move |(input, frontier), _output| {
                let generation = group.generation();
                if generation != seen {
                    seen = generation;
                    known = group.window_members();
                    // A rule that left: its sink queues close here.
                    emitters.retain(|id, _| known.contains_key(id));
                    waiting.retain(|id| known.contains_key(id));
                }
                input.for_each(|time, data| {
                    let Some(batch) = data.0.take() else {
                        return;
                    };
                    let Some((id, _)) = tag_of(&batch) else {
                        return;
                    };
                    let t = time.least().copied().unwrap_or_default();
                    if let Some(entry) = parts.get_mut(&t) {
                        entry.1.push((id, batch));
                    } else if let Some(cap) = time.retain_least(0) {
                        parts.insert(t, (cap, vec![(id, batch)]));
                    }
                });
                while let Some((&t, _)) = parts.first_key_value() {
                    if frontier.less_equal(&t) {
                        break;
                    }
                    let (_cap, batches) = parts.remove(&t).expect("first key exists");
                    let mut by_member: BTreeMap<u64, Vec<RecordBatch>> = BTreeMap::new();
                    for (id, b) in batches {
                        by_member.entry(id).or_default().push(untag(b));
                    }
                    for (id, mut batches) in by_member {
                        let Some(e) = emitter(&mut emitters, &known, id) else {
                            continue;
                        };
                        // Empty parts (workers whose groups had no rows in this window) add
                        // nothing unless every part is empty.
                        if batches.iter().any(|b| b.num_rows() > 0) {
                            batches.retain(|b| b.num_rows() > 0);
                        }
                        let Some(batch) = concat_results(&batches) else {
                            continue;
                        };
                        let ctx = (e.member.rule.clone(), e.member.fault.clone());
                        if let Some(out) = run_post(&mut e.chain, batch, &ctx) {
                            e.stash.push(&out);
                            waiting.insert(id);
                        }
                    }
                }
                waiting.retain(|id| {
                    emitters.get_mut(id).is_some_and(|e| {
                        e.stash.flush();
                        !e.stash.is_empty()
                    })
                });
                let behind = waiting
                    .iter()
                    .any(|id| emitters.get(id).is_some_and(|e| e.stash.blocked()));
                group.emits_behind[worker].store(behind, Ordering::Release);
                if !waiting.is_empty() {
                    retry.activate_after(RETRY);
                } else if frontier.is_empty() {
                    // Input ended and every result is handed over: let the sinks finish.
                    emitters.clear();
                    known.clear();
                }
            }
        },
    );
}

/// Member `id`'s emitter on this worker, made on its first closed window; none for a member
/// that left.
fn emitter<'a>(
    emitters: &'a mut HashMap<u64, Emitter>,
    known: &HashMap<u64, Arc<Member>>,
    id: u64,
) -> Option<&'a mut Emitter> {
    match emitters.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => {
            let member = known.get(&id)?.clone();
            let post = &member.window.as_ref()?.post;
            let chain = super::chain(post, &member.metrics, &super::TableInputs::default());
            let stash = SinkStash::new(member.sinks.clone());
            Some(v.insert(Emitter {
                member,
                chain,
                stash,
            }))
        }
    }
}
