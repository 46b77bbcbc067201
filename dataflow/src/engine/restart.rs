//! eKuiper's `restartStrategy`: a rule whose run fails (a source, sink or operator error) is
//! started again after a delay that grows with each failure, up to `attempts` times; then it
//! stays stopped with the error shown. One engine task checks the rules five times a second.
//! In a cluster the leader checks them, and its restarts reach every process through the
//! command sequence.

use std::time::Duration;

use serde_json::Value;

use super::Engine;
use super::cluster::Control;
use super::entry::{Decided, RuleEntry};
use super::rules::unknown_rule;
use super::transitions::{self, Change};
use crate::clock::now_ms;
use crate::error::EngineError;

/// How often the supervisor looks for failed runs and due restarts.
const TICK: Duration = Duration::from_millis(200);

/// The most restarts a rule may ask for: beyond a few hundred, a rule that keeps failing is
/// better stopped and looked at.
pub const MAX_ATTEMPTS: u64 = 1_000;

/// The longest delay between two restarts (`delay`, `maxDelay`): one day.
pub const MAX_DELAY_MS: u64 = 86_400_000;

/// A rule's `restartStrategy`, with eKuiper's defaults.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RestartStrategy {
    /// Restarts after failures in a row; 0: none.
    pub attempts: u32,
    /// Wait before the first restart, ms.
    pub delay_ms: u64,
    /// Each further wait is this many times the last.
    pub multiplier: f64,
    /// The longest wait, ms.
    pub max_delay_ms: u64,
    /// Each wait varies at random by up to this fraction of itself, so that rules that failed
    /// together do not all restart at the same moment.
    pub jitter: f64,
}

impl Default for RestartStrategy {
    fn default() -> Self {
        RestartStrategy {
            attempts: 0,
            delay_ms: 1_000,
            multiplier: 2.0,
            max_delay_ms: 30_000,
            jitter: 0.1,
        }
    }
}

fn bad(what: &str) -> EngineError {
    EngineError::Invalid(format!("rule option restartStrategy: {what}"))
}

/// Milliseconds from a number or a duration text (`"1s"`).
fn millis(v: &Value, key: &str) -> Result<u64, EngineError> {
    let ms = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => quiver_compiler::duration::parse_config_millis(s),
        _ => None,
    }
    .ok_or_else(|| {
        bad(&format!(
            "{key} must be milliseconds or a duration, got {v}"
        ))
    })?;
    if ms > MAX_DELAY_MS {
        return Err(bad(&format!(
            "{key} {ms} is above the limit of {MAX_DELAY_MS}"
        )));
    }
    Ok(ms)
}

impl RestartStrategy {
    /// Reads the option (absent or null: no restarts); unknown keys and bad values are refused.
    pub fn parse(v: Option<&Value>) -> Result<RestartStrategy, EngineError> {
        let mut s = RestartStrategy::default();
        let map = match v {
            None | Some(Value::Null) => return Ok(s),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(bad(&format!("must be an object, got {other}"))),
        };
        for (key, value) in map {
            match key.as_str() {
                "attempts" => {
                    let n = value
                        .as_u64()
                        .ok_or_else(|| bad(&format!("attempts must be a count, got {value}")))?;
                    if n > MAX_ATTEMPTS {
                        return Err(bad(&format!(
                            "attempts {n} is above the limit of {MAX_ATTEMPTS}"
                        )));
                    }
                    s.attempts = n as u32;
                }
                "delay" => s.delay_ms = millis(value, "delay")?,
                "maxDelay" => s.max_delay_ms = millis(value, "maxDelay")?,
                "multiplier" => {
                    s.multiplier = value
                        .as_f64()
                        .filter(|m| (1.0..=100.0).contains(m))
                        .ok_or_else(|| {
                            bad(&format!("multiplier must be from 1 to 100, got {value}"))
                        })?
                }
                "jitterFactor" => {
                    s.jitter = value
                        .as_f64()
                        .filter(|j| (0.0..=1.0).contains(j))
                        .ok_or_else(|| {
                            bad(&format!("jitterFactor must be from 0 to 1, got {value}"))
                        })?
                }
                other => {
                    return Err(bad(&format!(
                        "unknown key \"{other}\" (attempts, delay, multiplier, maxDelay, jitterFactor)"
                    )));
                }
            }
        }
        Ok(s)
    }

    /// The wait before restart number `n` (0 for the first): `delay × multiplierⁿ`, at most
    /// `maxDelay`, then moved by up to ±`jitterFactor` of itself with `random` in [0, 1).
    pub fn wait_ms(&self, n: u32, random: f64) -> u64 {
        let base = (self.delay_ms as f64 * self.multiplier.powi(n.min(64) as i32))
            .min(self.max_delay_ms.max(self.delay_ms) as f64);
        let jittered = base * (1.0 + self.jitter * (2.0 * random - 1.0));
        jittered.max(0.0) as u64
    }
}

