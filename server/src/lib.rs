//! quiverd's library: the REST API over the engine and the persistent catalog.
//!
//! Entry point: [`serve`], which replays the catalog into a fresh engine and serves eKuiper's
//! REST API until shutdown.

pub mod api;
pub mod catalog;
pub mod connections;
pub mod console;
pub mod plugins;
pub mod profiles;
pub mod push;
pub mod ruletest;
pub mod schemas;
pub mod security;
pub mod tls;

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
    /// Optional YAML file of connection profiles (eKuiper's confKey idea):
    /// `mqtt: { default: { server: "tcp://127.0.0.1:1883" } }`.
    pub config: Option<PathBuf>,
    /// Authentication, browser checks and exposure (`--auth`, `--allow-origin`, ...).
    pub security: security::SecuritySettings,
    /// The folder `file://` plugin installs may read from; `None` refuses `file://`.
    pub plugin_file_dir: Option<PathBuf>,
    /// HTTPS for the REST API and the push listener (`--tls-cert`, `--tls-key`); plain HTTP
    /// without.
    pub tls: Option<tls::TlsFiles>,
    /// How long a rule test may wait unstarted, or run without a client, before it is removed
    /// (`--ruletest-idle-timeout`).
    pub ruletest_idle: std::time::Duration,
    /// This process's place in a cluster (`--cluster-hosts`, `--process`); `None` runs alone.
    pub cluster: Option<quiver_dataflow::runtime::ClusterConfig>,
}

/// Reads connection profiles: source type → profile name (`CONF_KEY`) → properties.
pub fn load_profiles(
    path: &std::path::Path,
) -> anyhow::Result<quiver_dataflow::engine::SourceProfiles> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not valid YAML", path.display()))?;
    let json = serde_json::to_value(yaml).context("config must be plain YAML maps and values")?;
    let mut profiles = quiver_dataflow::engine::SourceProfiles::new();
    let serde_json::Value::Object(types) = json else {
        anyhow::bail!("{}: expected a map of connector types", path.display());
    };
    for (kind, confs) in types {
        let serde_json::Value::Object(confs) = confs else {
            anyhow::bail!(
                "{}: \"{kind}\" must map profile names to properties",
                path.display()
            );
        };
        let mut by_name = std::collections::HashMap::new();
        for (name, props) in confs {
            let serde_json::Value::Object(props) = props else {
                anyhow::bail!(
                    "{}: profile \"{kind}.{name}\" must be a map",
                    path.display()
                );
            };
            by_name.insert(name, props);
        }
        // Streams name their TYPE in lower case (the parser folds it), so `redisSub:` must
        // match `TYPE="redisSub"`.
        profiles.insert(kind.to_ascii_lowercase(), by_name);
    }
    Ok(profiles)
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
        let parsed = api::parse_rule(&rule.json, engine);
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
    // Before anything starts: a server that must not serve stops here.
    let security = Arc::new(settings.security.validate(&settings.data_dir)?);
    security.check_exposure(settings.bind)?;
    let tls = settings
        .tls
        .as_ref()
        .map(tls::TlsFiles::server_config)
        .transpose()?;
    // One stop signal for every round of serving: in a cluster, a round ends when the cluster
    // lost a process and formed again.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    if let Some(cluster) = settings.cluster.clone().filter(|c| c.process != 0) {
        return follow(settings, cluster, stop).await;
    }
    let mut engine = connected_engine(&settings, stop.clone()).await?;
    while let Some(current) = engine {
        engine = serve_engine(&settings, &security, tls.clone(), current, stop.clone()).await?;
    }
    Ok(())
}

