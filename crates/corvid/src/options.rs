//! Server options and their builder.

use crate::events::{Event, EventHandler};
use crate::hooks::{
    AuthContext, ConnectContext, DeliveryContext, Hook, Hooks, PublishContext, RestoreContext, SubscriptionContext,
    UnsubscriptionContext,
};
use crate::store::RetainedStore;
use crate::store::persistent::{PersistentStore, SyncPolicy};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What a full per-session queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Drop the oldest queued message to make room (the default: fresh data wins).
    #[default]
    DropOldest,
    /// Drop the new message.
    DropNewest,
}

/// Limits of the broker core. The defaults suit a general-purpose broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest packet accepted from a client, fixed header included (advertised in CONNACK).
    pub max_packet_size: u32,
    /// Bound of each session's outbound queue (messages waiting to be sent, online or offline).
    pub max_pending_messages_per_client: usize,
    /// What a full outbound queue does.
    pub pending_overflow: OverflowPolicy,
    /// The most unacknowledged outbound QoS 1/2 messages per client (further bounded by the client's Receive
    /// Maximum), and the Receive Maximum advertised for inbound QoS 1/2.
    pub max_inflight: u16,
    /// How long a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// The largest keep-alive accepted; a client asking for more (or for 0) is told this value (MQTT 5 Server Keep
    /// Alive). 0 means no limit.
    pub max_keepalive: u16,
    /// How many topic aliases a client may use towards the broker (MQTT 5 Topic Alias Maximum).
    pub max_topic_alias: u16,
    /// The longest session expiry interval granted, in seconds.
    pub max_session_expiry_interval: u32,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// How long a plain-TCP connection must be idle (no byte either way, nothing queued, nothing in flight) before
    /// it is parked: its task and its registration with the runtime are released, leaving the socket watched by the
    /// server's parking lot and the connection's state in a small record, until the client sends something or a
    /// message, a kick, a takeover or the keep-alive check needs it. The client cannot tell. `None`: never park.
    /// The default, 10 s, parks devices that only ping, and not those that talk every few seconds: each park and
    /// resume costs a few system calls and a task, which a connection busy more often than that should not pay.
    pub park_idle_after: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            max_pending_messages_per_client: 10_000,
            pending_overflow: OverflowPolicy::DropOldest,
            max_inflight: 64,
            connect_timeout: Duration::from_secs(10),
            max_keepalive: 0,
            max_topic_alias: 64,
            max_session_expiry_interval: u32::MAX,
            retain_available: true,
            park_idle_after: Some(Duration::from_secs(10)),
        }
    }
}

/// A network endpoint the server listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// MQTT over plain TCP.
    Tcp(SocketAddr),
    /// MQTT over TLS (port 8883 by convention).
    #[cfg(feature = "tls")]
    Tls(SocketAddr, crate::transport::TlsOptions),
    /// MQTT over WebSocket (port 8083 and path `/mqtt` by convention).
    WebSocket(SocketAddr, crate::transport::WebSocketOptions),
    /// MQTT over WebSocket over TLS (port 8084 and path `/mqtt` by convention).
    #[cfg(feature = "tls")]
    WebSocketTls(SocketAddr, crate::transport::WebSocketOptions, crate::transport::TlsOptions),
}

/// Everything [`crate::Server::start`] needs. Build one with [`ServerOptions::builder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The endpoints to listen on; empty for an in-process broker with no network listener.
    pub endpoints: Vec<Endpoint>,
    /// The listen backlog of each TCP endpoint.
    pub backlog: u32,
    /// Limits of the core.
    pub limits: Limits,
    /// How often `$SYS/broker/...` topics are published; `None` turns them off.
    pub sys_interval: Option<Duration>,
    /// Whether clients that send no user name may connect.
    pub allow_anonymous: bool,
    /// How many events the event channel holds for a receiver that falls behind.
    pub event_capacity: usize,
    pub(crate) hooks: Hooks,
    pub(crate) event_handlers: Vec<EventHandler>,
    pub(crate) retained_store: Option<Arc<dyn RetainedStore>>,
    pub(crate) persistent_store: Option<Arc<dyn PersistentStore>>,
    /// When the durable store's writes are made durable, and what publishers wait for.
    pub sync_policy: SyncPolicy,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("endpoints", &self.endpoints)
            .field("backlog", &self.backlog)
            .field("limits", &self.limits)
            .field("sys_interval", &self.sys_interval)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("event_capacity", &self.event_capacity)
            .field("hooks", &self.hooks)
            .field("event_handlers", &self.event_handlers.len())
            .field("retained_store", &self.retained_store.is_some())
            .field("persistent_store", &self.persistent_store.is_some())
            .field("sync_policy", &self.sync_policy)
            .finish()
    }
}

