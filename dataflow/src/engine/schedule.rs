//! eKuiper's scheduled rules: rule options `cron` (when each run starts), `duration` (how long
//! it lasts) and `cronDatetimeRange` (the periods in which the schedule is in force; alone, the
//! periods in which the rule runs).
//!
//! A scheduled rule that is started is *armed*: it shows `stopped: waiting for next schedule.`
//! until its window opens, runs while it is open and goes back to waiting when it closes. The
//! supervisor (`restart.rs`) looks at every armed rule on each tick, so a window opens and
//! closes within one tick (200 ms). A stop by hand disarms the rule: it stays stopped until
//! started again. Each window is run once: a run that fails within its window is not started
//! again before the next one (`restartStrategy` does that).
//!
//! Times are read in the server's local time zone, as eKuiper reads them: a cron fire and a
//! range's `begin`/`end` (`"2006-01-02 15:04:05"`). `beginTimestamp`/`endTimestamp` are ms
//! since the epoch.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
use serde_json::Value;

use super::Engine;
use super::cluster::Control;
use super::entry::{Decided, RuleEntry};
use super::rules::unknown_rule;
use crate::clock::now_ms;
use crate::error::EngineError;

/// The most `cronDatetimeRange` entries a rule may have: a rule is not a calendar.
pub const MAX_RANGES: usize = 100;

/// The shortest `@every` interval: below a second a rule would spend its life starting.
const MIN_EVERY_MS: u64 = 1_000;

/// eKuiper's layout of a range's `begin` and `end`.
const RANGE_LAYOUT: &str = "%Y-%m-%d %H:%M:%S";

/// The status of an armed rule between its runs (eKuiper's wording).
pub const WAITING: &str = "stopped: waiting for next schedule.";

/// When a rule runs, from its options.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    /// When runs start; `None` for a rule that runs throughout its ranges.
    cron: Option<(Fires, u64)>,
    /// The periods the schedule is in force, `[begin, end)` in ms; empty: always.
    ranges: Vec<(i64, i64)>,
}

/// How a cron fires.
#[derive(Debug, Clone)]
enum Fires {
    /// A 5-field cron pattern or an `@daily`-style descriptor.
    Pattern(Box<croner::Cron>),
    /// `@every <duration>`: every so many ms from when the rule was armed.
    Every(u64),
}

/// Where an armed rule is in its schedule.
#[derive(Debug, Default)]
pub(super) struct ScheduleState {
    /// Started (by create, start or restart) and not stopped by hand since.
    pub armed: bool,
    /// When it was armed, ms: the origin of `@every` fires.
    pub anchor_ms: i64,
    /// The start of the window whose run was launched last, so each window runs once.
    pub window: Option<i64>,
    /// The current run was started by the schedule (and is stopped by it).
    pub scheduled_run: bool,
    /// On a cluster's leader: the rule's commands count when it put a step in the sequence
    /// that is not applied yet, so later looks do not put it in again.
    pub step_in_flight: Option<u64>,
}

fn bad(option: &str, what: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("rule option {option}: {what}"))
}

/// A string option, `""` when absent or null.
fn text<'a>(
    options: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, EngineError> {
    match options.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.trim()),
        Some(other) => Err(bad(name, format!("must be a string, got {other}"))),
    }
}

