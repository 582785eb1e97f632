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
    let mut state = State {
        tracker: SeqTracker::new(plan.publishers.len(), &plan.expects),
        latency: Histogram::new(),
        received: 0,
        pending: vec![0; plan.publishers.len()],
        touched: Vec::with_capacity(plan.publishers.len()),
    };
    let result = subscribe_loop(&mut client, &plan, &stop, &mut state).await;
    let (error, client) = match result {
        Ok(()) => (None, Some(client)),
        Err(e) => (Some(format!("{e:#}")), None),
    };
    SubscriberReport { tracker: state.tracker, latency: state.latency, received: state.received, error, client }
}

struct State {
    tracker: SeqTracker,
    latency: Histogram,
    received: u64,
    /// Deliveries per publisher not yet added to its shared counter.
    pending: Vec<u64>,
    /// Publishers with pending deliveries.
    touched: Vec<u32>,
}

impl State {
    /// Adds what this read brought to the shared counters.
    fn publish_counts(&mut self, plan: &SubscriberPlan, before: u64) {
        if self.received > before {
            plan.counters.delivered.fetch_add(self.received - before, Ordering::AcqRel);
        }
        for p in self.touched.drain(..) {
            let n = std::mem::take(&mut self.pending[p as usize]);
            if plan.feeds_window {
                plan.publishers[p as usize].add_delivered(n);
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
                    if state.tracker.record(stamp.publisher, stamp.seq).is_none() {
                        continue;
                    }
                    state.received += 1;
                    let p = stamp.publisher as usize;
                    if state.pending[p] == 0 {
                        state.touched.push(stamp.publisher);
                    }
                    state.pending[p] += 1;
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
