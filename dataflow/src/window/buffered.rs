//! Windows whose bounds follow the rows (sliding, session, count, state, joins): rows buffered.

use std::collections::VecDeque;
use std::sync::Arc;

use super::groups::{FixedMap, fixed_map};
use super::{Emission, GroupTable};
use crate::state::{OpState, one_column};
use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, UInt32Array};
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::{
    AggregateSpec, BEGIN_COLUMN, EMIT_COLUMN, PARTITION_COLUMN, TRIGGER_COLUMN, TS_COLUMN,
    WindowKind,
};

/// A prepared row kept by a buffering window: its batch and position.
#[derive(Clone)]
struct Row {
    ts: i64,
    batch: RecordBatch,
    row: u32,
}

/// Sliding, session, count and state windows: they decide their bounds from the sequence of
/// all rows, so they run on one worker and keep the rows of open windows.
pub struct BufferedWindows {
    spec: Arc<AggregateSpec>,
    rows: VecDeque<Row>,
    /// Sliding windows with a delay: (trigger time, emit at) waiting for time to pass.
    pending: VecDeque<i64>,
    /// Count windows: rows since the last emission check.
    count: u64,
    /// Session windows: first row time, reported start, last row time.
    session: Option<(i64, i64, i64)>,
    /// State windows: per partition, the rows of the open window and its start.
    states: FixedMap<Vec<u8>, (i64, Vec<Row>)>,
    pub(crate) bad_rows: usize,
    /// Runs on a window's rows before they are grouped (stream-stream joins: the join, table
    /// joins, WHERE and the window's preparation); `None` when rows come prepared.
    pub(super) before: Option<crate::chain::Chain>,
    /// Tumbling and hopping windows kept as rows (joins): windows starting before this were
    /// emitted.
    next_start: i64,
    /// Event time: an undelayed sliding window's trigger T waits until every row up to T is
    /// in, then covers `[T - size, T]` (eKuiper's event-time trigger).
    pub(super) event_time: bool,
    /// A stream join's sliding window with `OVER (WHEN ...)`: the condition, evaluated on the
    /// raw rows of each stream as they come (the rows of a join are prepared only later).
    pub(super) raw_trigger: Option<super::Prepare>,
}

impl BufferedWindows {
    /// True when no row is buffered and no window is open or pending.
    pub(super) fn is_idle(&self) -> bool {
        self.rows.is_empty() && self.states.is_empty() && self.pending.is_empty()
    }

    pub(super) fn new(spec: Arc<AggregateSpec>) -> Self {
        BufferedWindows {
            spec,
            rows: VecDeque::new(),
            pending: VecDeque::new(),
            count: 0,
            session: None,
            states: fixed_map(),
            bad_rows: 0,
            before: None,
            event_time: false,
            raw_trigger: None,
            next_start: i64::MIN,
        }
    }

    fn aggregate(&mut self, rows: &[Row], start: i64, end: i64) -> Option<Emission> {
        let batch = crate::batch::rows_to_batch(rows.iter().map(|r| (&r.batch, r.row)))?;
        let batch = match self.before.as_mut() {
            Some(chain) => {
                // A bug in a joined window's operators fails that window, not the worker (and
                // every rule on it).
                let rows = batch.num_rows();
                let run = std::panic::AssertUnwindSafe(|| {
                    crate::chain::BatchOperator::process_batch(chain, batch)
                });
                match std::panic::catch_unwind(run) {
                    Ok(out) => out?,
                    Err(_) => {
                        tracing::error!("operator panicked, a window of {rows} rows dropped");
                        self.bad_rows += rows;
                        return None;
                    }
                }
            }
            None => batch,
        };
        let mut table = GroupTable::new(self.spec.clone());
        table.update(&batch);
        self.bad_rows += table.bad_rows;
        table
            .finish(start, end)
            .map(|batch| Emission { end, batch })
    }

