//! When a durable source's log thread commits a group: at once, or after lingering.
//!
//! Each group commit costs the same whatever its size: an `fdatasync` (about 70 µs of CPU on
//! a small VM), a wake-up of the log thread, of a worker and of the source for the acks. At
//! tens of thousands of messages a second, committing what arrived during the last sync gave
//! small groups, and those fixed costs were most of what qos 1 adds to qos 0.
//!
//! Lingering makes groups bigger only if the broker keeps sending while the source has not
//! acknowledged: Mosquitto sends at most `max_inflight_messages` (20 by default) unacknowledged
//! QoS 1 messages, and then a linger is only a pause. MQTT 3.1.1 has no way to ask the broker
//! for its window, so the log thread measures it: at a high rate it waits [`PROBE`] once, then
//! counts the messages of the group waiting for this commit (none of them acknowledged yet). At
//! least [`WIDE_AT`] means the window is wide, and from then on each commit waits
//! [`COMMIT_LINGER`] first (unless its group holds [`COMMIT_AT`] already); fewer means narrow,
//! and commits go at once as before. [`EMPTY_LINGERS`] lingers in a row during which nothing
//! arrived, with about as many messages waiting as the probe counted, mean the window is full
//! after all (a window a little above [`WIDE_AT`]), and make it narrow; with fewer waiting the
//! publishers paused, which says nothing about the window. The finding is measured again every
//! [`RELEARN`] (a reconnect may reach another broker). Below [`HIGH_RATE`] nothing waits, and a
//! rate not measured for a while counts as low, so the first message after a pause is
//! committed at once.

use std::time::{Duration, Instant};

use super::rate::{HIGH_RATE, Rate};

/// How long a commit waits for more messages once the window is known to be wide.
const COMMIT_LINGER: Duration = Duration::from_millis(1);

/// How long the probe of the broker's window waits.
const PROBE: Duration = Duration::from_millis(4);

/// Unacknowledged messages at the end of a probe that make the window wide: well above
/// Mosquitto's default 20 (and EMQX's 32), below the 80 that arrive in [`PROBE`] at
/// [`HIGH_RATE`]. A broker that keeps to its window never sends more; Mosquitto 2.0.11 does
/// after a burst of acks (each ack of its oldest in-flight message lets up to 20 more go), and
/// then the window it keeps is really wider.
const WIDE_AT: usize = 64;

/// A group this large commits without lingering.
const COMMIT_AT: usize = 512;

/// Lingers in a row that gathered nothing before the window counts as narrow.
const EMPTY_LINGERS: u32 = 3;

/// How long a finding about the window holds before it is measured again.
const RELEARN: Duration = Duration::from_secs(10);

/// What the log thread does before committing a group.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Commit now.
    Now,
    /// Wait this long, take what arrived, report it with [`Pacing::lingered`], then commit.
    Linger(Duration),
    /// Wait this long, take what arrived, report it with [`Pacing::probed`], then commit.
    Probe(Duration),
}

/// What the log thread last found about the broker's window.
#[derive(Debug, Clone, Copy)]
struct Finding {
    wide: bool,
    /// Messages waiting for their acks when it was found.
    waiting: usize,
    at: Instant,
}

/// The log thread's pacing of its group commits (see the module doc).
pub(super) struct Pacing {
    rate: Rate,
    learned: Option<Finding>,
    /// Lingers in a row that gathered nothing.
    empty: u32,
    topic: String,
}

impl Pacing {
    /// Pacing for the source of `topic`.
    pub(super) fn new(topic: String) -> Pacing {
        Pacing {
            rate: Rate::new(),
            learned: None,
            empty: 0,
            topic,
        }
    }

    /// What to do before committing a group holding `unacked` messages not yet acknowledged.
    pub(super) fn before_commit(&mut self, unacked: usize) -> Wait {
        // Closes a measuring window that ended during a pause, so a stale high rate does not
        // make the first message after it wait.
        self.rate.count(0);
        if !self.rate.high || unacked >= COMMIT_AT {
            return Wait::Now;
        }
        match self.learned {
            Some(f) if f.at.elapsed() >= RELEARN => Wait::Probe(PROBE),
            Some(Finding { wide: true, .. }) => Wait::Linger(COMMIT_LINGER),
            Some(Finding { wide: false, .. }) => Wait::Now,
            None => Wait::Probe(PROBE),
        }
    }

