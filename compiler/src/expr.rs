//! Bound expressions: names resolved, functions looked up, types checked where known.
//!
//! An [`Expr`] is both the typed logical form (it prints itself for `explain`) and the
//! executable form: [`Expr::eval`] evaluates it over a whole Arrow batch.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, new_null_array};
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::columns::meta_column;
use crate::eval::ops::{self, BinaryOp};
use crate::eval::{Columnar, EvalContext, Literal, access, column_by_name};
use crate::functions::{ArgInfo, ScalarFunction};
use crate::hit_site::HitSite;
use crate::types::SqlType;

pub use crate::columns::META_PREFIX;

/// A bound, executable expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A column of the input, by name.
    Column {
        /// The field name as stored in batches.
        name: String,
        /// Its type (Any for schemaless streams).
        ty: SqlType,
    },
    /// A constant.
    Literal(Literal),
    /// `base.name` or `base->name`.
    Field {
        /// The struct-valued expression.
        base: Box<Expr>,
        /// The key.
        name: String,
    },
    /// `base[index]`.
    Index {
        /// The array-valued expression.
        base: Box<Expr>,
        /// The position (negative counts from the end).
        index: Box<Expr>,
    },
    /// `base[start:end]`.
    Slice {
        /// The array-valued expression.
        base: Box<Expr>,
        /// First position, inclusive.
        start: Option<Box<Expr>>,
        /// Last position, exclusive.
        end: Option<Box<Expr>>,
    },
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `NOT e`.
    Not(Box<Expr>),
    /// `-e`.
    Negate(Box<Expr>),
    /// `e IS [NOT] NULL`.
    IsNull {
        /// The operand.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `e [NOT] IN (list)`.
    InList {
        /// The operand.
        expr: Box<Expr>,
        /// The candidates.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `e [NOT] BETWEEN low AND high`.
    Between {
        /// The operand.
        expr: Box<Expr>,
        /// Lower bound, inclusive.
        low: Box<Expr>,
        /// Upper bound, inclusive.
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `e [NOT] LIKE pattern`.
    Like {
        /// The operand.
        expr: Box<Expr>,
        /// The pattern with `%` and `_`.
        pattern: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        /// The operand of a simple CASE.
        operand: Option<Box<Expr>>,
        /// `(WHEN, THEN)` pairs in order.
        branches: Vec<(Expr, Expr)>,
        /// The ELSE value (null when absent).
        otherwise: Option<Box<Expr>>,
    },
    /// A scalar function call.
    Call {
        /// The function.
        func: Arc<dyn ScalarFunction>,
        /// Its arguments.
        args: Vec<Expr>,
    },
    /// `meta(key)`: a metadata value of the message (`topic`, `qos`, `messageid`, ...).
    Meta(String),
    /// A value of the running rule (`rule_id()`, `rule_start()`).
    Rule(RuleValue),
    /// `row_number()`: the row's position within its emission, from 1.
    RowNumber,
    /// `*` as a function argument: the whole row as one object, without the hidden columns
    /// and the `EXCEPT` columns (`changed_col(true, *)`, `to_json(* EXCEPT(ts))`).
    Row {
        /// Columns left out, matched without regard to case.
        except: Vec<String>,
    },
    /// `last_hit_count()` and its kin (see [`crate::hit`] and [`crate::hit_site`]).
    Hit {
        /// The call site's state, shared by every copy of the rule's plan.
        site: Arc<HitSite>,
        /// In a condition: read only; the condition's operator records the hits.
        cached: bool,
        /// The time of a hit for each row (the row's time, or the window's end).
        time: Box<Expr>,
    },
}

/// What [`Expr::Rule`] reads from the running rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleValue {
    /// The rule's id.
    Id,
    /// When the rule's current run started, epoch milliseconds.
    Start,
}

impl Expr {
    /// Evaluates the expression over `batch`. Per-row failures go to `ctx.errors`; an `Err` is
    /// a failure of the whole batch (every row is flagged by the caller).
    pub fn eval(&self, batch: &RecordBatch, ctx: &mut EvalContext) -> Result<Columnar, String> {
        match self {
            Expr::Column { name, .. } => Ok(match column_by_name(batch, name) {
                Some(col) => Columnar::Array(col.clone()),
                None => Columnar::null(),
            }),
            Expr::Literal(lit) => Ok(lit.to_scalar()),
            Expr::Rule(what) => {
                let rule = crate::eval::rule_context();
                Ok(match (what, rule) {
                    (RuleValue::Id, Some(r)) => Literal::String(r.id.clone()).to_scalar(),
                    (RuleValue::Start, Some(r)) => Literal::Int(r.start_ms).to_scalar(),
                    (_, None) => Columnar::null(),
                })
            }
            Expr::Hit { site, cached, time } => {
                if *cached {
                    return Ok(Literal::Int(site.read()).to_scalar());
                }
                let times = hit_times(time, batch, ctx)?;
                Ok(Columnar::Array(Arc::new(arrow::array::Int64Array::from(
                    site.hit_all(&times),
                ))))
            }
            Expr::Row { except } => Ok(Columnar::Array(whole_row(batch, except))),
            Expr::RowNumber => {
                let n = batch.num_rows() as i64;
                Ok(Columnar::Array(Arc::new(
                    arrow::array::Int64Array::from_iter_values(1..=n),
                )))
            }
            Expr::Meta(key) => Ok(match column_by_name(batch, &meta_column(key)) {
                Some(col) => Columnar::Array(col.clone()),
                None => Columnar::null(),
            }),
            Expr::Field { base, name } => {
                let b = base.eval(batch, ctx)?;
                access::field(b, name, ctx)
            }
            Expr::Index { base, index } => {
                let b = base.eval(batch, ctx)?;
                let i = index.eval(batch, ctx)?;
                access::index(b, i, ctx)
            }
            Expr::Slice { base, start, end } => {
                let b = base.eval(batch, ctx)?;
                let s = start.as_ref().map(|e| e.eval(batch, ctx)).transpose()?;
                let e = end.as_ref().map(|e| e.eval(batch, ctx)).transpose()?;
                access::slice(b, s, e, ctx)
            }
            Expr::Binary { op, left, right } => match op {
                BinaryOp::And | BinaryOp::Or => self.eval_logic(*op, left, right, batch, ctx),
                op if op.is_comparison() => {
                    let l = left.eval(batch, ctx)?;
                    let r = right.eval(batch, ctx)?;
                    ops::compare(*op, l, r, ctx)
                }
                op => {
                    let l = left.eval(batch, ctx)?;
                    let r = right.eval(batch, ctx)?;
                    ops::arithmetic(*op, l, r, ctx)
                }
            },
            Expr::Not(e) => {
                let v = e.eval(batch, ctx)?;
                ops::not(v, ctx)
            }
            Expr::Negate(e) => {
                let v = e.eval(batch, ctx)?;
                ops::negate(v, ctx)
            }
            Expr::IsNull { expr, negated } => {
                let v = expr.eval(batch, ctx)?;
                let scalar = v.is_scalar();
                let arr = v.array();
                let out = if *negated {
                    arrow::compute::is_not_null(arr.as_ref())
                } else {
                    arrow::compute::is_null(arr.as_ref())
                }
                .map_err(|e| e.to_string())?;
                let out: ArrayRef = Arc::new(out);
                Ok(if scalar {
                    Columnar::Scalar(out)
                } else {
                    Columnar::Array(out)
                })
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(batch, ctx)?;
                let mut acc: Option<Columnar> = None;
                for item in list {
                    let c = item.eval(batch, ctx)?;
                    let eq = ops::compare_nullable(BinaryOp::Eq, v.clone(), c, ctx)?;
                    // A missing element never matches (false, not null).
                    let eq = eq.map(|a| {
                        Ok(Arc::new(crate::eval::true_mask(a.as_boolean())) as ArrayRef)
                    })?;
                    acc = Some(match acc {
                        None => eq,
                        Some(prev) => ops::logic(BinaryOp::Or, &prev, &eq, ctx.rows)?,
                    });
                }
                let out = acc
                    .unwrap_or_else(|| Columnar::Scalar(Arc::new(BooleanArray::from(vec![false]))));
                let out = if *negated { ops::not(out, ctx)? } else { out };
                // A missing left operand gives null (the row is filtered out either way).
                let left = v.into_array(ctx.rows);
                if left.logical_null_count() == 0 {
                    return Ok(out);
                }
                let out = out.into_array(ctx.rows);
                let valid =
                    arrow::compute::is_not_null(left.as_ref()).map_err(|e| e.to_string())?;
                let out = arrow::compute::nullif(
                    out.as_ref(),
                    &arrow::compute::not(&valid).map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?;
                Ok(Columnar::Array(out))
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let v = expr.eval(batch, ctx)?;
                let lo = low.eval(batch, ctx)?;
                let hi = high.eval(batch, ctx)?;
                let ge = ops::compare(BinaryOp::GtEq, v.clone(), lo, ctx)?;
                let le = ops::compare(BinaryOp::LtEq, v, hi, ctx)?;
                let out = ops::logic(BinaryOp::And, &ge, &le, ctx.rows)?;
                if *negated {
                    ops::not(out, ctx)
                } else {
                    Ok(out)
                }
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => {
                let v = expr.eval(batch, ctx)?;
                let p = pattern.eval(batch, ctx)?;
                ops::like(v, p, *negated, ctx)
            }
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => self.eval_case(
                operand.as_deref(),
                branches,
                otherwise.as_deref(),
                batch,
                ctx,
            ),
            Expr::Call { func, args } => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(a.eval(batch, ctx)?);
                }
                func.invoke(&values, ctx)
            }
        }
    }

    /// AND / OR: errors on the right side count only for rows the left side does not decide.
    fn eval_logic(
        &self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        batch: &RecordBatch,
        ctx: &mut EvalContext,
    ) -> Result<Columnar, String> {
        let what = op.symbol();
        let l = left.eval(batch, ctx)?;
        let l = ops::as_boolean(l, what, ctx);
        let mut child = ctx.child();
        let r = right.eval(batch, &mut child)?;
        let r = ops::as_boolean(r, what, &mut child);
        if !child.errors.is_empty() {
            let la = l.clone().into_array(ctx.rows);
            let la = la.as_boolean();
            // The right side matters where the left is null, or true for AND / false for OR.
            let undecided: BooleanArray = (0..ctx.rows)
                .map(|i| Some(la.is_null(i) || la.value(i) == (op == BinaryOp::And)))
                .collect();
            ctx.errors.merge(child.errors, Some(&undecided));
        }
        ops::logic(op, &l, &r, ctx.rows)
    }

    fn eval_case(
        &self,
        operand: Option<&Expr>,
        branches: &[(Expr, Expr)],
        otherwise: Option<&Expr>,
        batch: &RecordBatch,
        ctx: &mut EvalContext,
    ) -> Result<Columnar, String> {
        let rows = ctx.rows;
        let operand = operand.map(|o| o.eval(batch, ctx)).transpose()?;
        // `remaining` marks rows no earlier branch has taken.
        let mut remaining = BooleanArray::from(vec![true; rows]);
        let mut picks: Vec<(BooleanArray, ArrayRef)> = Vec::new();
        for (when, then) in branches {
            let mut cond_ctx = ctx.child();
            let w = when.eval(batch, &mut cond_ctx)?;
            let cond = match &operand {
                Some(o) => ops::compare(BinaryOp::Eq, o.clone(), w, &mut cond_ctx)?,
                None => ops::as_boolean(w, "CASE WHEN", &mut cond_ctx),
            };
            ctx.errors.merge(cond_ctx.errors, Some(&remaining));
            let cond = cond.into_array(rows);
            let hit = arrow::compute::and(&remaining, &crate::eval::true_mask(cond.as_boolean()))
                .map_err(|e| e.to_string())?;
            let mut then_ctx = ctx.child();
            let value = then.eval(batch, &mut then_ctx)?.into_array(rows);
            ctx.errors.merge(then_ctx.errors, Some(&hit));
            remaining = arrow::compute::and_not(&remaining, &hit).map_err(|e| e.to_string())?;
            picks.push((hit, value));
        }
        let mut else_ctx = ctx.child();
        let mut result = match otherwise {
            Some(e) => e.eval(batch, &mut else_ctx)?.into_array(rows),
            None => Arc::new(arrow::array::NullArray::new(rows)),
        };
        ctx.errors.merge(else_ctx.errors, Some(&remaining));
        let target = common_type(
            picks
                .iter()
                .map(|(_, v)| v.data_type())
                .chain(std::iter::once(result.data_type())),
        );
        result = coerce(result, &target)?;
        for (hit, value) in picks.into_iter().rev() {
            let value = coerce(value, &target)?;
            result = zip(&hit, &value, &result).map_err(|e| e.to_string())?;
        }
        Ok(Columnar::Array(result))
    }

    /// The plan-time type of the expression (Any when it depends on schemaless data).
    pub fn sql_type(&self) -> SqlType {
        match self {
            Expr::Column { ty, .. } => ty.clone(),
            Expr::Literal(l) => SqlType::Known(l.data_type()),
            Expr::Binary { op, left, right } => {
                if op.is_comparison() || matches!(op, BinaryOp::And | BinaryOp::Or) {
                    SqlType::Known(DataType::Boolean)
                } else if op.is_bitwise() {
                    SqlType::Known(DataType::Int64)
                } else {
                    match (left.sql_type(), right.sql_type()) {
                        (SqlType::Known(l), SqlType::Known(r))
                            if l.is_integer() && r.is_integer() =>
                        {
                            SqlType::Known(DataType::Int64)
                        }
                        (SqlType::Known(l), SqlType::Known(r))
                            if crate::types::is_numeric(&l) && crate::types::is_numeric(&r) =>
                        {
                            SqlType::Known(DataType::Float64)
                        }
                        _ => SqlType::Any,
                    }
                }
            }
            Expr::Not(_)
            | Expr::IsNull { .. }
            | Expr::InList { .. }
            | Expr::Between { .. }
            | Expr::Like { .. } => SqlType::Known(DataType::Boolean),
            Expr::Negate(e) => e.sql_type(),
            Expr::Call { func, args } => {
                let infos: Vec<_> = args.iter().map(ArgInfo::of).collect();
                func.return_type(&infos).unwrap_or(SqlType::Any)
            }
            Expr::Field { base, name } => match base.sql_type() {
                SqlType::Known(DataType::Struct(fields)) => fields
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(name))
                    .map(|f| SqlType::Known(f.data_type().clone()))
                    .unwrap_or(SqlType::Any),
                _ => SqlType::Any,
            },
            Expr::Index { base, .. } => match base.sql_type() {
                SqlType::Known(DataType::List(f)) => SqlType::Known(f.data_type().clone()),
                _ => SqlType::Any,
            },
            Expr::Slice { base, .. } => base.sql_type(),
            Expr::Case { .. } | Expr::Meta(_) | Expr::Row { .. } => SqlType::Any,
            Expr::Rule(RuleValue::Id) => SqlType::Known(DataType::Utf8),
            Expr::Rule(RuleValue::Start) | Expr::RowNumber | Expr::Hit { .. } => {
                SqlType::Known(DataType::Int64)
            }
        }
    }

    /// Calls `f` on this expression and every sub-expression.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        each_child!(self, f, visit, iter);
    }

    /// Calls `f` on this expression and then on every sub-expression, for rewrites.
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        f(self);
        each_child!(self, f, visit_mut, iter_mut);
    }
}

