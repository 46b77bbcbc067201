//! The `memory` connector: eKuiper's in-process pub/sub by topic.
//!
//! A memory sink of one rule publishes Arrow batches that memory sources of other rules receive
//! without any encoding. Subscriptions may use MQTT-style wildcards (`+` one level, `#` the
//! rest). Every subscription has a bounded queue, in messages and in bytes: a slow subscriber
//! slows its publishers.

mod sink;
mod source;

use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

pub use sink::{MemorySink, MemorySinkConfig};
pub use source::{MemorySource, MemorySourceConfig};

/// Messages queued per subscription before publishers wait.
pub const SUBSCRIPTION_QUEUE: usize = 1024;

/// Payload bytes queued per subscription before publishers wait (1,024 pushed bodies of the
/// 16 MiB the push listener accepts would otherwise be 16 GiB). A single message larger than
/// this takes the whole budget.
pub const SUBSCRIPTION_BYTES: usize = 64 << 20;

/// What travels on a memory topic.
#[derive(Debug, Clone)]
pub enum MemoryPayload {
    /// Undecoded JSON (from tests, benchmarks or an embedding application).
    Json(bytes::Bytes),
    /// Rows from another rule.
    Batch(RecordBatch),
}

impl MemoryPayload {
    /// Bytes the payload holds (what the subscription's byte budget counts).
    fn bytes(&self) -> usize {
        match self {
            MemoryPayload::Json(b) => b.len(),
            MemoryPayload::Batch(b) => b.get_array_memory_size(),
        }
    }
}

/// A message with the topic it was published on.
#[derive(Debug, Clone)]
pub struct MemoryMessage {
    /// The concrete topic.
    pub topic: Arc<str>,
    /// The content.
    pub payload: MemoryPayload,
    /// Its share of the subscription's byte budget, given back when the message is dropped.
    _budget: Option<Arc<OwnedSemaphorePermit>>,
    /// The publisher's receipt ([`MemoryBus::publish_with_receipt`]): the subscriber
    /// confirms on it once it has taken the message (logged it, for a source that logs its
    /// input).
    receipt: Option<Receipt>,
}

/// A publisher's receipt for one message: every copy carries a clone, a subscriber sends `()`
/// on it once its copy is safe, and the publisher's receiving end closes once every copy is
/// confirmed or dropped (a copy dropped unconfirmed was not taken: its rule stopped).
pub type Receipt = mpsc::UnboundedSender<()>;

impl MemoryMessage {
    /// The publisher's receipt, taken out so the caller can confirm it when the message is
    /// safe (logged).
    pub fn take_receipt(&mut self) -> Option<Receipt> {
        self.receipt.take()
    }
}

#[derive(Debug)]
struct Subscription {
    filter: String,
    tx: mpsc::Sender<MemoryMessage>,
    /// Bytes the queue may still take.
    budget: Arc<Semaphore>,
}

/// The permits a payload of `bytes` takes from a budget of [`SUBSCRIPTION_BYTES`].
fn permits(bytes: usize) -> u32 {
    bytes.clamp(1, SUBSCRIPTION_BYTES) as u32
}

/// The process-wide topic bus. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryBus {
    subs: Arc<Mutex<Vec<Subscription>>>,
}

impl MemoryBus {
    /// Subscribes to a topic filter (wildcards allowed); the receiver ends when the topic is
    /// closed with [`MemoryBus::close`].
    pub fn subscribe(&self, filter: &str) -> mpsc::Receiver<MemoryMessage> {
        self.subscribe_with_capacity(filter, SUBSCRIPTION_QUEUE)
    }

