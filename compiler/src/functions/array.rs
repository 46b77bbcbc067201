//! Array functions: cardinality, array_contains, array_position, array_last_position,
//! element_at, array_max, array_min, array_join, array_distinct, array_remove, array_concat,
//! array_create, repeat and sequence.
//!
//! Arrays are Arrow `List` arrays. Results that are arrays are rebuilt from the input's values
//! with `take` over the list offsets, so they work for any item type. Element comparisons treat
//! BIGINT and FLOAT numerically (3 equals 3.0).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, StringArray, UInt32Array,
    new_null_array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{cast, concat, take};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
    flag_type_error, shape,
};
use crate::eval::{Columnar, EvalContext, describe_value};
use crate::types::{SqlType, is_numeric, type_name};

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Cardinality));
    r.alias("array_cardinality", "cardinality");
    r.register(Arc::new(ArrayContains));
    r.register(Arc::new(ArrayPosition { last: false }));
    r.register(Arc::new(ArrayPosition { last: true }));
    r.register(Arc::new(ElementAt));
    r.register(Arc::new(ArrayExtreme { max: true }));
    r.register(Arc::new(ArrayExtreme { max: false }));
    r.register(Arc::new(ArrayJoin));
    r.register(Arc::new(ArrayDistinct));
    r.register(Arc::new(ArrayRemove));
    r.register(Arc::new(ArrayConcat));
    r.register(Arc::new(ArrayCreate));
    r.register(Arc::new(Repeat));
    r.register(Arc::new(Sequence));
}

fn doc(syntax: &'static str, description: &'static str, example: &'static str) -> FunctionDoc {
    FunctionDoc {
        category: "array",
        syntax,
        description,
        example,
    }
}

fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// Plan-time check that argument `i` is an array; returns its item type when known.
fn array_arg(args: &[ArgInfo], i: usize) -> Result<Option<DataType>, String> {
    match args.get(i).map(|a| &a.ty) {
        Some(SqlType::Known(DataType::List(f))) => Ok(Some(f.data_type().clone())),
        Some(SqlType::Known(DataType::Null)) | Some(SqlType::Any) | None => Ok(None),
        Some(SqlType::Known(t)) => Err(format!(
            "expects an array for argument {} but got {}",
            i + 1,
            type_name(t)
        )),
    }
}

fn known_or_any(t: Option<DataType>) -> SqlType {
    t.map_or(SqlType::Any, SqlType::Known)
}

/// The list at runtime: `None` when the column is null-typed or (flagged) not an array.
fn as_list<'a>(name: &str, arr: &'a ArrayRef, ctx: &mut EvalContext) -> Option<&'a ListArray> {
    match arr.data_type() {
        DataType::List(_) => Some(arr.as_list::<i32>()),
        DataType::Null => None,
        _ => {
            flag_type_error(name, "an array", arr, ctx);
            None
        }
    }
}

/// A comparable element value: numbers compare as numbers whatever their width.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Num(f64),
    Str(String),
    Bool(bool),
    Other(String),
}

impl Key {
    fn cmp(&self, other: &Key) -> Option<Ordering> {
        match (self, other) {
            (Key::Num(a), Key::Num(b)) => a.partial_cmp(b),
            (Key::Str(a), Key::Str(b)) => Some(a.cmp(b)),
            (Key::Bool(a), Key::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// The key of every element of `arr` (None for nulls).
fn keys(arr: &dyn Array) -> Result<Vec<Option<Key>>, String> {
    let t = arr.data_type();
    Ok(if t.is_integer() {
        let a = cast(arr, &DataType::Int64).map_err(|e| e.to_string())?;
        a.as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|v| Key::Num(v as f64)))
            .collect()
    } else if t.is_floating() {
        let a = cast(arr, &DataType::Float64).map_err(|e| e.to_string())?;
        a.as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(Key::Num))
            .collect()
    } else {
        match t {
            DataType::Utf8 => arr
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|s| Key::Str(s.to_string())))
                .collect(),
            DataType::Boolean => arr.as_boolean().iter().map(|v| v.map(Key::Bool)).collect(),
            DataType::Null => vec![None; arr.len()],
            _ => (0..arr.len())
                .map(|i| arr.is_valid(i).then(|| Key::Other(describe_value(arr, i))))
                .collect(),
        }
    })
}

/// Rebuilds a list array from `values` picked by `picks`, row boundaries at `offsets`.
fn build_list(
    values: &dyn Array,
    picks: Vec<u32>,
    offsets: Vec<i32>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, String> {
    let item = values.data_type().clone();
    let values = take(values, &UInt32Array::from(picks), None).map_err(|e| e.to_string())?;
    let out = ListArray::try_new(
        Arc::new(Field::new("item", item, true)),
        OffsetBuffer::new(offsets.into()),
        values,
        nulls,
    )
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(out))
}

