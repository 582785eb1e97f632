//! The raw MQTT client connection: one TCP stream, one read buffer, one write buffer.
//!
//! Set-up traffic (CONNECT, SUBSCRIBE, DISCONNECT) is encoded with `corvid_protocol::encode` as it is needed;
//! the hot paths (see [`crate::publisher`] and [`crate::subscriber`]) fill [`Client::wbuf`] with many packets and
//! write it with one [`Client::flush`], and decode everything one read brought with [`Client::next_packet`].
//!
//! # Transports
//! [`Transport`]: plain TCP, TLS (rustls, for the `tls-handshake` scenario) and MQTT over WebSocket (see
//! [`crate::ws`], for `ws-throughput`). Everything above the byte stream is the same for all three: a
//! [`Client::flush`] becomes one `write` on TCP, one TLS write, or one binary WebSocket frame holding every packet
//! of the batch.
//!
//! A plain-TCP client can be taken off the tokio runtime ([`Client::detach`]) for a thread that does its own
//! non-blocking I/O ([`Client::try_flush`], [`Client::try_read_more`]; see [`crate::pacer`]) and put back on it
//! afterwards ([`Client::attach`]).

use crate::ws::WsStream;
use anyhow::{Context, anyhow, bail, ensure};
use bytes::{Buf, BytesMut};
use corvid_protocol::{
    Connect, Disconnect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, decode, encode,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The largest packet the load generator accepts.
pub const MAX_PACKET_SIZE: u32 = 16 << 20;

/// How long set-up steps (connect, CONNACK, SUBACK) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Keep Alive of every connection, in seconds: longer than any bounded scenario, so no PINGREQ is needed (0, which
/// would turn it off, is refused by some brokers, e.g. rumqttd).
pub const KEEP_ALIVE: u16 = 900;

/// Filters per SUBSCRIBE packet when subscribing to many.
const FILTERS_PER_SUBSCRIBE: usize = 64;

/// How bytes reach the broker.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS over TCP (rustls).
    Tls(TlsClient),
    /// MQTT over WebSocket (subprotocol `mqtt`, binary frames) on this HTTP path, e.g. `/mqtt`.
    WebSocket {
        /// The HTTP path of the upgrade request.
        path: String,
    },
}

/// The client side of TLS: a rustls configuration (trusted roots, versions) and the name to verify.
#[derive(Clone)]
pub struct TlsClient {
    /// The connector (its rustls `ClientConfig`).
    pub connector: tokio_rustls::TlsConnector,
    /// The server name the certificate must be valid for.
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl TlsClient {
    /// A client trusting only `roots`, speaking only `version`, verifying `server_name`, without session
    /// resumption (every connection is a full handshake).
    pub fn new(
        roots: &[rustls::pki_types::CertificateDer<'static>],
        version: &'static rustls::SupportedProtocolVersion,
        server_name: &str,
    ) -> anyhow::Result<Self> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root.clone()).context("adding the test CA to the trusted roots")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .context("TLS protocol versions")?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| anyhow!("server name {server_name:?}: {e}"))?;
        Ok(Self { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The broker's address (loopback).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
}

impl Dial {
    /// Plain TCP to `addr`.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self { addr, transport: Transport::Tcp }
    }
}

/// The byte stream under a client.
#[derive(Debug)]
enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WsStream>),
    /// Plain TCP taken off the runtime: a non-blocking std stream, for [`Client::try_flush`] and
    /// [`Client::try_read_more`] from any thread.
    Detached(std::net::TcpStream),
}

/// The error of the waiting I/O methods on a detached client.
const DETACHED: &str = "connection is detached from the runtime (attach it first)";

