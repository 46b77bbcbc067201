//! The rule API: a rule's lifecycle (create, start, stop, restart, delete).

use std::collections::HashMap;

use quiver_compiler::{RulePlan, StreamDef};

use super::Engine;
use super::cluster::Control;
use super::entry::RuleEntry;
use super::spec::{Action, RuleSpec};
use crate::error::EngineError;
use crate::sinkprops::SinkSettings;

impl Engine {
    /// Compiles a rule's SQL without creating it.
    pub fn compile(&self, sql: &str) -> Result<RulePlan, EngineError> {
        self.compile_with(sql, &[])
    }

    /// Compiles a rule's SQL against the engine's streams plus `extra`, streams not created
    /// yet (an import checks its rules against the streams it is about to create).
    pub fn compile_with(&self, sql: &str, extra: &[StreamDef]) -> Result<RulePlan, EngineError> {
        let mut catalog: HashMap<String, StreamDef> = {
            let streams = self.inner.streams.read().expect("streams lock");
            streams
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for def in extra {
            catalog.insert(def.name.clone(), def.clone());
        }
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
        if self.cluster().is_some() {
            // Checked before it is sequenced, so a bad rule answers without reaching the
            // other processes.
            self.check_rule_for_cluster(&spec)?;
            let rule = super::cluster::spec_to_json(&spec);
            if let Some(applied) = self.sequenced(Control::CreateRule { rule, start }) {
                return applied;
            }
        }
        self.insert_rule(spec, start, None)
    }

    /// Checks and adds a rule (a test rule with `test`), started or stopped.
    pub(super) fn insert_rule(
        &self,
        spec: RuleSpec,
        start: bool,
        test: Option<super::trial::TestInput>,
    ) -> Result<(), EngineError> {
        if spec.id.is_empty() {
            return Err(EngineError::Invalid("rule id is required".into()));
        }
        let plan = self.compile(&spec.sql)?;
        self.validate_options(&spec.options)?;
        self.refuse_rule_in_cluster(&spec)?;
        let restart_strategy =
            super::restart::RestartStrategy::parse(spec.options.get("restartStrategy"))?;
        let schedule = super::schedule::Schedule::parse(&spec.options)?;
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
                // From a base of its own: a rule created again under its id never matches
                // a command decided for the one before.
                commands: self
                    .inner
                    .entries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    << 32,
                restart_strategy,
                restart: Default::default(),
                schedule,
                schedule_state: Default::default(),
                test,
            },
        );
        let entry = rules.get_mut(&id).expect("just inserted");
        if !start {
            entry.stop_message = super::transitions::CANCELED_MANUALLY.into();
            return Ok(());
        }
        if let Err(e) = self.start_entry(entry) {
            rules.remove(&id);
            return Err(e);
        }
        Ok(())
    }

    /// Starts a rule's run, or arms its schedule.
    fn start_entry(&self, entry: &mut RuleEntry) -> Result<(), EngineError> {
        if entry.schedule.is_some() {
            return self.arm_schedule(entry);
        }
        self.teardown(entry, "");
        self.launch(entry)
    }

    /// Checks the rule options the engine implements (`bufferLength` within its limit, ...).
    pub fn validate_options(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), EngineError> {
        super::options::validate(options)
    }

    /// Checks an action's sink type and properties (common and connector-specific).
    pub fn validate_action(&self, action: &Action) -> Result<(), EngineError> {
        let (settings, props) = SinkSettings::parse_for(
            quiver_connectors::Connectors::sink_own_keys(&action.sink_type),
            &action.props,
        )?;
        let sink = self.inner.connectors.sink(&action.sink_type, &props)?;
        if let Some(cache) = &settings.cache {
            self.cache_dir()?;
            if let Some(dest) = &cache.destination {
                self.resend_sink(&action.sink_type, &props, dest)?;
            }
        }
        if settings.data_template.is_some() && !sink.accepts_payloads() {
            return Err(EngineError::Invalid(format!(
                "sink \"{}\" writes rows, so \"dataTemplate\" does not apply to it",
                action.sink_type
            )));
        }
        Ok(())
    }

    /// A second sink like the action's, writing to `dest` (eKuiper's `resendDestination`)
    /// instead of its topic or URL: where resent results go.
    pub(super) fn resend_sink(
        &self,
        sink_type: &str,
        props: &serde_json::Value,
        dest: &str,
    ) -> Result<Box<dyn quiver_connectors::Sink>, EngineError> {
        let key = quiver_connectors::Connectors::resend_destination_key(sink_type).ok_or_else(|| {
            EngineError::Invalid(format!(
                "sink property \"resendDestination\" is not supported by the {sink_type} sink (mqtt, rest and memory only)"
            ))
        })?;
        let mut props = props.clone();
        if let Some(map) = props.as_object_mut() {
            map.retain(|k, _| !k.eq_ignore_ascii_case(key));
            map.insert(key.to_string(), serde_json::Value::String(dest.to_string()));
        }
        Ok(self.inner.connectors.sink(sink_type, &props)?)
    }

    /// Starts a stopped rule (no-op if running).
    pub fn start_rule(&self, id: &str) -> Result<(), EngineError> {
        let id = id.to_string();
        self.sequenced(Control::StartRule { id: id.clone() })
            .unwrap_or_else(|| self.start_rule_here(&id))
    }

    /// [`Engine::start_rule`] in this process only.
    pub(super) fn start_rule_here(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get_mut(id).ok_or_else(|| unknown_rule(id))?;
        entry.commands += 1;
        if entry.schedule_state.armed || entry.run.as_ref().is_some_and(|r| !*r.done.borrow()) {
            return Ok(());
        }
        entry.restart = Default::default();
        self.start_entry(entry)
    }

    /// Stops a rule; its state is dropped, its definition kept.
    pub fn stop_rule(&self, id: &str) -> Result<(), EngineError> {
        let id = id.to_string();
        self.sequenced(Control::StopRule { id: id.clone() })
            .unwrap_or_else(|| self.stop_rule_here(&id))
    }

    /// [`Engine::stop_rule`] in this process only.
    pub(super) fn stop_rule_here(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get_mut(id).ok_or_else(|| unknown_rule(id))?;
        entry.commands += 1;
        // A stop by hand also cancels a pending restart, and the rule's schedule.
        entry.restart = Default::default();
        entry.schedule_state = Default::default();
        self.teardown(entry, super::transitions::CANCELED_MANUALLY);
        Ok(())
    }

    /// Stops and starts a rule.
    pub fn restart_rule(&self, id: &str) -> Result<(), EngineError> {
        let id = id.to_string();
        self.sequenced(Control::RestartRule { id: id.clone() })
            .unwrap_or_else(|| self.restart_rule_here(&id))
    }

    /// [`Engine::restart_rule`] in this process only.
    pub(super) fn restart_rule_here(&self, id: &str) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get_mut(id).ok_or_else(|| unknown_rule(id))?;
        entry.commands += 1;
        entry.restart = Default::default();
        self.start_entry(entry)
    }

    /// Stops and deletes a rule, and its sink caches.
    pub fn delete_rule(&self, id: &str) -> Result<(), EngineError> {
        self.sequenced_remove(id, false)
    }

    /// Stops and deletes a rule that is about to be created again with a new definition
    /// (`PUT /rules/{id}`): its sinks' caches stay for the new run.
    pub fn delete_rule_keeping_caches(&self, id: &str) -> Result<(), EngineError> {
        self.sequenced_remove(id, true)
    }

    /// Deletes a rule in every process of a cluster, or in this one.
    fn sequenced_remove(&self, id: &str, keep_caches: bool) -> Result<(), EngineError> {
        let control = Control::DeleteRule {
            id: id.to_string(),
            keep_caches,
        };
        self.sequenced(control)
            .unwrap_or_else(|| self.remove_rule(id, keep_caches))
    }

    /// Deletes a rule in this process only.
    pub(super) fn remove_rule(&self, id: &str, keep_caches: bool) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let mut entry = rules.remove(id).ok_or_else(|| unknown_rule(id))?;
        if let Some(run) = &entry.run
            && !keep_caches
        {
            run.discard_caches
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.teardown(&mut entry, "deleted");
        if !keep_caches {
            // A stopped rule's sinks left their caches on disk for its next run: there is none.
            self.forget_caches(id, Vec::new());
            self.forget_checkpoints(id);
        }
        // The owner locks of deleted rules that no sink task holds any more, so the map only
        // grows with the rules that exist.
        self.inner
            .cache_owners
            .lock()
            .expect("cache owners lock")
            .retain(|(rule, _), owner| {
                rules.contains_key(rule) || std::sync::Arc::strong_count(owner) > 1
            });
        Ok(())
    }

    /// Ids of all rules, sorted; test rules are not rules of the API and are left out.
    pub fn rule_ids(&self) -> Vec<String> {
        self.inner
            .rules
            .lock()
            .expect("rules lock")
            .iter()
            .filter(|(_, e)| e.test.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The streams and tables a rule reads (its FROM stream and what it joins), sorted.
    pub fn rule_sources(&self, id: &str) -> Option<Vec<String>> {
        let names = self.stream_names();
        let tables = self.table_names();
        let rules = self.inner.rules.lock().expect("rules lock");
        let plan = &rules.get(id)?.plan.plan;
        let mut used: Vec<String> = names
            .into_iter()
            .chain(tables)
            .filter(|n| plan.scan().stream == *n || plan.joins_table(n))
            .collect();
        used.sort();
        Some(used)
    }

    /// The rule as submitted.
    pub fn rule_spec(&self, id: &str) -> Option<RuleSpec> {
        let rules = self.inner.rules.lock().expect("rules lock");
        rules.get(id).map(|e| e.spec.clone())
    }
}

/// The error for a rule id that is not in the engine.
pub(super) fn unknown_rule(id: &str) -> EngineError {
    EngineError::NotFound(format!("rule \"{id}\" not found"))
}
