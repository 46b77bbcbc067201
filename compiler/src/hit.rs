//! `last_hit_count()`, `last_hit_time()`, `last_agg_hit_count()` and `last_agg_hit_time()`:
//! how many times, and when last, a rule's condition passed.
//!
//! Each call site keeps its own count and time for the rule (as eKuiper does). In a condition
//! (WHERE, HAVING, a sliding window's `OVER (WHEN ...)`) the call only reads: every row sees the
//! hits of the rows that passed before it, and the operator running the condition records a hit
//! once the row (or, for the `agg` forms, the emission) passes. Anywhere else a call records a
//! hit each time it is evaluated and returns the value from before that hit.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;

use crate::eval::EvalContext;
use crate::expr::{Expr, hit_times};

/// Which value a call site returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitValue {
    /// How many hits so far.
    Count,
    /// The time of the last hit, epoch milliseconds (0 before the first).
    Time,
}

/// The state of one call site.
#[derive(Debug)]
pub struct HitSite {
    /// Which value the call returns.
    pub what: HitValue,
    /// The `last_agg_hit_*` form: one hit per emission in HAVING.
    pub agg: bool,
    state: Mutex<(i64, i64)>,
}

impl HitSite {
    /// A call site with no hits yet.
    pub fn new(what: HitValue, agg: bool) -> Self {
        HitSite {
            what,
            agg,
            state: Mutex::new((0, 0)),
        }
    }

    /// The function's name as written in SQL.
    pub fn name(&self) -> &'static str {
        match (self.agg, self.what) {
            (false, HitValue::Count) => "last_hit_count",
            (false, HitValue::Time) => "last_hit_time",
            (true, HitValue::Count) => "last_agg_hit_count",
            (true, HitValue::Time) => "last_agg_hit_time",
        }
    }

    /// The current value, without recording a hit.
    pub fn read(&self) -> i64 {
        let (count, time) = *self.state.lock().expect("hit lock");
        match self.what {
            HitValue::Count => count,
            HitValue::Time => time,
        }
    }

    /// Records one hit at `at`.
    pub fn record(&self, at: i64) {
        let mut s = self.state.lock().expect("hit lock");
        s.0 += 1;
        s.1 = at;
    }

    /// Records one hit per entry of `times`, in order, and returns for each the value from
    /// before its own hit.
    pub fn hit_all(&self, times: &[i64]) -> Vec<i64> {
        let mut s = self.state.lock().expect("hit lock");
        let mut out = Vec::with_capacity(times.len());
        for &t in times {
            out.push(match self.what {
                HitValue::Count => s.0,
                HitValue::Time => s.1,
            });
            s.0 += 1;
            s.1 = t;
        }
        out
    }
}

impl fmt::Display for HitSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}()", self.name())
    }
}

/// The read-only call sites in a condition and each one's hit-time expression.
pub fn cached_sites(cond: &Expr) -> Vec<(Arc<HitSite>, Expr)> {
    let mut out = Vec::new();
    cond.visit(&mut |e| {
        if let Expr::Hit {
            site,
            cached: true,
            time,
        } = e
        {
            out.push((site.clone(), (**time).clone()));
        }
    });
    out
}

/// Evaluates a condition that reads hits, recording the hits of what passes. With row-level
/// sites the rows go one at a time, so each sees the hits of the rows before it; `agg` sites
/// record one hit when any row passes (one emission of a window). `mask` evaluates the
/// condition into a keep-mask the way the calling operator does.
pub fn condition_with_hits(
    cond: &Expr,
    sites: &[(Arc<HitSite>, Expr)],
    batch: &RecordBatch,
    ctx: &mut EvalContext,
    mask: &dyn Fn(&Expr, &RecordBatch, &mut EvalContext) -> BooleanArray,
) -> BooleanArray {
    let rows = batch.num_rows();
    let per_row = sites.iter().any(|(s, _)| !s.agg);
    let keep = if per_row {
        let mut keep = Vec::with_capacity(rows);
        for r in 0..rows {
            let row = batch.slice(r, 1);
            let mut rctx = EvalContext::new(1);
            let pass = mask(cond, &row, &mut rctx);
            let pass = pass.is_valid(0) && pass.value(0);
            if let Some(reason) = rctx.errors.first() {
                let reason = reason.to_string();
                ctx.errors.flag(r, || reason);
            } else if pass {
                for (site, time) in sites.iter().filter(|(s, _)| !s.agg) {
                    let at = hit_times(time, &row, &mut rctx)
                        .ok()
                        .and_then(|t| t.first().copied());
                    site.record(at.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
                }
            }
            keep.push(pass && rctx.errors.is_empty());
        }
        BooleanArray::from(keep)
    } else {
        mask(cond, batch, ctx)
    };
    if let Some(first) = (0..rows).find(|&r| keep.is_valid(r) && keep.value(r)) {
        let row = batch.slice(first, 1);
        for (site, time) in sites.iter().filter(|(s, _)| s.agg) {
            let mut rctx = EvalContext::new(1);
            let at = hit_times(time, &row, &mut rctx)
                .ok()
                .and_then(|t| t.first().copied());
            site.record(at.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()));
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hit_sees_the_hits_before_it() {
        let count = HitSite::new(HitValue::Count, false);
        assert_eq!(count.hit_all(&[10, 20, 30]), vec![0, 1, 2]);
        assert_eq!(count.read(), 3);
        let time = HitSite::new(HitValue::Time, false);
        assert_eq!(time.hit_all(&[10, 20]), vec![0, 10]);
        time.record(99);
        assert_eq!(time.read(), 99);
    }
}