    pub(super) fn insert(&mut self, batch: &RecordBatch) -> Vec<Emission> {
        let Some(ts) = batch.column_by_name(TS_COLUMN) else {
            return Vec::new();
        };
        let ts = ts.as_primitive::<arrow::datatypes::Int64Type>().clone();
        let raw_triggers = self.raw_trigger.as_ref().and_then(|p| {
            let mut ctx = quiver_compiler::eval::EvalContext::new(batch.num_rows());
            p.trigger_mask(batch, &mut ctx)
        });
        let flag = |name: &str, r: usize| match (&raw_triggers, name == TRIGGER_COLUMN) {
            (Some(mask), true) => mask.value(r),
            _ => batch
                .column_by_name(name)
                .map(|c| c.as_boolean().value(r))
                .unwrap_or(true),
        };
        let mut out = Vec::new();
        for r in 0..batch.num_rows() {
            let row = Row {
                ts: ts.value(r),
                batch: batch.clone(),
                row: r as u32,
            };
            match self.spec.window.kind {
                WindowKind::Count { size, step } => {
                    self.rows.push_back(row);
                    self.count += 1;
                    if self.count.is_multiple_of(step) {
                        self.count = 0;
                        if self.rows.len() as u64 >= size {
                            let skip = self.rows.len() - size as usize;
                            let window: Vec<Row> = self.rows.iter().skip(skip).cloned().collect();
                            let (start, end) = (window[0].ts, window[window.len() - 1].ts);
                            out.extend(self.aggregate(&window, start, end));
                            // Keep the last size-1 rows for overlapping windows.
                            while self.rows.len() as u64 > size - 1 {
                                self.rows.pop_front();
                            }
                        }
                    }
                }
                WindowKind::Sliding { size, delay } => {
                    let (size, delay) = (size as i64, delay as i64);
                    let t = row.ts;
                    let triggers = flag(TRIGGER_COLUMN, r);
                    self.rows.push_back(row);
                    // Rows that no future window can include.
                    let horizon = self.pending.front().copied().unwrap_or(t).min(t) - size;
                    while self.rows.front().is_some_and(|x| x.ts < horizon) {
                        self.rows.pop_front();
                    }
                    // Delayed windows whose end has passed emit before this row joins them.
                    out.extend(self.advance(t));
                    if triggers {
                        if delay == 0 && !self.event_time {
                            let window: Vec<Row> = self
                                .rows
                                .iter()
                                .filter(|x| x.ts >= t - size && x.ts <= t)
                                .cloned()
                                .collect();
                            out.extend(self.aggregate(&window, t - size, t));
                        } else {
                            self.pending.push_back(t);
                        }
                    }
                }
                WindowKind::Session { max, timeout } => {
                    let (max, timeout) = (max as i64, timeout as i64);
                    let t = row.ts;
                    let mut cut_at_tick = None;
                    if let Some((first, _, last)) = self.session {
                        let gap_end = last + timeout;
                        let tick = session_tick(first, max);
                        if t - last > timeout || t > tick {
                            let by_tick = t > tick && tick < gap_end;
                            let end = if by_tick { tick } else { gap_end };
                            out.extend(self.close_session(end, by_tick));
                            cut_at_tick = by_tick.then_some(end);
                        }
                    }
                    match &mut self.session {
                        Some((_, _, last)) => *last = t,
                        // A session cut by a tick goes on from the tick.
                        None => self.session = Some((t, cut_at_tick.unwrap_or(t), t)),
                    }
                    self.rows.push_back(row);
                }
                WindowKind::State { single } => {
                    let key = batch
                        .column_by_name(PARTITION_COLUMN)
                        .map(|c| c.as_binary::<i32>().value(r).to_vec())
                        .unwrap_or_default();
                    let begin = flag(BEGIN_COLUMN, r);
                    let emit = flag(EMIT_COLUMN, r);
                    let t = row.ts;
                    let open = self.states.contains_key(&key);
                    if !open {
                        if begin {
                            self.states.insert(key, (t, vec![row]));
                        }
                    } else if single {
                        if emit {
                            let (start, rows) = self.states.remove(&key).expect("open state");
                            out.extend(self.aggregate(&rows, start, t));
                            self.states.insert(key, (t, vec![row]));
                        } else {
                            self.states.get_mut(&key).expect("open").1.push(row);
                        }
                    } else {
                        self.states.get_mut(&key).expect("open").1.push(row);
                        if emit {
                            let (start, rows) = self.states.remove(&key).expect("open state");
                            out.extend(self.aggregate(&rows, start, t));
                        }
                    }
                }
                // Kept as rows only when joined at the end (see `Windows::joined`).
                WindowKind::Tumbling { .. } | WindowKind::Hopping { .. } => {
                    self.rows.push_back(row);
                }
                WindowKind::Rows => {}
            }
        }
        out
    }

