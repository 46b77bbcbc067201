//! The hidden columns the engine adds to batches: one definition of every name, and the
//! predicates that tell them from a stream's own fields.
//!
//! Who adds them: the decoders (message metadata), the scan (a row's time), the window
//! preparer (group key, aggregate arguments and window conditions), windows (aggregate results
//! and bounds), the analytic and row-number nodes, and stream joins (which stream a row came
//! from, and its own event time). Every name starts with [`HIDDEN_PREFIX`]; none is ever an
//! output field. The compiler depends on no other crate of the workspace, so connectors and
//! dataflow both take the names from here.

/// The prefix every hidden column name starts with.
pub const HIDDEN_PREFIX: &str = "__";

/// Prefix of the columns that carry message metadata: `meta(topic)` reads `__meta_topic`.
pub const META_PREFIX: &str = "__meta_";
/// A row's time (event time, or processing time of arrival), epoch milliseconds.
pub const TS_COLUMN: &str = "__ts";
/// The encoded key a row was exchanged by (GROUP BY keys, or a table join's keys).
pub const KEY_COLUMN: &str = "__key";
/// Prefix of the window-bound columns of a window's result rows.
pub const WINDOW_PREFIX: &str = "__window_";
/// Column of a window's result rows holding `window_start()`.
pub const WINDOW_START: &str = "__window_start";
/// Column of a window's result rows holding `window_end()`.
pub const WINDOW_END: &str = "__window_end";
/// The sliding window's `OVER (WHEN ...)` trigger condition, per row.
pub const TRIGGER_COLUMN: &str = "__trigger";
/// The state window's begin condition, per row.
pub const BEGIN_COLUMN: &str = "__begin";
/// The state window's emit condition, per row.
pub const EMIT_COLUMN: &str = "__emit";
/// The encoded `OVER (PARTITION BY ...)` key of a state window, per row.
pub const PARTITION_COLUMN: &str = "__partition";
/// Prefix of the columns holding aggregate arguments, evaluated on raw rows.
pub const ARG_PREFIX: &str = "__arg_";
/// Prefix of the columns holding whole rows for aggregates such as `collect(*)`.
pub const ROW_PREFIX: &str = "__row_";
/// Prefix of the aggregate result columns.
pub const AGG_PREFIX: &str = "__agg_";
/// Prefix of the analytic call result columns.
pub const ANALYTIC_PREFIX: &str = "__an_";
/// Prefix of the `row_number() OVER (...)` result columns.
pub const ROW_NUMBER_PREFIX: &str = "__rownum_";
/// Which stream a joined row came from (0 = the FROM stream, then JOIN order).
pub const SOURCE_COLUMN: &str = "__src";
/// A joined stream's own event time (its `TIMESTAMP` field).
pub const EVENT_TIME_COLUMN: &str = "__evt";

/// The column holding metadata `key` of each message.
pub fn meta_column(key: &str) -> String {
    format!("{META_PREFIX}{key}")
}

/// The column holding argument `arg` of aggregate `agg`.
pub fn arg_column(agg: usize, arg: usize) -> String {
    format!("{ARG_PREFIX}{agg}_{arg}")
}

/// The column holding the whole row for aggregate `agg`.
pub fn row_column(agg: usize) -> String {
    format!("{ROW_PREFIX}{agg}")
}

/// The result column of aggregate `agg`.
pub fn agg_column(agg: usize) -> String {
    format!("{AGG_PREFIX}{agg}")
}

/// The result column of analytic call `i`.
pub fn analytic_column(i: usize) -> String {
    format!("{ANALYTIC_PREFIX}{i}")
}

/// The result column of `row_number() OVER (...)` call `i`.
pub fn row_number_column(i: usize) -> String {
    format!("{ROW_NUMBER_PREFIX}{i}")
}

/// True for a column that carries message metadata.
pub fn is_meta_column(name: &str) -> bool {
    name.starts_with(META_PREFIX)
}

/// True for an aggregate result column.
pub fn is_agg_column(name: &str) -> bool {
    name.starts_with(AGG_PREFIX)
}

