//! eKuiper's helper functions that are plain scalars: delay, props and bypass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, StringArray};
use arrow::datatypes::DataType;

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
};
use crate::eval::{Columnar, EvalContext, describe_value, present};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Delay));
    r.register(Arc::new(Props));
    r.register(Arc::new(Bypass));
}

/// `bypass(x)`: `x` unchanged. eKuiper's planner rewrites aggregates it has already computed
/// into this call; rules may call it too.
#[derive(Debug)]
struct Bypass;
impl ScalarFunction for Bypass {
    fn name(&self) -> &'static str {
        "bypass"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "bypass(x)",
            description: "x unchanged (eKuiper's planner uses it for values computed earlier)",
            example: "bypass(temperature) = temperature",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(args[0].ty.clone())
    }
    fn invoke(&self, args: &[Columnar], _ctx: &mut EvalContext) -> Result<Columnar, String> {
        Ok(args[0].clone())
    }
}

/// Longest wait `delay` makes, per batch. eKuiper sleeps for every row; here the worker that
/// evaluates the batch would stall every rule it runs, so one batch waits once, for at most
/// this long.
pub const DELAY_CAP_MS: i64 = 1_000;

/// `delay(ms, value)`: waits, then returns `value` (a test helper in eKuiper).
#[derive(Debug)]
struct Delay;
impl ScalarFunction for Delay {
    fn name(&self) -> &'static str {
        "delay"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "delay(ms, value)",
            description: "value, returned after waiting ms milliseconds (a float is truncated); \
                          null when either argument is null. The wait is once per batch, for the \
                          largest ms of its rows, and at most 1000 ms (eKuiper waits for every \
                          row, without a limit)",
            example: "delay(100, temperature) = temperature",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 2, 2)?;
        check_kind(args, 0, Kind::Number)?;
        if matches!(args[0].ty.known(), Some(DataType::Boolean)) {
            return Err("expects a number for argument 1 but got boolean".into());
        }
        Ok(args[1].ty.clone())
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arrs = arrays(args, ctx);
        let (ms, value) = (&arrs[0], &arrs[1]);
        let mut wait: i64 = 0;
        // Rows whose result is null: a null argument (eKuiper returns nil) or a failed row.
        let mut blank = vec![false; ms.len()];
        for (row, blank) in blank.iter_mut().enumerate() {
            if !present(ms.as_ref(), row) || !present(value.as_ref(), row) {
                *blank = true;
                continue;
            }
            match super::float_at(ms, row).filter(|f| !f.is_nan()) {
                Some(f) => wait = wait.max(f.trunc().clamp(0.0, i64::MAX as f64) as i64),
                None => {
                    *blank = true;
                    ctx.errors.flag(row, || {
                        format!(
                            "delay expects a number of milliseconds but got {}",
                            describe_value(ms.as_ref(), row)
                        )
                    });
                }
            }
        }
        let wait = wait.min(DELAY_CAP_MS);
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait as u64));
        }
        let out = if value.data_type() == &DataType::Null || !blank.contains(&true) {
            value.clone()
        } else {
            arrow::compute::nullif(value.as_ref(), &BooleanArray::from(blank))
                .map_err(|e| e.to_string())?
        };
        Ok(super::shape(args, out))
    }
}

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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use arrow::array::{Array, Float64Array, Int64Array, StringArray};

    use super::*;

    fn call(ms: Arc<dyn Array>, value: Arc<dyn Array>) -> (Columnar, EvalContext, u128) {
        let mut ctx = EvalContext::new(ms.len());
        let start = Instant::now();
        let out = Delay
            .invoke(&[Columnar::Array(ms), Columnar::Array(value)], &mut ctx)
            .unwrap();
        (out, ctx, start.elapsed().as_millis())
    }

    #[test]
    fn waits_once_per_batch_for_the_largest_delay() {
        let (out, _, took) = call(
            Arc::new(Int64Array::from(vec![Some(30), Some(60), None, Some(60)])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                Some("c"),
                None,
            ])),
        );
        let out = out.array();
        let s = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(s.value(0), "a");
        assert_eq!(s.value(1), "b");
        assert!(s.is_null(2) && s.is_null(3));
        assert!((60..1_000).contains(&took), "took {took} ms");
    }

    #[test]
    fn wait_is_capped_and_negatives_do_not_wait() {
        let (_, _, took) = call(
            Arc::new(Float64Array::from(vec![60_000.5])),
            Arc::new(Int64Array::from(vec![1])),
        );
        assert!((1_000..5_000).contains(&took), "took {took} ms");
        let (out, _, took) = call(
            Arc::new(Int64Array::from(vec![-5])),
            Arc::new(Int64Array::from(vec![7])),
        );
        assert!(took < 500, "took {took} ms");
        assert_eq!(
            out.array()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            7
        );
    }

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

    #[test]
    fn a_non_numeric_delay_fails_the_row() {
        let (_, ctx, _) = call(
            Arc::new(StringArray::from(vec!["bar"])),
            Arc::new(Int64Array::from(vec![1])),
        );
        assert_eq!(ctx.errors.count(), 1);
    }
}
