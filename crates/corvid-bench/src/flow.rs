//! The coordinator of a publish/subscribe flow: the engine of the throughput, latency, QoS, wildcard and
//! slow-consumer scenarios.
//!
//! 1. Connect and subscribe every subscriber, then connect every publisher (not measured).
//! 2. Start all publishers at once (fixed-rate ones on plain TCP are sent by [`crate::pacer`]'s thread); after the warm-up, snapshot the subscribers' counters and the CPU time of the
//!    broker and of this process; at the end of the measured window (or when every publisher has spent its
//!    budget), snapshot again. Deliveries are counted by the subscribers as they arrive, during the window.
//! 3. Stop the publishers (they settle their acknowledgements), then drain: wait until the subscribers have
//!    received everything that was sent, until nothing has arrived for a second, or until the drain timeout.
//! 4. Stop the subscribers and compare what each received with what each publisher sent.

use crate::client::{Client, ConnectOptions, Dial};
use crate::histogram::Histogram;
use crate::measure::{CpuMark, PeakRss, Pid};
use crate::pacer::{self, run_paced};
use crate::payload::{PublishTemplate, instant_ns};
use crate::publisher::{PublisherPlan, run_publisher};
use crate::report::{CaseResult, Unit};
use crate::scenarios::Target;
use crate::subscriber::{SlowReader, SubscriberPlan, run_subscriber};
use crate::tracker::{Delivery, PublisherCounters, SubscriberCounters};
use anyhow::Context;
use corvid_protocol::{ProtocolVersion, QoS};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many connections are set up at once.
const CONNECT_CONCURRENCY: usize = 64;

/// One publisher of a flow.
#[derive(Debug, Clone, Default)]
pub struct PubSpec {
    /// The topics it publishes to, in turn.
    pub topics: Vec<String>,
    /// Fixed rate in messages per second, or as fast as the windows allow.
    pub rate: Option<f64>,
}

/// One subscriber of a flow.
#[derive(Debug, Clone, Default)]
pub struct SubSpec {
    /// The filters it subscribes to.
    pub filters: Vec<String>,
    /// The publishers whose every message it must receive exactly once.
    pub expects: Vec<u32>,
    /// Read slowly (its deliveries are reported but do not decide the verdict).
    pub slow: Option<SlowReader>,
    /// Connect with a persistent session (3.1.1 Clean Session 0, 5.0 Clean Start 0 and a Session Expiry of
    /// [`PERSISTENT_SESSION_EXPIRY`]), so a broker with a durable store must store every QoS 1/2 message for it;
    /// the session is removed after the flow (a clean reconnect).
    pub persistent: bool,
}

/// Session Expiry Interval, in seconds, of [`SubSpec::persistent`] subscribers (MQTT 5).
pub const PERSISTENT_SESSION_EXPIRY: u32 = 600;

/// A whole flow.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// Protocol version of every connection.
    pub version: ProtocolVersion,
    /// QoS of every message and subscription.
    pub qos: QoS,
    /// MQTT in-flight window at QoS 1/2, both directions.
    pub inflight: u16,
    /// End-to-end window of each publisher (see [`crate::publisher`]); `None` for none.
    pub window: Option<u64>,
    /// Messages per write.
    pub batch: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Time from the start of publishing to the start of the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Message budget of each publisher.
    pub max_messages: u64,
    /// How long to wait for stragglers after the window (and for acknowledgements).
    pub drain_timeout: Duration,
    /// Subscribers' read coalescing (see [`SubscriberPlan::coalesce`]).
    pub coalesce: Option<Duration>,
    /// Client identifier prefix (unique per run).
    pub client_prefix: String,
    /// How the publishers and subscribers connect; `None`: plain TCP to the target's address.
    pub dial: Option<Dial>,
    /// The publishers.
    pub publishers: Vec<PubSpec>,
    /// The subscribers.
    pub subscribers: Vec<SubSpec>,
}

/// What a flow measured.
#[derive(Debug, Clone)]
pub struct FlowOutcome {
    /// Length of the measured window.
    pub window: Duration,
    /// Deliveries counted by the verifying subscribers during the window.
    pub delivered: u64,
    /// Messages sent by all publishers, in total.
    pub sent: u64,
    /// Latency at the verifying subscribers, for messages stamped in the window.
    pub latency: Histogram,
    /// Delivery totals of the verifying subscribers.
    pub delivery: Delivery,
    /// Delivery totals of the slow subscribers.
    pub slow_delivery: Delivery,
    /// Errors of any connection.
    pub errors: Vec<String>,
    /// Broker CPU seconds during the window.
    pub broker_cpu: Option<f64>,
    /// This process's CPU seconds during the window.
    pub tool_cpu: Option<f64>,
    /// Broker peak resident memory over the whole flow.
    pub broker_peak_rss: Option<u64>,
}

