//! Vectorised evaluation over Arrow arrays.
//!
//! Contract: evaluating an expression over a batch never fails the batch for a bad row. A row
//! whose value cannot be computed (division by zero, a failed cast, an operator applied to the
//! wrong types in schemaless data) gets a null result and is flagged in [`RowErrors`]; the
//! operator drops flagged rows and counts them as exceptions, and the rule keeps running.

pub mod access;
pub mod ops;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, NullArray, StringArray, UInt32Array,
    new_null_array,
};
use arrow::compute::take;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

/// The result of evaluating an expression: a full column, or one value for every row.
#[derive(Debug, Clone)]
pub enum Columnar {
    /// One value per row.
    Array(ArrayRef),
    /// A single value (an array of length 1) that applies to every row.
    Scalar(ArrayRef),
}

impl Columnar {
    /// The Arrow type of the values.
    pub fn data_type(&self) -> &DataType {
        match self {
            Columnar::Array(a) | Columnar::Scalar(a) => a.data_type(),
        }
    }

    /// The values as an array of `len` rows, repeating a scalar.
    pub fn into_array(self, len: usize) -> ArrayRef {
        match self {
            Columnar::Array(a) => a,
            Columnar::Scalar(s) => repeat(&s, len),
        }
    }

    /// The underlying array (length 1 for a scalar).
    pub fn array(&self) -> &ArrayRef {
        match self {
            Columnar::Array(a) | Columnar::Scalar(a) => a,
        }
    }

    /// True for a scalar.
    pub fn is_scalar(&self) -> bool {
        matches!(self, Columnar::Scalar(_))
    }

    /// Maps the underlying array, keeping scalar-ness.
    pub fn map(self, f: impl FnOnce(ArrayRef) -> Result<ArrayRef, String>) -> Result<Self, String> {
        Ok(match self {
            Columnar::Array(a) => Columnar::Array(f(a)?),
            Columnar::Scalar(s) => Columnar::Scalar(f(s)?),
        })
    }

    /// A null of type `Null` for every row.
    pub fn null() -> Self {
        Columnar::Scalar(Arc::new(NullArray::new(1)))
    }
}

impl arrow::array::Datum for Columnar {
    fn get(&self) -> (&dyn Array, bool) {
        match self {
            Columnar::Array(a) => (a.as_ref(), false),
            Columnar::Scalar(s) => (s.as_ref(), true),
        }
    }
}

/// Repeats the first value of `scalar` `len` times.
pub fn repeat(scalar: &ArrayRef, len: usize) -> ArrayRef {
    if scalar.len() == len {
        return scalar.clone();
    }
    if scalar.data_type() == &DataType::Null {
        return Arc::new(NullArray::new(len));
    }
    if scalar.is_null(0) {
        return new_null_array(scalar.data_type(), len);
    }
    let idx = UInt32Array::from(vec![0u32; len]);
    take(scalar.as_ref(), &idx, None).expect("take of index 0 from a one-row array")
}

/// A constant in SQL text.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `NULL` / `nil`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A number literal with a fraction or exponent.
    Float(f64),
    /// A quoted string.
    String(String),
}

impl Literal {
    /// The literal as a one-row array.
    pub fn to_scalar(&self) -> Columnar {
        let arr: ArrayRef = match self {
            Literal::Null => Arc::new(NullArray::new(1)),
            Literal::Bool(b) => Arc::new(BooleanArray::from(vec![*b])),
            Literal::Int(i) => Arc::new(Int64Array::from(vec![*i])),
            Literal::Float(f) => Arc::new(Float64Array::from(vec![*f])),
            Literal::String(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        };
        Columnar::Scalar(arr)
    }

    /// The Arrow type of the literal.
    pub fn data_type(&self) -> DataType {
        match self {
            Literal::Null => DataType::Null,
            Literal::Bool(_) => DataType::Boolean,
            Literal::Int(_) => DataType::Int64,
            Literal::Float(_) => DataType::Float64,
            Literal::String(_) => DataType::Utf8,
        }
    }
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::String(s) => write!(f, "\"{}\"", s.replace('"', "\\\"")),
        }
    }
}

