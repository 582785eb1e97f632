//! The benchmark scenarios, their settings, and running one case against one target.
//!
//! | scenario | what it does |
//! |---|---|
//! | `fanin` | N publishers, one subscriber on a `+` wildcard |
//! | `fanout` | one publisher, N subscribers |
//! | `pairs` | N independent publisher/subscriber pairs |
//! | `latency` | N pairs at a fixed total rate; p50/p99/p99.9/max |
//! | `idle` | N connections, each CONNECT + one SUBSCRIBE, held; accept rate and broker bytes per connection |
//! | `idle-steady` | `idle` twice over: a second batch of N joins N held for a while; bytes per connection of each |
//! | `retained` | K retained topics, then M subscribers subscribe to a `#` filter over them at once |
//! | `wildcards` | thousands of distinct `+`/`#`/exact filters over a topic tree, publishing across the tree |
//! | `qos` | QoS 1 and 2 throughput for each in-flight window (cases `q1-if1`, `q2-if16`, …) |
//! | `reconnect` | persistent session: subscriber leaves, N QoS 1 messages queue, it returns and drains them |
//! | `slow-consumer` | one subscriber reads slowly; the others' latency and the broker's memory |
//! | `tls-handshake` | N connectors open TLS connections (full handshakes) + CONNECT/CONNACK + DISCONNECT in a loop |
//! | `ws-throughput` | `pairs` at QoS 0 over WebSocket, then over TCP against the same server; the ratio |
//! | `idle-100k` | up to 100,000 bare idle connections from many source addresses; memory, accept rate |
//!
//! Every scenario is bounded in time and in message count, and verifies what it measures (delivery, see
//! [`crate::tracker`]; CONNACKs, TLS versions, PINGREQ round trips).
//!
//! `tls-handshake` needs the target's TLS listener ([`Target::tls`]) and `ws-throughput` its WebSocket listener
//! ([`Target::ws`]); a target without one is skipped with the reason.

mod flows;
mod idle;
mod idle_many;
mod stored;
mod tls;
mod websocket;

use crate::report::CaseResult;
use clap::ValueEnum;
use clap::builder::TypedValueParser as _;
use corvid_protocol::{ProtocolVersion, QoS};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Scenario {
    /// N publishers to one wildcard subscriber.
    Fanin,
    /// One publisher to N subscribers.
    Fanout,
    /// N independent publisher/subscriber pairs.
    Pairs,
    /// Fixed-rate latency percentiles.
    Latency,
    /// Many idle connections: accept rate and memory per connection.
    Idle,
    /// Idle connections joining others held for a while: the memory of the second batch.
    IdleSteady,
    /// Retained-message storm.
    Retained,
    /// Thousands of wildcard filters.
    Wildcards,
    /// QoS 1 and 2 throughput per in-flight window.
    Qos,
    /// Persistent session: queue while offline, drain on reconnect.
    Reconnect,
    /// One slow subscriber among fast ones.
    SlowConsumer,
    /// TLS handshake rate: full handshakes + CONNECT/CONNACK per second.
    TlsHandshake,
    /// QoS 0 pairs over WebSocket, and the ratio to plain TCP.
    WsThroughput,
    /// Up to 100,000 idle connections: memory per connection, accept rate.
    #[value(name = "idle-100k")]
    Idle100k,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Self; 14] = [
        Self::Fanin,
        Self::Fanout,
        Self::Pairs,
        Self::Latency,
        Self::Idle,
        Self::IdleSteady,
        Self::Retained,
        Self::Wildcards,
        Self::Qos,
        Self::Reconnect,
        Self::SlowConsumer,
        Self::TlsHandshake,
        Self::WsThroughput,
        Self::Idle100k,
    ];

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanin => "fanin",
            Self::Fanout => "fanout",
            Self::Pairs => "pairs",
            Self::Latency => "latency",
            Self::Idle => "idle",
            Self::IdleSteady => "idle-steady",
            Self::Retained => "retained",
            Self::Wildcards => "wildcards",
            Self::Qos => "qos",
            Self::Reconnect => "reconnect",
            Self::SlowConsumer => "slow-consumer",
            Self::TlsHandshake => "tls-handshake",
            Self::WsThroughput => "ws-throughput",
            Self::Idle100k => "idle-100k",
        }
    }

    /// Whether the scenario needs the server's TLS listener.
    pub fn needs_tls(self) -> bool {
        self == Self::TlsHandshake
    }

    /// Whether the scenario needs the server's WebSocket listener.
    pub fn needs_ws(self) -> bool {
        self == Self::WsThroughput
    }
}