fn range(list: &ListArray, row: usize) -> std::ops::Range<usize> {
    let o = list.value_offsets();
    o[row] as usize..o[row + 1] as usize
}

fn int_arg(arr: &ArrayRef, name: &str, ctx: &mut EvalContext) -> Result<Int64Array, String> {
    let t = arr.data_type();
    if t.is_integer() || t.is_floating() || t == &DataType::Null {
        let a = cast(arr.as_ref(), &DataType::Int64).map_err(|e| e.to_string())?;
        Ok(a.as_primitive::<Int64Type>().clone())
    } else {
        flag_type_error(name, "a number", arr, ctx);
        Ok(Int64Array::new_null(arr.len()))
    }
}

#[derive(Debug)]
struct Cardinality;
impl ScalarFunction for Cardinality {
    fn name(&self) -> &'static str {
        "cardinality"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "cardinality(arr)",
            "how many elements arr holds; 0 for a null array",
            "cardinality([1, 2, 3]) = 3",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        array_arg(args, 0)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out: Int64Array = match as_list(self.name(), &arr, ctx) {
            Some(list) => (0..list.len())
                .map(|r| {
                    if list.is_null(r) {
                        Some(0)
                    } else {
                        Some(range(list, r).len() as i64)
                    }
                })
                .collect(),
            None if arr.data_type() == &DataType::Null => Int64Array::from(vec![0; arr.len()]),
            None => Int64Array::new_null(arr.len()),
        };
        Ok(shape(args, Arc::new(out)))
    }
}

/// For each present row of (list, value), the matching element indexes handed to `f`.
fn search<T>(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    f: impl Fn(&[Option<Key>], &Key) -> T,
) -> Result<Vec<Option<T>>, String> {
    let a = arrays(args, ctx);
    let Some(list) = as_list(name, &a[0], ctx) else {
        return Ok((0..a[0].len()).map(|_| None).collect());
    };
    let elems = keys(list.values().as_ref())?;
    let needles = keys(a[1].as_ref())?;
    Ok((0..list.len())
        .map(|r| {
            if list.is_null(r) {
                return None;
            }
            let needle = needles[r].as_ref()?;
            Some(f(&elems[range(list, r)], needle))
        })
        .collect())
}

fn matches(e: &Option<Key>, needle: &Key) -> bool {
    e.as_ref().is_some_and(|k| k == needle)
}

#[derive(Debug)]
struct ArrayContains;
impl ScalarFunction for ArrayContains {
    fn name(&self) -> &'static str {
        "array_contains"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_contains(arr, value)",
            "true when value is an element of arr (numbers compare by value)",
            "array_contains([1, 2, 3], 2) = true",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        array_arg(args, 0)?;
        Ok(SqlType::Known(DataType::Boolean))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out = search(self.name(), args, ctx, |es, n| {
            es.iter().any(|e| matches(e, n))
        })?;
        Ok(shape(args, Arc::new(BooleanArray::from(out))))
    }
}

#[derive(Debug)]
struct ArrayPosition {
    last: bool,
}
impl ScalarFunction for ArrayPosition {
    fn name(&self) -> &'static str {
        if self.last {
            "array_last_position"
        } else {
            "array_position"
        }
    }
    fn doc(&self) -> FunctionDoc {
        if self.last {
            doc(
                "array_last_position(arr, value)",
                "0-based index of the last element of arr equal to value, or -1 when absent",
                "array_last_position([1, 2, 1], 1) = 2",
            )
        } else {
            doc(
                "array_position(arr, value)",
                "0-based index of the first element of arr equal to value, or -1 when absent",
                "array_position([5, 6, 7], 6) = 1",
            )
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        array_arg(args, 0)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let last = self.last;
        let out = search(self.name(), args, ctx, |es, n| {
            let pos = if last {
                es.iter().rposition(|e| matches(e, n))
            } else {
                es.iter().position(|e| matches(e, n))
            };
            pos.map_or(-1, |p| p as i64)
        })?;
        Ok(shape(args, Arc::new(Int64Array::from(out))))
    }
}