/// Rows of the current batch whose evaluation failed, with the first reason; in detailed mode
/// (a rule with `sendError`, whose sinks receive each failure) every row's own reason too.
#[derive(Debug, Clone, Default)]
pub struct RowErrors {
    flags: Option<Vec<bool>>,
    first: Option<String>,
    len: usize,
    /// Each failed row's reason, kept only in detailed mode (it costs a string per failure).
    reasons: Option<Vec<Option<String>>>,
    detailed: bool,
}

impl RowErrors {
    /// No errors yet, for a batch of `len` rows.
    pub fn new(len: usize) -> Self {
        RowErrors {
            flags: None,
            first: None,
            len,
            reasons: None,
            detailed: false,
        }
    }

    /// Like [`RowErrors::new`], keeping every failed row's own reason.
    pub fn detailed(len: usize) -> Self {
        RowErrors {
            detailed: true,
            ..RowErrors::new(len)
        }
    }

    /// True when every row's reason is kept.
    pub fn is_detailed(&self) -> bool {
        self.detailed
    }

    fn flags_mut(&mut self) -> &mut Vec<bool> {
        let len = self.len;
        self.flags.get_or_insert_with(|| vec![false; len])
    }

    /// Marks `row` failed; in detailed mode the row keeps its first reason.
    fn mark(&mut self, row: usize, reason: &str) {
        self.flags_mut()[row] = true;
        if self.detailed {
            let len = self.len;
            let slot = &mut self.reasons.get_or_insert_with(|| vec![None; len])[row];
            if slot.is_none() {
                *slot = Some(reason.to_string());
            }
        }
    }

    /// Flags row `row` with `reason` (only the first reason of the batch is kept, unless
    /// detailed).
    pub fn flag(&mut self, row: usize, reason: impl FnOnce() -> String) {
        if self.detailed {
            let r = reason();
            if self.first.is_none() {
                self.first = Some(r.clone());
            }
            self.mark(row, &r);
            return;
        }
        if self.first.is_none() {
            self.first = Some(reason());
        }
        self.flags_mut()[row] = true;
    }

    /// Flags every row where `mask` is true (and valid).
    pub fn flag_mask(&mut self, mask: &BooleanArray, reason: impl FnOnce() -> String) {
        let mut reason = Some(reason);
        let mut text: Option<String> = None;
        for row in 0..mask.len().min(self.len) {
            if mask.is_valid(row) && mask.value(row) {
                if let Some(r) = reason.take() {
                    let r = r();
                    if self.first.is_none() {
                        self.first = Some(r.clone());
                    }
                    text = Some(r);
                }
                self.mark(row, text.as_deref().unwrap_or_default());
            }
        }
    }

    /// Flags every row.
    pub fn flag_all(&mut self, reason: String) {
        if self.len == 0 {
            return;
        }
        for row in 0..self.len {
            if self.detailed {
                self.mark(row, &reason);
            }
        }
        if self.first.is_none() {
            self.first = Some(reason);
        }
        self.flags = Some(vec![true; self.len]);
    }

    /// Adds the errors of a sub-evaluation, only for rows where `relevant` is true
    /// (all rows when `None`). Used by CASE, AND and OR, whose branches apply to some rows.
    pub fn merge(&mut self, other: RowErrors, relevant: Option<&BooleanArray>) {
        self.merge_with(other, relevant, "");
    }

    /// Adds the errors of a sub-evaluation over all rows, each reason behind `prefix`
    /// (a SELECT field's `expr: ... meet error, err:`). Rows that already failed keep their
    /// reason, so merging fields in evaluation order reports each row's first failure.
    pub fn merge_prefixed(&mut self, other: RowErrors, prefix: &str) {
        self.merge_with(other, None, prefix);
    }

