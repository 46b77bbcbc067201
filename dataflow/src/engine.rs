//! The engine: streams, rules and their lifecycle over the timely runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use quiver_compiler::plan::LogicalPlan;
use quiver_compiler::{Registry, RulePlan, Statement, StreamDef, StreamKind};
use quiver_connectors::codec::json::JsonDecoder;
use quiver_connectors::{Connectors, SourceEvent, SourceOutput, SourceSpec};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::error::EngineError;
use crate::metrics::{NodeMetrics, RuleMetrics};
use crate::render::RuleDataflow;
use crate::runtime::{Command, Workers};
use crate::sinkprops::SinkSettings;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Timely worker threads (default: the number of cores).
    pub workers: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// One action of a rule: a sink type and its properties (`{"log": {}}` in rule JSON).
#[derive(Debug, Clone)]
pub struct Action {
    /// Sink type (`log`, `memory`, ...).
    pub sink_type: String,
    /// Its properties.
    pub props: Value,
}

/// A rule as submitted: eKuiper's rule JSON fields.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Unique id.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// The SELECT.
    pub sql: String,
    /// Where results go.
    pub actions: Vec<Action>,
    /// Rule options (`bufferLength`, ...), eKuiper's names.
    pub options: serde_json::Map<String, Value>,
}

/// Connection profiles: source type → `CONF_KEY` → properties (eKuiper's `etc/sources/*.yaml`).
pub type SourceProfiles = HashMap<String, HashMap<String, serde_json::Map<String, Value>>>;

/// Rule options this engine implements; the others are accepted and reported in the status.
const IMPLEMENTED_OPTIONS: &[&str] = &["bufferLength", "isEventTime", "lateTolerance"];

/// What `GET /rules/{id}/status` shows.
#[derive(Debug, Clone)]
pub struct RuleStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// Why it is in that state, or warnings.
    pub message: String,
    /// Last start, ms since the epoch (0: never).
    pub last_start_ms: i64,
    /// Last stop, ms since the epoch (0: never).
    pub last_stop_ms: i64,
    /// Metrics as `(key, value)` in topology order.
    pub metrics: Vec<(String, Value)>,
}

/// A running (or finished) instance of a rule.
struct RuleRun {
    key: String,
    /// The source's connection, when it has one (MQTT).
    connection: Option<Arc<quiver_connectors::mqtt::ConnectionState>>,
    source_node: String,
    metrics: Arc<RuleMetrics>,
    /// The rule's own source task, or its membership in a shared stream's source.
    source: SourceHandle,
    /// The sources of streams joined to the FROM stream and their decoders.
    joined_tasks: Vec<tokio::task::JoinHandle<()>>,
    done: watch::Receiver<bool>,
    error: Arc<Mutex<Option<String>>>,
    /// Rows dropped behind the watermark (event time).
    late_rows: Arc<std::sync::atomic::AtomicU64>,
    /// When the run finished by itself (its input ended and the sinks wrote everything), ms.
    finished_at: Arc<std::sync::atomic::AtomicI64>,
    /// Rows read and not yet taken by the rule's keyed or window operators.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The table indexes the run reads (released when it stops).
    indexes: Vec<crate::tables::feed::IndexSpec>,
}

/// How a rule run gets its input.
enum SourceHandle {
    /// A source task of its own.
    Own(tokio::task::JoinHandle<()>),
    /// A subscription to the shared source of this stream (`SHARED="true"`).
    Shared(String),
    /// Membership in the rule group of this shared stream.
    Grouped(String, Arc<crate::render::group::RuleGroup>),
}

/// One subscriber of a shared source: a rule run's worker queues and how to wake them.
struct Subscriber {
    key: String,
    out: SourceOutput,
    wake_all: Arc<dyn Fn() + Send + Sync>,
}

/// The single source of a `SHARED="true"` stream and the rule runs it feeds.
struct SharedSource {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connection: Option<Arc<quiver_connectors::mqtt::ConnectionState>>,
}

struct RuleEntry {
    spec: RuleSpec,
    plan: RulePlan,
    run: Option<RuleRun>,
    last_metrics: Option<Arc<RuleMetrics>>,
    last_start_ms: i64,
    last_stop_ms: i64,
    stop_message: String,
    runs: u64,
}

/// The stream-processing engine. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    connectors: Connectors,
    /// Built-ins plus plugin functions, which are added and removed at run time.
    registry: RwLock<Registry>,
    workers: Workers,
    streams: RwLock<BTreeMap<String, StreamDef>>,
    rules: Mutex<BTreeMap<String, RuleEntry>>,
    profiles: RwLock<SourceProfiles>,
    shared: Mutex<HashMap<String, SharedSource>>,
    /// Rule groups, by shared stream: its stateless rules in one dataflow.
    groups: Mutex<HashMap<String, Arc<crate::render::group::RuleGroup>>>,
    /// Tables: their rows and the tasks that feed them.
    tables: Mutex<HashMap<String, TableEntry>>,
}

