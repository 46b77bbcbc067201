//! Exactly-once delivery (rule option `qos` 2): a checkpoint's rows and its epoch written in
//! one transaction, as the built-in `sql` sink writes them.
//!
//! The epoch goes into the same progress table as the `sql` sink's, in the url's database:
//! `quiver_sink_progress (id VARCHAR(255) PRIMARY KEY, epoch BIGINT NOT NULL)`, one row per
//! rule sink. After a crash the server reads it back ([`committed_epoch`]) and skips the epochs
//! that already landed. Each batch of an epoch runs under a savepoint: a batch the database
//! refuses is rolled back to it and reported, and the other batches and the epoch commit.
//!
//! These calls bypass the writer's buffer: at qos 2 the server holds the rows in its
//! checkpoints until they commit, and retries a failed commit itself.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts};

use crate::config::Settings;
use crate::rows::{Job, statements};
use crate::writer::{Failure, classify, rejected};

/// Where each qos 2 sink records the last epoch it committed (the `sql` sink's table).
pub const PROGRESS_TABLE: &str = "`quiver_sink_progress`";

/// The savepoint each batch runs under (the `sql` sink's name).
const SAVEPOINT: &str = "quiver_group";

/// A failure of a whole call: nothing was written, and the server tries again later.
#[derive(Debug)]
pub struct Failed(pub String);

impl From<mysql_async::Error> for Failed {
    fn from(e: mysql_async::Error) -> Failed {
        Failed(e.to_string())
    }
}

/// The last epoch recorded for `id` (0: none), creating the progress table if needed.
pub async fn committed_epoch(pool: &Pool, id: &str) -> Result<u64, Failed> {
    let mut conn = pool.get_conn().await?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (id VARCHAR(255) PRIMARY KEY, epoch BIGINT NOT NULL)"
    ))
    .await?;
    let epoch: Option<i64> = conn
        .exec_first(
            format!("SELECT epoch FROM {PROGRESS_TABLE} WHERE id = ?"),
            (id,),
        )
        .await?;
    u64::try_from(epoch.unwrap_or(0)).map_err(|_| {
        Failed(format!(
            "{PROGRESS_TABLE} holds a negative epoch for \"{id}\""
        ))
    })
}

/// Writes `jobs` (each with its batch's index) and records `epoch` for `id` in one
/// transaction. Returns the refused batches: index, rows and why.
pub async fn commit_epoch(
    pool: &Pool,
    settings: &Settings,
    budget: usize,
    id: &str,
    epoch: u64,
    jobs: &[(usize, Job)],
) -> Result<Vec<(usize, usize, String)>, Failed> {
    let epoch = i64::try_from(epoch).map_err(|_| Failed(format!("epoch {epoch} is too large")))?;
    let mut conn = pool.get_conn().await?;
    // Dropped before COMMIT on any error, which rolls it back (or the connection is gone and
    // the server rolls it back).
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let mut refused = Vec::new();
    for (batch, job) in jobs {
        // Savepoint statements go by the text protocol: MySQL does not prepare them.
        tx.query_drop(format!("SAVEPOINT {SAVEPOINT}")).await?;
        let mut failed = None;
        for (start, sql, params) in statements(job, &settings.table, budget) {
            if let Err(e) = tx.exec_drop(sql, params).await {
                match classify(e, start) {
                    Failure::Rejected { code, message } => {
                        failed = Some(rejected(job.rows, code, &message));
                        break;
                    }
                    // A lost connection, a deadlock (InnoDB rolled the transaction back):
                    // the whole call is retried.
                    Failure::Retry(e) => return Err(Failed(e)),
                }
            }
        }
        let end = match failed {
            Some(_) => format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"),
            None => format!("RELEASE SAVEPOINT {SAVEPOINT}"),
        };
        tx.query_drop(end).await?;
        if let Some(why) = failed {
            refused.push((*batch, job.rows, why));
        }
    }
    tx.exec_drop(
        format!(
            "INSERT INTO {PROGRESS_TABLE} (id, epoch) VALUES (?, ?) ON DUPLICATE KEY UPDATE epoch = VALUES(epoch)"
        ),
        (id, epoch),
    )
    .await?;
    tx.commit().await?;
    Ok(refused)
}
