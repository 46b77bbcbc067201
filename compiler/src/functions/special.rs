//! Documentation of the functions the binder handles itself rather than the registry:
//! aggregates, analytic functions, windows and the functions that read the rule, the window or
//! the message. They appear in the same catalogue (docs/functions.md, `/metadata/functions`).

use super::FunctionDoc;

const fn doc(
    category: &'static str,
    syntax: &'static str,
    description: &'static str,
    example: &'static str,
) -> FunctionDoc {
    FunctionDoc {
        category,
        syntax,
        description,
        example,
    }
}

/// (name, documentation) of every function the binder implements.
pub const SPECIAL: &[(&str, FunctionDoc)] = &[
    (
        "avg",
        doc(
            "aggregate",
            "avg(x)",
            "Average of the group's non-null numbers; integers average with integer division.",
            "avg(temperature) → 21.5",
        ),
    ),
    (
        "count",
        doc(
            "aggregate",
            "count(x) / count(*)",
            "Non-null values of x, or rows, in the group.",
            "count(*) → 12",
        ),
    ),
    (
        "max",
        doc(
            "aggregate",
            "max(x)",
            "Largest number or string of the group.",
            "max(humidity) → 80",
        ),
    ),
    (
        "min",
        doc(
            "aggregate",
            "min(x)",
            "Smallest number or string of the group.",
            "min(humidity) → 20",
        ),
    ),
    (
        "sum",
        doc(
            "aggregate",
            "sum(x)",
            "Sum of the group's numbers; integers stay integers.",
            "sum(qty) → 42",
        ),
    ),
    (
        "collect",
        doc(
            "aggregate",
            "collect(x) / collect(*)",
            "The group's values (nulls included), or whole rows, as an array in window order.",
            "collect(device) → [\"a\",\"b\"]",
        ),
    ),
    (
        "last_value",
        doc(
            "aggregate",
            "last_value(x, ignoreNull)",
            "The group's last value, or its last non-null value.",
            "last_value(status, true) → 2",
        ),
    ),
    (
        "merge_agg",
        doc(
            "aggregate",
            "merge_agg(obj) / merge_agg(*)",
            "The group's objects merged, later keys overwriting earlier ones.",
            "merge_agg(props) → {\"a\":1,\"b\":2}",
        ),
    ),
    (
        "deduplicate",
        doc(
            "aggregate",
            "deduplicate(x, all)",
            "Rows with distinct x (first of each) or, without all, the last row if its x is new.",
            "deduplicate(code, true) → [{...},{...}]",
        ),
    ),
    (
        "median",
        doc(
            "aggregate",
            "median(x)",
            "Median of the group's numbers (mean of the two middle ones).",
            "median(temperature) → 21",
        ),
    ),
    (
        "stddev",
        doc(
            "aggregate",
            "stddev(x)",
            "Population standard deviation.",
            "stddev(v) → 1.5",
        ),
    ),
    (
        "stddevs",
        doc(
            "aggregate",
            "stddevs(x)",
            "Sample standard deviation (null for one value).",
            "stddevs(v) → 1.7",
        ),
    ),
    (
        "var",
        doc(
            "aggregate",
            "var(x)",
            "Population variance.",
            "var(v) → 2.25",
        ),
    ),
    (
        "vars",
        doc(
            "aggregate",
            "vars(x)",
            "Sample variance (null for one value).",
            "vars(v) → 3",
        ),
    ),
    (
        "percentile_cont",
        doc(
            "aggregate",
            "percentile_cont(x, p)",
            "Percentile p (0..1), interpolated between ranks.",
            "percentile_cont(v, 0.5) → 2.5",
        ),
    ),
    (
        "percentile_disc",
        doc(
            "aggregate",
            "percentile_disc(x, p)",
            "Percentile p (0..1), the nearest-rank value.",
            "percentile_disc(v, 0.5) → 2",
        ),
    ),
    (
        "lag",
        doc(
            "analytic",
            "lag(x[, offset[, default[, ignoreNull]]]) [OVER (PARTITION BY k WHEN c)]",
            "The value of x offset rows back (per partition; rows not meeting WHEN are not remembered).",
            "lag(temperature) → 20.5",
        ),
    ),
    (
        "latest",
        doc(
            "analytic",
            "latest(x[, default]) [OVER (...)]",
            "The latest non-null value of x, this row's included.",
            "latest(status, 0) → 3",
        ),
    ),
    (
        "changed_col",
        doc(
            "analytic",
            "changed_col(ignoreNull, x) [OVER (...)]",
            "x when it differs from the last value seen, else null.",
            "changed_col(true, status) → 2",
        ),
    ),
    (
        "had_changed",
        doc(
            "analytic",
            "had_changed(ignoreNull, x, ...) [OVER (...)]",
            "Whether any of the values changed since the last row.",
            "had_changed(true, status) → true",
        ),
    ),
    (
        "changed_cols",
        doc(
            "analytic",
            "changed_cols(prefix, ignoreNull, x, ... | *)",
            "Output fields prefix+name for the columns whose value changed (SELECT only).",
            "changed_cols(\"c_\", true, a, b) → {\"c_a\":1}",
        ),
    ),
    (
        "acc_sum",
        doc(
            "analytic",
            "acc_sum(x) [OVER (...)]",
            "Running sum.",
            "acc_sum(qty) → 10",
        ),
    ),
    (
        "acc_min",
        doc(
            "analytic",
            "acc_min(x) [OVER (...)]",
            "Running minimum.",
            "acc_min(v) → 1",
        ),
    ),
    (
        "acc_max",
        doc(
            "analytic",
            "acc_max(x) [OVER (...)]",
            "Running maximum.",
            "acc_max(v) → 9",
        ),
    ),
    (
        "acc_avg",
        doc(
            "analytic",
            "acc_avg(x) [OVER (...)]",
            "Running average.",
            "acc_avg(v) → 4.5",
        ),
    ),
    (
        "acc_count",
        doc(
            "analytic",
            "acc_count(x) [OVER (...)]",
            "Running count of non-null values.",
            "acc_count(v) → 3",
        ),
    ),
    (
        "tumblingwindow",
        doc(
            "window",
            "TUMBLINGWINDOW(unit, size)",
            "GROUP BY window: back-to-back windows aligned to natural time (unit DD, HH, MI, SS, MS).",
            "GROUP BY TUMBLINGWINDOW(ss, 10)",
        ),
    ),
    (
        "hoppingwindow",
        doc(
            "window",
            "HOPPINGWINDOW(unit, size, hop)",
            "GROUP BY window: windows of size starting every hop.",
            "GROUP BY HOPPINGWINDOW(ss, 10, 5)",
        ),
    ),
    (
        "slidingwindow",
        doc(
            "window",
            "SLIDINGWINDOW(unit, size[, delay]) [OVER (WHEN c)]",
            "GROUP BY window: one window per (triggering) row over the size before it (plus delay after).",
            "GROUP BY SLIDINGWINDOW(ss, 10) OVER (WHEN t > 30)",
        ),
    ),
    (
        "sessionwindow",
        doc(
            "window",
            "SESSIONWINDOW(unit, maxDuration, timeout)",
            "GROUP BY window: rows until a gap longer than timeout, cut at maxDuration ticks.",
            "GROUP BY SESSIONWINDOW(mi, 60, 5)",
        ),
    ),
    (
        "countwindow",
        doc(
            "window",
            "COUNTWINDOW(n[, step])",
            "GROUP BY window: the last n rows, every step rows.",
            "GROUP BY COUNTWINDOW(5)",
        ),
    ),
    (
        "statewindow",
        doc(
            "window",
            "STATEWINDOW(begin, emit) / STATEWINDOW(c) [OVER (PARTITION BY k)]",
            "GROUP BY window: from a row meeting begin to one meeting emit.",
            "GROUP BY STATEWINDOW(s = 1, s = 0)",
        ),
    ),
    (
        "window_start",
        doc(
            "window",
            "window_start()",
            "Start of the window, epoch milliseconds.",
            "window_start() → 1700000000000",
        ),
    ),
    (
        "window_end",
        doc(
            "window",
            "window_end()",
            "End of the window, epoch milliseconds.",
            "window_end() → 1700000010000",
        ),
    ),
    (
        "window_trigger",
        doc(
            "window",
            "window_trigger()",
            "The time the window was emitted at (its end).",
            "window_trigger() → 1700000010000",
        ),
    ),
    (
        "row_number",
        doc(
            "window",
            "row_number() [OVER ([PARTITION BY k, ...] [ORDER BY e [ASC|DESC], ...])]",
            "Position of the row within its emission (or its partition of it, in ORDER BY order), from 1; 1 without a window.",
            "row_number() OVER (PARTITION BY device ORDER BY t DESC) → 1",
        ),
    ),
    (
        "last_hit_count",
        doc(
            "other",
            "last_hit_count()",
            "How many rows passed before: in WHERE it reads the count of earlier passing rows; in SELECT it counts every row.",
            "WHERE last_hit_count() < 3",
        ),
    ),
    (
        "last_hit_time",
        doc(
            "other",
            "last_hit_time()",
            "Time of the last row that passed (event time, epoch ms; 0 before any).",
            "WHERE ts - last_hit_time() > 1000",
        ),
    ),
    (
        "last_agg_hit_count",
        doc(
            "aggregate",
            "last_agg_hit_count()",
            "How many window emissions passed HAVING before (SELECT: how many result rows before).",
            "HAVING last_agg_hit_count() < 2",
        ),
    ),
    (
        "last_agg_hit_time",
        doc(
            "aggregate",
            "last_agg_hit_time()",
            "End time of the last window emission that passed HAVING (0 before any).",
            "HAVING window_end() - last_agg_hit_time() >= 60000",
        ),
    ),
    (
        "event_time",
        doc(
            "other",
            "event_time()",
            "The row's time (event or arrival), or the window's end in a window's results.",
            "event_time() → 1700000000123",
        ),
    ),
    (
        "rule_id",
        doc(
            "other",
            "rule_id()",
            "The id of the rule.",
            "rule_id() → \"rule1\"",
        ),
    ),
    (
        "rule_start",
        doc(
            "other",
            "rule_start()",
            "When the rule's current run started, epoch milliseconds.",
            "rule_start() → 1700000000000",
        ),
    ),
    (
        "meta",
        doc(
            "other",
            "meta(key)",
            "Metadata of the message: topic, qos, messageid.",
            "meta(topic) → \"sensors/a\"",
        ),
    ),
    (
        "mqtt",
        doc(
            "other",
            "mqtt(key)",
            "MQTT metadata of the message, as meta.",
            "mqtt(topic) → \"sensors/a\"",
        ),
    ),
    (
        "extract",
        doc(
            "multi-column",
            "extract(object)",
            "The object's keys become output fields (SELECT only).",
            "SELECT extract(payload) FROM s",
        ),
    ),
    (
        "unnest",
        doc(
            "multi-row",
            "unnest(array)",
            "One row per element (objects spread into fields), each its own emission (SELECT only).",
            "SELECT unnest(readings) FROM s",
        ),
    ),
];
