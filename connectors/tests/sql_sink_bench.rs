//! Rows/s into the `sql` sink on MariaDB and PostgreSQL, against the database's own client
//! loading the same rows in the same invocation: `mariadb` and `psql` running 1,000-row
//! INSERT statements (one autocommit each) from a file, and `psql`'s `\copy` (CSV).
//!
//! `QUIVER_BENCH_FULL=1 cargo nextest run --release -p quiver-connectors --test
//! sql_sink_bench --no-capture` gives the figures (BENCHMARKS.md); without it CI runs a small
//! load so the harness cannot rot. Needs the `mariadb` and `psql` clients on PATH.

#[path = "support/rows.rs"]
mod rows;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use quiver_connectors::Connectors;
use serde_json::json;

const ROWS_PER_BATCH: usize = 1_000;

fn batch(first_id: i64, rows: usize) -> RecordBatch {
    rows::readings(first_id, rows)
}

/// A database and its command-line client.
#[derive(Clone, Copy, Debug)]
enum Db {
    Maria,
    Postgres,
}

impl Db {
    fn url(self) -> &'static str {
        match self {
            Db::Maria => "mysql://root@127.0.0.1:3306/test",
            Db::Postgres => "postgres://postgres@127.0.0.1:5432/test",
        }
    }

    /// The client, reading statements from stdin.
    fn client(self) -> Command {
        match self {
            Db::Maria => {
                let mut c = Command::new("mariadb");
                c.args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "test"]);
                c
            }
            Db::Postgres => {
                let mut c = Command::new("psql");
                c.args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-t", "-A", "-v"])
                    .arg("ON_ERROR_STOP=1")
                    .arg("test");
                c
            }
        }
    }

    /// Runs `input` through the client; returns its output.
    fn run(self, input: &[u8]) -> String {
        let mut child = self
            .client()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the database's client on PATH");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{self:?} client failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn reset(self, table: &str) {
        self.run(
            format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGINT, device VARCHAR(20), temperature DOUBLE PRECISION);"
            )
            .as_bytes(),
        );
    }

    fn count(self, table: &str) -> usize {
        self.run(format!("SELECT COUNT(*) FROM {table};").as_bytes())
            .trim()
            .parse()
            .unwrap()
    }
}

/// The same rows as INSERT statements of 1,000 rows each.
fn insert_script(table: &str, batches: usize) -> Vec<u8> {
    let mut out = String::new();
    for b in 0..batches {
        out.push_str(&format!(
            "INSERT INTO {table} (id, device, temperature) VALUES "
        ));
        for r in 0..ROWS_PER_BATCH {
            let i = (b * ROWS_PER_BATCH + r) as i64;
            if r > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "({i},'device-{}',{})",
                i % 100,
                20.0 + (i % 17) as f64 * 0.5
            ));
        }
        out.push_str(";\n");
    }
    out.into_bytes()
}

fn copy_csv(batches: usize) -> String {
    let mut out = String::new();
    for i in 0..(batches * ROWS_PER_BATCH) as i64 {
        out.push_str(&format!(
            "{i},device-{},{}\n",
            i % 100,
            20.0 + (i % 17) as f64 * 0.5
        ));
    }
    out
}

fn rate(rows: usize, secs: f64) -> f64 {
    rows as f64 / secs
}

/// One round on `db`: the sink, the client's INSERTs and (PostgreSQL) `\copy`; rows/s each.
fn round(db: Db, batches: usize) -> Vec<(&'static str, f64)> {
    let total = batches * ROWS_PER_BATCH;
    let table = format!("q_bench_{}", std::process::id());
    let input: Vec<RecordBatch> = (0..batches)
        .map(|b| batch((b * ROWS_PER_BATCH) as i64, ROWS_PER_BATCH))
        .collect();
    let mut out = Vec::new();

    db.reset(&table);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secs = rt.block_on(async {
        let mut sink = Connectors::new()
            .sink("sql", &json!({"url": db.url(), "table": table}))
            .unwrap();
        let start = Instant::now();
        for b in &input {
            sink.collect_list(b).await.unwrap();
        }
        sink.close().await.unwrap();
        start.elapsed().as_secs_f64()
    });
    assert_eq!(db.count(&table), total);
    out.push(("sink", rate(total, secs)));

    db.reset(&table);
    let script = insert_script(&table, batches);
    let start = Instant::now();
    db.run(&script);
    out.push(("client INSERTs", rate(total, start.elapsed().as_secs_f64())));
    assert_eq!(db.count(&table), total);

    if let Db::Postgres = db {
        db.reset(&table);
        let dir = std::env::temp_dir().join(format!("quiver-sql-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("rows.csv");
        std::fs::write(&csv, copy_csv(batches)).unwrap();
        let start = Instant::now();
        db.run(format!("\\copy {table} FROM '{}' CSV\n", csv.display()).as_bytes());
        out.push(("psql \\copy", rate(total, start.elapsed().as_secs_f64())));
        assert_eq!(db.count(&table), total);
        let _ = std::fs::remove_dir_all(&dir);
    }
    db.run(format!("DROP TABLE {table};").as_bytes());
    out
}

#[test]
fn bench_sql_sink_against_the_database_clients() {
    let full = std::env::var_os("QUIVER_BENCH_FULL").is_some();
    let (batches, rounds) = if full { (300, 3) } else { (3, 1) };
    for db in [Db::Maria, Db::Postgres] {
        for r in 1..=rounds {
            let figures = round(db, batches);
            let sink = figures[0].1;
            let line: Vec<String> = figures
                .iter()
                .map(|(name, v)| format!("{name} {v:.0} rows/s (sink ÷ it {:.2})", sink / v))
                .collect();
            println!(
                "{db:?} round {r}, {} rows: {}",
                batches * ROWS_PER_BATCH,
                line.join("; ")
            );
        }
    }
}
