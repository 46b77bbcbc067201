//! Expressions: identifiers and qualified names, field access (`.`, `->`, `[i]`, `[a:b]`),
//! literals and operators, with plan-time type checks where both operand types are known.
//! Function calls go to `calls`.

use sqlparser::ast::{self as ast, AccessExpr, Subscript, UnaryOperator, Value};

use super::{Binder, pos_of};
use crate::error::{CompileError, Pos, Result};
use crate::eval::Literal;
use crate::eval::ops::BinaryOp;
use crate::expr::Expr;
use crate::types::SqlType;

impl Binder<'_> {
    /// Binds one expression.
    pub(super) fn expr(&mut self, e: &ast::Expr) -> Result<Expr> {
        let pos = pos_of(e);
        Ok(match e {
            ast::Expr::Identifier(ident) => self.column(ident)?,
            ast::Expr::CompoundIdentifier(parts) => {
                let (first, rest) = parts.split_first().expect("compound identifier has parts");
                if !rest.is_empty()
                    && let Some(table) = self.table_named(&first.value).cloned()
                {
                    let mut base = self.table_field(
                        &table,
                        &rest[0].value,
                        Pos::from_location(rest[0].span.start),
                    )?;
                    for p in &rest[1..] {
                        base = Expr::Field {
                            base: Box::new(base),
                            name: p.value.clone(),
                        };
                    }
                    return Ok(base);
                }
                let mut base = if rest.is_empty() {
                    self.column(first)?
                } else if self.is_stream_name(&first.value)
                    && self.field(&first.value, None).is_err()
                {
                    // `demo.a`: the stream qualifier, then the column (never an alias).
                    let col = &rest[0];
                    let mut base = self.field(&col.value, Pos::from_location(col.span.start))?;
                    for p in &rest[1..] {
                        base = Expr::Field {
                            base: Box::new(base),
                            name: p.value.clone(),
                        };
                    }
                    return Ok(base);
                } else {
                    self.column(first)?
                };
                for p in rest {
                    base = Expr::Field {
                        base: Box::new(base),
                        name: p.value.clone(),
                    };
                }
                base
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut base = self.expr(root)?;
                for access in access_chain {
                    base = self.access(base, access)?;
                }
                base
            }
            ast::Expr::Nested(inner) => self.expr(inner)?,
            ast::Expr::Value(v) => Expr::Literal(literal(&v.value, pos)?),
            ast::Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::Not(Box::new(self.expr(expr)?)),
                UnaryOperator::Plus => self.expr(expr)?,
                UnaryOperator::Minus => match self.expr(expr)? {
                    Expr::Literal(Literal::Int(i)) => Expr::Literal(Literal::Int(i.wrapping_neg())),
                    Expr::Literal(Literal::Float(f)) => Expr::Literal(Literal::Float(-f)),
                    other => Expr::Negate(Box::new(other)),
                },
                other => {
                    return Err(CompileError::at(
                        format!("unsupported operator \"{other}\""),
                        pos,
                    ));
                }
            },
            ast::Expr::BinaryOp { left, op, right } => {
                if *op == ast::BinaryOperator::Arrow {
                    let base = self.expr(left)?;
                    return self.arrow_path(base, right);
                }
                let op = binary_op(op).ok_or_else(|| {
                    CompileError::at(format!("unsupported operator \"{op}\""), pos)
                })?;
                let l = self.expr(left)?;
                let r = self.expr(right)?;
                check_operands(op, &l, &r, pos)?;
                Expr::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                }
            }
            ast::Expr::IsNull(inner) => Expr::IsNull {
                expr: Box::new(self.expr(inner)?),
                negated: false,
            },
            ast::Expr::IsNotNull(inner) => Expr::IsNull {
                expr: Box::new(self.expr(inner)?),
                negated: true,
            },
            ast::Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => Expr::InList {
                expr: Box::new(self.expr(expr)?),
                list: list.iter().map(|e| self.expr(e)).collect::<Result<_>>()?,
                negated: *negated,
            },
            ast::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: Box::new(self.expr(expr)?),
                low: Box::new(self.expr(low)?),
                high: Box::new(self.expr(high)?),
                negated: *negated,
            },
            ast::Expr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => Expr::Like {
                expr: Box::new(self.expr(expr)?),
                pattern: Box::new(self.expr(pattern)?),
                negated: *negated,
            },
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
                branches: conditions
                    .iter()
                    .map(|c| Ok((self.expr(&c.condition)?, self.expr(&c.result)?)))
                    .collect::<Result<_>>()?,
                otherwise: else_result
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
            },
            ast::Expr::Function(f) => self.function(f)?,
            other => {
                return Err(CompileError::at(
                    format!("unsupported expression \"{other}\""),
                    pos,
                ));
            }
        })
    }

    fn access(&mut self, base: Expr, access: &AccessExpr) -> Result<Expr> {
        Ok(match access {
            AccessExpr::Dot(ast::Expr::Identifier(i)) => Expr::Field {
                base: Box::new(base),
                name: i.value.clone(),
            },
            AccessExpr::Dot(other) => {
                return Err(CompileError::at(
                    format!("expected a field name after \".\", found \"{other}\""),
                    pos_of(other),
                ));
            }
            AccessExpr::Subscript(Subscript::Index { index }) => Expr::Index {
                base: Box::new(base),
                index: Box::new(self.expr(index)?),
            },
            AccessExpr::Subscript(Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            }) => {
                if let Some(s) = stride {
                    return Err(CompileError::at("slices take no stride", pos_of(s)));
                }
                Expr::Slice {
                    base: Box::new(base),
                    start: lower_bound
                        .as_ref()
                        .map(|e| self.expr(e).map(Box::new))
                        .transpose()?,
                    end: upper_bound
                        .as_ref()
                        .map(|e| self.expr(e).map(Box::new))
                        .transpose()?,
                }
            }
        })
    }

    /// The right side of `->`: a key, a dotted path, or a key followed by subscripts.
    fn arrow_path(&mut self, base: Expr, right: &ast::Expr) -> Result<Expr> {
        match right {
            ast::Expr::Identifier(i) => Ok(Expr::Field {
                base: Box::new(base),
                name: i.value.clone(),
            }),
            ast::Expr::CompoundIdentifier(parts) => {
                Ok(parts.iter().fold(base, |b, p| Expr::Field {
                    base: Box::new(b),
                    name: p.value.clone(),
                }))
            }
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let mut b = self.arrow_path(base, root)?;
                for a in access_chain {
                    b = self.access(b, a)?;
                }
                Ok(b)
            }
            // `a -> b -> c` re-associated by sqlparser as `a -> (b -> c)` in some shapes.
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Arrow,
                right: r2,
            } => {
                let b = self.arrow_path(base, left)?;
                self.arrow_path(b, r2)
            }
            ast::Expr::Nested(inner) => self.arrow_path(base, inner),
            other => Err(CompileError::at(
                format!("expected a key after \"->\", found \"{other}\""),
                pos_of(other),
            )),
        }
    }
}

