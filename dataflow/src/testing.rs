//! What the unit tests of operators, windows and tables share: plans compiled from SQL over one
//! stream and two tables, batches built from plain values, and readers of columns and metrics.
//!
//! Rules read stream `s (k STRING, v BIGINT, ts BIGINT, arr ARRAY(BIGINT))`; `t` is a memory
//! lookup table and `u` a scan table, both `(id STRING, name STRING)` keyed by `id`. A test takes
//! the node it needs from the compiled plan, so its expressions are the ones the binder makes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use quiver_compiler::analytic::AnalyticCall;
use quiver_compiler::expr::Expr;
use quiver_compiler::plan::{LogicalPlan, ProjectItem, RowNumberSpec, TableJoin};
use quiver_compiler::window::{AggregateSpec, SortKey, TS_COLUMN};

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;

const CATALOG: [&str; 3] = [
    r#"CREATE STREAM s (k STRING, v BIGINT, ts BIGINT, arr ARRAY(BIGINT)) WITH (DATASOURCE="s", TYPE="memory")"#,
    r#"CREATE TABLE t (id STRING, name STRING) WITH (DATASOURCE="t", TYPE="memory", KEY="id", KIND="lookup")"#,
    r#"CREATE TABLE u (id STRING, name STRING) WITH (DATASOURCE="u", TYPE="memory", KEY="id")"#,
];

/// The logical plan of `sql`.
pub(crate) fn plan(sql: &str) -> LogicalPlan {
    let mut catalog = HashMap::new();
    for ddl in CATALOG {
        let def = quiver_compiler::parse_create(ddl).expect("the test catalog parses");
        catalog.insert(def.name.clone(), def);
    }
    quiver_compiler::compile_rule(sql, &catalog, quiver_compiler::Registry::builtin())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .plan
}

/// What `pick` takes from the first node of `sql`'s plan it accepts.
fn node<T>(sql: &str, pick: impl Fn(&LogicalPlan) -> Option<T>) -> T {
    let plan = plan(sql);
    plan.chain()
        .find_map(pick)
        .unwrap_or_else(|| panic!("no such node in the plan of {sql}:\n{}", plan.explain()))
}

/// What the first node of `sql`'s plan matching `pattern` holds, as `value`.
macro_rules! held {
    ($sql:expr, $pattern:pat => $value:expr) => {
        node($sql, |n| match n {
            $pattern => Some($value),
            _ => None,
        })
    };
}

/// The WHERE condition of `sql`.
pub(crate) fn predicate(sql: &str) -> Expr {
    held!(sql, LogicalPlan::Filter { predicate, .. } => predicate.clone())
}

/// The SELECT list of `sql`.
pub(crate) fn select(sql: &str) -> Vec<ProjectItem> {
    held!(sql, LogicalPlan::Project { items, .. } => items.clone())
}

/// The ORDER BY keys of `sql`.
pub(crate) fn order_by(sql: &str) -> Vec<SortKey> {
    held!(sql, LogicalPlan::Sort { keys, .. } => keys.clone())
}

/// The LIMIT of `sql`.
pub(crate) fn limit(sql: &str) -> usize {
    held!(sql, LogicalPlan::Limit { n, .. } => *n)
}

/// The `row_number() OVER (...)` calls of `sql`.
pub(crate) fn row_numbers(sql: &str) -> Vec<RowNumberSpec> {
    held!(sql, LogicalPlan::RowNumber { specs, .. } => specs.clone())
}

/// The analytic calls of `sql`.
pub(crate) fn analytic_calls(sql: &str) -> Vec<AnalyticCall> {
    held!(sql, LogicalPlan::Analytic { calls, .. } => calls.clone())
}

/// The stream-table join of `sql`.
pub(crate) fn table_join(sql: &str) -> TableJoin {
    held!(sql, LogicalPlan::JoinTable { join, .. } => (**join).clone())
}

/// The window (or row aggregate) of `sql`.
pub(crate) fn aggregate(sql: &str) -> Arc<AggregateSpec> {
    node(sql, |n| n.aggregate().cloned().map(Arc::new))
}

/// A batch of the named columns.
pub(crate) fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("columns of one length")
}

/// A STRING column.
pub(crate) fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

