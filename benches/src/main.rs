//! `quiver-bench`: end-to-end throughput of the engine.
//!
//! ```text
//! quiver-bench e2e [--events N] [--workers 1,2] [--workload w1,w2] [--batch 1024] [--pack] [--seed S] [--timeout SECS]
//! ```
//!
//! Workloads: `w1` is the filter/project rule below; `w2` is the event-time window rule
//! `SELECT device, avg(temperature), count(*), max(humidity) FROM demo GROUP BY device,
//! TUMBLINGWINDOW(ss, 10)` (`isEventTime`, `lateTolerance` 0) over the same messages, checked
//! against the number of distinct (window, device) pairs. Running both in one command gives
//! the window's cost as a ratio to the plain rule on the same machine and load.
//!
//! For each worker count: a fresh tokio runtime (2 threads) and engine, the demo stream on the
//! memory topic `bench/in`, the rule `SELECT device, temperature FROM demo WHERE temperature > 20`
//! with a memory sink to `bench/out`, and a subscriber task counting the rows it receives.
//! All payloads are generated before the clock starts; the time is from the first publish to
//! the end of `wait_finished` after `bus.close("bench/in")`.
//!
//! By default every message is its own bus message (the memory source gathers whatever is
//! already queued, up to its limit, into one event) and `--batch` is how many messages the
//! publisher sends before it yields to the scheduler. With `--pack`, each bus message instead
//! carries `--batch` messages as one JSON array. A run whose rule has not finished after
//! `--timeout` seconds (default 300) is reported as TIMEOUT with the rule's metrics, and the
//! process exits non-zero.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use quiver_benches::{
    DEFAULT_SEED, DEMO_EVENT_STREAM_SQL, DEMO_RULE_SQL, DEMO_STREAM_SQL, WINDOW_RULE_SQL, Workload,
    proc_status_kb,
};
use quiver_connectors::Connectors;
use quiver_connectors::memory::MemoryPayload;
use quiver_dataflow::{Action, Engine, EngineConfig, RuleSpec};

const USAGE: &str = "usage: quiver-bench e2e [--events N] [--workers 1,2] [--workload w1,w2] [--batch 1024] [--pack] [--seed S] [--timeout SECS]";

struct Options {
    events: usize,
    workers: Vec<usize>,
    batch: usize,
    pack: bool,
    seed: u64,
    timeout: Duration,
    workloads: Vec<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    match args.next().as_deref() {
        Some("e2e") => {}
        Some("-h" | "--help") | None => bail!("{USAGE}"),
        Some(other) => bail!("unknown subcommand \"{other}\"\n{USAGE}"),
    }
    let mut o = Options {
        events: 1_000_000,
        workers: vec![1, 2],
        batch: 1024,
        pack: false,
        seed: DEFAULT_SEED,
        timeout: Duration::from_secs(300),
        workloads: vec!["w1".to_string()],
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--events" => o.events = value()?.replace('_', "").parse().context("--events")?,
            "--workers" => {
                o.workers = value()?
                    .split(',')
                    .map(|w| w.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--workers")?;
            }
            "--batch" => o.batch = value()?.parse().context("--batch")?,
            "--seed" => o.seed = value()?.parse().context("--seed")?,
            "--timeout" => {
                o.timeout = Duration::from_secs_f64(value()?.parse().context("--timeout")?);
            }
            "--pack" => o.pack = true,
            "--workload" => {
                o.workloads = value()?.split(',').map(|w| w.trim().to_string()).collect();
                if let Some(bad) = o
                    .workloads
                    .iter()
                    .find(|w| !matches!(w.as_str(), "w1" | "w2"))
                {
                    bail!("--workload: unknown workload \"{bad}\" (w1, w2)");
                }
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown flag \"{other}\"\n{USAGE}"),
        }
    }
    if o.workers.is_empty() || o.workers.contains(&0) {
        bail!("--workers: counts must be at least 1");
    }
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(o)
}

/// What one run measured.
struct RunResult {
    seconds: f64,
    rows: u64,
    batches: u64,
    peak_rss_kb: Option<u64>,
    status: String,
    /// False when the rule did not finish within the timeout.
    finished: bool,
    /// The rule's metrics, kept when it did not finish.
    metrics: String,
}

