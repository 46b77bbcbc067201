//! Aggregate calls (built-in and plugin) and the aggregate node: arguments bound on raw rows,
//! one result column per distinct call, and the input columns the result rows carry.

use sqlparser::ast::{FunctionArg, FunctionArgExpr};

use super::window::Grouping;
use super::{Binder, pos_of};
use crate::columns::{WINDOW_END, WINDOW_START, agg_column, is_agg_column, meta_column};
use crate::error::{CompileError, Pos, Result};
use crate::eval::Literal;
use crate::expr::Expr;
use crate::plan::{LogicalPlan, ProjectItem};
use crate::types::SqlType;
use crate::window::{AggCall, AggKind, AggregateSpec, Carry, SortKey, WindowKind, WindowSpec};

impl Binder<'_> {
    /// A plugin's aggregate function: like the built-in aggregates, its arguments are raw-row
    /// values and the call becomes a reference to its result column.
    pub(super) fn custom_aggregate(
        &mut self,
        func: std::sync::Arc<dyn crate::functions::ScalarFunction>,
        args: Vec<Expr>,
        ty: SqlType,
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let name = func.name();
        if args.iter().any(|a| {
            let mut nested = false;
            a.visit(&mut |x| {
                nested |= matches!(x, Expr::Column { name, .. } if is_agg_column(name))
            });
            nested
        }) || self.in_aggregate
        {
            return Err(CompileError::at(
                format!("aggregate function \"{name}\" cannot be nested in another aggregate"),
                pos,
            ));
        }
        let Some(aggs) = self.aggs.as_mut() else {
            return Err(CompileError::at(
                format!(
                    "aggregate function \"{name}\" is not allowed here (only in SELECT, HAVING and ORDER BY)"
                ),
                pos,
            ));
        };
        aggs.push(AggCall {
            kind: AggKind::Custom,
            args,
            whole_row: false,
            ty: ty.clone(),
            custom: Some(func),
        });
        Ok(Expr::Column {
            name: agg_column(aggs.len() - 1),
            ty,
        })
    }

    /// Binds an aggregate call: its arguments are bound on raw rows and the call becomes a
    /// reference to the aggregate's result column.
    pub(super) fn aggregate(
        &mut self,
        kind: AggKind,
        args: &[&FunctionArg],
        pos: Option<Pos>,
    ) -> Result<Expr> {
        let name = kind.name();
        if self.in_aggregate {
            return Err(CompileError::at(
                format!("aggregate function \"{name}\" cannot be nested in another aggregate"),
                pos,
            ));
        }
        if self.aggs.is_none() {
            return Err(CompileError::at(
                format!(
                    "aggregate function \"{name}\" is not allowed here (only in SELECT, HAVING and ORDER BY)"
                ),
                pos,
            ));
        }
        let star = matches!(args, [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]);
        if star && !matches!(kind, AggKind::Count | AggKind::Collect | AggKind::MergeAgg) {
            return Err(CompileError::at(
                format!("function \"{name}\" does not take *"),
                pos,
            ));
        }
        let mut bound = Vec::new();
        if !star {
            self.in_aggregate = true;
            let mut result = Ok(());
            for a in args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => match self.expr(e) {
                        Ok(b) => bound.push(b),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    },
                    other => {
                        result = Err(CompileError::at(
                            format!("unsupported argument \"{other}\" to \"{name}\""),
                            pos_of(*other),
                        ));
                        break;
                    }
                }
            }
            self.in_aggregate = false;
            result?;
            let (min, max) = kind.arity();
            if bound.len() < min || bound.len() > max {
                let want = if min == max {
                    format!("{min}")
                } else {
                    format!("{min} to {max}")
                };
                return Err(CompileError::at(
                    format!(
                        "function \"{name}\" expects {want} argument(s), got {}",
                        bound.len()
                    ),
                    pos,
                ));
            }
            check_aggregate_args(kind, &bound, pos)?;
        }
        let ty = kind.return_type(&bound.first().map_or(SqlType::Any, Expr::sql_type));
        let call = AggCall {
            kind,
            args: bound,
            whole_row: (star && kind != AggKind::Count) || kind == AggKind::Deduplicate,
            ty: ty.clone(),
            custom: None,
        };
        let aggs = self.aggs.as_mut().expect("checked above");
        // The same call twice (often through an alias) is computed once.
        let text = call.to_string();
        let index = match aggs.iter().position(|a| a.to_string() == text) {
            Some(i) => i,
            None => {
                aggs.push(call);
                aggs.len() - 1
            }
        };
        Ok(Expr::Column {
            name: agg_column(index),
            ty,
        })
    }

    /// The aggregate node above `plan`: the GROUP BY window, or eKuiper's per-row aggregation
    /// when a rule without a window calls aggregates; `plan` itself when there is neither.
    pub(super) fn aggregate_node(
        &mut self,
        plan: LogicalPlan,
        grouping: Grouping,
        items: &[ProjectItem],
        having: Option<&Expr>,
        sort_keys: &[SortKey],
    ) -> LogicalPlan {
        let aggs = self.aggs.take().unwrap_or_default();
        let Grouping { window, keys } = grouping;
        match window {
            Some(window) => {
                let mut carry = Vec::new();
                let mut all = false;
                let mut note = |e: &Expr| collect_carry(e, &mut carry);
                for item in items {
                    match item {
                        ProjectItem::Wildcard { .. } => all = true,
                        ProjectItem::Expr { expr, .. }
                        | ProjectItem::Unnest { expr, .. }
                        | ProjectItem::Spread { expr } => note(expr),
                    }
                }
                if let Some(h) = having {
                    note(h);
                }
                // `*` as a function argument over result rows reads every column.
                let mut whole = |e: &Expr| e.visit(&mut |x| all |= matches!(x, Expr::Row { .. }));
                for item in items {
                    if let ProjectItem::Expr { expr, .. } = item {
                        whole(expr);
                    }
                }
                if let Some(h) = having {
                    whole(h);
                }
                for rn in &self.row_numbers {
                    rn.partition.iter().for_each(&mut note);
                    rn.order.iter().for_each(|k| note(&k.expr));
                }
                for k in sort_keys {
                    note(&k.expr);
                }
                LogicalPlan::Aggregate {
                    input: Box::new(plan),
                    spec: Box::new(AggregateSpec {
                        window,
                        keys,
                        aggs,
                        carry: if all {
                            Carry::All
                        } else {
                            Carry::Columns(carry)
                        },
                        grouped: self.agg_hits,
                    }),
                }
            }
            // eKuiper computes aggregates of a window-less rule on each row by itself.
            None if !aggs.is_empty() => LogicalPlan::Aggregate {
                input: Box::new(plan),
                spec: Box::new(AggregateSpec {
                    window: WindowSpec {
                        kind: WindowKind::Rows,
                        filter: None,
                        trigger: None,
                        state: None,
                        partition: Vec::new(),
                        text: "per row".to_string(),
                    },
                    keys: Vec::new(),
                    aggs,
                    carry: Carry::All,
                    grouped: false,
                }),
            },
            None => plan,
        }
    }
}

