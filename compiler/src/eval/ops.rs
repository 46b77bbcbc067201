//! Operators: arithmetic, bitwise, comparison, logic, LIKE, with eKuiper's typing rules.
//!
//! - BIGINT op BIGINT stays BIGINT (`3 / 6 = 0`, wrapping on overflow like Go's int64);
//!   mixing BIGINT and FLOAT gives FLOAT.
//! - Division or modulo by zero fails the row.
//! - Operands of types the operator cannot take (string + number, bitwise on floats) fail the
//!   row where both values are present; a missing (null) operand gives null, which WHERE
//!   treats as false.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, new_null_array};
use arrow::compute::kernels::{cmp, numeric};
use arrow::compute::{cast, nullif};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};

use super::{Columnar, EvalContext, describe_value, present};
use crate::types::type_name;

/// A binary operator of eKuiper's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `=`
    Eq,
    /// `!=` / `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND`
    And,
    /// `OR`
    Or,
}

impl BinaryOp {
    /// The operator as written in SQL.
    pub fn symbol(&self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::BitAnd => "&",
            BinaryOp::BitOr => "|",
            BinaryOp::BitXor => "^",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
        }
    }

    /// True for `= != < <= > >=`.
    pub fn is_comparison(&self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
        )
    }

    /// True for `+ - * / %`.
    pub fn is_arithmetic(&self) -> bool {
        matches!(
            self,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
        )
    }

    /// True for `& | ^`.
    pub fn is_bitwise(&self) -> bool {
        matches!(self, BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::BitXor)
    }
}

/// Result length of combining two operands.
fn out_len(l: &Columnar, r: &Columnar, rows: usize) -> usize {
    if l.is_scalar() && r.is_scalar() {
        1
    } else {
        rows
    }
}

fn wrap(arr: ArrayRef, l: &Columnar, r: &Columnar) -> Columnar {
    if l.is_scalar() && r.is_scalar() {
        Columnar::Scalar(arr)
    } else {
        Columnar::Array(arr)
    }
}

fn null_result(ty: &DataType, l: &Columnar, r: &Columnar, rows: usize) -> Columnar {
    wrap(new_null_array(ty, out_len(l, r, rows)), l, r)
}

/// Flags the rows where both operands are present: the operator cannot take these types.
fn type_error(op: BinaryOp, l: &Columnar, r: &Columnar, ctx: &mut EvalContext) {
    let la = l.clone().into_array(ctx.rows);
    let ra = r.clone().into_array(ctx.rows);
    for row in 0..ctx.rows {
        if present(la.as_ref(), row) && present(ra.as_ref(), row) {
            ctx.errors.flag(row, || {
                format!(
                    "invalid operation {} {} {}",
                    describe_value(la.as_ref(), row),
                    op.symbol(),
                    describe_value(ra.as_ref(), row)
                )
            });
        }
    }
}

fn to_type(c: &Columnar, ty: &DataType) -> Result<Columnar, String> {
    if c.data_type() == ty {
        return Ok(c.clone());
    }
    c.clone()
        .map(|a| cast(a.as_ref(), ty).map_err(|e| e.to_string()))
}

/// Numeric class of a type: integer, float, or neither.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Num {
    Int,
    Float,
}

fn num_class(t: &DataType) -> Option<Num> {
    if t.is_integer() {
        Some(Num::Int)
    } else if t.is_floating() {
        Some(Num::Float)
    } else {
        None
    }
}

