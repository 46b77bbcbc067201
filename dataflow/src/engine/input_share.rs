//! Partitioned input in a cluster, for rules whose rows any worker may take (not `ordered`):
//! every process reads a share of the rule's stream and feeds its own workers.
//!
//! - MQTT: every process subscribes through one MQTT shared subscription
//!   (`$share/<group>/<topic filter>`), so the broker hands each message to one process.
//! - File: every process reads its byte range of each file (`quiver_connectors::file`'s
//!   `split.rs`), and its source ends when its ranges are read, as the leader's does: no
//!   process waits for another's word that the input ended.
//!
//! Other sources, inputs that cannot be shared, and rules whose input one worker reads in
//! order stay on the leader.

use std::sync::Arc;
use std::time::Duration;

use quiver_compiler::RulePlan;
use quiver_connectors::file::{
    AgreeListing, FileSource, FileSourceConfig, Listing, Share, unsplittable,
};
use quiver_connectors::mqtt::MqttSourceConfig;
use quiver_connectors::{Source, SourceSpec};
use serde_json::Value;

use super::Engine;
use super::cluster::Control;
use crate::error::EngineError;

/// Files the leader sends in one listing at most: an item of the command sequence reaches every
/// worker of every process. Beyond it, each process lists the input itself, as it did before
/// listings were agreed.
const MAX_LISTED: usize = 10_000;

/// The prefix of an MQTT shared subscription's topic filter.
const SHARE_PREFIX: &str = "$share/";

/// How this process reads its share of a rule's input.
pub(super) enum InputShare {
    /// An MQTT stream through a shared subscription (the spec names it).
    Subscription,
    /// A file stream: this process's byte ranges of its files.
    FileRanges(Box<FileSourceConfig>),
}

impl Engine {
    /// In a cluster, makes `spec` read this process's share of the rule's stream and says how,
    /// or `None` when the leader reads it whole. Only a stream any worker may take rows of
    /// (`ordered` false: no event time, joins or analytic order) and without a named
    /// connection (those live on the leader) is shared: an MQTT stream, or a file stream read
    /// once and kept (plain lines and CSV in byte ranges, compressed files and JSON documents
    /// whole, each by one process).
    pub(super) fn take_input_share(
        &self,
        rule: &str,
        ordered: bool,
        spec: &mut SourceSpec,
    ) -> Option<InputShare> {
        let cluster = self.cluster()?;
        if ordered || property(spec, "connectionSelector").is_some() {
            return None;
        }
        if spec.source_type == "file" {
            // A profile the source refuses stays on the leader, which fails with its error.
            let mut config =
                FileSourceConfig::parse_for_format(&spec.datasource, &spec.props, &spec.format)
                    .ok()?;
            if let Some(why) = unsplittable(&config) {
                tracing::debug!(rule, "the file input is read on the leader: {why}");
                return None;
            }
            config.share = Some(Share {
                process: cluster.process,
                processes: cluster.processes,
            });
            return Some(InputShare::FileRanges(Box::new(config)));
        }
        if !spec.source_type.eq_ignore_ascii_case("mqtt") {
            return None;
        }
        share_spec(rule, cluster.process, spec);
        Some(InputShare::Subscription)
    }

    /// The source of a rule's input in this process: for a file read in ranges, a file source
    /// reading this process's; else the one `spec` names.
    pub(super) fn input_source(
        &self,
        share: Option<&InputShare>,
        spec: &SourceSpec,
        rule: &str,
        key: &str,
    ) -> Result<Box<dyn Source>, EngineError> {
        match share {
            Some(InputShare::FileRanges(config)) => {
                let mut config = config.as_ref().clone();
                config.agree = Some(self.agree_listing(rule, key));
                Ok(Box::new(FileSource::new(config)))
            }
            Some(InputShare::Subscription) | None => Ok(self.inner.connectors.source(spec)?),
        }
    }

    /// How the source of run `key` of `rule` in this process agrees its split file input's
    /// listing with the leader's: the leader puts its own in the sequence, a follower waits
    /// for it. So every process reads the same files, each up to the same length.
    fn agree_listing(&self, rule: &str, key: &str) -> AgreeListing {
        let engine = Arc::downgrade(&self.inner);
        let (rule, key) = (rule.to_string(), key.to_string());
        AgreeListing(Arc::new(move |mine, stopped| {
            let inner = engine.upgrade().ok_or("the engine stopped")?;
            Engine { inner }.agreed_listing(&rule, &key, mine, stopped)
        }))
    }

