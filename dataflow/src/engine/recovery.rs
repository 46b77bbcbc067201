//! Rule options `qos` and `checkpointInterval`: which rules checkpoint, where their state and
//! input log live, and what a run resumes from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Engine;
use super::entry::RuleEntry;
use quiver_compiler::StreamDef;

use crate::checkpoint::{CheckpointStore, Checkpointing, InputLog};
use crate::error::EngineError;
use crate::physical::{PhysicalPlan, Stage};
use crate::state::OpState;

/// `checkpointInterval` when a rule with qos 1 leaves it out (eKuiper's 5 minutes would replay
/// up to 5 minutes of logged input after a crash; 5 s keeps the log and the replay short).
pub(super) const DEFAULT_INTERVAL_MS: u64 = 5_000;
const MIN_INTERVAL_MS: u64 = 100;
const MAX_INTERVAL_MS: u64 = 24 * 3_600_000;
/// Source types whose input the log makes safe: pushed to Quiver and not read again by it, or
/// (the file source) read again from where the log's last cursor says it had got to.
const LOGGED_SOURCES: &[&str] = &["mqtt", "memory", "httppush", "file"];
/// Source types a joined stream's events can be logged for: pushed to Quiver (a joined file
/// source would read its file again after a restart: its position is not kept).
const LOGGED_JOINED_SOURCES: &[&str] = &["mqtt", "memory", "httppush"];

/// A rule's delivery guarantee (`qos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // eKuiper's names for the three levels.
pub(super) enum Qos {
    /// 0: at most once (eKuiper's default): nothing is kept across a crash.
    AtMostOnce,
    /// 1: at least once, checkpointed every so many ms.
    AtLeastOnce(u64),
    /// 2: exactly once, checkpointed every so many ms; sinks commit each checkpoint's rows in
    /// one transaction with its epoch.
    ExactlyOnce(u64),
}

impl Qos {
    /// The checkpoint interval (ms) and the level, for qos 1 and 2.
    pub(super) fn checkpointed(self) -> Option<(u64, u8)> {
        match self {
            Qos::AtMostOnce => None,
            Qos::AtLeastOnce(ms) => Some((ms, 1)),
            Qos::ExactlyOnce(ms) => Some((ms, 2)),
        }
    }

    /// True at qos 2.
    pub(super) fn exactly_once(self) -> bool {
        matches!(self, Qos::ExactlyOnce(_))
    }
}

/// `def` as a rule with `options` reads it: at qos 1 and 2 a `SHARED` stream is read by a
/// source of the rule's own. The stream's shared source hands each event to every rule in
/// memory, drops it for a rule that falls behind, and acknowledges it for all of them; a rule
/// that logs its input must log, and acknowledge once logged, every event itself. The rule
/// still gets every message of the stream (its own MQTT session and subscription, its own
/// reading of the file); only the sharing of the source is given up.
pub(super) fn read_durably(options: &Map<String, Value>, mut def: StreamDef) -> StreamDef {
    if def.options.shared && qos(options).is_ok_and(|q| q.checkpointed().is_some()) {
        def.options.shared = false;
    }
    def
}

/// Reads `qos` and `checkpointInterval`; a value this engine cannot honour is refused by name.
pub(super) fn qos(options: &Map<String, Value>) -> Result<Qos, EngineError> {
    let interval = match options.get("checkpointInterval") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(Value::String(s)) => {
            Some(quiver_compiler::duration::parse_millis(s).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "checkpointInterval \"{s}\" is not a duration such as \"5s\""
                ))
            })?)
        }
        Some(other) => {
            return Err(EngineError::Invalid(format!(
                "checkpointInterval must be milliseconds or a duration such as \"5m\", got {other}"
            )));
        }
    };
    let level = match options.get("qos") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_u64().filter(|q| *q <= 2).ok_or_else(|| {
            EngineError::Invalid(format!("rule option qos must be 0, 1 or 2, got {n}"))
        })?,
        Some(Value::String(s)) => s.parse().ok().filter(|q| *q <= 2).ok_or_else(|| {
            EngineError::Invalid(format!("rule option qos must be 0, 1 or 2, got \"{s}\""))
        })?,
        Some(other) => {
            return Err(EngineError::Invalid(format!(
                "rule option qos must be 0, 1 or 2, got {other}"
            )));
        }
    };
    if level == 0 {
        return Ok(Qos::AtMostOnce);
    }
    let ms = interval.unwrap_or(DEFAULT_INTERVAL_MS);
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) {
        return Err(EngineError::Invalid(format!(
            "checkpointInterval {ms} ms is out of bounds ({MIN_INTERVAL_MS} ms to 24 h)"
        )));
    }
    Ok(if level == 1 {
        Qos::AtLeastOnce(ms)
    } else {
        Qos::ExactlyOnce(ms)
    })
}

