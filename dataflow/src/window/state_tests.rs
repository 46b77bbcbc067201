//! Round trips of window state: a window restored from a checkpoint taken after any step of
//! the input emits, for the rest of the input, exactly what the window that never stopped
//! emits.

use arrow::record_batch::RecordBatch;

use super::{Failures, Prepare, Windows};
use crate::state::OpState;
use crate::testing::{aggregate, rows, timed};

/// Every accumulator kind: count(*), count, integer and float sums and averages, max and min
/// over numbers and text, moments, and the buffered ones.
const AGGREGATES: &str = "k, count(*) AS c, count(v) AS cv, sum(v) AS s, sum(v * 0.1) AS fs, \
     avg(v) AS a, avg(v * 0.1) AS fa, max(v) AS mx, min(k) AS mn, max(v * 0.3) AS fmx, \
     stddev(v * 0.1) AS sd, var(v) AS vr, stddevs(v) AS sds, collect(v) AS cl, median(v) AS md, \
     percentile_cont(v, 0.3) AS pc, deduplicate(v, true) AS dd, last_value(v, true) AS lv";

/// One step of input: a batch of `(k, v, ts)` rows, or time moving to a frontier.
#[derive(Clone)]
enum Step {
    Rows(Vec<(&'static str, i64, i64)>),
    Advance(u64),
}

/// 60 s of rows over three keys in batches of 1 to 4 rows, time moving after each batch to
/// `lag` ms behind the last row, and the end of input.
fn steps(lag: i64) -> Vec<Step> {
    let keys = ["a", "b", "c"];
    let mut out = Vec::new();
    let mut t = 500;
    for i in 0..24i64 {
        let n = (i % 4 + 1) as usize;
        let batch: Vec<_> = (0..n as i64)
            .map(|j| {
                t += 300 + (i * 7 + j * 13) % 900;
                (keys[((i + j) % 3) as usize], (i * 7 + j * 3) % 11, t)
            })
            .collect();
        out.push(Step::Rows(batch));
        out.push(Step::Advance((t - lag).max(0) as u64));
    }
    out.push(Step::Advance(i64::MAX as u64));
    out
}

/// Runs `steps` through `windows`; each emission as (end, rows).
fn run(
    windows: &mut Windows,
    prepare: &Prepare,
    event_time: bool,
    steps: &[Step],
) -> Vec<(i64, RecordBatch)> {
    let mut out = Vec::new();
    for step in steps {
        let emitted = match step {
            Step::Rows(r) => {
                let mut failures = Failures::default();
                // Processing time: a batch arrives at its last row's time.
                let at = r.last().map_or(0, |x| x.2) as u64;
                let raw = if event_time { timed(r) } else { rows(r) };
                let prepared = prepare
                    .prepare(raw, at, &mut failures)
                    .expect("rows prepare");
                assert_eq!(failures.rows, 0, "{:?}", failures.first);
                windows.insert(&prepared)
            }
            Step::Advance(f) => windows.advance(*f),
        };
        out.extend(emitted.into_iter().map(|e| (e.end, e.batch)));
    }
    out
}

/// For checkpoints after a third of the steps (after rows and after time moving, in turn):
/// the restored window emits what the one that never
/// stopped emits after that step, value for value.
fn assert_round_trips(group_by: &str, event_time: bool, lag: i64) {
    assert_round_trips_with(group_by, event_time, lag, &|spec| {
        Windows::new(spec, event_time)
    });
}

/// [`assert_round_trips`] for windows made by `make`.
fn assert_round_trips_with(
    group_by: &str,
    event_time: bool,
    lag: i64,
    make: &dyn Fn(std::sync::Arc<quiver_compiler::window::AggregateSpec>) -> Windows,
) {
    let sql = format!("SELECT {AGGREGATES} FROM s GROUP BY {group_by}");
    let spec = aggregate(&sql);
    let prepare = Prepare::new(spec.clone());
    let steps = steps(lag);
    let mut emitted_total = 0;
    for cut in (1..steps.len()).step_by(3) {
        let mut a = make(spec.clone());
        run(&mut a, &prepare, event_time, &steps[..cut]);
        let expected = run(&mut a, &prepare, event_time, &steps[cut..]);
        emitted_total += expected.len();

        let mut b = make(spec.clone());
        run(&mut b, &prepare, event_time, &steps[..cut]);
        let bytes = b.save().expect("save").encode().expect("encode");
        let mut c = make(spec.clone());
        c.load(&OpState::decode(&bytes).expect("decode"))
            .expect("load");
        let got = run(&mut c, &prepare, event_time, &steps[cut..]);
        assert_eq!(
            got.len(),
            expected.len(),
            "{group_by}: cut after step {cut}"
        );
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.0, e.0, "{group_by}: cut {cut}, emission {i} end");
            assert_eq!(g.1, e.1, "{group_by}: cut {cut}, emission {i}");
        }
        assert_eq!(c.take_bad_rows(), a.take_bad_rows());
    }
    assert!(emitted_total > 0, "{group_by}: nothing emitted");
}