/// Plan-time checks of aggregate arguments whose types or values are known.
fn check_aggregate_args(kind: AggKind, args: &[Expr], pos: Option<Pos>) -> Result<()> {
    use arrow::datatypes::DataType;
    let name = kind.name();
    if kind.needs_numbers()
        && let SqlType::Known(t) = args[0].sql_type()
        && !crate::types::is_numeric(&t)
        && t != DataType::Null
    {
        return Err(CompileError::at(
            format!(
                "function \"{name}\" needs a number, got {}",
                crate::types::type_name(&t)
            ),
            pos,
        ));
    }
    match kind {
        AggKind::PercentileCont | AggKind::PercentileDisc => match &args[1] {
            Expr::Literal(Literal::Float(p)) if (0.0..=1.0).contains(p) => Ok(()),
            Expr::Literal(Literal::Int(p)) if (0..=1).contains(p) => Ok(()),
            _ => Err(CompileError::at(
                format!(
                    "the second argument of \"{name}\" must be a number literal between 0 and 1"
                ),
                pos,
            )),
        },
        AggKind::LastValue | AggKind::Deduplicate => match &args[1] {
            Expr::Literal(Literal::Bool(_)) => Ok(()),
            _ => Err(CompileError::at(
                format!("the second argument of \"{name}\" must be true or false"),
                pos,
            )),
        },
        _ => Ok(()),
    }
}

