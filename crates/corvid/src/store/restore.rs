//! Rebuilding the broker's state from what a durable store loaded: retained messages, sessions with their user
//! names, subscriptions, queued and inflight messages, and inbound QoS 2 packet identifiers. The session restorer
//! hook gives each restored session its items.

use crate::broker::Broker;
use crate::hooks::RestoreContext;
use crate::message::Delivery;
use crate::session::{Inflight, OutboundState, SessionShared, SessionState};
use crate::store::persistent::{Loaded, SessionOp, StoredMessageState};
use crate::subscriptions::Subscriber;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Loads `loaded` into `broker`. Sessions that expired while the broker was down are deleted from the store.
/// Returns how many sessions and retained messages were restored.
pub(crate) fn restore(broker: &Broker, loaded: Loaded) -> (usize, usize) {
    let retained = loaded.retained.len();
    for mut message in loaded.retained {
        message.retain = true;
        broker.retained.set(Arc::new(message));
    }
    let now = SystemTime::now();
    let limits = &broker.options.limits;
    let mut sessions = 0;
    let mut expired = Vec::new();
    for stored in loaded.sessions {
        // A session whose client was connected at the crash counts as disconnected now.
        let disconnected_at = stored.disconnected_at.unwrap_or(now);
        let expires_at = (stored.expiry_interval != u32::MAX)
            .then(|| disconnected_at + Duration::from_secs(u64::from(stored.expiry_interval)));
        let remaining = match expires_at {
            Some(t) => match t.duration_since(now) {
                Ok(left) if !left.is_zero() => Some(left),
                _ => {
                    expired.push(SessionOp::DeleteSession { client_id: stored.client_id });
                    continue;
                }
            },
            None => None,
        };
        let shared = Arc::new(SessionShared::new(
            broker.next_id(),
            stored.client_id.clone(),
            crate::items::ItemsSlot::default(),
            limits.max_pending_messages_per_client,
            limits.pending_overflow,
        ));
        shared.set_username(stored.username.clone());
        shared.set_expiry_interval(stored.expiry_interval, true);
        shared.mark_stored();
        // Before its subscriptions join the index: no message is matched to the session without its items.
        if let Some(restorer) = &broker.options.hooks.session_restorer {
            restorer(&RestoreContext {
                client_id: stored.client_id.clone(),
                username: stored.username,
                session_items: shared.items(),
            });
        }
        for (filter, options, subscription_id) in stored.subscriptions {
            let subscriber = Subscriber { session: shared.clone(), options, subscription_id };
            broker.subscriptions.subscribe(&filter, subscriber);
            shared.subscriptions.lock().insert(filter, (options, subscription_id));
        }
        let mut state = SessionState::new(shared.clone());
        let mut messages = stored.messages;
        messages.sort_by_key(|m| m.seq);
        for m in messages {
            shared.resume_seq_after(m.seq);
            let delivery = Delivery {
                message: m.message,
                qos: m.qos,
                retain: m.retain,
                subscription_ids: m.subscription_ids,
                seq: Some(m.seq),
            };
            match m.state {
                StoredMessageState::Queued => shared.enqueue_unbounded(delivery),
                StoredMessageState::Sent(packet_id) => {
                    state.inflight.push_back(Inflight { packet_id, delivery, state: OutboundState::AwaitingAck })
                }
                StoredMessageState::Released(packet_id) => {
                    state.inflight.push_back(Inflight { packet_id, delivery, state: OutboundState::AwaitingComp })
                }
            }
        }
        state.incoming_qos2.extend(stored.incoming_qos2);
        let expires_at = remaining.map(|left| Instant::now() + left);
        broker.registry.insert_offline(stored.client_id, state, expires_at, disconnected_at);
        sessions += 1;
    }
    broker.store_ops(expired);
    (sessions, retained)
}
