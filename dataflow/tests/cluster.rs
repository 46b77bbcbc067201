//! A rule's dataflow on a cluster of two processes gives what it gives on one process. The two
//! processes are two runtimes in this test process, each with one worker, connected by timely
//! over loopback TCP: batches between them travel as Arrow IPC, exactly as between machines.
//!
//! An event-time window grouped by key: worker 0 reads every row (one watermark), the window
//! stage takes each key's rows on the worker the key hashes to, and worker 0 gathers each
//! window's results, so rows cross from process 0 to process 1 and results cross back. A
//! processing-time window: every worker reads a share, so rows cross both ways.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use quiver_compiler::StreamDef;
use quiver_compiler::plan::LogicalPlan;
use quiver_connectors::codec::Decoder;
use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::{RawMessage, SourceEvent};
use quiver_dataflow::container::encoded_bytes;
use quiver_dataflow::metrics::RuleMetrics;
use quiver_dataflow::physical::{EventTime, Exchange, Input, PhysicalPlan, Stage, Target, lower};
use quiver_dataflow::render::{RuleDataflow, TableInputs};
use quiver_dataflow::runtime::{ClusterConfig, Command, Workers};
use serde_json::Value;
use tokio::sync::mpsc;

const STREAM: &str = r#"CREATE STREAM s (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="s", TYPE="mqtt", TIMESTAMP="ts")"#;
/// Run in event time: four windows of 1 s over the rows' `ts`.
const EVENT_TIME_RULE: &str = "SELECT k, count(*) AS c, sum(v) AS total, window_start() AS ws, \
     window_end() AS we FROM s GROUP BY k, TUMBLINGWINDOW(ss, 1)";
/// Run in processing time: the windows the wall clock makes; every run adds up to the input.
const PROCESSING_TIME_RULE: &str =
    "SELECT k, count(*) AS c, sum(v) AS total FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10)";
/// Keys of the input: enough that both workers own some.
const KEYS: usize = 8;
/// Messages of the input, 100 ms apart in `ts`: 4 event-time windows.
const MESSAGES: usize = 40;

/// The stream and the rule's logical and physical plans, with the window's groups spread over
/// the workers.
fn plan(sql: &str, event_time: bool) -> (StreamDef, LogicalPlan, PhysicalPlan) {
    let def = quiver_compiler::parse_create(STREAM).expect("the stream parses");
    let catalog = HashMap::from([(def.name.clone(), def.clone())]);
    let rule = quiver_compiler::compile_rule(sql, &catalog, quiver_compiler::Registry::builtin())
        .expect("the rule compiles");
    let sinks = ["memory".to_string()];
    let target = Target {
        stream: &def.name,
        source_type: &def.options.source_type,
        shared: false,
        // As the engine takes it from the stream's TIMESTAMP; rows arrive in time order, so
        // the watermark needs no lateness.
        event_time: event_time
            .then(|| def.options.timestamp.clone())
            .flatten()
            .map(|field| EventTime {
                field,
                format: def.options.timestamp_format.clone(),
                tolerance: 0,
                sources: 1,
            }),
        sinks: &sinks,
        send_nil: false,
        // Spread event-time windows' groups over the workers (else worker 0 keeps them all).
        spare_cores: true,
        own_tables: false,
    };
    let physical = lower(&rule.plan, &target);
    (def, rule.plan, physical)
}

/// One process's run of a rule: its dataflow, the queues into its workers' sources (by worker
/// index over all processes) and where the results come out.
struct Run {
    dataflow: Arc<RuleDataflow>,
    inputs: Vec<Option<mpsc::Sender<SourceEvent>>>,
    results: mpsc::Receiver<RecordBatch>,
    metrics: Arc<RuleMetrics>,
}

