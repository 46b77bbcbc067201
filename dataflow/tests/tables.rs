//! Scan tables as shared arrangements, on 2 workers: rules joining a table the same way share
//! one arrangement of it, joins on the table's KEY read its base arrangement (partitioned by
//! key) and every join still sees the table's latest rows.

mod common;

use std::time::Duration;

use serde_json::json;

#[test]
fn rules_joining_a_table_the_same_way_share_one_arrangement() {
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    rt.block_on(async {
        engine
            .create_stream(
                r#"CREATE STREAM demo (device STRING, room STRING, temperature FLOAT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#,
            )
            .unwrap();
        engine
            .create_stream(
                r#"CREATE TABLE devices (id STRING, room STRING, limit FLOAT) WITH (DATASOURCE="devices", TYPE="memory", FORMAT="json", KEY="id")"#,
            )
            .unwrap();
        let bus = engine.connectors().memory().clone();
        for (i, room) in ["a", "b", "a", "c"].iter().enumerate() {
            let row = json!({"id": format!("d{i}"), "room": room, "limit": 10 * i});
            bus.publish_json("devices", row.to_string().into_bytes()).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.table_applied("devices") < Some(4) {
            assert!(std::time::Instant::now() < deadline, "table rows not applied");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(engine.table_rows("devices"), Some(4));
        assert_eq!(engine.table_arrangements("devices"), Some(vec!["base".to_string()]));

        let sql = "SELECT demo.device, limit FROM demo JOIN devices ON demo.device = devices.id";
        let mut by_key_1 = common::memory_rule(&engine, "by_key_1", sql);
        let mut by_key_2 = common::memory_rule(&engine, "by_key_2", sql);
        let mut by_room = common::memory_rule(
            &engine,
            "by_room",
            "SELECT demo.device, devices.id FROM demo JOIN devices ON demo.room = devices.room",
        );
        let _windowed = common::memory_rule(
            &engine,
            "windowed",
            "SELECT devices.room, count(*) AS n FROM demo JOIN devices ON demo.device = devices.id GROUP BY devices.room, COUNTWINDOW(100)",
        );
        // Joins on the KEY without windows read the base arrangement itself; a join on another
        // column gets one index, and a window rule (whose rows are not exchanged by the join key)
        // a replicated one.
        assert_eq!(
            engine.table_arrangements("devices"),
            Some(vec![
                "Partitioned(room)".to_string(),
                "Replicated(id)".to_string(),
                "base".to_string()
            ])
        );

        // An update is seen by the readings after it.
        let update = json!({"id": "d1", "room": "a", "limit": 99});
        bus.publish_json("devices", update.to_string().into_bytes()).await;
        while engine.table_applied("devices") < Some(5) {
            assert!(std::time::Instant::now() < deadline, "table update not applied");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(engine.table_rows("devices"), Some(4), "an upsert replaces its row");
        for device in ["d0", "d1", "d3", "nope"] {
            let room = if device == "d3" { "c" } else { "a" };
            let row = json!({"device": device, "room": room, "temperature": 1});
            bus.publish_json("demo", row.to_string().into_bytes()).await;
        }
        let expected = vec![
            json!({"device": "d0", "limit": 0}),
            json!({"device": "d1", "limit": 99}),
            json!({"device": "d3", "limit": 30}),
        ];
        let a = common::finish_rule(&engine, "by_key_1", "demo", &mut by_key_1).await;
        assert_eq!(a, expected);
        let b = common::finish_rule(&engine, "by_key_2", "demo", &mut by_key_2).await;
        assert_eq!(b, expected);
        // Room a holds d0, d1 (moved there) and d2.
        let rooms = common::finish_rule(&engine, "by_room", "demo", &mut by_room).await;
        let pairs: Vec<(String, String)> = rooms
            .iter()
            .map(|r| (r["device"].as_str().unwrap().into(), r["id"].as_str().unwrap().into()))
            .collect();
        let mut want = Vec::new();
        for device in ["d0", "d1", "nope"] {
            for id in ["d0", "d1", "d2"] {
                want.push((device.to_string(), id.to_string()));
            }
        }
        want.push(("d3".to_string(), "d3".to_string()));
        want.sort();
        let mut pairs = pairs;
        pairs.sort();
        assert_eq!(pairs, want);

        // The last rule reading an index takes it with it when it stops; starting the rule
        // again builds a new one.
        engine.stop_rule("by_room").unwrap();
        assert_eq!(
            engine.table_arrangements("devices"),
            Some(vec!["Replicated(id)".to_string(), "base".to_string()])
        );
        engine.stop_rule("by_key_1").unwrap();
        engine.stop_rule("by_key_2").unwrap();
        assert_eq!(
            engine.table_arrangements("devices"),
            Some(vec!["Replicated(id)".to_string(), "base".to_string()]),
            "the base arrangement stays with its table"
        );
        engine.start_rule("by_room").unwrap();
        assert_eq!(
            engine.table_arrangements("devices"),
            Some(vec![
                "Partitioned(room)#1".to_string(),
                "Replicated(id)".to_string(),
                "base".to_string()
            ])
        );
        let applied = engine.table_applied("devices");
        assert_eq!(applied, Some(5), "a rebuilt index holds every row");
    });
    engine.shutdown();
}

#[test]
fn a_table_whose_source_ended_still_serves_rules_created_after() {
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    rt.block_on(async {
        engine
            .create_stream(
                r#"CREATE STREAM demo (room STRING, temperature FLOAT) WITH (DATASOURCE="demo", TYPE="memory", FORMAT="json")"#,
            )
            .unwrap();
        engine
            .create_stream(
                r#"CREATE TABLE devices (id STRING, room STRING) WITH (DATASOURCE="devices", TYPE="memory", FORMAT="json", KEY="id")"#,
            )
            .unwrap();
        let bus = engine.connectors().memory().clone();
        // The table's source subscribes from its own task: publishing or closing before then
        // would reach nobody, and the table would never finish loading.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while bus.subscribers("devices") == 0 {
            assert!(std::time::Instant::now() < deadline, "table source never subscribed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (id, room) in [("d1", "a"), ("d2", "b"), ("d3", "a")] {
            let row = json!({"id": id, "room": room});
            bus.publish_json("devices", row.to_string().into_bytes()).await;
        }
        // Worker 0 takes every row and goes quiet before the source ends: the end alone must
        // wake it (it once did not, and the table never finished loading).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.table_applied("devices") < Some(3) {
            assert!(std::time::Instant::now() < deadline, "table rows not applied");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The table's source ends, like a file table's at the end of its file.
        bus.close("devices");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.table_loaded("devices") != Some(true) {
            assert!(std::time::Instant::now() < deadline, "table never loaded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A join on another column builds a new index from the finished base arrangement,
        // and a second batch of readings reads it again.
        let mut out = common::memory_rule(
            &engine,
            "by_room",
            "SELECT temperature, devices.id FROM demo JOIN devices ON demo.room = devices.room",
        );
        for (i, room) in ["a", "b", "c"].iter().enumerate() {
            let row = json!({"room": room, "temperature": i});
            bus.publish_json("demo", row.to_string().into_bytes()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rows = common::finish_rule(&engine, "by_room", "demo", &mut out).await;
        assert_eq!(
            rows,
            vec![
                json!({"id": "d1", "temperature": 0}),
                json!({"id": "d2", "temperature": 1}),
                json!({"id": "d3", "temperature": 0}),
            ]
        );
    });
    engine.shutdown();
}
