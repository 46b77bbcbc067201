//! `quiverd`: the Quiver server.
//!
//! This first version starts the engine with embedded defaults (no config file, no external
//! database) and runs until it is interrupted. The REST API (eKuiper's routes on port 9081),
//! the persistent catalog and the MQTT/HTTP connectors come with the server issue.

use anyhow::Context as _;
use quiver_connectors::Connectors;
use quiver_dataflow::{Engine, EngineConfig};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = EngineConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" => {
                config.workers = args
                    .next()
                    .context("--workers needs a number")?
                    .parse()
                    .context("--workers needs a number")?;
            }
            "--help" | "-h" => {
                println!("usage: quiverd [--workers N]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument \"{other}\"; try --help"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let engine = Engine::start(config, runtime.handle().clone(), Connectors::new())
        .context("starting the engine")?;
    tracing::info!(
        workers = engine.workers(),
        "quiverd started (REST API not built yet)"
    );
    // Runs until the process is stopped; the REST server will own this loop.
    loop {
        std::thread::park();
    }
}
