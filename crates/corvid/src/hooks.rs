//! Interception points: connection validator, publish interceptor, subscription and unsubscription interceptors,
//! delivery filter, session restorer.
//!
//! Each hook receives a context it may change, and decides through the context's fields, as MQTTnet's interceptors
//! do. A hook is a plain closure (`Fn(&mut Ctx)`) or an async one (`Fn(Ctx) -> impl Future<Output = Ctx>`);
//! a hook left unset costs one branch, and a synchronous hook costs no allocation.

use crate::items::SessionItems;
use crate::message::Message;
use crate::store::StoredUsername;
use bytes::Bytes;
use corvid_protocol::{ByteString, ProtocolVersion, ReasonCode, SubscriptionOptions, TopicFilter, UserProperty, Will};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The delivery filter's function type.
pub(crate) type DeliveryFilter = dyn Fn(&DeliveryContext<'_>) -> bool + Send + Sync;

/// The session restorer's function type.
pub(crate) type SessionRestorer = dyn Fn(&RestoreContext) + Send + Sync;

type AsyncFn<C> = dyn Fn(C) -> Pin<Box<dyn Future<Output = C> + Send>> + Send + Sync;

/// A registered hook over context `C`: synchronous or asynchronous.
pub(crate) enum Hook<C> {
    Sync(Arc<dyn Fn(&mut C) + Send + Sync>),
    Async(Arc<AsyncFn<C>>),
}

impl<C> Clone for Hook<C> {
    fn clone(&self) -> Self {
        match self {
            Self::Sync(f) => Self::Sync(f.clone()),
            Self::Async(f) => Self::Async(f.clone()),
        }
    }
}

impl<C: Send + 'static> Hook<C> {
    pub(crate) fn sync(f: impl Fn(&mut C) + Send + Sync + 'static) -> Self {
        Self::Sync(Arc::new(f))
    }

    pub(crate) fn from_async<F, Fut>(f: F) -> Self
    where
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = C> + Send + 'static,
    {
        Self::Async(Arc::new(move |c| Box::pin(f(c))))
    }

    /// Runs the hook on `ctx`.
    pub(crate) async fn run(&self, mut ctx: C) -> C {
        match self {
            Self::Sync(f) => {
                f(&mut ctx);
                ctx
            }
            Self::Async(f) => f(ctx).await,
        }
    }
}

/// The hooks of a server.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) connection_validator: Option<Hook<ConnectContext>>,
    pub(crate) publish_interceptor: Option<Hook<PublishContext>>,
    pub(crate) subscription_interceptor: Option<Hook<SubscriptionContext>>,
    pub(crate) unsubscription_interceptor: Option<Hook<UnsubscriptionContext>>,
    pub(crate) delivery_filter: Option<Arc<DeliveryFilter>>,
    pub(crate) enhanced_authentication: Option<Hook<AuthContext>>,
    pub(crate) session_restorer: Option<Arc<SessionRestorer>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("connection_validator", &self.connection_validator.is_some())
            .field("publish_interceptor", &self.publish_interceptor.is_some())
            .field("subscription_interceptor", &self.subscription_interceptor.is_some())
            .field("unsubscription_interceptor", &self.unsubscription_interceptor.is_some())
            .field("delivery_filter", &self.delivery_filter.is_some())
            .field("enhanced_authentication", &self.enhanced_authentication.is_some())
            .field("session_restorer", &self.session_restorer.is_some())
            .finish()
    }
}

/// MQTT 3.1 / 3.1.1 CONNACK return codes, for validators written in that vocabulary. Each converts into the
/// [`ReasonCode`] with the same meaning, so one validator answers clients of every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectReturnCode {
    /// 0: accepted.
    Accepted,
    /// 1: unacceptable protocol version.
    UnacceptableProtocolVersion,
    /// 2: identifier rejected.
    IdentifierRejected,
    /// 3: server unavailable.
    ServerUnavailable,
    /// 4: bad user name or password.
    BadUserNameOrPassword,
    /// 5: not authorized.
    NotAuthorized,
}