    fn merge_with(&mut self, other: RowErrors, relevant: Option<&BooleanArray>, prefix: &str) {
        let Some(flags) = other.flags else { return };
        let first = other.first.unwrap_or_default();
        let reasons = other.reasons;
        for (row, failed) in flags.into_iter().enumerate() {
            let applies = relevant.is_none_or(|m| m.is_valid(row) && m.value(row));
            if failed && applies {
                let own = reasons
                    .as_ref()
                    .and_then(|r| r[row].as_deref())
                    .unwrap_or(&first);
                if self.first.is_none() {
                    self.first = Some(format!("{prefix}{own}"));
                }
                if self.detailed {
                    self.mark(row, &format!("{prefix}{own}"));
                } else {
                    self.flags_mut()[row] = true;
                }
            }
        }
    }

    /// Each failed row's reason, in row order (the batch's first reason for every row unless
    /// detailed).
    pub fn reasons(&self) -> Vec<String> {
        let Some(flags) = &self.flags else {
            return Vec::new();
        };
        let first = self.first.clone().unwrap_or_default();
        flags
            .iter()
            .enumerate()
            .filter(|(_, f)| **f)
            .map(|(row, _)| {
                self.reasons
                    .as_ref()
                    .and_then(|r| r[row].clone())
                    .unwrap_or_else(|| first.clone())
            })
            .collect()
    }

    /// Number of flagged rows.
    pub fn count(&self) -> usize {
        self.flags
            .as_ref()
            .map_or(0, |f| f.iter().filter(|b| **b).count())
    }

    /// True when no row failed.
    pub fn is_empty(&self) -> bool {
        self.flags.is_none()
    }

    /// The first failure's reason.
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// A mask that is true for the rows that did not fail, if any failed.
    pub fn ok_mask(&self) -> Option<BooleanArray> {
        self.flags
            .as_ref()
            .map(|f| f.iter().map(|failed| Some(!failed)).collect())
    }
}

/// What a running rule tells the expressions it evaluates (`rule_id()`, `rule_start()`).
#[derive(Debug, Clone, Default)]
pub struct RuleContext {
    /// The rule's id.
    pub id: String,
    /// When the current run started, epoch milliseconds.
    pub start_ms: i64,
}

thread_local! {
    static RULE: std::cell::RefCell<Option<std::sync::Arc<RuleContext>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `rule` as the rule whose rows are being evaluated on this thread. A worker
/// thread runs many rules, one operator at a time, so operators set it around their work
/// instead of threading it through every evaluation.
pub fn with_rule_context<T>(rule: &std::sync::Arc<RuleContext>, f: impl FnOnce() -> T) -> T {
    let previous = RULE.with(|r| r.replace(Some(rule.clone())));
    let out = f();
    RULE.with(|r| *r.borrow_mut() = previous);
    out
}

/// The rule being evaluated on this thread, if an operator set one.
pub fn rule_context() -> Option<std::sync::Arc<RuleContext>> {
    RULE.with(|r| r.borrow().clone())
}

/// Per-batch evaluation state.
#[derive(Debug)]
pub struct EvalContext {
    /// Rows that failed so far.
    pub errors: RowErrors,
    /// Processing time of the batch, milliseconds since the epoch (`now()`).
    pub now_ms: i64,
    /// Rows in the batch.
    pub rows: usize,
}

impl EvalContext {
    /// A context for a batch of `rows` rows.
    pub fn new(rows: usize) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        EvalContext {
            errors: RowErrors::new(rows),
            now_ms,
            rows,
        }
    }

    /// A context for a batch of `rows` rows that keeps every failed row's reason.
    pub fn detailed(rows: usize) -> Self {
        EvalContext {
            errors: RowErrors::detailed(rows),
            ..EvalContext::new(rows)
        }
    }

    /// A context for a sub-evaluation over the same rows, with its own error set (detailed
    /// when this one is).
    pub fn child(&self) -> Self {
        EvalContext {
            errors: if self.errors.is_detailed() {
                RowErrors::detailed(self.rows)
            } else {
                RowErrors::new(self.rows)
            },
            now_ms: self.now_ms,
            rows: self.rows,
        }
    }
}

