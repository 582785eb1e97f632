//! The administration API (clients and their counters, sessions, per-session queue and subscriptions, draining,
//! retained messages) and pluggable retained stores (load at start, save on change).

mod embedding_common;

use bytes::BytesMut;
use corvid::protocol::{Connect, Packet, QoS, SubscriptionOptions, encode};
use corvid::{Message, ProtocolVersion, ReasonCode, RetainedChange, RetainedStore, StoreError};
use embedding_common::{Raw, eventually, filter, options, start, topic, within};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn clients_lists_connected_clients_with_their_counters() {
    let (server, addr) = start(options()).await;
    let mut connect = Connect::new(ProtocolVersion::V5, "counted");
    connect.username = Some("carol".into());
    let (mut client, _) = Raw::connect_with(addr, connect).await;
    for i in 0..3 {
        client.publish1(&format!("count/{i}"), b"payload", false).await;
    }
    client.ping().await;
    let _other = Raw::v311(addr, "other").await;

    let clients = server.clients();
    assert_eq!(clients.len(), 2);
    let info = clients.iter().find(|c| &*c.client_id == "counted").expect("the client is listed");
    assert_eq!(info.protocol, ProtocolVersion::V5);
    assert_eq!(info.username.as_deref(), Some("carol"));
    assert_eq!(info.remote_addr, client.stream.local_addr().unwrap());
    // 3 PUBLISH and PINGREQ in (plus CONNECT, depending on whether the handshake is counted); CONNACK, 3 PUBACK
    // and PINGRESP out.
    assert!((4..=5).contains(&info.messages_received), "{info:?}");
    assert_eq!(info.messages_sent, 5, "{info:?}");
    assert!(info.bytes_received > 3 * 7 && info.bytes_sent > 0, "{info:?}");
    assert!(info.connected_since <= std::time::SystemTime::now());
    client.disconnect().await;
    eventually("the client to leave the list", || server.clients().len() == 1).await;
}