/// Resolves once `stop` says the server stops.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves the REST API over `engine` until the server stops (`None`) or, in a cluster that
/// lost a process, until every process is connected again: then the engine of the cluster
/// formed anew, for the next round.
async fn serve_engine(
    settings: &Settings,
    security: &Arc<security::Security>,
    tls: Option<Arc<rustls::ServerConfig>>,
    engine: Engine,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Engine>> {
    let security = security.clone();
    // Bound first: a server whose port is taken stops before it restores and runs any rule.
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let push_listener = tokio::net::TcpListener::bind(settings.push_bind)
        .await
        .with_context(|| format!("binding the push listener {}", settings.push_bind))?;
    let catalog = catalog::Catalog::open(&settings.data_dir)?;
    quiver_compiler::functions::set_keyed_state_store(Some(Arc::new(catalog::KeyedState::open(
        &settings.data_dir,
    )?)));
    let profiles = profiles::Profiles::new(match &settings.config {
        Some(path) => load_profiles(path)?,
        None => Default::default(),
    });
    // The file's profiles and the REST-made ones, before any stream is restored.
    profiles.apply(&engine, &catalog)?;
    // Plugins first: restored rules may use plugin sinks and functions.
    let plugins = Arc::new(
        plugins::PluginManager::open(&settings.data_dir, engine.clone())?
            .with_file_dir(settings.plugin_file_dir.as_deref())?,
    );
    plugins.load_all();
    // Schemas before streams: a protobuf stream's message type is checked when it is restored.
    let schemas = Arc::new(schemas::SchemaRegistry::open(&settings.data_dir)?);
    // Connections before the streams and rules that name them.
    connections::restore(&engine, &catalog)?;
    restore(&engine, &catalog)?;
    // Rule tests' results are served on the push listener, eKuiper's HTTP data server.
    let tests = ruletest::RuleTests::new(
        engine.clone(),
        push_listener.local_addr()?.port(),
        settings.ruletest_idle,
    );
    let state = Arc::new(api::AppState {
        engine: engine.clone(),
        catalog,
        started: Instant::now(),
        plugins,
        profiles,
        import_status: Default::default(),
        tests: tests.clone(),
        schemas,
    });
    let push = push::router(
        engine.connectors().httppush().clone(),
        engine.connectors().websocket().clone(),
    )
    .layer(axum::middleware::from_fn_with_state(
        (security.clone(), security::Listener::Push),
        security::guard,
    ));
    let push_tls = tls.clone();
    let push_task = tokio::spawn(async move {
        let push = push.into_make_service_with_connect_info::<security::LocalAddr>();
        let served = match push_tls {
            Some(config) => match tls::TlsListener::new(push_listener, config, "push listener") {
                Ok(listener) => axum::serve(listener, push).await,
                Err(e) => Err(e),
            },
            None => axum::serve(push_listener, push).await,
        };
        if let Err(e) = served {
            tracing::error!("push listener failed: {e}");
        }
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %settings.push_bind, scheme, "HTTP push listener ready");
    tracing::info!(addr = %settings.bind, scheme, workers = engine.workers(), "REST API listening");
    let rest = api::router(state)
        .layer(axum::middleware::from_fn_with_state(
            (security, security::Listener::Rest),
            security::guard,
        ))
        .into_make_service_with_connect_info::<security::LocalAddr>();
    // In a cluster, the next round's engine once the cluster lost a process and formed again.
    let (next_tx, next_rx) = tokio::sync::watch::channel(None::<Engine>);
    let rejoin = settings.cluster.is_some().then(|| {
        let (engine, settings, stop) = (engine.clone(), settings.clone(), stop.clone());
        tokio::spawn(async move {
            if let Some(next) = rejoined(&engine, &settings, stop).await {
                let _ = next_tx.send(Some(next));
            }
        })
    });
    let ends = {
        let (mut next, stop) = (next_rx.clone(), stop.clone());
        async move {
            // A closed channel (no cluster, or no next engine) leaves only the stop.
            tokio::select! {
                _ = stopped(stop) => {}
                Ok(_) = next.wait_for(Option::is_some) => {}
            }
        }
    };
    match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config, "REST API")?;
            axum::serve(listener, rest)
                .with_graceful_shutdown(ends)
                .await?
        }
        None => {
            axum::serve(listener, rest)
                .with_graceful_shutdown(ends)
                .await?
        }
    }
    if let Some(task) = rejoin {
        task.abort();
    }
    tests.shutdown();
    push_task.abort();
    // Its listener must be closed before the next round binds the same address.
    let _ = push_task.await;
    let next = next_rx.borrow().clone();
    let engine2 = engine.clone();
    let stopping = tokio::task::spawn_blocking(move || engine2.shutdown());
    match &next {
        // The old engine's workers are gone; its sinks flush while the new one is restored,
        // so the API is away only for the restore.
        Some(_) => tracing::info!(
            "the cluster is whole again: its streams and rules are restored from the catalog and started again on every process (their window state was lost)"
        ),
        None => stopping.await?,
    }
    Ok(next)
}

