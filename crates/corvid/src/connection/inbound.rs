//! Packets from the client: PUBLISH and its acknowledgements, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT (AUTH:
//! see `auth`).

use super::{CloseReason, Connection, refusal};
use crate::events::Event;
use crate::hooks::{PublishDecision, SubscriptionContext, SubscriptionDecision, UnsubscriptionContext};
use crate::message::Message;
use crate::session::{Inflight, OutboundState};
use crate::stats::add;
use crate::store::persistent::{SessionOp, StoredMessageState};
use crate::store::writer::Ticket;
use corvid_protocol::{
    AckProperties, Packet, PacketId, PacketType, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Handles the packets that may run hooks (PUBLISH through an interceptor, SUBSCRIBE, UNSUBSCRIBE, AUTH). The
    /// caller boxes this future, so the connection's own future stays small.
    pub(super) async fn handle_hooked_packet(&mut self, packet: Packet) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish).await,
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(unsubscribe).await;
                Ok(())
            }
            // Boxed: rare, and its hook context would otherwise grow the future every hooked packet allocates.
            Packet::Auth(auth) => Box::pin(self.on_auth(auth)).await,
            other => self.handle_control_packet(other),
        }
    }

    /// Handles every other packet, without waiting.
    pub(super) fn handle_control_packet(&mut self, packet: Packet) -> Result<(), CloseReason> {
        match packet {
            Packet::PubAck(ack) => {
                self.complete(&ack, OutboundState::AwaitingAck, QoS::AtLeastOnce);
                Ok(())
            }
            Packet::PubRec(rec) => {
                self.on_pubrec(rec);
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.complete(&comp, OutboundState::AwaitingComp, QoS::ExactlyOnce);
                Ok(())
            }
            Packet::PubRel(rel) => {
                let mut comp = PubResponse::new(rel.packet_id);
                let id = rel.packet_id.get();
                if self.state.incoming_qos2.remove(&id) {
                    if self.state.shared.is_durable() {
                        let client_id = self.client_id().clone();
                        self.broker.store_ops(vec![SessionOp::RemoveIncoming { client_id, packet_id: id }]);
                    }
                } else if self.version.is_v5() {
                    comp.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.acknowledge(None, Packet::PubComp(comp));
                Ok(())
            }
            Packet::PingReq => {
                self.acknowledge(None, Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => {
                if let Some(interval) = d.properties.session_expiry_interval {
                    if self.state.shared.expiry_interval() == 0 && interval != 0 {
                        return Err(self.violation(ReasonCode::ProtocolError, "session expiry set after 0 in CONNECT"));
                    }
                    let interval = interval.min(self.broker.options.limits.max_session_expiry_interval);
                    self.state.shared.set_expiry_interval(interval, self.broker.durable.is_some());
                }
                if d.reason_code == ReasonCode::DisconnectWithWillMessage {
                    Err(CloseReason::ClientDisconnectWithWill)
                } else {
                    Err(CloseReason::ClientDisconnect)
                }
            }
            Packet::Connect(_) => Err(self.violation(ReasonCode::ProtocolError, "second CONNECT")),
            _ => Err(self.violation(ReasonCode::ProtocolError, "packet only a server sends")),
        }
    }

    /// Queues DISCONNECT with `code` (MQTT 5) and gives the close reason.
    pub(super) fn violation(&mut self, code: ReasonCode, why: &str) -> CloseReason {
        tracing::debug!(client_id = %self.client_id(), remote = %self.remote(), code = %code, why, "closing connection");
        self.send_disconnect(code, Some(why.to_owned()));
        CloseReason::ProtocolViolation(code)
    }

    /// Handles a PUBLISH. The common case (no publish interceptor, room in the durable store) runs without an
    /// `.await`, so the message is not moved through nested futures.
    pub(super) async fn on_publish(&mut self, publish: Publish) -> Result<(), CloseReason> {
        let Some((message, ack, extra)) = self.accept_publish(publish)? else { return Ok(()) };
        let (code, ticket) = if self.broker.options.hooks.publish_interceptor.is_some() {
            if let Some(durable) = &self.broker.durable {
                durable.wait_for_room().await;
            }
            let shared = &self.state.shared;
            let (decision, published) = self
                .broker
                .intercept_and_publish(Some(self.client_id()), &shared.items(), message, Some(shared.id), extra)
                .await;
            let code = match decision {
                // PUBACK and PUBREC take the same codes.
                PublishDecision::Refuse(code) => {
                    code.or_if_invalid_in(PacketType::PubAck, ReasonCode::UnspecifiedError)
                }
                _ => ReasonCode::Success,
            };
            self.wait_for(published.wait_for);
            (code, published.ticket)
        } else {
            if let Some(durable) = &self.broker.durable
                && durable.is_full()
            {
                durable.wait_for_room().await;
            }
            let published = self.broker.publish_with(message, Some(self.state.shared.id), extra);
            self.wait_for(published.wait_for);
            (ReasonCode::Success, published.ticket)
        };
        self.finish_publish(ack, code, ticket);
        Ok(())
    }

    /// Notes a subscriber this client outran, for the connection to wait for before it reads more (backpressure,
    /// as on the direct path).
    pub(super) fn wait_for(&mut self, congested: Option<std::sync::Arc<crate::session::SessionShared>>) {
        if let Some(congested) = congested {
            let generation = self.broker.subscriptions.generation();
            self.route_cache.get_or_insert_with(|| Box::new(crate::route::RouteCache::new(generation))).congested =
                Some(congested);
        }
    }

    /// Whether a PUBLISH can be handled without waiting: no publish interceptor, room in the durable store.
    pub(super) fn publish_is_direct(&self) -> bool {
        self.broker.options.hooks.publish_interceptor.is_none()
            && self.broker.durable.as_ref().is_none_or(|d| !d.is_full())
    }

    /// Handles a PUBLISH when [`Self::publish_is_direct`]. Returns whether the client outran a subscriber: its
    /// deliveries are queued, and the connection should decode nothing more until that subscriber catches up
    /// (`RouteCache::congested` names it).
    pub(super) fn on_publish_direct(&mut self, publish: Publish) -> Result<bool, CloseReason> {
        let Some((message, ack, extra)) = self.accept_publish(publish)? else { return Ok(false) };
        let origin = self.state.shared.id;
        let published = self.rest.broker.publish_batched(message, origin, extra, &mut self.route_cache);
        self.finish_publish(ack, ReasonCode::Success, published.ticket);
        let congested = published.wait_for.is_some();
        self.wait_for(published.wait_for);
        Ok(congested)
    }

    /// Checks a PUBLISH and turns it into a message to route, with the acknowledgement it needs and the store
    /// operations that go with it. `None` when there is nothing to route (a resent QoS 2 message, `$SYS`).
    fn accept_publish(&mut self, mut publish: Publish) -> Result<Option<AcceptedPublish>, CloseReason> {
        let stats = &self.broker.stats;
        add(&stats.publish_received, 1);
        add(&stats.publish_bytes_received, publish.payload.len() as u64);
        let limits = &self.rest.broker.options.limits;
        // Topic alias (MQTT 5.0 section 3.3.2.3.4).
        if let Some(alias) = publish.properties.set_mut().and_then(|p| p.topic_alias.take()) {
            if alias > limits.max_topic_alias {
                return Err(self.violation(ReasonCode::TopicAliasInvalid, "topic alias above the maximum"));
            }
            let aliases = &mut self.rest.extras.get_or_insert_with(Box::default).aliases;
            if publish.topic.is_empty() {
                match aliases.inbound.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return Err(self.violation(ReasonCode::ProtocolError, "unknown topic alias")),
                }
            } else {
                aliases.inbound.insert(alias, publish.topic.detached());
            }
        }
        if publish.retain && !limits.retain_available {
            return Err(self.violation(ReasonCode::RetainNotSupported, "retain not supported"));
        }
        let mut extra = Vec::new();
        let ack = match (publish.qos, publish.packet_id) {
            (QoS::ExactlyOnce, Some(id)) => {
                if self.state.incoming_qos2.contains(&id.get()) {
                    // A resent PUBLISH whose PUBREL has not come yet: acknowledge again, deliver nothing.
                    self.acknowledge(None, Packet::PubRec(PubResponse::new(id)));
                    return Ok(None);
                }
                if self.state.incoming_qos2.len() >= usize::from(limits.max_inflight) {
                    return Err(self.violation(ReasonCode::ReceiveMaximumExceeded, "receive maximum exceeded"));
                }
                if self.state.shared.is_durable() {
                    extra.push(SessionOp::AddIncoming { client_id: self.client_id().clone(), packet_id: id.get() });
                }
                Ack::Pubrec(id)
            }
            (QoS::AtLeastOnce, Some(id)) => Ack::Puback(id),
            _ => Ack::Nothing,
        };
        if publish.topic.starts_with("$SYS") {
            // Clients do not publish the broker's own topics: acknowledged, not routed.
            self.finish_publish(ack, ReasonCode::Success, None);
            return Ok(None);
        }
        let mut properties = publish.properties;
        if let Some(p) = properties.set_mut() {
            p.subscription_identifiers.clear();
        }
        // A set that held only the topic alias is shared by every delivery without a box.
        properties.free_if_unset();
        let mut message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            publisher: Some(self.client_id().clone()),
            expires_at: None,
        };
        message.stamp_expiry_now();
        Ok(Some((message, ack, extra)))
    }

    /// Sends the PUBACK / PUBREC of a routed message (after `ticket`, if any).
    fn finish_publish(&mut self, ack: Ack, code: ReasonCode, ticket: Option<Ticket>) {
        match ack {
            Ack::Pubrec(id) => {
                // A refused QoS 2 message is complete at PUBREC (MQTT 5.0 section 4.3.3): no PUBREL follows.
                if !code.is_error() {
                    self.state.incoming_qos2.insert(id.get());
                }
                let rec = Packet::PubRec(self.response(id, code));
                self.acknowledge(ticket, rec);
            }
            Ack::Puback(id) => {
                let ack = Packet::PubAck(self.response(id, code));
                self.acknowledge(ticket, ack);
            }
            Ack::Nothing => {}
        }
    }

    /// A PUBACK / PUBREC with `code` (3.x clients always see success).
    fn response(&self, packet_id: PacketId, code: ReasonCode) -> PubResponse {
        let mut response = PubResponse::new(packet_id);
        if self.version.is_v5() {
            response.reason_code = code;
        }
        response
    }

    /// Removes an acknowledged outbound message.
    fn complete(&mut self, ack: &PubResponse, expected: OutboundState, qos: QoS) {
        let found = self
            .state
            .inflight
            .iter()
            .position(|i| i.packet_id == ack.packet_id && i.state == expected && i.delivery.qos == qos);
        if let Some(done) = found.and_then(|index| self.state.inflight.remove(index)) {
            if let Some(seq) = done.delivery.seq {
                self.broker.store_ops(vec![SessionOp::DeleteMessage { client_id: self.client_id().clone(), seq }]);
            }
            self.broker.emit(|| Event::DeliveryAcknowledged {
                client_id: self.client_id().clone(),
                message: done.delivery.message.clone(),
            });
        }
    }

    fn on_pubrec(&mut self, rec: PubResponse) {
        let found = self.rest.state.inflight.iter_mut().find(|i| i.packet_id == rec.packet_id);
        let mut rel = PubResponse::new(rec.packet_id);
        match found {
            Some(inflight) if rec.reason_code.is_error() => {
                // The receiver refused the message: it is complete (MQTT 5.0 section 4.3.3).
                let id = inflight.packet_id;
                if let Some(seq) = inflight.delivery.seq {
                    self.broker.store_ops(vec![SessionOp::DeleteMessage { client_id: self.client_id().clone(), seq }]);
                }
                self.state.inflight.retain(|i| i.packet_id != id);
                return;
            }
            Some(inflight) => {
                inflight.state = OutboundState::AwaitingComp;
                if let Some(seq) = inflight.delivery.seq {
                    let state = StoredMessageState::Released(inflight.packet_id);
                    let client_id = self.client_id().clone();
                    self.broker.store_ops(vec![SessionOp::SetMessageState { client_id, seq, state }]);
                }
            }
            None if self.rest.version.is_v5() => rel.reason_code = ReasonCode::PacketIdentifierNotFound,
            None => {}
        }
        self.acknowledge(None, Packet::PubRel(rel));
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), CloseReason> {
        let subscription_id = subscribe.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut close = None;
        for (filter, mut options) in subscribe.filters {
            if let Some(hook) = &self.broker.options.hooks.subscription_interceptor {
                let ctx = SubscriptionContext {
                    client_id: self.client_id().clone(),
                    topic_filter: filter.clone(),
                    options,
                    session_items: self.state.shared.items(),
                    decision: SubscriptionDecision::Accept,
                };
                let ctx = hook.run(ctx).await;
                match ctx.decision {
                    SubscriptionDecision::Accept => options = ctx.options,
                    SubscriptionDecision::Refuse(code) => {
                        reason_codes.push(refusal(code, PacketType::SubAck));
                        continue;
                    }
                    SubscriptionDecision::RefuseAndDisconnect(code) => {
                        reason_codes.push(refusal(code, PacketType::SubAck));
                        close.get_or_insert(refusal(code, PacketType::Disconnect));
                        continue;
                    }
                }
            }
            self.broker.subscribe(&self.state.shared, filter, options, subscription_id);
            reason_codes.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
        }
        let suback = SubAck { packet_id: subscribe.packet_id, reason_codes, properties: AckProperties::default() };
        self.acknowledge(None, Packet::SubAck(suback));
        if let Some(code) = close {
            return Err(self.violation(code, "subscription refused"));
        }
        Ok(())
    }

    async fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in unsubscribe.filters {
            if let Some(hook) = &self.broker.options.hooks.unsubscription_interceptor {
                let ctx = UnsubscriptionContext {
                    client_id: self.client_id().clone(),
                    topic_filter: filter.clone(),
                    session_items: self.state.shared.items(),
                    decision: SubscriptionDecision::Accept,
                };
                let ctx = hook.run(ctx).await;
                if let SubscriptionDecision::Refuse(code) | SubscriptionDecision::RefuseAndDisconnect(code) =
                    ctx.decision
                {
                    reason_codes.push(refusal(code, PacketType::UnsubAck));
                    continue;
                }
            }
            let existed = self.broker.unsubscribe(&self.state.shared, &filter);
            reason_codes.push(if existed { ReasonCode::Success } else { ReasonCode::NoSubscriptionExisted });
        }
        let unsuback =
            UnsubAck { packet_id: unsubscribe.packet_id, reason_codes, properties: AckProperties::default() };
        self.acknowledge(None, Packet::UnsubAck(unsuback));
    }

    /// Records an outbound QoS 1/2 message as inflight.
    pub(super) fn track(&mut self, inflight: Inflight) {
        self.state.inflight.push_back(inflight);
    }
}

/// The acknowledgement an inbound PUBLISH needs.
#[derive(Clone, Copy)]
enum Ack {
    /// QoS 0: none.
    Nothing,
    /// QoS 1: PUBACK.
    Puback(PacketId),
    /// QoS 2: PUBREC.
    Pubrec(PacketId),
}

/// A checked PUBLISH: the message to route, its acknowledgement, and store operations that go with it.
type AcceptedPublish = (Message, Ack, Vec<SessionOp>);
