//! The Quiver engine: eKuiper rules as timely dataflows over Arrow record batches.
//!
//! Entry point: [`Engine`]. It starts timely once with N worker threads ([`runtime`]), keeps
//! the stream catalog and the rules, and for each rule run builds the same dataflow on every
//! worker ([`render`]), starts the source task (rows spread round-robin over the workers'
//! bounded queues) and one task per sink (bounded queues, whole batches).
//!
//! Invariants:
//! - every queue between tasks is bounded; a full queue makes its producer wait (a timely
//!   operator never blocks its worker: it retries shortly instead), so memory stays bounded
//!   and nothing is dropped silently;
//! - a bad row is counted in its node's exceptions and the rule keeps running;
//! - create/drop commands reach every worker in the same order.

pub mod batch;
pub mod chain;
pub mod checkpoint;
pub mod clock;
pub mod container;
pub mod engine;
pub mod error;
pub mod event_time;
pub mod exchange;
pub mod fault;
pub mod keys;
pub mod metrics;
pub mod operators;
pub mod physical;
pub mod render;
pub mod runtime;
pub mod send_error;
pub mod sink_cache;
pub mod sink_shape;
pub mod sinkprops;
pub mod state;
pub mod tables;
#[cfg(test)]
mod testing;
pub mod window;

pub use engine::{Action, Engine, EngineConfig, Mocks, RuleSpec, RuleStatus, TestInput};

/// The README's Rust example, so that `cargo test --doc` keeps it compiling and running.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
pub use error::EngineError;
