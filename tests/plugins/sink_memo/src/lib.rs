//! `memo`: a row-minded test sink. Each row becomes one JSON line in the file named by the
//! action's `path` property, so a test can read exactly what the plugin received. Each
//! `collect_list` call also appends a `{"batch": n}` line, so tests see how rows were batched.

use std::fs::{File, OpenOptions};
use std::io::Write;

use quiver_plugin_abi::sdk::arrow::record_batch::RecordBatch;
use quiver_plugin_abi::sdk::{Config, Error, Sink, Tuple, tuples};

/// The version it exports: the `v2` feature makes an upgrade for the update test.
#[cfg(feature = "v2")]
const VERSION: &str = "2.0.0";
#[cfg(not(feature = "v2"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Default)]
struct Memo {
    path: String,
    file: Option<File>,
}

impl Sink for Memo {
    fn provision(&mut self, config: &Config) -> Result<(), Error> {
        self.path = config
            .get("path")
            .and_then(|p| p.as_str())
            .ok_or("memo needs a \"path\" property")?
            .to_string();
        Ok(())
    }

    fn connect(&mut self) -> Result<(), Error> {
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        Ok(())
    }

    fn collect(&mut self, tuple: &Tuple<'_>) -> Result<(), Error> {
        let file = self.file.as_mut().ok_or("not connected")?;
        writeln!(file, "{}", serde_json_line(tuple))?;
        Ok(())
    }

    fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        for t in tuples(batch) {
            self.collect(&t)?;
        }
        let file = self.file.as_mut().ok_or("not connected")?;
        writeln!(file, "{{\"batch\":{}}}", batch.num_rows())?;
        Ok(())
    }

    fn close(&mut self) -> Result<(), Error> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }
}

fn serde_json_line(tuple: &Tuple<'_>) -> String {
    let mut row = tuple.to_map();
    if cfg!(feature = "v2") {
        row.insert("v".into(), 2.into());
    }
    quiver_plugin_abi::sdk::serde_json::Value::Object(row).to_string()
}

quiver_plugin_abi::export_plugin! {
    name: "memo",
    kind: sink,
    version: VERSION,
    factory: Memo::default,
}
