//! Named MQTT connections (eKuiper's `/connections` and `connectionSelector`): one client,
//! so one TCP connection to the broker, shared by every stream and sink that names it.
//!
//! - A connection dials when it is created (as eKuiper's named connections do) and closes when
//!   it is deleted or replaced; both are refused while a stream or sink holds a [`Lease`], the
//!   reference count shown as `refCount`.
//! - Sources subscribe through their lease: each subscription is a route (topic filter, QoS,
//!   bounded queue). The driver task subscribes every filter again after each reconnect and
//!   hands each incoming publish to the queue of every route whose filter matches the topic
//!   (`+`, `#` and `$share/<group>/` understood), so streams with overlapping filters each get
//!   their copy.
//! - Back-pressure: a full queue makes the driver wait, which stops reading the socket and so
//!   slows the broker down, as a source of its own would. A queue that stays full for
//!   [`SLOW_WAIT`] marks its subscriber lagging: from then on its messages are dropped (counted
//!   and logged) without waiting, until its queue is half empty again. So a stalled rule delays
//!   the others by at most [`SLOW_WAIT`] once per stall, and never blocks them.
//! - Sinks publish through a clone of the client handle; closing a sink leaves the client up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::QoS;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::client::{self, Client, Event, EventLoop, Failure};
use super::config::MqttConnectionConfig;
use super::{BrokerAddress, ConnectionState, ConnectionStatus, DisconnectOnDrop, Reconnects};
use crate::{ConnectorError, RawMessage};

/// Messages queued for one subscriber before the driver waits for it.
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// How long the driver waits for a subscriber's full queue before dropping its messages.
pub const SLOW_WAIT: Duration = Duration::from_secs(1);

/// The named MQTT connections of one process, by id.
#[derive(Debug, Clone, Default)]
pub struct MqttConnections {
    named: Arc<Mutex<BTreeMap<String, Arc<SharedClient>>>>,
}

/// What `GET /connections/{id}` shows of a live connection.
#[derive(Debug, Clone)]
pub struct SharedStatus {
    /// The client's connection state.
    pub connection: ConnectionStatus,
    /// Streams and sinks holding the connection now.
    pub users: usize,
    /// Messages dropped for lagging subscribers since the connection was made.
    pub dropped: u64,
}

impl MqttConnections {
    /// Creates (or, when `replace`, replaces) connection `id` and starts dialing it; must run
    /// inside a tokio runtime. Replacing a connection in use is refused.
    pub fn put(
        &self,
        id: &str,
        config: MqttConnectionConfig,
        replace: bool,
    ) -> Result<(), ConnectorError> {
        let mut named = self.named.lock().expect("mqtt connections lock");
        if let Some(old) = named.get(id) {
            if !replace {
                return Err(error(format!("connection \"{id}\" already exists")));
            }
            let users = old.users.load(Ordering::Acquire);
            if users > 0 {
                return Err(in_use(id, users));
            }
        }
        named.insert(id.to_string(), Arc::new(SharedClient::start(id, config)));
        Ok(())
    }

    /// Deletes connection `id`, closing its client; false when there is none. Refused while
    /// a stream or sink holds it.
    pub fn remove(&self, id: &str) -> Result<bool, ConnectorError> {
        let mut named = self.named.lock().expect("mqtt connections lock");
        let Some(conn) = named.get(id) else {
            return Ok(false);
        };
        let users = conn.users.load(Ordering::Acquire);
        if users > 0 {
            return Err(in_use(id, users));
        }
        named.remove(id);
        Ok(true)
    }

    /// The live state of connection `id`.
    pub fn status(&self, id: &str) -> Option<SharedStatus> {
        let conn = self
            .named
            .lock()
            .expect("mqtt connections lock")
            .get(id)
            .cloned()?;
        Some(SharedStatus {
            connection: conn.state.snapshot(),
            users: conn.users.load(Ordering::Acquire),
            dropped: conn.routes.dropped.load(Ordering::Relaxed),
        })
    }