#[test]
fn tumbling_windows_restore_in_processing_and_event_time() {
    assert_round_trips("k, TUMBLINGWINDOW(ss, 5)", false, 0);
    assert_round_trips("k, TUMBLINGWINDOW(ss, 5)", true, 1500);
}

#[test]
fn hopping_windows_restore_in_processing_and_event_time() {
    assert_round_trips("k, HOPPINGWINDOW(ss, 10, 5)", false, 0);
    assert_round_trips("k, HOPPINGWINDOW(ss, 10, 5)", true, 1500);
}

#[test]
fn sliding_windows_restore_with_and_without_a_delay() {
    assert_round_trips("k, SLIDINGWINDOW(ss, 4)", false, 0);
    assert_round_trips("k, SLIDINGWINDOW(ss, 4, 2)", false, 0);
    assert_round_trips("k, SLIDINGWINDOW(ss, 4)", true, 1500);
    assert_round_trips("k, SLIDINGWINDOW(ss, 4, 2)", true, 1500);
    assert_round_trips("k, SLIDINGWINDOW(ss, 4) OVER (WHEN v > 5)", false, 0);
}

#[test]
fn session_windows_restore() {
    assert_round_trips("k, SESSIONWINDOW(ss, 10, 1)", false, 0);
    assert_round_trips("k, SESSIONWINDOW(ss, 10, 1)", true, 1500);
}

#[test]
fn count_windows_restore() {
    assert_round_trips("k, COUNTWINDOW(4)", false, 0);
    assert_round_trips("k, COUNTWINDOW(5, 2)", false, 0);
    assert_round_trips("k, COUNTWINDOW(4)", true, 1500);
}

#[test]
fn state_windows_restore() {
    assert_round_trips("k, STATEWINDOW(v = 1, v = 3)", false, 0);
    assert_round_trips(
        "k, STATEWINDOW(v > 5, v < 3) OVER (PARTITION BY k)",
        false,
        0,
    );
    assert_round_trips("STATEWINDOW(v > 5, v < 3)", true, 1500);
}

#[test]
fn a_window_state_loads_only_into_the_same_kind_of_window() {
    let tumbling = Windows::new(
        aggregate("SELECT count(*) AS c FROM s GROUP BY TUMBLINGWINDOW(ss, 5)"),
        false,
    );
    let mut counting = Windows::new(
        aggregate("SELECT count(*) AS c FROM s GROUP BY COUNTWINDOW(5)"),
        false,
    );
    let state = tumbling.save().expect("save");
    assert!(counting.load(&state).is_err());
}

#[test]
fn windows_that_keep_raw_rows_restore_when_their_chain_is_stateless() {
    // Event-time windows run WHERE per window (`Windows::joined` with a stateless chain).
    for event_time in [false, true] {
        let make = |spec| Windows::joined(spec, crate::chain::Chain::default(), event_time);
        assert_round_trips_with("k, TUMBLINGWINDOW(ss, 5)", event_time, 1500, &make);
        assert_round_trips_with("k, SLIDINGWINDOW(ss, 4)", event_time, 1500, &make);
        assert_round_trips_with("k, COUNTWINDOW(4)", event_time, 1500, &make);
    }
}