impl Default for ServerOptions {
    /// TCP on port 1883 of every IPv4 address, as MQTTnet's default options do.
    fn default() -> Self {
        Self {
            endpoints: vec![Endpoint::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1883))],
            backlog: 1024,
            limits: Limits::default(),
            sys_interval: Some(Duration::from_secs(10)),
            allow_anonymous: true,
            event_capacity: 4096,
            hooks: Hooks::default(),
            event_handlers: Vec::new(),
            retained_store: None,
            persistent_store: None,
            sync_policy: SyncPolicy::default(),
        }
    }
}

impl ServerOptions {
    /// Keeps sessions and retained messages in a durable store (see
    /// [`ServerOptionsBuilder::with_persistent_store`]).
    pub fn set_persistent_store(&mut self, store: impl PersistentStore, policy: SyncPolicy) {
        self.persistent_store = Some(Arc::new(store));
        self.sync_policy = policy;
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ServerOptionsBuilder {
        ServerOptionsBuilder::default()
    }
}

/// Builds [`ServerOptions`].
///
/// ```
/// use corvid::ServerOptions;
/// let options = ServerOptions::builder().with_connection_backlog(100).with_default_endpoint_port(1884).build();
/// assert_eq!(options.backlog, 100);
/// ```
#[derive(Debug, Clone)]
pub struct ServerOptionsBuilder {
    default_endpoint: Option<SocketAddr>,
    extra: Vec<Endpoint>,
    options: ServerOptions,
}

impl Default for ServerOptionsBuilder {
    fn default() -> Self {
        Self {
            default_endpoint: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1883)),
            extra: Vec::new(),
            options: ServerOptions { endpoints: Vec::new(), ..ServerOptions::default() },
        }
    }
}

impl ServerOptionsBuilder {
    /// The port of the default TCP endpoint (1883 unless set).
    pub fn with_default_endpoint_port(mut self, port: u16) -> Self {
        let ip = self.default_endpoint.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        self.default_endpoint = Some(SocketAddr::new(ip, port));
        self
    }

    /// The address of the default TCP endpoint (every IPv4 address unless set).
    pub fn with_default_endpoint_bound_ip(mut self, ip: IpAddr) -> Self {
        let port = self.default_endpoint.map_or(1883, |a| a.port());
        self.default_endpoint = Some(SocketAddr::new(ip, port));
        self
    }

