//! The flow scenarios: `fanin`, `fanout`, `pairs`, `latency`, `qos`, `slow-consumer` and `wildcards`, each a
//! [`FlowSpec`] run by [`run_flow`].
//!
//! | scenario | publishers | subscribers | pacing |
//! |---|---|---|---|
//! | `fanin` | N, one topic each | 1, on `RUN/fanin/+` | end-to-end window |
//! | `fanout` | 1 | N, on the one topic | end-to-end window |
//! | `pairs` | N, one topic each | N, one per topic | end-to-end window |
//! | `latency` | N, one topic each | N, one per topic | fixed total rate |
//! | `qos` | N, one topic each | N, one per topic | end-to-end and MQTT in-flight windows |
//! | `slow-consumer` | 1 | N fast + 1 slow, on the one topic | fixed rate |
//! | `wildcards` | 2, each across the whole tree | one per filter shape | end-to-end window |
//!
//! With `--persistent`, the `fanin` subscriber keeps a persistent session (see [`SubSpec::persistent`]): a broker
//! with a durable store then stores every QoS 1/2 message before delivering it (`--corvid-storage`).
//!
//! `wildcards` has thousands of distinct filters with `+`, `#` and exact names over a topic tree. The tree is `RUN/w/{a}/{b}/{c}`. Each subscriber takes one *shape* of filter and subscribes to every filter of
//! that shape, e.g. all `RUN/w/{a}/{b}/+` or all exact names. The filters of one shape partition the tree, so
//! every subscriber receives every message exactly once (no overlapping subscriptions, whatever the broker's
//! policy on those), and delivery is verified like any flow.

use super::{Case, Scenario, Settings, Target};
use crate::flow::{FlowSpec, PubSpec, SubSpec, run_flow};
use crate::report::{CaseResult, Unit};
use crate::subscriber::SlowReader;
use std::time::Duration;

/// How the slow consumer reads: 1 KiB every 10 ms, about 100 KiB/s.
const SLOW_READER: SlowReader = SlowReader { chunk: 1024, pause: Duration::from_millis(10) };

/// A flow with the case's settings and no clients yet.
fn base_spec(settings: &Settings, case: &Case, run: &str) -> FlowSpec {
    FlowSpec {
        version: settings.version(),
        qos: case.qos,
        inflight: case.inflight,
        window: settings.window(),
        batch: settings.batch,
        payload: settings.payload,
        warmup: settings.warmup(),
        duration: settings.duration(),
        max_messages: settings.max_messages,
        drain_timeout: settings.drain_timeout(),
        coalesce: settings.coalesce(case.qos),
        client_prefix: run.to_owned(),
        dial: None,
        publishers: Vec::new(),
        subscribers: Vec::new(),
    }
}

/// The flow of one case (`ws-throughput` has the shape of `pairs`).
pub(super) fn spec(settings: &Settings, case: &Case, run: &str) -> FlowSpec {
    let mut spec = base_spec(settings, case, run);
    let topic = |i: usize| format!("{run}/{}/{i}", case.scenario.name());
    match case.scenario {
        Scenario::Fanin => {
            let n = settings.pick(settings.connections, 8, 3);
            spec.publishers = (0..n).map(|i| PubSpec { topics: vec![topic(i)], rate: None }).collect();
            spec.subscribers = vec![SubSpec {
                filters: vec![format!("{run}/fanin/+")],
                expects: (0..n as u32).collect(),
                slow: None,
                persistent: settings.persistent,
            }];
        }
        Scenario::Fanout => {
            let n = settings.pick(settings.connections, 8, 3);
            spec.publishers = vec![PubSpec { topics: vec![topic(0)], rate: None }];
            spec.subscribers = (0..n)
                .map(|_| SubSpec { filters: vec![topic(0)], expects: vec![0], slow: None, persistent: false })
                .collect();
        }
        Scenario::Pairs | Scenario::Qos | Scenario::Latency | Scenario::WsThroughput => {
            let n = match case.scenario {
                Scenario::Pairs | Scenario::WsThroughput => settings.pick(settings.connections, 8, 3),
                _ => case.pairs.unwrap_or_else(|| settings.pick(settings.connections, 4, 2)),
            };
            let rate = (case.scenario == Scenario::Latency).then(|| {
                case.rate.map_or_else(|| settings.pick(settings.rate, 20_000.0, 2_000.0), f64::from) / n as f64
            });
            if rate.is_some() {
                spec.coalesce = None;
            }
            spec.publishers = (0..n).map(|i| PubSpec { topics: vec![topic(i)], rate }).collect();
            spec.subscribers = (0..n)
                .map(|i| SubSpec { filters: vec![topic(i)], expects: vec![i as u32], slow: None, persistent: false })
                .collect();
        }
        Scenario::SlowConsumer => {
            let n = settings.pick(settings.connections, 4, 2);
            let rate = settings.pick(settings.rate, 20_000.0, 2_000.0);
            spec.coalesce = None;
            spec.publishers = vec![PubSpec { topics: vec![topic(0)], rate: Some(rate) }];
            spec.subscribers = (0..=n)
                .map(|i| SubSpec {
                    filters: vec![topic(0)],
                    expects: vec![0],
                    slow: (i == n).then_some(SLOW_READER),
                    persistent: false,
                })
                .collect();
        }
        Scenario::Idle
        | Scenario::IdleSteady
        | Scenario::Retained
        | Scenario::Wildcards
        | Scenario::Reconnect
        | Scenario::TlsHandshake
        | Scenario::Idle100k => {}
    }
    spec
}

