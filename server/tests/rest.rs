//! End-to-end tests of `quiverd`: the real binary on free ports with a temp data dir, driven
//! over HTTP like a user's curl calls.

mod common;

use common::{Server, temp_dir, wait_metric};
use serde_json::{Value, json};

#[test]
fn streams_and_rules_over_rest_with_ekuiper_shapes() {
    let dir = temp_dir("rest");
    let server = Server::start(&dir);
    let (status, info) = server.json("GET", "/", None);
    assert_eq!(status, 200);
    assert_eq!(info["os"], json!(std::env::consts::OS));

    let create = json!({"sql": r#"CREATE STREAM demo (device STRING, temperature FLOAT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#});
    assert_eq!(
        server.call("POST", "/streams", Some(create.clone())),
        (201, "Stream demo is created.".into())
    );
    assert_eq!(server.json("POST", "/streams", Some(create)).0, 409);
    assert_eq!(server.json("GET", "/streams", None), (200, json!(["demo"])));
    let (_, described) = server.json("GET", "/streams/demo", None);
    assert_eq!(described["Name"], json!("demo"));
    assert_eq!(
        described,
        json!({
            "Name": "demo",
            "StreamFields": [
                {"Name": "device", "FieldType": {"Type": 3}},
                {"Name": "temperature", "FieldType": {"Type": 2}}
            ],
            "Options": {"DATASOURCE": "demo", "FORMAT": "json", "TYPE": "memory"}
        })
    );
    assert_eq!(server.json("GET", "/streams/nope", None).0, 404);

    // Invalid SQL: 400 with the position and reason.
    let (status, err) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "bad", "sql": "SELECT temprature FROM demo", "actions": [{"log": {}}]})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        err["message"],
        json!(
            "unknown field \"temprature\" in stream \"demo\" at 1:8; did you mean \"temperature\"?"
        )
    );
    assert_eq!(
        server.json("POST", "/rules", Some(json!({"id": "x"}))).0,
        400,
        "missing fields"
    );
    assert_eq!(
        server
            .json(
                "POST",
                "/rules",
                Some(json!({"id": "x", "sql": "SELECT * FROM demo", "actions": [{"nosuch": {}}]}))
            )
            .0,
        400,
        "unknown sink"
    );

    let rule = json!({"id": "r1", "sql": "SELECT device FROM demo WHERE temperature > 20", "actions": [{"log": {}}]});
    assert_eq!(
        server.call("POST", "/rules", Some(rule.clone())),
        (201, "Rule r1 was created successfully.".into())
    );
    assert_eq!(server.json("POST", "/rules", Some(rule)).0, 409);
    assert_eq!(
        server.json("GET", "/rules", None),
        (
            200,
            json!([{"id": "r1", "name": "r1", "status": "running", "version": "", "trace": false, "tags": null}])
        )
    );

    // eKuiper's flat status: the header keys first, then node metrics in topology order.
    let (_, raw) = server.call("GET", "/rules/r1/status", None);
    let order = [
        "\"status\"",
        "\"message\"",
        "\"lastStartTimestamp\"",
        "\"lastStopTimestamp\"",
        "\"nextStartTimestamp\"",
        "\"source_demo_0_records_in_total\"",
        "\"op_2_filter_0_records_in_total\"",
        "\"op_3_project_0_records_in_total\"",
        "\"sink_log_0_0_records_out_total\"",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            raw.find(k)
                .unwrap_or_else(|| panic!("{k} missing in {raw}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order: {raw}"
    );

    // The v2 status: the same fields as one object, keys sorted, values native.
    let (status, raw_v2) = server.call("GET", "/v2/rules/r1/status", None);
    assert_eq!(status, 200, "{raw_v2}");
    let v2: serde_json::Map<String, Value> = serde_json::from_str(&raw_v2).unwrap();
    assert_eq!(v2["status"], json!("running"));
    assert!(v2["source_demo_0_records_in_total"].is_u64(), "{raw_v2}");
    let keys: Vec<&String> = v2.keys().collect();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| raw_v2.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys not sorted: {raw_v2}"
    );
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "keys not sorted: {raw_v2}"
    );
    assert_eq!(server.json("GET", "/v2/rules/nope/status", None).0, 404);

    // A running rule's output fields and their types.
    assert_eq!(
        server.json("GET", "/rules/r1/schema", None),
        (200, json!({"device": {"type": "string"}}))
    );
    let wide = json!({"id": "wide", "sql": "SELECT *, temperature * 2 AS twice, upper(device) AS d FROM demo", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(wide)).0, 201);
    assert_eq!(
        server.json("GET", "/rules/wide/schema", None).1,
        json!({"device": {"type": "string"}, "temperature": {"type": "float"},
            "twice": {"type": "float"}, "d": {"type": "string"}})
    );
    assert_eq!(server.call("POST", "/rules/wide/stop", None).0, 200);
    assert_eq!(server.json("GET", "/rules/wide/schema", None).0, 400);
    assert_eq!(server.call("DELETE", "/rules/wide", None).0, 200);
    assert_eq!(server.json("GET", "/rules/nope/schema", None).0, 404);

    // eKuiper's reset_state moves a rewindable source's offset; no Quiver source rewinds, so
    // a well-formed request is refused naming the stream, never ignored.
    let reset = |body: Value| server.json("PUT", "/rules/r1/reset_state", Some(body));
    let (status, err) =
        reset(json!({"type": 1, "params": {"streamName": "demo", "input": {"offset": 0}}}));
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("stream \"demo\""),
        "{err}"
    );
    let (status, err) = reset(json!({"type": 0, "params": {}}));
    assert_eq!(status, 400);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unknown stateType"),
        "{err}"
    );
    assert_eq!(
        reset(json!({"type": 1, "params": {"streamName": "other"}})).0,
        400
    );
    assert_eq!(
        server
            .json(
                "PUT",
                "/rules/nope/reset_state",
                Some(json!({"type": 1, "params": {"streamName": "demo"}}))
            )
            .0,
        404
    );

    let (_, topo) = server.json("GET", "/rules/r1/topo", None);
    assert_eq!(
        topo,
        json!({"sources": ["source_demo"], "edges": {
            "source_demo": ["op_2_filter"], "op_2_filter": ["op_3_project"], "op_3_project": ["sink_log_0"]}})
    );
    let (_, explain) = server.call("GET", "/rules/r1/explain", None);
    assert!(explain.contains("Filter: (temperature > 20)"), "{explain}");
    // The physical plan follows, each operator with the metric node the status reports.
    assert!(explain.contains("Physical plan:"), "{explain}");
    assert!(
        explain.contains("Filter: (temperature > 20) [op_2_filter]"),
        "{explain}"
    );

    // Deleting a stream a rule uses is refused, naming the rule.
    let (status, err) = server.json("DELETE", "/streams/demo", None);
    assert_eq!(status, 409);
    assert!(err["message"].as_str().unwrap().contains("r1"));

    assert_eq!(server.call("POST", "/rules/r1/stop", None).0, 200);
    assert_eq!(
        server.json("GET", "/rules/r1/status", None).1["status"],
        json!("stopped")
    );
    assert_eq!(server.call("POST", "/rules/r1/start", None).0, 200);
    assert_eq!(
        server.json("GET", "/rules/r1/status", None).1["status"],
        json!("running")
    );
    assert_eq!(server.json("POST", "/rules/nope/start", None).0, 404);

    let (status, functions) = server.json("GET", "/metadata/functions", None);
    assert_eq!(status, 200);
    let abs = functions
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == json!("abs"))
        .expect("abs is listed");
    assert_eq!(abs["type"], json!("math"));

    let (_, metrics) = server.call("GET", "/metrics", None);
    // eKuiper's names and labels (internal/topo/node/metric/prometheus.go), one family at a time.
    for sample in [
        "kuiper_sink_records_in_total{rule=\"r1\",type=\"sink\",op=\"log_0\",op_instance=\"0\"}",
        "kuiper_op_records_out_total{rule=\"r1\",type=\"op\",op=\"2_filter\",op_instance=\"0\"}",
        "kuiper_source_records_in_total{rule=\"r1\",type=\"source\",op=\"demo\",op_instance=\"0\"}",
        "kuiper_rule_status{rule=\"r1\"} 1",
        "# TYPE kuiper_op_process_latency_us gauge",
    ] {
        assert!(metrics.contains(sample), "{sample} in {metrics}");
    }
    assert!(!metrics.contains("last_exception"), "{metrics}");

    assert_eq!(
        server.call("DELETE", "/rules/r1", None),
        (200, "Rule r1 is dropped.".into())
    );
    assert_eq!(
        server.call("DELETE", "/streams/demo", None),
        (200, "Stream demo is dropped.".into())
    );
    server.stop();
}

