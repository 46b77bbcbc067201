//! Array functions: cardinality, array_contains, array_position, array_last_position,
//! element_at, array_max, array_min, array_join, array_distinct, array_remove, array_concat,
//! array_create, repeat, sequence, array_contains_any, array_intersect, array_union,
//! array_except, array_flatten, array_sort, array_shuffle, array_map and kvpair_array_to_obj.
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
use crate::eval::{Columnar, EvalContext, Literal, describe_value};
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
    r.register(Arc::new(ArrayContainsAny));
    r.register(Arc::new(SetOp(SetKind::Intersect)));
    r.register(Arc::new(SetOp(SetKind::Union)));
    r.register(Arc::new(SetOp(SetKind::Except)));
    r.register(Arc::new(ArrayFlatten));
    r.register(Arc::new(ArraySort));
    r.register(Arc::new(ArrayShuffle));
    r.register(Arc::new(ArrayMap));
    r.register(Arc::new(KvpairArrayToObj));
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
pub(super) fn array_arg(args: &[ArgInfo], i: usize) -> Result<Option<DataType>, String> {
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

/// The runtime list of an argument that may be all null (`Ok(None)`); `Err(())` when it is not
/// an array (the rows are flagged).
fn list_or_null<'a>(
    name: &str,
    arr: &'a ArrayRef,
    ctx: &mut EvalContext,
) -> Result<Option<&'a ListArray>, ()> {
    match arr.data_type() {
        DataType::List(_) => Ok(Some(arr.as_list::<i32>())),
        DataType::Null => Ok(None),
        _ => {
            flag_type_error(name, "an array", arr, ctx);
            Err(())
        }
    }
}

/// Two array arguments whose elements share one item type: the lists, all their elements
/// (the first list's then the second's) and their keys. The second list's element `i` is at
/// `base + i`.
struct TwoLists<'a> {
    first: Option<&'a ListArray>,
    second: Option<&'a ListArray>,
    values: ArrayRef,
    keys: Vec<Option<Key>>,
    base: usize,
}

impl<'a> TwoLists<'a> {
    fn new(name: &str, a: &'a [ArrayRef], ctx: &mut EvalContext) -> Result<Option<Self>, String> {
        let (Ok(first), Ok(second)) = (
            list_or_null(name, &a[0], ctx),
            list_or_null(name, &a[1], ctx),
        ) else {
            return Ok(None);
        };
        let item = common_type(
            [first, second]
                .iter()
                .flatten()
                .map(|l| l.values().data_type()),
        )
        .unwrap_or(DataType::Null);
        let parts: Vec<ArrayRef> = [first, second]
            .iter()
            .map(|l| match l {
                Some(l) => cast_to(l.values(), &item),
                None => Ok(new_null_array(&item, 0)),
            })
            .collect::<Result<_, _>>()?;
        let base = parts[0].len();
        let values = concat(&[parts[0].as_ref(), parts[1].as_ref()]).map_err(|e| e.to_string())?;
        let keys = keys(values.as_ref())?;
        Ok(Some(TwoLists {
            first,
            second,
            values,
            keys,
            base,
        }))
    }

    /// Indexes (into `values`) of the first list's elements at `row`; `None` when it is null.
    fn first_at(&self, row: usize) -> Option<std::ops::Range<usize>> {
        self.first
            .filter(|l| l.is_valid(row))
            .map(|l| range(l, row))
    }

    /// Indexes (into `values`) of the second list's elements at `row`; `None` when it is null.
    fn second_at(&self, row: usize) -> Option<std::ops::Range<usize>> {
        self.second.filter(|l| l.is_valid(row)).map(|l| {
            let r = range(l, row);
            r.start + self.base..r.end + self.base
        })
    }

    fn rows(&self, a: &[ArrayRef]) -> usize {
        a[0].len()
    }
}

/// Plan-time type of a set operation on two arrays: an array of their common item type.
fn two_array_type(args: &[ArgInfo]) -> Result<SqlType, String> {
    check_arity(args, 2, 2)?;
    let (a, b) = (array_arg(args, 0)?, array_arg(args, 1)?);
    Ok(match (a, b) {
        (Some(a), Some(b)) => known_or_any(common_type([a, b].iter()).map(list_type)),
        _ => SqlType::Any,
    })
}

