//! Delivery verification: per-publisher sequence tracking at each subscriber, and the shared counters publishers
//! and subscribers update while a scenario runs.
//!
//! A subscriber expects every publisher's sequence numbers 0, 1, 2, … in order. A number above the next expected
//! opens a gap (a *hole*); a number inside a hole fills it and counts as *reordered*; any other number below the
//! next expected is a *duplicate*. At the end, whatever holes remain plus whatever the publisher sent beyond the
//! highest number received is *lost*. Nothing allocates unless a gap opens.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// What one received sequence number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected number.
    InOrder,
    /// Above the next expected: the numbers in between are missing (so far).
    Gap,
    /// A number that was missing: it arrived late.
    Reordered,
    /// A number already received.
    Duplicate,
}

/// The sequence state of one publisher as seen by one subscriber.
#[derive(Debug, Clone, Default)]
pub struct PublisherSeq {
    next: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Missing ranges `[start, end)` below `next`, sorted and disjoint.
    holes: Vec<(u64, u64)>,
}

impl PublisherSeq {
    /// Records sequence number `seq`.
    #[inline]
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq == self.next {
            self.next += 1;
            self.received += 1;
            return Arrival::InOrder;
        }
        if seq > self.next {
            self.holes.push((self.next, seq));
            self.next = seq + 1;
            self.received += 1;
            return Arrival::Gap;
        }
        let found = self
            .holes
            .binary_search_by(|&(start, end)| {
                if end <= seq {
                    std::cmp::Ordering::Less
                } else if start > seq {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .ok();
        let Some(i) = found else {
            self.duplicates += 1;
            return Arrival::Duplicate;
        };
        let (start, end) = self.holes[i];
        match (seq == start, seq + 1 == end) {
            (true, true) => {
                self.holes.remove(i);
            }
            (true, false) => self.holes[i].0 = seq + 1,
            (false, true) => self.holes[i].1 = seq,
            (false, false) => {
                self.holes[i].1 = seq;
                self.holes.insert(i + 1, (seq + 1, end));
            }
        }
        self.received += 1;
        self.reordered += 1;
        Arrival::Reordered
    }

    /// Distinct numbers received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Numbers missing, given that the publisher sent `sent` messages (numbers 0 to `sent - 1`).
    pub fn lost(&self, sent: u64) -> u64 {
        let in_holes: u64 = self.holes.iter().map(|&(s, e)| e.min(sent).saturating_sub(s)).sum();
        in_holes + sent.saturating_sub(self.next)
    }
}

/// Delivery totals over one or more (subscriber, publisher) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Messages the subscribers should have received.
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Expected messages never received.
    pub lost: u64,
    /// Messages received more than once (each extra copy counts).
    pub duplicates: u64,
    /// Messages received after a later one from the same publisher.
    pub reordered: u64,
    /// Messages from publishers the subscriber did not expect, or without a benchmark stamp.
    pub foreign: u64,
}

impl Delivery {
    /// Adds `other` into this total.
    pub fn add(&mut self, other: &Self) {
        self.expected += other.expected;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.foreign += other.foreign;
    }

    /// Whether nothing was lost or duplicated and nothing foreign arrived.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.foreign == 0
    }
}

/// One subscriber's view of the publishers it expects.
///
/// Its size is proportional to the publishers this subscriber expects, not to all the publishers of the scenario:
/// in `idle` and `pairs` each of N subscribers expects one of N publishers, and a slot per publisher per subscriber
/// would be N² slots (10,000 idle connections: 10⁸ slots, 5.6 GB, written while the messages wait unread).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// The expected publishers, sorted, without duplicates.
    ids: Vec<u32>,
    /// The sequence state of `ids[i]`.
    seqs: Vec<PublisherSeq>,
    /// Whether `ids` is the run `ids[0]..ids[0] + ids.len()`, so a slot is found by subtraction.
    contiguous: bool,
    foreign: u64,
}

impl SeqTracker {
    /// A tracker for `publishers` publishers, of which the subscriber expects those listed in `expects` (duplicates
    /// and numbers not below `publishers` are ignored).
    pub fn new(publishers: usize, expects: &[u32]) -> Self {
        let mut ids: Vec<u32> = expects.iter().copied().filter(|&p| (p as usize) < publishers).collect();
        ids.sort_unstable();
        ids.dedup();
        let contiguous =
            ids.first().zip(ids.last()).is_none_or(|(&first, &last)| (last - first) as usize + 1 == ids.len());
        Self { seqs: vec![PublisherSeq::default(); ids.len()], ids, contiguous, foreign: 0 }
    }

