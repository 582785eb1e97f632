//! The broker's shared state and the publish path: retained messages, matching, and queueing to sessions.

use crate::events::{DropReason, Event};
use crate::hooks::{DeliveryContext, PublishContext, PublishDecision};
use crate::items::SessionItems;
use crate::message::{Delivery, Message};
use crate::options::ServerOptions;
use crate::registry::Registry;
use crate::retained::Retained;
use crate::session::{Enqueued, PendingWill, SessionShared, SessionState};
use crate::stats::{Stats, add};
use crate::store::persistent::{SessionOp, StoredMessage, StoredMessageState};
use crate::store::writer::{Durable, Ticket};
use crate::subscriptions::{Match, Subscriber, Subscriptions};
use corvid_protocol::{ByteString, PublishProperties, QoS, RetainHandling, SubscriptionOptions, TopicFilter, Will};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State shared by every task of one server.
pub(crate) struct Broker {
    pub(crate) options: ServerOptions,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) retained: Retained,
    pub(crate) registry: Registry,
    pub(crate) stats: Stats,
    /// Cancelled when the server stops (connections hear it from the registry, see [`Self::stop`]).
    pub(crate) shutdown: CancellationToken,
    /// Owns every connection task, so stop can wait for them.
    pub(crate) tasks: TaskTracker,
    pub(crate) started: Instant,
    pub(crate) events: tokio::sync::broadcast::Sender<Event>,
    /// Where retained changes go, when a retained store is configured.
    pub(crate) retained_writer: Option<crate::store::retained_writer::RetainedWriter>,
    /// The durable store of sessions and retained messages, if there is one.
    pub(crate) durable: Option<Arc<Durable>>,
    /// False while draining: new connections are refused with "server unavailable".
    pub(crate) accepting: std::sync::atomic::AtomicBool,
    next_id: AtomicU64,
}

/// Reused routing buffers: the matches of a topic, and the deliveries made of them.
type RouteBuffers = (Vec<Match>, Vec<(Arc<SessionShared>, Delivery)>);

