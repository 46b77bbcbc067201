//! Rule groups: the stateless and processing-time window rules of one shared stream evaluated
//! in one dataflow.
//!
//! A rule of its own costs a wake-up and a dataflow step for every event, whatever the event
//! holds (shared/rules-scale.md: about 10–25 µs); with hundreds of rules on one stream that
//! fixed cost is most of the work. A group is one dataflow per shared stream, on every worker:
//! its source operator takes each event once and runs every member rule's fused chain (filter,
//! project, limit) over it, handing each result straight to that rule's sink queues. Adding or
//! removing a rule edits the member list; the workers pick the change up on their next
//! activation. Each rule keeps its own metrics, sinks and status, and a panic in one rule's
//! chain is counted against that rule only (`run_chain`).
//!
//! Window rules (tumbling and hopping, in processing time) run their source chain here too;
//! its rows, tagged with the rule, go on to the group's window operator (`group_window`) and
//! its closed windows to the group's emit operator (`group_emit`): three operators per stream
//! however many window rules, where each rule of its own has four.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::Int64Array;
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::TS_COLUMN;
use quiver_connectors::SourceEvent;
use quiver_connectors::codec::Decoder;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use super::sink::SinkStash;
use super::source::{Next, next_event};
use super::{MAX_ROWS_TO_WINDOWS, RETRY};
use crate::chain::Chain;
use crate::container::ArrowBatch;
use crate::metrics::{NodeMetrics, RuleMetrics};
use crate::physical::{GroupedWindow, Op};

/// Source events a worker takes per activation, evaluated together as one batch (more than a
/// rule's own source takes: the group's whole point is one pass for many events).
const EVENTS_PER_ACTIVATION: usize = 64;

/// One rule run in a group: its plan, its sinks and its metrics.
pub struct Member {
    /// The rule run's key (rule id + run number).
    pub key: String,
    /// Its number in the group's dataflow, which tags its rows there (set by
    /// [`RuleGroup::add`]).
    pub id: u64,
    /// The physical plan's source operators (filters, projections, a limit; a window rule's
    /// operators before its window).
    pub ops: Vec<Op>,
    /// A window rule's window and what follows it.
    pub window: Option<GroupedWindow>,
    /// One bounded queue per action; emptied to close them (a window rule's, once its last
    /// results are out, while the group's operators may still hold the member).
    pub sinks: Mutex<Vec<mpsc::Sender<RecordBatch>>>,
    /// Metrics of the source node.
    pub source_metrics: Arc<NodeMetrics>,
    /// Metrics of the decoder node.
    pub decoder_metrics: Arc<NodeMetrics>,
    /// Every node's counters, by the physical plan's node ids.
    pub metrics: Arc<RuleMetrics>,
    /// What `rule_id()` and `rule_start()` read.
    pub rule: Arc<quiver_compiler::eval::RuleContext>,
    /// Where a panic in this member's operators fails this rule only.
    pub fault: Arc<crate::fault::Fault>,
    /// Messages this rule lost for falling behind its group (in its status, as a rule of its
    /// own counts what it lost for falling behind its shared stream).
    pub dropped: Arc<AtomicU64>,
    /// A window rule's: whether its emit operator holds so many results for a slow sink that
    /// the group's source should stop feeding it.
    pub behind: AtomicBool,
}

impl Member {
    /// Its sink queues, for a stash in front of them.
    pub(super) fn senders(&self) -> Vec<mpsc::Sender<RecordBatch>> {
        self.sinks.lock().expect("sinks lock").clone()
    }

    /// Lets go of its sink queues: the sink tasks see the end once the stashes did too.
    pub(super) fn close_sinks(&self) {
        self.sinks.lock().expect("sinks lock").clear();
    }
}