/// A table and the tasks feeding it (its source and the decoder that applies rows); an
/// external lookup table has no task.
struct TableEntry {
    side: crate::tables::TableSide,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TableEntry {
    /// Rows received so far that every rule joining the table now sees (each upsert counts).
    fn applied(&self) -> u64 {
        match &self.side {
            crate::tables::TableSide::Scan(feed) => feed.applied(),
            crate::tables::TableSide::Lookup(l) => l.memory_state().map_or(0, |s| s.applied()),
        }
    }

    /// Rows held now: a scan table's, or those of a memory lookup table's topic.
    fn rows(&self) -> usize {
        match &self.side {
            crate::tables::TableSide::Scan(feed) => feed.rows(),
            crate::tables::TableSide::Lookup(l) => l.memory_state().map_or(0, |s| s.len()),
        }
    }
}

impl Drop for TableEntry {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Engine {
    /// Starts the timely workers. Source and sink tasks run on `runtime`.
    pub fn start(
        config: EngineConfig,
        runtime: tokio::runtime::Handle,
        connectors: Connectors,
    ) -> Result<Engine, EngineError> {
        let workers = Workers::start(config.workers).map_err(EngineError::Runtime)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                runtime,
                connectors,
                registry: RwLock::new(Registry::builtin().clone()),
                workers,
                streams: RwLock::new(BTreeMap::new()),
                rules: Mutex::new(BTreeMap::new()),
                profiles: RwLock::new(HashMap::new()),
                shared: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                tables: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The connector registry (and its memory bus).
    pub fn connectors(&self) -> &Connectors {
        &self.inner.connectors
    }

    /// Adds (or replaces) a SQL function, e.g. a plugin's; rules compiled from now on see it.
    pub fn register_function(&self, f: Arc<dyn quiver_compiler::functions::ScalarFunction>) {
        self.inner
            .registry
            .write()
            .expect("registry lock")
            .register(f);
    }

    /// Removes a SQL function added by [`Engine::register_function`].
    pub fn unregister_function(&self, name: &str) -> bool {
        self.inner
            .registry
            .write()
            .expect("registry lock")
            .remove(name)
    }

    /// The number of timely workers.
    pub fn workers(&self) -> usize {
        self.inner.workers.count()
    }

    /// Runs a `CREATE STREAM` or `CREATE TABLE` statement. A table starts reading its source
    /// at once and keeps its rows for every rule that joins it.
    pub fn create_stream(&self, sql: &str) -> Result<StreamDef, EngineError> {
        let def = match quiver_compiler::parse_statement(sql)? {
            Statement::Create(def) => *def,
            _ => {
                return Err(EngineError::Invalid(
                    "expected a CREATE STREAM or CREATE TABLE statement".into(),
                ));
            }
        };
        let lookup = is_lookup(&def)?;
        if lookup {
            check_lookup(&def, self.inner.connectors.lookup_types())?;
        }
        let known = self.inner.connectors.all_source_types();
        if !lookup && !known.contains(&def.options.source_type) {
            return Err(EngineError::Invalid(format!(
                "unknown source type \"{}\"; known types: {}",
                def.options.source_type,
                known.join(", ")
            )));
        }
        let mut streams = self.inner.streams.write().expect("streams lock");
        if streams.contains_key(&def.name) {
            return Err(EngineError::Duplicate(format!(
                "stream \"{}\" already exists",
                def.name
            )));
        }
        if def.kind == StreamKind::Table {
            let entry = if lookup {
                self.start_lookup(&def)?
            } else {
                self.start_table(&def)?
            };
            self.inner
                .tables
                .lock()
                .expect("tables lock")
                .insert(def.name.clone(), entry);
        }
        streams.insert(def.name.clone(), def.clone());
        Ok(def)
    }

    /// The connection profile a stream or table names (`CONF_KEY`, else `default`).
    fn profile_props(&self, def: &StreamDef) -> serde_json::Map<String, Value> {
        self.inner
            .profiles
            .read()
            .expect("profiles lock")
            .get(&def.options.source_type)
            .and_then(|p| p.get(def.options.conf_key.as_deref().unwrap_or("default")))
            .cloned()
            .unwrap_or_default()
    }

    /// What a connector needs to read `def`'s source: type, DATASOURCE and profile props.
    fn source_spec(&self, def: &StreamDef) -> SourceSpec {
        SourceSpec {
            source_type: def.options.source_type.clone(),
            datasource: def.options.datasource.clone(),
            props: self.profile_props(def),
        }
    }

    /// Starts feeding a scan table from its source.
    fn start_table(&self, def: &StreamDef) -> Result<TableEntry, EngineError> {
        let retain = match def.options.raw.get("RETAIN_SIZE") {
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                EngineError::Invalid(format!("RETAIN_SIZE must be a row count, got \"{v}\""))
            })?),
            None => None,
        };
        let (feed, mut upserts) = crate::tables::feed::TableFeed::new(
            &def.name,
            def.options.key.clone(),
            retain,
            JsonDecoder::new(def.arrow_schema(), false),
            self.inner.workers.count(),
        );
        let (source_task, mut rx) = self.table_source(def)?;
        // The source exists: the workers build the table (its rows wait in the bounded queues).
        self.inner
            .workers
            .broadcast(|| Command::CreateTable(feed.clone()));
        let decoder = JsonDecoder::new(def.arrow_schema(), false);
        let name = def.name.clone();
        let feeder = self.inner.runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                for b in &table_rows(event, &decoder, &name) {
                    let Some(skipped) = upserts.send(b).await else {
                        return;
                    };
                    warn_keyless(&name, skipped);
                }
            }
        });
        Ok(TableEntry {
            side: crate::tables::TableSide::Scan(feed),
            tasks: vec![source_task, feeder],
        })
    }

    /// Sets up a lookup table: a memory one keeps the rows published to its topic by KEY (fed
    /// like a scan table); an external one only creates its store client, which connects on
    /// the first lookup. Both read the cache settings from the profile's `lookup` object.
    fn start_lookup(&self, def: &StreamDef) -> Result<TableEntry, EngineError> {
        let props = self.profile_props(def);
        let cache = quiver_connectors::lookup::LookupCacheConfig::parse(&props)?;
        let (store, tasks) = if def.options.source_type == "memory" {
            let state = Arc::new(crate::tables::state::TableState::new(
                def.options.key.clone(),
                None,
            ));
            let tasks = self.feed_table(def, state.clone())?;
            (crate::tables::lookup::LookupStore::Memory(state), tasks)
        } else {
            let spec = SourceSpec {
                source_type: def.options.source_type.clone(),
                datasource: def.options.datasource.clone(),
                props,
            };
            let key = def.options.key.as_deref().unwrap_or_default();
            let source = self.inner.connectors.lookup_source(&spec, key)?;
            let decoder = JsonDecoder::new(def.arrow_schema(), false);
            (
                crate::tables::lookup::LookupStore::External { source, decoder },
                Vec::new(),
            )
        };
        Ok(TableEntry {
            side: crate::tables::TableSide::Lookup(Arc::new(
                crate::tables::lookup::LookupTable::new(store, cache),
            )),
            tasks,
        })
    }

    /// Starts a table's source task, writing to the queue returned.
    fn table_source(
        &self,
        def: &StreamDef,
    ) -> Result<(tokio::task::JoinHandle<()>, mpsc::Receiver<SourceEvent>), EngineError> {
        let mut source = self.inner.connectors.source(&self.source_spec(def))?;
        let (tx, rx) = mpsc::channel::<SourceEvent>(16);
        let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
        let name = def.name.clone();
        let task = self.inner.runtime.spawn(async move {
            if let Err(e) = source.run(out).await {
                tracing::error!(table = %name, "table source failed: {e}");
            }
        });
        Ok((task, rx))
    }

    /// Feeds a memory lookup table's `state` from its source: the source task writes to one
    /// queue, read by a task that decodes the rows and applies them to the table.
    fn feed_table(
        &self,
        def: &StreamDef,
        state: Arc<crate::tables::state::TableState>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, EngineError> {
        let (source_task, mut rx) = self.table_source(def)?;
        let decoder = JsonDecoder::new(def.arrow_schema(), false);
        let fed = state;
        let name = def.name.clone();
        let feeder = self.inner.runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                for b in &table_rows(event, &decoder, &name) {
                    warn_keyless(&name, fed.apply(b));
                }
            }
        });
        Ok(vec![source_task, feeder])
    }

    /// The names of the tables, sorted.
    pub fn table_names(&self) -> Vec<String> {
        self.inner
            .streams
            .read()
            .expect("streams lock")
            .values()
            .filter(|d| d.kind == StreamKind::Table)
            .map(|d| d.name.clone())
            .collect()
    }

    /// Rows a table has received so far (each upsert counts), `None` for an unknown table.
    pub fn table_applied(&self, name: &str) -> Option<u64> {
        self.inner
            .tables
            .lock()
            .expect("tables lock")
            .get(name)
            .map(TableEntry::applied)
    }

    /// True once a table's source has ended and every row it read is applied (a bounded
    /// source such as a file); `None` for an unknown table.
    pub fn table_loaded(&self, name: &str) -> Option<bool> {
        self.inner
            .tables
            .lock()
            .expect("tables lock")
            .get(name)
            .map(|t| {
                t.tasks.iter().all(|task| task.is_finished())
                    && match &t.side {
                        crate::tables::TableSide::Scan(feed) => feed.loaded(),
                        crate::tables::TableSide::Lookup(_) => true,
                    }
            })
    }

    /// The arrangements a scan table keeps on the workers, sorted: `base` (by row identity)
    /// and one per join key and placement that a rule has read (`Replicated(room)`), each
    /// shared by every rule joining that way; `None` for an unknown or lookup table.
    pub fn table_arrangements(&self, name: &str) -> Option<Vec<String>> {
        let tables = self.inner.tables.lock().expect("tables lock");
        match &tables.get(name)?.side {
            crate::tables::TableSide::Scan(feed) => Some(feed.arrangements()),
            crate::tables::TableSide::Lookup(_) => None,
        }
    }

    /// Rows a table holds now.
    pub fn table_rows(&self, name: &str) -> Option<usize> {
        self.inner
            .tables
            .lock()
            .expect("tables lock")
            .get(name)
            .map(TableEntry::rows)
    }

    /// Drops a stream; refused while rules use it.
    pub fn drop_stream(&self, name: &str) -> Result<(), EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let users: Vec<&str> = rules
            .values()
            .filter(|r| r.plan.plan.scan().stream == name || joins_table(&r.plan.plan, name))
            .map(|r| r.spec.id.as_str())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::InUse(format!(
                "stream \"{name}\" is used by rules: {}",
                users.join(", ")
            )));
        }
        let removed = self.inner.tables.lock().expect("tables lock").remove(name);
        if let Some(TableEntry {
            side: crate::tables::TableSide::Scan(_),
            ..
        }) = &removed
        {
            let name = name.to_string();
            self.inner
                .workers
                .broadcast(|| Command::DropTable(name.clone()));
        }
        drop(removed);
        match self
            .inner
            .streams
            .write()
            .expect("streams lock")
            .remove(name)
        {
            Some(_) => Ok(()),
            None => Err(EngineError::NotFound(format!(
                "stream \"{name}\" not found"
            ))),
        }
    }

    /// A stream's definition.
    pub fn stream(&self, name: &str) -> Option<StreamDef> {
        self.inner
            .streams
            .read()
            .expect("streams lock")
            .get(name)
            .cloned()
    }

    /// All stream names, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        self.inner
            .streams
            .read()
            .expect("streams lock")
            .values()
            .filter(|d| d.kind == StreamKind::Stream)
            .map(|d| d.name.clone())
            .collect()
    }

    /// Compiles a rule's SQL without creating it.
    pub fn compile(&self, sql: &str) -> Result<RulePlan, EngineError> {
        let streams = self.inner.streams.read().expect("streams lock");
        let catalog: HashMap<String, StreamDef> = streams
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(quiver_compiler::compile_rule(
            sql,
            &catalog,
            &self.inner.registry.read().expect("registry lock"),
        )?)
    }

    /// Creates a rule and starts it.
    pub fn create_rule(&self, spec: RuleSpec) -> Result<(), EngineError> {
        self.create_rule_with(spec, true)
    }

    /// Creates a rule, started or stopped (a stopped rule keeps its definition only).
    pub fn create_rule_with(&self, spec: RuleSpec, start: bool) -> Result<(), EngineError> {
        if spec.id.is_empty() {
            return Err(EngineError::Invalid("rule id is required".into()));
        }
        let plan = self.compile(&spec.sql)?;
        if spec.actions.is_empty() {
            return Err(EngineError::Invalid(
                "a rule needs at least one action".into(),
            ));
        }
        for a in &spec.actions {
            // Validates the sink type and properties now, so a bad action is a 400, not a dead rule.
            self.validate_action(a)?;
        }
        let mut rules = self.inner.rules.lock().expect("rules lock");
        if rules.contains_key(&spec.id) {
            return Err(EngineError::Duplicate(format!(
                "rule \"{}\" already exists",
                spec.id
            )));
        }
        let id = spec.id.clone();
        rules.insert(
            id.clone(),
            RuleEntry {
                spec,
                plan,
                run: None,
                last_metrics: None,
                last_start_ms: 0,
                last_stop_ms: 0,
                stop_message: String::new(),
                runs: 0,
            },
        );
        let entry = rules.get_mut(&id).expect("just inserted");
        if !start {
            entry.stop_message = "canceled manually".into();
            return Ok(());
        }
        if let Err(e) = self.launch(entry) {
            rules.remove(&id);
            return Err(e);
        }
        Ok(())
    }

    /// Checks an action's sink type and properties (common and connector-specific).
    pub fn validate_action(&self, action: &Action) -> Result<(), EngineError> {
        let (settings, props) = SinkSettings::parse(&action.props)?;
        let sink = self.inner.connectors.sink(&action.sink_type, &props)?;
        if settings.data_template.is_some() && !sink.accepts_payloads() {
            return Err(EngineError::Invalid(format!(
                "sink \"{}\" writes rows, so \"dataTemplate\" does not apply to it",
                action.sink_type
            )));
        }
        Ok(())
    }

    /// Starts a stopped rule (no-op if running).
    pub fn start_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules
            .get_mut(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        if entry.run.as_ref().is_some_and(|r| !*r.done.borrow()) {
            return Ok(());
        }
        self.teardown(entry, "");
        self.launch(entry)
    }

    /// Stops a rule; its state is dropped, its definition kept.
    pub fn stop_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules
            .get_mut(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        self.teardown(entry, "canceled manually");
        Ok(())
    }

    /// Stops and starts a rule.
    pub fn restart_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules
            .get_mut(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        self.teardown(entry, "");
        self.launch(entry)
    }

    /// Stops and deletes a rule.
    pub fn delete_rule(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let mut entry = rules
            .remove(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        self.teardown(&mut entry, "deleted");
        Ok(())
    }

    /// Ids of all rules, sorted.
    pub fn rule_ids(&self) -> Vec<String> {
        self.inner
            .rules
            .lock()
            .expect("rules lock")
            .keys()
            .cloned()
            .collect()
    }

    /// The rule as submitted.
    pub fn rule_spec(&self, id: &str) -> Option<RuleSpec> {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules.get(id).map(|e| e.spec.clone())
    }

    /// True while the rule has a run that has not finished.
    pub fn rule_running(&self, id: &str) -> bool {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules
            .get(id)
            .and_then(|e| e.run.as_ref())
            .is_some_and(|r| !*r.done.borrow())
    }

    /// Rows the rule has read and its keyed or window operators (a partitioned table join, a
    /// partitioned analytic function, a window) have not taken yet: 0 once every row read so far
    /// has been joined against its table.
    pub fn rule_rows_in_flight(&self, id: &str) -> usize {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules.get(id).and_then(|e| e.run.as_ref()).map_or(0, |r| {
            r.in_flight.load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The rule's nodes in topology order, named as in its metrics (`source_demo`,
    /// `op_2_filter`, ..., `sink_log_0`).
    pub fn rule_topology(&self, id: &str) -> Result<Vec<String>, EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules
            .get(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        let stream = self.stream(&entry.plan.plan.scan().stream);
        let source_type = stream
            .as_ref()
            .map_or("memory", |s| s.options.source_type.as_str());
        let mut names = node_names(
            &entry.plan.plan.scan().stream,
            source_type,
            &entry.plan.plan,
            &entry.spec.actions,
        );
        // Joined streams' sources come last, as in the metrics.
        for n in entry.plan.plan.chain() {
            if let LogicalPlan::JoinStreams { join, .. } = n {
                names.extend(join.streams.iter().map(|s| format!("source_{}", s.name)));
            }
        }
        Ok(names)
    }

    /// Sets the connection profiles of source types (`CONF_KEY` picks one; `default` otherwise).
    pub fn set_source_profiles(&self, profiles: SourceProfiles) {
        *self.inner.profiles.write().expect("profiles lock") = profiles;
    }

    /// The rule's compiled plan as text.
    pub fn explain(&self, id: &str) -> Result<String, EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules
            .get(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        Ok(entry.plan.explain())
    }

    /// The rule's status and metrics.
    pub fn rule_status(&self, id: &str) -> Result<RuleStatus, EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules
            .get(id)
            .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
        let warnings = unimplemented_options(&entry.spec);
        let mut last_stop_ms = entry.last_stop_ms;
        let (status, mut message, metrics) = match &entry.run {
            Some(run) => {
                let finished_at = run.finished_at.load(std::sync::atomic::Ordering::Acquire);
                if finished_at > 0 {
                    last_stop_ms = finished_at;
                }
                let finished = *run.done.borrow();
                let error = run.error.lock().expect("error lock").clone();
                let (status, message) = match (finished, error) {
                    (_, Some(e)) => ("stopped by error".to_string(), e),
                    (true, None) => ("stopped".to_string(), "input ended".to_string()),
                    (false, None) => ("running".to_string(), String::new()),
                };
                let mut metrics = run.metrics.flatten();
                if let Some(conn) = &run.connection {
                    connection_metrics(&mut metrics, &run.source_node, conn);
                }
                let late = run.late_rows.load(std::sync::atomic::Ordering::Relaxed);
                let mut message = message;
                if late > 0 {
                    metrics.push((
                        format!("{}_0_late_events_total", run.source_node),
                        Value::from(late),
                    ));
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&format!("{late} late events dropped behind the watermark"));
                }
                (status, message, metrics)
            }
            None => (
                "stopped".to_string(),
                entry.stop_message.clone(),
                entry
                    .last_metrics
                    .as_ref()
                    .map(|m| m.flatten())
                    .unwrap_or_default(),
            ),
        };
        if !warnings.is_empty() {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&warnings);
        }
        Ok(RuleStatus {
            status,
            message,
            last_start_ms: entry.last_start_ms,
            last_stop_ms,
            metrics,
        })
    }

    /// Waits until the rule's current run has finished (its input ended and every sink has
    /// written everything), up to `timeout`. Returns false on timeout.
    pub async fn wait_finished(&self, id: &str, timeout: Duration) -> Result<bool, EngineError> {
        let mut done = {
            let rules = self.inner.rules.lock().expect("rules lock");
            let entry = rules
                .get(id)
                .ok_or_else(|| EngineError::NotFound(format!("rule \"{id}\" not found")))?;
            match &entry.run {
                Some(run) => run.done.clone(),
                None => return Ok(true),
            }
        };
        let wait = async {
            while !*done.borrow_and_update() {
                if done.changed().await.is_err() {
                    break;
                }
            }
        };
        Ok(tokio::time::timeout(timeout, wait).await.is_ok())
    }

    /// Stops every rule and the workers.
    ///
    /// Sinks get up to five seconds to write what they already received, so a SIGTERM flushes
    /// results instead of dropping them. Call it from a thread that may block.
    pub fn shutdown(&self) {
        let mut flushing = Vec::new();
        {
            let mut rules = self.inner.rules.lock().expect("rules lock");
            for entry in rules.values_mut() {
                if let Some(run) = &entry.run {
                    flushing.push(run.done.clone());
                }
                self.teardown(entry, "server stopped");
            }
        }
        self.inner.workers.shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        while flushing.iter().any(|d| !*d.borrow()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Builds a run of the rule: sink tasks, the dataflow on every worker, the source task.
    fn launch(&self, entry: &mut RuleEntry) -> Result<(), EngineError> {
        let plan = &entry.plan.plan;
        let stream = self.stream(&plan.scan().stream).ok_or_else(|| {
            EngineError::NotFound(format!("stream \"{}\" not found", plan.scan().stream))
        })?;
        let n = self.inner.workers.count();
        entry.runs += 1;
        let key = format!("{}#{}", entry.spec.id, entry.runs);

        // Topology and metrics, in eKuiper's naming (the same names `rule_topology` reports).
        let names = node_names(
            &stream.name,
            &stream.options.source_type,
            plan,
            &entry.spec.actions,
        );
        let mut metrics = RuleMetrics::default();
        let mut nodes = names.into_iter().map(|n| (n.clone(), metrics.node(n)));
        let (_, source_metrics) = nodes.next().expect("a rule has a source node");
        let mut rest: Vec<(String, Arc<NodeMetrics>)> = nodes.collect();
        // Memory streams carry no decoder node: their decode errors count on the source.
        let decoder_metrics = match rest.first() {
            Some((name, _)) if name == "op_2_decoder" => rest.remove(0).1,
            _ => source_metrics.clone(),
        };
        let sink_count = entry.spec.actions.len();
        let sink_metrics: Vec<Arc<NodeMetrics>> = rest
            .split_off(rest.len() - sink_count)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let op_metrics: Vec<Arc<NodeMetrics>> = rest.into_iter().map(|(_, m)| m).collect();
        // Streams joined to the FROM stream: each has a source node of its own.
        let joined: Vec<(StreamDef, String, Arc<NodeMetrics>)> = plan
            .chain()
            .find_map(|n| match n {
                LogicalPlan::JoinStreams { join, .. } => Some(join.streams.clone()),
                _ => None,
            })
            .unwrap_or_default()
            .into_iter()
            .map(|j| {
                let def = self.stream(&j.name).ok_or_else(|| {
                    EngineError::NotFound(format!("stream \"{}\" not found", j.name))
                })?;
                let m = metrics.node(format!("source_{}", j.name));
                Ok((def, j.qualifier, m))
            })
            .collect::<Result<_, EngineError>>()?;
        let metrics = Arc::new(metrics);

        let queue = buffer_batches(&entry.spec.options);
        let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (done_tx, done_rx) = watch::channel(false);
        let done_tx = Arc::new(done_tx);
        let finished_at = Arc::new(std::sync::atomic::AtomicI64::new(0));

        // Sinks first, so results have somewhere to go.
        let mut sink_senders = Vec::new();
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(
            entry.spec.actions.len(),
        ));
        for (action, m) in entry.spec.actions.iter().zip(sink_metrics) {
            let (settings, props) = SinkSettings::parse(&action.props)?;
            let sink = self.inner.connectors.sink(&action.sink_type, &props)?;
            let (tx, rx) =
                mpsc::channel::<RecordBatch>(settings.buffer_length.unwrap_or(queue).max(1));
            sink_senders.push(tx);
            let done_tx = done_tx.clone();
            let remaining = remaining.clone();
            let error = error.clone();
            let finished_at = finished_at.clone();
            self.inner.runtime.spawn(async move {
                run_sink(sink, settings, rx, m, error).await;
                if remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                    finished_at.store(now_ms(), std::sync::atomic::Ordering::Release);
                    let _ = done_tx.send(true);
                }
            });
        }

        let (ingest_tx, ingest_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(queue)).unzip();
        let uses_meta = uses_meta(plan);
        let event_time = event_time(&entry.spec, &stream)?.map(|e| crate::render::EventTime {
            sources: 1 + joined.len(),
            ..e
        });
        let late_rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // A stateless rule of a shared stream joins the stream's rule group instead of
        // running a dataflow of its own (see `crate::group`).
        if stream.options.shared
            && joined.is_empty()
            && event_time.is_none()
            && crate::render::group::eligible(plan)
        {
            let member = crate::render::group::Member {
                key: key.clone(),
                plan: plan.clone(),
                sinks: sink_senders,
                source_metrics,
                decoder_metrics,
                op_metrics,
                rule: Arc::new(quiver_compiler::eval::RuleContext {
                    id: entry.spec.id.clone(),
                    start_ms: now_ms(),
                }),
            };
            let (group, connection) = self.join_group(&stream, member, queue)?;
            entry.run = Some(RuleRun {
                key,
                joined_tasks: Vec::new(),
                connection,
                source_node: format!("source_{}", stream.name),
                metrics,
                source: SourceHandle::Grouped(stream.name.clone(), group),
                done: done_rx,
                error,
                late_rows,
                finished_at,
                in_flight,
                indexes: Vec::new(),
            });
            entry.last_start_ms = now_ms();
            entry.stop_message.clear();
            return Ok(());
        }
        let activators = Arc::new(Mutex::new(vec![None; n]));
        let tables: HashMap<String, crate::tables::TableSide> = {
            let tables = self.inner.tables.lock().expect("tables lock");
            plan.chain()
                .filter_map(|n| match n {
                    LogicalPlan::JoinTable { join, .. } => Some(&join.table),
                    _ => None,
                })
                .map(|name| {
                    tables
                        .get(name)
                        .map(|t| (name.clone(), t.side.clone()))
                        .ok_or_else(|| EngineError::NotFound(format!("table \"{name}\" not found")))
                })
                .collect::<Result<_, _>>()?
        };
        // The scan-table indexes the joins read, in plan order. A rule without windows, order
        // or other keyed state that joins one scan table reads it partitioned: its rows are
        // exchanged by join key to the worker holding the matching table rows. Other rules
        // join wherever their rows are, against a replicated index.
        let scans: Vec<&quiver_compiler::plan::TableJoin> = plan
            .chain()
            .filter_map(|n| match n {
                LogicalPlan::JoinTable { join, .. } if !join.lookup => Some(&**join),
                _ => None,
            })
            .collect();
        let partitioned = scans.len() == 1
            && event_time.is_none()
            && joined.is_empty()
            && !has_analytic(plan)
            && !reads_hits(plan)
            && plan
                .aggregate()
                .is_none_or(|a| a.window.kind == quiver_compiler::window::WindowKind::Rows);
        let mut indexes: Vec<crate::tables::feed::IndexSpec> = scans
            .into_iter()
            .filter_map(|join| match tables.get(&join.table) {
                Some(crate::tables::TableSide::Scan(feed)) => {
                    Some(crate::tables::feed::IndexSpec::new(
                        feed.clone(),
                        join.table_keys.clone(),
                        if partitioned {
                            crate::tables::feed::Placement::Partitioned
                        } else {
                            crate::tables::feed::Placement::Replicated
                        },
                    ))
                }
                _ => None,
            })
            .collect();
        for index in &mut indexes {
            let feed = index.feed.clone();
            feed.acquire(index);
        }
        // The fast JSON path converts only what the rule reads (and the watermark's field).
        let columns = plan.columns_read().map(|mut c| {
            c.extend(event_time.as_ref().map(|e| e.field.clone()));
            c
        });
        let dataflow_decoder =
            JsonDecoder::new(stream.arrow_schema(), uses_meta).reading(columns.as_ref());
        let dataflow = Arc::new(RuleDataflow {
            key: key.clone(),
            plan: plan.clone(),
            decoder: dataflow_decoder.clone(),
            ingest: Mutex::new(ingest_rx.into_iter().map(Some).collect()),
            activators: activators.clone(),
            sinks: sink_senders,
            source_metrics,
            decoder_metrics,
            op_metrics,
            event_time: event_time.clone(),
            late_rows: late_rows.clone(),
            tables,
            indexes: indexes.clone(),
            to_windows: in_flight.clone(),
            rule: Arc::new(quiver_compiler::eval::RuleContext {
                id: entry.spec.id.clone(),
                start_ms: now_ms(),
            }),
        });
        self.inner
            .workers
            .broadcast(|| Command::Build(dataflow.clone()));
        drop(dataflow);
        // Should the rest of the launch fail, the built dataflow and its index uses go again.
        let unbuilt = Unbuilt {
            workers: &self.inner.workers,
            key: key.clone(),
            indexes,
            armed: true,
        };
        // A new index fills from its table's base arrangement: the rule reads no row before
        // the index holds what the table held when the rule started.
        for index in &unbuilt.indexes {
            if !index.feed.wait_current(&index.id(), Duration::from_secs(5)) {
                tracing::warn!(table = %index.feed.name, "table index still filling as the rule starts");
            }
        }

        let spec = self.source_spec(&stream);
        let wake: quiver_connectors::WakeFn = Arc::new(move |i| {
            if let Some(a) = activators.lock().expect("activator lock")[i].as_ref() {
                // A dropped dataflow's activator fails harmlessly.
                let _ = a.activate();
            }
        });
        let wake_all = wake.clone();
        // Event time, analytic and hit functions and windows whose bounds follow the sequence of rows
        // (count, state, session, sliding) need the rows in order: one worker reads them all
        // (keeping the watermark, as eKuiper's one watermark operator does); the rows then
        // spread by window key.
        let ordered = event_time.is_some()
            || !joined.is_empty()
            || has_analytic(plan)
            || reads_hits(plan)
            || plan.aggregate().is_some_and(|a| {
                !a.window.kind.is_partitionable()
                    && a.window.kind != quiver_compiler::window::WindowKind::Rows
            });
        let ingest_tx: Vec<_> = if ordered {
            ingest_tx.into_iter().take(1).collect()
        } else {
            ingest_tx
        };
        // The other workers' queues are closed now; a worker whose source already looked at
        // its (then empty) queue must look again, or it would hold back time forever.
        for i in ingest_tx.len()..n {
            wake(i);
        }
        let mut joined_tasks = Vec::new();
        for (i, (def, qualifier, m)) in joined.into_iter().enumerate() {
            joined_tasks.extend(self.start_joined_source(
                &def,
                qualifier,
                i as i64 + 1,
                event_time.is_some(),
                m,
                ingest_tx[0].clone(),
                wake.clone(),
                queue,
                error.clone(),
            )?);
        }
        let mut out = SourceOutput::new(ingest_tx, wake);
        if ordered {
            // One worker reads every row: a source with a thread of its own (the file source)
            // decodes there, so decoding runs in parallel with that worker's windows.
            out = out.with_decoder(dataflow_decoder);
        }
        let (source_handle, connection) = if stream.options.shared {
            let subscriber = Subscriber {
                key: key.clone(),
                out,
                wake_all: Arc::new(move || (0..n).for_each(|i| wake_all(i))),
            };
            let connection = self.join_shared(&stream.name, &spec, subscriber, queue)?;
            (SourceHandle::Shared(stream.name.clone()), connection)
        } else {
            let mut source = self.inner.connectors.source(&spec)?;
            let connection = source.connection();
            let source_error = error.clone();
            let rule_id = entry.spec.id.clone();
            let task = self.inner.runtime.spawn(async move {
                let result = source.run(out).await;
                // The queues are closed now; wake every worker so each sees the end of its
                // input, drops its capability and lets the results drain to the sinks.
                drop(source);
                for i in 0..n {
                    wake_all(i);
                }
                if let Err(e) = result
                    && !matches!(e, quiver_connectors::ConnectorError::Closed)
                {
                    tracing::error!(rule = %rule_id, "source failed: {e}");
                    *source_error.lock().expect("error lock") = Some(e.to_string());
                }
            });
            (SourceHandle::Own(task), connection)
        };
        entry.run = Some(RuleRun {
            key,
            joined_tasks,
            connection,
            source_node: format!("source_{}", stream.name),
            metrics,
            source: source_handle,
            done: done_rx,
            error,
            late_rows,
            finished_at,
            in_flight,
            indexes: unbuilt.disarm(),
        });
        entry.last_start_ms = now_ms();
        entry.stop_message.clear();
        Ok(())
    }

    /// Starts the source of a stream joined to a rule's FROM stream: its rows are decoded here,
    /// renamed `qualifier.column`, tagged with `source` and queued for worker 0 with the FROM
    /// stream's rows (a join's window runs there). The bounded queue holds the source back.
    #[allow(clippy::too_many_arguments)]
    fn start_joined_source(
        &self,
        def: &StreamDef,
        qualifier: String,
        source: i64,
        event_time: bool,
        metrics: Arc<NodeMetrics>,
        forward: mpsc::Sender<SourceEvent>,
        wake: quiver_connectors::WakeFn,
        queue: usize,
        error: Arc<Mutex<Option<String>>>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, EngineError> {
        let spec = self.source_spec(def);
        let mut src = self.inner.connectors.source(&spec)?;
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(queue);
        let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
        let name = def.name.clone();
        let reader = self.inner.runtime.spawn(async move {
            if let Err(e) = src.run(out).await
                && !matches!(e, quiver_connectors::ConnectorError::Closed)
            {
                tracing::error!(stream = %name, "joined source failed: {e}");
                *error.lock().expect("error lock") = Some(e.to_string());
            }
        });
        let decoder = JsonDecoder::new(def.arrow_schema(), false);
        let field = def.options.timestamp.clone().filter(|_| event_time);
        let name = def.name.clone();
        let feeder = self.inner.runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                let started = std::time::Instant::now();
                let (messages, decoded) = event.decode(&decoder);
                if let Some(first) = decoded.errors.first() {
                    tracing::warn!(stream = %name, "dropping malformed messages: {first}");
                    metrics.exceptions(decoded.errors.len(), first);
                }
                metrics.batch(messages, decoded.rows(), started);
                let batches = decoded.batches.clone();
                for b in batches {
                    let b = crate::operators::join_streams::qualify(
                        b,
                        &qualifier,
                        source,
                        field.as_deref(),
                    );
                    if forward.send(SourceEvent::Batch(b)).await.is_err() {
                        return;
                    }
                    wake(0);
                }
            }
            // The input ended: let worker 0 see the queue close once every source has ended.
            drop(forward);
            wake(0);
        });
        Ok(vec![reader, feeder])
    }

    /// Adds a rule run to the shared source of `stream`, starting the source for the first one.
    /// One subscription feeds every rule of the stream; a rule that falls behind slows the
    /// others (the shared queue is bounded), as with eKuiper's shared sources.
    fn join_shared(
        &self,
        stream: &str,
        spec: &SourceSpec,
        subscriber: Subscriber,
        queue: usize,
    ) -> Result<Option<Arc<quiver_connectors::mqtt::ConnectionState>>, EngineError> {
        let mut shared = self.inner.shared.lock().expect("shared lock");
        // A shared source whose input ended is finished; the next rule starts a new one.
        if shared
            .get(stream)
            .is_some_and(|s| s.tasks.iter().any(|t| t.is_finished()))
            && let Some(old) = shared.remove(stream)
        {
            old.tasks.iter().for_each(|t| t.abort());
        }
        if let Some(s) = shared.get(stream) {
            s.subscribers
                .lock()
                .expect("subscribers lock")
                .push(subscriber);
            return Ok(s.connection.clone());
        }
        let mut source = self.inner.connectors.source(spec)?;
        let connection = source.connection();
        let subscribers = Arc::new(Mutex::new(vec![subscriber]));
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(queue);
        let reader = self.inner.runtime.spawn(async move {
            let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
            if let Err(e) = source.run(out).await {
                tracing::error!("shared source failed: {e}");
            }
        });
        let subs = subscribers.clone();
        // Decoded once here for every rule of the stream (metadata columns included: rules
        // that do not read them never see them), not once per rule.
        let decoder = self
            .stream(stream)
            .map(|def| JsonDecoder::new(def.arrow_schema(), true));
        let fanout = self.inner.runtime.spawn(async move {
            while let Some(first) = rx.recv().await {
                let event = match &decoder {
                    Some(decoder) => {
                        // What queued while the last event went out to every rule goes on
                        // as one event. Each event costs every rule a wake-up and a dataflow
                        // step, so with many rules the events grow under load instead of the
                        // backlog; without a backlog nothing waits.
                        let mut parts = vec![first.decoded_with(decoder)];
                        let mut messages = event_messages(&parts[0]);
                        while messages < MAX_GATHERED_MESSAGES {
                            let Ok(next) = rx.try_recv() else { break };
                            let next = next.decoded_with(decoder);
                            messages += event_messages(&next);
                            parts.push(next);
                        }
                        gather(parts, decoder)
                    }
                    None => first,
                };
                let targets: Vec<(String, SourceOutput)> = subs
                    .lock()
                    .expect("subscribers lock")
                    .iter()
                    .map(|s| (s.key.clone(), s.out.clone()))
                    .collect();
                for (key, out) in targets {
                    if out.send(event.clone()).await.is_err() {
                        subs.lock()
                            .expect("subscribers lock")
                            .retain(|s| s.key != key);
                    }
                }
            }
            // The input ended: close every rule's queues and wake its workers.
            let ended: Vec<Subscriber> =
                std::mem::take(&mut *subs.lock().expect("subscribers lock"));
            for s in ended {
                let wake = s.wake_all.clone();
                drop(s);
                wake();
            }
        });
        shared.insert(
            stream.to_string(),
            SharedSource {
                subscribers,
                tasks: vec![reader, fanout],
                connection: connection.clone(),
            },
        );
        Ok(connection)
    }

    /// Adds a rule run to the rule group of shared stream `stream`, starting the group (a
    /// dataflow on every worker, subscribed to the stream's shared source) for the first one.
    #[allow(clippy::type_complexity)]
    fn join_group(
        &self,
        stream: &StreamDef,
        member: crate::render::group::Member,
        queue: usize,
    ) -> Result<
        (
            Arc<crate::render::group::RuleGroup>,
            Option<Arc<quiver_connectors::mqtt::ConnectionState>>,
        ),
        EngineError,
    > {
        let mut groups = self.inner.groups.lock().expect("groups lock");
        if let Some(g) = groups.get(&stream.name)
            && g.is_live()
        {
            let shared = self.inner.shared.lock().expect("shared lock");
            // A group whose shared source ended (a file read to its end) is done too.
            if let Some(s) = shared.get(&stream.name)
                && !s.tasks.iter().any(|t| t.is_finished())
                && s.subscribers
                    .lock()
                    .expect("subscribers lock")
                    .iter()
                    .any(|x| x.key == g.key)
            {
                g.add(member);
                return Ok((g.clone(), s.connection.clone()));
            }
        }
        if let Some(old) = groups.remove(&stream.name) {
            self.inner
                .workers
                .broadcast(|| Command::Drop(old.key.clone()));
        }
        static GROUPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = self.inner.workers.count();
        let key = format!(
            "group:{}#{}",
            stream.name,
            GROUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (ingest_tx, ingest_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(queue)).unzip();
        let activators: Arc<Mutex<Vec<Option<timely::scheduling::SyncActivator>>>> =
            Arc::new(Mutex::new(vec![None; n]));
        let group = Arc::new(crate::render::group::RuleGroup::new(
            key.clone(),
            ingest_rx,
            activators.clone(),
            JsonDecoder::new(stream.arrow_schema(), true),
        ));
        group.add(member);
        self.inner
            .workers
            .broadcast(|| Command::BuildGroup(group.clone()));
        let wake: quiver_connectors::WakeFn = Arc::new(move |i| {
            if let Some(a) = activators.lock().expect("activator lock")[i].as_ref() {
                let _ = a.activate();
            }
        });
        let wake_all = wake.clone();
        let subscriber = Subscriber {
            key: key.clone(),
            out: SourceOutput::new(ingest_tx, wake),
            wake_all: Arc::new(move || (0..n).for_each(|i| wake_all(i))),
        };
        let spec = self.source_spec(stream);
        match self.join_shared(&stream.name, &spec, subscriber, queue) {
            Ok(connection) => {
                groups.insert(stream.name.clone(), group.clone());
                Ok((group, connection))
            }
            Err(e) => {
                self.inner.workers.broadcast(|| Command::Drop(key.clone()));
                Err(e)
            }
        }
    }

    /// Removes a rule run from its group; the last one out stops the group and leaves the
    /// shared source.
    fn leave_group(&self, stream: &str, group: &Arc<crate::render::group::RuleGroup>, key: &str) {
        if group.remove(key) > 0 {
            return;
        }
        let mut groups = self.inner.groups.lock().expect("groups lock");
        if groups.get(stream).is_some_and(|g| Arc::ptr_eq(g, group)) {
            groups.remove(stream);
            self.leave_shared(stream, &group.key);
        }
        self.inner
            .workers
            .broadcast(|| Command::Drop(group.key.clone()));
    }

    /// Removes a rule run from a shared source; the last one out stops the source.
    fn leave_shared(&self, stream: &str, key: &str) {
        let mut shared = self.inner.shared.lock().expect("shared lock");
        let Some(s) = shared.get(stream) else { return };
        let empty = {
            let mut subs = s.subscribers.lock().expect("subscribers lock");
            subs.retain(|x| x.key != key);
            subs.is_empty()
        };
        if empty && let Some(s) = shared.remove(stream) {
            for t in s.tasks {
                t.abort();
            }
        }
    }

    /// Stops the current run, if any: the source ends, the dataflow is dropped on every worker,
    /// and the sinks finish with what they already received.
    fn teardown(&self, entry: &mut RuleEntry, message: &str) {
        if let Some(run) = entry.run.take() {
            match &run.source {
                SourceHandle::Own(task) => task.abort(),
                SourceHandle::Shared(stream) => self.leave_shared(stream, &run.key),
                SourceHandle::Grouped(stream, group) => self.leave_group(stream, group, &run.key),
            }
            run.joined_tasks.iter().for_each(|t| t.abort());
            self.inner
                .workers
                .broadcast(|| Command::Drop(run.key.clone()));
            for index in &run.indexes {
                index.feed.release(index);
            }
            entry.last_metrics = Some(run.metrics);
            entry.last_stop_ms = now_ms();
            entry.stop_message = message.to_string();
        }
    }
}