impl Schedule {
    /// Reads `cron`, `duration` and `cronDatetimeRange`; `None` for a rule without a schedule.
    /// `cron` and `duration` go together: eKuiper ignores one without the other, which would
    /// be an option accepted and ignored, so that is refused.
    pub fn parse(
        options: &serde_json::Map<String, Value>,
    ) -> Result<Option<Schedule>, EngineError> {
        let cron = text(options, "cron")?;
        let duration = text(options, "duration")?;
        let ranges = parse_ranges(options.get("cronDatetimeRange"))?;
        let cron = match (cron.is_empty(), duration.is_empty()) {
            (true, true) => None,
            (false, true) => {
                return Err(bad(
                    "cron",
                    "needs \"duration\", how long each scheduled run lasts (e.g. \"30m\")",
                ));
            }
            (true, false) => {
                return Err(bad(
                    "duration",
                    "only applies with \"cron\", the schedule of the runs",
                ));
            }
            (false, false) => {
                let ms = quiver_compiler::duration::parse_millis(duration)
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        bad(
                            "duration",
                            format!("\"{duration}\" is not a positive duration such as \"30m\" or \"1h30m\""),
                        )
                    })?;
                Some((parse_cron(cron)?, ms))
            }
        };
        if cron.is_none() && ranges.is_empty() {
            return Ok(None);
        }
        Ok(Some(Schedule { cron, ranges }))
    }

    /// Whether `now` is in one of the ranges (or there are none).
    fn allowed(&self, now: i64) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|(b, e)| *b <= now && now < *e)
    }

    /// Whether every range has ended: the schedule will never run the rule again.
    pub fn over(&self, now: i64) -> bool {
        !self.ranges.is_empty() && self.ranges.iter().all(|(_, e)| *e <= now)
    }

    /// The window the rule should be running in at `now`: `(start, end)` in ms.
    pub fn window(&self, now: i64, anchor: i64) -> Option<(i64, i64)> {
        if !self.allowed(now) {
            return None;
        }
        let Some((fires, duration)) = &self.cron else {
            return self
                .ranges
                .iter()
                .find(|(b, e)| *b <= now && now < *e)
                .copied();
        };
        let duration = *duration as i64;
        let start = match fires {
            Fires::Every(every) => {
                let every = *every as i64;
                let n = (now - anchor).div_euclid(every);
                if n < 1 {
                    return None;
                }
                anchor + n * every
            }
            Fires::Pattern(cron) => {
                let at = local(now)?;
                let prev = cron.find_previous_occurrence(&at, true).ok()?;
                prev.timestamp_millis()
            }
        };
        (start <= now && now < start + duration).then_some((start, start + duration))
    }

    /// The next cron fire after `now`, ms (0: none, or outside the ranges now), as eKuiper's
    /// `nextStartTimestamp` shows it.
    pub fn next_start(&self, now: i64, anchor: i64) -> i64 {
        let Some((fires, _)) = &self.cron else {
            return 0;
        };
        if !self.allowed(now) {
            return 0;
        }
        match fires {
            Fires::Every(every) => {
                let every = *every as i64;
                anchor + ((now - anchor).div_euclid(every) + 1) * every
            }
            Fires::Pattern(cron) => local(now)
                .and_then(|at| cron.find_next_occurrence(&at, false).ok())
                .map_or(0, |t| t.timestamp_millis()),
        }
    }
}

fn local(ms: i64) -> Option<DateTime<Local>> {
    Local.timestamp_millis_opt(ms).single()
}

/// eKuiper's cron: five fields (minute hour day-of-month month day-of-week), a descriptor
/// (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`) or `@every <duration>`.
fn parse_cron(cron: &str) -> Result<Fires, EngineError> {
    if let Some(every) = cron.strip_prefix("@every") {
        let ms = quiver_compiler::duration::parse_millis(every.trim())
            .filter(|ms| *ms >= MIN_EVERY_MS)
            .ok_or_else(|| {
                bad(
                    "cron",
                    format!(
                        "\"{cron}\": @every takes a duration of at least 1s, e.g. \"@every 10m\""
                    ),
                )
            })?;
        return Ok(Fires::Every(ms));
    }
    if cron.starts_with("TZ=") || cron.starts_with("CRON_TZ=") {
        return Err(bad(
            "cron",
            format!(
                "\"{cron}\": a time zone prefix is not supported; times are the server's local time"
            ),
        ));
    }
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    let parsed = parser.parse(cron).map_err(|e| {
        bad(
            "cron",
            format!("\"{cron}\" is not a cron expression (minute hour day month weekday, e.g. \"0 * * * *\"): {e}"),
        )
    })?;
    Ok(Fires::Pattern(Box::new(parsed)))
}

/// `cronDatetimeRange`: `[{"begin": "2006-01-02 15:04:05", "end": ...}]` or with
/// `beginTimestamp`/`endTimestamp` in ms (which win when both are set, as in eKuiper).
fn parse_ranges(v: Option<&Value>) -> Result<Vec<(i64, i64)>, EngineError> {
    const NAME: &str = "cronDatetimeRange";
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(bad(
                NAME,
                format!("must be a list of {{begin, end}}, got {other}"),
            ));
        }
    };
    if list.len() > MAX_RANGES {
        return Err(bad(
            NAME,
            format!("{} ranges is above the limit of {MAX_RANGES}", list.len()),
        ));
    }
    let mut ranges = Vec::new();
    for item in list {
        let map = item.as_object().ok_or_else(|| {
            bad(
                NAME,
                format!("each range is an object {{begin, end}}, got {item}"),
            )
        })?;
        if let Some(k) = map
            .keys()
            .find(|k| !["begin", "end", "beginTimestamp", "endTimestamp"].contains(&k.as_str()))
        {
            return Err(bad(
                NAME,
                format!("unknown key \"{k}\" (begin, end, beginTimestamp, endTimestamp)"),
            ));
        }
        let stamp = |k: &str| map.get(k).and_then(Value::as_i64).filter(|t| *t > 0);
        let (begin, end) = match (stamp("beginTimestamp"), stamp("endTimestamp")) {
            (Some(b), Some(e)) => (b, e),
            _ => (
                range_time(map.get("begin"), "begin")?,
                range_time(map.get("end"), "end")?,
            ),
        };
        if begin > end {
            return Err(bad(NAME, format!("a range begins after it ends: {item}")));
        }
        ranges.push((begin, end));
    }
    Ok(ranges)
}

