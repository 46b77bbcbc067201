//! Rule options: eKuiper's names, the ones implemented and what they turn into.

use quiver_compiler::StreamDef;
use serde_json::Value;

use super::RuleSpec;
use crate::error::EngineError;

/// Boolean rule options (eKuiper's `sendError`, `sendNilField`); false when absent.
const BOOLEAN_OPTIONS: &[&str] = &["isEventTime", "sendError", "sendNilField"];

/// A boolean rule option's value (checked by [`validate`]); false when absent.
pub(super) fn flag(options: &serde_json::Map<String, Value>, name: &str) -> bool {
    options.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// The rule's event-time settings: `isEventTime` needs the stream's `TIMESTAMP` field;
/// `lateTolerance` is milliseconds or a duration such as "1s" (eKuiper's default: 1 s).
pub(super) fn event_time(
    spec: &RuleSpec,
    stream: &StreamDef,
) -> Result<Option<crate::physical::EventTime>, EngineError> {
    if !flag(&spec.options, "isEventTime") {
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
    for name in BOOLEAN_OPTIONS {
        match options.get(*name) {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(other) => {
                return Err(EngineError::Invalid(format!(
                    "rule option {name} must be true or false, got {other}"
                )));
            }
        }
    }
    refuse_unimplemented(options)?;
    super::restart::RestartStrategy::parse(options.get("restartStrategy"))?;
    super::schedule::Schedule::parse(options)?;
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

/// Whether a value is the one an unimplemented option accepts.
type Accepts = fn(&Value) -> bool;

/// eKuiper's rule options this engine does not implement, each with the one value it accepts
/// (eKuiper's default, so rules exported from eKuiper with every option spelled out load) and
/// that value's description; any other value is refused by name (docs/rule-options.md).
const DEFAULT_ONLY: &[(&str, Accepts, &str)] = &[
    ("debug", is_false, "false"),
    ("logFilename", is_empty, "\"\""),
    (
        "concurrency",
        is_one,
        "1 (parallelism comes from quiverd --workers)",
    ),
    ("sendMetaToSink", is_false, "false"),
    ("enableRuleTracer", is_false, "false"),
    ("planOptimizeStrategy", is_empty, "{}"),
    ("notifySub", is_false, "false"),
    ("disableBufferFullDiscard", is_false, "false"),
    ("forceExitTimeout", is_zero, "0"),
    ("experiment", is_empty, "{}"),
];

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

fn is_zero(v: &Value) -> bool {
    v.is_null() || v.as_f64() == Some(0.0) || v.as_str() == Some("0")
}

fn is_one(v: &Value) -> bool {
    v.is_null() || v.as_f64() == Some(1.0)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Refuses an option this engine does not implement when set to anything but eKuiper's
/// default: never accepted and ignored; `qos` and `checkpointInterval` are read by
/// `recovery::qos`.
fn refuse_unimplemented(options: &serde_json::Map<String, Value>) -> Result<(), EngineError> {
    for (name, accepts, default) in DEFAULT_ONLY {
        if let Some(v) = options.get(*name)
            && !accepts(v)
        {
            return Err(EngineError::Invalid(format!(
                "rule option {name} = {v} is not supported yet; only {default} is"
            )));
        }
    }
    let qos = super::recovery::qos(options)?;
    if flag(options, "enableSaveStateBeforeStop") && qos.checkpointed().is_none() {
        return Err(EngineError::Invalid(
            "rule option enableSaveStateBeforeStop needs qos 1 or 2: at qos 0 there is no state to save".into(),
        ));
    }
    Ok(())
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

    #[test]
    fn unimplemented_options_load_at_ekuipers_defaults_and_are_refused_otherwise() {
        let exported = json!({"debug": false, "logFilename": "", "concurrency": 1,
            "sendMetaToSink": false, "qos": 0, "checkpointInterval": 300000,
            "restartStrategy": {"attempts": 0, "delay": 1000, "multiplier": 2},
            "cron": "", "duration": "", "cronDatetimeRange": [], "enableRuleTracer": false,
            "planOptimizeStrategy": {}, "notifySub": false});
        assert!(validate(&options(exported)).is_ok());
        assert!(validate(&options(json!({"qos": 1}))).is_ok());
        assert!(validate(&options(json!({"qos": 2}))).is_ok());
        assert_eq!(
            validate(&options(json!({"qos": 3})))
                .unwrap_err()
                .to_string(),
            "rule option qos must be 0, 1 or 2, got 3"
        );
        assert!(validate(&options(json!({"restartStrategy": {"attempts": 3}}))).is_ok());
        assert!(validate(&options(json!({"restartStrategy": {"attempts": "x"}}))).is_err());
        assert!(validate(&options(json!({"checkpointInterval": "5m"}))).is_ok());
        assert!(validate(&options(json!({"checkpointInterval": true}))).is_err());
    }
}
