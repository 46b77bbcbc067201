//! A rule's physical plan, from its logical plan, its options and the catalog as it stands.

use quiver_compiler::StreamDef;

use super::Engine;
use super::entry::RuleEntry;
use super::options::event_time;
use crate::error::EngineError;
use crate::physical::{PhysicalPlan, Target, lower};

impl Engine {
    /// The physical plan of `entry` with its FROM stream `stream`.
    pub(super) fn physical(
        &self,
        entry: &RuleEntry,
        stream: &StreamDef,
    ) -> Result<PhysicalPlan, EngineError> {
        let sinks: Vec<String> = entry
            .spec
            .actions
            .iter()
            .map(|a| a.sink_type.clone())
            .collect();
        let target = Target {
            stream: &stream.name,
            source_type: &stream.options.source_type,
            shared: stream.options.shared,
            event_time: event_time(&entry.spec, stream)?,
            sinks: &sinks,
            send_nil: super::options::flag(&entry.spec.options, "sendNilField"),
            // A reading worker and the source's reader thread already keep two cores busy; in
            // a cluster the windows' groups spread over the other processes' cores.
            spare_cores: self.inner.cores > 2 || self.cluster().is_some(),
            // qos 1 and 2 (an invalid qos is refused later, by name).
            own_tables: super::recovery::qos(&entry.spec.options)
                .is_ok_and(|q| q.checkpointed().is_some()),
        };
        Ok(lower(&entry.plan.plan, &target))
    }

    /// `def` as `entry` reads it: a rule test's mock in place of its source
    /// ([`Engine::as_mocked`]), and a `SHARED` stream read by a source of the rule's own at
    /// qos 1 and 2 ([`super::recovery::read_durably`]).
    pub(super) fn as_read(&self, entry: &RuleEntry, def: StreamDef) -> StreamDef {
        let def = self.as_mocked(entry, def);
        super::recovery::read_durably(&entry.spec.options, def)
    }

    /// True when the catalog's stream `name` is `SHARED` (whatever a rule makes of it).
    pub(super) fn is_shared(&self, name: &str) -> bool {
        self.stream(name).is_some_and(|d| d.options.shared)
    }

    /// The FROM stream of `entry`, which must exist, as the rule reads it (mocked by a test).
    pub(super) fn rule_stream(&self, entry: &RuleEntry) -> Result<StreamDef, EngineError> {
        let name = &entry.plan.plan.scan().stream;
        self.stream(name)
            .map(|def| self.as_read(entry, def))
            .ok_or_else(|| EngineError::NotFound(format!("stream \"{name}\" not found")))
    }
}
