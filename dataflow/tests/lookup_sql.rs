//! SQL lookup tables against the real MariaDB on 127.0.0.1:3306 (root, no password, database
//! `test`): INNER and LEFT joins, typed values, keys that look like SQL (bound, never spliced)
//! and a missing table counted as exceptions. Each test uses its own table and drops it.

mod common;

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Runs statements on the test database.
async fn admin(statements: &[String]) {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(URL).unwrap())
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .expect("MariaDB on 127.0.0.1:3306");
    for s in statements {
        conn.query_drop(s).await.unwrap();
    }
    conn.disconnect().await.unwrap();
}

/// Creates the engine, stream `demo (code STRING, n BIGINT)`, the SQL lookup table `items`
/// on `table` and the rule `sql`; returns the rows the rule produced for `input`.
fn run(table: &str, sql: &str, input: &[Value]) -> (Vec<Value>, u64, String) {
    let rt = common::runtime();
    let engine = common::engine(&rt, 2);
    let mut sql_profiles = HashMap::new();
    sql_profiles.insert(
        "default".to_string(),
        json!({"url": URL}).as_object().unwrap().clone(),
    );
    engine.set_source_profiles(HashMap::from([("sql".to_string(), sql_profiles)]));
    engine
        .create_stream(
            r#"CREATE STREAM demo (code STRING, n BIGINT) WITH (DATASOURCE="demo", TYPE="memory")"#,
        )
        .unwrap();
    engine
        .create_stream(&format!(
            r#"CREATE TABLE items (code STRING, name STRING, price FLOAT) WITH (DATASOURCE="{table}", TYPE="sql", KIND="lookup", KEY="code")"#
        ))
        .unwrap();
    let mut out = common::memory_rule(&engine, "lookup", sql);
    let result = rt.block_on(async {
        for row in input {
            engine
                .connectors()
                .memory()
                .publish_json("demo", row.to_string().into_bytes())
                .await;
        }
        common::finish_rule(&engine, "lookup", "demo", &mut out).await
    });
    let (exceptions, last) = common::exceptions(&engine, "lookup");
    engine.shutdown();
    (result, exceptions, last)
}

#[test]
fn sql_lookup_left_join_with_bound_keys() {
    let table = format!("quiver_lookup_{}", std::process::id());
    let rt = common::runtime();
    rt.block_on(admin(&[
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (code VARCHAR(64) PRIMARY KEY, name VARCHAR(64), price DECIMAL(10, 2))"),
        format!("INSERT INTO {table} VALUES ('a', 'apple', 1.50), ('b', 'bean', NULL)"),
    ]));
    let (rows, exceptions, _) = run(
        &table,
        "SELECT n, code, name, price FROM demo LEFT JOIN items ON demo.code = items.code",
        &[
            json!({"code": "a", "n": 1}),
            json!({"code": "b", "n": 2}),
            json!({"code": "zz", "n": 3}),
            json!({"code": "x' OR '1'='1", "n": 4}),
            json!({"code": "a", "n": 5}),
        ],
    );
    rt.block_on(admin(&[format!("DROP TABLE IF EXISTS {table}")]));
    let mut expected = vec![
        json!({"n": 1, "code": "a", "name": "apple", "price": 1.5}),
        json!({"n": 2, "code": "b", "name": "bean"}),
        json!({"n": 3, "code": "zz"}),
        json!({"n": 4, "code": "x' OR '1'='1"}),
        json!({"n": 5, "code": "a", "name": "apple", "price": 1.5}),
    ];
    expected.sort_by_key(|r| r.to_string());
    assert_eq!(rows, expected);
    assert_eq!(exceptions, 0);
}

#[test]
fn sql_lookup_inner_join_and_missing_table() {
    let table = format!("quiver_lookup_inner_{}", std::process::id());
    let rt = common::runtime();
    rt.block_on(admin(&[
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (code VARCHAR(64), name VARCHAR(64), price DOUBLE)"),
        format!("INSERT INTO {table} VALUES ('a', 'apple', 1.5), ('a', 'apricot', 2.5)"),
    ]));
    let (rows, _, _) = run(
        &table,
        "SELECT n, name FROM demo INNER JOIN items ON demo.code = items.code",
        &[json!({"code": "a", "n": 1}), json!({"code": "q", "n": 2})],
    );
    rt.block_on(admin(&[format!("DROP TABLE IF EXISTS {table}")]));
    assert_eq!(
        rows,
        vec![
            json!({"n": 1, "name": "apple"}),
            json!({"n": 1, "name": "apricot"})
        ]
    );

    // The table is gone now: every row is an exception, and the rule still ends normally.
    let (rows, exceptions, last) = run(
        &table,
        "SELECT n, name FROM demo INNER JOIN items ON demo.code = items.code",
        &[json!({"code": "a", "n": 1})],
    );
    assert!(rows.is_empty());
    assert_eq!(exceptions, 1);
    assert!(last.contains("sql"), "{last}");
}
