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
use super::group::{INPUT_ENDED, Known, Member, RuleGroup};
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
    let scope = stream.scope();
    let (worker, peers) = (scope.index(), scope.peers() as u64);
    stream.unary_frontier::<CapacityContainerBuilder<ArrowBatch>, _, _, _>(
        // Closed windows are tagged as not spread: all of a rule's go to one worker.
        DistributorPact(|_| MemberDistributor),
        "GroupEmit",
        move |cap, info| {
            let retry = scope.activator_for(info.address.clone());
            let waker = scope.worker().sync_activator_for(info.address.to_vec());
            group.wakers.lock().expect("wakers lock").push(waker);
            // Held until every result is handed over, so the dataflow is not retired while
            // results wait for a slow sink.
            let mut cap = Some(cap);
            let mut parts: BTreeMap<u64, Parts> = BTreeMap::new();
            let mut emitters: HashMap<u64, Emitter> = HashMap::new();
            // Emitters whose stash holds results a sink has not taken.
            let mut waiting: HashSet<u64> = HashSet::new();
            let mut known = Known::default();
            move |(input, frontier), _output| {
                if known.refresh(&group) {
                    // A rule that left: its sink queues close here.
                    emitters.retain(|id, _| known.members.contains_key(id));
                    waiting.retain(|id| known.members.contains_key(id));
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
                        let Some(e) = emitter(&mut emitters, &mut known, &group, id) else {
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
                // A member whose sink is behind tells the group's source, which stops feeding
                // it after a while (rather than holding up every rule of the group).
                waiting.retain(|id| {
                    emitters.get_mut(id).is_some_and(|e| {
                        e.stash.flush();
                        e.member.behind.store(e.stash.blocked(), Ordering::Release);
                        !e.stash.is_empty()
                    })
                });
                // Input ended (every window closed): each rule whose results gather here and are
                // all handed over lets its sinks finish, whatever the others' sinks do.
                let ended = frontier.frontier().iter().all(|t| *t == INPUT_ENDED);
                if ended && cap.is_some() {
                    for (id, m) in &known.members {
                        if (id % peers) as usize == worker && !waiting.contains(id) {
                            m.close_sinks();
                            emitters.remove(id);
                        }
                    }
                }
                if !waiting.is_empty() {
                    retry.activate_after(RETRY);
                } else if ended && cap.is_some() {
                    // Every result is handed over: the dataflow may end.
                    known.members.clear();
                    cap = None;
                }
            }
        },
    );
}

/// Member `id`'s emitter on this worker, made on its first closed window; none for a member
/// that left.
fn emitter<'a>(
    emitters: &'a mut HashMap<u64, Emitter>,
    known: &mut Known,
    group: &RuleGroup,
    id: u64,
) -> Option<&'a mut Emitter> {
    match emitters.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => {
            let member = known.find(group, id)?;
            let post = &member.window.as_ref()?.post;
            let chain = super::chain(post, &member.metrics, &super::TableInputs::default());
            let stash = SinkStash::new(member.senders());
            Some(v.insert(Emitter {
                member,
                chain,
                stash,
            }))
        }
    }
}