/// Evaluates an arithmetic or bitwise operator.
pub fn arithmetic(
    op: BinaryOp,
    l: Columnar,
    r: Columnar,
    ctx: &mut EvalContext,
) -> Result<Columnar, String> {
    let (lt, rt) = (l.data_type().clone(), r.data_type().clone());
    if lt == DataType::Null || rt == DataType::Null {
        let ty = match (num_class(&lt), num_class(&rt)) {
            (Some(Num::Int), None) | (None, Some(Num::Int)) => DataType::Int64,
            _ => DataType::Float64,
        };
        return Ok(null_result(&ty, &l, &r, ctx.rows));
    }
    let (Some(lc), Some(rc)) = (num_class(&lt), num_class(&rt)) else {
        type_error(op, &l, &r, ctx);
        return Ok(null_result(&DataType::Float64, &l, &r, ctx.rows));
    };
    if op.is_bitwise() {
        if lc != Num::Int || rc != Num::Int {
            type_error(op, &l, &r, ctx);
            return Ok(null_result(&DataType::Int64, &l, &r, ctx.rows));
        }
        let la = to_type(&l, &DataType::Int64)?.into_array(ctx.rows);
        let ra = to_type(&r, &DataType::Int64)?.into_array(ctx.rows);
        let (la, ra) = (
            la.as_primitive::<Int64Type>(),
            ra.as_primitive::<Int64Type>(),
        );
        let out = match op {
            BinaryOp::BitAnd => arrow::compute::kernels::bitwise::bitwise_and(la, ra),
            BinaryOp::BitOr => arrow::compute::kernels::bitwise::bitwise_or(la, ra),
            _ => arrow::compute::kernels::bitwise::bitwise_xor(la, ra),
        }
        .map_err(|e| e.to_string())?;
        return Ok(Columnar::Array(Arc::new(out)));
    }
    let ty = if lc == Num::Int && rc == Num::Int {
        DataType::Int64
    } else {
        DataType::Float64
    };
    let l = to_type(&l, &ty)?;
    let mut r = to_type(&r, &ty)?;
    if matches!(op, BinaryOp::Div | BinaryOp::Mod) {
        r = guard_zero_divisor(&l, r, ctx)?;
    }
    let out = match op {
        BinaryOp::Add => numeric::add_wrapping(&l, &r),
        BinaryOp::Sub => numeric::sub_wrapping(&l, &r),
        BinaryOp::Mul => numeric::mul_wrapping(&l, &r),
        BinaryOp::Div => numeric::div(&l, &r),
        BinaryOp::Mod => numeric::rem(&l, &r),
        _ => unreachable!("non-arithmetic operator {op:?}"),
    }
    .map_err(|e| e.to_string())?;
    Ok(wrap(out, &l, &r))
}

/// Flags rows whose divisor is zero (where the dividend is present: a missing dividend gives
/// null, as in eKuiper) and replaces those divisors with null.
fn guard_zero_divisor(
    l: &Columnar,
    r: Columnar,
    ctx: &mut EvalContext,
) -> Result<Columnar, String> {
    let zero: ArrayRef = match r.data_type() {
        DataType::Int64 => Arc::new(arrow::array::Int64Array::from(vec![0])),
        _ => Arc::new(arrow::array::Float64Array::from(vec![0.0])),
    };
    let is_zero = cmp::eq(&r, &arrow::array::Scalar::new(zero)).map_err(|e| e.to_string())?;
    if is_zero.true_count() == 0 {
        return Ok(r);
    }
    let rows = ctx.rows;
    let arr = r.into_array(rows);
    let mask = if is_zero.len() == arr.len() {
        is_zero
    } else {
        BooleanArray::from(vec![true; arr.len()])
    };
    let left = l.clone().into_array(rows);
    let failing: BooleanArray = (0..rows)
        .map(|i| Some(mask.is_valid(i) && mask.value(i) && present(left.as_ref(), i)))
        .collect();
    ctx.errors
        .flag_mask(&failing, || "divided by zero".to_string());
    Ok(Columnar::Array(
        nullif(arr.as_ref(), &mask).map_err(|e| e.to_string())?,
    ))
}

/// Arrow compares floats by IEEE total order, where -0.0 < 0.0; SQL (and Go) treat them as
/// equal, so comparisons see -0.0 as 0.0.
fn positive_zero(c: Columnar) -> Result<Columnar, String> {
    if c.data_type() != &DataType::Float64 {
        return Ok(c);
    }
    c.map(|a| {
        let f: arrow::array::Float64Array = a
            .as_primitive::<arrow::datatypes::Float64Type>()
            .unary(|v| v + 0.0);
        Ok(Arc::new(f) as ArrayRef)
    })
}

