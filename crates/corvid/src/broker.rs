//! The broker's shared state and the publish path: retained messages, matching, and queueing to sessions.

use crate::events::{DropReason, Event};
use crate::hooks::{DeliveryContext, PublishContext, PublishDecision};
use crate::items::SessionItems;
use crate::message::{Delivery, Message};
use crate::options::ServerOptions;
use crate::registry::Registry;
use crate::retained::Retained;
use crate::route::{BATCH, RouteCache, Target};
use crate::session::{PendingWill, SessionShared, SessionState};
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
    /// [`Self::millis`] as of the keep-alive sweep's last tick (every 500 ms): a clock that costs one load.
    coarse_millis: std::sync::atomic::AtomicU32,
    pub(crate) events: tokio::sync::broadcast::Sender<Event>,
    /// Where retained changes go, when a retained store is configured.
    pub(crate) retained_writer: Option<crate::store::retained_writer::RetainedWriter>,
    /// The durable store of sessions and retained messages, if there is one.
    pub(crate) durable: Option<Arc<Durable>>,
    /// False while draining: new connections are refused with "server unavailable".
    pub(crate) accepting: std::sync::atomic::AtomicBool,
    /// Where idle connections wait without a task, when they are parked (see [`crate::parking`]).
    pub(crate) parking: Option<crate::parking::ParkingLot>,
    next_id: AtomicU64,
}

/// Reused routing buffers: the matches of a topic, and the targets made of them.
type RouteBuffers = (Vec<Match>, Vec<Target>);

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
    /// A subscriber (not the publisher's own session) whose queue this publish, or an earlier one of the same batch,
    /// filled past its high-water mark: a publishing connection waits for it before it reads more (see
    /// [`SessionShared::wait_for_room`]). In-process publishing does not wait.
    pub(crate) wait_for: Option<Arc<SessionShared>>,
}

