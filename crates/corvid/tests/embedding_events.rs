//! Every kind of [`corvid::Event`], observed through `Server::events` and through an event handler registered with
//! `ServerOptionsBuilder::with_event_handler` (the only way to see `ServerStarted`).

mod embedding_common;

use corvid::protocol::{Connect, Disconnect, Packet, QoS};
use corvid::{DisconnectKind, DropReason, Event, Message, OverflowPolicy, ProtocolVersion, ReasonCode};
use embedding_common::{Raw, Recorder, eventually, options, start, topic};
use parking_lot::Mutex;
use std::sync::Arc;

fn disconnected(e: &Event, id: &str, want: DisconnectKind) -> bool {
    matches!(e, Event::ClientDisconnected { client_id, kind, .. } if &**client_id == id && *kind == want)
}

#[tokio::test]
async fn every_event_kind_is_observed() {
    let handled: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = handled.clone();
    let builder = options()
        // One queued message per session, newest dropped: makes QueueFull easy to provoke.
        .with_max_pending_messages(1, OverflowPolicy::DropNewest)
        .with_event_handler(move |event| {
            let sink = sink.clone();
            async move { sink.lock().push(event) }
        });
    let (server, addr) = start(builder).await;
    let mut events = Recorder::new(&server);

    // ClientConnected, Subscribed.
    let mut sub = Raw::v5(addr, "ev-sub").await;
    events
        .wait_for("ClientConnected", |e| {
            matches!(e, Event::ClientConnected { client_id, protocol: ProtocolVersion::V5, session_present: false, .. }
            if &**client_id == "ev-sub")
        })
        .await;
    sub.subscribe_code("ev/#", QoS::AtLeastOnce).await;
    events
        .wait_for("Subscribed", |e| {
            matches!(e, Event::Subscribed { client_id, topic_filter, options }
            if &**client_id == "ev-sub" && topic_filter.as_str() == "ev/#" && options.qos == QoS::AtLeastOnce)
        })
        .await;

    // MessageReceived with the client id, DeliveryAcknowledged.
    let mut publisher = Raw::v5(addr, "ev-pub").await;
    publisher.publish1("ev/1", b"one", false).await;
    sub.recv_publish_ack().await;
    events.wait_for("MessageReceived", |e| {
        matches!(e, Event::MessageReceived { client_id: Some(c), message } if &**c == "ev-pub" && message.topic.as_str() == "ev/1")
    })
    .await;
    events.wait_for("DeliveryAcknowledged", |e| {
        matches!(e, Event::DeliveryAcknowledged { client_id, message } if &**client_id == "ev-sub" && &message.payload[..] == b"one")
    })
    .await;

    // Messages from the process: MessageReceived without client id; MessageNotConsumed.
    server.publish(Message::new(topic("nobody/listens"), "x", QoS::AtMostOnce, false)).await;
    events.wait_for("MessageReceived from the process", |e| {
        matches!(e, Event::MessageReceived { client_id: None, message } if message.topic.as_str() == "nobody/listens")
    })
    .await;
    events.wait_for("MessageNotConsumed", |e| {
        matches!(e, Event::MessageNotConsumed { client_id: None, message } if message.topic.as_str() == "nobody/listens")
    })
    .await;

    // RetainedMessageChanged: set, then delete.
    publisher.publish1("kept/1", b"v", true).await;
    events.wait_for("RetainedMessageChanged (set)", |e| {
        matches!(e, Event::RetainedMessageChanged { topic, message: Some(m) } if topic.as_str() == "kept/1" && &m.payload[..] == b"v")
    })
    .await;
    publisher.publish1("kept/1", b"", true).await;
    events
        .wait_for(
            "RetainedMessageChanged (delete)",
            |e| matches!(e, Event::RetainedMessageChanged { topic, message: None } if topic.as_str() == "kept/1"),
        )
        .await;

    // Unsubscribed; then a clean DISCONNECT ends the non-persistent session: ClientDisconnected Clean, SessionDeleted.
    sub.unsubscribe(&["ev/#"]).await;
    events.wait_for("Unsubscribed", |e| {
        matches!(e, Event::Unsubscribed { client_id, topic_filter } if &**client_id == "ev-sub" && topic_filter.as_str() == "ev/#")
    })
    .await;
    sub.disconnect().await;
    events.wait_for("ClientDisconnected Clean", |e| disconnected(e, "ev-sub", DisconnectKind::Clean)).await;
    events
        .wait_for("SessionDeleted", |e| matches!(e, Event::SessionDeleted { client_id } if &**client_id == "ev-sub"))
        .await;

    // Abnormal: the socket closes without DISCONNECT.
    let lost = Raw::v5(addr, "ev-lost").await;
    drop(lost);
    events.wait_for("ClientDisconnected Abnormal", |e| disconnected(e, "ev-lost", DisconnectKind::Abnormal)).await;

    // TakenOver: a second connection with the same client identifier.
    let mut first = Raw::v5(addr, "ev-dup").await;
    let _second = Raw::v5(addr, "ev-dup").await;
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    events.wait_for("ClientDisconnected TakenOver", |e| disconnected(e, "ev-dup", DisconnectKind::TakenOver)).await;

    // Kicked: the process disconnects the client.
    let mut kicked = Raw::v5(addr, "ev-kicked").await;
    assert!(server.disconnect_client("ev-kicked", ReasonCode::AdministrativeAction));
    kicked.expect_disconnect(ReasonCode::AdministrativeAction).await;
    events.wait_for("ClientDisconnected Kicked", |e| {
        matches!(e, Event::ClientDisconnected { client_id, kind: DisconnectKind::Kicked, reason_code: Some(ReasonCode::AdministrativeAction), .. }
            if &**client_id == "ev-kicked")
    })
    .await;

    // MessageDropped (queue full): an offline persistent session with room for one message gets two.
    let (mut slow, _) = Raw::v5_persistent(addr, "ev-slow", true, 300).await;
    slow.subscribe_code("slow/#", QoS::AtLeastOnce).await;
    slow.disconnect().await;
    publisher.publish1("slow/1", b"kept", false).await;
    publisher.publish1("slow/2", b"dropped", false).await;
    events.wait_for("MessageDropped QueueFull", |e| {
        matches!(e, Event::MessageDropped { client_id, reason: DropReason::QueueFull, message } if &**client_id == "ev-slow" && &message.payload[..] == b"dropped")
    })
    .await;
    // MessageDropped (too large): a client whose Maximum Packet Size the message exceeds.
    let mut small = Connect::new(ProtocolVersion::V5, "ev-small");
    small.properties.maximum_packet_size = Some(64);
    let (mut small, _) = Raw::connect_with(addr, small).await;
    small.subscribe_code("big/#", QoS::AtMostOnce).await;
    publisher.publish1("big/1", &[b'x'; 200], false).await;
    events.wait_for("MessageDropped TooLarge", |e| {
        matches!(e, Event::MessageDropped { client_id, reason: DropReason::TooLarge, .. } if &**client_id == "ev-small")
    })
    .await;
    small.expect_silence().await;

    // SessionDeleted by the admin API for the offline session.
    assert!(server.delete_session("ev-slow"));
    events
        .wait_for(
            "SessionDeleted (admin)",
            |e| matches!(e, Event::SessionDeleted { client_id } if &**client_id == "ev-slow"),
        )
        .await;

    // ServerStopping for a client still connected at stop; ServerStopped.
    let mut remaining = Raw::v5(addr, "ev-remaining").await;
    remaining.ping().await;
    server.stop().await;
    remaining.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    events
        .wait_for("ClientDisconnected ServerStopping", |e| {
            disconnected(e, "ev-remaining", DisconnectKind::ServerStopping)
        })
        .await;
    events.wait_for("ServerStopped", |e| matches!(e, Event::ServerStopped)).await;

    // The handler saw the whole life of the server, from ServerStarted to ServerStopped, in order.
    eventually("the handler to see ServerStopped", || handled.lock().iter().any(|e| matches!(e, Event::ServerStopped)))
        .await;
    let handled = handled.lock();
    assert!(matches!(handled.first(), Some(Event::ServerStarted)), "first: {:?}", handled.first());
    assert!(matches!(handled.last(), Some(Event::ServerStopped)), "last: {:?}", handled.last());
    let received = handled.iter().position(|e| matches!(e, Event::MessageReceived { client_id: Some(_), .. }));
    let acked = handled.iter().position(|e| matches!(e, Event::DeliveryAcknowledged { .. }));
    assert!(received.is_some() && received < acked, "in order: {received:?} < {acked:?}");
}