/// Pushes the elements at `idx` whose key is not in `seen` yet (recording it).
fn push_new<'k>(
    idx: impl Iterator<Item = usize>,
    keys: &'k [Option<Key>],
    seen: &mut Vec<&'k Option<Key>>,
    picks: &mut Vec<u32>,
) {
    for i in idx {
        if !seen.contains(&&keys[i]) {
            seen.push(&keys[i]);
            picks.push(i as u32);
        }
    }
}

#[derive(Debug)]
struct ArrayContainsAny;
impl ScalarFunction for ArrayContainsAny {
    fn name(&self) -> &'static str {
        "array_contains_any"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_contains_any(arr1, arr2)",
            "true when arr1 and arr2 have an element in common (numbers compare by value); false when either is null",
            "array_contains_any([1, 2], [3, 2]) = true",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        two_array_type(args)?;
        Ok(SqlType::Known(DataType::Boolean))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(t) = TwoLists::new(self.name(), &a, ctx)? else {
            return Ok(Columnar::Scalar(new_null_array(&DataType::Boolean, 1)));
        };
        let out: BooleanArray = (0..t.rows(&a))
            .map(|r| {
                let (Some(x), Some(y)) = (t.first_at(r), t.second_at(r)) else {
                    return Some(false);
                };
                Some(
                    x.into_iter()
                        .any(|i| t.keys[y.clone()].iter().any(|k| *k == t.keys[i])),
                )
            })
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

/// Which set operation a [`SetOp`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetKind {
    Intersect,
    Union,
    Except,
}

#[derive(Debug)]
struct SetOp(SetKind);
impl ScalarFunction for SetOp {
    fn name(&self) -> &'static str {
        match self.0 {
            SetKind::Intersect => "array_intersect",
            SetKind::Union => "array_union",
            SetKind::Except => "array_except",
        }
    }
    fn doc(&self) -> FunctionDoc {
        match self.0 {
            SetKind::Intersect => doc(
                "array_intersect(arr1, arr2)",
                "the elements of arr2 that are also in arr1, without duplicates, in arr2's order; null when either is null",
                "array_intersect([1, 2, 3], [3, 2, 2]) = [3, 2]",
            ),
            SetKind::Union => doc(
                "array_union(arr1, arr2)",
                "the elements of arr1 then arr2, without duplicates; a null array counts as empty",
                "array_union([1, 2], [2, 3]) = [1, 2, 3]",
            ),
            SetKind::Except => doc(
                "array_except(arr1, arr2)",
                "the elements of arr1 that are not in arr2, without duplicates; null when arr1 is null, a null arr2 counts as empty",
                "array_except([1, 2, 2, 3], [3]) = [1, 2]",
            ),
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        two_array_type(args)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(t) = TwoLists::new(self.name(), &a, ctx)? else {
            return Ok(Columnar::null());
        };
        let mut picks = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(t.rows(&a));
        for r in 0..t.rows(&a) {
            let (x, y) = (t.first_at(r), t.second_at(r));
            let ok = match self.0 {
                SetKind::Intersect => x.is_some() && y.is_some(),
                SetKind::Union => true,
                SetKind::Except => x.is_some(),
            };
            if ok {
                let (x, y) = (x.unwrap_or(0..0), y.unwrap_or(0..0));
                let mut seen: Vec<&Option<Key>> = Vec::new();
                match self.0 {
                    SetKind::Intersect => {
                        let inside: Vec<usize> = y
                            .filter(|&j| t.keys[x.clone()].iter().any(|k| *k == t.keys[j]))
                            .collect();
                        push_new(inside.into_iter(), &t.keys, &mut seen, &mut picks);
                    }
                    SetKind::Union => {
                        push_new(x.chain(y), &t.keys, &mut seen, &mut picks);
                    }
                    SetKind::Except => {
                        seen.extend(y.map(|j| &t.keys[j]));
                        push_new(x, &t.keys, &mut seen, &mut picks);
                    }
                }
            }
            valid.push(ok);
            offsets.push(picks.len() as i32);
        }
        let out = build_list(
            t.values.as_ref(),
            picks,
            offsets,
            Some(NullBuffer::from(valid)),
        )?;
        Ok(shape(args, out))
    }
}

