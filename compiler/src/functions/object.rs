//! Object functions: keys, values, object, zip, items, object_construct, object_concat, erase,
//! object_pick, object_size and obj_to_kvpair_array.
//!
//! Objects are Arrow `Struct` values; a null child is an absent key (as in `to_json`), and keys
//! come out sorted, since eKuiper's maps have no order. Functions whose result has a fixed shape
//! (keys, object_size, erase, object_pick or object_construct with constant keys, and values or
//! obj_to_kvpair_array of an object whose values share one type) work on the struct columns
//! directly and keep the value types. Results whose shape varies by row go through JSON values
//! and [`json_to_array`], so their numbers become FLOAT (eKuiper's schemaless rule), rows of
//! one batch share one struct type (a key absent from a row is a null child there), and values
//! of different kinds at one place become JSON text.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, StringArray, StringBuilder, StructArray,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Fields};
use serde_json::{Map, Value};

use super::{ArgInfo, FunctionDoc, Registry, ScalarFunction, arrays, check_arity, shape};
use super::{flag_type_error, json_to_array, value_to_json};
use crate::eval::{Columnar, EvalContext, Literal, present};
use crate::types::{SqlType, type_name};

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Keys));
    r.register(Arc::new(Values));
    r.register(Arc::new(Object));
    r.register(Arc::new(Zip));
    r.register(Arc::new(Items));
    r.register(Arc::new(ObjectConstruct));
    r.register(Arc::new(ObjectConcat));
    r.register(Arc::new(Erase));
    r.register(Arc::new(ObjectPick));
    r.register(Arc::new(ObjectSize));
    r.register(Arc::new(ObjToKvpairArray));
}

fn doc(syntax: &'static str, description: &'static str, example: &'static str) -> FunctionDoc {
    FunctionDoc {
        category: "object",
        syntax,
        description,
        example,
    }
}

/// Plan-time check that argument `i` is an object; returns its fields when known.
fn obj_arg(args: &[ArgInfo], i: usize) -> Result<Option<Fields>, String> {
    match args.get(i).map(|a| &a.ty) {
        Some(SqlType::Known(DataType::Struct(f))) => Ok(Some(f.clone())),
        Some(SqlType::Known(DataType::Null)) | Some(SqlType::Any) | None => Ok(None),
        Some(SqlType::Known(t)) => Err(format!(
            "expects an object for argument {} but got {}",
            i + 1,
            type_name(t)
        )),
    }
}

/// Plan-time check that argument `i` is an array (of strings when its item type is known).
fn string_array_arg(args: &[ArgInfo], i: usize, what: &str) -> Result<(), String> {
    match args.get(i).map(|a| &a.ty) {
        Some(SqlType::Known(DataType::List(f)))
            if matches!(f.data_type(), DataType::Utf8 | DataType::Null) =>
        {
            Ok(())
        }
        Some(SqlType::Known(DataType::Null)) | Some(SqlType::Any) | None => Ok(()),
        Some(SqlType::Known(t)) => Err(format!(
            "expects {what} for argument {} but got {}",
            i + 1,
            type_name(t)
        )),
    }
}

/// The struct at runtime: `None` when the column is null-typed or (flagged) not an object.
fn as_struct<'a>(name: &str, arr: &'a ArrayRef, ctx: &mut EvalContext) -> Option<&'a StructArray> {
    match arr.data_type() {
        DataType::Struct(_) => Some(arr.as_struct()),
        DataType::Null => None,
        _ => {
            flag_type_error(name, "an object", arr, ctx);
            None
        }
    }
}

