//! Windows as plain structs: rows in, closed windows out, no timely.

pub mod aligned;
pub mod buffered;
pub mod first_row;
pub mod groups;
pub mod prepare;
#[cfg(test)]
mod state_tests;

pub use aligned::AlignedWindows;
pub use buffered::BufferedWindows;
pub use first_row::FirstRowStamp;
pub use groups::GroupTable;
pub use prepare::{Failures, Prepare};

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use quiver_compiler::window::{AggregateSpec, WindowKind};

use crate::state::OpState;

/// One closed window: its bounds and result rows.
#[derive(Debug)]
pub struct Emission {
    /// `window_end()`, the time the window is emitted at.
    pub end: i64,
    /// The result rows.
    pub batch: RecordBatch,
}

/// The open windows of one rule on one worker.
pub enum Windows {
    /// Tumbling and hopping windows: one incrementally updated group table per window.
    Aligned(AlignedWindows),
    /// Sliding, session, count and state windows: rows buffered until a window closes.
    Buffered(BufferedWindows),
}

impl Windows {
    /// The windows of `spec`; with `event_time`, tumbling and hopping windows fire as eKuiper's
    /// event-time trigger does (every window end in turn, empty windows included).
    pub fn new(spec: Arc<AggregateSpec>, event_time: bool) -> Self {
        match spec.window.kind {
            WindowKind::Tumbling { size } => {
                Windows::Aligned(AlignedWindows::new(spec, size, size, event_time))
            }
            WindowKind::Hopping { size, hop } => {
                Windows::Aligned(AlignedWindows::new(spec, size, hop, event_time))
            }
            _ => {
                let mut w = BufferedWindows::new(spec);
                w.event_time = event_time;
                Windows::Buffered(w)
            }
        }
    }

    /// Windows that keep their raw rows and run `before` on each window's rows when it
    /// closes (stream-stream joins), for every window kind but state windows.
    pub fn joined(spec: Arc<AggregateSpec>, before: crate::chain::Chain, event_time: bool) -> Self {
        let mut w = BufferedWindows::new(spec.clone());
        w.before = Some(before);
        w.event_time = event_time;
        if spec.window.trigger.is_some() {
            w.raw_trigger = Some(Prepare::new(spec));
        }
        Windows::Buffered(w)
    }

    /// Adds prepared rows; returns windows this closed (count, state and undelayed sliding
    /// windows close on rows).
    pub fn insert(&mut self, batch: &RecordBatch) -> Vec<Emission> {
        match self {
            Windows::Aligned(w) => {
                w.insert(batch);
                Vec::new()
            }
            Windows::Buffered(w) => w.insert(batch),
        }
    }

    /// Closes every window that no row with a time before `frontier` can still change.
    pub fn advance(&mut self, frontier: u64) -> Vec<Emission> {
        let f = frontier.min(i64::MAX as u64) as i64;
        match self {
            Windows::Aligned(w) => w.advance(f),
            Windows::Buffered(w) => w.advance(f),
        }
    }

    /// The input ended: closes what a time window would close when time moves on (count and
    /// state windows keep their partial rows unemitted, like eKuiper).
    pub fn finish(&mut self) -> Vec<Emission> {
        self.advance(i64::MAX as u64)
    }

    /// The earliest time at which a window could close on time alone, if any is open.
    pub fn next_deadline(&self) -> Option<i64> {
        match self {
            Windows::Aligned(w) => w.open.keys().next().map(|s| s + w.size),
            Windows::Buffered(w) => w.next_deadline(),
        }
    }

    /// True when no window holds any row (nothing to emit, ever, without new input).
    pub fn is_idle(&self) -> bool {
        match self {
            Windows::Aligned(w) => w.open.is_empty(),
            Windows::Buffered(w) => w.is_idle(),
        }
    }

    /// The state of every open window (what a checkpoint writes), a stream join's buffered
    /// rows included.
    pub fn save(&self) -> Result<OpState, String> {
        let (kind, inner) = match self {
            Windows::Aligned(w) => (0, w.save()?),
            Windows::Buffered(w) => (1, w.save()?),
        };
        let mut state = OpState::default();
        state.push_number("kind", kind);
        state.nest("w", inner);
        Ok(state)
    }

    /// Replaces the windows' state with a saved one; `self` is a fresh `Windows::new` of the
    /// same spec and time mode.
    pub fn load(&mut self, state: &OpState) -> Result<(), String> {
        let inner = state.inner("w");
        match (self, state.need_number("kind")?) {
            (Windows::Aligned(w), 0) => w.load(&inner),
            (Windows::Buffered(w), 1) => w.load(&inner),
            _ => Err("window state: saved for another kind of window".into()),
        }
    }

    /// Rows that aggregates could not use so far (and resets the count).
    pub fn take_bad_rows(&mut self) -> usize {
        match self {
            Windows::Aligned(w) => std::mem::take(&mut w.bad_rows),
            Windows::Buffered(w) => std::mem::take(&mut w.bad_rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{aggregate, batch, ints, strings};

    fn rows(keys: impl Iterator<Item = String>, ts: i64) -> RecordBatch {
        let k: Vec<String> = keys.collect();
        let n = k.len();
        let k: Vec<Option<&str>> = k.iter().map(|k| Some(k.as_str())).collect();
        batch(vec![
            ("k", strings(&k)),
            ("v", ints(&vec![Some(1); n])),
            ("ts", ints(&vec![Some(ts); n])),
        ])
    }

    #[test]
    fn closed_windows_free_their_groups() {
        let spec = aggregate("SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)");
        let prepare = Prepare::new(spec.clone());
        let mut windows = Windows::new(spec, false);
        let mut failures = Failures::default();
        for chunk in 0..100 {
            let keys = (0..1000).map(move |i| format!("key-{}", chunk * 1000 + i));
            let raw = rows(keys, 5_000);
            let prepared = prepare.prepare(raw, 5_000, &mut failures).unwrap();
            assert!(windows.insert(&prepared).is_empty());
        }
        assert!(!windows.is_idle());
        assert!(
            windows.advance(9_999).is_empty(),
            "the window ends at 10000"
        );
        let out = windows.advance(10_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].batch.num_rows(), 100_000);
        assert_eq!(out[0].end, 10_000);
        assert!(windows.is_idle(), "a closed window keeps no state");
        assert_eq!(failures.rows, 0);
    }
}
