//! Analytic calls (`lag`, `latest`, `changed_col(s)`, `had_changed`, `acc_*`): arguments,
//! `OVER (PARTITION BY ... WHEN ...)` and argument checks; each call becomes a hidden column,
//! computed by one analytic node right above the scan.

use sqlparser::ast::{self as ast, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::{Binder, check_condition, pos_of};
use crate::analytic::{AnalyticCall, AnalyticKind};
use crate::columns::analytic_column;
use crate::error::{CompileError, Pos, Result};
use crate::eval::Literal;
use crate::expr::Expr;
use crate::plan::LogicalPlan;
use crate::types::SqlType;

impl Binder<'_> {
    /// Binds an analytic call: arguments, PARTITION BY and WHEN on raw rows; the call becomes
    /// a reference to its hidden column.
    pub(super) fn analytic(
        &mut self,
        kind: AnalyticKind,
        f: &ast::Function,
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let name = kind.name();
        if f.filter.is_some() {
            return Err(CompileError::at(
                format!("function \"{name}\" takes no FILTER"),
                pos,
            ));
        }
        let when = if f.over.is_some() {
            self.take_when(pos)
        } else {
            None
        };
        let mut partition = Vec::new();
        match &f.over {
            None => {}
            Some(ast::WindowType::WindowSpec(spec))
                if spec.order_by.is_empty() && spec.window_frame.is_none() =>
            {
                for e in &spec.partition_by {
                    partition.push(self.expr(e)?);
                }
            }
            Some(_) => {
                return Err(CompileError::at(
                    format!("the OVER clause of \"{name}\" takes only PARTITION BY and WHEN"),
                    pos,
                ));
            }
        }
        let when = match when {
            Some((_, cond)) => {
                let bound = self.expr(&cond)?;
                check_condition("WHEN", &bound, &cond)?;
                Some(bound)
            }
            None => None,
        };
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::List(list) => list.args.iter().collect(),
            _ => Vec::new(),
        };
        let mut bound = Vec::with_capacity(args.len());
        let mut names = Vec::new();
        for (k, a) in args.into_iter().enumerate() {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                    if kind == AnalyticKind::ChangedCols && k >= 2 =>
                {
                    let Some(schema) = self.schema().cloned() else {
                        return Err(CompileError::at(
                            "changed_cols(..., *) needs a stream with a schema; list the columns",
                            pos,
                        ));
                    };
                    for field in schema.fields() {
                        names.push(field.name().clone());
                        bound.push(Expr::Column {
                            name: field.name().clone(),
                            ty: SqlType::Known(field.data_type().clone()),
                        });
                    }
                }
                // `changed_col(true, *)`: the whole row, compared as one object.
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                    if kind != AnalyticKind::ChangedCols =>
                {
                    bound.push(Expr::Row { except: Vec::new() })
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    if kind == AnalyticKind::ChangedCols && k >= 2 {
                        names.push(
                            self.natural_name(e)
                                .unwrap_or_else(|| format!("kuiper_field_{}", k - 2)),
                        );
                    }
                    bound.push(self.expr(e)?)
                }
                other => {
                    return Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to \"{name}\""),
                        pos_of(other),
                    ));
                }
            }
        }
        let (min, max) = kind.arity();
        if bound.len() < min || bound.len() > max {
            let want = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" expects {want} argument(s), got {}",
                    bound.len()
                ),
                pos,
            ));
        }
        if kind == AnalyticKind::ChangedCols {
            let Expr::Literal(Literal::String(prefix)) = &bound[0] else {
                return Err(CompileError::at(
                    "the first argument of \"changed_cols\" must be a string prefix",
                    pos,
                ));
            };
            names = names.iter().map(|n| format!("{prefix}{n}")).collect();
        }
        let flag_at = match kind {
            AnalyticKind::ChangedCol | AnalyticKind::HadChanged => Some(0),
            AnalyticKind::ChangedCols => Some(1),
            AnalyticKind::Lag => Some(3).filter(|i| *i < bound.len()),
            _ => None,
        };
        if let Some(i) = flag_at
            && !matches!(bound[i], Expr::Literal(Literal::Bool(_)))
        {
            return Err(CompileError::at(
                format!("argument {} of \"{name}\" must be true or false", i + 1),
                pos,
            ));
        }
        if kind == AnalyticKind::Lag
            && let Some(offset) = bound.get(1)
            && !matches!(offset, Expr::Literal(Literal::Int(n)) if *n >= 1)
        {
            return Err(CompileError::at(
                "the offset of \"lag\" must be a positive integer",
                pos,
            ));
        }
        let types: Vec<SqlType> = bound.iter().map(Expr::sql_type).collect();
        let ty = kind.return_type(&types);
        let call = AnalyticCall {
            kind,
            args: bound,
            partition,
            when,
            ty: ty.clone(),
            names,
        };
        // The same call twice (often an alias used in another clause) is one state: eKuiper
        // evaluates an alias once per row.
        let text = call.to_string();
        let index = match self
            .analytics
            .iter()
            .position(|a| a.to_string() == text && a.names == call.names)
        {
            Some(i) => i,
            None => {
                self.analytics.push(call);
                self.analytics.len() - 1
            }
        };
        Ok(Expr::Column {
            name: analytic_column(index),
            ty,
        })
    }
}

