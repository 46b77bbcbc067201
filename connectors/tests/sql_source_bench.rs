//! Rows/s out of the `sql` source (`internalSqlQueryCfg` with `indexField` and `limit`) from a
//! table on MariaDB, PostgreSQL and SQLite, against the driver's own client (`mysql_async`,
//! `tokio-postgres`, `rusqlite`) running the same paged queries in the same invocation, at the
//! connector level (`source.run(out)` into a rule's queue, counted until every row arrived).
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-connectors --test
//! sql_source_bench --no-capture` gives the figures (BENCHMARKS.md); without it CI runs a small
//! load so the harness cannot rot. Each case makes a table of its own and drops it after.

#[path = "support/source_bench.rs"]
mod bench;

use std::time::Instant;

use bench::{drain, report, source};
use serde_json::{Map, Value, json};

/// A database and the driver that reads it directly.
#[derive(Clone, Copy, Debug)]
enum Db {
    Maria,
    Postgres,
    Sqlite,
}

/// Statement text that makes `n` rows in `table` (1,000 a statement).
fn inserts(table: &str, n: usize) -> Vec<String> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|ids| {
            let values: Vec<String> = ids
                .iter()
                .map(|i| {
                    format!(
                        "({i},'device-{}',{})",
                        i % 100,
                        20.0 + (i % 17) as f64 * 0.5
                    )
                })
                .collect();
            format!("INSERT INTO {table} VALUES {}", values.join(","))
        })
        .collect()
}

/// A tokio-postgres client, its connection driven on the runtime until the client drops.
async fn postgres(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

/// The same pages the source asks for: `limit` rows past the last id, in id order; rows read.
async fn pages(db: Db, url: &str, table: &str, limit: usize) -> (usize, i64) {
    let first = format!("SELECT * FROM {table} ORDER BY id ASC LIMIT {limit}");
    let mut read = 0;
    let mut last: Option<i64> = None;
    match db {
        Db::Maria => {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::from_url(url).await.unwrap();
            let next = format!("SELECT * FROM {table} WHERE id > ? ORDER BY id ASC LIMIT {limit}");
            loop {
                let page: Vec<(i64, String, f64)> = match last {
                    None => c.exec(first.as_str(), ()).await.unwrap(),
                    Some(l) => c.exec(next.as_str(), (l,)).await.unwrap(),
                };
                let Some(row) = page.last() else { break };
                last = Some(row.0);
                read += page.len();
            }
            c.disconnect().await.unwrap();
        }
        Db::Postgres => {
            let c = postgres(url).await;
            let next = format!("SELECT * FROM {table} WHERE id > $1 ORDER BY id ASC LIMIT {limit}");
            loop {
                let page = match last {
                    None => c.query(first.as_str(), &[]).await.unwrap(),
                    Some(l) => c.query(next.as_str(), &[&l]).await.unwrap(),
                };
                let rows: Vec<(i64, String, f64)> = page
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                let Some(row) = rows.last() else { break };
                last = Some(row.0);
                read += rows.len();
            }
        }
        Db::Sqlite => {
            let c = rusqlite::Connection::open(url.trim_start_matches("sqlite:")).unwrap();
            let next = format!("SELECT * FROM {table} WHERE id > ?1 ORDER BY id ASC LIMIT {limit}");
            loop {
                let sql = if last.is_some() { &next } else { &first };
                let mut st = c.prepare_cached(sql).unwrap();
                let map = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
                let page: Vec<(i64, String, f64)> = match last {
                    None => st.query_map([], map),
                    Some(l) => st.query_map([l], map),
                }
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
                let Some(row) = page.last() else { break };
                last = Some(row.0);
                read += page.len();
            }
        }
    }
    (read, last.unwrap_or(-1))
}

/// Runs statements on `db` with its driver.
async fn execute(db: Db, url: &str, statements: &[String]) {
    match db {
        Db::Maria => {
            use mysql_async::prelude::Queryable;
            let mut c = mysql_async::Conn::from_url(url).await.unwrap();
            for s in statements {
                c.query_drop(s).await.unwrap();
            }
            c.disconnect().await.unwrap();
        }
        Db::Postgres => {
            let c = postgres(url).await;
            for s in statements {
                c.batch_execute(s).await.unwrap();
            }
        }
        Db::Sqlite => {
            let c = rusqlite::Connection::open(url.trim_start_matches("sqlite:")).unwrap();
            c.execute_batch(&format!("BEGIN;{};COMMIT;", statements.join(";")))
                .unwrap();
        }
    }
}

/// `n` rows in a fresh table on `db`, read `limit` a query: the sql source (`interval` 1
/// ms), then the driver running the same paged queries.
async fn sql(db: Db, n: usize, limit: usize) -> Value {
    let table = format!("q_src_bench_{}_{db:?}", std::process::id()).to_lowercase();
    let dir = std::env::temp_dir().join(format!("quiver-src-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = match db {
        Db::Maria => "mysql://root@127.0.0.1:3306/test".to_string(),
        Db::Postgres => "postgres://postgres@127.0.0.1:5432/test".to_string(),
        Db::Sqlite => format!("sqlite:{}", dir.join("bench.db").display()),
    };
    let mut setup = vec![
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, device VARCHAR(20), temperature DOUBLE PRECISION)"
        ),
    ];
    setup.extend(inserts(&table, n));
    execute(db, &url, &setup).await;

    let props = json!({"url": url, "interval": 1,
        "internalSqlQueryCfg": {"table": table, "indexField": "id", "limit": limit}});
    let (source_secs, last) = drain(source("sql", "", props), n, |_| 1, async |t| t).await;
    let last: Map<String, Value> = serde_json::from_slice(&last).unwrap();
    assert_eq!(last["id"], json!(n - 1), "rows in id order, none left out");

    let start = Instant::now();
    let (read, last_id) = pages(db, &url, &table, limit).await;
    let client_secs = start.elapsed().as_secs_f64();
    assert_eq!((read, last_id), (n, n as i64 - 1));
    execute(db, &url, &[format!("DROP TABLE {table}")]).await;
    let _ = std::fs::remove_dir_all(&dir);
    report(
        &format!("sql {db:?}"),
        n,
        source_secs,
        client_secs,
        json!({"limit": limit}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sql_source_against_the_drivers() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let (rows, limit) = if full { (200_000, 1000) } else { (2_000, 500) };
    for db in [Db::Maria, Db::Postgres, Db::Sqlite] {
        sql(db, rows, limit).await;
    }
}
