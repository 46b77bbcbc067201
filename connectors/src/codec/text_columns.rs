//! Text fields (of delimited and urlencoded payloads) into Arrow columns typed by a stream's
//! schema.
//!
//! A message's fields are cast all together before any is appended, so a message with one
//! value that does not fit its column (`"hot"` for a BIGINT) costs its own row only: the
//! reason goes to [`super::json::Decoded::errors`] and the other messages decode.
//!
//! Casts follow eKuiper's for text: BIGINT from an integer (or a whole float, `"3.0"`), FLOAT
//! from any number, BOOLEAN from Go's `ParseBool` words (`1`, `t`, `true`, `TRUE`, `0`, `f`,
//! ...), DATETIME from epoch milliseconds, RFC 3339 or `yyyy-MM-dd HH:mm:ss[.SSS]` (UTC),
//! BYTEA from the text's bytes, STRING as it is. Numbers and booleans may carry surrounding
//! spaces. An empty value is null for every type but STRING.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

/// One field's value as a payload carries it: one text, or several (a repeated urlencoded key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text<'a> {
    /// A single value.
    One(&'a str),
    /// Every value of a repeated key, in order.
    Many(Vec<&'a str>),
}

/// A cast value, waiting for the rest of its message to cast.
enum Cell<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Millis(i64),
    Bytes(&'a [u8]),
    List(Vec<&'a str>),
}

/// A column being filled.
enum Builder {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Binary(BinaryBuilder),
    Millis(TimestampMillisecondBuilder),
    Strings(ListBuilder<StringBuilder>),
}

/// The rows of one group of messages, in columns of `schema`; `'a` is the messages' lifetime.
pub(crate) struct TextColumns<'a> {
    schema: SchemaRef,
    builders: Vec<Builder>,
    rows: usize,
    /// One message's cast values, reused from row to row.
    cells: Vec<Cell<'a>>,
}

impl<'a> TextColumns<'a> {
    /// Columns for `schema`, whose types all pass [`supports`] (the DDL checks that).
    pub(crate) fn new(schema: SchemaRef, capacity: usize) -> Self {
        let builders: Vec<Builder> = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
                DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
                DataType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
                DataType::Binary => Builder::Binary(BinaryBuilder::with_capacity(capacity, 0)),
                DataType::Timestamp(..) => {
                    Builder::Millis(TimestampMillisecondBuilder::with_capacity(capacity))
                }
                DataType::List(_) => Builder::Strings(ListBuilder::new(StringBuilder::new())),
                _ => Builder::Utf8(StringBuilder::with_capacity(capacity, 0)),
            })
            .collect();
        TextColumns {
            cells: Vec::with_capacity(builders.len()),
            schema,
            builders,
            rows: 0,
        }
    }

    /// Appends one row: `values[i]` for column `i` (None: null). Nothing is appended when a
    /// value does not cast; the error says which field and value, in eKuiper's words.
    pub(crate) fn push(&mut self, values: &[Option<Text<'a>>]) -> Result<(), String> {
        let mut cells = std::mem::take(&mut self.cells);
        cells.clear();
        for (i, field) in self.schema.fields().iter().enumerate() {
            let cell = match values.get(i).and_then(Option::as_ref) {
                None => Cell::Null,
                Some(v) => cast(v, field.data_type()).map_err(|got| {
                    format!(
                        "field {} type mismatch: cannot convert {got} to {}",
                        field.name(),
                        type_name(field.data_type())
                    )
                })?,
            };
            cells.push(cell);
        }
        for (b, cell) in self.builders.iter_mut().zip(cells.drain(..)) {
            append(b, cell);
        }
        self.cells = cells;
        self.rows += 1;
        Ok(())
    }

    /// Rows appended so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The rows as one batch.
    pub(crate) fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| match b {
                Builder::Utf8(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Int64(b) => Arc::new(b.finish()),
                Builder::Float64(b) => Arc::new(b.finish()),
                Builder::Boolean(b) => Arc::new(b.finish()),
                Builder::Binary(b) => Arc::new(b.finish()),
                Builder::Millis(b) => Arc::new(b.finish()),
                // The builder's item field is `item`, nullable, as `FieldType::to_arrow` writes it.
                Builder::Strings(b) => Arc::new(b.finish()),
            })
            .collect();
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .expect("builders follow the schema")
    }
}