#[derive(Debug)]
struct ArrayFlatten;
impl ScalarFunction for ArrayFlatten {
    fn name(&self) -> &'static str {
        "array_flatten"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_flatten(arr)",
            "the elements of the arrays in arr, one level deep, in order (a null inner array gives a null element; other elements are kept); null when arr is null or the result is empty, as in eKuiper",
            "array_flatten([[1, 4], [2, 3]]) = [1, 4, 2, 3]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(match array_arg(args, 0)? {
            Some(DataType::List(inner)) => SqlType::Known(list_type(inner.data_type().clone())),
            Some(t) => SqlType::Known(list_type(t)),
            None => SqlType::Any,
        })
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        // eKuiper builds the result by appending to a nil slice, so an empty result is null.
        let DataType::List(_) = list.values().data_type() else {
            let valid: Vec<bool> = (0..list.len())
                .map(|r| list.is_valid(r) && !range(list, r).is_empty())
                .collect();
            let out = ListArray::try_new(
                Arc::new(Field::new("item", list.values().data_type().clone(), true)),
                list.offsets().clone(),
                list.values().clone(),
                Some(NullBuffer::from(valid)),
            )
            .map_err(|e| e.to_string())?;
            return Ok(shape(args, Arc::new(out)));
        };
        let inner = list.values().as_list::<i32>();
        let mut picks: Vec<Option<u32>> = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(list.len());
        for r in 0..list.len() {
            let start = picks.len();
            if list.is_valid(r) {
                for i in range(list, r) {
                    if inner.is_valid(i) {
                        picks.extend(range(inner, i).map(|j| Some(j as u32)));
                    } else {
                        picks.push(None);
                    }
                }
            }
            valid.push(picks.len() > start);
            offsets.push(picks.len() as i32);
        }
        let item = inner.values().data_type().clone();
        let values = take(inner.values().as_ref(), &UInt32Array::from(picks), None)
            .map_err(|e| e.to_string())?;
        let out = ListArray::try_new(
            Arc::new(Field::new("item", item, true)),
            OffsetBuffer::new(offsets.into()),
            values,
            Some(NullBuffer::from(valid)),
        )
        .map_err(|e| e.to_string())?;
        Ok(shape(args, Arc::new(out)))
    }
}

/// A total order on element keys: numbers, strings and booleans by value, null elements last,
/// anything else by its text.
fn total_cmp(a: &Option<Key>, b: &Option<Key>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x
            .cmp(y)
            .unwrap_or_else(|| format!("{x:?}").cmp(&format!("{y:?}"))),
    }
}

#[derive(Debug)]
struct ArraySort;
impl ScalarFunction for ArraySort {
    fn name(&self) -> &'static str {
        "array_sort"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_sort(arr)",
            "a sorted copy of arr (numbers by value, strings by code point), null elements last",
            "array_sort([3, 1, 2]) = [1, 2, 3]",
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
        let mut picks = Vec::with_capacity(elems.len());
        let mut offsets = vec![0i32];
        for r in 0..list.len() {
            if list.is_valid(r) {
                let mut idx: Vec<usize> = range(list, r).collect();
                idx.sort_by(|&x, &y| total_cmp(&elems[x], &elems[y]));
                picks.extend(idx.into_iter().map(|i| i as u32));
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
struct ArrayShuffle;
impl ScalarFunction for ArrayShuffle {
    fn name(&self) -> &'static str {
        "array_shuffle"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_shuffle(arr)",
            "the elements of arr in a random order, a new one for every row",
            "array_shuffle([1, 2, 3]) = [2, 3, 1]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(known_or_any(array_arg(args, 0)?.map(list_type)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        // A fresh order per row, even for a constant array.
        let arr = args[0].clone().into_array(ctx.rows);
        let Some(list) = as_list(self.name(), &arr, ctx) else {
            return Ok(Columnar::null());
        };
        let mut picks = Vec::with_capacity(list.values().len());
        let mut offsets = vec![0i32];
        for r in 0..list.len() {
            if list.is_valid(r) {
                let mut idx: Vec<u32> = range(list, r).map(|i| i as u32).collect();
                // Fisher-Yates.
                for i in (1..idx.len()).rev() {
                    let j = ((super::math::next_random() * (i + 1) as f64) as usize).min(i);
                    idx.swap(i, j);
                }
                picks.extend(idx);
            }
            offsets.push(picks.len() as i32);
        }
        let out = build_list(
            list.values().as_ref(),
            picks,
            offsets,
            list.nulls().cloned(),
        )?;
        Ok(Columnar::Array(out))
    }
}

#[derive(Debug)]
struct ArrayMap;

impl ArrayMap {
    /// The function named by the literal first argument.
    fn function(args: &[ArgInfo]) -> Result<&'static Arc<dyn ScalarFunction>, String> {
        let Some(Literal::String(name)) = &args[0].literal else {
            return Err("expects a function name string for argument 1".to_string());
        };
        super::Registry::builtin().get(name).ok_or_else(|| {
            format!(
                "expects a scalar function name for argument 1 but got unknown function \"{name}\""
            )
        })
    }
}

impl ScalarFunction for ArrayMap {
    fn name(&self) -> &'static str {
        "array_map"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "array_map(function_name, arr)",
            "the array of the one-argument scalar function named by the string literal function_name applied to every element of arr; an element that fails fails the row",
            "array_map(\"upper\", [\"a\", \"b\"]) = [\"A\", \"B\"]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        let f = Self::function(args)?;
        let item = array_arg(args, 1)?;
        let elem = ArgInfo {
            ty: known_or_any(item),
            literal: None,
        };
        let t = f.return_type(&[elem]).map_err(|e| {
            let name = f.name();
            format!("cannot map \"{name}\" over the elements of argument 2 (\"{name}\" {e})")
        })?;
        Ok(match t {
            SqlType::Known(t) => SqlType::Known(list_type(t)),
            SqlType::Any => SqlType::Any,
        })
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let name = super::string::to_text(&a[0])?;
        let Some(f) = name
            .iter()
            .flatten()
            .next()
            .and_then(|n| super::Registry::builtin().get(n))
        else {
            return Ok(Columnar::null());
        };
        let Some(list) = as_list(self.name(), &a[1], ctx) else {
            return Ok(Columnar::null());
        };
        let values = list.values().clone();
        let mut inner = EvalContext::new(values.len());
        inner.now_ms = ctx.now_ms;
        let mapped = f
            .invoke(&[Columnar::Array(values.clone())], &mut inner)?
            .into_array(values.len());
        if let Some(ok) = inner.errors.ok_mask() {
            let reason = inner.errors.first().unwrap_or_default().to_string();
            for r in 0..list.len() {
                if range(list, r).any(|i| !ok.value(i)) {
                    ctx.errors.flag(r, || format!("array_map: {reason}"));
                }
            }
        }
        let out = ListArray::try_new(
            Arc::new(Field::new("item", mapped.data_type().clone(), true)),
            list.offsets().clone(),
            mapped,
            list.nulls().cloned(),
        )
        .map_err(|e| e.to_string())?;
        Ok(shape(&args[1..], Arc::new(out)))
    }
}

