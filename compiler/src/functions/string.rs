//! String functions: lower, upper, trim, ltrim, rtrim, concat, length, numbytes, substring,
//! startswith, endswith, indexof, lpad, rpad, reverse, split_value, format and the regexp family.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray};
use arrow::datatypes::DataType;

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind, shape,
};
use crate::eval::{Columnar, EvalContext, Literal, present};
use crate::limits::MAX_PAD_WIDTH;
use crate::types::SqlType;
use regex::Regex;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Lower));
    r.register(Arc::new(Upper));
    r.register(Arc::new(Trim));
    r.register(Arc::new(Concat));
    r.register(Arc::new(Length));
    r.register(Arc::new(Substring));
    r.register(Arc::new(Ltrim));
    r.register(Arc::new(Rtrim));
    r.register(Arc::new(StartsWith));
    r.register(Arc::new(EndsWith));
    r.register(Arc::new(IndexOf));
    r.register(Arc::new(NumBytes));
    r.register(Arc::new(Reverse));
    r.register(Arc::new(Lpad));
    r.register(Arc::new(Rpad));
    r.register(Arc::new(SplitValue));
    r.register(Arc::new(RegexpMatches));
    r.register(Arc::new(RegexpReplace));
    r.register(Arc::new(RegexpSubstr));
    r.alias("regexp_substring", "regexp_substr");
    r.register(Arc::new(Format));
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

/// Flags `row` with `reason`; when every argument is scalar the single result stands for every
/// row, so every row is flagged.
fn flag_row(args: &[Columnar], ctx: &mut EvalContext, row: usize, reason: String) {
    if args.iter().all(Columnar::is_scalar) {
        ctx.errors.flag_all(reason);
    } else {
        ctx.errors.flag(row, || reason);
    }
}

/// The text of every argument, broadcast to a common length.
fn texts(args: &[Columnar], ctx: &EvalContext) -> Result<Vec<StringArray>, String> {
    arrays(args, ctx).iter().map(to_text).collect()
}

/// The values of `arr` as integers (floats truncated; unparsable values become null).
fn ints(arr: &ArrayRef) -> Result<Int64Array, String> {
    let c = arrow::compute::cast(arr.as_ref(), &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(c.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// Applies a two-string predicate per row; a null on either side gives false (eKuiper's
/// returnFalseIfHasAnyNil).
fn str_predicate(
    args: &[Columnar],
    ctx: &EvalContext,
    f: impl Fn(&str, &str) -> bool,
) -> Result<Columnar, String> {
    let t = texts(args, ctx)?;
    let out: BooleanArray = (0..t[0].len())
        .map(|row| {
            Some(t[0].is_valid(row) && t[1].is_valid(row) && f(t[0].value(row), t[1].value(row)))
        })
        .collect();
    Ok(shape(args, Arc::new(out)))
}

#[derive(Debug)]
struct Ltrim;
impl ScalarFunction for Ltrim {
    fn name(&self) -> &'static str {
        "ltrim"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "ltrim(s)",
            description: "s without leading whitespace",
            example: "ltrim(\"  a b \") = \"a b \"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_text(args, ctx, |s| s.trim_start().to_string())
    }
}

#[derive(Debug)]
struct Rtrim;
impl ScalarFunction for Rtrim {
    fn name(&self) -> &'static str {
        "rtrim"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "rtrim(s)",
            description: "s without trailing whitespace",
            example: "rtrim(\"  a b \") = \"  a b\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_text(args, ctx, |s| s.trim_end().to_string())
    }
}

#[derive(Debug)]
struct StartsWith;
impl ScalarFunction for StartsWith {
    fn name(&self) -> &'static str {
        "startswith"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "startswith(s, prefix)",
            description: "whether s begins with prefix; false when either is missing",
            example: "startswith(\"hello\", \"he\") = true",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 2)?;
        Ok(SqlType::Known(DataType::Boolean))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        str_predicate(args, ctx, |s, p| s.starts_with(p))
    }
}