fn run_once(
    window: bool,
    workers: usize,
    payloads: &[bytes::Bytes],
    batch: usize,
    timeout: Duration,
) -> anyhow::Result<RunResult> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .context("tokio runtime")?;
    let engine = Engine::start(
        EngineConfig {
            workers,
            ..Default::default()
        },
        rt.handle().clone(),
        Connectors::new(),
    )
    .map_err(|e| anyhow::anyhow!("engine start: {e}"))?;
    let bus = engine.connectors().memory().clone();
    engine
        .create_stream(if window {
            DEMO_EVENT_STREAM_SQL
        } else {
            DEMO_STREAM_SQL
        })
        .map_err(|e| anyhow::anyhow!("create stream: {e}"))?;

    // The counter subscribes before the rule exists, so it sees every result batch.
    let mut out_rx = bus.subscribe("bench/out");
    let counter = rt.spawn(async move {
        let (mut rows, mut batches) = (0u64, 0u64);
        while let Some(msg) = out_rx.recv().await {
            if let MemoryPayload::Batch(b) = msg.payload {
                rows += b.num_rows() as u64;
                batches += 1;
            }
        }
        (rows, batches)
    });

    let rule_id = "bench";
    engine
        .create_rule(RuleSpec {
            id: rule_id.into(),
            name: rule_id.into(),
            sql: if window {
                WINDOW_RULE_SQL
            } else {
                DEMO_RULE_SQL
            }
            .into(),
            actions: vec![Action {
                sink_type: "memory".into(),
                props: serde_json::json!({ "topic": "bench/out" }),
            }],
            options: if window {
                serde_json::json!({"isEventTime": true, "lateTolerance": 0})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            } else {
                serde_json::Map::new()
            },
        })
        .map_err(|e| anyhow::anyhow!("create rule: {e}"))?;

    // Cloning the Arcs happens before the clock starts.
    let payloads: Vec<bytes::Bytes> = payloads.to_vec();
    let (seconds, finished) = rt.block_on(async {
        let started = Instant::now();
        let publisher_bus = bus.clone();
        let publisher = tokio::spawn(async move {
            for chunk in payloads.chunks(batch) {
                for p in chunk {
                    publisher_bus.publish_json("bench/in", p.clone()).await;
                }
                tokio::task::yield_now().await;
            }
            publisher_bus.close("bench/in");
        });
        publisher.await.context("publisher task")?;
        let finished = engine
            .wait_finished(rule_id, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("wait: {e}"))?;
        anyhow::Ok((started.elapsed().as_secs_f64(), finished))
    })?;
    let (status, metrics) = match engine.rule_status(rule_id) {
        Ok(s) => (
            format!("{} ({})", s.status, s.message),
            s.metrics
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Err(e) => (e.to_string(), String::new()),
    };
    let peak_rss_kb = proc_status_kb("VmHWM");
    // Stops the rule (if it is stuck) and the workers; the sink tasks then end.
    engine.shutdown();
    bus.close("bench/out");
    let (rows, batches) = rt.block_on(counter).context("counter task")?;
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(RunResult {
        seconds,
        rows,
        batches,
        peak_rss_kb,
        status,
        finished,
        metrics: if finished { String::new() } else { metrics },
    })
}

fn e2e(o: &Options) -> anyhow::Result<bool> {
    let t = Instant::now();
    let workload = Workload::generate(o.events, o.seed);
    let payloads = if o.pack {
        workload.packed(o.batch)
    } else {
        workload.payloads.clone()
    };
    println!(
        "generated {} events ({:.1} MB of JSON, {} with temperature > 20) in {:.2} s; \
         {} bus messages ({}), publisher chunk {}",
        o.events,
        workload.bytes as f64 / 1e6,
        workload.hot,
        t.elapsed().as_secs_f64(),
        payloads.len(),
        if o.pack {
            "JSON arrays"
        } else {
            "one event each"
        },
        o.batch,
    );
    println!(
        "RSS after generation: {} kB (VmHWM and VmRSS are process-wide and include the payloads)",
        proc_status_kb("VmRSS").map_or("?".to_string(), |k| k.to_string())
    );
    println!(
        "{:>8} {:>7} {:>10} {:>9} {:>12} {:>11} {:>9} {:>13}  status",
        "workload",
        "workers",
        "events",
        "seconds",
        "events/s",
        "output rows",
        "batches",
        "peak RSS kB"
    );
    let mut ok = true;
    for (wl, &w) in o
        .workloads
        .iter()
        .flat_map(|wl| o.workers.iter().map(move |w| (wl, w)))
    {
        let window = wl == "w2";
        let expected = if window {
            workload.window_groups
        } else {
            workload.hot
        };
        let r = run_once(
            window,
            w,
            &payloads,
            if o.pack { 1 } else { o.batch },
            o.timeout,
        )?;
        let verdict = if !r.finished {
            ok = false;
            "  TIMEOUT (seconds = the timeout)"
        } else if r.rows != expected {
            ok = false;
            "  MISMATCH"
        } else {
            ""
        };
        println!(
            "{:>8} {:>7} {:>10} {:>9.3} {:>12.0} {:>11} {:>9} {:>13}  {}{}",
            wl,
            w,
            o.events,
            r.seconds,
            o.events as f64 / r.seconds,
            r.rows,
            r.batches,
            r.peak_rss_kb.map_or("?".to_string(), |k| k.to_string()),
            r.status,
            verdict,
        );
        if !r.finished {
            println!("        rule metrics when it timed out: {}", r.metrics);
        }
    }
    if !ok {
        eprintln!(
            "FAILED: a run timed out or its output rows differ from the expected {} (w1) / {} (w2)",
            workload.hot, workload.window_groups
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let o = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    match e2e(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
