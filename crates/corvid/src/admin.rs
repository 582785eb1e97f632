//! Administration of a running server: draining, clients, sessions, subscriptions on a client's behalf, retained
//! messages.

use crate::events::Event;
use crate::items::SessionItems;
use crate::message::{Delivery, Message};
use crate::registry::Entry;
use crate::server::Server;
use crate::store::RetainedChange;
use corvid_protocol::{ByteString, ProtocolVersion, ReasonCode, SubscriptionOptions, TopicFilter, TopicName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

/// A connected client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client identifier.
    pub client_id: ByteString,
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The protocol version.
    pub protocol: ProtocolVersion,
    /// The user name.
    pub username: Option<ByteString>,
    /// When the connection was accepted.
    pub connected_since: SystemTime,
    /// Bytes received from the client.
    pub bytes_received: u64,
    /// Bytes sent to the client.
    pub bytes_sent: u64,
    /// MQTT packets received from the client.
    pub messages_received: u64,
    /// MQTT packets sent to the client.
    pub messages_sent: u64,
}

/// A session, connected or not.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The client identifier.
    pub client_id: ByteString,
    /// Whether its client is connected.
    pub connected: bool,
    /// When the session was created.
    pub created: SystemTime,
    /// When its client went away, if it is away.
    pub disconnected_at: Option<SystemTime>,
    /// When it expires, if its client is away and it expires at all.
    pub expires_in: Option<std::time::Duration>,
    /// Messages queued for it, not yet sent.
    pub pending_messages: usize,
    /// Its subscriptions.
    pub subscriptions: Vec<(TopicFilter, SubscriptionOptions)>,
    /// Its items.
    pub items: SessionItems,
}

impl Server {
    /// Stops accepting new clients (they are refused with "server unavailable"); connected clients stay.
    pub fn pause_accepting(&self) {
        self.broker.accepting.store(false, Relaxed);
    }

    /// Accepts new clients again.
    pub fn resume_accepting(&self) {
        self.broker.accepting.store(true, Relaxed);
    }

    /// Whether new clients are accepted.
    pub fn is_accepting(&self) -> bool {
        self.broker.accepting.load(Relaxed)
    }

