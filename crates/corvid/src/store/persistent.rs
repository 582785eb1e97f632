//! The durable store of sessions, their queued and inflight messages, and retained messages.
//!
//! The broker describes every change as a [`SessionOp`]; a writer task groups the operations of many publishers
//! into one [`PersistentStore::apply`] call (group commit). Under [`SyncPolicy::Always`] and
//! [`SyncPolicy::Batched`], a publisher's PUBACK / PUBREC waits until the operations its message caused are
//! durable, without holding up the other packets of its connection.

use super::StoreError;
use crate::message::Message;
use corvid_protocol::{ByteString, PacketId, QoS, SubscriptionOptions, TopicFilter, TopicName};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// When the durable store makes writes durable, and what publishers wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Every commit is flushed to disk before the publishers it covers are acknowledged.
    Always,
    /// Like `Always`, but the writer gathers operations for up to this window before each commit, so one flush
    /// covers more messages.
    Batched(Duration),
    /// Publishers are acknowledged without waiting, and commits are flushed about once a second: a crash may
    /// lose the last second of data, never the store itself.
    Never,
}

impl SyncPolicy {
    /// Whether publishers wait for their operations to be durable.
    pub fn waits(self) -> bool {
        !matches!(self, Self::Never)
    }
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self::Batched(Duration::from_millis(2))
    }
}

/// Where a stored outbound message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredMessageState {
    /// Queued, not sent yet.
    Queued,
    /// Sent as PUBLISH with this packet identifier, not acknowledged yet (resent with DUP).
    Sent(PacketId),
    /// QoS 2: PUBREC received and PUBREL sent with this packet identifier, PUBCOMP not received yet.
    Released(PacketId),
}

/// One message of a session's queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredMessage {
    /// Its position in the session's queue (increasing).
    pub seq: u64,
    /// The message.
    pub message: Arc<Message>,
    /// The QoS it is delivered with.
    pub qos: QoS,
    /// The retain flag it is delivered with.
    pub retain: bool,
    /// The subscription identifiers it is delivered with.
    pub subscription_ids: Vec<u32>,
    /// Where it stands.
    pub state: StoredMessageState,
}

/// The user name a session's client sent in its last CONNECT, as a stored session record knows it.
///
/// Hooks of a restored session see it in [`crate::RestoreContext`], to give the session the items the connection
/// validator would have given a live one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredUsername {
    /// Not recorded: the record was written by a version that did not keep user names (session record version 1).
    #[default]
    Unknown,
    /// The client sent no user name.
    Anonymous,
    /// The client's user name.
    Named(ByteString),
}

impl From<Option<ByteString>> for StoredUsername {
    fn from(username: Option<ByteString>) -> Self {
        match username {
            Some(name) => Self::Named(name),
            None => Self::Anonymous,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoredSession {
    /// The client identifier.
    pub client_id: ByteString,
    /// The user name its client last connected with.
    pub username: StoredUsername,
    /// The session expiry interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When its client went away; `None` if it was connected when the store was last written.
    pub disconnected_at: Option<SystemTime>,
    /// Its subscriptions, with their subscription identifiers.
    pub subscriptions: Vec<(TopicFilter, SubscriptionOptions, Option<u32>)>,
    /// Its queued and inflight messages, in queue order.
    pub messages: Vec<StoredMessage>,
    /// Inbound QoS 2 packet identifiers received and not yet released by PUBREL.
    pub incoming_qos2: Vec<u16>,
}

impl StoredSession {
    /// A session with no subscriptions, messages or packet identifiers, its user name unknown.
    pub fn new(client_id: ByteString, expiry_interval: u32) -> Self {
        Self {
            client_id,
            username: StoredUsername::Unknown,
            expiry_interval,
            disconnected_at: None,
            subscriptions: Vec::new(),
            messages: Vec::new(),
            incoming_qos2: Vec::new(),
        }
    }
}

/// Everything a durable store holds, as loaded at start.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Loaded {
    /// The sessions.
    pub sessions: Vec<StoredSession>,
    /// The retained messages.
    pub retained: Vec<Message>,
}

/// One change to the durable state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionOp {
    /// Creates or replaces a session's own record (not its messages): user name, expiry, disconnect time,
    /// subscriptions.
    PutSession {
        /// The client identifier.
        client_id: ByteString,
        /// The user name its client last connected with.
        username: StoredUsername,
        /// The expiry interval in seconds.
        expiry_interval: u32,
        /// When its client went away, if it is away.
        disconnected_at: Option<SystemTime>,
        /// Its subscriptions.
        subscriptions: Vec<(TopicFilter, SubscriptionOptions, Option<u32>)>,
    },
    /// Deletes a session with all its messages and packet identifiers.
    DeleteSession {
        /// The client identifier.
        client_id: ByteString,
    },
    /// Adds a message to a session's queue.
    PutMessage {
        /// The client identifier.
        client_id: ByteString,
        /// The message with its queue position.
        message: StoredMessage,
    },
    /// Changes where a queued message stands.
    SetMessageState {
        /// The client identifier.
        client_id: ByteString,
        /// The message's queue position.
        seq: u64,
        /// The new state.
        state: StoredMessageState,
    },
    /// Removes a message from a session's queue (acknowledged, expired or dropped).
    DeleteMessage {
        /// The client identifier.
        client_id: ByteString,
        /// The message's queue position.
        seq: u64,
    },
    /// Records an inbound QoS 2 packet identifier.
    AddIncoming {
        /// The client identifier.
        client_id: ByteString,
        /// The packet identifier.
        packet_id: u16,
    },
    /// Forgets an inbound QoS 2 packet identifier (PUBREL received).
    RemoveIncoming {
        /// The client identifier.
        client_id: ByteString,
        /// The packet identifier.
        packet_id: u16,
    },
    /// Sets the retained message of its topic.
    SetRetained(Arc<Message>),
    /// Deletes the retained message of a topic.
    DeleteRetained(TopicName),
}

/// A durable store of sessions and retained messages.
///
/// Both methods run on a blocking thread. `apply` must apply the operations in order and atomically: after a
/// crash, either all of one call's operations are visible, or none.
pub trait PersistentStore: Send + Sync + 'static {
    /// Everything stored; called once when the server starts. A store that cannot be read must fail with an error
    /// naming the file and what is wrong, never discard data silently.
    fn load(&self) -> Result<Loaded, StoreError>;

    /// Applies `ops` atomically. When `sync` is true, they are durable (on disk) when this returns.
    fn apply(&self, ops: &[SessionOp], sync: bool) -> Result<(), StoreError>;
}