/// Preset sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Size {
    /// Benchmark sizes: seconds per case, dozens to thousands of connections.
    Normal,
    /// CI sizes: well under a second per case, a handful of connections.
    Smoke,
}

/// The MQTT protocol version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mqtt {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5")]
    V5,
}

impl Mqtt {
    /// The codec's version.
    pub fn version(self) -> ProtocolVersion {
        match self {
            Self::V311 => ProtocolVersion::V3_1_1,
            Self::V5 => ProtocolVersion::V5,
        }
    }
}

/// The TLS version of the `tls-handshake` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[value(name = "1.2")]
    V12,
    /// TLS 1.3.
    #[value(name = "1.3")]
    V13,
}

impl TlsVersion {
    /// rustls's version.
    pub fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Self::V12 => &rustls::version::TLS12,
            Self::V13 => &rustls::version::TLS13,
        }
    }
}

/// Scenario settings; unset sizes take the preset of `--size`.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Preset sizes for everything not given.
    #[arg(long, value_enum, default_value = "normal")]
    pub size: Size,
    /// MQTT version.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: Mqtt,
    /// QoS of messages and subscriptions (all scenarios but `qos` and `reconnect`, which set their own).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 20: the stamp).
    #[arg(long, default_value_t = crate::payload::DEFAULT_PAYLOAD, value_parser = clap::value_parser!(u64).range(20..=1_000_000).map(|v| v as usize))]
    pub payload: usize,
    /// Connections: publishers (fanin), subscribers (fanout, wildcards, retained, slow-consumer: fast ones), pairs
    /// (pairs, latency, qos, ws-throughput), idle connections (idle, idle-100k), concurrent connectors
    /// (tls-handshake).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Length of the measured window in seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up before the measured window, in seconds.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Total rate in messages per second (latency, slow-consumer).
    #[arg(long)]
    pub rate: Option<f64>,
    /// MQTT in-flight window at QoS 1/2 (also the brokers' configured maximum when the tool launches them).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// In-flight windows the `qos` scenario measures.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub inflights: Vec<u16>,
    /// QoS levels the `qos` scenario measures.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub qos_levels: Vec<u8>,
    /// End-to-end window: how many messages a publisher may be ahead of its subscribers (0 for none). Large enough
    /// that the null relay is not held back by it.
    #[arg(long, default_value_t = 2000)]
    pub window: u64,
    /// Messages per write.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536).map(|v| v as usize))]
    pub batch: usize,
    /// Topics: retained topics (retained), tree size (wildcards).
    #[arg(long)]
    pub topics: Option<usize>,
    /// Messages queued while offline (reconnect).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Hard cap on messages per publisher.
    #[arg(long, default_value_t = 50_000_000)]
    pub max_messages: u64,
    /// Seconds to wait for stragglers and acknowledgements after the window.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// Microseconds a subscriber of a QoS 0 throughput scenario (fanin, fanout, pairs, wildcards) waits after a
    /// small read before reading again, so a broker that writes one message per syscall does not make it wake per
    /// message (0: never wait). Latency, slow-consumer and QoS 1/2 subscribers never wait.
    #[arg(long, default_value_t = 1000)]
    pub coalesce_us: u64,
    /// The `fanin` subscriber keeps a persistent session (3.1.1 Clean Session 0 / 5.0 Session Expiry > 0), so a
    /// broker with a durable store must store each QoS 1/2 message before delivering it.
    #[arg(long)]
    pub persistent: bool,
    /// Seconds the idle scenarios hold their connections (default: 2 s; idle-steady 12 s per batch).
    #[arg(long)]
    pub hold: Option<f64>,
    /// TLS version of the tls-handshake scenario.
    #[arg(long, value_enum, default_value = "1.3")]
    pub tls_version: TlsVersion,
    /// New connections per second at most (idle-100k).
    #[arg(long, default_value_t = 20_000.0)]
    pub connect_rate: f64,
    /// Connections per source address of idle-100k (127.0.0.2, 127.0.0.3, ...; at most the ephemeral port range).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=28_000).map(|v| v as usize))]
    pub per_source: usize,
}

