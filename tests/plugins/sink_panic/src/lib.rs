//! `boom`: a test sink that panics on its first batch, to check that a panicking plugin fails
//! only its own rule.

use quiver_plugin_abi::sdk::arrow::record_batch::RecordBatch;
use quiver_plugin_abi::sdk::{Config, Error, Sink};

#[derive(Default)]
struct Boom;

impl Sink for Boom {
    fn provision(&mut self, _config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        panic!("boom after {} rows", batch.num_rows());
    }
}

quiver_plugin_abi::export_plugin! {
    name: "boom",
    kind: sink,
    version: "1.0.0",
    factory: Boom::default,
}
