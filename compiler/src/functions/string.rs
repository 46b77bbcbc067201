//! String functions: lower, upper, trim, concat, length, substring.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::DataType;

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind, shape,
};
use crate::eval::{Columnar, EvalContext, Literal};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Lower));
    r.register(Arc::new(Upper));
    r.register(Arc::new(Trim));
    r.register(Arc::new(Concat));
    r.register(Arc::new(Length));
    r.register(Arc::new(Substring));
}

/// The text of every row, eKuiper-style (`%v`): whole floats without `.0`; null stays null.
pub(crate) fn to_text(arr: &ArrayRef) -> Result<StringArray, String> {
    Ok(match arr.data_type() {
        DataType::Utf8 => arr.as_string::<i32>().clone(),
        DataType::Float64 | DataType::Float32 => {
            let f = arrow::compute::cast(arr.as_ref(), &DataType::Float64)
                .map_err(|e| e.to_string())?;
            f.as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .map(|v| v.map(super::format_float))
                .collect()
        }
        DataType::Null => StringArray::new_null(arr.len()),
        _ => {
            let s =
                arrow::compute::cast(arr.as_ref(), &DataType::Utf8).map_err(|e| e.to_string())?;
            s.as_string::<i32>().clone()
        }
    })
}

/// Applies `f` to the text of each row; null stays null.
fn map_text(
    args: &[Columnar],
    ctx: &EvalContext,
    f: impl Fn(&str) -> String,
) -> Result<Columnar, String> {
    let arr = arrays(args, ctx).remove(0);
    let text = to_text(&arr)?;
    let out: StringArray = text.iter().map(|v| v.map(&f)).collect();
    Ok(shape(args, Arc::new(out)))
}

fn string_result(args: &[ArgInfo], n: usize) -> Result<SqlType, String> {
    check_arity(args, n, n)?;
    for i in 0..n {
        if matches!(
            args[i].literal,
            Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_))
        ) {
            check_kind(args, i, Kind::String)?;
        }
    }
    Ok(SqlType::Known(DataType::Utf8))
}

#[derive(Debug)]
struct Lower;
impl ScalarFunction for Lower {
    fn name(&self) -> &'static str {
        "lower"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "lower(s)",
            description: "s in lower case",
            example: "lower(\"AbC\") = \"abc\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_text(args, ctx, str::to_lowercase)
    }
}

#[derive(Debug)]
struct Upper;
impl ScalarFunction for Upper {
    fn name(&self) -> &'static str {
        "upper"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "upper(s)",
            description: "s in upper case",
            example: "upper(\"AbC\") = \"ABC\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_text(args, ctx, str::to_uppercase)
    }
}

#[derive(Debug)]
struct Trim;
impl ScalarFunction for Trim {
    fn name(&self) -> &'static str {
        "trim"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "trim(s)",
            description: "s without leading and trailing whitespace",
            example: "trim(\"  a b \") = \"a b\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_text(args, ctx, |s| s.trim().to_string())
    }
}

#[derive(Debug)]
struct Concat;
impl ScalarFunction for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "concat(s1, s2, ...)",
            description: "the arguments as text, joined; missing arguments are skipped",
            example: "concat(\"a\", 1, \"b\") = \"a1b\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, usize::MAX)?;
        for (i, a) in args.iter().enumerate() {
            if matches!(
                a.literal,
                Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_))
            ) {
                check_kind(args, i, Kind::String)?;
            }
        }
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let texts = cols.iter().map(to_text).collect::<Result<Vec<_>, _>>()?;
        let len = cols.first().map_or(0, |c| c.len());
        let mut builder = arrow::array::StringBuilder::with_capacity(len, len * 16);
        for row in 0..len {
            let mut s = String::new();
            for t in &texts {
                if t.is_valid(row) {
                    s.push_str(t.value(row));
                }
            }
            builder.append_value(s);
        }
        Ok(shape(args, Arc::new(builder.finish())))
    }
}

#[derive(Debug)]
struct Length;
impl ScalarFunction for Length {
    fn name(&self) -> &'static str {
        "length"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "length(x)",
            description: "characters in a string, elements in an array, keys in an object; 0 when missing",
            example: "length(\"héllo\") = 5",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out: Int64Array = match arr.data_type() {
            DataType::List(_) => {
                let l = arr.as_list::<i32>();
                (0..l.len())
                    .map(|i| {
                        Some(if l.is_null(i) {
                            0
                        } else {
                            l.value_length(i) as i64
                        })
                    })
                    .collect()
            }
            DataType::Struct(fields) => {
                let n = fields.len() as i64;
                (0..arr.len())
                    .map(|i| Some(if arr.is_null(i) { 0 } else { n }))
                    .collect()
            }
            _ => to_text(&arr)?
                .iter()
                .map(|v| Some(v.map_or(0, |s| s.chars().count() as i64)))
                .collect(),
        };
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct Substring;
impl ScalarFunction for Substring {
    fn name(&self) -> &'static str {
        "substring"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "substring(s, start[, end])",
            description: "bytes of s from start (0-based) up to end (exclusive)",
            example: "substring(\"hello\", 1, 3) = \"el\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 3)
            .map_err(|_| "the arguments for substring should be 2 or 3".to_string())?;
        for i in 1..args.len() {
            check_kind(args, i, Kind::Number)?;
        }
        if let Some(Literal::Int(s)) = args[1].literal
            && s < 0
        {
            return Err("the start index should not be a negative integer".into());
        }
        if let (Some(Literal::Int(s)), Some(Some(Literal::Int(e)))) =
            (&args[1].literal, args.get(2).map(|a| &a.literal))
            && e < s
        {
            return Err("the end index should be larger than start index".into());
        }
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let text = to_text(&cols[0])?;
        let idx = |c: &ArrayRef| -> Result<Int64Array, String> {
            let c =
                arrow::compute::cast(c.as_ref(), &DataType::Int64).map_err(|e| e.to_string())?;
            Ok(c.as_primitive::<arrow::datatypes::Int64Type>().clone())
        };
        let start = idx(&cols[1])?;
        let end = cols.get(2).map(idx).transpose()?;
        let mut out = Vec::with_capacity(text.len());
        for row in 0..text.len() {
            if text.is_null(row) || start.is_null(row) {
                out.push(None);
                continue;
            }
            let s = text.value(row).as_bytes();
            let from = start.value(row);
            let to = match &end {
                Some(e) if e.is_valid(row) => e.value(row),
                _ => s.len() as i64,
            };
            if from < 0 || to < 0 || from > to {
                let reason = if from < 0 {
                    "start index must be a positive number"
                } else if to < 0 {
                    "end index must be a positive number"
                } else {
                    "start index must be smaller than end index"
                };
                ctx.errors.flag(row, || reason.to_string());
                out.push(None);
                continue;
            }
            let from = (from as usize).min(s.len());
            let to = (to as usize).min(s.len());
            out.push(Some(String::from_utf8_lossy(&s[from..to]).into_owned()));
        }
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}