impl From<ConnectReturnCode> for ReasonCode {
    fn from(code: ConnectReturnCode) -> Self {
        match code {
            ConnectReturnCode::Accepted => ReasonCode::Success,
            ConnectReturnCode::UnacceptableProtocolVersion => ReasonCode::UnsupportedProtocolVersion,
            ConnectReturnCode::IdentifierRejected => ReasonCode::ClientIdentifierNotValid,
            ConnectReturnCode::ServerUnavailable => ReasonCode::ServerUnavailable,
            ConnectReturnCode::BadUserNameOrPassword => ReasonCode::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized => ReasonCode::NotAuthorized,
        }
    }
}

/// What the connection validator sees of a CONNECT, and its answer.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnectContext {
    /// The client identifier (assigned by the broker if the client sent an empty one).
    pub client_id: ByteString,
    /// The user name.
    pub username: Option<ByteString>,
    /// The password.
    pub password: Option<Bytes>,
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The protocol version.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean_start: bool,
    /// The will message.
    pub will: Option<Will>,
    /// MQTT 5 user properties of CONNECT.
    pub user_properties: Vec<UserProperty>,
    /// The subject of the verified client certificate, on TLS endpoints that ask for one.
    pub client_certificate_subject: Option<String>,
    /// Items of the session this connection will have.
    pub session_items: SessionItems,
    /// The answer: [`ReasonCode::Success`] accepts; anything else refuses (mapped to a 3.x return code for 3.x
    /// clients; 0x80, unspecified error, for a code CONNACK cannot carry). A [`ConnectReturnCode`] converts with
    /// `.into()`.
    pub reason_code: ReasonCode,
    /// MQTT 5 reason string sent with a refusal.
    pub reason_string: Option<String>,
    /// MQTT 5 user properties for the CONNACK, whether it accepts or refuses.
    pub response_user_properties: Vec<UserProperty>,
    /// MQTT 5 Server Reference for the CONNACK: where the client should connect instead, with a refusal such as
    /// [`ReasonCode::UseAnotherServer`] or [`ReasonCode::ServerMoved`].
    pub server_reference: Option<String>,
    /// Whether the MQTT 5 client asked for Response Information (the basis of its response topics).
    pub request_response_information: bool,
    /// MQTT 5 Response Information for an accepting CONNACK; sent only if the client asked for it.
    pub response_information: Option<String>,
}

impl ConnectContext {
    /// Refuses the connection with `code` (a [`ReasonCode`] or a [`ConnectReturnCode`]).
    pub fn refuse(&mut self, code: impl Into<ReasonCode>) {
        self.reason_code = code.into();
    }
}

/// What the publish interceptor may do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PublishDecision {
    /// Retain and dispatch the (possibly rewritten) message.
    #[default]
    Accept,
    /// Do not dispatch it; an MQTT 5 publisher receives this reason code in PUBACK / PUBREC (0x80, unspecified
    /// error, for a code those cannot carry).
    Refuse(ReasonCode),
    /// Drop it silently (MQTTnet: setting the payload to null); the publisher is acknowledged as usual.
    Drop,
}

/// A message about to be retained and dispatched, with where it came from.
#[derive(Debug)]
#[non_exhaustive]
pub struct PublishContext {
    /// The publishing client; `None` for messages published by the process.
    pub client_id: Option<ByteString>,
    /// The message, which the interceptor may rewrite (topic, payload, QoS, retain, properties).
    pub message: Message,
    /// The publishing session's items (empty for messages from the process).
    pub session_items: SessionItems,
    /// The decision.
    pub decision: PublishDecision,
}

/// What the subscription interceptor may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SubscriptionDecision {
    /// Grant the subscription (with the possibly changed options).
    #[default]
    Accept,
    /// Refuse this filter: SUBACK (or UNSUBACK) failure (3.x 0x80, MQTT 5 this reason code, or 0x80 for a code
    /// that is not a failure the packet can carry).
    Refuse(ReasonCode),
    /// Refuse and close the connection (MQTT 5 clients receive SUBACK and DISCONNECT with this reason code, or
    /// 0x80 where the packet cannot carry it).
    RefuseAndDisconnect(ReasonCode),
}

