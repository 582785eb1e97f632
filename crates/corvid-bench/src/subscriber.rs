//! The subscriber loop: read, decode every packet the read brought, verify and count, write the acknowledgements
//! in one batch.
//!
//! Counting happens while the scenario runs: after every read the subscriber adds what it received to the shared
//! counters the coordinator snapshots at the edges of the measured window, and to each publisher's delivered
//! counter (which drives the publishers' end-to-end window). Latency is recorded for messages stamped inside the
//! measured window only.

use crate::client::Client;
use crate::histogram::Histogram;
use crate::payload::{Stamp, now_ns};
use crate::tracker::{PublisherCounters, SeqTracker, SubscriberCounters};
use anyhow::bail;
use corvid_protocol::{Packet, PubResponse, QoS, encode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A subscriber that reads slowly: at most `chunk` bytes, then a pause.
#[derive(Debug, Clone, Copy)]
pub struct SlowReader {
    /// Bytes per read.
    pub chunk: usize,
    /// Pause after each read.
    pub pause: Duration,
}

/// Reads smaller than this are followed by the [`SubscriberPlan::coalesce`] pause.
pub const COALESCE_BELOW: usize = 32 * 1024;

/// Everything one subscriber needs to run.
#[derive(Debug)]
pub struct SubscriberPlan {
    /// The publishers whose messages this subscriber expects.
    pub expects: Vec<u32>,
    /// The counters of every publisher of the scenario (indexed by publisher).
    pub publishers: Arc<[PublisherCounters]>,
    /// Whether this subscriber's deliveries count towards the publishers' end-to-end windows.
    pub feeds_window: bool,
    /// This subscriber's counters.
    pub counters: Arc<SubscriberCounters>,
    /// Record latency for messages stamped within `[start, end]` nanoseconds.
    pub latency_window: (u64, u64),
    /// Read slowly.
    pub slow: Option<SlowReader>,
    /// Coalesce: after a read that brought less than [`COALESCE_BELOW`] bytes, wait this long before the next, so
    /// that a broker writing one message per syscall does not make the subscriber wake once per message.
    pub coalesce: Option<Duration>,
    /// Count only PUBLISH packets with the retain flag set (retained-message scenario).
    pub retained_only: bool,
}

/// What a subscriber saw.
#[derive(Debug)]
pub struct SubscriberReport {
    /// Per-publisher sequence state.
    pub tracker: SeqTracker,
    /// Latency of messages stamped in the measured window, in nanoseconds.
    pub latency: Histogram,
    /// Benchmark messages received (duplicates included).
    pub received: u64,
    /// Why the subscriber stopped early, if it did.
    pub error: Option<String>,
    /// The connection, for a clean DISCONNECT (absent after an error).
    pub client: Option<Client>,
}

/// Runs one subscriber until `stop`.
pub async fn run_subscriber(mut client: Client, plan: SubscriberPlan, stop: CancellationToken) -> SubscriberReport {
    let mut state = State::new(&plan);
    let result = subscribe_loop(&mut client, &plan, &stop, &mut state).await;
    let (error, client) = match result {
        Ok(()) => (None, Some(client)),
        Err(e) => (Some(format!("{e:#}")), None),
    };
    SubscriberReport { tracker: state.tracker, latency: state.latency, received: state.received, error, client }
}

/// A subscriber's state: sized by the publishers it expects, not by all the publishers of the scenario (see
/// [`SeqTracker`]).
struct State {
    tracker: SeqTracker,
    latency: Histogram,
    received: u64,
    /// Deliveries per expected publisher (indexed by tracker slot) not yet added to its shared counter.
    pending: Vec<u64>,
    /// Tracker slots with pending deliveries.
    touched: Vec<usize>,
}

impl State {
    fn new(plan: &SubscriberPlan) -> Self {
        let tracker = SeqTracker::new(plan.publishers.len(), &plan.expects);
        let expected = tracker.expected();
        Self {
            tracker,
            latency: Histogram::new(),
            received: 0,
            pending: vec![0; expected],
            touched: Vec::with_capacity(expected),
        }
    }

    /// Adds what this read brought to the shared counters.
    fn publish_counts(&mut self, plan: &SubscriberPlan, before: u64) {
        if self.received > before {
            plan.counters.delivered.fetch_add(self.received - before, Ordering::AcqRel);
        }
        for slot in self.touched.drain(..) {
            let n = std::mem::take(&mut self.pending[slot]);
            if plan.feeds_window {
                plan.publishers[self.tracker.publisher(slot) as usize].add_delivered(n);
            }
        }
    }
}

async fn subscribe_loop(
    client: &mut Client,
    plan: &SubscriberPlan,
    stop: &CancellationToken,
    state: &mut State,
) -> anyhow::Result<()> {
    let limit = plan.slow.map(|s| s.chunk);
    let mut last_read = usize::MAX;
    // Bounded by `stop`, which the coordinator always cancels (after its own time limits). Packets already
    // buffered (e.g. queued messages that came with the CONNACK) are handled before the first read.
    loop {
        let now = now_ns();
        let before = state.received;
        while let Some(packet) = client.next_packet()? {
            match packet {
                Packet::Publish(publish) => {
                    if let Some(id) = publish.packet_id {
                        let ack = match publish.qos {
                            QoS::AtLeastOnce => Packet::PubAck(PubResponse::new(id)),
                            _ => Packet::PubRec(PubResponse::new(id)),
                        };
                        encode(&ack, client.version(), &mut client.wbuf)?;
                    }
                    if plan.retained_only && !publish.retain {
                        continue;
                    }
                    let Some(stamp) = Stamp::read(&publish.payload) else {
                        state.tracker.record_foreign();
                        continue;
                    };
                    let Some((slot, _)) = state.tracker.record(stamp.publisher, stamp.seq) else {
                        continue;
                    };
                    state.received += 1;
                    if state.pending[slot] == 0 {
                        state.touched.push(slot);
                    }
                    state.pending[slot] += 1;
                    let (from, to) = plan.latency_window;
                    if (from..=to).contains(&stamp.sent_ns) {
                        state.latency.record(now.saturating_sub(stamp.sent_ns));
                    }
                }
                Packet::PubRel(rel) => {
                    let comp = Packet::PubComp(PubResponse::new(rel.packet_id));
                    encode(&comp, client.version(), &mut client.wbuf)?;
                }
                Packet::SubAck(ack) => {
                    if let Some(code) = ack.reason_codes.iter().find(|c| c.is_error()) {
                        bail!("SUBSCRIBE refused: {}", code.description());
                    }
                }
                Packet::PingResp | Packet::UnsubAck(_) => {}
                Packet::Disconnect(d) => {
                    bail!("broker sent DISCONNECT: {}", d.reason_code.description())
                }
                other => bail!("unexpected {:?} at a subscriber", other.packet_type()),
            }
        }
        client.flush().await?;
        state.publish_counts(plan, before);
        let pause = match (plan.slow, plan.coalesce) {
            (Some(slow), _) => Some(slow.pause),
            (None, Some(pause)) if last_read < COALESCE_BELOW => Some(pause),
            _ => None,
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            read = client.read_more(limit) => { last_read = read?; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Arrival;

    fn plan(publishers: usize, expects: Vec<u32>) -> SubscriberPlan {
        SubscriberPlan {
            expects,
            publishers: (0..publishers).map(|_| PublisherCounters::default()).collect(),
            feeds_window: true,
            counters: Arc::new(SubscriberCounters::default()),
            latency_window: (0, u64::MAX),
            slow: None,
            coalesce: None,
            retained_only: false,
        }
    }

    #[test]
    fn state_is_sized_by_the_expected_publishers() {
        // The idle scenario: each of 100,000 connections is a publisher, and each subscriber expects one.
        let plan = plan(100_000, vec![4_321]);
        let mut state = State::new(&plan);
        assert_eq!(state.pending.len(), 1);
        assert!(state.touched.capacity() < 100_000);
        let Some((slot, Arrival::InOrder)) = state.tracker.record(4_321, 0) else { panic!("not recorded") };
        state.received += 1;
        state.pending[slot] += 1;
        state.touched.push(slot);
        state.publish_counts(&plan, 0);
        assert_eq!(plan.counters.delivered(), 1);
        assert_eq!(plan.publishers[4_321].delivered(), 1);
        assert_eq!(plan.publishers.iter().map(|p| p.delivered()).sum::<u64>(), 1);
        assert_eq!(state.pending, [0]);
        assert!(state.touched.is_empty());
    }
}
