//! `quiverd run`: one rule over bounded input, run to completion without the REST server.
//!
//! Creates the streams and the rule in a fresh in-process engine, waits until the rule
//! finishes (its input ended, every window emitted, every sink flushed), prints the rule's
//! final status as pretty JSON in the shape of `GET /rules/{id}/status`, and exits.
//!
//! Exit codes: 0 the rule finished; 1 it stopped by error; 2 bad arguments or setup (a stream
//! or rule that does not compile); 3 `--timeout` passed; 130 interrupted (Ctrl-C).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use quiver_connectors::Connectors;
use quiver_dataflow::{Action, Engine, EngineConfig, RuleSpec};
use serde_json::{Map, Value};

/// Usage of the `run` subcommand.
pub const USAGE: &str =
    "usage: quiverd run --stream SQL [--stream SQL ...] --rule RULE [--workers N]
                   [--config FILE] [--data-dir DIR] [--option KEY=VALUE ...] [--timeout SECS]
  --stream   a CREATE STREAM or CREATE TABLE statement (repeat for several; a file table is
             read whole before the rule starts)
  --rule     a rule JSON file ({\"id\", \"sql\", \"actions\", \"options\"}), inline rule JSON,
             a file holding a SELECT, or the SELECT itself (id \"oneshot\", a log action)
  --workers  dataflow worker threads (env QUIVER_WORKERS, default: cores)
  --config   YAML connection profiles, e.g. file: {default: {path: /data}} (env QUIVER_CONFIG)
  --data-dir load the plugins (DIR/plugins) and schemas (DIR/schemas) as the server with this data dir
             has them (env QUIVER_DATA_DIR; default ./data when ./data/plugins exists)
  --option   a rule option, e.g. --option isEventTime=true (overrides the rule JSON's)
  --timeout  give up after this many seconds (default: wait for the end of the input)
Prints the rule's final status as JSON. Exit code 0: finished, 1: stopped by error,
2: bad arguments or setup, 3: timed out, 130: interrupted.";

/// Rule id given to a bare SELECT.
const DEFAULT_RULE_ID: &str = "oneshot";

/// What `quiverd run` was asked to do.
#[derive(Debug)]
struct Options {
    streams: Vec<String>,
    rule: String,
    workers: usize,
    config: Option<PathBuf>,
    /// Where installed plugins are loaded from (`DIR/plugins`), if anywhere.
    data_dir: Option<PathBuf>,
    options: Map<String, Value>,
    timeout: Option<Duration>,
}

/// Runs the subcommand with the arguments after `run`.
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let options = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("quiverd run: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quiverd run: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(options)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quiverd run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Options>> {
    let env = |k: &str| std::env::var(k).ok();
    let mut streams = Vec::new();
    let mut rule = None;
    let mut workers = env("QUIVER_WORKERS");
    let mut config = env("QUIVER_CONFIG");
    let mut data_dir = env("QUIVER_DATA_DIR");
    let mut options = Map::new();
    let mut timeout = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--stream" => streams.push(value()?),
            "--rule" => {
                if rule.replace(value()?).is_some() {
                    anyhow::bail!("--rule given twice; one run takes one rule");
                }
            }
            "--workers" => workers = Some(value()?),
            "--config" => config = Some(value()?),
            "--data-dir" => data_dir = Some(value()?),
            "--option" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--option \"{kv}\": expected KEY=VALUE"))?;
                // `true`, `0`, `"x"` are JSON; anything else is taken as a string.
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                options.insert(k.trim().to_string(), v);
            }
            "--timeout" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .with_context(|| format!("--timeout \"{v}\": expected seconds"))?;
                timeout = Some(Duration::from_secs_f64(secs));
            }
            "--help" | "-h" => return Ok(None),
            other => anyhow::bail!("unknown argument \"{other}\""),
        }
    }
    if streams.is_empty() {
        anyhow::bail!("--stream is required");
    }
    let rule = rule.context("--rule is required")?;
    let workers = match workers {
        Some(w) => w
            .parse::<usize>()
            .ok()
            .filter(|&w| w > 0)
            .with_context(|| format!("--workers \"{w}\": expected a positive number"))?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(Some(Options {
        streams,
        rule,
        workers,
        config: config.map(PathBuf::from),
        // Without a flag, the server's default data dir counts only when plugins were
        // installed there: a one-shot run creates no folders of its own.
        data_dir: data_dir
            .map(PathBuf::from)
            .or_else(|| Path::new("data/plugins").is_dir().then(|| "data".into())),
        options,
        timeout,
    }))
}

