//! Vectorised evaluation of compiled expressions over one decoded 1,024-row batch.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_benches::DEMO_STREAM_SQL;
use quiver_compiler::eval::EvalContext;
use quiver_compiler::expr::Expr;
use quiver_compiler::{LogicalPlan, ProjectItem, Registry, StreamDef, compile_rule, parse_create};

const ROWS: usize = 1_024;

/// The rule whose filter and projections are benchmarked.
const SQL: &str = "SELECT temperature * 1.8 + 32 AS f, upper(device) AS d, \
     CASE WHEN temperature > 30 THEN 'hot' ELSE 'ok' END AS c \
     FROM demo WHERE temperature > 20";

/// The filter predicate and the projected expressions (by output name) of the plan.
fn expressions(def: StreamDef) -> Vec<(String, Expr)> {
    let mut catalog = HashMap::new();
    catalog.insert(def.name.clone(), def);
    let plan = compile_rule(SQL, &catalog, Registry::builtin()).expect("the rule compiles");
    let LogicalPlan::Project { items, input } = plan.plan else {
        panic!("expected Project at the top, got:\n{}", plan.plan.explain());
    };
    let LogicalPlan::Filter { predicate, .. } = *input else {
        panic!("expected Filter under Project, got:\n{}", input.explain());
    };
    let mut out = vec![("filter: temperature > 20".to_string(), predicate)];
    for item in items {
        if let ProjectItem::Expr { expr, name, .. } = item {
            let label = match name.as_str() {
                "f" => "temperature * 1.8 + 32",
                "d" => "upper(device)",
                "c" => "CASE WHEN temperature > 30 THEN 'hot' ELSE 'ok' END",
                other => panic!("unexpected item {other}"),
            };
            out.push((label.to_string(), expr));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let def = parse_create(DEMO_STREAM_SQL).expect("the stream parses");
    let batch = quiver_benches::demo_batch(ROWS);
    let exprs = expressions(def);
    assert_eq!(exprs.len(), 4);

    let mut group = c.benchmark_group("expr_eval");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (label, expr) in &exprs {
        // Sanity: evaluates without per-row errors.
        let mut ctx = EvalContext::new(batch.num_rows());
        expr.eval(&batch, &mut ctx).expect("evaluates");
        group.bench_function(label.as_str(), |b| {
            b.iter(|| {
                let mut ctx = EvalContext::new(batch.num_rows());
                black_box(expr.eval(black_box(&batch), &mut ctx).expect("evaluates"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
