//! Per-rule, per-node metrics with eKuiper's names.
//!
//! Keys are `<node>_<instance>_<metric>`, e.g. `source_demo_0_records_in_total`,
//! `op_2_filter_0_exceptions_total`, `sink_log_0_0_records_out_total`. All workers of a rule
//! add into one instance (`0`): to a user a rule is one pipeline, whatever the worker count.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::Value;

use crate::clock::now_ms;

/// Metric names, in eKuiper's order.
pub mod names {
    /// Rows received.
    pub const RECORDS_IN: &str = "records_in_total";
    /// Rows sent on.
    pub const RECORDS_OUT: &str = "records_out_total";
    /// Messages (batches) processed.
    pub const MESSAGES_PROCESSED: &str = "messages_processed_total";
    /// Latency of the last batch, microseconds.
    pub const PROCESS_LATENCY_US: &str = "process_latency_us";
    /// Items queued in front of the node.
    pub const BUFFER_LENGTH: &str = "buffer_length";
    /// Time of the last invocation.
    pub const LAST_INVOCATION: &str = "last_invocation";
    /// Rows that failed.
    pub const EXCEPTIONS: &str = "exceptions_total";
    /// Reason of the last failure.
    pub const LAST_EXCEPTION: &str = "last_exception";
    /// Time of the last failure.
    pub const LAST_EXCEPTION_TIME: &str = "last_exception_time";
    /// Every metric of a node, in eKuiper's order.
    pub const ALL: [&str; 9] = [
        RECORDS_IN,
        RECORDS_OUT,
        MESSAGES_PROCESSED,
        PROCESS_LATENCY_US,
        BUFFER_LENGTH,
        LAST_INVOCATION,
        EXCEPTIONS,
        LAST_EXCEPTION,
        LAST_EXCEPTION_TIME,
    ];
}

/// Counters of one node of a rule. Updated once per batch, from any worker.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    messages: AtomicU64,
    latency_us: AtomicU64,
    buffer_length: AtomicI64,
    last_invocation_ms: AtomicI64,
    /// Failed rows, the last reason and its time (ms), changed and read together so a status
    /// never shows a counted exception without its reason.
    exceptions: Mutex<(u64, String, i64)>,
    /// Set on operator nodes of a rule with `sendError`: failures also go to the sinks.
    relay: std::sync::OnceLock<std::sync::Arc<crate::send_error::ErrorRelay>>,
}

fn local_time(ms: i64) -> Value {
    if ms == 0 {
        return Value::from(0);
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| {
            Value::String(
                d.with_timezone(&chrono::Local)
                    .format("%Y-%m-%dT%H:%M:%S%.6f")
                    .to_string(),
            )
        })
        .unwrap_or(Value::from(0))
}

