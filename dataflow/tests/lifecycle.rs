//! Rule lifecycle, rule chaining over memory topics, metrics names and back-pressure, through
//! the engine's public API with the real memory connector.

mod common;

use std::time::Duration;

use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::memory::{MemoryMessage, MemoryPayload};
use quiver_dataflow::{Action, Engine, EngineError, RuleSpec};
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

fn rule(id: &str, sql: &str, out_topic: &str) -> RuleSpec {
    RuleSpec {
        id: id.into(),
        name: id.into(),
        sql: sql.into(),
        actions: vec![Action {
            sink_type: "memory".into(),
            props: json!({ "topic": out_topic }),
        }],
        options: Default::default(),
    }
}

fn setup(workers: usize) -> (tokio::runtime::Runtime, Engine) {
    let rt = common::runtime();
    let engine = common::engine(&rt, workers);
    engine
        .create_stream(
            r#"CREATE STREAM demo (device STRING, temperature FLOAT) WITH (DATASOURCE="demo", TYPE="memory")"#,
        )
        .unwrap();
    (rt, engine)
}

/// Receives rows until `n` have arrived or `timeout` passes.
async fn recv_rows(rx: &mut Receiver<MemoryMessage>, n: usize, timeout: Duration) -> Vec<Value> {
    recv_until(rx, timeout, |rows| rows.len() >= n).await
}

/// Receives rows until `done` says they are enough, or `timeout` passes.
async fn recv_until(
    rx: &mut Receiver<MemoryMessage>,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut rows = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&rows) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(MemoryMessage {
                payload: MemoryPayload::Batch(b),
                ..
            })) => rows.extend(batch_to_rows(&b, false).into_iter().map(Value::Object)),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    rows
}

fn metric(engine: &Engine, id: &str, key: &str) -> Value {
    engine
        .rule_status(id)
        .unwrap()
        .metrics
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no metric {key}"))
        .1
}

#[test]
fn stop_start_restart_delete_while_running() {
    let (rt, engine) = setup(2);
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut out = bus.subscribe("out");
        engine
            .create_rule(rule(
                "r1",
                "SELECT device FROM demo WHERE temperature > 20",
                "out",
            ))
            .unwrap();
        assert_eq!(engine.rule_status("r1").unwrap().status, "running");
        bus.publish_json("demo", br#"{"device":"a","temperature":25}"#.to_vec())
            .await;
        assert_eq!(
            recv_rows(&mut out, 1, Duration::from_secs(10)).await,
            vec![json!({"device": "a"})]
        );

        engine.stop_rule("r1").unwrap();
        let st = engine.rule_status("r1").unwrap();
        assert_eq!(
            (st.status.as_str(), st.message.as_str()),
            ("stopped", "canceled manually")
        );
        // A stopped rule's source task is cancelled; once it is gone nobody subscribes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while bus.subscribers("demo") > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the source kept its subscription"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            bus.publish_json("demo", br#"{"device":"b","temperature":25}"#.to_vec())
                .await,
            0
        );

        engine.start_rule("r1").unwrap();
        bus.publish_json("demo", br#"{"device":"c","temperature":25}"#.to_vec())
            .await;
        assert_eq!(
            recv_rows(&mut out, 1, Duration::from_secs(10)).await,
            vec![json!({"device": "c"})]
        );

        engine.restart_rule("r1").unwrap();
        bus.publish_json("demo", br#"{"device":"d","temperature":25}"#.to_vec())
            .await;
        assert_eq!(
            recv_rows(&mut out, 1, Duration::from_secs(10)).await,
            vec![json!({"device": "d"})]
        );

        // Deleting the stream is refused while the rule uses it, and names the rule.
        match engine.drop_stream("demo") {
            Err(EngineError::InUse(m)) => assert!(m.contains("r1"), "{m}"),
            other => panic!("expected InUse, got {other:?}"),
        }
        engine.delete_rule("r1").unwrap();
        assert!(matches!(
            engine.rule_status("r1"),
            Err(EngineError::NotFound(_))
        ));
        engine.drop_stream("demo").unwrap();
    });
    engine.shutdown();
}

