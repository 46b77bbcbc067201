//! GROUP BY: at most one window function (with its FILTER and OVER modifiers, sizes in
//! milliseconds) plus the group key expressions.

use sqlparser::ast::{
    self as ast, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Value,
};

use super::{Binder, check_condition, pos_of};
use crate::error::{CompileError, Result};
use crate::expr::Expr;
use crate::window::{WindowKind, WindowSpec, unit_ms};

/// What GROUP BY binds to: the window (if any) and the key expressions.
pub(super) struct Grouping {
    /// The window function, bound.
    pub(super) window: Option<WindowSpec>,
    /// The group keys, bound on raw rows.
    pub(super) keys: Vec<Expr>,
}

/// eKuiper's window function names.
const WINDOWS: &[&str] = &[
    "tumblingwindow",
    "hoppingwindow",
    "slidingwindow",
    "sessionwindow",
    "countwindow",
    "statewindow",
];

pub(super) fn is_window_name(name: &str) -> bool {
    WINDOWS.contains(&name.to_ascii_lowercase().as_str())
}

/// True when GROUP BY has a window function.
pub(super) fn select_has_window(select: &ast::Select) -> bool {
    match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs
            .iter()
            .any(|e| matches!(e, ast::Expr::Function(f) if is_window_name(&f.name.to_string()))),
        _ => false,
    }
}

