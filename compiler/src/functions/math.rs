//! Math functions: abs, ceil, floor, round, sqrt, pow.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
    flag_type_error, shape,
};
use crate::eval::{Columnar, EvalContext};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Abs));
    r.register(Arc::new(Ceil));
    r.register(Arc::new(Floor));
    r.register(Arc::new(Round));
    r.register(Arc::new(Sqrt));
    r.register(Arc::new(Pow));
    r.alias("ceiling", "ceil");
    r.alias("power", "pow");
}

/// Integer input keeps its type; float input stays float: eKuiper's rule for abs.
fn same_numeric_type(args: &[ArgInfo]) -> SqlType {
    match &args[0].ty {
        SqlType::Known(t) if t.is_integer() => SqlType::Known(DataType::Int64),
        SqlType::Known(t) if t.is_floating() => SqlType::Known(DataType::Float64),
        _ => SqlType::Any,
    }
}

/// Applies `int_op` to integer columns and `float_op` to float columns; other types fail rows.
fn numeric_unary(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    int_op: impl Fn(i64) -> i64,
    float_op: impl Fn(f64) -> f64,
) -> Result<Columnar, String> {
    let arr = arrays(args, ctx).remove(0);
    let out: ArrayRef = match arr.data_type() {
        DataType::Null => arr,
        t if t.is_integer() => {
            let a = cast(arr.as_ref(), &DataType::Int64).map_err(|e| e.to_string())?;
            let a: Int64Array = a.as_primitive::<Int64Type>().unary(int_op);
            Arc::new(a)
        }
        t if t.is_floating() => {
            let a = cast(arr.as_ref(), &DataType::Float64).map_err(|e| e.to_string())?;
            let a: Float64Array = a.as_primitive::<Float64Type>().unary(float_op);
            Arc::new(a)
        }
        _ => {
            flag_type_error(name, "a number", &arr, ctx);
            arrow::array::new_null_array(&DataType::Float64, arr.len())
        }
    };
    Ok(shape(args, out))
}

/// Applies `op` to a numeric column as FLOAT (eKuiper's ceil/floor/round always return float).
fn float_unary(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    op: impl Fn(f64) -> f64,
) -> Result<Columnar, String> {
    let arr = arrays(args, ctx).remove(0);
    let x = float_arg(name, &arr, ctx)?;
    let out: Float64Array = x.unary(op);
    Ok(shape(args, Arc::new(out)))
}

/// Casts a numeric column to FLOAT, flagging non-numeric rows.
fn float_arg(name: &str, arr: &ArrayRef, ctx: &mut EvalContext) -> Result<Float64Array, String> {
    match arr.data_type() {
        t if t.is_integer() || t.is_floating() || *t == DataType::Null => {
            let a = cast(arr.as_ref(), &DataType::Float64).map_err(|e| e.to_string())?;
            Ok(a.as_primitive::<Float64Type>().clone())
        }
        _ => {
            flag_type_error(name, "a number", arr, ctx);
            Ok(Float64Array::new_null(arr.len()))
        }
    }
}

#[derive(Debug)]
struct Abs;
impl ScalarFunction for Abs {
    fn name(&self) -> &'static str {
        "abs"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "abs(x)",
            description: "absolute value; BIGINT stays BIGINT",
            example: "abs(-3) = 3",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        check_kind(args, 0, Kind::Number)?;
        Ok(same_numeric_type(args))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        numeric_unary("abs", args, ctx, i64::wrapping_abs, f64::abs)
    }
}

#[derive(Debug)]
struct Ceil;
impl ScalarFunction for Ceil {
    fn name(&self) -> &'static str {
        "ceil"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "ceil(x)",
            description: "smallest integer value not less than x, as FLOAT",
            example: "ceil(1.2) = 2",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        check_kind(args, 0, Kind::Number)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_unary("ceil", args, ctx, f64::ceil)
    }
}

#[derive(Debug)]
struct Floor;
impl ScalarFunction for Floor {
    fn name(&self) -> &'static str {
        "floor"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "floor(x)",
            description: "largest integer value not greater than x, as FLOAT",
            example: "floor(1.8) = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        check_kind(args, 0, Kind::Number)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_unary("floor", args, ctx, f64::floor)
    }
}

#[derive(Debug)]
struct Round;
impl ScalarFunction for Round {
    fn name(&self) -> &'static str {
        "round"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "round(x[, digits])",
            description: "x rounded half away from zero, to `digits` decimals (default 0)",
            example: "round(3.14159, 2) = 3.14",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 2)?;
        check_kind(args, 0, Kind::Number)?;
        if args.len() == 2 {
            check_kind(args, 1, Kind::Number)?;
        }
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        if args.len() == 1 {
            return float_unary("round", args, ctx, f64::round);
        }
        let cols = arrays(args, ctx);
        let x = float_arg("round", &cols[0], ctx)?;
        let d = float_arg("round", &cols[1], ctx)?;
        let out: Float64Array = arrow::compute::binary(&x, &d, |x, d| {
            let scale = 10f64.powi(d as i32);
            (x * scale).round() / scale
        })
        .map_err(|e| e.to_string())?;
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct Sqrt;
impl ScalarFunction for Sqrt {
    fn name(&self) -> &'static str {
        "sqrt"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "sqrt(x)",
            description: "square root of x as FLOAT; null for a negative x",
            example: "sqrt(16) = 4",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        check_kind(args, 0, Kind::Number)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let x = float_arg("sqrt", &arr, ctx)?;
        let mut out = Vec::with_capacity(x.len());
        for v in x.iter() {
            // eKuiper returns nil where Go's math.Sqrt gives NaN.
            out.push(v.filter(|v| *v >= 0.0).map(f64::sqrt));
        }
        Ok(shape(args, Arc::new(Float64Array::from(out))))
    }
}

#[derive(Debug)]
struct Pow;
impl ScalarFunction for Pow {
    fn name(&self) -> &'static str {
        "pow"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "pow(x, y)",
            description: "x raised to the power y, as FLOAT",
            example: "pow(2, 10) = 1024",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 0, Kind::Number)?;
        check_kind(args, 1, Kind::Number)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let x = float_arg("pow", &cols[0], ctx)?;
        let y = float_arg("pow", &cols[1], ctx)?;
        let out: Float64Array =
            arrow::compute::binary(&x, &y, f64::powf).map_err(|e| e.to_string())?;
        Ok(shape(args, Arc::new(out)))
    }
}