/// Walks the children of an expression with `$walk` (`visit` or `visit_mut`): one body for
/// both visitors, naming every variant, so a new one cannot be skipped by either.
macro_rules! each_child {
    ($e:expr, $f:ident, $walk:ident, $iter:ident) => {
        match $e {
            Expr::Column { .. }
            | Expr::Literal(_)
            | Expr::Meta(_)
            | Expr::Rule(_)
            | Expr::Row { .. }
            | Expr::RowNumber => {}
            Expr::Hit { time, .. } => time.$walk($f),
            Expr::Field { base, .. } => base.$walk($f),
            Expr::Index { base, index } => {
                base.$walk($f);
                index.$walk($f);
            }
            Expr::Slice { base, start, end } => {
                base.$walk($f);
                start.$iter().for_each(|e| e.$walk($f));
                end.$iter().for_each(|e| e.$walk($f));
            }
            Expr::Binary { left, right, .. } => {
                left.$walk($f);
                right.$walk($f);
            }
            Expr::Not(e) | Expr::Negate(e) | Expr::IsNull { expr: e, .. } => e.$walk($f),
            Expr::InList { expr, list, .. } => {
                expr.$walk($f);
                list.$iter().for_each(|e| e.$walk($f));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.$walk($f);
                low.$walk($f);
                high.$walk($f);
            }
            Expr::Like { expr, pattern, .. } => {
                expr.$walk($f);
                pattern.$walk($f);
            }
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => {
                operand.$iter().for_each(|e| e.$walk($f));
                for (w, t) in branches {
                    w.$walk($f);
                    t.$walk($f);
                }
                otherwise.$iter().for_each(|e| e.$walk($f));
            }
            Expr::Call { args, .. } => args.$iter().for_each(|e| e.$walk($f)),
        }
    };
}
use each_child;