/// A stream joined to a rule's FROM stream, or a scan table the rule keeps its own copy of,
/// as far as checkpoints care.
pub(super) struct JoinedStream {
    pub(super) name: String,
    pub(super) source_type: String,
    /// A scan table (read by a source of the rule's own, see `tables::own`).
    pub(super) table: bool,
    /// Whether it has a `KEY` (a table's rows are then upserts).
    pub(super) keyed: bool,
    /// A file table whose files are deleted or moved once read (`actionAfterRead` 1 or 2).
    pub(super) consumed: bool,
}

/// What a checkpointed run starts from.
pub(super) struct Recovery {
    pub(super) checkpointing: Arc<Checkpointing>,
    /// Per worker: the log position the run's state includes, and the last logged record.
    pub(super) positions: Vec<u64>,
    pub(super) replay_until: Vec<u64>,
    pub(super) interval: Duration,
}

impl Engine {
    /// The directory of a rule's checkpoints and input log.
    fn checkpoint_dir(&self, rule: &str) -> Option<PathBuf> {
        let name: String = rule
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        Some(self.inner.data_dir.clone()?.join("checkpoints").join(name))
    }

    /// Starts checkpoints every `checkpointInterval`, waking every worker's source so idle
    /// ones move to the checkpoint's time. Aborted with the run.
    pub(super) fn checkpoint_trigger(
        &self,
        recovery: &Recovery,
        workers: usize,
        wake: quiver_connectors::WakeFn,
    ) -> tokio::task::JoinHandle<()> {
        let checkpointing = Arc::downgrade(&recovery.checkpointing);
        let interval = recovery.interval;
        self.inner.runtime.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(c) = checkpointing.upgrade() else {
                    return;
                };
                if c.start().is_some() {
                    (0..workers).for_each(|w| wake(w));
                }
            }
        })
    }

    /// Deletes a rule's checkpoints and input log (the rule is deleted).
    pub(super) fn forget_checkpoints(&self, rule: &str) {
        if let Some(dir) = self.checkpoint_dir(rule) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// For a rule with qos 1 or 2: checks that this engine can keep its promise for the rule's
    /// shape, opens its store and log, and loads the checkpoint to resume from (a checkpoint
    /// of another plan is set aside, and the log with it, saying so).
    pub(super) fn recovery(
        &self,
        entry: &RuleEntry,
        physical: &PhysicalPlan,
        source_type: &str,
        joined: &[JoinedStream],
        workers: usize,
    ) -> Result<Option<Recovery>, EngineError> {
        let guarantee = qos(&entry.spec.options)?;
        let Some((interval, level)) = guarantee.checkpointed() else {
            return Ok(None);
        };
        let refuse = |what: &str| {
            Err(EngineError::Invalid(format!(
                "rule option qos = {level} is not supported yet for {what}; only qos 0 is"
            )))
        };
        if entry.test.is_some() {
            return refuse("rule tests");
        }
        if !LOGGED_SOURCES.contains(&source_type) {
            return refuse(&format!(
                "{source_type} sources (it is for {})",
                LOGGED_SOURCES.join(", ")
            ));
        }
        // A file source resumes from the mark of worker 0's last record, which a joined
        // stream's records (unmarked) would hide; and its end would start the input's last
        // checkpoint while the joined streams still run.
        if source_type == "file" && joined.iter().any(|j| !j.table) {
            return refuse("a file stream joined with other streams");
        }
        if source_type == "file" && !joined.is_empty() {
            return refuse("a file stream joined with scan tables");
        }
        // A stream join's table joins run on each window's rows as it closes, where the
        // table's changes (taken by the source stage) do not reach.
        if joined.iter().any(|j| j.table) && joined.iter().any(|j| !j.table) {
            return refuse("a rule joining both streams and scan tables");
        }
        // A joined stream's events go into the input log too (see `checkpoint::joined`).
        for joined in joined {
            // A file table is read again from its start after a restart, on top of the copy in
            // the checkpoint (docs/checkpoints.md, "Scan tables"): upserts by KEY, rows added
            // twice without one; and its files must still be there (the shared table reads
            // them too).
            if joined.table && joined.source_type == "file" {
                if !joined.keyed {
                    return refuse(&format!(
                        "a file scan table without KEY (\"{}\": read again after a restart, its rows would be added twice)",
                        joined.name
                    ));
                }
                if joined.consumed {
                    return refuse(&format!(
                        "a file scan table with actionAfterRead 1 or 2 (\"{}\": its files are gone once read, and the rule reads them again after a restart)",
                        joined.name
                    ));
                }
                continue;
            }
            if joined.table && !LOGGED_JOINED_SOURCES.contains(&joined.source_type.as_str()) {
                return refuse(&format!(
                    "joins with {} scan tables (\"{}\"; a rule's own copy of a scan table is logged for {}, and file tables with a KEY)",
                    joined.source_type,
                    joined.name,
                    LOGGED_JOINED_SOURCES.join(", ")
                ));
            }
            if !LOGGED_JOINED_SOURCES.contains(&joined.source_type.as_str()) {
                return refuse(&format!(
                    "joins with {} streams (\"{}\"; joined streams are logged for {})",
                    joined.source_type,
                    joined.name,
                    LOGGED_JOINED_SOURCES.join(", ")
                ));
            }
        }
        // Lookup tables are asked again on replay (see docs/checkpoints.md); a scan table's
        // shared arrangement is outside the checkpoint: the rule keeps its own copy, on worker
        // 0, taking the table's changes in its source stage.
        if !physical.indexes.is_empty() {
            return refuse("joins with scan tables");
        }
        if !own_copies_in_source_stage(physical) {
            return refuse(
                "scan tables joined after a key exchange (analytic functions partitioned by key)",
            );
        }
        {
            let tables = self.inner.tables.lock().expect("tables lock");
            for name in physical.tables() {
                match tables.get(name).map(|t| &t.side) {
                    Some(crate::tables::TableSide::Scan(_))
                        if !physical.own_tables.iter().any(|(t, _)| t == name) =>
                    {
                        return refuse("joins with scan tables");
                    }
                    Some(crate::tables::TableSide::Lookup(t)) if t.memory_state().is_some() => {
                        return refuse(&format!(
                            "joins with memory lookup tables (\"{name}\": its rows live in this process, outside the checkpoint)"
                        ));
                    }
                    _ => {}
                }
            }
        }
        for stage in &physical.stages {
            if let Stage::Keyed { ops } | Stage::Emit { ops, .. } = stage
                && ops.iter().any(|op| op.kind.is_stateful())
            {
                return refuse("analytic functions after a window or a key exchange");
            }
        }
        if guarantee.exactly_once() && super::options::flag(&entry.spec.options, "sendError") {
            return Err(EngineError::Invalid(
                "rule option sendError cannot be combined with qos = 2: error texts are written as they come, outside the sinks' transactions".into(),
            ));
        }
        let dir = self.checkpoint_dir(&entry.spec.id).ok_or_else(|| {
            EngineError::Invalid(format!(
                "rule option qos = {level} needs a data directory, which this engine was started without"
            ))
        })?;
        let fail = |e: String| EngineError::Invalid(format!("qos {level}: {e}"));
        let store = CheckpointStore::open(&dir).map_err(fail)?;
        let fingerprint = format!(
            "workers={workers}\nsql={}\noptions={}\nplan={}",
            entry.spec.sql,
            Value::Object(entry.spec.options.clone()),
            physical.explain()
        );
        let mut latest = store.latest();
        if latest
            .as_ref()
            .is_some_and(|c| c.fingerprint != fingerprint)
        {
            tracing::warn!(
                rule = %entry.spec.id,
                "the rule's plan changed since its last checkpoint: its state starts afresh"
            );
            // A file table is read again anyway.
            let tables: Vec<&str> = joined
                .iter()
                .filter(|j| j.table && j.source_type != "file")
                .map(|j| j.name.as_str())
                .collect();
            if !tables.is_empty() {
                tracing::warn!(
                    rule = %entry.spec.id,
                    tables = %tables.join(", "),
                    "the rule's own copies of its scan tables start empty: rows their sources sent before are not sent again"
                );
            }
            store.clear();
            InputLog::clear(&dir);
            latest = None;
        }
        let log = Arc::new(InputLog::open(&dir, workers).map_err(fail)?);
        let mut positions = vec![0u64; workers];
        if let Some(c) = &latest {
            for (w, p) in positions.iter_mut().enumerate() {
                if let Some(bytes) = c.parts.get(&crate::checkpoint::coordinator::source_part(w)) {
                    let state = OpState::decode(bytes).map_err(fail)?;
                    *p = state.number("position").unwrap_or(0).max(0) as u64;
                }
            }
        }
        if source_type == "file" {
            // The file source is its own log: its records say where its events lie in its
            // files, which a restart reads again (see `checkpoint::reread`).
            let stream = self.rule_stream(entry)?;
            let spec = self.rule_source_spec(entry, &stream);
            let config = quiver_connectors::file::FileSourceConfig::parse_for_format(
                &spec.datasource,
                &spec.props,
                &spec.format,
            )?;
            let reread = Arc::new(crate::checkpoint::reread::FileReread(config));
            let held = latest.as_ref().and_then(|c| {
                crate::checkpoint::reread::Held::restored(&c.parts).latest(&positions)
            });
            let prepared =
                crate::checkpoint::reread::prepare(&log, reread.as_ref(), &positions, held)
                    .map_err(fail)?;
            if prepared.cut > 0 {
                tracing::info!(
                    rule = %entry.spec.id,
                    kept = prepared.kept,
                    cut = prepared.cut,
                    "input log records after a gap left by the crash are cut off: the file source reads their rows again as it goes on"
                );
            }
            log.set_reread(reread);
        }
        let replay_until = (0..workers).map(|w| log.last_seq(w)).collect();
        let flags = crate::checkpoint::RunFlags {
            event_time: physical.event_time.is_some(),
            exactly_once: guarantee.exactly_once(),
        };
        let checkpointing =
            Checkpointing::new(workers, fingerprint, store, latest, Some(log), flags);
        Ok(Some(Recovery {
            checkpointing,
            positions,
            replay_until,
            interval: Duration::from_millis(interval),
        }))
    }
}

