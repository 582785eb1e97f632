//! `ws-throughput`: the `pairs` flow (N publisher/subscriber pairs, end-to-end window, `--qos`, default 0) over
//! MQTT over WebSocket, then the same flow over plain TCP against the same server.
//!
//! Every connection of the first flow opens `ws://ADDR/PATH` with subprotocol `mqtt`; each batch of pre-encoded
//! PUBLISH packets leaves as one masked binary frame (see [`crate::ws`]), and whatever arrives is unframed into the
//! MQTT read buffer without waiting for frame boundaries. Delivery is verified for both flows as in every flow
//! scenario. Reported: the WebSocket flow's metrics (`msgs/s`, latency, CPU per message), the TCP flow's
//! `tcp msgs/s` and `tcp broker CPU/msg`, and `ws % of tcp`.

use super::{Case, Settings, Target, flows, run_id};
use crate::client::{Dial, Transport};
use crate::flow::run_flow;
use crate::report::{CaseResult, Unit};

/// Runs the `ws-throughput` case.
pub(super) async fn run(target: &Target, settings: &Settings, case: &Case, run: &str) -> anyhow::Result<CaseResult> {
    let endpoint = target.ws.clone().map_err(anyhow::Error::msg)?;
    let mut ws_spec = flows::spec(settings, case, run);
    ws_spec.dial = Some(Dial { addr: endpoint.addr, transport: Transport::WebSocket { path: endpoint.path.clone() } });
    let pairs = ws_spec.publishers.len();
    let ws = run_flow(target, ws_spec).await?;
    // The same flow over TCP, with its own topics and client identifiers.
    let tcp = run_flow(target, flows::spec(settings, case, &run_id())).await?;

    let tcp_delivered = tcp.delivered;
    let tcp_rate = tcp.delivered as f64 / tcp.window.as_secs_f64().max(1e-9);
    let tcp_cpu = tcp.broker_cpu;
    let tcp_result = tcp.into_result(&case.label, &target.name, case.qos);
    let mut result = ws.into_result(&case.label, &target.name, case.qos);
    let ws_rate = result.metric("msgs/s").unwrap_or(0.0);
    result.push("tcp msgs/s", tcp_rate, Unit::PerSecond);
    if tcp_rate > 0.0 {
        result.push("ws % of tcp", 100.0 * ws_rate / tcp_rate, Unit::Percent);
    }
    if let (Some(cpu), true) = (tcp_cpu, tcp_delivered > 0) {
        result.push("tcp broker CPU/msg", cpu * 1e6 / tcp_delivered as f64, Unit::CpuMicros);
    }
    if let crate::report::Verdict::Fail(reasons) = &tcp_result.verdict {
        for reason in reasons {
            result.fail(format!("over TCP: {reason}"));
        }
    }
    result.notes.extend(tcp_result.notes.iter().map(|n| format!("over TCP: {n}")));
    result.notes.push(format!("{pairs} pairs over {} then over TCP", endpoint.path));
    Ok(result)
}