    /// Listens on the IPv6 loopback too, at the default endpoint's port.
    pub fn with_ipv6_loopback(mut self) -> Self {
        let port = self.default_endpoint.map_or(1883, |a| a.port());
        self.extra.push(Endpoint::Tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)));
        self
    }

    /// No default TCP endpoint (only those added with [`Self::with_endpoint`], or none for an in-process broker).
    pub fn without_default_endpoint(mut self) -> Self {
        self.default_endpoint = None;
        self
    }

    /// An additional endpoint.
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.extra.push(endpoint);
        self
    }

    /// The listen backlog of TCP endpoints.
    pub fn with_connection_backlog(mut self, backlog: u32) -> Self {
        self.options.backlog = backlog;
        self
    }

    /// All core limits at once.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// The largest packet accepted from a client.
    pub fn with_max_packet_size(mut self, bytes: u32) -> Self {
        self.options.limits.max_packet_size = bytes;
        self
    }

    /// The bound of each session's outbound queue and what a full queue does.
    pub fn with_max_pending_messages(mut self, per_client: usize, overflow: OverflowPolicy) -> Self {
        self.options.limits.max_pending_messages_per_client = per_client;
        self.options.limits.pending_overflow = overflow;
        self
    }

    /// The most unacknowledged outbound QoS 1/2 messages per client.
    pub fn with_max_inflight(mut self, max: u16) -> Self {
        self.options.limits.max_inflight = max.max(1);
        self
    }

    /// How long a new connection has to send CONNECT.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.limits.connect_timeout = timeout;
        self
    }

    /// How long a plain-TCP connection is idle before it is parked (see [`Limits::park_idle_after`]); `None`:
    /// never.
    pub fn with_park_idle_after(mut self, idle: Option<Duration>) -> Self {
        self.options.limits.park_idle_after = idle;
        self
    }

    /// How often `$SYS` topics are published; `None` turns them off.
    pub fn with_sys_interval(mut self, interval: Option<Duration>) -> Self {
        self.options.sys_interval = interval;
        self
    }

    /// Whether clients that send no user name may connect (default true).
    pub fn with_anonymous(mut self, allow: bool) -> Self {
        self.options.allow_anonymous = allow;
        self
    }

    /// Validates every connection: the closure sees the CONNECT and refuses it by setting a reason code.
    ///
    /// ```
    /// use corvid::{ConnectReturnCode, ServerOptions};
    /// let options = ServerOptions::builder()
    ///     .with_connection_validator(|c| {
    ///         if c.client_id.len() < 10 {
    ///             c.refuse(ConnectReturnCode::IdentifierRejected);
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn with_connection_validator(mut self, f: impl Fn(&mut ConnectContext) + Send + Sync + 'static) -> Self {
        self.options.hooks.connection_validator = Some(Hook::sync(f));
        self
    }

    /// An asynchronous connection validator (e.g. one that asks a database).
    pub fn with_async_connection_validator<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ConnectContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConnectContext> + Send + 'static,
    {
        self.options.hooks.connection_validator = Some(Hook::from_async(f));
        self
    }

    /// Intercepts every message before it is retained or dispatched: rewrite, refuse or drop it.
    ///
    /// ```
    /// use corvid::{PublishDecision, ReasonCode, ServerOptions};
    /// let options = ServerOptions::builder()
    ///     .with_publish_interceptor(|c| {
    ///         if c.client_id.as_deref() == Some("muted") {
    ///             c.decision = PublishDecision::Refuse(ReasonCode::NotAuthorized);
    ///         } else if c.message.topic.as_str() == "my/custom/topic" {
    ///             c.message.payload = "The server injected payload.".into();
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn with_publish_interceptor(mut self, f: impl Fn(&mut PublishContext) + Send + Sync + 'static) -> Self {
        self.options.hooks.publish_interceptor = Some(Hook::sync(f));
        self
    }

    /// An asynchronous publish interceptor.
    pub fn with_async_publish_interceptor<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(PublishContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PublishContext> + Send + 'static,
    {
        self.options.hooks.publish_interceptor = Some(Hook::from_async(f));
        self
    }

    /// Intercepts each filter of every SUBSCRIBE: accept (possibly with other options), refuse, or refuse and
    /// close the connection.
    ///
    /// ```
    /// use corvid::{ReasonCode, ServerOptions, SubscriptionDecision};
    /// let options = ServerOptions::builder()
    ///     .with_subscription_interceptor(|c| {
    ///         if c.topic_filter.starts_with("admin/") && &*c.client_id != "theAdmin" {
    ///             c.decision = SubscriptionDecision::Refuse(ReasonCode::NotAuthorized);
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn with_subscription_interceptor(
        mut self,
        f: impl Fn(&mut SubscriptionContext) + Send + Sync + 'static,
    ) -> Self {
        self.options.hooks.subscription_interceptor = Some(Hook::sync(f));
        self
    }

    /// An asynchronous subscription interceptor.
    pub fn with_async_subscription_interceptor<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SubscriptionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = SubscriptionContext> + Send + 'static,
    {
        self.options.hooks.subscription_interceptor = Some(Hook::from_async(f));
        self
    }

    /// Intercepts each filter of every UNSUBSCRIBE.
    pub fn with_unsubscription_interceptor(
        mut self,
        f: impl Fn(&mut UnsubscriptionContext) + Send + Sync + 'static,
    ) -> Self {
        self.options.hooks.unsubscription_interceptor = Some(Hook::sync(f));
        self
    }

    /// An asynchronous unsubscription interceptor.
    pub fn with_async_unsubscription_interceptor<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(UnsubscriptionContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = UnsubscriptionContext> + Send + 'static,
    {
        self.options.hooks.unsubscription_interceptor = Some(Hook::from_async(f));
        self
    }

    /// Decides, per receiving session, whether a matching message is delivered to it (the receive-side ACL).
    /// Called on the publishing path, so it must be quick and cannot wait.
    pub fn with_delivery_filter(mut self, f: impl Fn(&DeliveryContext<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.options.hooks.delivery_filter = Some(Arc::new(f));
        self
    }

    /// Called at start for each session restored from the persistent store, before any client connects: gives the
    /// session the items its connection validator would have given it (no validator has run for it), from the
    /// client identifier and the user name the store kept. A later connection of the session runs the validator
    /// as usual, and its items replace these.
    ///
    /// ```
    /// use corvid::ServerOptions;
    /// use corvid::store::StoredUsername;
    ///
    /// #[derive(Clone)]
    /// struct User(Option<String>);
    ///
    /// let options = ServerOptions::builder()
    ///     .with_connection_validator(|c| {
    ///         c.session_items.insert(User(c.username.as_deref().map(str::to_owned)));
    ///     })
    ///     .with_session_restorer(|r| match &r.username {
    ///         StoredUsername::Named(name) => {
    ///             r.session_items.insert(User(Some(name.to_string())));
    ///         }
    ///         StoredUsername::Anonymous => {
    ///             r.session_items.insert(User(None));
    ///         }
    ///         // Stored before user names were: the session waits for its client to connect again.
    ///         _ => {}
    ///     })
    ///     .build();
    /// ```
    pub fn with_session_restorer(mut self, f: impl Fn(&RestoreContext) + Send + Sync + 'static) -> Self {
        self.options.hooks.session_restorer = Some(Arc::new(f));
        self
    }

    /// Runs MQTT 5 enhanced authentication: for a client whose CONNECT names an Authentication Method, `f` is
    /// called at each step of the AUTH exchange and answers continue (with a challenge), success or failure. A
    /// client naming a method gets "bad authentication method" (0x8C) when no such hook is set.
    pub fn with_enhanced_authentication(mut self, f: impl Fn(&mut AuthContext) + Send + Sync + 'static) -> Self {
        self.options.hooks.enhanced_authentication = Some(Hook::sync(f));
        self
    }

    /// An asynchronous enhanced-authentication hook.
    pub fn with_async_enhanced_authentication<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(AuthContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AuthContext> + Send + 'static,
    {
        self.options.hooks.enhanced_authentication = Some(Hook::from_async(f));
        self
    }

    /// Runs `f` for every [`Event`], in a task of its own, in order. A handler that falls more than
    /// [`ServerOptions::event_capacity`] events behind skips the oldest.
    ///
    /// ```
    /// use corvid::{Event, ServerOptions};
    /// let options = ServerOptions::builder()
    ///     .with_event_handler(|event| async move {
    ///         if let Event::ClientConnected { client_id, remote_addr, .. } = event {
    ///             println!("{client_id} connected from {remote_addr}");
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn with_event_handler<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.options.event_handlers.push(Arc::new(move |e| Box::pin(f(e))));
        self
    }

    /// Keeps retained messages in `store`: loaded when the server starts, saved on every change.
    pub fn with_retained_store(mut self, store: impl RetainedStore) -> Self {
        self.options.retained_store = Some(Arc::new(store));
        self
    }

    /// Keeps sessions (subscriptions, queued and inflight QoS 1/2 messages) and retained messages in a durable
    /// store, so they survive restarts and crashes. Under `policy` [`SyncPolicy::Always`] or
    /// [`SyncPolicy::Batched`], a QoS 1/2 message for a persistent session is on disk before its publisher is
    /// acknowledged.
    pub fn with_persistent_store(mut self, store: impl PersistentStore, policy: SyncPolicy) -> Self {
        self.options.persistent_store = Some(Arc::new(store));
        self.options.sync_policy = policy;
        self
    }

    /// The options.
    pub fn build(mut self) -> ServerOptions {
        let mut endpoints: Vec<Endpoint> = self.default_endpoint.map(Endpoint::Tcp).into_iter().collect();
        endpoints.append(&mut self.extra);
        ServerOptions { endpoints, ..self.options }
    }
}
