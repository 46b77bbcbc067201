//! Windows as plain structs over batches, testable without timely: [`Prepare`] turns raw rows
//! into what a window needs, [`GroupTable`] aggregates the rows of one window by group, and
//! [`Windows`] decides which rows fall into which window and when a window closes.
//!
//! Times are milliseconds (event time, or processing time of arrival). A window closes when
//! the caller says no row with a smaller time can come any more (timely's frontier).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, StructArray, UInt32Array,
};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, SortField};
use quiver_compiler::aggregate::{Accumulator, accumulator, interleave_loose};
use quiver_compiler::eval::{EvalContext, true_mask};
use quiver_compiler::expr::Expr;
use quiver_compiler::window::{
    AggregateSpec, BEGIN_COLUMN, Carry, EMIT_COLUMN, KEY_COLUMN, PARTITION_COLUMN, TRIGGER_COLUMN,
    TS_COLUMN, WINDOW_END, WINDOW_START, WindowKind, agg_column, arg_column, row_column,
};

type FixedMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

fn fixed_map<K, V>() -> FixedMap<K, V> {
    HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x5157_4956))
}

/// Evaluates what a window needs on raw rows, so windows never evaluate SQL: the row time,
/// the encoded GROUP BY key, aggregate arguments, window conditions and the columns the result
/// still reads. Rows failing the window's `FILTER (WHERE ...)` are dropped here.
pub struct Prepare {
    spec: Arc<AggregateSpec>,
    /// `last_hit_*` calls the sliding window's trigger reads (found once, not per batch).
    trigger_hits: Vec<(Arc<quiver_compiler::hit::HitSite>, Expr)>,
}

/// Rows a step dropped because evaluating them failed, with the first reason.
#[derive(Debug, Default)]
pub struct Failures {
    /// How many rows.
    pub rows: usize,
    /// The first reason.
    pub first: Option<String>,
}

impl Failures {
    fn add(&mut self, n: usize, reason: impl FnOnce() -> String) {
        if n > 0 {
            self.rows += n;
            if self.first.is_none() {
                self.first = Some(reason());
            }
        }
    }
}

impl Prepare {
    /// A preparer for `spec`.
    pub fn new(spec: Arc<AggregateSpec>) -> Self {
        let trigger_hits = spec
            .window
            .trigger
            .as_ref()
            .map(quiver_compiler::hit::cached_sites)
            .unwrap_or_default();
        Prepare { spec, trigger_hits }
    }

    /// Prepares a batch whose rows arrived at `time` (used when the batch has no `__ts`
    /// column, i.e. in processing time).
    pub fn prepare(
        &self,
        batch: RecordBatch,
        time: u64,
        failures: &mut Failures,
    ) -> Option<RecordBatch> {
        let mut batch = batch;
        if let Some(filter) = &self.spec.window.filter {
            let mask = condition(filter, &batch, failures, "run Window Filter error")?;
            batch = filter_record_batch(&batch, &mask).ok()?;
            if batch.num_rows() == 0 {
                return None;
            }
        }
        let rows = batch.num_rows();
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut push = |name: &str, col: ArrayRef| {
            fields.push(Field::new(name, col.data_type().clone(), true));
            cols.push(col);
        };
        let ts = match batch.column_by_name(TS_COLUMN) {
            Some(c) => c.clone(),
            None => Arc::new(Int64Array::from(vec![time as i64; rows])) as ArrayRef,
        };
        push(TS_COLUMN, ts);
        let mut ctx = EvalContext::new(rows);
        if !self.spec.keys.is_empty() {
            push(KEY_COLUMN, encode_keys(&self.spec.keys, &batch, &mut ctx)?);
        }
        for (i, call) in self.spec.aggs.iter().enumerate() {
            // Built-in aggregates read their first argument (the others are plan-time
            // constants); a plugin's reads them all.
            let used = if call.custom.is_some() {
                call.args.len()
            } else {
                call.args.len().min(1)
            };
            for (j, arg) in call.args.iter().take(used).enumerate() {
                match arg.eval(&batch, &mut ctx) {
                    Ok(v) => push(&arg_column(i, j), v.into_array(rows)),
                    Err(e) => {
                        failures.add(rows, || format!("run Aggregate error: {e}"));
                        return None;
                    }
                }
            }
            if call.whole_row {
                push(&row_column(i), whole_row(&batch));
            }
        }
        let w = &self.spec.window;
        if let Some(trigger) = &w.trigger {
            let mask = if self.trigger_hits.is_empty() {
                condition_lenient(trigger, &batch, &mut ctx)
            } else {
                quiver_compiler::hit::condition_with_hits(
                    trigger,
                    &self.trigger_hits,
                    &batch,
                    &mut ctx,
                    &condition_lenient,
                )
            };
            push(TRIGGER_COLUMN, Arc::new(mask));
        }
        if let Some((begin, emit)) = &w.state {
            push(
                BEGIN_COLUMN,
                Arc::new(condition_lenient(begin, &batch, &mut ctx)),
            );
            push(
                EMIT_COLUMN,
                Arc::new(condition_lenient(emit, &batch, &mut ctx)),
            );
        }
        if !w.partition.is_empty() {
            push(
                PARTITION_COLUMN,
                encode_keys(&w.partition, &batch, &mut ctx)?,
            );
        }
        let schema = batch.schema();
        match &self.spec.carry {
            Carry::All => {
                for (f, c) in schema.fields().iter().zip(batch.columns()) {
                    if f.name() != TS_COLUMN {
                        push(f.name(), c.clone());
                    }
                }
            }
            Carry::Columns(names) => {
                for name in names {
                    if let Some(c) = quiver_compiler::eval::column_by_name(&batch, name) {
                        push(name, c.clone());
                    }
                }
            }
        }
        let out = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .ok()?;
        failures.add(ctx.errors.count(), || {
            format!(
                "run Aggregate error: {}",
                ctx.errors.first().unwrap_or_default()
            )
        });
        match ctx.errors.ok_mask() {
            Some(ok) => filter_record_batch(&out, &ok)
                .ok()
                .filter(|b| b.num_rows() > 0),
            None => Some(out),
        }
    }
}