/// The rule's dataflow as one process builds it for `peers` workers over all processes.
fn run(sql: &str, event_time: bool, peers: usize) -> Run {
    let (def, logical, physical) = plan(sql, event_time);
    let physical = Arc::new(physical);
    let metrics = Arc::new(RuleMetrics::with_nodes(&physical.nodes));
    let (ingest_tx, ingest_rx): (Vec<_>, Vec<_>) =
        (0..peers).map(|_| mpsc::channel(MESSAGES)).unzip();
    let (sink_tx, results) = mpsc::channel(1024);
    let dataflow = Arc::new(RuleDataflow {
        key: "cluster#1".into(),
        physical,
        metrics: metrics.clone(),
        decoder: Decoder::for_stream(&def, false).expect("a JSON decoder"),
        ingest: Mutex::new(ingest_rx.into_iter().map(Some).collect()),
        activators: Arc::new(Mutex::new(vec![None; peers])),
        sinks: vec![sink_tx],
        late_rows: Arc::new(AtomicU64::new(0)),
        rule: Arc::new(quiver_compiler::eval::RuleContext {
            id: "cluster".into(),
            start_ms: 0,
        }),
        tables: TableInputs::default(),
        to_windows: Arc::new(AtomicUsize::new(0)),
        fault: Arc::new(quiver_dataflow::fault::Fault::new(Arc::new(Mutex::new(
            None,
        )))),
        checkpoint: None,
        replay_until: Vec::new(),
        hits: quiver_compiler::hit::plan_sites(&logical),
    });
    Run {
        dataflow,
        inputs: ingest_tx.into_iter().map(Some).collect(),
        results,
        metrics,
    }
}

/// The input: `MESSAGES` rows over `KEYS` keys, `v` counting up, in time order.
fn messages() -> Vec<RawMessage> {
    messages_from(0)
}

/// The input with the first row at `ts` = `first` ms.
fn messages_from(first: usize) -> Vec<RawMessage> {
    let topic: Arc<str> = Arc::from("s");
    (0..MESSAGES)
        .map(|i| {
            let ts = first + i * 100;
            let row = serde_json::json!({ "k": format!("k{}", i % KEYS), "v": i, "ts": ts });
            RawMessage::new(row.to_string().into_bytes(), topic.clone())
        })
        .collect()
}

/// Queues `messages` for `worker`'s source, in events of 5 messages.
fn feed(run: &mut Run, worker: usize, messages: &[RawMessage]) {
    let input = run.inputs[worker]
        .as_ref()
        .expect("the worker's queue is open");
    for chunk in messages.chunks(5) {
        input
            .try_send(SourceEvent::Raw(chunk.to_vec()))
            .expect("the queue holds the whole input");
    }
}

/// Closes every input queue of `run` (each source ends once it has read its queue), builds
/// the dataflow on `workers` and hands back where its results come out: from now on the
/// dataflow holds the only senders into it.
fn start(workers: &Workers, run: Run) -> (mpsc::Receiver<RecordBatch>, Arc<RuleMetrics>) {
    let Run {
        dataflow,
        inputs,
        results,
        metrics,
    } = run;
    drop(inputs);
    workers.broadcast(|| Command::Build(dataflow.clone()));
    (results, metrics)
}

/// Starts a cluster of `processes` processes of one worker each, on loopback.
fn cluster(processes: usize) -> Vec<Workers> {
    let addresses = free_addresses(processes);
    std::thread::scope(|s| {
        let starting: Vec<_> = (0..processes)
            .map(|process| {
                let cluster = ClusterConfig {
                    process,
                    addresses: addresses.clone(),
                    threads: 1,
                };
                // Timely returns once every process is connected: they start side by side.
                s.spawn(move || Workers::start_cluster(cluster))
            })
            .collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("start").expect("a cluster process"))
            .collect()
    })
}

/// Every emission until the dataflow completes (its sink operators drop the queue's senders),
/// each as its rows in JSON text, sorted; the emissions sorted too.
fn emissions(results: &mut mpsc::Receiver<RecordBatch>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    while let Some(batch) = results.blocking_recv() {
        let mut rows: Vec<String> = batch_to_rows(&batch, false)
            .into_iter()
            .map(|r| serde_json::Value::Object(r).to_string())
            .collect();
        rows.sort();
        out.push(rows);
    }
    out.sort();
    out
}