    /// How many publishers this subscriber expects: the slots `0..expected()`.
    pub fn expected(&self) -> usize {
        self.ids.len()
    }

    /// The slot of `publisher`, `None` when it is not expected here.
    #[inline]
    pub fn slot(&self, publisher: u32) -> Option<usize> {
        if self.contiguous {
            let i = publisher.checked_sub(*self.ids.first()?)? as usize;
            (i < self.ids.len()).then_some(i)
        } else {
            self.ids.binary_search(&publisher).ok()
        }
    }

    /// The publisher of `slot`.
    pub fn publisher(&self, slot: usize) -> u32 {
        self.ids[slot]
    }

    /// Records a message from `publisher` with number `seq`; the publisher's slot and what the number was, `None`
    /// when the publisher is not expected here.
    #[inline]
    pub fn record(&mut self, publisher: u32, seq: u64) -> Option<(usize, Arrival)> {
        let Some(slot) = self.slot(publisher) else {
            self.foreign += 1;
            return None;
        };
        Some((slot, self.seqs[slot].record(seq)))
    }

    /// Records a message without a benchmark stamp.
    pub fn record_foreign(&mut self) {
        self.foreign += 1;
    }

    /// The totals, given how many messages each publisher sent (indexed by publisher).
    pub fn delivery(&self, sent: &[u64]) -> Delivery {
        let mut total = Delivery { foreign: self.foreign, ..Delivery::default() };
        for (&id, p) in self.ids.iter().zip(&self.seqs) {
            let sent = sent.get(id as usize).copied().unwrap_or(0);
            total.expected += sent;
            total.received += p.received;
            total.lost += p.lost(sent);
            total.duplicates += p.duplicates;
            total.reordered += p.reordered;
        }
        total
    }
}

/// Counters one publisher shares with the coordinator and the subscribers while a scenario runs.
#[derive(Debug)]
pub struct PublisherCounters {
    /// Messages written to the socket so far.
    pub sent: AtomicU64,
    /// Deliveries of this publisher's messages counted by verifying subscribers so far.
    pub delivered: AtomicU64,
    /// Set when the publisher has stopped sending and its acknowledgements are settled.
    pub done: AtomicBool,
    /// The delivered count at which a publisher waiting on its end-to-end window wants waking (`u64::MAX`: none).
    wake_at: AtomicU64,
    wake: Notify,
}

impl Default for PublisherCounters {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            done: AtomicBool::new(false),
            wake_at: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
        }
    }
}