/// Polls `future` once, without waiting: `None` if it is not ready (a non-blocking read on a stream that has no
/// `try_read`).
fn poll_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The protocol version to speak.
    pub version: ProtocolVersion,
    /// The client identifier.
    pub client_id: String,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval in seconds (ignored by 3.1.1, where `clean_start = false` keeps the session).
    pub session_expiry: u32,
    /// MQTT 5 Receive Maximum: how many QoS 1/2 messages the broker may have in flight to this client.
    pub receive_maximum: Option<u16>,
    /// Keep Alive in seconds (0 turns it off).
    pub keep_alive: u16,
}

impl ConnectOptions {
    /// Clean-session options for `client_id`, keep-alive [`KEEP_ALIVE`].
    pub fn new(version: ProtocolVersion, client_id: impl Into<String>) -> Self {
        Self {
            version,
            client_id: client_id.into(),
            clean_start: true,
            session_expiry: 0,
            receive_maximum: None,
            keep_alive: KEEP_ALIVE,
        }
    }
}

/// One MQTT connection.
#[derive(Debug)]
pub struct Client {
    io: Io,
    rbuf: BytesMut,
    /// The write buffer: append packets, then [`Client::flush`].
    pub wbuf: BytesMut,
    version: ProtocolVersion,
    session_present: bool,
    server_receive_maximum: Option<u16>,
    next_packet_id: u16,
}

impl Client {
    /// Connects over TCP, sends CONNECT and waits for a successful CONNACK.
    pub async fn connect(addr: SocketAddr, options: &ConnectOptions) -> anyhow::Result<Self> {
        Self::connect_via(&Dial::tcp(addr), options).await
    }

    /// Connects as `dial` says (TCP, TLS or WebSocket), sends CONNECT and waits for a successful CONNACK.
    pub async fn connect_via(dial: &Dial, options: &ConnectOptions) -> anyhow::Result<Self> {
        let addr = dial.addr;
        tokio::time::timeout(SETUP_TIMEOUT, Self::connect_inner(dial, options))
            .await
            .map_err(|_| anyhow!("connecting to {addr}: timed out"))?
    }

    async fn connect_inner(dial: &Dial, options: &ConnectOptions) -> anyhow::Result<Self> {
        let addr = dial.addr;
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let io = match &dial.transport {
            Transport::Tcp => Io::Tcp(stream),
            Transport::Tls(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                Io::Tls(Box::new(stream))
            }
            Transport::WebSocket { path } => Io::Ws(Box::new(WsStream::handshake(stream, addr, path).await?)),
        };
        let mut client = Self {
            io,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            version: options.version,
            session_present: false,
            server_receive_maximum: None,
            next_packet_id: 1,
        };
        let mut connect = Connect::new(options.version, options.client_id.as_str());
        connect.clean_start = options.clean_start;
        connect.keep_alive = options.keep_alive;
        if options.version.is_v5() {
            connect.properties.session_expiry_interval = (options.session_expiry > 0).then_some(options.session_expiry);
            connect.properties.receive_maximum = options.receive_maximum;
            connect.properties.maximum_packet_size = Some(MAX_PACKET_SIZE);
        }
        encode(&Packet::Connect(Box::new(connect)), options.version, &mut client.wbuf)?;
        client.flush().await?;
        match client.read_packet().await? {
            Packet::ConnAck(ack) => {
                ensure!(!ack.reason_code.is_error(), "CONNACK refused: {}", ack.reason_code.description());
                client.session_present = ack.session_present;
                client.server_receive_maximum = ack.properties.receive_maximum;
            }
            other => bail!("expected CONNACK, got {:?}", other.packet_type()),
        }
        Ok(client)
    }