/// Runs one flow case.
pub(super) async fn run(target: &Target, settings: &Settings, case: &Case, run: &str) -> anyhow::Result<CaseResult> {
    let spec = spec(settings, case, run);
    anyhow::ensure!(
        !spec.publishers.is_empty() && !spec.subscribers.is_empty(),
        "{} is not a flow scenario",
        case.label
    );
    let outcome = run_flow(target, spec).await?;
    let slow = outcome.slow_delivery;
    let mut result = outcome.into_result(&case.label, &target.name, case.qos);
    if case.scenario == Scenario::SlowConsumer {
        result.push("slow received", slow.received as f64, Unit::Count);
        result.notes.push(format!(
            "slow consumer (reads {} B every {:?}): received {} of {}, lost {}",
            SLOW_READER.chunk, SLOW_READER.pause, slow.received, slow.expected, slow.lost
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).settings
    }

    #[test]
    fn shapes() {
        let s = settings(&["--size", "smoke", "--connections", "5"]);
        for scenario in [Scenario::Fanin, Scenario::Fanout, Scenario::Pairs] {
            let case = &s.cases(scenario)[0];
            let spec = spec(&s, case, "r");
            let (p, sub) = (spec.publishers.len(), spec.subscribers.len());
            match scenario {
                Scenario::Fanin => assert_eq!((p, sub), (5, 1)),
                Scenario::Fanout => assert_eq!((p, sub), (1, 5)),
                _ => assert_eq!((p, sub), (5, 5)),
            }
            for sub in &spec.subscribers {
                for &e in &sub.expects {
                    assert!((e as usize) < p);
                }
            }
        }
        assert!(!spec(&s, &s.cases(Scenario::Fanin)[0], "r").subscribers[0].persistent);
        let p = settings(&["--size", "smoke", "--persistent"]);
        assert!(spec(&p, &p.cases(Scenario::Fanin)[0], "r").subscribers[0].persistent);
        assert!(!spec(&p, &p.cases(Scenario::Pairs)[0], "r").subscribers[0].persistent);
        let slow = spec(&s, &s.cases(Scenario::SlowConsumer)[0], "r");
        assert_eq!(slow.subscribers.iter().filter(|s| s.slow.is_some()).count(), 1);
        assert!(slow.publishers[0].rate.is_some());
    }

    #[test]
    fn qos_cases() {
        let s = settings(&["--inflights", "1,16", "--qos-levels", "1,2"]);
        let labels: Vec<_> = s.cases(Scenario::Qos).into_iter().map(|c| c.label).collect();
        assert_eq!(labels, ["qos/q1-if1", "qos/q1-if16", "qos/q2-if1", "qos/q2-if16"]);
    }
}

/// The dimensions of the topic tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tree {
    a: usize,
    b: usize,
    c: usize,
}