/// Connects one client per option set over TCP, at most 64 at a time, each subscribing to its filters
/// (if any); the clients come back in the order of `options`.
pub async fn connect_many(
    target: &Target,
    options: Vec<(ConnectOptions, Vec<String>, QoS)>,
) -> anyhow::Result<Vec<Client>> {
    connect_many_via(&Dial::tcp(target.addr), options).await
}

/// [`connect_many`] as `dial` says (TCP, TLS or WebSocket).
pub async fn connect_many_via(
    dial: &Dial,
    options: Vec<(ConnectOptions, Vec<String>, QoS)>,
) -> anyhow::Result<Vec<Client>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    let count = options.len();
    for (i, (opts, filters, qos)) in options.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        let dial = dial.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut client = Client::connect_via(&dial, &opts).await?;
            if !filters.is_empty() {
                client.subscribe(&filters, qos).await.with_context(|| format!("subscribing {}", opts.client_id))?;
            }
            anyhow::Ok((i, client))
        });
    }
    let mut clients: Vec<Option<Client>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, client) = joined??;
        clients[i] = Some(client);
    }
    Ok(clients.into_iter().flatten().collect())
}

/// Runs a flow against `target`.
pub async fn run_flow(target: &Target, spec: FlowSpec) -> anyhow::Result<FlowOutcome> {
    let peak = target.pid.map(|pid| PeakRss::start(Pid::Other(pid)));
    let receive_maximum = (spec.qos != QoS::AtMostOnce).then_some(spec.inflight.max(1));
    let sub_options = spec
        .subscribers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut o = ConnectOptions::new(spec.version, format!("{}-s{i}", spec.client_prefix));
            o.receive_maximum = receive_maximum;
            if s.persistent {
                o.clean_start = false;
                o.session_expiry = PERSISTENT_SESSION_EXPIRY;
            }
            (o, s.filters.clone(), spec.qos)
        })
        .collect();
    let dial = spec.dial.clone().unwrap_or_else(|| Dial::tcp(target.addr));
    let sub_clients = connect_many_via(&dial, sub_options).await?;
    let pub_options = (0..spec.publishers.len())
        .map(|i| {
            let o = ConnectOptions::new(spec.version, format!("{}-p{i}", spec.client_prefix));
            (o, Vec::new(), spec.qos)
        })
        .collect();
    let pub_clients = connect_many_via(&dial, pub_options).await?;

    let pub_counters: Arc<[PublisherCounters]> =
        (0..spec.publishers.len()).map(|_| PublisherCounters::default()).collect();
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + spec.warmup;
    let window_end = window_start + spec.duration;
    let latency_window = (instant_ns(window_start), instant_ns(window_end));

    // Templates first: nothing below may fail before the tasks are spawned and guarded.
    let templates = spec
        .publishers
        .iter()
        .map(|p| {
            p.topics
                .iter()
                .map(|t| PublishTemplate::new(t, spec.qos, false, spec.payload, spec.version))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let sub_stop = CancellationToken::new();
    // Whatever way this function returns, the subscribers and publishers stop.
    let _sub_guard = sub_stop.clone().drop_guard();
    let mut subs = Vec::new();
    let mut verified_counters = Vec::new();
    for (client, s) in sub_clients.into_iter().zip(&spec.subscribers) {
        let counters = Arc::new(SubscriberCounters::default());
        if s.slow.is_none() {
            verified_counters.push(Arc::clone(&counters));
        }
        let plan = SubscriberPlan {
            expects: s.expects.clone(),
            publishers: Arc::clone(&pub_counters),
            feeds_window: s.slow.is_none(),
            counters,
            latency_window,
            slow: s.slow,
            coalesce: spec.coalesce,
            retained_only: false,
        };
        subs.push(tokio::spawn(run_subscriber(client, plan, sub_stop.clone())));
    }
    let delivered_now = || verified_counters.iter().map(|c| c.delivered()).sum::<u64>();

    // How many verifying subscribers receive each publisher's messages.
    let mut fan = vec![0u64; spec.publishers.len()];
    for s in spec.subscribers.iter().filter(|s| s.slow.is_none()) {
        for &p in &s.expects {
            fan[p as usize] += 1;
        }
    }
    let pub_stop = CancellationToken::new();
    let _pub_guard = pub_stop.clone().drop_guard();
    let mut pubs = Vec::new();
    let mut paced = Vec::new();
    let count = spec.publishers.len();
    let publishers = pub_clients.into_iter().zip(&spec.publishers).zip(templates);
    for (i, ((client, p), templates)) in publishers.enumerate() {
        // Fixed-rate publishers are spread over one period, as independent clients would be.
        let phase = p.rate.map_or(Duration::ZERO, |rate| pacer::phase(i, count, rate));
        let plan = PublisherPlan {
            index: i as u32,
            templates,
            stamp_by_template: false,
            qos: spec.qos,
            inflight: spec.inflight,
            window: if p.rate.is_some() { None } else { spec.window },
            fan: fan[i],
            batch: spec.batch,
            rate: p.rate,
            start: start + phase,
            deadline: window_end,
            max_messages: spec.max_messages,
            ack_timeout: spec.drain_timeout,
            counters: Arc::clone(&pub_counters),
        };
        if plan.rate.is_some() && client.is_tcp() {
            paced.push((client, plan));
        } else {
            pubs.push(tokio::spawn(run_publisher(client, plan, pub_stop.clone())));
        }
    }
    // Fixed-rate publishers send from one thread, each message at its nominal instant (see `crate::pacer`).
    let paced = (!paced.is_empty()).then(|| tokio::spawn(run_paced(paced, pub_stop.clone())));

    // The measured window.
    tokio::time::sleep_until(window_start.into()).await;
    let broker_cpu = target.pid.and_then(|pid| CpuMark::start(Pid::Other(pid)));
    let tool_cpu = CpuMark::start(Pid::Myself);
    let delivered_at_start = delivered_now();
    let measured_from = Instant::now();
    while Instant::now() < window_end && !pub_counters.iter().all(|c| c.done.load(Ordering::Acquire)) {
        let left = window_end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(10))).await;
    }
    let delivered = delivered_now().saturating_sub(delivered_at_start);
    let window = measured_from.elapsed();
    let broker_cpu = broker_cpu.and_then(|m| m.elapsed());
    let tool_cpu = tool_cpu.and_then(|m| m.elapsed());

    // Stop publishing, settle acknowledgements, drain.
    pub_stop.cancel();
    let mut errors = Vec::new();
    let mut pub_clients = Vec::new();
    let mut reports = Vec::with_capacity(count);
    for handle in pubs {
        reports.push(handle.await.context("publisher task")?);
    }
    if let Some(handle) = paced {
        reports.extend(handle.await.context("paced publishers")?);
    }
    for report in reports {
        errors.extend(report.error);
        pub_clients.extend(report.client);
    }
    let sent: Vec<u64> = pub_counters.iter().map(|c| c.sent()).collect();
    let expected: u64 = spec
        .subscribers
        .iter()
        .filter(|s| s.slow.is_none())
        .flat_map(|s| s.expects.iter().map(|&p| sent[p as usize]))
        .sum();
    await_deliveries(&verified_counters, expected, spec.drain_timeout, Duration::from_secs(1)).await;
    sub_stop.cancel();

    let mut outcome = FlowOutcome {
        window,
        delivered,
        sent: sent.iter().sum(),
        latency: Histogram::new(),
        delivery: Delivery::default(),
        slow_delivery: Delivery::default(),
        errors,
        broker_cpu,
        tool_cpu,
        broker_peak_rss: None,
    };
    let mut sub_clients = Vec::new();
    for (handle, s) in subs.into_iter().zip(&spec.subscribers) {
        let report = handle.await.context("subscriber task")?;
        let delivery = report.tracker.delivery(&sent);
        if s.slow.is_some() {
            outcome.slow_delivery.add(&delivery);
        } else {
            outcome.delivery.add(&delivery);
            outcome.latency.merge(&report.latency);
            outcome.errors.extend(report.error);
        }
        sub_clients.extend(report.client);
    }
    for client in pub_clients.into_iter().chain(sub_clients) {
        client.disconnect().await;
    }
    // Remove the persistent sessions: a clean connection with the same identifier discards them.
    for (i, _) in spec.subscribers.iter().enumerate().filter(|(_, s)| s.persistent) {
        let clean = ConnectOptions::new(spec.version, format!("{}-s{i}", spec.client_prefix));
        if let Ok(client) = Client::connect(target.addr, &clean).await {
            client.disconnect().await;
        }
    }
    if let Some(peak) = peak {
        outcome.broker_peak_rss = peak.finish().await;
    }
    Ok(outcome)
}