impl PublisherCounters {
    /// Adds `n` deliveries, waking the publisher if it waits for the total to reach what it has now reached.
    #[inline]
    pub fn add_delivered(&self, n: u64) {
        // SeqCst here and in `wait_delivered`: each side writes one atomic and then reads the other, and neither
        // may miss the other's write.
        let total = self.delivered.fetch_add(n, Ordering::SeqCst) + n;
        if total >= self.wake_at.load(Ordering::SeqCst) {
            self.wake_at.store(u64::MAX, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// Waits until the delivered count reaches `target`, or for at most `timeout` (a lost QoS 0 message never
    /// arrives, so the wait must end by itself).
    pub async fn wait_delivered(&self, target: u64, timeout: std::time::Duration) {
        self.wake_at.store(target, Ordering::SeqCst);
        if self.delivered.load(Ordering::SeqCst) >= target {
            self.wake_at.store(u64::MAX, Ordering::Release);
            return;
        }
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
        self.wake_at.store(u64::MAX, Ordering::Release);
    }

    /// Messages written so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Deliveries counted so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }
}

/// Counters one subscriber shares with the coordinator while a scenario runs.
#[derive(Debug, Default)]
pub struct SubscriberCounters {
    /// Benchmark messages received so far (duplicates included).
    pub delivered: AtomicU64,
}

impl SubscriberCounters {
    /// Messages received so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_delivery_is_exact() {
        let mut t = SeqTracker::new(2, &[0, 1]);
        for seq in 0..10 {
            assert_eq!(t.record(0, seq), Some((0, Arrival::InOrder)));
            assert_eq!(t.record(1, seq), Some((1, Arrival::InOrder)));
        }
        let d = t.delivery(&[10, 10]);
        assert_eq!(d.expected, 20);
        assert_eq!(d.received, 20);
        assert!(d.is_exact());
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut p = PublisherSeq::default();
        for seq in [0, 1, 5, 3, 3, 2, 9, 1] {
            p.record(seq);
        }
        // received 0 1 2 3 5 9; holes 4 and 6..9; sent 12 also loses 10 and 11.
        assert_eq!(p.received(), 6);
        assert_eq!(p.duplicates, 2);
        assert_eq!(p.reordered, 2);
        assert_eq!(p.lost(12), 1 + 3 + 2);
        assert_eq!(p.lost(7), 1 + 1);
    }

    #[test]
    fn filling_the_middle_of_a_hole_splits_it() {
        let mut p = PublisherSeq::default();
        p.record(10);
        assert_eq!(p.record(5), Arrival::Reordered);
        assert_eq!(p.holes, vec![(0, 5), (6, 10)]);
        assert_eq!(p.record(0), Arrival::Reordered);
        assert_eq!(p.record(9), Arrival::Reordered);
        assert_eq!(p.holes, vec![(1, 5), (6, 9)]);
        assert_eq!(p.record(9), Arrival::Duplicate);
        assert_eq!(p.lost(11), 4 + 3);
    }

    #[test]
    fn unexpected_publishers_are_foreign() {
        let mut t = SeqTracker::new(3, &[1]);
        assert_eq!(t.record(0, 0), None);
        assert_eq!(t.record(7, 0), None);
        t.record_foreign();
        assert_eq!(t.record(1, 0), Some((0, Arrival::InOrder)));
        let d = t.delivery(&[5, 1, 5]);
        assert_eq!(d.expected, 1);
        assert_eq!(d.foreign, 3);
        assert!(!d.is_exact());
    }

    #[test]
    fn a_tracker_holds_only_the_publishers_it_expects() {
        // One of 1,000,000 publishers (each idle connection is its own publisher): one slot, not a million.
        let mut t = SeqTracker::new(1_000_000, &[777_777]);
        assert_eq!(t.seqs.len(), 1);
        assert_eq!(t.expected(), 1);
        assert_eq!(t.record(777_777, 0), Some((0, Arrival::InOrder)));
        assert_eq!(t.record(777_776, 0), None);
        assert_eq!(t.record(777_778, 0), None);
        assert_eq!(t.record(0, 0), None);
        let mut sent = vec![0; 1_000_000];
        sent[777_777] = 2;
        sent[0] = 5;
        let d = t.delivery(&sent);
        assert_eq!((d.expected, d.received, d.lost, d.foreign), (2, 1, 1, 3));
    }

    #[test]
    fn contiguous_and_scattered_expectations_find_their_slots() {
        // Contiguous (fan-in: all of them), given in any order and with repeats; out-of-range numbers are dropped.
        let t = SeqTracker::new(10, &[7, 5, 6, 5, 42]);
        assert!(t.contiguous);
        assert_eq!(t.expected(), 3);
        assert_eq!([4, 5, 6, 7, 8].map(|p| t.slot(p)), [None, Some(0), Some(1), Some(2), None]);
        assert_eq!(t.publisher(2), 7);
        // Scattered: binary search.
        let mut t = SeqTracker::new(100, &[90, 3, 40]);
        assert!(!t.contiguous);
        assert_eq!([3, 4, 40, 89, 90, 99].map(|p| t.slot(p)), [Some(0), None, Some(1), None, Some(2), None]);
        assert_eq!(t.record(40, 1), Some((1, Arrival::Gap)));
        assert_eq!(t.record(40, 0), Some((1, Arrival::Reordered)));
        assert_eq!(t.record(41, 0), None);
        let mut sent = vec![0; 100];
        sent[40] = 2;
        sent[90] = 1;
        let d = t.delivery(&sent);
        assert_eq!((d.expected, d.received, d.lost, d.reordered, d.foreign), (3, 2, 1, 1, 1));
        // Nothing expected.
        let mut t = SeqTracker::new(5, &[]);
        assert_eq!(t.expected(), 0);
        assert_eq!(t.record(0, 0), None);
        assert_eq!(t.delivery(&[1; 5]), Delivery { foreign: 1, ..Delivery::default() });
    }
}
