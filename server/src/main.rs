//! `quiverd`: the Quiver server. Starts with embedded defaults: no config file, no external
//! database; the catalog is an SQLite file under `--data-dir`.
//!
//! `quiverd run ...` instead runs one rule over bounded input to completion, without the REST
//! server, and prints its final status (see [`oneshot`]).

mod oneshot;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use quiver_server::Settings;
use quiver_server::security::mask::MaskingWriter;

const USAGE: &str = "usage: quiverd [--bind ADDR] [--push-bind ADDR] [--data-dir DIR] [--workers N]
               [--auth jwt|none] [--auth-token-file FILE] [--allow-origin ORIGIN]...
               [--allow-host NAME]... [--allow-unauthenticated] [--tls-cert PEM --tls-key PEM]
               [--ruletest-idle-timeout SECS] [--log-format text|json]
               [--cluster-hosts FILE --process N]
       quiverd run --stream SQL --rule RULE [--workers N]   (one rule to completion; run --help)
  --bind      REST API address (env QUIVER_BIND, default 127.0.0.1:9081)
  --push-bind HTTP push source address (env QUIVER_PUSH_BIND, default 127.0.0.1:10081)
  --data-dir  catalog directory (env QUIVER_DATA_DIR, default ./data)
  --workers   dataflow worker threads (env QUIVER_WORKERS, default: cores)
  --config    YAML connection profiles, e.g. mqtt: {default: {server: tcp://127.0.0.1:1883}}
              (env QUIVER_CONFIG)
  --auth jwt  require eKuiper's RS256 JWTs in the Authorization header; public keys (PEM)
              in DATA-DIR/mgmt, the token's iss names the file, aud must be eKuiper
              (env QUIVER_AUTH)
  --auth-token-file FILE
              require the token held in FILE (env QUIVER_AUTH_TOKEN_FILE); with --auth jwt,
              either is accepted. GET /ping stays open
  --allow-origin ORIGIN
              serve browser requests from ORIGIN (e.g. https://dash.example:8080) without a
              token; other Origins get 403 (repeatable; default none)
  --allow-host NAME
              accept Host NAME besides localhost, loopback and the bound address (repeatable)
  --allow-unauthenticated
              serve a non-loopback --bind without authentication (refused otherwise)
  --plugin-file-dir  the only folder file:// plugin installs may read from; without it
              file:// installs are refused (env QUIVER_PLUGIN_FILE_DIR)
  --tls-cert PEM, --tls-key PEM
              serve the REST API and the push listener over HTTPS with this certificate
              chain and private key (env QUIVER_TLS_CERT, QUIVER_TLS_KEY; both or neither)
  --ruletest-idle-timeout SECS
              remove a rule test (POST /ruletest) not started, or running without a
              WebSocket client, for SECS seconds (default 60)
  --log-format text|json
              log lines as text (default; coloured only on a terminal) or as one JSON
              object per line for log collectors (env QUIVER_LOG_FORMAT); the level comes
              from RUST_LOG (default info)
  --cluster-hosts FILE, --process N
              run as process N (from 0) of a cluster: FILE lists every process's
              host:port, one a line (# comments), the same file and --workers in every
              process. Process 0 serves the REST API and keeps the catalog; the others
              serve nothing and run their share of every rule (docs/cluster.md)";

fn settings() -> anyhow::Result<Settings> {
    let env = |k: &str| std::env::var(k).ok();
    let mut bind = env("QUIVER_BIND").unwrap_or_else(|| "127.0.0.1:9081".into());
    let mut data_dir = env("QUIVER_DATA_DIR").unwrap_or_else(|| "./data".into());
    let mut push_bind = env("QUIVER_PUSH_BIND").unwrap_or_else(|| "127.0.0.1:10081".into());
    let mut workers = env("QUIVER_WORKERS");
    let mut config = env("QUIVER_CONFIG");
    let mut security = quiver_server::security::SecuritySettings {
        jwt: false,
        token_file: env("QUIVER_AUTH_TOKEN_FILE").map(PathBuf::from),
        ..Default::default()
    };
    let mut auth = env("QUIVER_AUTH");
    let mut plugin_file_dir = env("QUIVER_PLUGIN_FILE_DIR");
    let mut tls_cert = env("QUIVER_TLS_CERT");
    let mut tls_key = env("QUIVER_TLS_KEY");
    let mut ruletest_idle = quiver_server::ruletest::IDLE_TIMEOUT;
    let mut cluster_hosts: Option<String> = None;
    let mut process: Option<String> = None;
    // Flags only process 0 of a cluster has a use for, given explicitly.
    let mut serving_flags: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        if matches!(arg.as_str(), "--bind" | "--push-bind") {
            serving_flags.push(arg.clone());
        }
        match arg.as_str() {
            "--cluster-hosts" => cluster_hosts = Some(value()?),
            "--process" => process = Some(value()?),
            "--bind" => bind = value()?,
            "--data-dir" => data_dir = value()?,
            "--push-bind" => push_bind = value()?,
            "--workers" => workers = Some(value()?),
            "--config" => config = Some(value()?),
            "--auth" => auth = Some(value()?),
            "--auth-token-file" => security.token_file = Some(PathBuf::from(value()?)),
            "--allow-origin" => security.allow_origins.push(value()?),
            "--allow-host" => security.allow_hosts.push(value()?),
            "--allow-unauthenticated" => security.allow_unauthenticated = true,
            "--plugin-file-dir" => plugin_file_dir = Some(value()?),
            "--tls-cert" => tls_cert = Some(value()?),
            "--tls-key" => tls_key = Some(value()?),
            // Read by `log_format` before the logger starts; checked there.
            "--log-format" => {
                value()?;
            }
            "--ruletest-idle-timeout" => {
                let secs: u64 = value()?.parse().ok().filter(|s| *s > 0).with_context(
                    || "--ruletest-idle-timeout needs a whole number of seconds above 0",
                )?;
                ruletest_idle = std::time::Duration::from_secs(secs);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument \"{other}\"\n{USAGE}"),
        }
    }
    security.jwt = match auth.as_deref() {
        None | Some("none") => false,
        Some("jwt") => true,
        Some(other) => anyhow::bail!("--auth: \"{other}\" is not jwt or none\n{USAGE}"),
    };
    let tls = match (tls_cert, tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(quiver_server::tls::TlsFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        }),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key (the certificate's key)"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (its certificate chain)"),
    };
    let workers = match workers {
        Some(w) => w.parse().context("--workers needs a number")?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let cluster = cluster_settings(cluster_hosts, process, workers, &serving_flags)?;
    Ok(Settings {
        cluster,
        bind: bind
            .parse::<SocketAddr>()
            .with_context(|| format!("--bind: \"{bind}\" is not an address like 127.0.0.1:9081"))?,
        push_bind: push_bind.parse::<SocketAddr>().with_context(|| {
            format!("--push-bind: \"{push_bind}\" is not an address like 127.0.0.1:10081")
        })?,
        data_dir: PathBuf::from(data_dir),
        config: config.map(PathBuf::from),
        plugin_file_dir: plugin_file_dir.map(PathBuf::from),
        workers,
        security,
        tls,
        ruletest_idle,
    })
}

/// The cluster description from `--cluster-hosts` and `--process`: both or neither.
fn cluster_settings(
    hosts: Option<String>,
    process: Option<String>,
    workers: usize,
    serving_flags: &[String],
) -> anyhow::Result<Option<quiver_dataflow::runtime::ClusterConfig>> {
    let (hosts, process) = match (hosts, process) {
        (None, None) => return Ok(None),
        (Some(h), Some(p)) => (h, p),
        (Some(_), None) => {
            anyhow::bail!("--cluster-hosts needs --process, this process's index in the file")
        }
        (None, Some(_)) => {
            anyhow::bail!("--process needs --cluster-hosts, the file of the cluster's addresses")
        }
    };
    let process: usize = process
        .parse()
        .with_context(|| format!("--process: \"{process}\" is not a process index (0, 1, ...)"))?;
    let text = std::fs::read_to_string(&hosts)
        .with_context(|| format!("--cluster-hosts: reading {hosts}"))?;
    let mut addresses = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        // Timely resolves names itself; a port is all that must be there.
        if line
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            anyhow::bail!(
                "--cluster-hosts {hosts}, line {}: \"{line}\" is not host:port",
                n + 1
            );
        }
        if addresses.iter().any(|a| a == line) {
            anyhow::bail!("--cluster-hosts {hosts}: \"{line}\" is listed twice");
        }
        addresses.push(line.to_string());
    }
    if process >= addresses.len() {
        anyhow::bail!(
            "--process {process}: {hosts} lists {} processes (indexes 0 to {})",
            addresses.len(),
            addresses.len().saturating_sub(1)
        );
    }
    if process != 0
        && let Some(flag) = serving_flags.first()
    {
        anyhow::bail!(
            "{flag}: process {process} of a cluster serves nothing; process 0 serves the REST \
             API and the push listener"
        );
    }
    let cluster = quiver_dataflow::runtime::ClusterConfig {
        process,
        addresses,
        threads: workers,
    };
    cluster
        .validate()
        .map_err(|e| anyhow::anyhow!("--cluster-hosts: {e}"))?;
    Ok(Some(cluster))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// How log lines are written (`--log-format`).
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `--log-format` (or `QUIVER_LOG_FORMAT`), read before the logger starts.
fn log_format() -> anyhow::Result<LogFormat> {
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == "--log-format")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default())
        .or_else(|| std::env::var("QUIVER_LOG_FORMAT").ok());
    match given.as_deref() {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => anyhow::bail!("--log-format: \"{other}\" is not text or json\n{USAGE}"),
    }
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    quiver_server::security::mask::warm_up();
    if std::env::args().nth(1).as_deref() == Some("run") {
        // Logs (and `log` sink output) go to stderr so stdout carries only the status JSON.
        tracing_subscriber::fmt()
            .with_env_filter(env_filter())
            .with_writer(|| MaskingWriter(std::io::stderr()))
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
        return Ok(oneshot::main(std::env::args().skip(2)));
    }
    let stdout_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logger = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(|| MaskingWriter(std::io::stdout()));
    match log_format()? {
        LogFormat::Json => logger.json().init(),
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        LogFormat::Text => logger.with_ansi(stdout_terminal).init(),
    }
    let settings = settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(quiver_server::serve(settings, shutdown_signal()))?;
    Ok(std::process::ExitCode::SUCCESS)
}
