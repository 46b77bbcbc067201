//! One representative function per category of the registry, each evaluated over one decoded
//! 1,024-row batch of the demo stream, so a function that falls back to per-row work shows up
//! as an outlier. Add a line to `CASES` to cover another function.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_benches::DEMO_STREAM_SQL;
use quiver_compiler::eval::EvalContext;
use quiver_compiler::expr::Expr;
use quiver_compiler::{LogicalPlan, ProjectItem, Registry, compile_rule, parse_create};

const ROWS: usize = 1_024;

/// (category, expression over the demo stream's columns).
const CASES: &[(&str, &str)] = &[
    ("math", "round(temperature * 1.8 + 32, 1)"),
    ("string", "lpad(upper(device), 12)"),
    (
        "string/regexp",
        "regexp_replace(device, 'dev-([0-9]+)', 'd$1')",
    ),
    ("datetime", "format_time(ts, 'yyyy-MM-dd HH:mm:ss')"),
    ("hashing", "md5(device)"),
    ("conversion", "cast(humidity, 'string')"),
    ("transform", "dec2hex(humidity)"),
    ("json", "json_path_query(to_json(device), '$')"),
    ("array", "array_contains(array_create(humidity, 1, 2), 1)"),
    ("other", "coalesce(humidity, 0)"),
];

/// The compiled expression of `SELECT <expr> AS x FROM demo`.
fn compile(expr: &str) -> Expr {
    let def = parse_create(DEMO_STREAM_SQL).expect("the stream parses");
    let mut catalog = HashMap::new();
    catalog.insert(def.name.clone(), def);
    let sql = format!("SELECT {expr} AS x FROM demo");
    let plan =
        compile_rule(&sql, &catalog, Registry::builtin()).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let LogicalPlan::Project { mut items, .. } = plan.plan else {
        panic!("expected Project at the top");
    };
    match items.pop() {
        Some(ProjectItem::Expr { expr, .. }) => expr,
        other => panic!("unexpected item {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let batch = quiver_benches::demo_batch(ROWS);
    let mut group = c.benchmark_group("functions");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (category, text) in CASES {
        let expr = compile(text);
        // Sanity: every row evaluates without error.
        let mut ctx = EvalContext::new(batch.num_rows());
        expr.eval(&batch, &mut ctx).expect("evaluates");
        assert!(ctx.errors.is_empty(), "{text}: {:?}", ctx.errors.first());
        group.bench_function(format!("{category}: {text}"), |b| {
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
