//! Where a message goes: the sessions a topic resolves to, a publisher's cache of them, and the batch that queues a
//! run of messages with one lock and one wake-up per receiving session.
//!
//! A publishing connection decodes many PUBLISH packets per read. Matching each against the subscription tree, and
//! locking the receiving session's queue once per message, made every publisher of a fan-in touch the same
//! subscriber's lock and reference count per message, from both cores. Instead, a connection keeps the targets of
//! the few topics it publishes to ([`RouteCache`], valid while the subscription index's generation is unchanged),
//! and its deliveries gather in a per-thread [`RouteBatch`] that the connection flushes before it returns to the
//! runtime (so nothing waits in it across an `.await`).

use crate::message::Delivery;
use crate::session::SessionShared;
use corvid_protocol::{QoS, TopicName};
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A session a message goes to, with what its matching subscriptions make of the message.
pub(crate) struct Target {
    pub(crate) session: Arc<SessionShared>,
    /// The highest QoS the matching subscriptions granted.
    pub(crate) granted: QoS,
    /// Whether any matching subscription has Retain As Published.
    pub(crate) retain_as_published: bool,
    /// Identifiers of the matching subscriptions that have one.
    pub(crate) subscription_ids: Vec<u32>,
}

/// How many topics a connection keeps the targets of.
const CACHED_TOPICS: usize = 4;
/// How many recently missed topics (by hash) a full cache remembers, to admit a topic the second time it misses.
const RECENT_MISSES: usize = 8;

/// The targets of the last few topics one connection published to, resolved under one generation of the
/// subscription index. Topics whose match includes a shared subscription are never kept: each message picks a
/// group member afresh.
///
/// A full cache admits a topic only when it missed recently too, so a client that publishes to ever new topics
/// pays a hash per message rather than an allocation.
pub(crate) struct RouteCache {
    /// A session this connection's messages filled past its high-water mark: the connection reads nothing more
    /// until it drains. Kept here, with the other state only publishers have, to keep every connection small.
    pub(crate) congested: Option<Arc<SessionShared>>,
    generation: u64,
    entries: Vec<(TopicName, Vec<Target>)>,
    recent_misses: [u64; RECENT_MISSES],
    next_miss: usize,
    next_evict: usize,
}

impl RouteCache {
    pub(crate) fn new(generation: u64) -> Self {
        Self {
            congested: None,
            generation,
            entries: Vec::new(),
            recent_misses: [0; RECENT_MISSES],
            next_miss: 0,
            next_evict: 0,
        }
    }

    /// The index of `topic`'s targets, after forgetting everything if the subscription index changed.
    pub(crate) fn find(&mut self, topic: &str, generation: u64) -> Option<usize> {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
            return None;
        }
        self.entries.iter().position(|(t, _)| &**t == topic)
    }

    /// The targets at `index` (from [`Self::find`] or [`Self::admit`]).
    pub(crate) fn targets(&self, index: usize) -> &[Target] {
        self.entries.get(index).map_or(&[], |(_, targets)| targets)
    }

    /// Whether a topic that missed should be kept: always while there is room, else on its second recent miss.
    pub(crate) fn should_admit(&mut self, topic: &str) -> bool {
        if self.entries.len() < CACHED_TOPICS {
            return true;
        }
        let hash = foldhash::fast::FixedState::with_seed(0x636f_7276_6964).hash_one(topic) | 1;
        if self.recent_misses.contains(&hash) {
            return true;
        }
        self.recent_misses[self.next_miss] = hash;
        self.next_miss = (self.next_miss + 1) % RECENT_MISSES;
        false
    }

    /// Keeps `targets` for `topic`, evicting round robin when full; returns its index.
    pub(crate) fn admit(&mut self, topic: &TopicName, targets: Vec<Target>) -> usize {
        let entry = (topic.detached(), targets);
        if self.entries.len() < CACHED_TOPICS {
            self.entries.push(entry);
            return self.entries.len() - 1;
        }
        let index = self.next_evict % CACHED_TOPICS;
        self.next_evict = index + 1;
        self.entries[index] = entry;
        index
    }
}

/// How many earlier runs a delivery looks through for its session before starting a run of its own (fan-out to N
/// sessions makes N runs, each gathering its messages).
const RUN_SEARCH: usize = 32;
/// Deliveries gathered before the batch is flushed anyway.
const BATCH_LIMIT: usize = 4096;
/// Deliveries gathered for one session before the batch is flushed anyway.
const RUN_LIMIT: usize = 256;
/// How many congested sessions a batch remembers (the publisher waits for one at a time).
const CONGESTED: usize = 4;

/// Deliveries waiting to be queued, grouped by session in order.
#[derive(Default)]
pub(crate) struct RouteBatch {
    runs: Vec<(Arc<SessionShared>, Vec<Delivery>)>,
    /// Emptied run vectors, reused.
    spare: Vec<Vec<Delivery>>,
    len: usize,
    /// Sessions that flushes of this batch filled past their high-water mark, for the publisher to wait for.
    congested: Vec<Arc<SessionShared>>,
}

impl RouteBatch {
    /// Adds a delivery for `session` after the ones already gathered for it; `true` when the batch should be
    /// drained now: it is full, or holds a run of [`RUN_LIMIT`] for one session (so that a publisher learns that
    /// it outran a subscriber within a few hundred messages, not a whole read).
    pub(crate) fn push(&mut self, session: &Arc<SessionShared>, delivery: Delivery) -> bool {
        self.len += 1;
        let search = self.runs.len().saturating_sub(RUN_SEARCH);
        let run_len =
            if let Some((_, run)) = self.runs[search..].iter_mut().rev().find(|(s, _)| Arc::ptr_eq(s, session)) {
                run.push(delivery);
                run.len()
            } else {
                let mut run = self.spare.pop().unwrap_or_default();
                run.push(delivery);
                self.runs.push((session.clone(), run));
                1
            };
        self.len >= BATCH_LIMIT || run_len >= RUN_LIMIT
    }

    /// Hands every run to `queue`, in order, keeping the emptied vectors for reuse; `queue` says whether that
    /// session is congested.
    pub(crate) fn drain(&mut self, mut queue: impl FnMut(&Arc<SessionShared>, &mut Vec<Delivery>) -> bool) {
        for (session, mut run) in self.runs.drain(..) {
            let congested = queue(&session, &mut run);
            if congested && self.congested.len() < CONGESTED && !self.congested.iter().any(|s| Arc::ptr_eq(s, &session))
            {
                self.congested.push(session.clone());
            }
            run.clear();
            // A run that grew large is not kept: the batch lives as long as its thread.
            if run.capacity() <= BATCH_LIMIT / 4 && self.spare.len() < RUN_SEARCH {
                self.spare.push(run);
            }
        }
        self.len = 0;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The first congested session other than `origin` (the publisher's own), forgetting them all.
    pub(crate) fn take_congested(&mut self, origin: Option<u64>) -> Option<Arc<SessionShared>> {
        let found = self.congested.iter().find(|s| Some(s.id) != origin).cloned();
        self.congested.clear();
        found
    }
}

thread_local! {
    /// The batch of the connection being served on this thread. A connection fills it while handling what one read
    /// brought and flushes it before it awaits anything, so it is empty whenever the thread returns to the runtime.
    pub(crate) static BATCH: RefCell<RouteBatch> = RefCell::new(RouteBatch::default());
}
