//! eKuiper's `sendError`: a rule's operator errors, each sent to every sink of the rule as an
//! emission of its own (`{"error": "..."}` for row sinks, the bare text for byte sinks such as
//! MQTT; eKuiper's `topo/node/sink_node.go`).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Error texts queued for one sink, at most this many; beyond it they are dropped and counted.
pub const ERROR_QUEUE: usize = 1024;

/// Where a rule's operators send their error texts: one bounded queue per sink. Workers never
/// wait on it: a full queue drops the text, and the drop is counted and logged.
#[derive(Debug)]
pub struct ErrorRelay {
    senders: Vec<mpsc::Sender<String>>,
    dropped: AtomicU64,
}

impl ErrorRelay {
    /// A relay to `senders`, one per sink.
    pub fn new(senders: Vec<mpsc::Sender<String>>) -> Self {
        ErrorRelay {
            senders,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `text` for every sink.
    pub fn send(&self, text: &str) {
        for s in &self.senders {
            if let Err(mpsc::error::TrySendError::Full(_)) = s.try_send(text.to_string()) {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "sendError: a sink is behind, {n} error messages dropped so far"
                    );
                }
            }
        }
    }

    /// Error messages dropped because a sink's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