/// The row as one struct value (for `collect(*)` and `deduplicate`).
fn whole_row(batch: &RecordBatch) -> ArrayRef {
    let (fields, cols): (Vec<_>, Vec<_>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !f.name().starts_with("__"))
        .map(|(f, c)| (f.as_ref().clone().with_nullable(true), c.clone()))
        .unzip();
    if fields.is_empty() {
        return Arc::new(StructArray::new_empty_fields(batch.num_rows(), None));
    }
    Arc::new(StructArray::new(Fields::from(fields), cols, None))
}

/// A boolean filter mask from `cond`; rows whose condition fails are counted.
fn condition(
    cond: &Expr,
    batch: &RecordBatch,
    failures: &mut Failures,
    what: &str,
) -> Option<BooleanArray> {
    let rows = batch.num_rows();
    let mut ctx = EvalContext::new(rows);
    let mask = condition_lenient(cond, batch, &mut ctx);
    failures.add(ctx.errors.count(), || {
        format!("{what}: {}", ctx.errors.first().unwrap_or_default())
    });
    let mask = match ctx.errors.ok_mask() {
        Some(ok) => arrow::compute::and(&mask, &ok).ok()?,
        None => mask,
    };
    Some(mask)
}

/// A condition as a mask where null, non-boolean and failed values are false (eKuiper's rule
/// for window conditions).
fn condition_lenient(cond: &Expr, batch: &RecordBatch, ctx: &mut EvalContext) -> BooleanArray {
    let rows = batch.num_rows();
    let mut child = ctx.child();
    let mask = match cond.eval(batch, &mut child) {
        Ok(v) => {
            let arr = v.into_array(rows);
            match arr.data_type() {
                DataType::Boolean => true_mask(arr.as_boolean()),
                _ => BooleanArray::from(vec![false; rows]),
            }
        }
        Err(_) => BooleanArray::from(vec![false; rows]),
    };
    match child.errors.ok_mask() {
        Some(ok) => arrow::compute::and(&mask, &ok).unwrap_or(mask),
        None => mask,
    }
}