/// Runs `f` with this thread's routing buffers (fresh ones when re-entered, e.g. by a hook that publishes); the
/// targets buffer is left empty.
fn with_route_buffers<R>(f: impl FnOnce(&mut Vec<Match>, &mut Vec<Target>) -> R) -> R {
    ROUTE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let (matches, targets) = &mut *buffers;
            let result = f(matches, targets);
            targets.clear();
            result
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// The store record of a delivery.
pub(crate) fn stored(delivery: &Delivery, seq: u64) -> StoredMessage {
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
        let parking = options.limits.park_idle_after.and_then(|_| {
            crate::parking::ParkingLot::new()
                .inspect_err(|error| tracing::warn!(%error, "idle connections will not be parked"))
                .ok()
        });
        Self {
            parking,
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
            coarse_millis: std::sync::atomic::AtomicU32::new(0),
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
        if let Some(lot) = &self.parking {
            lot.stop();
        }
    }

    /// Milliseconds since the broker started, wrapping after 49 days: the clock of the keep-alive sweep, coarse
    /// and small enough for an atomic in every connection's control block.
    pub(crate) fn millis(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    /// [`Self::millis`] up to one keep-alive sweep period (500 ms) old, for what needs no better: whether a
    /// connection has been idle for seconds.
    pub(crate) fn coarse_millis(&self) -> u32 {
        self.coarse_millis.load(Ordering::Relaxed)
    }

    /// Advances [`Self::coarse_millis`] to now, returning now.
    pub(crate) fn tick_coarse_millis(&self) -> u32 {
        let now = self.millis();
        self.coarse_millis.store(now, Ordering::Relaxed);
        now
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
                (decision, Published { delivered: 0, ticket, wait_for: None })
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
        let (message, ops) = self.received(message, extra_ops);
        let mut published = self.route(&message, origin, ops);
        if let Some(congested) = self.flush_routes(origin) {
            published.wait_for = Some(congested);
        }
        self.not_consumed(&message, &published);
        published
    }

    /// [`Self::publish_with`] for a connection's direct path: the targets come from the connection's `cache` when
    /// they can, and the deliveries wait in this thread's batch until the connection calls [`Self::flush_routes`]
    /// (before it awaits anything).
    pub(crate) fn publish_batched(
        &self,
        message: Message,
        origin: u64,
        extra_ops: Vec<SessionOp>,
        cache: &mut Option<Box<RouteCache>>,
    ) -> Published {
        let (message, ops) = self.received(message, extra_ops);
        // Read before resolving: targets resolved after a change are at worst labelled with the older generation,
        // and resolved again at the next message.
        let generation = self.subscriptions.generation();
        let cache = cache.get_or_insert_with(|| Box::new(RouteCache::new(generation)));
        let origin = Some(origin);
        let published = match cache.find(&message.topic, generation) {
            Some(index) => self.route_to(&message, cache.targets(index), ops, origin),
            None if cache.should_admit(&message.topic) => {
                let mut targets = Vec::new();
                let cacheable =
                    with_route_buffers(|matches, _| self.resolve(&message.topic, origin, matches, &mut targets));
                if cacheable {
                    let index = cache.admit(&message.topic, targets);
                    self.route_to(&message, cache.targets(index), ops, origin)
                } else {
                    self.route_to(&message, &targets, ops, origin)
                }
            }
            None => self.route(&message, origin, ops),
        };
        self.not_consumed(&message, &published);
        published
    }

    /// Resolves the message's topic into this thread's buffers and routes it (see [`Self::route_to`]).
    fn route(&self, message: &Arc<Message>, origin: Option<u64>, ops: Vec<SessionOp>) -> Published {
        with_route_buffers(|matches, targets| {
            self.resolve(&message.topic, origin, matches, targets);
            self.route_to(message, targets, ops, origin)
        })
    }

    /// What every published message goes through first: the event, and the retained messages (with the store
    /// operation for them).
    fn received(&self, message: Message, extra_ops: Vec<SessionOp>) -> (Arc<Message>, Vec<SessionOp>) {
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
        (message, ops)
    }

    fn not_consumed(&self, message: &Arc<Message>, published: &Published) {
        if published.delivered == 0 {
            self.emit(|| Event::MessageNotConsumed { client_id: message.publisher.clone(), message: message.clone() });
        }
    }

    /// Resolves `topic` to its target sessions, appended to `out`: one per session, merging that session's
    /// overlapping subscriptions (highest QoS, every identifier), and one per shared group. `origin` is the
    /// publishing session, for No Local. Returns whether the result may be cached (no shared group matched).
    fn resolve(&self, topic: &str, origin: Option<u64>, matches: &mut Vec<Match>, out: &mut Vec<Target>) -> bool {
        self.subscriptions.matches(topic, matches);
        if let Some(origin) = origin {
            matches.retain(|m| !(m.options.no_local && m.session.id == origin));
        }
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| (m.shared, m.session.id));
        }
        let start = out.len();
        let mut cacheable = true;
        // Whether the last target is an ordinary subscription that a following match of its session merges into.
        let mut mergeable = false;
        for m in matches.drain(..) {
            cacheable &= !m.shared;
            if mergeable
                && !m.shared
                && let Some(last) = out[start..].last_mut()
                && last.session.id == m.session.id
            {
                last.granted = last.granted.max(m.options.qos);
                last.retain_as_published |= m.options.retain_as_published;
                last.subscription_ids.extend(m.subscription_id);
                continue;
            }
            mergeable = !m.shared;
            out.push(Target {
                granted: m.options.qos,
                retain_as_published: m.options.retain_as_published,
                subscription_ids: m.subscription_id.into_iter().collect(),
                session: m.session,
            });
        }
        cacheable
    }

    /// Makes the deliveries of `message` to `targets`, hands the store its operations, and adds the deliveries to
    /// this thread's batch (flushed by the caller, or here when it is full). `origin` is the publishing session.
    fn route_to(
        &self,
        message: &Arc<Message>,
        targets: &[Target],
        mut ops: Vec<SessionOp>,
        origin: Option<u64>,
    ) -> Published {
        let mut delivered = 0;
        let mut full = false;
        // What offline and slow sessions queue: a copy of its own, made once. A decoded message is slices of the read
        // buffer it came in, and a session that stays away or falls behind would keep that whole buffer (up to 64
        // KiB) alive per message: a slow subscriber's queue of thousands would pin thousands of buffers.
        let mut detached: Option<Arc<Message>> = None;
        // Deliveries that could not join the batch (its thread's batch is in use by a publish that re-entered).
        let mut unbatched = Vec::new();
        BATCH.with(|cell| {
            let mut batch = cell.try_borrow_mut().ok();
            for target in targets {
                let qos = message.qos.min(target.granted);
                let session = &target.session;
                let online = session.is_online();
                // An offline persistent session keeps QoS 1 and 2 messages only.
                let wanted = qos != QoS::AtMostOnce || online;
                let allowed = || match &self.options.hooks.delivery_filter {
                    Some(filter) => {
                        let session_items = &session.items();
                        filter(&DeliveryContext { client_id: &session.client_id, session_items, message })
                    }
                    None => true,
                };
                if !(wanted && allowed()) {
                    continue;
                }
                let retain = message.retain && target.retain_as_published;
                let subscription_ids = target.subscription_ids.clone();
                let message = match online && !session.is_slow() {
                    true => message.clone(),
                    false => detached.get_or_insert_with(|| Arc::new(message.detached())).clone(),
                };
                let mut delivery = Delivery { message, qos, retain, subscription_ids, seq: None };
                if qos != QoS::AtMostOnce && session.is_durable() && self.durable.is_some() {
                    let seq = session.next_seq();
                    delivery.seq = Some(seq);
                    ops.push(SessionOp::PutMessage {
                        client_id: session.client_id.clone(),
                        message: stored(&delivery, seq),
                    });
                }
                delivered += 1;
                match batch.as_mut() {
                    Some(batch) => full |= batch.push(session, delivery),
                    None => unbatched.push((session.clone(), delivery)),
                }
            }
        });
        // The store has the operations before any subscriber can see the message: everything is queued after this.
        let ticket = self.durable.as_ref().and_then(|d| d.submit(ops, true));
        for (session, delivery) in unbatched {
            self.queue(&session, &mut vec![delivery]);
        }
        let wait_for = if full { self.flush_routes(origin) } else { None };
        Published { delivered, ticket, wait_for }
    }

    /// Queues every delivery of this thread's batch, each session's under one lock and with one wake-up. Returns a
    /// session (not the publisher's own, `origin`) whose queue this or an earlier drain of the batch filled past its
    /// high-water mark, for a publishing connection to wait for before it reads more (see
    /// [`SessionShared::wait_for_room`]).
    pub(crate) fn flush_routes(&self, origin: Option<u64>) -> Option<Arc<SessionShared>> {
        BATCH.with(|cell| {
            let Ok(mut batch) = cell.try_borrow_mut() else { return None };
            if !batch.is_empty() {
                batch.drain(|session, run| self.queue(session, run));
            }
            batch.take_congested(origin)
        })
    }

    /// Queues `deliveries` for `session`, accounting for those its overflow policy drops. Returns whether its
    /// publishers should wait for it to drain.
    pub(crate) fn queue(&self, session: &Arc<SessionShared>, deliveries: &mut Vec<Delivery>) -> bool {
        let mut deletes = Vec::new();
        let congested = session.enqueue_all(deliveries, |dropped| {
            add(&self.stats.publish_dropped, 1);
            if let Some(seq) = dropped.seq {
                deletes.push(SessionOp::DeleteMessage { client_id: session.client_id.clone(), seq });
            }
            self.emit(|| Event::MessageDropped {
                client_id: session.client_id.clone(),
                message: dropped.message.clone(),
                reason: DropReason::QueueFull,
            });
        });
        if !deletes.is_empty() {
            self.store_ops(deletes);
        }
        congested
    }

    /// Hands operations to the durable store without waiting (nothing happens without a store).
    pub(crate) fn store_ops(&self, ops: Vec<SessionOp>) {
        if let Some(durable) = &self.durable {
            durable.submit(ops, false);
        }
    }

    /// Writes a durable session's own record: user name, expiry, disconnect time, subscriptions.
    pub(crate) fn persist_session(&self, session: &SessionShared, disconnected_at: Option<SystemTime>) {
        if self.durable.is_none() || !session.is_durable() {
            return;
        }
        session.mark_stored();
        let subscriptions =
            session.subscriptions.lock().iter().map(|(f, (o, id))| (f.clone(), *o, *id)).collect::<Vec<_>>();
        self.store_ops(vec![SessionOp::PutSession {
            client_id: session.client_id.clone(),
            username: session.username(),
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
        properties: properties.into(),
        publisher: Some(publisher),
        expires_at: None,
    };
    message.stamp_expiry(Instant::now());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OverflowPolicy;
    use bytes::Bytes;
    use corvid_protocol::{SubscriptionOptions, TopicName};

    fn session(broker: &Broker, name: &str, online: bool) -> Arc<SessionShared> {
        let shared = Arc::new(SessionShared::new(
            broker.next_id(),
            ByteString::from(name),
            crate::items::ItemsSlot::default(),
            100,
            OverflowPolicy::DropOldest,
        ));
        shared.set_online(online);
        let subscriber = Subscriber {
            session: shared.clone(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            subscription_id: None,
        };
        broker.subscriptions.subscribe(&TopicFilter::new("t/+").unwrap(), subscriber);
        shared
    }

    /// A message queued for an online session shares the buffer it was read into; one queued for an offline
    /// session (which may stay away for long) or a slow one (whose queue may hold thousands) has its own copy, so
    /// that it does not keep that buffer alive.
    #[test]
    fn offline_and_slow_sessions_queue_detached_messages() {
        let broker = Broker::new(ServerOptions::default(), None, None);
        let online = session(&broker, "online", true);
        let offline = session(&broker, "offline", false);
        let slow = session(&broker, "slow", true);
        slow.mark_slow();
        let buffer = Bytes::from(vec![7u8; 64 * 1024]);
        let range = buffer.as_ptr_range();
        let message = Message::new(TopicName::new("t/1").unwrap(), buffer.slice(100..164), QoS::AtLeastOnce, false);
        assert_eq!(broker.publish(message, None), 3);
        let queued = |session: &SessionShared| {
            let mut batch = Vec::new();
            session.take_batch(&mut batch, 10, 10);
            assert_eq!(batch.len(), 1);
            batch.remove(0).message
        };
        let shared = queued(&online);
        assert!(range.contains(&shared.payload.as_ptr()), "online: zero-copy");
        let own = queued(&offline);
        assert_eq!(own.payload, shared.payload);
        assert!(!range.contains(&own.payload.as_ptr()), "offline: a copy of its own");
        let behind = queued(&slow);
        assert_eq!(behind.payload, shared.payload);
        assert!(!range.contains(&behind.payload.as_ptr()), "slow: a copy of its own");
    }
}
