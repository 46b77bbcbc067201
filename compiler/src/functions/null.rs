//! Null handling: `coalesce` and `isnull`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::DataType;

use super::{ArgInfo, FunctionDoc, Registry, ScalarFunction, arrays, check_arity, shape};
use crate::eval::{Columnar, EvalContext};
use crate::types::SqlType;

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(Coalesce));
    r.register(Arc::new(IsNull));
}

#[derive(Debug)]
struct Coalesce;
impl ScalarFunction for Coalesce {
    fn name(&self) -> &'static str {
        "coalesce"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "coalesce(x1, x2, ...)",
            description: "the first argument that is not null, else null",
            example: "coalesce(missing, 0) = 0",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, usize::MAX)?;
        let known: Vec<&DataType> = args
            .iter()
            .filter_map(|a| a.ty.known())
            .filter(|t| **t != DataType::Null)
            .collect();
        if known.len() == args.len() && known.iter().all(|t| *t == known[0]) {
            return Ok(SqlType::Known(known[0].clone()));
        }
        Ok(SqlType::Any)
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let cols = arrays(args, ctx);
        let types: Vec<&DataType> = cols
            .iter()
            .map(|c| c.data_type())
            .filter(|t| **t != DataType::Null)
            .collect();
        let target = if types.is_empty() {
            return Ok(shape(args, cols[0].clone()));
        } else if types.iter().all(|t| t.is_integer()) {
            DataType::Int64
        } else if types.iter().all(|t| crate::types::is_numeric(t)) {
            DataType::Float64
        } else if types.iter().all(|t| *t == types[0]) {
            types[0].clone()
        } else {
            DataType::Utf8
        };
        let mut result: Option<ArrayRef> = None;
        for c in cols.iter().rev() {
            let c = if c.data_type() == &DataType::Null {
                arrow::array::new_null_array(&target, c.len())
            } else if c.data_type() != &target {
                if target == DataType::Utf8 {
                    Arc::new(super::string::to_text(c)?)
                } else {
                    arrow::compute::cast(c.as_ref(), &target).map_err(|e| e.to_string())?
                }
            } else {
                c.clone()
            };
            result = Some(match result {
                None => c,
                Some(rest) => {
                    let present =
                        arrow::compute::is_not_null(c.as_ref()).map_err(|e| e.to_string())?;
                    zip(&present, &c, &rest).map_err(|e| e.to_string())?
                }
            });
        }
        Ok(shape(
            args,
            result.expect("coalesce has at least one argument"),
        ))
    }
}

#[derive(Debug)]
struct IsNull;
impl ScalarFunction for IsNull {
    fn name(&self) -> &'static str {
        "isnull"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "isnull(x)",
            description: "true when x is null or missing",
            example: "isnull(missing) = true",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 1, 1)?;
        Ok(SqlType::Known(DataType::Boolean))
    }
    fn invoke(&self, args: &[Columnar], _ctx: &mut EvalContext) -> Result<Columnar, String> {
        let arr = args[0].array();
        let out: BooleanArray = if arr.data_type() == &DataType::Null {
            BooleanArray::from(vec![true; arr.len()])
        } else {
            arrow::compute::is_null(arr.as_ref()).map_err(|e| e.to_string())?
        };
        Ok(if args[0].is_scalar() {
            Columnar::Scalar(Arc::new(out))
        } else {
            Columnar::Array(Arc::new(out))
        })
    }
}