    /// A hold on connection `id` (or eKuiper's older `mqtt.<id>`), counted until dropped.
    pub fn lease(&self, id: &str) -> Result<Lease, ConnectorError> {
        let named = self.named.lock().expect("mqtt connections lock");
        let conn = named
            .get(id)
            .or_else(|| id.strip_prefix("mqtt.").and_then(|short| named.get(short)))
            .ok_or_else(|| {
                error(format!(
                    "unknown connection \"{id}\" in \"connectionSelector\"; create it with \
                     POST /connections"
                ))
            })?;
        conn.users.fetch_add(1, Ordering::AcqRel);
        Ok(Lease { conn: conn.clone() })
    }
}

fn in_use(id: &str, users: usize) -> ConnectorError {
    error(format!(
        "connection \"{id}\" is in use by {users} running source(s) or sink(s)"
    ))
}

fn error(reason: String) -> ConnectorError {
    ConnectorError::Config {
        connector: "mqtt",
        reason,
    }
}

/// One client and the routes of its subscribers.
#[derive(Debug)]
struct SharedClient {
    id: String,
    broker: BrokerAddress,
    client: Client,
    state: Arc<ConnectionState>,
    routes: Arc<Routes>,
    users: AtomicUsize,
    closing: Arc<AtomicBool>,
    driver: JoinHandle<()>,
    /// The runtime the driver runs on: the last drop may happen on a worker thread.
    runtime: tokio::runtime::Handle,
}

impl SharedClient {
    fn start(id: &str, config: MqttConnectionConfig) -> SharedClient {
        let (client, eventloop) = client::connect(&client::Connect {
            broker: &config.broker,
            client_id: &config.client_id,
            credentials: config.credentials.as_ref(),
            tls: config.tls.as_ref(),
            protocol: config.protocol,
            durable: false,
        });
        let state = Arc::new(ConnectionState::default());
        let routes = Arc::new(Routes::default());
        let closing = Arc::new(AtomicBool::new(false));
        let driver = tokio::spawn(drive(
            eventloop,
            client.clone(),
            state.clone(),
            routes.clone(),
            closing.clone(),
            format!("\"{id}\" ({})", config.broker),
        ));
        SharedClient {
            id: id.to_string(),
            broker: config.broker,
            client,
            state,
            routes,
            users: AtomicUsize::new(0),
            closing,
            driver,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for SharedClient {
    fn drop(&mut self) {
        tracing::info!("mqtt connection \"{}\" closed", self.id);
        self.closing.store(true, Ordering::Release);
        self.client.try_disconnect();
        // The driver ends after the DISCONNECT goes out; if the broker is away it would retry
        // forever, so give it a moment and then stop it.
        let handle = self.driver.abort_handle();
        self.runtime.spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            handle.abort();
        });
    }
}

/// A stream's or sink's hold on a named connection; the connection cannot be deleted while
/// one exists.
#[derive(Debug)]
pub struct Lease {
    conn: Arc<SharedClient>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.conn.users.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lease {
    /// The connection's id.
    pub fn id(&self) -> &str {
        &self.conn.id
    }

    /// The broker the connection talks to.
    pub fn broker(&self) -> &BrokerAddress {
        &self.conn.broker
    }

    /// The connection's live state.
    pub fn state(&self) -> Arc<ConnectionState> {
        self.conn.state.clone()
    }

    pub(super) fn client(&self) -> Client {
        self.conn.client.clone()
    }

    /// Routes the publishes matching `filter` to a new bounded queue, subscribing now if the
    /// client is connected (and after every reconnect).
    pub fn subscribe(&self, filter: &str, qos: QoS) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let id = self.conn.routes.add(filter, qos, tx);
        // The highest QoS any subscriber asked for this filter, so a later subscriber never
        // downgrades an earlier one's subscription.
        let qos = self
            .conn
            .routes
            .filters()
            .into_iter()
            .find_map(|(f, q)| (f == filter).then_some(q))
            .unwrap_or(qos);
        if self.conn.state.is_connected()
            && let Err(e) = self.conn.client.try_subscribe(filter, qos)
        {
            tracing::error!(
                "mqtt connection \"{}\": subscribe \"{filter}\": {e}",
                self.id()
            );
        }
        Subscription {
            rx,
            id,
            filter: filter.to_string(),
            conn: self.conn.clone(),
        }
    }
}

/// One subscriber's queue; dropping it removes the route (and unsubscribes the filter when
/// no other subscriber uses it).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<RawMessage>,
    id: u64,
    filter: String,
    conn: Arc<SharedClient>,
}

