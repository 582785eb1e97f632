//! The publisher loop: batched writes of pre-encoded PUBLISH packets, bounded in time and count.
//!
//! Each turn of the loop works out how many messages it may send now, the least of:
//! - the batch size;
//! - at QoS 1/2, the free slots of the MQTT in-flight window (packet identifiers not yet acknowledged);
//! - with an end-to-end window, how far the publisher may run ahead of what the subscribers have counted (so
//!   that a scenario measures delivery, not how much the broker can buffer);
//! - with a fixed rate, how many messages are due by now;
//! - what is left of the message budget.
//!
//! It then copies that many templates into the write buffer, patching packet identifiers and stamps, and writes
//! them with one `write_all`. Acknowledgements are read without waiting after every batch, and with waiting only
//! when the in-flight window is full. Nothing on this path allocates.
//!
//! Fixed-rate publishers on plain TCP are not run by this loop in the flows: [`crate::pacer`] sends their
//! messages from one thread at their nominal instants, with the same [`Progress`] and the same [`settle`].

use crate::client::Client;
use crate::payload::{PublishTemplate, Stamp, now_ns};
use crate::tracker::PublisherCounters;
use anyhow::bail;
use corvid_protocol::{Packet, PubResponse, QoS, encode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Everything one publisher needs to run.
#[derive(Debug)]
pub struct PublisherPlan {
    /// The publisher's index, written into every stamp.
    pub index: u32,
    /// The messages to send, cycled through in order.
    pub templates: Vec<PublishTemplate>,
    /// Stamp each message with its template's index as the publisher and the round through the templates as the
    /// sequence number, instead of [`PublisherPlan::index`] and a running count (one stream per topic).
    pub stamp_by_template: bool,
    /// The QoS of the templates.
    pub qos: QoS,
    /// The MQTT in-flight window at QoS 1/2 (capped by the broker's Receive Maximum).
    pub inflight: u16,
    /// End-to-end window: at most this many messages (per receiving subscriber) sent but not yet counted.
    pub window: Option<u64>,
    /// How many verifying subscribers receive each message (for the end-to-end window).
    pub fan: u64,
    /// Messages per write.
    pub batch: usize,
    /// Fixed rate in messages per second; `None` sends as fast as the windows allow.
    pub rate: Option<f64>,
    /// When to send the first message.
    pub start: Instant,
    /// When to stop sending.
    pub deadline: Instant,
    /// The most messages to send.
    pub max_messages: u64,
    /// How long to wait for outstanding acknowledgements after the last message.
    pub ack_timeout: Duration,
    /// The counters of every publisher of the scenario; this one's are at [`PublisherPlan::index`].
    pub counters: Arc<[PublisherCounters]>,
}

/// How a publisher ended.
#[derive(Debug)]
pub struct PublisherReport {
    /// Messages written.
    pub sent: u64,
    /// Messages whose QoS 1/2 flow completed (equals `sent` at QoS 0).
    pub completed: u64,
    /// Why the publisher stopped early, if it did.
    pub error: Option<String>,
    /// The connection, for a clean DISCONNECT (absent after an error).
    pub client: Option<Client>,
}

/// The longest a publisher sleeps on a full end-to-end window before it looks again (the wake-up normally comes
/// from the subscribers; this bounds the wait when a QoS 0 message is lost and never counted).
const WINDOW_POLL: Duration = Duration::from_millis(20);

/// The state of each packet identifier.
const FREE: u8 = 0;
const AWAIT_ACK: u8 = 1;
const AWAIT_COMP: u8 = 2;

/// The packet identifiers of a publisher at QoS 1/2.
pub(crate) struct Inflight {
    free: Vec<u16>,
    state: Vec<u8>,
    capacity: usize,
    completed: u64,
}

impl Inflight {
    fn new(capacity: u16) -> Self {
        Self {
            free: (1..=capacity).rev().collect(),
            state: vec![FREE; 65536],
            capacity: capacity as usize,
            completed: 0,
        }
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.capacity - self.free.len()
    }

    /// A free packet identifier, marked as awaiting its acknowledgement; `None` when the window is full.
    /// Free packet identifiers.
    pub(crate) fn free(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn take(&mut self) -> Option<u16> {
        let id = self.free.pop()?;
        self.state[id as usize] = AWAIT_ACK;
        Some(id)
    }

    fn release(&mut self, id: u16, expected: u8) -> anyhow::Result<()> {
        if self.state[id as usize] != expected {
            bail!("acknowledgement for packet identifier {id} not in flight");
        }
        self.state[id as usize] = FREE;
        self.free.push(id);
        self.completed += 1;
        Ok(())
    }

    /// Handles every acknowledgement in the client's read buffer; PUBRELs go into the write buffer.
    pub(crate) fn process(&mut self, client: &mut Client, qos: QoS) -> anyhow::Result<()> {
        while let Some(packet) = client.next_packet()? {
            match (packet, qos) {
                (Packet::PubAck(ack), QoS::AtLeastOnce) => {
                    if ack.reason_code.is_error() {
                        bail!("PUBACK refused: {}", ack.reason_code.description());
                    }
                    self.release(ack.packet_id.get(), AWAIT_ACK)?
                }
                (Packet::PubRec(rec), QoS::ExactlyOnce) => {
                    let id = rec.packet_id.get();
                    if self.state[id as usize] != AWAIT_ACK {
                        bail!("PUBREC for packet identifier {id} not in flight");
                    }
                    if rec.reason_code.is_error() {
                        bail!("PUBREC refused: {}", rec.reason_code.description());
                    }
                    self.state[id as usize] = AWAIT_COMP;
                    let rel = Packet::PubRel(PubResponse::new(rec.packet_id));
                    encode(&rel, client.version(), &mut client.wbuf)?;
                }
                (Packet::PubComp(comp), QoS::ExactlyOnce) => {
                    if comp.reason_code.is_error() {
                        bail!("PUBCOMP refused: {}", comp.reason_code.description());
                    }
                    self.release(comp.packet_id.get(), AWAIT_COMP)?
                }
                (Packet::PingResp, _) => {}
                (Packet::Disconnect(d), _) => {
                    bail!("broker sent DISCONNECT: {}", d.reason_code.description())
                }
                (other, _) => bail!("unexpected {:?} at a publisher", other.packet_type()),
            }
        }
        Ok(())
    }
}

/// Where a publisher is in its stream: its packet identifiers, the next template, the messages sent.
pub(crate) struct Progress {
    /// Packet identifiers in flight (QoS 1/2).
    pub(crate) inflight: Inflight,
    /// Whether messages are acknowledged (QoS 1/2).
    pub(crate) acked: bool,
    /// Messages written (or appended to the write buffer).
    pub(crate) sent: u64,
    template: usize,
}

impl Progress {
    /// The start of `plan`'s stream on `client` (the in-flight window is capped by the broker's Receive Maximum).
    pub(crate) fn new(client: &Client, plan: &PublisherPlan) -> Self {
        let capacity = plan.inflight.min(client.server_receive_maximum().unwrap_or(u16::MAX)).clamp(1, 65535);
        Self { inflight: Inflight::new(capacity), acked: plan.qos != QoS::AtMostOnce, sent: 0, template: 0 }
    }

    /// Appends up to `n` messages stamped `stamp_ns` to the client's write buffer (fewer when the in-flight window
    /// fills); returns how many.
    pub(crate) fn append(&mut self, client: &mut Client, plan: &PublisherPlan, n: u64, stamp_ns: u64) -> u64 {
        let mut appended = 0;
        while appended < n {
            let id = if self.acked {
                // The window was checked by the caller; stop rather than overrun it.
                let Some(id) = self.inflight.take() else { break };
                id
            } else {
                0
            };
            let stamp = if plan.stamp_by_template {
                Stamp {
                    publisher: self.template as u32,
                    seq: self.sent / plan.templates.len() as u64,
                    sent_ns: stamp_ns,
                }
            } else {
                Stamp { publisher: plan.index, seq: self.sent, sent_ns: stamp_ns }
            };
            plan.templates[self.template].append(&mut client.wbuf, id, stamp);
            self.template += 1;
            if self.template == plan.templates.len() {
                self.template = 0;
            }
            self.sent += 1;
            appended += 1;
        }
        appended
    }
}

/// Runs one publisher until its deadline, its message budget or `stop`, then waits for its acknowledgements.
pub async fn run_publisher(mut client: Client, plan: PublisherPlan, stop: CancellationToken) -> PublisherReport {
    let mut progress = Progress::new(&client, &plan);
    let result = match publish_loop(&mut client, &plan, &stop, &mut progress).await {
        Ok(()) => settle(&mut client, &plan, &mut progress).await,
        Err(e) => Err(e),
    };
    report(client, &plan, progress.sent, result)
}

/// Publishes the counters of a publisher that has finished, and its report.
pub(crate) fn report(client: Client, plan: &PublisherPlan, sent: u64, result: anyhow::Result<u64>) -> PublisherReport {
    match result {
        Ok(completed) => {
            let counters = &plan.counters[plan.index as usize];
            counters.sent.store(sent, Ordering::Release);
            counters.done.store(true, Ordering::Release);
            PublisherReport { sent, completed, error: None, client: Some(client) }
        }
        Err(e) => failed(plan.index, &plan.counters[plan.index as usize], sent, &e),
    }
}

/// Publishes the counters of publisher `index`, which stopped with `error` after `sent` messages, and its report.
pub(crate) fn failed(index: u32, counters: &PublisherCounters, sent: u64, error: &anyhow::Error) -> PublisherReport {
    counters.sent.store(sent, Ordering::Release);
    counters.done.store(true, Ordering::Release);
    PublisherReport { sent, completed: 0, error: Some(format!("publisher {index}: {error:#}")), client: None }
}

async fn publish_loop(
    client: &mut Client,
    plan: &PublisherPlan,
    stop: &CancellationToken,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let acked = progress.acked;
    let fan = plan.fan.max(1);
    let counters = &plan.counters[plan.index as usize];
    tokio::time::sleep_until(plan.start.into()).await;
    loop {
        let now = Instant::now();
        let sent = progress.sent;
        if stop.is_cancelled() || now >= plan.deadline || sent >= plan.max_messages {
            break;
        }
        let inflight = &mut progress.inflight;
        let mut n = plan.batch.max(1) as u64;
        n = n.min(plan.max_messages - sent);
        if acked {
            n = n.min(inflight.free.len() as u64);
        }
        if let Some(window) = plan.window {
            let outstanding = (sent * fan).saturating_sub(counters.delivered());
            n = n.min((window * fan).saturating_sub(outstanding) / fan);
        }
        if let Some(rate) = plan.rate {
            let due = (rate * now.duration_since(plan.start).as_secs_f64()) as u64 + 1;
            n = n.min(due.saturating_sub(sent));
        }
        if n == 0 {
            if acked && inflight.free.is_empty() {
                // The in-flight window is full: wait for acknowledgements (bounded by the deadline).
                let wait = plan.deadline.saturating_duration_since(now).min(plan.ack_timeout);
                tokio::select! {
                    r = client.read_more(None) => { r?; }
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
                inflight.process(client, plan.qos)?;
                client.flush().await?;
            } else if let Some(rate) = plan.rate {
                // Message `sent` (counting from 0) is due at `start + sent / rate`.
                let next_due = plan.start + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(next_due.min(plan.deadline).into()).await;
            } else if let Some(window) = plan.window {
                // The end-to-end window is full: sleep until the subscribers have drained half of it.
                if acked && inflight.outstanding() > 0 {
                    client.try_read_more()?;
                    inflight.process(client, plan.qos)?;
                    client.flush().await?;
                }
                let low_water = (sent * fan).saturating_sub(window * fan / 2);
                let wait = plan.deadline.saturating_duration_since(now).min(WINDOW_POLL);
                counters.wait_delivered(low_water, wait).await;
            }
            continue;
        }
        progress.append(client, plan, n, now_ns());
        client.flush().await?;
        counters.sent.store(progress.sent, Ordering::Release);
        if acked {
            client.try_read_more()?;
            progress.inflight.process(client, plan.qos)?;
        }
    }
    counters.sent.store(progress.sent, Ordering::Release);
    Ok(())
}

/// After the last message: writes what is left in the write buffer and, at QoS 1/2, waits (at most
/// [`PublisherPlan::ack_timeout`]) for every outstanding acknowledgement; returns the messages whose flow
/// completed.
pub(crate) async fn settle(client: &mut Client, plan: &PublisherPlan, progress: &mut Progress) -> anyhow::Result<u64> {
    client.flush().await?;
    if !progress.acked {
        return Ok(progress.sent);
    }
    let inflight = &mut progress.inflight;
    let settle_deadline = Instant::now() + plan.ack_timeout;
    while inflight.outstanding() > 0 {
        let left = settle_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "{} of {} messages still unacknowledged after {:?}",
                inflight.outstanding(),
                progress.sent,
                plan.ack_timeout
            );
        }
        tokio::time::timeout(left, client.read_more(None)).await.unwrap_or(Ok(0))?;
        inflight.process(client, plan.qos)?;
        client.flush().await?;
    }
    Ok(inflight.completed)
}

/// Publishes every template once, waiting for the acknowledgements, all within `timeout`: the set-up and
/// verification traffic of the idle, retained and reconnect scenarios.
pub async fn publish_once(
    client: Client,
    templates: Vec<PublishTemplate>,
    qos: QoS,
    inflight: u16,
    stamp_by_template: bool,
    timeout: Duration,
) -> PublisherReport {
    let now = Instant::now();
    let plan = PublisherPlan {
        index: 0,
        max_messages: templates.len() as u64,
        templates,
        stamp_by_template,
        qos,
        inflight,
        window: None,
        fan: 1,
        batch: 64,
        rate: None,
        start: now,
        deadline: now + timeout,
        ack_timeout: timeout,
        counters: Arc::new([PublisherCounters::default()]),
    };
    run_publisher(client, plan, CancellationToken::new()).await
}