/// One row of an object column as a JSON map (null children left out).
fn obj_at(arr: &dyn Array, row: usize) -> Option<Map<String, Value>> {
    match value_to_json(arr, row) {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The result of per-row JSON values, scalar when every argument was.
fn from_json(args: &[Columnar], values: Vec<Option<Value>>) -> Result<Columnar, String> {
    Ok(shape(args, json_to_array(values)?))
}

/// Applies `f` to the JSON map of every present row of the object argument 0.
fn map_objects(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
    f: impl Fn(Map<String, Value>) -> Option<Value>,
) -> Result<Columnar, String> {
    let arr = arrays(args, ctx).remove(0);
    let Some(s) = as_struct(name, &arr, ctx) else {
        return Ok(Columnar::null());
    };
    let values = (0..s.len()).map(|r| obj_at(s, r).and_then(&f)).collect();
    from_json(args, values)
}

/// A struct with only the fields whose name passes `keep`; the rows' validity is kept.
fn project(s: &StructArray, keep: impl Fn(&str) -> bool) -> Result<ArrayRef, String> {
    let (fields, columns): (Vec<_>, Vec<_>) = s
        .fields()
        .iter()
        .zip(s.columns())
        .filter(|(f, _)| keep(f.name()))
        .map(|(f, c)| (f.clone(), c.clone()))
        .unzip();
    let out = if fields.is_empty() {
        StructArray::new_empty_fields(s.len(), s.nulls().cloned())
    } else {
        StructArray::try_new(Fields::from(fields), columns, s.nulls().cloned())
            .map_err(|e| e.to_string())?
    };
    Ok(Arc::new(out))
}

/// The struct type with only the fields whose name passes `keep`.
fn project_type(fields: &Fields, keep: impl Fn(&str) -> bool) -> SqlType {
    let kept: Vec<Arc<Field>> = fields.iter().filter(|f| keep(f.name())).cloned().collect();
    SqlType::Known(DataType::Struct(Fields::from(kept)))
}

/// The strings of a constant key argument (a string or an array of strings); `None` when it
/// is not constant, not a string (array) or null.
fn constant_keys(arg: &Columnar) -> Option<Vec<String>> {
    if !arg.is_scalar() {
        return None;
    }
    let a = arg.array();
    match a.data_type() {
        DataType::Utf8 if a.is_valid(0) => Some(vec![a.as_string::<i32>().value(0).to_string()]),
        DataType::List(f) if f.data_type() == &DataType::Utf8 && a.is_valid(0) => {
            let items = a.as_list::<i32>().value(0);
            Some(
                items
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The key strings of arguments `from..` when every one is a string literal; `None` otherwise
/// (an array of keys is never a literal), and the result type is then only known at run time.
fn literal_keys(args: &[ArgInfo], from: usize) -> Option<Vec<String>> {
    args[from..]
        .iter()
        .map(|a| match &a.literal {
            Some(Literal::String(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// The key strings of row `row` of a key argument: a string, or an array of strings (other
/// elements ignored); `None` when null.
fn keys_at(arr: &ArrayRef, row: usize) -> Option<Vec<String>> {
    match value_to_json(arr.as_ref(), row)? {
        Value::String(s) => Some(vec![s]),
        Value::Array(a) => Some(
            a.into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The present entries of every row of a struct whose children all have one type, in key
/// order, gathered with one `interleave`: the vectorised path of `values` and
/// `obj_to_kvpair_array`, which keeps the value type (BIGINT stays BIGINT).
struct Entries {
    /// The key of every entry.
    keys: StringArray,
    /// The value of every entry.
    values: ArrayRef,
    /// Row boundaries into `keys` and `values`.
    offsets: Vec<i32>,
    /// The object's validity.
    nulls: Option<arrow::buffer::NullBuffer>,
}

impl Entries {
    /// `None` when the children's types differ (the JSON path handles those).
    fn of(s: &StructArray) -> Result<Option<Entries>, String> {
        let mut order: Vec<usize> = (0..s.num_columns())
            .filter(|&i| s.column(i).data_type() != &DataType::Null)
            .collect();
        order.sort_by(|a, b| s.fields()[*a].name().cmp(s.fields()[*b].name()));
        let Some(first) = order.first() else {
            return Ok(None);
        };
        let item = s.column(*first).data_type();
        if order.iter().any(|&i| s.column(i).data_type() != item) {
            return Ok(None);
        }
        let cols: Vec<&dyn Array> = order.iter().map(|&i| s.column(i).as_ref()).collect();
        let mut picks = Vec::new();
        let mut keys = Vec::new();
        let mut offsets = vec![0i32];
        for row in 0..s.len() {
            if s.is_valid(row) {
                for (k, &i) in order.iter().enumerate() {
                    if s.column(i).is_valid(row) {
                        picks.push((k, row));
                        keys.push(s.fields()[i].name().as_str());
                    }
                }
            }
            offsets.push(picks.len() as i32);
        }
        let values = arrow::compute::interleave(&cols, &picks).map_err(|e| e.to_string())?;
        Ok(Some(Entries {
            keys: StringArray::from(keys),
            values,
            offsets,
            nulls: s.nulls().cloned(),
        }))
    }

    /// A list per row of `items` (one per entry).
    fn into_list(self, items: ArrayRef) -> Result<ArrayRef, String> {
        let out = arrow::array::ListArray::try_new(
            Arc::new(Field::new("item", items.data_type().clone(), true)),
            arrow::buffer::OffsetBuffer::new(self.offsets.into()),
            items,
            self.nulls,
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(out))
    }
}

#[derive(Debug)]
struct Keys;
impl ScalarFunction for Keys {
    fn name(&self) -> &'static str {
        "keys"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "keys(obj)",
            "the keys of obj as an array of strings, sorted; null when obj is null",
            "keys(object_construct(\"b\", 1, \"a\", 2)) = [\"a\", \"b\"]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        obj_arg(args, 0)?;
        Ok(SqlType::Known(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            true,
        )))))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let mut out = ListBuilder::new(StringBuilder::new());
        match as_struct(self.name(), &arr, ctx) {
            Some(s) => {
                let mut order: Vec<usize> = (0..s.num_columns()).collect();
                order.sort_by(|a, b| s.fields()[*a].name().cmp(s.fields()[*b].name()));
                for row in 0..s.len() {
                    if s.is_null(row) {
                        out.append_null();
                        continue;
                    }
                    for &i in &order {
                        if present(s.column(i).as_ref(), row) {
                            out.values().append_value(s.fields()[i].name());
                        }
                    }
                    out.append(true);
                }
            }
            None => (0..arr.len()).for_each(|_| out.append_null()),
        }
        Ok(shape(args, Arc::new(out.finish())))
    }
}

#[derive(Debug)]
struct Values;
impl ScalarFunction for Values {
    fn name(&self) -> &'static str {
        "values"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "values(obj)",
            "the values of obj as an array, in the order of the sorted keys (JSON text when they are not all of one kind, as one array holds one type); null when obj is null",
            "values(object_construct(\"b\", 1, \"a\", 2)) = [2, 1]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        obj_arg(args, 0)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        if let Some(s) = arr.as_struct_opt()
            && let Some(entries) = Entries::of(s)?
        {
            let values = entries.values.clone();
            return Ok(shape(args, entries.into_list(values)?));
        }
        map_objects(self.name(), args, ctx, |m| {
            Some(Value::Array(m.into_iter().map(|(_, v)| v).collect()))
        })
    }
}

#[derive(Debug)]
struct Items;
impl ScalarFunction for Items {
    fn name(&self) -> &'static str {
        "items"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "items(obj)",
            "the entries of obj as an array of [key, value] arrays, sorted by key (JSON text unless the values are strings, as one array holds one type); null when obj is null or empty",
            "items(object_construct(\"a\", \"x\")) = [[\"a\", \"x\"]]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        obj_arg(args, 0)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        map_objects(self.name(), args, ctx, |m| {
            (!m.is_empty()).then(|| {
                Value::Array(
                    m.into_iter()
                        .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
                        .collect(),
                )
            })
        })
    }
}

#[derive(Debug)]
struct ObjToKvpairArray;
impl ScalarFunction for ObjToKvpairArray {
    fn name(&self) -> &'static str {
        "obj_to_kvpair_array"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "obj_to_kvpair_array(obj)",
            "the entries of obj as an array of {\"key\": k, \"value\": v} objects, sorted by key (JSON text when the values are not all of one kind); null when obj is null",
            "obj_to_kvpair_array(object_construct(\"a\", 1)) = [{\"key\": \"a\", \"value\": 1}]",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        obj_arg(args, 0)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        if let Some(s) = arr.as_struct_opt()
            && let Some(entries) = Entries::of(s)?
        {
            let pairs = StructArray::try_new(
                Fields::from(vec![
                    Field::new("key", DataType::Utf8, true),
                    Field::new("value", entries.values.data_type().clone(), true),
                ]),
                vec![Arc::new(entries.keys.clone()), entries.values.clone()],
                None,
            )
            .map_err(|e| e.to_string())?;
            return Ok(shape(args, entries.into_list(Arc::new(pairs))?));
        }
        map_objects(self.name(), args, ctx, |m| {
            Some(Value::Array(
                m.into_iter()
                    .map(|(k, v)| {
                        let mut pair = Map::new();
                        pair.insert("key".to_string(), Value::String(k));
                        pair.insert("value".to_string(), v);
                        Value::Object(pair)
                    })
                    .collect(),
            ))
        })
    }
}

#[derive(Debug)]
struct ObjectSize;
impl ScalarFunction for ObjectSize {
    fn name(&self) -> &'static str {
        "object_size"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "object_size(obj)",
            "how many keys obj has; 0 when obj is null",
            "object_size(object_construct(\"a\", 1, \"b\", 2)) = 2",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        obj_arg(args, 0)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out: Int64Array = match as_struct(self.name(), &arr, ctx) {
            Some(s) => (0..s.len())
                .map(|row| {
                    if s.is_null(row) {
                        return Some(0);
                    }
                    Some(
                        s.columns()
                            .iter()
                            .filter(|c| present(c.as_ref(), row))
                            .count() as i64,
                    )
                })
                .collect(),
            None if arr.data_type() == &DataType::Null => Int64Array::from(vec![0; arr.len()]),
            None => Int64Array::new_null(arr.len()),
        };
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct Object;
impl ScalarFunction for Object {
    fn name(&self) -> &'static str {
        "object"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "object(keys, values)",
            "the object pairing an array of string keys with an array of values of the same length; null when either is null or both are empty",
            "object([\"a\", \"b\"], [1, 2]) = {\"a\": 1, \"b\": 2}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        string_array_arg(args, 0, "an array of strings")?;
        super::array::array_arg(args, 1)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        for (i, arr) in a.iter().enumerate() {
            if !matches!(arr.data_type(), DataType::List(_) | DataType::Null) {
                let want = if i == 0 {
                    "an array of strings for argument 1"
                } else {
                    "an array for argument 2"
                };
                flag_type_error(self.name(), want, arr, ctx);
                return Ok(Columnar::null());
            }
        }
        let mut values = Vec::with_capacity(a[0].len());
        for row in 0..a[0].len() {
            let (Some(Value::Array(ks)), Some(Value::Array(vs))) = (
                value_to_json(a[0].as_ref(), row),
                value_to_json(a[1].as_ref(), row),
            ) else {
                values.push(None);
                continue;
            };
            if ks.len() != vs.len() {
                ctx.errors.flag(row, || {
                    format!(
                        "object expects keys and values of the same length but got {} and {}",
                        ks.len(),
                        vs.len()
                    )
                });
                values.push(None);
                continue;
            }
            let mut m = Map::new();
            let mut ok = true;
            for (k, v) in ks.into_iter().zip(vs) {
                match k {
                    Value::String(k) => {
                        m.insert(k, v);
                    }
                    other => {
                        ctx.errors.flag(row, || {
                            format!("object expects string keys but got {other}")
                        });
                        ok = false;
                        break;
                    }
                }
            }
            values.push((ok && !m.is_empty()).then_some(Value::Object(m)));
        }
        from_json(args, values)
    }
}

#[derive(Debug)]
struct Zip;
impl ScalarFunction for Zip {
    fn name(&self) -> &'static str {
        "zip"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "zip(entries)",
            "the object built from an array of [key, value] arrays (keys must be strings, null entries are skipped); null when entries is null or empty",
            "zip([[\"a\", \"x\"], [\"b\", \"y\"]]) = {\"a\": \"x\", \"b\": \"y\"}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        super::array::array_arg(args, 0)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        if !matches!(arr.data_type(), DataType::List(_) | DataType::Null) {
            flag_type_error(self.name(), "an array of [key, value] arrays", &arr, ctx);
            return Ok(Columnar::null());
        }
        let mut values = Vec::with_capacity(arr.len());
        for row in 0..arr.len() {
            let Some(Value::Array(entries)) = value_to_json(arr.as_ref(), row) else {
                values.push(None);
                continue;
            };
            let mut m = Map::new();
            let mut failed = None;
            for e in entries {
                match e {
                    Value::Null => {}
                    Value::Array(mut kv) if kv.len() == 2 => {
                        let v = kv.pop().unwrap_or(Value::Null);
                        match kv.pop() {
                            Some(Value::String(k)) => {
                                m.insert(k, v);
                            }
                            k => {
                                failed = Some(format!(
                                    "zip expects a string key but got {}",
                                    k.unwrap_or(Value::Null)
                                ));
                                break;
                            }
                        }
                    }
                    other => {
                        failed = Some(format!(
                            "zip expects [key, value] arrays of two elements but got {other}"
                        ));
                        break;
                    }
                }
            }
            if let Some(reason) = failed {
                ctx.errors.flag(row, || reason);
                values.push(None);
            } else {
                values.push((!m.is_empty()).then_some(Value::Object(m)));
            }
        }
        from_json(args, values)
    }
}

#[derive(Debug)]
struct ObjectConstruct;
impl ScalarFunction for ObjectConstruct {
    fn name(&self) -> &'static str {
        "object_construct"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "object_construct(key1, value1, key2, value2, ...)",
            "the object of the key-value pairs (keys are strings; a pair whose key or value is null is left out, a repeated key keeps its last value)",
            "object_construct(\"a\", 1, \"b\", \"x\") = {\"a\": 1, \"b\": \"x\"}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        if !args.len().is_multiple_of(2) {
            return Err(format!(
                "expects key-value pairs (an even number of arguments) but got {}",
                args.len()
            ));
        }
        for i in (0..args.len()).step_by(2) {
            let bad = match (&args[i].literal, &args[i].ty) {
                (Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_)), _) => true,
                (_, SqlType::Known(t)) => !matches!(t, DataType::Utf8 | DataType::Null),
                _ => false,
            };
            if bad {
                let t = match &args[i].ty {
                    SqlType::Known(t) => type_name(t),
                    SqlType::Any => "unknown",
                };
                return Err(format!(
                    "expects a string key for argument {} but got {t}",
                    i + 1
                ));
            }
        }
        // Constant keys give a struct of the value types.
        let mut fields: Vec<(String, DataType)> = Vec::new();
        for pair in args.chunks(2) {
            let key = match &pair[0].literal {
                Some(Literal::String(s)) => s.clone(),
                Some(Literal::Null) => continue,
                _ => return Ok(SqlType::Any),
            };
            let SqlType::Known(t) = &pair[1].ty else {
                return Ok(SqlType::Any);
            };
            if t == &DataType::Null {
                fields.retain(|(k, _)| *k != key);
                continue;
            }
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some(f) => f.1 = t.clone(),
                None => fields.push((key, t.clone())),
            }
        }
        Ok(SqlType::Known(DataType::Struct(
            fields
                .into_iter()
                .map(|(k, t)| Field::new(k, t, true))
                .collect(),
        )))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        if args.is_empty() {
            return Ok(Columnar::Scalar(Arc::new(StructArray::new_empty_fields(
                1, None,
            ))));
        }
        let a = arrays(args, ctx);
        let rows = a[0].len();
        // Constant keys: the struct of the value columns, types kept.
        let constant = args.chunks(2).all(|p| {
            p[0].is_scalar() && matches!(p[0].data_type(), DataType::Utf8 | DataType::Null)
        });
        if constant {
            let mut fields: Vec<(String, ArrayRef)> = Vec::new();
            for pair in a.chunks(2) {
                if !pair[0].is_valid(0) || pair[0].data_type() == &DataType::Null {
                    continue;
                }
                let key = pair[0].as_string::<i32>().value(0).to_string();
                if pair[1].data_type() == &DataType::Null {
                    fields.retain(|(k, _)| *k != key);
                    continue;
                }
                match fields.iter_mut().find(|(k, _)| *k == key) {
                    Some(f) => f.1 = pair[1].clone(),
                    None => fields.push((key, pair[1].clone())),
                }
            }
            let out = if fields.is_empty() {
                StructArray::new_empty_fields(rows, None)
            } else {
                let (names, columns): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
                let fs: Fields = names
                    .iter()
                    .zip(&columns)
                    .map(|(n, c)| Field::new(n, c.data_type().clone(), true))
                    .collect();
                StructArray::try_new(fs, columns, None).map_err(|e| e.to_string())?
            };
            return Ok(shape(args, Arc::new(out)));
        }
        let mut values = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut m = Map::new();
            let mut failed = None;
            for (i, pair) in a.chunks(2).enumerate() {
                let (Some(k), Some(v)) = (
                    value_to_json(pair[0].as_ref(), row),
                    value_to_json(pair[1].as_ref(), row),
                ) else {
                    continue;
                };
                match k {
                    Value::String(k) => {
                        m.insert(k, v);
                    }
                    other => {
                        failed = Some(format!(
                            "object_construct expects a string key for argument {} but got {other}",
                            2 * i + 1
                        ));
                        break;
                    }
                }
            }
            if let Some(reason) = failed {
                ctx.errors.flag(row, || reason);
                values.push(None);
            } else {
                values.push(Some(Value::Object(m)));
            }
        }
        from_json(args, values)
    }
}

