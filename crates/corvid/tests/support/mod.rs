//! Helpers shared by the integration-test suites: an in-process server on 127.0.0.1, a raw MQTT client built on the
//! corvid codec (over TCP or any other byte stream), and thin wrappers around rumqttc event loops.
//!
//! A suite's helper module includes this file (`#[path = "../support/mod.rs"] mod support;`) and defines `WAIT`, the
//! longest any single wait of that suite may take; every wait here is bounded by it or by [`QUIET`].

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use corvid::protocol::{
    ConnAck, Connect, Disconnect, Packet, PacketId, PubResponse, Publish, QoS, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties, decode, encode,
};
use corvid::{ProtocolVersion, ReasonCode, Server, ServerOptions, ServerOptionsBuilder};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::WAIT;

/// How long a test listens to conclude that nothing more arrives.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// Options for a test server: one TCP endpoint on an ephemeral loopback port, no `$SYS` topics.
pub(crate) fn options() -> ServerOptionsBuilder {
    ServerOptions::builder()
        .without_default_endpoint()
        .with_endpoint(corvid::Endpoint::Tcp("127.0.0.1:0".parse().unwrap()))
        .with_sys_interval(None)
}

/// A running server and the address it listens on.
pub(crate) struct TestServer {
    pub(crate) server: Server,
    pub(crate) addr: SocketAddr,
}

impl TestServer {
    /// Starts a server with `builder`'s options.
    pub(crate) async fn start(builder: ServerOptionsBuilder) -> Self {
        let server = Server::start(builder.build()).await.expect("server starts");
        let addr = server.local_addrs()[0];
        Self { server, addr }
    }

    /// Starts a server with the default test options.
    pub(crate) async fn default() -> Self {
        Self::start(options()).await
    }

    /// Waits until no connection serves `client_id` any more (after it sent DISCONNECT or dropped its socket), so
    /// that a reconnect finds the session stored offline rather than taking over a connection still ending.
    pub(crate) async fn wait_offline(&self, client_id: &str) {
        // Asking a connection that is already ending to end changes nothing; it only tells whether one exists.
        eventually("client to go offline", || {
            !self.server.disconnect_client(client_id, ReasonCode::AdministrativeAction)
        })
        .await;
    }

    /// Waits until `pred` holds for the server's counters.
    pub(crate) async fn wait_stats(&self, what: &str, pred: impl Fn(&corvid::StatsSnapshot) -> bool) {
        eventually(what, || pred(&self.server.stats())).await;
    }
}

/// Starts a server with `builder`'s options; returns it and its address.
pub(crate) async fn start(builder: ServerOptionsBuilder) -> (Server, SocketAddr) {
    let TestServer { server, addr } = TestServer::start(builder).await;
    (server, addr)
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `pred` every 10 ms until it holds, for at most [`WAIT`].
pub(crate) async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    within(what, async {
        while !pred() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A topic name.
pub(crate) fn topic(name: &str) -> TopicName {
    TopicName::new(name.to_owned()).unwrap()
}

/// A topic filter.
pub(crate) fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f.to_owned()).unwrap()
}

/// A packet identifier.
pub(crate) fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// QoS from its number.
pub(crate) fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap()
}

/// A CONNECT with clean start and keep-alive 60 s.
pub(crate) fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(version, client_id.to_owned())
}

/// A PUBLISH with a packet identifier when the QoS needs one.
pub(crate) fn publish_packet(t: &str, payload: &[u8], q: QoS, id: u16) -> Publish {
    let mut p = Publish::new(topic(t), Bytes::copy_from_slice(payload), q);
    if q != QoS::AtMostOnce {
        p.packet_id = Some(pid(id));
    }
    p
}

/// The bytes of a packet.
pub(crate) fn packet_bytes(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("encodable packet");
    buf
}

/// A raw MQTT client: it sends and receives exactly the packets a test says. Over TCP unless made with
/// [`Raw::over`].
pub(crate) struct Raw<S = TcpStream> {
    pub(crate) stream: S,
    rbuf: BytesMut,
    pub(crate) version: ProtocolVersion,
    next_id: u16,
    /// PUBLISH packets that arrived while an acknowledgement was awaited; [`Raw::recv`] returns them first.
    stashed: VecDeque<Publish>,
}

