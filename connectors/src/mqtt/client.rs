//! One client over rumqttc's MQTT 3.1.1 and MQTT 5 clients (`protocolVersion`), so the source
//! and sink are written once against the few events they act on.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as v5p;
use rumqttc::{Outgoing, QoS};

use super::{BrokerAddress, Credentials, MAX_PACKET_SIZE, REQUEST_CAPACITY};
use crate::tls::TlsClient;

/// The MQTT protocol version a client speaks (`protocolVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1 (`"3.1.1"` or `"4"`, eKuiper's default).
    #[default]
    V311,
    /// MQTT 5 (`"5"`).
    V5,
}

/// What a client needs to connect.
pub(super) struct Connect<'a> {
    pub broker: &'a BrokerAddress,
    pub client_id: &'a str,
    pub credentials: Option<&'a Credentials>,
    pub tls: Option<&'a TlsClient>,
    pub protocol: Protocol,
    /// A source whose messages are logged before they are acknowledged: a persistent session
    /// (the broker keeps what arrives while the client is away) and manual acks.
    pub durable: bool,
}

/// The handle requests go through (clones share the connection).
#[derive(Debug, Clone)]
pub(super) enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop that owns the connection; polled by the source or the sink's driver.
pub(super) struct EventLoop {
    inner: Inner,
    broker: BrokerAddress,
}

// One per connection, made once and moved once into its task: the size gap costs nothing.
#[allow(clippy::large_enum_variant)]
enum Inner {
    V311(rumqttc::EventLoop),
    V5(rumqttc::v5::EventLoop),
}

/// The events the source and sink act on.
pub(super) enum Event {
    /// The broker accepted the connection (CONNACK).
    Connected,
    /// A message arrived.
    Message {
        topic: Bytes,
        payload: Bytes,
        qos: u8,
        pkid: u16,
        /// The broker sends it again (DUP): it may have reached this client before.
        dup: bool,
    },
    /// The broker answered a subscription; `refused` if it refused the filter.
    Subscribed { refused: bool },
    /// The client sent its DISCONNECT (after the sink's close).
    Disconnected,
    /// Anything else: acks, pings, outgoing packets.
    Other,
}

/// Why polling failed.
pub(super) enum Failure {
    /// Every client handle is gone: the event loop is finished.
    RequestsDone,
    /// The connection failed; the message is for logs and the rule status.
    Error(String),
}

/// A client and its event loop, with Nagle's algorithm off (`TCP_NODELAY`).
///
/// Each publish is one small write. With Nagle on, a write waits while an earlier one is
/// unacknowledged, and the broker delays its acknowledgements by up to 40 ms: at 10k msgs/s
/// that put 40 ms tails on the latency benchmark. Go's clients (eKuiper's) set `TCP_NODELAY`
/// by default too.
pub(super) fn connect(c: &Connect<'_>) -> (Client, EventLoop) {
    let (host, port) = (c.broker.host.clone(), c.broker.port);
    let transport = c.tls.map(|tls| {
        rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.config()))
    });
    let keep_alive = Duration::from_secs(30);
    let (client, inner) = match c.protocol {
        Protocol::V311 => {
            let mut options = rumqttc::MqttOptions::new(c.client_id, host, port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_session(!c.durable)
                .set_manual_acks(c.durable)
                .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
                .set_request_channel_capacity(REQUEST_CAPACITY);
            if let Some(login) = c.credentials {
                options.set_credentials(login.username.as_str(), login.password.as_str());
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, REQUEST_CAPACITY);
            let mut network = eventloop.network_options();
            network.set_tcp_nodelay(true);
            eventloop.set_network_options(network);
            (Client::V311(client), Inner::V311(eventloop))
        }
        Protocol::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(c.client_id, host, port);
            let mut network = options.network_options();
            network.set_tcp_nodelay(true);
            options
                .set_keep_alive(keep_alive)
                .set_clean_start(!c.durable)
                .set_manual_acks(c.durable)
                .set_max_packet_size(Some(MAX_PACKET_SIZE as u32))
                .set_request_channel_capacity(REQUEST_CAPACITY)
                .set_network_options(network);
            if c.durable {
                // MQTT 5 ends a session at disconnect unless it is given an expiry.
                options.set_session_expiry_interval(Some(SESSION_EXPIRY_SECS));
            }
            if let Some(login) = c.credentials {
                options.set_credentials(login.username.as_str(), login.password.as_str());
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, REQUEST_CAPACITY);
            (Client::V5(client), Inner::V5(eventloop))
        }
    };
    (
        client,
        EventLoop {
            inner,
            broker: c.broker.clone(),
        },
    )
}

/// How long the broker keeps a durable source's MQTT 5 session while it is away: a week.
const SESSION_EXPIRY_SECS: u32 = 7 * 24 * 3600;

