//! Function plugins behind the compiler's [`ScalarFunction`] trait, so the binder checks them
//! at rule creation like built-ins.
// Reading the array a plugin returns goes through arrow's `from_ffi`, an unsafe import of
// C Data Interface structs; the block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StructArray, make_array};
use arrow::datatypes::{DataType, Field, Fields};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use quiver_compiler::eval::{Columnar, EvalContext};
use quiver_compiler::functions::{ArgInfo, FunctionDoc, ScalarFunction};
use quiver_compiler::types::{FieldType, SqlType};
use quiver_plugin_abi::ffi::{FfiArrowBatch, FfiArrowOut, FunctionBox};

use super::loader::LoadedPlugin;

/// A plugin's SQL function.
pub struct PluginFunction {
    plugin: Arc<LoadedPlugin>,
    function: FunctionBox,
    doc: FunctionDoc,
}

impl std::fmt::Debug for PluginFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginFunction")
            .field("plugin", &self.plugin)
            .finish()
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl PluginFunction {
    /// Wraps the function of `plugin`; `metadata` is its `name.json`, for the docs.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        function: FunctionBox,
        metadata: Option<&serde_json::Value>,
    ) -> Self {
        // The entry for this function in eKuiper's metadata format, if any.
        let entry = metadata
            .and_then(|m| m["functions"].as_array())
            .and_then(|fs| fs.iter().find(|f| f["name"] == plugin.name));
        let text = |key: &str| {
            entry
                .and_then(|e| e[key].as_str().or_else(|| e[key]["en_US"].as_str()))
                .map(str::to_string)
        };
        // Leaked once per loaded plugin version, like the library itself.
        let doc = FunctionDoc {
            category: "plugin",
            syntax: leak(format!("{}(...)", plugin.name)),
            description: leak(
                text("hint")
                    .unwrap_or_else(|| format!("from plugin {} {}", plugin.name, plugin.version)),
            ),
            example: leak(text("example").unwrap_or_default()),
        };
        PluginFunction {
            plugin,
            function,
            doc,
        }
    }

    /// The result type the plugin declares for arguments of these types.
    fn declared(&self, arg_types: &[&str]) -> Result<SqlType, String> {
        let json = serde_json::to_string(arg_types).map_err(|e| e.to_string())?;
        let answer = self
            .function
            .validate(json.as_str().into())
            .into_result()
            .map_err(|e| e.message.to_string())?;
        match answer.as_str() {
            "any" | "array" | "struct" => Ok(SqlType::Any),
            other => FieldType::simple(other)
                .map(|t| SqlType::Known(t.to_arrow()))
                .ok_or_else(|| format!("plugin returned an unknown type \"{other}\"")),
        }
    }
}

/// The boundary's name for a type the binder knows.
fn type_name(t: &SqlType) -> &'static str {
    let SqlType::Known(t) = t else {
        return "any";
    };
    match t {
        t if t.is_integer() => "bigint",
        t if t.is_floating() => "float",
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Boolean => "boolean",
        DataType::Timestamp(..) => "datetime",
        DataType::Binary | DataType::LargeBinary => "bytea",
        DataType::List(_) | DataType::LargeList(_) => "array",
        DataType::Struct(_) => "struct",
        _ => "any",
    }
}

impl ScalarFunction for PluginFunction {
    fn name(&self) -> &'static str {
        self.plugin.name
    }

    fn doc(&self) -> FunctionDoc {
        self.doc
    }

    fn return_type(&self, args: &[ArgInfo]) -> Result<SqlType, String> {
        let names: Vec<&str> = args.iter().map(|a| type_name(&a.ty)).collect();
        self.declared(&names)
    }

    fn is_aggregate(&self) -> bool {
        self.function.is_aggregate()
    }

    fn invoke(&self, args: &[Columnar], ctx: &mut EvalContext) -> Result<Columnar, String> {
        // Constants stay constants: evaluate once when every argument is one.
        let scalar = !args.is_empty() && args.iter().all(Columnar::is_scalar);
        let rows = if scalar { 1 } else { ctx.rows };
        let arrays: Vec<ArrayRef> = args.iter().map(|a| a.clone().into_array(rows)).collect();
        let input = if arrays.is_empty() {
            StructArray::new_empty_fields(rows, None)
        } else {
            let fields: Fields = arrays
                .iter()
                .enumerate()
                .map(|(i, a)| Field::new(format!("arg{i}"), a.data_type().clone(), true))
                .collect();
            StructArray::try_new(fields, arrays, None).map_err(|e| e.to_string())?
        };
        let (mut in_array, in_schema) = to_ffi(&input.to_data()).map_err(|e| e.to_string())?;
        let mut out_array = FFI_ArrowArray::empty();
        let mut out_schema = FFI_ArrowSchema::empty();
        let result = self
            .function
            .exec(
                FfiArrowBatch {
                    array: (&raw mut in_array).cast::<c_void>(),
                    schema: (&raw const in_schema).cast::<c_void>(),
                },
                rows as u64,
                FfiArrowOut {
                    array: (&raw mut out_array).cast::<c_void>(),
                    schema: (&raw mut out_schema).cast::<c_void>(),
                },
            )
            .into_result();
        drop(in_array);
        drop(in_schema);
        result.map_err(|e| format!("{}: {}", self.plugin.name, e.message))?;
        if out_array.is_released() {
            return Err(format!("{} returned no result", self.plugin.name));
        }
        // SAFETY: on success the plugin wrote a valid exported array and its schema into the
        // empty structs we own (the FfiArrowOut contract); from_ffi takes the array and our
        // `out_schema` frees the schema when dropped.
        let data = unsafe { from_ffi(out_array, &out_schema) }.map_err(|e| e.to_string())?;
        let mut out = make_array(data);
        // The plan was typed with what validate declared; operators downstream rely on it,
        // so a plugin that returns another type is cast (or refused), never passed on.
        let arg_types: Vec<&str> = args
            .iter()
            .map(|a| type_name(&SqlType::Known(a.data_type().clone())))
            .collect();
        if let SqlType::Known(want) = self.declared(&arg_types)?
            && out.data_type() != &want
        {
            out = arrow::compute::cast(&out, &want).map_err(|e| {
                format!(
                    "{} returned {} where it declared {want}: {e}",
                    self.plugin.name,
                    out.data_type()
                )
            })?;
        }
        // An aggregate answers for the whole group: one value is enough.
        if out.len() != rows && !(self.function.is_aggregate() && out.len() == 1) {
            return Err(format!(
                "{} returned {} values for {rows} rows",
                self.plugin.name,
                out.len()
            ));
        }
        Ok(if scalar {
            Columnar::Scalar(out)
        } else {
            Columnar::Array(out)
        })
    }
}