/// Readies a checkpointed (qos 1 or 2) rule's MQTT source for a persistent session: it needs a client id that is
/// the same on every start (the broker keys the session on it), `client_id` unless the
/// stream's profile names one; a shared connection (`connectionSelector`) cannot acknowledge
/// per rule, so it is refused. Returns the client id of an MQTT source. `of_shared` names the
/// rule when the stream is `SHARED` (the rule reads it with a source of its own, see
/// [`read_durably`]): a profile's client id is the stream's shared source's, so the rule's
/// own gets it suffixed `-<rule id>` (one id for two clients would make the broker drop one
/// of them, and a clean session would discard the other's).
pub(super) fn durable_source(
    client_id: String,
    spec: &mut quiver_connectors::SourceSpec,
    of_shared: Option<&str>,
) -> Result<Option<String>, EngineError> {
    if spec.source_type == "file" {
        return resumable_file(spec).map(|()| None);
    }
    if spec.source_type != "mqtt" {
        return Ok(None);
    }
    let named = |key: &str| spec.props.keys().any(|k| k.eq_ignore_ascii_case(key));
    if named("connectionSelector") {
        return Err(EngineError::Invalid(
            "rule options qos = 1 and 2 are not supported yet for a stream read through a shared connection (connectionSelector); only qos 0 is".into(),
        ));
    }
    let subscription_qos = spec
        .props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("qos"))
        .map(|(_, v)| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
    if subscription_qos == Some(Some(0)) {
        return Err(EngineError::Invalid(
            "rule options qos = 1 and 2 need the MQTT stream to subscribe with qos 1 or 2 (its \"qos\" property is 0: the broker would neither redeliver nor keep messages)".into(),
        ));
    }
    if !named("clientid") {
        spec.props
            .insert("clientid".into(), Value::String(client_id));
    } else if let Some(rule) = of_shared
        && let Some((_, Value::String(id))) = spec
            .props
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case("clientid"))
    {
        id.push_str(&format!("-{rule}"));
    }
    Ok(spec
        .props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("clientid"))
        .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_string)))
}