#[tokio::test]
async fn sessions_show_an_offline_persistent_session_and_its_queue() {
    let (server, addr) = start(options()).await;
    let (mut away, _) = Raw::v5_persistent(addr, "away", true, 300).await;
    away.subscribe_code("jobs/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = Raw::v5(addr, "pub").await;
    for i in 0..3 {
        publisher.publish1(&format!("jobs/{i}"), b"job", false).await;
    }
    let session = server.session("away").expect("the offline session");
    assert!(!session.connected);
    assert_eq!(session.pending_messages, 3);
    assert_eq!(session.subscriptions.len(), 1);
    assert_eq!(session.subscriptions[0].0.as_str(), "jobs/#");
    assert_eq!(session.subscriptions[0].1.qos, QoS::AtLeastOnce);
    assert!(session.disconnected_at.is_some());
    let left = session.expires_in.expect("a session expiry");
    assert!(left.as_secs() <= 300 && left.as_secs() >= 290, "{left:?}");
    let online = server.session("pub").expect("the publisher's session");
    assert!(online.connected && online.expires_in.is_none());
    assert_eq!(server.sessions().len(), 2);

    // Enqueue one more for that session only; the client finds all four on its return.
    assert!(server.enqueue("away", Message::new(topic("direct/note"), "from admin", QoS::AtLeastOnce, false)));
    assert!(!server.enqueue("nobody", Message::new(topic("direct/note"), "x", QoS::AtLeastOnce, false)));
    assert_eq!(server.session("away").unwrap().pending_messages, 4);
    let (mut back, present) = Raw::v5_persistent(addr, "away", false, 300).await;
    assert!(present);
    let mut topics = Vec::new();
    for _ in 0..4 {
        topics.push(back.recv_publish_ack().await.topic.to_string());
    }
    assert_eq!(topics, ["jobs/0", "jobs/1", "jobs/2", "direct/note"]);
}

#[tokio::test]
async fn clear_session_queue_drops_queued_messages() {
    let (server, addr) = start(options()).await;
    let (mut away, _) = Raw::v5_persistent(addr, "away", true, 300).await;
    away.subscribe_code("jobs/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("jobs/1", b"stale", false).await;
    assert_eq!(server.session("away").unwrap().pending_messages, 1);
    assert!(server.clear_session_queue("away"));
    assert!(!server.clear_session_queue("nobody"));
    assert_eq!(server.session("away").unwrap().pending_messages, 0);
    let (mut back, present) = Raw::v5_persistent(addr, "away", false, 300).await;
    assert!(present);
    back.expect_silence().await;
    // The subscription itself stays.
    publisher.publish1("jobs/2", b"fresh", false).await;
    assert_eq!(&back.recv_publish_ack().await.payload[..], b"fresh");
}

#[tokio::test]
async fn subscribe_client_delivers_retained_and_new_messages() {
    let (server, addr) = start(options()).await;
    server.set_retained_message(Message::new(topic("config/mode"), "eco", QoS::AtLeastOnce, false));
    let mut client = Raw::v5(addr, "managed").await;
    assert!(server.subscribe_client("managed", filter("config/#"), SubscriptionOptions::qos(QoS::AtLeastOnce)));
    assert!(!server.subscribe_client("nobody", filter("config/#"), SubscriptionOptions::qos(QoS::AtLeastOnce)));
    let retained = client.recv_publish_ack().await;
    assert_eq!((retained.topic.as_str(), &retained.payload[..], retained.retain), ("config/mode", &b"eco"[..], true));
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("config/mode", b"boost", false).await;
    assert_eq!(&client.recv_publish_ack().await.payload[..], b"boost");
    assert_eq!(server.session("managed").unwrap().subscriptions.len(), 1);
    assert!(server.unsubscribe_client("managed", &filter("config/#")));
    assert!(!server.unsubscribe_client("managed", &filter("config/#")));
    publisher.publish1("config/mode", b"off", false).await;
    client.expect_silence().await;
}

#[tokio::test]
async fn disconnect_and_delete_session() {
    let (server, addr) = start(options()).await;
    let (mut kept, _) = Raw::v5_persistent(addr, "kept", true, 300).await;
    assert!(server.disconnect_client("kept", ReasonCode::ServerBusy));
    kept.expect_disconnect(ReasonCode::ServerBusy).await;
    eventually("the session to go offline", || server.session("kept").is_some_and(|s| !s.connected)).await;
    assert!(!server.disconnect_client("kept", ReasonCode::ServerBusy), "no longer connected");
    // A code DISCONNECT cannot carry goes out as unspecified error.
    let (mut refused, _) = Raw::v5_persistent(addr, "kept", false, 300).await;
    assert!(server.disconnect_client("kept", ReasonCode::BadUserNameOrPassword));
    refused.expect_disconnect(ReasonCode::UnspecifiedError).await;

    let (mut deleted, _) = Raw::v5_persistent(addr, "deleted", true, 300).await;
    assert!(server.delete_session("deleted"));
    deleted.expect_disconnect(ReasonCode::AdministrativeAction).await;
    eventually("the session to go", || server.session("deleted").is_none()).await;
    let (_, present) = Raw::v5_persistent(addr, "deleted", false, 300).await;
    assert!(!present);
    assert!(!server.delete_session("never-there"));
}

/// The four bytes of the CONNACK an MQTT 3.1.1 client gets.
async fn connack_311_bytes(addr: SocketAddr, client_id: &str) -> [u8; 4] {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    let connect = Connect::new(ProtocolVersion::V3_1_1, client_id.to_owned());
    encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V3_1_1, &mut buf).unwrap();
    stream.write_all(&buf).await.unwrap();
    let mut connack = [0u8; 4];
    within("CONNACK", stream.read_exact(&mut connack)).await.unwrap();
    connack
}

#[tokio::test]
async fn draining_refuses_new_clients_and_keeps_connected_ones() {
    let (server, addr) = start(options()).await;
    let mut connected = Raw::v5(addr, "already-here").await;
    assert!(server.is_accepting());
    server.pause_accepting();
    assert!(!server.is_accepting());
    assert_eq!(connack_311_bytes(addr, "late").await, [0x20, 0x02, 0x00, 3], "3.1.1: server unavailable");
    let (_, ack) = Raw::handshake(addr, Connect::new(ProtocolVersion::V5, "late5")).await;
    assert_eq!(ack.reason_code, ReasonCode::ServerUnavailable);
    connected.ping().await;
    server.resume_accepting();
    assert!(server.is_accepting());
    assert_eq!(connack_311_bytes(addr, "late").await, [0x20, 0x02, 0x00, 0]);
}

#[tokio::test]
async fn retained_crud_through_the_admin_api() {
    let (server, addr) = start(options()).await;
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("state/#", QoS::AtLeastOnce).await;
    // Setting a retained message does not publish it to current subscribers.
    server.set_retained_message(Message::new(topic("state/a"), "1", QoS::AtLeastOnce, false));
    server.set_retained_message(Message::new(topic("state/b"), "2", QoS::AtMostOnce, false));
    sub.expect_silence().await;
    let a = server.retained_message("state/a").expect("state/a");
    assert!(a.retain);
    assert_eq!(&a.payload[..], b"1");
    let mut all: Vec<String> = server.retained_messages().iter().map(|m| m.topic.to_string()).collect();
    all.sort();
    assert_eq!(all, ["state/a", "state/b"]);
    assert!(server.delete_retained_message(&topic("state/a")));
    assert!(!server.delete_retained_message(&topic("state/a")));
    assert!(server.retained_message("state/a").is_none());
    server.clear_retained_messages();
    assert!(server.retained_messages().is_empty());
}

/// What the counting store saw, shared with the test.
#[derive(Default)]
struct StoreLog {
    loads: AtomicUsize,
    saves: AtomicUsize,
    changes: Mutex<Vec<String>>,
    last_all: Mutex<Vec<String>>,
}

/// An in-memory [`RetainedStore`] that counts its calls.
struct CountingStore {
    initial: Vec<Message>,
    log: Arc<StoreLog>,
}

impl RetainedStore for CountingStore {
    fn load(&self) -> Result<Vec<Message>, StoreError> {
        self.log.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.initial.clone())
    }

    fn save(&self, changes: &[RetainedChange], all: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError> {
        self.log.saves.fetch_add(1, Ordering::SeqCst);
        let mut log = self.log.changes.lock();
        for change in changes {
            log.push(match change {
                RetainedChange::Set(m) => format!("set {}={}", m.topic, String::from_utf8_lossy(&m.payload)),
                RetainedChange::Delete(t) => format!("delete {t}"),
                _ => "other".to_owned(),
            });
        }
        let mut topics: Vec<String> = all().iter().map(|m| m.topic.to_string()).collect();
        topics.sort();
        *self.log.last_all.lock() = topics;
        Ok(())
    }
}

#[tokio::test]
async fn retained_store_is_loaded_at_start_and_saved_on_change() {
    let log = Arc::new(StoreLog::default());
    let initial = vec![Message::new(topic("stored/one"), "from disk", QoS::AtLeastOnce, true)];
    let store = CountingStore { initial, log: log.clone() };
    let (server, addr) = start(options().with_retained_store(store)).await;
    assert_eq!(log.loads.load(Ordering::SeqCst), 1);
    assert_eq!(log.saves.load(Ordering::SeqCst), 0, "loading saves nothing");

    // Loaded messages are retained messages like any other.
    let mut sub = Raw::v5(addr, "sub").await;
    sub.subscribe_code("stored/#", QoS::AtLeastOnce).await;
    let p = sub.recv_publish_ack().await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.retain), ("stored/one", &b"from disk"[..], true));

    // Changes from clients and from the admin API are saved, in order.
    let mut publisher = Raw::v5(addr, "pub").await;
    publisher.publish1("stored/two", b"2", true).await;
    publisher.publish1("stored/not-retained", b"x", false).await;
    publisher.publish1("stored/one", b"", true).await;
    server.set_retained_message(Message::new(topic("stored/three"), "3", QoS::AtMostOnce, false));
    assert!(server.delete_retained_message(&topic("stored/two")));
    let expected = ["set stored/two=2", "delete stored/one", "set stored/three=3", "delete stored/two"];
    eventually("the store to save every change", || log.changes.lock().len() == expected.len()).await;
    assert_eq!(*log.changes.lock(), expected);
    assert_eq!(*log.last_all.lock(), ["stored/three"]);
    let saves = log.saves.load(Ordering::SeqCst);
    assert!((1..=expected.len()).contains(&saves), "changes are grouped into at most one save each: {saves}");
    // Deleting a topic that has no retained message changes nothing.
    publisher.publish1("stored/none", b"", true).await;
    server.stop().await;
    assert_eq!(log.changes.lock().len(), expected.len());
    assert_eq!(log.loads.load(Ordering::SeqCst), 1);
}

struct FailingStore;

impl RetainedStore for FailingStore {
    fn load(&self) -> Result<Vec<Message>, StoreError> {
        Err(StoreError::Other("the disk is on fire".into()))
    }

    fn save(&self, _: &[RetainedChange], _: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_store_that_cannot_load_stops_the_start() {
    let error =
        corvid::Server::start(options().with_retained_store(FailingStore).build()).await.err().expect("an error");
    assert!(error.to_string().contains("the disk is on fire"), "{error}");
}
