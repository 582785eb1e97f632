//! Crash tests: the `corvid` binary is killed with SIGKILL while publishers stream QoS 1 / QoS 2 messages to an
//! offline persistent subscriber; after a restart on the same data directory, every message whose PUBACK / PUBREC
//! the publisher received is delivered, in order (QoS 2: exactly once), and retained messages are back.

use bytes::BytesMut;
use corvid_protocol::{
    Connect, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName, decode, encode,
};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(data: &Path, port: u16, sync: &str) -> Self {
        let config = data.with_extension("toml");
        std::fs::write(
            &config,
            format!(
                "allow_anonymous = true\nsys_interval = 0\n[[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:{port}\"\n\
                 [storage]\nsync = \"{sync}\"\n"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_corvid"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .arg("--log-level")
            .arg("warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start corvid");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        std::mem::forget(self);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corvid-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    fn connect(port: u16, client_id: &str, clean: bool) -> (Self, bool) {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Self { stream, buf: BytesMut::new() };
        let mut connect = Connect::new(V, client_id);
        connect.clean_start = clean;
        c.send(&Packet::Connect(Box::new(connect)));
        match c.recv(Duration::from_secs(5)) {
            Some(Packet::ConnAck(ack)) => (c, ack.session_present),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, V, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet, or `None` when none comes within `wait` or the connection ends.
    fn recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.buf, V, u32::MAX).unwrap() {
                return Some(p);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    fn subscribe(&mut self, filter: &str, qos: QoS) {
        let sub = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![(TopicFilter::new(filter).unwrap(), SubscriptionOptions::qos(qos))],
            properties: Default::default(),
        };
        self.send(&Packet::Subscribe(sub));
        assert!(matches!(self.recv(Duration::from_secs(5)), Some(Packet::SubAck(_))));
    }
}

fn publish(seq: u32, qos: QoS, topic: &str) -> Packet {
    let mut p = Publish::new(TopicName::new(topic).unwrap(), seq.to_be_bytes().to_vec(), qos);
    p.packet_id = PacketId::new((seq % 65_000 + 1) as u16);
    Packet::Publish(p)
}

/// Streams up to `total` messages with `window` unacknowledged, kills the broker with SIGKILL once `kill_after`
/// are acknowledged, and returns the sequence numbers the broker acknowledged.
fn stream_then_kill(broker: Broker, qos: QoS, total: u32, kill_after: usize) -> HashSet<u32> {
    let (mut publisher, _) = Client::connect(broker.port, "crash-publisher", true);
    // Well under the broker's Receive Maximum (64), which also counts QoS 2 messages awaiting PUBREL.
    let window = 32u32;
    let mut acked = HashSet::new();
    let mut next = 0u32;
    let mut broker = Some(broker);
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < total as usize && Instant::now() < deadline {
        while next < total && next - acked.len() as u32 <= window {
            publisher.send(&publish(next, qos, "crash/data"));
            next += 1;
        }
        match publisher.recv(Duration::from_secs(5)) {
            Some(Packet::PubAck(r)) | Some(Packet::PubRec(r)) => {
                let id = r.packet_id.get();
                // Packet id = seq % 65000 + 1 and fewer than 65000 messages are in flight: map back.
                let seq = (id - 1) as u32;
                if qos == QoS::ExactlyOnce {
                    publisher.send(&Packet::PubRel(PubResponse::new(r.packet_id)));
                }
                acked.insert(seq);
            }
            Some(Packet::PubComp(_)) => {}
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
        if acked.len() >= kill_after
            && let Some(b) = broker.take()
        {
            b.kill9();
            break;
        }
    }
    assert!(broker.is_none(), "the broker was not killed: only {} acknowledged", acked.len());
    // Drain acknowledgements that were already on the wire before the kill.
    while let Some(p) = publisher.recv(Duration::from_millis(200)) {
        if let Packet::PubAck(r) | Packet::PubRec(r) = p {
            acked.insert((r.packet_id.get() - 1) as u32);
        }
    }
    acked
}

/// Reconnects the persistent subscriber and receives until idle; returns the sequence numbers in arrival order.
fn drain_subscriber(port: u16) -> Vec<u32> {
    let (mut sub, present) = Client::connect(port, "crash-subscriber", false);
    assert!(present, "the persistent session must survive the crash");
    let mut got = Vec::new();
    while let Some(p) = sub.recv(Duration::from_secs(2)) {
        match p {
            Packet::Publish(p) => {
                let seq = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
                got.push(seq);
                let id = p.packet_id.unwrap();
                match p.qos {
                    QoS::AtLeastOnce => sub.send(&Packet::PubAck(PubResponse::new(id))),
                    QoS::ExactlyOnce => sub.send(&Packet::PubRec(PubResponse::new(id))),
                    QoS::AtMostOnce => {}
                }
            }
            Packet::PubRel(r) => sub.send(&Packet::PubComp(PubResponse::new(r.packet_id))),
            _ => {}
        }
    }
    got
}

fn crash_case(name: &str, qos: QoS, sync: &str) {
    let data = data_dir(name);
    let port = free_port();
    let broker = Broker::start(&data, port, sync);
    {
        let (mut sub, _) = Client::connect(port, "crash-subscriber", false);
        sub.subscribe("crash/#", qos);
        sub.send(&Packet::Disconnect(corvid_protocol::Disconnect::new(corvid_protocol::ReasonCode::Success)));
    }
    let acked = stream_then_kill(broker, qos, 3000, 400);
    let broker = Broker::start(&data, port, sync);
    let got = drain_subscriber(port);
    let received: HashSet<u32> = got.iter().copied().collect();
    let lost: Vec<u32> = acked.iter().copied().filter(|s| !received.contains(s)).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(10)]);
    // In order: the first arrival of each message never goes backwards.
    let mut seen = HashSet::new();
    let firsts: Vec<u32> = got.iter().copied().filter(|s| seen.insert(*s)).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "messages out of order");
    if qos == QoS::ExactlyOnce {
        assert_eq!(firsts.len(), got.len(), "QoS 2 delivered a message twice");
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn qos1_survives_sigkill_with_batched_sync() {
    crash_case("qos1-batched", QoS::AtLeastOnce, "batched");
}

#[test]
fn qos1_survives_sigkill_with_always_sync() {
    crash_case("qos1-always", QoS::AtLeastOnce, "always");
}

#[test]
fn qos2_survives_sigkill_exactly_once() {
    crash_case("qos2", QoS::ExactlyOnce, "batched");
}

#[test]
fn retained_survives_sigkill() {
    let data = data_dir("retained");
    let port = free_port();
    let broker = Broker::start(&data, port, "batched");
    let (mut publisher, _) = Client::connect(port, "retainer", true);
    let mut p = Publish::new(TopicName::new("crash/retained").unwrap(), "kept", QoS::AtLeastOnce);
    p.retain = true;
    p.packet_id = PacketId::new(9);
    publisher.send(&Packet::Publish(p));
    assert!(matches!(publisher.recv(Duration::from_secs(5)), Some(Packet::PubAck(_))));
    broker.kill9();
    let _broker = Broker::start(&data, port, "batched");
    let (mut sub, _) = Client::connect(port, "reader", true);
    sub.subscribe("crash/retained", QoS::AtLeastOnce);
    match sub.recv(Duration::from_secs(5)) {
        Some(Packet::Publish(p)) => {
            assert!(p.retain);
            assert_eq!(&p.payload[..], b"kept");
        }
        other => panic!("expected the retained message, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn corrupted_store_fails_with_the_file_named_and_is_kept() {
    let data = data_dir("corrupt");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("corvid.redb");
    std::fs::write(&file, vec![0x5Au8; 8192]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_corvid"))
        .args(["--bind", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("corvid.redb"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), vec![0x5Au8; 8192], "the damaged file must be left as it was");
    let _ = std::fs::remove_dir_all(&data);
}
