//! Tumbling and hopping windows: incremental, one group table per open window.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Emission, GroupTable};
use crate::state::OpState;
use arrow::array::{AsArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::{AggregateSpec, TS_COLUMN};

/// Tumbling (`hop == size`) and hopping windows, aligned to natural time: every window ends at
/// a multiple of the hop since the epoch (UTC) and covers `[end - size, end)`, as eKuiper aligns
/// window ends (`internal/topo/node/window_op.go`). With `size` a multiple of `hop` the starts
/// are multiples of the hop too.
pub struct AlignedWindows {
    spec: Arc<AggregateSpec>,
    pub(super) size: i64,
    hop: i64,
    pub(super) open: BTreeMap<i64, GroupTable>,
    pub(crate) bad_rows: usize,
    /// Groups in the last window closed: the room a new window's table starts with.
    last_groups: usize,
    /// Event time: eKuiper's trigger, which fires every window end from the first row's on.
    trigger: Option<EventTrigger>,
}

/// eKuiper's event-time trigger (`topo/node/event_window_trigger.go`, `window_op.go`): once the
/// first row is seen, every window end at or below the watermark fires in turn, empty windows
/// included (sent as `[]`). The first window's `window_start()` is eKuiper's first trigger
/// time: the rule's first row's time for a tumbling window, that minus the hop for a hopping
/// one (the window's own start when that is not positive); later windows report their own
/// start. With groups spread over workers, every worker takes the rule's first row from the
/// batches' stamp ([`super::first_row`]), not from the first row of its own groups.
#[derive(Debug, Default)]
struct EventTrigger {
    /// The next window end to fire, once a row was seen.
    next_end: Option<i64>,
    /// The rule's first row time until the first window fires, when this worker's first
    /// window is the rule's first window.
    first: Option<i64>,
}

/// At most this many empty windows fire in a row: a gap of a year in 1 s windows would
/// otherwise send tens of millions of `[]`. Beyond it the trigger jumps to the next window
/// that holds rows, and says so in the log.
const MAX_EMPTY_WINDOWS: usize = 10_000;

impl AlignedWindows {
    pub(super) fn new(spec: Arc<AggregateSpec>, size: u64, hop: u64, event_time: bool) -> Self {
        AlignedWindows {
            spec,
            size: size as i64,
            hop: hop as i64,
            open: BTreeMap::new(),
            bad_rows: 0,
            last_groups: 0,
            trigger: event_time.then(EventTrigger::default),
        }
    }

    pub(super) fn insert(&mut self, batch: &RecordBatch) {
        let Some(ts) = batch.column_by_name(TS_COLUMN) else {
            return;
        };
        let ts = ts.as_primitive::<arrow::datatypes::Int64Type>();
        let (size, hop) = (self.size, self.hop);
        // Window starts containing t: s <= t < s + size with s + size a multiple of hop; the
        // latest is t minus how far t + size is past such a multiple.
        let last_start = |t: i64| t - (t + size).rem_euclid(hop);
        if let Some(trigger) = self.trigger.as_mut()
            && trigger.next_end.is_none()
            && let Some(&own) = ts.values().iter().min()
        {
            // This worker's first window ends at the first aligned end after its first row.
            trigger.next_end = Some((own.div_euclid(hop) + 1) * hop);
            // That is the rule's first window when the rule's first row (stamped by the
            // reading worker; this worker's own without a stamp) ends there too: its start is
            // then the rule's first row, on every worker, as on eKuiper's one window operator.
            // A worker whose groups start later reports its windows' own starts.
            let rule = super::first_row::first_row(batch).map_or(own, |f| f.min(own));
            trigger.first = (rule.div_euclid(hop) == own.div_euclid(hop)).then_some(rule);
        }
        let first = ts.value(0);
        let uniform = size == hop && {
            let s = last_start(first);
            ts.values().iter().all(|&t| t >= s && t < s + size)
        };
        if uniform {
            let s = last_start(first);
            self.table(s).update(batch);
            return;
        }
        let mut per_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (r, &t) in ts.values().iter().enumerate() {
            let mut s = last_start(t);
            while s + size > t {
                per_window.entry(s).or_default().push(r as u32);
                s -= hop;
            }
        }
        for (s, rows) in per_window {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                match take_record_batch(batch, &UInt32Array::from(rows)) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            self.table(s).update(&part);
        }
    }

    fn table(&mut self, start: i64) -> &mut GroupTable {
        let (spec, groups) = (&self.spec, self.last_groups);
        self.open
            .entry(start)
            .or_insert_with(|| GroupTable::with_capacity(spec.clone(), groups))
    }

    pub(super) fn advance(&mut self, frontier: i64) -> Vec<Emission> {
        if self.trigger.is_some() {
            return self.advance_event_time(frontier);
        }
        let mut out = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            let end = start.saturating_add(self.size);
            if end > frontier {
                break;
            }
            let table = self.open.remove(&start).expect("first key exists");
            self.bad_rows += table.bad_rows;
            self.last_groups = table.len();
            if let Some(batch) = table.finish(start, end) {
                out.push(Emission { end, batch });
            }
        }
        out
    }
}