#[derive(Debug)]
struct EndsWith;
impl ScalarFunction for EndsWith {
    fn name(&self) -> &'static str {
        "endswith"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "endswith(s, suffix)",
            description: "whether s ends with suffix; false when either is missing",
            example: "endswith(\"hello\", \"lo\") = true",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 2)?;
        Ok(SqlType::Known(DataType::Boolean))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        str_predicate(args, ctx, |s, p| s.ends_with(p))
    }
}

#[derive(Debug)]
struct IndexOf;
impl ScalarFunction for IndexOf {
    fn name(&self) -> &'static str {
        "indexof"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "indexof(s, sub)",
            description: "0-based byte index of the first sub in s; -1 when absent or missing",
            example: "indexof(\"hello\", \"ll\") = 2",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 2)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let t = texts(args, ctx)?;
        let out: Int64Array = (0..t[0].len())
            .map(|row| {
                if t[0].is_null(row) || t[1].is_null(row) {
                    return Some(-1);
                }
                Some(
                    t[0].value(row)
                        .find(t[1].value(row))
                        .map_or(-1, |i| i as i64),
                )
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct NumBytes;
impl ScalarFunction for NumBytes {
    fn name(&self) -> &'static str {
        "numbytes"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "numbytes(s)",
            description: "bytes in the UTF-8 text of s; 0 when missing",
            example: "numbytes(\"héllo\") = 6",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let t = texts(args, ctx)?;
        let out: Int64Array = t[0]
            .iter()
            .map(|v| Some(v.map_or(0, |s| s.len() as i64)))
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct Reverse;
impl ScalarFunction for Reverse {
    fn name(&self) -> &'static str {
        "reverse"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "reverse(s)",
            description: "the characters of s in reverse order",
            example: "reverse(\"héllo\") = \"olléh\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        string_result(args, 1)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_text(args, ctx, |s| s.chars().rev().collect())
    }
}

/// Plan-time check for lpad/rpad: a string-ish first argument and a number of spaces.
fn pad_result(args: &[ArgInfo]) -> Result<SqlType, String> {
    check_arity(args, 2, 2)?;
    if matches!(
        args[0].literal,
        Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_))
    ) {
        check_kind(args, 0, Kind::String)?;
    }
    check_kind(args, 1, Kind::Number)?;
    if let Some(Literal::String(_) | Literal::Bool(_) | Literal::Float(_)) = args[1].literal {
        return Err("expects an integer for argument 2".into());
    }
    if let Some(Literal::Int(n)) = args[1].literal {
        if n < 0 {
            return Err("expects a non-negative width for argument 2".into());
        }
        if n > MAX_PAD_WIDTH {
            return Err(format!(
                "expects a width of at most {MAX_PAD_WIDTH} for argument 2 but got {n}"
            ));
        }
    }
    Ok(SqlType::Known(DataType::Utf8))
}

/// Pads every row with `n` spaces, on the left or the right; null stays null. A width from the
/// data above [`MAX_PAD_WIDTH`] fails that row only (counted as an exception).
fn pad(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    left: bool,
) -> Result<Columnar, String> {
    let cols = arrays(args, ctx);
    let text = to_text(&cols[0])?;
    let width = ints(&cols[1])?;
    let mut out = Vec::with_capacity(text.len());
    for row in 0..text.len() {
        if text.is_null(row) || width.is_null(row) {
            out.push(None);
            continue;
        }
        let n = width.value(row);
        if n < 0 {
            flag_row(
                args,
                ctx,
                row,
                format!("{name} expects a non-negative width but got {n}"),
            );
            out.push(None);
            continue;
        }
        if n > MAX_PAD_WIDTH {
            flag_row(
                args,
                ctx,
                row,
                format!("{name} width {n} is above the limit of {MAX_PAD_WIDTH}"),
            );
            out.push(None);
            continue;
        }
        let spaces = " ".repeat(n as usize);
        let s = text.value(row);
        out.push(Some(if left {
            spaces + s
        } else {
            format!("{s}{spaces}")
        }));
    }
    Ok(shape(args, Arc::new(StringArray::from(out))))
}