/// Encodes key expressions into one comparable byte string per row (arrow's row format), the
/// identity of a group.
pub(crate) fn encode_keys(
    keys: &[Expr],
    batch: &RecordBatch,
    ctx: &mut EvalContext,
) -> Option<ArrayRef> {
    let rows = batch.num_rows();
    let mut arrays = Vec::with_capacity(keys.len());
    for k in keys {
        match k.eval(batch, ctx) {
            Ok(v) => arrays.push(v.into_array(rows)),
            Err(e) => {
                ctx.errors.flag_all(e);
                return None;
            }
        }
    }
    if let ([key], [array]) = (keys, arrays.as_slice())
        && key.sql_type() == quiver_compiler::types::SqlType::Known(DataType::Utf8)
        && let Some(strings) = array.as_string_opt::<i32>()
    {
        return Some(string_keys(strings));
    }
    let fields: Vec<SortField> = arrays
        .iter()
        .map(|a| SortField::new(a.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).ok()?;
    let encoded = converter.convert_columns(&arrays).ok()?;
    let mut keys = arrow::array::BinaryBuilder::with_capacity(rows, encoded.size());
    for r in encoded.iter() {
        keys.append_value(r.as_ref());
    }
    let keys: BinaryArray = keys.finish();
    Some(Arc::new(keys))
}

/// Keys of one STRING column (the usual `GROUP BY device`), decided by the plan so every
/// batch of a rule is keyed alike: each value's own bytes, which needs no copy when the
/// column has no nulls, and `0xFF` for null, a byte no UTF-8 string contains.
fn string_keys(strings: &arrow::array::StringArray) -> ArrayRef {
    if strings.null_count() == 0 {
        return Arc::new(BinaryArray::from(strings.clone()));
    }
    let mut keys = arrow::array::BinaryBuilder::with_capacity(
        strings.len(),
        strings.value_data().len() + strings.null_count(),
    );
    for value in strings {
        keys.append_value(value.map_or(&[0xFF][..], str::as_bytes));
    }
    Arc::new(keys.finish())
}

/// The groups of one window and their aggregates.
pub struct GroupTable {
    spec: Arc<AggregateSpec>,
    index: FixedMap<Box<[u8]>, u32>,
    /// Per group: (carried batch, row) of its first row.
    first: Vec<(u32, u32)>,
    /// The prepared batches that hold a first row (or every row, when rows pass through).
    carried: Vec<RecordBatch>,
    accs: Vec<Box<dyn Accumulator>>,
    /// Per aggregate, its argument column names (all of a plugin aggregate's; the first
    /// and the whole-row column of a built-in's).
    arg_names: Vec<Vec<String>>,
    /// Rows that could not be aggregated (non-numeric values in sum, ...).
    pub bad_rows: usize,
}

impl GroupTable {
    /// An empty table for `spec`.
    pub fn new(spec: Arc<AggregateSpec>) -> Self {
        Self::with_capacity(spec, 0)
    }

    /// An empty table for `spec` with room for `groups` groups (the previous window's count,
    /// so a window's table does not grow and rehash group by group).
    pub fn with_capacity(spec: Arc<AggregateSpec>, groups: usize) -> Self {
        let accs = spec.aggs.iter().map(accumulator).collect();
        let arg_names = spec
            .aggs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if c.custom.is_some() {
                    return (0..c.args.len()).map(|j| arg_column(i, j)).collect();
                }
                let mut names = Vec::new();
                if !c.args.is_empty() {
                    names.push(arg_column(i, 0));
                }
                if c.whole_row {
                    names.push(row_column(i));
                }
                names
            })
            .collect();
        let mut index = fixed_map();
        index.reserve(groups);
        GroupTable {
            spec,
            index,
            first: Vec::with_capacity(groups),
            carried: Vec::new(),
            accs,
            arg_names,
            bad_rows: 0,
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// True when no row arrived.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Adds the rows of a prepared batch.
    pub fn update(&mut self, batch: &RecordBatch) {
        let rows = batch.num_rows();
        if rows == 0 {
            return;
        }
        let b = self.carried.len() as u32;
        if self.spec.passes_rows() {
            // No aggregate and no key: the window's rows are its result.
            for r in 0..rows {
                self.first.push((b, r as u32));
            }
            self.carried.push(batch.clone());
            return;
        }
        let before = self.first.len();
        let groups: Vec<u32> = if self.spec.window.kind == WindowKind::Rows {
            // Each row is its own group.
            (0..rows)
                .map(|r| {
                    self.first.push((b, r as u32));
                    (before + r) as u32
                })
                .collect()
        } else {
            match batch.column_by_name(KEY_COLUMN) {
                None => {
                    if self.first.is_empty() {
                        self.first.push((b, 0));
                    }
                    vec![0; rows]
                }
                Some(keys) => {
                    let keys = keys.as_binary::<i32>();
                    let mut out = Vec::with_capacity(rows);
                    for r in 0..rows {
                        let k = keys.value(r);
                        let g = match self.index.get(k) {
                            Some(&g) => g,
                            None => {
                                let g = self.first.len() as u32;
                                self.index.insert(k.into(), g);
                                self.first.push((b, r as u32));
                                g
                            }
                        };
                        out.push(g);
                    }
                    out
                }
            }
        };
        if self.first.len() > before {
            self.carried.push(batch.clone());
        }
        let n = self.first.len();
        for (acc, names) in self.accs.iter_mut().zip(&self.arg_names) {
            let args: Vec<ArrayRef> = names
                .iter()
                .map(|name| {
                    batch
                        .column_by_name(name)
                        .cloned()
                        .unwrap_or_else(|| arrow::array::new_null_array(&DataType::Null, rows))
                })
                .collect();
            self.bad_rows += acc.update(&groups, n, &args);
        }
    }

    /// The result rows, one per group: carried columns (from each group's first row), the
    /// aggregates and the window bounds. `None` when the window had no row.
    pub fn finish(mut self, start: i64, end: i64) -> Option<RecordBatch> {
        let n = self.first.len();
        if n == 0 {
            return None;
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        // Carried columns, by name, in first-seen order across batches.
        let mut names: Vec<String> = Vec::new();
        for b in &self.carried {
            for f in b.schema().fields() {
                if is_internal(f.name()) || names.contains(f.name()) {
                    continue;
                }
                names.push(f.name().clone());
            }
        }
        for name in &names {
            let arrays: Vec<ArrayRef> = self
                .carried
                .iter()
                .map(|b| {
                    b.column_by_name(name).cloned().unwrap_or_else(|| {
                        arrow::array::new_null_array(&DataType::Null, b.num_rows())
                    })
                })
                .collect();
            let col = interleave_loose(&arrays, &self.first);
            fields.push(Field::new(name, col.data_type().clone(), true));
            cols.push(col);
        }
        for (i, acc) in self.accs.iter_mut().enumerate() {
            let col = acc.finish(n);
            fields.push(Field::new(agg_column(i), col.data_type().clone(), true));
            cols.push(col);
        }
        let bounds = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v; n])) };
        if self.spec.window.kind == WindowKind::Rows {
            // No window: each row's own time stands for both bounds.
            let ts = interleave_loose(
                &self
                    .carried
                    .iter()
                    .map(|b| {
                        b.column_by_name(TS_COLUMN)
                            .cloned()
                            .unwrap_or_else(|| bounds(end))
                    })
                    .collect::<Vec<_>>(),
                &self.first,
            );
            fields.push(Field::new(WINDOW_START, DataType::Int64, true));
            cols.push(ts.clone());
            fields.push(Field::new(WINDOW_END, DataType::Int64, true));
            cols.push(ts);
        } else {
            fields.push(Field::new(WINDOW_START, DataType::Int64, true));
            cols.push(bounds(start));
            fields.push(Field::new(WINDOW_END, DataType::Int64, true));
            cols.push(bounds(end));
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .ok()
    }
}

