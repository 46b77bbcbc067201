//! Rule tests (eKuiper's rule test run): temporary rules over mocked rows whose results go to
//! WebSocket clients of `ws://<push listener>/test/<id>`.
//!
//! A test is a hidden engine rule (see `quiver_dataflow::TestInput`): its mocked streams read a
//! simulator with the given rows, the others their real source, and its one action is a
//! server-mode `websocket` sink on `/test/<id>` (eKuiper's endpoint, on eKuiper's HTTP data
//! server port, which is quiverd's push listener). The path is open from creation, so a client
//! connects before the start and sees every result. Tests are not rules: `/rules` does not list
//! them and nothing is persisted.
//!
//! Bounds: at most [`MAX_TESTS`] at once; at most [`MAX_MOCK_ROWS`] mocked rows per test (the
//! REST body limit bounds their bytes); a test not started within the idle timeout, or started
//! and without a client for that long, is removed, and any test is removed
//! [`MAX_RUN`] after its start (eKuiper's fixed run time). `DELETE`, these timeouts and the
//! server's shutdown all remove a test the same way: the rule is deleted and its clients are
//! sent a Close frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_connectors::websocket::{HubSink, WebsocketHub};
use quiver_dataflow::{Action, Engine, EngineError, Mocks, RuleSpec, TestInput};
use serde_json::{Map, Value};

/// The URL path prefix of the tests' WebSocket endpoints on the push listener.
pub const WS_PREFIX: &str = "/test/";

/// Tests open at once; each holds a compiled rule and, once started, sources and a dataflow.
pub const MAX_TESTS: usize = 16;

/// Mocked rows of one test, all streams together: they are held in memory and replayed.
pub const MAX_MOCK_ROWS: usize = 10_000;

/// The longest a test runs after its start (eKuiper's fixed run time).
pub const MAX_RUN: Duration = Duration::from_secs(10 * 60);

/// The default idle timeout: not started, or started and without a client, for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest test id: it is a URL path segment.
const MAX_ID: usize = 128;

/// Sink properties a test may not set: its results always go to its own endpoint.
const FIXED_SINK_KEYS: &[&str] = &["path", "addr", "scheme"];

/// Why a test request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleTestError {
    /// The request is invalid (400).
    #[error("{0}")]
    Invalid(String),
    /// No such test (404).
    #[error("test rule \"{0}\" not found")]
    NotFound(String),
    /// [`MAX_TESTS`] are open (429).
    #[error("too many rule tests: {MAX_TESTS} are open, the limit; delete one first")]
    TooMany,
    /// The engine refused it.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A `POST /ruletest` body: eKuiper's `{id, sql, mockSource, sinkProps}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDef {
    /// The test's id (letters, digits, `_`, `-`, `.`); a test with the same id is replaced.
    pub id: String,
    /// The rule's SELECT.
    pub sql: String,
    /// Mocked streams: name → simulator properties (`data`, `interval`, `loop`).
    #[serde(rename = "mockSource", default)]
    pub mock_source: Mocks,
    /// Common sink properties (`fields`, `dataTemplate`, `sendSingle`, ...).
    #[serde(rename = "sinkProps", default)]
    pub sink_props: Map<String, Value>,
}

/// One open test.
struct Test {
    /// Its hidden engine rule.
    rule: String,
    /// Its WebSocket path, `/test/<id>`.
    path: String,
    /// Keeps the path open for clients from creation until removal.
    _endpoint: HubSink,
    created: Instant,
    started: Option<Instant>,
    /// Since when a started test has had no client.
    alone_since: Option<Instant>,
}

/// The open rule tests. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct RuleTests {
    engine: Engine,
    hub: WebsocketHub,
    /// The push listener's port, returned to clients.
    port: u16,
    idle: Duration,
    tests: Arc<Mutex<HashMap<String, Test>>>,
}