fn literal(v: &Value, pos: Option<Pos>) -> Result<Literal> {
    Ok(match v {
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Literal::Int(i),
            Err(_) => Literal::Float(
                n.parse::<f64>()
                    .map_err(|_| CompileError::at(format!("invalid number \"{n}\""), pos))?,
            ),
        },
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Literal::String(s.clone()),
        Value::Boolean(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        other => {
            return Err(CompileError::at(
                format!("unsupported literal {other}"),
                pos,
            ));
        }
    })
}

fn binary_op(op: &ast::BinaryOperator) -> Option<BinaryOp> {
    use ast::BinaryOperator as B;
    Some(match op {
        B::Plus => BinaryOp::Add,
        B::Minus => BinaryOp::Sub,
        B::Multiply => BinaryOp::Mul,
        B::Divide => BinaryOp::Div,
        B::Modulo => BinaryOp::Mod,
        B::BitwiseAnd => BinaryOp::BitAnd,
        B::BitwiseOr => BinaryOp::BitOr,
        B::BitwiseXor => BinaryOp::BitXor,
        B::Eq => BinaryOp::Eq,
        B::NotEq => BinaryOp::NotEq,
        B::Lt => BinaryOp::Lt,
        B::LtEq => BinaryOp::LtEq,
        B::Gt => BinaryOp::Gt,
        B::GtEq => BinaryOp::GtEq,
        B::And => BinaryOp::And,
        B::Or => BinaryOp::Or,
        _ => return None,
    })
}

/// Plan-time type check of an operator whose operand types are both known.
fn check_operands(op: BinaryOp, l: &Expr, r: &Expr, pos: Option<Pos>) -> Result<()> {
    use arrow::datatypes::DataType;
    let (SqlType::Known(lt), SqlType::Known(rt)) = (l.sql_type(), r.sql_type()) else {
        return Ok(());
    };
    if lt == DataType::Null || rt == DataType::Null {
        return Ok(());
    }
    let num = |t: &DataType| crate::types::is_numeric(t);
    let ok = if op.is_arithmetic() {
        num(&lt) && num(&rt)
    } else if op.is_bitwise() {
        lt.is_integer() && rt.is_integer()
    } else if op.is_comparison() {
        (num(&lt) && num(&rt))
            || lt == rt
            || matches!((&lt, &rt), (DataType::Timestamp(..), t) | (t, DataType::Timestamp(..)) if t.is_integer())
    } else {
        lt == DataType::Boolean && rt == DataType::Boolean
    };
    if ok {
        Ok(())
    } else {
        Err(CompileError::at(
            format!(
                "invalid operation {} {} {}",
                crate::types::type_name(&lt),
                op.symbol(),
                crate::types::type_name(&rt)
            ),
            pos,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::bind::testing::{error, explain};

    #[test]
    fn access_paths_and_negative_literals() {
        let plan = explain("SELECT -3 AS n, loc->lat, tags[0], tags[1:2] FROM demo");
        assert!(
            plan.starts_with(
                "Project: -3 AS n, loc.lat AS kuiper_field_0, tags[0] AS kuiper_field_1, \
                 tags[1:2] AS kuiper_field_2"
            ),
            "{plan}"
        );
    }

    #[test]
    fn operand_types_are_checked_when_known() {
        assert_eq!(
            error("SELECT device + 1 FROM demo"),
            "invalid operation string + bigint at 1:8"
        );
        // Schemaless fields are checked at run time.
        assert!(explain("SELECT a + 1 AS b FROM raw").starts_with("Project: (a + 1) AS b"));
    }
}