    /// After a probe: `unacked` messages were waiting for their acks at its end.
    pub(super) fn probed(&mut self, unacked: usize) {
        self.learn(unacked >= WIDE_AT, unacked);
    }

    /// After a linger during which `arrived` messages came.
    pub(super) fn lingered(&mut self, arrived: usize, unacked: usize) {
        // Nothing arrived with about as many messages waiting as the probe saw: the broker
        // holds back for the acks. With fewer waiting, the publishers paused (or the source
        // did not get the CPU), which says nothing about the window.
        let seen = self.learned.map_or(0, |f| f.waiting);
        let full = arrived == 0 && unacked * 4 >= seen * 3;
        self.empty = if full { self.empty + 1 } else { 0 };
        if self.empty >= EMPTY_LINGERS {
            self.learn(false, unacked);
        }
    }

    /// Counts the messages of a committed group.
    pub(super) fn committed(&mut self, messages: usize) {
        self.rate.count(messages);
    }

    /// Records whether the window is `wide`, seen with `unacked` messages waiting.
    fn learn(&mut self, wide: bool, unacked: usize) {
        self.empty = 0;
        if self.learned.map(|f| f.wide) != Some(wide) {
            if wide {
                tracing::info!(
                    "mqtt source {}: the broker sent {unacked} messages without waiting for \
                     their acks; group commits of the input log wait {COMMIT_LINGER:?} for more \
                     while the rate is above {HIGH_RATE} msgs/s",
                    self.topic
                );
            } else {
                tracing::info!(
                    "mqtt source {}: the broker waits for acks after {unacked} messages; group \
                     commits of the input log go at once",
                    self.topic
                );
            }
        }
        self.learned = Some(Finding {
            wide,
            waiting: unacked,
            at: Instant::now(),
        });
    }

    /// Whether the window was last found wide.
    #[cfg(test)]
    fn wide(&self) -> bool {
        self.learned.is_some_and(|f| f.wide)
    }

    /// A pacing at a high rate that found the window `wide` (for tests of the log thread).
    #[cfg(test)]
    pub(super) fn found(wide: bool) -> Pacing {
        let mut p = Pacing::new("t".into());
        p.rate.high = true;
        p.rate.hold();
        p.probed(if wide { WIDE_AT } else { 0 });
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_waits_at_a_low_rate() {
        let mut p = Pacing::new("t".into());
        assert_eq!(p.before_commit(10), Wait::Now);
    }

    #[test]
    fn a_wide_window_lingers_and_a_narrow_one_commits_at_once() {
        let mut p = Pacing::found(false);
        assert!(!p.wide());
        assert_eq!(p.before_commit(10), Wait::Now);
        p.learned = None;
        assert_eq!(p.before_commit(10), Wait::Probe(PROBE));
        p.probed(300);
        assert!(p.wide());
        assert_eq!(p.before_commit(10), Wait::Linger(COMMIT_LINGER));
        assert_eq!(
            p.before_commit(COMMIT_AT),
            Wait::Now,
            "a big group goes at once"
        );
        // The finding expires, and the window is measured again.
        p.learned = Instant::now().checked_sub(RELEARN).map(|at| Finding {
            wide: true,
            waiting: 300,
            at,
        });
        assert_eq!(p.before_commit(10), Wait::Probe(PROBE));
    }

    #[test]
    fn lingers_that_gather_nothing_with_the_window_full_make_it_narrow() {
        let mut p = Pacing::found(true);
        p.probed(100);
        p.lingered(0, 80);
        p.lingered(5, 85);
        p.lingered(0, 85);
        p.lingered(0, 85);
        // A pause of the publishers: few messages wait, and nothing arrives.
        p.lingered(0, 10);
        p.lingered(0, 10);
        p.lingered(0, 10);
        assert_eq!(p.before_commit(10), Wait::Linger(COMMIT_LINGER));
        p.lingered(0, 85);
        p.lingered(0, 85);
        p.lingered(0, 85);
        assert!(!p.wide());
        assert_eq!(p.before_commit(10), Wait::Now);
    }
}
