//! Operators as plain structs behind one trait, testable on batches without timely.
//!
//! Contract (eKuiper's): a row that fails (a bad cast, a division by zero) is dropped and
//! counted in its node's `exceptions_total` with the reason in `last_exception`; the rule keeps
//! running. Only setup and I/O failures change a rule's status.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::{
    SortColumn, SortOptions, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::eval::EvalContext;
use quiver_compiler::expr::Expr;
use quiver_compiler::plan::ProjectItem;
use quiver_compiler::window::SortKey;
use quiver_connectors::codec::is_meta_column;

use crate::metrics::NodeMetrics;

/// A step of a rule's pipeline over batches.
pub trait BatchOperator {
    /// Processes one batch; `None` when no row remains.
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch>;
}

/// Keeps rows where the WHERE condition is true.
pub struct FilterOp {
    predicate: Expr,
    /// `last_hit_*` calls the predicate reads; this operator records their hits.
    hits: Vec<(Arc<quiver_compiler::hit::HitSite>, Expr)>,
    metrics: Arc<NodeMetrics>,
}

impl FilterOp {
    /// A filter reporting into `metrics`.
    pub fn new(predicate: Expr, metrics: Arc<NodeMetrics>) -> Self {
        let hits = quiver_compiler::hit::cached_sites(&predicate);
        FilterOp {
            predicate,
            hits,
            metrics,
        }
    }
}

/// The rows a condition keeps: true, not null; a non-boolean result fails every row.
fn condition_mask(predicate: &Expr, batch: &RecordBatch, ctx: &mut EvalContext) -> BooleanArray {
    let rows = batch.num_rows();
    match predicate.eval(batch, ctx) {
        Ok(v) => {
            let arr = v.into_array(rows);
            match arr.data_type() {
                DataType::Boolean => quiver_compiler::eval::true_mask(arr.as_boolean()),
                DataType::Null => BooleanArray::from(vec![false; rows]),
                other => {
                    ctx.errors.flag_all(format!(
                        "invalid condition that returns non-bool value {}",
                        quiver_compiler::types::type_name(other)
                    ));
                    BooleanArray::from(vec![false; rows])
                }
            }
        }
        Err(e) => {
            ctx.errors.flag_all(e);
            BooleanArray::from(vec![false; rows])
        }
    }
}

impl BatchOperator for FilterOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let keep = if self.hits.is_empty() {
            condition_mask(&self.predicate, &batch, &mut ctx)
        } else {
            quiver_compiler::hit::condition_with_hits(
                &self.predicate,
                &self.hits,
                &batch,
                &mut ctx,
                &condition_mask,
            )
        };
        let keep = match ctx.errors.ok_mask() {
            Some(ok) => arrow::compute::and(&keep, &ok).unwrap_or(keep),
            None => keep,
        };
        self.metrics.exceptions(
            ctx.errors.count(),
            &format!(
                "run Where error: {}",
                ctx.errors.first().unwrap_or_default()
            ),
        );
        let out = filter_record_batch(&batch, &keep).ok();
        let kept = out.as_ref().map_or(0, RecordBatch::num_rows);
        self.metrics.batch(rows, kept, started);
        out.filter(|b| b.num_rows() > 0)
    }
}

/// Computes the SELECT list.
pub struct ProjectOp {
    items: Vec<ProjectItem>,
    metrics: Arc<NodeMetrics>,
}

impl ProjectOp {
    /// A projection reporting into `metrics`.
    pub fn new(items: Vec<ProjectItem>, metrics: Arc<NodeMetrics>) -> Self {
        ProjectOp { items, metrics }
    }