/// The rules of one shared stream that run together, and the group's worker queues.
pub struct RuleGroup {
    /// The group dataflow's key (to drop it), unique per group.
    pub key: String,
    members: Mutex<Vec<Arc<Member>>>,
    /// Bumped on every membership change; workers compare it with what they last saw.
    generation: AtomicU64,
    /// One ingest queue per worker, taken by the worker that builds the group.
    pub ingest: Mutex<Vec<Option<mpsc::Receiver<SourceEvent>>>>,
    /// Where each worker registers the activator that wakes the group.
    pub activators: Arc<Mutex<Vec<Option<SyncActivator>>>>,
    /// Decoder for events the shared source did not decode (none for schema streams).
    pub decoder: Decoder,
    /// Workers whose input has ended and who let go of their members.
    ended: AtomicUsize,
    workers: usize,
    /// Rows the group's source sent towards its window operator that it has not taken yet.
    pub(super) to_windows: AtomicUsize,
    /// The window and emit operators' activators, woken with the sources on a membership
    /// change, so a rule that left lets go of its windows and sinks at once.
    pub(super) wakers: Mutex<Vec<SyncActivator>>,
}

impl RuleGroup {
    /// An empty group reading `ingest` (one queue per worker).
    pub fn new(
        key: String,
        ingest: Vec<mpsc::Receiver<SourceEvent>>,
        activators: Arc<Mutex<Vec<Option<SyncActivator>>>>,
        decoder: Decoder,
    ) -> Self {
        let workers = ingest.len();
        RuleGroup {
            key,
            members: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            ingest: Mutex::new(ingest.into_iter().map(Some).collect()),
            activators,
            decoder,
            ended: AtomicUsize::new(0),
            workers,
            to_windows: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Adds a rule run, numbering it.
    pub fn add(&self, mut member: Member) {
        static IDS: AtomicU64 = AtomicU64::new(0);
        member.id = IDS.fetch_add(1, Ordering::Relaxed);
        self.members
            .lock()
            .expect("members lock")
            .push(Arc::new(member));
        self.changed();
    }

    /// Removes a rule run; returns how many members are left.
    pub fn remove(&self, key: &str) -> usize {
        let left = {
            let mut members = self.members.lock().expect("members lock");
            members.retain(|m| m.key != key);
            members.len()
        };
        self.changed();
        left
    }

    /// The membership's generation: it changes whenever a rule joins or leaves.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The members now.
    pub(super) fn members(&self) -> Vec<Arc<Member>> {
        self.members.lock().expect("members lock").clone()
    }

    /// The window rules among the members now, by id.
    fn window_members(&self) -> HashMap<u64, Arc<Member>> {
        let members = self.members.lock().expect("members lock");
        members
            .iter()
            .filter(|m| m.window.is_some())
            .map(|m| (m.id, m.clone()))
            .collect()
    }

    /// True while the group's input has not ended on any worker.
    pub fn is_live(&self) -> bool {
        self.ended.load(Ordering::Acquire) == 0
    }

    /// Tells the workers the member list changed (so a removed rule's sinks are let go now).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for a in self
            .activators
            .lock()
            .expect("activator lock")
            .iter()
            .flatten()
        {
            // A dropped dataflow's activator fails harmlessly.
            let _ = a.activate();
        }
        for a in self.wakers.lock().expect("wakers lock").iter() {
            let _ = a.activate();
        }
    }

    /// A worker's input ended and it dropped its members' sink queues; the last one also
    /// drops the group's own of its stateless members, so their sinks see the end. Window
    /// members stay listed (the group's operators read the list when it changes); the emit
    /// operator closes each one's sinks once its last results are out.
    fn worker_ended(&self) {
        if self.ended.fetch_add(1, Ordering::AcqRel) + 1 == self.workers {
            let mut members = self.members.lock().expect("members lock");
            members.retain(|m| m.window.is_some());
        }
    }
}

/// The window members one of the group's operators knows, read again when the membership
/// changed.
#[derive(Default)]
pub(super) struct Known {
    /// By id.
    pub(super) members: HashMap<u64, Arc<Member>>,
    seen: Option<u64>,
}

impl Known {
    /// Reads the members again if they changed since; true when they did.
    pub(super) fn refresh(&mut self, group: &RuleGroup) -> bool {
        let generation = group.generation();
        if self.seen == Some(generation) {
            return false;
        }
        self.seen = Some(generation);
        self.members = group.window_members();
        true
    }

