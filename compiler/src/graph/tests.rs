//! Graph rules to SELECT text, and the graphs that are refused (eKuiper's
//! `internal/topo/planner/planner_graph.go` is the reference for props and checks).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::compile_graph;
use crate::{Registry, StreamDef, compile_rule, parse_create};

fn catalog() -> HashMap<String, StreamDef> {
    [
        r#"CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) WITH (DATASOURCE="demo", TYPE="memory")"#,
        r#"CREATE STREAM other (device STRING, level BIGINT, ts BIGINT) WITH (DATASOURCE="other", TYPE="memory")"#,
        r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="devices", TYPE="memory", KEY="id", KIND="lookup")"#,
    ]
    .into_iter()
    .map(|ddl| {
        let def = parse_create(ddl).expect("test DDL parses");
        (def.name.clone(), def)
    })
    .collect()
}

fn src(stream: &str) -> Value {
    json!({"type": "source", "nodeType": "memory", "props": {"sourceName": stream}})
}

fn op(node_type: &str, props: Value) -> Value {
    json!({"type": "operator", "nodeType": node_type, "props": props})
}

fn sink() -> Value {
    json!({"type": "sink", "nodeType": "memory", "props": {"topic": "out"}})
}

/// A linear graph: demo -> ops... -> out.
fn linear(ops: &[(&str, Value)]) -> Value {
    let mut nodes = serde_json::Map::new();
    nodes.insert("demo".into(), src("demo"));
    let mut edges = serde_json::Map::new();
    let mut prev = "demo".to_string();
    for (name, node) in ops {
        nodes.insert(name.to_string(), node.clone());
        edges.insert(prev.clone(), json!([name]));
        prev = name.to_string();
    }
    nodes.insert("out".into(), sink());
    edges.insert(prev, json!(["out"]));
    json!({"nodes": nodes, "topo": {"sources": ["demo"], "edges": edges}})
}

/// The SELECT of a graph that must translate and compile.
fn sql(graph: &Value) -> String {
    let q = compile_graph(graph, &catalog()).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = compile_rule(&q.sql, &catalog(), Registry::builtin()) {
        panic!("{}: {}", q.sql, q.locate(&e));
    }
    q.sql
}