/// The window stage's metric node.
fn window_node(physical: &PhysicalPlan) -> usize {
    physical
        .stages
        .iter()
        .find_map(|s| match s {
            Stage::Window { node, .. } => Some(*node),
            _ => None,
        })
        .expect("the rule has a window stage")
}

/// Two loopback addresses no one listens on.
fn free_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").to_string())
        .collect()
}

/// Stops runtimes side by side: a cluster process's shutdown waits for the others'.
fn shutdown(workers: Vec<Workers>) {
    std::thread::scope(|s| {
        for w in workers {
            s.spawn(move || w.shutdown());
        }
    });
}

/// Runs each process's run of a rule on its process of the cluster until the dataflow
/// completes, then stops the cluster: what each process emitted, and its counters.
fn run_on(workers: Vec<Workers>, runs: Vec<Run>) -> (Vec<Vec<Vec<String>>>, Vec<Arc<RuleMetrics>>) {
    let (mut results, metrics): (Vec<_>, Vec<_>) = workers
        .iter()
        .zip(runs)
        .map(|(w, run)| start(w, run))
        .unzip();
    let emitted = results.iter_mut().map(emissions).collect();
    shutdown(workers);
    (emitted, metrics)
}

/// Per key, the sum of `c` and of `total` over every emission.
fn sums(emissions: &[Vec<String>]) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for row in emissions.iter().flatten() {
        let row: Value = serde_json::from_str(row).expect("a JSON row");
        let key = row["k"].as_str().expect("a key").to_string();
        let entry = out.entry(key).or_insert((0, 0));
        entry.0 += row["c"].as_i64().expect("a count");
        entry.1 += row["total"].as_i64().expect("a sum");
    }
    out
}

#[test]
fn a_window_rule_on_two_processes_emits_what_one_process_of_two_workers_emits() {
    // One process, two workers: batches are handed over by pointer.
    let workers = Workers::start(2).expect("two workers");
    let mut single = run(EVENT_TIME_RULE, true, 2);
    assert_eq!(single.dataflow.physical.input, Input::FirstWorker);
    feed(&mut single, 0, &messages());
    let (mut results, _) = start(&workers, single);
    let expected = emissions(&mut results);
    shutdown(vec![workers]);
    assert_eq!(expected.len(), 4, "one emission per window: {expected:?}");
    assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), 4 * KEYS);

    // The counter only grows; other tests of this binary may encode at the same time.
    let before = encoded_bytes();
    let workers = cluster(2);
    assert_eq!((workers[1].local(), workers[1].count()), (1..2, 2));
    let mut runs: Vec<Run> = (0..2).map(|_| run(EVENT_TIME_RULE, true, 2)).collect();
    let window = window_node(&runs[0].dataflow.physical);
    // Worker 0 reads every row; the second process's worker reads nothing.
    feed(&mut runs[0], 0, &messages());
    let (emitted, metrics) = run_on(workers, runs);
    let (got, on_second) = (&emitted[0], &emitted[1]);

    assert_eq!(*got, expected);
    // Worker 0 gathers every window: the second process emits nothing of its own...
    assert!(on_second.is_empty(), "{on_second:?}");
    // ... but its window took the rows of the keys it owns, all read by the first process,
    // and its results reached the first process's sink.
    let (first, second) = (metrics[0].at(window), metrics[1].at(window));
    assert!(
        second.records_in() > 0,
        "no row crossed to the second process"
    );
    assert!(second.records_out() > 0, "no result crossed back");
    assert_eq!(first.records_in() + second.records_in(), MESSAGES as u64);
    assert!(encoded_bytes() > before, "nothing went through Arrow IPC");
}

