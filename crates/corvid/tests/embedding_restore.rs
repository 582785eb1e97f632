//! Persistent sessions restored from the durable store at start: the user name of each session's last CONNECT is
//! stored with it, the session restorer sees it and gives the session its items before any client connects (so a
//! delivery filter that reads them lets the session's messages through), and a later CONNECT with another user name
//! replaces the stored one.

mod embedding_common;

use corvid::protocol::{ByteString, Connect, QoS, SubscriptionOptions};
use corvid::store::persistent::SessionOp;
use corvid::store::{MemoryStore, PersistentStore, StoredUsername, SyncPolicy};
use corvid::{Message, ProtocolVersion, ServerOptionsBuilder};
use embedding_common::{Raw, options, start, topic};
use parking_lot::Mutex;
use std::sync::Arc;

/// Who a session's client is, as a validator records it.
#[derive(Clone, Debug, PartialEq)]
struct User(Option<String>);

/// What the session restorer was called with: client identifier and stored user name.
type Restored = Arc<Mutex<Vec<(String, StoredUsername)>>>;

/// Options on `store`: a validator and a session restorer that record a [`User`] item, and a delivery filter that
/// lets `alice/...` through to alice only (a receive-side ACL). Restorer calls go to `restored`.
fn with_users(store: &MemoryStore, restored: &Restored) -> ServerOptionsBuilder {
    let restored = restored.clone();
    options()
        .with_persistent_store(store.clone(), SyncPolicy::Always)
        .with_connection_validator(|c| {
            c.session_items.insert(User(c.username.as_deref().map(str::to_owned)));
        })
        .with_session_restorer(move |r| {
            restored.lock().push((r.client_id.to_string(), r.username.clone()));
            match &r.username {
                StoredUsername::Named(name) => {
                    r.session_items.insert(User(Some(name.to_string())));
                }
                StoredUsername::Anonymous => {
                    r.session_items.insert(User(None));
                }
                _ => {}
            }
        })
        .with_delivery_filter(|d| {
            !d.message.topic.starts_with("alice/") || d.session_items.get::<User>() == Some(User(Some("alice".into())))
        })
}

/// An MQTT 5 CONNECT of a session that outlives its connection by an hour.
fn persistent(client_id: &str, username: Option<&str>, clean_start: bool) -> Connect {
    let mut c = Connect::new(ProtocolVersion::V5, client_id.to_owned());
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(3600);
    c.username = username.map(ByteString::from);
    c
}

/// The user name stored with the session of `client_id`.
fn stored_username(store: &MemoryStore, client_id: &str) -> Option<StoredUsername> {
    let loaded = PersistentStore::load(store).unwrap();
    loaded.sessions.into_iter().find(|s| &*s.client_id == client_id).map(|s| s.username)
}

#[tokio::test]
async fn a_restored_session_gets_its_items_from_the_stored_user_name() {
    let store = MemoryStore::new();
    let restored = Restored::default();
    let (server, addr) = start(with_users(&store, &restored)).await;
    let (mut alice, _) = Raw::connect_with(addr, persistent("alice-1", Some("alice"), true)).await;
    alice.subscribe_code("alice/#", QoS::AtLeastOnce).await;
    alice.disconnect().await;
    let (anon, _) = Raw::connect_with(addr, persistent("anon-1", None, true)).await;
    anon.disconnect().await;
    server.stop().await;
    assert_eq!(stored_username(&store, "alice-1"), Some(StoredUsername::Named("alice".into())));
    assert_eq!(stored_username(&store, "anon-1"), Some(StoredUsername::Anonymous));

    // Started again on the same store: the sessions have their items before any client connects.
    let (server, addr) = start(with_users(&store, &restored)).await;
    let mut seen = restored.lock().clone();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = [
        ("alice-1".to_owned(), StoredUsername::Named("alice".into())),
        ("anon-1".to_owned(), StoredUsername::Anonymous),
    ];
    assert_eq!(seen, expected);
    assert_eq!(server.session("alice-1").unwrap().items.get::<User>(), Some(User(Some("alice".into()))));
    assert_eq!(server.session("anon-1").unwrap().items.get::<User>(), Some(User(None)));
    // The delivery filter lets the message through to the offline session, and its client gets it on its return.
    let queued = server.publish(Message::new(topic("alice/inbox"), "while away", QoS::AtLeastOnce, false)).await;
    assert_eq!(queued, 1);
    let (mut alice, ack) = Raw::connect_with(addr, persistent("alice-1", Some("alice"), false)).await;
    assert!(ack.session_present);
    let publish = alice.recv_publish_ack().await;
    assert_eq!((publish.topic.as_str(), &publish.payload[..]), ("alice/inbox", &b"while away"[..]));
    server.stop().await;
}