    /// Every connected client.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut out = Vec::new();
        self.broker.registry.for_each(|client_id, entry| {
            if let Entry::Online { control, .. } = entry {
                let i = &control.info;
                out.push(ClientInfo {
                    client_id: ByteString::from(client_id),
                    remote_addr: i.remote,
                    protocol: control.protocol,
                    username: i.username.as_deref().map(ByteString::from),
                    connected_since: i.connected_at(),
                    bytes_received: i.bytes_received.load(Relaxed),
                    bytes_sent: i.bytes_sent.load(Relaxed),
                    messages_received: i.messages_received.load(Relaxed),
                    messages_sent: i.messages_sent.load(Relaxed),
                });
            }
        });
        out
    }

    /// Every session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut out = Vec::new();
        let now = Instant::now();
        self.broker.registry.for_each(|client_id, entry| {
            let (shared, connected, disconnected_at, expires_in) = match entry {
                Entry::Online { session: Some(session), .. } => (session, true, None, None),
                Entry::Online { session: None, .. } => return,
                Entry::Offline(o) => (
                    &o.state.shared,
                    false,
                    Some(o.disconnected_at),
                    o.expires_at.map(|t| t.saturating_duration_since(now)),
                ),
            };
            out.push(SessionInfo {
                client_id: ByteString::from(client_id),
                connected,
                created: shared.created(),
                disconnected_at,
                expires_in,
                pending_messages: shared.queued(),
                subscriptions: shared.subscriptions.lock().iter().map(|(f, (o, _))| (f.clone(), *o)).collect(),
                items: shared.items(),
            });
        });
        out
    }

    /// The session of `client_id`.
    pub fn session(&self, client_id: &str) -> Option<SessionInfo> {
        self.sessions().into_iter().find(|s| &*s.client_id == client_id)
    }

    /// Queues `message` for the session of `client_id` only, at the message's QoS. Returns false if there is no
    /// such session.
    pub fn enqueue(&self, client_id: &str, mut message: Message) -> bool {
        let Some(session) = self.broker.registry.session(client_id) else { return false };
        message.stamp_expiry(Instant::now());
        let qos = message.qos;
        let mut delivery =
            Delivery { message: Arc::new(message), qos, retain: false, subscription_ids: Vec::new(), seq: None };
        let mut ops = Vec::new();
        if qos != corvid_protocol::QoS::AtMostOnce && session.is_durable() && self.broker.durable.is_some() {
            let seq = session.next_seq();
            delivery.seq = Some(seq);
            ops.push(crate::store::persistent::SessionOp::PutMessage {
                client_id: session.client_id.clone(),
                message: crate::broker::stored(&delivery, seq),
            });
        }
        self.broker.store_ops(ops);
        // Through the broker's queueing: a message the overflow policy drops is counted, reported and deleted from
        // the store like any other.
        self.broker.queue(&session, &mut vec![delivery]);
        true
    }

    /// Drops every message queued for the session of `client_id`. Returns false if there is no such session.
    pub fn clear_session_queue(&self, client_id: &str) -> bool {
        let Some(session) = self.broker.registry.session(client_id) else { return false };
        let ops = session
            .clear()
            .into_iter()
            .filter_map(|d| d.seq)
            .map(|seq| crate::store::persistent::SessionOp::DeleteMessage { client_id: session.client_id.clone(), seq })
            .collect();
        self.broker.store_ops(ops);
        true
    }

    /// Deletes the session of `client_id`, disconnecting its client (MQTT 5: reason 0x98 administrative action).
    /// Returns false if there is no such session.
    pub fn delete_session(&self, client_id: &str) -> bool {
        if self.broker.registry.kick(client_id, ReasonCode::AdministrativeAction, true) {
            return true;
        }
        match self.broker.registry.remove_offline(client_id) {
            Some(state) => {
                self.broker.end_session(state);
                true
            }
            None => false,
        }
    }

    /// Disconnects the client with this identifier; MQTT 5 clients get DISCONNECT with `reason` (0x80, unspecified
    /// error, for a code DISCONNECT cannot carry, such as 0x86). Its session stays as its expiry interval says.
    /// Returns whether the client was connected.
    pub fn disconnect_client(&self, client_id: &str, reason: ReasonCode) -> bool {
        self.broker.registry.kick(client_id, reason, false)
    }

    /// Subscribes the session of `client_id` to `filter`, as if its client had (retained messages included).
    /// Returns false if there is no such session.
    pub fn subscribe_client(&self, client_id: &str, filter: TopicFilter, options: SubscriptionOptions) -> bool {
        let Some(session) = self.broker.registry.session(client_id) else { return false };
        self.broker.subscribe(&session, filter, options, None);
        true
    }

    /// Removes a subscription of the session of `client_id`. Returns whether it existed.
    pub fn unsubscribe_client(&self, client_id: &str, filter: &TopicFilter) -> bool {
        self.broker.registry.session(client_id).is_some_and(|session| self.broker.unsubscribe(&session, filter))
    }

    /// The retained message of `topic`, if there is one.
    pub fn retained_message(&self, topic: &str) -> Option<Message> {
        self.broker.retained.get(topic).map(|m| (*m).clone())
    }

    /// Every retained message.
    pub fn retained_messages(&self) -> Vec<Message> {
        self.broker.retained.all().into_iter().map(|m| (*m).clone()).collect()
    }

    /// Sets the retained message of the message's topic without publishing it to subscribers (an empty payload
    /// deletes it).
    pub fn set_retained_message(&self, mut message: Message) {
        message.retain = true;
        message.stamp_expiry(Instant::now());
        let message = Arc::new(message);
        self.broker.set_retained(message.clone());
        self.broker.store_ops(vec![crate::broker::retained_op(&message)]);
    }

    /// Deletes the retained message of `topic`. Returns whether there was one.
    pub fn delete_retained_message(&self, topic: &TopicName) -> bool {
        let empty = Message::new(topic.clone(), bytes::Bytes::new(), corvid_protocol::QoS::AtMostOnce, true);
        let empty = Arc::new(empty);
        self.broker.store_ops(vec![crate::broker::retained_op(&empty)]);
        self.broker.set_retained(empty)
    }

    /// Deletes every retained message.
    pub fn clear_retained_messages(&self) {
        for message in self.broker.retained.all() {
            self.delete_retained_message(&message.topic);
        }
    }
}

impl crate::broker::Broker {
    /// Stores or deletes (empty payload) a retained message and tells observers. Returns whether the topic had one.
    pub(crate) fn set_retained(&self, message: Arc<Message>) -> bool {
        let deleted = message.payload.is_empty();
        let old = self.retained.set(message.clone());
        if !deleted || old.is_some() {
            // `$SYS` topics are the broker's own, republished at every start: they are not stored.
            if let Some(writer) = self.retained_writer.as_ref().filter(|_| !message.topic.starts_with("$SYS/")) {
                writer.changed(if deleted {
                    RetainedChange::Delete(message.topic.clone())
                } else {
                    RetainedChange::Set(message.clone())
                });
            }
            self.emit(|| Event::RetainedMessageChanged {
                topic: message.topic.clone(),
                message: (!deleted).then(|| message.clone()),
            });
        }
        old.is_some()
    }
}
