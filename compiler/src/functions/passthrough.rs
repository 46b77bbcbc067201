//! Functions that return an argument unchanged: `bypass(x)`, and `delay(ms, value)` after a
//! wait.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::DataType;

use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
};
use crate::eval::{Columnar, EvalContext, describe_value, present};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Bypass));
    r.register(Arc::new(Delay));
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
    fn a_non_numeric_delay_fails_the_row() {
        let (_, ctx, _) = call(
            Arc::new(StringArray::from(vec!["bar"])),
            Arc::new(Int64Array::from(vec![1])),
        );
        assert_eq!(ctx.errors.count(), 1);
    }
}
