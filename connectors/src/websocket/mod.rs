//! The `websocket` connector: eKuiper's websocket source and sink, in both of its modes.
//!
//! - Server mode (`addr` absent or empty): clients connect to `ws://<push listener>/<path>`
//!   (quiverd's push listener, shared with `httppush`, as eKuiper serves websocket endpoints
//!   on its HTTP data server). Each text or binary message a client sends is one payload for
//!   the streams whose DATASOURCE is the path; every client connected to a sink's `path`
//!   receives each result. The [`WebsocketHub`] holds that state; the server's push router
//!   upgrades the connections and asks the hub whether a rule uses the path.
//! - Client mode (`addr`): quiver connects out to `ws://addr/path` (or `wss://` with eKuiper's
//!   TLS properties) and reads (source) or writes (sink) messages on that connection,
//!   reconnecting after failures with exponential backoff (100 ms doubling to 5 s, reset after
//!   a successful connect), each failure logged and the live state a
//!   [`crate::mqtt::ConnectionState`].
//!
//! Bounds: a message is at most [`MAX_MESSAGE`] bytes either way (larger ones close the
//! connection: the peer breaks the limit); each server-mode client has its own bounded queue
//! and loses results when it is full (see [`hub`]); the client-mode sink hands messages to its
//! connection through a queue of [`SEND_QUEUE`] and waits while it is full.

mod client;
mod config;
pub mod hub;
mod sink;
mod source;

pub use client::{CONNECT_TIMEOUT, Connection, connect_with};
pub use config::{ClientTarget, WebsocketMode, WebsocketSinkConfig, WebsocketSourceConfig};
pub use hub::{HubClient, HubSink, WebsocketHub, WsPayload};
pub use sink::WebsocketSink;
pub use source::WebsocketSource;

/// The largest message accepted or sent (the push listener's body limit as well).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Messages a client-mode sink queues for its connection before `collect_list` waits.
pub const SEND_QUEUE: usize = 64;

/// The reconnect bookkeeping of one client-mode connection: backoff, failures in a row, the
/// shared state and the log lines.
struct Reconnect {
    /// What connects, for the log (e.g. `websocket source ws://h:1/p`).
    what: String,
    state: std::sync::Arc<crate::mqtt::ConnectionState>,
    backoff: crate::mqtt::Backoff,
    failures: u64,
}

impl Reconnect {
    fn new(what: String, state: std::sync::Arc<crate::mqtt::ConnectionState>) -> Self {
        Reconnect {
            what,
            state,
            backoff: crate::mqtt::Backoff::new(),
            failures: 0,
        }
    }

    /// Records and logs a successful connect; the backoff starts over.
    fn connected(&mut self) {
        let what = &self.what;
        if self.failures > 0 {
            tracing::info!("{what} reconnected after {} failed attempts", self.failures);
        } else {
            tracing::info!("{what} connected");
        }
        self.failures = 0;
        self.backoff.reset();
        self.state.set_connected();
    }

    /// Records a failed attempt or a lost connection, logs it (a warning at the first failure
    /// in a row, then debug lines, so an outage does not flood the log), then waits before the
    /// next attempt.
    async fn failed(&mut self, reason: String) {
        self.failures += 1;
        let (what, failures) = (&self.what, self.failures);
        let delay = self.backoff.next_delay();
        if failures == 1 {
            tracing::warn!("{what}: {reason}; reconnecting with backoff");
        } else {
            tracing::debug!("{what}: attempt {failures} failed: {reason}; retrying in {delay:?}");
        }
        self.state.set_error(reason);
        tokio::time::sleep(delay).await;
    }
}
