//! The sql source and sink against real databases: the machine's MariaDB (127.0.0.1:3306,
//! root, database `test`), PostgreSQL (127.0.0.1:5432, postgres, trust, database `test`) and
//! an SQLite file in a temp dir. Each test sets its tables up and reads them back with the
//! database's own client library, under a table name of its own.

#[path = "support/rows.rs"]
mod rows;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use mysql_async::prelude::Queryable;
use quiver_connectors::sql::{SqlSource, SqlSourceConfig};
use quiver_connectors::{ConnectorError, Connectors, Sink, Source, SourceEvent, SourceOutput};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The three tests of one scenario, one per database: `<scenario>::{mariadb,postgres,sqlite}`.
macro_rules! per_db {
    ($scenario:ident, $test:literal) => {
        mod $scenario {
            #[tokio::test]
            async fn mariadb() {
                super::$scenario(super::Db::Maria, $test).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$scenario(super::Db::Postgres, $test).await;
            }

            #[tokio::test]
            async fn sqlite() {
                super::$scenario(super::Db::Sqlite, $test).await;
            }
        }
    };
}

/// One of the three databases, with the setup and read-back the tests need.
#[derive(Debug, Clone, Copy)]
enum Db {
    Maria,
    Postgres,
    Sqlite,
}

impl Db {
    /// The connector `url`; SQLite's file is per test.
    fn url(self, test: &str) -> String {
        match self {
            Db::Maria => MARIADB.into(),
            Db::Postgres => POSTGRES.into(),
            Db::Sqlite => format!("sqlite:{}", sqlite_path(test)),
        }
    }

    /// A table name of the test's own.
    fn table(self, test: &str) -> String {
        format!("q_{test}_{}", std::process::id())
    }

    /// Runs statements with the database's own client.
    async fn exec(self, test: &str, statements: &[String]) {
        match self {
            Db::Maria => {
                let mut c = maria().await;
                for s in statements {
                    c.query_drop(s).await.unwrap();
                }
                c.disconnect().await.unwrap();
            }
            Db::Postgres => {
                let c = postgres().await;
                for s in statements {
                    c.batch_execute(s).await.unwrap();
                }
            }
            Db::Sqlite => {
                let c = rusqlite::Connection::open(sqlite_path(test)).unwrap();
                for s in statements {
                    c.execute_batch(s).unwrap();
                }
            }
        }
    }

    /// One text per row of `SELECT <cols> FROM table ORDER BY <first col>`: the values
    /// joined by `|`, NULL as `NULL`.
    async fn rows(self, test: &str, cols: &[&str]) -> Vec<String> {
        let (ty, joined) = match self {
            Db::Maria => ("CHAR", "CONCAT_WS('|', {})"),
            Db::Postgres | Db::Sqlite => ("TEXT", "{}"),
        };
        let parts: Vec<String> = cols
            .iter()
            .map(|c| format!("COALESCE(CAST({c} AS {ty}), 'NULL')"))
            .collect();
        let expr = match self {
            Db::Maria => joined.replace("{}", &parts.join(", ")),
            _ => parts.join(" || '|' || "),
        };
        let sql = format!(
            "SELECT {expr} FROM {} ORDER BY {}",
            self.table(test),
            cols[0]
        );
        match self {
            Db::Maria => {
                let mut c = maria().await;
                let out: Vec<String> = c.query(sql).await.unwrap();
                c.disconnect().await.unwrap();
                out
            }
            Db::Postgres => {
                let c = postgres().await;
                let rows = c.query(&sql, &[]).await.unwrap();
                rows.iter().map(|r| r.get(0)).collect()
            }
            Db::Sqlite => {
                let c = rusqlite::Connection::open(sqlite_path(test)).unwrap();
                let mut st = c.prepare(&sql).unwrap();
                st.query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        }
    }

    /// Creates the test's table anew with `columns` and the rows `values` (if any); returns
    /// its name.
    async fn fresh_table(self, test: &str, columns: &str, values: &str) -> String {
        let t = self.table(test);
        let mut statements = vec![
            format!("DROP TABLE IF EXISTS {t}"),
            format!("CREATE TABLE {t} {columns}"),
        ];
        if !values.is_empty() {
            statements.push(format!("INSERT INTO {t} VALUES {values}"));
        }
        self.exec(test, &statements).await;
        t
    }

    /// A datetime column type.
    fn datetime(self) -> &'static str {
        match self {
            Db::Maria => "DATETIME",
            Db::Postgres => "TIMESTAMP",
            Db::Sqlite => "TEXT",
        }
    }
}

