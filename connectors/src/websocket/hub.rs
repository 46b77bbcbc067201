//! The server-mode registry: which paths of the push listener serve websocket clients, the
//! messages clients send (to sources, through a [`MemoryBus`] keyed by path) and the results
//! sinks send (to every connected client of the path, each through its own bounded queue).
//!
//! A client too slow to take the results loses them, and only it: a result that finds its
//! queue full ([`CLIENT_QUEUE`] messages or [`CLIENT_BYTES`] bytes) is dropped for that client
//! and counted, and the client stays connected. The rule never waits for a viewer (a
//! dashboard left open must not stall the rule or the other clients), and the client sees a
//! gap rather than being cut off; eKuiper's own server-mode sink also drops for a full
//! consumer. Messages clients send are the other way round: the bus is bounded and a slow rule
//! slows the sending clients (their reads stop), nothing is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::memory::MemoryBus;

/// Results queued per connected client before they are dropped for it.
pub const CLIENT_QUEUE: usize = 256;

/// Result bytes queued per connected client before they are dropped for it; a single result
/// larger than this still goes to a client whose queue is empty.
pub const CLIENT_BYTES: usize = 16 << 20;

/// One websocket message: the bytes and whether they go as a text frame (valid UTF-8) or a
/// binary one.
#[derive(Debug, Clone)]
pub struct WsPayload {
    /// The message's bytes.
    pub data: Bytes,
    /// True for a text message: `data` is valid UTF-8.
    pub text: bool,
}

impl WsPayload {
    /// A text message when `data` is UTF-8 (JSON always is), else a binary one.
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let text = std::str::from_utf8(&data).is_ok();
        WsPayload { data, text }
    }
}

#[derive(Debug)]
struct ClientSlot {
    id: u64,
    tx: mpsc::Sender<WsPayload>,
    /// Bytes queued for the client, taken back as it is written.
    queued: AtomicUsize,
    dropped: AtomicU64,
    /// Signalled when the server ends the client's connection ([`WebsocketHub::close_clients`]).
    closed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Endpoint {
    /// Open server-mode sinks on the path.
    sinks: usize,
    clients: Vec<Arc<ClientSlot>>,
    dropped: u64,
}

/// The server-mode registry. Cheap to clone; clones share it.
#[derive(Debug, Clone, Default)]
pub struct WebsocketHub {
    incoming: MemoryBus,
    endpoints: Arc<Mutex<HashMap<String, Endpoint>>>,
    next_id: Arc<AtomicU64>,
}

impl WebsocketHub {
    /// The bus the messages of connected clients are published on, the path as the topic;
    /// server-mode sources subscribe to it.
    pub fn incoming(&self) -> &MemoryBus {
        &self.incoming
    }

    /// Whether a running rule uses `path`: a source reads it or a sink writes to it.
    pub fn is_open(&self, path: &str) -> bool {
        self.incoming.subscribers(path) > 0
            || self
                .endpoints
                .lock()
                .expect("websocket hub lock")
                .get(path)
                .is_some_and(|e| e.sinks > 0)
    }

    /// Hands a message a client sent on `path` to the sources reading it, waiting while they
    /// are behind. Returns how many sources it reached (0: none reads the path now).
    pub async fn receive(&self, path: &str, data: Bytes) -> usize {
        self.incoming.publish_json(path, data).await
    }

    /// Registers a connected client of `path`; it receives the path's results until dropped.
    pub fn join(&self, path: &str) -> HubClient {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let slot = Arc::new(ClientSlot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closed: tokio::sync::Notify::new(),
        });
        self.endpoints
            .lock()
            .expect("websocket hub lock")
            .entry(path.to_string())
            .or_default()
            .clients
            .push(slot.clone());
        HubClient {
            hub: self.clone(),
            path: path.to_string(),
            slot,
            rx,
        }
    }

    /// Opens a server-mode sink on `path`: clients may connect to it from now on.
    pub fn open_sink(&self, path: &str) -> HubSink {
        self.endpoints
            .lock()
            .expect("websocket hub lock")
            .entry(path.to_string())
            .or_default()
            .sinks += 1;
        HubSink {
            hub: self.clone(),
            path: path.to_string(),
        }
    }

    /// Clients connected to `path` now.
    pub fn clients(&self, path: &str) -> usize {
        self.endpoints
            .lock()
            .expect("websocket hub lock")
            .get(path)
            .map_or(0, |e| e.clients.len())
    }

    /// Results dropped on `path` for clients that were too slow, since the path was opened.
    pub fn dropped(&self, path: &str) -> u64 {
        self.endpoints
            .lock()
            .expect("websocket hub lock")
            .get(path)
            .map_or(0, |e| e.dropped)
    }

    /// Ends the connections of every client of `path` now: their [`HubClient::next`] returns
    /// `None` (a rule test was deleted, so its viewers are sent away).
    pub fn close_clients(&self, path: &str) {
        let endpoints = self.endpoints.lock().expect("websocket hub lock");
        for client in endpoints.get(path).map_or(&[][..], |e| &e.clients[..]) {
            // A stored permit: a client not waiting now sees it at its next call.
            client.closed.notify_one();
        }
    }

    /// Forgets `path` once no sink and no client uses it.
    fn tidy(endpoints: &mut HashMap<String, Endpoint>, path: &str) {
        if endpoints
            .get(path)
            .is_some_and(|e| e.sinks == 0 && e.clients.is_empty())
        {
            endpoints.remove(path);
        }
    }
}

/// A connected client's share of the hub: the results for it, in order.
#[derive(Debug)]
pub struct HubClient {
    hub: WebsocketHub,
    path: String,
    slot: Arc<ClientSlot>,
    rx: mpsc::Receiver<WsPayload>,
}

