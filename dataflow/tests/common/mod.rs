//! Shared setup for the engine's integration tests.

use quiver_connectors::Connectors;
use quiver_dataflow::{Engine, EngineConfig};

/// The async runtime the engine's source and sink tasks run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An engine with `workers` timely workers and a fresh memory bus.
pub fn engine(rt: &tokio::runtime::Runtime, workers: usize) -> Engine {
    Engine::start(
        EngineConfig { workers },
        rt.handle().clone(),
        Connectors::new(),
    )
    .expect("engine starts")
}