    /// Ends the open session at `end`; rows from `end` on stay for the next one (a session
    /// cut by its maximum duration continues from the tick).
    fn close_session(&mut self, end: i64, by_tick: bool) -> Vec<Emission> {
        let Some((_, start, _)) = self.session.take() else {
            return Vec::new();
        };
        let keep_from = self
            .rows
            .iter()
            .position(|r| r.ts >= end)
            .unwrap_or(self.rows.len());
        let window: Vec<Row> = self.rows.drain(..keep_from).collect();
        if let (true, Some(first), Some(last)) = (by_tick, self.rows.front(), self.rows.back()) {
            self.session = Some((first.ts, end, last.ts));
        } else if let (Some(first), Some(last)) = (self.rows.front(), self.rows.back()) {
            self.session = Some((first.ts, first.ts, last.ts));
        }
        self.aggregate(&window, start, end).into_iter().collect()
    }

    pub(super) fn advance(&mut self, frontier: i64) -> Vec<Emission> {
        let mut out = Vec::new();
        match self.spec.window.kind {
            WindowKind::Sliding { size, delay } => {
                let (size, delay) = (size as i64, delay as i64);
                while let Some(&t) = self.pending.front() {
                    // Event time without a delay: rows at T itself may still come while the
                    // frontier is T, and they belong to the window (eKuiper's
                    // event_window_trigger.go evaluates once the watermark passes T).
                    let undelayed = self.event_time && delay == 0;
                    if t + delay > frontier || (undelayed && t >= frontier) {
                        break;
                    }
                    self.pending.pop_front();
                    let window: Vec<Row> = self
                        .rows
                        .iter()
                        .filter(|x| {
                            x.ts >= t - size && (x.ts < t + delay || undelayed && x.ts == t)
                        })
                        .cloned()
                        .collect();
                    out.extend(self.aggregate(&window, t - size, t + delay));
                }
                if frontier == i64::MAX {
                    self.rows.clear();
                }
            }
            WindowKind::Session { max, timeout } => {
                let (max, timeout) = (max as i64, timeout as i64);
                while let Some((first, _, last)) = self.session {
                    let gap_end = last + timeout;
                    let tick = session_tick(first, max);
                    let end = gap_end.min(tick);
                    if end > frontier {
                        break;
                    }
                    out.extend(self.close_session(end, end == tick && end != gap_end));
                }
            }
            WindowKind::Tumbling { size } => out.extend(self.advance_aligned(frontier, size, size)),
            WindowKind::Hopping { size, hop } => {
                out.extend(self.advance_aligned(frontier, size, hop))
            }
            _ => {}
        }
        out
    }

    /// Tumbling and hopping windows over buffered rows (in time order): emits every window
    /// that ends by `frontier` and holds rows, oldest first, and drops rows no later window
    /// includes.
    fn advance_aligned(&mut self, frontier: i64, size: u64, hop: u64) -> Vec<Emission> {
        let (size, hop) = (size as i64, hop as i64);
        let mut out = Vec::new();
        // The first window (a multiple of hop) that includes time t.
        let first_window = |t: i64| (t - size).div_euclid(hop) * hop + hop;
        while let Some(oldest) = self.rows.front().map(|r| r.ts) {
            let start = first_window(oldest).max(self.next_start);
            if start.saturating_add(size) > frontier {
                break;
            }
            let end = start + size;
            let window: Vec<Row> = self
                .rows
                .iter()
                .filter(|r| r.ts >= start && r.ts < end)
                .cloned()
                .collect();
            out.extend(self.aggregate(&window, start, end));
            self.next_start = start + hop;
            while self.rows.front().is_some_and(|r| r.ts < self.next_start) {
                self.rows.pop_front();
            }
        }
        out
    }