    /// See [`Engine::agree_listing`]. Blocking: a follower waits for the leader's listing.
    fn agreed_listing(
        &self,
        rule: &str,
        key: &str,
        mine: Result<Listing, String>,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Listing, String> {
        let Some(cluster) = self.cluster() else {
            return mine;
        };
        if cluster.process == 0 {
            // A failed listing tells the others there is nothing to read; the leader's source
            // fails with its error.
            let files = mine.as_ref().map_or_else(|_| Vec::new(), Clone::clone);
            let files = if files.len() > MAX_LISTED {
                tracing::warn!(
                    rule,
                    files = files.len(),
                    "the input has more files than the leader sends: each process lists it itself (files must not change while they are read)"
                );
                None
            } else if files.iter().any(|(f, _)| f.to_str().is_none()) {
                // The sequence carries text: such a name cannot be sent.
                tracing::warn!(
                    rule,
                    "a file name of the input is not UTF-8: each process lists it itself (files must not change while they are read)"
                );
                None
            } else {
                Some(files)
            };
            // Only for the rule's current run: a run torn down meanwhile (its source thread
            // outlives it) sends nothing.
            let rules = self.inner.rules.lock().expect("rules lock");
            let current = rules.get(rule).is_some_and(|e| e.runs_now(key));
            if !current || stopped() {
                return Err("the rule stopped before its input was listed".to_string());
            }
            self.put_in_sequence(Control::InputListing {
                id: rule.to_string(),
                key: key.to_string(),
                files,
            });
            drop(rules);
            return mine;
        }
        let mut listings = cluster.listings.lock().expect("listings lock");
        loop {
            if listings.get(rule).is_some_and(|(k, _)| k == key) {
                let (_, files) = listings.remove(rule).expect("a listing");
                return match files {
                    Some(files) => Ok(files),
                    None => mine,
                };
            }
            if stopped() {
                return Err("the rule stopped before the leader listed its input".to_string());
            }
            if let Some(reason) = self.workers_stopped() {
                return Err(reason);
            }
            listings = cluster
                .listed
                .wait_timeout(listings, Duration::from_millis(100))
                .expect("listings lock")
                .0;
        }
    }

    /// On a follower, the leader's listing for `rule`'s run `key` if that is the rule's current
    /// run, reading a share of its input here (a listing that comes late, for a run torn down
    /// since, is dropped).
    pub(super) fn take_listing(&self, rule: &str, key: &str, files: Option<Listing>) {
        let rules = self.inner.rules.lock().expect("rules lock");
        if rules.get(rule).is_some_and(|e| e.runs_now(key)) {
            self.put_listing(rule, key, files);
        }
    }

    /// Hands `files` to the source of `rule`'s run `key` here, which waits for them (the
    /// caller checked that run is current).
    pub(super) fn put_listing(&self, rule: &str, key: &str, files: Option<Listing>) {
        if let Some(cluster) = self.cluster() {
            let mut listings = cluster.listings.lock().expect("listings lock");
            listings.insert(rule.to_string(), (key.to_string(), files));
            cluster.listed.notify_all();
        }
    }

    /// Drops what a follower holds of `rule`'s listings (its run is torn down).
    pub(super) fn forget_listing(&self, rule: &str) {
        if let Some(cluster) = self.cluster() {
            cluster.listings.lock().expect("listings lock").remove(rule);
        }
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

/// A digest of how a source is made (type, `DATASOURCE`, `FORMAT` and profile): the leader
/// sends its own with the end of an input, and a follower that made the source otherwise
/// (another `--config` profile) says so instead of reading other parts of the files.
pub(super) fn spec_digest(spec: &SourceSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.source_type.hash(&mut h);
    spec.datasource.hash(&mut h);
    spec.format.hash(&mut h);
    // Keys sorted: a profile's order does not matter.
    let props: std::collections::BTreeMap<_, _> = spec.props.iter().collect();
    serde_json::to_string(&props)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
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