/// True when row `i` holds a value (false for nulls and for columns of type Null, whose
/// validity arrow does not track).
pub fn present(arr: &dyn Array, i: usize) -> bool {
    arr.data_type() != &DataType::Null && arr.is_valid(i)
}

/// A filter mask: true where `b` is true, false where it is false or null.
pub fn true_mask(b: &BooleanArray) -> BooleanArray {
    if b.null_count() == 0 {
        b.clone()
    } else {
        arrow::compute::prep_null_mask_filter(b)
    }
}

/// Looks a column up by name: exact match first, then ignoring ASCII case (eKuiper's lookup).
pub fn column_by_name<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    let schema = batch.schema_ref();
    if let Some((idx, _)) = schema.column_with_name(name) {
        return Some(batch.column(idx));
    }
    schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
        .map(|idx| batch.column(idx))
}

/// Formats the value at `row` for error messages as eKuiper (Go's `%T(%v)`) does:
/// `int64(3)`, `float64(2.5)`, `string(abc)`, `bool(true)`.
pub fn describe_value(arr: &dyn Array, row: usize) -> String {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};
    let value = match arr.data_type() {
        DataType::Int64 if arr.is_valid(row) => {
            arr.as_primitive::<Int64Type>().value(row).to_string()
        }
        DataType::Float64 if arr.is_valid(row) => {
            go_float(arr.as_primitive::<Float64Type>().value(row))
        }
        DataType::Null => "<nil>".to_string(),
        _ => {
            let opts = arrow::util::display::FormatOptions::default();
            arrow::util::display::ArrayFormatter::try_new(arr, &opts)
                .map(|f| f.value(row).to_string())
                .unwrap_or_default()
        }
    };
    format!("{}({value})", go_type_name(arr.data_type()))
}

/// Go's name of the type eKuiper holds a value of this Arrow type in.
fn go_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Null => "<nil>",
        DataType::Boolean => "bool",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt8 => "uint8",
        DataType::UInt16 => "uint16",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "time.Time",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "[]uint8",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            "[]interface {}"
        }
        DataType::Struct(_) | DataType::Map(..) => "map[string]interface {}",
        _ => "interface {}",
    }
}

/// A float as Go's `%v` prints it: the shortest digits, in exponent form from 1e+06 or below
/// 1e-04 (`2.5`, `3`, `1e+06`, `1.5e-05`).
fn go_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_described_with_gos_type_names_and_formatting() {
        let ints = arrow::array::Int64Array::from(vec![3]);
        let floats = arrow::array::Float64Array::from(vec![2.5, 3.0, 1e6, 123456.0, 1.5e-5]);
        let strings = arrow::array::StringArray::from(vec!["abc"]);
        assert_eq!(describe_value(&ints, 0), "int64(3)");
        assert_eq!(describe_value(&strings, 0), "string(abc)");
        let floats: Vec<String> = (0..5).map(|r| describe_value(&floats, r)).collect();
        assert_eq!(
            floats,
            [
                "float64(2.5)",
                "float64(3)",
                "float64(1e+06)",
                "float64(123456)",
                "float64(1.5e-05)"
            ]
        );
    }

    #[test]
    fn detailed_errors_keep_each_rows_first_reason() {
        let mut errors = RowErrors::detailed(3);
        errors.flag(2, || "late".into());
        let mut field = RowErrors::detailed(3);
        field.flag(0, || "bad".into());
        field.flag(2, || "worse".into());
        errors.merge_prefixed(field, "expr: x meet error, err:");
        assert_eq!(errors.reasons(), ["expr: x meet error, err:bad", "late"]);
        let mut plain = RowErrors::new(3);
        plain.flag(0, || "one".into());
        plain.flag(1, || "two".into());
        assert_eq!(plain.reasons(), ["one", "one"]);
    }
}
