//! Session state: the part shared with publishers (identity and outbound queue) and the part owned by whichever
//! task serves the session (subscriptions, packet identifiers, inflight messages).

use crate::items::{ItemsSlot, SessionItems};
use crate::message::Delivery;
use crate::options::OverflowPolicy;
use crate::store::StoredUsername;
use corvid_protocol::{ByteString, PacketId, SubscriptionOptions, TopicFilter, Will};
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

/// The part of a session that publishers reach: its identity and its bounded outbound queue.
pub(crate) struct SessionShared {
    /// Unique for the broker's lifetime; distinguishes a session from a later one with the same client id.
    pub(crate) id: u64,
    pub(crate) client_id: ByteString,
    /// The user name its client last connected with, for its durable record; `None` (unknown) unless the session
    /// is durable (see [`Self::username`]). Boxed: most sessions are not durable, and inline it would make each of
    /// them 32 bytes larger.
    username: Mutex<Option<Box<StoredUsername>>>,
    /// Items for hooks; they live as long as the session. Reached through [`Self::items`].
    pub(crate) items: ItemsSlot,
    /// The session's subscriptions (the index holds them too, for matching).
    pub(crate) subscriptions: Mutex<SessionSubscriptions>,
    /// When the session was made, in milliseconds since the Unix epoch (half a `SystemTime`; see [`Self::created`]).
    created_ms: u64,
    /// Seconds the session outlives its connection; `u32::MAX` never expires.
    expiry_interval: AtomicU32,
    /// Whether the session's QoS 1/2 messages and state are kept in the durable store.
    durable: AtomicBool,
    /// The next queue position in the durable store.
    next_seq: AtomicU64,
    /// Whether the durable store has a record of this session.
    stored: AtomicBool,
    outbox: Mutex<Outbox>,
    online: AtomicBool,
    /// The client does not keep up: its socket stopped taking bytes, or publishers waited for it in vain. No
    /// publisher waits for it until its socket takes a whole write again or its queue empties; its overflow policy
    /// applies meanwhile.
    slow: AtomicBool,
    /// Messages dropped by the overflow policy.
    pub(crate) dropped: AtomicU64,
}

/// A session's subscriptions: filter, options and subscription identifier, sorted by filter.
///
/// A sorted vector rather than a hash map: most sessions have a handful of subscriptions, and an empty vector costs
/// no allocation where a map with one entry costs four buckets.
#[derive(Default)]
pub(crate) struct SessionSubscriptions(Vec<(TopicFilter, (SubscriptionOptions, Option<u32>))>);

impl SessionSubscriptions {
    /// Adds or replaces the subscription to `filter`, returning the replaced one.
    pub(crate) fn insert(
        &mut self,
        filter: TopicFilter,
        value: (SubscriptionOptions, Option<u32>),
    ) -> Option<(SubscriptionOptions, Option<u32>)> {
        match self.0.binary_search_by(|(f, _)| f.cmp(&filter)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                if self.0.is_empty() {
                    // Most sessions subscribe once: no room for four.
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (filter, value));
                None
            }
        }
    }

    /// Removes the subscription to `filter`.
    pub(crate) fn remove(&mut self, filter: &TopicFilter) -> Option<(SubscriptionOptions, Option<u32>)> {
        let i = self.0.binary_search_by(|(f, _)| f.cmp(filter)).ok()?;
        let (_, value) = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(value)
    }

    /// Every subscription, in filter order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TopicFilter, &(SubscriptionOptions, Option<u32>))> {
        self.0.iter().map(|(f, v)| (f, v))
    }

    /// Removes and yields every subscription.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (TopicFilter, (SubscriptionOptions, Option<u32>))> {
        std::mem::take(&mut self.0).into_iter()
    }
}

struct Outbox {
    queue: VecDeque<Delivery>,
    /// The bound, in 4 bytes: with `policy` and the flag below it fills what would be padding.
    limit: u32,
    policy: OverflowPolicy,
    /// Publishers wait for the queue to drain below [`ROOM_LOW`].
    publishers_waiting: bool,
    /// Wakes publishers waiting for the queue to drain (see [`SessionShared::wait_for_room`]); made on first use,
    /// in the padding of the fields above.
    room: Option<Arc<Notify>>,
    /// The serving connection's task while it waits for the empty queue to fill: under the queue's own lock, so
    /// no delivery slips between its look and its wait. Smaller than a `Notify` here and its `Notified` future in
    /// every connection's task.
    waker: Option<Waker>,
}