    /// The state (what a checkpoint writes): buffered rows, pending triggers, the count, the
    /// open session and the open state windows, and the state of the per-window chain (the
    /// WHERE and preparation of an event-time window; the rule's first row time). A stream
    /// join's rows are buffered here, every stream's, so its open windows are saved whole.
    pub(super) fn save(&self) -> Result<OpState, String> {
        let mut state = OpState::default();
        if let Some(before) = &self.before
            && let Some(chain) = crate::chain::BatchOperator::save(before)?
        {
            state.push_number("before", 1);
            state.nest("before", chain);
        }
        state.push_number("bad_rows", self.bad_rows as i64);
        state.push_number("count", self.count as i64);
        state.push_number("next_start", self.next_start);
        if let Some((first, start, last)) = self.session {
            state.push_number("session.first", first);
            state.push_number("session.start", start);
            state.push_number("session.last", last);
        }
        save_rows(&mut state, "rows", self.rows.iter())?;
        state.push_batch(
            "pending",
            one_column(Arc::new(Int64Array::from_iter_values(
                self.pending.iter().copied(),
            )))?,
        );
        let mut states: Vec<_> = self.states.iter().collect();
        states.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let keys: ArrayRef = Arc::new(BinaryArray::from_iter_values(states.iter().map(|e| e.0)));
        let starts: ArrayRef = Arc::new(Int64Array::from_iter_values(states.iter().map(|e| e.1.0)));
        let lens: ArrayRef = Arc::new(UInt32Array::from_iter_values(
            states.iter().map(|e| e.1.1.len() as u32),
        ));
        state.push_batch(
            "states",
            RecordBatch::try_from_iter([("key", keys), ("start", starts), ("len", lens)])
                .map_err(|e| e.to_string())?,
        );
        save_rows(
            &mut state,
            "state_rows",
            states.iter().flat_map(|e| e.1.1.iter()),
        )?;
        Ok(state)
    }

    /// Replaces the buffered rows and open windows with saved ones.
    pub(super) fn load(&mut self, state: &OpState) -> Result<(), String> {
        if state.number("before") == Some(1)
            && let Some(before) = self.before.as_mut()
        {
            crate::chain::BatchOperator::load(before, &state.inner("before"))?;
        }
        self.bad_rows = state.need_number("bad_rows")? as usize;
        self.count = state.need_number("count")? as u64;
        self.next_start = state.need_number("next_start")?;
        self.session = match (
            state.number("session.first"),
            state.number("session.start"),
            state.number("session.last"),
        ) {
            (Some(f), Some(s), Some(l)) => Some((f, s, l)),
            _ => None,
        };
        self.rows = load_rows(state, "rows")?.into();
        let pending = state.need_batch("pending")?.column(0);
        self.pending = pending
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or("window state: bad pending triggers")?
            .values()
            .iter()
            .copied()
            .collect();
        let index = state.need_batch("states")?;
        let (keys, starts, lens) = match (
            index
                .column_by_name("key")
                .and_then(|c| c.as_binary_opt::<i32>()),
            index
                .column_by_name("start")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>()),
            index
                .column_by_name("len")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt32Type>()),
        ) {
            (Some(k), Some(s), Some(l)) => (k, s, l),
            _ => return Err("window state: bad state windows".into()),
        };
        let mut rows = load_rows(state, "state_rows")?.into_iter();
        self.states.clear();
        for i in 0..index.num_rows() {
            let part: Vec<Row> = rows.by_ref().take(lens.value(i) as usize).collect();
            if part.len() != lens.value(i) as usize {
                return Err("window state: state window rows missing".into());
            }
            self.states
                .insert(keys.value(i).to_vec(), (starts.value(i), part));
        }
        Ok(())
    }

    pub(super) fn next_deadline(&self) -> Option<i64> {
        match self.spec.window.kind {
            WindowKind::Sliding { delay, .. } => self.pending.front().map(|t| t + delay as i64),
            WindowKind::Session { max, timeout } => self.session.map(|(first, _, last)| {
                (last + timeout as i64).min(session_tick(first, max as i64))
            }),
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                let hop = match self.spec.window.kind {
                    WindowKind::Hopping { hop, .. } => hop as i64,
                    _ => size as i64,
                };
                self.rows.front().map(|r| {
                    ((r.ts - size as i64).div_euclid(hop) * hop + hop).max(self.next_start)
                        + size as i64
                })
            }
            _ => None,
        }
    }
}

/// Saves rows under `name`: their batches (see [`OpState::push_rows`]) and their times.
fn save_rows<'a>(
    state: &mut OpState,
    name: &str,
    rows: impl Iterator<Item = &'a Row> + Clone,
) -> Result<(), String> {
    state.push_rows(name, rows.clone().map(|r| (&r.batch, r.row)))?;
    let ts = Int64Array::from_iter_values(rows.map(|r| r.ts));
    state.push_batch(format!("{name}.ts"), one_column(Arc::new(ts))?);
    Ok(())
}