/// True when every join reading a rule's own copy of a scan table is in the source stage, where
/// the table's changes arrive between the stream's rows.
fn own_copies_in_source_stage(physical: &PhysicalPlan) -> bool {
    let own = |ops: &[crate::physical::Op]| {
        ops.iter().any(|op| {
            matches!(
                op.kind,
                crate::physical::OpKind::JoinTable(_, crate::physical::TableRead::Own { .. })
            )
        })
    };
    physical.stages.iter().all(|stage| match stage {
        Stage::Source { .. } | Stage::Sink { .. } => true,
        Stage::Keyed { ops } | Stage::Emit { ops, .. } => !own(ops),
        Stage::Window { joined, .. } => !joined.as_deref().is_some_and(own),
    })
}

/// Refuses what a checkpointed (qos 1 or 2) rule's file source cannot resume exactly: files
/// read side by side (`parallel`), whose rows interleave, so no one position says what was
/// handed over. (A stream the file source refuses anyway is left to its own message.)
fn resumable_file(spec: &quiver_connectors::SourceSpec) -> Result<(), EngineError> {
    let Ok(config) = quiver_connectors::file::FileSourceConfig::parse_for_format(
        &spec.datasource,
        &spec.props,
        &spec.format,
    ) else {
        return Ok(());
    };
    if config.parallel {
        return Err(EngineError::Invalid(
            "rule options qos = 1 and 2 are not supported yet for a file source with \"parallel\": true (files read side by side interleave their rows, so no one position says what was read); only qos 0 is".into(),
        ));
    }
    Ok(())
}

