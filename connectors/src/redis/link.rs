//! One Redis connection driven from async code: a sink's pipeline runs on tokio's blocking
//! pool (the connection moves there and back, so no lock is held across the I/O), and the
//! connection is opened on first use and again after it broke.

use std::time::Duration;

use redis::{RedisResult, Value};

use super::server::RedisServer;
use crate::ConnectorError;

/// Connect, read and write timeout of a sink's connection.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A sink's connection to one server.
pub(super) struct Link {
    server: RedisServer,
    client: redis::Client,
    /// `None` before the first batch and after a failure.
    conn: Option<redis::Connection>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("server", &self.server.address())
            .field("db", &self.server.db)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Link {
    /// A link to `server`; nothing is connected yet.
    pub(super) fn new(server: RedisServer) -> Result<Self, ConnectorError> {
        let client = server.client()?;
        Ok(Link {
            server,
            client,
            conn: None,
        })
    }

    /// Connects now unless connected, so a rule shows a wrong address or password as it starts.
    pub(super) async fn connect(&mut self) -> Result<(), ConnectorError> {
        if self.conn.is_none() {
            let (server, client) = (self.server.clone(), self.client.clone());
            self.conn = Some(blocking(move || server.connect(&client, TIMEOUT)).await??);
        }
        Ok(())
    }

    /// Sends `pipe` as one round trip; each command's answer, or an error for the whole
    /// pipeline when the connection failed. A connection that broke while idle (the server
    /// restarted between batches) is replaced once and the pipeline sent again; a failure on a
    /// fresh connection is returned.
    pub(super) async fn send(
        &mut self,
        pipe: redis::Pipeline,
    ) -> Result<Vec<RedisResult<Value>>, ConnectorError> {
        let (server, client) = (self.server.clone(), self.client.clone());
        let reused = self.conn.take();
        let mut pipe = pipe;
        // Answers per command: one row's WRONGTYPE must not hide that the others were written.
        pipe.ignore_errors();
        let (conn, answers) = blocking(move || {
            let fresh = || server.connect(&client, TIMEOUT);
            let was_open = reused.is_some();
            let mut conn = match reused {
                Some(c) => c,
                None => fresh()?,
            };
            let mut answers = pipe.query::<Vec<RedisResult<Value>>>(&mut conn);
            if was_open && answers.as_ref().is_err_and(|e| e.is_connection_dropped()) {
                conn = fresh()?;
                answers = pipe.query(&mut conn);
            }
            match answers {
                Ok(a) => Ok((Some(conn), a)),
                // A server reply to the pipeline as a whole leaves the connection in step.
                Err(e) if !(e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error()) => {
                    Ok((Some(conn), vec![Err(e)]))
                }
                Err(e) => Err(server.error(e)),
            }
        })
        .await??;
        self.conn = conn;
        Ok(answers)
    }

    /// The server, for messages.
    pub(super) fn server(&self) -> &RedisServer {
        &self.server
    }
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::Io {
            connector: "redis",
            reason: format!("the connection's thread failed: {e}"),
        })
}

/// Sums up the answers to a batch's commands: Ok when all succeeded, else an error that counts
/// the failed rows and quotes the first failure. `row_of` maps commands to rows; `failures`
/// are rows that never became commands.
pub(super) fn outcome(
    rows: usize,
    answers: &[RedisResult<Value>],
    row_of: &[usize],
    mut failures: Vec<(usize, String)>,
) -> Result<(), ConnectorError> {
    for (i, answer) in answers.iter().enumerate() {
        if let Err(e) = answer {
            // A whole-pipeline error has one answer: it counts for every row.
            match row_of.get(i).filter(|_| answers.len() == row_of.len()) {
                Some(row) => failures.push((*row, e.to_string())),
                None => failures.extend((0..rows).map(|r| (r, e.to_string()))),
            }
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    failures.sort_by_key(|(row, _)| *row);
    let first = failures[0].1.clone();
    failures.dedup_by_key(|(row, _)| *row);
    Err(ConnectorError::Io {
        connector: "redis",
        reason: if rows == 1 {
            first
        } else {
            format!(
                "{} of {rows} rows failed; the first: {first}",
                failures.len()
            )
        },
    })
}