/// A connection to the test MariaDB with its own client library.
async fn maria() -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(MARIADB).unwrap())
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("MariaDB on 3306")
}

/// A connection to the test PostgreSQL with its own client library.
async fn postgres() -> tokio_postgres::Client {
    let (c, conn) = POSTGRES
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 5432");
    tokio::spawn(conn);
    c
}

fn sqlite_path(test: &str) -> String {
    let dir = std::env::temp_dir().join(format!("quiver-sql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{test}.db")).display().to_string()
}

/// Runs a source with `props`; returns its events and the task.
fn start(props: Value) -> (mpsc::Receiver<SourceEvent>, tokio::task::JoinHandle<()>) {
    let config = SqlSourceConfig::parse("readings", props.as_object().unwrap()).unwrap();
    let (tx, rx) = mpsc::channel(64);
    let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
    let task = tokio::spawn(async move {
        let _ = SqlSource::new(config).run(out).await;
    });
    (rx, task)
}

/// The rows of the next events until `n` have come, as JSON.
async fn next_rows(rx: &mut mpsc::Receiver<SourceEvent>, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("rows within 20 s")
            .expect("the source is running");
        for m in event.into_messages().expect("raw messages") {
            assert_eq!(&*m.topic, "readings");
            out.push(serde_json::from_slice(&m.payload).unwrap());
        }
    }
    out
}

async fn source_resumes_past_the_index(db: Db, test: &str) {
    let t = db
        .fresh_table(
            test,
            "(id INT PRIMARY KEY, name VARCHAR(40))",
            "(1, 'one'), (2, 'two'), (3, 'it''s')",
        )
        .await;
    let (mut rx, task) = start(json!({
        "url": db.url(test), "interval": 50,
        "internalSqlQueryCfg": {"table": t, "limit": 10, "indexField": "id", "indexValue": 1}
    }));
    let got = next_rows(&mut rx, 2).await;
    assert_eq!(
        got,
        vec![
            json!({"id": 2, "name": "two"}),
            json!({"id": 3, "name": "it's"})
        ]
    );
    db.exec(
        test,
        &[format!("INSERT INTO {t} VALUES (5, 'five'), (4, 'four')")],
    )
    .await;
    // Only the new rows, in index order: the source went on from id 3.
    let got = next_rows(&mut rx, 2).await;
    assert_eq!(
        got,
        vec![
            json!({"id": 4, "name": "four"}),
            json!({"id": 5, "name": "five"})
        ]
    );
    task.abort();
    db.exec(test, &[format!("DROP TABLE {t}")]).await;
}

per_db!(source_resumes_past_the_index, "src_idx");

/// A template query on a DATETIME index: the value is bound in `dateTimeFormat`, whatever
/// form the database returns it in.
async fn template_source_follows_a_datetime_index(db: Db, test: &str) {
    let t = db
        .fresh_table(
            test,
            &format!("(ts {} NOT NULL, v INT)", db.datetime()),
            "('2024-01-01 10:00:00', 1), ('2024-01-01 11:00:00', 2)",
        )
        .await;
    let (mut rx, task) = start(json!({
        "url": db.url(test), "interval": 50,
        "templateSqlQueryCfg": {
            "TemplateSql": format!("select v from {t} where ts > '{{{{.ts}}}}' order by ts asc"),
            "indexField": "ts", "indexValue": "2024-01-01 10:30:00",
            "indexFieldType": "DATETIME", "dateTimeFormat": "YYYY-MM-dd HH:mm:ss"
        }
    }));
    assert_eq!(next_rows(&mut rx, 1).await, vec![json!({"v": 2})]);
    task.abort();
    db.exec(test, &[format!("DROP TABLE {t}")]).await;
}

per_db!(template_source_follows_a_datetime_index, "src_tpl");

fn sink(props: Value) -> Box<dyn Sink> {
    Connectors::new()
        .sink("sql", &props)
        .expect("valid properties")
}

