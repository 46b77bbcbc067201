//! A rule's dataflow on a cluster of two processes gives what it gives on one process of two
//! workers. The two processes are two runtimes in this test process, each with one worker,
//! connected by timely over loopback TCP: batches between them travel as Arrow IPC, exactly as
//! between machines.
//!
//! The rule is an event-time window grouped by key: worker 0 reads every row (one watermark),
//! the window stage takes each key's rows on the worker the key hashes to, and worker 0 gathers
//! each window's results. So rows cross from process 0 to process 1 and results cross back.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use quiver_compiler::StreamDef;
use quiver_connectors::codec::Decoder;
use quiver_connectors::codec::encode::batch_to_rows;
use quiver_connectors::{RawMessage, SourceEvent};
use quiver_dataflow::container::encoded_bytes;
use quiver_dataflow::metrics::RuleMetrics;
use quiver_dataflow::physical::{EventTime, PhysicalPlan, Stage, Target, lower};
use quiver_dataflow::render::{RuleDataflow, TableInputs};
use quiver_dataflow::runtime::{ClusterConfig, Command, Workers};
use tokio::sync::mpsc;

const STREAM: &str = r#"CREATE STREAM s (k STRING, v BIGINT, ts BIGINT) WITH (DATASOURCE="s", TYPE="mqtt", TIMESTAMP="ts")"#;
const RULE: &str = "SELECT k, count(*) AS c, sum(v) AS total, window_start() AS ws, window_end() AS we \
     FROM s GROUP BY k, TUMBLINGWINDOW(ss, 1)";
/// Keys of the input: enough that both workers own some.
const KEYS: usize = 8;
/// Messages of the input, 100 ms apart: 4 windows.
const MESSAGES: usize = 40;

/// The stream and the rule's event-time physical plan, its groups spread over the workers.
fn plan() -> (StreamDef, quiver_compiler::plan::LogicalPlan, PhysicalPlan) {
    let def = quiver_compiler::parse_create(STREAM).expect("the stream parses");
    let catalog = HashMap::from([(def.name.clone(), def.clone())]);
    let rule = quiver_compiler::compile_rule(RULE, &catalog, quiver_compiler::Registry::builtin())
        .expect("the rule compiles");
    let sinks = ["memory".to_string()];
    let target = Target {
        stream: &def.name,
        source_type: &def.options.source_type,
        shared: false,
        // As the engine takes it from the stream's TIMESTAMP; rows arrive in time order, so
        // the watermark needs no lateness.
        event_time: def.options.timestamp.clone().map(|field| EventTime {
            field,
            format: def.options.timestamp_format.clone(),
            tolerance: 0,
            sources: 1,
        }),
        sinks: &sinks,
        send_nil: false,
        // Spread the window's groups over the workers (else worker 0 keeps them all).
        spare_cores: true,
    };
    let physical = lower(&rule.plan, &target);
    (def, rule.plan, physical)
}

/// One process's run of the rule: its dataflow, the queue into worker 0's source and where
/// the results come out.
struct Run {
    dataflow: Arc<RuleDataflow>,
    input: Option<mpsc::Sender<SourceEvent>>,
    results: mpsc::Receiver<RecordBatch>,
    metrics: Arc<RuleMetrics>,
}

/// The rule's dataflow as one process builds it for `peers` workers over all processes.
fn run(peers: usize) -> Run {
    let (def, logical, physical) = plan();
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
    // Worker 0 reads every row of an event-time rule; the other queues close at once.
    let input = ingest_tx.into_iter().next();
    Run {
        dataflow,
        input,
        results,
        metrics,
    }
}

/// The input: `MESSAGES` rows over `KEYS` keys, in time order, in events of 5 messages.
fn events() -> Vec<SourceEvent> {
    let topic: Arc<str> = Arc::from("s");
    let messages: Vec<RawMessage> = (0..MESSAGES)
        .map(|i| {
            let row = serde_json::json!({ "k": format!("k{}", i % KEYS), "v": i, "ts": i * 100 });
            RawMessage::new(row.to_string().into_bytes(), topic.clone())
        })
        .collect();
    messages
        .chunks(5)
        .map(|c| SourceEvent::Raw(c.to_vec()))
        .collect()
}

/// Feeds the input to `run`'s worker 0 and closes it: the source ends when it has read it.
fn feed(run: &mut Run) {
    let input = run
        .input
        .take()
        .expect("worker 0's queue is in this process");
    for event in events() {
        input
            .try_send(event)
            .expect("the queue holds the whole input");
    }
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

#[test]
fn a_window_rule_on_two_processes_emits_what_one_process_of_two_workers_emits() {
    // One process, two workers: batches are handed over by pointer, never encoded.
    let before = encoded_bytes();
    let workers = Workers::start(2).expect("two workers");
    let mut single = run(2);
    feed(&mut single);
    let dataflow = single.dataflow.clone();
    workers.broadcast(|| Command::Build(dataflow.clone()));
    drop(dataflow);
    drop(single.dataflow);
    let expected = emissions(&mut single.results);
    shutdown(vec![workers]);
    assert_eq!(encoded_bytes(), before, "one process encodes nothing");
    assert_eq!(expected.len(), 4, "one emission per window: {expected:?}");
    assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), 4 * KEYS);

    // Two processes of one worker each, on loopback.
    let addresses = free_addresses(2);
    let workers: Vec<Workers> = std::thread::scope(|s| {
        let starting: Vec<_> = (0..2)
            .map(|process| {
                let cluster = ClusterConfig {
                    process,
                    addresses: addresses.clone(),
                    threads: 1,
                };
                s.spawn(move || Workers::start_cluster(cluster))
            })
            .collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("start").expect("a cluster process"))
            .collect()
    });
    assert_eq!(workers[1].local(), 1..2);
    assert_eq!(workers[1].count(), 2);
    let mut runs: Vec<Run> = (0..2).map(|_| run(2)).collect();
    feed(&mut runs[0]);
    // The second process's worker reads nothing: its queue closes.
    runs[1].input = None;
    for (w, r) in workers.iter().zip(&mut runs) {
        let dataflow = r.dataflow.clone();
        w.broadcast(|| Command::Build(dataflow.clone()));
    }
    // The dataflows hold the only senders into the result queues from now on.
    let window = window_node(&runs[0].dataflow.physical);
    let metrics: Vec<Arc<RuleMetrics>> = runs.iter().map(|r| r.metrics.clone()).collect();
    let mut results: Vec<mpsc::Receiver<RecordBatch>> =
        runs.into_iter().map(|r| r.results).collect();
    let got = emissions(&mut results[0]);
    let on_second = emissions(&mut results[1]);
    shutdown(workers);

    assert_eq!(got, expected);
    // Worker 0 gathers every window: the second process emits nothing of its own...
    assert!(on_second.is_empty(), "{on_second:?}");
    // ... but its window took the rows of the keys it owns, all read by the first process,
    // and its results reached the first process's sink.
    let second = metrics[1].at(window);
    let first = metrics[0].at(window);
    assert!(
        second.records_in() > 0,
        "no row crossed to the second process"
    );
    assert!(second.records_out() > 0, "no result crossed back");
    assert_eq!(first.records_in() + second.records_in(), MESSAGES as u64);
    assert!(encoded_bytes() > before, "nothing went through Arrow IPC");
}