/// Columns that exist only between the preparer and the window.
fn is_internal(name: &str) -> bool {
    name == TS_COLUMN
        || name == KEY_COLUMN
        || name == TRIGGER_COLUMN
        || name == BEGIN_COLUMN
        || name == EMIT_COLUMN
        || name == PARTITION_COLUMN
        || name.starts_with("__arg_")
        || name.starts_with("__row_")
}

/// One closed window: its bounds and result rows.
#[derive(Debug)]
pub struct Emission {
    /// `window_end()`, the time the window is emitted at.
    pub end: i64,
    /// The result rows.
    pub batch: RecordBatch,
}

/// The open windows of one rule on one worker.
pub enum Windows {
    /// Tumbling and hopping windows: one incrementally updated group table per window.
    Aligned(AlignedWindows),
    /// Sliding, session, count and state windows: rows buffered until a window closes.
    Buffered(BufferedWindows),
}

impl Windows {
    /// The windows of `spec`.
    pub fn new(spec: Arc<AggregateSpec>) -> Self {
        match spec.window.kind {
            WindowKind::Tumbling { size } => {
                Windows::Aligned(AlignedWindows::new(spec, size, size))
            }
            WindowKind::Hopping { size, hop } => {
                Windows::Aligned(AlignedWindows::new(spec, size, hop))
            }
            _ => Windows::Buffered(BufferedWindows::new(spec)),
        }
    }

    /// Windows that keep their raw rows and run `before` on each window's rows when it
    /// closes (stream-stream joins), for every window kind but state windows.
    pub fn joined(spec: Arc<AggregateSpec>, before: crate::operator::Chain) -> Self {
        let mut w = BufferedWindows::new(spec);
        w.before = Some(before);
        Windows::Buffered(w)
    }

    /// Adds prepared rows; returns windows this closed (count, state and undelayed sliding
    /// windows close on rows).
    pub fn insert(&mut self, batch: &RecordBatch) -> Vec<Emission> {
        match self {
            Windows::Aligned(w) => {
                w.insert(batch);
                Vec::new()
            }
            Windows::Buffered(w) => w.insert(batch),
        }
    }

    /// Closes every window that no row with a time before `frontier` can still change.
    pub fn advance(&mut self, frontier: u64) -> Vec<Emission> {
        let f = frontier.min(i64::MAX as u64) as i64;
        match self {
            Windows::Aligned(w) => w.advance(f),
            Windows::Buffered(w) => w.advance(f),
        }
    }

    /// The input ended: closes what a time window would close when time moves on (count and
    /// state windows keep their partial rows unemitted, like eKuiper).
    pub fn finish(&mut self) -> Vec<Emission> {
        self.advance(i64::MAX as u64)
    }