/// rumqttc's MQTT 5 QoS is its own type with the same levels.
fn v5_qos(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Client {
    /// Queues a publish, waiting while the request queue is full; `Err` once the event loop
    /// is gone.
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), ()> {
        match self {
            Client::V311(c) => c.publish(topic, qos, retain, payload).await.map_err(drop),
            Client::V5(c) => c
                .publish(topic, v5_qos(qos), retain, payload)
                .await
                .map_err(drop),
        }
    }

    /// Queues a subscription without waiting.
    pub fn try_subscribe(&self, filter: &str, qos: QoS) -> Result<(), String> {
        match self {
            Client::V311(c) => c.try_subscribe(filter, qos).map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, v5_qos(qos))
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues an unsubscription without waiting (best effort: the session is clean anyway).
    pub fn try_unsubscribe(&self, filter: &str) {
        let _ = match self {
            Client::V311(c) => c.try_unsubscribe(filter).map_err(drop),
            Client::V5(c) => c.try_unsubscribe(filter).map_err(drop),
        };
    }

    /// Acknowledges a received message (`manual acks`: once it is safe), waiting while the
    /// request queue is full (an ack dropped would hold a broker's in-flight slot until the
    /// next connection); QoS 0 needs none.
    pub async fn ack(&self, qos: u8, pkid: u16) -> Result<(), String> {
        let qos = match qos {
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => return Ok(()),
        };
        match self {
            Client::V311(c) => {
                let mut p = rumqttc::Publish::new("", qos, Vec::new());
                p.pkid = pkid;
                c.ack(&p).await.map_err(|e| e.to_string())
            }
            Client::V5(c) => {
                let mut p = v5p::Publish::new("", v5_qos(qos), Vec::new(), None);
                p.pkid = pkid;
                c.ack(&p).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Queues a DISCONNECT after the requests already queued.
    pub fn try_disconnect(&self) {
        let _ = match self {
            Client::V311(c) => c.try_disconnect().map_err(drop),
            Client::V5(c) => c.try_disconnect().map_err(drop),
        };
    }
}

impl EventLoop {
    /// Writes the acknowledgements of received messages (`(QoS, packet id)`, in arrival
    /// order) in one flush, on the event loop's own connection. rumqttc's request path
    /// writes and flushes each ack on its own: a syscall and a TCP segment per message, most
    /// of a durable source's CPU at tens of thousands of messages a second. `Ok(false)` when
    /// the protocol's client does not allow it (MQTT 5: rumqttc keeps its connection
    /// private); the caller then acknowledges through [`Client::ack`]. Acks for a connection
    /// that is down are dropped: the broker sends those messages again.
    pub async fn write_acks(&mut self, acks: &[(u8, u16)]) -> Result<bool, String> {
        let Inner::V311(el) = &mut self.inner else {
            return Ok(false);
        };
        let Some(network) = el.network.as_mut() else {
            return Ok(true);
        };
        for &(qos, pkid) in acks {
            let request = match qos {
                1 => rumqttc::Request::PubAck(rumqttc::PubAck::new(pkid)),
                2 => rumqttc::Request::PubRec(rumqttc::PubRec::new(pkid)),
                _ => continue,
            };
            // Through the session state, as rumqttc's own path goes: it notes the outgoing
            // packet (keep-alive timing, the outgoing event the next poll returns).
            if let Some(packet) = el
                .state
                .handle_outgoing_packet(request)
                .map_err(|e| e.to_string())?
            {
                network.write(packet).await.map_err(|e| e.to_string())?;
            }
        }
        network.flush().await.map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// The next event of the connection (connecting first if it is down).
    pub async fn poll(&mut self) -> Result<Event, Failure> {
        match &mut self.inner {
            Inner::V311(el) => match el.poll().await {
                Ok(rumqttc::Event::Incoming(packet)) => Ok(match packet {
                    rumqttc::Packet::Publish(p) => Event::Message {
                        // A String becomes Bytes without a copy.
                        topic: Bytes::from(p.topic),
                        payload: p.payload,
                        qos: p.qos as u8,
                        pkid: p.pkid,
                        dup: p.dup,
                    },
                    rumqttc::Packet::ConnAck(_) => Event::Connected,
                    rumqttc::Packet::SubAck(ack) => Event::Subscribed {
                        refused: ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)),
                    },
                    _ => Event::Other,
                }),
                Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect)) => Ok(Event::Disconnected),
                Ok(_) => Ok(Event::Other),
                Err(rumqttc::ConnectionError::RequestsDone) => Err(Failure::RequestsDone),
                Err(rumqttc::ConnectionError::Tls(e)) => {
                    Err(Failure::Error(tls_failure(&self.broker, &e)))
                }
                Err(e) => Err(Failure::Error(e.to_string())),
            },
            Inner::V5(el) => match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(packet)) => Ok(match packet {
                    v5p::Packet::Publish(p) => Event::Message {
                        topic: p.topic,
                        payload: p.payload,
                        qos: p.qos as u8,
                        pkid: p.pkid,
                        dup: p.dup,
                    },
                    v5p::Packet::ConnAck(_) => Event::Connected,
                    v5p::Packet::SubAck(ack) => Event::Subscribed {
                        refused: ack
                            .return_codes
                            .iter()
                            .any(|c| !matches!(c, v5p::SubscribeReasonCode::Success(_))),
                    },
                    _ => Event::Other,
                }),
                Ok(rumqttc::v5::Event::Outgoing(Outgoing::Disconnect)) => Ok(Event::Disconnected),
                Ok(_) => Ok(Event::Other),
                Err(rumqttc::v5::ConnectionError::RequestsDone) => Err(Failure::RequestsDone),
                Err(rumqttc::v5::ConnectionError::Tls(e)) => {
                    Err(Failure::Error(tls_failure(&self.broker, &e)))
                }
                Err(e) => Err(Failure::Error(e.to_string())),
            },
        }
    }
}

/// A failed TLS handshake, saying what to check.
fn tls_failure(broker: &BrokerAddress, error: &rumqttc::TlsError) -> String {
    format!(
        "TLS handshake with {broker} failed: {error}; check rootCaPath (the CA that signed the \
         broker's certificate) and the client certificate, or set insecureSkipVerify"
    )
}