    fn project(&self, batch: &RecordBatch, ctx: &mut EvalContext) -> Result<RecordBatch, String> {
        let rows = batch.num_rows();
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut unnest = None;
        let schema = batch.schema();
        for item in &self.items {
            match item {
                ProjectItem::Wildcard { except, replace } => {
                    let mut replaced = vec![false; replace.len()];
                    // The FROM stream's own columns first, so they win a shared name whatever
                    // order a join's batch has its columns in.
                    let mut order: Vec<usize> = (0..schema.fields().len()).collect();
                    order.sort_by_key(|&i| schema.field(i).name().contains('.'));
                    for (f, c) in order
                        .into_iter()
                        .map(|i| (schema.field(i), batch.column(i)))
                    {
                        // Joined table columns are `table.column`; `*` shows them by their
                        // own name unless the stream has a field of that name.
                        let name = match f.name().split_once('.') {
                            Some((_, own)) if !own.is_empty() => own,
                            _ => f.name().as_str(),
                        };
                        if is_hidden(f.name()) || fields.iter().any(|x: &Field| x.name() == name) {
                            continue;
                        }
                        // REPLACE wins over EXCEPT: the field stays, with the new value.
                        if let Some(i) = replace.iter().position(|(n, _)| n == name) {
                            let arr = replace[i].1.eval(batch, ctx)?.into_array(rows);
                            fields.push(Field::new(name, arr.data_type().clone(), true));
                            cols.push(arr);
                            replaced[i] = true;
                            continue;
                        }
                        if except.iter().any(|e| e.eq_ignore_ascii_case(name)) {
                            continue;
                        }
                        fields.push(Field::new(name, f.data_type().clone(), true));
                        cols.push(c.clone());
                    }
                    // Replacements of fields the input lacks are new fields.
                    for ((name, expr), done) in replace.iter().zip(replaced) {
                        if !done {
                            let arr = expr.eval(batch, ctx)?.into_array(rows);
                            fields.push(Field::new(name, arr.data_type().clone(), true));
                            cols.push(arr);
                        }
                    }
                }
                ProjectItem::Expr { expr, name } => {
                    let arr = expr.eval(batch, ctx)?.into_array(rows);
                    fields.push(Field::new(name, arr.data_type().clone(), true));
                    cols.push(arr);
                }
                ProjectItem::Spread { expr } => {
                    let arr = expr.eval(batch, ctx)?.into_array(rows);
                    match arr.data_type() {
                        DataType::Struct(fs) => {
                            let s = arr.as_struct();
                            for (f, c) in fs.iter().zip(s.columns()) {
                                fields.push(f.as_ref().clone().with_nullable(true));
                                cols.push(c.clone());
                            }
                        }
                        DataType::Null => {}
                        other => {
                            let other = other.clone();
                            for r in 0..rows {
                                if arr.is_valid(r) {
                                    ctx.errors.flag(r, || {
                                        format!(
                                            "extract needs an object, got {}",
                                            quiver_compiler::types::type_name(&other)
                                        )
                                    });
                                }
                            }
                        }
                    }
                }
                ProjectItem::Unnest { expr, name } => {
                    let arr = expr.eval(batch, ctx)?.into_array(rows);
                    unnest = Some((fields.len(), name.clone(), arr));
                }
            }
        }
        let Some((at, name, list)) = unnest else {
            return RecordBatch::try_new_with_options(
                Arc::new(Schema::new(fields)),
                cols,
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )
            .map_err(|e| e.to_string());
        };
        unnest_rows(fields, cols, at, &name, &list, ctx)
    }
}

/// Expands the array column of `unnest` (to be inserted at field position `at`): one row per
/// element, the other fields repeated; object elements spread into one column per key. A row
/// whose value is not an array fails; an empty or null array yields no row.
fn unnest_rows(
    fields: Vec<Field>,
    cols: Vec<ArrayRef>,
    at: usize,
    name: &str,
    list: &ArrayRef,
    ctx: &mut EvalContext,
) -> Result<RecordBatch, String> {
    let rows = list.len();
    let (offsets, values) = match list.data_type() {
        DataType::List(_) => {
            let l = list.as_list::<i32>();
            let offsets: Vec<(usize, usize)> = (0..rows)
                .map(|r| {
                    if l.is_valid(r) {
                        let o = l.value_offsets();
                        (o[r] as usize, o[r + 1] as usize)
                    } else {
                        (0, 0)
                    }
                })
                .collect();
            (offsets, l.values().clone())
        }
        DataType::Null => (
            vec![(0, 0); rows],
            arrow::array::new_null_array(&DataType::Null, 0),
        ),
        other => {
            let other = other.clone();
            for r in 0..rows {
                if list.is_valid(r) {
                    ctx.errors.flag(r, || {
                        format!(
                            "the argument of unnest must be an array, got {}",
                            quiver_compiler::types::type_name(&other)
                        )
                    });
                }
            }
            (
                vec![(0, 0); rows],
                arrow::array::new_null_array(&DataType::Null, 0),
            )
        }
    };
    let failed = ctx.errors.ok_mask();
    let mut parent = Vec::new();
    let mut child = Vec::new();
    for (r, (from, to)) in offsets.iter().enumerate() {
        if failed.as_ref().is_some_and(|ok| !ok.value(r)) {
            continue;
        }
        for e in *from..*to {
            parent.push(r as u32);
            child.push(e as u32);
        }
    }
    let parent = arrow::array::UInt32Array::from(parent);
    let child = arrow::array::UInt32Array::from(child);
    let n = parent.len();
    let mut out_fields = Vec::new();
    let mut out_cols = Vec::new();
    let elements =
        arrow::compute::take(values.as_ref(), &child, None).map_err(|e| e.to_string())?;
    let mut spread: Vec<(Field, ArrayRef)> = match elements.data_type() {
        DataType::Struct(fs) => fs
            .iter()
            .zip(elements.as_struct().columns())
            .map(|(f, c)| (f.as_ref().clone().with_nullable(true), c.clone()))
            .collect(),
        t => vec![(Field::new(name, t.clone(), true), elements.clone())],
    };
    for (i, (f, c)) in fields.into_iter().zip(cols).enumerate() {
        if i == at {
            for (f, c) in spread.drain(..) {
                out_fields.push(f);
                out_cols.push(c);
            }
        }
        out_fields.push(f);
        out_cols.push(arrow::compute::take(c.as_ref(), &parent, None).map_err(|e| e.to_string())?);
    }
    for (f, c) in spread {
        out_fields.push(f);
        out_cols.push(c);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(out_fields)),
        out_cols,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
    .map_err(|e| e.to_string())
}