/// A rule run whose dataflow is built but whose launch has not finished: dropped while still
/// armed (the launch failed), it drops the dataflow on the workers and releases the table
/// indexes it counted on.
struct Unbuilt<'a> {
    workers: &'a Workers,
    key: String,
    indexes: Vec<crate::tables::feed::IndexSpec>,
    armed: bool,
}

impl Unbuilt<'_> {
    /// The launch succeeded: the run keeps its indexes.
    fn disarm(mut self) -> Vec<crate::tables::feed::IndexSpec> {
        self.armed = false;
        std::mem::take(&mut self.indexes)
    }
}

impl Drop for Unbuilt<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let key = self.key.clone();
        self.workers.broadcast(|| Command::Drop(key.clone()));
        for index in &self.indexes {
            index.feed.release(index);
        }
    }
}

/// A table source's event as rows; malformed rows are logged and left out.
/// Most messages a shared source's fan-out gathers into one event.
const MAX_GATHERED_MESSAGES: usize = 4096;

/// Messages (or rows) in an event already decoded by [`SourceEvent::decoded_with`].
fn event_messages(event: &SourceEvent) -> usize {
    match event {
        SourceEvent::Decoded { messages, .. } => *messages,
        SourceEvent::Batch(b) => b.num_rows(),
        SourceEvent::Raw(m) => m.len(),
        SourceEvent::Lines { .. } => 1,
    }
}

