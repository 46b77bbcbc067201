//! `mysql`: a Quiver sink plugin that writes rule results into a MySQL or MariaDB table.
//!
//! ```json
//! {"mysql": {"url": "mysql://user:pass@127.0.0.1:3306/db", "table": "readings"}}
//! ```
//!
//! - **Config** ([`config`]): parsed and checked once in `provision`; unknown keys are refused.
//! - **Writing** ([`rows`]): each `collect_list` batch becomes parameterised multi-row INSERTs
//!   of a few fixed lengths, in one transaction (or one autocommitted statement when the
//!   batch fits in one). Values are bound, never formatted into SQL;
//!   column names are checked and backtick-quoted. The columns are the batch's fields, in
//!   order (the host applies the common `fields` property first); a NULL cell writes NULL.
//! - **Failures** ([`writer`]): batches go through a bounded buffer drained by one writer
//!   task. While the database cannot be reached the writer retries the oldest batch with
//!   backoff, so each batch is written once, in order, when it is back. A batch the database
//!   rejects (a string too long in strict mode, say) is rolled back whole and reported.
//!
//! The contract with the host, per `collect_list` call:
//! - `Ok`: the batch is committed.
//! - `Err("the database rejected the batch ...")`: none of it was written, and it
//!   will not be retried (its rows count as exceptions, and the message names the row).
//! - `Err("cannot write to host:port/db: ...; the batch ... is buffered ...")`: not
//!   written yet; it stays in the buffer and is written when the database is back. The rule's
//!   `last_exception` shows the connection error, and its exception count includes these rows.
//! - When the buffer is full, the call waits for room (backpressure; nothing is dropped).
//!
//! At rule option `qos` 2 the host calls [`epoch`]'s `commit_epoch` instead of
//! `collect_list`: a checkpoint's batches and its epoch in one transaction, bypassing the
//! buffer (the host keeps the rows in its checkpoints until they commit).
// A cdylib's API is the exported root module; the modules are documented for readers.
#![allow(missing_docs)]

pub mod config;
pub mod epoch;
pub mod rows;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use mysql_async::Pool;
use mysql_async::prelude::Queryable;
use quiver_plugin_abi::sdk::arrow::record_batch::RecordBatch;
use quiver_plugin_abi::sdk::serde_json::Value as Json;
use quiver_plugin_abi::sdk::{Config, Error, Refused, Sink, Tuple};

use config::{Settings, quote_ident};
use rows::Job;
use writer::{Outcome, Writer};

/// The statement budget when the server's `max_allowed_packet` is not known yet.
const DEFAULT_BUDGET: usize = 1 << 20;
/// Server errors at connect time that retrying cannot fix: the rule fails at once.
const CONFIG_ERRORS: &[u16] = &[1044, 1045, 1049, 1142, 1146];

/// One `mysql` action of one rule.
#[derive(Default)]
pub struct MysqlSink {
    settings: Option<Arc<Settings>>,
    runtime: Option<tokio::runtime::Runtime>,
    writer: Option<Writer>,
    /// The writer's pool, which the epoch calls share.
    pool: Option<Pool>,
    /// The packet budget of one statement (from `max_allowed_packet`).
    budget: usize,
    /// The last batch's field names and their quoted list.
    columns: Option<(Vec<String>, Arc<str>)>,
}

impl MysqlSink {
    /// What the epoch calls need, once `connect` made it.
    fn connected(&self) -> Result<(&tokio::runtime::Runtime, &Pool, &Settings), Error> {
        match (&self.runtime, &self.pool, &self.settings) {
            (Some(r), Some(p), Some(s)) => Ok((r, p, s)),
            _ => Err("the sink is not connected".into()),
        }
    }

    fn writer(&self) -> Result<&Writer, Error> {
        self.writer
            .as_ref()
            .ok_or_else(|| "the sink is not connected".into())
    }

    fn submit(&self, job: Job) -> Result<(), Error> {
        if job.rows == 0 {
            return Ok(());
        }
        let (outcome, notices) = self.writer()?.submit(job);
        let mut messages = match outcome {
            Outcome::Written => Vec::new(),
            Outcome::Rejected(e) | Outcome::Buffered(e) => vec![e],
        };
        messages.extend(notices);
        if messages.is_empty() {
            Ok(())
        } else {
            // The host names the sink ("mysql: ...") before the message.
            Err(messages.join("; ").into())
        }
    }
}

impl Sink for MysqlSink {
    fn provision(&mut self, config: &Config) -> Result<(), Error> {
        self.settings = Some(Arc::new(Settings::parse(config)?));
        Ok(())
    }