impl BatchOperator for ProjectOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let out = match self.project(&batch, &mut ctx) {
            Ok(b) => Some(b),
            Err(e) => {
                ctx.errors.flag_all(e);
                None
            }
        };
        self.metrics.exceptions(
            ctx.errors.count(),
            &format!(
                "run Select error: {}",
                ctx.errors.first().unwrap_or_default()
            ),
        );
        let unnests = self
            .items
            .iter()
            .any(|i| matches!(i, ProjectItem::Unnest { .. }));
        let out = match (out, ctx.errors.ok_mask()) {
            // unnest already left out the rows that failed (its output rows are elements).
            (Some(b), Some(ok)) if !unnests => filter_record_batch(&b, &ok).ok(),
            (out, _) => out,
        };
        let n = out.as_ref().map_or(0, RecordBatch::num_rows);
        self.metrics.batch(rows, n, started);
        out.filter(|b| b.num_rows() > 0)
    }
}

/// Columns a `*` leaves out: message metadata, the row time, the key rows were exchanged by
/// and the results of windows and analytic functions (read through their calls, never as
/// fields).
fn is_hidden(name: &str) -> bool {
    is_meta_column(name)
        || name == quiver_compiler::window::TS_COLUMN
        || name == quiver_compiler::window::KEY_COLUMN
        || name.starts_with("__agg_")
        || name.starts_with("__window_")
        || name.starts_with("__an_")
        || name.starts_with("__rownum_")
        || name == crate::join::SOURCE_COLUMN
        || name == crate::join::EVENT_TIME_COLUMN
}

/// How a key sorts: missing values last either way.
fn sort_options(k: &SortKey) -> SortOptions {
    SortOptions {
        descending: !k.ascending,
        nulls_first: !k.ascending,
    }
}

/// ORDER BY within one emission.
pub struct SortOp {
    keys: Vec<SortKey>,
    metrics: Arc<NodeMetrics>,
}

impl SortOp {
    /// A sort reporting into `metrics`.
    pub fn new(keys: Vec<SortKey>, metrics: Arc<NodeMetrics>) -> Self {
        SortOp { keys, metrics }
    }
}

impl BatchOperator for SortOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        let mut columns = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            match k.expr.eval(&batch, &mut ctx) {
                Ok(v) => columns.push(SortColumn {
                    values: v.into_array(rows),
                    options: Some(sort_options(k)),
                }),
                Err(e) => {
                    self.metrics
                        .exceptions(rows, &format!("run Order By error: {e}"));
                    self.metrics.batch(rows, rows, started);
                    return Some(batch);
                }
            }
        }
        let sorted = lexsort_to_indices(&columns, None)
            .map_err(|e| e.to_string())
            .and_then(|idx| take_record_batch(&batch, &idx).map_err(|e| e.to_string()));
        match sorted {
            Ok(b) => {
                self.metrics.batch(rows, rows, started);
                Some(b)
            }
            Err(e) => {
                // Keys of types that do not compare (e.g. mixed): keep arrival order.
                self.metrics
                    .exceptions(rows, &format!("run Order By error: {e}"));
                self.metrics.batch(rows, rows, started);
                Some(batch)
            }
        }
    }
}

/// `row_number() OVER (...)` within one emission: groups the rows by partition (partitions in
/// the text order of their keys, as eKuiper lists them), sorts each by its ORDER BY and numbers
/// it from 1.
pub struct RowNumberOp {
    specs: Vec<quiver_compiler::plan::RowNumberSpec>,
    metrics: Arc<NodeMetrics>,
}

