//! The broker's shared state and the publish path: retained messages, matching, and queueing to sessions.

use crate::message::{Delivery, Message};
use crate::options::ServerOptions;
use crate::registry::Registry;
use crate::retained::Retained;
use crate::session::{Enqueued, PendingWill, SessionState};
use crate::stats::{Stats, add};
use crate::subscriptions::{Match, Subscriptions};
use corvid_protocol::{PublishProperties, QoS, Will};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State shared by every task of one server.
pub(crate) struct Broker {
    pub(crate) options: ServerOptions,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) retained: Retained,
    pub(crate) registry: Registry,
    pub(crate) stats: Stats,
    /// Cancelled when the server stops.
    pub(crate) shutdown: CancellationToken,
    /// Owns every connection task, so stop can wait for them.
    pub(crate) tasks: TaskTracker,
    pub(crate) started: Instant,
    next_id: AtomicU64,
}

thread_local! {
    /// Reused buffer of matches, so routing a message allocates nothing here.
    static MATCHES: RefCell<Vec<Match>> = const { RefCell::new(Vec::new()) };
}

impl Broker {
    pub(crate) fn new(options: ServerOptions) -> Self {
        Self {
            options,
            subscriptions: Subscriptions::default(),
            retained: Retained::default(),
            registry: Registry::default(),
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A number unique for this broker: session ids and connection generations.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes `message`: updates the retained store, then queues it for every matching session. `origin` is the
    /// publishing session, for No Local. Returns how many sessions it was queued for.
    pub(crate) fn publish(&self, message: Message, origin: Option<u64>) -> usize {
        let message = Arc::new(message);
        if message.retain && self.options.limits.retain_available {
            self.retained.set(message.clone());
        }
        self.route(&message, origin)
    }

    fn route(&self, message: &Arc<Message>, origin: Option<u64>) -> usize {
        MATCHES.with(|cell| {
            let Ok(mut matches) = cell.try_borrow_mut() else {
                // Re-entered from inside a route on this thread: use a fresh buffer.
                let mut fresh = Vec::new();
                return self.route_into(message, origin, &mut fresh);
            };
            let n = self.route_into(message, origin, &mut matches);
            matches.clear();
            n
        })
    }

    fn route_into(
        &self,
        message: &Arc<Message>,
        origin: Option<u64>,
        matches: &mut Vec<Match>,
    ) -> usize {
        self.subscriptions.matches(&message.topic, matches);
        if let Some(origin) = origin {
            matches.retain(|m| !(m.options.no_local && m.session.id == origin));
        }
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| (m.shared, m.session.id));
        }
        let mut delivered = 0;
        let mut i = 0;
        while i < matches.len() {
            let first = &matches[i];
            let mut end = i + 1;
            if !first.shared {
                while end < matches.len()
                    && !matches[end].shared
                    && matches[end].session.id == first.session.id
                {
                    end += 1;
                }
            }
            let group = &matches[i..end];
            let granted = group
                .iter()
                .map(|m| m.options.qos)
                .max()
                .unwrap_or(QoS::AtMostOnce);
            let qos = message.qos.min(granted);
            let retain = message.retain && group.iter().any(|m| m.options.retain_as_published);
            let subscription_ids = group.iter().filter_map(|m| m.subscription_id).collect();
            let session = &first.session;
            // An offline persistent session keeps QoS 1 and 2 messages only.
            if qos != QoS::AtMostOnce || session.is_online() {
                let delivery = Delivery {
                    message: message.clone(),
                    qos,
                    retain,
                    subscription_ids,
                };
                if session.enqueue(delivery) != Enqueued::Queued {
                    add(&self.stats.publish_dropped, 1);
                }
                delivered += 1;
            }
            i = end;
        }
        delivered
    }

    /// Removes every subscription of a session that ended.
    pub(crate) fn end_session(&self, state: SessionState) {
        for filter in state.subscriptions.keys() {
            self.subscriptions.unsubscribe(filter, state.shared.id);
        }
        state.shared.clear();
    }

    /// Publishes a will message.
    pub(crate) fn publish_will(&self, pending: PendingWill) {
        let PendingWill {
            will, publisher, ..
        } = pending;
        self.publish(will_message(will, publisher), None);
    }

    /// Removes expired sessions and publishes wills that are due.
    pub(crate) fn sweep(&self, now: Instant) {
        let swept = self.registry.sweep(now);
        add(&self.stats.clients_expired, swept.expired.len() as u64);
        for state in swept.expired {
            self.end_session(state);
        }
        for will in swept.wills {
            self.publish_will(will);
        }
    }
}

/// The application message a will becomes.
pub(crate) fn will_message(will: Will, publisher: corvid_protocol::ByteString) -> Message {
    let p = will.properties;
    let properties = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        ..PublishProperties::default()
    };
    let mut message = Message {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties,
        publisher: Some(publisher),
        expires_at: None,
    };
    message.stamp_expiry(Instant::now());
    message
}