    /// The earliest time at which a window could close on time alone, if any is open.
    pub fn next_deadline(&self) -> Option<i64> {
        match self {
            Windows::Aligned(w) => w.open.keys().next().map(|s| s + w.size),
            Windows::Buffered(w) => w.next_deadline(),
        }
    }

    /// True when no window holds any row (nothing to emit, ever, without new input).
    pub fn is_idle(&self) -> bool {
        match self {
            Windows::Aligned(w) => w.open.is_empty(),
            Windows::Buffered(w) => {
                w.rows.is_empty() && w.states.is_empty() && w.pending.is_empty()
            }
        }
    }

    /// Rows that aggregates could not use so far (and resets the count).
    pub fn take_bad_rows(&mut self) -> usize {
        match self {
            Windows::Aligned(w) => std::mem::take(&mut w.bad_rows),
            Windows::Buffered(w) => std::mem::take(&mut w.bad_rows),
        }
    }
}

/// Tumbling (`hop == size`) and hopping windows, aligned to natural time (multiples of the
/// hop since the epoch, UTC).
pub struct AlignedWindows {
    spec: Arc<AggregateSpec>,
    size: i64,
    hop: i64,
    open: BTreeMap<i64, GroupTable>,
    bad_rows: usize,
    /// Groups in the last window closed: the room a new window's table starts with.
    last_groups: usize,
}

impl AlignedWindows {
    fn new(spec: Arc<AggregateSpec>, size: u64, hop: u64) -> Self {
        AlignedWindows {
            spec,
            size: size as i64,
            hop: hop as i64,
            open: BTreeMap::new(),
            bad_rows: 0,
            last_groups: 0,
        }
    }

    fn insert(&mut self, batch: &RecordBatch) {
        let Some(ts) = batch.column_by_name(TS_COLUMN) else {
            return;
        };
        let ts = ts.as_primitive::<arrow::datatypes::Int64Type>();
        let (size, hop) = (self.size, self.hop);
        // Window starts containing t: multiples s of hop with s <= t < s + size.
        let last_start = |t: i64| t - t.rem_euclid(hop);
        let first = ts.value(0);
        let uniform = size == hop && {
            let s = last_start(first);
            ts.values().iter().all(|&t| t >= s && t < s + size)
        };
        if uniform {
            let s = last_start(first);
            self.table(s).update(batch);
            return;
        }
        let mut per_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (r, &t) in ts.values().iter().enumerate() {
            let mut s = last_start(t);
            while s + size > t {
                per_window.entry(s).or_default().push(r as u32);
                s -= hop;
            }
        }
        for (s, rows) in per_window {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                match take_record_batch(batch, &UInt32Array::from(rows)) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            self.table(s).update(&part);
        }
    }

    fn table(&mut self, start: i64) -> &mut GroupTable {
        let (spec, groups) = (&self.spec, self.last_groups);
        self.open
            .entry(start)
            .or_insert_with(|| GroupTable::with_capacity(spec.clone(), groups))
    }

    fn advance(&mut self, frontier: i64) -> Vec<Emission> {
        let mut out = Vec::new();
        while let Some((&start, _)) = self.open.first_key_value() {
            let end = start.saturating_add(self.size);
            if end > frontier {
                break;
            }
            let table = self.open.remove(&start).expect("first key exists");
            self.bad_rows += table.bad_rows;
            self.last_groups = table.len();
            if let Some(batch) = table.finish(start, end) {
                out.push(Emission { end, batch });
            }
        }
        out
    }
}

/// A prepared row kept by a buffering window: its batch and position.
#[derive(Clone)]
struct Row {
    ts: i64,
    batch: RecordBatch,
    row: u32,
}

/// Sliding, session, count and state windows: they decide their bounds from the sequence of
/// all rows, so they run on one worker and keep the rows of open windows.
pub struct BufferedWindows {
    spec: Arc<AggregateSpec>,
    rows: VecDeque<Row>,
    /// Sliding windows with a delay: (trigger time, emit at) waiting for time to pass.
    pending: VecDeque<i64>,
    /// Count windows: rows since the last emission check.
    count: u64,
    /// Session windows: first row time, reported start, last row time.
    session: Option<(i64, i64, i64)>,
    /// State windows: per partition, the rows of the open window and its start.
    states: FixedMap<Vec<u8>, (i64, Vec<Row>)>,
    bad_rows: usize,
    /// Runs on a window's rows before they are grouped (stream-stream joins: the join, table
    /// joins, WHERE and the window's preparation); `None` when rows come prepared.
    before: Option<crate::operator::Chain>,
    /// Tumbling and hopping windows kept as rows (joins): windows starting before this were
    /// emitted.
    next_start: i64,
}

