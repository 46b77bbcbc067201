//! `get_keyed_state(key, type, default)`: values kept outside the rules (eKuiper's "external
//! state"), e.g. thresholds an operator sets without editing rules.
//!
//! The store is process-wide and installed by the server ([`set_keyed_state_store`]); quiverd
//! reads the `keyed_state` table of its catalog database, which other programs write.
//! Without a store every key is missing and the default comes back.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, AsArray, StringArray};

use super::conversion::{cast_type, convert};
use super::{
    ArgInfo, FunctionDoc, Kind, Registry, ScalarFunction, arrays, check_arity, check_kind,
};
use crate::eval::{Columnar, EvalContext, Literal, describe_value};
use crate::types::SqlType;

/// Where `get_keyed_state` reads values.
pub trait KeyedStateStore: Send + Sync + fmt::Debug {
    /// The value of `key` as text, `None` when the key is missing.
    fn get(&self, key: &str) -> Result<Option<String>, String>;
}

static STORE: RwLock<Option<Arc<dyn KeyedStateStore>>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the process's keyed-state store.
pub fn set_keyed_state_store(store: Option<Arc<dyn KeyedStateStore>>) {
    *STORE.write().expect("keyed state lock") = store;
}

fn store() -> Option<Arc<dyn KeyedStateStore>> {
    STORE.read().expect("keyed state lock").clone()
}

pub(super) fn register(r: &mut Registry) {
    r.register(Arc::new(GetKeyedState));
}

/// The types `get_keyed_state` converts to (eKuiper's list: no bytea).
const TYPES: &[&str] = &["bigint", "float", "string", "boolean", "datetime"];

#[derive(Debug)]
struct GetKeyedState;

impl ScalarFunction for GetKeyedState {
    fn name(&self) -> &'static str {
        "get_keyed_state"
    }
    fn doc(&self) -> FunctionDoc {
        FunctionDoc {
            category: "other",
            syntax: "get_keyed_state(key, \"bigint\"|\"float\"|\"string\"|\"boolean\"|\"datetime\", default)",
            description: "The value stored under key in the external keyed state (quiverd: the \
                          keyed_state table of data/quiver.db), converted to the type; default \
                          when the key is missing; null when an argument is null",
            example: "get_keyed_state(\"threshold\", \"float\", 20.0) = 25.5",
        }
    }
    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        check_arity(args, 3, 3)?;
        check_kind(args, 0, Kind::String)?;
        let target = match &args[1].literal {
            Some(Literal::String(s)) => TYPES
                .iter()
                .find(|t| t.eq_ignore_ascii_case(s))
                .copied()
                .ok_or_else(|| {
                format!(
                    "expects one of the following values for the 2nd parameter: {}",
                    TYPES.join(", ")
                )
            })?,
            _ => return Err("expects a string literal type name for argument 2".into()),
        };
        Ok(SqlType::Known(cast_type(target)))
    }
    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        let target = match args[1].array().as_string_opt::<i32>() {
            Some(s) if s.is_valid(0) => s.value(0).to_ascii_lowercase(),
            _ => return Err("get_keyed_state's type must be a string".into()),
        };
        let arrs = arrays(args, ctx);
        let (keys, default) = (&arrs[0], &arrs[2]);
        let rows = keys.len();
        let keys_text = arrow::compute::cast(keys.as_ref(), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| e.to_string())?;
        let keys_text = keys_text.as_string::<i32>();
        let store = store();
        // One read per distinct key per batch.
        let mut found: HashMap<&str, Option<String>> = HashMap::new();
        let mut stored: Vec<Option<String>> = Vec::with_capacity(rows);
        let mut use_default = vec![false; rows];
        for (row, use_default) in use_default.iter_mut().enumerate() {
            if keys_text.is_null(row) || default.is_null(row) {
                stored.push(None);
                continue;
            }
            let key = keys_text.value(row);
            let value = match found.get(key) {
                Some(v) => v.clone(),
                None => {
                    let v = match &store {
                        Some(s) => match s.get(key) {
                            Ok(v) => v,
                            Err(e) => {
                                ctx.errors.flag(row, || format!("get_keyed_state: {e}"));
                                None
                            }
                        },
                        None => None,
                    };
                    found.insert(key, v.clone());
                    v
                }
            };
            *use_default = value.is_none();
            stored.push(value);
        }
        let mut fail = |row: usize, arr: &ArrayRef, why: &str| {
            ctx.errors.flag(row, || {
                format!(
                    "get_keyed_state cannot convert {} to {why}",
                    describe_value(arr.as_ref(), row)
                )
            })
        };
        let values: ArrayRef = Arc::new(StringArray::from(stored));
        let converted = convert(&target, &values, &mut fail)?;
        let defaults = convert(&target, default, &mut fail)?;
        let out = arrow::compute::kernels::zip::zip(
            &arrow::array::BooleanArray::from(use_default),
            &defaults,
            &converted,
        )
        .map_err(|e| e.to_string())?;
        Ok(super::shape(args, out))
    }
}