fn is_nonzero_scalar(c: &Columnar) -> bool {
    match c {
        Columnar::Scalar(a) if a.data_type() == &DataType::Float64 && a.is_valid(0) => {
            a.as_primitive::<arrow::datatypes::Float64Type>().value(0) != 0.0
        }
        _ => false,
    }
}

/// The common type two operands are compared in, if they are comparable.
fn comparison_type(lt: &DataType, rt: &DataType) -> Option<DataType> {
    match (num_class(lt), num_class(rt)) {
        (Some(Num::Int), Some(Num::Int)) => return Some(DataType::Int64),
        (Some(_), Some(_)) => return Some(DataType::Float64),
        _ => {}
    }
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    match (lt, rt) {
        (DataType::Utf8, DataType::Utf8) => Some(DataType::Utf8),
        (DataType::Boolean, DataType::Boolean) => Some(DataType::Boolean),
        (DataType::Binary, DataType::Binary) => Some(DataType::Binary),
        (DataType::Timestamp(..), DataType::Timestamp(..)) => Some(ts),
        (DataType::Timestamp(..), t) | (t, DataType::Timestamp(..)) if t.is_integer() => Some(ts),
        _ => None,
    }
}

/// Evaluates a comparison operator with eKuiper's treatment of missing values: the result is
/// never null. With a missing operand, `=`, `<=`, `>=` are true only when both are missing,
/// `!=` is true unless both are missing, and `<`, `>` are false.
pub fn compare(
    op: BinaryOp,
    l: Columnar,
    r: Columnar,
    ctx: &mut EvalContext,
) -> Result<Columnar, String> {
    let raw = compare_nullable(op, l.clone(), r.clone(), ctx)?;
    let raw_arr = raw.array();
    if raw_arr.null_count() == 0 {
        return Ok(raw);
    }
    let len = raw_arr.len();
    let (la, ra) = (l.clone().into_array(len), r.clone().into_array(len));
    let out: BooleanArray = (0..len)
        .map(|i| {
            if raw_arr.is_valid(i) {
                return Some(raw_arr.as_boolean().value(i));
            }
            let both = !present(la.as_ref(), i) && !present(ra.as_ref(), i);
            Some(match op {
                BinaryOp::Eq | BinaryOp::LtEq | BinaryOp::GtEq => both,
                BinaryOp::NotEq => !both,
                _ => false,
            })
        })
        .collect();
    Ok(if raw.is_scalar() {
        Columnar::Scalar(Arc::new(out))
    } else {
        Columnar::Array(Arc::new(out))
    })
}

/// Evaluates a comparison with SQL null propagation (null where an operand is null); used by
/// `IN`, where a missing value never matches.
pub fn compare_nullable(
    op: BinaryOp,
    l: Columnar,
    r: Columnar,
    ctx: &mut EvalContext,
) -> Result<Columnar, String> {
    let (lt, rt) = (l.data_type().clone(), r.data_type().clone());
    if lt == DataType::Null || rt == DataType::Null {
        return Ok(null_result(&DataType::Boolean, &l, &r, ctx.rows));
    }
    let Some(ty) = comparison_type(&lt, &rt) else {
        type_error(op, &l, &r, ctx);
        return Ok(null_result(&DataType::Boolean, &l, &r, ctx.rows));
    };
    let l = to_type(&l, &ty)?;
    let r = to_type(&r, &ty)?;
    // Against a non-zero constant, total order and SQL order agree: skip the extra pass.
    let (l, r) = if ty == DataType::Float64 && !(is_nonzero_scalar(&l) || is_nonzero_scalar(&r)) {
        (positive_zero(l)?, positive_zero(r)?)
    } else {
        (l, r)
    };
    let out = match op {
        BinaryOp::Eq => cmp::eq(&l, &r),
        BinaryOp::NotEq => cmp::neq(&l, &r),
        BinaryOp::Lt => cmp::lt(&l, &r),
        BinaryOp::LtEq => cmp::lt_eq(&l, &r),
        BinaryOp::Gt => cmp::gt(&l, &r),
        BinaryOp::GtEq => cmp::gt_eq(&l, &r),
        _ => unreachable!("non-comparison operator {op:?}"),
    }
    .map_err(|e| e.to_string())?;
    Ok(wrap(Arc::new(out), &l, &r))
}

