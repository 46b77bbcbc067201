//! The buffer of unwritten batches and the task that writes them, in order, one transaction
//! per batch, retrying with backoff while the database is unreachable.
//!
//! Invariants:
//! - A batch leaves the buffer only after its COMMIT was acknowledged, or after the database
//!   rejected it (then none of it was written: the transaction rolled back), or when the
//!   retry of a batch whose COMMIT answer was lost hits a duplicate key (then the first
//!   COMMIT went through). Without a unique key such a retry writes the batch a second time:
//!   the one at-least-once case.
//! - Batches are written in the order `collect_list` received them; only the writer task
//!   writes, one batch at a time.
//! - The buffer holds at most `maxBufferedBatches` batches and `maxBufferedRows` rows (a
//!   single batch larger than that is let in alone); a caller finding it full waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};
use tokio::sync::Notify;

use crate::config::Settings;
use crate::rows::{Job, statements};

/// The first wait after a failed write; it doubles up to `retryMaxInterval`.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// What happened to a batch, or to the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Committed.
    Written,
    /// The database refused it; nothing of it was written.
    Rejected(String),
    /// Not written yet: the database cannot be reached (the error), the batch is buffered.
    Buffered(String),
}

#[derive(Default)]
struct State {
    /// Unwritten batches, oldest first; the front one is being written.
    queue: VecDeque<(u64, Arc<Job>)>,
    queued_rows: usize,
    next_id: u64,
    /// The batch whose caller waits for its outcome.
    waiting: Option<u64>,
    outcome: Option<(u64, Outcome)>,
    /// Rejections of batches whose callers did not wait (they were buffered in an outage);
    /// reported by the next call.
    notices: Vec<String>,
    /// The last connection error, while the writer cannot write.
    failing: Option<String>,
    /// `close` was called: the writer ends once the buffer is empty or when told to give up.
    closing: bool,
    give_up: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Callers wait on it for outcomes and for room in the buffer.
    changed: Condvar,
    /// The writer waits on it for work.
    work: Notify,
    /// The packet budget of one statement, from the server's `max_allowed_packet`.
    budget: AtomicUsize,
}

