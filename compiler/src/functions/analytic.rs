//! Documentation of the analytic functions (`lag`, `latest`, `changed_col(s)`, `had_changed`,
//! `acc_*`). The binder binds their calls and [`crate::analytic`] describes them in the plan.

use super::FunctionDoc;

/// (name, documentation) of every analytic function: the binder answers these calls itself, outside the
/// registry, and they appear in the same catalogue.
pub(super) const BINDER_DOCS: &[(&str, FunctionDoc)] = &[
    (
        "lag",
        FunctionDoc::new(
            "analytic",
            "lag(x[, offset[, default[, ignoreNull]]]) [OVER (PARTITION BY k WHEN c)]",
            "The value of x offset rows back (per partition; rows not meeting WHEN are not remembered).",
            "lag(temperature) → 20.5",
        ),
    ),
    (
        "latest",
        FunctionDoc::new(
            "analytic",
            "latest(x[, default]) [OVER (...)]",
            "The latest non-null value of x, this row's included.",
            "latest(status, 0) → 3",
        ),
    ),
    (
        "changed_col",
        FunctionDoc::new(
            "analytic",
            "changed_col(ignoreNull, x) [OVER (...)]",
            "x when it differs from the last value seen, else null.",
            "changed_col(true, status) → 2",
        ),
    ),
    (
        "had_changed",
        FunctionDoc::new(
            "analytic",
            "had_changed(ignoreNull, x, ...) [OVER (...)]",
            "Whether any of the values changed since the last row.",
            "had_changed(true, status) → true",
        ),
    ),
    (
        "changed_cols",
        FunctionDoc::new(
            "analytic",
            "changed_cols(prefix, ignoreNull, x, ... | *)",
            "Output fields prefix+name for the columns whose value changed (SELECT only).",
            "changed_cols(\"c_\", true, a, b) → {\"c_a\":1}",
        ),
    ),
    (
        "acc_sum",
        FunctionDoc::new(
            "analytic",
            "acc_sum(x) [OVER (...)]",
            "Running sum.",
            "acc_sum(qty) → 10",
        ),
    ),
    (
        "acc_min",
        FunctionDoc::new(
            "analytic",
            "acc_min(x) [OVER (...)]",
            "Running minimum.",
            "acc_min(v) → 1",
        ),
    ),
    (
        "acc_max",
        FunctionDoc::new(
            "analytic",
            "acc_max(x) [OVER (...)]",
            "Running maximum.",
            "acc_max(v) → 9",
        ),
    ),
    (
        "acc_avg",
        FunctionDoc::new(
            "analytic",
            "acc_avg(x) [OVER (...)]",
            "Running average.",
            "acc_avg(v) → 4.5",
        ),
    ),
    (
        "acc_count",
        FunctionDoc::new(
            "analytic",
            "acc_count(x) [OVER (...)]",
            "Running count of non-null values.",
            "acc_count(v) → 3",
        ),
    ),
];
