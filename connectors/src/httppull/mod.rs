//! The `httppull` source (eKuiper's): polls an HTTP endpoint at an interval and hands each
//! answer's body to the rule as a JSON message (an object is a row, an array of objects
//! several).
//!
//! - The URL is the profile's `url` followed by the stream's `DATASOURCE`.
//! - `url`, `body` and `headers` may be templates over the pull times, eKuiper's dynamic
//!   properties `{{.PullTime}}` and `{{.LastPullTime}}` (Unix ms; the last pull that
//!   succeeded), so a service can be asked for what is new since then.
//! - `incremental: true` skips an answer identical to the previous one.
//! - A failed pull (connection error, timeout, non-2xx answer, or a bad `code` with
//!   `responseType: body`) is logged and the next interval tries again; the rule keeps
//!   running. A body that is not JSON is a decode error of the rule.
//! - As a lookup table (`KIND="lookup"`), see [`HttpPullLookup`]: one request per batch of
//!   keys.

mod config;
mod lookup;
mod source;

pub use config::{DEFAULT_INTERVAL, HttpPullConfig};
pub use lookup::HttpPullLookup;
pub use source::HttpPullSource;
