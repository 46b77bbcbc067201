//! A source's message rate, measured over short windows: above [`HIGH_RATE`], gathering more
//! per event (or per group commit) costs less CPU than handing messages on as they come.

use std::time::{Duration, Instant};

/// The rate (messages a second) above which the MQTT source and its input log linger.
pub(super) const HIGH_RATE: usize = 20_000;

/// How long the message rate is measured over before it is compared with the threshold.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// The message rate, measured over windows of [`RATE_WINDOW`].
pub(super) struct Rate {
    since: Instant,
    messages: usize,
    /// The last full window was above [`HIGH_RATE`].
    pub(super) high: bool,
}

impl Rate {
    /// A rate not measured yet (not high).
    pub(super) fn new() -> Self {
        Rate {
            since: Instant::now(),
            messages: 0,
            high: false,
        }
    }

    /// Counts `messages`; at the end of a window, decides whether the rate is high.
    pub(super) fn count(&mut self, messages: usize) {
        self.messages += messages;
        let now = Instant::now();
        let elapsed = now - self.since;
        if elapsed >= RATE_WINDOW {
            self.high = self.messages as f64 / elapsed.as_secs_f64() > HIGH_RATE as f64;
            self.messages = 0;
            self.since = now;
        }
    }

    /// Keeps the current finding for a whole window from now (for tests).
    #[cfg(test)]
    pub(super) fn hold(&mut self) {
        self.since = Instant::now();
        self.messages = usize::MAX / 2;
    }
}