/// Where a rule is in its restarts.
#[derive(Debug, Default)]
pub(super) struct RestartState {
    /// Restarts made since the rule last ran well (or was started by hand).
    pub made: u32,
    /// When the next restart is due (ms since the epoch); 0: none pending.
    pub next_ms: i64,
    /// The run whose failure was handled, so it is counted once.
    pub handled_run: Option<String>,
    /// The failure that stopped the rule for good, after the last attempt.
    pub gave_up: bool,
}

/// A number in [0, 1) that differs from call to call (jitter needs no better).
fn random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Engine {
    /// Starts the supervisor, which restarts failed rules and follows the schedules of
    /// scheduled rules (`schedule.rs`); it ends with the engine.
    pub(super) fn start_supervisor(&self) {
        self.every(TICK, |engine| {
            engine.supervise();
            engine.run_schedules();
        });
    }

    /// One look at every rule with a restart strategy: schedules a restart for a run that
    /// failed, and restarts the rules whose time has come. In a cluster the leader alone
    /// supervises: a restart builds dataflows, so it goes through the command sequence and
    /// every process applies it in its order ([`Control::RecoverRule`]).
    fn supervise(&self) {
        // A stopped cluster restarts nothing: it forms again as a whole, with a new engine.
        if self.cluster().is_some() && self.workers_stopped().is_some() {
            return;
        }
        // Followers log their runs' ends, and restart nothing of their own.
        let restarts = !self.is_follower();
        let now = now_ms();
        let mut due = Vec::new();
        let mut rules = self.inner.rules.lock().expect("rules lock");
        for entry in rules.values_mut() {
            if entry.restart.next_ms > 0 {
                if restarts && now >= entry.restart.next_ms {
                    if self.cluster().is_some() {
                        self.count_restart(entry);
                        due.push((entry.spec.id.clone(), entry.decided()));
                    } else {
                        self.restart_now(entry);
                    }
                }
                continue;
            }
            let Some(run) = &entry.run else {
                continue;
            };
            if entry.restart.handled_run.as_deref() == Some(run.key.as_str()) {
                continue;
            }
            // Every rule's failed or finished run is seen once here, to log it; only rules
            // with a restart strategy go on to be restarted.
            let error = run.error.lock().expect("error lock").clone();
            let finished = *run.done.borrow();
            let Some(error) = error else {
                if finished {
                    entry.restart.handled_run = Some(run.key.clone());
                    transitions::log(&entry.spec.id, Change::Finished);
                }
                continue;
            };
            entry.restart.handled_run = Some(run.key.clone());
            transitions::log(&entry.spec.id, Change::Failed(&error));
            if entry.restart_strategy.attempts == 0 || !restarts {
                continue;
            }
            let strategy = &entry.restart_strategy;
            // A run that lasted longer than the longest wait ran well: count afresh.
            if now - entry.last_start_ms > strategy.max_delay_ms.max(strategy.delay_ms) as i64 {
                entry.restart.made = 0;
            }
            if entry.restart.made >= strategy.attempts {
                entry.restart.gave_up = true;
                let restarts = entry.restart.made;
                transitions::log(&entry.spec.id, Change::GaveUp { restarts });
                continue;
            }
            let wait = strategy.wait_ms(entry.restart.made, random());
            entry.restart.next_ms = now + wait as i64;
            let change = Change::Scheduled {
                attempt: entry.restart.made + 1,
                of: strategy.attempts,
                wait_ms: wait,
            };
            transitions::log(&entry.spec.id, change);
        }
        // Outside the rules' lock (applying a command takes it), and off the supervisor's
        // tick: each waits for every process to reach it.
        drop(rules);
        for (id, at) in due {
            let control = Control::RecoverRule { id: id.clone(), at };
            self.sequence_in_background(id, control);
        }
    }

    /// Puts the leader's own `control` for rule `id` in the sequence from a thread of its
    /// own, logging a failure: the supervisor's tick does not wait for it.
    pub(super) fn sequence_in_background(&self, id: String, control: Control) {
        let engine = Engine {
            inner: self.inner.clone(),
        };
        // A plain thread (not the runtime's): `sequenced` blocks it until applied.
        let spawned = std::thread::Builder::new()
            .name("sequence-command".into())
            .spawn(move || {
                if let Some(Err(e)) = engine.sequenced(control) {
                    tracing::warn!(rule = %id, "the leader's command for the rule was not applied: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::error!("the leader's command was not sequenced: no thread: {e}");
        }
    }

    /// Counts the restart about to be made, and logs it.
    fn count_restart(&self, entry: &mut RuleEntry) {
        entry.restart.next_ms = 0;
        entry.restart.made += 1;
        let change = Change::Restarting {
            attempt: entry.restart.made,
            of: entry.restart_strategy.attempts,
        };
        transitions::log(&entry.spec.id, change);
    }

    /// Tears the failed run down and starts a new one (one process).
    fn restart_now(&self, entry: &mut RuleEntry) {
        self.count_restart(entry);
        let _ = self.relaunch(entry);
    }

    /// Tears the failed run down and starts a new one; a launch that fails counts as a
    /// failure of its own, with the next attempt scheduled.
    fn relaunch(&self, entry: &mut RuleEntry) -> Result<(), EngineError> {
        let message = entry
            .run
            .as_ref()
            .and_then(|r| r.error.lock().expect("error lock").clone())
            .unwrap_or_default();
        self.teardown(entry, &message);
        let launched = self.launch(entry);
        if let Err(e) = &launched {
            entry.stop_message = format!("restart failed: {e}");
            let strategy = &entry.restart_strategy;
            if entry.restart.made < strategy.attempts {
                let wait = strategy.wait_ms(entry.restart.made, random());
                entry.restart.next_ms = now_ms() + wait as i64;
            } else {
                entry.restart.gave_up = true;
            }
        }
        launched
    }

    /// Applies the leader's restart of a failed rule ([`Control::RecoverRule`]) in this
    /// process: its run torn down and started again, the restart counted on the leader.
    pub(super) fn recover_rule_here(&self, id: &str, at: Decided) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get_mut(id).ok_or_else(|| unknown_rule(id))?;
        if entry.decided() != at {
            // Stopped, started or restarted by hand (or deleted and created again) after the
            // leader decided: that wins.
            tracing::info!(rule = %id, "restart not made: the rule was stopped or started since");
            // A start that found the failed run still there changed nothing: on the leader,
            // the failure is looked at again, so its restart is scheduled anew.
            if !self.is_follower()
                && entry.decided().same_run(at)
                && let Some(run) = &entry.run
                && entry.restart.handled_run.as_deref() == Some(run.key.as_str())
            {
                entry.restart.handled_run = None;
                entry.restart.made = entry.restart.made.saturating_sub(1);
            }
            return Ok(());
        }
        entry.commands += 1;
        self.relaunch(entry)
    }

    /// Undoes, in this process, a restart or scheduled start that failed on the leader
    /// ([`Control::UndoRun`]): the run it built here (run `key`) is torn down, as there.
    pub(super) fn undo_run_here(&self, id: &str, key: &str) {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        // Only the run that failed there: one a later command started stays.
        if let Some(entry) = rules.get_mut(id)
            && entry.runs_now(key)
        {
            self.teardown(entry, "the run failed to start on the leader");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ekuipers_defaults_and_forms_are_read() {
        assert_eq!(RestartStrategy::parse(None).unwrap().attempts, 0);
        let s = RestartStrategy::parse(Some(&json!({"attempts": 3, "delay": "1s",
            "multiplier": 2, "maxDelay": "30s", "jitterFactor": 0.1})))
        .unwrap();
        assert_eq!(
            s,
            RestartStrategy {
                attempts: 3,
                ..Default::default()
            }
        );
        let s = RestartStrategy::parse(Some(&json!({"attempts": 2, "delay": 100}))).unwrap();
        assert_eq!((s.attempts, s.delay_ms), (2, 100));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (v, named) in [
            (json!({"attempts": -1}), "attempts"),
            (json!({"attempts": 100000}), "limit"),
            (json!({"delay": "soon"}), "delay"),
            (json!({"multiplier": 0.5}), "multiplier"),
            (json!({"jitterFactor": 2}), "jitterFactor"),
            (json!({"atempts": 3}), "unknown key \"atempts\""),
            (json!(3), "object"),
        ] {
            let e = RestartStrategy::parse(Some(&v)).unwrap_err().to_string();
            assert!(e.contains(named), "{v}: {e}");
        }
    }

    #[test]
    fn waits_grow_up_to_the_longest_and_jitter_stays_within_its_fraction() {
        let s = RestartStrategy {
            attempts: 10,
            ..Default::default()
        };
        let no_jitter: Vec<u64> = (0..7).map(|n| s.wait_ms(n, 0.5)).collect();
        assert_eq!(
            no_jitter,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(s.wait_ms(0, 0.0), 900);
        assert!(s.wait_ms(0, 0.999_999) <= 1_100);
        assert_eq!(s.wait_ms(u32::MAX, 0.5), 30_000);
    }
}