/// The rows [`save_rows`] saved under `name`.
fn load_rows(state: &OpState, name: &str) -> Result<Vec<Row>, String> {
    let rows = state.rows(name)?;
    let ts = state.need_batch(&format!("{name}.ts"))?.column(0);
    let ts = ts
        .as_primitive_opt::<arrow::datatypes::Int64Type>()
        .filter(|t| t.len() == rows.len())
        .ok_or("window state: bad row times")?;
    Ok(rows
        .into_iter()
        .zip(ts.values())
        .map(|((batch, row), &ts)| Row { ts, batch, row })
        .collect())
}

/// The max-duration tick that can end a session whose first row came at `first`: ticks are
/// multiples of `max`, and one cuts the session only after the session lived through a whole
/// period before it (eKuiper's rule: tick - max > first).
fn session_tick(first: i64, max: i64) -> i64 {
    (first.div_euclid(max) + 2) * max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{aggregate, ints_of, prepared};

    /// A rule counting the rows of each window of `window`, its windows and its spec.
    fn counting(window: &str) -> (BufferedWindows, Arc<AggregateSpec>) {
        let spec = aggregate(&format!("SELECT count(*) AS c FROM s GROUP BY {window}"));
        (BufferedWindows::new(spec.clone()), spec)
    }

    /// Inserts `rows` into `w`; `(start, end, count)` of each window that closed.
    fn insert(
        w: &mut BufferedWindows,
        spec: &Arc<AggregateSpec>,
        rows: &[(&str, i64, i64)],
    ) -> Vec<(i64, i64, i64)> {
        windows(&w.insert(&prepared(spec, rows)))
    }

    /// `(start, end, count)` of each emission.
    fn windows(out: &[Emission]) -> Vec<(i64, i64, i64)> {
        out.iter()
            .map(|e| {
                let one = |name| ints_of(&e.batch, name)[0].expect("a value");
                (one("__window_start"), e.end, one("__agg_0"))
            })
            .collect()
    }

    #[test]
    fn a_count_window_closes_on_its_last_row() {
        let (mut w, spec) = counting("COUNTWINDOW(3)");
        assert!(insert(&mut w, &spec, &[("a", 1, 1000), ("a", 2, 2000)]).is_empty());
        let out = insert(&mut w, &spec, &[("a", 3, 3000), ("a", 4, 4000)]);
        assert_eq!(out, [(1000, 3000, 3)]);
        let out = insert(&mut w, &spec, &[("a", 5, 5000), ("a", 6, 6000)]);
        assert_eq!(out, [(4000, 6000, 3)]);
    }

    #[test]
    fn a_session_ends_a_timeout_after_its_last_row() {
        let (mut w, spec) = counting("SESSIONWINDOW(ss, 60, 2)");
        assert!(insert(&mut w, &spec, &[("a", 1, 1000), ("a", 2, 2000)]).is_empty());
        // 5000 comes more than 2 s after 2000: the first session ended at 4000.
        let out = insert(&mut w, &spec, &[("a", 3, 5000)]);
        assert_eq!(out, [(1000, 4000, 2)]);
        assert!(w.advance(6_999).is_empty());
        assert_eq!(windows(&w.advance(7_000)), [(5000, 7000, 1)]);
        assert!(w.is_idle());
    }

    #[test]
    fn a_sliding_window_emits_the_rows_of_the_last_size_on_every_row() {
        let (mut w, spec) = counting("SLIDINGWINDOW(ss, 5)");
        let out = insert(
            &mut w,
            &spec,
            &[("a", 1, 1000), ("a", 2, 3000), ("a", 3, 7000)],
        );
        assert_eq!(out, [(-4000, 1000, 1), (-2000, 3000, 2), (2000, 7000, 2)]);
    }

    #[test]
    fn a_state_window_opens_on_its_begin_condition_and_closes_on_its_emit_condition() {
        let (mut w, spec) = counting("STATEWINDOW(v = 1, v = 3)");
        let out = insert(
            &mut w,
            &spec,
            &[
                ("a", 0, 1000),
                ("a", 1, 2000),
                ("a", 2, 3000),
                ("a", 3, 4000),
                ("a", 2, 5000),
            ],
        );
        assert_eq!(out, [(2000, 4000, 3)]);
        assert!(
            w.is_idle(),
            "a row that does not begin a window is not kept"
        );
    }
}