impl RowNumberOp {
    /// Numberings reporting into `metrics`.
    pub fn new(
        specs: Vec<quiver_compiler::plan::RowNumberSpec>,
        metrics: Arc<NodeMetrics>,
    ) -> Self {
        RowNumberOp { specs, metrics }
    }

    fn number(
        spec: &quiver_compiler::plan::RowNumberSpec,
        batch: RecordBatch,
        ctx: &mut EvalContext,
    ) -> Result<RecordBatch, String> {
        let rows = batch.num_rows();
        let mut columns = Vec::new();
        let mut keys: Option<Vec<String>> = None;
        if !spec.partition.is_empty() {
            let values = spec
                .partition
                .iter()
                .map(|e| e.eval(&batch, ctx).map(|v| v.into_array(rows)))
                .collect::<Result<Vec<_>, _>>()?;
            let text: Vec<String> = (0..rows)
                .map(|r| {
                    values
                        .iter()
                        .map(|v| key_text(v.as_ref(), r) + ",")
                        .collect()
                })
                .collect();
            columns.push(SortColumn {
                values: Arc::new(arrow::array::StringArray::from(text.clone())),
                options: None,
            });
            keys = Some(text);
        }
        for k in &spec.order {
            columns.push(SortColumn {
                values: k.expr.eval(&batch, ctx)?.into_array(rows),
                options: Some(sort_options(k)),
            });
        }
        // The arrival position last keeps equal rows in order (the sort is not stable).
        columns.push(SortColumn {
            values: Arc::new(arrow::array::UInt32Array::from_iter_values(0..rows as u32)),
            options: None,
        });
        let order = lexsort_to_indices(&columns, None).map_err(|e| e.to_string())?;
        let mut numbers = Vec::with_capacity(rows);
        let mut n = 0i64;
        let mut previous: Option<&str> = None;
        for &i in order.values() {
            let key = keys.as_ref().map(|k| k[i as usize].as_str());
            if key.is_some() && key != previous {
                n = 0;
            }
            n += 1;
            previous = key;
            numbers.push(n);
        }
        let sorted = take_record_batch(&batch, &order).map_err(|e| e.to_string())?;
        Ok(quiver_connectors::codec::json::add_column(
            sorted,
            &spec.column,
            Arc::new(arrow::array::Int64Array::from(numbers)),
        ))
    }
}

/// A partition value as eKuiper's key text shows it: strings as they are, `<nil>` for null,
/// other values as JSON.
fn key_text(arr: &dyn Array, row: usize) -> String {
    if arr.is_null(row) {
        return "<nil>".to_string();
    }
    match arr.as_string_opt::<i32>() {
        Some(s) => s.value(row).to_string(),
        None => quiver_compiler::aggregate::json_value(arr, row)
            .map(|v| v.to_string())
            .unwrap_or_default(),
    }
}

impl BatchOperator for RowNumberOp {
    fn process_batch(&mut self, mut batch: RecordBatch) -> Option<RecordBatch> {
        let started = Instant::now();
        let rows = batch.num_rows();
        let mut ctx = EvalContext::new(rows);
        for spec in &self.specs {
            match Self::number(spec, batch.clone(), &mut ctx) {
                Ok(b) => batch = b,
                Err(e) => {
                    self.metrics
                        .exceptions(rows, &format!("run Window Function error: {e}"));
                    self.metrics.batch(rows, 0, started);
                    return None;
                }
            }
        }
        self.metrics.batch(rows, rows, started);
        Some(batch)
    }
}

/// LIMIT n within one emission (part of the project node in eKuiper, so no metrics of its
/// own).
pub struct LimitOp {
    n: usize,
}

impl LimitOp {
    /// A limit of `n` rows.
    pub fn new(n: usize) -> Self {
        LimitOp { n }
    }
}

impl BatchOperator for LimitOp {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let rows = batch.num_rows();
        Some(batch.slice(0, rows.min(self.n))).filter(|b| b.num_rows() > 0)
    }
}

/// Runs several operators in sequence (a fused stateless chain: one timely operator).
#[derive(Default)]
pub struct Chain {
    ops: Vec<Box<dyn BatchOperator>>,
}

impl Chain {
    /// Appends an operator.
    pub fn push(&mut self, op: Box<dyn BatchOperator>) {
        self.ops.push(op);
    }

    /// True when the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl BatchOperator for Chain {
    fn process_batch(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let mut cur = batch;
        for op in &mut self.ops {
            cur = op.process_batch(cur)?;
        }
        Some(cur)
    }
}