/// A stream joined by a rule (not its FROM stream) is in use too: deleting it is refused,
/// naming the rule, instead of leaving the rule without its stream.
#[test]
fn a_stream_a_rule_joins_cannot_be_deleted() {
    let server = Server::start(&temp_dir("rest-joined-in-use"));
    server.create_stream(
        r#"CREATE STREAM door (id STRING) WITH (DATASOURCE="door", TYPE="memory", FORMAT="json")"#,
    );
    server.create_stream(
        r#"CREATE STREAM motion (id STRING, level BIGINT) WITH (DATASOURCE="motion", TYPE="memory", FORMAT="json")"#,
    );
    let rule = json!({"id": "joined", "sql": "SELECT door.id, motion.level FROM door JOIN motion ON door.id = motion.id GROUP BY TUMBLINGWINDOW(ss, 10)",
        "actions": [{"log": {}}]});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    let (status, err) = server.json("DELETE", "/streams/motion", None);
    assert_eq!(status, 409, "{err}");
    assert!(err["message"].as_str().unwrap().contains("joined"), "{err}");
    assert_eq!(server.call("DELETE", "/rules/joined", None).0, 200);
    assert_eq!(server.call("DELETE", "/streams/motion", None).0, 200);
}

#[test]
fn rules_come_back_after_a_restart() {
    let dir = temp_dir("restart");
    let server = Server::start(&dir);
    server.call(
        "POST",
        "/streams",
        Some(json!({"sql": r#"CREATE STREAM s () WITH (DATASOURCE="s", TYPE="memory")"#})),
    );
    server.call(
        "POST",
        "/rules",
        Some(json!({"id": "on", "sql": "SELECT * FROM s", "actions": [{"log": {}}]})),
    );
    server.call(
        "POST",
        "/rules",
        Some(json!({"id": "off", "sql": "SELECT a FROM s", "actions": [{"log": {}}], "triggered": false})),
    );
    server.stop();

    let server = Server::start(&dir);
    assert_eq!(
        server.json("GET", "/rules", None).1,
        json!([
            {"id": "off", "name": "off", "status": "stopped", "version": "", "trace": false, "tags": null},
            {"id": "on", "name": "on", "status": "running", "version": "", "trace": false, "tags": null}
        ])
    );
    assert_eq!(server.json("GET", "/streams", None).1, json!(["s"]));
    let (status, body) = server.call("GET", "/rules/off", None);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["triggered"],
        json!(false)
    );
    wait_metric(&server, "on", "source_s_0_records_in_total", 0);
    server.stop();
}

#[test]
fn http_push_source_end_to_end() {
    let dir = temp_dir("push");
    let server = Server::start(&dir);
    server.call(
        "POST",
        "/streams",
        Some(json!({"sql": r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/api/readings", TYPE="httppush", FORMAT="json")"#})),
    );
    assert_eq!(
        server
            .push("/api/readings", r#"{"device":"a","temperature":25}"#)
            .0,
        404,
        "no rule reads the stream yet"
    );
    let rule = json!({"id": "hot", "sql": "SELECT device FROM readings WHERE temperature > 20", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    assert_eq!(
        server
            .push("/api/readings", r#"{"device":"a","temperature":25}"#)
            .0,
        200
    );
    assert_eq!(
        server
            .push(
                "/api/readings",
                r#"[{"device":"b","temperature":10},{"device":"c","temperature":30}]"#
            )
            .0,
        200
    );
    assert_eq!(
        server.push("/api/readings", r#"{"device": "#).0,
        400,
        "malformed JSON is refused"
    );
    let st = wait_metric(&server, "hot", "sink_log_0_0_records_in_total", 2);
    assert_eq!(st["op_2_decoder_0_records_out_total"], json!(3));
    assert_eq!(st["op_3_filter_0_records_out_total"], json!(2));
    server.stop();
}

#[test]
fn tables_over_rest_feed_stream_table_joins() {
    let dir = temp_dir("tables");
    let server = Server::start(&dir);
    let table = json!({"sql": r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="/api/devices", TYPE="httppush", FORMAT="json", KEY="id")"#});
    assert_eq!(
        server.call("POST", "/tables", Some(table.clone())),
        (201, "Table devices is created.".into())
    );
    assert_eq!(server.json("POST", "/tables", Some(table)).0, 409);
    let stream = json!({"sql": r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/api/readings", TYPE="httppush", FORMAT="json")"#});
    assert_eq!(
        server.json("POST", "/tables", Some(stream.clone())).0,
        400,
        "a stream is not created through /tables"
    );
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    assert_eq!(
        server.json("GET", "/tables", None),
        (200, json!(["devices"]))
    );
    assert_eq!(
        server.json("GET", "/streams", None),
        (200, json!(["readings"]))
    );
    let (_, described) = server.json("GET", "/tables/devices", None);
    assert_eq!(described["Options"]["KEY"], json!("id"));
    assert_eq!(server.json("GET", "/tables/readings", None).0, 404);
    assert_eq!(
        server.json("GET", "/tabledetails", None).1,
        json!([{"name": "devices", "type": "httppush", "format": "json"}])
    );
    assert_eq!(
        server.json("GET", "/streamdetails", None).1,
        json!([{"name": "readings", "type": "httppush", "format": "json"}])
    );
    assert_eq!(
        server.json("GET", "/tables/devices/schema", None).1,
        json!({"id": {"type": "string"}, "location": {"type": "string"}})
    );
    assert_eq!(server.json("GET", "/tables/readings/schema", None).0, 404);
    // A table is replaced through /tables, never by a stream statement.
    let wider = json!({"sql": r#"CREATE TABLE devices (id STRING, location STRING, floor BIGINT) WITH (DATASOURCE="/api/devices", TYPE="httppush", FORMAT="json", KEY="id")"#});
    assert_eq!(
        server.call("PUT", "/tables/devices", Some(wider)),
        (200, "Table devices is updated.".into())
    );
    assert_eq!(
        server.json("GET", "/tables/devices/schema", None).1["floor"],
        json!({"type": "bigint"})
    );
    let as_stream = json!({"sql": r#"CREATE STREAM devices (id STRING) WITH (DATASOURCE="/x", TYPE="httppush")"#});
    assert_eq!(
        server.json("PUT", "/tables/devices", Some(as_stream)).0,
        400
    );

    // The table is fed at once, before any rule uses it.
    assert_eq!(
        server
            .push(
                "/api/devices",
                r#"[{"id":"a","location":"hall"},{"id":"b","location":"lab"}]"#
            )
            .0,
        200
    );
    let rule = json!({"id": "j", "sql": "SELECT device, location FROM readings JOIN devices ON device = id", "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    assert_eq!(
        server
            .push(
                "/api/readings",
                r#"[{"device":"a","temperature":1},{"device":"x","temperature":2},{"device":"b","temperature":3}]"#
            )
            .0,
        200
    );
    let st = wait_metric(&server, "j", "sink_log_0_0_records_in_total", 2);
    assert_eq!(st["op_3_join_0_records_in_total"], json!(3));
    assert_eq!(st["op_3_join_0_records_out_total"], json!(2));

    // A table a rule joins cannot be dropped; once the rule is gone it can.
    let (status, err) = server.json("DELETE", "/tables/devices", None);
    assert_eq!(status, 409, "{err}");
    assert!(err["message"].as_str().unwrap().contains('j'), "{err}");
    assert_eq!(server.json("DELETE", "/rules/j", None).0, 200);
    assert_eq!(
        server.call("DELETE", "/tables/devices", None),
        (200, "Table devices is dropped.".into())
    );
    assert_eq!(server.json("GET", "/tables", None), (200, json!([])));
    server.stop();
}

#[test]
fn get_keyed_state_reads_values_other_programs_write_into_the_catalog_database() {
    let dir = temp_dir("keyed");
    let server = Server::start(&dir);
    let stream = json!({"sql": r#"CREATE STREAM readings (device STRING, temperature FLOAT) WITH (DATASOURCE="/api/keyed", TYPE="httppush", FORMAT="json")"#});
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let rule = json!({"id": "k", "sql": r#"SELECT device FROM readings WHERE temperature > get_keyed_state("threshold", "float", 100)"#, "actions": [{"log": {}}]});
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    // No threshold stored yet: the default (100) keeps both rows out.
    let batch = r#"[{"device":"a","temperature":25},{"device":"b","temperature":10}]"#;
    assert_eq!(server.push("/api/keyed", batch).0, 200);
    let st = wait_metric(&server, "k", "op_3_filter_0_records_in_total", 2);
    assert_eq!(st["op_3_filter_0_records_out_total"], json!(0));

    // An operator sets the threshold from outside; the next rows see it.
    let db = rusqlite::Connection::open(dir.join("quiver.db")).unwrap();
    db.execute(
        "REPLACE INTO keyed_state (key, val) VALUES ('threshold', '20')",
        [],
    )
    .unwrap();
    assert_eq!(server.push("/api/keyed", batch).0, 200);
    let st = wait_metric(&server, "k", "op_3_filter_0_records_in_total", 4);
    assert_eq!(st["op_3_filter_0_records_out_total"], json!(1), "{st}");
    server.stop();
}

#[test]
fn stream_stream_join_over_rest_with_both_sources_in_the_topology() {
    let dir = temp_dir("join");
    let server = Server::start(&dir);
    for sql in [
        r#"CREATE STREAM door (id STRING, ts BIGINT) WITH (DATASOURCE="/api/door", TYPE="httppush", FORMAT="json", TIMESTAMP="ts")"#,
        r#"CREATE STREAM motion (id STRING, level BIGINT, ts BIGINT) WITH (DATASOURCE="/api/motion", TYPE="httppush", FORMAT="json", TIMESTAMP="ts")"#,
    ] {
        assert_eq!(
            server
                .call("POST", "/streams", Some(json!({ "sql": sql })))
                .0,
            201
        );
    }
    let rule = json!({
        "id": "dm",
        "sql": "SELECT door.id, motion.level FROM door JOIN motion ON door.id = motion.id GROUP BY TUMBLINGWINDOW(ss, 10)",
        "actions": [{"log": {}}],
        "options": {"isEventTime": true, "lateTolerance": 0}
    });
    assert_eq!(server.call("POST", "/rules", Some(rule)).0, 201);
    let (_, topo) = server.json("GET", "/rules/dm/topo", None);
    assert_eq!(
        topo["sources"],
        json!(["source_door", "source_motion"]),
        "{topo}"
    );
    assert_eq!(
        topo["edges"]["source_motion"],
        json!(["op_3_join"]),
        "{topo}"
    );

    assert_eq!(server.push("/api/door", r#"{"id":"d1","ts":1000}"#).0, 200);
    assert_eq!(
        server
            .push(
                "/api/motion",
                r#"[{"id":"d1","level":5,"ts":1500},{"id":"d2","level":6,"ts":1600}]"#
            )
            .0,
        200
    );
    // The window closes only when both streams have passed its end.
    assert_eq!(server.push("/api/door", r#"{"id":"x","ts":20000}"#).0, 200);
    assert_eq!(
        server.push("/api/motion", r#"{"id":"x","ts":20000}"#).0,
        200
    );
    let st = wait_metric(&server, "dm", "sink_log_0_0_records_in_total", 1);
    assert_eq!(st["op_3_join_0_records_out_total"], json!(1), "{st}");
    assert_eq!(st["source_motion_0_records_out_total"], json!(3), "{st}");
    assert_eq!(st["source_door_0_records_out_total"], json!(2), "{st}");
    server.stop();
}

#[test]
fn lookup_tables_are_listed_and_described_like_scan_tables() {
    let dir = temp_dir("lookup-tables");
    let server = Server::start(&dir);
    let scan = json!({"sql": r#"CREATE TABLE devices (id STRING, location STRING) WITH (DATASOURCE="devices", TYPE="memory", KEY="id")"#});
    assert_eq!(server.call("POST", "/tables", Some(scan)).0, 201);
    let lookup = json!({"sql": r#"CREATE TABLE alerts (id BIGINT, alarm FLOAT) WITH (DATASOURCE="1", TYPE="redis", KIND="lookup", KEY="id")"#});
    assert_eq!(
        server.call("POST", "/tables", Some(lookup)),
        (201, "Table alerts is created.".into())
    );
    let no_key = json!({"sql": r#"CREATE TABLE t2 (id BIGINT) WITH (DATASOURCE="1", TYPE="redis", KIND="lookup")"#});
    let (status, err) = server.json("POST", "/tables", Some(no_key));
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("KEY"), "{err}");
    assert_eq!(
        server.json("GET", "/tables", None),
        (200, json!(["alerts", "devices"]))
    );
    assert_eq!(
        server.json("GET", "/tables?kind=lookup", None),
        (200, json!(["alerts"]))
    );
    assert_eq!(
        server.json("GET", "/tables?kind=scan", None),
        (200, json!(["devices"]))
    );
    assert_eq!(server.json("GET", "/tables?kind=other", None).0, 400);
    let (_, described) = server.json("GET", "/tables/alerts", None);
    assert_eq!(
        described,
        json!({
            "Name": "alerts",
            "StreamFields": [
                {"Name": "id", "FieldType": {"Type": 1}},
                {"Name": "alarm", "FieldType": {"Type": 2}}
            ],
            "Options": {"DATASOURCE": "1", "KEY": "id", "KIND": "lookup", "TYPE": "redis"}
        })
    );
    assert_eq!(
        server.call("DELETE", "/tables/alerts", None),
        (200, "Table alerts is dropped.".into())
    );
    server.stop();
}
