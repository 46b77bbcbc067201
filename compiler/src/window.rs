//! Windows and aggregates in the logical plan: what `GROUP BY [keys,] WINDOW(...)` and the
//! aggregate calls of a rule compile to.
//!
//! The renderer evaluates everything a window needs on the raw rows *before* the rows are
//! grouped (group keys, aggregate arguments, the columns the result still reads), so windows
//! and accumulators never evaluate SQL expressions themselves. After the window closes, the
//! result rows carry the columns named here and the rest of the plan (HAVING, ORDER BY,
//! SELECT, LIMIT) runs on them like on any batch.

use std::fmt;

use arrow::datatypes::DataType;

use crate::expr::Expr;
use crate::types::SqlType;

// The hidden column names moved to `columns`; these paths stay for the crates that use them.
pub use crate::columns::{
    BEGIN_COLUMN, EMIT_COLUMN, KEY_COLUMN, PARTITION_COLUMN, TRIGGER_COLUMN, TS_COLUMN, WINDOW_END,
    WINDOW_START, agg_column, arg_column, row_column,
};

/// A window kind with its sizes in milliseconds (rows for COUNTWINDOW).
#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    /// `TUMBLINGWINDOW(unit, size)`: back-to-back windows aligned to natural time.
    Tumbling {
        /// Length.
        size: u64,
    },
    /// `HOPPINGWINDOW(unit, size, hop)`: windows of `size` starting every `hop`.
    Hopping {
        /// Length.
        size: u64,
        /// Distance between window starts.
        hop: u64,
    },
    /// `SLIDINGWINDOW(unit, size[, delay])`: one window per (triggering) row.
    Sliding {
        /// How far back from the triggering row.
        size: u64,
        /// How long after the triggering row the window still collects rows.
        delay: u64,
    },
    /// `SESSIONWINDOW(unit, maxDuration, timeout)`.
    Session {
        /// Longest a session may last.
        max: u64,
        /// Gap without rows that ends a session.
        timeout: u64,
    },
    /// `COUNTWINDOW(n[, step])`.
    Count {
        /// Rows per window.
        size: u64,
        /// Rows between windows (`size` when absent).
        step: u64,
    },
    /// `STATEWINDOW(begin, emit)` / `STATEWINDOW(cond)`: rows from a row that meets `begin`
    /// until one that meets `emit`.
    State {
        /// The single-condition form: a row meeting it closes the window and opens the next.
        single: bool,
    },
    /// No window: aggregates without GROUP BY work on each row alone (eKuiper's behaviour:
    /// `count(*)` is 1, `sum(x)` is x).
    Rows,
}

impl WindowKind {
    /// True for windows defined by time; the others ignore timestamps.
    pub fn is_time_based(&self) -> bool {
        !matches!(
            self,
            WindowKind::Count { .. } | WindowKind::State { .. } | WindowKind::Rows
        )
    }

    /// True when each group's result depends only on the rows of that group, so rows can be
    /// spread over workers by GROUP BY key (tumbling and hopping windows). The other kinds
    /// decide window bounds from all rows of the stream and run on one worker.
    pub fn is_partitionable(&self) -> bool {
        matches!(
            self,
            WindowKind::Tumbling { .. } | WindowKind::Hopping { .. }
        )
    }
}

/// A window with its modifiers.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// The kind and sizes.
    pub kind: WindowKind,
    /// `FILTER (WHERE cond)`: rows that enter the window.
    pub filter: Option<Expr>,
    /// `OVER (WHEN cond)` of a sliding window: rows that trigger an emission.
    pub trigger: Option<Expr>,
    /// State window conditions `(begin, emit)`.
    pub state: Option<(Expr, Expr)>,
    /// `OVER (PARTITION BY ...)` of a state window.
    pub partition: Vec<Expr>,
    /// The SQL text of the window call, for `explain`.
    pub text: String,
}

/// An aggregate function of eKuiper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// `avg(x)`.
    Avg,
    /// `count(x)` / `count(*)`.
    Count,
    /// `max(x)`.
    Max,
    /// `min(x)`.
    Min,
    /// `sum(x)`.
    Sum,
    /// `collect(x)`: the values as an array.
    Collect,
    /// `last_value(x, ignoreNull)`.
    LastValue,
    /// `merge_agg(obj)`: the objects merged into one.
    MergeAgg,
    /// `deduplicate(x, all)`.
    Deduplicate,
    /// `median(x)`.
    Median,
    /// `stddev(x)`: population standard deviation.
    Stddev,
    /// `stddevs(x)`: sample standard deviation.
    Stddevs,
    /// `var(x)`: population variance.
    Var,
    /// `vars(x)`: sample variance.
    Vars,
    /// `percentile_cont(x, p)`.
    PercentileCont,
    /// `percentile_disc(x, p)`.
    PercentileDisc,
    /// An aggregate function from a plugin (see [`AggCall::custom`]).
    Custom,
}

impl AggKind {
    /// The aggregate called `name` (lowercase), if it is one.
    pub fn from_name(name: &str) -> Option<AggKind> {
        Some(match name {
            "avg" => AggKind::Avg,
            "count" => AggKind::Count,
            "max" => AggKind::Max,
            "min" => AggKind::Min,
            "sum" => AggKind::Sum,
            "collect" => AggKind::Collect,
            "last_value" => AggKind::LastValue,
            "merge_agg" => AggKind::MergeAgg,
            "deduplicate" => AggKind::Deduplicate,
            "median" => AggKind::Median,
            "stddev" => AggKind::Stddev,
            "stddevs" => AggKind::Stddevs,
            "var" => AggKind::Var,
            "vars" => AggKind::Vars,
            "percentile_cont" => AggKind::PercentileCont,
            "percentile_disc" => AggKind::PercentileDisc,
            _ => return None,
        })
    }