/// Queued deliveries beyond which a publisher stops reading until a connected session's queue drains (its TCP
/// window then slows the client down), rather than the broker reading messages only to drop them.
pub(crate) const ROOM_HIGH: usize = 4096;
/// Queued deliveries at which waiting publishers go on.
const ROOM_LOW: usize = 1024;
/// Deliveries a client must take per wait period not to count as slow.
const ROOM_PROGRESS: usize = 256;

impl Outbox {
    /// Queues a delivery within the bound, applying the overflow policy; returns the delivery it dropped, if any
    /// (the oldest queued, or this one).
    fn offer(&mut self, delivery: Delivery) -> Option<Delivery> {
        if self.queue.len() < self.limit as usize {
            self.queue.push_back(delivery);
            return None;
        }
        match self.policy {
            OverflowPolicy::DropNewest => Some(delivery),
            OverflowPolicy::DropOldest => {
                let oldest = self.queue.pop_front();
                self.queue.push_back(delivery);
                oldest
            }
        }
    }

    /// What wakes the publishers waiting for this queue, if any wait: they may go on.
    fn release_publishers(&mut self) -> Option<Arc<Notify>> {
        if std::mem::take(&mut self.publishers_waiting) { self.room.clone() } else { None }
    }

    /// Keeps the waker of the task waiting on this queue (see [`park`]).
    fn park(&mut self, cx: &Context<'_>) {
        park(&mut self.waker, cx);
    }
}

/// Keeps `cx`'s waker in `slot`, unless the one there already wakes the same task: the wait of a hand-written poll
/// whose waker lives under the lock of the state it waits on.
pub(crate) fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
}

