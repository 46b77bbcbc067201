//! Analytic functions (`lag`, `latest`, `changed_col`, `had_changed`, `acc_*`): functions with
//! state across rows, per `OVER (PARTITION BY ...)` key, updated only by rows that meet
//! `OVER (WHEN ...)`. eKuiper evaluates them first, on every row, before WHERE, so the plan
//! puts them right above the scan; each call becomes a hidden column the rest of the query
//! reads.

use std::fmt;

use arrow::datatypes::DataType;

use crate::expr::Expr;
use crate::types::SqlType;

pub use crate::columns::analytic_column;

/// An analytic function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalyticKind {
    /// `lag(expr[, offset[, default[, ignoreNull]]])`: the value `offset` rows back.
    Lag,
    /// `latest(expr[, default])`: the latest non-null value.
    Latest,
    /// `changed_col(ignoreNull, expr)`: the value when it changed, else null.
    ChangedCol,
    /// `had_changed(ignoreNull, expr...)`: whether any value changed.
    HadChanged,
    /// `acc_sum(expr)`: running sum.
    AccSum,
    /// `acc_min(expr)`: running minimum.
    AccMin,
    /// `acc_max(expr)`: running maximum.
    AccMax,
    /// `acc_avg(expr)`: running average.
    AccAvg,
    /// `acc_count(expr)`: running count of non-null values.
    AccCount,
    /// `changed_cols(prefix, ignoreNull, cols...)`: an object of the columns that changed,
    /// keyed `prefix + name` (spread into output fields).
    ChangedCols,
}

impl AnalyticKind {
    /// The analytic function called `name` (lowercase), if it is one.
    pub fn from_name(name: &str) -> Option<AnalyticKind> {
        Some(match name {
            "lag" => AnalyticKind::Lag,
            "latest" => AnalyticKind::Latest,
            "changed_col" => AnalyticKind::ChangedCol,
            "had_changed" => AnalyticKind::HadChanged,
            "acc_sum" => AnalyticKind::AccSum,
            "acc_min" => AnalyticKind::AccMin,
            "acc_max" => AnalyticKind::AccMax,
            "acc_avg" => AnalyticKind::AccAvg,
            "acc_count" => AnalyticKind::AccCount,
            "changed_cols" => AnalyticKind::ChangedCols,
            _ => return None,
        })
    }

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            AnalyticKind::Lag => "lag",
            AnalyticKind::Latest => "latest",
            AnalyticKind::ChangedCol => "changed_col",
            AnalyticKind::HadChanged => "had_changed",
            AnalyticKind::AccSum => "acc_sum",
            AnalyticKind::AccMin => "acc_min",
            AnalyticKind::AccMax => "acc_max",
            AnalyticKind::AccAvg => "acc_avg",
            AnalyticKind::AccCount => "acc_count",
            AnalyticKind::ChangedCols => "changed_cols",
        }
    }

    /// Accepted argument counts (min, max; `usize::MAX` for any).
    pub fn arity(self) -> (usize, usize) {
        match self {
            AnalyticKind::Lag => (1, 4),
            AnalyticKind::Latest => (1, 2),
            AnalyticKind::ChangedCol => (2, 2),
            AnalyticKind::HadChanged => (2, usize::MAX),
            AnalyticKind::ChangedCols => (3, usize::MAX),
            _ => (1, 1),
        }
    }

    /// The result type from the argument types.
    pub fn return_type(self, args: &[SqlType]) -> SqlType {
        let value = args.first().cloned().unwrap_or(SqlType::Any);
        match self {
            AnalyticKind::Lag | AnalyticKind::Latest => {
                let default = match self {
                    AnalyticKind::Lag => args.get(2),
                    _ => args.get(1),
                };
                match default {
                    Some(d) if *d != value && *d != SqlType::Known(DataType::Null) => SqlType::Any,
                    _ => value,
                }
            }
            AnalyticKind::ChangedCol => args.get(1).cloned().unwrap_or(SqlType::Any),
            AnalyticKind::HadChanged => SqlType::Known(DataType::Boolean),
            AnalyticKind::ChangedCols => SqlType::Any,
            AnalyticKind::AccCount => SqlType::Known(DataType::Int64),
            AnalyticKind::AccAvg => SqlType::Known(DataType::Float64),
            AnalyticKind::AccSum | AnalyticKind::AccMin | AnalyticKind::AccMax => match value {
                SqlType::Known(t) if t.is_integer() => SqlType::Known(DataType::Int64),
                SqlType::Known(t) if crate::types::is_numeric(&t) => {
                    SqlType::Known(DataType::Float64)
                }
                _ => SqlType::Any,
            },
        }
    }
}

/// One analytic call of a query.
#[derive(Debug, Clone)]
pub struct AnalyticCall {
    /// Which function.
    pub kind: AnalyticKind,
    /// Its arguments, evaluated on each row.
    pub args: Vec<Expr>,
    /// `OVER (PARTITION BY ...)`: one state per distinct key.
    pub partition: Vec<Expr>,
    /// `OVER (WHEN ...)`: only rows meeting it update the state.
    pub when: Option<Expr>,
    /// Result type.
    pub ty: SqlType,
    /// `changed_cols`: the output name of each watched column (prefix included).
    pub names: Vec<String>,
}

impl fmt::Display for AnalyticCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        write!(f, "{}({})", self.kind.name(), args.join(", "))?;
        if !self.partition.is_empty() || self.when.is_some() {
            f.write_str(" OVER (")?;
            if !self.partition.is_empty() {
                let keys: Vec<String> = self.partition.iter().map(ToString::to_string).collect();
                write!(f, "PARTITION BY {}", keys.join(", "))?;
            }
            if let Some(w) = &self.when {
                if !self.partition.is_empty() {
                    f.write_str(" ")?;
                }
                write!(f, "WHEN {w}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}
