//! SELECT items: `*` with EXCEPT/REPLACE, `unnest(...)` and `extract(...)` fields, and the
//! output name of every field the way eKuiper names it (alias, column, function name, else
//! `kuiper_field_N`).

use sqlparser::ast::{self as ast, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem};

use super::{Binder, pos_of};
use crate::ekuiper_text::expr_text;
use crate::error::{CompileError, Result};
use crate::plan::{FieldLabel, ProjectItem};
use crate::types::SqlType;

impl Binder<'_> {
    /// Binds the SELECT list over result rows.
    pub(super) fn projection(&mut self, items: &[SelectItem]) -> Result<Vec<ProjectItem>> {
        let mut out = Vec::with_capacity(items.len());
        let mut unnamed = 0usize;
        for item in items {
            match item {
                SelectItem::Wildcard(opts) => {
                    let mut replace = Vec::new();
                    if let Some(r) = &opts.opt_replace {
                        for item in &r.items {
                            replace.push((item.column_name.value.clone(), self.expr(&item.expr)?));
                        }
                    }
                    let except = opts
                        .opt_except
                        .as_ref()
                        .map(|e| {
                            std::iter::once(&e.first_element)
                                .chain(e.additional_elements.iter())
                                .map(|i| i.value.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(ProjectItem::Wildcard { except, replace });
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let name = kind.to_string();
                    let name = name.trim_end_matches(".*");
                    if !self.is_stream_name(name) {
                        return Err(CompileError::at(
                            format!("unknown stream \"{name}\""),
                            pos_of(item),
                        ));
                    }
                    out.push(ProjectItem::Wildcard {
                        except: Vec::new(),
                        replace: Vec::new(),
                    });
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }
                    if unnest_arg(e).is_some() =>
                {
                    let arg = unnest_arg(e).expect("guarded");
                    if out.iter().any(|i| matches!(i, ProjectItem::Unnest { .. })) {
                        return Err(CompileError::at("only one unnest per SELECT", pos_of(e)));
                    }
                    let name = match item {
                        SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                        _ => "unnest".to_string(),
                    };
                    let expr = self.expr(arg)?;
                    if let SqlType::Known(t) = expr.sql_type()
                        && !matches!(
                            t,
                            arrow::datatypes::DataType::List(_) | arrow::datatypes::DataType::Null
                        )
                    {
                        return Err(CompileError::at(
                            format!(
                                "function \"unnest\" needs an array, got {}",
                                crate::types::type_name(&t)
                            ),
                            pos_of(e),
                        ));
                    }
                    out.push(ProjectItem::Unnest { expr, name });
                }
                SelectItem::UnnamedExpr(e) if is_call(e, "extract") => {
                    let arg = single_arg(e).ok_or_else(|| {
                        CompileError::at("function \"extract\" expects 1 argument", pos_of(e))
                    })?;
                    let bound = self.expr(arg)?;
                    if let SqlType::Known(t) = bound.sql_type()
                        && !matches!(
                            t,
                            arrow::datatypes::DataType::Struct(_)
                                | arrow::datatypes::DataType::Null
                        )
                    {
                        return Err(CompileError::at(
                            format!(
                                "function \"extract\" needs an object, got {}",
                                crate::types::type_name(&t)
                            ),
                            pos_of(e),
                        ));
                    }
                    out.push(ProjectItem::Spread { expr: bound });
                }
                SelectItem::UnnamedExpr(e) if is_call(e, "changed_cols") => {
                    let bound = self.expr(e)?;
                    out.push(ProjectItem::Spread { expr: bound });
                }
                SelectItem::UnnamedExpr(e) => {
                    let bound = self.expr(e)?;
                    let name = match self.natural_name(e) {
                        Some(n) => n,
                        None => {
                            let n = format!("kuiper_field_{unnamed}");
                            unnamed += 1;
                            n
                        }
                    };
                    let label = FieldLabel {
                        text: format!("expr: {}", expr_text(e, &self.scan.stream)),
                        aliased: false,
                        column: is_column(e),
                    };
                    out.push(ProjectItem::Expr {
                        expr: bound,
                        name,
                        label,
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    // The alias itself is being defined: its own name refers to the column.
                    let key = alias.value.to_lowercase();
                    self.resolving.push(key);
                    let bound = self.expr(expr);
                    self.resolving.pop();
                    let label = FieldLabel {
                        text: format!(
                            "alias: {} expr: {}",
                            alias.value,
                            expr_text(expr, &self.scan.stream)
                        ),
                        aliased: true,
                        column: is_column(expr),
                    };
                    out.push(ProjectItem::Expr {
                        expr: bound?,
                        name: alias.value.clone(),
                        label,
                    });
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    return Err(CompileError::at("one alias per field", pos_of(expr)));
                }
            }
        }
        Ok(out)
    }

    /// eKuiper's output name of an unaliased field: a column's name, or a function's name.
    pub(super) fn natural_name(&self, e: &ast::Expr) -> Option<String> {
        match e {
            ast::Expr::Identifier(i) => Some(i.value.clone()),
            ast::Expr::CompoundIdentifier(parts)
                if parts.len() == 2
                    && (self.is_stream_name(&parts[0].value)
                        || self.table_named(&parts[0].value).is_some()) =>
            {
                Some(parts[1].value.clone())
            }
            ast::Expr::Function(f) => Some(f.name.to_string().to_lowercase()),
            ast::Expr::Nested(inner) => self.natural_name(inner),
            _ => None,
        }
    }
}

/// True when `e` is a call of `name`.
fn is_call(e: &ast::Expr, name: &str) -> bool {
    matches!(e, ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case(name))
}

/// The argument of a top-level `unnest(x)` call.
fn unnest_arg(e: &ast::Expr) -> Option<&ast::Expr> {
    if !is_call(e, "unnest") {
        return None;
    }
    single_arg(e)
}

/// The one argument of a call.
fn single_arg(e: &ast::Expr) -> Option<&ast::Expr> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    match &f.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => Some(x),
            _ => None,
        },
        _ => None,
    }
}

/// A plain column reference, `a` or `s.a`.
fn is_column(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => true,
        ast::Expr::Nested(inner) => is_column(inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn unaliased_fields_are_named_the_ekuiper_way() {
        let plan =
            explain("SELECT device, demo.humidity, abs(temperature), temperature + 1, 2 FROM demo");
        assert!(
            plan.starts_with(
                "Project: device AS device, humidity AS humidity, abs(temperature) AS abs, \
                 (temperature + 1) AS kuiper_field_0, 2 AS kuiper_field_1"
            ),
            "{plan}"
        );
        assert_eq!(
            error("SELECT other.* FROM demo"),
            "unknown stream \"other\" at 1:8"
        );
    }

    #[test]
    fn unnest_is_one_whole_field_over_an_array() {
        assert_eq!(
            error("SELECT unnest(device) FROM demo"),
            "function \"unnest\" needs an array, got string at 1:8"
        );
        assert_eq!(
            error("SELECT upper(unnest(tags)) FROM demo"),
            "unnest(...) must be a whole SELECT field, e.g. SELECT unnest(x) FROM s at 1:14"
        );
        assert_eq!(
            error("SELECT unnest(tags), unnest(tags) AS b FROM demo"),
            "only one unnest per SELECT at 1:22"
        );
    }
}