#[tokio::test]
async fn a_disconnect_with_will_is_clean_and_the_will_is_received() {
    let (server, addr) = start(options()).await;
    let mut events = Recorder::new(&server);
    let mut watcher = Raw::v5(addr, "watcher").await;
    watcher.subscribe_code("wills/#", QoS::AtLeastOnce).await;
    let mut connect = Connect::new(ProtocolVersion::V5, "mortal");
    connect.will = Some(corvid::protocol::Will {
        topic: topic("wills/mortal"),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut mortal, _) = Raw::connect_with(addr, connect).await;
    mortal.send(&Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage))).await;
    mortal.expect_closed().await;
    events.wait_for("ClientDisconnected Clean 0x04", |e| {
        matches!(e, Event::ClientDisconnected { client_id, kind: DisconnectKind::Clean, reason_code: Some(ReasonCode::DisconnectWithWillMessage), .. }
            if &**client_id == "mortal")
    })
    .await;
    assert_eq!(&watcher.recv_publish_ack().await.payload[..], b"gone");
    // The will is a message from the client: MessageReceived carries its id.
    events.wait_for("MessageReceived (will)", |e| {
        matches!(e, Event::MessageReceived { client_id: Some(c), message } if &**c == "mortal" && message.topic.as_str() == "wills/mortal")
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_dropping_the_oldest_reports_the_evicted_message() {
    let (server, addr) = start(options().with_max_pending_messages(2, OverflowPolicy::DropOldest)).await;
    let mut events = Recorder::new(&server);
    let (mut away, _) = Raw::v5_persistent(addr, "away", true, 300).await;
    away.subscribe_code("q/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = Raw::v5(addr, "pub").await;
    for payload in ["1", "2", "3"] {
        publisher.publish1("q/x", payload.as_bytes(), false).await;
    }
    events
        .wait_for("MessageDropped of the oldest", |e| {
            matches!(e, Event::MessageDropped { client_id, reason: DropReason::QueueFull, message }
                if &**client_id == "away" && &message.payload[..] == b"1")
        })
        .await;
    let (mut back, _) = Raw::v5_persistent(addr, "away", false, 300).await;
    assert_eq!(&back.recv_publish_ack().await.payload[..], b"2");
    assert_eq!(&back.recv_publish_ack().await.payload[..], b"3");
}