/// A range's `begin` or `end` text in the server's local time, as ms.
fn range_time(v: Option<&Value>, key: &str) -> Result<i64, EngineError> {
    let s = v.and_then(Value::as_str).unwrap_or("");
    NaiveDateTime::parse_from_str(s.trim(), RANGE_LAYOUT)
        .ok()
        .and_then(|t| Local.from_local_datetime(&t).earliest())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            bad(
                "cronDatetimeRange",
                format!("{key} \"{s}\" is not a time such as \"2006-01-02 15:04:05\""),
            )
        })
}

impl Engine {
    /// Arms a scheduled rule (create, start, restart): its run starts now if its window is
    /// open, else when it opens.
    pub(super) fn arm_schedule(&self, entry: &mut RuleEntry) -> Result<(), EngineError> {
        self.teardown(entry, "");
        entry.schedule_state = ScheduleState {
            armed: true,
            anchor_ms: now_ms(),
            window: None,
            scheduled_run: false,
            step_in_flight: None,
        };
        // In a cluster the leader's next look decides, and every process applies its step.
        if self.cluster().is_some() {
            return Ok(());
        }
        self.follow_schedule(entry, now_ms())
    }

    /// One look at every armed rule: starts the ones whose window opened, stops the ones
    /// whose window closed. In a cluster the leader alone looks, and its steps reach every
    /// process through the command sequence ([`Control::ScheduleStep`]).
    pub(super) fn run_schedules(&self) {
        // A stopped cluster forms again as a whole, with a new engine.
        if self.is_follower() || self.workers_stopped().is_some() {
            return;
        }
        let now = now_ms();
        let mut steps = Vec::new();
        let mut rules = self.inner.rules.lock().expect("rules lock");
        for entry in rules.values_mut() {
            if !entry.schedule_state.armed {
                continue;
            }
            if self.cluster().is_some() {
                if entry.schedule_state.step_in_flight == Some(entry.commands) {
                    continue;
                }
                if let Some(step) = next_step(entry, now) {
                    entry.schedule_state.step_in_flight = Some(entry.commands);
                    steps.push((entry.spec.id.clone(), entry.decided(), step));
                }
            } else if let Err(e) = self.follow_schedule(entry, now) {
                tracing::warn!(rule = %entry.spec.id, "scheduled start failed: {e}");
            }
        }
        // Outside the rules' lock (applying a command takes it), and off the supervisor's
        // tick: each waits for every process to reach it.
        drop(rules);
        for (id, at, step) in steps {
            let control = Control::ScheduleStep {
                id: id.clone(),
                at,
                start: step.start,
                message: step.message,
            };
            self.sequence_in_background(id, control);
        }
    }

    /// Starts or stops one armed rule as its schedule says at `now` (one process).
    fn follow_schedule(&self, entry: &mut RuleEntry, now: i64) -> Result<(), EngineError> {
        match next_step(entry, now) {
            Some(step) => self.take_step(entry, step),
            None => Ok(()),
        }
    }

    /// Applies the leader's schedule step for rule `id` ([`Control::ScheduleStep`]) in this
    /// process, unless a start, stop or restart came first in the sequence (`at`).
    pub(super) fn schedule_step_here(
        &self,
        id: &str,
        at: Decided,
        start: Option<i64>,
        message: String,
    ) -> Result<(), EngineError> {
        let mut rules = self.inner.rules.lock().expect("rules lock");
        let entry = rules.get_mut(id).ok_or_else(|| unknown_rule(id))?;
        if entry.decided() != at || !entry.schedule_state.armed {
            tracing::info!(rule = %id, "scheduled step not taken: the rule was stopped or started since");
            return Ok(());
        }
        entry.commands += 1;
        self.take_step(entry, Step { start, message })
    }

    /// Starts the run of window `step.start`, or ends the scheduled run.
    fn take_step(&self, entry: &mut RuleEntry, step: Step) -> Result<(), EngineError> {
        match step.start {
            Some(start) => {
                entry.schedule_state.window = Some(start);
                entry.schedule_state.scheduled_run = true;
                self.teardown(entry, "");
                tracing::info!(rule = %entry.spec.id, "scheduled run starts");
                if let Err(e) = self.launch(entry) {
                    entry.stop_message = format!("scheduled start failed: {e}");
                    return Err(e);
                }
            }
            None => {
                entry.schedule_state.scheduled_run = false;
                tracing::info!(rule = %entry.spec.id, "scheduled run ends");
                self.teardown(entry, &step.message);
            }
        }
        Ok(())
    }
}

