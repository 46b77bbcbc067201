//! Test rules (eKuiper's rule test run, `POST /ruletest`): rules that read mocked rows instead
//! of their streams' sources and that the rule API does not list.
//!
//! A test rule is an ordinary rule entry with a [`TestInput`]: every stream it mocks reads a
//! `simulator` source with the mock's rows (the stream's schema and name stay, its payloads are
//! JSON); streams it does not mock read their real source, as eKuiper does. It is kept out of
//! [`Engine::rule_ids`], so it is neither listed nor persisted by the server.

use std::collections::BTreeMap;

use quiver_compiler::{StreamDef, StreamKind};
use quiver_connectors::SourceSpec;
use serde_json::{Map, Value};

use super::Engine;
use super::entry::RuleEntry;
use super::spec::RuleSpec;
use crate::error::EngineError;

/// Mocked streams: stream name → `simulator` properties (`data`, `interval`, `loop`).
pub type Mocks = BTreeMap<String, Map<String, Value>>;

/// What makes a rule a test rule.
#[derive(Debug, Clone, Default)]
pub struct TestInput {
    /// The streams whose rows are mocked.
    pub mocks: Mocks,
}

impl Engine {
    /// Creates a stopped test rule: its SQL, actions and mocks are checked now. Every mocked
    /// name must be a stream the rule reads (a mock it would ignore is refused).
    pub fn create_test_rule(&self, spec: RuleSpec, input: TestInput) -> Result<(), EngineError> {
        // A test rule runs on the leader alone: its dataflow would be missing elsewhere.
        self.refuse_in_cluster("a rule test (POST /ruletest)")?;
        let plan = self.compile(&spec.sql)?;
        let read: Vec<&str> = std::iter::once(plan.plan.scan().stream.as_str())
            .chain(plan.plan.joined_streams().iter().map(|j| j.name.as_str()))
            .collect();
        for (name, props) in &input.mocks {
            if !read.contains(&name.as_str()) {
                return Err(EngineError::Invalid(format!(
                    "mockSource \"{name}\" is not a stream the rule reads (it reads {})",
                    read.iter()
                        .map(|s| format!("\"{s}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let def = self
                .stream(name)
                .ok_or_else(|| EngineError::NotFound(format!("stream \"{name}\" not found")))?;
            if def.kind != StreamKind::Stream {
                return Err(EngineError::Invalid(format!(
                    "mockSource \"{name}\" is a table; only streams can be mocked"
                )));
            }
            // Builds (and drops) the simulator source: its properties are checked here.
            let spec = mocked_spec(&def, props);
            self.inner
                .connectors
                .source(&spec)
                .map_err(|e| EngineError::Invalid(format!("mockSource \"{name}\": {e}")))?;
        }
        self.insert_rule(spec, false, Some(input))
    }

    /// `def` as `entry`, a rule test, reads it: a mocked stream becomes an unshared JSON
    /// `simulator` stream.
    pub(super) fn as_mocked(&self, entry: &RuleEntry, def: StreamDef) -> StreamDef {
        match entry.test.as_ref().and_then(|t| t.mocks.get(&def.name)) {
            None => def,
            Some(_) => {
                let mut def = def;
                def.options.source_type = "simulator".into();
                def.options.shared = false;
                def.options.format = "json".into();
                def.options.conf_key = None;
                def
            }
        }
    }

    /// What the source of `def` (as [`Engine::as_read`] returned it) needs: the mock's rows
    /// for a mocked stream, its profile otherwise.
    pub(super) fn rule_source_spec(&self, entry: &RuleEntry, def: &StreamDef) -> SourceSpec {
        match entry.test.as_ref().and_then(|t| t.mocks.get(&def.name)) {
            Some(props) => mocked_spec(def, props),
            None => self.source_spec(def),
        }
    }
}

/// The simulator source spec of a mocked stream.
fn mocked_spec(def: &StreamDef, props: &Map<String, Value>) -> SourceSpec {
    SourceSpec {
        source_type: "simulator".into(),
        datasource: def.options.datasource.clone(),
        props: props.clone(),
        format: def.options.format.clone(),
    }
}
