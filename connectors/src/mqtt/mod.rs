//! The `mqtt` connector: eKuiper's default source and sink type, over MQTT 3.1.1 or 5
//! (`protocolVersion`), on plain TCP or TLS (`ssl://`, `mqtts://`; eKuiper's certificate
//! properties, see [`crate::tls`]).
//!
//! - The source subscribes to the stream's `DATASOURCE` (a topic filter, wildcards allowed) and
//!   hands each publish to the runtime undecoded, with its topic for `meta(topic)`. Publishes
//!   that are already buffered are gathered into one event; it never waits to fill a batch.
//! - The sink publishes each result batch as one JSON array (`sendSingle: false`, eKuiper's
//!   default) or one JSON object per row (`sendSingle: true`).
//! - Both survive the broker going away: connection errors are logged, retried with exponential
//!   backoff (100 ms doubling to 5 s, reset after a successful connect), and the source
//!   subscribes again after every reconnect. The live state is a [`ConnectionState`].
//! - With `connectionSelector`, streams and sinks share the client of a named connection
//!   instead of opening their own (see [`shared`]).

mod client;
mod config;
mod durable;
mod pacing;
mod rate;
mod redelivery;
pub mod shared;
mod sink;
mod source;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use client::Protocol;
pub use config::{
    BrokerAddress, Credentials, DEFAULT_SERVER, MqttConnectionConfig, MqttSinkConfig,
    MqttSourceConfig,
};
pub use shared::MqttConnections;
pub use sink::MqttSink;
pub use source::MqttSource;

/// The first wait after a connection error.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The largest MQTT packet we send or accept (the protocol's maximum remaining length).
const MAX_PACKET_SIZE: usize = 268_435_455;
/// Requests (publishes, subscribes) queued for the event loop before `publish` waits.
const REQUEST_CAPACITY: usize = 64;

/// A snapshot of a connection, for status endpoints and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// Whether the client is connected to the broker right now.
    pub connected: bool,
    /// The last connection error, kept after a reconnect.
    pub last_error: Option<String>,
    /// When the client last connected (Unix milliseconds).
    pub last_connected_ms: Option<i64>,
}

/// The live connection state of an MQTT client, shared with whoever wants to watch it.
#[derive(Debug, Default)]
pub struct ConnectionState {
    connected: AtomicBool,
    detail: Mutex<(Option<String>, Option<i64>)>,
}

impl ConnectionState {
    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// A consistent copy of the whole state.
    pub fn snapshot(&self) -> ConnectionStatus {
        let detail = self.detail.lock().expect("mqtt status lock");
        ConnectionStatus {
            connected: self.is_connected(),
            last_error: detail.0.clone(),
            last_connected_ms: detail.1,
        }
    }

    pub(crate) fn set_connected(&self) {
        let mut detail = self.detail.lock().expect("mqtt status lock");
        detail.1 = Some(chrono::Utc::now().timestamp_millis());
        self.connected.store(true, Ordering::Release);
    }

    /// Records a connection failure: disconnected, with `error` as the last error.
    pub(crate) fn set_error(&self, error: String) {
        let mut detail = self.detail.lock().expect("mqtt status lock");
        detail.0 = Some(error);
        self.connected.store(false, Ordering::Release);
    }

    /// Records an error that leaves the connection up (e.g. a refused subscription).
    fn record_error(&self, error: String) {
        self.detail.lock().expect("mqtt status lock").0 = Some(error);
    }

    pub(crate) fn set_disconnected(&self) {
        self.connected.store(false, Ordering::Release);
    }
}

/// Marks the state disconnected when the client's task ends or is dropped.
#[derive(Debug)]
pub(crate) struct DisconnectOnDrop(pub(crate) Arc<ConnectionState>);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        self.0.set_disconnected();
    }
}

/// Exponential backoff between connection attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            next: INITIAL_BACKOFF,
        }
    }

    /// The wait before the next attempt; doubles the one after, up to [`MAX_BACKOFF`].
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = INITIAL_BACKOFF;
    }
}

/// The reconnection bookkeeping of a client's driver: backoff, failure count and their logs.
pub(crate) struct Reconnects {
    backoff: Backoff,
    failures: u64,
    /// Who reconnects, for the logs (`mqtt sink t (tcp://host:1883)`).
    what: String,
}

impl Reconnects {
    pub(crate) fn new(what: String) -> Self {
        Reconnects {
            backoff: Backoff::new(),
            failures: 0,
            what,
        }
    }

    /// The broker accepted the connection: reset the backoff and mark `state` connected.
    pub(crate) fn connected(&mut self, state: &ConnectionState) {
        self.backoff.reset();
        if self.failures > 0 {
            tracing::info!(
                "{} reconnected after {} failed attempts",
                self.what,
                self.failures
            );
        } else {
            tracing::info!("{} connected", self.what);
        }
        self.failures = 0;
        state.set_connected();
    }

    /// The connection failed: record `reason` in `state` and wait before the next attempt.
    pub(crate) async fn failed(&mut self, state: &ConnectionState, reason: String) {
        self.failures += 1;
        let delay = self.backoff.next_delay();
        if self.failures == 1 {
            tracing::warn!(
                "{}: connection failed: {reason}; retrying with backoff",
                self.what
            );
        } else {
            tracing::debug!(
                "{}: attempt {} failed: {reason}; retrying in {delay:?}",
                self.what,
                self.failures
            );
        }
        state.set_error(reason);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), INITIAL_BACKOFF);
    }

    #[test]
    fn status_keeps_the_last_error_after_reconnect() {
        let s = ConnectionState::default();
        assert!(!s.is_connected());
        s.set_error("refused".into());
        s.set_connected();
        let snap = s.snapshot();
        assert!(snap.connected);
        assert_eq!(snap.last_error.as_deref(), Some("refused"));
        assert!(snap.last_connected_ms.is_some());
        s.set_disconnected();
        assert!(!s.is_connected());
    }
}
