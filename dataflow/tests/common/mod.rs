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
        // Plans depend on the cores; the goldens compare plans, so they fix them.
        EngineConfig {
            workers,
            cores: 2,
            data_dir: None,
        },
        rt.handle().clone(),
        Connectors::new(),
    )
    .expect("engine starts")
}

/// A cluster of `processes` engines in this process (1 worker each, connected over loopback
/// TCP on free ports, one memory bus); the leader first.
#[allow(dead_code)] // Only the tests that run on a cluster use it.
pub fn cluster(rt: &tokio::runtime::Runtime, processes: usize) -> Vec<Engine> {
    // Held until every port is picked, so no two are the same.
    let picked: Vec<std::net::TcpListener> = (0..processes)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let addresses = picked
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(picked);
    Engine::start_cluster_in_process(
        EngineConfig {
            workers: 1,
            cores: 2,
            data_dir: None,
        },
        addresses,
        1,
        rt.handle().clone(),
        Connectors::new(),
    )
    .expect("the cluster starts")
}

/// Closes the input topic, waits for rule `id` to finish and returns every row its memory
/// sink published on `out`, sorted by their JSON text.
#[allow(dead_code)] // Only the tests that read a rule's output to the end use it.
pub async fn finish_rule(
    engine: &Engine,
    id: &str,
    input_topic: &str,
    out: &mut tokio::sync::mpsc::Receiver<quiver_connectors::memory::MemoryMessage>,
) -> Vec<serde_json::Value> {
    engine.connectors().memory().close(input_topic);
    assert!(
        engine
            .wait_finished(id, std::time::Duration::from_secs(30))
            .await
            .unwrap(),
        "rule {id} did not finish within 30 s after its input ended"
    );
    let mut rows = Vec::new();
    while let Ok(msg) = out.try_recv() {
        if let quiver_connectors::memory::MemoryPayload::Batch(b) = msg.payload {
            rows.extend(
                quiver_connectors::codec::encode::batch_to_rows(&b, false)
                    .into_iter()
                    .map(serde_json::Value::Object),
            );
        }
    }
    rows.sort_by_key(|r| r.to_string());
    rows
}

/// Creates rule `id` running `sql` into a memory sink on topic `out/<id>`, subscribed first,
/// and returns the subscription.
#[allow(dead_code)] // Only the tests that create rules through the engine use it.
pub fn memory_rule(
    engine: &Engine,
    id: &str,
    sql: &str,
) -> tokio::sync::mpsc::Receiver<quiver_connectors::memory::MemoryMessage> {
    let topic = format!("out/{id}");
    let out = engine.connectors().memory().subscribe(&topic);
    engine
        .create_rule(quiver_dataflow::RuleSpec {
            id: id.into(),
            name: id.into(),
            sql: sql.into(),
            actions: vec![quiver_dataflow::Action {
                sink_type: "memory".into(),
                props: serde_json::json!({ "topic": topic }),
            }],
            options: Default::default(),
        })
        .unwrap();
    out
}

/// Rule `id`'s exceptions summed over its nodes, and their last exception texts joined.
#[allow(dead_code)] // Only the tests that count exceptions use it.
pub fn exceptions(engine: &Engine, id: &str) -> (u64, String) {
    let status = engine.rule_status(id).unwrap();
    let total = status
        .metrics
        .iter()
        .filter(|(k, _)| k.ends_with("_exceptions_total"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    let last = status
        .metrics
        .iter()
        .filter(|(k, _)| k.ends_with("_last_exception"))
        .filter_map(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    (total, last)
}
