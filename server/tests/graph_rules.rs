//! Graph rules end to end: eKuiper's `"graph"` rule form (`pkg/def/rule.go`, documented in
//! `docs/en_US/guide/rules/graph_rule.md`, planned by `internal/topo/planner/planner_graph.go`)
//! created over REST on the real quiverd, fed over HTTP push, with the rows read from the
//! machine's Mosquitto where the rule's MQTT sink node publishes them.

mod common;

use std::time::Duration;

use common::mqtt::{TestClient, unique};
use common::{Server, temp_dir, wait_metric};
use serde_json::{Value, json};

fn source(stream: &str) -> Value {
    json!({"type": "source", "nodeType": "httppush", "props": {"sourceName": stream}})
}

fn op(node_type: &str, props: Value) -> Value {
    json!({"type": "operator", "nodeType": node_type, "props": props})
}

fn mqtt_sink(topic: &str, single: bool) -> Value {
    json!({"type": "sink", "nodeType": "mqtt",
           "props": {"server": "tcp://127.0.0.1:1883", "topic": topic, "sendSingle": single}})
}

/// A rule whose graph is `source -> ops... -> one MQTT sink` (eKuiper's first docs example
/// has this shape).
fn linear_rule(id: &str, stream: &str, ops: &[(&str, Value)], sink: Value) -> Value {
    let mut nodes = serde_json::Map::new();
    let mut edges = serde_json::Map::new();
    nodes.insert(stream.into(), source(stream));
    let mut prev = stream.to_string();
    for (name, node) in ops {
        nodes.insert(name.to_string(), node.clone());
        edges.insert(prev.clone(), json!([name]));
        prev = name.to_string();
    }
    nodes.insert("out".into(), sink);
    edges.insert(prev, json!(["out"]));
    json!({"id": id, "graph": {"nodes": nodes, "topo": {"sources": [stream], "edges": edges}}})
}

/// The next message on `sub`, as JSON.
async fn next_json(sub: &mut TestClient) -> Value {
    let p = tokio::time::timeout(Duration::from_secs(20), sub.publishes.recv())
        .await
        .expect("a message within 20s")
        .expect("the subscriber runs");
    serde_json::from_slice(&p.payload).expect("JSON payload")
}

/// No further message arrives within a short wait.
async fn assert_quiet(sub: &mut TestClient) {
    if let Ok(Some(p)) =
        tokio::time::timeout(Duration::from_millis(500), sub.publishes.recv()).await
    {
        panic!(
            "unexpected message {:?}",
            String::from_utf8_lossy(&p.payload)
        );
    }
}

/// A fresh quiverd and an MQTT topic of its own.
fn start(name: &str) -> (Server, String) {
    let server = Server::start(&temp_dir(&format!("graph-{name}")));
    (server, format!("quiver-graph/{}/{name}", unique()))
}