    /// Member `id`, also when it joined after the last [`Known::refresh`] (its rows can come
    /// from another worker's source before this operator ran again); none for one that left.
    pub(super) fn find(&mut self, group: &RuleGroup, id: u64) -> Option<Arc<Member>> {
        if !self.members.contains_key(&id) && self.seen != Some(group.generation()) {
            // Added, not replaced: the next refresh drops those that left.
            for (k, m) in group.window_members() {
                self.members.entry(k).or_insert(m);
            }
        }
        self.members.get(&id).cloned()
    }
}

/// The member's fused chain, built on the worker that runs it.
fn chain(member: &Member) -> Chain {
    super::chain(&member.ops, &member.metrics, &super::TableInputs::default())
}

/// Events decoded and put together: the messages they held and their rows, in one batch when
/// the schemas agree.
pub(crate) fn combine(
    events: Vec<SourceEvent>,
    decoder: &Decoder,
) -> (usize, Arc<quiver_connectors::codec::json::Decoded>) {
    let mut messages = 0;
    let mut batches = Vec::new();
    let mut errors = Vec::new();
    for event in events {
        let (m, decoded) = event.decode(decoder);
        messages += m;
        batches.extend(decoded.batches.iter().cloned());
        errors.extend(decoded.errors.iter().cloned());
    }
    if batches.len() > 1 {
        let schema = batches[0].schema();
        if batches.iter().all(|b| b.schema() == schema)
            && let Ok(one) = arrow::compute::concat_batches(&schema, &batches)
        {
            batches = vec![one];
        }
    }
    (
        messages,
        Arc::new(quiver_connectors::codec::json::Decoded { batches, errors }),
    )
}

/// A member as one worker runs it: its chain and its sink queues with what they have not
/// taken.
struct Local {
    member: Arc<Member>,
    chain: Chain,
    stash: SinkStash,
    /// Activations since it last fell behind (it may hold the group up again only after
    /// [`CLEAN_ACTIVATIONS`]).
    clean: u32,
    /// Whether it is losing the group's events until its sink took its results.
    skipping: bool,
}

impl Local {
    /// Counts `messages` messages of `rows` rows on the member's source (and decoder) and runs
    /// its chain over `batches` under its rule context; returns what came out.
    fn run(
        &mut self,
        batches: &[RecordBatch],
        (messages, rows): (usize, usize),
        started: Instant,
    ) -> Vec<RecordBatch> {
        let m = &self.member;
        m.source_metrics.batch(messages, messages, started);
        if !Arc::ptr_eq(&m.decoder_metrics, &m.source_metrics) {
            m.decoder_metrics.batch(messages, rows, started);
        }
        batches
            .iter()
            .filter_map(|batch| {
                quiver_compiler::eval::with_rule_context(&m.rule, || {
                    crate::chain::run_chain(
                        &mut self.chain,
                        batch.clone(),
                        &m.source_metrics,
                        &m.fault,
                    )
                })
            })
            .collect()
    }
}

/// How long members whose sinks are behind may hold the whole group up, in all, before they
/// lose events instead. Shorter than the shared fan-out's own bound (2 s), so a group held up
/// by its rules lets go of them before the fan-out drops events for the whole group.
const STALL_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// Activations without falling behind after which a member that lost events may hold the group
/// up again: one that keeps falling behind must not cost the others a stall each time.
const CLEAN_ACTIVATIONS: u32 = 64;

/// Whether the group waits for its members' sinks. It waits at most [`STALL_BOUND`] from when
/// the first of them fell behind; then those still behind lose the group's events (counted in
/// their status) until every result they hold was taken, as a rule of its own loses its shared
/// stream's events.
fn stalled(locals: &mut [Local], since: &mut Option<Instant>, group: &str) -> bool {
    let now = Instant::now();
    let over = since.is_some_and(|t| now.duration_since(t) >= STALL_BOUND);
    let mut wait = false;
    for l in locals {
        let behind = l.member.behind.load(Ordering::Acquire);
        if l.skipping {
            if l.stash.is_empty() && !behind {
                l.skipping = false;
                l.clean = 0;
            }
            continue;
        }
        if !(behind || l.stash.blocked()) {
            l.clean = l.clean.saturating_add(1);
            continue;
        }
        if over || l.clean < CLEAN_ACTIVATIONS {
            tracing::warn!(
                rule = %l.member.key,
                group,
                "a rule fell behind its shared stream; dropping its events until it catches up"
            );
            l.skipping = true;
        } else {
            wait = true;
        }
    }
    *since = if wait {
        Some(since.unwrap_or(now))
    } else {
        None
    };
    wait
}

/// Builds the group's dataflow in `scope` (on every worker, in the same order): its source,
/// then the window and emit operators of its window rules.
pub fn build(scope: Scope<'_, u64>, group: &Arc<RuleGroup>) {
    let rows = source_operator(scope, group);
    let windows = super::group_window::render_group_windows(rows, group.clone());
    super::group_emit::render_group_emit(windows, group.clone());
}

/// Rows read for the group's window rules, run through their chains a few at a time: each
/// member's chain costs about the same per batch however few rows it holds, so at a low rate,
/// with thousands of window rules, running every event at once would cost a pass over every
/// rule per message. Rows keep the time they were read at; the source does not move its time
/// past pending rows, so no window closes before its rows are in.
#[derive(Default)]
struct WindowInput {
    batches: Vec<RecordBatch>,
    /// The messages and rows they hold (counted on each member when they run).
    messages: usize,
    rows: usize,
    since: Option<Instant>,
}

/// Rows after which pending window input runs whatever the time (each member's results of one
/// run go to the window operator at once, so this bounds a run's rows in flight per rule).
const WINDOW_INPUT_ROWS: usize = 1024;

impl WindowInput {
    /// How long rows may wait for more: a fortieth of the shortest window step, at most 25 ms.
    fn linger(tick: u64) -> std::time::Duration {
        std::time::Duration::from_millis((tick / 40).min(25))
    }