#[tokio::test]
async fn a_new_user_name_replaces_the_stored_one() {
    let store = MemoryStore::new();
    let restored = Restored::default();
    let (server, addr) = start(with_users(&store, &restored)).await;
    let (mut c, _) = Raw::connect_with(addr, persistent("shared", Some("alice"), true)).await;
    c.subscribe_code("alice/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (c, ack) = Raw::connect_with(addr, persistent("shared", Some("mallory"), false)).await;
    assert!(ack.session_present);
    c.disconnect().await;
    server.stop().await;
    assert_eq!(stored_username(&store, "shared"), Some(StoredUsername::Named("mallory".into())));

    // Restored as mallory's: the filter keeps alice's messages from it.
    let (server, addr) = start(with_users(&store, &restored)).await;
    assert_eq!(server.session("shared").unwrap().items.get::<User>(), Some(User(Some("mallory".into()))));
    let queued = server.publish(Message::new(topic("alice/inbox"), "not for mallory", QoS::AtLeastOnce, false)).await;
    assert_eq!(queued, 0);
    // Resumed without a user name: stored as anonymous.
    let (c, _) = Raw::connect_with(addr, persistent("shared", None, false)).await;
    c.disconnect().await;
    server.stop().await;
    assert_eq!(stored_username(&store, "shared"), Some(StoredUsername::Anonymous));
}

#[tokio::test]
async fn a_session_stored_without_a_user_name_is_restored_with_it_unknown() {
    // What a store written before user names were kept holds: a session record without one.
    let store = MemoryStore::new();
    let op = SessionOp::PutSession {
        client_id: "old".into(),
        username: StoredUsername::Unknown,
        expiry_interval: 3600,
        disconnected_at: None,
        subscriptions: vec![(
            corvid::TopicFilter::new("alice/#").unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
            None,
        )],
    };
    store.apply(&[op], true).unwrap();
    let restored = Restored::default();
    let (server, addr) = start(with_users(&store, &restored)).await;
    assert_eq!(*restored.lock(), [("old".to_owned(), StoredUsername::Unknown)]);
    assert!(server.session("old").unwrap().items.get::<User>().is_none());
    // No item, so the filter holds the message back, as it would for any session it knows nothing of.
    let queued = server.publish(Message::new(topic("alice/inbox"), "x", QoS::AtLeastOnce, false)).await;
    assert_eq!(queued, 0);
    // Its client connects again: the validator's item, and the user name stored.
    let (mut c, ack) = Raw::connect_with(addr, persistent("old", Some("alice"), false)).await;
    assert!(ack.session_present);
    assert_eq!(server.session("old").unwrap().items.get::<User>(), Some(User(Some("alice".into()))));
    server.publish(Message::new(topic("alice/inbox"), "now", QoS::AtLeastOnce, false)).await;
    assert_eq!(&c.recv_publish_ack().await.payload[..], b"now");
    c.disconnect().await;
    server.stop().await;
    assert_eq!(stored_username(&store, "old"), Some(StoredUsername::Named("alice".into())));
}
