//! Math functions: abs, ceil, floor, round, sqrt, pow, the trigonometric and hyperbolic
//! functions, exp, ln, log, mod, pi, rand, sign, the bit functions and conv.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
    flag_type_error, format_float, numeric_args, shape,
};
use crate::eval::{Columnar, EvalContext, Literal, describe_value};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Abs));
    r.register(Arc::new(Ceil));
    r.register(Arc::new(Floor));
    r.register(Arc::new(Round));
    r.register(Arc::new(Sqrt));
    r.register(Arc::new(Pow));
    r.register(Arc::new(Acos));
    r.register(Arc::new(Asin));
    r.register(Arc::new(Atan));
    r.register(Arc::new(Atan2));
    r.register(Arc::new(Cos));
    r.register(Arc::new(Cosh));
    r.register(Arc::new(Cot));
    r.register(Arc::new(Degrees));
    r.register(Arc::new(Exp));
    r.register(Arc::new(Ln));
    r.register(Arc::new(Log));
    r.register(Arc::new(Mod));
    r.register(Arc::new(Pi));
    r.register(Arc::new(Radians));
    r.register(Arc::new(Rand));
    r.register(Arc::new(Sign));
    r.register(Arc::new(Sin));
    r.register(Arc::new(Sinh));
    r.register(Arc::new(Tan));
    r.register(Arc::new(Tanh));
    r.register(Arc::new(BitAnd));
    r.register(Arc::new(BitOr));
    r.register(Arc::new(BitXor));
    r.register(Arc::new(BitNot));
    r.register(Arc::new(Conv));
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

/// Applies `op` to a numeric column as FLOAT; NaN or infinite results become null (eKuiper
/// returns nil where Go's math gives NaN).
fn float_map(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    op: impl Fn(f64) -> f64,
) -> Result<Columnar, String> {
    let arr = arrays(args, ctx).remove(0);
    let x = float_arg(name, &arr, ctx)?;
    let out: Float64Array = x
        .iter()
        .map(|v| v.map(&op).filter(|r| r.is_finite()))
        .collect();
    Ok(shape(args, Arc::new(out)))
}

/// Applies `op` to two numeric columns as FLOAT; NaN or infinite results become null.
fn float_map2(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    op: impl Fn(f64, f64) -> f64,
) -> Result<Columnar, String> {
    let cols = arrays(args, ctx);
    let x = float_arg(name, &cols[0], ctx)?;
    let y = float_arg(name, &cols[1], ctx)?;
    let out: Float64Array = x
        .iter()
        .zip(y.iter())
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => Some(op(x, y)).filter(|r| r.is_finite()),
            _ => None,
        })
        .collect();
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
        numeric_args(args, 1)?;
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
        numeric_args(args, 1)?;
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
        numeric_args(args, 1)?;
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
        numeric_args(args, 1)?;
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
        numeric_args(args, 2)?;
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

#[derive(Debug)]
struct Acos;
impl ScalarFunction for Acos {
    fn name(&self) -> &'static str {
        "acos"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "acos(x)",
            description: "arc cosine of x in radians, as FLOAT; null outside [-1, 1]",
            example: "acos(1) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("acos", args, ctx, f64::acos)
    }
}

#[derive(Debug)]
struct Asin;
impl ScalarFunction for Asin {
    fn name(&self) -> &'static str {
        "asin"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "asin(x)",
            description: "arc sine of x in radians, as FLOAT; null outside [-1, 1]",
            example: "asin(0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("asin", args, ctx, f64::asin)
    }
}

#[derive(Debug)]
struct Atan;
impl ScalarFunction for Atan {
    fn name(&self) -> &'static str {
        "atan"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "atan(x)",
            description: "arc tangent of x in radians, as FLOAT",
            example: "atan(0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("atan", args, ctx, f64::atan)
    }
}

#[derive(Debug)]
struct Cos;
impl ScalarFunction for Cos {
    fn name(&self) -> &'static str {
        "cos"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "cos(x)",
            description: "cosine of x (radians), as FLOAT",
            example: "cos(0) = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("cos", args, ctx, f64::cos)
    }
}

#[derive(Debug)]
struct Cosh;
impl ScalarFunction for Cosh {
    fn name(&self) -> &'static str {
        "cosh"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "cosh(x)",
            description: "hyperbolic cosine of x, as FLOAT",
            example: "cosh(0) = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("cosh", args, ctx, f64::cosh)
    }
}

#[derive(Debug)]
struct Cot;
impl ScalarFunction for Cot {
    fn name(&self) -> &'static str {
        "cot"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "cot(x)",
            description: "cotangent of x (radians), as FLOAT; null where it is infinite",
            example: "cot(pi() / 4) = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("cot", args, ctx, |x| 1.0 / x.tan())
    }
}

