//! From an arrow batch to bound values, and from a batch to a few fixed-size INSERTs.
//!
//! Values never enter the SQL text: a statement is `INSERT INTO t (cols) VALUES (?,..),(?,..)`
//! and the values travel as parameters of a prepared statement. Column names do enter it, so
//! they are checked and backtick-quoted ([`crate::config::quote_ident`]).

use std::sync::Arc;

use mysql_async::{Params, Value};
use quiver_plugin_abi::sdk::arrow::array::{Array, AsArray};
use quiver_plugin_abi::sdk::arrow::datatypes::{
    DataType, Date32Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use quiver_plugin_abi::sdk::arrow::record_batch::RecordBatch;
use quiver_plugin_abi::sdk::{Error, cell_value};

use crate::config::quote_ident;

/// At most this many placeholders in one statement (the protocol's limit).
pub const MAX_PLACEHOLDERS: usize = 65_535;
/// The largest chunk, in rows. Each distinct chunk length is one more prepared statement in a
/// connection's 32-entry cache, so chunks take one of a few fixed lengths (see [`chunk_sizes`]).
pub const MAX_CHUNK_ROWS: usize = 1_000;

/// One batch, ready to write: its columns and its values, row after row.
#[derive(Debug)]
pub struct Job {
    /// The quoted column list: `` `a`,`b` ``.
    pub columns: Arc<str>,
    /// The number of columns.
    pub width: usize,
    /// The number of rows.
    pub rows: usize,
    /// `rows * width` values, row-major.
    pub values: Vec<Value>,
    /// `bytes[i]`: the encoded size of rows `0..i` (a prefix sum, `rows + 1` entries).
    pub bytes: Vec<usize>,
}

impl Job {
    /// The values of rows `start..start + len`.
    pub fn chunk(&self, start: usize, len: usize) -> &[Value] {
        &self.values[start * self.width..(start + len) * self.width]
    }
}

/// Converts a batch: one column per field, in the batch's order (the host applied `fields`).
pub fn prepare(
    batch: &RecordBatch,
    columns_cache: &mut Option<(Vec<String>, Arc<str>)>,
) -> Result<Job, Error> {
    let schema = batch.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    if names.is_empty() {
        return Err("the rows have no fields to write".into());
    }
    let columns = match columns_cache {
        Some((cached, quoted)) if *cached == names => quoted.clone(),
        _ => {
            let quoted: Arc<str> = names
                .iter()
                .map(|n| quote_ident(n))
                .collect::<Result<Vec<_>, _>>()?
                .join(",")
                .into();
            *columns_cache = Some((names.clone(), quoted.clone()));
            quoted
        }
    };
    let width = names.len();
    let rows = batch.num_rows();
    let mut values = vec![Value::NULL; rows * width];
    let mut sizes = vec![0usize; rows];
    for (c, column) in batch.columns().iter().enumerate() {
        for (row, size) in sizes.iter_mut().enumerate() {
            let v = value(column.as_ref(), row);
            *size += encoded_len(&v);
            values[row * width + c] = v;
        }
    }
    let mut bytes = Vec::with_capacity(rows + 1);
    bytes.push(0);
    let mut total = 0;
    for s in sizes {
        total += s;
        bytes.push(total);
    }
    Ok(Job {
        columns,
        width,
        rows,
        values,
        bytes,
    })
}

/// About how many bytes a value takes in an execute packet.
fn encoded_len(v: &Value) -> usize {
    match v {
        Value::Bytes(b) => b.len() + 9,
        Value::NULL => 1,
        _ => 12,
    }
}

/// The value of one cell as a statement parameter.
///
/// Integers are BIGINT, floats DOUBLE, strings and binaries bytes, booleans 0/1, timestamps
/// DATETIME (UTC, microseconds), dates DATE, lists and records JSON text, anything else
/// its display text.
pub fn value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::NULL;
    }
    match array.data_type() {
        DataType::Null => Value::NULL,
        DataType::Boolean => Value::Int(i64::from(array.as_boolean().value(row))),
        DataType::Int8 => Value::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::Int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Value::Int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => Value::UInt(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => Value::Double(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => {
            Value::Double(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => Value::Double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::Bytes(array.as_string::<i32>().value(row).as_bytes().to_vec()),
        DataType::LargeUtf8 => {
            Value::Bytes(array.as_string::<i64>().value(row).as_bytes().to_vec())
        }
        DataType::Utf8View => Value::Bytes(array.as_string_view().value(row).as_bytes().to_vec()),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000
                }
            };
            datetime(micros)
        }
        DataType::Date32 => {
            datetime(i64::from(array.as_primitive::<Date32Type>().value(row)) * 86_400_000_000)
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::Struct(_) | DataType::Map(..) => {
            Value::Bytes(cell_value(array, row).to_string().into_bytes())
        }
        _ => match cell_value(array, row) {
            quiver_plugin_abi::sdk::serde_json::Value::String(s) => Value::Bytes(s.into_bytes()),
            other => Value::Bytes(other.to_string().into_bytes()),
        },
    }
}

/// A DATETIME parameter from microseconds since the epoch, in UTC.
pub fn datetime(micros: i64) -> Value {
    let secs = micros.div_euclid(1_000_000);
    let micro = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Value::Date(
        year.clamp(0, 9999) as u16,
        month,
        day,
        (s / 3_600) as u8,
        (s % 3_600 / 60) as u8,
        (s % 60) as u8,
        micro,
    )
}

/// The chunk lengths for `width` columns, longest first: the most rows that fit in the
/// placeholder limit (at most [`MAX_CHUNK_ROWS`]), then the powers of two below it. Any
/// remainder is a sum of them, so a column list needs at most 11 prepared statements.
pub fn chunk_sizes(width: usize) -> Vec<usize> {
    let top = (MAX_PLACEHOLDERS / width.max(1)).clamp(1, MAX_CHUNK_ROWS);
    let mut sizes = vec![top];
    let mut p = top.next_power_of_two() / 2;
    while p >= 1 {
        if p < top {
            sizes.push(p);
        }
        p /= 2;
    }
    sizes
}

/// Splits a job into `(start, len)` chunks: each the longest fixed length that fits the rows
/// left and the packet budget (a single row over the budget goes alone).
pub fn plan(job: &Job, budget: usize) -> Vec<(usize, usize)> {
    let sizes = chunk_sizes(job.width);
    let mut out = Vec::new();
    let mut start = 0;
    while start < job.rows {
        let left = job.rows - start;
        let len = sizes
            .iter()
            .copied()
            .find(|&n| n <= left && job.bytes[start + n] - job.bytes[start] <= budget)
            .unwrap_or(1);
        out.push((start, len));
        start += len;
    }
    out
}

/// The statements that write `job` into `table`, each with the row of the batch it starts at:
/// one INSERT per chunk of [`plan`], its values bound.
pub fn statements<'a>(
    job: &'a Job,
    table: &'a str,
    budget: usize,
) -> impl Iterator<Item = (usize, String, Params)> + 'a {
    plan(job, budget).into_iter().map(move |(start, len)| {
        (
            start,
            insert_sql(table, &job.columns, job.width, len),
            Params::Positional(job.chunk(start, len).to_vec()),
        )
    })
}