/// A BIGINT column.
pub(crate) fn ints(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

/// Rows of stream `s` as `(k, v, ts)`, without `arr`.
pub(crate) fn rows(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let k: Vec<Option<&str>> = rows.iter().map(|r| Some(r.0)).collect();
    let v: Vec<Option<i64>> = rows.iter().map(|r| Some(r.1)).collect();
    let ts: Vec<Option<i64>> = rows.iter().map(|r| Some(r.2)).collect();
    batch(vec![("k", strings(&k)), ("v", ints(&v)), ("ts", ints(&ts))])
}

/// [`rows`] stamped with their `ts` as row time (`__ts`), as the scan stamps event time.
pub(crate) fn timed(r: &[(&str, i64, i64)]) -> RecordBatch {
    let ts: Vec<Option<i64>> = r.iter().map(|r| Some(r.2)).collect();
    let b = rows(r);
    quiver_connectors::codec::json::add_column(b, TS_COLUMN, ints(&ts))
}

/// [`timed`] rows prepared for the window of `spec`; every row must prepare.
pub(crate) fn prepared(spec: &Arc<AggregateSpec>, r: &[(&str, i64, i64)]) -> RecordBatch {
    let mut failures = crate::window::Failures::default();
    let out = crate::window::Prepare::new(spec.clone())
        .prepare(timed(r), 0, &mut failures)
        .expect("rows to prepare");
    assert_eq!(failures.rows, 0, "{:?}", failures.first);
    out
}

/// Runs `op` on rows `a`, `b`, `c` of `s` with `v` = 3, 0, 2 (at 1, 2, 3 ms), where `6 / v`
/// fails on `b` alone; what comes out.
pub(crate) fn divide_by_zero_once(op: &mut impl BatchOperator) -> RecordBatch {
    op.process_batch(timed(&[("a", 3, 1), ("b", 0, 2), ("c", 2, 3)]))
        .expect("a and c go on")
}

/// Asserts what a step counted as failed rows: how many and the first reason.
pub(crate) fn assert_failures(failures: &crate::window::Failures, rows: usize, reason: &str) {
    assert_eq!(failures.rows, rows);
    assert_eq!(failures.first.as_deref(), Some(reason));
}

/// Runs `op`, reporting into `metrics`, as [`divide_by_zero_once`] does and asserts eKuiper's
/// contract: `b` alone is dropped, counted with `reason`, and `a` and `c` go on.
pub(crate) fn assert_drops_the_failing_row(
    op: &mut impl BatchOperator,
    metrics: &NodeMetrics,
    reason: &str,
) -> RecordBatch {
    let out = divide_by_zero_once(op);
    assert_eq!(strings_of(&out, "k"), text(&["a", "c"]));
    assert_eq!(exceptions(metrics), (1, reason.to_string()));
    assert_eq!(records(metrics), (3, 2));
    out
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", column_names(batch)))
}

/// The column `name` as integers (any integer type).
pub(crate) fn ints_of(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let col =
        arrow::compute::cast(column(batch, name), &DataType::Int64).expect("an integer column");
    col.as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .collect()
}

/// The column `name` as text.
pub(crate) fn strings_of(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col = column(batch, name);
    let col = col.as_string::<i32>();
    (0..col.len())
        .map(|r| col.is_valid(r).then(|| col.value(r).to_string()))
        .collect()
}

/// Present text values, as [`strings_of`] reads them.
pub(crate) fn text(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

/// The column `name` as bytes (binary keys).
pub(crate) fn bytes_of(batch: &RecordBatch, name: &str) -> Vec<Vec<u8>> {
    let col = column(batch, name).as_binary::<i32>();
    col.iter().map(|v| v.unwrap_or_default().to_vec()).collect()
}

/// The batch's column names, in order.
pub(crate) fn column_names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// Fresh counters for one node.
pub(crate) fn metrics() -> Arc<NodeMetrics> {
    Arc::new(NodeMetrics::default())
}

/// `(exceptions_total, last_exception)` of a node, as its status shows them.
pub(crate) fn exceptions(metrics: &NodeMetrics) -> (u64, String) {
    let values = metrics.values();
    let get = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .expect("every metric is listed")
    };
    let count = get(crate::metrics::names::EXCEPTIONS)
        .as_u64()
        .expect("a count");
    let last = get(crate::metrics::names::LAST_EXCEPTION)
        .as_str()
        .expect("a reason")
        .to_string();
    (count, last)
}

/// `(records_in_total, records_out_total)` of a node.
pub(crate) fn records(metrics: &NodeMetrics) -> (u64, u64) {
    (metrics.records_in(), metrics.records_out())
}