impl RuleTests {
    /// No tests yet; clients are told to connect to `port`. Starts the task that removes idle
    /// tests (it ends with the runtime).
    pub fn new(engine: Engine, port: u16, idle: Duration) -> Self {
        let hub = engine.connectors().websocket().clone();
        let tests = RuleTests {
            engine,
            hub,
            port,
            idle,
            tests: Arc::default(),
        };
        let sweeper = tests.clone();
        tokio::spawn(async move {
            // Checked four times per timeout: a test outlives it by a quarter at most.
            let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                sweeper.sweep();
            }
        });
        tests
    }

    /// The port of the WebSocket endpoints.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates (or replaces) a test, stopped; its endpoint accepts clients from now on.
    pub fn create(&self, def: TestDef) -> Result<String, RuleTestError> {
        check_id(&def.id)?;
        let rows: usize = def.mock_source.values().map(mock_rows).sum();
        if rows > MAX_MOCK_ROWS {
            return Err(RuleTestError::Invalid(format!(
                "mockSource holds {rows} rows, above the limit of {MAX_MOCK_ROWS}"
            )));
        }
        if let Some(key) = def
            .sink_props
            .keys()
            .find(|k| FIXED_SINK_KEYS.iter().any(|f| k.eq_ignore_ascii_case(f)))
        {
            return Err(RuleTestError::Invalid(format!(
                "sinkProps \"{key}\" cannot be set: a test's results go to {WS_PREFIX}{}",
                def.id
            )));
        }
        let path = format!("{WS_PREFIX}{}", def.id);
        let mut props = def.sink_props;
        props.insert("path".into(), Value::String(path.clone()));
        // A random part makes the hidden rule's id unguessable, so no `/rules/{id}` route can
        // reach it.
        let rule = format!("$$test_{:016x}_{}", nonce(), def.id);
        let spec = RuleSpec {
            id: rule.clone(),
            name: def.id.clone(),
            sql: def.sql,
            actions: vec![Action {
                sink_type: "websocket".into(),
                props: Value::Object(props),
            }],
            // eKuiper's test rules send operator errors to the viewer too.
            options: Map::from_iter([("sendError".to_string(), Value::Bool(true))]),
        };
        let mut tests = self.tests.lock().expect("rule tests lock");
        if let Some(old) = tests.remove(&def.id) {
            tracing::info!(test = %def.id, "rule test replaced by a new one with its id");
            self.remove(old);
        }
        if tests.len() >= MAX_TESTS {
            return Err(RuleTestError::TooMany);
        }
        self.engine.create_test_rule(
            spec,
            TestInput {
                mocks: def.mock_source,
            },
        )?;
        let endpoint = self.hub.open_sink(&path);
        tests.insert(
            def.id.clone(),
            Test {
                rule,
                path,
                _endpoint: endpoint,
                created: Instant::now(),
                started: None,
                alone_since: None,
            },
        );
        Ok(def.id)
    }

    /// Starts a test's rule (again, if it ran before).
    pub fn start(&self, id: &str) -> Result<(), RuleTestError> {
        let mut tests = self.tests.lock().expect("rule tests lock");
        let test = tests
            .get_mut(id)
            .ok_or_else(|| RuleTestError::NotFound(id.to_string()))?;
        self.engine.restart_rule(&test.rule)?;
        test.started = Some(Instant::now());
        test.alone_since = None;
        Ok(())
    }

    /// Stops and forgets a test; its clients are disconnected.
    pub fn delete(&self, id: &str) -> Result<(), RuleTestError> {
        let test = self
            .tests
            .lock()
            .expect("rule tests lock")
            .remove(id)
            .ok_or_else(|| RuleTestError::NotFound(id.to_string()))?;
        self.remove(test);
        Ok(())
    }

    /// Removes every test (the server is stopping).
    pub fn shutdown(&self) {
        let all: Vec<Test> = self
            .tests
            .lock()
            .expect("rule tests lock")
            .drain()
            .map(|(_, t)| t)
            .collect();
        all.into_iter().for_each(|t| self.remove(t));
    }

    /// Ids of the open tests, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tests
            .lock()
            .expect("rule tests lock")
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn remove(&self, test: Test) {
        if let Err(e) = self.engine.delete_rule(&test.rule) {
            tracing::warn!(rule = %test.rule, "removing a rule test: {e}");
        }
        self.hub.close_clients(&test.path);
    }

    /// Removes the tests past a timeout.
    fn sweep(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut tests = self.tests.lock().expect("rule tests lock");
            for (id, test) in tests.iter_mut() {
                let clients = self.hub.clients(&test.path);
                let why = match test.started {
                    None if now - test.created >= self.idle => Some("it was not started"),
                    Some(started) if now - started >= MAX_RUN => Some("its run time is over"),
                    Some(_) if clients == 0 => {
                        let since = *test.alone_since.get_or_insert(now);
                        (now - since >= self.idle).then_some("no client is connected")
                    }
                    _ => {
                        test.alone_since = None;
                        None
                    }
                };
                if let Some(why) = why {
                    expired.push((id.clone(), why));
                }
            }
            for (id, why) in &expired {
                let test = tests.remove(id).expect("listed above");
                tracing::info!(test = %id, "rule test removed: {why}");
                self.remove(test);
            }
        }
    }
}

/// Rows of one mock: its `data` list, or one row for an object or the simulator's default.
fn mock_rows(props: &Map<String, Value>) -> usize {
    match props.get("data") {
        Some(Value::Array(rows)) => rows.len(),
        _ => 1,
    }
}

/// Refuses an id that is not one plain URL path segment.
fn check_id(id: &str) -> Result<(), RuleTestError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if id.is_empty() || id.len() > MAX_ID || !id.chars().all(plain) || id == "." || id == ".." {
        return Err(RuleTestError::Invalid(format!(
            "test rule id \"{id}\" must be 1 to {MAX_ID} letters, digits, \"_\", \"-\" or \".\" (it is a URL path segment)"
        )));
    }
    Ok(())
}

/// A process-random number (std's hasher keys are seeded from the OS).
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_segments() {
        assert!(check_id("t-1.a_b").is_ok());
        for bad in ["", "a/b", "..", "a b", "é", &"x".repeat(MAX_ID + 1)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mock_rows_count_lists_and_single_rows() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(mock_rows(&m(serde_json::json!({"data": [{}, {}]}))), 2);
        assert_eq!(mock_rows(&m(serde_json::json!({"data": {"a": 1}}))), 1);
        assert_eq!(mock_rows(&m(serde_json::json!({}))), 1);
    }
}