/// In a cluster: waits until `engine`'s workers stop (a process or its connection was lost),
/// then forms the cluster again, waiting for every process to connect: the new engine, or
/// `None` if the server stops first.
async fn rejoined(
    engine: &Engine,
    settings: &Settings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Engine> {
    let reason = loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if let Some(reason) = engine.workers_stopped() {
            break reason;
        }
    };
    tracing::error!("{reason}; waiting for every process to connect again");
    loop {
        match connected_engine(settings, stop.clone()).await {
            Ok(next) => return next,
            // A start that failed (this process's address still taken, say) is tried again:
            // giving up would leave the cluster down for good.
            Err(e) => {
                tracing::error!("forming the cluster again failed: {e:#}; trying again in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// This process's engine, started on a thread of its own (in a cluster it waits until every
/// other process is connected, which may take until they are restarted); `None` if the server
/// stops first.
async fn connected_engine(
    settings: &Settings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Engine>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (settings, runtime) = (settings.clone(), tokio::runtime::Handle::current());
    // A plain thread: one waiting for processes that never come back must not hold up the
    // process's exit, as a thread of the runtime's blocking pool would.
    std::thread::Builder::new()
        .name("quiver-connect".into())
        .spawn(move || {
            let _ = tx.send(start_engine(&settings, runtime));
        })?;
    tokio::select! {
        _ = stopped(stop) => Ok(None),
        started = rx => Ok(Some(started.context("starting the engine")??)),
    }
}

/// The engine of this process: alone, or the leader of a cluster (process 0), which waits
/// here until every other process is connected.
fn start_engine(settings: &Settings, runtime: tokio::runtime::Handle) -> anyhow::Result<Engine> {
    let config = EngineConfig {
        workers: settings.workers,
        data_dir: Some(settings.data_dir.clone()),
        ..Default::default()
    };
    Ok(match &settings.cluster {
        None => Engine::start(config, runtime, Connectors::new())?,
        Some(cluster) => {
            let engine =
                Engine::start_cluster(config, cluster.clone(), runtime, Connectors::new())?;
            tracing::info!(
                process = cluster.process,
                processes = cluster.addresses.len(),
                "cluster connected"
            );
            engine
        }
    })
}

/// A follower of a cluster (a process other than 0): its engine applies what the leader
/// sequences and runs its share of every rule's dataflow; it serves no API and keeps no
/// catalog. Connection profiles come from `--config`, as on the leader. When the cluster
/// loses a process, it forms the cluster again with the others once all are back, and the
/// leader starts the rules again.
async fn follow(
    settings: Settings,
    cluster: quiver_dataflow::runtime::ClusterConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut engine = connected_engine(&settings, stop.clone()).await?;
    while let Some(current) = engine {
        if let Some(path) = &settings.config {
            current.set_source_profiles(load_profiles(path)?);
        }
        tracing::info!(
            process = cluster.process,
            workers = ?current.workers(),
            "following process 0 of the cluster"
        );
        engine = tokio::select! {
            _ = stopped(stop.clone()) => None,
            next = rejoined(&current, &settings, stop.clone()) => next,
        };
        tokio::task::spawn_blocking(move || current.shutdown()).await?;
    }
    Ok(())
}
