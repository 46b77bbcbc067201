//! Partitioned MQTT input in a cluster: every process subscribes to a rule's MQTT stream
//! through one MQTT shared subscription (`$share/<group>/<topic filter>`), so the broker
//! hands each message to one process and each process's source feeds its own workers.
//! Other sources, and rules whose input one worker reads in order, stay on the leader.

use quiver_compiler::RulePlan;
use quiver_connectors::SourceSpec;
use quiver_connectors::mqtt::MqttSourceConfig;
use serde_json::Value;

use super::Engine;
use crate::error::EngineError;

/// The prefix of an MQTT shared subscription's topic filter.
const SHARE_PREFIX: &str = "$share/";

impl Engine {
    /// In a cluster, makes `spec` read this process's share of the rule's MQTT stream and
    /// says whether it does. Only a stream any worker may take rows of (`ordered` false: no
    /// event time, joins or analytic order) and without a named connection (those live on
    /// the leader) is shared.
    pub(super) fn take_input_share(
        &self,
        rule: &str,
        ordered: bool,
        spec: &mut SourceSpec,
    ) -> bool {
        let Some(cluster) = self.cluster() else {
            return false;
        };
        if ordered
            || !spec.source_type.eq_ignore_ascii_case("mqtt")
            || property(spec, "connectionSelector").is_some()
        {
            return false;
        }
        share_spec(rule, cluster.process, spec);
        true
    }

    /// On the leader before a rule is sequenced: the connection settings of its MQTT stream.
    /// Every process makes that stream's source from the same profile, so a bad one would
    /// fail in every process, and a follower cannot tell that failure from its own.
    pub(super) fn check_mqtt_input(&self, rule: &str, plan: &RulePlan) -> Result<(), EngineError> {
        let Some(def) = self.stream(&plan.plan.scan().stream) else {
            return Ok(());
        };
        let mut spec = self.source_spec(&def);
        if !spec.source_type.eq_ignore_ascii_case("mqtt")
            || property(&spec, "connectionSelector").is_some()
        {
            return Ok(());
        }
        share_spec(rule, 0, &mut spec);
        MqttSourceConfig::parse(&spec.datasource, &spec.props)
            .map(|_| ())
            .map_err(|e| EngineError::Invalid(format!("stream \"{}\": {e}", def.name)))
    }
}

/// Rewrites an MQTT source `spec` for process `process` of a cluster: the topic filter in the
/// group `quiver-<rule>` (a filter already `$share/...` keeps the user's group), and a client
/// id the user set suffixed `-<process>` (the broker would drop one of two clients with one
/// id; a generated id differs per process already).
fn share_spec(rule: &str, process: usize, spec: &mut SourceSpec) {
    let topic = spec.datasource.trim();
    if !topic.starts_with(SHARE_PREFIX) {
        spec.datasource = format!("{SHARE_PREFIX}{}/{topic}", group(rule));
    }
    if let Some(key) = property(spec, "clientid")
        && let Some(Value::String(id)) = spec.props.get_mut(&key)
        && !id.is_empty()
    {
        id.push_str(&format!("-{process}"));
    }
}

/// The shared subscription's group of `rule`: `quiver-<rule id>`, with the characters a group
/// name cannot hold (`/`, `+`, `#`) as `_`.
fn group(rule: &str) -> String {
    let id: String = rule
        .chars()
        .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
        .collect();
    format!("quiver-{id}")
}

/// The key of connection property `name` in `spec`, matched case-insensitively as the MQTT
/// connector does.
fn property(spec: &SourceSpec, name: &str) -> Option<String> {
    spec.props
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mqtt(topic: &str, props: Value) -> SourceSpec {
        SourceSpec {
            source_type: "mqtt".into(),
            datasource: topic.into(),
            props: props.as_object().expect("an object").clone(),
            format: "json".into(),
        }
    }

    #[test]
    fn a_topic_joins_the_rules_group_and_a_set_client_id_differs_per_process() {
        let mut spec = mqtt("sensors/+/t", json!({"clientId": "edge"}));
        share_spec("r/1#", 1, &mut spec);
        assert_eq!(spec.datasource, "$share/quiver-r_1_/sensors/+/t");
        assert_eq!(spec.props["clientId"], json!("edge-1"));
    }

    #[test]
    fn a_shared_topic_keeps_its_group_and_a_generated_client_id_is_left_alone() {
        let mut spec = mqtt("$share/mine/a", json!({}));
        share_spec("r", 0, &mut spec);
        assert_eq!(spec.datasource, "$share/mine/a");
        assert!(spec.props.is_empty());
    }
}