impl FlowOutcome {
    /// Turns the outcome into a result: the standard metrics, and the verdict for `qos`.
    pub fn into_result(self, case: &str, target: &str, qos: QoS) -> CaseResult {
        let mut r = CaseResult::new(case, target);
        let secs = self.window.as_secs_f64().max(1e-9);
        r.push("msgs/s", self.delivered as f64 / secs, Unit::PerSecond);
        if self.latency.count() > 0 {
            r.push("p50", self.latency.quantile(0.50) as f64, Unit::Nanos);
            r.push("p99", self.latency.quantile(0.99) as f64, Unit::Nanos);
            r.push("p99.9", self.latency.quantile(0.999) as f64, Unit::Nanos);
            r.push("max", self.latency.max() as f64, Unit::Nanos);
        }
        if self.delivered > 0 {
            if let Some(cpu) = self.broker_cpu {
                r.push("broker CPU/msg", cpu * 1e6 / self.delivered as f64, Unit::CpuMicros);
            }
            if let Some(cpu) = self.tool_cpu {
                r.push("tool CPU/msg", cpu * 1e6 / self.delivered as f64, Unit::CpuMicros);
            }
        }
        if let Some(rss) = self.broker_peak_rss {
            r.push("peak RSS", rss as f64, Unit::Bytes);
        }
        judge(&mut r, &self.delivery, qos, &self.errors);
        if self.delivered == 0 {
            r.fail("nothing delivered during the measured window");
        }
        r.delivery = Some(self.delivery);
        r
    }
}

