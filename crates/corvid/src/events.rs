//! Events: what happened in the broker, for observers. Events never stall the data path: they go through a bounded
//! broadcast channel, and a receiver that falls behind loses the oldest events (it is told how many).

use crate::message::Message;
use corvid_protocol::{ByteString, ProtocolVersion, ReasonCode, SubscriptionOptions, TopicFilter, TopicName};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// How a client's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectKind {
    /// The client sent DISCONNECT.
    Clean,
    /// The connection was lost, timed out, or broke the protocol.
    Abnormal,
    /// Another connection with the same client identifier took the session over.
    TakenOver,
    /// The process disconnected the client.
    Kicked,
    /// The server is stopping.
    ServerStopping,
}

/// Why a message was not delivered to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The session's queue was full (the overflow policy dropped this message).
    QueueFull,
    /// The message expired before it could be sent.
    Expired,
    /// The message is larger than the client's Maximum Packet Size.
    TooLarge,
}

/// Something that happened in the broker.
///
/// Observe events with [`crate::Server::events`] or
/// [`ServerOptionsBuilder::with_event_handler`](crate::ServerOptionsBuilder::with_event_handler):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use corvid::{Event, Message, QoS, Server, ServerOptions, TopicName};
///
/// // An in-process broker: no network endpoint, no `$SYS` topics.
/// let options = ServerOptions::builder().without_default_endpoint().with_sys_interval(None).build();
/// let server = Server::start(options).await?;
/// let mut events = server.events();
/// server.publish(Message::new(TopicName::new("greetings").unwrap(), "hello", QoS::AtMostOnce, false)).await;
/// match events.recv().await.unwrap() {
///     // `client_id` is `None`: the process published it.
///     Event::MessageReceived { client_id: None, message } => assert_eq!(message.topic.as_str(), "greetings"),
///     other => panic!("unexpected {other:?}"),
/// }
/// server.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The server started.
    ServerStarted,
    /// The server stopped.
    ServerStopped,
    /// A client connected.
    ClientConnected {
        /// The client identifier.
        client_id: ByteString,
        /// The client's address.
        remote_addr: SocketAddr,
        /// The protocol version.
        protocol: ProtocolVersion,
        /// The user name.
        username: Option<ByteString>,
        /// Whether an existing session was resumed.
        session_present: bool,
    },
    /// A client's connection ended.
    ClientDisconnected {
        /// The client identifier.
        client_id: ByteString,
        /// The client's address.
        remote_addr: SocketAddr,
        /// How it ended.
        kind: DisconnectKind,
        /// The MQTT 5 reason code, where there is one.
        reason_code: Option<ReasonCode>,
    },
    /// A message was accepted for dispatch (after the publish interceptor).
    MessageReceived {
        /// The publishing client; `None` for messages published by the process.
        client_id: Option<ByteString>,
        /// The message.
        message: Arc<Message>,
    },
    /// A subscriber acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) message.
    DeliveryAcknowledged {
        /// The subscriber.
        client_id: ByteString,
        /// The message.
        message: Arc<Message>,
    },
    /// A message was not delivered to one session.
    MessageDropped {
        /// The session's client identifier.
        client_id: ByteString,
        /// The message.
        message: Arc<Message>,
        /// Why.
        reason: DropReason,
    },
    /// A client subscribed.
    Subscribed {
        /// The client.
        client_id: ByteString,
        /// The filter.
        topic_filter: TopicFilter,
        /// The granted options.
        options: SubscriptionOptions,
    },
    /// A client unsubscribed.
    Unsubscribed {
        /// The client.
        client_id: ByteString,
        /// The filter.
        topic_filter: TopicFilter,
    },
    /// The retained message of a topic was set (`Some`) or deleted (`None`).
    RetainedMessageChanged {
        /// The topic.
        topic: TopicName,
        /// The new retained message.
        message: Option<Arc<Message>>,
    },
    /// A message matched no subscription.
    MessageNotConsumed {
        /// The publishing client; `None` for messages published by the process.
        client_id: Option<ByteString>,
        /// The message.
        message: Arc<Message>,
    },
    /// A session ended (clean disconnect of a non-persistent session, expiry, clean start, or deletion).
    SessionDeleted {
        /// The client identifier.
        client_id: ByteString,
    },
}

/// An asynchronous event handler.
pub(crate) type EventHandler = Arc<dyn Fn(Event) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;