impl Settings {
    /// `normal` or `smoke` by the preset, unless `given`.
    pub fn pick<T: Copy>(&self, given: Option<T>, normal: T, smoke: T) -> T {
        given.unwrap_or(match self.size {
            Size::Normal => normal,
            Size::Smoke => smoke,
        })
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.mqtt.version()
    }

    /// The QoS of `--qos`.
    pub fn qos(&self) -> QoS {
        QoS::from_u8(self.qos).unwrap_or_default()
    }

    /// The measured window.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.pick(self.duration, 3.0, 0.3).max(0.01))
    }

    /// The warm-up.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.pick(self.warmup, 0.5, 0.0).max(0.0))
    }

    /// The drain timeout.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout.max(0.1))
    }

    /// The subscribers' read coalescing for a throughput flow at `qos`.
    pub fn coalesce(&self, qos: QoS) -> Option<Duration> {
        (qos == QoS::AtMostOnce && self.coalesce_us > 0).then(|| Duration::from_micros(self.coalesce_us))
    }

    /// The end-to-end window, `None` when 0.
    pub fn window(&self) -> Option<u64> {
        (self.window > 0).then_some(self.window)
    }

    /// The cases of `scenario`: one, except for `qos` (one per QoS level and in-flight window) and for `latency`
    /// without `--connections` and `--rate` (1 pair at 10,000 msgs/s, and 1,000 pairs at 20,000 msgs/s in total;
    /// smoke: 1 pair and 20 pairs at 2,000).
    pub fn cases(&self, scenario: Scenario) -> Vec<Case> {
        if scenario == Scenario::Latency && self.connections.is_none() && self.rate.is_none() {
            let presets: [(usize, u32); 2] = match self.size {
                Size::Normal => [(1, 10_000), (1000, 20_000)],
                Size::Smoke => [(1, 2_000), (20, 2_000)],
            };
            return presets
                .into_iter()
                .map(|(pairs, rate)| Case {
                    scenario,
                    label: format!("latency/{pairs}x{}k", rate / 1000),
                    qos: self.qos(),
                    inflight: self.inflight,
                    pairs: Some(pairs),
                    rate: Some(rate),
                })
                .collect();
        }
        if scenario != Scenario::Qos {
            let qos = match scenario {
                Scenario::Reconnect => QoS::AtLeastOnce,
                _ => self.qos(),
            };
            let label = if scenario == Scenario::Fanin && self.persistent {
                format!("{}/persistent", scenario.name())
            } else if scenario == Scenario::TlsHandshake && self.tls_version == TlsVersion::V12 {
                format!("{}/tls12", scenario.name())
            } else {
                scenario.name().to_owned()
            };
            return vec![Case { scenario, label, qos, inflight: self.inflight, pairs: None, rate: None }];
        }
        let mut cases = Vec::new();
        for &q in &self.qos_levels {
            let Some(qos) = QoS::from_u8(q).filter(|q| *q != QoS::AtMostOnce) else {
                continue;
            };
            for &inflight in &self.inflights {
                let label = format!("qos/q{q}-if{inflight}");
                cases.push(Case { scenario, label, qos, inflight: inflight.max(1), pairs: None, rate: None });
            }
        }
        cases
    }
}

