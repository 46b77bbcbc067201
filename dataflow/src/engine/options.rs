//! Rule options: eKuiper's names, the ones implemented and what they turn into.

use quiver_compiler::StreamDef;
use serde_json::Value;

use super::RuleSpec;
use crate::error::EngineError;

/// Rule options this engine implements; the others are accepted and reported in the status.
const IMPLEMENTED_OPTIONS: &[&str] = &["bufferLength", "isEventTime", "lateTolerance"];

/// The rule's event-time settings: `isEventTime` needs the stream's `TIMESTAMP` field;
/// `lateTolerance` is milliseconds or a duration such as "1s" (eKuiper's default: 1 s).
pub(super) fn event_time(
    spec: &RuleSpec,
    stream: &StreamDef,
) -> Result<Option<crate::physical::EventTime>, EngineError> {
    if !spec
        .options
        .get("isEventTime")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let Some(field) = stream.options.timestamp.clone() else {
        return Err(EngineError::Invalid(format!(
            "isEventTime needs a TIMESTAMP field on stream \"{}\" (CREATE STREAM ... WITH (TIMESTAMP=\"ts\", ...))",
            stream.name
        )));
    };
    let tolerance = match spec.options.get("lateTolerance") {
        None => 1000,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            EngineError::Invalid(format!(
                "lateTolerance {n} is not a whole number of milliseconds"
            ))
        })?,
        Some(Value::String(s)) => quiver_compiler::duration::parse_millis(s).ok_or_else(|| {
            EngineError::Invalid(format!(
                "lateTolerance \"{s}\" is not a duration such as \"1s\" or \"500ms\""
            ))
        })?,
        Some(other) => {
            return Err(EngineError::Invalid(format!(
                "lateTolerance must be milliseconds or a duration string, got {other}"
            )));
        }
    };
    Ok(Some(crate::physical::EventTime {
        field,
        tolerance,
        format: stream.options.timestamp_format.clone(),
        sources: 1,
    }))
}

/// Queue length in batches between tasks, from eKuiper's `bufferLength` (rows, default 1024).
pub(super) fn buffer_batches(options: &serde_json::Map<String, Value>) -> usize {
    let rows = options
        .get("bufferLength")
        .and_then(Value::as_u64)
        .unwrap_or(1024);
    (rows / 64).clamp(2, 64) as usize
}

/// The options a rule sets that this engine ignores, as a status warning ("" when none).
pub(super) fn unimplemented_options(spec: &RuleSpec) -> String {
    let ignored: Vec<&str> = spec
        .options
        .keys()
        .map(String::as_str)
        .filter(|k| !IMPLEMENTED_OPTIONS.contains(k))
        .collect();
    if ignored.is_empty() {
        String::new()
    } else {
        format!(
            "options not implemented yet and ignored: {}",
            ignored.join(", ")
        )
    }
}
