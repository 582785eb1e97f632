//! `idle`: N connections, each CONNECT + one SUBSCRIBE to its own topic, held open.
//!
//! Measures the accept rate (CONNECT + SUBSCRIBE handshakes completed per second, 64 in parallel) and the broker's
//! resident memory per connection (its `VmRSS` after the hold minus before the first connection, divided by N).
//! Then verifies every connection is still live: one message to each connection's topic, each must arrive
//! exactly once. Loss fails this scenario at any QoS: one message per connection leaves no excuse.
//!
//! `idle-steady` does the same in two batches of N: the second connects after the first has been held, and its
//! bytes per connection (`VmRSS` growth over the second batch and its hold) are those of a broker that has been
//! running for a while with idle clients, where memory freed by the first batch's connections is there to reuse.
//! Its hold is longer by default (12 s), past the time after which a broker may release what an idle connection
//! does not need (Corvid parks an idle connection after 10 s).

use super::{Case, Settings, Target};
use crate::client::{Client, ConnectOptions};
use crate::flow::{await_deliveries, connect_many, judge};
use crate::measure::{PeakRss, Pid};
use crate::payload::PublishTemplate;
use crate::publisher::publish_once;
use crate::report::{CaseResult, Unit};
use crate::subscriber::{SubscriberPlan, run_subscriber};
use crate::tracker::{Delivery, PublisherCounters, SubscriberCounters};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs the idle case with `batches` batches of connections (1: `idle`, 2: `idle-steady`).
pub(super) async fn run(
    target: &Target,
    settings: &Settings,
    case: &Case,
    run: &str,
    batches: usize,
) -> anyhow::Result<CaseResult> {
    let per_batch = settings.pick(settings.connections, 2000, 20).max(1);
    let n = per_batch * batches;
    anyhow::ensure!(n <= 60_000, "at most 60000 idle connections");
    let default_hold = if batches > 1 { 12.0 } else { 2.0 };
    let hold = Duration::from_secs_f64(settings.pick(settings.hold, default_hold, 0.2).max(0.0));
    let broker = target.pid.map(Pid::Other);
    let peak = broker.map(PeakRss::start);
    // Let the broker settle before the baseline.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let topics: Vec<String> = (0..n).map(|i| format!("{run}/idle/{i}")).collect();
    let receive_maximum = (case.qos.as_u8() > 0).then_some(case.inflight);
    let mut clients = Vec::with_capacity(n);
    // Per batch: resident memory before it and after its hold, and how long its connections took.
    let mut measured = Vec::with_capacity(batches);
    for batch in 0..batches {
        let range = batch * per_batch..(batch + 1) * per_batch;
        let options = range
            .map(|i| {
                let mut o = ConnectOptions::new(settings.version(), format!("{run}-i{i}"));
                o.receive_maximum = receive_maximum;
                (o, vec![topics[i].clone()], case.qos)
            })
            .collect();
        let rss_before = broker.and_then(|p| p.rss_bytes().ok());
        let started = Instant::now();
        clients.extend(connect_many(target, options).await?);
        let setup = started.elapsed();
        tokio::time::sleep(hold).await;
        let rss_after = broker.and_then(|p| p.rss_bytes().ok());
        measured.push((rss_before, rss_after, setup));
    }

    // Verify: one message to every connection, stamped as publisher i, sequence 0.
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let publishers: Arc<[PublisherCounters]> = (0..n).map(|_| PublisherCounters::default()).collect();
    let mut counters = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for (i, client) in clients.into_iter().enumerate() {
        let c = Arc::new(SubscriberCounters::default());
        counters.push(Arc::clone(&c));
        let plan = SubscriberPlan {
            expects: vec![i as u32],
            publishers: Arc::clone(&publishers),
            feeds_window: false,
            counters: c,
            latency_window: (0, u64::MAX),
            slow: None,
            coalesce: None,
            retained_only: false,
        };
        readers.push(tokio::spawn(run_subscriber(client, plan, stop.clone())));
    }
    let templates = topics
        .iter()
        .map(|t| PublishTemplate::new(t, case.qos, false, settings.payload, settings.version()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let publisher = Client::connect(target.addr, &ConnectOptions::new(settings.version(), format!("{run}-ip"))).await?;
    let timeout = settings.drain_timeout();
    let report = publish_once(publisher, templates, case.qos, case.inflight, true, timeout).await;
    let mut errors: Vec<String> = report.error.into_iter().collect();
    let sent: Vec<u64> = (0..n as u64).map(|i| u64::from(i < report.sent)).collect();
    let sent_at = Instant::now();
    await_deliveries(&counters, report.sent, timeout, Duration::from_secs(2)).await;
    // A moment for any duplicate to show up.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();
    let waited = sent_at.elapsed();

    let mut delivery = Delivery::default();
    let mut to_close = Vec::with_capacity(n + 1);
    to_close.extend(report.client);
    for handle in readers {
        let r = handle.await?;
        delivery.add(&r.tracker.delivery(&sent));
        errors.extend(r.error);
        to_close.extend(r.client);
    }
    for client in to_close {
        client.disconnect().await;
    }

    let mut result = CaseResult::new(&case.label, &target.name);
    let setup: Duration = measured.iter().map(|(_, _, setup)| *setup).sum();
    result.push("conn/s", n as f64 / setup.as_secs_f64().max(1e-9), Unit::PerSecond);
    let per_conn =
        |(before, after): (Option<u64>, Option<u64>)| Some(after?.saturating_sub(before?) as f64 / per_batch as f64);
    if let Some(&(before, after, _)) = measured.last() {
        if let Some(bytes) = per_conn((before, after)) {
            // The first batch's (`idle`), or the second's (`idle-steady`).
            result.push("bytes/conn", bytes, Unit::Bytes);
        }
    }
    if batches > 1 {
        if let Some(bytes) = measured.first().and_then(|&(before, after, _)| per_conn((before, after))) {
            result.push("bytes/conn first", bytes, Unit::Bytes);
        }
    }
    if let Some(peak) = peak {
        if let Some(rss) = peak.finish().await {
            result.push("peak RSS", rss as f64, Unit::Bytes);
        }
    }
    result.push("connections", n as f64, Unit::Count);
    judge(&mut result, &delivery, case.qos, &errors);
    if case.qos.as_u8() == 0 && delivery.lost > 0 {
        // Unread when the wait ended (the drain timeout, or nothing new for 2 s): late or never sent by the broker.
        result.fail(format!(
            "{} of {n} idle connections had not received their message {:.1} s after it was sent (drain timeout {:.1} s)",
            delivery.lost,
            waited.as_secs_f64(),
            timeout.as_secs_f64()
        ));
    }
    result.delivery = Some(delivery);
    Ok(result)
}
