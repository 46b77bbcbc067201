//! `counter`: a pull source for tests. It answers "nothing yet" once (so the server waits the
//! stream's `interval`), then emits `{"device": DATASOURCE, "n": i}` for i in 0..count, one
//! row per pull, and then ends its input.

use quiver_plugin_abi::sdk::serde_json::json;
use quiver_plugin_abi::sdk::{Config, Error, Pulled, Source};

#[derive(Default)]
struct Counter {
    device: String,
    count: u64,
    next: u64,
    waited: bool,
}

impl Source for Counter {
    fn provision(&mut self, datasource: &str, config: &Config) -> Result<(), Error> {
        self.device = datasource.to_string();
        self.count = config
            .get("count")
            .and_then(|c| c.as_u64())
            .ok_or("counter needs a numeric \"count\" property")?;
        Ok(())
    }

    fn pull(&mut self) -> Result<Pulled, Error> {
        if !self.waited {
            self.waited = true;
            return Ok(Pulled::Nothing);
        }
        if self.next >= self.count {
            return Ok(Pulled::End);
        }
        let row = json!({"device": self.device, "n": self.next});
        self.next += 1;
        Ok(Pulled::Rows(vec![row]))
    }
}

quiver_plugin_abi::export_plugin! {
    name: "counter",
    kind: source,
    version: env!("CARGO_PKG_VERSION"),
    factory: Counter::default,
}