impl Subscription {
    /// The next message; `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<RawMessage> {
        self.rx.recv().await
    }

    /// A message already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<RawMessage> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.conn.routes.remove(self.id, &self.filter) {
            self.conn.client.try_unsubscribe(&self.filter);
        }
    }
}

/// Every subscriber of one client.
#[derive(Debug, Default)]
struct Routes {
    list: Mutex<Vec<Route>>,
    next: AtomicU64,
    /// Messages dropped for lagging subscribers.
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Route {
    id: u64,
    filter: String,
    qos: QoS,
    tx: mpsc::Sender<RawMessage>,
    lagging: Arc<AtomicBool>,
}

impl Routes {
    fn add(&self, filter: &str, qos: QoS, tx: mpsc::Sender<RawMessage>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.list.lock().expect("mqtt routes lock").push(Route {
            id,
            filter: filter.to_string(),
            qos,
            tx,
            lagging: Arc::default(),
        });
        id
    }

    /// Removes route `id`; true when no other route has `filter`.
    fn remove(&self, id: u64, filter: &str) -> bool {
        let mut list = self.list.lock().expect("mqtt routes lock");
        list.retain(|r| r.id != id);
        !list.iter().any(|r| r.filter == filter)
    }

    /// Each distinct filter with the highest QoS asked for it.
    fn filters(&self) -> Vec<(String, QoS)> {
        let mut by_filter: BTreeMap<String, QoS> = BTreeMap::new();
        for r in self.list.lock().expect("mqtt routes lock").iter() {
            let qos = by_filter.entry(r.filter.clone()).or_insert(r.qos);
            if (r.qos as u8) > (*qos as u8) {
                *qos = r.qos;
            }
        }
        by_filter.into_iter().collect()
    }

    /// The queues of the routes whose filter matches `topic`, copied out of the lock.
    fn matching(&self, topic: &str) -> Vec<(mpsc::Sender<RawMessage>, Arc<AtomicBool>)> {
        self.list
            .lock()
            .expect("mqtt routes lock")
            .iter()
            .filter(|r| topic_matches(&r.filter, topic))
            .map(|r| (r.tx.clone(), r.lagging.clone()))
            .collect()
    }

    /// Hands `msg` to one subscriber under the policy of the module doc.
    async fn deliver(
        &self,
        tx: &mpsc::Sender<RawMessage>,
        lagging: &AtomicBool,
        msg: RawMessage,
        label: &str,
    ) {
        if lagging.load(Ordering::Relaxed) {
            if tx.capacity() < SUBSCRIBER_QUEUE / 2 {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            lagging.store(false, Ordering::Relaxed);
            tracing::info!("mqtt connection {label}: a lagging subscriber caught up");
        }
        match tx.try_send(msg) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                match tokio::time::timeout(SLOW_WAIT, tx.send(msg)).await {
                    Ok(_) => {}
                    Err(_) => {
                        lagging.store(true, Ordering::Relaxed);
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "mqtt connection {label}: a subscriber's queue stayed full for \
                             {SLOW_WAIT:?}; dropping its messages until it catches up"
                        );
                    }
                }
            }
        }
    }
}

/// Whether MQTT topic filter `filter` matches `topic`: `+` is one level, a last `#` is any
/// number of levels (its parent included); wildcards at the first level do not match `$`
/// topics; `$share/<group>/` is not part of the match.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    crate::memory::topic_matches(filter, topic)
}

