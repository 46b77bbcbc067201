//! The `redisSub` source: subscribes to Redis channels, eKuiper's way (PSUBSCRIBE, so channel
//! names may be patterns), and hands each message on undecoded with its channel as the topic
//! (`meta(topic)`).
//!
//! - The subscription runs on a blocking thread of its own that sends straight into the rule's
//!   bounded queues: while the rule is behind, the thread waits and Redis holds the messages
//!   (up to its `client-output-buffer-limit pubsub`; past it Redis drops the subscriber, which
//!   then reconnects: Redis pub/sub delivers at most once).
//! - When the connection fails (Redis restarted, network gone) the thread connects and
//!   subscribes again, waiting 100 ms, then twice as long after each failed try, up to 5 s;
//!   messages published meanwhile are not delivered (Redis keeps none for absent
//!   subscribers).
//! - The thread notices a stopped rule within [`POLL`] even when no message comes.
//! - The connection's state (connected, the last error) is the rule status's
//!   `source_<stream>_0_connection_*` metrics, as for MQTT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::pubsub_config::RedisSubConfig;
use crate::mqtt::{ConnectionState, DisconnectOnDrop, INITIAL_BACKOFF, MAX_BACKOFF};
use crate::{ConnectorError, RawMessage, Source, SourceEvent, SourceOutput};

/// How long a read waits for a message before the thread looks whether the rule stopped.
pub const POLL: Duration = Duration::from_millis(250);

/// Connect and subscribe timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Subscribes to Redis channels.
#[derive(Debug)]
pub struct RedisSubSource {
    config: RedisSubConfig,
    state: Arc<ConnectionState>,
}

impl RedisSubSource {
    /// A source for `config`; it connects when it runs.
    pub fn new(config: RedisSubConfig) -> Self {
        RedisSubSource {
            config,
            state: Arc::default(),
        }
    }
}

/// Raises the stop flag when the source's task ends or is dropped (the rule stopped).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[async_trait]
impl Source for RedisSubSource {
    fn connection(&self) -> Option<Arc<ConnectionState>> {
        Some(self.state.clone())
    }

    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        let stop = Arc::new(AtomicBool::new(false));
        let _guard = StopOnDrop(stop.clone());
        let config = self.config.clone();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let _disconnect = DisconnectOnDrop(state.clone());
            subscribe(&config, &out, &stop, &state)
        })
        .await
        .map_err(|e| ConnectorError::Io {
            connector: "redisSub",
            reason: format!("the subscriber thread failed: {e}"),
        })?
    }
}

/// Why a subscription ended.
enum Ended {
    /// The rule stopped.
    Stopped,
    /// The connection failed; `subscribed` tells whether it got as far as subscribing.
    Failed { error: String, subscribed: bool },
}

/// Subscribes, and again after each failure, until the rule stops.
fn subscribe(
    config: &RedisSubConfig,
    out: &SourceOutput,
    stop: &AtomicBool,
    state: &ConnectionState,
) -> Result<(), ConnectorError> {
    let client = config.server.client()?;
    let mut backoff = INITIAL_BACKOFF;
    loop {
        match session(config, &client, out, stop, state) {
            Ended::Stopped => return Err(ConnectorError::Closed),
            Ended::Failed { error, subscribed } => {
                if subscribed {
                    backoff = INITIAL_BACKOFF;
                }
                state.set_error(error.clone());
                tracing::warn!(
                    "redisSub {}: {error}; subscribing again in {backoff:?}",
                    config.server.address()
                );
            }
        }
        // Sleep in steps, so a stopped rule is noticed quickly.
        let mut waited = Duration::ZERO;
        while waited < backoff {
            if stop.load(Ordering::Acquire) {
                return Err(ConnectorError::Closed);
            }
            let step = POLL.min(backoff - waited);
            std::thread::sleep(step);
            waited += step;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: subscribe, then pass messages on until it fails or the rule stops.
fn session(
    config: &RedisSubConfig,
    client: &redis::Client,
    out: &SourceOutput,
    stop: &AtomicBool,
    state: &ConnectionState,
) -> Ended {
    let failed = |error: String, subscribed| Ended::Failed { error, subscribed };
    let mut conn = match config.server.connect(client, CONNECT_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return failed(e.to_string(), false),
    };
    let mut pubsub = conn.as_pubsub();
    if let Err(e) = pubsub.psubscribe(&config.channels) {
        return failed(format!("subscribing to {:?}: {e}", config.channels), false);
    }
    if let Err(e) = pubsub.set_read_timeout(Some(POLL)) {
        return failed(e.to_string(), true);
    }
    state.set_connected();
    tracing::info!(
        "redisSub {}: subscribed to {:?}",
        config.server.address(),
        config.channels
    );
    // The topic of the last message, reused while messages keep coming on one channel.
    let mut topic: Arc<str> = Arc::from("");
    loop {
        if stop.load(Ordering::Acquire) {
            return Ended::Stopped;
        }
        let msg = match pubsub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return failed(e.to_string(), true),
        };
        let channel = msg.get_channel_name();
        if &*topic != channel {
            topic = Arc::from(channel);
        }
        let message = RawMessage::new(msg.get_payload_bytes().to_vec(), topic.clone());
        let event = out.predecode(SourceEvent::Raw(vec![message]));
        // Waits while the rule is behind; fails once it stopped.
        if out.blocking_send(event).is_err() {
            return Ended::Stopped;
        }
    }
}