/// What a rule's schedule does next: start the run of a window, or end the scheduled run.
struct Step {
    /// The window to start a run for; `None`: end the scheduled run.
    start: Option<i64>,
    /// The stop message when it ends.
    message: String,
}

/// The step `entry`'s schedule takes at `now`, if any (a terminated schedule with nothing to
/// stop only says so in the rule's message).
fn next_step(entry: &mut RuleEntry, now: i64) -> Option<Step> {
    let schedule = entry.schedule.as_ref()?;
    let state = &entry.schedule_state;
    match schedule.window(now, state.anchor_ms) {
        Some((start, _)) if state.window != Some(start) => Some(Step {
            start: Some(start),
            message: String::new(),
        }),
        Some(_) => None,
        None if entry.run.is_some() && state.scheduled_run => Some(Step {
            start: None,
            message: if schedule.over(now) {
                "schedule terminated".into()
            } else {
                String::new()
            },
        }),
        None => {
            if schedule.over(now) && entry.stop_message.is_empty() {
                entry.stop_message = "schedule terminated".into();
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Option<Schedule>, EngineError> {
        Schedule::parse(v.as_object().expect("an object"))
    }

    #[test]
    fn bad_values_are_refused_naming_the_option() {
        for (v, named) in [
            (
                json!({"cron": "* * * * *"}),
                "rule option cron: needs \"duration\"",
            ),
            (json!({"duration": "1m"}), "rule option duration"),
            (
                json!({"cron": "61 * * * *", "duration": "1m"}),
                "rule option cron",
            ),
            (
                json!({"cron": "0 0 * * * *", "duration": "1m"}),
                "rule option cron",
            ),
            (
                json!({"cron": "@every 10ms", "duration": "1m"}),
                "rule option cron",
            ),
            (
                json!({"cron": "* * * * *", "duration": "soon"}),
                "rule option duration",
            ),
            (
                json!({"cron": "* * * * *", "duration": "0s"}),
                "rule option duration",
            ),
            (
                json!({"cronDatetimeRange": [{"begin": "2023-13-01 00:00:00", "end": "2024-01-01 00:00:00"}]}),
                "cronDatetimeRange",
            ),
            (
                json!({"cronDatetimeRange": [{"begin": "2024-01-02 00:00:00", "end": "2024-01-01 00:00:00"}]}),
                "begins after it ends",
            ),
            (
                json!({"cronDatetimeRange": [{"start": "x"}]}),
                "unknown key \"start\"",
            ),
            (json!({"cronDatetimeRange": "x"}), "cronDatetimeRange"),
        ] {
            let e = parse(v.clone()).unwrap_err().to_string();
            assert!(e.contains(named), "{v}: {e}");
        }
    }

    #[test]
    fn empty_options_are_no_schedule() {
        assert!(
            parse(json!({"cron": "", "duration": "", "cronDatetimeRange": []}))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_pattern_runs_for_its_duration_after_each_fire() {
        let s = parse(json!({"cron": "0 * * * *", "duration": "10m"}))
            .unwrap()
            .unwrap();
        let hour = Local
            .with_ymd_and_hms(2030, 1, 1, 10, 0, 0)
            .unwrap()
            .timestamp_millis();
        let minute = 60_000;
        assert_eq!(
            s.window(hour + 5 * minute, 0),
            Some((hour, hour + 10 * minute))
        );
        assert_eq!(s.window(hour + 10 * minute, 0), None);
        assert_eq!(s.next_start(hour + 5 * minute, 0), hour + 60 * minute);
    }

    #[test]
    fn every_counts_from_when_the_rule_was_armed() {
        let s = parse(json!({"cron": "@every 4s", "duration": "1s"}))
            .unwrap()
            .unwrap();
        assert_eq!(s.window(1_000, 0), None);
        assert_eq!(s.window(4_500, 0), Some((4_000, 5_000)));
        assert_eq!(s.window(5_000, 0), None);
        assert_eq!(s.next_start(5_000, 0), 8_000);
    }

    #[test]
    fn ranges_bound_the_schedule_and_alone_are_the_windows() {
        let s =
            parse(json!({"cronDatetimeRange": [{"beginTimestamp": 1000, "endTimestamp": 2000}]}))
                .unwrap()
                .unwrap();
        assert_eq!(s.window(1_500, 0), Some((1_000, 2_000)));
        assert_eq!(s.window(2_500, 0), None);
        assert!(s.over(2_500));
        let s = parse(json!({"cron": "@every 1s", "duration": "500ms",
            "cronDatetimeRange": [{"beginTimestamp": 1000, "endTimestamp": 3000}]}))
        .unwrap()
        .unwrap();
        assert_eq!(s.window(2_200, 0), Some((2_000, 2_500)));
        assert_eq!(s.window(5_200, 0), None);
        assert_eq!(s.next_start(5_200, 0), 0);
    }
}