#[derive(Debug)]
struct ObjectConcat;
impl ScalarFunction for ObjectConcat {
    fn name(&self) -> &'static str {
        "object_concat"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "object_concat(obj1, obj2, ...)",
            "one object with the keys of all the objects, a repeated key taking the value of the last object that has it; null objects are skipped",
            "object_concat(object_construct(\"a\", 1), object_construct(\"a\", 2, \"b\", 3)) = {\"a\": 2, \"b\": 3}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, usize::MAX)?;
        for i in 0..args.len() {
            obj_arg(args, i)?;
        }
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let mut objs = Vec::with_capacity(a.len());
        for arr in &a {
            if let Some(s) = as_struct(self.name(), arr, ctx) {
                objs.push(s);
            }
        }
        let rows = a[0].len();
        let values = (0..rows)
            .map(|row| {
                let mut m = Map::new();
                for s in &objs {
                    if let Some(o) = obj_at(*s, row) {
                        m.extend(o);
                    }
                }
                Some(Value::Object(m))
            })
            .collect();
        from_json(args, values)
    }
}

#[derive(Debug)]
struct Erase;
impl ScalarFunction for Erase {
    fn name(&self) -> &'static str {
        "erase"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "erase(obj, k)",
            "obj without the key k, or without every key of the array of strings k; null when either is null",
            "erase(object_construct(\"a\", 1, \"b\", 2), \"a\") = {\"b\": 2}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        let fields = obj_arg(args, 0)?;
        if !matches!(args[1].ty, SqlType::Known(DataType::Utf8)) {
            string_array_arg(args, 1, "a string or an array of strings")?;
        }
        Ok(match (fields, literal_keys(args, 1)) {
            (Some(f), Some(keys)) => project_type(&f, |n| !keys.iter().any(|k| k == n)),
            _ => SqlType::Any,
        })
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(s) = as_struct(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        if args[1].is_scalar() && !present(a[1].as_ref(), 0) {
            return Ok(shape(args, new_null_array(s.data_type(), s.len())));
        }
        if let Some(keys) = constant_keys(&args[1]) {
            let keys: BTreeSet<String> = keys.into_iter().collect();
            return Ok(shape(args, project(s, |n| !keys.contains(n))?));
        }
        let mut values = Vec::with_capacity(s.len());
        for row in 0..s.len() {
            let (Some(mut m), Some(keys)) = (obj_at(s, row), keys_at(&a[1], row)) else {
                if present(a[1].as_ref(), row)
                    && !matches!(a[1].data_type(), DataType::Utf8 | DataType::List(_))
                {
                    ctx.errors.flag(row, || {
                        "erase expects a string or an array of strings for argument 2".to_string()
                    });
                }
                values.push(None);
                continue;
            };
            for k in keys {
                m.remove(&k);
            }
            values.push(Some(Value::Object(m)));
        }
        from_json(args, values)
    }
}