/// Feeds each worker's queue the logged events after its checkpointed position, in turns, so
/// the workers replay side by side; an event of the `k`-th joined stream is prepared by
/// `joined[k - 1]` as it was live. Blocking: run on a blocking thread before the live sources
/// (the FROM stream's and the joined ones) start: a live event must not overtake a replayed
/// one in a queue. Returns the events replayed.
pub(super) fn replay(
    log: &InputLog,
    positions: &[u64],
    queues: &[tokio::sync::mpsc::Sender<quiver_connectors::SourceEvent>],
    joined: &[crate::checkpoint::PrepareJoined],
    wake: &quiver_connectors::WakeFn,
) -> Result<usize, String> {
    if let Some(reread) = log.reread() {
        return crate::checkpoint::reread::replay(log, reread.as_ref(), positions, queues, wake);
    }
    let mut replays = positions
        .iter()
        .enumerate()
        .take(queues.len())
        .map(|(w, &p)| log.read_after(w, p).map(|r| (w, r)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sent = 0;
    while !replays.is_empty() {
        let mut i = 0;
        while i < replays.len() {
            let (w, replay) = &mut replays[i];
            match replay.next() {
                None => {
                    replays.remove(i);
                    continue;
                }
                Some(record) => {
                    let r = record?;
                    let event = r.event.ok_or_else(|| {
                        format!(
                            "record {} holds no event, and the rule's source cannot read it again",
                            r.seq
                        )
                    })?;
                    let event = match r.source {
                        0 => event,
                        k => {
                            let prepare = joined.get(k as usize - 1).ok_or_else(|| {
                                format!("record {} is of joined stream {k}, which the rule does not have", r.seq)
                            })?;
                            prepare(event)
                        }
                    };
                    let event = quiver_connectors::SourceEvent::Logged {
                        seq: r.seq,
                        at: r.at,
                        event: Box::new(event),
                    };
                    queues[*w]
                        .blocking_send(event)
                        .map_err(|_| "the rule stopped during the replay".to_string())?;
                    wake(*w);
                    sent += 1;
                }
            }
            i += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn qos_of(v: Value) -> Result<Qos, EngineError> {
        qos(v.as_object().expect("object"))
    }

    #[test]
    fn qos_values() {
        assert_eq!(qos_of(json!({})).unwrap(), Qos::AtMostOnce);
        assert_eq!(
            qos_of(json!({"qos": 0, "checkpointInterval": 300000})).unwrap(),
            Qos::AtMostOnce
        );
        assert_eq!(
            qos_of(json!({"qos": 1})).unwrap(),
            Qos::AtLeastOnce(DEFAULT_INTERVAL_MS)
        );
        assert_eq!(
            qos_of(json!({"qos": 1, "checkpointInterval": "2s"})).unwrap(),
            Qos::AtLeastOnce(2000)
        );
        assert_eq!(
            qos_of(json!({"qos": 2, "checkpointInterval": 1000})).unwrap(),
            Qos::ExactlyOnce(1000)
        );
        for bad in [
            json!({"qos": 2, "checkpointInterval": 50}),
            json!({"qos": 3}),
            json!({"qos": true}),
            json!({"qos": 1, "checkpointInterval": 5}),
            json!({"qos": 1, "checkpointInterval": "soon"}),
        ] {
            assert!(qos_of(bad.clone()).is_err(), "{bad} must be refused");
        }
        let e = qos_of(json!({"qos": 3})).unwrap_err().to_string();
        assert!(e.contains("qos must be 0, 1 or 2"), "{e}");
    }
}
