//! The scenarios where the broker holds messages for later: retained messages and offline sessions.
//!
//! `retained`: a retained-message storm.
//!
//! A publisher stores K retained messages on K topics `RUN/ret/{k}` (QoS 1, every PUBACK awaited). Then M
//! connected subscribers all subscribe to `RUN/ret/#` at once; the scenario measures the time until every
//! subscriber holds all K (retain flag set, each exactly once), and the broker's CPU over that storm. Afterwards
//! the retained messages are cleared (empty retained PUBLISH to every topic).
//!
//! `reconnect`: a persistent session queues QoS 1 messages while its client is away, and delivers them all when
//! it returns.
//!
//! 1. The subscriber connects with a persistent session (3.1.1: Clean Session 0; 5.0: Clean Start 0 and a
//!    Session Expiry Interval), subscribes to `RUN/rc` at QoS 1 and disconnects.
//! 2. A publisher sends N QoS 1 messages to `RUN/rc`, every PUBACK awaited: they are queued in the session.
//! 3. The subscriber reconnects (the broker must report the session present) and drains. Measured: the drain
//!    rate and time, and the broker memory holding the queue. Every message must arrive exactly once.
//! 4. The session is removed (a clean connect and disconnect).

use super::{Case, Settings, Target};
use crate::client::{Client, ConnectOptions};
use crate::flow::{await_deliveries, connect_many, judge};
use crate::measure::{CpuMark, PeakRss, Pid};
use crate::payload::{PublishTemplate, clear_retained};
use crate::publisher::{PublisherPlan, publish_once, run_publisher};
use crate::report::{CaseResult, Unit};
use crate::subscriber::{SubscriberPlan, run_subscriber};
use crate::tracker::{Delivery, PublisherCounters, SubscriberCounters};
use corvid_protocol::QoS;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs the `retained` case.
pub(super) async fn run_retained(
    target: &Target,
    settings: &Settings,
    case: &Case,
    run: &str,
) -> anyhow::Result<CaseResult> {
    let k = settings.pick(settings.topics, 5000, 50).clamp(1, 1_000_000);
    let m = settings.pick(settings.connections, 8, 3).max(1);
    let version = settings.version();
    let timeout = settings.drain_timeout();
    let broker = target.pid.map(Pid::Other);
    let peak = broker.map(PeakRss::start);

    // Store K retained messages: publisher 0, sequence k on topic k.
    let topics: Vec<String> = (0..k).map(|i| format!("{run}/ret/{i}")).collect();
    let templates = topics
        .iter()
        .map(|t| PublishTemplate::new(t, QoS::AtLeastOnce, true, settings.payload, version))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let publisher = Client::connect(target.addr, &ConnectOptions::new(version, format!("{run}-rp"))).await?;
    let stored = publish_once(publisher, templates, QoS::AtLeastOnce, case.inflight, false, timeout).await;
    if let Some(e) = stored.error {
        anyhow::bail!("storing retained messages: {e}");
    }
    let Some(mut publisher) = stored.client else {
        anyhow::bail!("storing retained messages: the publisher's connection is gone");
    };

    // M subscribers, connected but not yet subscribed.
    let receive_maximum = (case.qos != QoS::AtMostOnce).then_some(case.inflight);
    let options = (0..m)
        .map(|i| {
            let mut o = ConnectOptions::new(version, format!("{run}-rs{i}"));
            o.receive_maximum = receive_maximum;
            (o, Vec::new(), case.qos)
        })
        .collect();
    let mut clients = connect_many(target, options).await?;

    // The storm: every subscriber subscribes, as close together as one task can make it.
    let filter = vec![format!("{run}/ret/#")];
    let publishers: Arc<[PublisherCounters]> = Arc::new([PublisherCounters::default()]);
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let cpu = broker.and_then(CpuMark::start);
    let tool_cpu = CpuMark::start(Pid::Myself);
    let started = Instant::now();
    for client in &mut clients {
        client.queue_subscribe(&filter, case.qos)?;
        client.flush().await?;
    }
    let mut counters = Vec::with_capacity(m);
    let mut readers = Vec::with_capacity(m);
    for client in clients {
        let c = Arc::new(SubscriberCounters::default());
        counters.push(Arc::clone(&c));
        let plan = SubscriberPlan {
            expects: vec![0],
            publishers: Arc::clone(&publishers),
            feeds_window: false,
            counters: c,
            latency_window: (1, 0),
            slow: None,
            coalesce: None,
            retained_only: true,
        };
        readers.push(tokio::spawn(run_subscriber(client, plan, stop.clone())));
    }
    let expected = (k * m) as u64;
    let done = await_deliveries(&counters, expected, timeout, Duration::from_secs(2)).await;
    let elapsed = done.unwrap_or_else(Instant::now).duration_since(started);
    let cpu = cpu.and_then(|c| c.elapsed());
    let tool_cpu = tool_cpu.and_then(|c| c.elapsed());
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();

    let sent = [k as u64];
    let mut delivery = Delivery::default();
    let mut errors = Vec::new();
    for handle in readers {
        let r = handle.await?;
        delivery.add(&r.tracker.delivery(&sent));
        errors.extend(r.error);
        if let Some(client) = r.client {
            client.disconnect().await;
        }
    }

    // Clear the retained messages (QoS 0 empty retained PUBLISHes).
    for t in &topics {
        clear_retained(t, version, &mut publisher.wbuf)?;
        if publisher.wbuf.len() > 64 * 1024 {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    publisher.disconnect().await;

    let mut result = CaseResult::new(&case.label, &target.name);
    let secs = elapsed.as_secs_f64().max(1e-9);
    result.push("msgs/s", delivery.received as f64 / secs, Unit::PerSecond);
    result.push("storm time", secs, Unit::Seconds);
    if delivery.received > 0 {
        if let Some(cpu) = cpu {
            result.push("broker CPU/msg", cpu * 1e6 / delivery.received as f64, Unit::CpuMicros);
        }
        if let Some(cpu) = tool_cpu {
            result.push("tool CPU/msg", cpu * 1e6 / delivery.received as f64, Unit::CpuMicros);
        }
    }
    if let Some(peak) = peak {
        if let Some(rss) = peak.finish().await {
            result.push("peak RSS", rss as f64, Unit::Bytes);
        }
    }
    judge(&mut result, &delivery, case.qos, &errors);
    if delivery.lost > 0 && case.qos == QoS::AtMostOnce {
        result.fail(format!("{} of {expected} retained deliveries missing", delivery.lost));
    }
    if done.is_none() {
        result.notes.push(format!("not all delivered within {timeout:?}"));
    }
    result.delivery = Some(delivery);
    Ok(result)
}

/// Session Expiry Interval (MQTT 5) of the persistent session, in seconds.
const SESSION_EXPIRY: u32 = 600;

/// Runs the `reconnect` case.
pub(super) async fn run_reconnect(
    target: &Target,
    settings: &Settings,
    case: &Case,
    run: &str,
) -> anyhow::Result<CaseResult> {
    let n = settings.pick(settings.messages, 50_000, 200).max(1);
    let version = settings.version();
    let timeout = settings.drain_timeout();
    let topic = format!("{run}/rc");
    let broker = target.pid.map(Pid::Other);
    let peak = broker.map(PeakRss::start);
    let mut options = ConnectOptions::new(version, format!("{run}-rc"));
    options.clean_start = false;
    options.session_expiry = SESSION_EXPIRY;
    options.receive_maximum = Some(case.inflight);

    // 1. Create the session and leave.
    let mut subscriber = Client::connect(target.addr, &options).await?;
    subscriber.subscribe(std::slice::from_ref(&topic), QoS::AtLeastOnce).await?;
    subscriber.disconnect().await;
    let rss_before = broker.and_then(|p| p.rss_bytes().ok());

    // 2. Queue N messages.
    let publisher = Client::connect(target.addr, &ConnectOptions::new(version, format!("{run}-rcp"))).await?;
    let now = Instant::now();
    let counters: Arc<[PublisherCounters]> = Arc::new([PublisherCounters::default()]);
    let plan = PublisherPlan {
        index: 0,
        templates: vec![PublishTemplate::new(&topic, QoS::AtLeastOnce, false, settings.payload, version)?],
        stamp_by_template: false,
        qos: QoS::AtLeastOnce,
        inflight: case.inflight,
        window: None,
        fan: 1,
        batch: settings.batch,
        rate: None,
        start: now,
        deadline: now + timeout,
        max_messages: n,
        ack_timeout: timeout,
        counters: Arc::clone(&counters),
    };
    let published = run_publisher(publisher, plan, CancellationToken::new()).await;
    if let Some(e) = published.error {
        anyhow::bail!("queueing messages: {e}");
    }
    if let Some(client) = published.client {
        client.disconnect().await;
    }
    let sent = [published.sent];
    // Let the broker finish routing into the offline session before measuring its memory.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_queued = broker.and_then(|p| p.rss_bytes().ok());

    // 3. Come back and drain.
    let cpu = broker.and_then(CpuMark::start);
    let started = Instant::now();
    let subscriber = Client::connect(target.addr, &options).await?;
    let session_present = subscriber.session_present();
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let sub_counters = Arc::new(SubscriberCounters::default());
    let plan = SubscriberPlan {
        expects: vec![0],
        publishers: Arc::new([PublisherCounters::default()]),
        feeds_window: false,
        counters: Arc::clone(&sub_counters),
        latency_window: (1, 0),
        slow: None,
        coalesce: None,
        retained_only: false,
    };
    let reader = tokio::spawn(run_subscriber(subscriber, plan, stop.clone()));
    let done =
        await_deliveries(std::slice::from_ref(&sub_counters), published.sent, timeout, Duration::from_secs(2)).await;
    let elapsed = done.unwrap_or_else(Instant::now).duration_since(started);
    let cpu = cpu.and_then(|c| c.elapsed());
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();
    let report = reader.await?;
    let delivery = report.tracker.delivery(&sent);
    let errors: Vec<String> = report.error.into_iter().collect();
    if let Some(client) = report.client {
        client.disconnect().await;
    }

    // 4. Remove the session.
    let mut clean = options.clone();
    clean.clean_start = true;
    clean.session_expiry = 0;
    if let Ok(client) = Client::connect(target.addr, &clean).await {
        client.disconnect().await;
    }

    let mut result = CaseResult::new(&case.label, &target.name);
    let secs = elapsed.as_secs_f64().max(1e-9);
    result.push("msgs/s", delivery.received as f64 / secs, Unit::PerSecond);
    result.push("drain time", secs, Unit::Seconds);
    result.push("queued", published.sent as f64, Unit::Count);
    if let (Some(cpu), true) = (cpu, delivery.received > 0) {
        result.push("broker CPU/msg", cpu * 1e6 / delivery.received as f64, Unit::CpuMicros);
    }
    if let (Some(before), Some(queued)) = (rss_before, rss_queued) {
        let per_msg = queued.saturating_sub(before) as f64 / published.sent.max(1) as f64;
        result.push("bytes/queued msg", per_msg, Unit::Bytes);
    }
    if let Some(peak) = peak {
        if let Some(rss) = peak.finish().await {
            result.push("peak RSS", rss as f64, Unit::Bytes);
        }
    }
    if !session_present {
        result.fail("the broker did not resume the session (CONNACK session present = 0)");
    }
    judge(&mut result, &delivery, QoS::AtLeastOnce, &errors);
    result.delivery = Some(delivery);
    Ok(result)
}