/// The type CASE branches are unified to: numbers widen to FLOAT; otherwise the first
/// non-null type (mismatched branches then fail the cast per row).
fn common_type<'a>(types: impl Iterator<Item = &'a DataType>) -> DataType {
    let types: Vec<&DataType> = types.filter(|t| **t != DataType::Null).collect();
    if types.is_empty() {
        return DataType::Null;
    }
    if types.iter().all(|t| t.is_integer()) {
        return DataType::Int64;
    }
    if types.iter().all(|t| crate::types::is_numeric(t)) {
        return DataType::Float64;
    }
    if types.iter().all(|t| *t == types[0]) {
        return types[0].clone();
    }
    DataType::Utf8
}

fn coerce(arr: ArrayRef, ty: &DataType) -> Result<ArrayRef, String> {
    if arr.data_type() == ty {
        return Ok(arr);
    }
    if arr.data_type() == &DataType::Null {
        return Ok(new_null_array(ty, arr.len()));
    }
    arrow::compute::cast(arr.as_ref(), ty).map_err(|e| e.to_string())
}

// Here rather than in `functions`, so that `functions` never names `Expr`: expressions sit
// above the function registry.
impl ArgInfo {
    /// Describes a bound argument expression.
    pub fn of(e: &Expr) -> ArgInfo {
        ArgInfo {
            ty: e.sql_type(),
            literal: match e {
                Expr::Literal(l) => Some(l.clone()),
                _ => None,
            },
        }
    }
}

