//! The per-connection driver: one task per client, owning its session while connected.
//!
//! The task reads and decodes packets, handles them ([`inbound`]), drains the session's queue into its write
//! buffer ([`outbound`]) and writes many packets per system call. It runs over any byte stream, so TCP, TLS and
//! WebSocket share it.

mod auth;
mod connect;
mod inbound;
mod outbound;

use crate::broker::Broker;
use crate::events::{DisconnectKind, Event};
use crate::registry::{ConnControl, Released, Signal};
use crate::route::RouteCache;
use crate::session::{PendingWill, SessionState};
use crate::stats::add;
use crate::store::writer::Ticket;
use bytes::BytesMut;
use corvid_protocol::{
    ByteString, DecodeError, Disconnect, Packet, PacketType, ProtocolVersion, ReasonCode, TopicName, Will, encode,
};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Write buffer size beyond which the driver writes before encoding more.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// The read window of a new connection, and the most it grows to.
const MIN_READ_WINDOW: u32 = 256;
const MAX_READ_WINDOW: u32 = 64 * 1024;
/// Deliveries taken from the queue per batch.
const BATCH: usize = 256;
/// How long a publisher waits for a subscriber it outran to make progress before that subscriber counts as slow
/// (then its queue's overflow policy applies instead). A subscriber whose socket fills counts as slow at once; this
/// catches one that stops draining otherwise (e.g. stops acknowledging QoS 1), and is long enough that a loaded
/// machine's scheduling delays do not pass for it.
const CONGESTION_PATIENCE: Duration = Duration::from_millis(250);

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client sent DISCONNECT (normal).
    ClientDisconnect,
    /// The client sent DISCONNECT 0x04: publish the will.
    ClientDisconnectWithWill,
    /// The socket closed or failed without DISCONNECT.
    ConnectionLost,
    /// No packet within 1.5 times the keep-alive (the broker's keep-alive sweep asked the connection to end).
    KeepAliveTimeout,
    /// The client broke the protocol; DISCONNECT with this code was sent to MQTT 5 clients.
    ProtocolViolation(ReasonCode),
    /// Another connection took the session over.
    TakenOver,
    /// The process disconnected the client.
    Kicked(ReasonCode),
    /// The server is stopping.
    ServerShutdown,
}

impl CloseReason {
    fn publishes_will(self) -> bool {
        !matches!(self, Self::ClientDisconnect | Self::ServerShutdown)
    }

    fn kind(self) -> DisconnectKind {
        match self {
            Self::ClientDisconnect | Self::ClientDisconnectWithWill => DisconnectKind::Clean,
            Self::ConnectionLost | Self::KeepAliveTimeout | Self::ProtocolViolation(_) => DisconnectKind::Abnormal,
            Self::TakenOver => DisconnectKind::TakenOver,
            Self::Kicked(_) => DisconnectKind::Kicked,
            Self::ServerShutdown => DisconnectKind::ServerStopping,
        }
    }

    fn reason_code(self) -> Option<ReasonCode> {
        match self {
            Self::ClientDisconnect => Some(ReasonCode::Success),
            Self::ClientDisconnectWithWill => Some(ReasonCode::DisconnectWithWillMessage),
            Self::ConnectionLost => None,
            Self::KeepAliveTimeout => Some(ReasonCode::KeepAliveTimeout),
            Self::ProtocolViolation(code) | Self::Kicked(code) => Some(code),
            Self::TakenOver => Some(ReasonCode::SessionTakenOver),
            Self::ServerShutdown => Some(ReasonCode::ServerShuttingDown),
        }
    }
}

/// A connected client, after a successful CONNECT: its stream, buffers and caches, and the [`Rest`] (reached through
/// `Deref`), which is what outlives its task while it is parked.
pub(crate) struct Connection<S> {
    rest: Rest,
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Where the topics this client publishes to go, and whom it waits for; made on its first PUBLISH.
    route_cache: Option<Box<RouteCache>>,
    /// Responses waiting, in order, for the store to make the messages they acknowledge durable.
    pending_acks: PendingAcks,
}

impl<S> std::ops::Deref for Connection<S> {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}

impl<S> std::ops::DerefMut for Connection<S> {
    fn deref_mut(&mut self) -> &mut Rest {
        &mut self.rest
    }
}