#[derive(Debug)]
struct KvpairArrayToObj;
impl ScalarFunction for KvpairArrayToObj {
    fn name(&self) -> &'static str {
        "kvpair_array_to_obj"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "kvpair_array_to_obj(arr)",
            "the object built from an array of {\"key\": k, \"value\": v} objects (k a string); any other element fails the row; null when arr is null",
            "kvpair_array_to_obj([{\"key\": \"a\", \"value\": 1}]) = {\"a\": 1}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        array_arg(args, 0)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        use serde_json::Value;
        let a = arrays(args, ctx);
        let Some(list) = as_list(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        let mut values = Vec::with_capacity(list.len());
        for r in 0..list.len() {
            let Some(Value::Array(items)) = super::value_to_json(list, r) else {
                values.push(None);
                continue;
            };
            let mut obj = serde_json::Map::new();
            let mut failed = None;
            for item in items {
                // A null value is an absent child, so {"key": k} stands for {"key": k, "value": null}.
                let pair = match item {
                    Value::Object(mut m) if m.keys().all(|k| k == "key" || k == "value") => {
                        match m.remove("key") {
                            Some(Value::String(k)) => Some((k, m.remove("value"))),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match pair {
                    Some((k, Some(v))) => {
                        obj.insert(k, v);
                    }
                    Some((k, None)) => {
                        obj.remove(&k);
                    }
                    None => {
                        failed = Some(
                            "kvpair_array_to_obj expects {\"key\": string, \"value\": any} elements"
                                .to_string(),
                        );
                        break;
                    }
                }
            }
            if let Some(reason) = failed {
                ctx.errors.flag(r, || reason);
                values.push(None);
            } else {
                values.push(Some(Value::Object(obj)));
            }
        }
        Ok(shape(args, super::json_to_array(values)?))
    }
}

/// (name, documentation) of `unnest`, which spreads an array into rows: the binder answers these calls itself, outside the
/// registry, and they appear in the same catalogue.
pub(super) const BINDER_DOCS: &[(&str, FunctionDoc)] = &[(
    "unnest",
    FunctionDoc::new(
        "multi-row",
        "unnest(array)",
        "One row per element (objects spread into fields), each its own emission (SELECT only).",
        "SELECT unnest(readings) FROM s",
    ),
)];