impl NodeMetrics {
    /// Records one processed batch.
    pub fn batch(&self, rows_in: usize, rows_out: usize, started: std::time::Instant) {
        self.records_in.fetch_add(rows_in as u64, Ordering::Relaxed);
        self.records_out
            .fetch_add(rows_out as u64, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.latency_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.last_invocation_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Records `count` failed rows with the reason of the first (and, under `sendError`, sends
    /// the reason to the sinks once per row).
    pub fn exceptions(&self, count: usize, reason: &str) {
        self.record(count, reason.to_string(), || {
            std::iter::repeat_n(reason.to_string(), count)
        });
    }

    /// Counts `count` failures with `first` as the last exception and, under `sendError`,
    /// sends each row's reason (made only then) to the sinks.
    fn record<I: IntoIterator<Item = String>>(
        &self,
        count: usize,
        first: String,
        reasons: impl FnOnce() -> I,
    ) {
        if count == 0 {
            return;
        }
        {
            let mut e = self.exceptions.lock().expect("metrics lock");
            *e = (e.0 + count as u64, first, now_ms());
        }
        if let Some(relay) = self.relay.get() {
            for reason in reasons() {
                relay.send(&reason);
            }
        }
    }

    /// Records the failed rows of `errors`, each reason behind `prefix` (`run Where error: `);
    /// under `sendError` each row's own reason goes to the sinks.
    pub fn row_errors(&self, errors: &quiver_compiler::eval::RowErrors, prefix: &str) {
        let count = errors.count();
        if count == 0 {
            return;
        }
        let first = format!("{prefix}{}", errors.first().unwrap_or_default());
        self.record(count, first, || {
            errors.reasons().into_iter().map(|r| format!("{prefix}{r}"))
        });
    }

    /// Records one failed message per reason (a batch's undecodable payloads); under
    /// `sendError` each reason goes to the sinks.
    pub fn failed_each(&self, reasons: &[String]) {
        let Some(first) = reasons.first() else {
            return;
        };
        self.record(reasons.len(), first.clone(), || reasons.iter().cloned());
    }

    /// True when failures are sent to the sinks (`sendError`): operators then keep every
    /// row's reason.
    pub fn sends_errors(&self) -> bool {
        self.relay.get().is_some()
    }

    /// Sends this node's failures to the sinks from now on.
    pub fn send_errors_to(&self, relay: std::sync::Arc<crate::send_error::ErrorRelay>) {
        let _ = self.relay.set(relay);
    }

    /// Sets the queue length in front of the node.
    pub fn set_buffer_length(&self, n: i64) {
        self.buffer_length.store(n, Ordering::Relaxed);
    }

    /// Rows received so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Rows sent on so far.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }

    /// Failed rows so far.
    pub fn exceptions_total(&self) -> u64 {
        self.exceptions.lock().expect("metrics lock").0
    }

    /// The metric values in eKuiper's order.
    pub fn values(&self) -> Vec<(&'static str, Value)> {
        let (exceptions, last, at) = self.exceptions.lock().expect("metrics lock").clone();
        vec![
            (names::RECORDS_IN, Value::from(self.records_in())),
            (names::RECORDS_OUT, Value::from(self.records_out())),
            (
                names::MESSAGES_PROCESSED,
                Value::from(self.messages.load(Ordering::Relaxed)),
            ),
            (
                names::PROCESS_LATENCY_US,
                Value::from(self.latency_us.load(Ordering::Relaxed)),
            ),
            (
                names::BUFFER_LENGTH,
                Value::from(self.buffer_length.load(Ordering::Relaxed)),
            ),
            (
                names::LAST_INVOCATION,
                local_time(self.last_invocation_ms.load(Ordering::Relaxed)),
            ),
            (names::EXCEPTIONS, Value::from(exceptions)),
            (names::LAST_EXCEPTION, Value::String(last)),
            (names::LAST_EXCEPTION_TIME, local_time(at)),
        ]
    }
}

/// The nodes of one rule run, in topology order.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    nodes: Vec<(String, std::sync::Arc<NodeMetrics>)>,
}

impl RuleMetrics {
    /// One node per name, in topology order; [`RuleMetrics::at`] finds them by position.
    pub fn with_nodes(names: &[String]) -> Self {
        RuleMetrics {
            nodes: names
                .iter()
                .map(|n| (n.clone(), std::sync::Arc::new(NodeMetrics::default())))
                .collect(),
        }
    }

    /// Sends the failures of every source and operator node (not the sinks' own write
    /// failures) to `relay` (`sendError`).
    pub fn send_errors_to(&self, relay: &std::sync::Arc<crate::send_error::ErrorRelay>) {
        for (name, m) in &self.nodes {
            if !name.starts_with("sink_") {
                m.send_errors_to(relay.clone());
            }
        }
    }

    /// The counters of the node at `id` (a physical plan's node id).
    pub fn at(&self, id: usize) -> std::sync::Arc<NodeMetrics> {
        self.nodes[id].1.clone()
    }

    /// Every metric as `(key, value)` pairs in eKuiper's order.
    pub fn flatten(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (name, m) in &self.nodes {
            for (metric, v) in m.values() {
                out.push((format!("{name}_0_{metric}"), v));
            }
        }
        out
    }
}
