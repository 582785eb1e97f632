//! Application messages as they travel through the broker, and the deliveries queued for each session.

use bytes::Bytes;
use corvid_protocol::{ByteString, PublishProperties, QoS, Sparse, TopicName};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An application message: what a client or the process published, after hooks and alias resolution.
///
/// Shared as `Arc<Message>` between every session it is queued for; the payload is never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// Whether it was published with the retain flag.
    pub retain: bool,
    /// MQTT 5 properties as published (topic alias and subscription identifiers are per connection and absent); out
    /// of line, no allocation when none is set. Read and set fields through it (`message.properties.content_type`);
    /// setting one boxes the set.
    pub properties: Sparse<PublishProperties>,
    /// The client that published it; `None` for messages published by the process.
    pub publisher: Option<ByteString>,
    /// When the message expires (from its Message Expiry Interval), if it does.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// A message with no properties, publisher or expiry.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Self {
        Self {
            topic,
            payload: payload.into(),
            qos,
            retain,
            properties: Sparse::unset(),
            publisher: None,
            expires_at: None,
        }
    }

    /// Sets `expires_at` from the Message Expiry Interval property, counted from `now`.
    pub(crate) fn stamp_expiry(&mut self, now: Instant) {
        self.expires_at = self.properties.message_expiry_interval.map(|s| now + Duration::from_secs(u64::from(s)));
    }

    /// Sets `expires_at` from the Message Expiry Interval property, reading the clock only if there is one.
    pub(crate) fn stamp_expiry_now(&mut self) {
        if self.properties.message_expiry_interval.is_some() {
            self.stamp_expiry(Instant::now());
        }
    }

    /// A copy whose topic, payload and properties have allocations of their own. A decoded message is made of
    /// slices of the read buffer it arrived in and keeps all of that buffer alive; one kept for long (retained) is
    /// detached first.
    pub(crate) fn detached(&self) -> Self {
        let text = |s: &ByteString| ByteString::from(&**s);
        let properties = if self.properties.is_unset() {
            Sparse::unset()
        } else {
            let p = &self.properties;
            Sparse::from(PublishProperties {
                response_topic: p.response_topic.as_ref().map(text),
                correlation_data: p.correlation_data.as_ref().map(|d| Bytes::copy_from_slice(d)),
                content_type: p.content_type.as_ref().map(text),
                user_properties: p
                    .user_properties
                    .iter()
                    .map(|u| corvid_protocol::UserProperty { key: text(&u.key), value: text(&u.value) })
                    .collect(),
                ..(**p).clone()
            })
        };
        Self {
            topic: self.topic.detached(),
            payload: Bytes::copy_from_slice(&self.payload),
            qos: self.qos,
            retain: self.retain,
            properties,
            publisher: self.publisher.as_ref().map(text),
            expires_at: self.expires_at,
        }
    }

    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The Message Expiry Interval left at `now`, rounded up to whole seconds.
    pub(crate) fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
    }
}

/// One message queued for one session, with what its subscriptions made of it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub(crate) qos: QoS,
    /// The retain flag to send.
    pub(crate) retain: bool,
    /// Identifiers of every matching subscription that has one.
    pub(crate) subscription_ids: Vec<u32>,
    /// Its position in the durable store's copy of the session queue, when it is stored.
    pub(crate) seq: Option<u64>,
}