/// Casts a value to boolean for logic: booleans pass, null stays null, other types fail the row.
pub fn as_boolean(c: Columnar, what: &str, ctx: &mut EvalContext) -> Columnar {
    match c.data_type() {
        DataType::Boolean => c,
        DataType::Null => Columnar::Scalar(new_null_array(&DataType::Boolean, 1)),
        other => {
            let arr = c.clone().into_array(ctx.rows);
            let ty = type_name(other);
            for row in 0..ctx.rows {
                if present(arr.as_ref(), row) {
                    ctx.errors
                        .flag(row, || format!("{what} expects a boolean, got {ty}"));
                }
            }
            Columnar::Scalar(new_null_array(&DataType::Boolean, 1))
        }
    }
}

/// Evaluates `NOT`.
pub fn not(c: Columnar, ctx: &mut EvalContext) -> Result<Columnar, String> {
    as_boolean(c, "NOT", ctx).map(|a| {
        arrow::compute::not(a.as_boolean())
            .map(|b| Arc::new(b) as ArrayRef)
            .map_err(|e| e.to_string())
    })
}

/// Evaluates unary minus.
pub fn negate(c: Columnar, ctx: &mut EvalContext) -> Result<Columnar, String> {
    match num_class(c.data_type()) {
        Some(_) => c.map(|a| numeric::neg_wrapping(a.as_ref()).map_err(|e| e.to_string())),
        None if c.data_type() == &DataType::Null => Ok(c),
        None => {
            let arr = c.into_array(ctx.rows);
            for row in 0..ctx.rows {
                if present(arr.as_ref(), row) {
                    ctx.errors.flag(row, || {
                        format!("invalid operation -{}", describe_value(arr.as_ref(), row))
                    });
                }
            }
            Ok(Columnar::Scalar(new_null_array(&DataType::Float64, 1)))
        }
    }
}

/// Evaluates `[NOT] LIKE` with `%`, `_` and `\` escapes.
pub fn like(
    value: Columnar,
    pattern: Columnar,
    negated: bool,
    ctx: &mut EvalContext,
) -> Result<Columnar, String> {
    // eKuiper: the left operand must be a string; a missing one is an error, not false.
    let left = value.clone().into_array(ctx.rows);
    let left_ok = matches!(value.data_type(), DataType::Utf8 | DataType::Null);
    for row in 0..ctx.rows {
        if !left_ok || !present(left.as_ref(), row) {
            ctx.errors.flag(row, || {
                let found = if !present(left.as_ref(), row) {
                    "nil".to_string()
                } else {
                    describe_value(left.as_ref(), row)
                };
                format!("LIKE operator left operand expects string, but found {found}")
            });
        }
    }
    if !left_ok || value.data_type() == &DataType::Null {
        return Ok(null_result(&DataType::Boolean, &value, &pattern, ctx.rows));
    }
    if pattern.data_type() != &DataType::Utf8 {
        ctx.errors
            .flag_all("invalid LIKE pattern, must be a string".to_string());
        return Ok(null_result(&DataType::Boolean, &value, &pattern, ctx.rows));
    }
    let out = if negated {
        arrow::compute::kernels::comparison::nlike(&value, &pattern)
    } else {
        arrow::compute::kernels::comparison::like(&value, &pattern)
    }
    .map_err(|e| e.to_string())?;
    Ok(wrap(Arc::new(out), &value, &pattern))
}

/// Kleene AND / OR of two boolean values.
pub fn logic(op: BinaryOp, l: &Columnar, r: &Columnar, rows: usize) -> Result<Columnar, String> {
    let la = l.clone().into_array(rows);
    let ra = r.clone().into_array(rows);
    let out = match op {
        BinaryOp::And => arrow::compute::and_kleene(la.as_boolean(), ra.as_boolean()),
        _ => arrow::compute::or_kleene(la.as_boolean(), ra.as_boolean()),
    }
    .map_err(|e| e.to_string())?;
    Ok(Columnar::Array(Arc::new(out)))
}