/// Puts the analytic node right above the scan: eKuiper evaluates analytic functions first.
pub(super) fn above_scan(plan: LogicalPlan, calls: Vec<AnalyticCall>) -> LogicalPlan {
    match plan {
        LogicalPlan::Scan(_) => LogicalPlan::Analytic {
            input: Box::new(plan),
            calls,
        },
        LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
            input: Box::new(above_scan(*input, calls)),
            predicate,
        },
        LogicalPlan::Project { input, items } => LogicalPlan::Project {
            input: Box::new(above_scan(*input, calls)),
            items,
        },
        LogicalPlan::Aggregate { input, spec } => LogicalPlan::Aggregate {
            input: Box::new(above_scan(*input, calls)),
            spec,
        },
        LogicalPlan::Analytic { input, calls: c } => LogicalPlan::Analytic {
            input: Box::new(above_scan(*input, calls)),
            calls: c,
        },
        LogicalPlan::JoinTable { input, join } => LogicalPlan::JoinTable {
            input: Box::new(above_scan(*input, calls)),
            join,
        },
        LogicalPlan::Sort { input, keys } => LogicalPlan::Sort {
            input: Box::new(above_scan(*input, calls)),
            keys,
        },
        LogicalPlan::JoinStreams { input, join } => LogicalPlan::JoinStreams {
            input: Box::new(above_scan(*input, calls)),
            join,
        },
        LogicalPlan::RowNumber { input, specs } => LogicalPlan::RowNumber {
            input: Box::new(above_scan(*input, calls)),
            specs,
        },
        LogicalPlan::Limit { input, n } => LogicalPlan::Limit {
            input: Box::new(above_scan(*input, calls)),
            n,
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn analytic_calls_run_right_above_the_scan() {
        let plan = explain("SELECT lag(temperature) AS prev FROM demo WHERE temperature > 1");
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "Project: __an_0 AS prev",
                "Filter: (temperature > 1)",
                "Analytic: lag(temperature) AS __an_0",
                "Scan: demo (6 columns)",
            ]
        );
    }

    #[test]
    fn a_star_argument_compares_whole_rows_and_equal_calls_share_a_state() {
        let plan = explain("SELECT changed_col(true, *) AS c FROM demo");
        assert!(
            plan.contains("Analytic: changed_col(true, *) AS __an_0"),
            "{plan}"
        );
        // The alias in WHERE is the same call as the field, so one state serves both.
        let plan = explain("SELECT lag(temperature) AS p FROM demo WHERE p > 1");
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "Project: __an_0 AS p",
                "Filter: (__an_0 > 1)",
                "Analytic: lag(temperature) AS __an_0",
                "Scan: demo (6 columns)",
            ]
        );
    }

    #[test]
    fn arguments_are_checked() {
        assert_eq!(
            error("SELECT lag(temperature, 0) FROM demo"),
            "the offset of \"lag\" must be a positive integer at 1:8"
        );
        assert_eq!(
            error("SELECT lag() FROM demo"),
            "function \"lag\" expects 1 to 4 argument(s), got 0 at 1:8"
        );
        assert_eq!(
            error("SELECT changed_cols(\"c_\", true, *) FROM raw"),
            "changed_cols(..., *) needs a stream with a schema; list the columns at 1:8"
        );
    }
}