#[derive(Debug)]
struct ElementAt;
impl ScalarFunction for ElementAt {
    fn name(&self) -> &'static str {
        "element_at"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "element_at(arr, index)",
            "the element of arr at a 0-based index, negative indexes counting from the end; null when out of range",
            "element_at([1, 2, 3], -1) = 3",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 1, Kind::Number)?;
        Ok(known_or_any(array_arg(args, 0)?))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        let idx = int_arg(&a[1], self.name(), ctx)?;
        let picks: UInt32Array = (0..list.len())
            .map(|r| {
                if list.is_null(r) || idx.is_null(r) {
                    return None;
                }
                let rg = range(list, r);
                let len = rg.len() as i64;
                let k = idx.value(r);
                let k = if k < 0 { len + k } else { k };
                (0..len).contains(&k).then(|| (rg.start as i64 + k) as u32)
            })
            .collect();
        let out = take(list.values().as_ref(), &picks, None).map_err(|e| e.to_string())?;
        Ok(shape(args, out))
    }
}

#[derive(Debug)]
struct ArrayExtreme {
    max: bool,
}
impl ScalarFunction for ArrayExtreme {
    fn name(&self) -> &'static str {
        if self.max { "array_max" } else { "array_min" }
    }
    fn doc(&self) -> FunctionDoc {
        if self.max {
            doc(
                "array_max(arr)",
                "the largest element of arr, ignoring null elements; null when there is none",
                "array_max([1, 5, 3]) = 5",
            )
        } else {
            doc(
                "array_min(arr)",
                "the smallest element of arr, ignoring null elements; null when there is none",
                "array_min([4, 2, 8]) = 2",
            )
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(known_or_any(array_arg(args, 0)?))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        let want = if self.max {
            Ordering::Greater
        } else {
            Ordering::Less
        };
        let elems = keys(list.values().as_ref())?;
        let picks: UInt32Array = (0..list.len())
            .map(|r| {
                if list.is_null(r) {
                    return None;
                }
                let mut best: Option<usize> = None;
                for i in range(list, r) {
                    let Some(k) = &elems[i] else { continue };
                    match best {
                        None => best = Some(i),
                        Some(b) => {
                            let cur = elems[b].as_ref().expect("best is present");
                            if k.cmp(cur) == Some(want) {
                                best = Some(i);
                            }
                        }
                    }
                }
                best.map(|b| b as u32)
            })
            .collect();
        let out = take(list.values().as_ref(), &picks, None).map_err(|e| e.to_string())?;
        Ok(shape(args, out))
    }
}

#[derive(Debug)]
struct ArrayJoin;
impl ScalarFunction for ArrayJoin {
    fn name(&self) -> &'static str {
        "array_join"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_join(arr, sep[, null_replacement])",
            "the elements of arr as text joined by sep; null elements are skipped unless null_replacement is given",
            "array_join([\"a\", \"b\"], \"-\") = \"a-b\"",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 3)?;
        array_arg(args, 0)?;
        check_kind(args, 1, Kind::String)?;
        if args.len() == 3 {
            check_kind(args, 2, Kind::String)?;
        }
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::Scalar(new_null_array(&DataType::Utf8, 1)));
        };
        let text = super::string::to_text(list.values())?;
        let sep = super::string::to_text(&a[1])?;
        let rep = a.get(2).map(super::string::to_text).transpose()?;
        let out: StringArray = (0..list.len())
            .map(|r| {
                if list.is_null(r) || sep.is_null(r) {
                    return None;
                }
                let rep = rep.as_ref().and_then(|x| x.is_valid(r).then(|| x.value(r)));
                let parts: Vec<&str> = range(list, r)
                    .filter_map(|i| {
                        if text.is_valid(i) {
                            Some(text.value(i))
                        } else {
                            rep
                        }
                    })
                    .collect();
                Some(parts.join(sep.value(r)))
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct ArrayDistinct;
impl ScalarFunction for ArrayDistinct {
    fn name(&self) -> &'static str {
        "array_distinct"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_distinct(arr)",
            "arr without repeated elements, keeping first occurrences in order",
            "array_distinct([1, 2, 1]) = [1, 2]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(known_or_any(array_arg(args, 0)?.map(list_type)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        let elems = keys(list.values().as_ref())?;
        let mut picks = Vec::new();
        let mut offsets = vec![0i32];
        for r in 0..list.len() {
            if list.is_valid(r) {
                let mut seen: Vec<&Option<Key>> = Vec::new();
                for i in range(list, r) {
                    if !seen.contains(&&elems[i]) {
                        seen.push(&elems[i]);
                        picks.push(i as u32);
                    }
                }
            }
            offsets.push(picks.len() as i32);
        }
        let out = build_list(
            list.values().as_ref(),
            picks,
            offsets,
            list.nulls().cloned(),
        )?;
        Ok(shape(args, out))
    }
}

#[derive(Debug)]
struct ArrayRemove;
impl ScalarFunction for ArrayRemove {
    fn name(&self) -> &'static str {
        "array_remove"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_remove(arr, value)",
            "arr without any element equal to value",
            "array_remove([1, 2, 1], 1) = [2]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        Ok(known_or_any(array_arg(args, 0)?.map(list_type)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        let elems = keys(list.values().as_ref())?;
        let needles = keys(a[1].as_ref())?;
        let mut picks = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(list.len());
        for (r, needle) in needles.iter().enumerate().take(list.len()) {
            let ok = list.is_valid(r) && needle.is_some();
            if let (true, Some(n)) = (ok, needle) {
                for i in range(list, r) {
                    if !matches(&elems[i], n) {
                        picks.push(i as u32);
                    }
                }
            }
            valid.push(ok);
            offsets.push(picks.len() as i32);
        }
        let out = build_list(
            list.values().as_ref(),
            picks,
            offsets,
            Some(NullBuffer::from(valid)),
        )?;
        Ok(shape(args, out))
    }
}

