//! Conversion functions: cast.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Float64Type, TimeUnit};
use base64::Engine as _;

use super::{ArgInfo, FunctionDoc, Registry, ScalarFunction, arrays, check_arity, shape};
use crate::eval::{Columnar, EvalContext, Literal, describe_value};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Cast));
}

const TARGETS: &[&str] = &["bigint", "float", "string", "boolean", "datetime", "bytea"];

#[derive(Debug)]
struct Cast;

fn target_of(arg: &ArgInfo) -> Result<&'static str, String> {
    let bad = || {
        format!(
            "expects one of the following values for the 2nd parameter: {}",
            TARGETS.join(", ")
        )
    };
    match &arg.literal {
        Some(Literal::String(s)) => TARGETS
            .iter()
            .find(|t| t.eq_ignore_ascii_case(s))
            .copied()
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn target_type(t: &str) -> DataType {
    match t {
        "bigint" => DataType::Int64,
        "float" => DataType::Float64,
        "string" => DataType::Utf8,
        "boolean" => DataType::Boolean,
        "datetime" => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => DataType::Binary,
    }
}

impl ScalarFunction for Cast {
    fn name(&self) -> &'static str {
        "cast"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "conversion",
            syntax: "cast(x, \"bigint\"|\"float\"|\"string\"|\"boolean\"|\"datetime\"|\"bytea\")",
            description: "x converted to the named type; a value that cannot be converted fails the row",
            example: "cast(12.7, \"bigint\") = 12",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        Ok(SqlType::Known(target_type(target_of(&args[1])?)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let target = match args[1].array().as_string_opt::<i32>() {
            Some(s) if s.is_valid(0) => s.value(0).to_ascii_lowercase(),
            _ => return Err("cast target must be a string".into()),
        };
        let arr = arrays(&args[..1], ctx).remove(0);
        let mut fail = |row: usize, arr: &ArrayRef, why: &str| {
            ctx.errors.flag(row, || {
                format!(
                    "not supported type conversion, got error cannot convert {} to {why}",
                    describe_value(arr.as_ref(), row)
                )
            })
        };
        let out = convert(&target, &arr, &mut fail)?;
        Ok(shape(&args[..1], out))
    }
}

/// `arr` converted to a cast target type (`bigint`, `float`, ...); rows that cannot be
/// converted go to `fail` and come out null.
pub(super) fn convert(
    target: &str,
    arr: &ArrayRef,
    fail: &mut impl FnMut(usize, &ArrayRef, &str),
) -> Result<ArrayRef, String> {
    Ok(match target {
        "bigint" => Arc::new(to_bigint(arr, fail)),
        "float" => Arc::new(to_float(arr, fail)),
        "string" => Arc::new(to_string(arr)?),
        "boolean" => Arc::new(to_boolean(arr, fail)),
        "datetime" => Arc::new(to_datetime(arr, fail)),
        "bytea" => Arc::new(to_bytea(arr, fail)),
        other => return Err(format!("unknown cast target \"{other}\"")),
    })
}

/// The result type of a cast target.
pub(super) fn cast_type(target: &str) -> DataType {
    target_type(target)
}

/// Go's `strconv.ParseInt(s, 0, 64)`: `0x` hex, `0o`/leading `0` octal, `0b` binary.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let body = body.replace('_', "");
    let (radix, digits) = if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, h.to_string())
    } else if let Some(b) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, b.to_string())
    } else if let Some(o) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, o.to_string())
    } else if body.len() > 1 && body.starts_with('0') {
        (8, body[1..].to_string())
    } else {
        (10, body)
    };
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