#[derive(Debug)]
struct Degrees;
impl ScalarFunction for Degrees {
    fn name(&self) -> &'static str {
        "degrees"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "degrees(x)",
            description: "x radians converted to degrees, as FLOAT",
            example: "degrees(pi()) = 180",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("degrees", args, ctx, |x| x * 180.0 / std::f64::consts::PI)
    }
}

#[derive(Debug)]
struct Exp;
impl ScalarFunction for Exp {
    fn name(&self) -> &'static str {
        "exp"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "exp(x)",
            description: "e raised to the power x, as FLOAT",
            example: "exp(0) = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("exp", args, ctx, f64::exp)
    }
}

#[derive(Debug)]
struct Ln;
impl ScalarFunction for Ln {
    fn name(&self) -> &'static str {
        "ln"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "ln(x)",
            description: "natural logarithm of x, as FLOAT; null for x <= 0",
            example: "ln(1) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("ln", args, ctx, f64::ln)
    }
}

#[derive(Debug)]
struct Radians;
impl ScalarFunction for Radians {
    fn name(&self) -> &'static str {
        "radians"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "radians(x)",
            description: "x degrees converted to radians, as FLOAT",
            example: "radians(180) = 3.141592653589793",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("radians", args, ctx, |x| x * std::f64::consts::PI / 180.0)
    }
}

#[derive(Debug)]
struct Sin;
impl ScalarFunction for Sin {
    fn name(&self) -> &'static str {
        "sin"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "sin(x)",
            description: "sine of x (radians), as FLOAT",
            example: "sin(0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("sin", args, ctx, f64::sin)
    }
}

#[derive(Debug)]
struct Sinh;
impl ScalarFunction for Sinh {
    fn name(&self) -> &'static str {
        "sinh"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "sinh(x)",
            description: "hyperbolic sine of x, as FLOAT",
            example: "sinh(0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("sinh", args, ctx, f64::sinh)
    }
}

#[derive(Debug)]
struct Tan;
impl ScalarFunction for Tan {
    fn name(&self) -> &'static str {
        "tan"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "tan(x)",
            description: "tangent of x (radians), as FLOAT",
            example: "tan(0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("tan", args, ctx, f64::tan)
    }
}

#[derive(Debug)]
struct Tanh;
impl ScalarFunction for Tanh {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "tanh(x)",
            description: "hyperbolic tangent of x, as FLOAT",
            example: "tanh(0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map("tanh", args, ctx, f64::tanh)
    }
}

#[derive(Debug)]
struct Atan2;
impl ScalarFunction for Atan2 {
    fn name(&self) -> &'static str {
        "atan2"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "atan2(y, x)",
            description: "arc tangent of y / x in radians, using the signs of both for the quadrant, as FLOAT",
            example: "atan2(0, 1) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 2)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        float_map2("atan2", args, ctx, f64::atan2)
    }
}

#[derive(Debug)]
struct Log;
impl ScalarFunction for Log {
    fn name(&self) -> &'static str {
        "log"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "log([b, ]x)",
            description: "base-10 logarithm of x, or with two arguments the base-b logarithm, as FLOAT; null where undefined",
            example: "log(100) = 2, log(2, 8) = 3",
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
            return float_map("log", args, ctx, f64::log10);
        }
        float_map2("log", args, ctx, |b, x| x.ln() / b.ln())
    }
}

#[derive(Debug)]
struct Mod;
impl ScalarFunction for Mod {
    fn name(&self) -> &'static str {
        "mod"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "mod(x, y)",
            description: "remainder of x / y with the sign of x, as FLOAT; null when y is 0",
            example: "mod(7, 3) = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 2)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        // Rust's `%` on floats is C's fmod, the same as Go's math.Mod.
        float_map2("mod", args, ctx, |x, y| x % y)
    }
}

#[derive(Debug)]
struct Pi;
impl ScalarFunction for Pi {
    fn name(&self) -> &'static str {
        "pi"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "pi()",
            description: "the constant π as FLOAT",
            example: "pi() = 3.141592653589793",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 0)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, _args: &[Columnar], _ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out = Float64Array::from(vec![std::f64::consts::PI]);
        Ok(Columnar::Scalar(Arc::new(out)))
    }
}

#[derive(Debug)]
struct Rand;
impl ScalarFunction for Rand {
    fn name(&self) -> &'static str {
        "rand"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "rand()",
            description: "a pseudo-random FLOAT in [0, 1), a new one for every row",
            example: "rand() = 0.5488135039273248",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 0)?;
        Ok(SqlType::Known(DataType::Float64))
    }
    fn invoke(&self, _args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out: Float64Array = (0..ctx.rows).map(|_| Some(next_random())).collect();
        Ok(Columnar::Array(Arc::new(out)))
    }
}