/// The writer side of the sink: a buffer and the task draining it.
pub struct Writer {
    shared: Arc<Shared>,
    settings: Arc<Settings>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    /// Starts the writer task on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        pool: Pool,
        settings: Arc<Settings>,
        budget: usize,
    ) -> Writer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            work: Notify::new(),
            budget: AtomicUsize::new(budget),
        });
        runtime.spawn(run(shared.clone(), pool, settings.clone()));
        Writer { shared, settings }
    }

    /// Buffers `job` (waiting while the buffer is full) and waits until it is written or
    /// rejected, or until the writer reports that the database cannot be reached. Returns the
    /// outcome and any earlier rejections to report.
    pub fn submit(&self, job: Job) -> (Outcome, Vec<String>) {
        let shared = &*self.shared;
        let rows = job.rows;
        let mut st = lock(shared);
        while !st.queue.is_empty()
            && (st.queue.len() >= self.settings.max_buffered_batches
                || st.queued_rows + rows > self.settings.max_buffered_rows)
        {
            st = shared
                .changed
                .wait_timeout(st, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.queue.push_back((id, Arc::new(job)));
        st.queued_rows += rows;
        st.waiting = Some(id);
        shared.work.notify_one();
        loop {
            if let Some((done, _)) = &st.outcome
                && *done == id
            {
                let (_, outcome) = st.outcome.take().expect("checked");
                st.waiting = None;
                return (outcome, std::mem::take(&mut st.notices));
            }
            if let Some(e) = &st.failing {
                let outcome = Outcome::Buffered(format!(
                    "{e}; the batch of {rows} rows is buffered ({} batches, {} rows unwritten) and retried until the database is back",
                    st.queue.len(),
                    st.queued_rows
                ));
                st.waiting = None;
                return (outcome, std::mem::take(&mut st.notices));
            }
            st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits up to `timeout` for the buffer to drain, then stops the writer. Returns what was
    /// left unwritten: (batches, rows, the last error).
    pub fn close(&self, timeout: Duration) -> Option<(usize, usize, String)> {
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = lock(shared);
        st.closing = true;
        shared.work.notify_one();
        while !st.queue.is_empty() && Instant::now() < deadline {
            let wait = deadline.saturating_duration_since(Instant::now());
            st = shared
                .changed
                .wait_timeout(st, wait.min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.give_up = true;
        shared.work.notify_one();
        (!st.queue.is_empty()).then(|| {
            (
                st.queue.len(),
                st.queued_rows,
                st.failing.clone().unwrap_or_else(|| "timed out".into()),
            )
        })
    }
}

/// Why a write failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection failed or the server was busy: retry the same batch.
    Retry(String),
    /// The database refused the data: retrying would fail again.
    Rejected { code: u16, message: String },
}

/// Server errors that say "try again" rather than "this data is wrong": lock timeouts and
/// deadlocks, too many connections, shutdown in progress, killed or interrupted queries,
/// access problems (a password may be being changed), read-only mode, network errors.
const RETRY_CODES: &[u16] = &[
    1040, 1042, 1043, 1044, 1045, 1047, 1049, 1053, 1077, 1078, 1079, 1080, 1081, 1152, 1156, 1157,
    1158, 1159, 1160, 1161, 1184, 1205, 1213, 1290, 1317, 1836, 1927, 2002, 2003, 2006, 2013, 4031,
];

/// Whether `e`, met writing the chunk that starts at row `chunk_start`, is worth a retry.
pub(crate) fn classify(e: mysql_async::Error, chunk_start: usize) -> Failure {
    match e {
        mysql_async::Error::Server(se) if !RETRY_CODES.contains(&se.code) => Failure::Rejected {
            code: se.code,
            message: rebase_row(&se.message, chunk_start),
        },
        mysql_async::Error::Server(se) => {
            Failure::Retry(format!("{} (error {})", se.message, se.code))
        }
        other => Failure::Retry(other.to_string()),
    }
}

/// What the user reads about a batch of `rows` rows the database refused.
pub(crate) fn rejected(rows: usize, code: u16, message: &str) -> String {
    format!(
        "the database rejected the batch of {rows} rows, so none of it was written: {message} (error {code})"
    )
}

/// MariaDB names the row within the statement (`at row 3`); make it the row of the batch.
fn rebase_row(message: &str, chunk_start: usize) -> String {
    if let Some(at) = message.rfind(" at row ") {
        let n = &message[at + 8..];
        if let Ok(n) = n.trim().parse::<usize>() {
            return format!("{} at row {} of the batch", &message[..at], chunk_start + n);
        }
    }
    message.to_string()
}

/// Writes one batch atomically: one statement when the batch fits in one chunk (a statement
/// is atomic on its own, and this saves the BEGIN and COMMIT round trips), else one
/// transaction. `committing` is set once the statement that commits was sent: a failure
/// after that leaves the outcome unknown.
async fn write(
    pool: &Pool,
    settings: &Settings,
    job: &Job,
    budget: usize,
    committing: &AtomicBool,
) -> Result<(), Failure> {
    let mut conn = pool.get_conn().await.map_err(|e| classify(e, 0))?;
    let mut chunks: Vec<_> = statements(job, &settings.table, budget).collect();
    if chunks.len() == 1 {
        let (_, sql, params) = chunks.pop().expect("one");
        committing.store(true, Ordering::Relaxed);
        return conn
            .exec_drop(sql, params)
            .await
            .map_err(|e| classify(e, 0));
    }
    let mut tx = conn
        .start_transaction(TxOpts::default())
        .await
        .map_err(|e| classify(e, 0))?;
    for (start, sql, params) in chunks {
        // On an error the transaction is dropped before COMMIT, which rolls it back (or the
        // connection is gone and the server rolls it back).
        tx.exec_drop(sql, params)
            .await
            .map_err(|e| classify(e, start))?;
    }
    committing.store(true, Ordering::Relaxed);
    tx.commit().await.map_err(|e| classify(e, 0))
}

/// The writer task: drains the buffer in order until the sink closes.
async fn run(shared: Arc<Shared>, pool: Pool, settings: Arc<Settings>) {
    let mut backoff = FIRST_RETRY;
    // The batch whose COMMIT may have gone through although its answer was lost.
    let mut unknown_commit: Option<u64> = None;
    loop {
        let next = {
            let st = lock(&shared);
            if st.give_up || (st.closing && st.queue.is_empty()) {
                break;
            }
            st.queue.front().cloned()
        };
        let Some((id, job)) = next else {
            shared.work.notified().await;
            continue;
        };
        let committing = AtomicBool::new(false);
        let budget = shared.budget.load(Ordering::Relaxed);
        let result = match tokio::time::timeout(
            settings.write_timeout,
            write(&pool, &settings, &job, budget, &committing),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Failure::Retry(format!(
                "the write did not finish within {} ms",
                settings.write_timeout.as_millis()
            ))),
        };
        let outcome = match result {
            Ok(()) => Outcome::Written,
            // The retry of a batch whose first COMMIT answer was lost hit a unique key: the
            // first COMMIT went through, so the batch is written, once.
            Err(Failure::Rejected { code: 1062, .. }) if unknown_commit == Some(id) => {
                Outcome::Written
            }
            Err(Failure::Rejected { code, message }) => {
                Outcome::Rejected(rejected(job.rows, code, &message))
            }
            Err(Failure::Retry(e)) => {
                if committing.load(Ordering::Relaxed) {
                    unknown_commit = Some(id);
                }
                {
                    let mut st = lock(&shared);
                    st.failing = Some(format!("cannot write to {}: {e}", settings.target));
                    shared.changed.notify_all();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(settings.retry_max_interval);
                continue;
            }
        };
        backoff = FIRST_RETRY;
        if unknown_commit == Some(id) {
            unknown_commit = None;
        }
        let mut st = lock(&shared);
        st.failing = None;
        if let Some((_, job)) = st.queue.pop_front() {
            st.queued_rows -= job.rows;
        }
        if st.waiting == Some(id) {
            st.outcome = Some((id, outcome));
        } else if let Outcome::Rejected(e) = outcome {
            st.notices.push(format!("an earlier buffered batch: {e}"));
        }
        shared.changed.notify_all();
    }
    let _ = pool.disconnect().await;
}

#[cfg(test)]
mod tests {
    use quiver_plugin_abi::sdk::serde_json::json;

    use super::*;

    /// Without a database: batches are buffered in order, the caller hears why, a full
    /// buffer makes the caller wait, and close reports what was left.
    #[test]
    fn an_unreachable_database_buffers_batches_and_close_reports_them() {
        // Port 9 on loopback: nothing listens, connections are refused at once.
        let config = json!({"url": "mysql://root@127.0.0.1:9/test", "table": "t",
                            "maxBufferedBatches": 2, "retryMaxInterval": 100});
        let settings =
            Arc::new(Settings::parse(config.as_object().expect("object")).expect("settings"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let pool = {
            let _in = runtime.enter();
            Pool::new(settings.opts.clone())
        };
        let writer = Writer::start(&runtime, pool, settings, 1 << 20);
        let job = || Job {
            columns: "`a`".into(),
            width: 1,
            rows: 2,
            values: vec![mysql_async::Value::Int(1), mysql_async::Value::Int(2)],
            bytes: vec![0, 12, 24],
        };
        for n in 1..=2 {
            let (outcome, notices) = writer.submit(job());
            let Outcome::Buffered(message) = outcome else {
                panic!("{outcome:?}")
            };
            assert!(
                message.starts_with("cannot write to 127.0.0.1:9/test: "),
                "{message}"
            );
            assert!(
                message.contains(&format!(
                    "is buffered ({n} batches, {} rows unwritten)",
                    2 * n
                )),
                "{message}"
            );
            assert!(notices.is_empty());
        }
        // Full: the third call waits for room, so it is still waiting after a while.
        let (waiting, left) = std::thread::scope(|s| {
            let third = s.spawn(|| writer.submit(job()));
            std::thread::sleep(Duration::from_millis(700));
            let still = !third.is_finished();
            let left = writer.close(Duration::ZERO);
            // After close the writer is gone; release the waiting caller by draining.
            lock(&writer.shared).queue.clear();
            writer.shared.changed.notify_all();
            let _ = third.join();
            (still, left)
        });
        assert!(waiting, "a full buffer makes the caller wait");
        let (batches, rows, error) = left.expect("close reports the unwritten batches");
        assert_eq!((batches, rows), (2, 4));
        assert!(error.contains("cannot write to"), "{error}");
        runtime.shutdown_timeout(Duration::from_secs(1));
    }

    #[test]
    fn rejected_rows_are_named_by_their_place_in_the_batch() {
        assert_eq!(
            rebase_row("Data too long for column 'name' at row 3", 1000),
            "Data too long for column 'name' at row 1003 of the batch"
        );
        assert_eq!(rebase_row("Duplicate entry '1'", 5), "Duplicate entry '1'");
    }
}
