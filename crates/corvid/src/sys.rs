//! `$SYS/broker/...` topics, with Mosquitto's names, published retained every interval.

use crate::broker::Broker;
use crate::message::Message;
use corvid_protocol::{QoS, TopicName};
use std::sync::Arc;
use std::time::Duration;

/// The version string of `$SYS/broker/version`.
pub(crate) const VERSION: &str = concat!("corvid version ", env!("CARGO_PKG_VERSION"));

pub(crate) async fn publish_loop(broker: Arc<Broker>, interval: Duration) {
    publish(&broker, "version", VERSION.to_owned());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = broker.shutdown.cancelled() => return,
            _ = tick.tick() => publish_all(&broker),
        }
    }
}

fn publish_all(broker: &Broker) {
    let s = broker.stats.snapshot();
    let (sessions, online) = broker.registry.counts();
    let values: [(&str, String); 18] = [
        ("uptime", format!("{} seconds", broker.started.elapsed().as_secs())),
        ("clients/connected", online.to_string()),
        ("clients/disconnected", (sessions - online.min(sessions)).to_string()),
        ("clients/total", sessions.to_string()),
        ("clients/maximum", s.clients_maximum.to_string()),
        ("clients/expired", s.clients_expired.to_string()),
        ("messages/received", s.messages_received.to_string()),
        ("messages/sent", s.messages_sent.to_string()),
        ("publish/messages/received", s.publish_received.to_string()),
        ("publish/messages/sent", s.publish_sent.to_string()),
        ("publish/messages/dropped", s.publish_dropped.to_string()),
        ("publish/bytes/received", s.publish_bytes_received.to_string()),
        ("publish/bytes/sent", s.publish_bytes_sent.to_string()),
        ("bytes/received", s.bytes_received.to_string()),
        ("bytes/sent", s.bytes_sent.to_string()),
        ("retained messages/count", broker.retained.len().to_string()),
        ("subscriptions/count", broker.subscriptions.len().to_string()),
        ("connections/total", s.connections_total.to_string()),
    ];
    for (name, value) in values {
        publish(broker, name, value);
    }
}

fn publish(broker: &Broker, name: &str, value: String) {
    if let Ok(topic) = TopicName::new(format!("$SYS/broker/{name}")) {
        broker.publish(Message::new(topic, value, QoS::AtMostOnce, true), None);
    }
}