thread_local! {
    /// Reused buffers, so routing a message allocates nothing here.
    static ROUTE: RefCell<RouteBuffers> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// What publishing a message did.
pub(crate) struct Published {
    /// How many sessions it was queued for.
    pub(crate) delivered: usize,
    /// Completes when the message is durable, when the publisher must wait for that.
    pub(crate) ticket: Option<Ticket>,
}

/// The store record of a delivery.
fn stored(delivery: &Delivery, seq: u64) -> StoredMessage {
    StoredMessage {
        seq,
        message: delivery.message.clone(),
        qos: delivery.qos,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.clone(),
        state: StoredMessageState::Queued,
    }
}

/// The store operation for a retained message (an empty payload deletes).
pub(crate) fn retained_op(message: &Arc<Message>) -> SessionOp {
    if message.payload.is_empty() {
        SessionOp::DeleteRetained(message.topic.clone())
    } else {
        SessionOp::SetRetained(message.clone())
    }
}

impl Broker {
    pub(crate) fn new(
        options: ServerOptions,
        retained_writer: Option<crate::store::retained_writer::RetainedWriter>,
        durable: Option<Arc<Durable>>,
    ) -> Self {
        Self {
            retained_writer,
            durable,
            events: tokio::sync::broadcast::channel(options.event_capacity.max(1)).0,
            options,
            subscriptions: Subscriptions::default(),
            retained: Retained::default(),
            registry: Registry::default(),
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: Instant::now(),
            accepting: std::sync::atomic::AtomicBool::new(true),
            next_id: AtomicU64::new(1),
        }
    }

    /// A number unique for this broker: session ids and connection generations.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Tells every task to stop: the listeners and background tasks through the shutdown token, the connections
    /// through the registry.
    pub(crate) fn stop(&self) {
        self.shutdown.cancel();
        self.registry.stop_all();
    }

    /// Milliseconds since the broker started, wrapping after 49 days: the clock of the keep-alive sweep, coarse
    /// and small enough for an atomic in every connection's control block.
    pub(crate) fn millis(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    /// Sends an event to observers, building it only if somebody listens.
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event());
        }
    }

    /// Runs the publish interceptor, if any, on a message from `client_id` (or the process).
    pub(crate) async fn intercept(
        &self,
        client_id: Option<&ByteString>,
        items: &SessionItems,
        message: Message,
    ) -> (Message, PublishDecision) {
        let Some(hook) = &self.options.hooks.publish_interceptor else {
            return (message, PublishDecision::Accept);
        };
        let ctx = PublishContext {
            client_id: client_id.cloned(),
            message,
            session_items: items.clone(),
            decision: PublishDecision::Accept,
        };
        let ctx = hook.run(ctx).await;
        (ctx.message, ctx.decision)
    }

    /// Intercepts, then publishes; `extra_ops` join the durable batch of the message (e.g. the inbound QoS 2 packet
    /// identifier). Returns the decision and what publishing did.
    pub(crate) async fn intercept_and_publish(
        &self,
        client_id: Option<&ByteString>,
        items: &SessionItems,
        message: Message,
        origin: Option<u64>,
        extra_ops: Vec<SessionOp>,
    ) -> (PublishDecision, Published) {
        let (message, decision) = self.intercept(client_id, items, message).await;
        match decision {
            PublishDecision::Accept => (decision, self.publish_with(message, origin, extra_ops)),
            _ => {
                let ticket = self.durable.as_ref().and_then(|d| d.submit(extra_ops, true));
                (decision, Published { delivered: 0, ticket })
            }
        }
    }

    /// Publishes `message` as it is, without waiting for durability. Returns how many sessions it was queued for.
    pub(crate) fn publish(&self, message: Message, origin: Option<u64>) -> usize {
        self.publish_with(message, origin, Vec::new()).delivered
    }

    /// Publishes `message` as it is: updates the retained messages, then queues it for every matching session.
    /// `origin` is the publishing session, for No Local. The operations for the durable store (the message for
    /// each durable session, the retained change, `extra_ops`) are handed to the writer before any subscriber can
    /// see the message, so an acknowledgement can never overtake the message in the store.
    pub(crate) fn publish_with(&self, message: Message, origin: Option<u64>, extra_ops: Vec<SessionOp>) -> Published {
        let message = Arc::new(message);
        self.emit(|| Event::MessageReceived { client_id: message.publisher.clone(), message: message.clone() });
        let mut ops = extra_ops;
        if message.retain && self.options.limits.retain_available {
            self.set_retained(Arc::new(message.detached()));
            // `$SYS` topics are the broker's own, rebuilt at every start.
            if self.durable.is_some() && !message.topic.starts_with("$SYS/") {
                ops.push(retained_op(&message));
            }
        }
        let published = ROUTE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => {
                let (matches, targets) = &mut *buffers;
                let published = self.route(&message, origin, matches, targets, ops);
                matches.clear();
                targets.clear();
                published
            }
            // Re-entered on this thread: use fresh buffers.
            Err(_) => self.route(&message, origin, &mut Vec::new(), &mut Vec::new(), ops),
        });
        if published.delivered == 0 {
            self.emit(|| Event::MessageNotConsumed { client_id: message.publisher.clone(), message: message.clone() });
        }
        published
    }

    fn route(
        &self,
        message: &Arc<Message>,
        origin: Option<u64>,
        matches: &mut Vec<Match>,
        targets: &mut Vec<(Arc<SessionShared>, Delivery)>,
        mut ops: Vec<SessionOp>,
    ) -> Published {
        self.subscriptions.matches(&message.topic, matches);
        if let Some(origin) = origin {
            matches.retain(|m| !(m.options.no_local && m.session.id == origin));
        }
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| (m.shared, m.session.id));
        }
        let mut i = 0;
        while i < matches.len() {
            let first = &matches[i];
            let mut end = i + 1;
            if !first.shared {
                while end < matches.len() && !matches[end].shared && matches[end].session.id == first.session.id {
                    end += 1;
                }
            }
            let group = &matches[i..end];
            let granted = group.iter().map(|m| m.options.qos).max().unwrap_or(QoS::AtMostOnce);
            let qos = message.qos.min(granted);
            let session = &first.session;
            // An offline persistent session keeps QoS 1 and 2 messages only.
            let wanted = qos != QoS::AtMostOnce || session.is_online();
            let allowed = || match &self.options.hooks.delivery_filter {
                Some(filter) => {
                    let session_items = &session.items();
                    filter(&DeliveryContext { client_id: &session.client_id, session_items, message })
                }
                None => true,
            };
            if wanted && allowed() {
                let retain = message.retain && group.iter().any(|m| m.options.retain_as_published);
                let subscription_ids = group.iter().filter_map(|m| m.subscription_id).collect();
                let mut delivery = Delivery { message: message.clone(), qos, retain, subscription_ids, seq: None };
                if qos != QoS::AtMostOnce && session.is_durable() && self.durable.is_some() {
                    let seq = session.next_seq();
                    delivery.seq = Some(seq);
                    ops.push(SessionOp::PutMessage {
                        client_id: session.client_id.clone(),
                        message: stored(&delivery, seq),
                    });
                }
                targets.push((session.clone(), delivery));
            }
            i = end;
        }
        let ticket = self.durable.as_ref().and_then(|d| d.submit(ops, true));
        let delivered = targets.len();
        let mut deletes = Vec::new();
        for (session, delivery) in targets.drain(..) {
            let dropped = match session.enqueue(delivery) {
                Enqueued::Queued => continue,
                Enqueued::DroppedOldest(d) | Enqueued::DroppedNew(d) => d,
            };
            add(&self.stats.publish_dropped, 1);
            if let Some(seq) = dropped.seq {
                deletes.push(SessionOp::DeleteMessage { client_id: session.client_id.clone(), seq });
            }
            self.emit(|| Event::MessageDropped {
                client_id: session.client_id.clone(),
                message: dropped.message.clone(),
                reason: DropReason::QueueFull,
            });
        }
        self.store_ops(deletes);
        Published { delivered, ticket }
    }

    /// Hands operations to the durable store without waiting (nothing happens without a store).
    pub(crate) fn store_ops(&self, ops: Vec<SessionOp>) {
        if let Some(durable) = &self.durable {
            durable.submit(ops, false);
        }
    }

    /// Writes a durable session's own record: expiry, disconnect time, subscriptions.
    pub(crate) fn persist_session(&self, session: &SessionShared, disconnected_at: Option<SystemTime>) {
        if self.durable.is_none() || !session.is_durable() {
            return;
        }
        session.mark_stored();
        let subscriptions =
            session.subscriptions.lock().iter().map(|(f, (o, id))| (f.clone(), *o, *id)).collect::<Vec<_>>();
        self.store_ops(vec![SessionOp::PutSession {
            client_id: session.client_id.clone(),
            expiry_interval: session.expiry_interval(),
            disconnected_at,
            subscriptions,
        }]);
    }

    /// Removes every subscription of a session that ended, and its stored copy.
    pub(crate) fn end_session(&self, state: SessionState) {
        let filters: Vec<TopicFilter> = state.shared.subscriptions.lock().drain().map(|(f, _)| f).collect();
        for filter in &filters {
            self.subscriptions.unsubscribe(filter, state.shared.id);
        }
        state.shared.clear();
        if state.shared.was_stored() {
            self.store_ops(vec![SessionOp::DeleteSession { client_id: state.shared.client_id.clone() }]);
        }
        self.emit(|| Event::SessionDeleted { client_id: state.shared.client_id.clone() });
    }

    /// Adds or replaces a subscription of `session`, and queues the retained messages its retain handling asks for
    /// (none for shared subscriptions). Returns whether it existed.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<SessionShared>,
        filter: TopicFilter,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) -> bool {
        let subscriber = Subscriber { session: session.clone(), options, subscription_id };
        let existed = self.subscriptions.subscribe(&filter, subscriber);
        let send_retained = filter.shared().is_none()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            // The delivery filter (the receive-side ACL) sees retained messages too.
            let delivery_filter = self.options.hooks.delivery_filter.as_ref();
            let items = delivery_filter.map(|_| session.items());
            for message in self.retained.matching(&filter, Instant::now()) {
                if let (Some(allowed), Some(session_items)) = (delivery_filter, &items)
                    && !allowed(&DeliveryContext { client_id: &session.client_id, session_items, message: &message })
                {
                    continue;
                }
                session.enqueue_unbounded(Delivery {
                    qos: message.qos.min(options.qos),
                    retain: true,
                    subscription_ids: subscription_id.into_iter().collect(),
                    message,
                    seq: None,
                });
            }
        }
        self.emit(|| Event::Subscribed { client_id: session.client_id.clone(), topic_filter: filter.clone(), options });
        session.subscriptions.lock().insert(filter, (options, subscription_id));
        self.persist_session(session, None);
        existed
    }

    /// Removes a subscription of `session`. Returns whether it existed.
    pub(crate) fn unsubscribe(&self, session: &SessionShared, filter: &TopicFilter) -> bool {
        let existed = session.subscriptions.lock().remove(filter).is_some();
        self.subscriptions.unsubscribe(filter, session.id);
        if existed {
            self.emit(|| Event::Unsubscribed { client_id: session.client_id.clone(), topic_filter: filter.clone() });
            self.persist_session(session, None);
        }
        existed
    }

    /// Publishes a will message, through the publish interceptor.
    pub(crate) async fn publish_will(&self, will: Will, publisher: ByteString, items: &SessionItems) {
        let message = will_message(will, publisher.clone());
        self.intercept_and_publish(Some(&publisher), items, message, None, Vec::new()).await;
    }

    /// Removes expired sessions and publishes wills that are due.
    pub(crate) async fn sweep(&self, now: Instant) {
        let swept = self.registry.sweep(now);
        add(&self.stats.clients_expired, swept.expired.len() as u64);
        for state in swept.expired {
            self.end_session(state);
        }
        for PendingWill { will, publisher, items, .. } in swept.wills {
            self.publish_will(will, publisher, &items).await;
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
