//! The metrics and health endpoints, over plain HTTP (`[metrics] bind` or `--metrics ADDR`):
//!
//! - `/metrics`: Prometheus text format 0.0.4, names `corvid_<what>_<unit>`, `_total` for counters;
//! - `/livez`: 200 while the process serves HTTP;
//! - `/readyz`: 200 while MQTT clients are accepted, 503 once the server is draining to stop.
//!
//! The endpoint runs beside the broker, not inside it, so it keeps answering (503) while the broker drains.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use corvid::{ServerHandle, StatsSnapshot};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the server is draining: set on SIGTERM / SIGINT, before the broker stops.
#[derive(Debug, Clone, Default)]
pub(crate) struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on, `/readyz` answers 503.
    pub(crate) fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    server: ServerHandle,
    started: Instant,
    draining: Draining,
}

/// The running endpoint; [`MetricsServer::stop`] ends it.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Binds the endpoint's address (before the broker starts, so that a taken port stops the start).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics: cannot bind {addr}: {e}")))
}

impl MetricsServer {
    /// Serves the endpoints on `listener`, in a task of their own.
    pub(crate) fn serve(listener: TcpListener, server: ServerHandle, started: Instant, draining: Draining) -> Self {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .with_state(AppState { server, started, draining });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        });
        Self { stop, task }
    }

    /// Stops serving and waits for the task.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        // Requests in progress end quickly; do not wait on a client that keeps its connection open.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.task).await;
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.draining.is_set() || !state.server.is_accepting() || !state.server.is_running() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (sessions, connected) = state.server.session_counts();
    let gauges = Gauges {
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        clients_connected: connected,
        clients_parked: state.server.parked_count(),
        sessions,
        retained_messages: state.server.retained_count(),
        subscriptions: state.server.subscription_count(),
        ready: !state.draining.is_set() && state.server.is_accepting(),
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state.server.stats(), &gauges))
}

/// Values that go up and down, read at the scrape.
#[derive(Debug, Clone, Copy, Default)]
struct Gauges {
    uptime_seconds: f64,
    clients_connected: usize,
    clients_parked: usize,
    sessions: usize,
    retained_messages: usize,
    subscriptions: usize,
    ready: bool,
}

/// The Prometheus text of one scrape.
fn render(s: &StatsSnapshot, g: &Gauges) -> String {
    let counters: [(&str, &str, u64); 12] = [
        ("corvid_connections_total", "MQTT connections accepted (CONNACK success) since start.", s.connections_total),
        ("corvid_messages_received_total", "PUBLISH packets received from clients.", s.publish_received),
        ("corvid_messages_sent_total", "PUBLISH packets sent to clients.", s.publish_sent),
        (
            "corvid_messages_dropped_total",
            "Messages dropped: full queues, expired, or too large for the receiver.",
            s.publish_dropped,
        ),
        ("corvid_packets_received_total", "MQTT packets of every type received.", s.messages_received),
        ("corvid_packets_sent_total", "MQTT packets of every type sent.", s.messages_sent),
        ("corvid_bytes_received_total", "Bytes received on every MQTT connection.", s.bytes_received),
        ("corvid_bytes_sent_total", "Bytes sent on every MQTT connection.", s.bytes_sent),
        ("corvid_payload_bytes_received_total", "Payload bytes of PUBLISH packets received.", s.publish_bytes_received),
        ("corvid_payload_bytes_sent_total", "Payload bytes of PUBLISH packets sent.", s.publish_bytes_sent),
        ("corvid_sessions_expired_total", "Sessions removed because they expired.", s.clients_expired),
        ("corvid_clients_maximum", "The most clients connected at once since start.", s.clients_maximum),
    ];
    let mut out = String::with_capacity(4096);
    for (name, help, value) in counters {
        // `clients_maximum` only goes up, but it is a high-water mark, not a count of events: a gauge.
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
    let gauges: [(&str, &str, String); 7] = [
        ("corvid_uptime_seconds", "Seconds since the broker started.", format!("{:.3}", g.uptime_seconds)),
        ("corvid_clients_connected", "MQTT clients connected now.", g.clients_connected.to_string()),
        (
            "corvid_clients_parked",
            "Connected clients idle enough to be parked (no task of their own) now.",
            g.clients_parked.to_string(),
        ),
        ("corvid_sessions", "Sessions now, connected or not.", g.sessions.to_string()),
        ("corvid_retained_messages", "Retained messages now.", g.retained_messages.to_string()),
        ("corvid_subscriptions", "Subscriptions now.", g.subscriptions.to_string()),
        ("corvid_ready", "1 while new clients are accepted, 0 while draining.", u8::from(g.ready).to_string()),
    ];
    for (name, help, value) in gauges {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
    }
    let version = env!("CARGO_PKG_VERSION");
    let _ = write!(
        out,
        "# HELP corvid_build_info The version of the broker.\n# TYPE corvid_build_info gauge\n\
         corvid_build_info{{version=\"{version}\"}} 1\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let stats = StatsSnapshot::default();
        let gauges =
            Gauges { uptime_seconds: 1.5, sessions: 3, clients_connected: 2, ready: true, ..Gauges::default() };
        let text = render(&stats, &gauges);
        assert!(text.ends_with('\n'));
        assert!(text.contains("# TYPE corvid_connections_total counter\ncorvid_connections_total 0\n"), "{text}");
        assert!(text.contains("corvid_uptime_seconds 1.500\n"), "{text}");
        assert!(text.contains("corvid_sessions 3\n") && text.contains("corvid_clients_connected 2\n"), "{text}");
        assert!(text.contains("corvid_ready 1\n"), "{text}");
        // Every sample has HELP and TYPE lines, and names follow the Prometheus rules.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("corvid_") && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
