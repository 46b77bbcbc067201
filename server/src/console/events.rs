//! `GET /console/events`: server-sent events with a summary of the rules' metrics once per
//! second, for as long as the browser listens.
//!
//! Cheap when unused: a stream computes its snapshots itself, on its own tick, so with no
//! browser connected nothing runs. Cheap when used: a snapshot reads the engine's status of
//! the rules on one page (`offset`, `limit` up to [`MAX_PAGE`]) plus one rule in detail, never
//! all rules, so with 10,000 rules a message stays small and a tick costs the ids' sort plus
//! one page (see docs/console.md for the measurement).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use quiver_dataflow::metrics::names;

use crate::api::{ApiError, AppState, State};
use crate::security::mask;

/// Most rules in one message.
pub const MAX_PAGE: usize = 500;

/// Between two messages.
pub const TICK: Duration = Duration::from_secs(1);

/// The longest error text in a summary; the rule page shows the whole status.
const MAX_ERROR_CHARS: usize = 300;

/// The query of `GET /console/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The first rule of the page, in id order.
    #[serde(default)]
    offset: usize,
    /// Rules on the page (default 100, at most [`MAX_PAGE`]; 0 for none).
    #[serde(default = "default_limit")]
    limit: usize,
    /// Only rules whose id contains this text.
    #[serde(default)]
    filter: String,
    /// A rule whose whole status (every operator's metrics) each message carries.
    #[serde(default)]
    rule: Option<String>,
}

fn default_limit() -> usize {
    100
}

/// One message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// When it was taken, ms since the epoch.
    time: i64,
    /// Since the server started.
    up_time_seconds: u64,
    /// Timely workers.
    workers: usize,
    /// The server's resident memory, when the OS tells (Linux).
    memory_bytes: Option<u64>,
    /// Rules matching the filter.
    rules_total: usize,
    /// The page's first rule.
    offset: usize,
    /// The page.
    rules: Vec<RuleSummary>,
    /// The `rule` asked for: its status as `GET /rules/{id}/status` shows it, or `null` when
    /// it does not exist.
    rule: Option<Value>,
}

/// One rule's line on the overview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSummary {
    id: String,
    status: String,
    /// Rows its sources read: after decoding, so a JSON array of 5 rows counts 5.
    records_in: u64,
    /// Rows its sinks wrote.
    records_out: u64,
    /// Per-row errors, all operators together.
    exceptions: u64,
    /// Why it stopped, or its warnings (truncated).
    message: String,
    /// The latest operator exception (truncated).
    last_exception: String,
}