/// Applies the delivery rules: errors fail; at QoS 1/2 any loss or duplicate fails; loss at QoS 0, reordering
/// and foreign messages are noted.
pub fn judge(r: &mut CaseResult, d: &Delivery, qos: QoS, errors: &[String]) {
    for e in errors.iter().take(5) {
        r.fail(e.clone());
    }
    if errors.len() > 5 {
        r.fail(format!("and {} more errors", errors.len() - 5));
    }
    if qos != QoS::AtMostOnce {
        if d.lost > 0 {
            r.fail(format!("lost {} of {} at QoS {}", d.lost, d.expected, qos.as_u8()));
        }
        if d.duplicates > 0 {
            r.fail(format!("{} duplicates at QoS {}", d.duplicates, qos.as_u8()));
        }
    } else if d.lost > 0 {
        r.notes.push(format!("lost {} of {} at QoS 0", d.lost, d.expected));
    }
    if qos == QoS::AtMostOnce && d.duplicates > 0 {
        r.notes.push(format!("{} duplicates at QoS 0", d.duplicates));
    }
    if d.reordered > 0 {
        r.notes.push(format!("{} messages reordered", d.reordered));
    }
    if d.foreign > 0 {
        r.notes.push(format!("{} foreign messages", d.foreign));
    }
}

/// Waits until `counters` add up to at least `expected`, or until `timeout`, or until nothing has arrived for
/// `stall`; returns when the total was reached (`None` if it was not).
pub async fn await_deliveries(
    counters: &[Arc<SubscriberCounters>],
    expected: u64,
    timeout: Duration,
    stall: Duration,
) -> Option<Instant> {
    let total = || counters.iter().map(|c| c.delivered()).sum::<u64>();
    let deadline = Instant::now() + timeout;
    let mut last = (total(), Instant::now());
    loop {
        let now_total = total();
        if now_total >= expected {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        if now_total != last.0 {
            last = (now_total, Instant::now());
        } else if last.1.elapsed() > stall {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_duplicates_fail_at_qos_1_and_2_only() {
        let lossy = Delivery { expected: 10, received: 9, lost: 1, ..Delivery::default() };
        let dup = Delivery { expected: 10, received: 10, duplicates: 1, ..Delivery::default() };
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for d in [lossy, dup] {
                let mut r = CaseResult::new("c", "t");
                judge(&mut r, &d, qos, &[]);
                assert!(r.verdict.is_fail(), "{d:?} at {qos:?}");
            }
        }
        let mut r = CaseResult::new("c", "t");
        judge(&mut r, &lossy, QoS::AtMostOnce, &[]);
        assert!(!r.verdict.is_fail());
        assert_eq!(r.notes, ["lost 1 of 10 at QoS 0"]);
        let mut r = CaseResult::new("c", "t");
        judge(&mut r, &Delivery::default(), QoS::AtMostOnce, &["boom".to_owned()]);
        assert!(r.verdict.is_fail());
    }
}
