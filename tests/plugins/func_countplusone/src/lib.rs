//! `countplusone(x)`: an aggregate plugin function. The host passes one group's values at a
//! time; the result is the group's count of non-null values plus one.

use std::sync::Arc;

use quiver_plugin_abi::sdk::arrow::array::{Array, ArrayRef, Int64Array};
use quiver_plugin_abi::sdk::{Error, Function, SqlType};

struct CountPlusOne;

impl Function for CountPlusOne {
    fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error> {
        match args {
            [_] => Ok(SqlType::Bigint),
            _ => Err(format!("expects 1 argument but got {}", args.len()).into()),
        }
    }

    fn exec(&self, args: &[ArrayRef], _rows: usize) -> Result<ArrayRef, Error> {
        let [x] = args else {
            return Err("expects 1 argument".into());
        };
        let present = (x.len() - x.null_count()) as i64;
        Ok(Arc::new(Int64Array::from(vec![present + 1])))
    }

    fn is_aggregate(&self) -> bool {
        true
    }
}

quiver_plugin_abi::export_plugin! {
    name: "countplusone",
    kind: function,
    version: "1.0.0",
    factory: || CountPlusOne,
}
