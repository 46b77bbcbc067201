//! Event time: the watermark, and the rows waiting for it, kept by the reading worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use quiver_compiler::window::TS_COLUMN;

use crate::state::OpState;

/// A joined stream that sent nothing for this long (wall time) no longer holds the watermark
/// back, as Flink's `withIdleness`: the other streams' times move it; the idle stream's rows,
/// when it speaks again, count once more (those behind the watermark by then are late).
pub const IDLE_AFTER: Duration = Duration::from_secs(10);

/// At most this many rows wait for the watermark (a far-future row on one stream, or one
/// stream far behind the others, would otherwise grow the buffer without bound). Beyond it the
/// watermark moves up to release every waiting row, and says so in the log.
pub const MAX_WAITING_ROWS: usize = 1 << 20;

/// Event time, kept by worker 0 for the whole rule: rows wait, sorted by time, until the
/// watermark passes them (eKuiper's watermark operator), and rows behind it are dropped.
pub struct Watermark {
    field: String,
    format: Option<String>,
    tolerance: i64,
    last: i64,
    /// The latest time seen on each stream.
    max_seen: Vec<i64>,
    /// When each stream last sent a row (wall time), for idleness.
    seen_at: Vec<Option<Instant>>,
    started: Instant,
    idle_after: Duration,
    waiting: Vec<RecordBatch>,
    waiting_rows: usize,
    late: Arc<AtomicU64>,
}

impl Watermark {
    /// A watermark over `sources` streams, reading each row's time from `field` (parsed with
    /// `format` when it is a string), `tolerance` ms behind the latest time seen; rows behind it
    /// are counted in `late`.
    pub fn new(
        field: String,
        format: Option<String>,
        tolerance: i64,
        sources: usize,
        late: Arc<AtomicU64>,
    ) -> Self {
        Watermark {
            field,
            format,
            tolerance,
            last: i64::MIN,
            max_seen: vec![i64::MIN; sources.max(1)],
            seen_at: vec![None; sources.max(1)],
            started: Instant::now(),
            idle_after: IDLE_AFTER,
            waiting: Vec::new(),
            waiting_rows: 0,
            late,
        }
    }

    /// Sets how long a stream may stay silent before it stops holding the watermark.
    pub fn with_idle_after(mut self, idle_after: Duration) -> Self {
        self.idle_after = idle_after;
        self
    }

    /// The slowest stream's latest time, over the streams that are not idle (a stream is
    /// active while it sent a row within `idle_after`, or, before its first row, while the
    /// rule is younger than that).
    fn slowest(&self, now: Instant) -> i64 {
        let active = |i: usize| match self.seen_at[i] {
            Some(at) => now.duration_since(at) <= self.idle_after,
            None => now.duration_since(self.started) <= self.idle_after,
        };
        (0..self.max_seen.len())
            .filter(|&i| active(i))
            .map(|i| self.max_seen[i])
            .min()
            .unwrap_or_else(|| self.max_seen.iter().copied().max().unwrap_or(i64::MIN))
    }

