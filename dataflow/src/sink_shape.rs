//! eKuiper's `dataField`, `fields` and `excludeFields`: which rows and fields an action sends.
//!
//! They compose in eKuiper's order. `dataTemplate` goes first: when an action has one, the
//! others apply to the JSON it renders ([`Shape::json`]). Then `dataField` picks the rows
//! nested in one field, `fields` keeps and orders fields, and `excludeFields` drops fields
//! ([`Shape::rows`] on Arrow batches, for every sink type).
//!
//! `dataField` reads eKuiper's way: from every row with `sendSingle`, else from the first row
//! only (a result list is one message there, and the field is looked up in its first element).
//! An object becomes one row, a list of objects one row each, a null nothing. Any other value
//! fails the emission, which is counted as an exception with the reason.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StructArray, UInt32Array};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde_json::Value;

/// What an action sends of each emission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// `dataField` (or `tableDataField`): the field holding the rows to send.
    pub data_field: Option<String>,
    /// `fields`: the fields to keep, in this order.
    pub fields: Option<Vec<String>>,
    /// `excludeFields`: the fields to leave out.
    pub exclude_fields: Vec<String>,
    /// `sendSingle`: `dataField` is read from every row, not only the first.
    pub send_single: bool,
}

impl Shape {
    /// True when the emission goes out as it is.
    pub fn is_identity(&self) -> bool {
        self.data_field.is_none() && self.fields.is_none() && self.exclude_fields.is_empty()
    }

    /// The rows to send of `batch`; the error says why none can be.
    pub fn rows(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        let batch = match &self.data_field {
            Some(name) => self.pick(&batch, name)?,
            None => batch,
        };
        let schema = batch.schema();
        let keep: Vec<usize> = match &self.fields {
            Some(fields) => fields
                .iter()
                .filter_map(|f| schema.index_of(f).ok())
                .collect(),
            None => (0..schema.fields().len()).collect(),
        };
        let keep: Vec<usize> = keep
            .into_iter()
            .filter(|i| !self.exclude_fields.contains(schema.field(*i).name()))
            .collect();
        if keep.len() == schema.fields().len() && keep.iter().enumerate().all(|(a, b)| a == *b) {
            return Ok(batch);
        }
        let out = Schema::new(
            keep.iter()
                .map(|i| schema.field(*i).clone())
                .collect::<Vec<_>>(),
        );
        let cols = keep.iter().map(|i| batch.column(*i).clone()).collect();
        RecordBatch::try_new_with_options(
            Arc::new(out),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| e.to_string())
    }