    /// Subscribes with a queue of `capacity` messages (at least 1).
    pub fn subscribe_with_capacity(
        &self,
        filter: &str,
        capacity: usize,
    ) -> mpsc::Receiver<MemoryMessage> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subs
            .lock()
            .expect("memory bus lock")
            .push(Subscription {
                filter: filter.to_string(),
                tx,
                budget: Arc::new(Semaphore::new(SUBSCRIPTION_BYTES)),
            });
        rx
    }

    /// Publishes to every matching subscription, waiting while a subscriber's queue is full.
    /// Returns the number of subscribers reached.
    pub async fn publish(&self, topic: &str, payload: MemoryPayload) -> usize {
        self.publish_inner(topic, payload, None).await
    }

    /// [`MemoryBus::publish`], with `receipt` cloned into every copy: each subscriber confirms
    /// on it once it has taken its copy; the publisher's end closes once every copy is
    /// confirmed or dropped.
    pub async fn publish_with_receipt(
        &self,
        topic: &str,
        payload: MemoryPayload,
        receipt: Receipt,
    ) -> usize {
        self.publish_inner(topic, payload, Some(receipt)).await
    }

    async fn publish_inner(
        &self,
        topic: &str,
        payload: MemoryPayload,
        receipt: Option<Receipt>,
    ) -> usize {
        let topic: Arc<str> = topic.into();
        let mut reached = 0;
        // Fast path under the lock: queues with room take the message at once; only full
        // queues are waited on, after the lock is released.
        let need = permits(payload.bytes());
        let mut full: Vec<(mpsc::Sender<MemoryMessage>, Arc<Semaphore>)> = Vec::new();
        {
            let mut subs = self.subs.lock().expect("memory bus lock");
            let mut closed = false;
            for s in subs.iter() {
                if !topic_matches(&s.filter, &topic) {
                    continue;
                }
                let Ok(permit) = s.budget.clone().try_acquire_many_owned(need) else {
                    full.push((s.tx.clone(), s.budget.clone()));
                    continue;
                };
                let msg = MemoryMessage {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    _budget: Some(Arc::new(permit)),
                    receipt: receipt.clone(),
                };
                match s.tx.try_send(msg) {
                    Ok(()) => reached += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        full.push((s.tx.clone(), s.budget.clone()))
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                }
            }
            if closed {
                subs.retain(|s| !s.tx.is_closed());
            }
        }
        for (tx, budget) in full {
            let Ok(permit) = budget.acquire_many_owned(need).await else {
                continue;
            };
            let msg = MemoryMessage {
                topic: topic.clone(),
                payload: payload.clone(),
                _budget: Some(Arc::new(permit)),
                receipt: receipt.clone(),
            };
            if tx.send(msg).await.is_ok() {
                reached += 1;
            }
        }
        reached
    }

    /// Publishes raw JSON (convenience for tests and embedders).
    pub async fn publish_json(&self, topic: &str, json: impl Into<bytes::Bytes>) -> usize {
        self.publish(topic, MemoryPayload::Json(json.into())).await
    }

    /// Ends every subscription whose filter matches `topic`: their sources see end of input
    /// once they have drained what is queued, and their rules finish.
    pub fn close(&self, topic: &str) {
        self.subs
            .lock()
            .expect("memory bus lock")
            .retain(|s| !topic_matches(&s.filter, topic));
    }

    /// Number of live subscriptions matching `topic`.
    pub fn subscribers(&self, topic: &str) -> usize {
        let mut subs = self.subs.lock().expect("memory bus lock");
        subs.retain(|s| !s.tx.is_closed());
        subs.iter()
            .filter(|s| topic_matches(&s.filter, topic))
            .count()
    }
}

/// MQTT-style topic matching: `+` matches one level, a trailing `#` matches the rest.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "x"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("a/b", "a/b"));
    }

    #[tokio::test]
    async fn publish_reaches_matching_subscribers_until_closed() {
        let bus = MemoryBus::default();
        let mut all = bus.subscribe("dev/#");
        let mut one = bus.subscribe("dev/1");
        assert_eq!(bus.publish_json("dev/2", b"{}".to_vec()).await, 1);
        assert_eq!(bus.publish_json("dev/1", b"{}".to_vec()).await, 2);
        assert_eq!(all.recv().await.unwrap().topic.as_ref(), "dev/2");
        assert_eq!(one.recv().await.unwrap().topic.as_ref(), "dev/1");
        bus.close("dev/1");
        assert!(one.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_subscription_holds_at_most_its_byte_budget() {
        let bus = MemoryBus::default();
        let mut rx = bus.subscribe("big");
        // Three bodies of 30 MiB (one buffer, shared by the clones): two fit in 64 MiB.
        let body = bytes::Bytes::from(vec![b' '; 30 << 20]);
        assert_eq!(bus.publish_json("big", body.clone()).await, 1);
        assert_eq!(bus.publish_json("big", body.clone()).await, 1);
        let third = bus.publish_json("big", body.clone());
        tokio::pin!(third);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), &mut third).await;
        assert!(waited.is_err(), "the third body waits for room");
        // Taking one message out gives its bytes back: the third goes in.
        drop(rx.recv().await.expect("the first body"));
        assert_eq!(third.await, 1);
    }
}
