//! `tls-handshake`: the rate of new TLS connections.
//!
//! N connectors (`--connections`, default 8; smoke 2) each loop until the end of the measured window: TCP connect,
//! a full TLS handshake (rustls, session resumption off, only `--tls-version` offered, the test CA the only trusted
//! root, the certificate checked for `localhost`), CONNECT, CONNACK, DISCONNECT, close. A handshake counts when its
//! CONNACK arrives inside the measured window; its latency runs from the TCP connect to the CONNACK.
//!
//! Verified: every CONNACK is a success, every connection negotiated the requested TLS version, and no connection
//! failed; any error fails the case. Reported: handshakes per second, p50 / p99 / max latency, and the CPU time of
//! the broker and of the generator per 1000 handshakes over the window (the client's side of the handshake runs on
//! the same cores).

use super::{Case, Settings, Target, TlsVersion};
use crate::client::{Client, ConnectOptions, Dial, TlsClient, Transport};
use crate::histogram::Histogram;
use crate::measure::{CpuMark, Pid};
use crate::report::{CaseResult, Unit};
use anyhow::Context;
use std::time::{Duration, Instant};

/// What one connector did.
#[derive(Debug, Default)]
struct ConnectorReport {
    /// Handshakes whose CONNACK arrived inside the window.
    counted: u64,
    /// All handshakes completed.
    total: u64,
    latency: Histogram,
    error: Option<String>,
}

/// Runs the `tls-handshake` case.
pub(super) async fn run(target: &Target, settings: &Settings, case: &Case, run: &str) -> anyhow::Result<CaseResult> {
    let endpoint = target.tls.clone().map_err(anyhow::Error::msg)?;
    let tls = TlsClient::new(&endpoint.roots, settings.tls_version.rustls(), &endpoint.server_name)?;
    let expected = match settings.tls_version {
        TlsVersion::V12 => rustls::ProtocolVersion::TLSv1_2,
        TlsVersion::V13 => rustls::ProtocolVersion::TLSv1_3,
    };
    let dial = Dial { addr: endpoint.addr, transport: Transport::Tls(tls) };
    let n = settings.pick(settings.connections, 8, 2).max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + settings.warmup();
    let window_end = window_start + settings.duration();
    let cap = settings.max_messages;

    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        let dial = dial.clone();
        let options = ConnectOptions::new(settings.version(), format!("{run}-t{k}"));
        tasks.push(tokio::spawn(async move {
            let mut report = ConnectorReport::default();
            tokio::time::sleep_until(start.into()).await;
            // Bounded by the window's end and by the handshake budget.
            while Instant::now() < window_end && report.total < cap {
                let began = Instant::now();
                let client = match Client::connect_via(&dial, &options).await {
                    Ok(c) => c,
                    Err(e) => {
                        report.error = Some(format!("connector {k}: {e:#}"));
                        break;
                    }
                };
                let done = Instant::now();
                let negotiated = client.tls_version();
                client.disconnect().await;
                if negotiated != Some(expected) {
                    report.error = Some(format!("connector {k}: negotiated {negotiated:?}, not {expected:?}"));
                    break;
                }
                report.total += 1;
                if done >= window_start && done <= window_end {
                    report.counted += 1;
                    report.latency.record(done.duration_since(began).as_nanos() as u64);
                }
            }
            report
        }));
    }

    tokio::time::sleep_until(window_start.into()).await;
    let broker_cpu = target.pid.and_then(|pid| CpuMark::start(Pid::Other(pid)));
    let tool_cpu = CpuMark::start(Pid::Myself);
    let measured_from = Instant::now();
    tokio::time::sleep_until(window_end.into()).await;
    let window = measured_from.elapsed();
    let broker_cpu = broker_cpu.and_then(|m| m.elapsed());
    let tool_cpu = tool_cpu.and_then(|m| m.elapsed());

    let mut latency = Histogram::new();
    let (mut counted, mut total) = (0, 0);
    let mut errors = Vec::new();
    for task in tasks {
        let report = task.await.context("connector task")?;
        counted += report.counted;
        total += report.total;
        latency.merge(&report.latency);
        errors.extend(report.error);
    }

    let mut result = CaseResult::new(&case.label, &target.name);
    result.push("conn/s", counted as f64 / window.as_secs_f64().max(1e-9), Unit::PerSecond);
    if latency.count() > 0 {
        result.push("p50", latency.quantile(0.50) as f64, Unit::Nanos);
        result.push("p99", latency.quantile(0.99) as f64, Unit::Nanos);
        result.push("max", latency.max() as f64, Unit::Nanos);
    }
    if counted > 0 {
        if let Some(cpu) = broker_cpu {
            result.push("broker CPU/1000", cpu * 1e6 / counted as f64, Unit::CpuMillis);
        }
        if let Some(cpu) = tool_cpu {
            result.push("tool CPU/1000", cpu * 1e6 / counted as f64, Unit::CpuMillis);
        }
    }
    result.push("handshakes", total as f64, Unit::Count);
    result.push("connectors", n as f64, Unit::Count);
    for e in errors.iter().take(5) {
        result.fail(e.clone());
    }
    if errors.len() > 5 {
        result.fail(format!("and {} more connectors failed", errors.len() - 5));
    }
    if counted == 0 {
        result.fail("no handshake completed during the measured window");
    }
    let version = match settings.tls_version {
        TlsVersion::V12 => "1.2",
        TlsVersion::V13 => "1.3",
    };
    result.notes.push(format!("TLS {version}, full handshakes (no resumption), {n} connectors, {total} handshakes"));
    Ok(result)
}