impl BufferedWindows {
    fn new(spec: Arc<AggregateSpec>) -> Self {
        BufferedWindows {
            spec,
            rows: VecDeque::new(),
            pending: VecDeque::new(),
            count: 0,
            session: None,
            states: fixed_map(),
            bad_rows: 0,
            before: None,
            next_start: i64::MIN,
        }
    }

    fn aggregate(&mut self, rows: &[Row], start: i64, end: i64) -> Option<Emission> {
        let batch = rows_to_batch(rows)?;
        let batch = match self.before.as_mut() {
            Some(chain) => {
                // A bug in a joined window's operators fails that window, not the worker (and
                // every rule on it).
                let rows = batch.num_rows();
                let run = std::panic::AssertUnwindSafe(|| {
                    crate::operator::BatchOperator::process_batch(chain, batch)
                });
                match std::panic::catch_unwind(run) {
                    Ok(out) => out?,
                    Err(_) => {
                        tracing::error!("operator panicked, a window of {rows} rows dropped");
                        self.bad_rows += rows;
                        return None;
                    }
                }
            }
            None => batch,
        };
        let mut table = GroupTable::new(self.spec.clone());
        table.update(&batch);
        self.bad_rows += table.bad_rows;
        table
            .finish(start, end)
            .map(|batch| Emission { end, batch })
    }

    fn insert(&mut self, batch: &RecordBatch) -> Vec<Emission> {
        let Some(ts) = batch.column_by_name(TS_COLUMN) else {
            return Vec::new();
        };
        let ts = ts.as_primitive::<arrow::datatypes::Int64Type>().clone();
        let flag = |name: &str, r: usize| {
            batch
                .column_by_name(name)
                .map(|c| c.as_boolean().value(r))
                .unwrap_or(true)
        };
        let mut out = Vec::new();
        for r in 0..batch.num_rows() {
            let row = Row {
                ts: ts.value(r),
                batch: batch.clone(),
                row: r as u32,
            };
            match self.spec.window.kind {
                WindowKind::Count { size, step } => {
                    self.rows.push_back(row);
                    self.count += 1;
                    if self.count.is_multiple_of(step) {
                        self.count = 0;
                        if self.rows.len() as u64 >= size {
                            let skip = self.rows.len() - size as usize;
                            let window: Vec<Row> = self.rows.iter().skip(skip).cloned().collect();
                            let (start, end) = (window[0].ts, window[window.len() - 1].ts);
                            out.extend(self.aggregate(&window, start, end));
                            // Keep the last size-1 rows for overlapping windows.
                            while self.rows.len() as u64 > size - 1 {
                                self.rows.pop_front();
                            }
                        }
                    }
                }
                WindowKind::Sliding { size, delay } => {
                    let (size, delay) = (size as i64, delay as i64);
                    let t = row.ts;
                    let triggers = flag(TRIGGER_COLUMN, r);
                    self.rows.push_back(row);
                    // Rows that no future window can include.
                    let horizon = self.pending.front().copied().unwrap_or(t).min(t) - size;
                    while self.rows.front().is_some_and(|x| x.ts < horizon) {
                        self.rows.pop_front();
                    }
                    // Delayed windows whose end has passed emit before this row joins them.
                    out.extend(self.advance(t));
                    if triggers {
                        if delay == 0 {
                            let window: Vec<Row> = self
                                .rows
                                .iter()
                                .filter(|x| x.ts >= t - size && x.ts <= t)
                                .cloned()
                                .collect();
                            out.extend(self.aggregate(&window, t - size, t));
                        } else {
                            self.pending.push_back(t);
                        }
                    }
                }
                WindowKind::Session { max, timeout } => {
                    let (max, timeout) = (max as i64, timeout as i64);
                    let t = row.ts;
                    let mut cut_at_tick = None;
                    if let Some((first, _, last)) = self.session {
                        let gap_end = last + timeout;
                        let tick = session_tick(first, max);
                        if t - last > timeout || t > tick {
                            let by_tick = t > tick && tick < gap_end;
                            let end = if by_tick { tick } else { gap_end };
                            out.extend(self.close_session(end, by_tick));
                            cut_at_tick = by_tick.then_some(end);
                        }
                    }
                    match &mut self.session {
                        Some((_, _, last)) => *last = t,
                        // A session cut by a tick goes on from the tick.
                        None => self.session = Some((t, cut_at_tick.unwrap_or(t), t)),
                    }
                    self.rows.push_back(row);
                }
                WindowKind::State { single } => {
                    let key = batch
                        .column_by_name(PARTITION_COLUMN)
                        .map(|c| c.as_binary::<i32>().value(r).to_vec())
                        .unwrap_or_default();
                    let begin = flag(BEGIN_COLUMN, r);
                    let emit = flag(EMIT_COLUMN, r);
                    let t = row.ts;
                    let open = self.states.contains_key(&key);
                    if !open {
                        if begin {
                            self.states.insert(key, (t, vec![row]));
                        }
                    } else if single {
                        if emit {
                            let (start, rows) = self.states.remove(&key).expect("open state");
                            out.extend(self.aggregate(&rows, start, t));
                            self.states.insert(key, (t, vec![row]));
                        } else {
                            self.states.get_mut(&key).expect("open").1.push(row);
                        }
                    } else {
                        self.states.get_mut(&key).expect("open").1.push(row);
                        if emit {
                            let (start, rows) = self.states.remove(&key).expect("open state");
                            out.extend(self.aggregate(&rows, start, t));
                        }
                    }
                }
                // Kept as rows only when joined at the end (see `Windows::joined`).
                WindowKind::Tumbling { .. } | WindowKind::Hopping { .. } => {
                    self.rows.push_back(row);
                }
                WindowKind::Rows => {}
            }
        }
        out
    }