/// The row as one struct value: every column but the hidden ones and `except`.
pub fn whole_row(batch: &RecordBatch, except: &[String]) -> ArrayRef {
    use arrow::array::StructArray;
    let (fields, cols): (Vec<_>, Vec<_>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| {
            !f.name().starts_with(crate::columns::HIDDEN_PREFIX)
                && !except.iter().any(|x| x.eq_ignore_ascii_case(f.name()))
        })
        .map(|(f, c)| (f.as_ref().clone().with_nullable(true), c.clone()))
        .unzip();
    if fields.is_empty() {
        return Arc::new(StructArray::new_empty_fields(batch.num_rows(), None));
    }
    Arc::new(StructArray::new(
        arrow::datatypes::Fields::from(fields),
        cols,
        None,
    ))
}

/// The time of a hit for each row of `batch`: `time`'s value, or now where it has none.
pub fn hit_times(
    time: &Expr,
    batch: &RecordBatch,
    ctx: &mut EvalContext,
) -> Result<Vec<i64>, String> {
    let rows = batch.num_rows();
    let col = time.eval(batch, ctx)?.into_array(rows);
    let now = chrono::Utc::now().timestamp_millis();
    Ok(
        match col.as_primitive_opt::<arrow::datatypes::Int64Type>() {
            Some(ts) => (0..rows)
                .map(|r| if ts.is_valid(r) { ts.value(r) } else { now })
                .collect(),
            None => vec![now; rows],
        },
    )
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column { name, .. } => write!(f, "{name}"),
            Expr::Literal(l) => write!(f, "{l}"),
            Expr::Meta(k) => write!(f, "meta({k})"),
            Expr::Rule(RuleValue::Id) => f.write_str("rule_id()"),
            Expr::Rule(RuleValue::Start) => f.write_str("rule_start()"),
            Expr::RowNumber => f.write_str("row_number()"),
            Expr::Row { except } if except.is_empty() => f.write_str("*"),
            Expr::Row { except } => write!(f, "* EXCEPT({})", except.join(", ")),
            Expr::Hit { site, .. } => write!(f, "{site}"),
            Expr::Field { base, name } => write!(f, "{base}.{name}"),
            Expr::Index { base, index } => write!(f, "{base}[{index}]"),
            Expr::Slice { base, start, end } => {
                write!(f, "{base}[")?;
                if let Some(s) = start {
                    write!(f, "{s}")?;
                }
                f.write_str(":")?;
                if let Some(e) = end {
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
            Expr::Binary { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::Not(e) => write!(f, "NOT {e}"),
            Expr::Negate(e) => write!(f, "-{e}"),
            Expr::IsNull { expr, negated } => {
                write!(f, "{expr} IS {}NULL", if *negated { "NOT " } else { "" })
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "{expr} {}IN (", if *negated { "NOT " } else { "" })?;
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(")")
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => write!(
                f,
                "{expr} {}BETWEEN {low} AND {high}",
                if *negated { "NOT " } else { "" }
            ),
            Expr::Like {
                expr,
                pattern,
                negated,
            } => write!(
                f,
                "{expr} {}LIKE {pattern}",
                if *negated { "NOT " } else { "" }
            ),
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => {
                f.write_str("CASE")?;
                if let Some(o) = operand {
                    write!(f, " {o}")?;
                }
                for (w, t) in branches {
                    write!(f, " WHEN {w} THEN {t}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Call { func, args } => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}