fn error(graph: &Value) -> String {
    match compile_graph(graph, &catalog()) {
        Ok(q) => match compile_rule(&q.sql, &catalog(), Registry::builtin()) {
            Ok(_) => panic!("compiled: {}", q.sql),
            Err(e) => q.locate(&e).to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_linear_chain_is_one_select() {
    let g = linear(&[
        ("hot", op("filter", json!({"expr": "temperature > 20"}))),
        (
            "pick",
            op(
                "pick",
                json!({"fields": ["device", "temperature * 2 AS t2"]}),
            ),
        ),
    ]);
    assert_eq!(
        sql(&g),
        "SELECT device, temperature * 2 AS t2 FROM demo WHERE temperature > 20"
    );
    // No operator at all: every column.
    assert_eq!(sql(&linear(&[])), "SELECT * FROM demo");
}

#[test]
fn function_fields_are_added_or_serve_the_pick() {
    let f = op("function", json!({"expr": "abs(temperature) AS t"}));
    assert_eq!(
        sql(&linear(&[("f", f.clone())])),
        "SELECT *, abs(temperature) AS t FROM demo"
    );
    // An unnamed call is named after its function, as eKuiper's parseFunc names it.
    let g = linear(&[
        ("f", op("function", json!({"expr": "ROUND(temperature)"}))),
        ("p", op("pick", json!({"fields": ["device", "round"]}))),
    ]);
    assert_eq!(
        sql(&g),
        "SELECT ROUND(temperature) AS round INVISIBLE, device, round FROM demo"
    );
    // A filter may read a function's field.
    let g = linear(&[("f", f), ("hot", op("filter", json!({"expr": "t > 1"})))]);
    assert_eq!(
        sql(&g),
        "SELECT *, abs(temperature) AS t FROM demo WHERE t > 1"
    );
}

#[test]
fn window_groupby_aggfunc_and_a_filter_after_them_is_having() {
    let g = linear(&[
        ("warm", op("filter", json!({"expr": "temperature > 0"}))),
        (
            "w",
            op(
                "window",
                json!({"type": "tumblingwindow", "unit": "ss", "size": 10}),
            ),
        ),
        ("g", op("groupby", json!({"dimensions": ["device"]}))),
        ("n", op("aggfunc", json!({"expr": "count(*) AS n"}))),
        ("many", op("filter", json!({"expr": "n > 1"}))),
        (
            "o",
            op(
                "orderby",
                json!({"sorts": [{"field": "n", "desc": true}, {"field": "device", "order": "asc"}]}),
            ),
        ),
        (
            "p",
            op("pick", json!({"fields": ["device", "n", "window_end()"]})),
        ),
    ]);
    assert_eq!(
        sql(&g),
        "SELECT count(*) AS n INVISIBLE, device, n, window_end() FROM demo WHERE temperature > 0 \
         GROUP BY device, TUMBLINGWINDOW(ss, 10) HAVING n > 1 ORDER BY n DESC, device"
    );
}

#[test]
fn every_window_type_maps_to_its_function() {
    let w = |props: Value| {
        sql(&linear(&[
            ("w", op("window", props)),
            ("n", op("aggfunc", json!({"expr": "count(*)"}))),
        ]))
    };
    assert!(
        w(json!({"type": "hoppingwindow", "unit": "ss", "size": 10, "interval": 5}))
            .contains("GROUP BY HOPPINGWINDOW(ss, 10, 5)")
    );
    assert!(
        w(json!({"type": "SlidingWindow", "unit": "MS", "size": 10}))
            .contains("GROUP BY SLIDINGWINDOW(ms, 10)")
    );
    assert!(
        w(json!({"type": "sessionwindow", "unit": "mi", "size": 10, "interval": 2}))
            .contains("GROUP BY SESSIONWINDOW(mi, 10, 2)")
    );
    assert!(w(json!({"type": "countwindow", "size": 3})).contains("GROUP BY COUNTWINDOW(3)"));
    assert!(
        w(json!({"type": "countwindow", "size": 3, "interval": 1}))
            .contains("GROUP BY COUNTWINDOW(3, 1)")
    );
    for (props, want) in [
        (
            json!({"type": "hoppingwindow", "unit": "ss", "size": 10}),
            "interval above 0",
        ),
        (
            json!({"type": "tumblingwindow", "unit": "ss", "size": 10, "interval": 3}),
            "no interval",
        ),
        (
            json!({"type": "tumblingwindow", "unit": "week", "size": 10}),
            "not a time unit",
        ),
        (
            json!({"type": "countwindow", "unit": "ss", "size": 10}),
            "does not apply",
        ),
        (
            json!({"type": "squarewindow", "unit": "ss", "size": 10}),
            "unknown window type",
        ),
        (
            json!({"type": "tumblingwindow", "unit": "ss", "size": 0}),
            "above 0",
        ),
        (
            json!({"type": "tumblingwindow", "unit": "ss", "size": 1, "length": 2}),
            "unknown field `length`",
        ),
    ] {
        let e = error(&linear(&[("w", op("window", props))]));
        assert!(
            e.starts_with("graph node \"w\": ") && e.contains(want),
            "{e}"
        );
    }
}

#[test]
fn a_join_of_two_streams_and_of_a_table() {
    let g = json!({
        "nodes": {
            "demo": src("demo"), "other": src("other"),
            "w": op("window", json!({"type": "tumblingwindow", "unit": "ss", "size": 10})),
            "j": op("join", json!({"from": "demo", "joins": [{"name": "other", "type": "inner", "on": "demo.device = other.device"}]})),
            "p": op("pick", json!({"fields": ["demo.device", "level"]})),
            "out": sink(), "out2": sink(),
        },
        "topo": {"sources": ["demo", "other"], "edges": {
            "demo": ["w"], "other": ["w"], "w": ["j"], "j": ["p"], "p": ["out", "out2"]}}
    });
    assert_eq!(
        sql(&g),
        "SELECT demo.device, level FROM demo INNER JOIN other ON demo.device = other.device \
         GROUP BY TUMBLINGWINDOW(ss, 10)"
    );
    let q = compile_graph(&g, &catalog()).unwrap();
    assert_eq!(
        q.sinks.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(),
        ["out", "out2"]
    );
    let t = json!({
        "nodes": {
            "demo": src("demo"),
            "devices": {"type": "source", "nodeType": "memory", "props": {"sourceName": "devices", "sourceType": "table"}},
            "j": op("join", json!({"from": "demo", "joins": [{"name": "devices", "type": "left", "on": "device = id"}]})),
            "out": sink(),
        },
        "topo": {"sources": ["demo", "devices"], "edges": {"demo": ["j"], "devices": ["j"], "j": ["out"]}}
    });
    assert_eq!(
        sql(&t),
        "SELECT * FROM demo LEFT JOIN devices ON device = id"
    );
}

#[test]
fn an_expression_cannot_inject_clauses() {
    for (node_type, props, want) in [
        ("filter", json!({"expr": "1 FROM other"}), "syntax error"),
        (
            "filter",
            json!({"expr": "a > 1; DROP STREAM demo"}),
            "syntax error",
        ),
        ("filter", json!({"expr": "a > 1 -- "}), ""),
        (
            "pick",
            json!({"fields": ["device FROM other WHERE true"]}),
            "syntax error",
        ),
        (
            "function",
            json!({"expr": "abs(1) AS x FROM other"}),
            "syntax error",
        ),
        (
            "function",
            json!({"expr": "1 + 1"}),
            "must be a function call",
        ),
        (
            "groupby",
            json!({"dimensions": ["device HAVING 1"]}),
            "syntax error",
        ),
    ] {
        let g = linear(&[("x", op(node_type, props.clone()))]);
        match compile_graph(&g, &catalog()) {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.starts_with("graph node \"x\": ") && e.contains(want),
                    "{props}: {e}"
                );
            }
            // A comment is whitespace: the expression alone is `a > 1`.
            Ok(q) => assert_eq!(q.sql, "SELECT * FROM demo WHERE a > 1", "{props}"),
        }
    }
    // A string that ends in a backslash stays one string.
    let g = linear(&[(
        "x",
        op(
            "filter",
            json!({"expr": r#"device = "a\\" OR device = 'b'"#}),
        ),
    )]);
    assert_eq!(
        sql(&g),
        r#"SELECT * FROM demo WHERE device = "a\\" OR device = 'b'"#
    );
}

#[test]
fn graphs_quiver_cannot_run_are_refused_naming_the_node() {
    let e = error(&linear(&[("s", op("switch", json!({"cases": ["a > 1"]})))]));
    assert!(e.starts_with("graph node \"s\": switch nodes"), "{e}");
    let e = error(&linear(&[("x", op("magic", json!({})))]));
    assert!(
        e.starts_with("graph node \"x\": unknown operator type \"magic\""),
        "{e}"
    );
    let e = error(&linear(&[(
        "x",
        op("script", json!({"script": "function exec(m){return m}"})),
    )]));
    assert!(e.contains("JavaScript"), "{e}");
    // A cycle.
    let mut g = linear(&[
        ("a", op("filter", json!({"expr": "a > 1"}))),
        ("b", op("filter", json!({"expr": "b > 1"}))),
    ]);
    g["topo"]["edges"]["b"] = json!(["out", "a"]);
    assert!(error(&g).contains("is on a cycle"), "{}", error(&g));
    // A node no source reaches.
    let mut g = linear(&[("a", op("filter", json!({"expr": "a > 1"})))]);
    g["nodes"]["lost"] = op("filter", json!({"expr": "b > 1"}));
    g["topo"]["edges"]["lost"] = json!(["out"]);
    assert!(
        error(&g).starts_with("graph node \"lost\": is not connected"),
        "{}",
        error(&g)
    );
    // Branches with different operators are two SELECTs.
    let mut g = linear(&[("a", op("filter", json!({"expr": "a > 1"})))]);
    g["nodes"]["b"] = op("filter", json!({"expr": "b > 1"}));
    g["nodes"]["out2"] = sink();
    g["topo"]["edges"]["demo"] = json!(["a", "b"]);
    g["topo"]["edges"]["b"] = json!(["out2"]);
    assert!(
        error(&g).contains("starts a second branch beside \"a\""),
        "{}",
        error(&g)
    );
    // An aggregate with no window before it.
    let e = error(&linear(&[(
        "n",
        op("aggfunc", json!({"expr": "count(*)"})),
    )]));
    assert!(
        e.starts_with("graph node \"n\": aggfunc aggregates")
            && e.contains("put a window before it"),
        "{e}"
    );
    // A filter before a count window would count only the passing rows.
    let e = error(&linear(&[
        ("f", op("filter", json!({"expr": "humidity > 1"}))),
        ("w", op("window", json!({"type": "countwindow", "size": 2}))),
    ]));
    assert!(
        e.starts_with("graph node \"f\": filters rows before the countwindow"),
        "{e}"
    );
    // An inline source.
    let mut g = linear(&[]);
    g["nodes"]["demo"] =
        json!({"type": "source", "nodeType": "mqtt", "props": {"datasource": "t"}});
    assert!(error(&g).contains("does not support yet"), "{}", error(&g));
    // Unknown stream, wrong kind.
    g["nodes"]["demo"] = src("nosuch");
    assert!(
        error(&g).contains("no stream or table \"nosuch\""),
        "{}",
        error(&g)
    );
    g["nodes"]["demo"] =
        json!({"type": "source", "nodeType": "memory", "props": {"sourceName": "devices"}});
    assert!(
        error(&g).contains("is a table, not a stream"),
        "{}",
        error(&g)
    );
}

#[test]
fn compile_errors_name_the_node_they_come_from() {
    let g = linear(&[
        ("ok", op("filter", json!({"expr": "temperature > 1"}))),
        (
            "bad",
            op("pick", json!({"fields": ["device", "temprature"]})),
        ),
    ]);
    let e = error(&g);
    assert!(
        e.starts_with("graph node \"bad\": unknown field \"temprature\""),
        "{e}"
    );
}

#[test]
fn a_window_and_groupby_without_aggregate_keep_the_rows() {
    // eKuiper's planner_graph_test.go accepts window -> join -> groupby with no aggfunc.
    let g = linear(&[
        (
            "w",
            op(
                "window",
                json!({"type": "hoppingwindow", "unit": "ss", "size": 10, "interval": 5}),
            ),
        ),
        (
            "g",
            op("groupby", json!({"dimensions": ["device", "humidity"]})),
        ),
    ]);
    assert_eq!(
        sql(&g),
        "SELECT * FROM demo GROUP BY device, humidity, HOPPINGWINDOW(ss, 10, 5)"
    );
    // Its "aggFunc" is written with a capital F: node types are case-insensitive.
    let g = linear(&[
        (
            "w",
            op(
                "window",
                json!({"type": "tumblingwindow", "unit": "ss", "size": 10}),
            ),
        ),
        (
            "a",
            op(
                "aggFunc",
                json!({"expr": "avg(temperature) as avg_temperature"}),
            ),
        ),
    ]);
    assert_eq!(
        sql(&g),
        "SELECT *, avg(temperature) AS avg_temperature FROM demo GROUP BY TUMBLINGWINDOW(ss, 10)"
    );
}

#[test]
fn quotes_inside_strings_survive_the_round_trip() {
    for expr in [
        r#"device = "a\"b""#,
        r#"device = 'it''s'"#,
        r#"device = 'it\'s'"#,
        "device = \"a'b\"",
    ] {
        let g = linear(&[("x", op("filter", json!({ "expr": expr })))]);
        let q = compile_graph(&g, &catalog()).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert!(
            q.sql.starts_with("SELECT * FROM demo WHERE device = "),
            "{}",
            q.sql
        );
    }
}