/// Runs the shared client's event loop: reconnects with backoff, subscribes every route's
/// filter on each connect, and routes publishes to the matching subscribers.
async fn drive(
    mut eventloop: EventLoop,
    client: Client,
    state: Arc<ConnectionState>,
    routes: Arc<Routes>,
    closing: Arc<AtomicBool>,
    label: String,
) {
    let _disconnect = DisconnectOnDrop(state.clone());
    // `client` keeps the request channel open, so the loop ends on the DISCONNECT the
    // connection's drop queues (or is aborted), not on the last handle going.
    let mut reconnects = Reconnects::new(format!("mqtt connection {label}"));
    let mut last_topic: Option<Arc<str>> = None;
    loop {
        match eventloop.poll().await {
            Ok(Event::Message {
                topic,
                payload,
                qos,
                pkid,
                ..
            }) => {
                let topic = match &last_topic {
                    Some(t) if t.as_bytes() == &topic[..] => t.clone(),
                    _ => last_topic
                        .insert(Arc::from(String::from_utf8_lossy(&topic)))
                        .clone(),
                };
                let msg = RawMessage {
                    payload,
                    topic: topic.clone(),
                    qos: Some(qos),
                    message_id: Some(pkid),
                };
                for (tx, lagging) in routes.matching(&topic) {
                    routes.deliver(&tx, &lagging, msg.clone(), &label).await;
                }
            }
            Ok(Event::Connected) => {
                reconnects.connected(&state);
                // A clean session forgets subscriptions: subscribe on every (re)connect.
                for (filter, qos) in routes.filters() {
                    if let Err(e) = client.try_subscribe(&filter, qos) {
                        state.record_error(format!("could not subscribe to \"{filter}\": {e}"));
                    }
                }
            }
            Ok(Event::Subscribed { refused: true }) => {
                let reason = "the broker refused a subscription".to_string();
                tracing::error!("mqtt connection {label}: {reason}");
                state.record_error(reason);
            }
            Ok(Event::Disconnected) => return,
            Ok(_) => {}
            Err(Failure::RequestsDone) => return,
            Err(_) if closing.load(Ordering::Acquire) => return,
            Err(Failure::Error(reason)) => reconnects.failed(&state, reason).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_topics() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+/c", "a/x/c"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+/+", "a/b"),
            ("$share/g/a/+", "a/b"),
            ("$SYS/#", "$SYS/broker/uptime"),
            ("+", ""),
        ];
        for (f, t) in yes {
            assert!(topic_matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/b", "a/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("a/b/c", "a/b"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a", "a/b"),
            ("$share/g/a/b", "a/c"),
        ];
        for (f, t) in no {
            assert!(!topic_matches(f, t), "{f} should not match {t}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_after_the_wait_and_recovers() {
        let routes = Routes::default();
        let (tx, mut rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let lagging = AtomicBool::new(false);
        let msg = RawMessage::new(&b"x"[..], Arc::from("t"));
        for _ in 0..SUBSCRIBER_QUEUE {
            routes.deliver(&tx, &lagging, msg.clone(), "t").await;
        }
        // Waits SLOW_WAIT (1 s) for room, then drops.
        routes.deliver(&tx, &lagging, msg.clone(), "t").await;
        assert!(lagging.load(Ordering::Relaxed));
        assert_eq!(routes.dropped.load(Ordering::Relaxed), 1);
        // Lagging: dropped at once, without waiting.
        routes.deliver(&tx, &lagging, msg.clone(), "t").await;
        assert_eq!(routes.dropped.load(Ordering::Relaxed), 2);
        for _ in 0..SUBSCRIBER_QUEUE / 2 {
            rx.recv().await.unwrap();
        }
        routes.deliver(&tx, &lagging, msg, "t").await;
        assert!(!lagging.load(Ordering::Relaxed));
        assert_eq!(routes.dropped.load(Ordering::Relaxed), 2);
    }
}