/// One measured unit of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The scenario.
    pub scenario: Scenario,
    /// The label results are reported under.
    pub label: String,
    /// QoS of messages and subscriptions.
    pub qos: QoS,
    /// MQTT in-flight window.
    pub inflight: u16,
    /// Publisher/subscriber pairs, when the case fixes them (latency presets).
    pub pairs: Option<usize>,
    /// Total rate in messages per second, when the case fixes it (latency presets).
    pub rate: Option<u32>,
}

/// What kind of server a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// An MQTT broker.
    Broker,
    /// The null relay: no retained messages, no sessions.
    Relay,
}

/// A TLS listener of a target.
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    /// Where it listens (loopback only).
    pub addr: SocketAddr,
    /// The CA certificates to trust.
    pub roots: Vec<CertificateDer<'static>>,
    /// The name its certificate is checked against.
    pub server_name: String,
}

/// A WebSocket listener of a target.
#[derive(Debug, Clone)]
pub struct WsEndpoint {
    /// Where it listens (loopback only).
    pub addr: SocketAddr,
    /// The HTTP path of the upgrade, e.g. `/mqtt`.
    pub path: String,
}

/// The server a case runs against.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in reports.
    pub name: String,
    /// Where it listens for MQTT over TCP (loopback only).
    pub addr: SocketAddr,
    /// Its process, for CPU and memory measurement.
    pub pid: Option<u32>,
    /// Broker or relay.
    pub kind: TargetKind,
    /// Its TLS listener, or why it has none.
    pub tls: Result<TlsEndpoint, String>,
    /// Its WebSocket listener, or why it has none.
    pub ws: Result<WsEndpoint, String>,
}

impl Target {
    /// A target with a TCP listener only.
    pub fn tcp(name: impl Into<String>, addr: SocketAddr, pid: Option<u32>, kind: TargetKind) -> Self {
        Self {
            name: name.into(),
            addr,
            pid,
            kind,
            tls: Err("no TLS listener given (--tls-addr)".to_owned()),
            ws: Err("no WebSocket listener given (--ws-addr)".to_owned()),
        }
    }
}

/// A topic and client-identifier prefix unique to one run, so runs never see each other's messages or sessions.
pub fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0);
    format!("cb{}x{t}x{n}", std::process::id())
}

/// Runs one case against `target`; errors become a failed result.
pub async fn run_case(target: &Target, settings: &Settings, case: &Case) -> CaseResult {
    if target.kind == TargetKind::Relay {
        let lacks = match case.scenario {
            Scenario::Retained => Some("the relay keeps no retained messages"),
            Scenario::Reconnect => Some("the relay keeps no sessions"),
            _ => None,
        };
        if let Some(why) = lacks {
            return CaseResult::skipped(&case.label, &target.name, why.to_owned());
        }
    }
    let missing = match (&target.tls, &target.ws) {
        (Err(why), _) if case.scenario.needs_tls() => Some(why.clone()),
        (_, Err(why)) if case.scenario.needs_ws() => Some(why.clone()),
        _ => None,
    };
    if let Some(why) = missing {
        return CaseResult::skipped(&case.label, &target.name, why);
    }
    let run = run_id();
    let result = match case.scenario {
        Scenario::Fanin
        | Scenario::Fanout
        | Scenario::Pairs
        | Scenario::Latency
        | Scenario::Qos
        | Scenario::SlowConsumer => flows::run(target, settings, case, &run).await,
        Scenario::Wildcards => flows::run_wildcards(target, settings, case, &run).await,
        Scenario::Idle => idle::run(target, settings, case, &run, 1).await,
        Scenario::IdleSteady => idle::run(target, settings, case, &run, 2).await,
        Scenario::Retained => stored::run_retained(target, settings, case, &run).await,
        Scenario::Reconnect => stored::run_reconnect(target, settings, case, &run).await,
        Scenario::TlsHandshake => tls::run(target, settings, case, &run).await,
        Scenario::WsThroughput => websocket::run(target, settings, case, &run).await,
        Scenario::Idle100k => idle_many::run(target, settings, case, &run).await,
    };
    result.unwrap_or_else(|e| {
        let mut r = CaseResult::new(&case.label, &target.name);
        r.fail(format!("{e:#}"));
        r
    })
}
