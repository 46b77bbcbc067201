//! Documentation of the aggregate functions. The binder binds their calls
//! (`crate::bind`'s aggregate module) and [`crate::aggregate`] computes them per group; only
//! plugin aggregates go through the registry.

use super::FunctionDoc;

/// (name, documentation) of every built-in aggregate function: the binder answers these calls itself, outside the
/// registry, and they appear in the same catalogue.
pub(super) const BINDER_DOCS: &[(&str, FunctionDoc)] = &[
    (
        "avg",
        FunctionDoc::new(
            "aggregate",
            "avg(x)",
            "Average of the group's non-null numbers; integers average with integer division.",
            "avg(temperature) → 21.5",
        ),
    ),
    (
        "count",
        FunctionDoc::new(
            "aggregate",
            "count(x) / count(*)",
            "Non-null values of x, or rows, in the group.",
            "count(*) → 12",
        ),
    ),
    (
        "max",
        FunctionDoc::new(
            "aggregate",
            "max(x)",
            "Largest number or string of the group.",
            "max(humidity) → 80",
        ),
    ),
    (
        "min",
        FunctionDoc::new(
            "aggregate",
            "min(x)",
            "Smallest number or string of the group.",
            "min(humidity) → 20",
        ),
    ),
    (
        "sum",
        FunctionDoc::new(
            "aggregate",
            "sum(x)",
            "Sum of the group's numbers; integers stay integers.",
            "sum(qty) → 42",
        ),
    ),
    (
        "collect",
        FunctionDoc::new(
            "aggregate",
            "collect(x) / collect(*)",
            "The group's values (nulls included), or whole rows, as an array in window order.",
            "collect(device) → [\"a\",\"b\"]",
        ),
    ),
    (
        "last_value",
        FunctionDoc::new(
            "aggregate",
            "last_value(x, ignoreNull)",
            "The group's last value, or its last non-null value.",
            "last_value(status, true) → 2",
        ),
    ),
    (
        "merge_agg",
        FunctionDoc::new(
            "aggregate",
            "merge_agg(obj) / merge_agg(*)",
            "The group's objects merged, later keys overwriting earlier ones.",
            "merge_agg(props) → {\"a\":1,\"b\":2}",
        ),
    ),
    (
        "deduplicate",
        FunctionDoc::new(
            "aggregate",
            "deduplicate(x, all)",
            "Rows with distinct x (first of each) or, without all, the last row if its x is new.",
            "deduplicate(code, true) → [{...},{...}]",
        ),
    ),
    (
        "median",
        FunctionDoc::new(
            "aggregate",
            "median(x)",
            "Median of the group's numbers (mean of the two middle ones).",
            "median(temperature) → 21",
        ),
    ),
    (
        "stddev",
        FunctionDoc::new(
            "aggregate",
            "stddev(x)",
            "Population standard deviation.",
            "stddev(v) → 1.5",
        ),
    ),
    (
        "stddevs",
        FunctionDoc::new(
            "aggregate",
            "stddevs(x)",
            "Sample standard deviation (null for one value).",
            "stddevs(v) → 1.7",
        ),
    ),
    (
        "var",
        FunctionDoc::new(
            "aggregate",
            "var(x)",
            "Population variance.",
            "var(v) → 2.25",
        ),
    ),
    (
        "vars",
        FunctionDoc::new(
            "aggregate",
            "vars(x)",
            "Sample variance (null for one value).",
            "vars(v) → 3",
        ),
    ),
    (
        "percentile_cont",
        FunctionDoc::new(
            "aggregate",
            "percentile_cont(x, p)",
            "Percentile p (0..1), interpolated between ranks.",
            "percentile_cont(v, 0.5) → 2.5",
        ),
    ),
    (
        "percentile_disc",
        FunctionDoc::new(
            "aggregate",
            "percentile_disc(x, p)",
            "Percentile p (0..1), the nearest-rank value.",
            "percentile_disc(v, 0.5) → 2",
        ),
    ),
    (
        "last_agg_hit_count",
        FunctionDoc::new(
            "aggregate",
            "last_agg_hit_count()",
            "How many window emissions passed HAVING before (SELECT: how many result rows before).",
            "HAVING last_agg_hit_count() < 2",
        ),
    ),
    (
        "last_agg_hit_time",
        FunctionDoc::new(
            "aggregate",
            "last_agg_hit_time()",
            "End time of the last window emission that passed HAVING (0 before any).",
            "HAVING window_end() - last_agg_hit_time() >= 60000",
        ),
    ),
];