    /// The protocol version this connection speaks.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The TLS version negotiated, on a TLS connection.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.io {
            Io::Tls(s) => s.get_ref().1.protocol_version(),
            _ => None,
        }
    }

    /// Whether the broker resumed a session (CONNACK session present).
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// The broker's Receive Maximum (MQTT 5), if it sent one.
    pub fn server_receive_maximum(&self) -> Option<u16> {
        self.server_receive_maximum
    }

    /// The next packet identifier for set-up packets (SUBSCRIBE).
    fn take_packet_id(&mut self) -> PacketId {
        let id = PacketId::new(self.next_packet_id).unwrap_or(PacketId::MIN);
        self.next_packet_id = id.next().get();
        id
    }

    /// Appends SUBSCRIBE packets for `filters` (at most 64 filters each) to the write buffer, without flushing;
    /// returns how many SUBACKs to expect.
    pub fn queue_subscribe(&mut self, filters: &[String], qos: QoS) -> anyhow::Result<usize> {
        let mut packets = 0;
        for chunk in filters.chunks(FILTERS_PER_SUBSCRIBE) {
            let filters = chunk
                .iter()
                .map(|f| {
                    TopicFilter::new(f.as_str())
                        .map(|f| (f, SubscriptionOptions::qos(qos)))
                        .map_err(|e| anyhow!("filter {f:?}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let subscribe =
                Subscribe { packet_id: self.take_packet_id(), filters, properties: SubscribeProperties::default() };
            encode(&Packet::Subscribe(subscribe), self.version, &mut self.wbuf)?;
            packets += 1;
        }
        Ok(packets)
    }

    /// Subscribes to `filters` at `qos` and waits for every SUBACK; fails if any filter is refused.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> anyhow::Result<()> {
        let mut pending = self.queue_subscribe(filters, qos)?;
        self.flush().await?;
        while pending > 0 {
            match self.read_packet().await? {
                Packet::SubAck(ack) => {
                    if let Some(code) = ack.reason_codes.iter().find(|c| c.is_error()) {
                        bail!("SUBSCRIBE refused: {}", code.description());
                    }
                    pending -= 1;
                }
                other => bail!("expected SUBACK, got {:?}", other.packet_type()),
            }
        }
        Ok(())
    }

    /// Writes the whole write buffer and clears it (on WebSocket: as one binary frame per 64 KiB).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.wbuf.is_empty() {
            match &mut self.io {
                Io::Tcp(s) => s.write_all(&self.wbuf).await.context("writing to broker")?,
                Io::Tls(s) => {
                    s.write_all(&self.wbuf).await.context("writing to broker")?;
                    s.flush().await.context("writing to broker")?;
                }
                Io::Ws(s) => s.write(&self.wbuf).await?,
                Io::Detached(_) => bail!(DETACHED),
            }
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads whatever has arrived (at most `limit` bytes if given) into the read buffer, waiting for at least one
    /// byte; fails when the broker closed the connection.
    pub async fn read_more(&mut self, limit: Option<usize>) -> anyhow::Result<usize> {
        self.rbuf.reserve(64 * 1024);
        let n = match (&mut self.io, limit) {
            (Io::Ws(s), limit) => return s.read(&mut self.rbuf, limit).await,
            (Io::Detached(_), _) => bail!(DETACHED),
            (Io::Tcp(s), None) => s.read_buf(&mut self.rbuf).await,
            (Io::Tcp(s), Some(limit)) => s.take(limit as u64).read_buf(&mut self.rbuf).await,
            (Io::Tls(s), None) => s.read_buf(&mut self.rbuf).await,
            (Io::Tls(s), Some(limit)) => (&mut **s).take(limit as u64).read_buf(&mut self.rbuf).await,
        }
        .context("reading from broker")?;
        if n == 0 {
            bail!("broker closed the connection");
        }
        Ok(n)
    }

    /// Reads whatever has already arrived without waiting (0 when nothing has); fails when the broker closed the
    /// connection.
    pub fn try_read_more(&mut self) -> anyhow::Result<usize> {
        self.rbuf.reserve(64 * 1024);
        let read = match &mut self.io {
            Io::Tcp(s) => s.try_read_buf(&mut self.rbuf),
            Io::Tls(s) => {
                poll_now(s.read_buf(&mut self.rbuf)).unwrap_or_else(|| Err(std::io::ErrorKind::WouldBlock.into()))
            }
            Io::Ws(s) => return s.try_read(&mut self.rbuf),
            Io::Detached(s) => {
                // Acknowledgements are small: a stack buffer spares zeroing the read buffer's spare capacity.
                let mut chunk = [0u8; 4096];
                let read = std::io::Read::read(&mut &*s, &mut chunk);
                if let Ok(n) = read {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                }
                read
            }
        };
        match read {
            Ok(0) => bail!("broker closed the connection"),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e).context("reading from broker"),
        }
    }

    /// Whether the connection is plain TCP on the runtime (and so can be [detached](Client::detach)).
    pub fn is_tcp(&self) -> bool {
        matches!(self.io, Io::Tcp(_))
    }

    /// Takes a plain-TCP connection off the tokio runtime: from now on it does non-blocking I/O from any thread
    /// ([`Client::try_flush`], [`Client::try_read_more`]) and the waiting methods fail until [`Client::attach`].
    /// Fails for TLS and WebSocket connections.
    pub fn detach(self) -> anyhow::Result<Self> {
        let io = match self.io {
            Io::Tcp(s) => Io::Detached(s.into_std().context("taking the connection off the runtime")?),
            Io::Detached(s) => Io::Detached(s),
            Io::Tls(_) | Io::Ws(_) => bail!("only plain TCP connections can be detached"),
        };
        Ok(Self { io, ..self })
    }

    /// Puts a [detached](Client::detach) connection back on the tokio runtime (must be called from within it);
    /// other connections are returned as they are.
    pub fn attach(self) -> anyhow::Result<Self> {
        let io = match self.io {
            Io::Detached(s) => Io::Tcp(TcpStream::from_std(s).context("putting the connection back on the runtime")?),
            io => io,
        };
        Ok(Self { io, ..self })
    }

    /// Writes as much of the write buffer as the socket takes now, without waiting, and removes it from the
    /// buffer; `true` when the buffer is empty. Detached connections only.
    pub fn try_flush(&mut self) -> anyhow::Result<bool> {
        let Io::Detached(s) = &self.io else {
            bail!("try_flush needs a detached connection");
        };
        while !self.wbuf.is_empty() {
            match std::io::Write::write(&mut &*s, &self.wbuf) {
                Ok(0) => bail!("writing to broker: connection closed"),
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("writing to broker"),
            }
        }
        self.wbuf.clear();
        Ok(true)
    }

    /// Decodes the next whole packet from the read buffer, `None` when more bytes are needed.
    #[inline]
    pub fn next_packet(&mut self) -> anyhow::Result<Option<Packet>> {
        decode(&mut self.rbuf, self.version, MAX_PACKET_SIZE).context("decoding from broker")
    }

    /// Waits for the next packet (set-up paths only: the hot paths decode batches with [`Client::next_packet`]).
    pub async fn read_packet(&mut self) -> anyhow::Result<Packet> {
        let read = async {
            loop {
                if let Some(packet) = self.next_packet()? {
                    return Ok(packet);
                }
                self.read_more(None).await?;
            }
        };
        tokio::time::timeout(SETUP_TIMEOUT, read)
            .await
            .map_err(|_| anyhow!("no packet from broker within {SETUP_TIMEOUT:?}"))?
    }

    /// Sends DISCONNECT (normal disconnection) and closes the connection; errors are ignored, the broker may
    /// already be gone.
    pub async fn disconnect(mut self) {
        if matches!(self.io, Io::Detached(_)) {
            match self.attach() {
                Ok(attached) => self = attached,
                Err(_) => return,
            }
        }
        let packet = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
        if encode(&packet, self.version, &mut self.wbuf).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
        }
        let close = async {
            match &mut self.io {
                Io::Tcp(s) => {
                    let _ = s.shutdown().await;
                }
                Io::Tls(s) => {
                    let _ = s.shutdown().await;
                }
                Io::Ws(s) => s.close().await,
                Io::Detached(s) => {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
    }
}
