//! SELECT: computes the output columns (and `unnest`).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::eval::EvalContext;
use quiver_compiler::plan::ProjectItem;
use quiver_connectors::codec::encode::KEEP_NIL;

use crate::chain::BatchOperator;
use crate::metrics::NodeMetrics;

/// eKuiper's text for `unnest` over a value that is not an array (`binder/function`).
const UNNEST_NOT_ARRAY: &str = "the argument for the unnest function should be array";

/// Computes the SELECT list.
pub struct ProjectOp {
    items: Vec<ProjectItem>,
    metrics: Arc<NodeMetrics>,
    /// The rule's `sendNilField`.
    send_nil: bool,
}

impl ProjectOp {
    /// A projection reporting into `metrics`.
    pub fn new(items: Vec<ProjectItem>, metrics: Arc<NodeMetrics>) -> Self {
        ProjectOp {
            items,
            metrics,
            send_nil: false,
        }
    }

    /// Marks the fields whose nulls are sent (eKuiper's `sendNilField`: plain columns and
    /// aliased fields) when `send_nil`.
    pub fn sending_nil(mut self, send_nil: bool) -> Self {
        self.send_nil = send_nil;
        self
    }

    /// The SELECT list over `batch`; failures of `unnest` go to `bare` (eKuiper reports them
    /// without the `run Select error` prefix).
    fn project(
        &self,
        batch: &RecordBatch,
        ctx: &mut EvalContext,
        bare: &mut Option<quiver_compiler::eval::RowErrors>,
    ) -> Result<RecordBatch, String> {
        let rows = batch.num_rows();
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut unnest = None;
        let schema = batch.schema();
        // Each field's failures, reported as eKuiper does: the field's expression (and alias)
        // in the text, plain fields before aliased ones (the order it evaluates them in).
        let mut field_errors: Vec<(bool, String, quiver_compiler::eval::RowErrors)> = Vec::new();
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
                        if quiver_compiler::columns::is_hidden(f.name())
                            || fields.iter().any(|x: &Field| x.name() == name)
                        {
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
                ProjectItem::Expr { expr, name, label } => {
                    let mut own = ctx.child();
                    let arr = expr.eval(batch, &mut own)?.into_array(rows);
                    if !own.errors.is_empty() {
                        let prefix = format!("{} meet error, err:", label.text);
                        field_errors.push((label.aliased, prefix, own.errors));
                    }
                    let mut field = Field::new(name, arr.data_type().clone(), true);
                    if self.send_nil && label.keeps_nil() {
                        field = field.with_metadata(std::collections::HashMap::from([(
                            KEEP_NIL.to_string(),
                            "true".to_string(),
                        )]));
                    }
                    fields.push(field);
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
        field_errors.sort_by_key(|(aliased, ..)| *aliased);
        for (_, prefix, errors) in field_errors {
            ctx.errors.merge_prefixed(errors, &prefix);
        }
        let Some((at, name, list)) = unnest else {
            return RecordBatch::try_new_with_options(
                Arc::new(Schema::new(fields)),
                cols,
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )
            .map_err(|e| e.to_string());
        };
        let mut own = ctx.child();
        let out = unnest_rows(fields, cols, at, &name, &list, &mut own);
        *bare = Some(own.errors);
        out
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
        _ => {
            for r in 0..rows {
                if list.is_valid(r) {
                    ctx.errors.flag(r, || UNNEST_NOT_ARRAY.to_string());
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
        let mut ctx = if self.metrics.sends_errors() {
            EvalContext::detailed(rows)
        } else {
            EvalContext::new(rows)
        };
        let mut bare = None;
        let out = match self.project(&batch, &mut ctx, &mut bare) {
            Ok(b) => Some(b),
            Err(e) => {
                ctx.errors.flag_all(e);
                None
            }
        };
        self.metrics.row_errors(&ctx.errors, "run Select error: ");
        if let Some(errors) = bare {
            self.metrics.row_errors(&errors, "");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        assert_drops_the_failing_row, batch, column_names, ints, ints_of, metrics, rows, select,
        strings, strings_of, text,
    };

    #[test]
    fn computes_the_select_list_in_order_under_its_names() {
        let mut op = ProjectOp::new(select("SELECT v * 2 AS dbl, k FROM s"), metrics());
        let out = op
            .process_batch(rows(&[("a", 1, 10), ("b", 5, 20)]))
            .expect("every row projects");
        assert_eq!(column_names(&out), ["dbl", "k"]);
        assert_eq!(ints_of(&out, "dbl"), [Some(2), Some(10)]);
        assert_eq!(strings_of(&out, "k"), text(&["a", "b"]));
    }

    #[test]
    fn star_leaves_hidden_columns_out_and_names_table_columns_by_their_own_name() {
        let mut op = ProjectOp::new(select("SELECT * FROM s"), metrics());
        let one = |v| ints(&[Some(v)]);
        let input = batch(vec![
            ("u.name", strings(&[Some("hall")])),
            ("k", strings(&[Some("a")])),
            ("__ts", one(1000)),
            ("__an_0", one(7)),
            ("__meta_topic", strings(&[Some("s")])),
            ("v", one(3)),
        ]);
        let out = op.process_batch(input).expect("one row");
        assert_eq!(column_names(&out), ["k", "v", "name"]);
        assert_eq!(strings_of(&out, "name"), text(&["hall"]));
    }

    #[test]
    fn a_failing_row_is_dropped_and_counted_with_ekuipers_message() {
        let m = metrics();
        let mut op = ProjectOp::new(select("SELECT k, 6 / v AS q FROM s"), m.clone());
        let out = assert_drops_the_failing_row(
            &mut op,
            &m,
            "run Select error: alias: q expr: binaryExpr:{ 6 / s.v } meet error, err:divided by zero",
        );
        assert_eq!(ints_of(&out, "q"), [Some(2), Some(3)]);
    }

    #[test]
    fn unnest_makes_a_row_per_element_and_repeats_the_other_columns() {
        let mut op = ProjectOp::new(select("SELECT k, unnest(arr) AS r FROM s"), metrics());
        let arr = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int64Type, _, _>(
            vec![
                Some(vec![Some(1), Some(2)]),
                Some(vec![]),
                None,
                Some(vec![Some(7)]),
            ],
        );
        let input = batch(vec![
            ("k", strings(&[Some("a"), Some("b"), Some("c"), Some("d")])),
            ("arr", Arc::new(arr)),
        ]);
        let out = op.process_batch(input).expect("three elements");
        assert_eq!(column_names(&out), ["k", "r"]);
        assert_eq!(strings_of(&out, "k"), text(&["a", "a", "d"]));
        assert_eq!(ints_of(&out, "r"), [Some(1), Some(2), Some(7)]);
    }
}