/// Events (decoded, or rows as they came) as one: their rows in order, in one batch when they
/// share a schema (so each rule runs once over them), and their failures.
fn gather(mut parts: Vec<SourceEvent>, decoder: &JsonDecoder) -> SourceEvent {
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    let (messages, decoded) = crate::render::group::combine(parts, decoder);
    SourceEvent::Decoded { messages, decoded }
}

fn table_rows(event: SourceEvent, decoder: &JsonDecoder, table: &str) -> Vec<RecordBatch> {
    let (_, decoded) = event.decode(decoder);
    if let Some(first) = decoded.errors.first() {
        tracing::warn!(table = %table, "dropping malformed rows: {first}");
    }
    decoded.batches.clone()
}

/// Logs the rows a keyed table skipped for lacking a KEY value.
fn warn_keyless(table: &str, skipped: usize) {
    if skipped > 0 {
        tracing::warn!(table = %table, "{skipped} rows without a KEY value skipped");
    }
}

/// Adds eKuiper's `connection_*` metrics after the source node's own metrics.
fn connection_metrics(
    metrics: &mut Vec<(String, Value)>,
    node: &str,
    conn: &quiver_connectors::mqtt::ConnectionState,
) {
    let snap = conn.snapshot();
    let at = metrics
        .iter()
        .rposition(|(k, _)| k.starts_with(&format!("{node}_0_")))
        .map_or(metrics.len(), |i| i + 1);
    let entries = [
        (
            "connection_status",
            Value::from(if snap.connected { 1 } else { 0 }),
        ),
        (
            "connection_last_connected_time",
            Value::from(snap.last_connected_ms.unwrap_or(0)),
        ),
        (
            "connection_last_disconnected_message",
            Value::String(snap.last_error.unwrap_or_default()),
        ),
    ];
    for (i, (name, v)) in entries.into_iter().enumerate() {
        metrics.insert(at + i, (format!("{node}_0_{name}"), v));
    }
}

