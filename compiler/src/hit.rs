//! `last_hit_count()`, `last_hit_time()`, `last_agg_hit_count()` and `last_agg_hit_time()`:
//! how many times, and when last, a rule's condition passed.
//!
//! Each call site keeps its own count and time for the rule (as eKuiper does). In a condition
//! (WHERE, HAVING, a sliding window's `OVER (WHEN ...)`) the call only reads: every row sees the
//! hits of the rows that passed before it, and the operator running the condition records a hit
//! once the row (or, for the `agg` forms, the emission) passes. Anywhere else a call records a
//! hit each time it is evaluated and returns the value from before that hit.
//!
//! This module evaluates conditions that read hits; the state of a call site lives in
//! [`crate::hit_site`], below [`crate::expr`], so that `expr` never imports this module.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::record_batch::RecordBatch;

use crate::eval::EvalContext;
use crate::expr::{Expr, hit_times};
pub use crate::hit_site::{HitSite, HitValue};
use crate::plan::LogicalPlan;

/// Every `last_*hit_*` call site of a rule's plan, once each, in plan order (the same order
/// for the same SQL). The sites are the rule's hit state: operators share them with the plan.
pub fn plan_sites(plan: &LogicalPlan) -> Vec<Arc<HitSite>> {
    let mut out: Vec<Arc<HitSite>> = Vec::new();
    for node in plan.chain() {
        node.visit_exprs(&mut |e| {
            if let Expr::Hit { site, .. } = e
                && !out.iter().any(|s| Arc::ptr_eq(s, site))
            {
                out.push(site.clone());
            }
        });
    }
    out
}

/// The hits of every call site of `plan`, (count, time) in [`plan_sites`] order.
pub fn save_hits(plan: &LogicalPlan) -> Vec<(i64, i64)> {
    plan_sites(plan).iter().map(|s| s.saved()).collect()
}

/// Restores what [`save_hits`] saved from a plan of the same SQL.
pub fn load_hits(plan: &LogicalPlan, saved: &[(i64, i64)]) -> Result<(), String> {
    let sites = plan_sites(plan);
    if sites.len() != saved.len() {
        return Err(format!(
            "hit state: {} saved call sites for a rule with {}",
            saved.len(),
            sites.len()
        ));
    }
    for (site, &(count, time)) in sites.iter().zip(saved) {
        site.restore(count, time);
    }
    Ok(())
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

    fn plan(sql: &str) -> LogicalPlan {
        let def = crate::parse_create(
            r#"CREATE STREAM s (k STRING, v BIGINT) WITH (DATASOURCE="s", TYPE="memory")"#,
        )
        .expect("DDL parses");
        let catalog: std::collections::HashMap<_, _> =
            [(def.name.clone(), def)].into_iter().collect();
        crate::compile_rule(sql, &catalog, crate::Registry::builtin())
            .expect("rule compiles")
            .plan
    }

    const SQL: &str = "SELECT last_hit_count() AS n, last_hit_time() AS t FROM s \
                       WHERE v > last_hit_count()";

    #[test]
    fn hit_state_comes_back_into_a_plan_of_the_same_sql() {
        let running = plan(SQL);
        let sites = plan_sites(&running);
        assert_eq!(sites.len(), 3);
        sites[0].hit_all(&[10, 20]);
        sites[1].record(30);
        let saved = save_hits(&running);
        let fresh = plan(SQL);
        load_hits(&fresh, &saved).unwrap();
        let restored: Vec<i64> = plan_sites(&fresh).iter().map(|s| s.read()).collect();
        let expected: Vec<i64> = sites.iter().map(|s| s.read()).collect();
        assert_eq!(restored, expected);
        assert_eq!(save_hits(&fresh), saved);
        assert!(load_hits(&plan("SELECT k FROM s"), &saved).is_err());
    }
}
