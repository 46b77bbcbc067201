//! JSON functions: to_json, parse_json and the JSON path family (json_path_exists,
//! json_path_query, json_path_query_first).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, NullArray, StringArray};
use arrow::datatypes::{DataType, Schema};
use serde_json::{Map, Number, Value};
use serde_json_path::JsonPath;

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind, shape,
};
use crate::eval::{Columnar, EvalContext, Literal, present};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(ToJson));
    r.register(Arc::new(ParseJson));
    r.register(Arc::new(JsonPathExists));
    r.register(Arc::new(JsonPathQuery { first: false }));
    r.register(Arc::new(JsonPathQuery { first: true }));
}

/// A float as JSON: whole values as integers (eKuiper prints `1`, not `1.0`).
fn float_json(v: f64) -> Value {
    if v.is_finite() && v == v.trunc() && v.abs() < 9.0e15 {
        Value::Number(Number::from(v as i64))
    } else {
        Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// The JSON value of one row of `arr`; `None` for null. Struct keys are sorted and null
/// children are omitted.
pub(crate) fn value_to_json(arr: &dyn Array, row: usize) -> Option<Value> {
    if !present(arr, row) {
        return None;
    }
    use arrow::datatypes::*;
    Some(match arr.data_type() {
        DataType::Boolean => Value::Bool(arr.as_boolean().value(row)),
        DataType::Int8 => Value::from(arr.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(arr.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(arr.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(arr.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(arr.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(arr.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(arr.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(arr.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float_json(f64::from(arr.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float_json(arr.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(arr.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(arr.as_string::<i64>().value(row).to_string()),
        DataType::Struct(fields) => {
            let s = arr.as_struct();
            let mut children: Vec<(&str, Value)> = fields
                .iter()
                .zip(s.columns())
                .filter_map(|(f, c)| value_to_json(c.as_ref(), row).map(|v| (f.name().as_str(), v)))
                .collect();
            children.sort_by(|a, b| a.0.cmp(b.0));
            let mut m = Map::new();
            for (k, v) in children {
                m.insert(k.to_string(), v);
            }
            Value::Object(m)
        }
        DataType::List(_) => list_json(arr.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => list_json(arr.as_list::<i64>().value(row).as_ref()),
        _ => {
            let opts = arrow::util::display::FormatOptions::default();
            let text = arrow::util::display::ArrayFormatter::try_new(arr, &opts)
                .map(|f| f.value(row).to_string())
                .unwrap_or_default();
            Value::String(text)
        }
    })
}

fn list_json(values: &dyn Array) -> Value {
    Value::Array(
        (0..values.len())
            .map(|i| value_to_json(values, i).unwrap_or(Value::Null))
            .collect(),
    )
}

/// Numbers become floats (eKuiper's schemaless rule).
fn floats(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

/// Whole floats back to integers, for JSON text.
fn whole(v: Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Number(n), float_json),
        Value::Array(a) => Value::Array(a.into_iter().map(whole).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, whole(v))).collect()),
        other => other,
    }
}

/// Decodes one JSON value per row into an Arrow array whose type is inferred from the values:
/// objects become Struct, arrays List, numbers FLOAT. Falls back to JSON text when the values
/// do not share a type.
pub(crate) fn json_to_array(values: Vec<Option<Value>>) -> Result<ArrayRef, String> {
    let len = values.len();
    let rows: Vec<Value> = values
        .into_iter()
        .map(|v| {
            let mut m = Map::new();
            if let Some(v) = v.filter(|v| !v.is_null()) {
                m.insert("v".to_string(), floats(v));
            }
            Value::Object(m)
        })
        .collect();
    let decoded = if mixed_kinds(&rows) {
        Err("values of different kinds".to_string())
    } else {
        decode(&rows)
    };
    match decoded {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Ok(Arc::new(NullArray::new(len))),
        Err(_) => {
            let text: StringArray = rows
                .iter()
                .map(|r| r.get("v").map(|v| whole(v.clone()).to_string()))
                .collect();
            Ok(Arc::new(text))
        }
    }
}

/// True when some position (an object key or the items of an array, at any depth) holds
/// values of different kinds across `rows`, such as a number and a string: Arrow would coerce
/// them all to text, so the caller keeps JSON text instead.
fn mixed_kinds(rows: &[Value]) -> bool {
    fn kind(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    fn walk(v: &Value, path: &mut String, seen: &mut HashMap<String, u8>) -> bool {
        let k = kind(v);
        if k == 0 {
            return false;
        }
        if *seen.entry(path.clone()).or_insert(k) != k {
            return true;
        }
        let len = path.len();
        let mixed = match v {
            Value::Array(items) => {
                path.push_str("[]");
                items.iter().any(|i| walk(i, path, seen))
            }
            Value::Object(m) => m.iter().any(|(key, child)| {
                path.truncate(len);
                path.push('.');
                path.push_str(key);
                walk(child, path, seen)
            }),
            _ => false,
        };
        path.truncate(len);
        mixed
    }
    let mut seen = HashMap::new();
    let mut path = String::new();
    rows.iter().any(|r| walk(r, &mut path, &mut seen))
}

fn decode(rows: &[Value]) -> Result<Option<ArrayRef>, String> {
    let schema = arrow::json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))
        .map_err(|e| e.to_string())?;
    if schema.fields().is_empty() {
        return Ok(None);
    }
    let schema: Arc<Schema> = Arc::new(schema);
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(rows).map_err(|e| e.to_string())?;
    let batch = decoder
        .flush()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no rows decoded".to_string())?;
    if batch.num_rows() != rows.len() {
        return Err("row count mismatch".to_string());
    }
    Ok(Some(batch.column(0).clone()))
}

#[derive(Debug)]
struct ToJson;
impl ScalarFunction for ToJson {
    fn name(&self) -> &'static str {
        "to_json"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "json",
            syntax: "to_json(x)",
            description: "the JSON text of x (object keys sorted, whole floats without `.0`); null stays null",
            example: "to_json(a) = \"{\\\"x\\\":1,\\\"y\\\":\\\"b\\\"}\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let out: StringArray = (0..arr.len())
            .map(|row| value_to_json(arr.as_ref(), row).map(|v| v.to_string()))
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct ParseJson;
impl ScalarFunction for ParseJson {
    fn name(&self) -> &'static str {
        "parse_json"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "json",
            syntax: "parse_json(s)",
            description: "the value of the JSON text s (objects as structs, arrays as arrays, numbers as floats; values of different kinds in one batch stay JSON text); invalid JSON fails the row",
            example: "parse_json(\"{\\\"a\\\": 1}\")->a = 1",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        if matches!(
            args[0].literal,
            Some(Literal::Int(_) | Literal::Float(_) | Literal::Bool(_))
        ) {
            check_kind(args, 0, Kind::String)?;
        }
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = arrays(args, ctx).remove(0);
        let text = super::string::to_text(&arr)?;
        let mut values = Vec::with_capacity(text.len());
        for row in 0..text.len() {
            if !text.is_valid(row) {
                values.push(None);
                continue;
            }
            match serde_json::from_str::<Value>(text.value(row)) {
                Ok(v) => values.push(Some(v)),
                Err(e) => {
                    ctx.errors
                        .flag(row, || format!("parse_json: invalid JSON: {e}"));
                    values.push(None);
                }
            }
        }
        Ok(shape(args, json_to_array(values)?))
    }
}

/// Checks `(x, path)` and compiles a literal path.
fn path_args(args: &[ArgInfo]) -> Result<(), String> {
    check_arity(args, 2, 2)?;
    match &args[1].literal {
        Some(Literal::String(p)) => JsonPath::parse(p)
            .map(|_| ())
            .map_err(|_| format!("has an invalid JSON path \"{p}\"")),
        Some(Literal::Null) | None => check_kind(args, 1, Kind::String),
        Some(_) => Err("expects a JSON path string for argument 2".to_string()),
    }
}

/// A row's JSON document and compiled path.
type PathRow = (Value, Arc<JsonPath>);

/// For each row, the JSON document and the compiled path, or `None` for a null / failed row.
fn path_rows(
    name: &str,
    args: &[Columnar],
    ctx: &mut EvalContext,
) -> Result<Vec<Option<PathRow>>, String> {
    let cols = arrays(args, ctx);
    let (doc, paths) = (&cols[0], &cols[1]);
    let path_text = super::string::to_text(paths)?;
    let mut cache: HashMap<String, Result<Arc<JsonPath>, String>> = HashMap::new();
    let doc_text = match doc.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => Some(super::string::to_text(doc)?),
        _ => None,
    };
    let mut out = Vec::with_capacity(doc.len());
    for row in 0..doc.len() {
        if !present(doc.as_ref(), row) || !path_text.is_valid(row) {
            out.push(None);
            continue;
        }
        let p = path_text.value(row);
        let path = cache
            .entry(p.to_string())
            .or_insert_with(|| {
                JsonPath::parse(p)
                    .map(Arc::new)
                    .map_err(|_| format!("{name}: invalid JSON path \"{p}\""))
            })
            .clone();
        let value = match &doc_text {
            Some(text) => serde_json::from_str::<Value>(text.value(row))
                .map_err(|e| format!("{name}: invalid JSON: {e}")),
            None => Ok(value_to_json(doc.as_ref(), row).unwrap_or(Value::Null)),
        };
        match (value, path) {
            (Ok(v), Ok(p)) => out.push(Some((v, p))),
            (Err(e), _) | (_, Err(e)) => {
                ctx.errors.flag(row, || e);
                out.push(None);
            }
        }
    }
    Ok(out)
}

/// True when every path in `paths` is singular (only name and index selectors, RFC 9535), so
/// it matches at most one value: no `*`, `..`, filter, slice or selector list outside quotes.
fn is_singular(paths: &ArrayRef) -> bool {
    let Ok(text) = super::string::to_text(paths) else {
        return false;
    };
    text.iter().flatten().all(|p| {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        let mut escaped = false;
        for c in p.chars() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '\'' | '"' => quote = Some(c),
                '*' | '?' | ':' | ',' => return false,
                '.' if prev == '.' => return false,
                _ => {}
            }
            prev = c;
        }
        true
    })
}

#[derive(Debug)]
struct JsonPathExists;
impl ScalarFunction for JsonPathExists {
    fn name(&self) -> &'static str {
        "json_path_exists"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "json",
            syntax: "json_path_exists(x, path)",
            description: "true when the JSON path (RFC 9535) matches anything in x (a struct, an array or JSON text)",
            example: "json_path_exists(\"{\\\"a\\\": [1]}\", \"$.a[0]\") = true",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        path_args(args)?;
        Ok(SqlType::Known(DataType::Boolean))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let rows = path_rows(self.name(), args, ctx)?;
        let out: BooleanArray = rows
            .iter()
            .map(|r| r.as_ref().map(|(v, p)| !p.query(v).is_empty()))
            .collect();
        Ok(shape(args, Arc::new(out)))
    }
}

#[derive(Debug)]
struct JsonPathQuery {
    first: bool,
}
impl ScalarFunction for JsonPathQuery {
    fn name(&self) -> &'static str {
        if self.first {
            "json_path_query_first"
        } else {
            "json_path_query"
        }
    }
    fn doc(&self) -> FunctionDoc {
        if self.first {
            FunctionDoc {
                category: "json",
                syntax: "json_path_query_first(x, path)",
                description: "the first value the JSON path (RFC 9535) matches in x (a struct, an array or JSON text); missing when none",
                example: "json_path_query_first(\"{\\\"a\\\": [1, 2]}\", \"$.a[*]\") = 1",
            }
        } else {
            FunctionDoc {
                category: "json",
                syntax: "json_path_query(x, path)",
                description: "the values the JSON path (RFC 9535) matches in x (a struct, an array or JSON text): an array of every match, or for a singular path (names and indexes only) the match itself (missing when none)",
                example: "json_path_query(\"{\\\"a\\\": [1, 2]}\", \"$.a[*]\") = [1, 2]",
            }
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        path_args(args)?;
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let singular = is_singular(args[1].array());
        let rows = path_rows(self.name(), args, ctx)?;
        let values: Vec<Option<Value>> = rows
            .into_iter()
            .map(|r| {
                r.and_then(|(v, p)| {
                    let nodes = p.query(&v);
                    if self.first || singular {
                        nodes.first().cloned()
                    } else {
                        Some(Value::Array(nodes.iter().map(|n| (*n).clone()).collect()))
                    }
                })
            })
            .collect();
        Ok(shape(args, json_to_array(values)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_kinds_fall_back_to_text() {
        let same = json_to_array(vec![
            Some(serde_json::json!({"a": 1, "b": [1, 2]})),
            Some(serde_json::json!({"a": 2.5})),
            None,
        ])
        .unwrap();
        assert!(matches!(same.data_type(), DataType::Struct(_)));
        let mixed = json_to_array(vec![
            Some(serde_json::json!(["x", 2])),
            Some(serde_json::json!([])),
        ])
        .unwrap();
        assert_eq!(mixed.data_type(), &DataType::Utf8);
        assert_eq!(mixed.as_string::<i32>().value(0), "[\"x\",2]");
        let across_rows = json_to_array(vec![
            Some(serde_json::json!({"a": 1})),
            Some(serde_json::json!({"a": "one"})),
        ])
        .unwrap();
        assert_eq!(across_rows.data_type(), &DataType::Utf8);
    }
}