/// The topic aliases of a connection (MQTT 5.0 section 3.3.2.3.4). The names are detached copies: an alias lives as
/// long as the connection and must not keep a read buffer alive.
#[derive(Default)]
pub(crate) struct TopicAliases {
    inbound: HashMap<u16, TopicName>,
    outbound: HashMap<TopicName, u16>,
}

/// What few connections use: topic aliases, and the authentication method of an MQTT 5 client that authenticated
/// with one (for re-authentication). Boxed and made on first use, in one allocation.
#[derive(Default)]
pub(crate) struct Extras {
    aliases: TopicAliases,
    auth: Option<auth::ReAuth>,
}

impl Extras {
    /// The extras of a client that authenticated with `method`.
    fn authenticated(method: ByteString) -> Self {
        Self { aliases: TopicAliases::default(), auth: Some(auth::ReAuth::new(method)) }
    }
}

/// A response to send once its ticket (if any) completes.
pub(crate) struct PendingAck {
    ticket: Option<Ticket>,
    packet: Packet,
}

/// The responses waiting for the store, in order. The queue is boxed and made on first use: only connections to a
/// broker with a durable store ever wait, and an empty queue inline would cost every connection's task 32 bytes.
#[derive(Default)]
#[allow(clippy::box_collection)] // the box is the point: 8 bytes inline instead of 32
pub(crate) struct PendingAcks(Option<Box<VecDeque<PendingAck>>>);

impl PendingAcks {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|acks| acks.is_empty())
    }

    fn push_back(&mut self, ack: PendingAck) {
        self.0.get_or_insert_default().push_back(ack);
    }

    fn front_mut(&mut self) -> Option<&mut PendingAck> {
        self.0.as_mut()?.front_mut()
    }

    fn pop_front(&mut self) -> Option<PendingAck> {
        self.0.as_mut()?.pop_front()
    }
}

/// Waits until the first pending response may go: `true` when its message is durable (or it waits for nothing),
/// `false` when the store failed.
async fn front_ready(acks: &mut PendingAcks) -> bool {
    match acks.front_mut() {
        Some(PendingAck { ticket: Some(ticket), .. }) => ticket.await.unwrap_or(false),
        _ => true,
    }
}

/// Reads what has arrived into `buf`, returning the byte count and the free space the read had.
///
/// The buffer keeps a read window: decoded packets hold slices of it, so without one it would grow by tiny steps,
/// with a small read and a copy each time. The window starts small and the caller doubles it whenever a read fills
/// it. On TCP, a buffer with nothing left in it is released and the read waits for the socket to be readable
/// before taking memory again, so an idle connection holds no read buffer at all.
fn read_some<'a, S>(
    stream: &'a mut S,
    buf: &'a mut BytesMut,
    window: usize,
) -> impl Future<Output = std::io::Result<(usize, usize)>> + 'a
where
    S: AsyncRead + Unpin + 'static,
{
    // A hand-written poll, not an `async fn`: it is part of every connection's task, and small this way.
    std::future::poll_fn(move |cx| {
        if buf.is_empty()
            && let Some(tcp) = (&mut *stream as &mut dyn std::any::Any).downcast_mut::<tokio::net::TcpStream>()
        {
            if buf.capacity() > 0 {
                *buf = BytesMut::new();
            }
            std::task::ready!(tcp.poll_read_ready(cx))?;
        }
        if buf.capacity() - buf.len() < window / 4 {
            buf.reserve(window);
        }
        let free = buf.capacity() - buf.len();
        let n = std::task::ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut *buf))?;
        std::task::Poll::Ready(Ok((n, free)))
    })
}

/// Serves one client connection from its first byte to its end.
///
/// A plain function returning the future, not an `async fn`: a wrapper future would keep a second copy of its
/// arguments in every connection's task.
pub(crate) fn serve<S>(broker: Arc<Broker>, stream: S, remote: SocketAddr) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_with_certificate(broker, stream, remote, None)
}

/// [`serve`] for a TLS connection whose client presented a verified certificate with this subject.
pub(crate) fn serve_with_certificate<S>(
    broker: Arc<Broker>,
    stream: S,
    remote: SocketAddr,
    client_certificate_subject: Option<String>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The handshake and the end run once: boxed, their state does not stay in every connection's future. The
    // arguments go straight into the boxed handshake: an `async fn` would keep them in its future, unused, for as
    // long as the connection lasts.
    let handshake = Box::pin(connect::handshake(broker, stream, remote, client_certificate_subject));
    async move {
        let Some(mut conn) = handshake.await else {
            return;
        };
        // Only plain TCP connections of the server's own endpoints are ever asked to park.
        let reason = conn.run().await.unwrap_or(CloseReason::ConnectionLost);
        Box::pin(conn.finish(reason)).await;
    }
}

