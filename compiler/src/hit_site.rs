//! The state of one `last_hit_count()`, `last_hit_time()`, `last_agg_hit_count()` or
//! `last_agg_hit_time()` call site: how many times, and when last, the rule's condition passed.
//!
//! A leaf module: [`crate::expr`] holds a site in [`crate::expr::Expr::Hit`], and
//! [`crate::hit`] evaluates the conditions that record hits.

use std::fmt;
use std::sync::Mutex;

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

    /// The hit count and the last hit's time (what a checkpoint writes).
    pub fn saved(&self) -> (i64, i64) {
        *self.state.lock().expect("hit lock")
    }

    /// Replaces the hit count and time with saved ones.
    pub fn restore(&self, count: i64, time: i64) {
        *self.state.lock().expect("hit lock") = (count, time);
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