/// A splitmix64 generator shared by all rules, seeded from the clock on first use.
pub(super) fn next_random() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x853c_49e6_748f_ea9b)
            | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // The top 53 bits give every representable multiple of 2^-53 in [0, 1).
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug)]
struct Sign;
impl ScalarFunction for Sign {
    fn name(&self) -> &'static str {
        "sign"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "sign(x)",
            description: "-1, 0 or 1 as BIGINT, for a negative, zero or positive x",
            example: "sign(-2.5) = -1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let x = float_arg("sign", &arr, ctx)?;
        let out: Int64Array = x
            .iter()
            .map(|v| {
                v.filter(|v| !v.is_nan()).map(|v| {
                    if v > 0.0 {
                        1
                    } else if v < 0.0 {
                        -1
                    } else {
                        0
                    }
                })
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

/// Casts a column to BIGINT for the bit functions: whole floats are accepted, any other value
/// fails its row with eKuiper's message (`operand` is `first` or `second`).
fn int_arg(
    name: &str,
    operand: &str,
    arr: &ArrayRef,
    ctx: &mut EvalContext,
) -> Result<Int64Array, String> {
    match arr.data_type() {
        t if t.is_integer() || *t == DataType::Null => {
            let a = cast(arr.as_ref(), &DataType::Int64).map_err(|e| e.to_string())?;
            Ok(a.as_primitive::<Int64Type>().clone())
        }
        t if t.is_floating() => {
            let a = cast(arr.as_ref(), &DataType::Float64).map_err(|e| e.to_string())?;
            let a = a.as_primitive::<Float64Type>();
            let mut out = Vec::with_capacity(a.len());
            for (row, v) in a.iter().enumerate() {
                out.push(match v {
                    None => None,
                    // i64::MAX as f64 rounds up to 2^63, hence the strict upper bound.
                    Some(v) if v == v.trunc() && v >= i64::MIN as f64 && v < i64::MAX as f64 => {
                        Some(v as i64)
                    }
                    Some(v) => {
                        if row < ctx.rows {
                            ctx.errors.flag(row, || {
                                format!(
                                    "{name}: Expect int type for the {operand} operand but got {}",
                                    format_float(v)
                                )
                            });
                        }
                        None
                    }
                });
            }
            Ok(Int64Array::from(out))
        }
        _ => {
            for row in 0..arr.len().min(ctx.rows) {
                if crate::eval::present(arr.as_ref(), row) {
                    ctx.errors.flag(row, || {
                        format!(
                            "{name}: Expect int type for the {operand} operand but got {}",
                            describe_value(arr.as_ref(), row)
                        )
                    });
                }
            }
            Ok(Int64Array::new_null(arr.len()))
        }
    }
}

/// Applies a bit operation to two BIGINT operands.
fn bit_binary(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    op: impl Fn(i64, i64) -> i64,
) -> Result<Columnar, String> {
    let cols = arrays(args, ctx);
    let a = int_arg(name, "first", &cols[0], ctx)?;
    let b = int_arg(name, "second", &cols[1], ctx)?;
    let out: Int64Array = arrow::compute::binary(&a, &b, op).map_err(|e| e.to_string())?;
    Ok(shape(args, Arc::new(out)))
}

/// Plan-time check shared by bitand, bitor and bitxor.
fn bit_binary_type(args: &[ArgInfo]) -> Result<SqlType, String> {
    numeric_args(args, 2)?;
    Ok(SqlType::Known(DataType::Int64))
}

#[derive(Debug)]
struct BitAnd;
impl ScalarFunction for BitAnd {
    fn name(&self) -> &'static str {
        "bitand"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "bitand(a, b)",
            description: "bitwise AND of two integers, as BIGINT",
            example: "bitand(12, 10) = 8",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        bit_binary_type(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        bit_binary("bitand", args, ctx, |a, b| a & b)
    }
}

#[derive(Debug)]
struct BitOr;
impl ScalarFunction for BitOr {
    fn name(&self) -> &'static str {
        "bitor"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "bitor(a, b)",
            description: "bitwise OR of two integers, as BIGINT",
            example: "bitor(12, 10) = 14",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        bit_binary_type(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        bit_binary("bitor", args, ctx, |a, b| a | b)
    }
}

#[derive(Debug)]
struct BitXor;
impl ScalarFunction for BitXor {
    fn name(&self) -> &'static str {
        "bitxor"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "bitxor(a, b)",
            description: "bitwise exclusive OR of two integers, as BIGINT",
            example: "bitxor(12, 10) = 6",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        bit_binary_type(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        bit_binary("bitxor", args, ctx, |a, b| a ^ b)
    }
}

#[derive(Debug)]
struct BitNot;
impl ScalarFunction for BitNot {
    fn name(&self) -> &'static str {
        "bitnot"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "bitnot(a)",
            description: "bitwise complement of an integer, as BIGINT",
            example: "bitnot(12) = -13",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        numeric_args(args, 1)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let a = int_arg("bitnot", "first", &arr, ctx)?;
        let out: Int64Array = a.unary(|a| !a);
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct Conv;
impl ScalarFunction for Conv {
    fn name(&self) -> &'static str {
        "conv"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "math",
            syntax: "conv(n, from_base, to_base)",
            description: "the number n (a string or an integer, read in from_base) written in to_base, as STRING; bases run from 2 to 36",
            example: "conv(\"a\", 16, 2) = \"1010\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 3, 3)?;
        if let SqlType::Known(t) = &args[0].ty
            && !(crate::types::is_numeric(t) || matches!(t, DataType::Utf8 | DataType::Null))
        {
            return Err(format!(
                "expects a number or a string for argument 1 but got {}",
                crate::types::type_name(t)
            ));
        }
        check_kind(args, 1, Kind::Number)?;
        check_kind(args, 2, Kind::Number)?;
        for i in [1, 2] {
            match &args[i].literal {
                Some(Literal::Int(b)) if !(2..=36).contains(b) => {
                    return Err(format!(
                        "expects a base between 2 and 36 for argument {} but got {b}",
                        i + 1
                    ));
                }
                _ => {}
            }
        }
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let from = int_arg("conv", "second", &cols[1], ctx)?;
        let to = int_arg("conv", "third", &cols[2], ctx)?;
        let n = &cols[0];
        let text: Option<StringArray> = match n.data_type() {
            DataType::Null => None,
            DataType::Utf8 => Some(n.as_string::<i32>().clone()),
            t if t.is_integer() => {
                let a = cast(n.as_ref(), &DataType::Utf8).map_err(|e| e.to_string())?;
                Some(a.as_string::<i32>().clone())
            }
            t if t.is_floating() => {
                let a = int_arg("conv", "first", n, ctx)?;
                let a = cast(&a, &DataType::Utf8).map_err(|e| e.to_string())?;
                Some(a.as_string::<i32>().clone())
            }
            _ => {
                flag_type_error("conv", "a number or a string", n, ctx);
                None
            }
        };
        let mut out: Vec<Option<String>> = Vec::with_capacity(n.len());
        for row in 0..n.len() {
            let (Some(s), Some(f), Some(t)) = (
                text.as_ref()
                    .filter(|a| a.is_valid(row))
                    .map(|a| a.value(row)),
                from.is_valid(row).then(|| from.value(row)),
                to.is_valid(row).then(|| to.value(row)),
            ) else {
                out.push(None);
                continue;
            };
            match convert_base(s, f, t) {
                Ok(v) => out.push(Some(v)),
                Err(e) => {
                    if row < ctx.rows {
                        ctx.errors.flag(row, || format!("conv: {e}"));
                    }
                    out.push(None);
                }
            }
        }
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}

/// Reads `s` in base `from` and writes it in base `to` (lowercase digits), like Go's
/// strconv.ParseInt followed by strconv.FormatInt.
fn convert_base(s: &str, from: i64, to: i64) -> Result<String, String> {
    for base in [from, to] {
        if !(2..=36).contains(&base) {
            return Err(format!("invalid base {base}, expect 2 to 36"));
        }
    }
    let n = i64::from_str_radix(s, from as u32)
        .map_err(|_| format!("invalid number {s} in base {from}"))?;
    let mut digits = Vec::new();
    let mut m = n.unsigned_abs();
    loop {
        let d = (m % to as u64) as u32;
        digits.push(char::from_digit(d, to as u32).unwrap_or('?'));
        m /= to as u64;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push('-');
    }
    Ok(digits.into_iter().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::convert_base;

    #[test]
    fn convert_base_matches_go_strconv() {
        assert_eq!(convert_base("a", 16, 2).unwrap(), "1010");
        assert_eq!(convert_base("-FF", 16, 10).unwrap(), "-255");
        assert_eq!(convert_base("35", 10, 36).unwrap(), "z");
        assert_eq!(convert_base("0", 10, 2).unwrap(), "0");
        assert_eq!(
            convert_base("-9223372036854775808", 10, 16).unwrap(),
            "-8000000000000000"
        );
        assert!(convert_base("102", 2, 10).is_err());
        assert!(convert_base("1", 1, 10).is_err());
        assert!(convert_base("1", 10, 37).is_err());
    }
}
