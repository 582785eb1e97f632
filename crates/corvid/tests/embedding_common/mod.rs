//! Helpers for the embedding API tests and the example tests: an in-process server on 127.0.0.1, a raw MQTT client
//! built on the corvid codec, rumqttc clients whose event loops run in tasks, and an event recorder. Every wait is
//! bounded.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use corvid::protocol::{
    ConnAck, Connect, Disconnect, Packet, PacketId, PubResponse, Publish, QoS, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties, decode, encode,
};
use corvid::{Event, ProtocolVersion, ReasonCode, Server, ServerOptions, ServerOptionsBuilder};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// The longest any single wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long a test listens to conclude that nothing more arrives.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

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

/// A free TCP port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Options for a test server: one TCP endpoint on an ephemeral loopback port, no `$SYS` topics.
pub(crate) fn options() -> ServerOptionsBuilder {
    ServerOptions::builder()
        .without_default_endpoint()
        .with_endpoint(corvid::Endpoint::Tcp("127.0.0.1:0".parse().unwrap()))
        .with_sys_interval(None)
}

/// Starts a server with `builder`'s options; returns it and its address.
pub(crate) async fn start(builder: ServerOptionsBuilder) -> (Server, SocketAddr) {
    let server = Server::start(builder.build()).await.expect("server starts");
    let addr = server.local_addrs()[0];
    (server, addr)
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

/// Records every event of a server from the moment it is created.
pub(crate) struct Recorder {
    rx: broadcast::Receiver<Event>,
    seen: Vec<Event>,
}

impl Recorder {
    /// Starts recording `server`'s events.
    pub(crate) fn new(server: &Server) -> Self {
        Self { rx: server.events(), seen: Vec::new() }
    }

    /// Waits for an event matching `pred` (looking at those already seen first) and returns it.
    pub(crate) async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        within(what, async {
            loop {
                match self.rx.recv().await {
                    Ok(e) => {
                        self.seen.push(e.clone());
                        if pred(&e) {
                            return e;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => panic!("recorder lagged by {n} events"),
                    Err(broadcast::error::RecvError::Closed) => panic!("event channel closed waiting for {what}"),
                }
            }
        })
        .await
    }

    /// Every event received so far (after draining what is ready).
    pub(crate) fn seen(&mut self) -> &[Event] {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }
}

/// A raw MQTT client: it sends and receives exactly the packets a test says.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    rbuf: BytesMut,
    pub(crate) version: ProtocolVersion,
    next_id: u16,
    /// PUBLISH packets that arrived while an acknowledgement was awaited; [`Raw::recv`] returns them first.
    stashed: VecDeque<Publish>,
}

impl Raw {
    /// Opens a TCP connection without sending anything.
    pub(crate) async fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = within("TCP connect", TcpStream::connect(addr)).await.expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        Self { stream, rbuf: BytesMut::with_capacity(4096), version, next_id: 1000, stashed: VecDeque::new() }
    }

    /// Connects with `connect` and returns the client and the CONNACK, whatever its reason code.
    pub(crate) async fn handshake(addr: SocketAddr, connect: Connect) -> (Self, ConnAck) {
        let mut raw = Self::open(addr, connect.protocol).await;
        raw.send(&Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with `connect` and asserts success.
    pub(crate) async fn connect_with(addr: SocketAddr, connect: Connect) -> (Self, ConnAck) {
        let (raw, ack) = Self::handshake(addr, connect).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK {ack:?}");
        (raw, ack)
    }

    /// Connects a clean MQTT 5 client.
    pub(crate) async fn v5(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect_with(addr, Connect::new(ProtocolVersion::V5, client_id.to_owned())).await.0
    }

    /// Connects a clean MQTT 3.1.1 client.
    pub(crate) async fn v311(addr: SocketAddr, client_id: &str) -> Self {
        Self::connect_with(addr, Connect::new(ProtocolVersion::V3_1_1, client_id.to_owned())).await.0
    }

    /// Connects an MQTT 5 client with a session that outlives the connection by `expiry` seconds; returns it and
    /// session present.
    pub(crate) async fn v5_persistent(addr: SocketAddr, client_id: &str, clean: bool, expiry: u32) -> (Self, bool) {
        let mut c = Connect::new(ProtocolVersion::V5, client_id.to_owned());
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(expiry);
        let (raw, ack) = Self::connect_with(addr, c).await;
        (raw, ack.session_present)
    }

    /// A fresh packet identifier.
    pub(crate) fn next_packet_id(&mut self) -> PacketId {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        pid(self.next_id)
    }

    /// Encodes and writes a packet.
    pub(crate) async fn send(&mut self, packet: &Packet) {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf).expect("encodable packet");
        within("write", self.stream.write_all(&buf)).await.expect("write to broker");
    }

    /// The next packet, `None` when the broker closed the connection, `Err` after `timeout`.
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

    /// Reads until the broker closes the connection; returns what came before.
    pub(crate) async fn expect_closed(&mut self) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut got: Vec<Packet> = self.stashed.drain(..).map(Packet::Publish).collect();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_packet(left).await {
                Ok(Some(p)) => got.push(p),
                Ok(None) => return got,
                Err(()) => panic!("connection still open after {WAIT:?}; received {got:?}"),
            }
        }
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

    /// The next PUBLISH, acknowledged if its QoS needs it (QoS 1 only).
    pub(crate) async fn recv_publish_ack(&mut self) -> Publish {
        let p = self.recv_publish().await;
        if let (QoS::AtLeastOnce, Some(id)) = (p.qos, p.packet_id) {
            self.send(&Packet::PubAck(PubResponse::new(id))).await;
        }
        p
    }

    /// Subscribes to several filters with the given options; returns the SUBACK.
    pub(crate) async fn subscribe_many(&mut self, filters: &[(&str, SubscriptionOptions)]) -> SubAck {
        let packet_id = self.next_packet_id();
        let properties = SubscribeProperties::default();
        let sub = Subscribe { packet_id, filters: filters.iter().map(|(f, o)| (filter(f), *o)).collect(), properties };
        self.send(&Packet::Subscribe(sub)).await;
        match self.recv_control().await {
            Packet::SubAck(ack) if ack.packet_id == packet_id => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at QoS `q`; returns the SUBACK's reason code.
    pub(crate) async fn subscribe(&mut self, f: &str, q: QoS) -> ReasonCode {
        let ack = self.subscribe_many(&[(f, SubscriptionOptions::qos(q))]).await;
        assert_eq!(ack.reason_codes.len(), 1, "SUBACK {ack:?}");
        ack.reason_codes[0]
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

    /// Publishes at QoS 0.
    pub(crate) async fn publish0(&mut self, t: &str, payload: &[u8]) {
        let p = Publish::new(topic(t), Bytes::copy_from_slice(payload), QoS::AtMostOnce);
        self.send(&Packet::Publish(p)).await;
    }

    /// Publishes `p` at QoS 1 and returns the PUBACK.
    pub(crate) async fn publish1(&mut self, t: &str, payload: &[u8], retain: bool) -> PubResponse {
        let mut p = Publish::new(topic(t), Bytes::copy_from_slice(payload), QoS::AtLeastOnce);
        p.retain = retain;
        let id = self.next_packet_id();
        p.packet_id = Some(id);
        self.send(&Packet::Publish(p)).await;
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