/// Reads `--rule`: a file or inline text; JSON (starts with `{`) is eKuiper's rule JSON,
/// anything else a SELECT that gets id "oneshot" and a `log` action.
fn rule_spec(arg: &str, options: &Map<String, Value>, engine: &Engine) -> anyhow::Result<RuleSpec> {
    let path = std::path::Path::new(arg);
    let (text, origin) = if !arg.trim_start().starts_with('{') && path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading rule {}", path.display()))?;
        (text, path.display().to_string())
    } else {
        (arg.to_string(), "--rule".to_string())
    };
    let mut spec = if text.trim_start().starts_with('{') {
        let (spec, _) = quiver_server::api::parse_rule(&text, engine)
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.message))?;
        spec
    } else {
        let sql = text.trim().trim_end_matches(';').trim();
        if sql.is_empty() {
            anyhow::bail!("--rule is empty");
        }
        RuleSpec {
            id: DEFAULT_RULE_ID.to_string(),
            name: DEFAULT_RULE_ID.to_string(),
            sql: sql.to_string(),
            actions: vec![Action {
                sink_type: "log".to_string(),
                props: Value::Object(Map::new()),
            }],
            options: Map::new(),
        }
    };
    spec.options
        .extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(spec)
}

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    let engine = Engine::start(
        EngineConfig {
            workers: o.workers,
            ..Default::default()
        },
        tokio::runtime::Handle::current(),
        Connectors::new(),
    )?;
    if let Some(path) = &o.config {
        engine.set_source_profiles(quiver_server::load_profiles(path)?);
    }
    // Plugins before the rule, which may name a plugin sink, source or function; the
    // manager lives as long as the run.
    let _plugins = match &o.data_dir {
        Some(dir) => {
            anyhow::ensure!(
                dir.is_dir(),
                "--data-dir {}: no such directory",
                dir.display()
            );
            let plugins = quiver_server::plugins::PluginManager::open(dir, engine.clone())
                .with_context(|| format!("--data-dir {}", dir.display()))?;
            plugins.load_all();
            // The server's protobuf schemas, for FORMAT="protobuf" streams and sinks.
            quiver_server::schemas::SchemaRegistry::open(dir)
                .with_context(|| format!("--data-dir {}", dir.display()))?;
            Some(plugins)
        }
        None => None,
    };
    for sql in &o.streams {
        // Formatted here, not chained: the engine error repeats its source's message.
        let def = engine
            .create_stream(sql)
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", one_line(sql)))?;
        // A table read from a file is loaded whole before the rule starts, so every stream
        // row joins the complete table (what a backfill expects).
        if def.kind == quiver_compiler::StreamKind::Table && def.options.source_type == "file" {
            while engine.table_loaded(&def.name) == Some(false) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let spec = rule_spec(&o.rule, &o.options, &engine)?;
    let id = spec.id.clone();
    engine
        .create_rule(spec)
        .map_err(|e| anyhow::anyhow!("rule \"{id}\": {e}"))?;
    // No timeout asked: wait as long as the input lasts (a century stands in for forever).
    let timeout = o
        .timeout
        .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    let outcome = tokio::select! {
        finished = engine.wait_finished(&id, timeout) => {
            if finished? { Outcome::Finished } else { Outcome::TimedOut }
        }
        _ = tokio::signal::ctrl_c() => Outcome::Interrupted,
    };
    if !matches!(outcome, Outcome::Finished) {
        engine.stop_rule(&id)?;
    }
    let status = engine.rule_status(&id)?;
    let failed = status.status.contains("error");
    println!("{}", serde_json::to_string_pretty(&status)?);
    let engine2 = engine.clone();
    tokio::task::spawn_blocking(move || engine2.shutdown()).await?;
    Ok(match outcome {
        Outcome::Finished if failed => ExitCode::from(1),
        Outcome::Finished => ExitCode::SUCCESS,
        Outcome::TimedOut => {
            eprintln!("quiverd run: rule \"{id}\" did not finish within the timeout");
            ExitCode::from(3)
        }
        Outcome::Interrupted => ExitCode::from(130),
    })
}

/// How the wait for the rule ended.
enum Outcome {
    Finished,
    TimedOut,
    Interrupted,
}

/// A statement on one line, for error context.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_flags() {
        let o = parse_args(args(&[
            "--stream",
            "CREATE STREAM a () WITH (TYPE=\"file\", DATASOURCE=\"x\")",
            "--rule",
            "SELECT * FROM a",
            "--workers",
            "2",
            "--option",
            "isEventTime=true",
            "--option",
            "name=x y",
            "--data-dir",
            "/srv/quiver",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.workers, 2);
        assert_eq!(o.data_dir, Some(PathBuf::from("/srv/quiver")));
        assert_eq!(o.options["isEventTime"], Value::Bool(true));
        assert_eq!(o.options["name"], Value::from("x y"));
        assert!(parse_args(args(&["--rule", "SELECT 1"])).is_err());
        assert!(parse_args(args(&["--stream", "s"])).is_err());
        assert!(parse_args(args(&["--stream", "s", "--rule", "r", "--workers", "0"])).is_err());
        assert!(parse_args(args(&["--help"])).unwrap().is_none());
    }

    #[tokio::test]
    async fn bare_select_gets_a_log_action() {
        let engine = Engine::start(
            EngineConfig::default(),
            tokio::runtime::Handle::current(),
            Connectors::new(),
        )
        .unwrap();
        let spec = rule_spec("SELECT * FROM a;", &Map::new(), &engine).unwrap();
        assert_eq!(spec.id, DEFAULT_RULE_ID);
        assert_eq!(spec.sql, "SELECT * FROM a");
        assert_eq!(spec.actions[0].sink_type, "log");
        let json =
            r#"{"id": "r1", "sql": "SELECT * FROM a", "actions": [{"memory": {"topic": "t"}}]}"#;
        let mut opts = Map::new();
        opts.insert("isEventTime".into(), Value::Bool(true));
        let spec = rule_spec(json, &opts, &engine).unwrap();
        engine.shutdown();
        assert_eq!(spec.id, "r1");
        assert_eq!(spec.actions[0].sink_type, "memory");
        assert_eq!(spec.options["isEventTime"], Value::Bool(true));
    }
}