#[derive(Debug)]
struct Lpad;
impl ScalarFunction for Lpad {
    fn name(&self) -> &'static str {
        "lpad"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "lpad(s, n)",
            description: "s with n spaces added on the left",
            example: "lpad(\"ab\", 2) = \"  ab\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        pad_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        pad("lpad", args, ctx, true)
    }
}

#[derive(Debug)]
struct Rpad;
impl ScalarFunction for Rpad {
    fn name(&self) -> &'static str {
        "rpad"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "rpad(s, n)",
            description: "s with n spaces added on the right",
            example: "rpad(\"ab\", 2) = \"ab  \"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        pad_result(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        pad("rpad", args, ctx, false)
    }
}

#[derive(Debug)]
struct SplitValue;
impl ScalarFunction for SplitValue {
    fn name(&self) -> &'static str {
        "split_value"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "split_value(s, sep, i)",
            description: "part i (0-based; negative counts from the end) of s split by sep",
            example: "split_value(\"a/b/c\", \"/\", -1) = \"c\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 3, 3)?;
        for i in 0..2 {
            if matches!(
                args[i].literal,
                Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_))
            ) {
                check_kind(args, i, Kind::String)?;
            }
        }
        check_kind(args, 2, Kind::Number)?;
        if let Some(Literal::String(_) | Literal::Bool(_) | Literal::Float(_)) = args[2].literal {
            return Err("expects an integer for argument 3".into());
        }
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let text = to_text(&cols[0])?;
        let sep = to_text(&cols[1])?;
        let index = ints(&cols[2])?;
        let mut out = Vec::with_capacity(text.len());
        for row in 0..text.len() {
            if text.is_null(row) || sep.is_null(row) || index.is_null(row) {
                out.push(None);
                continue;
            }
            let (s, p) = (text.value(row), sep.value(row));
            // Go's strings.Split with an empty separator splits after each character.
            let parts: Vec<&str> = if p.is_empty() {
                s.char_indices()
                    .map(|(i, c)| &s[i..i + c.len_utf8()])
                    .collect()
            } else {
                s.split(p).collect()
            };
            let i = index.value(row);
            let n = parts.len() as i64;
            let at = if i < 0 { n + i } else { i };
            if at < 0 || at >= n {
                flag_row(
                    args,
                    ctx,
                    row,
                    format!("{i} out of index array (size = {n})"),
                );
                out.push(None);
                continue;
            }
            out.push(Some(parts[at as usize].to_string()));
        }
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}

/// Compiles a pattern, with the reason in the binder's style when it is invalid.
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let detail = match &e {
            regex::Error::Syntax(s) => s
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ")
                .to_string(),
            other => other.to_string(),
        };
        format!("expects a valid regular expression for argument 2 but got {pattern:?} ({detail})")
    })
}

/// Plan-time check for the regexp family: string arguments and a valid literal pattern.
fn regexp_result(args: &[ArgInfo], n: usize, out: DataType) -> Result<SqlType, String> {
    string_result(args, n)?;
    if let Some(Literal::String(p)) = &args[1].literal {
        compile(p)?;
    }
    Ok(SqlType::Known(out))
}

/// Compiled patterns of one batch, one per distinct pattern (a literal pattern compiles once).
#[derive(Default)]
struct RegexCache {
    compiled: HashMap<String, Result<Regex, String>>,
}

impl RegexCache {
    fn get(&mut self, pattern: &str) -> &Result<Regex, String> {
        if !self.compiled.contains_key(pattern) {
            self.compiled.insert(pattern.to_string(), compile(pattern));
        }
        &self.compiled[pattern]
    }
}

