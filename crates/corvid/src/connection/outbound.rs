//! Messages to the client: draining the session queue within the send quota, topic aliases, expiry, size limits.

use super::{BATCH, Connection, WRITE_HIGH_WATER};
use crate::events::{DropReason, Event};
use crate::message::Delivery;
use crate::session::{Inflight, OutboundState};
use crate::stats::add;
use crate::store::persistent::{SessionOp, StoredMessageState};
use corvid_protocol::{Packet, PacketId, PubResponse, Publish, PublishProperties, QoS, Sparse, TopicName, encoded_len};
use std::cell::Cell;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

thread_local! {
    /// The batch buffer, one per thread: a batch is written out before any `.await`, so no connection needs to keep
    /// one (nor allocate one each time).
    static BATCH_BUFFER: Cell<Vec<Delivery>> = const { Cell::new(Vec::new()) };
    /// A box for the MQTT 5 properties of the PUBLISH being encoded when they are the delivery's own (a topic
    /// alias, subscription identifiers, the expiry left), reused from one to the next on this thread.
    static SPARE_PROPERTIES: Cell<Sparse<PublishProperties>> = const { Cell::new(Sparse::unset()) };
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Moves queued deliveries into the write buffer until the queue is empty or the send quota is used up (`false`),
    /// or the buffer passes its high-water mark (`true`: the caller writes, then calls again).
    ///
    /// Not async, the caller writing instead: a future of its own, nested in the connection's, would make every
    /// connection's task larger.
    pub(super) fn drain_queue(&mut self) -> bool {
        let shared = self.state.shared.clone();
        loop {
            let quota = usize::from(self.send_quota).saturating_sub(self.state.inflight.len());
            let mut batch = BATCH_BUFFER.take();
            shared.take_batch(&mut batch, BATCH, quota);
            if batch.is_empty() {
                BATCH_BUFFER.set(batch);
                return false;
            }
            let now = Instant::now();
            for delivery in batch.drain(..) {
                self.write_delivery(delivery, now);
            }
            BATCH_BUFFER.set(batch);
            if self.wbuf.len() >= WRITE_HIGH_WATER {
                return true;
            }
        }
    }

    fn write_delivery(&mut self, delivery: Delivery, now: Instant) {
        if delivery.message.is_expired(now) {
            self.dropped(&delivery, DropReason::Expired);
            return;
        }
        let packet_id = (delivery.qos != QoS::AtMostOnce).then(|| self.state.allocate_packet_id());
        if self.encode_publish(&delivery, packet_id, false, now) {
            if let Some(packet_id) = packet_id {
                if let Some(seq) = delivery.seq {
                    let state = StoredMessageState::Sent(packet_id);
                    let client_id = self.client_id().clone();
                    self.broker.store_ops(vec![SessionOp::SetMessageState { client_id, seq, state }]);
                }
                self.track(Inflight { packet_id, delivery, state: OutboundState::AwaitingAck });
            }
        } else {
            self.dropped(&delivery, DropReason::TooLarge);
        }
    }

    fn dropped(&self, delivery: &Delivery, reason: DropReason) {
        add(&self.broker.stats.publish_dropped, 1);
        if let Some(seq) = delivery.seq {
            self.broker.store_ops(vec![SessionOp::DeleteMessage { client_id: self.client_id().clone(), seq }]);
        }
        self.broker.emit(|| Event::MessageDropped {
            client_id: self.client_id().clone(),
            message: delivery.message.clone(),
            reason,
        });
    }

    /// Resends every unacknowledged message of a resumed session: PUBLISH with DUP, or PUBREL.
    pub(super) fn resend_inflight(&mut self) {
        let now = Instant::now();
        let inflight = std::mem::take(&mut self.state.inflight);
        for item in inflight.iter() {
            match item.state {
                OutboundState::AwaitingAck => {
                    self.encode_publish(&item.delivery, Some(item.packet_id), true, now);
                }
                OutboundState::AwaitingComp => self.send(&Packet::PubRel(PubResponse::new(item.packet_id))),
            }
        }
        self.state.inflight = inflight;
    }

    /// Encodes one PUBLISH for this client. Returns false when the client cannot take it (too large).
    fn encode_publish(&mut self, d: &Delivery, packet_id: Option<PacketId>, dup: bool, now: Instant) -> bool {
        let message = &d.message;
        let v5 = self.version.is_v5();
        let mut topic = message.topic.clone();
        let aliases_before = self.extras.as_ref().map_or(0, |e| e.aliases.outbound.len());
        let alias = !dup && self.client_topic_alias_max > 0;
        // MQTT 5 properties to send: those published (nearly always none), with this delivery's own.
        let own = v5
            && (alias
                || message.expires_at.is_some()
                || !d.subscription_ids.is_empty()
                || !message.properties.is_unset());
        let properties = if !own {
            Sparse::unset()
        } else {
            // Properties of this delivery's own, in this thread's spare box.
            let mut p = SPARE_PROPERTIES.take();
            p.clone_from(&message.properties);
            p.message_expiry_interval = message.remaining_expiry(now);
            p.subscription_identifiers.clone_from(&d.subscription_ids);
            if alias {
                self.apply_alias(&mut topic, &mut p);
            }
            p
        };
        let publish = Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            payload: message.payload.clone(),
            properties,
        };
        let packet = Packet::Publish(publish);
        if v5 {
            match encoded_len(&packet, self.version) {
                Ok(len) if len <= self.client_max_packet_size as usize => {}
                _ => {
                    // The client never sees this PUBLISH: forget the alias it would have established.
                    if let Some(extras) = self.extras.as_mut()
                        && extras.aliases.outbound.len() > aliases_before
                    {
                        extras.aliases.outbound.remove(&message.topic);
                    }
                    return false;
                }
            }
        }
        self.send(&packet);
        if own && let Packet::Publish(mut publish) = packet {
            // Emptied: the spare keeps no message's strings (nor the read buffer they are slices of) alive.
            publish.properties.clear();
            SPARE_PROPERTIES.set(publish.properties);
        }
        let stats = &self.broker.stats;
        add(&stats.publish_sent, 1);
        add(&stats.publish_bytes_sent, message.payload.len() as u64);
        true
    }

    /// Uses or establishes an outbound topic alias, within the client's Topic Alias Maximum.
    fn apply_alias(&mut self, topic: &mut TopicName, properties: &mut Sparse<PublishProperties>) {
        let aliases = &mut self.rest.extras.get_or_insert_with(Box::default).aliases;
        if let Some(&alias) = aliases.outbound.get(topic) {
            properties.topic_alias = Some(alias);
            *topic = TopicName::alias_only();
            return;
        }
        let next = aliases.outbound.len() + 1;
        if next <= usize::from(self.rest.client_topic_alias_max)
            && let Ok(alias) = u16::try_from(next)
        {
            aliases.outbound.insert(topic.detached(), alias);
            properties.topic_alias = Some(alias);
        }
    }
}