/// Copies the value at the dotted path `key` of `from` into `to` (nested objects created as
/// needed); nothing when the path is absent.
fn pick(from: &Map<String, Value>, to: &mut Map<String, Value>, key: &str) {
    let mut parts = key.split('.').peekable();
    let mut src = from;
    let mut dst = to;
    while let Some(part) = parts.next() {
        let Some(v) = src.get(part) else { return };
        if parts.peek().is_none() {
            dst.insert(part.to_string(), v.clone());
            return;
        }
        let Value::Object(inner) = v else { return };
        src = inner;
        let slot = dst
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        dst = next;
    }
}

#[derive(Debug)]
struct ObjectPick;
impl ScalarFunction for ObjectPick {
    fn name(&self) -> &'static str {
        "object_pick"
    }
    fn doc(&self) -> FunctionDoc {
        doc(
            "object_pick(obj, k1[, k2, ...]) or object_pick(obj, [keys])",
            "the object of only the given keys of obj (a key may be a dotted path into nested objects, such as \"a.b\"); absent keys are skipped; null when obj is null",
            "object_pick(object_construct(\"a\", 1, \"b\", 2), \"a\") = {\"a\": 1}",
        )
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, usize::MAX)?;
        let fields = obj_arg(args, 0)?;
        for i in 1..args.len() {
            if !matches!(args[i].ty, SqlType::Known(DataType::Utf8)) {
                string_array_arg(args, i, "a string or an array of strings")?;
            }
        }
        Ok(match (fields, literal_keys(args, 1)) {
            (Some(f), Some(keys)) if keys.iter().all(|k| !k.contains('.')) => {
                project_type(&f, |n| keys.iter().any(|k| k == n))
            }
            _ => SqlType::Any,
        })
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let a = arrays(args, ctx);
        let Some(s) = as_struct(self.name(), &a[0], ctx) else {
            return Ok(Columnar::null());
        };
        let constant: Option<Vec<String>> = args[1..]
            .iter()
            .map(constant_keys)
            .collect::<Option<Vec<_>>>()
            .map(|ks| ks.into_iter().flatten().collect());
        if let Some(keys) = constant.filter(|ks| ks.iter().all(|k| !k.contains('.'))) {
            let keys: BTreeSet<String> = keys.into_iter().collect();
            return Ok(shape(args, project(s, |n| keys.contains(n))?));
        }
        let values = (0..s.len())
            .map(|row| {
                let m = obj_at(s, row)?;
                let mut out = Map::new();
                for k in a[1..].iter().filter_map(|arr| keys_at(arr, row)).flatten() {
                    pick(&m, &mut out, &k);
                }
                Some(Value::Object(out))
            })
            .collect();
        from_json(args, values)
    }
}

/// (name, documentation) of `extract`, which spreads an object into fields: the binder answers these calls itself, outside the
/// registry, and they appear in the same catalogue.
pub(super) const BINDER_DOCS: &[(&str, FunctionDoc)] = &[(
    "extract",
    FunctionDoc::new(
        "multi-column",
        "extract(object)",
        "The object's keys become output fields (SELECT only).",
        "SELECT extract(payload) FROM s",
    ),
)];