/// True for the columns `SELECT *` leaves out: everything hidden that can reach a projection.
///
/// The window's scratch columns ([`is_window_scratch`]) are not listed: the window drops them
/// before its result rows go on, so listing them would only hide user fields of those names.
pub fn is_hidden(name: &str) -> bool {
    is_meta_column(name)
        || name == TS_COLUMN
        || name == KEY_COLUMN
        || name.starts_with(AGG_PREFIX)
        || name.starts_with(WINDOW_PREFIX)
        || name.starts_with(ANALYTIC_PREFIX)
        || name.starts_with(ROW_NUMBER_PREFIX)
        || name == SOURCE_COLUMN
        || name == EVENT_TIME_COLUMN
}

/// True for the columns that live only between the window preparer and the window: the window
/// leaves them out of the input columns its result rows carry.
///
/// Metadata and analytic columns are not scratch: results read them after the window (a
/// carried `meta(topic)`, an analytic value), so they must survive it.
pub fn is_window_scratch(name: &str) -> bool {
    name == TS_COLUMN
        || name == KEY_COLUMN
        || name == TRIGGER_COLUMN
        || name == BEGIN_COLUMN
        || name == EMIT_COLUMN
        || name == PARTITION_COLUMN
        || name.starts_with(ARG_PREFIX)
        || name.starts_with(ROW_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        META_PREFIX,
        TS_COLUMN,
        KEY_COLUMN,
        WINDOW_PREFIX,
        WINDOW_START,
        WINDOW_END,
        TRIGGER_COLUMN,
        BEGIN_COLUMN,
        EMIT_COLUMN,
        PARTITION_COLUMN,
        ARG_PREFIX,
        ROW_PREFIX,
        AGG_PREFIX,
        ANALYTIC_PREFIX,
        ROW_NUMBER_PREFIX,
        SOURCE_COLUMN,
        EVENT_TIME_COLUMN,
    ];

    #[test]
    fn every_name_is_hidden_by_prefix_and_no_prefix_claims_another_name() {
        for name in NAMES {
            assert!(name.starts_with(HIDDEN_PREFIX), "{name}");
        }
        // A prefix that matched another fixed name would misfile that column.
        let prefixes = [
            META_PREFIX,
            WINDOW_PREFIX,
            ARG_PREFIX,
            ROW_PREFIX,
            AGG_PREFIX,
            ANALYTIC_PREFIX,
            ROW_NUMBER_PREFIX,
        ];
        for p in prefixes {
            for name in NAMES.iter().filter(|n| **n != p) {
                let expected = p == WINDOW_PREFIX && name.starts_with("__window_");
                assert_eq!(name.starts_with(p), expected, "{p} claims {name}");
            }
        }
        assert!(!row_number_column(0).starts_with(ROW_PREFIX));
    }

    #[test]
    fn star_hides_what_reaches_a_projection_and_the_window_drops_its_scratch() {
        for name in [
            meta_column("topic"),
            TS_COLUMN.to_string(),
            agg_column(0),
            WINDOW_START.to_string(),
            WINDOW_END.to_string(),
            analytic_column(2),
            row_number_column(1),
            SOURCE_COLUMN.to_string(),
            EVENT_TIME_COLUMN.to_string(),
        ] {
            assert!(is_hidden(&name), "{name}");
        }
        for name in [
            TS_COLUMN.to_string(),
            KEY_COLUMN.to_string(),
            TRIGGER_COLUMN.to_string(),
            PARTITION_COLUMN.to_string(),
            arg_column(0, 1),
            row_column(3),
        ] {
            assert!(is_window_scratch(&name), "{name}");
        }
        // Results read metadata and analytic values after the window.
        assert!(!is_window_scratch(&meta_column("topic")));
        assert!(!is_window_scratch(&analytic_column(0)));
        for user in ["temperature", "_x", "meta_topic"] {
            assert!(!is_hidden(user) && !is_window_scratch(user), "{user}");
        }
    }
}