impl HubClient {
    /// The next result to write to the client; `None` once the server closed the client.
    pub async fn next(&mut self) -> Option<WsPayload> {
        let payload = tokio::select! {
            biased;
            () = self.slot.closed.notified() => return None,
            payload = self.rx.recv() => payload?,
        };
        self.slot
            .queued
            .fetch_sub(payload.data.len(), Ordering::AcqRel);
        Some(payload)
    }

    /// Results dropped for this client because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.slot.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for HubClient {
    fn drop(&mut self) {
        let mut endpoints = self.hub.endpoints.lock().expect("websocket hub lock");
        if let Some(e) = endpoints.get_mut(&self.path) {
            e.clients.retain(|c| c.id != self.slot.id);
        }
        WebsocketHub::tidy(&mut endpoints, &self.path);
    }
}

/// What [`HubSink::broadcast`] did with one result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Clients it was queued for.
    pub queued: usize,
    /// Clients it was dropped for (their queue was full).
    pub dropped: usize,
}

/// An open server-mode sink; the path stays open until it is dropped.
#[derive(Debug)]
pub struct HubSink {
    hub: WebsocketHub,
    path: String,
}

impl HubSink {
    /// Queues `payload` for every client connected now, dropping it for those whose queue is
    /// full. Never waits.
    pub fn broadcast(&self, payload: &WsPayload) -> Delivery {
        let mut endpoints = self.hub.endpoints.lock().expect("websocket hub lock");
        let Some(endpoint) = endpoints.get_mut(&self.path) else {
            return Delivery::default();
        };
        let len = payload.data.len();
        let mut delivery = Delivery::default();
        for client in &endpoint.clients {
            let queued = client.queued.load(Ordering::Acquire);
            let fits = queued == 0 || queued + len <= CLIENT_BYTES;
            if fits {
                client.queued.fetch_add(len, Ordering::AcqRel);
                match client.tx.try_send(payload.clone()) {
                    Ok(()) => {
                        delivery.queued += 1;
                        continue;
                    }
                    // Closed: the client is leaving; its slot goes with it.
                    Err(_) => {
                        client.queued.fetch_sub(len, Ordering::AcqRel);
                    }
                }
            }
            if client.tx.is_closed() {
                continue;
            }
            delivery.dropped += 1;
            let before = client.dropped.fetch_add(1, Ordering::Relaxed);
            // Logged at the first drop and then at every power of two, not once per result.
            if (before + 1).is_power_of_two() {
                tracing::warn!(
                    "websocket sink {}: client {} is too slow; {} results dropped for it",
                    self.path,
                    client.id,
                    before + 1
                );
            }
        }
        endpoint.dropped += delivery.dropped as u64;
        delivery
    }

    /// Clients connected to the sink's path now.
    pub fn clients(&self) -> usize {
        self.hub.clients(&self.path)
    }
}

impl Drop for HubSink {
    fn drop(&mut self) {
        let mut endpoints = self.hub.endpoints.lock().expect("websocket hub lock");
        if let Some(e) = endpoints.get_mut(&self.path) {
            e.sinks = e.sinks.saturating_sub(1);
        }
        WebsocketHub::tidy(&mut endpoints, &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_client_loses_results_and_the_others_do_not() {
        let hub = WebsocketHub::default();
        assert!(!hub.is_open("/out"));
        let sink = hub.open_sink("/out");
        assert!(hub.is_open("/out"));
        let mut slow = hub.join("/out");
        let mut fast = hub.join("/out");
        let mut fast_got = 0;
        for i in 0..CLIENT_QUEUE + 10 {
            let d = sink.broadcast(&WsPayload::new(format!("{{\"i\":{i}}}")));
            assert_eq!(d.queued + d.dropped, 2);
            while let Ok(p) = fast.rx.try_recv() {
                assert!(p.text);
                fast_got += 1;
            }
        }
        assert_eq!(fast_got, CLIENT_QUEUE + 10);
        assert_eq!(slow.dropped(), 10);
        assert_eq!(hub.dropped("/out"), 10);
        // The slow client gets what was queued, in order, and then new results again.
        assert_eq!(slow.next().await.unwrap().data.as_ref(), b"{\"i\":0}");
        sink.broadcast(&WsPayload::new(vec![0xff]));
        drop(fast);
        assert_eq!(hub.clients("/out"), 1);
        drop(sink);
        assert!(!hub.is_open("/out"));
        drop(slow);
        assert!(hub.endpoints.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn closing_a_path_ends_its_clients_only() {
        let hub = WebsocketHub::default();
        let sink = hub.open_sink("/test/a");
        let mut a = hub.join("/test/a");
        let mut b = hub.join("/test/b");
        sink.broadcast(&WsPayload::new("{}"));
        hub.close_clients("/test/a");
        // Closed before the queued result is taken: the server is done with the client.
        assert!(a.next().await.is_none());
        let other = hub.open_sink("/test/b");
        other.broadcast(&WsPayload::new("[]"));
        assert_eq!(b.next().await.unwrap().data.as_ref(), b"[]");
    }

    #[test]
    fn a_client_holds_at_most_its_byte_budget() {
        let hub = WebsocketHub::default();
        let sink = hub.open_sink("/big");
        let _client = hub.join("/big");
        let big = WsPayload::new(vec![b' '; CLIENT_BYTES / 2 + 1]);
        // An empty queue takes even a large result; the second would pass the budget.
        assert_eq!(sink.broadcast(&big).queued, 1);
        assert_eq!(sink.broadcast(&big).dropped, 1);
        assert_eq!(sink.broadcast(&WsPayload::new("{}")).queued, 1);
    }
}
