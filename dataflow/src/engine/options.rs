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

/// The largest rule option `bufferLength` (rows). The engine turns it into a queue of at most
/// 64 batches anyway; refusing values above 1 Mi rows (a thousand times eKuiper's default of
/// 1024) says so instead of silently clamping a typo such as 2^61.
pub const MAX_RULE_BUFFER_LENGTH: u64 = 1 << 20;

/// Checks the options the engine implements, so a bad value is a 400 at create time.
pub(super) fn validate(options: &serde_json::Map<String, Value>) -> Result<(), EngineError> {
    buffer_rows(options).map(drop)
}

/// eKuiper's `bufferLength` (rows, default 1024), a non-negative integer within
/// [`MAX_RULE_BUFFER_LENGTH`].
fn buffer_rows(options: &serde_json::Map<String, Value>) -> Result<u64, EngineError> {
    let rows = match options.get("bufferLength") {
        None | Some(Value::Null) => return Ok(1024),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "bufferLength must be a non-negative integer, got {v}"
                ))
            })?,
    };
    if rows > MAX_RULE_BUFFER_LENGTH {
        return Err(EngineError::Invalid(format!(
            "bufferLength {rows} is above the limit of {MAX_RULE_BUFFER_LENGTH}"
        )));
    }
    Ok(rows)
}

/// Queue length in batches between tasks, from eKuiper's `bufferLength` (checked by
/// [`validate`] when the rule was created).
pub(super) fn buffer_batches(
    options: &serde_json::Map<String, Value>,
) -> Result<usize, EngineError> {
    Ok((buffer_rows(options)? / 64).clamp(2, 64) as usize)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn options(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().expect("an object").clone()
    }

    #[test]
    fn buffer_length_is_bounded() {
        assert_eq!(buffer_batches(&options(json!({}))).unwrap(), 16);
        assert_eq!(
            buffer_batches(&options(json!({"bufferLength": 1 << 20}))).unwrap(),
            64
        );
        assert_eq!(
            validate(&options(json!({"bufferLength": 1u64 << 61})))
                .unwrap_err()
                .to_string(),
            "bufferLength 2305843009213693952 is above the limit of 1048576"
        );
        assert_eq!(
            validate(&options(json!({"bufferLength": -5})))
                .unwrap_err()
                .to_string(),
            "bufferLength must be a non-negative integer, got -5"
        );
        assert!(validate(&options(json!({"bufferLength": "2048"}))).is_ok());
    }
}