impl SessionShared {
    pub(crate) fn new(id: u64, client_id: ByteString, items: ItemsSlot, limit: usize, policy: OverflowPolicy) -> Self {
        Self {
            id,
            client_id,
            username: Mutex::new(None),
            items,
            subscriptions: Mutex::new(SessionSubscriptions::default()),
            created_ms: crate::wallclock::now_millis(),
            expiry_interval: AtomicU32::new(0),
            durable: AtomicBool::new(false),
            next_seq: AtomicU64::new(1),
            stored: AtomicBool::new(false),
            outbox: Mutex::new(Outbox {
                queue: VecDeque::new(),
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                policy,
                publishers_waiting: false,
                room: None,
                waker: None,
            }),
            online: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// When the session was made (to the millisecond).
    pub(crate) fn created(&self) -> SystemTime {
        crate::wallclock::from_unix_millis(self.created_ms)
    }

    /// The session's items (for hooks).
    pub(crate) fn items(self: &Arc<Self>) -> SessionItems {
        SessionItems::of(self.clone())
    }

    /// The user name its client last connected with: set by each CONNECT that makes the session durable (a
    /// session becomes durable only at CONNECT), or from the durable store's record of a restored one (unknown if
    /// that record is older than user names).
    pub(crate) fn username(&self) -> StoredUsername {
        self.username.lock().as_deref().cloned().unwrap_or_default()
    }

    pub(crate) fn set_username(&self, username: StoredUsername) {
        *self.username.lock() = Some(Box::new(username));
    }

    pub(crate) fn expiry_interval(&self) -> u32 {
        self.expiry_interval.load(Ordering::Relaxed)
    }

    /// Sets the expiry interval; the session is durable when it outlives its connection and a store exists.
    pub(crate) fn set_expiry_interval(&self, seconds: u32, store: bool) {
        self.expiry_interval.store(seconds, Ordering::Relaxed);
        self.durable.store(store && seconds > 0, Ordering::Relaxed);
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.durable.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_stored(&self) {
        self.stored.store(true, Ordering::Relaxed);
    }

    pub(crate) fn was_stored(&self) -> bool {
        self.stored.load(Ordering::Relaxed)
    }

    /// The next queue position for the durable store.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Continues queue positions after `seq` (after loading a stored session).
    pub(crate) fn resume_seq_after(&self, seq: u64) {
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
    }

    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Whether the client is connected but not keeping up (see the field `slow`).
    pub(crate) fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
        if !online {
            // The waker of the connection's task would keep the task's memory as long as the session lives.
            self.outbox.lock().waker = None;
            // Nobody drains the queue of an absent client: publishers waiting for it go on.
            self.wake_publishers();
        }
    }

    fn wake_publishers(&self) {
        let room = self.outbox.lock().release_publishers();
        if let Some(room) = room {
            room.notify_waiters();
        }
    }

    /// Marks the client as not keeping up (see the field `slow`), releasing the publishers waiting for it.
    pub(crate) fn mark_slow(&self) {
        if !self.slow.swap(true, Ordering::Relaxed) {
            self.wake_publishers();
        }
    }

    /// The client's socket took a whole write: publishers may wait for it again.
    pub(crate) fn mark_keeping_up(&self) {
        if self.slow.load(Ordering::Relaxed) {
            self.slow.store(false, Ordering::Relaxed);
        }
    }

    /// Waits until the queue has drained to [`ROOM_LOW`], or the client is found slow or away. Publishers call it
    /// after queueing past [`ROOM_HIGH`]. A client that does not take [`ROOM_PROGRESS`] deliveries within each
    /// `patience` counts as slow: a consumer that keeps up is waited for however deep its queue, one that does not
    /// cannot hold its publishers back.
    pub(crate) async fn wait_for_room(&self, patience: std::time::Duration) {
        let room = self.outbox.lock().room.get_or_insert_default().clone();
        let mut last = usize::MAX;
        loop {
            let notified = room.notified();
            tokio::pin!(notified);
            {
                let mut outbox = self.outbox.lock();
                let queued = outbox.queue.len();
                if queued <= ROOM_LOW || self.slow.load(Ordering::Relaxed) || !self.is_online() {
                    return;
                }
                if queued.saturating_add(ROOM_PROGRESS) > last {
                    drop(outbox);
                    self.mark_slow();
                    return;
                }
                last = queued;
                outbox.publishers_waiting = true;
                // Registered under the lock: the drain that crosses the mark cannot wake before this listens.
                notified.as_mut().enable();
            }
            if tokio::time::timeout(patience, notified).await.is_ok() {
                return;
            }
        }
    }

    /// Ready when deliveries are queued; otherwise keeps the waker, which the next delivery wakes.
    pub(crate) fn poll_queued(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut outbox = self.outbox.lock();
        if !outbox.queue.is_empty() {
            return Poll::Ready(());
        }
        outbox.park(cx);
        Poll::Pending
    }

    /// Completes when deliveries are queued. A hand-written poll: small in every connection's task.
    pub(crate) fn queued_wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_queued(cx))
    }

