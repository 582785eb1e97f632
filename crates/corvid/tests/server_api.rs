//! The embedding API: publishing from the process, stopping the server, serving a custom transport, counters.

mod common;

use common::{Raw, TestServer, V5Client, options, topic, within};
use corvid::protocol::{Packet, QoS};
use corvid::{Message, ProtocolVersion, ReasonCode};
use std::time::Duration;

#[tokio::test]
async fn server_publish_reaches_subscribers() {
    let t = TestServer::default().await;
    let mut v5 = Raw::v5(t.addr, "v5").await;
    v5.subscribe("proc/+", QoS::ExactlyOnce).await;
    let mut v3 = Raw::v311(t.addr, "v3").await;
    v3.subscribe("proc/#", QoS::AtMostOnce).await;
    let n = t.server.publish(Message::new(topic("proc/1"), "from process", QoS::AtLeastOnce, false)).await;
    assert_eq!(n, 2, "queued for both sessions");
    let p = v5.recv_publish_ack().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"from process"[..]));
    let p = v3.recv_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtMostOnce, &b"from process"[..]));
    let n = t.server.publish(Message::new(topic("nobody/here"), "x", QoS::AtMostOnce, false)).await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn stop_sends_v5_clients_server_shutting_down() {
    let t = TestServer::default().await;
    let mut v5 = Raw::v5(t.addr, "v5").await;
    let mut v3 = Raw::v311(t.addr, "v3").await;
    let addr = t.addr;
    within("Server::stop", t.server.stop()).await;
    v5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    let got = v3.expect_closed().await;
    assert!(got.is_empty(), "{got:?}");
    // The listener is closed too.
    let refused = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
    if let Ok(Ok(mut stream)) = refused {
        // The port may have been reused in between; a connection there must not be served by the stopped broker.
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        assert!(!matches!(read, Ok(Ok(n)) if n > 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_rumqttc_client() {
    let t = TestServer::default().await;
    let mut c = V5Client::connect(t.addr, "rq-stop").await;
    within("Server::stop", t.server.stop()).await;
    match c.ended().await {
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect { reason_code, .. }) => {
            assert_eq!(reason_code, rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
}

#[tokio::test]
async fn serve_connection_over_a_custom_transport() {
    use bytes::BytesMut;
    use corvid::protocol::{decode, encode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let t = std::sync::Arc::new(TestServer::start(options().without_default_endpoint()).await);
    let (client, server_side) = tokio::io::duplex(4096);
    let t2 = t.clone();
    let served = tokio::spawn(async move {
        t2.server.serve_connection(server_side, "127.0.0.1:9".parse().unwrap()).await;
    });
    let mut tcp = Raw::v5(t.addr, "tcp-sub").await;
    tcp.subscribe("duplex", QoS::AtMostOnce).await;

    let (mut rd, mut wr) = tokio::io::split(client);
    let mut buf = BytesMut::new();
    let connect = common::connect_packet(ProtocolVersion::V5, "duplex");
    encode(&Packet::Connect(Box::new(connect)), ProtocolVersion::V5, &mut buf).unwrap();
    let publish = common::publish_packet("duplex", b"via duplex", QoS::AtMostOnce, 0);
    encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut buf).unwrap();
    wr.write_all(&buf).await.unwrap();
    let mut rbuf = BytesMut::new();
    let connack = within("CONNACK over duplex", async {
        loop {
            if let Some(p) = decode(&mut rbuf, ProtocolVersion::V5, u32::MAX).unwrap() {
                return p;
            }
            assert!(rd.read_buf(&mut rbuf).await.unwrap() > 0);
        }
    })
    .await;
    assert!(matches!(connack, Packet::ConnAck(a) if a.reason_code == ReasonCode::Success));
    assert_eq!(&tcp.recv_publish().await.payload[..], b"via duplex");
    drop(wr);
    drop(rd);
    within("serve_connection to end", served).await.unwrap();
}

#[tokio::test]
async fn stats_count_connections_and_publishes() {
    let t = TestServer::default().await;
    let before = t.server.stats();
    let mut sub = Raw::v5(t.addr, "stats-sub").await;
    sub.subscribe("stats", QoS::AtLeastOnce).await;
    let mut publisher = Raw::v311(t.addr, "stats-pub").await;
    publisher.publish("stats", b"12345", QoS::AtLeastOnce).await;
    sub.recv_publish_ack().await;
    let s = t.server.stats();
    assert_eq!(s.connections_total - before.connections_total, 2);
    assert_eq!(s.clients_connected, 2);
    assert!(s.publish_received > before.publish_received);
    assert!(s.publish_sent > before.publish_sent);
    drop(publisher);
    t.wait_stats("a client to leave", |s| s.clients_connected == 1).await;
}