    /// Every aggregate's SQL name.
    pub const NAMES: [&'static str; 16] = [
        "avg",
        "count",
        "max",
        "min",
        "sum",
        "collect",
        "last_value",
        "merge_agg",
        "deduplicate",
        "median",
        "stddev",
        "stddevs",
        "var",
        "vars",
        "percentile_cont",
        "percentile_disc",
    ];

    /// The SQL name (`custom` for plugin aggregates, which carry their own name).
    pub fn name(self) -> &'static str {
        Self::NAMES.get(self as usize).copied().unwrap_or("custom")
    }

    /// Accepted argument counts (min, max).
    pub fn arity(self) -> (usize, usize) {
        match self {
            AggKind::LastValue | AggKind::Deduplicate | AggKind::PercentileCont => (2, 2),
            AggKind::PercentileDisc => (2, 2),
            _ => (1, 1),
        }
    }

    /// True when the arguments must be numbers (checked at plan time when their type is known):
    /// `sum`, and the statistics that return a FLOAT whatever numbers come in.
    pub fn needs_numbers(self) -> bool {
        self == AggKind::Sum || self.return_type(&SqlType::Any) == SqlType::Known(DataType::Float64)
    }

    /// The result type given the first argument's type.
    pub fn return_type(self, arg: &SqlType) -> SqlType {
        let known = |t: DataType| SqlType::Known(t);
        match self {
            AggKind::Count => known(DataType::Int64),
            AggKind::Avg
            | AggKind::Median
            | AggKind::Stddev
            | AggKind::Stddevs
            | AggKind::Var
            | AggKind::Vars
            | AggKind::PercentileCont
            | AggKind::PercentileDisc => known(DataType::Float64),
            AggKind::Sum => match arg {
                SqlType::Known(t) if t.is_integer() => known(DataType::Int64),
                SqlType::Known(t) if crate::types::is_numeric(t) => known(DataType::Float64),
                _ => SqlType::Any,
            },
            AggKind::Max | AggKind::Min | AggKind::LastValue => arg.clone(),
            AggKind::Collect | AggKind::MergeAgg | AggKind::Deduplicate | AggKind::Custom => {
                SqlType::Any
            }
        }
    }
}

/// One aggregate call of the query; its arguments are evaluated on the raw rows.
#[derive(Debug, Clone)]
pub struct AggCall {
    /// Which aggregate.
    pub kind: AggKind,
    /// Argument expressions; `count(*)`, `collect(*)` and `merge_agg(*)` have none.
    pub args: Vec<Expr>,
    /// The call needs whole rows: `collect(*)`, `merge_agg(*)` (as its value) and
    /// `deduplicate` (to return the rows it keeps).
    pub whole_row: bool,
    /// Result type.
    pub ty: SqlType,
    /// The function of a plugin aggregate ([`AggKind::Custom`]).
    pub custom: Option<std::sync::Arc<dyn crate::functions::ScalarFunction>>,
}

impl fmt::Display for AggCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        let name = match &self.custom {
            Some(func) => func.name(),
            None => self.kind.name(),
        };
        if args.is_empty() {
            return write!(f, "{name}(*)");
        }
        write!(f, "{name}({})", args.join(", "))
    }
}

/// Which input columns the result rows keep (the values of each group's first row).
#[derive(Debug, Clone, PartialEq)]
pub enum Carry {
    /// Every column (the query has `*`).
    All,
    /// Only these columns (by their stored names, meta columns included).
    Columns(Vec<String>),
}

/// What an Aggregate node computes.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// The window, if any (`None`: GROUP BY without a window is rejected, so this is only
    /// `None` for plans that never reach the renderer).
    pub window: WindowSpec,
    /// GROUP BY keys (the window excluded).
    pub keys: Vec<Expr>,
    /// The aggregate calls; result column `i` is [`agg_column`]`(i)`.
    pub aggs: Vec<AggCall>,
    /// Input columns the result rows keep.
    pub carry: Carry,
    /// One row per group even without aggregates (`last_agg_hit_*` makes an aggregate rule).
    pub grouped: bool,
}

impl AggregateSpec {
    /// True when the window emits its rows as they are (no aggregate, no key).
    pub fn passes_rows(&self) -> bool {
        self.keys.is_empty() && self.aggs.is_empty() && !self.grouped
    }
}

impl fmt::Display for AggregateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        let aggs: Vec<String> = self
            .aggs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{a} AS {}", agg_column(i)))
            .collect();
        write!(f, "{}", self.window.text)?;
        if let Some(filter) = &self.window.filter {
            write!(f, " FILTER (WHERE {filter})")?;
        }
        if !keys.is_empty() {
            write!(f, " keys [{}]", keys.join(", "))?;
        }
        if !aggs.is_empty() {
            write!(f, " aggregates [{}]", aggs.join(", "))?;
        }
        Ok(())
    }
}

/// One ORDER BY key.
#[derive(Debug, Clone)]
pub struct SortKey {
    /// The value to sort by (evaluated on result rows).
    pub expr: Expr,
    /// Ascending (the default) or descending.
    pub ascending: bool,
}

/// Milliseconds in one eKuiper time unit (`DD HH MI SS MS`), `None` if it is not one.
pub fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "dd" => 86_400_000,
        "hh" => 3_600_000,
        "mi" => 60_000,
        "ss" => 1_000,
        "ms" => 1,
        _ => return None,
    })
}