#[test]
fn duplicate_rule_and_bad_sql_are_rejected_without_side_effects() {
    let (_rt, engine) = setup(1);
    engine
        .create_rule(rule("r", "SELECT * FROM demo", "o"))
        .unwrap();
    assert!(matches!(
        engine.create_rule(rule("r", "SELECT * FROM demo", "o")),
        Err(EngineError::Duplicate(_))
    ));
    let err = engine
        .create_rule(rule("bad", "SELECT temprature FROM demo", "o"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown field \"temprature\" in stream \"demo\" at 1:8; did you mean \"temperature\"?"
    );
    assert_eq!(engine.rule_ids(), vec!["r".to_string()]);
    engine.shutdown();
}

#[test]
fn a_memory_sink_feeds_another_rule_and_metrics_use_ekuiper_names() {
    let (rt, engine) = setup(2);
    engine
        .create_stream(r#"CREATE STREAM hot () WITH (DATASOURCE="hot/readings", TYPE="memory")"#)
        .unwrap();
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut out = bus.subscribe("alerts");
        engine
            .create_rule(rule(
                "first",
                "SELECT device, temperature FROM demo WHERE temperature > 20",
                "hot/readings",
            ))
            .unwrap();
        engine
            .create_rule(rule(
                "second",
                "SELECT upper(device) AS d, temperature * 2 AS t2 FROM hot WHERE temperature > 30",
                "alerts",
            ))
            .unwrap();
        for (d, t) in [("a", 10), ("b", 25), ("c", 35), ("d", 40)] {
            let msg = format!(r#"{{"device":"{d}","temperature":{t}}}"#);
            bus.publish_json("demo", msg.into_bytes()).await;
        }
        bus.publish_json("demo", b"{not json".to_vec()).await;
        let mut rows = recv_rows(&mut out, 2, Duration::from_secs(10)).await;
        rows.sort_by_key(|r| r["d"].as_str().unwrap().to_string());
        assert_eq!(
            rows,
            vec![json!({"d": "C", "t2": 70}), json!({"d": "D", "t2": 80})]
        );
        // Give the malformed message time to be counted, then check the eKuiper metric keys.
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    assert_eq!(
        metric(&engine, "first", "source_demo_0_records_in_total"),
        json!(5)
    );
    assert_eq!(
        metric(&engine, "first", "source_demo_0_exceptions_total"),
        json!(1)
    );
    assert_eq!(
        metric(&engine, "first", "op_2_filter_0_records_in_total"),
        json!(4)
    );
    assert_eq!(
        metric(&engine, "first", "op_2_filter_0_records_out_total"),
        json!(3)
    );
    assert_eq!(
        metric(&engine, "first", "op_3_project_0_records_out_total"),
        json!(3)
    );
    assert_eq!(
        metric(&engine, "first", "sink_memory_0_0_records_in_total"),
        json!(3)
    );
    assert_eq!(
        metric(&engine, "second", "op_2_filter_0_records_out_total"),
        json!(2)
    );
    assert_eq!(engine.rule_status("first").unwrap().status, "running");
    let last = metric(&engine, "first", "source_demo_0_last_exception");
    assert!(last.as_str().unwrap().contains("JSON") || !last.as_str().unwrap().is_empty());
    engine.shutdown();
}

#[test]
fn a_slow_sink_slows_the_source_and_nothing_is_lost() {
    let (rt, engine) = setup(2);
    let bus = engine.connectors().memory().clone();
    const N: usize = 200_000;
    rt.block_on(async {
        // The output subscriber reads nothing at first: its queue, the sink queue, the workers'
        // stashes and the source queues fill up (together far fewer rows than N), and then the
        // publisher must wait.
        let mut out = bus.subscribe_with_capacity("slow", 1);
        engine
            .create_rule(rule("r", "SELECT device FROM demo", "slow"))
            .unwrap();
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..N {
                    let msg = format!(r#"{{"device":"d{i}","temperature":1}}"#);
                    bus.publish_json("demo", msg.into_bytes()).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !publisher.is_finished(),
            "the publisher should be held back by the full queues"
        );
        let rows = recv_rows(&mut out, N, Duration::from_secs(15)).await;
        if rows.len() < N {
            let st = engine.rule_status("r").unwrap();
            panic!(
                "only {} of {N} rows arrived; status: {:?}",
                rows.len(),
                st.metrics
                    .iter()
                    .filter(|(k, _)| k.ends_with("records_in_total")
                        || k.ends_with("records_out_total")
                        || k.ends_with("buffer_length"))
                    .collect::<Vec<_>>()
            );
        }
        publisher.await.unwrap();
        assert_eq!(rows.len(), N, "every row arrives once the sink reads again");
        let mut seen: Vec<&str> = rows.iter().map(|r| r["device"].as_str().unwrap()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), N, "no row is duplicated");
    });
    engine.shutdown();
}

#[test]
fn common_sink_properties_gather_rows_and_pick_fields() {
    let (rt, engine) = setup(1);
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut out = bus.subscribe("gathered");
        let mut spec = rule("g", "SELECT device, temperature FROM demo", "gathered");
        spec.actions[0].props = json!({"topic": "gathered", "batchSize": 5, "fields": ["device"]});
        engine.create_rule(spec).unwrap();
        for i in 0..12 {
            let msg = format!(r#"{{"device":"d{i}","temperature":{i}}}"#);
            bus.publish_json("demo", msg.into_bytes()).await;
            // One emission per message, so gathering is the sink's doing.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bus.close("demo");
        assert!(
            engine
                .wait_finished("g", Duration::from_secs(10))
                .await
                .unwrap()
        );
        let mut sizes = Vec::new();
        while let Ok(m) = out.try_recv() {
            if let MemoryPayload::Batch(b) = m.payload {
                assert_eq!(
                    b.schema().fields().len(),
                    1,
                    "only the listed field is kept"
                );
                assert_eq!(b.schema().field(0).name(), "device");
                sizes.push(b.num_rows());
            }
        }
        assert_eq!(sizes.iter().sum::<usize>(), 12);
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|n| *n >= 5), "{sizes:?}");
        assert!(*last > 0 && sizes.len() <= 3, "{sizes:?}");

        // lingerInterval: a partial batch is written once the interval passes.
        let mut lingering = bus.subscribe("lingering");
        let mut spec = rule("l", "SELECT device FROM demo", "lingering");
        spec.actions[0].props =
            json!({"topic": "lingering", "batchSize": 100, "lingerInterval": 200});
        engine.create_rule(spec).unwrap();
        for d in ["x", "y", "z"] {
            let msg = format!(r#"{{"device":"{d}","temperature":1}}"#);
            bus.publish_json("demo", msg.into_bytes()).await;
        }
        let rows = recv_rows(&mut lingering, 3, Duration::from_secs(5)).await;
        assert_eq!(rows.len(), 3);
    });
    assert!(matches!(
        engine.create_rule({
            let mut spec = rule("t", "SELECT * FROM demo", "o");
            spec.actions[0].props = json!({"topic": "o", "dataTemplate": "{{.device}}"});
            spec
        }),
        Err(EngineError::Invalid(m)) if m.contains("dataTemplate")
    ));
    engine.shutdown();
}

#[test]
fn a_shared_stream_feeds_all_its_rules_from_one_subscription() {
    let (rt, engine) = setup(2);
    engine
        .create_stream(
            r#"CREATE STREAM sh (device STRING, temperature FLOAT) WITH (DATASOURCE="shared/in", TYPE="memory", SHARED="true")"#,
        )
        .unwrap();
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut hot = bus.subscribe("shared/hot");
        let mut all = bus.subscribe("shared/all");
        engine
            .create_rule(rule(
                "hot",
                "SELECT device FROM sh WHERE temperature > 20",
                "shared/hot",
            ))
            .unwrap();
        engine
            .create_rule(rule("all", "SELECT device FROM sh", "shared/all"))
            .unwrap();
        assert_eq!(
            bus.subscribers("shared/in"),
            1,
            "one subscription for both rules"
        );
        for (d, t) in [("a", 10), ("b", 25), ("c", 30)] {
            let msg = format!(r#"{{"device":"{d}","temperature":{t}}}"#);
            bus.publish_json("shared/in", msg.into_bytes()).await;
        }
        let mut got = recv_rows(&mut hot, 2, Duration::from_secs(10)).await;
        got.sort_by_key(|r| r["device"].as_str().unwrap().to_string());
        assert_eq!(got, vec![json!({"device": "b"}), json!({"device": "c"})]);
        assert_eq!(
            recv_rows(&mut all, 3, Duration::from_secs(10)).await.len(),
            3
        );

        // A restarted rule rejoins the group and is fed again, and so is the other one.
        engine.restart_rule("hot").unwrap();
        bus.publish_json("shared/in", br#"{"device":"e","temperature":40}"#.to_vec())
            .await;
        assert_eq!(
            recv_rows(&mut hot, 1, Duration::from_secs(10)).await,
            vec![json!({"device": "e"})]
        );
        assert_eq!(
            recv_rows(&mut all, 1, Duration::from_secs(10)).await,
            vec![json!({"device": "e"})]
        );

        // Deleting one rule leaves the other fed; deleting the last releases the subscription.
        engine.delete_rule("hot").unwrap();
        bus.publish_json("shared/in", br#"{"device":"d","temperature":1}"#.to_vec())
            .await;
        assert_eq!(
            recv_rows(&mut all, 1, Duration::from_secs(10)).await,
            vec![json!({"device": "d"})]
        );
        engine.delete_rule("all").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while bus.subscribers("shared/in") > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the shared source kept its subscription"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    engine.shutdown();
}

#[test]
fn processing_time_windows_close_on_time_without_more_input() {
    // The input stays open: only the clock can close the window. A 1-second tumbling window
    // must emit within about a second of its end, with no further rows arriving.
    let (rt, engine) = setup(2);
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut out = bus.subscribe("win/out");
        engine
            .create_rule(rule(
                "win",
                "SELECT count(*) AS c, max(temperature) AS m, window_end() - window_start() AS len \
                 FROM demo GROUP BY TUMBLINGWINDOW(ss, 1)",
                "win/out",
            ))
            .unwrap();
        for t in [10, 30, 20] {
            let msg = format!(r#"{{"device":"a","temperature":{t}}}"#);
            bus.publish_json("demo", msg.into_bytes()).await;
        }
        // The three rows may straddle a second boundary: collect until all are counted.
        let mut counted = 0;
        let mut max = 0.0f64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while counted < 3 && tokio::time::Instant::now() < deadline {
            for row in recv_rows(&mut out, 1, Duration::from_secs(3)).await {
                assert_eq!(row["len"], json!(1000), "a window is one second: {row}");
                counted += row["c"].as_i64().unwrap();
                max = max.max(row["m"].as_f64().unwrap());
            }
        }
        assert_eq!(
            counted, 3,
            "every row is emitted by a window closing on time"
        );
        assert_eq!(max, 30.0);
        // An idle stream emits nothing (no empty windows).
        let idle = recv_rows(&mut out, 1, Duration::from_millis(1500)).await;
        assert!(idle.is_empty(), "empty windows emit nothing, got {idle:?}");
    });
    assert_eq!(engine.rule_status("win").unwrap().status, "running");
    engine.shutdown();
}

#[test]
fn late_rows_are_counted_in_metrics_and_status() {
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    engine
        .create_stream(
            r#"CREATE STREAM ev (v BIGINT, ts BIGINT) WITH (DATASOURCE="ev", TYPE="memory", TIMESTAMP="ts")"#,
        )
        .unwrap();
    let bus = engine.connectors().memory().clone();
    let mut spec = rule(
        "late",
        "SELECT count(*) AS c FROM ev GROUP BY TUMBLINGWINDOW(ss, 10)",
        "late/out",
    );
    spec.options = json!({"isEventTime": true, "lateTolerance": "2s"})
        .as_object()
        .cloned()
        .unwrap();
    rt.block_on(async {
        let mut out = bus.subscribe("late/out");
        engine.create_rule(spec).unwrap();
        // Watermark after 20000 is 18000: 17000 is late, 19000 is not.
        for ts in [1000, 20000, 17000, 19000, 35000] {
            let msg = format!(r#"{{"v":1,"ts":{ts}}}"#);
            bus.publish_json("ev", msg.into_bytes()).await;
        }
        // 35000 moves the watermark to 33000: windows [0,10s), [10s,20s) (19000 only) and
        // [20s,30s) close; [30s,40s) stays open while the input does.
        let rows = recv_rows(&mut out, 3, Duration::from_secs(10)).await;
        let counts: Vec<i64> = rows.iter().map(|r| r["c"].as_i64().unwrap()).collect();
        assert_eq!(counts, vec![1, 1, 1], "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let status = engine.rule_status("late").unwrap();
    assert!(
        status.message.contains("1 late events dropped"),
        "status message: {}",
        status.message
    );
    assert_eq!(
        metric(&engine, "late", "source_ev_0_late_events_total"),
        json!(1)
    );
    // A rule asking for event time on a stream without TIMESTAMP is refused with the fix.
    let mut bad = rule("bad", "SELECT * FROM demo_missing", "x");
    bad.sql = "SELECT count(*) FROM ev2 GROUP BY TUMBLINGWINDOW(ss, 1)".into();
    engine
        .create_stream(r#"CREATE STREAM ev2 (v BIGINT) WITH (DATASOURCE="ev2", TYPE="memory")"#)
        .unwrap();
    bad.options = json!({"isEventTime": true}).as_object().cloned().unwrap();
    let err = engine.create_rule(bad).unwrap_err().to_string();
    assert!(err.contains("TIMESTAMP"), "{err}");
    engine.shutdown();
}

#[test]
fn each_row_unnest_produces_is_its_own_emission() {
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    engine
        .create_stream(
            r#"CREATE STREAM arr (id BIGINT, xs ARRAY(BIGINT)) WITH (DATASOURCE="arr", TYPE="memory")"#,
        )
        .unwrap();
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut out = bus.subscribe("arr/out");
        engine
            .create_rule(rule("un", "SELECT id, unnest(xs) AS x FROM arr", "arr/out"))
            .unwrap();
        bus.publish_json("arr", br#"{"id": 1, "xs": [10, 20, 30]}"#.to_vec())
            .await;
        bus.close("arr");
        assert!(
            engine
                .wait_finished("un", Duration::from_secs(10))
                .await
                .unwrap()
        );
        let mut sizes = Vec::new();
        while let Ok(MemoryMessage {
            payload: MemoryPayload::Batch(b),
            ..
        }) = out.try_recv()
        {
            sizes.push(b.num_rows());
        }
        assert_eq!(sizes, vec![1, 1, 1], "three emissions of one row each");
    });
    engine.shutdown();
}

/// A burst on a shared stream with many rules: while the fan-out hands one event to every
/// rule, the messages behind it gather into larger events; every rule still gets every
/// message once.
#[test]
fn a_burst_on_a_shared_stream_reaches_every_rule_once() {
    let (rt, engine) = setup(2);
    engine
        .create_stream(
            r#"CREATE STREAM burst (n BIGINT) WITH (DATASOURCE="burst/in", TYPE="memory", SHARED="true")"#,
        )
        .unwrap();
    let bus = engine.connectors().memory().clone();
    let (rules, messages) = (40, 1_000i64);
    rt.block_on(async {
        let mut readers = Vec::new();
        for r in 0..rules {
            let topic = format!("burst/out{r}");
            let mut rx = bus.subscribe(&topic);
            let want = (0..messages).filter(|n| n % (r as i64 + 1) == 0).count();
            readers.push(tokio::spawn(async move {
                recv_rows(&mut rx, want, Duration::from_secs(30)).await
            }));
            // Rule r keeps the multiples of r + 1, so the rules' results differ.
            let sql = format!("SELECT n FROM burst WHERE n % {} = 0", r + 1);
            engine
                .create_rule(rule(&format!("b{r}"), &sql, &topic))
                .unwrap();
        }
        for n in 0..messages {
            bus.publish_json("burst/in", format!(r#"{{"n":{n}}}"#).into_bytes())
                .await;
        }
        for (r, reader) in readers.into_iter().enumerate() {
            let step = r as i64 + 1;
            let want: Vec<i64> = (0..messages).filter(|n| n % step == 0).collect();
            // Compared as a set: two workers may interleave events.
            let mut got: Vec<i64> = reader
                .await
                .unwrap()
                .iter()
                .map(|row| row["n"].as_i64().unwrap())
                .collect();
            got.sort_unstable();
            assert_eq!(got, want, "rule b{r}");
            // Messages after the rule's last match may still be on their way.
            let read = || metric(&engine, &format!("b{r}"), "source_burst_0_records_in_total");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while read() != json!(messages) && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(read(), json!(messages), "rule b{r} read every message once");
        }
    });
}

/// A `SHARED` file stream `name` (n BIGINT) over a new file of `lines` lines, n = 0, 1, ...
fn shared_file_stream(engine: &Engine, name: &str, lines: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("quiver-{name}-{}.jsonl", std::process::id()));
    let text: String = (0..lines).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    std::fs::write(&path, text).unwrap();
    engine
        .create_stream(&format!(
            r#"CREATE STREAM {name} (n BIGINT) WITH (DATASOURCE="{}", TYPE="file", SHARED="true")"#,
            path.display()
        ))
        .unwrap();
    path
}

/// Waits until each rule of `ids` has finished at the end of its file.
async fn finish_with_the_file(engine: &Engine, ids: &[&str]) {
    for id in ids {
        assert!(
            engine
                .wait_finished(id, Duration::from_secs(20))
                .await
                .unwrap(),
            "rule {id} finished at the end of the file: {:?}",
            engine.rule_status(id).map(|s| (s.status, s.message)).ok()
        );
    }
}

/// The stateless rules of a shared stream run as one group: each keeps its own results and
/// exceptions, and all of them finish when the stream's input ends.
#[test]
fn grouped_rules_keep_their_own_counts_and_finish_with_the_input() {
    let (rt, engine) = setup(2);
    let path = shared_file_stream(&engine, "g", 1_000);
    rt.block_on(async {
        let mut all = engine.connectors().memory().subscribe("group/all");
        let mut div = engine.connectors().memory().subscribe("group/div");
        let readers = (
            tokio::spawn(async move { recv_rows(&mut all, 1_000, Duration::from_secs(20)).await }),
            tokio::spawn(async move { recv_rows(&mut div, 1_000, Duration::from_secs(3)).await }),
        );
        // The first rule starts the shared source, so it sees every line; the second may
        // join after the first lines went by.
        engine
            .create_rule(rule("all", "SELECT n FROM g", "group/all"))
            .unwrap();
        engine
            .create_rule(rule("div", "SELECT 100 / (n % 2) AS x FROM g", "group/div"))
            .unwrap();
        finish_with_the_file(&engine, &["all", "div"]).await;
        let all_rows = readers.0.await.unwrap();
        assert_eq!(all_rows.len(), 1_000);
        assert_eq!(
            metric(&engine, "all", "op_3_project_0_exceptions_total"),
            json!(0)
        );
        // Even n divide by zero: those rows fail in "div" alone, one exception each.
        let read = metric(&engine, "div", "source_g_0_records_in_total");
        let failed = metric(&engine, "div", "op_3_project_0_exceptions_total");
        let div_rows = readers.1.await.unwrap();
        assert!(
            div_rows.iter().all(|r| r["x"] == json!(100)),
            "{div_rows:?}"
        );
        assert_eq!(
            failed.as_u64().unwrap() + div_rows.len() as u64,
            read.as_u64().unwrap(),
            "every row read is either written or counted as failed"
        );
        assert!(failed.as_u64().unwrap() > 0);
    });
    let _ = std::fs::remove_file(&path);
}

/// A sink that never finishes a write: a remote end that accepted the connection and hangs.
#[derive(Debug)]
struct HangingSinks;

struct HangingSink;

#[async_trait::async_trait]
impl quiver_connectors::Sink for HangingSink {
    async fn collect_list(
        &mut self,
        _batch: &arrow::record_batch::RecordBatch,
    ) -> Result<(), quiver_connectors::ConnectorError> {
        std::future::pending().await
    }
}

impl quiver_connectors::SinkFactory for HangingSinks {
    fn create(
        &self,
        _props: &Value,
    ) -> Result<Box<dyn quiver_connectors::Sink>, quiver_connectors::ConnectorError> {
        Ok(Box::new(HangingSink))
    }
}

/// An engine with the `hanging` sink type and a `SHARED` memory stream `name` (n BIGINT) on
/// `topic`.
fn setup_stuck(name: &str, topic: &str) -> (tokio::runtime::Runtime, Engine) {
    let (rt, engine) = setup(2);
    engine
        .connectors()
        .register_sink("hanging", std::sync::Arc::new(HangingSinks));
    engine
        .create_stream(&format!(
            r#"CREATE STREAM {name} (n BIGINT) WITH (DATASOURCE="{topic}", TYPE="memory", SHARED="true")"#
        ))
        .unwrap();
    (rt, engine)
}

/// Rule `stuck`: `sql` into a sink that never finishes a write, with small queues.
fn stuck_rule(sql: &str) -> RuleSpec {
    let mut stuck = rule("stuck", sql, "unused");
    stuck.actions = vec![Action {
        sink_type: "hanging".into(),
        props: json!({}),
    }];
    stuck.options = json!({"bufferLength": 64}).as_object().unwrap().clone();
    stuck
}

#[test]
fn a_rule_with_a_stuck_sink_does_not_stall_the_other_rules_of_a_shared_stream() {
    let (rt, engine) = setup_stuck("st", "stuck/in");
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut out = bus.subscribe("stuck/ok");
        // Window rules: each reads the stream through a queue of its own.
        let sql = "SELECT n FROM st GROUP BY COUNTWINDOW(1)";
        engine.create_rule(stuck_rule(sql)).unwrap();
        engine.create_rule(rule("ok", sql, "stuck/ok")).unwrap();
        // Small events (the fan-out gathers what queues up into one event): many more than
        // the stuck rule's queues hold. Published while the healthy rule's output is read.
        let publishing = publish_paced(&bus, "stuck/in", 2000);
        let got = recv_rows(&mut out, 2000, Duration::from_secs(20)).await;
        publishing.await.unwrap();
        assert_eq!(
            got.len(),
            2000,
            "the healthy rule got every row; the stuck one: {:?}",
            engine.rule_status("stuck").unwrap()
        );
        let status = engine.rule_status("stuck").unwrap();
        assert!(
            status.message.contains("fell behind its shared stream"),
            "{}",
            status.message
        );
        assert!(
            metric(&engine, "stuck", "source_st_0_dropped_events_total")
                .as_u64()
                .unwrap()
                > 0
        );
    });
    engine.shutdown();
}

/// Publishes `{"n": 0}` .. `{"n": count - 1}` to `topic`, a few per millisecond, in a task.
fn publish_paced(
    bus: &quiver_connectors::memory::MemoryBus,
    topic: &'static str,
    count: usize,
) -> tokio::task::JoinHandle<()> {
    let bus = bus.clone();
    tokio::spawn(async move {
        for n in 0..count {
            bus.publish_json(topic, format!(r#"{{"n":{n}}}"#).into_bytes())
                .await;
            if n % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
}

/// In a rule group too, a rule whose sink hangs holds the group up only briefly, then loses
/// the group's events (counted in its status), while the group's other rules, stateless and
/// window ones, get every row.
#[test]
fn a_grouped_rule_with_a_stuck_sink_does_not_stall_the_rest_of_its_group() {
    let (rt, engine) = setup_stuck("sg", "stuckg/in");
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut ok = bus.subscribe("stuckg/ok");
        let mut win = bus.subscribe("stuckg/win");
        engine.create_rule(stuck_rule("SELECT n FROM sg")).unwrap();
        engine
            .create_rule(rule("ok", "SELECT n FROM sg", "stuckg/ok"))
            .unwrap();
        let windowed = "SELECT count(*) AS c FROM sg GROUP BY TUMBLINGWINDOW(ss, 1)";
        engine
            .create_rule(rule("win", windowed, "stuckg/win"))
            .unwrap();
        for id in ["stuck", "ok", "win"] {
            assert!(engine.explain(id).unwrap().contains("Rule group"), "{id}");
        }
        let publishing = publish_paced(&bus, "stuckg/in", 2000);
        let got = recv_rows(&mut ok, 2000, Duration::from_secs(20)).await;
        publishing.await.unwrap();
        let status = || engine.rule_status("stuck").unwrap();
        assert_eq!(got.len(), 2000, "the stuck one: {:?}", status());
        let all = std::collections::BTreeMap::from([(String::new(), 2000.0)]);
        let windows = recv_until_totals(&mut win, ("", "c"), &all, Duration::from_secs(10)).await;
        assert_eq!(totals(&windows, "", "c"), all, "{windows:?}");
        assert!(
            status().message.contains("fell behind its shared stream"),
            "{}",
            status().message
        );
        assert!(
            metric(&engine, "stuck", "source_sg_0_dropped_events_total")
                .as_u64()
                .unwrap()
                > 0
        );
    });
    engine.shutdown();
}

/// Sums column `col` of `rows` per value of `by` (or over all rows with `by` empty).
fn totals(rows: &[Value], by: &str, col: &str) -> std::collections::BTreeMap<String, f64> {
    let mut t = std::collections::BTreeMap::new();
    for r in rows {
        let k = if by.is_empty() {
            String::new()
        } else {
            r[by].as_str().unwrap_or_default().to_string()
        };
        *t.entry(k).or_insert(0.0) += r[col].as_f64().unwrap_or(0.0);
    }
    t
}

/// Receives rows until their totals of `col` per `by` equal `want`, or `timeout` passes.
async fn recv_until_totals(
    rx: &mut Receiver<MemoryMessage>,
    (by, col): (&str, &str),
    want: &std::collections::BTreeMap<String, f64>,
    timeout: Duration,
) -> Vec<Value> {
    recv_until(rx, timeout, |rows| totals(rows, by, col) == *want).await
}

/// Processing-time window rules of a shared stream run in its rule group, beside a stateless
/// one: each keeps its own filter, keys, HAVING and results, which add up to what a rule of
/// its own computes from the same messages, and a rule leaving does not disturb the others.
#[test]
fn window_rules_of_a_shared_stream_run_in_its_group_with_their_own_results() {
    let (rt, engine) = setup(2);
    for ddl in [
        r#"CREATE STREAM wg (device STRING, v BIGINT) WITH (DATASOURCE="wg/in", TYPE="memory", SHARED="true")"#,
        r#"CREATE STREAM wo (device STRING, v BIGINT) WITH (DATASOURCE="wg/in", TYPE="memory")"#,
    ] {
        engine.create_stream(ddl).unwrap();
    }
    let by_device = "SELECT device, count(*) AS c, sum(v) AS s FROM {} WHERE v > 0 GROUP BY device, TUMBLINGWINDOW(ss, 1)";
    let bus = engine.connectors().memory().clone();
    rt.block_on(async {
        let mut subs: std::collections::HashMap<&str, _> = ["g1", "g2", "g3", "s1", "o1"]
            .into_iter()
            .map(|r| (r, bus.subscribe(&format!("wg/{r}"))))
            .collect();
        for (id, sql) in [
            ("g1", by_device.replace("{}", "wg")),
            ("g2", "SELECT count(*) AS c FROM wg GROUP BY TUMBLINGWINDOW(ss, 1)".into()),
            (
                "g3",
                "SELECT device, max(v) AS m FROM wg GROUP BY device, HOPPINGWINDOW(ss, 2, 1) HAVING max(v) > 3"
                    .into(),
            ),
            ("s1", "SELECT device FROM wg WHERE v = 4".into()),
            ("o1", by_device.replace("{}", "wo")),
        ] {
            engine
                .create_rule(rule(id, &sql, &format!("wg/{id}")))
                .unwrap();
        }
        for id in ["g1", "g2", "g3", "s1"] {
            assert!(
                engine.explain(id).unwrap().contains("Rule group"),
                "{id} runs in the group"
            );
        }
        assert!(!engine.explain("o1").unwrap().contains("Rule group"));
        assert_eq!(bus.subscribers("wg/in"), 2, "the group's and o1's");

        let publish = |from: usize, to: usize| {
            let bus = bus.clone();
            async move {
                for i in from..to {
                    let msg = format!(r#"{{"device":"d{}","v":{}}}"#, i % 3, i % 5);
                    bus.publish_json("wg/in", msg.into_bytes()).await;
                    if i % 100 == 99 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        };
        publish(0, 400).await;
        let want = |to: usize, col: &str| {
            let mut t = std::collections::BTreeMap::new();
            for i in (0..to).filter(|i| i % 5 > 0) {
                let add = if col == "c" { 1.0 } else { (i % 5) as f64 };
                *t.entry(format!("d{}", i % 3)).or_insert(0.0) += add;
            }
            t
        };
        let within = Duration::from_secs(10);
        for id in ["g1", "o1"] {
            let rx = subs.get_mut(id).unwrap();
            let rows = recv_until_totals(rx, ("device", "c"), &want(400, "c"), within).await;
            assert_eq!(totals(&rows, "device", "c"), want(400, "c"), "{id}: {rows:?}");
            assert_eq!(totals(&rows, "device", "s"), want(400, "s"), "{id}: {rows:?}");
        }
        let all = std::collections::BTreeMap::from([(String::new(), 400.0)]);
        let rows = recv_until_totals(subs.get_mut("g2").unwrap(), ("", "c"), &all, within).await;
        assert_eq!(totals(&rows, "", "c"), all, "g2: {rows:?}");
        let fours = recv_rows(subs.get_mut("s1").unwrap(), 80, within).await;
        assert_eq!(fours.len(), 80, "s1: every message with v = 4");
        let hopping = recv_rows(subs.get_mut("g3").unwrap(), 1, within).await;
        assert!(
            !hopping.is_empty() && hopping.iter().all(|r| r["m"] == json!(4)),
            "g3: {hopping:?}"
        );
        assert!(
            metric(&engine, "g1", "source_wg_0_records_in_total")
                .as_u64()
                .unwrap()
                >= 400
        );

        // g2 leaves; the others go on with the next messages.
        engine.delete_rule("g2").unwrap();
        publish(400, 430).await;
        let more = |col: &str| {
            let (a, b) = (want(430, col), want(400, col));
            a.into_iter().map(|(k, v)| (k.clone(), v - b[&k])).collect()
        };
        for id in ["g1", "o1"] {
            let rx = subs.get_mut(id).unwrap();
            let rows = recv_until_totals(rx, ("device", "c"), &more("c"), within).await;
            assert_eq!(totals(&rows, "device", "s"), more("s"), "{id}: {rows:?}");
        }
    });
    engine.shutdown();
}

/// A window rule in a shared file stream's group closes its last window when the file ends,
/// and finishes with the stream's stateless rule, though another window rule's sink hangs.
#[test]
fn a_grouped_window_rule_closes_its_last_window_at_the_end_of_the_input() {
    let (rt, engine) = setup(2);
    engine
        .connectors()
        .register_sink("hanging", std::sync::Arc::new(HangingSinks));
    // Long enough for every rule to join before the file ends.
    let path = shared_file_stream(&engine, "gf", 100_000);
    rt.block_on(async {
        let mut counts = engine.connectors().memory().subscribe("gf/count");
        // The first rule starts the shared source, so it sees every line.
        let sql = "SELECT count(*) AS c, sum(n) AS s FROM gf GROUP BY TUMBLINGWINDOW(ss, 30)";
        engine.create_rule(rule("count", sql, "gf/count")).unwrap();
        engine
            .create_rule(rule("plain", "SELECT n FROM gf", "gf/plain"))
            .unwrap();
        // A window rule whose sink hangs (its results gather on the worker count's do): its
        // last windows (one per second of the minute) never all leave; the others finish all
        // the same.
        engine
            .create_rule(stuck_rule(
                "SELECT count(*) AS c FROM gf GROUP BY HOPPINGWINDOW(ss, 60, 1)",
            ))
            .unwrap();
        for id in ["count", "stuck"] {
            assert!(engine.explain(id).unwrap().contains("Rule group"), "{id}");
        }
        finish_with_the_file(&engine, &["count", "plain"]).await;
        let rows = recv_rows(&mut counts, 2, Duration::from_secs(2)).await;
        assert_eq!(totals(&rows, "", "c")[""], 100_000.0, "{rows:?}");
        assert_eq!(totals(&rows, "", "s")[""], 4_999_950_000.0, "{rows:?}");
        let read = metric(&engine, "stuck", "source_gf_0_records_in_total");
        assert!(read.as_u64().unwrap() > 0, "the stuck rule read rows");
    });
    let _ = std::fs::remove_file(&path);
    engine.shutdown();
}
