//! Custom format libraries (eKuiper's `custom` converters) on the host side: a library
//! registered as a custom schema is loaded and checked like a plugin, and each message type it
//! converts is wrapped as a [`Converter`] the codec calls.
//!
//! Batches cross the boundary as Arrow C Data Interface structs; every call is guarded by
//! the SDK (`catch_unwind`), so a converter that panics fails its message, not the server.

// Reading what a converter returns goes through arrow's `from_ffi`, an unsafe import of
// memory the plugin exported; the FfiArrowOut contract is what makes it sound.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::path::Path;
use std::sync::Arc;

use abi_stable::std_types::{RSlice, RStr};
use arrow::array::{Array, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow::record_batch::RecordBatch;
use quiver_connectors::codec::custom::{Converter, ConverterLibrary};
use quiver_plugin_abi::ffi::{ConverterBox, ConverterModRef, FfiArrowBatch, FfiArrowOut};

use super::PluginError;
use super::loader;

/// A loaded custom format library.
pub struct ConverterPlugin {
    /// The schema it was registered as, for messages.
    schema: String,
    /// The library's own version.
    pub version: String,
    module: ConverterModRef,
}

impl std::fmt::Debug for ConverterPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConverterPlugin")
            .field("schema", &self.schema)
            .field("version", &self.version)
            .finish()
    }
}

impl ConverterPlugin {
    /// Loads `path`, registered as custom schema `schema`, and checks it is a converter
    /// library of our plugin ABI.
    pub fn load(path: &Path, schema: &str) -> Result<ConverterPlugin, PluginError> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| schema.to_string());
        let module = loader::load_module::<ConverterModRef>(path, &file).map_err(|e| match e {
            PluginError::Invalid(m) => PluginError::Invalid(format!(
                "{m} (a custom format library exports its converters with \
                 quiver_plugin_abi::export_converter!)"
            )),
            other => other,
        })?;
        loader::check_abi_major(&file, module.abi_major())?;
        Ok(ConverterPlugin {
            schema: schema.to_string(),
            version: module.version().as_str().to_string(),
            module,
        })
    }
}

impl ConverterLibrary for ConverterPlugin {
    fn converter(&self, message: &str) -> Result<Arc<dyn Converter>, String> {
        let make = self.module.new_converter();
        let inner = make(RStr::from_str(message))
            .into_result()
            .map_err(|e| e.message.to_string())?;
        Ok(Arc::new(HostConverter {
            name: format!("{}.{message}", self.schema),
            inner,
        }))
    }
}

/// One message type of a converter library.
struct HostConverter {
    /// `schema.Message`, for messages.
    name: String,
    inner: ConverterBox,
}

impl std::fmt::Debug for HostConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConverter")
            .field("name", &self.name)
            .finish()
    }
}

impl Converter for HostConverter {
    fn decode(&self, payload: &[u8]) -> Result<RecordBatch, String> {
        let mut out_array = FFI_ArrowArray::empty();
        let mut out_schema = FFI_ArrowSchema::empty();
        self.inner
            .decode(
                RSlice::from_slice(payload),
                FfiArrowOut {
                    array: (&raw mut out_array).cast::<c_void>(),
                    schema: (&raw mut out_schema).cast::<c_void>(),
                },
            )
            .into_result()
            .map_err(|e| format!("{}: {}", self.name, e.message))?;
        if out_array.is_released() {
            return Err(format!("{} returned no rows", self.name));
        }
        // SAFETY: on success the converter wrote a valid exported array and its schema into
        // the empty structs we own (the FfiArrowOut contract); from_ffi takes the array and
        // `out_schema` frees the schema when dropped.
        let data = unsafe { from_ffi(out_array, &out_schema) }.map_err(|e| e.to_string())?;
        let array = arrow::array::make_array(data);
        let structs = array
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| format!("{} returned {}, not rows", self.name, array.data_type()))?;
        Ok(RecordBatch::from(structs.clone()))
    }

    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        let data = StructArray::from(batch.clone()).to_data();
        let (mut array, schema) = to_ffi(&data).map_err(|e| e.to_string())?;
        let result = self
            .inner
            .encode(FfiArrowBatch {
                array: (&raw mut array).cast::<c_void>(),
                schema: (&raw const schema).cast::<c_void>(),
            })
            .into_result();
        // The converter moved the array out; what is left (released) and the schema are ours.
        drop(array);
        drop(schema);
        let payloads = result.map_err(|e| format!("{}: {}", self.name, e.message))?;
        if payloads.len() != batch.num_rows() {
            return Err(format!(
                "{} encoded {} payloads for {} rows",
                self.name,
                payloads.len(),
                batch.num_rows()
            ));
        }
        Ok(payloads.into_iter().map(|p| p.into_vec()).collect())
    }
}