async fn subscriber(topic: &str) -> TestClient {
    let mut sub = TestClient::start(1883, Some(topic.to_string()));
    sub.subscribed().await;
    sub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_and_pick_send_the_matching_rows_and_survive_a_restart() {
    let topic = format!("quiver-graph/{}/hot", unique());
    let dir = temp_dir("graph-filter");
    let server = Server::start(&dir);
    server.create_stream(r#"CREATE STREAM readings (device STRING, temperature FLOAT, humidity BIGINT) WITH (DATASOURCE="/graph/readings", TYPE="httppush", FORMAT="json")"#);
    let rule = linear_rule(
        "hot",
        "readings",
        &[
            (
                "hotFilter",
                op("filter", json!({"expr": "temperature > 20"})),
            ),
            (
                "pickOut",
                op("pick", json!({"fields": ["device", "temperature"]})),
            ),
        ],
        mqtt_sink(&topic, true),
    );
    let (status, body) = server.call("POST", "/rules/validate", Some(rule.clone()));
    assert_eq!((status, body.as_str()), (200, r#"{"valid":true}"#));
    let mut sub = subscriber(&topic).await;
    assert_eq!(
        server.call("POST", "/rules", Some(rule.clone())),
        (201, "Rule hot was created successfully.".into())
    );
    let rows = r#"[{"device":"a","temperature":25,"humidity":1},{"device":"b","temperature":10,"humidity":2},{"device":"c","temperature":30.5,"humidity":3}]"#;
    assert_eq!(server.push("/graph/readings", rows).0, 200);
    assert_eq!(
        next_json(&mut sub).await,
        json!({"device": "a", "temperature": 25})
    );
    assert_eq!(
        next_json(&mut sub).await,
        json!({"device": "c", "temperature": 30.5})
    );
    assert_quiet(&mut sub).await;

    // The rule runs as the SELECT the graph stands for: status, explain, topology as for SQL.
    let st = wait_metric(&server, "hot", "sink_mqtt_0_0_records_in_total", 2);
    assert_eq!(st["status"], json!("running"), "{st}");
    let (_, explain) = server.call("GET", "/rules/hot/explain", None);
    assert!(explain.contains("(temperature > 20)"), "{explain}");
    // GET shows the graph as it was stored.
    let (status, shown) = server.json("GET", "/rules/hot", None);
    assert_eq!(status, 200);
    assert_eq!(shown, rule);

    // After a restart the catalog's graph is translated again and the rule runs.
    server.stop();
    let server = Server::start(&dir);
    let (_, st) = server.json("GET", "/rules/hot/status", None);
    assert_eq!(st["status"], json!("running"), "{st}");
    assert_eq!(
        server
            .push(
                "/graph/readings",
                r#"{"device":"d","temperature":21,"humidity":4}"#
            )
            .0,
        200
    );
    assert_eq!(
        next_json(&mut sub).await,
        json!({"device": "d", "temperature": 21})
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_node_adds_its_field_and_fans_out_to_two_sinks() {
    let (server, topic) = start("fn");
    server.create_stream(r#"CREATE STREAM fnin (device STRING, temperature FLOAT) WITH (DATASOURCE="/graph/fn", TYPE="httppush", FORMAT="json")"#);
    let mut rule = linear_rule(
        "fn",
        "fnin",
        &[(
            "rounded",
            op("function", json!({"expr": "round(temperature) AS t"})),
        )],
        mqtt_sink(&topic, true),
    );
    // Fan-out from the last node: two sinks, two actions.
    rule["graph"]["nodes"]["out2"] = mqtt_sink(&format!("{topic}/2"), true);
    rule["graph"]["topo"]["edges"]["rounded"] = json!(["out", "out2"]);
    let mut sub = subscriber(&format!("{topic}/#")).await;
    let mut sub1 = subscriber(&topic).await;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    assert_eq!(
        server
            .push("/graph/fn", r#"{"device":"a","temperature":25.4}"#)
            .0,
        200
    );
    let want = json!({"device": "a", "temperature": 25.4, "t": 25});
    assert_eq!(next_json(&mut sub1).await, want);
    assert_eq!(
        next_json(&mut sub).await,
        want,
        "the second sink publishes the same row"
    );
    let st = wait_metric(&server, "fn", "sink_mqtt_1_0_records_in_total", 1);
    assert_eq!(st["sink_mqtt_0_0_records_in_total"], json!(1), "{st}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_groupby_aggfunc_having_and_orderby() {
    let (server, topic) = start("win");
    server.create_stream(r#"CREATE STREAM win (device STRING, temperature FLOAT, ts BIGINT) WITH (DATASOURCE="/graph/win", TYPE="httppush", FORMAT="json", TIMESTAMP="ts")"#);
    let mut rule = linear_rule(
        "win",
        "win",
        &[
            ("warm", op("filter", json!({"expr": "temperature > 0"}))),
            (
                "w10",
                op(
                    "window",
                    json!({"type": "tumblingwindow", "unit": "ss", "size": 10}),
                ),
            ),
            ("byDevice", op("groupby", json!({"dimensions": ["device"]}))),
            ("cnt", op("aggfunc", json!({"expr": "count(*) AS n"}))),
            // After aggfunc a filter is HAVING (eKuiper's planner turns it into a HavingOp).
            ("many", op("filter", json!({"expr": "n > 1"}))),
            (
                "sorted",
                op(
                    "orderby",
                    json!({"sorts": [{"field": "n", "order": "desc"}]}),
                ),
            ),
            ("out_fields", op("pick", json!({"fields": ["device", "n"]}))),
        ],
        mqtt_sink(&topic, false),
    );
    rule["options"] = json!({"isEventTime": true, "lateTolerance": 0});
    let mut sub = subscriber(&topic).await;
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let rows = r#"[{"device":"a","temperature":1,"ts":1000},{"device":"a","temperature":2,"ts":2000},
        {"device":"b","temperature":3,"ts":3000},{"device":"c","temperature":4,"ts":4000},
        {"device":"c","temperature":5,"ts":5000},{"device":"c","temperature":6,"ts":6000},
        {"device":"b","temperature":-1,"ts":7000}]"#;
    assert_eq!(server.push("/graph/win", rows).0, 200);
    // A row past the window's end closes it.
    assert_eq!(
        server
            .push("/graph/win", r#"{"device":"x","temperature":1,"ts":20000}"#)
            .0,
        200
    );
    assert_eq!(
        next_json(&mut sub).await,
        json!([{"device": "c", "n": 3}, {"device": "a", "n": 2}]),
        "b has one warm row, so HAVING n > 1 drops it"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_node_joins_two_streams_in_a_window() {
    let (server, topic) = start("join");
    server.create_stream(r#"CREATE STREAM door (id STRING, ts BIGINT) WITH (DATASOURCE="/graph/door", TYPE="httppush", FORMAT="json", TIMESTAMP="ts")"#);
    server.create_stream(r#"CREATE STREAM motion (id STRING, level BIGINT, ts BIGINT) WITH (DATASOURCE="/graph/motion", TYPE="httppush", FORMAT="json", TIMESTAMP="ts")"#);
    // The shape of eKuiper's join example: both sources into one window, then the join.
    let rule = json!({
        "id": "dm",
        "graph": {
            "nodes": {
                "door": source("door"),
                "motion": source("motion"),
                "w": op("window", json!({"type": "tumblingwindow", "unit": "ss", "size": 10})),
                "j": op("join", json!({"from": "door", "joins": [{"name": "motion", "type": "inner", "on": "door.id = motion.id"}]})),
                "p": op("pick", json!({"fields": ["door.id", "motion.level"]})),
                "out": mqtt_sink(&topic, true)
            },
            "topo": {"sources": ["door", "motion"], "edges": {"door": ["w"], "motion": ["w"], "w": ["j"], "j": ["p"], "p": ["out"]}}
        },
        "options": {"isEventTime": true, "lateTolerance": 0}
    });
    let mut sub = subscriber(&topic).await;
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server.push("/graph/door", r#"{"id":"d1","ts":1000}"#).0,
        200
    );
    assert_eq!(
        server
            .push(
                "/graph/motion",
                r#"[{"id":"d1","level":5,"ts":1500},{"id":"d2","level":6,"ts":1600}]"#
            )
            .0,
        200
    );
    assert_eq!(
        server.push("/graph/door", r#"{"id":"x","ts":20000}"#).0,
        200
    );
    assert_eq!(
        server.push("/graph/motion", r#"{"id":"x","ts":20000}"#).0,
        200
    );
    assert_eq!(next_json(&mut sub).await, json!({"id": "d1", "level": 5}));
    server.stop();
}

#[test]
fn graphs_quiver_cannot_run_are_400_naming_the_node() {
    let dir = temp_dir("graph-400");
    let server = Server::start(&dir);
    server.create_stream(r#"CREATE STREAM s (a BIGINT) WITH (DATASOURCE="/graph/s", TYPE="httppush", FORMAT="json")"#);
    server.create_stream(r#"CREATE STREAM other (b BIGINT) WITH (DATASOURCE="/graph/o", TYPE="httppush", FORMAT="json")"#);
    let log = json!({"type": "sink", "nodeType": "log", "props": {}});
    let refused = |rule: Value, want: &str| {
        for path in ["/rules", "/rules/validate"] {
            let (status, body) = server.json("POST", path, Some(rule.clone()));
            assert_eq!(status, 400, "{path} {rule}: {body}");
            let msg = body["message"].as_str().unwrap_or_default().to_string();
            assert!(msg.contains(want), "{path}: {msg:?} lacks {want:?}");
        }
    };
    // An unknown operator type (eKuiper: "unknown operator type").
    refused(
        linear_rule("r", "s", &[("x", op("magic", json!({})))], log.clone()),
        "graph node \"x\": unknown operator type \"magic\"",
    );
    // An unknown sink type names the sink node.
    refused(
        linear_rule(
            "r",
            "s",
            &[],
            json!({"type": "sink", "nodeType": "nosuchsink", "props": {}}),
        ),
        "graph node \"out\": ",
    );
    // An expression is parsed alone: it cannot add a FROM (or anything else) to the query.
    refused(
        linear_rule(
            "r",
            "s",
            &[("inj", op("filter", json!({"expr": "1 FROM other"})))],
            log.clone(),
        ),
        "graph node \"inj\": expr: syntax error",
    );
    refused(
        linear_rule(
            "r",
            "s",
            &[(
                "inj",
                op("pick", json!({"fields": ["a FROM other WHERE b > 0"]})),
            )],
            log.clone(),
        ),
        "graph node \"inj\": field",
    );
    // A switch routes rows to branches; one SELECT cannot.
    refused(
        linear_rule(
            "r",
            "s",
            &[(
                "sw",
                op(
                    "switch",
                    json!({"cases": ["a > 1"], "stopAtFirstMatch": true}),
                ),
            )],
            log.clone(),
        ),
        "graph node \"sw\": switch nodes",
    );
    // A cycle.
    let mut cyc = linear_rule(
        "r",
        "s",
        &[
            ("f1", op("filter", json!({"expr": "a > 1"}))),
            ("f2", op("filter", json!({"expr": "a > 2"}))),
        ],
        log.clone(),
    );
    cyc["graph"]["topo"]["edges"]["f2"] = json!(["out", "f1"]);
    refused(cyc, "is on a cycle");
    // A node no source reaches.
    let mut lone = linear_rule(
        "r",
        "s",
        &[("f1", op("filter", json!({"expr": "a > 1"})))],
        log.clone(),
    );
    lone["graph"]["nodes"]["lost"] = op("filter", json!({"expr": "a > 2"}));
    lone["graph"]["topo"]["edges"]["lost"] = json!(["out"]);
    refused(lone, "graph node \"lost\": is not connected to any source");
    // Branches with different operators are not one SELECT.
    let mut branches = linear_rule(
        "r",
        "s",
        &[("f1", op("filter", json!({"expr": "a > 1"})))],
        log.clone(),
    );
    branches["graph"]["nodes"]["f2"] = op("filter", json!({"expr": "a > 2"}));
    branches["graph"]["nodes"]["out2"] = log.clone();
    branches["graph"]["topo"]["edges"]["s"] = json!(["f1", "f2"]);
    branches["graph"]["topo"]["edges"]["f2"] = json!(["out2"]);
    refused(branches, "starts a second branch");
    // A field the stream does not have, named on the node that reads it.
    refused(
        linear_rule(
            "r",
            "s",
            &[("p", op("pick", json!({"fields": ["aa"]})))],
            log.clone(),
        ),
        "graph node \"p\": unknown field \"aa\"",
    );
    // sql and graph together.
    let mut both = linear_rule("r", "s", &[], log.clone());
    both["sql"] = json!("SELECT * FROM s");
    refused(both, "not both");
    assert_eq!(
        server.json("GET", "/rules", None).1,
        json!([]),
        "nothing was created"
    );

    // Secrets of a sink node are masked when the rule is shown.
    let mut secret = linear_rule(
        "sec",
        "s",
        &[],
        json!({"type": "sink", "nodeType": "mqtt", "props": {"server": "tcp://127.0.0.1:1883", "topic": "t", "username": "u", "password": "s3cret"}}),
    );
    secret["triggered"] = json!(false);
    assert_eq!(server.call("POST", "/rules", Some(secret)).0, 201);
    let (_, shown) = server.call("GET", "/rules/sec", None);
    assert!(
        !shown.contains("s3cret") && shown.contains("******"),
        "{shown}"
    );
    server.stop();
}