/// `INSERT INTO t (cols) VALUES (?,?),(?,?)` for `rows` rows.
pub fn insert_sql(table: &str, columns: &str, width: usize, rows: usize) -> String {
    let mut one = String::with_capacity(width * 2 + 1);
    one.push('(');
    for i in 0..width {
        if i > 0 {
            one.push(',');
        }
        one.push('?');
    }
    one.push(')');
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    sql.reserve((one.len() + 1) * rows);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    sql
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quiver_plugin_abi::sdk::arrow::array::{
        ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    };

    use super::*;

    #[test]
    fn cells_become_typed_parameters() {
        let batch = RecordBatch::try_from_iter([
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(7), None])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![1.5, 2.0])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["a'b", "é"])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_123, 0])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let job = prepare(&batch, &mut None).expect("job");
        assert_eq!(&*job.columns, "`n`,`x`,`s`,`b`,`ts`");
        assert_eq!(
            job.chunk(0, 1),
            [
                Value::Int(7),
                Value::Double(1.5),
                Value::Bytes(b"a'b".to_vec()),
                Value::Int(1),
                Value::Date(2023, 11, 14, 22, 13, 20, 123_000)
            ]
        );
        assert_eq!(job.chunk(1, 1)[0], Value::NULL);
        assert_eq!(job.chunk(1, 1)[4], Value::Date(1970, 1, 1, 0, 0, 0, 0));
        assert_eq!(datetime(-1), Value::Date(1969, 12, 31, 23, 59, 59, 999_999));
        assert_eq!(
            datetime(951_782_400_000_000),
            Value::Date(2000, 2, 29, 0, 0, 0, 0)
        );
    }

    #[test]
    fn chunks_take_a_few_fixed_lengths_within_the_limits() {
        assert_eq!(
            chunk_sizes(3),
            [1000, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]
        );
        assert_eq!(chunk_sizes(100)[0], 655);
        assert_eq!(chunk_sizes(70_000), [1]);
        let job = Job {
            columns: "`a`".into(),
            width: 1,
            rows: 2_503,
            values: vec![Value::Int(1); 2_503],
            bytes: (0..=2_503).map(|i| i * 10).collect(),
        };
        let chunks = plan(&job, usize::MAX);
        let lens: Vec<usize> = chunks.iter().map(|c| c.1).collect();
        assert_eq!(lens, [1000, 1000, 256, 128, 64, 32, 16, 4, 2, 1]);
        assert_eq!(chunks.iter().map(|c| c.1).sum::<usize>(), 2_503);
        // A small packet budget makes chunks shorter, never longer than the budget allows.
        let small = plan(&job, 100);
        assert!(small.iter().all(|c| c.1 <= 8), "{small:?}");
        assert_eq!(small.iter().map(|c| c.1).sum::<usize>(), 2_503);
        assert_eq!(
            insert_sql("`t`", "`a`,`b`", 2, 2),
            "INSERT INTO `t` (`a`,`b`) VALUES (?,?),(?,?)"
        );
    }
}
