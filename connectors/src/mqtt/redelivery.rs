//! Recognising a message the broker sends again after a reconnect although the source had
//! logged it: its acknowledgement was lost with the connection (a broker restart, a network
//! cut). Such a message comes back flagged DUP with its packet id; a durable source (qos 1 and
//! 2 rules) acknowledges it again instead of logging it twice, so exactly-once sinks do not
//! write its row twice.
//!
//! Only the last [`KEPT`] logged messages are remembered: what a broker sends again is what
//! was in flight when the connection dropped (Mosquitto allows 20 unacknowledged messages per
//! client by default), and Mosquitto numbers packets in sequence, so within that many messages
//! one packet id names one message. A message must match both its packet id and a digest of
//! its topic and payload. At start the memory is filled from the tail of the input log, so a
//! message logged just before quiverd itself crashed, and sent again after the restart, is
//! recognised too.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::RawMessage;

/// How many logged messages are remembered.
pub(super) const KEPT: usize = 1024;

/// The packet ids and digests of the messages logged last.
#[derive(Default)]
pub(super) struct Redeliveries {
    order: VecDeque<u16>,
    digest: HashMap<u16, u64>,
}

impl Redeliveries {
    /// The (packet id, digest) of each message of `batch` that has a packet id.
    pub(super) fn digests(batch: &[RawMessage]) -> Vec<(u16, u64)> {
        batch
            .iter()
            .filter_map(|m| Some((m.message_id?, digest(m))))
            .collect()
    }

    /// Remembers messages as logged.
    pub(super) fn extend(&mut self, logged: Vec<(u16, u64)>) {
        for (pkid, d) in logged {
            if self.digest.insert(pkid, d).is_some() {
                // Seen before: it is the newest now.
                self.order.retain(|&p| p != pkid);
            }
            self.order.push_back(pkid);
            while self.order.len() > KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.digest.remove(&old);
                }
            }
        }
    }

    /// True when `msg` (flagged DUP) is one of the messages logged last.
    pub(super) fn is_repeat(&self, msg: &RawMessage) -> bool {
        msg.message_id
            .and_then(|pkid| self.digest.get(&pkid))
            .is_some_and(|&d| d == digest(msg))
    }
}

/// A digest of a message's topic and payload (SipHash with fixed keys: the same in every run,
/// though only this process compares them).
fn digest(msg: &RawMessage) -> u64 {
    let mut h = DefaultHasher::new();
    msg.topic.hash(&mut h);
    msg.payload.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(pkid: u16, payload: &str) -> RawMessage {
        let mut m = RawMessage::new(payload.as_bytes().to_vec(), std::sync::Arc::from("t"));
        m.message_id = Some(pkid);
        m
    }

    #[test]
    fn a_logged_message_sent_again_is_recognised_by_id_and_content() {
        let mut r = Redeliveries::default();
        r.extend(Redeliveries::digests(&[msg(1, "a"), msg(2, "b")]));
        assert!(r.is_repeat(&msg(1, "a")));
        assert!(!r.is_repeat(&msg(1, "b")), "same id, other content");
        assert!(!r.is_repeat(&msg(3, "a")), "never logged");
        // Only the last KEPT are remembered.
        let many: Vec<RawMessage> = (10..10 + KEPT as u16).map(|i| msg(i, "x")).collect();
        r.extend(Redeliveries::digests(&many));
        assert!(!r.is_repeat(&msg(1, "a")));
        assert!(r.is_repeat(&msg(10 + KEPT as u16 - 1, "x")));
    }
}
