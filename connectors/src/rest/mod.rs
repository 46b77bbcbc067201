//! The `rest` connector: eKuiper's `rest` sink, which sends rule results to an HTTP endpoint
//! (plain HTTP/1.1; `https://` is refused since this build has no TLS client).

mod config;
mod sink;

pub use config::RestSinkConfig;
pub use sink::RestSink;