    /// Ends the open session at `end`; rows from `end` on stay for the next one (a session
    /// cut by its maximum duration continues from the tick).
    fn close_session(&mut self, end: i64, by_tick: bool) -> Vec<Emission> {
        let Some((_, start, _)) = self.session.take() else {
            return Vec::new();
        };
        let keep_from = self
            .rows
            .iter()
            .position(|r| r.ts >= end)
            .unwrap_or(self.rows.len());
        let window: Vec<Row> = self.rows.drain(..keep_from).collect();
        if let (true, Some(first), Some(last)) = (by_tick, self.rows.front(), self.rows.back()) {
            self.session = Some((first.ts, end, last.ts));
        } else if let (Some(first), Some(last)) = (self.rows.front(), self.rows.back()) {
            self.session = Some((first.ts, first.ts, last.ts));
        }
        self.aggregate(&window, start, end).into_iter().collect()
    }

    fn advance(&mut self, frontier: i64) -> Vec<Emission> {
        let mut out = Vec::new();
        match self.spec.window.kind {
            WindowKind::Sliding { size, delay } => {
                let (size, delay) = (size as i64, delay as i64);
                while let Some(&t) = self.pending.front() {
                    if t + delay > frontier {
                        break;
                    }
                    self.pending.pop_front();
                    let window: Vec<Row> = self
                        .rows
                        .iter()
                        .filter(|x| x.ts >= t - size && x.ts < t + delay)
                        .cloned()
                        .collect();
                    out.extend(self.aggregate(&window, t - size, t + delay));
                }
                if frontier == i64::MAX {
                    self.rows.clear();
                }
            }
            WindowKind::Session { max, timeout } => {
                let (max, timeout) = (max as i64, timeout as i64);
                while let Some((first, _, last)) = self.session {
                    let gap_end = last + timeout;
                    let tick = session_tick(first, max);
                    let end = gap_end.min(tick);
                    if end > frontier {
                        break;
                    }
                    out.extend(self.close_session(end, end == tick && end != gap_end));
                }
            }
            WindowKind::Tumbling { size } => out.extend(self.advance_aligned(frontier, size, size)),
            WindowKind::Hopping { size, hop } => {
                out.extend(self.advance_aligned(frontier, size, hop))
            }
            _ => {}
        }
        out
    }

    /// Tumbling and hopping windows over buffered rows (in time order): emits every window
    /// that ends by `frontier` and holds rows, oldest first, and drops rows no later window
    /// includes.
    fn advance_aligned(&mut self, frontier: i64, size: u64, hop: u64) -> Vec<Emission> {
        let (size, hop) = (size as i64, hop as i64);
        let mut out = Vec::new();
        // The first window (a multiple of hop) that includes time t.
        let first_window = |t: i64| (t - size).div_euclid(hop) * hop + hop;
        while let Some(oldest) = self.rows.front().map(|r| r.ts) {
            let start = first_window(oldest).max(self.next_start);
            if start.saturating_add(size) > frontier {
                break;
            }
            let end = start + size;
            let window: Vec<Row> = self
                .rows
                .iter()
                .filter(|r| r.ts >= start && r.ts < end)
                .cloned()
                .collect();
            out.extend(self.aggregate(&window, start, end));
            self.next_start = start + hop;
            while self.rows.front().is_some_and(|r| r.ts < self.next_start) {
                self.rows.pop_front();
            }
        }
        out
    }

