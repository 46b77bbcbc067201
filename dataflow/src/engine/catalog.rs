//! The catalog: streams and tables, the tasks that feed a table's rows, source profiles.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::record_batch::RecordBatch;
use quiver_compiler::{Statement, StreamDef, StreamKind};
use quiver_connectors::codec::Decoder;
use quiver_connectors::codec::compress::Compression;
use quiver_connectors::codec::json::JsonDecoder;
use quiver_connectors::{SourceEvent, SourceOutput, SourceSpec};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Engine;
use crate::error::EngineError;
use crate::runtime::Command;

/// Connection profiles: source type → `CONF_KEY` → properties (eKuiper's `etc/sources/*.yaml`).
pub type SourceProfiles = HashMap<String, HashMap<String, serde_json::Map<String, Value>>>;

/// A table and the tasks feeding it (its source and the decoder that applies rows); an
/// external lookup table has no task.
pub(super) struct TableEntry {
    pub(super) side: crate::tables::TableSide,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
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

impl Engine {
    /// Runs a `CREATE STREAM` or `CREATE TABLE` statement. A table starts reading its source
    /// at once and keeps its rows for every rule that joins it.
    pub fn create_stream(&self, sql: &str) -> Result<StreamDef, EngineError> {
        if self.cluster().is_some() {
            let (def, _) = self.checked_stream(sql)?;
            self.refuse_stream_in_cluster(&def)?;
            let control = super::cluster::Control::CreateStream {
                sql: sql.to_string(),
            };
            if let Some(applied) = self.sequenced(control) {
                applied?;
                return self.stream(&def.name).ok_or_else(|| {
                    EngineError::NotFound(format!("stream \"{}\" not found", def.name))
                });
            }
        }
        self.create_stream_here(sql)
    }

    /// [`Engine::create_stream`] in this process only.
    pub(super) fn create_stream_here(&self, sql: &str) -> Result<StreamDef, EngineError> {
        let (def, lookup) = self.checked_stream(sql)?;
        self.refuse_stream_in_cluster(&def)?;
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

    /// Checks a `CREATE STREAM` or `CREATE TABLE` statement as [`Engine::create_stream`] does
    /// (syntax, source type, lookup options) without creating anything: an import checks every
    /// statement before it creates the first.
    pub fn check_stream(&self, sql: &str) -> Result<StreamDef, EngineError> {
        Ok(self.checked_stream(sql)?.0)
    }

    /// The statement's definition and whether it is a lookup table.
    fn checked_stream(&self, sql: &str) -> Result<(StreamDef, bool), EngineError> {
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
        if matches!(def.options.format.as_str(), "protobuf" | "custom") {
            // The message type must exist now, not first when a rule starts.
            Decoder::for_stream(&def, false)
                .map_err(|e| EngineError::Invalid(format!("stream \"{}\": {e}", def.name)))?;
        }
        Ok((def, lookup))
    }

    /// The connection profile a stream or table names (`CONF_KEY`, else `default`).
    fn profile_props(&self, def: &StreamDef) -> serde_json::Map<String, Value> {
        let name = def.options.conf_key.as_deref().unwrap_or("default");
        let of = |profiles: &RwLock<SourceProfiles>| {
            profiles
                .read()
                .expect("profiles lock")
                .get(&def.options.source_type)
                .and_then(|p| p.get(name))
                .cloned()
        };
        of(&self.inner.sequenced_profiles)
            .or_else(|| of(&self.inner.profiles))
            .unwrap_or_default()
    }

    /// The decoder of `def`'s payloads: its `FORMAT`, after the `decompression` its source
    /// profile names (eKuiper's source property; the file source decompresses whole files
    /// itself). `with_topic` adds the metadata columns.
    pub(super) fn stream_decoder(
        &self,
        def: &StreamDef,
        with_topic: bool,
    ) -> Result<Decoder, EngineError> {
        let decoder = Decoder::for_stream(def, with_topic)
            .map_err(|e| EngineError::Invalid(format!("stream \"{}\": {e}", def.name)))?;
        if def.options.source_type == "file" {
            return Ok(decoder);
        }
        let props = self.profile_props(def);
        let named = props
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case("decompression") && !v.is_null());
        let Some((_, value)) = named else {
            return Ok(decoder);
        };
        let compression = value
            .as_str()
            .ok_or_else(|| "\"decompression\" must be a string".to_string())
            .and_then(Compression::named)
            .map_err(|e| EngineError::Invalid(format!("stream \"{}\": {e}", def.name)))?;
        Ok(decoder.decompressing(compression))
    }

