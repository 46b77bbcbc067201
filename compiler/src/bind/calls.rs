//! Function calls: registry functions (built-in and plugin) with their plan-time signature
//! check, and the calls the binder answers itself: `meta(key)`, the rule-context functions,
//! `last_hit_*`, `window_start()`/`window_end()` and `row_number() OVER (...)`. Analytic and
//! aggregate calls are handed to their own modules.

use sqlparser::ast::{self as ast, FunctionArg, FunctionArgExpr, FunctionArguments, Value};

use super::window::is_window_name;
use super::{Binder, pos_of};
use crate::analytic::AnalyticKind;
use crate::columns::{TS_COLUMN, WINDOW_END, WINDOW_START, row_number_column};
use crate::dialect::ROW_EXCEPT;
use crate::error::{CompileError, Pos, Result, did_you_mean};
use crate::eval::Literal;
use crate::expr::{Expr, RuleValue};
use crate::functions::ArgInfo;
use crate::plan::RowNumberSpec;
use crate::types::SqlType;
use crate::window::{AggKind, SortKey};

impl Binder<'_> {
    /// Binds a call by what its name refers to.
    pub(super) fn function(&mut self, f: &ast::Function) -> Result<Expr> {
        let pos = pos_of(&f.name);
        let name = f.name.to_string().to_lowercase();
        if let Some(kind) = AnalyticKind::from_name(&name) {
            return self.analytic(kind, f, pos);
        }
        if name == "row_number" && f.over.is_some() && f.filter.is_none() {
            return self.row_number_over(f, pos);
        }
        if f.over.is_some() || f.filter.is_some() {
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" takes no OVER or FILTER clause (only analytic functions and windows do)"
                ),
                pos,
            ));
        }
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => list.args.iter().collect(),
            FunctionArguments::Subquery(q) => {
                return Err(CompileError::at(
                    "subqueries are not supported",
                    pos_of(q.as_ref()),
                ));
            }
        };
        if name == "meta" || name == "mqtt" {
            return meta_key(&args, pos);
        }
        if name == ROW_EXCEPT {
            return row_except(&args, pos);
        }
        if let Some(special) = self.context_function(&name, args.len(), pos)? {
            return Ok(special);
        }
        if let Some(hit) = self.hit_function(&name, args.len(), pos)? {
            return Ok(hit);
        }
        if name == "unnest" || name == "extract" {
            return Err(CompileError::at(
                format!("{name}(...) must be a whole SELECT field, e.g. SELECT {name}(x) FROM s"),
                pos,
            ));
        }
        if let Some(kind) = AggKind::from_name(&name) {
            return self.aggregate(kind, &args, pos);
        }
        if name == "window_start" || name == "window_end" {
            if !args.is_empty() {
                return Err(CompileError::at(
                    format!("function \"{name}\" takes no arguments"),
                    pos,
                ));
            }
            if !self.window || self.aggs.is_none() || self.in_aggregate {
                return Err(CompileError::at(
                    format!("function \"{name}\" can only be used with a window in GROUP BY"),
                    pos,
                ));
            }
            return Ok(Expr::Column {
                name: if name == "window_start" {
                    WINDOW_START
                } else {
                    WINDOW_END
                }
                .to_string(),
                ty: SqlType::Known(arrow::datatypes::DataType::Int64),
            });
        }
        if is_window_name(&name) {
            return Err(CompileError::at(
                format!("window function \"{name}\" belongs in GROUP BY"),
                pos,
            ));
        }
        let Some(func) = self.registry.get(&name).cloned() else {
            return Err(
                CompileError::at(format!("unknown function \"{name}\""), pos)
                    .with_hint(did_you_mean(&name, self.registry.names())),
            );
        };
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => bound.push(self.expr(e)?),
                // `*`: the whole row as an object (`xsql/valuer.go` evaluates a wildcard so).
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => {
                    bound.push(Expr::Row { except: Vec::new() })
                }
                other => {
                    return Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to \"{name}\""),
                        pos_of(other),
                    ));
                }
            }
        }
        let infos: Vec<ArgInfo> = bound.iter().map(ArgInfo::of).collect();
        let ty = func
            .return_type(&infos)
            .map_err(|reason| CompileError::at(format!("function \"{name}\" {reason}"), pos))?;
        if func.is_aggregate() {
            return self.custom_aggregate(func, bound, ty, pos);
        }
        Ok(Expr::Call { func, args: bound })
    }

    /// `last_hit_count()`, `last_hit_time()` and their `last_agg_hit_*` forms (see
    /// [`crate::hit`]): row-level forms in rules without a window (and in WHERE or a sliding
    /// window's WHEN), `agg` forms in the SELECT and HAVING of window rules, as in eKuiper.
    fn hit_function(&mut self, name: &str, args: usize, pos: Option<Pos>) -> Result<Option<Expr>> {
        use crate::hit_site::{HitSite, HitValue};
        let (what, agg) = match name {
            "last_hit_count" => (HitValue::Count, false),
            "last_hit_time" => (HitValue::Time, false),
            "last_agg_hit_count" => (HitValue::Count, true),
            "last_agg_hit_time" => (HitValue::Time, true),
            _ => return Ok(None),
        };
        if args != 0 {
            return Err(CompileError::at(
                format!("function \"{name}\" takes no arguments"),
                pos,
            ));
        }
        let window_results = self.window && self.aggs.is_some();
        if agg && !window_results {
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" can only be used in the SELECT or HAVING of a rule with a window; use {} on rows",
                    name.replace("_agg", "")
                ),
                pos,
            ));
        }
        if !agg && window_results {
            return Err(CompileError::at(
                format!(
                    "function \"{name}\" is not supported over a window's results (only in WHERE or a sliding window's OVER (WHEN ...)); use {}",
                    name.replace("last_", "last_agg_")
                ),
                pos,
            ));
        }
        self.agg_hits |= agg;
        let time = Expr::Column {
            name: if agg { WINDOW_END } else { TS_COLUMN }.to_string(),
            ty: SqlType::Known(arrow::datatypes::DataType::Int64),
        };
        Ok(Some(Expr::Hit {
            site: std::sync::Arc::new(HitSite::new(what, agg)),
            cached: self.hit_cached,
            time: Box::new(time),
        }))
    }

    /// `row_number() OVER ([PARTITION BY ...] [ORDER BY ...])`: numbers within each partition
    /// of a window's emission; 1 on rows (each row is its own emission).
    fn row_number_over(&mut self, f: &ast::Function, pos: Option<Pos>) -> Result<Expr> {
        if matches!(&f.args, FunctionArguments::List(l) if !l.args.is_empty()) {
            return Err(CompileError::at(
                "function \"row_number\" takes no arguments",
                pos,
            ));
        }
        let spec = match &f.over {
            Some(ast::WindowType::WindowSpec(spec)) if spec.window_frame.is_none() => spec,
            _ => {
                return Err(CompileError::at(
                    "the OVER clause of \"row_number\" takes only PARTITION BY and ORDER BY",
                    pos,
                ));
            }
        };
        let partition = spec
            .partition_by
            .iter()
            .map(|e| self.expr(e))
            .collect::<Result<Vec<_>>>()?;
        let mut order = Vec::new();
        for o in &spec.order_by {
            order.push(SortKey {
                expr: self.expr(&o.expr)?,
                ascending: !matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
            });
        }
        if !(self.window && self.aggs.is_some()) {
            return Ok(Expr::Literal(Literal::Int(1)));
        }
        let column = row_number_column(self.row_numbers.len());
        self.row_numbers.push(RowNumberSpec {
            partition,
            order,
            column: column.clone(),
        });
        Ok(Expr::Column {
            name: column,
            ty: SqlType::Known(arrow::datatypes::DataType::Int64),
        })
    }

    /// Functions that read the rule, the window or the row's place rather than arguments:
    /// `rule_id()`, `rule_start()`, `row_number()`, `event_time()`, `window_trigger()`.
    fn context_function(&self, name: &str, args: usize, pos: Option<Pos>) -> Result<Option<Expr>> {
        let expr = match name {
            "rule_id" => Expr::Rule(RuleValue::Id),
            "rule_start" => Expr::Rule(RuleValue::Start),
            // Within a window's result rows a batch is one emission; elsewhere every row is its
            // own emission, so it is always the first.
            "row_number" if self.window && self.aggs.is_some() => Expr::RowNumber,
            "row_number" => Expr::Literal(Literal::Int(1)),
            // In a window's results: the window's end (its trigger time); on rows, and inside
            // an aggregate's argument (each row's own), the row's time (event time, or
            // arrival), as eKuiper's `internal/xsql/row.go` and `collection.go` answer it.
            "event_time" if self.window && self.aggs.is_some() && !self.in_aggregate => {
                Expr::Column {
                    name: WINDOW_END.to_string(),
                    ty: SqlType::Known(arrow::datatypes::DataType::Int64),
                }
            }
            "window_trigger" if self.window && self.aggs.is_some() => Expr::Column {
                name: WINDOW_END.to_string(),
                ty: SqlType::Known(arrow::datatypes::DataType::Int64),
            },
            "event_time" => Expr::Column {
                name: TS_COLUMN.to_string(),
                ty: SqlType::Known(arrow::datatypes::DataType::Int64),
            },
            "window_trigger" => {
                return Err(CompileError::at(
                    "function \"window_trigger\" can only be used with a window in GROUP BY",
                    pos,
                ));
            }
            _ => return Ok(None),
        };
        if args != 0 {
            return Err(CompileError::at(
                format!("function \"{name}\" takes no arguments"),
                pos,
            ));
        }
        Ok(Some(expr))
    }
}