/// Writes batches to one sink until the workers drop their senders, gathering them first when
/// `batchSize`/`lingerInterval` ask for it (one `collect_list` call per gathered batch).
async fn run_sink(
    mut sink: Box<dyn quiver_connectors::Sink>,
    settings: SinkSettings,
    mut rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<NodeMetrics>,
    error: Arc<Mutex<Option<String>>>,
) {
    if let Err(e) = sink.connect().await {
        *error.lock().expect("error lock") = Some(format!("sink connect failed: {e}"));
        metrics.exceptions(1, &e.to_string());
        return;
    }
    let template = settings
        .data_template
        .as_deref()
        .and_then(|t| crate::sinkprops::DataTemplate::compile(t).ok());
    let out = Output {
        template,
        send_single: settings.send_single,
    };
    let mut gathered: Vec<RecordBatch> = Vec::new();
    let mut gathered_rows = 0usize;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(next) => next,
                // The linger interval passed: write what is gathered.
                Err(_) => {
                    let batches = std::mem::take(&mut gathered);
                    if let Err(e) = write(&mut sink, &out, batches, &metrics).await {
                        return fail_sink(&error, e);
                    }
                    gathered_rows = 0;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(batch) = next else { break };
        metrics.set_buffer_length(rx.len() as i64);
        let batch = settings.project(batch);
        if !settings.batches() {
            if let Err(e) = write(&mut sink, &out, vec![batch], &metrics).await {
                return fail_sink(&error, e);
            }
            continue;
        }
        gathered_rows += batch.num_rows();
        gathered.push(batch);
        if deadline.is_none() {
            deadline = settings.linger.map(|l| tokio::time::Instant::now() + l);
        }
        if settings.batch_size > 0 && gathered_rows >= settings.batch_size {
            let batches = std::mem::take(&mut gathered);
            if let Err(e) = write(&mut sink, &out, batches, &metrics).await {
                return fail_sink(&error, e);
            }
            gathered_rows = 0;
            deadline = None;
        }
    }
    if let Err(e) = write(&mut sink, &out, gathered, &metrics).await {
        return fail_sink(&error, e);
    }
    if let Err(e) = sink.close().await {
        metrics.exceptions(1, &e.to_string());
    }
}