    /// Offers `deliveries` (emptied) in order to the queue, applying the overflow policy, under one lock and with at
    /// most one wake-up of the serving task; `on_drop` sees each delivery the overflow policy drops, after the lock
    /// is released. Returns whether publishers should wait for this queue to drain ([`Self::wait_for_room`]): it
    /// holds more than [`ROOM_HIGH`] deliveries of a connected client that keeps up.
    pub(crate) fn enqueue_all(&self, deliveries: &mut Vec<Delivery>, mut on_drop: impl FnMut(Delivery)) -> bool {
        let mut dropped = Vec::new();
        let (waker, congested) = {
            let mut outbox = self.outbox.lock();
            let room = (outbox.limit as usize).saturating_sub(outbox.queue.len());
            outbox.queue.reserve(deliveries.len().min(room));
            dropped.extend(deliveries.drain(..).filter_map(|delivery| outbox.offer(delivery)));
            let congested = outbox.queue.len() > ROOM_HIGH && !self.slow.load(Ordering::Relaxed) && self.is_online();
            // A waiting task left its waker only while the queue was empty.
            (if outbox.queue.is_empty() { None } else { outbox.waker.take() }, congested)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        self.dropped.fetch_add(dropped.len() as u64, Ordering::Relaxed);
        dropped.into_iter().for_each(&mut on_drop);
        congested
    }

    /// Queues a delivery whatever the bound (retained messages at subscribe, which the retained store bounds).
    pub(crate) fn enqueue_unbounded(&self, delivery: Delivery) {
        let waker = {
            let mut outbox = self.outbox.lock();
            outbox.queue.push_back(delivery);
            outbox.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves up to `max` queued deliveries into `out`, oldest first; `max_qos_positive` bounds how many of them may
    /// be QoS 1 or 2 (the send quota). Stops at the first QoS 1/2 delivery beyond the quota, keeping order.
    ///
    /// A queue left empty gives its memory back, so an idle session holds none.
    pub(crate) fn take_batch(&self, out: &mut Vec<Delivery>, max: usize, mut quota: usize) {
        let mut outbox = self.outbox.lock();
        out.reserve(outbox.queue.len().min(max));
        while out.len() < max {
            let Some(front) = outbox.queue.front() else {
                break;
            };
            if front.qos != corvid_protocol::QoS::AtMostOnce {
                if quota == 0 {
                    break;
                }
                quota -= 1;
            }
            if let Some(d) = outbox.queue.pop_front() {
                out.push(d);
            }
        }
        if outbox.queue.is_empty() {
            self.mark_keeping_up();
            if outbox.queue.capacity() > 0 {
                outbox.queue = VecDeque::new();
            }
        }
        let room = if outbox.queue.len() <= ROOM_LOW { outbox.release_publishers() } else { None };
        drop(outbox);
        if let Some(room) = room {
            room.notify_waiters();
        }
    }

    /// How many deliveries are queued.
    pub(crate) fn queued(&self) -> usize {
        self.outbox.lock().queue.len()
    }

    /// Drops every queued delivery, returning them.
    pub(crate) fn clear(&self) -> Vec<Delivery> {
        let cleared = self.outbox.lock().queue.drain(..).collect();
        self.wake_publishers();
        cleared
    }
}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboundState {
    /// PUBLISH sent (QoS 1 or 2), waiting for PUBACK or PUBREC.
    AwaitingAck,
    /// PUBREL sent (QoS 2), waiting for PUBCOMP.
    AwaitingComp,
}

/// An outbound QoS 1/2 message not yet acknowledged.
pub(crate) struct Inflight {
    pub(crate) packet_id: PacketId,
    pub(crate) delivery: Delivery,
    pub(crate) state: OutboundState,
}

/// The state a session keeps across connections; owned by the serving connection task, or by the registry while
/// the client is away.
pub(crate) struct SessionState {
    pub(crate) shared: Arc<SessionShared>,
    /// Outbound QoS 1/2 messages in the order they were sent.
    pub(crate) inflight: Inflights,
    next_packet_id: u16,
    /// Inbound QoS 2 packet identifiers received and not yet released by PUBREL.
    pub(crate) incoming_qos2: IncomingQos2,
}

/// Outbound QoS 1/2 messages in the order they were sent. The queue is boxed and made on first use: most clients
/// never receive at QoS 1 or 2, and an empty queue inline would cost every connection's task, and every parked
/// connection, 24 more bytes. [`Self::release_if_empty`] gives it back (a connection about to park).
#[derive(Default)]
#[allow(clippy::box_collection)] // the box is the point: 8 bytes inline instead of 32
pub(crate) struct Inflights(Option<Box<VecDeque<Inflight>>>);

impl Inflights {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |queue| queue.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Inflight> {
        self.0.iter().flat_map(|queue| queue.iter())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Inflight> {
        self.0.iter_mut().flat_map(|queue| queue.iter_mut())
    }

    pub(crate) fn push_back(&mut self, inflight: Inflight) {
        self.0.get_or_insert_default().push_back(inflight);
    }

    pub(crate) fn remove(&mut self, index: usize) -> Option<Inflight> {
        self.0.as_mut()?.remove(index)
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&Inflight) -> bool) {
        if let Some(queue) = self.0.as_mut() {
            queue.retain(keep);
        }
    }

    /// Frees the queue's memory if nothing is in flight.
    pub(crate) fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

/// A set of inbound QoS 2 packet identifiers, made on first use: most clients never publish at QoS 2, and an empty
/// hash set inline would cost every connection's task 48 bytes.
#[derive(Default)]
#[allow(clippy::box_collection)] // the box is the point: 8 bytes inline instead of 48
pub(crate) struct IncomingQos2(Option<Box<HashSet<u16>>>);

impl IncomingQos2 {
    pub(crate) fn contains(&self, id: &u16) -> bool {
        self.0.as_ref().is_some_and(|set| set.contains(id))
    }

    pub(crate) fn insert(&mut self, id: u16) -> bool {
        self.0.get_or_insert_default().insert(id)
    }

    pub(crate) fn remove(&mut self, id: &u16) -> bool {
        self.0.as_mut().is_some_and(|set| set.remove(id))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    pub(crate) fn extend(&mut self, ids: impl IntoIterator<Item = u16>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_some() {
            self.0.get_or_insert_default().extend(ids);
        }
    }
}

impl SessionState {
    pub(crate) fn new(shared: Arc<SessionShared>) -> Self {
        Self { shared, inflight: Inflights::default(), next_packet_id: 1, incoming_qos2: IncomingQos2::default() }
    }

    /// A packet identifier not used by any inflight message.
    pub(crate) fn allocate_packet_id(&mut self) -> PacketId {
        loop {
            let raw = self.next_packet_id;
            self.next_packet_id = raw.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(raw)
                && !self.inflight.iter().any(|i| i.packet_id == id)
            {
                return id;
            }
        }
    }
}

/// A will waiting for its delay, or for its session to end.
pub(crate) struct PendingWill {
    pub(crate) will: Will,
    pub(crate) publisher: ByteString,
    pub(crate) items: SessionItems,
    pub(crate) due: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use corvid_protocol::{QoS, TopicName};
    use std::time::Duration;

    fn session(online: bool) -> Arc<SessionShared> {
        let s = SessionShared::new(1, ByteString::from("s"), ItemsSlot::default(), 100_000, OverflowPolicy::DropOldest);
        s.set_online(online);
        Arc::new(s)
    }

    fn deliveries(n: usize) -> Vec<Delivery> {
        let message = Arc::new(Message::new(TopicName::new("t").unwrap(), "m", QoS::AtMostOnce, false));
        (0..n)
            .map(|_| Delivery {
                message: message.clone(),
                qos: QoS::AtMostOnce,
                retain: false,
                subscription_ids: Vec::new(),
                seq: None,
            })
            .collect()
    }

    /// A publisher waiting for room in `s` with `patience`, in a task of its own.
    fn waiting_publisher(s: &Arc<SessionShared>, patience: Duration) -> tokio::task::JoinHandle<()> {
        let s = s.clone();
        tokio::spawn(async move { s.wait_for_room(patience).await })
    }

    fn drain(s: &SessionShared, n: usize) {
        let mut out = Vec::new();
        while out.len() < n {
            let before = out.len();
            s.take_batch(&mut out, n, 0);
            assert!(out.len() > before, "queue ran dry");
        }
    }

    #[test]
    fn congested_past_the_high_water_mark_when_connected_and_keeping_up() {
        let online = session(true);
        assert!(!online.enqueue_all(&mut deliveries(ROOM_HIGH), |_| {}));
        assert!(online.enqueue_all(&mut deliveries(1), |_| {}));
        online.mark_slow();
        assert!(!online.enqueue_all(&mut deliveries(1), |_| {}), "nobody waits for a slow client");
        online.mark_keeping_up();
        assert!(online.enqueue_all(&mut deliveries(1), |_| {}));
        let offline = session(false);
        assert!(!offline.enqueue_all(&mut deliveries(ROOM_HIGH + 1), |_| {}), "nobody waits for an absent client");
    }

    #[tokio::test]
    async fn a_waiting_publisher_goes_on_once_the_queue_drains() {
        let s = session(true);
        s.enqueue_all(&mut deliveries(ROOM_HIGH + 100), |_| {});
        let waiter = waiting_publisher(&s, Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "went on with a full queue");
        drain(&s, ROOM_HIGH + 100 - ROOM_LOW);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("waiter");
        assert!(!s.slow.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_client_that_does_not_drain_counts_as_slow_after_the_patience() {
        let s = session(true);
        s.enqueue_all(&mut deliveries(ROOM_HIGH + 100), |_| {});
        // Progress of fewer than ROOM_PROGRESS deliveries per period is no progress.
        let waiter = waiting_publisher(&s, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(10)).await;
        drain(&s, 10);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("gave up").expect("waiter");
        assert!(s.slow.load(Ordering::Relaxed));
        assert!(!s.enqueue_all(&mut deliveries(1), |_| {}));
        // The client catches up: its queue empties, and it is waited for again.
        drain(&s, s.queued());
        assert!(!s.slow.load(Ordering::Relaxed));
    }
}
