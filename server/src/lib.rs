//! quiverd's library: the REST API over the engine and the persistent catalog.
//!
//! Entry point: [`serve`], which replays the catalog into a fresh engine and serves eKuiper's
//! REST API until shutdown.

pub mod api;
pub mod catalog;
pub mod push;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use quiver_connectors::Connectors;
use quiver_dataflow::{Engine, EngineConfig};

/// Server settings (flags or `QUIVER_*` environment variables).
#[derive(Debug, Clone)]
pub struct Settings {
    /// REST listen address (`127.0.0.1:9081`: the API loads native code, so it is local
    /// unless asked).
    pub bind: SocketAddr,
    /// Where the catalog lives.
    pub data_dir: PathBuf,
    /// The HTTP push source listener (`httppush` streams).
    pub push_bind: SocketAddr,
    /// Timely workers.
    pub workers: usize,
}

/// Replays the catalog: streams, then rules (started again if they were running). A rule that
/// no longer compiles is kept in the catalog and logged, never dropped silently.
pub fn restore(engine: &Engine, catalog: &catalog::Catalog) -> anyhow::Result<()> {
    for (name, sql) in catalog.streams()? {
        if let Err(e) = engine.create_stream(&sql) {
            tracing::error!(stream = %name, "cannot restore stream: {e}");
        }
    }
    for rule in catalog.rules()? {
        let parsed = api::parse_rule(&rule.json);
        match parsed {
            Ok((spec, _)) => {
                if let Err(e) = engine.create_rule_with(spec, rule.running) {
                    tracing::error!(rule = %rule.id, "cannot restore rule: {e}");
                }
            }
            Err(e) => tracing::error!(rule = %rule.id, "cannot restore rule: {}", e.message),
        }
    }
    Ok(())
}

/// Runs the server until `shutdown` resolves.
pub async fn serve(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let catalog = catalog::Catalog::open(&settings.data_dir)?;
    let engine = Engine::start(
        EngineConfig {
            workers: settings.workers,
        },
        tokio::runtime::Handle::current(),
        Connectors::new(),
    )?;
    restore(&engine, &catalog)?;
    let state = Arc::new(api::AppState {
        engine: engine.clone(),
        catalog,
        started: Instant::now(),
    });
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let push_listener = tokio::net::TcpListener::bind(settings.push_bind)
        .await
        .with_context(|| format!("binding the push listener {}", settings.push_bind))?;
    let push = push::router(engine.connectors().httppush().clone());
    let push_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(push_listener, push).await {
            tracing::error!("push listener failed: {e}");
        }
    });
    tracing::info!(addr = %settings.push_bind, "HTTP push listener ready");
    tracing::info!(addr = %settings.bind, workers = engine.workers(), "REST API listening");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    push_task.abort();
    let engine2 = engine.clone();
    tokio::task::spawn_blocking(move || engine2.shutdown()).await?;
    Ok(())
}