    /// Adds an event's stamped batches, `messages` messages.
    fn push(&mut self, batches: Vec<RecordBatch>, messages: usize) {
        self.rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        self.messages += messages;
        self.since.get_or_insert_with(Instant::now);
        self.batches.extend(batches);
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether the pending rows have waited long enough, or are enough.
    fn due(&self, tick: u64) -> bool {
        self.rows >= WINDOW_INPUT_ROWS
            || self
                .since
                .is_some_and(|t| t.elapsed() >= Self::linger(tick))
    }

    /// How long until the pending rows are due, if any wait.
    fn left(&self, tick: u64) -> Option<std::time::Duration> {
        let since = self.since?;
        Some(Self::linger(tick).saturating_sub(since.elapsed()))
    }

    /// Runs the pending rows through every window member's chain, counting them on its source
    /// (or, for a member losing events, as dropped); returns the results, tagged, for the window
    /// operator.
    fn run(&mut self, locals: &mut [Local], group: &RuleGroup) -> Vec<RecordBatch> {
        let batches = merge_equal(std::mem::take(&mut self.batches));
        let (messages, rows) = (self.messages, self.rows);
        (self.messages, self.rows, self.since) = (0, 0, None);
        let started = Instant::now();
        let mut out = Vec::new();
        for l in locals.iter_mut() {
            let m = &l.member;
            let Some(w) = &m.window else { continue };
            if l.skipping {
                m.dropped.fetch_add(messages as u64, Ordering::Relaxed);
                continue;
            }
            let (id, spread) = (m.id, w.spread);
            for result in l.run(&batches, (messages, rows), started) {
                group
                    .to_windows
                    .fetch_add(result.num_rows(), Ordering::AcqRel);
                out.push(crate::container::member::tag(result, id, spread));
            }
        }
        out
    }
}

/// Consecutive batches of one schema as one batch: events of schemaless streams whose fields
/// differ run apart, as each would alone.
fn merge_equal(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let mut runs: Vec<Vec<RecordBatch>> = Vec::new();
    for b in batches {
        match runs.last_mut() {
            Some(run) if run[0].schema_ref() == b.schema_ref() => run.push(b),
            _ => runs.push(vec![b]),
        }
    }
    runs.into_iter()
        .flat_map(|run| {
            if run.len() > 1
                && let Ok(one) = arrow::compute::concat_batches(&run[0].schema(), &run)
            {
                return vec![one];
            }
            run
        })
        .collect()
}

/// The group's time once its input ended: every window closes, and the emit operator closes
/// its rules' sinks, while stateless rules' last results may still wait for a sink.
pub(super) const INPUT_ENDED: u64 = u64::MAX;

/// The greatest common divisor of the window rules' ticks: every window of every member ends
/// on a multiple of it.
fn common_tick(ticks: impl Iterator<Item = u64>) -> Option<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    ticks.filter(|t| *t > 0).reduce(gcd)
}

/// The group's source operator: takes each event once, runs every member's chain over it, and
/// hands stateless members' results to their sinks and window members' rows on, tagged.
fn source_operator<'s>(
    scope: Scope<'s, u64>,
    group: &Arc<RuleGroup>,
) -> Stream<'s, u64, ArrowBatch> {
    let worker = scope.index();
    let mut rx = group.ingest.lock().expect("ingest lock")[worker].take();
    let group = group.clone();
    source::<_, CapacityContainerBuilder<ArrowBatch>, _, _>(scope, "RuleGroup", move |cap, info| {
        let sync = scope.worker().sync_activator_for(info.address.to_vec());
        group.activators.lock().expect("activator lock")[worker] = Some(sync);
        let retry = scope.activator_for(info.address.clone());
        // Held until the input ends; moved on with the clock while window rules are in.
        let mut cap = Some(cap);
        let mut locals: Vec<Local> = Vec::new();
        let mut seen = u64::MAX;
        let mut ended = false;
        // The window rules' common tick, and when this operator wakes itself next.
        let mut tick: Option<u64> = None;
        let mut next_tick = 0u64;
        // Since when members' sinks have held the group up.
        let mut stalled_since: Option<Instant> = None;
        // Rows read for the window rules and not yet run through their chains.
        let mut pending = WindowInput::default();
        move |output| {
            if cap.is_none() {
                return;
            }
            // Runs the pending window rows (when due, or `now`) unless the windows are behind,
            // hands the results on at the capability's time, then moves time on to the clock:
            // a window end may have passed while the rows waited.
            let mut flush = |pending: &mut WindowInput,
                             locals: &mut [Local],
                             cap: &mut Option<timely::dataflow::operators::Capability<u64>>,
                             tick: Option<u64>,
                             now: bool| {
                let (Some(t), Some(c)) = (tick, cap.as_mut()) else {
                    return;
                };
                let room = group.to_windows.load(Ordering::Acquire) < MAX_ROWS_TO_WINDOWS;
                if pending.is_empty() || !(now || (room && pending.due(t))) {
                    return;
                }
                for batch in pending.run(locals, &group) {
                    output
                        .session(&*c)
                        .give_container(&mut ArrowBatch(Some(batch)));
                }
                let clock = crate::clock::now_time();
                if clock > *c.time() {
                    c.downgrade(&clock);
                }
            };
            let generation = group.generation();
            if generation != seen {
                // Rows read before the change run with the members that read them.
                flush(&mut pending, &mut locals, &mut cap, tick, true);
                seen = generation;
                let members = group.members();
                // By member identity, so a change costs one pass however many rules.
                let mut old: HashMap<usize, Local> = std::mem::take(&mut locals)
                    .into_iter()
                    .map(|l| (Arc::as_ptr(&l.member) as usize, l))
                    .collect();
                for m in members {
                    match old.remove(&(Arc::as_ptr(&m) as usize)) {
                        Some(l) => locals.push(l),
                        None => locals.push(Local {
                            chain: chain(&m),
                            stash: SinkStash::new(if m.window.is_some() {
                                Vec::new()
                            } else {
                                m.senders()
                            }),
                            member: m,
                            clean: CLEAN_ACTIVATIONS,
                            skipping: false,
                        }),
                    }
                }
                // `old` now holds removed members: their sink queues close here.
                let new_tick = common_tick(
                    locals
                        .iter()
                        .filter_map(|l| l.member.window.as_ref().map(|w| w.tick)),
                );
                if new_tick != tick {
                    // A shorter tick must not wait for the longer one's next wake-up.
                    tick = new_tick;
                    next_tick = 0;
                }
                if tick.is_none() {
                    // The last window rule left: nobody reads what was pending for them.
                    pending = WindowInput::default();
                }
            }
            locals.iter_mut().for_each(|l| {
                l.stash.flush();
            });
            // Processing time moves on whatever the sinks do, so windows close on time; window
            // rules' rows take the time they are read at. Only when there is news (events, or
            // a window end), since every move wakes every worker.
            let now = crate::clock::now_time();
            flush(&mut pending, &mut locals, &mut cap, tick, false);
            let queued = rx.as_ref().is_some_and(|q| !q.is_empty());
            // Not past rows still pending: their windows must not close before they are in.
            if tick.is_some()
                && pending.is_empty()
                && (queued || now >= next_tick)
                && let Some(c) = cap.as_mut()
                && now > *c.time()
            {
                c.downgrade(&now);
            }
            if group.to_windows.load(Ordering::Acquire) >= MAX_ROWS_TO_WINDOWS
                || stalled(&mut locals, &mut stalled_since, &group.key)
            {
                // The windows or a sink are behind: leave events queued so the shared source
                // waits.
                retry.activate_after(RETRY);
                return;
            }
            let mut drained = false;
            // Everything queued goes through the members as one batch: each member's chain
            // then runs once per activation, however many events waited.
            let mut events = Vec::new();
            if let Some(queue) = rx.as_mut() {
                while events.len() < EVENTS_PER_ACTIVATION {
                    match next_event(queue) {
                        Next::Event(e) => events.push(e),
                        Next::Drained => {
                            drained = true;
                            break;
                        }
                        Next::Ended => {
                            ended = true;
                            break;
                        }
                    }
                }
            }
            if !events.is_empty() {
                let started = Instant::now();
                let (messages, decoded) = combine(events, &group.decoder);
                let rows = decoded.rows();
                // Logged once for the group; each member counts them as its own.
                let failed = decoded.errors.first();
                if let Some(first) = failed {
                    tracing::warn!(
                        group = %group.key,
                        rules = locals.len(),
                        errors = decoded.errors.len(),
                        "dropping malformed messages: {first}"
                    );
                }
                // Window rules read the rows with the time they were read at, stamped once for
                // all, and run them a few at a time (`WindowInput`).
                if let (Some(_), Some(c)) = (tick, cap.as_ref()) {
                    let at = crate::clock::now_time().max(*c.time()) as i64;
                    let stamped = decoded.batches.iter().map(|b| {
                        let t = Int64Array::from(vec![at; b.num_rows()]);
                        quiver_connectors::codec::json::add_column(
                            b.clone(),
                            TS_COLUMN,
                            Arc::new(t),
                        )
                    });
                    pending.push(stamped.collect(), messages);
                }
                for l in &mut locals {
                    let m = &l.member;
                    if l.skipping {
                        // A window rule's are counted when its pending rows run.
                        if m.window.is_none() {
                            m.dropped.fetch_add(messages as u64, Ordering::Relaxed);
                        }
                        continue;
                    }
                    if let Some(first) = failed {
                        m.decoder_metrics.exceptions(decoded.errors.len(), first);
                    }
                    if m.window.is_some() {
                        continue;
                    }
                    for out in l.run(&decoded.batches, (messages, rows), started) {
                        l.stash.push(&out);
                    }
                    l.stash.flush();
                }
            }
            flush(&mut pending, &mut locals, &mut cap, tick, false);
            if ended {
                rx = None;
                if !pending.is_empty() {
                    // The last rows run once the windows have room, before time ends.
                    flush(&mut pending, &mut locals, &mut cap, tick, true);
                }
                // Every window closes now, while stateless results may still wait for a sink.
                if let Some(c) = cap.as_mut() {
                    c.downgrade(&INPUT_ENDED);
                }
                if locals.iter().all(|l| l.stash.is_empty()) {
                    // Everything is handed over: let the sinks finish (window rules' once
                    // their windows close, as time ends).
                    locals.clear();
                    cap = None;
                    group.worker_ended();
                } else {
                    retry.activate_after(RETRY);
                }
                return;
            }
            if let Some(tick) = tick
                && next_tick <= now
            {
                // Time moves on without input too, so windows close on time.
                next_tick = (now / tick + 1) * tick;
                retry.activate_after(std::time::Duration::from_millis(next_tick - now));
            }
            if let Some(t) = tick
                && let Some(left) = pending.left(t)
            {
                retry.activate_after(left);
            }
            if locals.iter().any(|l| !l.skipping && !l.stash.is_empty()) {
                retry.activate_after(RETRY);
            } else if locals.iter().any(|l| !l.stash.is_empty()) {
                // Only rules losing events wait for their sinks: look again now and then.
                retry.activate_after(std::time::Duration::from_millis(50));
            } else if !drained {
                // More may be queued: come back after other dataflows had their turn.
                retry.activate();
            }
        }
    })
}
