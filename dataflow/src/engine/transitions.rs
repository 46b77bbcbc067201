//! One log line per rule state change, with its reason, so a person can follow a rule from the
//! log alone. Every change goes through [`log`]; it is called where the state changes: `launch`
//! (started), `teardown` (stopped, with the reason it was given) and the restart supervisor
//! (stopped by error, restart scheduled, restarting, not restarted again).
//!
//! Each line carries the fields `rule` and `state` (and `reason` when there is one), so a log
//! collector reading `--log-format json` can select on them.

/// The stop message of a rule stopped through the API (eKuiper's status text).
pub(super) const CANCELED_MANUALLY: &str = "canceled manually";

/// A change of a rule's state.
pub(super) enum Change<'a> {
    /// A run started.
    Started,
    /// The run was stopped; the reason as the status shows it (may be empty).
    Stopped(&'a str),
    /// The run ended by itself: its input ended and the sinks wrote everything.
    Finished,
    /// The run failed with this error.
    Failed(&'a str),
    /// A restart is due in `wait_ms` (`restartStrategy`).
    Scheduled { attempt: u32, of: u32, wait_ms: u64 },
    /// A scheduled restart begins.
    Restarting { attempt: u32, of: u32 },
    /// The rule failed again after its last restart and stays stopped.
    GaveUp { restarts: u32 },
}

/// Logs `change` of `rule`.
pub(super) fn log(rule: &str, change: Change<'_>) {
    match change {
        Change::Started => tracing::info!(rule, state = "running", "rule \"{rule}\" started"),
        Change::Stopped(CANCELED_MANUALLY) => tracing::info!(
            rule,
            state = "stopped",
            reason = "stopped by user",
            "rule \"{rule}\" stopped by user"
        ),
        Change::Stopped("") => tracing::info!(rule, state = "stopped", "rule \"{rule}\" stopped"),
        Change::Stopped(reason) => tracing::info!(
            rule,
            state = "stopped",
            reason,
            "rule \"{rule}\" stopped: {reason}"
        ),
        Change::Finished => tracing::info!(
            rule,
            state = "stopped",
            reason = "input ended",
            "rule \"{rule}\" stopped: its input ended"
        ),
        Change::Failed(error) => tracing::error!(
            rule,
            state = "stopped by error",
            reason = error,
            "rule \"{rule}\" stopped by error: {error}"
        ),
        Change::Scheduled {
            attempt,
            of,
            wait_ms,
        } => tracing::warn!(
            rule,
            state = "scheduled",
            "rule \"{rule}\" restart {attempt} of {of} scheduled in {wait_ms} ms"
        ),
        Change::Restarting { attempt, of } => tracing::info!(
            rule,
            state = "restarting",
            "rule \"{rule}\" restarting (restart {attempt} of {of})"
        ),
        Change::GaveUp { restarts } => tracing::error!(
            rule,
            state = "stopped by error",
            reason = "restartStrategy attempts used up",
            "rule \"{rule}\" not restarted again after {restarts} restarts"
        ),
    }
}