impl Binder<'_> {
    /// Binds GROUP BY; a window that decides its bounds row by row cannot serve a stream join.
    pub(super) fn group_by(
        &mut self,
        select: &ast::Select,
        joins_streams: bool,
    ) -> Result<Grouping> {
        let mut window_call: Option<&ast::Function> = None;
        let mut key_exprs: Vec<&ast::Expr> = Vec::new();
        match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => {
                for e in exprs {
                    match e {
                        ast::Expr::Function(f) if is_window_name(&f.name.to_string()) => {
                            if window_call.is_some() {
                                return Err(CompileError::at(
                                    "GROUP BY may have only one window",
                                    pos_of(e),
                                ));
                            }
                            window_call = Some(f);
                        }
                        other => key_exprs.push(other),
                    }
                }
            }
            GroupByExpr::All(_) => {
                return Err(CompileError::at(
                    "GROUP BY ALL is not part of eKuiper's SQL",
                    pos_of(select),
                ));
            }
        }
        let window = match window_call {
            Some(f) => Some(self.window(f)?),
            None => None,
        };
        // A join's window keeps the streams' raw rows and joins them when it closes; a state
        // window's conditions decide its bounds on the joined row, which does not exist yet. A
        // sliding window's WHEN is evaluated on each stream's own rows, the other streams'
        // columns null, as eKuiper does.
        if let (Some(w), true, Some(f)) = (&window, joins_streams, window_call)
            && matches!(w.kind, WindowKind::State { .. })
        {
            return Err(CompileError::at(
                "a stream join works with TUMBLING, HOPPING, SLIDING, SESSION and COUNT windows",
                pos_of(&f.name),
            ));
        }
        if window.is_none()
            && let Some(first) = key_exprs.first()
        {
            return Err(CompileError::at(
                "GROUP BY needs a window function such as TUMBLINGWINDOW(ss, 10)",
                pos_of(*first),
            ));
        }
        let keys = key_exprs
            .iter()
            .map(|e| self.expr(e))
            .collect::<Result<Vec<_>>>()?;
        Ok(Grouping { window, keys })
    }

    /// Binds the window function of GROUP BY with its FILTER and OVER modifiers.
    fn window(&mut self, f: &ast::Function) -> Result<WindowSpec> {
        let pos = pos_of(&f.name);
        let trigger = if f.over.is_some() {
            self.take_when(pos)
        } else {
            None
        };
        let name = f.name.to_string().to_lowercase();
        let args: Vec<&ast::Expr> = match &f.args {
            FunctionArguments::List(list) => list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                    other => Err(CompileError::at(
                        format!("unsupported argument \"{other}\" to {name}"),
                        pos_of(other),
                    )),
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let int_arg = |i: usize| -> Result<u64> {
            let e = args[i];
            if let ast::Expr::Value(v) = e
                && let Value::Number(n, _) = &v.value
                && let Ok(n) = n.parse::<u64>()
                && n > 0
            {
                return Ok(n);
            }
            Err(CompileError::at(
                format!("{name} needs a positive integer here, got {e}"),
                pos_of(e),
            ))
        };
        let unit = || -> Result<u64> {
            let e = args[0];
            let text = match e {
                ast::Expr::Identifier(i) => i.value.clone(),
                ast::Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            unit_ms(&text).ok_or_else(|| {
                CompileError::at(
                    format!(
                        "invalid time unit \"{text}\" of {name}: use one of DD, HH, MI, SS, MS"
                    ),
                    pos_of(e),
                )
            })
        };
        // Argument `i` in `u` ms units, bounded by `limits::MAX_WINDOW_MS`.
        let span = |u: u64, i: usize| -> Result<u64> {
            crate::limits::window_ms(&name, u, int_arg(i)?)
                .map_err(|e| CompileError::at(e, pos_of(args[i])))
        };
        let arity = |min: usize, max: usize| -> Result<()> {
            if args.len() < min || args.len() > max {
                let want = if min == max {
                    format!("{min}")
                } else {
                    format!("{min} or {max}")
                };
                return Err(CompileError::at(
                    format!("{name} expects {want} arguments, got {}", args.len()),
                    pos,
                ));
            }
            Ok(())
        };
        let mut state = None;
        let kind = match name.as_str() {
            "tumblingwindow" => {
                arity(2, 2)?;
                WindowKind::Tumbling {
                    size: span(unit()?, 1)?,
                }
            }
            "hoppingwindow" => {
                arity(3, 3)?;
                let u = unit()?;
                WindowKind::Hopping {
                    size: span(u, 1)?,
                    hop: span(u, 2)?,
                }
            }
            "slidingwindow" => {
                arity(2, 3)?;
                let u = unit()?;
                let delay = if args.len() == 3 { span(u, 2)? } else { 0 };
                WindowKind::Sliding {
                    size: span(u, 1)?,
                    delay,
                }
            }
            "sessionwindow" => {
                arity(3, 3)?;
                let u = unit()?;
                WindowKind::Session {
                    max: span(u, 1)?,
                    timeout: span(u, 2)?,
                }
            }
            "countwindow" => {
                arity(1, 2)?;
                let rows = |i: usize| -> Result<u64> {
                    crate::limits::count_window_rows(int_arg(i)?)
                        .map_err(|e| CompileError::at(e, pos_of(args[i])))
                };
                let size = rows(0)?;
                let step = if args.len() == 2 { rows(1)? } else { size };
                if step > size {
                    return Err(CompileError::at(
                        format!(
                            "the step of countwindow ({step}) must not exceed its size ({size})"
                        ),
                        pos_of(args[1]),
                    ));
                }
                WindowKind::Count { size, step }
            }
            "statewindow" => {
                arity(1, 2)?;
                let begin = self.expr(args[0])?;
                check_condition("STATEWINDOW", &begin, args[0])?;
                let emit = if args.len() == 2 {
                    let e = self.expr(args[1])?;
                    check_condition("STATEWINDOW", &e, args[1])?;
                    e
                } else {
                    begin.clone()
                };
                state = Some((begin, emit));
                WindowKind::State {
                    single: args.len() == 1,
                }
            }
            _ => unreachable!("only window names reach here"),
        };
        let filter = match &f.filter {
            Some(cond) => {
                let bound = self.expr(cond)?;
                check_condition("FILTER", &bound, cond)?;
                Some(bound)
            }
            None => None,
        };
        let mut partition = Vec::new();
        match &f.over {
            None => {}
            // What is left of `OVER (WHEN ...)` once the condition is cut out.
            Some(ast::WindowType::WindowSpec(spec))
                if trigger.is_some()
                    && spec.partition_by.is_empty()
                    && spec.order_by.is_empty()
                    && spec.window_frame.is_none() => {}
            Some(ast::WindowType::WindowSpec(spec)) if matches!(kind, WindowKind::State { .. }) => {
                if !spec.order_by.is_empty() || spec.window_frame.is_some() {
                    return Err(CompileError::at(
                        "a state window's OVER takes only PARTITION BY",
                        pos,
                    ));
                }
                for e in &spec.partition_by {
                    partition.push(self.expr(e)?);
                }
            }
            Some(_) => {
                return Err(CompileError::at(
                    format!(
                        "{name} takes no OVER clause (OVER (PARTITION BY ...) is for STATEWINDOW, OVER (WHEN ...) for SLIDINGWINDOW)"
                    ),
                    pos,
                ));
            }
        }
        let trigger = match trigger {
            Some((tpos, cond)) => {
                if !matches!(kind, WindowKind::Sliding { .. }) {
                    return Err(CompileError::at(
                        format!("OVER (WHEN ...) is only for SLIDINGWINDOW, not {name}"),
                        Some(tpos),
                    ));
                }
                Some(self.cached_condition("OVER (WHEN ...)", &cond)?)
            }
            None => None,
        };
        Ok(WindowSpec {
            kind,
            filter,
            trigger,
            state,
            partition,
            text: format!("{f}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn window_functions_bind_with_their_modifiers() {
        for (sql, window) in [
            (
                "GROUP BY HOPPINGWINDOW(ss, 10, 5)",
                "Window: HOPPINGWINDOW(ss, 10, 5) aggregates",
            ),
            (
                "GROUP BY STATEWINDOW(temperature > 30, temperature < 20) OVER (PARTITION BY device)",
                "Window: STATEWINDOW(temperature > 30, temperature < 20) OVER (PARTITION BY device) aggregates",
            ),
        ] {
            let plan = explain(&format!("SELECT count(*) FROM demo {sql}"));
            assert!(plan.contains(window), "{plan}");
        }
    }

    #[test]
    fn group_by_keys_may_be_select_aliases() {
        let plan = explain(
            "SELECT lower(device) AS d, count(*) FROM demo GROUP BY d, TUMBLINGWINDOW(ss, 1)",
        );
        assert!(plan.contains("keys [lower(device)]"), "{plan}");
    }

    #[test]
    fn group_by_has_one_window_with_valid_sizes() {
        for (group_by, message) in [
            (
                "TUMBLINGWINDOW(ss, 1), COUNTWINDOW(3)",
                "GROUP BY may have only one window at 1:59",
            ),
            (
                "device",
                "GROUP BY needs a window function such as TUMBLINGWINDOW(ss, 10) at 1:36",
            ),
            (
                "TUMBLINGWINDOW(xx, 10)",
                "invalid time unit \"xx\" of tumblingwindow: use one of DD, HH, MI, SS, MS at 1:51",
            ),
            (
                "COUNTWINDOW(2, 5)",
                "the step of countwindow (5) must not exceed its size (2) at 1:51",
            ),
            (
                "TUMBLINGWINDOW(ss, 0)",
                "tumblingwindow needs a positive integer here, got 0 at 1:55",
            ),
        ] {
            assert_eq!(
                error(&format!("SELECT count(*) FROM demo GROUP BY {group_by}")),
                message
            );
        }
        assert_eq!(
            error("SELECT tumblingwindow(ss, 1) FROM demo"),
            "window function \"tumblingwindow\" belongs in GROUP BY at 1:8"
        );
    }

    #[test]
    fn a_stream_join_takes_no_window_that_decides_row_by_row() {
        assert_eq!(
            error(
                "SELECT * FROM demo INNER JOIN other ON demo.device = other.device \
                 GROUP BY STATEWINDOW(temperature > 1)"
            ),
            "a stream join works with TUMBLING, HOPPING, SLIDING, SESSION and COUNT windows at 1:76"
        );
    }
}