impl AlignedWindows {
    /// The state (what a checkpoint writes): every open window's table, the event-time
    /// trigger and the counters.
    pub(super) fn save(&self) -> Result<OpState, String> {
        let mut state = OpState::default();
        state.push_number("bad_rows", self.bad_rows as i64);
        state.push_number("last_groups", self.last_groups as i64);
        if let Some(t) = &self.trigger {
            if let Some(end) = t.next_end {
                state.push_number("trigger.next_end", end);
            }
            if let Some(first) = t.first {
                state.push_number("trigger.first", first);
            }
        }
        state.push_number("open", self.open.len() as i64);
        for (k, (start, table)) in self.open.iter().enumerate() {
            state.push_number(format!("start.{k}"), *start);
            state.nest(&format!("open.{k}"), table.save()?);
        }
        Ok(state)
    }

    /// Replaces the open windows with saved ones.
    pub(super) fn load(&mut self, state: &OpState) -> Result<(), String> {
        self.bad_rows = state.need_number("bad_rows")? as usize;
        self.last_groups = state.need_number("last_groups")? as usize;
        if let Some(t) = self.trigger.as_mut() {
            t.next_end = state.number("trigger.next_end");
            t.first = state.number("trigger.first");
        }
        self.open.clear();
        for k in 0..state.need_number("open")? {
            let start = state.need_number(&format!("start.{k}"))?;
            let mut table = GroupTable::new(self.spec.clone());
            table.load(&state.inner(&format!("open.{k}")))?;
            self.open.insert(start, table);
        }
        Ok(())
    }

