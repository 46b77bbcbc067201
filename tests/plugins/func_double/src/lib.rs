//! `double(x)`: a column-minded test function on arrow 59 (the server uses arrow 60; only the
//! C Data Interface crosses the boundary).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use quiver_plugin_abi::sdk::{Error, Function, SqlType};

struct Double;

impl Function for Double {
    fn validate(&self, args: &[SqlType]) -> Result<SqlType, Error> {
        match args {
            [SqlType::Bigint | SqlType::Float | SqlType::Any] => Ok(SqlType::Float),
            [other] => Err(format!("expects a number but got {}", other.name()).into()),
            _ => Err(format!("expects 1 argument but got {}", args.len()).into()),
        }
    }

    fn exec(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef, Error> {
        let [x] = args else {
            return Err("expects 1 argument".into());
        };
        let x = cast(x, &DataType::Float64)?;
        let x = x.as_primitive::<Float64Type>();
        let out: Float64Array = (0..rows)
            .map(|i| (!x.is_null(i)).then(|| x.value(i) * 2.0))
            .collect();
        Ok(Arc::new(out))
    }
}

quiver_plugin_abi::export_plugin! {
    name: "double",
    kind: function,
    version: "1.2.0",
    factory: || Double,
}