/// Runs `f` with the compiled pattern of each row where the text and the pattern are present;
/// `missing` is the result otherwise, and an invalid pattern flags the row.
fn per_regex<T>(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    missing: impl Fn() -> Option<T>,
    f: impl Fn(&Regex, &str, usize) -> Option<T>,
) -> Result<Vec<Option<T>>, String> {
    let t = texts(args, ctx)?;
    let mut cache = RegexCache::default();
    let mut out = Vec::with_capacity(t[0].len());
    for row in 0..t[0].len() {
        if t.iter().any(|c| c.is_null(row)) {
            out.push(missing());
            continue;
        }
        match cache.get(t[1].value(row)) {
            Ok(re) => out.push(f(re, t[0].value(row), row)),
            Err(e) => {
                let reason = format!("{name} {e}");
                flag_row(args, ctx, row, reason);
                out.push(None);
            }
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct RegexpMatches;
impl ScalarFunction for RegexpMatches {
    fn name(&self) -> &'static str {
        "regexp_matches"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "regexp_matches(s, pattern)",
            description: "whether pattern matches anywhere in s; false when either is missing",
            example: "regexp_matches(\"abc123\", \"[0-9]+\") = true",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        regexp_result(args, 2, DataType::Boolean)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out = per_regex(
            self.name(),
            args,
            ctx,
            || Some(false),
            |re, s, _| Some(re.is_match(s)),
        )?;
        Ok(shape(args, Arc::new(BooleanArray::from(out))))
    }
}

#[derive(Debug)]
struct RegexpReplace;
impl ScalarFunction for RegexpReplace {
    fn name(&self) -> &'static str {
        "regexp_replace"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "regexp_replace(s, pattern, replacement)",
            description: "s with every match of pattern replaced; $1 refers to a group",
            example: "regexp_replace(\"a1b22\", \"([0-9]+)\", \"<$1>\") = \"a<1>b<22>\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        regexp_result(args, 3, DataType::Utf8)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let repl = texts(&args[2..], ctx)?.remove(0);
        let scalar_repl = args[2].is_scalar();
        let out = per_regex(
            self.name(),
            args,
            ctx,
            || None,
            |re, s, row| {
                let r = repl.value(if scalar_repl { 0 } else { row });
                Some(re.replace_all(s, r).into_owned())
            },
        )?;
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}

#[derive(Debug)]
struct RegexpSubstr;
impl ScalarFunction for RegexpSubstr {
    fn name(&self) -> &'static str {
        "regexp_substr"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "regexp_substr(s, pattern)",
            description: "the first match of pattern in s; null when nothing matches",
            example: "regexp_substr(\"a1b22\", \"[0-9]+\") = \"1\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        regexp_result(args, 2, DataType::Utf8)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out = per_regex(
            self.name(),
            args,
            ctx,
            || None,
            |re, s, _| re.find(s).map(|m| m.as_str().to_string()),
        )?;
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn en_us_grouping() {
        assert_eq!(format_en_us("12332.1234567", 4), "12,332.1234");
        assert_eq!(format_en_us("1234567", 2), "1,234,567.00");
        assert_eq!(format_en_us("-999.5", 0), "-999");
        assert_eq!(format_en_us("100", 0), "100");
        assert_eq!(format_en_us("-0.5", 1), "-0.5");
    }

    #[test]
    fn invalid_pattern_reason_is_one_line() {
        let e = compile("(abc").unwrap_err();
        assert_eq!(
            e,
            "expects a valid regular expression for argument 2 but got \"(abc\" (unclosed group)"
        );
    }

    #[test]
    fn regex_cache_compiles_each_pattern_once() {
        let mut cache = RegexCache::default();
        assert!(cache.get("a+").is_ok());
        assert!(cache.get("a+").is_ok());
        assert!(cache.get("(").is_err());
        assert_eq!(cache.compiled.len(), 2);
    }
}

/// The most decimal places `format` writes, so a typo cannot build a huge string.
const MAX_FORMAT_DECIMALS: i64 = 64;

/// `text` (a number as eKuiper prints it) in the en_US style: the integer part grouped by
/// thousands with commas, the fraction cut (not rounded) or padded with zeros to `decimals`.
fn format_en_us(text: &str, decimals: usize) -> String {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = if int.is_empty() { "0" } else { int };
    let mut out = String::with_capacity(int.len() + int.len() / 3 + decimals + 2);
    if neg {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if decimals > 0 {
        out.push('.');
        let kept: String = frac.chars().take(decimals).collect();
        out.push_str(&kept);
        out.extend(std::iter::repeat_n('0', decimals - kept.chars().count()));
    }
    out
}

#[derive(Debug)]
struct Format;
impl ScalarFunction for Format {
    fn name(&self) -> &'static str {
        "format"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "string",
            syntax: "format(x, d[, locale])",
            description: "the number x as text rounded to d decimal places; with the locale \"en_US\" (the only one supported) the integer part is grouped with commas and the fraction is cut to d places",
            example: "format(12332.1234567, 4, \"en_US\") = \"12,332.1234\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 3)?;
        check_kind(args, 0, Kind::Number)?;
        check_kind(args, 1, Kind::Number)?;
        match &args[1] {
            ArgInfo {
                literal: Some(Literal::Float(_)),
                ..
            }
            | ArgInfo {
                ty: SqlType::Known(DataType::Float64 | DataType::Float32),
                ..
            } => return Err("expects an integer for argument 2 but got float".to_string()),
            ArgInfo {
                literal: Some(Literal::Int(d)),
                ..
            } if *d < 0 => {
                return Err(format!(
                    "expects a non-negative number of decimal places for argument 2 but got {d}"
                ));
            }
            _ => {}
        }
        if args.len() == 3 {
            check_kind(args, 2, Kind::String)?;
            if let Some(Literal::String(l)) = &args[2].literal
                && l != "en_US"
            {
                return Err(format!(
                    "expects the locale \"en_US\" for argument 3 but got \"{l}\""
                ));
            }
        }
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let (x, d) = (&a[0], &a[1]);
        let locale = a.get(2).map(to_text).transpose()?;
        let numeric = x.data_type().is_integer() || x.data_type().is_floating();
        // eKuiper's en_US path works on the number's text (`%v`), cutting rather than rounding.
        let text = if numeric {
            to_text(x)?
        } else {
            StringArray::new_null(x.len())
        };
        let mut out = Vec::with_capacity(x.len());
        for row in 0..x.len() {
            if !present(x.as_ref(), row)
                || !present(d.as_ref(), row)
                || locale.as_ref().is_some_and(|l| l.is_null(row))
            {
                out.push(None);
                continue;
            }
            let (Some(v), Some(places)) = (
                super::float_at(x, row).filter(|_| numeric),
                super::int_at(d, row),
            ) else {
                let reason = if numeric {
                    format!(
                        "format expects an integer number of decimal places but got {}",
                        crate::eval::describe_value(d.as_ref(), row)
                    )
                } else {
                    format!(
                        "format expects a number but got {}",
                        crate::eval::describe_value(x.as_ref(), row)
                    )
                };
                ctx.errors.flag(row, || reason);
                out.push(None);
                continue;
            };
            if !(0..=MAX_FORMAT_DECIMALS).contains(&places) {
                ctx.errors.flag(row, || {
                    format!(
                        "format expects 0 to {MAX_FORMAT_DECIMALS} decimal places but got {places}"
                    )
                });
                out.push(None);
                continue;
            }
            let places = places as usize;
            match locale.as_ref().map(|l| l.value(row)) {
                None => out.push(Some(format!("{v:.places$}"))),
                Some("en_US") => out.push(Some(format_en_us(text.value(row), places))),
                Some(other) => {
                    ctx.errors.flag(row, || {
                        format!("format does not support the locale \"{other}\"")
                    });
                    out.push(None);
                }
            }
        }
        Ok(shape(args, Arc::new(StringArray::from(out))))
    }
}