    fn next_deadline(&self) -> Option<i64> {
        match self.spec.window.kind {
            WindowKind::Sliding { delay, .. } => self.pending.front().map(|t| t + delay as i64),
            WindowKind::Session { max, timeout } => self.session.map(|(first, _, last)| {
                (last + timeout as i64).min(session_tick(first, max as i64))
            }),
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                let hop = match self.spec.window.kind {
                    WindowKind::Hopping { hop, .. } => hop as i64,
                    _ => size as i64,
                };
                self.rows.front().map(|r| {
                    ((r.ts - size as i64).div_euclid(hop) * hop + hop).max(self.next_start)
                        + size as i64
                })
            }
            _ => None,
        }
    }
}

/// The max-duration tick that can end a session whose first row came at `first`: ticks are
/// multiples of `max`, and one cuts the session only after the session lived through a whole
/// period before it (eKuiper's rule: tick - max > first).
fn session_tick(first: i64, max: i64) -> i64 {
    (first.div_euclid(max) + 2) * max
}

/// True when two batch handles share their columns (clones of one batch).
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.num_rows() == b.num_rows()
        && a.num_columns() == b.num_columns()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| Arc::ptr_eq(x, y))
}

/// Concatenates buffered rows into one batch (in order), tolerating schema differences.
fn rows_to_batch(rows: &[Row]) -> Option<RecordBatch> {
    rows.first()?;
    // Distinct batches, in order of first use, and each row's position.
    let mut batches: Vec<&RecordBatch> = Vec::new();
    let mut positions = Vec::with_capacity(rows.len());
    for r in rows {
        let b = match batches.iter().position(|b| same_batch(b, &r.batch)) {
            Some(i) => i,
            None => {
                batches.push(&r.batch);
                batches.len() - 1
            }
        };
        positions.push((b as u32, r.row));
    }
    let mut names: Vec<String> = Vec::new();
    for b in &batches {
        for f in b.schema().fields() {
            if !names.contains(f.name()) {
                names.push(f.name().clone());
            }
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut cols = Vec::with_capacity(names.len());
    for name in &names {
        let arrays: Vec<ArrayRef> = batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .cloned()
                    .unwrap_or_else(|| arrow::array::new_null_array(&DataType::Null, b.num_rows()))
            })
            .collect();
        let col = interleave_loose(&arrays, &positions);
        fields.push(Field::new(name, col.data_type().clone(), true));
        cols.push(col);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .ok()
}

/// Concatenates the partial results of one window from several workers into one emission.
pub fn concat_results(batches: &[RecordBatch]) -> Option<RecordBatch> {
    match batches {
        [] => None,
        [one] => Some(one.clone()),
        many => {
            let schema = many[0].schema();
            if many.iter().all(|b| b.schema() == schema) {
                return arrow::compute::concat_batches(&schema, many).ok();
            }
            let rows: Vec<Row> = many
                .iter()
                .flat_map(|b| {
                    (0..b.num_rows()).map(move |r| Row {
                        ts: 0,
                        batch: b.clone(),
                        row: r as u32,
                    })
                })
                .collect();
            rows_to_batch(&rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sql: &str) -> Arc<AggregateSpec> {
        let mut streams = HashMap::new();
        let def = quiver_compiler::parse_create(
            r#"CREATE STREAM s (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="s", TYPE="memory")"#,
        )
        .unwrap();
        streams.insert("s".to_string(), def);
        let plan =
            quiver_compiler::compile_rule(sql, &streams, quiver_compiler::Registry::builtin())
                .unwrap()
                .plan;
        Arc::new(plan.aggregate().unwrap().clone())
    }

    fn batch(keys: impl Iterator<Item = String>, ts: i64) -> RecordBatch {
        let k: Vec<String> = keys.collect();
        let n = k.len();
        RecordBatch::try_from_iter(vec![
            (
                "k",
                Arc::new(arrow::array::StringArray::from(k)) as ArrayRef,
            ),
            ("v", Arc::new(Int64Array::from(vec![1; n])) as ArrayRef),
            ("ts", Arc::new(Int64Array::from(vec![ts; n])) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn closed_windows_free_their_groups() {
        let spec = spec("SELECT k, count(*) AS c FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)");
        let prepare = Prepare::new(spec.clone());
        let mut windows = Windows::new(spec);
        let mut failures = Failures::default();
        for chunk in 0..100 {
            let keys = (0..1000).map(move |i| format!("key-{}", chunk * 1000 + i));
            let raw = batch(keys, 5_000);
            let prepared = prepare.prepare(raw, 5_000, &mut failures).unwrap();
            assert!(windows.insert(&prepared).is_empty());
        }
        assert!(!windows.is_idle());
        assert!(
            windows.advance(9_999).is_empty(),
            "the window ends at 10000"
        );
        let out = windows.advance(10_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].batch.num_rows(), 100_000);
        assert_eq!(out[0].end, 10_000);
        assert!(windows.is_idle(), "a closed window keeps no state");
        assert_eq!(failures.rows, 0);
    }
}
