//! Functions that read the rule, the message, the clock or the engine rather than their
//! arguments: `props`, `tstamp` and `newuuid` here; `rule_id`, `rule_start`, `event_time`,
//! `meta`, `mqtt` and `last_hit_*`, which the binder answers itself, are documented here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, AsArray, Int64Array, StringArray};
use arrow::datatypes::DataType;

use super::{ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, check_arity, check_kind};
use crate::eval::{Columnar, EvalContext, describe_value, present};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Props));
    r.register(Arc::new(NewUuid));
    r.register(Arc::new(Tstamp));
}

/// (name, documentation) of the context functions the binder implements: the binder answers these calls itself, outside the
/// registry, and they appear in the same catalogue.
pub(super) const BINDER_DOCS: &[(&str, FunctionDoc)] = &[
    (
        "last_hit_count",
        FunctionDoc::new(
            "other",
            "last_hit_count()",
            "How many rows passed before: in WHERE it reads the count of earlier passing rows; in SELECT it counts every row.",
            "WHERE last_hit_count() < 3",
        ),
    ),
    (
        "last_hit_time",
        FunctionDoc::new(
            "other",
            "last_hit_time()",
            "Time of the last row that passed (event time, epoch ms; 0 before any).",
            "WHERE ts - last_hit_time() > 1000",
        ),
    ),
    (
        "event_time",
        FunctionDoc::new(
            "other",
            "event_time()",
            "The row's time (event or arrival), or the window's end in a window's results.",
            "event_time() → 1700000000123",
        ),
    ),
    (
        "rule_id",
        FunctionDoc::new(
            "other",
            "rule_id()",
            "The id of the rule.",
            "rule_id() → \"rule1\"",
        ),
    ),
    (
        "rule_start",
        FunctionDoc::new(
            "other",
            "rule_start()",
            "When the rule's current run started, epoch milliseconds.",
            "rule_start() → 1700000000000",
        ),
    ),
    (
        "meta",
        FunctionDoc::new(
            "other",
            "meta(key)",
            "Metadata of the message: topic, qos, messageid.",
            "meta(topic) → \"sensors/a\"",
        ),
    ),
    (
        "mqtt",
        FunctionDoc::new(
            "other",
            "mqtt(key)",
            "MQTT metadata of the message, as meta.",
            "mqtt(topic) → \"sensors/a\"",
        ),
    ),
];

/// Environment variables whose names start with this prefix are static properties for
/// `props()`: `KUIPER_PROPS_SITE=north` makes `props("site")` return `"north"` (eKuiper's names).
const PROPS_ENV_PREFIX: &str = "KUIPER_PROPS_";

/// The static properties, read from the environment once.
fn static_props() -> &'static HashMap<String, String> {
    static PROPS: OnceLock<HashMap<String, String>> = OnceLock::new();
    PROPS.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                let short = k.strip_prefix(PROPS_ENV_PREFIX)?.to_lowercase();
                Some((short, v.into_string().ok()?))
            })
            .collect()
    })
}

/// Snowflake ids as eKuiper makes them for `props("snowflake")`: milliseconds since
/// 2010-11-04T01:42:54.657Z in the high 41 bits, node 1 in the next 10, then a 12-bit
/// sequence within the millisecond.
fn next_snowflake() -> i64 {
    const EPOCH_MS: i64 = 1_288_834_974_657;
    const NODE: i64 = 1;
    static LAST: Mutex<(i64, i64)> = Mutex::new((0, 0));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
            - EPOCH_MS
    };
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let mut ms = now().max(last.0);
    let step = if ms == last.0 {
        (last.1 + 1) & 0xFFF
    } else {
        0
    };
    if ms == last.0 && step == 0 {
        // 4096 ids in one millisecond: wait for the next.
        while ms <= last.0 {
            std::hint::spin_loop();
            ms = now().max(ms);
        }
    }
    *last = (ms, step);
    (ms << 22) | (NODE << 12) | step
}

/// `props(name)`: a static property of the engine (eKuiper's `props`).
#[derive(Debug)]
struct Props;
impl ScalarFunction for Props {
    fn name(&self) -> &'static str {
        "props"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "props(name)",
            description: "a static property as a string: \"et\" is the processing time in epoch \
                          milliseconds, \"snowflake\" a new snowflake id for every row, any other \
                          lower-case name such as \"site\" the environment variable KUIPER_PROPS_SITE \
                          as read at startup; null when there is no such property",
            example: "props(\"et\") = \"1700000000123\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        check_kind(args, 0, Kind::String)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let scalar = args[0].is_scalar();
        let names = args[0].array();
        let text = names.as_string_opt::<i32>();
        // A snowflake is new for every row, so a literal name still gives a full column.
        let rows = if scalar && text.is_some_and(|t| t.is_valid(0) && t.value(0) == "snowflake") {
            ctx.rows
        } else {
            names.len()
        };
        let out: StringArray = (0..rows)
            .map(|row| {
                let i = if scalar { 0 } else { row };
                if !present(names.as_ref(), i) {
                    return None;
                }
                let Some(t) = text else {
                    ctx.errors.flag(row, || {
                        format!(
                            "props expects a property name string but got {}",
                            describe_value(names.as_ref(), i)
                        )
                    });
                    return None;
                };
                match t.value(i) {
                    "et" => Some(ctx.now_ms.to_string()),
                    "snowflake" => Some(next_snowflake().to_string()),
                    name => static_props().get(name).cloned(),
                }
            })
            .collect();
        Ok(if scalar && rows == names.len() {
            Columnar::Scalar(Arc::new(out))
        } else {
            Columnar::Array(Arc::new(out))
        })
    }
}

#[derive(Debug)]
struct NewUuid;
impl ScalarFunction for NewUuid {
    fn name(&self) -> &'static str {
        "newuuid"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "newuuid()",
            description: "a random version 4 UUID string, a new one for every row",
            example: "newuuid() = \"47c2b2f2-0b3e-4d2f-9d1c-8c4f7e0e6a1b\"",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 0)?;
        Ok(SqlType::Known(DataType::Utf8))
    }
    fn invoke(&self, _args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out: StringArray = (0..ctx.rows)
            .map(|_| Some(uuid::Uuid::new_v4().to_string()))
            .collect();
        Ok(Columnar::Array(Arc::new(out)))
    }
}

#[derive(Debug)]
struct Tstamp;
impl ScalarFunction for Tstamp {
    fn name(&self) -> &'static str {
        "tstamp"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "tstamp()",
            description: "the processing time of the batch in milliseconds since the Unix epoch, as a BIGINT",
            example: "tstamp() = 1700000000123",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 0, 0)?;
        Ok(SqlType::Known(DataType::Int64))
    }
    fn invoke(&self, _args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let out = Int64Array::from(vec![ctx.now_ms; ctx.rows]);
        Ok(Columnar::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_are_unique_and_increasing() {
        let ids: Vec<i64> = (0..10_000).map(|_| next_snowflake()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((ids[0] >> 12) & 0x3FF, 1);
    }

    #[test]
    fn props_snowflake_is_per_row() {
        let mut ctx = EvalContext::new(3);
        let name: Arc<dyn Array> = Arc::new(StringArray::from(vec!["snowflake"]));
        let out = Props.invoke(&[Columnar::Scalar(name)], &mut ctx).unwrap();
        let out = out.array().clone();
        let s = out.as_string::<i32>();
        assert_eq!(s.len(), 3);
        assert_ne!(s.value(0), s.value(1));
    }
}