/// The type values of types `ts` can all be cast to: BIGINT only stays BIGINT, numbers become
/// FLOAT, equal types stay, anything else is text.
fn common_type<'a>(ts: impl Iterator<Item = &'a DataType>) -> Option<DataType> {
    let mut out: Option<DataType> = None;
    for t in ts.filter(|t| **t != DataType::Null) {
        let t = if t.is_integer() {
            DataType::Int64
        } else if t.is_floating() {
            DataType::Float64
        } else {
            t.clone()
        };
        out = Some(match out {
            None => t,
            Some(o) if o == t => o,
            Some(o) if is_numeric(&o) && is_numeric(&t) => DataType::Float64,
            Some(_) => DataType::Utf8,
        });
    }
    out
}

fn cast_to(arr: &ArrayRef, t: &DataType) -> Result<ArrayRef, String> {
    if arr.data_type() == t {
        Ok(arr.clone())
    } else if t == &DataType::Utf8 {
        Ok(Arc::new(super::string::to_text(arr)?))
    } else {
        cast(arr.as_ref(), t).map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct ArrayConcat;
impl ScalarFunction for ArrayConcat {
    fn name(&self) -> &'static str {
        "array_concat"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_concat(arr1, arr2, ...)",
            "the elements of all the arrays in order; null when any array is null",
            "array_concat([1, 2], [3]) = [1, 2, 3]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, usize::MAX)?;
        let mut items = Vec::new();
        for i in 0..args.len() {
            match array_arg(args, i)? {
                Some(t) => items.push(t),
                None => return Ok(SqlType::Any),
            }
        }
        Ok(known_or_any(common_type(items.iter()).map(list_type)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let mut lists = Vec::new();
        for arr in &a {
            match as_list(self.name(), arr, ctx) {
                Some(l) => lists.push(l),
                None => return Ok(Columnar::null()),
            }
        }
        let Some(item) = common_type(lists.iter().map(|l| l.values().data_type())) else {
            return Ok(Columnar::null());
        };
        let values: Vec<ArrayRef> = lists
            .iter()
            .map(|l| cast_to(l.values(), &item))
            .collect::<Result<_, _>>()?;
        let mut base = vec![0usize];
        for v in &values {
            base.push(base.last().copied().unwrap_or(0) + v.len());
        }
        let refs: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
        let all = concat(&refs).map_err(|e| e.to_string())?;
        let rows = a[0].len();
        let mut picks = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(rows);
        for r in 0..rows {
            let ok = lists.iter().all(|l| l.is_valid(r));
            if ok {
                for (k, l) in lists.iter().enumerate() {
                    picks.extend(range(l, r).map(|i| (base[k] + i) as u32));
                }
            }
            valid.push(ok);
            offsets.push(picks.len() as i32);
        }
        let out = build_list(all.as_ref(), picks, offsets, Some(NullBuffer::from(valid)))?;
        Ok(shape(args, out))
    }
}

#[derive(Debug)]
struct ArrayCreate;
impl ScalarFunction for ArrayCreate {
    fn name(&self) -> &'static str {
        "array_create"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_create(v1, v2, ...)",
            "an array of the values: BIGINT when all are BIGINT, FLOAT for mixed numbers, otherwise text",
            "array_create(1, 2.5) = [1, 2.5]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, usize::MAX)?;
        let mut ts = Vec::new();
        for a in args {
            match &a.ty {
                SqlType::Known(t) => ts.push(t.clone()),
                SqlType::Any => return Ok(SqlType::Any),
            }
        }
        Ok(known_or_any(common_type(ts.iter()).map(list_type)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let item = common_type(a.iter().map(|x| x.data_type())).unwrap_or(DataType::Null);
        let rows = a[0].len();
        let values: Vec<ArrayRef> = a
            .iter()
            .map(|x| cast_to(x, &item))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
        let all = concat(&refs).map_err(|e| e.to_string())?;
        let n = values.len();
        let picks: Vec<u32> = (0..rows)
            .flat_map(|r| (0..n).map(move |k| (k * rows + r) as u32))
            .collect();
        let offsets: Vec<i32> = (0..=rows).map(|r| (r * n) as i32).collect();
        let out = build_list(all.as_ref(), picks, offsets, None)?;
        Ok(shape(args, out))
    }
}

#[derive(Debug)]
struct Repeat;
impl ScalarFunction for Repeat {
    fn name(&self) -> &'static str {
        "repeat"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "repeat(v, n)",
            "an array holding v n times",
            "repeat(\"a\", 3) = [\"a\", \"a\", \"a\"]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 1, Kind::Number)?;
        Ok(match &args[0].ty {
            SqlType::Known(DataType::Null) | SqlType::Any => SqlType::Any,
            SqlType::Known(t) => SqlType::Known(list_type(t.clone())),
        })
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        if a[0].data_type() == &DataType::Null {
            return Ok(Columnar::null());
        }
        let n = int_arg(&a[1], self.name(), ctx)?;
        let mut picks = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(n.len());
        for r in 0..n.len() {
            let ok = a[0].is_valid(r) && n.is_valid(r) && n.value(r) >= 0;
            if n.is_valid(r) && n.value(r) < 0 {
                ctx.errors.flag(r, || {
                    format!("repeat expects a non-negative count but got {}", n.value(r))
                });
            }
            if ok {
                picks.extend(std::iter::repeat_n(r as u32, n.value(r) as usize));
            }
            valid.push(ok);
            offsets.push(picks.len() as i32);
        }
        let out = build_list(a[0].as_ref(), picks, offsets, Some(NullBuffer::from(valid)))?;
        Ok(shape(args, out))
    }
}

/// The longest array `sequence` builds, so a typo cannot exhaust memory.
const MAX_SEQUENCE: i64 = 1_000_000;

#[derive(Debug)]
struct Sequence;
impl ScalarFunction for Sequence {
    fn name(&self) -> &'static str {
        "sequence"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "sequence(start, stop[, step])",
            "the integers from start to stop inclusive by step (default 1, or -1 when start > stop); step 0 is an error",
            "sequence(1, 7, 3) = [1, 4, 7]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 3)?;
        for i in 0..args.len() {
            check_kind(args, i, Kind::Number)?;
        }
        Ok(SqlType::Known(list_type(DataType::Int64)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let start = int_arg(&a[0], self.name(), ctx)?;
        let stop = int_arg(&a[1], self.name(), ctx)?;
        let step = a.get(2).map(|s| int_arg(s, self.name(), ctx)).transpose()?;
        let mut values = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(start.len());
        for r in 0..start.len() {
            let mut ok = start.is_valid(r) && stop.is_valid(r);
            if ok {
                let (s, e) = (start.value(r), stop.value(r));
                let st = match &step {
                    Some(st) if st.is_null(r) => None,
                    Some(st) => Some(st.value(r)),
                    None => Some(if s <= e { 1 } else { -1 }),
                };
                match st {
                    None => ok = false,
                    Some(0) => {
                        ok = false;
                        ctx.errors
                            .flag(r, || "sequence expects a non-zero step".to_string());
                    }
                    Some(st) if (e as i128 - s as i128).signum() * (st.signum() as i128) < 0 => {
                        ok = false;
                        ctx.errors.flag(r, || {
                            format!("sequence step {st} cannot go from {s} to {e}")
                        });
                    }
                    Some(st) if (e as i128 - s as i128) / st as i128 >= MAX_SEQUENCE as i128 => {
                        ok = false;
                        ctx.errors.flag(r, || {
                            format!("sequence would exceed {MAX_SEQUENCE} elements")
                        });
                    }
                    Some(st) => {
                        let mut v = s;
                        while (st > 0 && v <= e) || (st < 0 && v >= e) {
                            values.push(v);
                            match v.checked_add(st) {
                                Some(n) => v = n,
                                None => break,
                            }
                        }
                    }
                }
            }
            valid.push(ok);
            offsets.push(values.len() as i32);
        }
        let out = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Int64, true)),
            OffsetBuffer::new(offsets.into()),
            Arc::new(Int64Array::from(values)),
            Some(NullBuffer::from(valid)),
        )
        .map_err(|e| e.to_string())?;
        Ok(shape(args, Arc::new(out)))
    }
}
