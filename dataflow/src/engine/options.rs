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
        Some(Value::String(s)) => parse_duration_ms(s).ok_or_else(|| {
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

/// Parses a Go-style duration ("1s", "500ms", "1m30s", "2h") into milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    Some(total.round() as u64)
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
