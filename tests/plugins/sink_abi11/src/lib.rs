//! `vintage`: a sink built against quiver-plugin-abi 1.1.0 (`abi_1_1`), as a plugin installed
//! before exactly-once delivery is. It implements the raw interface by hand and, for each
//! batch, appends `{"rows": n}` to the file named by its `path` property, so a test sees that
//! it ran. It reads only the batch's length and leaves the array to the server, which
//! releases an array a plugin did not take.

use std::fs::OpenOptions;
use std::io::Write;

use abi_stable::export_root_module;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use quiver_plugin_abi::ffi::{
    FfiArrowBatch, FfiError, FfiSink, PluginKind, PluginMod, PluginModRef, SinkBox,
};

#[derive(Default)]
struct Vintage {
    path: String,
}

fn error(message: String) -> FfiError {
    FfiError {
        message: RString::from(message),
        fatal: false,
    }
}

impl FfiSink for Vintage {
    fn provision(&mut self, config_json: RStr<'_>) -> RResult<(), FfiError> {
        let config: serde_json::Value = match serde_json::from_str(config_json.as_str()) {
            Ok(c) => c,
            Err(e) => return RResult::RErr(error(e.to_string())),
        };
        match config.get("path").and_then(|p| p.as_str()) {
            Some(p) => {
                self.path = p.to_string();
                RResult::ROk(())
            }
            None => RResult::RErr(error("vintage needs a \"path\" property".into())),
        }
    }

    fn connect(&mut self) -> RResult<(), FfiError> {
        RResult::ROk(())
    }

    fn collect_list(&mut self, batch: FfiArrowBatch) -> RResult<(), FfiError> {
        if batch.array.is_null() {
            return RResult::RErr(error("a null batch".into()));
        }
        // SAFETY: the server passes a valid C Data Interface `ArrowArray`, whose first field
        // is its length (an int64), for the duration of the call.
        let rows = unsafe { batch.array.cast::<i64>().read() };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{{\"rows\":{rows}}}"));
        match written {
            Ok(()) => RResult::ROk(()),
            Err(e) => RResult::RErr(error(e.to_string())),
        }
    }

    fn close(&mut self) -> RResult<(), FfiError> {
        RResult::ROk(())
    }
}

extern "C" fn new_sink() -> RResult<SinkBox, FfiError> {
    RResult::ROk(SinkBox::from_value(Vintage::default(), TD_Opaque))
}

#[export_root_module]
fn root() -> PluginModRef {
    PluginMod {
        abi_major: 1,
        name: RStr::from_str("vintage"),
        kind: PluginKind::Sink,
        version: RStr::from_str("1.0.0"),
        new_sink: Some(new_sink),
        new_source: None,
        new_function: None,
    }
    .leak_into_prefix()
}