    /// Starts the plugin's own runtime and the writer. A database that cannot be reached now
    /// is not an error (the writer retries); a wrong password, database or table is.
    fn connect(&mut self) -> Result<(), Error> {
        let settings = self.settings.clone().ok_or("connect before provision")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quiver-mysql")
            .enable_all()
            .build()?;
        // The pool spawns its connection recycler on the current runtime: ours.
        let pool = {
            let _in_runtime = runtime.enter();
            Pool::new(settings.opts.clone())
        };
        // The timer must be made inside the runtime, so the timeout is built in the block.
        let probe = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                let mut conn = pool.get_conn().await?;
                conn.query_drop(format!("SELECT 1 FROM {} LIMIT 0", settings.table))
                    .await?;
                conn.query_first::<u64, _>("SELECT @@max_allowed_packet")
                    .await
            })
            .await
        });
        let budget = match probe {
            Ok(Ok(Some(max))) => (max as usize / 4 * 3).max(64 << 10),
            Ok(Err(mysql_async::Error::Server(e))) if CONFIG_ERRORS.contains(&e.code) => {
                runtime.shutdown_background();
                return Err(format!(
                    "cannot use {} at {}: {} (error {})",
                    settings.table, settings.target, e.message, e.code
                )
                .into());
            }
            _ => DEFAULT_BUDGET,
        };
        self.writer = Some(Writer::start(&runtime, pool.clone(), settings, budget));
        self.pool = Some(pool);
        self.budget = budget;
        self.runtime = Some(runtime);
        Ok(())
    }

    /// Eases row-at-a-time callers: one row, through the same buffer and statements.
    fn collect(&mut self, tuple: &Tuple<'_>) -> Result<(), Error> {
        let row = tuple.to_map();
        let names: Vec<String> = row.keys().cloned().collect();
        let columns: Arc<str> = names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Result<Vec<_>, _>>()?
            .join(",")
            .into();
        let values: Vec<mysql_async::Value> = row.into_values().map(json_value).collect();
        let size = values.len() * 12;
        self.submit(Job {
            columns,
            width: names.len(),
            rows: 1,
            values,
            bytes: vec![0, size],
        })
    }

    fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let job = rows::prepare(batch, &mut self.columns)?;
        self.submit(job)
    }

    fn transactional(&self) -> bool {
        true
    }

    fn committed_epoch(&mut self, id: &str) -> Result<u64, Error> {
        let (runtime, pool, settings) = self.connected()?;
        runtime
            .block_on(async {
                tokio::time::timeout(settings.write_timeout, epoch::committed_epoch(pool, id)).await
            })
            .map_err(|_| timed_out(settings))?
            .map_err(|e| {
                format!(
                    "cannot read {} at {}: {}",
                    epoch::PROGRESS_TABLE,
                    settings.target,
                    e.0
                )
                .into()
            })
    }

    fn commit_epoch(
        &mut self,
        id: &str,
        epoch: u64,
        batches: &[RecordBatch],
    ) -> Result<Vec<Refused>, Error> {
        let mut refused = Vec::new();
        let mut jobs = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            if batch.num_rows() == 0 {
                continue;
            }
            match rows::prepare(batch, &mut self.columns) {
                Ok(job) => jobs.push((i, job)),
                Err(e) => refused.push(Refused {
                    batch: i,
                    rows: batch.num_rows(),
                    reason: e.to_string(),
                }),
            }
        }
        let budget = self.budget;
        let (runtime, pool, settings) = self.connected()?;
        let committed = runtime
            .block_on(async {
                tokio::time::timeout(
                    settings.write_timeout,
                    epoch::commit_epoch(pool, settings, budget, id, epoch, &jobs),
                )
                .await
            })
            .map_err(|_| timed_out(settings))?
            .map_err(|e| {
                format!(
                    "cannot commit epoch {epoch} to {} at {}: {}",
                    settings.table, settings.target, e.0
                )
            })?;
        refused.extend(committed.into_iter().map(|(batch, rows, reason)| Refused {
            batch,
            rows,
            reason,
        }));
        Ok(refused)
    }

    /// Waits up to `closeTimeout` for buffered batches, then stops; unwritten rows are
    /// reported.
    fn close(&mut self) -> Result<(), Error> {
        let left = match (&self.writer, &self.settings) {
            (Some(w), Some(s)) => w.close(s.close_timeout),
            _ => None,
        };
        self.writer = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        match left {
            None => Ok(()),
            Some((batches, rows, e)) => Err(format!(
                "the rule stopped with {rows} rows in {batches} batches not written: {e}"
            )
            .into()),
        }
    }
}

impl Drop for MysqlSink {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The error of an epoch call that took longer than `writeTimeout`.
fn timed_out(settings: &Settings) -> Error {
    format!(
        "the transaction did not finish within {} ms (writeTimeout)",
        settings.write_timeout.as_millis()
    )
    .into()
}

/// A JSON value (from [`Tuple::to_map`]) as a parameter, with the same types as [`rows::value`].
fn json_value(v: Json) -> mysql_async::Value {
    use mysql_async::Value;
    match v {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Int(i64::from(b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Bytes(s.into_bytes()),
        other => Value::Bytes(other.to_string().into_bytes()),
    }
}

quiver_plugin_abi::export_plugin! {
    name: "mysql",
    kind: sink,
    version: env!("CARGO_PKG_VERSION"),
    factory: MysqlSink::default,
}