impl Tree {
    /// A tree of about `topics` topics: 10 × 10 × topics/100, or tiny for smoke runs.
    fn new(topics: usize) -> Self {
        if topics < 200 {
            return Self { a: 2, b: 3, c: topics.div_ceil(6).max(1) };
        }
        Self { a: 10, b: 10, c: topics.div_ceil(100) }
    }

    /// Every topic, in order.
    fn topics(&self, prefix: &str) -> Vec<String> {
        let mut topics = Vec::with_capacity(self.a * self.b * self.c);
        for a in 0..self.a {
            for b in 0..self.b {
                for c in 0..self.c {
                    topics.push(format!("{prefix}/{a}/{b}/{c}"));
                }
            }
        }
        topics
    }

    /// Every filter of shape `shape` (0 to 7); each topic matches exactly one of them.
    fn filters(&self, prefix: &str, shape: usize) -> Vec<String> {
        let (ra, rb, rc) = (0..self.a, 0..self.b, 0..self.c);
        match shape % 8 {
            0 => ra.flat_map(|a| rb.clone().map(move |b| format!("{prefix}/{a}/{b}/+"))).collect(),
            1 => ra.flat_map(|a| rc.clone().map(move |c| format!("{prefix}/{a}/+/{c}"))).collect(),
            2 => rb.flat_map(|b| rc.clone().map(move |c| format!("{prefix}/+/{b}/{c}"))).collect(),
            3 => ra.map(|a| format!("{prefix}/{a}/#")).collect(),
            4 => rb.map(|b| format!("{prefix}/+/{b}/#")).collect(),
            5 => self.topics(prefix),
            6 => rc.map(|c| format!("{prefix}/+/+/{c}")).collect(),
            _ => ra.map(|a| format!("{prefix}/{a}/+/+")).collect(),
        }
    }
}

/// Runs the `wildcards` case.
pub(super) async fn run_wildcards(
    target: &Target,
    settings: &Settings,
    case: &Case,
    run: &str,
) -> anyhow::Result<CaseResult> {
    let prefix = format!("{run}/w");
    let tree = Tree::new(settings.pick(settings.topics, 2000, 24));
    let subscribers = settings.pick(settings.connections, 6, 3);
    let publishers = settings.pick(None, 2, 1);
    let topics = tree.topics(&prefix);
    let subs: Vec<SubSpec> = (0..subscribers)
        .map(|shape| SubSpec {
            filters: tree.filters(&prefix, shape),
            expects: (0..publishers as u32).collect(),
            slow: None,
            persistent: false,
        })
        .collect();
    let filters: usize = subs.iter().map(|s| s.filters.len()).sum();
    let pubs = (0..publishers)
        .map(|i| {
            // Each publisher walks the whole tree, starting at a different place.
            let mut t = topics.clone();
            t.rotate_left(i * topics.len() / publishers);
            PubSpec { topics: t, rate: None }
        })
        .collect();
    let spec = FlowSpec { publishers: pubs, subscribers: subs, ..base_spec(settings, case, run) };
    let outcome = run_flow(target, spec).await?;
    let mut result = outcome.into_result(&case.label, &target.name, case.qos);
    result.push("filters", filters as f64, Unit::Count);
    result.push("topics", topics.len() as f64, Unit::Count);
    Ok(result)
}

#[cfg(test)]
mod tree_tests {
    use super::*;
    use corvid_protocol::topic::matches;

    #[test]
    fn every_shape_partitions_the_tree() {
        for tree in [Tree::new(24), Tree::new(400)] {
            let topics = tree.topics("r/w");
            for shape in 0..8 {
                let filters = tree.filters("r/w", shape);
                let mut distinct = filters.clone();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), filters.len(), "shape {shape} repeats a filter");
                for topic in &topics {
                    let n = filters.iter().filter(|f| matches(f, topic)).count();
                    assert_eq!(n, 1, "{topic} matches {n} filters of shape {shape}");
                }
            }
        }
    }

    #[test]
    fn default_tree_has_thousands_of_filters() {
        let tree = Tree::new(2000);
        assert_eq!(tree.topics("p").len(), 2000);
        let filters: usize = (0..6).map(|s| tree.filters("p", s).len()).sum();
        assert!(filters > 2000, "{filters}");
    }
}