    /// Adds rows; returns the rows the watermark released (in time order) and the new
    /// watermark, if it moved.
    pub fn push(
        &mut self,
        batch: RecordBatch,
        failures: &mut crate::window::Failures,
    ) -> (Option<RecordBatch>, Option<i64>) {
        let rows = batch.num_rows();
        let mut ts = Vec::with_capacity(rows);
        let mut keep = Vec::with_capacity(rows);
        // A joined stream's rows carry their own event time (see `quiver_compiler::columns::qualify`).
        let col = quiver_compiler::eval::column_by_name(
            &batch,
            quiver_compiler::columns::EVENT_TIME_COLUMN,
        )
        .or_else(|| quiver_compiler::eval::column_by_name(&batch, &self.field))
        .cloned();
        let sources = batch
            .column_by_name(quiver_compiler::columns::SOURCE_COLUMN)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>().cloned());
        // Epoch milliseconds in a BIGINT column (the common case) are read directly; other
        // types go through the general time reader row by row.
        let millis = col
            .as_ref()
            .filter(|c| c.data_type() == &arrow::datatypes::DataType::Int64)
            .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().clone());
        let mut late = 0u64;
        let mut moved = false;
        let now = Instant::now();
        for r in 0..rows {
            let t = match &millis {
                Some(m) => arrow::array::Array::is_valid(m, r).then(|| m.value(r)),
                None => col.as_ref().and_then(|c| {
                    quiver_compiler::functions::event_millis(c, r, self.format.as_deref())
                }),
            };
            match t {
                None => {
                    failures.rows += 1;
                    if failures.first.is_none() {
                        failures.first = Some(format!(
                            "cannot convert timestamp field {} of the row to a time",
                            self.field
                        ));
                    }
                    keep.push(false);
                    ts.push(0);
                }
                Some(t) => {
                    // Row by row, like eKuiper's watermark operator: a row is late against
                    // the watermark as it stood when the row arrived.
                    let ok = t >= self.last;
                    let src = sources
                        .as_ref()
                        .filter(|c| arrow::array::Array::is_valid(*c, r))
                        .map_or(0, |c| c.value(r) as usize)
                        .min(self.max_seen.len() - 1);
                    self.max_seen[src] = self.max_seen[src].max(t);
                    self.seen_at[src] = Some(now);
                    let wm = self.slowest(now).saturating_sub(self.tolerance);
                    if wm > self.last {
                        self.last = wm;
                        moved = true;
                    }
                    if !ok {
                        late += 1;
                    }
                    keep.push(ok);
                    ts.push(t);
                }
            }
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        let ts_col: ArrayRef = Arc::new(Int64Array::from(ts));
        let batch = quiver_connectors::codec::json::add_column(batch, TS_COLUMN, ts_col);
        if let Ok(kept) = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
            && kept.num_rows() > 0
        {
            self.waiting_rows += kept.num_rows();
            self.waiting.push(kept);
        }
        if self.waiting_rows > MAX_WAITING_ROWS {
            return self.release_all_waiting();
        }
        if !moved {
            return (None, None);
        }
        (self.release(Some(self.last)), Some(self.last))
    }

    /// The buffer is full: the watermark moves up to the latest waiting row and every waiting
    /// row leaves, in time order.
    fn release_all_waiting(&mut self) -> (Option<RecordBatch>, Option<i64>) {
        tracing::warn!(
            "event time: more than {MAX_WAITING_ROWS} rows wait for the watermark (a stream far \
             behind the others, or a row far in the future); releasing them all"
        );
        let out = self.release(None);
        if let Some(max) = out
            .as_ref()
            .and_then(|b| b.column_by_name(TS_COLUMN))
            .and_then(|c| {
                c.as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .iter()
                    .max()
                    .copied()
            })
        {
            self.last = self.last.max(max);
        }
        (out, Some(self.last))
    }

    /// The state (what a checkpoint writes): the watermark, each stream's latest time and
    /// whether it sent a row, and the waiting rows. Wall-clock idleness is not saved: a
    /// restored watermark counts the streams that had spoken as active from the restore on.
    pub fn save(&self) -> Result<OpState, String> {
        let mut state = OpState::default();
        state.push_number("last", self.last);
        state.push_number("sources", self.max_seen.len() as i64);
        let max_seen: ArrayRef = Arc::new(Int64Array::from(self.max_seen.clone()));
        let seen: ArrayRef = Arc::new(BooleanArray::from_iter(
            self.seen_at.iter().map(|s| Some(s.is_some())),
        ));
        state.push_batch(
            "streams",
            RecordBatch::try_from_iter([("max_seen", max_seen), ("seen", seen)])
                .map_err(|e| e.to_string())?,
        );
        state.push_number("waiting", self.waiting.len() as i64);
        for (i, b) in self.waiting.iter().enumerate() {
            state.push_batch(format!("waiting.{i}"), b.clone());
        }
        Ok(state)
    }

    /// Replaces the state with a saved one (into a watermark built with the same settings).
    pub fn load(&mut self, state: &OpState) -> Result<(), String> {
        let sources = state.need_number("sources")?;
        if sources != self.max_seen.len() as i64 {
            return Err(format!(
                "watermark state: saved for {sources} streams, the rule reads {}",
                self.max_seen.len()
            ));
        }
        let streams = state.need_batch("streams")?;
        let (max_seen, seen) = match (
            streams
                .column_by_name("max_seen")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>()),
            streams
                .column_by_name("seen")
                .and_then(|c| c.as_boolean_opt()),
        ) {
            (Some(m), Some(s)) if m.len() == self.max_seen.len() && s.len() == m.len() => (m, s),
            _ => return Err("watermark state: bad streams".into()),
        };
        let now = Instant::now();
        self.last = state.need_number("last")?;
        self.max_seen = max_seen.values().to_vec();
        self.seen_at = (0..seen.len())
            .map(|i| seen.value(i).then_some(now))
            .collect();
        self.started = now;
        self.waiting = (0..state.need_number("waiting")?)
            .map(|i| state.need_batch(&format!("waiting.{i}")).cloned())
            .collect::<Result<_, _>>()?;
        self.waiting_rows = self.waiting.iter().map(RecordBatch::num_rows).sum();
        Ok(())
    }

    /// Releases waiting rows with time <= `upto` (all of them for `None`), sorted by time.
    pub fn release(&mut self, upto: Option<i64>) -> Option<RecordBatch> {
        let out = self.release_sorted(upto);
        self.waiting_rows = self.waiting.iter().map(RecordBatch::num_rows).sum();
        out
    }

    fn release_sorted(&mut self, upto: Option<i64>) -> Option<RecordBatch> {
        if self.waiting.is_empty() {
            return None;
        }
        let schema = self.waiting[0].schema();
        let all = if self.waiting.len() == 1 {
            self.waiting[0].clone()
        } else if self.waiting.iter().all(|b| b.schema() == schema) {
            arrow::compute::concat_batches(&schema, &self.waiting).ok()?
        } else {
            crate::batch::concat_results(&self.waiting)?
        };
        self.waiting.clear();
        let ts = all
            .column_by_name(TS_COLUMN)?
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        // Rows usually arrive in time order (one device's clock, a file written in order):
        // then the released rows are a prefix, cut without sorting or copying.
        if ts.values().windows(2).all(|w| w[0] <= w[1]) {
            let cut = match upto {
                Some(w) => ts.values().partition_point(|&t| t <= w),
                None => all.num_rows(),
            };
            if cut < all.num_rows() {
                self.waiting.push(all.slice(cut, all.num_rows() - cut));
            }
            return (cut > 0).then(|| all.slice(0, cut));
        }
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        // A stable sort: rows with equal times keep their arrival order.
        order.sort_by_key(|&i| ts.value(i as usize));
        let cut = match upto {
            Some(w) => order.partition_point(|&i| ts.value(i as usize) <= w),
            None => order.len(),
        };
        let rest = order.split_off(cut);
        if !rest.is_empty()
            && let Ok(b) = take_record_batch(&all, &UInt32Array::from(rest))
        {
            self.waiting.push(b);
        }
        if order.is_empty() {
            return None;
        }
        take_record_batch(&all, &UInt32Array::from(order)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_failures, batch, ints, ints_of, rows, strings_of, text};
    use crate::window::Failures;

    /// A watermark over `sources` streams reading `ts`, `tolerance` ms behind, and its late count.
    fn watermark(tolerance: i64, sources: usize) -> (Watermark, Arc<AtomicU64>) {
        let late = Arc::new(AtomicU64::new(0));
        let w = Watermark::new("ts".into(), None, tolerance, sources, late.clone());
        (w, late)
    }

    #[test]
    fn rows_wait_for_the_watermark_and_leave_in_time_order() {
        let (mut w, late) = watermark(2000, 1);
        let mut failures = Failures::default();
        let (out, moved) = w.push(
            rows(&[("a", 1, 3000), ("b", 2, 1000), ("c", 3, 2000)]),
            &mut failures,
        );
        assert_eq!(moved, Some(1000));
        let out = out.expect("the row at 1000");
        assert_eq!(strings_of(&out, "k"), text(&["b"]));
        assert_eq!(ints_of(&out, "__ts"), [Some(1000)]);
        let (out, moved) = w.push(rows(&[("d", 4, 5000)]), &mut failures);
        assert_eq!(moved, Some(3000));
        assert_eq!(
            strings_of(&out.expect("2000 and 3000"), "k"),
            text(&["c", "a"])
        );
        let rest = w.release(None).expect("the row at 5000");
        assert_eq!(strings_of(&rest, "k"), text(&["d"]));
        assert_eq!(late.load(Ordering::Relaxed), 0);
        assert_eq!(failures.rows, 0);
    }

    #[test]
    fn rows_behind_the_watermark_are_dropped_and_counted_late() {
        let (mut w, late) = watermark(0, 1);
        let mut failures = Failures::default();
        let (out, _) = w.push(rows(&[("a", 1, 1000), ("b", 2, 2000)]), &mut failures);
        assert_eq!(strings_of(&out.expect("both"), "k"), text(&["a", "b"]));
        let (out, moved) = w.push(rows(&[("c", 3, 1500), ("d", 4, 2500)]), &mut failures);
        assert_eq!(moved, Some(2500));
        assert_eq!(strings_of(&out.expect("d"), "k"), text(&["d"]));
        assert_eq!(late.load(Ordering::Relaxed), 1);
        assert!(w.release(None).is_none(), "the late row is gone");
    }

    #[test]
    fn a_row_without_a_readable_time_fails() {
        let (mut w, _) = watermark(0, 1);
        let mut failures = Failures::default();
        let input = batch(vec![("ts", ints(&[None, Some(1000)]))]);
        let (out, _) = w.push(input, &mut failures);
        assert_eq!(ints_of(&out.expect("the timed row"), "__ts"), [Some(1000)]);
        assert_failures(
            &failures,
            1,
            "cannot convert timestamp field ts of the row to a time",
        );
    }

    /// One row at time `t` from stream `src`.
    fn from(src: i64, t: i64) -> RecordBatch {
        batch(vec![
            ("ts", ints(&[Some(t)])),
            (quiver_compiler::columns::SOURCE_COLUMN, ints(&[Some(src)])),
        ])
    }

    #[test]
    fn with_two_streams_the_slower_one_holds_the_watermark() {
        let (mut w, _) = watermark(0, 2);
        let mut failures = Failures::default();
        let (out, moved) = w.push(from(0, 5000), &mut failures);
        assert!(
            out.is_none() && moved.is_none(),
            "stream 1 has not spoken yet"
        );
        let (out, moved) = w.push(from(1, 1000), &mut failures);
        assert_eq!(moved, Some(1000));
        assert_eq!(
            ints_of(&out.expect("the row at 1000"), "__ts"),
            [Some(1000)]
        );
        let (out, moved) = w.push(from(1, 6000), &mut failures);
        assert_eq!(moved, Some(5000));
        assert_eq!(
            ints_of(&out.expect("the row at 5000"), "__ts"),
            [Some(5000)]
        );
    }

    #[test]
    fn an_idle_stream_stops_holding_the_watermark() {
        let (w, _) = watermark(0, 2);
        let mut w = w.with_idle_after(Duration::from_millis(50));
        let mut failures = Failures::default();
        let (_, moved) = w.push(from(1, 1000), &mut failures);
        assert_eq!(
            moved, None,
            "stream 0 has not spoken yet and is not idle yet"
        );
        std::thread::sleep(Duration::from_millis(80));
        // Stream 0 never spoke and the rule is older than the idle timeout: stream 1 alone
        // moves the watermark.
        let (out, moved) = w.push(from(1, 4000), &mut failures);
        assert_eq!(moved, Some(4000));
        assert_eq!(
            ints_of(&out.expect("both rows"), "__ts"),
            [Some(1000), Some(4000)]
        );
        // Stream 0 speaks again: it holds the watermark once more; its row behind it is late.
        let (_, moved) = w.push(from(0, 3000), &mut failures);
        assert_eq!(moved, None);
    }

    /// Rows of two streams out of time order: (k, v, ts) with v the stream.
    fn two_streams() -> Vec<RecordBatch> {
        (0..10i64)
            .map(|i| {
                let ts: Vec<i64> = (0..3)
                    .map(|j| 1000 * i + (j * 700 + i * 300) % 2500)
                    .collect();
                let src: Vec<Option<i64>> = (0..3).map(|j| Some((i + j) % 2)).collect();
                let k: Vec<String> = ts.iter().map(|t| format!("r{t}")).collect();
                let k: Vec<Option<&str>> = k.iter().map(|k| Some(k.as_str())).collect();
                batch(vec![
                    ("k", crate::testing::strings(&k)),
                    ("ts", ints(&ts.iter().map(|t| Some(*t)).collect::<Vec<_>>())),
                    (quiver_compiler::columns::SOURCE_COLUMN, ints(&src)),
                ])
            })
            .collect()
    }

    #[test]
    fn a_restored_watermark_releases_what_the_running_one_releases() {
        let input = two_streams();
        for cut in 0..=input.len() {
            let (mut a, late_a) = watermark(200, 2);
            let (mut b, _) = watermark(200, 2);
            let mut failures = Failures::default();
            for batch in &input[..cut] {
                a.push(batch.clone(), &mut failures);
                b.push(batch.clone(), &mut failures);
            }
            let before = late_a.load(Ordering::Relaxed);
            let bytes = b.save().unwrap().encode().unwrap();
            let (mut c, late_c) = watermark(200, 2);
            c.load(&OpState::decode(&bytes).unwrap()).unwrap();
            for (i, batch) in input[cut..].iter().enumerate() {
                let expected = a.push(batch.clone(), &mut failures);
                let got = c.push(batch.clone(), &mut failures);
                assert_eq!(got, expected, "cut {cut}, batch {i}");
            }
            assert_eq!(c.release(None), a.release(None), "cut {cut}: the rest");
            if cut == 0 {
                assert!(
                    late_c.load(Ordering::Relaxed) > 0,
                    "the input has late rows"
                );
            }
            assert_eq!(
                late_c.load(Ordering::Relaxed),
                late_a.load(Ordering::Relaxed) - before
            );
            assert_eq!(failures.rows, 0);
        }
    }

    #[test]
    fn a_watermark_state_for_another_number_of_streams_is_refused() {
        let (one, _) = watermark(0, 1);
        let (mut two, _) = watermark(0, 2);
        assert!(two.load(&one.save().unwrap()).is_err());
    }
}