/// [`serve`] for a connection accepted on a plain TCP endpoint: parked while it is idle (see [`crate::parking`]).
pub(crate) fn serve_tcp(broker: Arc<Broker>, stream: TcpStream, remote: SocketAddr) -> impl Future<Output = ()> + Send {
    drive_tcp(connect::handshake(broker, stream, remote, None))
}

/// Serves a parked connection again, in a new task on `runtime`.
pub(crate) fn resume(parked: ParkedConnection, runtime: &tokio::runtime::Handle) {
    let broker = parked.rest.broker.clone();
    // The socket joins the runtime's poller here, on the waking thread: the new task has nothing to set up.
    let _runtime = runtime.enter();
    match parked.reattach() {
        Ok(conn) => broker.tasks.spawn_on(drive_tcp(std::future::ready(Some(conn))), runtime),
        Err(rest) => broker.tasks.spawn_on(rest.lost(), runtime),
    };
}

/// Runs the TCP connection `start` yields until it ends or parks. `start` (the handshake, or a resumed connection)
/// is boxed and freed once done: its state does not stay in every connection's task.
fn drive_tcp(
    start: impl Future<Output = Option<Connection<TcpStream>>> + Send + 'static,
) -> impl Future<Output = ()> + Send {
    let start = Box::pin(start);
    async move {
        let Some(mut conn) = start.await else {
            return;
        };
        loop {
            if conn.broker.parking.is_some() {
                conn.control.parkable(conn.broker.millis());
            }
            let Some(reason) = conn.run().await else {
                // Asked to park, and idle.
                // The matches' values end before the awaits: kept across one, they would grow every task.
                let Detached { stream, rest } = conn.detach();
                let lost = match stream.into_std() {
                    Ok(stream) => match crate::parking::park(Detached { stream, rest }) {
                        // Parked: this task ends, another resumes the connection.
                        None => return,
                        // Something came while parking: go on.
                        Some(parked) => match parked.reattach() {
                            Ok(resumed) => {
                                conn = resumed;
                                continue;
                            }
                            Err(rest) => Box::pin(rest.lost()),
                        },
                    },
                    Err(_) => Box::pin(rest.lost()),
                };
                return lost.await;
            };
            return Box::pin(conn.finish(reason)).await;
        }
    }
}

/// `code` if a packet of type `packet` may carry it as a refusal, else "unspecified error": a code an application
/// chose never makes a packet the client cannot parse.
pub(super) fn refusal(code: ReasonCode, packet: PacketType) -> ReasonCode {
    let fallback = ReasonCode::UnspecifiedError;
    if code.is_error() { code.or_if_invalid_in(packet, fallback) } else { fallback }
}

/// A connection taken apart from its stream (see [`Connection::detach`]).
pub(crate) struct Detached<S> {
    pub(crate) stream: S,
    pub(crate) rest: Rest,
}

/// A parked connection: its socket, out of the runtime, and what its task kept besides buffers and caches.
pub(crate) type ParkedConnection = Detached<std::net::TcpStream>;

impl ParkedConnection {
    /// The connection with its socket back in the runtime (which must be entered), or what is left of it if the
    /// socket cannot go back.
    fn reattach(self) -> Result<Connection<TcpStream>, Rest> {
        match TcpStream::from_std(self.stream) {
            Ok(stream) => Ok(self.rest.over(stream)),
            Err(_) => Err(self.rest),
        }
    }
}

/// What of a [`Connection`] outlives its task while parked: everything but the stream, the (empty) buffers, the
/// route cache and the (empty) queue of responses waiting for the store.
pub(crate) struct Rest {
    pub(crate) broker: Arc<Broker>,
    pub(crate) control: Arc<ConnControl>,
    pub(crate) state: SessionState,
    generation: u64,
    /// Boxed: most clients have none, and this struct lives as long as the connection.
    will: Option<Box<Will>>,
    /// Topic aliases and the authentication method; boxed and made on first use, since most clients use neither.
    extras: Option<Box<Extras>>,
    /// What the client accepts: Receive Maximum (bounded by ours), Maximum Packet Size, Topic Alias Maximum.
    /// Small integer types, here and below: they pack together in every connection's task.
    client_max_packet_size: u32,
    send_quota: u16,
    client_topic_alias_max: u16,
    problem_information: bool,
    version: ProtocolVersion,
    /// How much free space the read buffer keeps (see `run`).
    read_window: u32,
}