fn append(b: &mut Builder, cell: Cell<'_>) {
    match (b, cell) {
        (Builder::Utf8(b), Cell::Str(s)) => b.append_value(s),
        (Builder::Int64(b), Cell::Int(v)) => b.append_value(v),
        (Builder::Float64(b), Cell::Float(v)) => b.append_value(v),
        (Builder::Boolean(b), Cell::Bool(v)) => b.append_value(v),
        (Builder::Binary(b), Cell::Bytes(v)) => b.append_value(v),
        (Builder::Millis(b), Cell::Millis(v)) => b.append_value(v),
        (Builder::Strings(b), Cell::List(items)) => {
            for s in items {
                b.values().append_value(s);
            }
            b.append(true);
        }
        (Builder::Strings(b), Cell::Str(s)) => {
            b.values().append_value(s);
            b.append(true);
        }
        (Builder::Utf8(b), _) => b.append_null(),
        (Builder::Int64(b), _) => b.append_null(),
        (Builder::Float64(b), _) => b.append_null(),
        (Builder::Boolean(b), _) => b.append_null(),
        (Builder::Binary(b), _) => b.append_null(),
        (Builder::Millis(b), _) => b.append_null(),
        (Builder::Strings(b), _) => b.append(false),
    }
}

/// The value cast to `t`, or how the value reads in the error (Go's `string(x)`).
fn cast<'a>(v: &Text<'a>, t: &DataType) -> Result<Cell<'a>, String> {
    let s = match (v, t) {
        (Text::Many(items), DataType::List(_)) => return Ok(Cell::List(items.clone())),
        (Text::One(s), DataType::List(_)) => return Ok(Cell::Str(s)),
        (Text::Many(items), _) => return Err(format!("[]string({})", items.join(" "))),
        (Text::One(s), _) => *s,
    };
    if t == &DataType::Utf8 {
        return Ok(Cell::Str(s));
    }
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Ok(Cell::Null);
    }
    let bad = || format!("string({s})");
    match t {
        DataType::Int64 => trimmed
            .parse::<i64>()
            .ok()
            .or_else(|| {
                trimmed
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .map(Cell::Int)
            .ok_or_else(bad),
        DataType::Float64 => trimmed.parse::<f64>().map(Cell::Float).map_err(|_| bad()),
        DataType::Boolean => match trimmed {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Cell::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Cell::Bool(false)),
            _ => Err(bad()),
        },
        DataType::Binary => Ok(Cell::Bytes(s.as_bytes())),
        DataType::Timestamp(..) => millis(trimmed).map(Cell::Millis).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A datetime's epoch milliseconds from its text.
fn millis(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|d| d.and_utc().timestamp_millis())
            })
    })
}

/// eKuiper's name of a column type, for errors.
fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "bigint",
        DataType::Float64 => "float",
        DataType::Boolean => "boolean",
        DataType::Binary => "bytea",
        DataType::Timestamp(..) => "datetime",
        DataType::List(_) => "array",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Int64Type, Schema, TimeUnit, TimestampMillisecondType};

    #[test]
    fn casts_each_type_and_keeps_a_bad_message_out() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let mut c = TextColumns::new(schema, 2);
        let row = |v: [&'static str; 5]| v.map(|s| Some(Text::One(s))).to_vec();
        c.push(&row(["7", " 2.5", "t", "1970-01-01T00:00:01Z", "x"]))
            .unwrap();
        let err = c.push(&row(["hot", "1", "1", "0", "y"])).unwrap_err();
        assert_eq!(
            err,
            "field n type mismatch: cannot convert string(hot) to bigint"
        );
        c.push(&row(["3.0", "", "FALSE", "2000", ""])).unwrap();
        c.push(&[None, None]).unwrap();
        let b = c.finish();
        assert_eq!(b.num_rows(), 3);
        let n = b.column(0).as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.value(1), n.is_null(2)), (7, 3, true));
        assert!(b.column(1).is_null(1));
        assert!(!b.column(2).as_boolean().value(1));
        let t = b.column(3).as_primitive::<TimestampMillisecondType>();
        assert_eq!((t.value(0), t.value(1)), (1000, 2000));
        assert_eq!(b.column(4).as_string::<i32>().value(1), "");
    }
}