/// `(id, name, action)` rows.
fn actions(rows: &[(i64, &str, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

async fn sink_inserts_batches_and_keeps_sql_as_data(db: Db, test: &str) {
    let t = db
        .fresh_table(test, "(device VARCHAR(80), v BIGINT)", "")
        .await;
    let mut s = sink(json!({"url": db.url(test), "table": t}));
    s.connect().await.unwrap();
    let evil = format!("x'); DROP TABLE {t}; --");
    s.collect_list(&rows::batch(&[
        ("a", Some(1)),
        ("it's \"quoted\"", None),
        (&evil, Some(3)),
    ]))
    .await
    .unwrap();
    s.collect_list(&rows::full_batch(&[("b", 4)]))
        .await
        .unwrap();
    s.close().await.unwrap();
    let mut got = db.rows(test, &["v", "device"]).await;
    got.sort();
    let mut want = vec![
        "1|a".to_string(),
        format!("3|{evil}"),
        "4|b".into(),
        "NULL|it's \"quoted\"".into(),
    ];
    want.sort();
    assert_eq!(got, want);
    db.exec(test, &[format!("DROP TABLE {t}")]).await;
}

per_db!(sink_inserts_batches_and_keeps_sql_as_data, "sink_ins");

async fn sink_applies_rowkinds(db: Db, test: &str) {
    let t = db
        .fresh_table(test, "(id BIGINT PRIMARY KEY, name VARCHAR(40))", "")
        .await;
    let mut s = sink(json!({
        "url": db.url(test), "table": t, "rowkindField": "action", "keyField": "id"
    }));
    s.collect_list(&actions(&[
        (1, "one", "insert"),
        (2, "two", "insert"),
        (3, "three", "insert"),
    ]))
    .await
    .unwrap();
    s.collect_list(&actions(&[
        (1, "uno", "update"),
        (2, "dos", "upsert"),
        (4, "cuatro", "upsert"),
        (4, "four", "upsert"),
        (3, "", "delete"),
        (9, "; DROP TABLE x", "update"),
    ]))
    .await
    .unwrap();
    assert_eq!(
        db.rows(test, &["id", "name"]).await,
        vec!["1|uno", "2|dos", "4|four"]
    );
    // A bad action is an error of the batch; the good rows are written.
    let e = s
        .collect_list(&actions(&[(5, "five", "insert"), (1, "x", "replace")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid rowkind \"replace\""), "{e}");
    assert_eq!(
        db.rows(test, &["id", "name"]).await,
        vec!["1|uno", "2|dos", "4|four", "5|five"]
    );
    // A duplicate key fails the whole batch with the database's message: nothing of it lands.
    let e = s
        .collect_list(&actions(&[(6, "six", "insert"), (5, "again", "insert")]))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Io { .. }));
    let text = e.to_string().to_lowercase();
    assert!(text.contains("duplicate") || text.contains("unique"), "{e}");
    assert_eq!(db.rows(test, &["id", "name"]).await.len(), 4);
    s.close().await.unwrap();
    // With sendSingle each row is a transaction of its own: the duplicate alone fails.
    let mut single = sink(json!({
        "url": db.url(test), "table": t, "rowkindField": "action", "keyField": "id",
        "sendSingle": true
    }));
    let e = single
        .collect_list(&actions(&[
            (6, "six", "insert"),
            (5, "again", "insert"),
            (7, "seven", "insert"),
        ]))
        .await
        .unwrap_err();
    let text = e.to_string().to_lowercase();
    assert!(text.contains("duplicate") || text.contains("unique"), "{e}");
    assert_eq!(
        db.rows(test, &["id", "name"]).await,
        vec!["1|uno", "2|dos", "4|four", "5|five", "6|six", "7|seven"]
    );
    single.close().await.unwrap();
    db.exec(test, &[format!("DROP TABLE {t}")]).await;
}

per_db!(sink_applies_rowkinds, "sink_kind");

/// qos 2's transactions: an epoch's batches and its progress row land together; a batch the
/// database refuses is rolled back to its savepoint and named, the others stay.
async fn sink_commits_epochs_with_their_progress(db: Db, test: &str) {
    let t = db
        .fresh_table(test, "(device VARCHAR(80), v BIGINT NOT NULL)", "")
        .await;
    let mut s = sink(json!({"url": db.url(test), "table": t}));
    assert!(s.transactional());
    s.connect().await.unwrap();
    let id = format!("{test}/{}/{db:?}", std::process::id());
    assert_eq!(s.committed_epoch(&id).await.unwrap(), 0, "no epoch yet");
    let refused = s
        .commit_epoch(
            &id,
            3,
            &[
                rows::batch(&[("a", Some(1)), ("b", Some(2))]),
                rows::batch(&[("c", None)]),
                rows::batch(&[("d", Some(4))]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].batch, refused[0].rows), (1, 1), "{refused:?}");
    assert_eq!(s.committed_epoch(&id).await.unwrap(), 3);
    s.commit_epoch(&id, 5, &[rows::batch(&[("e", Some(5))])])
        .await
        .unwrap();
    assert_eq!(s.committed_epoch(&id).await.unwrap(), 5);
    assert_eq!(
        s.committed_epoch(&format!("{id}/other")).await.unwrap(),
        0,
        "progress is per sink"
    );
    s.close().await.unwrap();
    assert_eq!(
        db.rows(test, &["v", "device"]).await,
        vec!["1|a", "2|b", "4|d", "5|e"]
    );
    db.exec(test, &[format!("DROP TABLE {t}")]).await;
}

per_db!(sink_commits_epochs_with_their_progress, "sink_epoch");

#[tokio::test]
async fn sink_writes_table_data_field_rows_into_the_listed_fields() {
    let (db, test) = (Db::Sqlite, "sink_nested");
    let t = db
        .fresh_table(test, "(temperature REAL, humidity REAL, note TEXT)", "")
        .await;
    let mut s = sink(json!({
        "url": db.url(test), "table": t, "tableDataField": "telemetry",
        "fields": ["temperature", "humidity"]
    }));
    // The rows as a schemaless stream decodes them.
    let rows = quiver_connectors::codec::json::JsonDecoder::new(None, false).decode(&[
        quiver_connectors::RawMessage::new(
            br#"{"telemetry": [{"temperature": 32.5, "humidity": 80, "ts": 1}, {"temperature": 34.5, "humidity": 81, "ts": 2}]}"#.to_vec(),
            "t".into(),
        ),
    ]);
    s.collect_list(&rows.batches[0]).await.unwrap();
    assert_eq!(
        db.rows(test, &["temperature", "humidity", "note"]).await,
        vec!["32.5|80.0|NULL", "34.5|81.0|NULL"]
    );
}

#[tokio::test]
async fn sink_reports_a_missing_table_with_the_database_message() {
    for db in [Db::Maria, Db::Postgres, Db::Sqlite] {
        let mut s = sink(json!({"url": db.url("missing"), "table": "q_no_such_table_here"}));
        let e = s
            .collect_list(&rows::full_batch(&[("a", 1)]))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("q_no_such_table_here"), "{db:?}: {e}");
    }
}

/// A lookup answers one query per batch of keys on every database: rows by key in the order
/// asked, several rows for a repeated key, nothing for a missing one, keys that look like SQL
/// bound as data, and an integer key column matched by the key's text.
async fn lookup_answers_each_key_with_its_rows(db: Db, test: &str) {
    use quiver_connectors::lookup::LookupSource;
    use quiver_connectors::sql::{SqlLookup, SqlLookupConfig};
    let table = db.table(test);
    db.exec(
        test,
        &[
            format!("DROP TABLE IF EXISTS {table}"),
            format!("CREATE TABLE {table} (id INTEGER, name VARCHAR(32), price DOUBLE PRECISION)"),
            format!(
                "INSERT INTO {table} VALUES (1, 'apple', 1.5), (2, 'bean', NULL), (2, 'berry', 3.0)"
            ),
        ],
    )
    .await;
    let props = json!({"url": db.url(test)});
    let config = SqlLookupConfig::parse(&table, "id", props.as_object().unwrap()).unwrap();
    let lookup = SqlLookup::new(config).unwrap();
    let keys: Vec<String> = ["2", "9", "1' OR '1'='1", "1"].map(String::from).to_vec();
    let answer = tokio::task::spawn_blocking(move || lookup.fetch(&keys))
        .await
        .unwrap()
        .unwrap();
    let rows: Vec<Vec<Value>> = answer
        .iter()
        .map(|rows| {
            // Numbers compared by value: PostgreSQL's text form of 3.0 reads back as 3.
            let mut v: Vec<Value> = rows
                .iter()
                .map(|b| {
                    let mut r: Value = serde_json::from_slice(b).unwrap();
                    r["price"] = r["price"].as_f64().map_or(Value::Null, |p| json!(p));
                    r
                })
                .collect();
            v.sort_by_key(|r| r.to_string());
            v
        })
        .collect();
    db.exec(test, &[format!("DROP TABLE IF EXISTS {table}")])
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!({"id": 2, "name": "bean", "price": null}),
                json!({"id": 2, "name": "berry", "price": 3.0}),
            ],
            vec![],
            vec![],
            vec![json!({"id": 1, "name": "apple", "price": 1.5})],
        ],
        "{db:?}"
    );
}
per_db!(lookup_answers_each_key_with_its_rows, "lookup");