impl Rest {
    /// Ends a connection whose socket was lost while it parked or resumed: its session and will as for any lost
    /// connection.
    fn lost(self) -> impl Future<Output = ()> + Send {
        self.over(Closed).finish(CloseReason::ConnectionLost)
    }

    /// The connection over `stream`, with fresh buffers.
    fn over<S>(mut self, stream: S) -> Connection<S> {
        self.read_window = MIN_READ_WINDOW;
        Connection {
            rest: self,
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            route_cache: None,
            pending_acks: PendingAcks::default(),
        }
    }
}

/// The stream of a connection whose socket was lost while it parked or resumed: reads see the end, writes fail.
struct Closed;

impl AsyncRead for Closed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Closed {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S> Connection<S> {
    /// Whether the connection holds nothing but its socket and its session's state: no partial packet, nothing
    /// unwritten, no response waiting for the store, no message in flight, no subscriber it waits for.
    fn is_idle(&self) -> bool {
        self.rbuf.is_empty()
            && self.wbuf.is_empty()
            && self.pending_acks.is_empty()
            && self.state.inflight.is_empty()
            && self.route_cache.as_ref().is_none_or(|r| r.congested.is_none())
    }

    /// Takes the connection apart, dropping its buffers and caches (see [`Self::is_idle`]).
    fn detach(mut self) -> Detached<S> {
        self.rest.state.inflight.release_if_empty();
        Detached { stream: self.stream, rest: self.rest }
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Serves the connection until it ends (`Some`), or until it is asked to park while idle (`None`).
    async fn run(&mut self) -> Option<CloseReason> {
        let broker = self.broker.clone();
        let shared = self.state.shared.clone();
        let control = self.control.clone();
        // Packets that arrived together with CONNECT.
        if let Err(reason) = self.handle_input().await {
            return Some(reason);
        }
        loop {
            while self.drain_queue() {
                if let Err(reason) = self.flush_or_end().await {
                    return Some(reason);
                }
            }
            if let Err(reason) = self.flush_or_end().await {
                return Some(reason);
            }
            if let Some(congested) = self.route_cache.as_mut().and_then(|r| r.congested.take()) {
                // Backpressure: the client's next messages stay in its socket, and its TCP window fills, until the
                // subscriber it outran catches up. Boxed, owning what it waits on: rare, and kept out of every
                // connection's task. Then the packets left in the read buffer go first.
                let waiting = control.clone();
                let ended = Box::pin(async move {
                    tokio::select! {
                        biased;
                        () = waiting.ended() => true,
                        () = congested.wait_for_room(CONGESTION_PATIENCE) => false,
                    }
                })
                .await;
                if ended {
                    return Some(control.end_reason());
                }
                if let Err(reason) = self.handle_input().await {
                    return Some(reason);
                }
                continue;
            }
            let room = self.state.inflight.len() < usize::from(self.send_quota);
            tokio::select! {
                biased;
                signal = control.signalled() => match signal {
                    Signal::End => return Some(control.end_reason()),
                    Signal::Park if self.is_idle() => return None,
                    // Busy after all: asked again after another idle period.
                    Signal::Park => control.parkable(broker.millis()),
                },
                read = read_some(&mut self.stream, &mut self.rbuf, self.rest.read_window as usize) => {
                    match read {
                        Ok((0, _)) | Err(_) => return Some(CloseReason::ConnectionLost),
                        Ok((n, window)) => {
                            if n >= window && self.read_window < MAX_READ_WINDOW {
                                self.read_window *= 2;
                            }
                            add(&broker.stats.bytes_received, n as u64);
                            add(&control.info.bytes_received, n as u64);
                            control.active(broker.millis());
                            if let Err(reason) = self.handle_input().await {
                                return Some(reason);
                            }
                        }
                    }
                }
                () = shared.queued_wait(), if room => {}
                durable = front_ready(&mut self.pending_acks), if !self.pending_acks.is_empty() => {
                    if let Err(reason) = self.release_acks(durable) {
                        return Some(reason);
                    }
                }
            }
        }
    }

    /// The client identifier: the session's, not a second copy in every connection's task.
    fn client_id(&self) -> &ByteString {
        &self.state.shared.client_id
    }

    /// The client's address, kept in the control block for the process's listings.
    fn remote(&self) -> SocketAddr {
        self.control.info.remote
    }

    /// Decodes and handles every whole packet in the read buffer.
    async fn handle_input(&mut self) -> Result<(), CloseReason> {
        loop {
            // Only the boxed future lives across the await: a `Packet` held there would grow every connection's
            // task by its size, twice over.
            let hooked = {
                let Some(packet) = self.handle_packets()? else {
                    return Ok(());
                };
                Box::pin(self.handle_hooked_packet(packet))
            };
            hooked.await?;
            if self.route_cache.as_ref().is_some_and(|r| r.congested.is_some()) {
                // The client outran a subscriber: the rest of the buffer waits (see `run`).
                return Ok(());
            }
        }
    }

    /// Decodes and handles whole packets until the buffer has none left (`None`) or one needs the async hooks
    /// (PUBLISH with hooks or a durable store, SUBSCRIBE, UNSUBSCRIBE), which it returns.
    ///
    /// Messages published on the direct path are queued for their subscribers before it returns, whatever the
    /// outcome: in one batch per call (see [`crate::route`]), and ahead of the returned packet's.
    fn handle_packets(&mut self) -> Result<Option<Packet>, CloseReason> {
        let result = self.handle_packets_batched();
        let congested = self.broker.flush_routes(Some(self.state.shared.id));
        self.wait_for(congested);
        result
    }

    fn handle_packets_batched(&mut self) -> Result<Option<Packet>, CloseReason> {
        loop {
            let max = self.broker.options.limits.max_packet_size;
            match corvid_protocol::decode(&mut self.rbuf, self.rest.version, max) {
                Ok(Some(packet)) => {
                    add(&self.broker.stats.messages_received, 1);
                    add(&self.control.info.messages_received, 1);
                    match packet {
                        Packet::Publish(publish) if self.publish_is_direct() => {
                            if self.on_publish_direct(publish)? {
                                // The rest of the buffer waits until the subscriber it outran catches up.
                                return Ok(None);
                            }
                        }
                        packet @ (Packet::Publish(_)
                        | Packet::Subscribe(_)
                        | Packet::Unsubscribe(_)
                        | Packet::Auth(_)) => {
                            return Ok(Some(packet));
                        }
                        packet => self.handle_control_packet(packet)?,
                    }
                }
                Ok(None) => return Ok(None),
                Err(error) => return Err(self.malformed(&error)),
            }
        }
    }

    fn malformed(&mut self, error: &DecodeError) -> CloseReason {
        tracing::debug!(client_id = %self.client_id(), remote = %self.remote(), %error, "malformed packet");
        let code = error.reason_code();
        self.send_disconnect(code, Some(error.to_string()));
        CloseReason::ProtocolViolation(code)
    }

    /// Queues a DISCONNECT for MQTT 5 clients (3.x has no server DISCONNECT).
    fn send_disconnect(&mut self, code: ReasonCode, reason: Option<String>) {
        if self.version.is_v5() {
            // A code only CONNACK or an acknowledgement may carry (an application's choice) is unspecified here.
            let code = code.or_if_invalid_in(PacketType::Disconnect, ReasonCode::UnspecifiedError);
            let mut d = Disconnect::new(code);
            if self.problem_information {
                d.properties.reason_string = reason.map(ByteString::from);
            }
            self.send(&Packet::Disconnect(d));
        }
    }

    /// Sends a response to the client once `ticket` completes, keeping responses in the order of the packets
    /// they answer.
    pub(super) fn acknowledge(&mut self, ticket: Option<Ticket>, packet: Packet) {
        if ticket.is_none() && self.pending_acks.is_empty() {
            self.send(&packet);
        } else {
            self.pending_acks.push_back(PendingAck { ticket, packet });
        }
    }

    /// Sends the first pending response (whose ticket completed with `durable`) and every following one that is
    /// ready too. A response whose message the store failed to keep is an error to MQTT 5 clients; a 3.x client,
    /// which has no way to hear it, is disconnected so that it publishes again.
    fn release_acks(&mut self, durable: bool) -> Result<(), CloseReason> {
        // The front one's ticket was awaited already: `durable` is its result.
        let mut ready = Some(durable);
        loop {
            let durable = match ready.take() {
                Some(durable) => durable,
                None => match self.pending_acks.front_mut().map(|f| f.ticket.as_mut()) {
                    None => return Ok(()),
                    Some(None) => true,
                    Some(Some(ticket)) => match ticket.try_recv() {
                        Ok(ok) => ok,
                        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => false,
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return Ok(()),
                    },
                },
            };
            let Some(PendingAck { mut packet, .. }) = self.pending_acks.pop_front() else { return Ok(()) };
            if !durable {
                if !self.version.is_v5() {
                    return Err(CloseReason::ProtocolViolation(ReasonCode::UnspecifiedError));
                }
                if let Packet::PubAck(r) | Packet::PubRec(r) = &mut packet {
                    r.reason_code = ReasonCode::UnspecifiedError;
                }
            }
            self.send(&packet);
        }
    }

    /// Encodes a packet into the write buffer.
    fn send(&mut self, packet: &Packet) {
        if encode(packet, self.version, &mut self.wbuf).is_ok() {
            add(&self.broker.stats.messages_sent, 1);
            add(&self.control.info.messages_sent, 1);
        }
    }

    /// Writes the buffer like [`Self::flush`], but gives up when the connection is asked to end (takeover, kick,
    /// shutdown, or the keep-alive sweep once the client has neither sent a packet nor taken a byte for 1.5 times
    /// the keep-alive), so a client that stopped reading cannot pin its connection. Unwritten bytes stay in the
    /// buffer.
    async fn flush_or_end(&mut self) -> Result<(), CloseReason> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        // The socket nearly always takes everything at once; waiting is the boxed slow path and stays out of every
        // connection's task.
        if self.write_now().await? {
            self.wbuf = BytesMut::new();
            self.state.shared.mark_keeping_up();
            return Ok(());
        }
        // The client does not take what it is sent as fast: publishers stop waiting for it.
        self.state.shared.mark_slow();
        Box::pin(self.flush_or_end_waiting()).await
    }