#[test]
fn every_process_reads_a_share_and_the_windows_add_up_to_the_input() {
    let input = messages();
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..MESSAGES {
        let entry = expected.entry(format!("k{}", i % KEYS)).or_default();
        *entry = (entry.0 + 1, entry.1 + i as i64);
    }

    let workers = cluster(2);
    let mut runs: Vec<Run> = (0..2)
        .map(|_| run(PROCESSING_TIME_RULE, false, 2))
        .collect();
    let physical = runs[0].dataflow.physical.clone();
    assert_eq!(physical.input, Input::AllWorkers);
    assert!(
        physical.stages.iter().any(|s| matches!(
            s,
            Stage::Window {
                exchange: Exchange::ByKey,
                ..
            }
        )),
        "{}",
        physical.explain()
    );
    // Each process's worker reads half the input; every key has rows in both halves.
    let (first_half, second_half) = input.split_at(MESSAGES / 2);
    feed(&mut runs[0], 0, first_half);
    feed(&mut runs[1], 1, second_half);
    let (emitted, metrics) = run_on(workers, runs);
    let (got, on_second) = (&emitted[0], &emitted[1]);

    // However the wall clock cut the windows, they add up to the input, per key.
    assert_eq!(sums(got), expected);
    assert!(on_second.is_empty(), "{on_second:?}");
    let window = window_node(&physical);
    let read: Vec<u64> = metrics
        .iter()
        .map(|m| m.at(physical.source).records_in())
        .collect();
    assert_eq!(read, [MESSAGES as u64 / 2; 2]);
    // Both windows took rows; as every key has rows in both halves, each took some from the
    // other process.
    let taken: Vec<u64> = metrics.iter().map(|m| m.at(window).records_in()).collect();
    assert!(taken.iter().all(|&t| t > 0), "{taken:?}");
    assert_eq!(taken.iter().sum::<u64>(), MESSAGES as u64);
}

#[test]
fn an_event_time_window_spread_over_workers_starts_where_one_worker_starts_it() {
    // eKuiper's first event-time window starts at the first row the window saw (a hopping
    // one a hop before it); with the groups spread, every worker must take the rule's first
    // row, not its own keys' first. The first row is not on a window bound, so it shows.
    let first = 1_000_250;
    let rules = [
        ("TUMBLINGWINDOW(ss, 1)", first as i64),
        ("HOPPINGWINDOW(ss, 2, 1)", first as i64 - 1000),
    ];
    for (window, first_start) in rules {
        let sql = format!(
            "SELECT k, count(*) AS c, window_start() AS ws, window_end() AS we FROM s \
             GROUP BY k, {window}"
        );
        let mut results = Vec::new();
        for workers in [1, 2] {
            let pool = Workers::start(workers).expect("workers");
            let mut one = run(&sql, true, workers);
            assert!(
                one.dataflow.physical.stages.iter().any(|s| matches!(
                    s,
                    Stage::Window {
                        exchange: Exchange::ByKey,
                        ..
                    }
                )),
                "{}",
                one.dataflow.physical.explain()
            );
            feed(&mut one, 0, &messages_from(first));
            let (mut out, _) = start(&pool, one);
            results.push(emissions(&mut out));
            shutdown(vec![pool]);
        }
        let (one, two) = (&results[0], &results[1]);
        // The first window (ending at the first second after the first row) holds every key.
        let mut starts: Vec<(String, i64)> = one
            .iter()
            .flatten()
            .map(|r| serde_json::from_str::<Value>(r).expect("a JSON row"))
            .filter(|r| r["we"] == 1_001_000)
            .map(|r| {
                (
                    r["k"].as_str().expect("a key").to_string(),
                    r["ws"].as_i64().expect("a start"),
                )
            })
            .collect();
        starts.sort();
        let expected: Vec<(String, i64)> =
            (0..KEYS).map(|k| (format!("k{k}"), first_start)).collect();
        assert_eq!(starts, expected, "{window} on one worker");
        assert_eq!(two, one, "{window}: two workers emit what one emits");
    }
}