impl Raw {
    /// A TCP connection to `addr`, without Nagle's delay.
    async fn tcp(addr: SocketAddr) -> TcpStream {
        let stream = within("TCP connect", TcpStream::connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Opens a TCP connection without sending anything.
    pub(crate) async fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        Self::over(Self::tcp(addr).await, version)
    }

    /// Connects with `connect` and returns the client and the CONNACK, whatever its reason code.
    pub(crate) async fn handshake(addr: SocketAddr, connect: Connect) -> (Self, ConnAck) {
        Self::handshake_over(Self::tcp(addr).await, connect).await
    }

    /// Connects with `connect` and asserts success.
    pub(crate) async fn connect_with(addr: SocketAddr, connect: Connect) -> (Self, ConnAck) {
        Self::connect_over(Self::tcp(addr).await, connect).await
    }

    /// Connects a clean MQTT 5 client.
    pub(crate) async fn v5(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect_with(addr, connect_packet(ProtocolVersion::V5, client_id)).await.0
    }

    /// Connects a clean MQTT 3.1.1 client.
    pub(crate) async fn v311(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect_with(addr, connect_packet(ProtocolVersion::V3_1_1, client_id)).await.0
    }

    /// Connects an MQTT 3.1.1 client with the given clean-session flag; returns it and session present.
    pub(crate) async fn v311_session(addr: SocketAddr, client_id: &str, clean: bool) -> (Self, bool) {
        let mut c = connect_packet(ProtocolVersion::V3_1_1, client_id);
        c.clean_start = clean;
        let (raw, ack) = Self::connect_with(addr, c).await;
        (raw, ack.session_present)
    }

    /// Connects an MQTT 5 client with clean start and session expiry; returns it and session present.
    pub(crate) async fn v5_session(
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
        expiry: Option<u32>,
    ) -> (Self, bool) {
        let mut c = connect_packet(ProtocolVersion::V5, client_id);
        c.clean_start = clean;
        c.properties.session_expiry_interval = expiry;
        let (raw, ack) = Self::connect_with(addr, c).await;
        (raw, ack.session_present)
    }

    /// Connects an MQTT 5 client with a session that outlives the connection by `expiry` seconds; returns it and
    /// session present.
    pub(crate) async fn v5_persistent(addr: SocketAddr, client_id: &str, clean: bool, expiry: u32) -> (Self, bool) {
        Self::v5_session(addr, client_id, clean, Some(expiry)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    /// A client over `stream`, an open connection of any transport (TLS, for one), without sending anything.
    pub(crate) fn over(stream: S, version: ProtocolVersion) -> Self {
        Self { stream, rbuf: BytesMut::with_capacity(4096), version, next_id: 1000, stashed: VecDeque::new() }
    }

    /// Connects with `connect` over `stream` and returns the client and the CONNACK, whatever its reason code.
    pub(crate) async fn handshake_over(stream: S, connect: Connect) -> (Self, ConnAck) {
        let mut raw = Self::over(stream, connect.protocol);
        match raw.try_handshake(connect).await {
            Some(ack) => (raw, ack),
            None => panic!("connection closed while waiting for CONNACK"),
        }
    }

    /// Connects with `connect` over `stream` and asserts success.
    pub(crate) async fn connect_over(stream: S, connect: Connect) -> (Self, ConnAck) {
        let (raw, ack) = Self::handshake_over(stream, connect).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK {ack:?}");
        (raw, ack)
    }

    /// Sends `connect`; the CONNACK, whatever its reason code, or `None` when the broker closes the connection
    /// instead.
    pub(crate) async fn try_handshake(&mut self, connect: Connect) -> Option<ConnAck> {
        self.send(&Packet::Connect(Box::new(connect))).await;
        match self.read_packet(WAIT).await {
            Ok(Some(Packet::ConnAck(ack))) => Some(ack),
            Ok(Some(other)) => panic!("expected CONNACK, got {other:?}"),
            Ok(None) => None,
            Err(()) => panic!("no packet within {WAIT:?}"),
        }
    }

    /// A fresh packet identifier for packets this client originates.
    pub(crate) fn next_packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        pid(self.next_id)
    }

    /// Encodes and writes a packet.
    pub(crate) async fn send(&mut self, packet: &Packet) {
        self.send_bytes(&packet_bytes(packet, self.version)).await;
    }

    /// Writes raw bytes (and flushes them, for transports that buffer).
    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        within("write", write).await.expect("write to broker");
    }

    /// The next packet, or `None` when the broker closed the connection. Fails the test after `timeout`.
    async fn read_packet(&mut self, timeout: Duration) -> Result<Option<Packet>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(p) = decode(&mut self.rbuf, self.version, u32::MAX).expect("broker sent a valid packet") {
                return Ok(Some(p));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet; fails if the connection closes or nothing comes within [`WAIT`].
    pub(crate) async fn recv(&mut self) -> Packet {
        if let Some(p) = self.stashed.pop_front() {
            return Packet::Publish(p);
        }
        self.recv_wire().await
    }

    /// The next packet that is not a PUBLISH; PUBLISH packets met on the way are kept for [`Raw::recv`].
    pub(crate) async fn recv_control(&mut self) -> Packet {
        loop {
            match self.recv_wire().await {
                Packet::Publish(p) => self.stashed.push_back(p),
                other => return other,
            }
        }
    }

    /// The next packet from the socket, ignoring the stash.
    async fn recv_wire(&mut self) -> Packet {
        match self.read_packet(WAIT).await {
            Ok(Some(p)) => p,
            Ok(None) => panic!("connection closed while waiting for a packet"),
            Err(()) => panic!("no packet within {WAIT:?}"),
        }
    }

    /// The next packet if one arrives within `timeout`; `None` on silence. Fails if the connection closes.
    pub(crate) async fn try_recv(&mut self, timeout: Duration) -> Option<Packet> {
        if let Some(p) = self.stashed.pop_front() {
            return Some(Packet::Publish(p));
        }
        match self.read_packet(timeout).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => panic!("connection closed"),
            Err(()) => None,
        }
    }

    /// Asserts that nothing arrives for [`QUIET`].
    pub(crate) async fn expect_silence(&mut self) {
        if let Some(p) = self.try_recv(QUIET).await {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Reads until the broker closes the connection (within `timeout`); returns what came before.
    pub(crate) async fn closed_within(&mut self, timeout: Duration) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got: Vec<Packet> = self.stashed.drain(..).map(Packet::Publish).collect();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_packet(left).await {
                Ok(Some(p)) => got.push(p),
                Ok(None) => return got,
                Err(()) => panic!("connection still open after {timeout:?}; received {got:?}"),
            }
        }
    }

    /// Reads until the broker closes the connection; returns what came before.
    pub(crate) async fn expect_closed(&mut self) -> Vec<Packet> {
        self.closed_within(WAIT).await
    }

    /// Asserts the broker sends DISCONNECT with `code` and closes.
    pub(crate) async fn expect_disconnect(&mut self, code: ReasonCode) {
        let got = self.expect_closed().await;
        let found = got.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason_code == code));
        assert!(found, "expected DISCONNECT {code:?} before close, got {got:?}");
    }

    /// The next packet, which must be a PUBLISH.
    pub(crate) async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, acknowledged as its QoS needs (QoS 2 completes the whole exchange).
    pub(crate) async fn recv_publish_ack(&mut self) -> Publish {
        let p = self.recv_publish().await;
        self.ack(&p).await;
        p
    }

    /// Acknowledges a received PUBLISH (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    pub(crate) async fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResponse::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubResponse::new(id))).await;
                match self.recv_control().await {
                    Packet::PubRel(r) if r.packet_id == id => {}
                    other => panic!("expected PUBREL {id:?}, got {other:?}"),
                }
                self.send(&Packet::PubComp(PubResponse::new(id))).await;
            }
            _ => {}
        }
    }

    /// Subscribes with the given options and properties; returns the SUBACK.
    pub(crate) async fn subscribe_with(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
        properties: SubscribeProperties,
    ) -> SubAck {
        let packet_id = self.next_packet_id();
        let sub = Subscribe { packet_id, filters: filters.iter().map(|(f, o)| (filter(f), *o)).collect(), properties };
        self.send(&Packet::Subscribe(sub)).await;
        match self.recv_control().await {
            Packet::SubAck(ack) if ack.packet_id == packet_id => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to several filters with the given options and no properties; returns the SUBACK.
    pub(crate) async fn subscribe_many(&mut self, filters: &[(&str, SubscriptionOptions)]) -> SubAck {
        self.subscribe_with(filters, SubscribeProperties::default()).await
    }

    /// Subscribes to one filter at `q`; returns the SUBACK's reason code, whatever it is.
    pub(crate) async fn subscribe_code(&mut self, f: &str, q: QoS) -> ReasonCode {
        let ack = self.subscribe_many(&[(f, SubscriptionOptions::qos(q))]).await;
        assert_eq!(ack.reason_codes.len(), 1, "SUBACK {ack:?}");
        ack.reason_codes[0]
    }

    /// Subscribes to one filter at `q`, asserting it is granted.
    pub(crate) async fn subscribe(&mut self, f: &str, q: QoS) {
        let code = self.subscribe_code(f, q).await;
        assert_eq!(code.as_u8(), q.as_u8(), "SUBACK reason code {code:?}");
    }

    /// Unsubscribes; returns the UNSUBACK.
    pub(crate) async fn unsubscribe(&mut self, filters: &[&str]) -> UnsubAck {
        let packet_id = self.next_packet_id();
        let unsub = Unsubscribe {
            packet_id,
            filters: filters.iter().map(|f| filter(f)).collect(),
            properties: UnsubscribeProperties::default(),
        };
        self.send(&Packet::Unsubscribe(unsub)).await;
        match self.recv_control().await {
            Packet::UnsubAck(ack) if ack.packet_id == packet_id => ack,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the acknowledgement flow of its QoS.
    pub(crate) async fn publish_full(&mut self, mut p: Publish) {
        let q = p.qos;
        if q != QoS::AtMostOnce && p.packet_id.is_none() {
            p.packet_id = Some(self.next_packet_id());
        }
        let id = p.packet_id;
        self.send(&Packet::Publish(p)).await;
        match (q, id) {
            (QoS::AtLeastOnce, Some(id)) => {
                self.recv_puback(id).await;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                match self.recv_control().await {
                    Packet::PubRec(r) if r.packet_id == id => {}
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send(&Packet::PubRel(PubResponse::new(id))).await;
                match self.recv_control().await {
                    Packet::PubComp(c) if c.packet_id == id => {}
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
            _ => {}
        }
    }

    /// Publishes `payload` to `t` at `q` and completes the flow.
    pub(crate) async fn publish(&mut self, t: &str, payload: &[u8], q: QoS) {
        self.publish_full(Publish::new(topic(t), Bytes::copy_from_slice(payload), q)).await;
    }

    /// Publishes at QoS 0.
    pub(crate) async fn publish0(&mut self, t: &str, payload: &[u8]) {
        self.publish(t, payload, QoS::AtMostOnce).await;
    }

    /// Publishes at QoS 1 and returns the PUBACK, whatever its reason code.
    pub(crate) async fn publish1(&mut self, t: &str, payload: &[u8], retain: bool) -> PubResponse {
        let mut p = Publish::new(topic(t), Bytes::copy_from_slice(payload), QoS::AtLeastOnce);
        p.retain = retain;
        let id = self.next_packet_id();
        p.packet_id = Some(id);
        self.send(&Packet::Publish(p)).await;
        self.recv_puback(id).await
    }

    /// The next packet that is not a PUBLISH, which must be the PUBACK for `id`.
    async fn recv_puback(&mut self, id: PacketId) -> PubResponse {
        match self.recv_control().await {
            Packet::PubAck(a) if a.packet_id == id => a,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// Sends PINGREQ and expects PINGRESP (a round trip: everything sent before has been handled).
    pub(crate) async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
        match self.recv_control().await {
            Packet::PingResp => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// Sends a normal DISCONNECT and waits for the broker to close the socket.
    pub(crate) async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success))).await;
        self.expect_closed().await;
    }

    /// Sends `d` and waits for the broker to close the socket.
    pub(crate) async fn disconnect_with(mut self, d: Disconnect) {
        self.send(&Packet::Disconnect(d)).await;
        self.expect_closed().await;
    }
}

/// Payloads of PUBLISH packets, as strings.
pub(crate) fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter().map(|p| String::from_utf8_lossy(&p.payload).into_owned()).collect()
}

/// A rumqttc MQTT 3.1.1 client whose event loop runs in a task: incoming packets, or the error that ended the
/// event loop, arrive on `incoming`.
pub(crate) struct V4Client {
    pub(crate) client: rumqttc::AsyncClient,
    pub(crate) incoming: mpsc::UnboundedReceiver<Result<rumqttc::Packet, rumqttc::ConnectionError>>,
    task: JoinHandle<()>,
}

impl Drop for V4Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl V4Client {
    /// Options for a clean session with a 30 s keep-alive.
    pub(crate) fn options(addr: SocketAddr, client_id: &str) -> rumqttc::MqttOptions {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// Starts the event loop; the first event is the CONNACK or the connection error.
    pub(crate) fn spawn(options: rumqttc::MqttOptions) -> Self {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        let (tx, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Self { client, incoming, task }
    }

    /// Connects and asserts the CONNACK is a success.
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect_with(Self::options(addr, client_id)).await
    }

    /// Connects with `options` and asserts the CONNACK is a success.
    pub(crate) async fn connect_with(options: rumqttc::MqttOptions) -> Self {
        let mut c = Self::spawn(options);
        match c.next().await {
            Ok(rumqttc::Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    /// Connects with `options` and returns the return code of a refusal (panics on success).
    pub(crate) async fn refused(options: rumqttc::MqttOptions) -> rumqttc::ConnectReturnCode {
        let mut c = Self::spawn(options);
        match c.next().await {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => code,
            other => panic!("expected a refused connection, got {other:?}"),
        }
    }

    /// The next incoming packet or the error that ended the event loop.
    pub(crate) async fn next(&mut self) -> Result<rumqttc::Packet, rumqttc::ConnectionError> {
        within("rumqttc packet", self.incoming.recv()).await.expect("rumqttc event loop ended")
    }

    /// Subscribes and returns the SUBACK's return codes.
    pub(crate) async fn subscribe(&mut self, f: &str, q: rumqttc::QoS) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(f, q).await.unwrap();
        loop {
            match self.next().await {
                Ok(rumqttc::Packet::SubAck(ack)) => return ack.return_codes,
                Ok(_) => {}
                Err(e) => panic!("connection ended waiting for SUBACK: {e}"),
            }
        }
    }

    /// The next PUBLISH, skipping acknowledgements and the like.
    pub(crate) async fn next_publish(&mut self) -> rumqttc::Publish {
        loop {
            match self.next().await {
                Ok(rumqttc::Packet::Publish(p)) => return p,
                Ok(_) => {}
                Err(e) => panic!("connection ended waiting for PUBLISH: {e}"),
            }
        }
    }

    /// Asserts no PUBLISH arrives for [`QUIET`].
    pub(crate) async fn expect_no_publish(&mut self) {
        let end = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(p)) = tokio::time::timeout_at(end, self.incoming.recv()).await {
            if let Ok(rumqttc::Packet::Publish(p)) = p {
                panic!("expected no PUBLISH, got {p:?}");
            }
        }
    }

    /// Waits until the event loop ends with an error (the broker closed the connection).
    pub(crate) async fn expect_closed(&mut self) {
        loop {
            if self.next().await.is_err() {
                return;
            }
        }
    }
}

/// A rumqttc MQTT 5 client whose event loop runs in a task; incoming packets arrive on `incoming`.
pub(crate) struct V5Client {
    pub(crate) client: rumqttc::v5::AsyncClient,
    pub(crate) incoming: mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
    pub(crate) connack: rumqttc::v5::mqttbytes::v5::ConnAck,
    /// The error that ended the event loop (a DISCONNECT from the broker ends it too).
    ended: Option<tokio::sync::oneshot::Receiver<rumqttc::v5::ConnectionError>>,
    task: JoinHandle<()>,
}

impl Drop for V5Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl V5Client {
    /// Connects with clean start and waits for CONNACK.
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str) -> Self {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        Self::connect_with(options).await
    }

    /// Connects with `options` and waits for CONNACK.
    pub(crate) async fn connect_with(options: rumqttc::v5::MqttOptions) -> Self {
        use rumqttc::v5::mqttbytes::v5::Packet as P;
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        let (tx, mut incoming) = mpsc::unbounded_channel();
        let (end_tx, ended) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = end_tx.send(e);
                        return;
                    }
                }
            }
        });
        let connack = match within("rumqttc CONNACK", incoming.recv()).await {
            Some(P::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        Self { client, incoming, connack, ended: Some(ended), task }
    }

    /// The next incoming packet.
    pub(crate) async fn next(&mut self) -> rumqttc::v5::mqttbytes::v5::Packet {
        within("rumqttc packet", self.incoming.recv()).await.expect("rumqttc event loop ended")
    }

    /// Waits for the event loop to end and returns why.
    pub(crate) async fn ended(&mut self) -> rumqttc::v5::ConnectionError {
        let rx = self.ended.take().expect("ended called once");
        within("rumqttc event loop to end", rx).await.expect("event loop task dropped")
    }

    /// The next PUBLISH, skipping acknowledgements and the like.
    pub(crate) async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        loop {
            if let rumqttc::v5::mqttbytes::v5::Packet::Publish(p) = self.next().await {
                return p;
            }
        }
    }

    /// Subscribes and waits for SUBACK.
    pub(crate) async fn subscribe(&mut self, f: &str, q: rumqttc::v5::mqttbytes::QoS) {
        self.client.subscribe(f, q).await.unwrap();
        loop {
            if let rumqttc::v5::mqttbytes::v5::Packet::SubAck(_) = self.next().await {
                return;
            }
        }
    }
}