    /// Writes and flushes what the stream takes without waiting: `true` when nothing is left.
    async fn write_now(&mut self) -> Result<bool, CloseReason> {
        use std::task::Poll;
        let stream = &mut self.stream;
        let wbuf = &mut self.wbuf;
        let (done, written) = std::future::poll_fn(|cx| {
            let mut written = 0;
            while !wbuf.is_empty() {
                match tokio_util::io::poll_write_buf(Pin::new(&mut *stream), cx, &mut *wbuf) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Ready(Ok((false, written))),
                }
            }
            // A no-op on TCP; TLS and WebSocket streams buffer.
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok((true, written))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Ready(Ok((false, written))),
            }
        })
        .await
        .map_err(|_: std::io::Error| CloseReason::ConnectionLost)?;
        if written > 0 {
            // The coarse clock: parking only needs to know that the connection was busy in the last seconds.
            self.control.sent(self.broker.coarse_millis());
        }
        add(&self.broker.stats.bytes_sent, written as u64);
        add(&self.control.info.bytes_sent, written as u64);
        Ok(done)
    }

    async fn flush_or_end_waiting(&mut self) -> Result<(), CloseReason> {
        let control = self.control.clone();
        let broker = self.broker.clone();
        let mut flushed = false;
        while !flushed {
            let writing = !self.wbuf.is_empty();
            let stream = &mut self.stream;
            let wbuf = &mut self.wbuf;
            let io = async move {
                if writing {
                    stream.write_buf(wbuf).await.and_then(|n| match n {
                        0 => Err(std::io::ErrorKind::WriteZero.into()),
                        n => Ok(n),
                    })
                } else {
                    // A no-op on TCP; TLS and WebSocket streams buffer.
                    stream.flush().await.map(|()| 0)
                }
            };
            let written = tokio::select! {
                biased;
                () = control.ended() => Err(control.end_reason()),
                result = io => result.map_err(|_| CloseReason::ConnectionLost),
            }?;
            if writing {
                add(&broker.stats.bytes_sent, written as u64);
                add(&control.info.bytes_sent, written as u64);
                // Taking bytes counts as activity for the keep-alive sweep while the broker, busy writing, reads
                // nothing: a client that reads a long backlog slowly is not cut off.
                control.active(broker.millis());
            } else {
                flushed = true;
            }
        }
        // Released, not kept: a connection that goes quiet after a burst keeps no large buffer.
        self.wbuf = BytesMut::new();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let n = self.wbuf.len();
        let mut result = self.stream.write_all(&self.wbuf).await;
        if result.is_ok() {
            // A no-op on TCP; TLS and WebSocket streams buffer.
            result = self.stream.flush().await;
        }
        // Released, not cleared: a connection that goes quiet after a burst keeps no large buffer.
        self.wbuf = BytesMut::new();
        result.map_err(|_| CloseReason::ConnectionLost)?;
        add(&self.broker.stats.bytes_sent, n as u64);
        add(&self.control.info.bytes_sent, n as u64);
        Ok(())
    }

    /// Ends the connection: tells the client why, publishes or schedules the will, and stores or ends the session.
    async fn finish(mut self, reason: CloseReason) {
        match reason {
            CloseReason::TakenOver => self.send_disconnect(ReasonCode::SessionTakenOver, None),
            CloseReason::Kicked(code) => self.send_disconnect(code, None),
            CloseReason::ServerShutdown => self.send_disconnect(ReasonCode::ServerShuttingDown, None),
            CloseReason::KeepAliveTimeout => self.send_disconnect(ReasonCode::KeepAliveTimeout, None),
            _ => {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;

        let broker = self.broker.clone();
        broker.stats.client_disconnected();
        self.state.shared.set_online(false);
        let will = self.will.take().filter(|_| reason.publishes_will()).map(|w| *w);
        let expiry = self.state.shared.expiry_interval();
        let now = Instant::now();
        let mut immediate_will = None;
        let pending_will = will.and_then(|will| {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 || expiry == 0 {
                immediate_will = Some(will);
                None
            } else {
                let due = now + Duration::from_secs(u64::from(delay.min(expiry)));
                Some(PendingWill { will, publisher: self.client_id().clone(), items: self.state.shared.items(), due })
            }
        });
        let deleted = self.control.delete_session.load(std::sync::atomic::Ordering::Relaxed);
        let persist = (expiry > 0 && !deleted).then(|| {
            let expires_at = (expiry != u32::MAX).then(|| now + Duration::from_secs(u64::from(expiry)));
            (expires_at, pending_will)
        });
        tracing::info!(client_id = %self.client_id(), remote = %self.remote(), reason = ?reason, "client disconnected");
        broker.emit(|| Event::ClientDisconnected {
            client_id: self.client_id().clone(),
            remote_addr: self.remote(),
            kind: reason.kind(),
            reason_code: reason.reason_code(),
        });
        let items = self.state.shared.items();
        if persist.is_some() {
            broker.persist_session(&self.state.shared, Some(std::time::SystemTime::now()));
        }
        // An offline session keeps no empty in-flight queue's memory.
        self.state.inflight.release_if_empty();
        let placeholder = SessionState::new(self.state.shared.clone());
        let state = std::mem::replace(&mut self.state, placeholder);
        match broker.registry.release(self.client_id(), self.generation, &self.control, state, persist) {
            Released::Kept => {}
            Released::Ended(state) => broker.end_session(state),
        }
        if let Some(will) = immediate_will {
            broker.publish_will(will, self.client_id().clone(), &items).await;
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every connection holds one of these futures while it is connected: keep it small (idle memory).
    #[test]
    fn connection_future_stays_small() {
        let broker = std::sync::Arc::new(crate::broker::Broker::new(crate::ServerOptions::default(), None, None));
        let (stream, _peer) = tokio::io::duplex(64);
        let future = super::serve(broker, stream, "127.0.0.1:1".parse().unwrap());
        let size = std::mem::size_of_val(&future);
        // 384 bytes with this stream; 400 with a TCP stream in a release build, for which tokio's task cell (header,
        // future, trailer, in 128-byte steps) is 512 bytes, and would be 640 past 400. Every byte here is paid by
        // every idle connection.
        assert!(size <= 384, "the connection future is {size} bytes");
    }

    /// The same for plain TCP, whose future also parks and resumes.
    #[tokio::test]
    async fn tcp_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let broker = std::sync::Arc::new(crate::broker::Broker::new(crate::ServerOptions::default(), None, None));
        let future = super::serve_tcp(broker, stream, "127.0.0.1:1".parse().unwrap());
        let size = std::mem::size_of_val(&future);
        // 376 bytes in a release build, 384 in a test build; past 400 the task cell grows from 512 to 640 bytes.
        assert!(size <= 384, "the TCP connection future is {size} bytes");
    }
}
