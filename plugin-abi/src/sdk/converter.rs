//! Custom formats: eKuiper's `custom` converter in Rust. A library exports one with
//! [`export_converter!`](crate::export_converter); the server loads it when the schema is
//! registered (`POST /schemas/custom` with `soFile`), and streams and sinks name a message
//! type as `SCHEMAID="<schema>.<message>"`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::arrow;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use arrow::array::{Array, StructArray};
use arrow::record_batch::RecordBatch;

use super::__private::{Guarded, guard, import, write_out};
use super::Error;
use crate::ffi::{
    ConverterBox, ConverterMod, ConverterModRef, FfiArrowBatch, FfiArrowOut, FfiConverter, FfiError,
};

/// A custom format for one message type. Calls come from several threads at once.
pub trait Converter: Send + Sync + 'static {
    /// Decodes one payload into rows (usually one). Field types are the converter's; a
    /// stream with a schema casts them to its own.
    fn decode(&self, payload: &[u8]) -> Result<RecordBatch, Error>;

    /// Encodes each row of `batch` into one payload.
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, Error>;
}

/// The converter adapter: an SDK converter behind the stable vtable.
struct ConverterAdapter<C>(Guarded<C>);

impl<C: Converter> FfiConverter for ConverterAdapter<C> {
    fn decode(&self, payload: RSlice<'_, u8>, out: FfiArrowOut) -> RResult<(), FfiError> {
        guard("decode", || {
            let batch = self.0.decode(payload.as_slice())?;
            write_out(out, &StructArray::from(batch).to_data())
        })
    }

    fn encode(&self, batch: FfiArrowBatch) -> RResult<RVec<RVec<u8>>, FfiError> {
        guard("encode", || {
            // SAFETY: the server passes a valid batch for the duration of the call.
            let batch = unsafe { import(batch) }?;
            let payloads = self.0.encode(&batch)?;
            Ok(payloads.into_iter().map(RVec::from).collect())
        })
    }
}

/// Makes a boxed converter of `message` from the author's factory.
#[doc(hidden)]
pub fn new_converter<C: Converter>(
    factory: impl FnOnce(&str) -> Result<C, Error>,
    message: RStr<'_>,
) -> RResult<ConverterBox, FfiError> {
    let made = catch_unwind(AssertUnwindSafe(|| factory(message.as_str())));
    guard("the converter factory", || match made {
        Ok(made) => Ok(ConverterBox::from_value(
            ConverterAdapter(Guarded::new(made?)),
            TD_Opaque,
        )),
        Err(_) => Err("the converter factory panicked".into()),
    })
}

/// The root module of a converter library.
#[doc(hidden)]
pub fn converter_module(
    version: &'static str,
    new_converter: extern "C" fn(RStr<'_>) -> RResult<ConverterBox, FfiError>,
) -> ConverterModRef {
    ConverterMod {
        abi_major: crate::ABI_MAJOR,
        version: RStr::from_str(version),
        new_converter,
    }
    .leak_into_prefix()
}

/// Exports a custom format library: its version and a factory that makes the converter of a
/// message type by name (`SCHEMAID="<schema>.<message>"`), or says which types it knows.
///
/// ```
/// # use quiver_plugin_abi::sdk::{Converter, Error};
/// # use quiver_plugin_abi::sdk::arrow::record_batch::RecordBatch;
/// # struct Frames;
/// # impl Converter for Frames {
/// #     fn decode(&self, _: &[u8]) -> Result<RecordBatch, Error> { Err("x".into()) }
/// #     fn encode(&self, _: &RecordBatch) -> Result<Vec<Vec<u8>>, Error> { Ok(vec![]) }
/// # }
/// quiver_plugin_abi::export_converter! {
///     version: "1.0.0",
///     factory: |message: &str| match message {
///         "Reading" => Ok(Frames),
///         other => Err(format!("unknown message type \"{other}\"; known: Reading").into()),
///     },
/// }
/// ```
#[macro_export]
macro_rules! export_converter {
    (version: $version:expr, factory: $factory:expr $(,)?) => {
        extern "C" fn __quiver_new_converter(
            message: $crate::__private_abi::RStr<'_>,
        ) -> $crate::__private_abi::RResult<$crate::ffi::ConverterBox, $crate::ffi::FfiError> {
            $crate::sdk::converter::new_converter($factory, message)
        }
        fn __quiver_converter_module() -> $crate::ffi::ConverterModRef {
            $crate::sdk::converter::converter_module($version, __quiver_new_converter)
        }
        $crate::__export_root_module!(__quiver_converter_module, $crate::ffi::ConverterModRef);
    };
}