/// Marks the rule failed by a fatal sink error (a plugin panic). The sink task ends, so the
/// dataflow drops what it would send to it; other rules are untouched.
fn fail_sink(error: &Mutex<Option<String>>, e: quiver_connectors::ConnectorError) {
    tracing::error!("sink failed: {e}");
    *error.lock().expect("error lock") = Some(format!("sink failed: {e}"));
}

/// How a sink's input is handed over: as rows, or rendered through a `dataTemplate`.
struct Output {
    template: Option<crate::sinkprops::DataTemplate>,
    send_single: bool,
}

/// Writes batches; per-batch failures are counted as exceptions, and only a fatal one
/// (`ConnectorError::Fatal`) is returned, which stops the sink.
async fn write(
    sink: &mut Box<dyn quiver_connectors::Sink>,
    out: &Output,
    batches: Vec<RecordBatch>,
    metrics: &NodeMetrics,
) -> Result<(), quiver_connectors::ConnectorError> {
    for batch in crate::sinkprops::merge(batches) {
        let started = Instant::now();
        let rows = batch.num_rows();
        let written = match &out.template {
            None => sink.collect_list(&batch).await,
            Some(t) => {
                let objects: Vec<Value> =
                    quiver_connectors::codec::encode::batch_to_rows(&batch, false)
                        .into_iter()
                        .map(Value::Object)
                        .collect();
                let rendered: Result<Vec<Vec<u8>>, String> = if out.send_single {
                    objects.iter().map(|o| t.render(o)).collect()
                } else {
                    t.render(&Value::Array(objects)).map(|p| vec![p])
                };
                match rendered {
                    Ok(payloads) => sink.collect_payloads(&payloads).await,
                    Err(e) => Err(quiver_connectors::ConnectorError::Io {
                        connector: "sink",
                        reason: e,
                    }),
                }
            }
        };
        match written {
            Ok(()) => metrics.batch(rows, rows, started),
            Err(e) => {
                metrics.batch(rows, 0, started);
                metrics.exceptions(rows, &e.to_string());
                if matches!(e, quiver_connectors::ConnectorError::Fatal { .. }) {
                    return Err(e);
                }
                tracing::warn!("sink write failed: {e}");
            }
        }
    }
    Ok(())
}

