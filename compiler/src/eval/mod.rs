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

/// Rows of the current batch whose evaluation failed, with the first reason.
#[derive(Debug, Clone, Default)]
pub struct RowErrors {
    flags: Option<Vec<bool>>,
    first: Option<String>,
    len: usize,
}

impl RowErrors {
    /// No errors yet, for a batch of `len` rows.
    pub fn new(len: usize) -> Self {
        RowErrors {
            flags: None,
            first: None,
            len,
        }
    }

    fn flags_mut(&mut self) -> &mut Vec<bool> {
        let len = self.len;
        self.flags.get_or_insert_with(|| vec![false; len])
    }

    /// Flags row `row` with `reason` (only the first reason of the batch is kept).
    pub fn flag(&mut self, row: usize, reason: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(reason());
        }
        self.flags_mut()[row] = true;
    }

    /// Flags every row where `mask` is true (and valid).
    pub fn flag_mask(&mut self, mask: &BooleanArray, reason: impl FnOnce() -> String) {
        let mut reason = Some(reason);
        for row in 0..mask.len().min(self.len) {
            if mask.is_valid(row) && mask.value(row) {
                if let Some(r) = reason.take()
                    && self.first.is_none()
                {
                    self.first = Some(r());
                }
                self.flags_mut()[row] = true;
            }
        }
    }

    /// Flags every row.
    pub fn flag_all(&mut self, reason: String) {
        if self.len == 0 {
            return;
        }
        if self.first.is_none() {
            self.first = Some(reason);
        }
        self.flags = Some(vec![true; self.len]);
    }

    /// Adds the errors of a sub-evaluation, only for rows where `relevant` is true
    /// (all rows when `None`). Used by CASE, AND and OR, whose branches apply to some rows.
    pub fn merge(&mut self, other: RowErrors, relevant: Option<&BooleanArray>) {
        let Some(flags) = other.flags else { return };
        let mut first = other.first;
        for (row, failed) in flags.into_iter().enumerate() {
            let applies = relevant.is_none_or(|m| m.is_valid(row) && m.value(row));
            if failed && applies {
                if self.first.is_none() {
                    self.first = first.take();
                }
                self.flags_mut()[row] = true;
            }
        }
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

    /// A context for a sub-evaluation over the same rows, with its own error set.
    pub fn child(&self) -> Self {
        EvalContext {
            errors: RowErrors::new(self.rows),
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

/// Formats the value at `row` for error messages (`float64(20)`, `string(abc)`).
pub fn describe_value(arr: &dyn Array, row: usize) -> String {
    use crate::types::type_name;
    let opts = arrow::util::display::FormatOptions::default();
    let value = arrow::util::display::ArrayFormatter::try_new(arr, &opts)
        .map(|f| f.value(row).to_string())
        .unwrap_or_default();
    format!("{}({value})", type_name(arr.data_type()))
}