    /// Fires every window end up to `frontier`, in turn, while rows wait in a later window (at
    /// the end of input the last window with rows is the last to fire).
    fn advance_event_time(&mut self, frontier: i64) -> Vec<Emission> {
        let mut out = Vec::new();
        let (size, hop) = (self.size, self.hop);
        let trigger = self.trigger.as_mut().expect("event time");
        let Some(mut end) = trigger.next_end else {
            return out;
        };
        let mut empty_run = 0usize;
        while let Some((&next_start, _)) = self.open.first_key_value() {
            // Never leave a window with rows behind (a row older than the first one).
            end = end.min(next_start + size);
            if end > frontier {
                break;
            }
            let start = end - size;
            let reported = match trigger.first.take() {
                Some(first) if size == hop && first > 0 => first,
                Some(first) if size != hop && first - hop > 0 => first - hop,
                _ => start,
            };
            match self.open.remove(&start) {
                Some(table) => {
                    empty_run = 0;
                    self.bad_rows += table.bad_rows;
                    self.last_groups = table.len();
                    let batch = table
                        .finish(reported, end)
                        .unwrap_or_else(crate::container::empty_emission);
                    out.push(Emission { end, batch });
                }
                None if empty_run >= MAX_EMPTY_WINDOWS => {
                    let skip_to = next_start + size;
                    tracing::warn!(
                        "event-time window: more than {MAX_EMPTY_WINDOWS} empty windows in a row, \
                         skipping to the window ending at {skip_to}"
                    );
                    end = skip_to;
                    empty_run = 0;
                    continue;
                }
                None => {
                    empty_run += 1;
                    out.push(Emission {
                        end,
                        batch: crate::container::empty_emission(),
                    });
                }
            }
            end += hop;
        }
        trigger.next_end = Some(end);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{aggregate, ints_of, prepared, strings_of, text};

    /// An emission's end, its groups' `k` and their counts.
    type Counts = (i64, Vec<Option<String>>, Vec<Option<i64>>);

    fn counts(out: &[Emission]) -> Vec<Counts> {
        out.iter()
            .map(|e| {
                (
                    e.end,
                    strings_of(&e.batch, "k"),
                    ints_of(&e.batch, "__agg_0"),
                )
            })
            .collect()
    }

    #[test]
    fn a_tumbling_window_closes_at_its_end_and_a_row_at_the_end_opens_the_next() {
        let spec = aggregate("SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)");
        let mut w = AlignedWindows::new(spec.clone(), 10_000, 10_000, false);
        w.insert(&prepared(
            &spec,
            &[
                ("a", 1, 1000),
                ("b", 1, 2000),
                ("a", 1, 9999),
                ("a", 1, 10_000),
            ],
        ));
        assert!(w.advance(9_999).is_empty());
        let first = w.advance(10_000);
        assert_eq!(
            counts(&first),
            [(10_000, text(&["a", "b"]), vec![Some(2), Some(1)])]
        );
        assert_eq!(
            ints_of(&first[0].batch, "__window_start"),
            [Some(0), Some(0)]
        );
        let second = w.advance(20_000);
        assert_eq!(counts(&second), [(20_000, text(&["a"]), vec![Some(1)])]);
        assert!(w.open.is_empty());
    }

    #[test]
    fn a_hopping_window_counts_a_row_in_every_window_that_covers_it() {
        let spec = aggregate("SELECT k, count(*) AS c FROM s GROUP BY k, HOPPINGWINDOW(ss, 10, 5)");
        let mut w = AlignedWindows::new(spec.clone(), 10_000, 5_000, false);
        w.insert(&prepared(&spec, &[("a", 1, 7000), ("a", 1, 12_000)]));
        assert_eq!(
            counts(&w.advance(15_000)),
            [
                (10_000, text(&["a"]), vec![Some(1)]),
                (15_000, text(&["a"]), vec![Some(2)]),
            ]
        );
        assert_eq!(
            counts(&w.advance(20_000)),
            [(20_000, text(&["a"]), vec![Some(1)])]
        );
    }

    #[test]
    fn event_time_fires_every_window_end_in_turn_empty_ones_included() {
        let spec = aggregate("SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 5)");
        let mut w = AlignedWindows::new(spec.clone(), 5_000, 5_000, true);
        w.insert(&prepared(&spec, &[("a", 1, 1000), ("a", 1, 2000)]));
        w.insert(&prepared(&spec, &[("b", 1, 16_000)]));
        let out = w.advance(i64::MAX);
        let shape: Vec<(i64, usize)> = out.iter().map(|e| (e.end, e.batch.num_rows())).collect();
        assert_eq!(shape, [(5_000, 1), (10_000, 0), (15_000, 0), (20_000, 1)]);
        assert_eq!(ints_of(&out[0].batch, "__window_start"), [Some(1000)]);
        assert_eq!(ints_of(&out[3].batch, "__window_start"), [Some(15_000)]);
    }
    /// Rows of one batch: (k, v, ts).
    type Rows<'a> = &'a [(&'a str, i64, i64)];

    /// Each of `batches`, stamped by the reading worker, on one worker or (`spread`) split by
    /// key over two (`a` and `b` on worker 0, the others on worker 1); every group of every
    /// emission as (end, key, window start), sorted.
    fn run_on_workers(
        sql: &str,
        (size, hop): (u64, u64),
        batches: &[Rows<'_>],
        spread: bool,
    ) -> Vec<(i64, String, i64)> {
        let spec = aggregate(sql);
        let mut stamp = crate::window::FirstRowStamp::default();
        let mut workers = [
            AlignedWindows::new(spec.clone(), size, hop, true),
            AlignedWindows::new(spec.clone(), size, hop, true),
        ];
        for rows in batches {
            let batch = stamp.stamp(prepared(&spec, rows));
            let keys = strings_of(&batch, "k");
            for (w, worker) in workers.iter_mut().enumerate() {
                let mine: Vec<u32> = (0..keys.len() as u32)
                    .filter(|&r| {
                        let on_first = matches!(keys[r as usize].as_deref(), Some("a" | "b"));
                        let target = usize::from(spread && !on_first);
                        target == w
                    })
                    .collect();
                if !mine.is_empty() {
                    worker.insert(&take_record_batch(&batch, &UInt32Array::from(mine)).unwrap());
                }
            }
        }
        let mut out = Vec::new();
        for worker in &mut workers {
            for e in worker.advance(i64::MAX) {
                let keys = strings_of(&e.batch, "k");
                let starts = ints_of(&e.batch, "__window_start");
                for (k, ws) in keys.into_iter().zip(starts) {
                    out.push((e.end, k.expect("a key"), ws.expect("a start")));
                }
            }
        }
        out.sort();
        out
    }

    /// One worker and two workers emit `expected` (end, key, window start) for `batches`.
    fn assert_spread_like_one(
        sql: &str,
        sizes: (u64, u64),
        batches: &[Rows<'_>],
        expected: &[(i64, &str, i64)],
    ) {
        let expected: Vec<(i64, String, i64)> = expected
            .iter()
            .map(|&(end, k, ws)| (end, k.to_string(), ws))
            .collect();
        assert_eq!(run_on_workers(sql, sizes, batches, false), expected);
        assert_eq!(run_on_workers(sql, sizes, batches, true), expected);
    }

    #[test]
    fn spread_groups_start_the_first_window_at_the_rules_first_row_as_one_worker_does() {
        // Worker 1's first row (c at 1600) is after the rule's first (a at 1250); d's first row
        // is in the second window, whose start is its own.
        assert_spread_like_one(
            "SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 1)",
            (1000, 1000),
            &[
                &[("a", 1, 1250), ("c", 1, 1600)],
                &[("b", 1, 1700), ("d", 1, 2100)],
            ],
            &[
                (2000, "a", 1250),
                (2000, "b", 1250),
                (2000, "c", 1250),
                (3000, "d", 2000),
            ],
        );
    }

    #[test]
    fn spread_groups_of_a_hopping_window_start_the_first_window_a_hop_before_the_rules_first_row() {
        // c's worker sees its first row only in the second batch, still in the first window.
        assert_spread_like_one(
            "SELECT k, count(*) AS c FROM s GROUP BY k, HOPPINGWINDOW(ss, 2, 1)",
            (2000, 1000),
            &[&[("a", 1, 5250)], &[("c", 1, 5600)]],
            &[
                (6000, "a", 4250),
                (6000, "c", 4250),
                (7000, "a", 5000),
                (7000, "c", 5000),
            ],
        );
    }
}