/// One filter of a SUBSCRIBE.
#[derive(Debug)]
#[non_exhaustive]
pub struct SubscriptionContext {
    /// The subscribing client.
    pub client_id: ByteString,
    /// The filter.
    pub topic_filter: TopicFilter,
    /// The options; the interceptor may change them (e.g. lower the QoS).
    pub options: SubscriptionOptions,
    /// The session's items.
    pub session_items: SessionItems,
    /// The decision.
    pub decision: SubscriptionDecision,
}

/// One filter of an UNSUBSCRIBE.
#[derive(Debug)]
#[non_exhaustive]
pub struct UnsubscriptionContext {
    /// The client.
    pub client_id: ByteString,
    /// The filter.
    pub topic_filter: TopicFilter,
    /// The session's items.
    pub session_items: SessionItems,
    /// The decision (`Accept` unsubscribes; `Refuse` keeps the subscription and answers with the code).
    pub decision: SubscriptionDecision,
}

/// A message about to be queued for one receiving session (the receive-side ACL).
#[derive(Debug)]
#[non_exhaustive]
pub struct DeliveryContext<'a> {
    /// The receiving client.
    pub client_id: &'a ByteString,
    /// The receiving session's items.
    pub session_items: &'a SessionItems,
    /// The message.
    pub message: &'a Message,
}

/// A session the durable store held, restored when the server starts. No connection validator has run for it (its
/// client has not connected since), so its items are empty: the session restorer gives it the items a validator
/// would have given it, from what the store kept.
#[derive(Debug)]
#[non_exhaustive]
pub struct RestoreContext {
    /// The session's client identifier.
    pub client_id: ByteString,
    /// The user name its client last connected with; [`StoredUsername::Unknown`] if its record was written before
    /// user names were stored.
    pub username: StoredUsername,
    /// The session's items, empty until the restorer stores some.
    pub session_items: SessionItems,
}

/// What the enhanced-authentication hook answers at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthDecision {
    /// Send the client AUTH "continue authentication" with this data, and call the hook again with its answer.
    Continue(Option<Bytes>),
    /// Authenticated: CONNACK succeeds, carrying the method and this data (on re-authentication: AUTH "success").
    Success(Option<Bytes>),
    /// Refuse the connection with this reason code (CONNACK). On re-authentication the connection is closed with a
    /// DISCONNECT carrying it, or "not authorized" if it is a code DISCONNECT cannot carry (such as "bad user name
    /// or password").
    Fail(ReasonCode),
}

/// One step of an MQTT 5 enhanced authentication exchange (a client whose CONNECT names an Authentication Method),
/// or of a re-authentication: a connected client that authenticated with a method may authenticate again at any
/// time with the same method (MQTT 5.0 section 4.12.1), and keeps its connection and session while it does.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuthContext {
    /// The client identifier.
    pub client_id: ByteString,
    /// The Authentication Method the client chose (e.g. `SCRAM-SHA-256`).
    pub method: ByteString,
    /// The Authentication Data of this step: from CONNECT (or the re-authenticating AUTH) at step 0, then from each
    /// AUTH.
    pub data: Option<Bytes>,
    /// 0 for the CONNECT (or the AUTH that starts a re-authentication), then 1, 2, ... for each AUTH the client
    /// sent.
    pub step: u32,
    /// Whether this is a re-authentication of a connected client rather than the exchange before CONNACK.
    pub reauthentication: bool,
    /// Items of the session: on the first authentication, of the session this connection will have (the
    /// connection validator sees them next); on re-authentication, of the connected session.
    pub session_items: SessionItems,
    /// The answer; it starts as `Fail(NotAuthorized)`.
    pub decision: AuthDecision,
}