/// `GET /console/events?offset=&limit=&filter=&rule=`.
pub async fn stream(
    state: State,
    Extension(streams): Extension<Arc<Semaphore>>,
    Query(params): Query<Params>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if params.limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit {} is above the limit of {MAX_PAGE} rules per message",
            params.limit
        )));
    }
    let permit = super::stream_permit(&streams)?;
    let state = state.0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stream = futures_util::stream::unfold(
        (state, params, tick, permit),
        |(state, params, mut tick, permit)| async move {
            tick.tick().await;
            let data = serde_json::to_string(&snapshot(&state, &params))
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            let event = Event::default().event("metrics").data(data);
            Some((Ok(event), (state, params, tick, permit)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One message's content: reads the engine's rule status for one page and one rule.
pub fn snapshot(state: &AppState, params: &Params) -> Snapshot {
    let mut ids = state.engine.rule_ids();
    if !params.filter.is_empty() {
        ids.retain(|id| id.contains(&params.filter));
    }
    ids.sort_unstable();
    let rules_total = ids.len();
    let rules = ids
        .iter()
        .skip(params.offset)
        .take(params.limit)
        .filter_map(|id| {
            let status = state.engine.rule_status(id).ok()?;
            Some(summary(id, status))
        })
        .collect();
    let rule = params.rule.as_ref().and_then(|id| {
        let mut status = state.engine.rule_status(id).ok()?;
        status.message = mask::mask_text(&status.message).into_owned();
        let mut value = serde_json::to_value(status).ok()?;
        mask::mask_value(&mut value);
        Some(value)
    });
    Snapshot {
        time: chrono::Utc::now().timestamp_millis(),
        up_time_seconds: state.started.elapsed().as_secs(),
        workers: state.engine.workers(),
        memory_bytes: resident_memory(),
        rules_total,
        offset: params.offset,
        rules,
        rule,
    }
}

/// Sums a rule's node metrics into its overview line.
fn summary(id: &str, status: quiver_dataflow::RuleStatus) -> RuleSummary {
    let (mut messages_in, mut decoded, mut records_out, mut exceptions) = (0, None, 0, 0);
    let mut last_node: Option<&str> = None;
    let mut last_time = 0;
    for (key, value) in &status.metrics {
        let n = value.as_u64().unwrap_or(0);
        let node = key.strip_suffix(names::RECORDS_OUT).unwrap_or("");
        if key.starts_with("source_") && key.ends_with(names::RECORDS_IN) {
            messages_in += n;
        } else if node.starts_with("op_") && node.ends_with("_decoder_0_") {
            // A source counts messages; its decoder's output is the rows they carried.
            *decoded.get_or_insert(0) += n;
        } else if key.starts_with("sink_") && key.ends_with(names::RECORDS_OUT) {
            records_out += n;
        } else if key.ends_with(names::EXCEPTIONS) {
            exceptions += n;
        } else if let Some(node) = key.strip_suffix(names::LAST_EXCEPTION_TIME) {
            // The node's latest exception wins if it is the newest so far.
            let at = value.as_i64().unwrap_or(0);
            if at >= last_time {
                last_time = at;
                last_node = Some(node);
            }
        }
    }
    let last_exception = last_node
        .and_then(|node| {
            let key = format!("{node}{}", names::LAST_EXCEPTION);
            status.metrics.iter().find(|(k, _)| *k == key)
        })
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("");
    RuleSummary {
        id: id.to_string(),
        status: status.status,
        records_in: decoded.unwrap_or(messages_in),
        records_out,
        exceptions,
        message: short(&status.message),
        last_exception: short(last_exception),
    }
}

/// Masked and cut to [`MAX_ERROR_CHARS`].
fn short(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let masked = mask::mask_text(text);
    let mut out: String = masked.chars().take(MAX_ERROR_CHARS).collect();
    if masked.chars().nth(MAX_ERROR_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Resident memory from `/proc/self/statm` (pages; Linux pages are 4 KiB here).
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_sums_sources_sinks_and_exceptions() {
        let metrics = [
            ("source_demo_0_records_in_total", Value::from(4)),
            ("op_1_decoder_0_records_out_total", Value::from(10)),
            ("op_2_filter_0_records_in_total", Value::from(10)),
            ("op_2_filter_0_exceptions_total", Value::from(2)),
            ("op_2_filter_0_last_exception", Value::from("bad cast")),
            ("op_2_filter_0_last_exception_time", Value::from(5)),
            ("op_3_project_0_exceptions_total", Value::from(1)),
            ("op_3_project_0_last_exception", Value::from("older")),
            ("op_3_project_0_last_exception_time", Value::from(4)),
            ("sink_log_0_0_records_out_total", Value::from(7)),
            ("sink_mqtt_1_0_records_out_total", Value::from(1)),
        ];
        let status = quiver_dataflow::RuleStatus {
            metrics: metrics
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..status_with_no_metrics()
        };
        let s = summary("r", status);
        assert_eq!((s.records_in, s.records_out, s.exceptions), (10, 8, 3));
        assert_eq!(s.last_exception, "bad cast");
        let undecoded = quiver_dataflow::RuleStatus {
            metrics: vec![("source_demo_0_records_in_total".into(), Value::from(4))],
            ..status_with_no_metrics()
        };
        assert_eq!(summary("r", undecoded).records_in, 4);
    }

    fn status_with_no_metrics() -> quiver_dataflow::RuleStatus {
        quiver_dataflow::RuleStatus {
            status: "running".into(),
            message: String::new(),
            last_start_ms: 0,
            last_stop_ms: 0,
            next_start_ms: 0,
            metrics: Vec::new(),
        }
    }

    #[test]
    fn long_errors_are_cut() {
        let cut = short(&"x".repeat(MAX_ERROR_CHARS + 10));
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