    /// What a connector needs to read `def`'s source: type, DATASOURCE and profile props.
    pub(super) fn source_spec(&self, def: &StreamDef) -> SourceSpec {
        SourceSpec {
            source_type: def.options.source_type.clone(),
            datasource: def.options.datasource.clone(),
            props: self.profile_props(def),
            format: def.options.format.clone(),
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
        // Tables are JSON only (the DDL refuses other formats on them).
        let decoder = Decoder::json(JsonDecoder::new(def.arrow_schema(), false));
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
                format: def.options.format.clone(),
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
        let decoder = Decoder::json(JsonDecoder::new(def.arrow_schema(), false));
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
        let control = super::cluster::Control::DropStream {
            name: name.to_string(),
        };
        self.sequenced(control)
            .unwrap_or_else(|| self.drop_stream_here(name))
    }

    /// [`Engine::drop_stream`] in this process only.
    pub(super) fn drop_stream_here(&self, name: &str) -> Result<(), EngineError> {
        let rules = self.inner.rules.lock().expect("rules lock");
        let users: Vec<&str> = rules
            .values()
            .filter(|r| {
                let plan = &r.plan.plan;
                plan.scan().stream == name
                    || plan.joins_table(name)
                    || plan.joined_streams().iter().any(|j| j.name == name)
            })
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

    /// Sets the connection profiles of source types (`CONF_KEY` picks one; `default` otherwise).
    pub fn set_source_profiles(&self, profiles: SourceProfiles) {
        *self.inner.profiles.write().expect("profiles lock") = profiles;
    }

    /// Sets (`Some`) or removes (`None`) the profile `name` of `source_type` (lower case).
    /// Streams read their profile when a rule starts them, so running rules keep theirs. In a
    /// cluster it goes through the sequence to every process, where it wins over the process's
    /// own profile of that name (a follower has no REST API: its own are its `--config`
    /// file's, and a file split in byte ranges must be read with one profile everywhere).
    pub fn set_source_profile(
        &self,
        source_type: &str,
        name: &str,
        props: Option<serde_json::Map<String, Value>>,
    ) {
        let control = super::cluster::Control::SetProfile {
            source_type: source_type.to_string(),
            name: name.to_string(),
            props: props.clone(),
        };
        match self.sequenced(control) {
            Some(Err(e)) => tracing::error!(
                "profile \"{name}\" of {source_type} not sent to the cluster's processes: {e}"
            ),
            Some(Ok(())) => {}
            None => Self::set_profile_in(&self.inner.profiles, source_type, name, props),
        }
    }

    /// [`Engine::set_source_profile`] as the sequence applies it in every process.
    pub(super) fn set_sequenced_profile(
        &self,
        source_type: &str,
        name: &str,
        props: Option<serde_json::Map<String, Value>>,
    ) {
        Self::set_profile_in(&self.inner.profiles, source_type, name, props.clone());
        Self::set_profile_in(&self.inner.sequenced_profiles, source_type, name, props);
    }

    /// Sets or removes the profile `name` of `source_type` in `profiles`.
    fn set_profile_in(
        profiles: &RwLock<SourceProfiles>,
        source_type: &str,
        name: &str,
        props: Option<serde_json::Map<String, Value>>,
    ) {
        let mut profiles = profiles.write().expect("profiles lock");
        match props {
            Some(props) => {
                profiles
                    .entry(source_type.to_string())
                    .or_default()
                    .insert(name.to_string(), props);
            }
            None => {
                if let Some(by_name) = profiles.get_mut(source_type) {
                    by_name.remove(name);
                }
            }
        }
    }
}

/// A table source's event as rows; malformed rows are logged and left out.
fn table_rows(event: SourceEvent, decoder: &Decoder, table: &str) -> Vec<RecordBatch> {
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