/// Node names of a rule in topology order, as its metrics are keyed.
fn node_names(
    stream: &str,
    source_type: &str,
    plan: &LogicalPlan,
    actions: &[Action],
) -> Vec<String> {
    let mut names = vec![format!("source_{stream}")];
    let mut next = 2;
    if source_type != "memory" {
        names.push("op_2_decoder".to_string());
        next = 3;
    }
    for (i, op) in operator_names(plan).iter().enumerate() {
        names.push(format!("op_{}_{op}", next + i));
    }
    for (i, a) in actions.iter().enumerate() {
        names.push(format!("sink_{}_{i}", a.sink_type));
    }
    names
}

/// Operator node names of a plan, bottom-up (source side first), as eKuiper names them.
/// LIMIT has no node: eKuiper applies it inside the project node.
fn operator_names(plan: &LogicalPlan) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut seen_window = false;
    let bottom_up: Vec<&LogicalPlan> = plan.chain().collect();
    for n in bottom_up.into_iter().rev() {
        match n {
            LogicalPlan::Filter { .. } if seen_window => names.push("having"),
            LogicalPlan::Filter { .. } => names.push("filter"),
            LogicalPlan::Project { .. } => names.push("project"),
            LogicalPlan::Aggregate { spec, .. } => {
                seen_window = true;
                names.push(
                    if spec.window.kind == quiver_compiler::window::WindowKind::Rows {
                        "aggregate"
                    } else {
                        "window"
                    },
                );
            }
            LogicalPlan::Sort { .. } => names.push("order"),
            LogicalPlan::RowNumber { .. } => names.push("windowFunc"),
            LogicalPlan::Analytic { .. } => names.push("analytic"),
            LogicalPlan::JoinTable { .. } | LogicalPlan::JoinStreams { .. } => names.push("join"),
            LogicalPlan::Limit { .. } | LogicalPlan::Scan(_) => {}
        }
    }
    names
}

