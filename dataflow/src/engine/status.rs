//! What a rule reports: its status and metrics, topology, plan, and the end of its run.

use std::time::Duration;

use serde_json::Value;

use super::Engine;
use super::rules::unknown_rule;
use crate::error::EngineError;

/// What `GET /rules/{id}/status` shows.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    /// `running`, `stopped`, `stopped by error` or, for an armed scheduled rule between its
    /// runs, `stopped: waiting for next schedule.`.
    pub status: String,
    /// Why it is in that state, or warnings.
    pub message: String,
    /// Last start, ms since the epoch (0: never).
    pub last_start_ms: i64,
    /// Last stop, ms since the epoch (0: never).
    pub last_stop_ms: i64,
    /// When the rule starts next, ms since the epoch (0: not planned): a restart of a failed
    /// rule (`restartStrategy`) or the next fire of an armed rule's `cron`.
    pub next_start_ms: i64,
    /// Metrics as `(key, value)` in topology order.
    pub metrics: Vec<(String, Value)>,
}

/// eKuiper's flat status object: `status`, `message`, the three timestamps, then every metric
/// in topology order. Serialized by hand because a JSON map would sort the keys.
impl serde::Serialize for RuleStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(5 + self.metrics.len()))?;
        m.serialize_entry("status", &self.status)?;
        m.serialize_entry("message", &self.message)?;
        m.serialize_entry("lastStartTimestamp", &self.last_start_ms)?;
        m.serialize_entry("lastStopTimestamp", &self.last_stop_ms)?;
        m.serialize_entry("nextStartTimestamp", &self.next_start_ms)?;
        for (k, v) in &self.metrics {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Engine {
    /// True while the rule has a run that has not finished.
    pub fn rule_running(&self, id: &str) -> bool {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules
            .get(id)
            .and_then(|e| e.run.as_ref())
            .is_some_and(|r| !*r.done.borrow())
    }

    /// True while the rule is a scheduled rule armed and between its runs.
    pub fn rule_waiting_for_schedule(&self, id: &str) -> bool {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules.get(id).is_some_and(|e| {
            e.schedule_state.armed && e.run.as_ref().is_none_or(|r| *r.done.borrow())
        })
    }

    /// Rows the rule has read and its keyed or window operators (a partitioned table join, a
    /// partitioned analytic function, a window) have not taken yet: 0 once every row read so far
    /// has been joined against its table.
    pub fn rule_rows_in_flight(&self, id: &str) -> usize {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules.get(id).and_then(|e| e.run.as_ref()).map_or(0, |r| {
            r.in_flight.load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The rule's nodes in topology order, named as in its metrics (`source_demo`,
    /// `op_2_filter`, ..., `sink_log_0`, then joined streams' sources).
    pub fn rule_topology(&self, id: &str) -> Result<Vec<String>, EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get(id).ok_or_else(|| unknown_rule(id))?;
        let stream = self.rule_stream(entry)?;
        Ok(self.physical(entry, &stream)?.nodes)
    }

    /// The rule's output fields in SELECT order, each with eKuiper's type name (`bigint`,
    /// `float`, `string`, ...) or `None` where it depends on schemaless data. Fields a spread
    /// or `unnest` makes are only known from the rows, and are not listed.
    pub fn rule_output_fields(
        &self,
        id: &str,
    ) -> Result<Vec<(String, Option<String>)>, EngineError> {
        use quiver_compiler::plan::{LogicalPlan, ProjectItem};
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get(id).ok_or_else(|| unknown_rule(id))?;
        let stream = self.rule_stream(entry)?;
        let mut node = &entry.plan.plan;
        let items = loop {
            match node {
                LogicalPlan::Project { items, .. } => break items,
                other => match other.input() {
                    Some(input) => node = input,
                    None => return Ok(Vec::new()),
                },
            }
        };
        let known = |t: quiver_compiler::types::SqlType| {
            t.known()
                .map(|t| quiver_compiler::types::type_name(t).to_string())
        };
        let mut fields = Vec::new();
        for item in items {
            match item {
                ProjectItem::Expr { expr, name, .. } => {
                    fields.push((name.clone(), known(expr.sql_type())))
                }
                ProjectItem::Wildcard { except, replace } => {
                    for c in stream.columns.iter().flatten() {
                        if except.iter().any(|e| e.eq_ignore_ascii_case(&c.name)) {
                            continue;
                        }
                        let ty = match replace
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(&c.name))
                        {
                            Some((_, e)) => known(e.sql_type()),
                            None => Some(c.ty.ekuiper_name().to_string()),
                        };
                        fields.push((c.name.clone(), ty));
                    }
                }
                ProjectItem::Spread { .. } | ProjectItem::Unnest { .. } => {}
            }
        }
        Ok(fields)
    }

    /// The rule's plans as text: the logical plan, then the physical plan.
    pub fn explain(&self, id: &str) -> Result<String, EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get(id).ok_or_else(|| unknown_rule(id))?;
        let stream = self.rule_stream(entry)?;
        let physical = self.physical(entry, &stream)?;
        Ok(format!(
            "Logical plan:\n{}\nPhysical plan:\n{}",
            entry.plan.explain(),
            physical.explain()
        ))
    }

    /// The rule's status and metrics.
    pub fn rule_status(&self, id: &str) -> Result<RuleStatus, EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get(id).ok_or_else(|| unknown_rule(id))?;
        let mut last_stop_ms = entry.last_stop_ms;
        let (status, message, metrics) = match &entry.run {
            Some(run) => {
                let finished_at = run.finished_at.load(std::sync::atomic::Ordering::Acquire);
                if finished_at > 0 {
                    last_stop_ms = finished_at;
                }
                let finished = *run.done.borrow();
                let error = run
                    .error
                    .lock()
                    .expect("error lock")
                    .clone()
                    .or_else(|| self.workers_stopped());
                let (status, message) = match (finished, error) {
                    (_, Some(e)) => ("stopped by error".to_string(), e),
                    (true, None) => ("stopped".to_string(), "input ended".to_string()),
                    (false, None) => ("running".to_string(), String::new()),
                };
                let mut metrics = run.metrics.flatten();
                // In a cluster, the leader answers for every process.
                self.cluster_metrics(id, &run.key, &mut metrics);
                if let Some(conn) = &run.connection {
                    connection_metrics(&mut metrics, &run.source_node, conn);
                }
                if let Some(c) = &run.checkpoint {
                    let last = c.stats();
                    for (key, value) in [
                        ("checkpoint_last_epoch", last.epoch as i64),
                        ("checkpoint_last_time", last.at_ms),
                        ("checkpoint_last_duration_ms", last.duration_ms as i64),
                        ("checkpoint_last_bytes", last.bytes as i64),
                    ] {
                        metrics.push((key.to_string(), Value::from(value)));
                    }
                }
                let dropped = run.dropped.load(std::sync::atomic::Ordering::Relaxed);
                let late = run.late_rows.load(std::sync::atomic::Ordering::Relaxed);
                let mut message = message;
                for (count, metric, why) in [
                    (
                        late,
                        "late_events_total",
                        "late events dropped behind the watermark",
                    ),
                    (
                        dropped,
                        "dropped_events_total",
                        "events dropped: the rule fell behind its shared stream",
                    ),
                ] {
                    if count > 0 {
                        let key = format!("{}_0_{metric}", run.source_node);
                        metrics.push((key, Value::from(count)));
                        if !message.is_empty() {
                            message.push_str("; ");
                        }
                        message.push_str(&format!("{count} {why}"));
                    }
                }
                (status, message, metrics)
            }
            None => (
                "stopped".to_string(),
                entry.stop_message.clone(),
                entry
                    .last_metrics
                    .as_ref()
                    .map(|m| m.flatten())
                    .unwrap_or_default(),
            ),
        };
        let mut message = message;
        let restart = &entry.restart;
        if restart.next_ms > 0 || restart.gave_up {
            if !message.is_empty() {
                message.push_str("; ");
            }
            let attempts = entry.restart_strategy.attempts;
            if restart.next_ms > 0 {
                message.push_str(&format!(
                    "restart {} of {attempts} due at nextStartTimestamp",
                    restart.made + 1
                ));
            } else {
                message.push_str(&format!(
                    "not restarted again after {} restarts (restartStrategy attempts {attempts})",
                    restart.made
                ));
            }
        }
        let mut status = status;
        let mut next_start_ms = restart.next_ms;
        if let Some(schedule) = &entry.schedule
            && entry.schedule_state.armed
        {
            if status == "stopped" {
                status = super::schedule::WAITING.to_string();
            }
            if next_start_ms == 0 {
                next_start_ms =
                    schedule.next_start(crate::clock::now_ms(), entry.schedule_state.anchor_ms);
            }
        }
        Ok(RuleStatus {
            status,
            message,
            last_start_ms: entry.last_start_ms,
            last_stop_ms,
            next_start_ms,
            metrics,
        })
    }

    /// Waits until the rule's current run has finished (its input ended and every sink has
    /// written everything), up to `timeout`. Returns false on timeout.
    pub async fn wait_finished(&self, id: &str, timeout: Duration) -> Result<bool, EngineError> {
        let mut done = {
            let rules = self.inner.rules.lock().expect("rules lock");
            let entry = rules.get(id).ok_or_else(|| unknown_rule(id))?;
            match &entry.run {
                Some(run) => run.done.clone(),
                None => return Ok(true),
            }
        };
        let wait = async {
            while !*done.borrow_and_update() {
                if done.changed().await.is_err() {
                    break;
                }
            }
        };
        Ok(tokio::time::timeout(timeout, wait).await.is_ok())
    }
}

/// Adds eKuiper's `connection_*` metrics after the source node's own metrics.
fn connection_metrics(
    metrics: &mut Vec<(String, Value)>,
    node: &str,
    conn: &quiver_connectors::mqtt::ConnectionState,
) {
    let snap = conn.snapshot();
    let at = metrics
        .iter()
        .rposition(|(k, _)| k.starts_with(&format!("{node}_0_")))
        .map_or(metrics.len(), |i| i + 1);
    let entries = [
        (
            "connection_status",
            Value::from(if snap.connected { 1 } else { 0 }),
        ),
        (
            "connection_last_connected_time",
            Value::from(snap.last_connected_ms.unwrap_or(0)),
        ),
        (
            "connection_last_disconnected_message",
            Value::String(snap.last_error.unwrap_or_default()),
        ),
    ];
    for (i, (name, v)) in entries.into_iter().enumerate() {
        metrics.insert(at + i, (format!("{node}_0_{name}"), v));
    }
}