fn to_bigint(arr: &ArrayRef, fail: &mut impl FnMut(usize, &ArrayRef, &str)) -> Int64Array {
    (0..arr.len())
        .map(|row| {
            if !crate::eval::present(arr.as_ref(), row) {
                return None;
            }
            let v = match arr.data_type() {
                t if t.is_integer() => super::int_at(arr, row),
                DataType::Float64 => {
                    let f = arr.as_primitive::<Float64Type>().value(row);
                    f.is_finite().then_some(f.trunc() as i64)
                }
                DataType::Boolean => Some(i64::from(arr.as_boolean().value(row))),
                DataType::Utf8 => parse_go_int(arr.as_string::<i32>().value(row).trim()),
                DataType::Timestamp(TimeUnit::Millisecond, _) => Some(
                    arr.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                        .value(row),
                ),
                _ => None,
            };
            if v.is_none() {
                fail(row, arr, "int");
            }
            v
        })
        .collect()
}

fn to_float(arr: &ArrayRef, fail: &mut impl FnMut(usize, &ArrayRef, &str)) -> Float64Array {
    (0..arr.len())
        .map(|row| {
            if !crate::eval::present(arr.as_ref(), row) {
                return None;
            }
            let v = match arr.data_type() {
                t if t.is_integer() || t.is_floating() => super::float_at(arr, row),
                DataType::Boolean => Some(if arr.as_boolean().value(row) {
                    1.0
                } else {
                    0.0
                }),
                DataType::Utf8 => arr.as_string::<i32>().value(row).trim().parse::<f64>().ok(),
                _ => None,
            };
            if v.is_none() {
                fail(row, arr, "float64");
            }
            v
        })
        .collect()
}

fn to_string(arr: &ArrayRef) -> Result<StringArray, String> {
    Ok(match arr.data_type() {
        DataType::Binary => arr
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => arr
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .iter()
            .map(|v| v.map(format_datetime))
            .collect(),
        _ => super::string::to_text(arr)?,
    })
}

/// A datetime as eKuiper's default format, RFC 3339 with milliseconds in UTC.
pub(crate) fn format_datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn to_boolean(arr: &ArrayRef, fail: &mut impl FnMut(usize, &ArrayRef, &str)) -> BooleanArray {
    (0..arr.len())
        .map(|row| {
            if !crate::eval::present(arr.as_ref(), row) {
                return None;
            }
            let v = match arr.data_type() {
                DataType::Boolean => Some(arr.as_boolean().value(row)),
                t if t.is_integer() || t.is_floating() => {
                    super::float_at(arr, row).map(|f| f != 0.0)
                }
                DataType::Utf8 => match arr.as_string::<i32>().value(row) {
                    "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
                    "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            if v.is_none() {
                fail(row, arr, "bool");
            }
            v
        })
        .collect()
}

fn to_datetime(
    arr: &ArrayRef,
    fail: &mut impl FnMut(usize, &ArrayRef, &str),
) -> TimestampMillisecondArray {
    (0..arr.len())
        .map(|row| {
            if !crate::eval::present(arr.as_ref(), row) {
                return None;
            }
            let v = super::datetime::millis_at(arr, row).ok().flatten();
            if v.is_none() {
                fail(row, arr, "datetime");
            }
            v
        })
        .collect()
}

fn to_bytea(arr: &ArrayRef, fail: &mut impl FnMut(usize, &ArrayRef, &str)) -> BinaryArray {
    let values: Vec<Option<Vec<u8>>> = (0..arr.len())
        .map(|row| {
            if !crate::eval::present(arr.as_ref(), row) {
                return None;
            }
            let v = match arr.data_type() {
                DataType::Binary => Some(arr.as_binary::<i32>().value(row).to_vec()),
                DataType::Utf8 => base64::engine::general_purpose::STANDARD
                    .decode(arr.as_string::<i32>().value(row))
                    .ok(),
                _ => None,
            };
            if v.is_none() {
                fail(row, arr, "bytea (strings must be base64 encoded)");
            }
            v
        })
        .collect();
    values.iter().map(|v| v.as_deref()).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_go_int;

    #[test]
    fn go_integer_syntax() {
        assert_eq!(parse_go_int("12"), Some(12));
        assert_eq!(parse_go_int("0x1A"), Some(26));
        assert_eq!(parse_go_int("012"), Some(10));
        assert_eq!(parse_go_int("-7"), Some(-7));
        assert_eq!(parse_go_int("12.5"), None);
    }
}
