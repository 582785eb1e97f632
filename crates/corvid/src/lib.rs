//! Corvid: an MQTT 3.1, 3.1.1 and 5.0 broker to embed in a Rust program, or to run as the `corvid` server.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use corvid::{Message, QoS, Server, ServerOptions, TopicName};
//!
//! let options = ServerOptions::builder().with_default_endpoint_port(1883).build();
//! let server = Server::start(options).await?;
//! server.publish(Message::new(TopicName::new("greetings").unwrap(), "hello", QoS::AtLeastOnce, true)).await;
//! server.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`options`]: [`ServerOptions`] and its builder, [`Limits`].
//! - [`hooks`]: connection validator, publish, subscription and unsubscription interceptors, delivery filter,
//!   session restorer.
//! - [`events`]: [`Event`]s for observers.
//! - `items`: [`SessionItems`], per-session data for hooks.
//! - [`store`]: [`RetainedStore`], pluggable storage of retained messages.
//! - `admin`: draining, listing clients and sessions, acting on them, retained messages.
//! - `server`: [`Server`]: listeners, accept loops, in-process publish, stop.
//! - [`transport`]: TLS and WebSocket endpoints, [`ServerHandle`], axum routes (feature `axum`).
//! - `connection`: the per-connection task: CONNECT, the packet handlers, the outbound queue drain.
//! - `broker`: shared state and the publish path (retained, match, queue).
//! - `subscriptions`: the subscription tree with shared groups.
//! - `retained`: the retained-message tree.
//! - `session`: session state and each session's bounded outbound queue.
//! - `registry`: client identifier to session, takeover.
//! - `message`: [`Message`], the application message.
//! - `stats`, `sys`: counters and `$SYS` topics.

mod admin;
mod broker;
mod connection;
pub mod events;
pub mod hooks;
mod items;
mod message;
pub mod options;
#[cfg(unix)]
mod parking;
#[cfg(not(unix))]
#[path = "parking_unsupported.rs"]
mod parking;
mod registry;
mod retained;
mod route;
mod server;
mod session;
mod stats;
pub mod store;
mod subscriptions;
mod sys;
pub mod transport;
mod wallclock;

pub use admin::{ClientInfo, SessionInfo};
pub use corvid_protocol as protocol;
pub use corvid_protocol::{ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
pub use events::{DisconnectKind, DropReason, Event};
pub use hooks::{
    AuthContext, AuthDecision, ConnectContext, ConnectReturnCode, DeliveryContext, PublishContext, PublishDecision,
    RestoreContext, SubscriptionContext, SubscriptionDecision, UnsubscriptionContext,
};
pub use items::SessionItems;
pub use message::Message;
pub use options::{Endpoint, Limits, OverflowPolicy, ServerOptions, ServerOptionsBuilder};
pub use server::Server;
pub use stats::{Stats, StatsSnapshot};
pub use store::{RetainedChange, RetainedStore, StoreError};
pub use transport::ServerHandle;