/// Input columns an expression over result rows reads (they are carried from each group's
/// first row). Aggregate results and window bounds are computed, not carried.
fn collect_carry(e: &Expr, out: &mut Vec<String>) {
    e.visit(&mut |x| {
        let name = match x {
            Expr::Column { name, .. } => name.clone(),
            Expr::Meta(key) => meta_column(key),
            _ => return,
        };
        if is_agg_column(&name) || name == WINDOW_START || name == WINDOW_END {
            return;
        }
        if !out.contains(&name) {
            out.push(name);
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn the_same_call_is_computed_once() {
        let plan = explain(
            "SELECT avg(temperature) AS a, avg(temperature) + 1 AS b, device FROM demo \
             GROUP BY TUMBLINGWINDOW(ss, 10)",
        );
        assert!(
            plan.starts_with("Project: __agg_0 AS a, (__agg_0 + 1) AS b, device AS device"),
            "{plan}"
        );
        assert!(
            plan.contains("aggregates [avg(temperature) AS __agg_0]\n"),
            "{plan}"
        );
    }

    #[test]
    fn aliases_serve_having_group_by_and_aggregate_arguments() {
        let plan = explain(
            "SELECT temperature * 2 AS et, upper(device) AS d FROM demo \
             GROUP BY d, TUMBLINGWINDOW(ss, 10) HAVING last_value(et, true) > 0",
        );
        assert!(plan.contains("Filter: (__agg_0 > 0)"), "{plan}");
        assert!(
            plan.contains(
                "keys [upper(device)] aggregates [last_value((temperature * 2), true) AS __agg_0]"
            ),
            "{plan}"
        );
        let plan =
            explain("SELECT count(*) AS c FROM demo GROUP BY TUMBLINGWINDOW(ss, 10) HAVING c > 1");
        assert!(plan.contains("Filter: (__agg_0 > 1)"), "{plan}");
        assert_eq!(
            error("SELECT count(*) AS c FROM demo WHERE c > 1"),
            "aggregate function \"count\" is not allowed here (only in SELECT, HAVING and ORDER BY) at 1:8"
        );
    }

    #[test]
    fn without_a_window_aggregates_run_per_row() {
        let plan = explain("SELECT max(temperature) FROM demo");
        assert!(
            plan.contains("Window: per row aggregates [max(temperature) AS __agg_0]"),
            "{plan}"
        );
    }

    #[test]
    fn aggregates_do_not_nest_or_filter_rows() {
        assert_eq!(
            error("SELECT max(avg(temperature)) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)"),
            "aggregate function \"avg\" cannot be nested in another aggregate at 1:12"
        );
        assert_eq!(
            error("SELECT * FROM demo WHERE count(*) > 1"),
            "aggregate function \"count\" is not allowed here (only in SELECT, HAVING and ORDER BY) at 1:26"
        );
        assert_eq!(
            error("SELECT avg(device) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)"),
            "function \"avg\" needs a number, got string at 1:8"
        );
        assert_eq!(
            error(
                "SELECT percentile_cont(temperature, 2) FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)"
            ),
            "the second argument of \"percentile_cont\" must be a number literal between 0 and 1 at 1:8"
        );
    }
}