/// True for `KIND="lookup"`; an error for a KIND that is neither scan nor lookup.
fn is_lookup(def: &StreamDef) -> Result<bool, EngineError> {
    match def.options.raw.get("KIND") {
        None => Ok(false),
        // eKuiper's parser accepts KIND on streams and ignores it.
        Some(_) if def.kind == StreamKind::Stream => Ok(false),
        Some(k) if k.eq_ignore_ascii_case("scan") => Ok(false),
        Some(k) if k.eq_ignore_ascii_case("lookup") => Ok(true),
        Some(k) => Err(EngineError::Invalid(format!(
            "KIND must be \"scan\" or \"lookup\", got \"{k}\""
        ))),
    }
}

/// A lookup table needs a KEY (the column its rows are fetched by) and a type that can look up.
fn check_lookup(def: &StreamDef, types: &[&str]) -> Result<(), EngineError> {
    let Some(key) = &def.options.key else {
        return Err(EngineError::Invalid(format!(
            "lookup table \"{}\" needs KEY=\"<column>\": its rows are fetched by that column",
            def.name
        )));
    };
    if let Some(cols) = &def.columns
        && !cols.iter().any(|c| c.name.eq_ignore_ascii_case(key))
    {
        return Err(EngineError::Invalid(format!(
            "KEY \"{key}\" is not a column of table \"{}\"",
            def.name
        )));
    }
    if !types.contains(&def.options.source_type.as_str()) {
        return Err(EngineError::Invalid(format!(
            "TYPE=\"{}\" has no lookup table; lookup types: {}",
            def.options.source_type,
            types.join(", ")
        )));
    }
    Ok(())
}

/// True when the plan joins table `name`.
fn joins_table(plan: &LogicalPlan, name: &str) -> bool {
    plan.chain()
        .any(|n| matches!(n, LogicalPlan::JoinTable { join, .. } if join.table == name))
}

/// True when the plan calls `last_hit_*` (each row sees the hits of the rows before it).
pub(crate) fn reads_hits(plan: &LogicalPlan) -> bool {
    let mut found = false;
    plan.visit_exprs(&mut |e| found |= matches!(e, quiver_compiler::expr::Expr::Hit { .. }));
    found
}

/// True when the plan has analytic functions (state that depends on row order).
fn has_analytic(plan: &LogicalPlan) -> bool {
    plan.chain()
        .any(|n| matches!(n, LogicalPlan::Analytic { .. }))
}

/// True when an expression reads message metadata, so the decoder must add those columns.
fn uses_meta(plan: &LogicalPlan) -> bool {
    let mut found = false;
    plan.visit_exprs(&mut |e| found |= matches!(e, quiver_compiler::expr::Expr::Meta(_)));
    found
}

/// The rule's event-time settings: `isEventTime` needs the stream's `TIMESTAMP` field;
/// `lateTolerance` is milliseconds or a duration such as "1s" (eKuiper's default: 1 s).
fn event_time(
    spec: &RuleSpec,
    stream: &StreamDef,
) -> Result<Option<crate::render::EventTime>, EngineError> {
    if !spec
        .options
        .get("isEventTime")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let Some(field) = stream.options.timestamp.clone() else {
        return Err(EngineError::Invalid(format!(
            "isEventTime needs a TIMESTAMP field on stream \"{}\" (CREATE STREAM ... WITH (TIMESTAMP=\"ts\", ...))",
            stream.name
        )));
    };
    let tolerance = match spec.options.get("lateTolerance") {
        None => 1000,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            EngineError::Invalid(format!(
                "lateTolerance {n} is not a whole number of milliseconds"
            ))
        })?,
        Some(Value::String(s)) => parse_duration_ms(s).ok_or_else(|| {
            EngineError::Invalid(format!(
                "lateTolerance \"{s}\" is not a duration such as \"1s\" or \"500ms\""
            ))
        })?,
        Some(other) => {
            return Err(EngineError::Invalid(format!(
                "lateTolerance must be milliseconds or a duration string, got {other}"
            )));
        }
    };
    Ok(Some(crate::render::EventTime {
        field,
        tolerance,
        format: stream.options.timestamp_format.clone(),
        sources: 1,
    }))
}

/// Parses a Go-style duration ("1s", "500ms", "1m30s", "2h") into milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    Some(total.round() as u64)
}

/// Queue length in batches between tasks, from eKuiper's `bufferLength` (rows, default 1024).
fn buffer_batches(options: &serde_json::Map<String, Value>) -> usize {
    let rows = options
        .get("bufferLength")
        .and_then(Value::as_u64)
        .unwrap_or(1024);
    (rows / 64).clamp(2, 64) as usize
}

fn unimplemented_options(spec: &RuleSpec) -> String {
    let ignored: Vec<&str> = spec
        .options
        .keys()
        .map(String::as_str)
        .filter(|k| !IMPLEMENTED_OPTIONS.contains(k))
        .collect();
    if ignored.is_empty() {
        String::new()
    } else {
        format!(
            "options not implemented yet and ignored: {}",
            ignored.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn decoded(values: &[i64], errors: &[&str]) -> SourceEvent {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .unwrap();
        SourceEvent::Decoded {
            messages: values.len() + errors.len(),
            decoded: Arc::new(quiver_connectors::codec::json::Decoded {
                batches: vec![batch],
                errors: errors.iter().map(|e| e.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn gathered_events_keep_every_row_in_order_in_one_batch() {
        let decoder = JsonDecoder::new(None, false);
        let one = gather(vec![decoded(&[1, 2], &["bad"])], &decoder);
        let SourceEvent::Decoded { messages, .. } = &one else {
            panic!("decoded")
        };
        assert_eq!(*messages, 3);
        let all = gather(
            vec![
                decoded(&[1, 2], &["x"]),
                decoded(&[3], &[]),
                decoded(&[4, 5], &["y"]),
            ],
            &decoder,
        );
        let SourceEvent::Decoded { messages, decoded } = all else {
            panic!("decoded")
        };
        assert_eq!(messages, 7);
        assert_eq!(decoded.errors, ["x", "y"]);
        assert_eq!(decoded.batches.len(), 1, "one batch: each rule runs once");
        let n = decoded.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(n.values().to_vec(), [1, 2, 3, 4, 5]);
        assert_eq!(n.null_count(), 0);
    }
}