/// `* EXCEPT(a, b)` as a function argument, which the tokens carry as a call of
/// [`ROW_EXCEPT`]: the whole row without the listed columns.
fn row_except(args: &[&FunctionArg], pos: Option<Pos>) -> Result<Expr> {
    let except = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(i))) => {
                Ok(i.value.clone())
            }
            other => Err(CompileError::at(
                format!("EXCEPT takes column names, found \"{other}\""),
                pos_of(*other).or(pos),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Expr::Row { except })
}

fn meta_key(args: &[&FunctionArg], pos: Option<Pos>) -> Result<Expr> {
    let key = match args {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(i)))] => i.value.clone(),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v)))] => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if key.is_empty() {
        return Err(CompileError::at(
            "function \"meta\" expects a meta reference such as meta(topic)",
            pos,
        ));
    }
    Ok(Expr::Meta(key))
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn registry_functions_are_checked_at_plan_time() {
        assert_eq!(
            error("SELECT uper(device) FROM demo"),
            "unknown function \"uper\" at 1:8; did you mean \"upper\"?"
        );
        assert_eq!(
            error("SELECT abs(device) FROM demo"),
            "function \"abs\" expects a number for argument 1 but got string at 1:8"
        );
        assert_eq!(
            error("SELECT abs(temperature) OVER () FROM demo"),
            "function \"abs\" takes no OVER or FILTER clause (only analytic functions and windows do) at 1:8"
        );
    }

    #[test]
    fn a_star_argument_is_the_whole_row() {
        let plan = explain("SELECT to_json(*) AS j, to_json(* EXCEPT(ts, tags)) AS k FROM demo");
        assert!(
            plan.starts_with("Project: to_json(*) AS j, to_json(* EXCEPT(ts, tags)) AS k"),
            "{plan}"
        );
        assert_eq!(
            error("SELECT to_json(* EXCEPT(ts + 1)) FROM demo"),
            "EXCEPT takes column names, found \"ts + 1\" at 1:25"
        );
    }

    #[test]
    fn window_functions_need_a_window() {
        let plan =
            explain("SELECT meta(topic), window_start() FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)");
        assert!(
            plan.starts_with("Project: meta(topic) AS meta, __window_start AS window_start"),
            "{plan}"
        );
        assert_eq!(
            error("SELECT window_start() FROM demo"),
            "function \"window_start\" can only be used with a window in GROUP BY at 1:8"
        );
        assert_eq!(
            error("SELECT meta() FROM demo"),
            "function \"meta\" expects a meta reference such as meta(topic) at 1:8"
        );
    }

    #[test]
    fn hit_functions_take_the_form_of_where_they_are() {
        assert!(
            explain("SELECT last_hit_count() FROM demo WHERE last_hit_time() > 0")
                .contains("Filter: (last_hit_time() > 0)")
        );
        assert_eq!(
            error("SELECT last_agg_hit_count() FROM demo"),
            "function \"last_agg_hit_count\" can only be used in the SELECT or HAVING of a rule with a window; use last_hit_count on rows at 1:8"
        );
        assert_eq!(
            error("SELECT last_hit_count() FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)"),
            "function \"last_hit_count\" is not supported over a window's results (only in WHERE or a sliding window's OVER (WHEN ...)); use last_agg_hit_count at 1:8"
        );
    }

    #[test]
    fn row_number_over_numbers_window_results_and_is_one_on_rows() {
        let plan = explain(
            "SELECT row_number() OVER (PARTITION BY device ORDER BY temperature DESC) AS r \
             FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)",
        );
        assert!(
            plan.contains(
                "RowNumber: __rownum_0 = row_number() OVER (PARTITION BY device ORDER BY temperature DESC)"
            ),
            "{plan}"
        );
        assert!(
            explain("SELECT row_number() OVER (PARTITION BY device) AS r FROM demo")
                .starts_with("Project: 1 AS r")
        );
    }
}