    /// The rows nested in field `name`: its objects, or the objects of its lists.
    fn pick(&self, batch: &RecordBatch, name: &str) -> Result<RecordBatch, String> {
        let Some(column) = batch.column_by_name(name) else {
            return Err(format!("dataField \"{name}\" is not a field of the result"));
        };
        let rows = if self.send_single {
            batch.num_rows()
        } else {
            batch.num_rows().min(1)
        };
        let (values, indices): (ArrayRef, Vec<u32>) = match column.data_type() {
            DataType::Struct(_) => (
                column.clone(),
                (0..rows)
                    .filter(|r| column.is_valid(*r))
                    .map(|r| r as u32)
                    .collect(),
            ),
            DataType::List(item) if matches!(item.data_type(), DataType::Struct(_)) => {
                let list = column.as_list::<i32>();
                let values = list.values().clone();
                let mut indices = Vec::new();
                for r in (0..rows).filter(|r| list.is_valid(*r)) {
                    let (start, end) = (list.value_offsets()[r], list.value_offsets()[r + 1]);
                    indices.extend((start..end).filter(|i| values.is_valid(*i as usize)));
                }
                (values, indices.into_iter().map(|i| i as u32).collect())
            }
            other => {
                return Err(format!(
                    "dataField \"{name}\" holds {other}, not an object or a list of objects"
                ));
            }
        };
        let taken = arrow::compute::take(&values, &UInt32Array::from(indices), None)
            .map_err(|e| e.to_string())?;
        let structs: &StructArray = taken.as_struct();
        // The picked objects are valid rows; their own null mask says nothing more.
        let (fields, columns, _) = structs.clone().into_parts();
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(structs.len())),
        )
        .map_err(|e| e.to_string())
    }

    /// The same selection over a `dataTemplate`'s output, which must then be JSON.
    pub fn json(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut value: Value = serde_json::from_slice(payload).map_err(|e| {
            format!("dataTemplate output is not JSON, so dataField, fields and excludeFields cannot apply: {e}")
        })?;
        if let Some(name) = &self.data_field {
            let first = match value {
                Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
                other => other,
            };
            value = match first {
                Value::Object(mut m) => m.remove(name).unwrap_or(Value::Null),
                _ => Value::Null,
            };
        }
        let select = |v: Value| -> Value {
            let Value::Object(mut m) = v else {
                return v;
            };
            let mut out = match &self.fields {
                Some(fields) => fields
                    .iter()
                    .filter_map(|f| m.remove(f).map(|v| (f.clone(), v)))
                    .collect(),
                None => m,
            };
            for f in &self.exclude_fields {
                out.remove(f);
            }
            Value::Object(out)
        };
        let value = match value {
            Value::Array(items) => Value::Array(items.into_iter().map(select).collect()),
            other => select(other),
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::json::ReaderBuilder;
    use serde_json::json;

    /// A batch from JSON rows, with the types arrow-json infers (objects as STRUCT).
    fn batch(rows: &[Value]) -> RecordBatch {
        let schema = arrow::json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))
            .expect("schema");
        let mut d = ReaderBuilder::new(Arc::new(schema))
            .build_decoder()
            .expect("decoder");
        d.serialize(rows).expect("rows");
        d.flush().expect("flush").expect("a batch")
    }

    fn json_rows(b: &RecordBatch) -> Vec<Value> {
        let mut w = arrow::json::ArrayWriter::new(Vec::new());
        w.write(b).unwrap();
        w.finish().unwrap();
        let out = w.into_inner();
        if out.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice::<Vec<Value>>(&out).unwrap()
    }

    fn shape(data_field: Option<&str>, fields: Option<&[&str]>, exclude: &[&str]) -> Shape {
        Shape {
            data_field: data_field.map(str::to_string),
            fields: fields.map(|f| f.iter().map(|s| s.to_string()).collect()),
            exclude_fields: exclude.iter().map(|s| s.to_string()).collect(),
            send_single: false,
        }
    }

    #[test]
    fn data_field_then_fields_then_exclude_fields() {
        let b = batch(&[
            json!({"id": 1, "d": [{"a": 1, "b": "x", "c": true}, {"a": 2, "b": "y", "c": false}]}),
            json!({"id": 2, "d": [{"a": 3, "b": "z", "c": true}]}),
        ]);
        // Without sendSingle only the first row's list is read, as eKuiper reads a result list.
        let s = shape(Some("d"), Some(&["c", "a", "b"]), &["b"]);
        assert_eq!(
            json_rows(&s.rows(b.clone()).unwrap()),
            vec![json!({"c": true, "a": 1}), json!({"c": false, "a": 2})]
        );
        let s = Shape {
            send_single: true,
            ..shape(Some("d"), None, &["c"])
        };
        assert_eq!(
            json_rows(&s.rows(b).unwrap()),
            vec![
                json!({"a": 1, "b": "x"}),
                json!({"a": 2, "b": "y"}),
                json!({"a": 3, "b": "z"})
            ]
        );
    }

    #[test]
    fn an_object_field_is_one_row_and_a_scalar_is_an_error() {
        let b = batch(&[
            json!({"id": 1, "o": {"t": 20.5}}),
            json!({"id": 2, "o": null}),
        ]);
        let s = Shape {
            send_single: true,
            ..shape(Some("o"), None, &[])
        };
        assert_eq!(
            json_rows(&s.rows(b.clone()).unwrap()),
            vec![json!({"t": 20.5})]
        );
        let e = shape(Some("id"), None, &[]).rows(b.clone()).unwrap_err();
        assert_eq!(
            e,
            "dataField \"id\" holds Int64, not an object or a list of objects"
        );
        let e = shape(Some("nope"), None, &[]).rows(b).unwrap_err();
        assert_eq!(e, "dataField \"nope\" is not a field of the result");
    }

    #[test]
    fn exclude_fields_alone_keeps_the_rest_in_order() {
        let b = batch(&[json!({"a": 1, "b": 2, "c": 3})]);
        let s = shape(None, None, &["b", "missing"]);
        assert_eq!(
            json_rows(&s.rows(b).unwrap()),
            vec![json!({"a": 1, "c": 3})]
        );
    }

    #[test]
    fn template_output_is_shaped_as_json() {
        let s = shape(Some("data"), Some(&["x"]), &[]);
        let out = s
            .json(br#"[{"data": [{"x": 1, "y": 2}, {"x": 3}]}, {"data": []}]"#)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!([{"x": 1}, {"x": 3}])
        );
        let s = shape(None, None, &["y"]);
        let out = s.json(br#"{"x": 1, "y": 2}"#).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"x": 1})
        );
        assert!(s.json(b"not json").unwrap_err().contains("not JSON"));
    }
}
