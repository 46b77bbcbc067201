//! `noop`: a sink that takes each batch across the plugin boundary (the SDK imports it through
//! the Arrow C Data Interface) and drops it, to measure what the boundary costs.

use quiver_plugin_abi::sdk::arrow::record_batch::RecordBatch;
use quiver_plugin_abi::sdk::{Config, Error, Sink};

#[derive(Default)]
struct Noop {
    rows: usize,
}

impl Sink for Noop {
    fn provision(&mut self, _config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.rows += batch.num_rows();
        Ok(())
    }
}

quiver_plugin_abi::export_plugin! {
    name: "noop",
    kind: sink,
    version: env!("CARGO_PKG_VERSION"),
    factory: Noop::default,
}
