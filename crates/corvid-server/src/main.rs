//! The `corvid` MQTT broker server.

mod acl;
mod allocator;
mod config;
mod listeners;
mod metrics;
mod passwd;
mod password;
mod reload;
mod security;

use anyhow::Context;
use clap::Parser;
use config::{Config, Engine, Overflow, Sync};
use corvid::store::SyncPolicy;
use corvid::{Endpoint, OverflowPolicy, Server, ServerOptions};
use corvid_store_redb::RedbStore;
use metrics::{Draining, MetricsServer};
use security::Security;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Corvid: an MQTT 3.1, 3.1.1 and 5.0 broker.
#[derive(Debug, Parser)]
#[command(name = "corvid", version, about, args_conflicts_with_subcommands = true)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen for MQTT over TCP on ADDR:PORT; repeatable; replaces the listeners of the defaults and the file.
    #[arg(short, long, value_name = "ADDR:PORT")]
    bind: Vec<SocketAddr>,
    /// Directory of the durable store.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log level or filter: error, warn, info, debug, trace, or e.g. "corvid=debug".
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Check a configuration file and exit: 0 if it is valid, 2 if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Serve /metrics, /livez and /readyz over HTTP on ADDR:PORT (overrides `[metrics] bind`).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make or edit a password file (Mosquitto's format, as mosquitto_passwd).
    Passwd(passwd::PasswdArgs),
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Passwd(passwd)) = args.command.take() {
        return passwd::run(passwd);
    }
    if let Some(path) = &args.check_config {
        let checked = Config::load(path).map_err(|e| e.to_string()).and_then(|c| {
            // The certificate files of TLS listeners are read too, and the password and ACL files.
            listeners::check_files(&c).map_err(|e| format!("{}: {e}", path.display()))?;
            Security::load(Some(&c)).map(drop).map_err(|e| format!("{}: {e}", path.display()))
        });
        return match checked {
            Ok(()) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(config) => {
                // Certificate files of the listeners in use: a missing file or a wrong password is a config error.
                if let Err(e) = listeners::check_files(&config).map_err(|e| format!("{}: {e}", path.display()))
                    && args.bind.is_empty()
                {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                Some(config)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let security = match Security::load(config.as_ref()) {
        Ok(security) => security,
        Err(e) => {
            let path = args.config.as_deref().unwrap_or(std::path::Path::new("")).display();
            eprintln!("error: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let level = args
        .log_level
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.log_level.clone()))
        .unwrap_or_else(|| "info".to_owned());
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: --log-level {level}: {e}");
            return ExitCode::from(2);
        }
    };
    // Behind a reload layer: SIGHUP can change the filter.
    let (filter, log_filter) = tracing_subscriber::reload::Layer::new(filter);
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry().with(filter).with(format).init();
    let reloader = reload::Reloader {
        path: args.config.clone(),
        current: None,
        log_level_flag: args.log_level.is_some(),
        log_filter,
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::on_worker_idle)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, config, Arc::new(security), reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(args: &Args, config: Option<&Config>, security: &Arc<Security>) -> ServerOptions {
    let defaults = config.is_none() && args.bind.is_empty();
    let mut endpoints: Vec<Endpoint> = args.bind.iter().copied().map(Endpoint::Tcp).collect();
    if endpoints.is_empty()
        && let Some(config) = config
    {
        endpoints = config.listeners.iter().map(listeners::endpoint).collect();
    }
    if endpoints.is_empty() {
        // Secure by default, as Mosquitto 2: loopback only.
        endpoints = vec![
            Endpoint::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883)),
            Endpoint::Tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1883)),
        ];
    }
    if defaults {
        tracing::info!("listening on loopback only; use --bind 0.0.0.0:1883 or a config file to listen elsewhere");
    }
    let mut builder = ServerOptions::builder().without_default_endpoint();
    for endpoint in endpoints {
        builder = builder.with_endpoint(endpoint);
    }
    let mut options = security.install(builder).build();
    let limits = &mut options.limits;
    if let Some(config) = config {
        let l = &config.limits;
        if let Some(v) = l.max_packet_size {
            limits.max_packet_size = v;
        }
        if let Some(v) = l.max_pending_messages_per_client {
            limits.max_pending_messages_per_client = v;
        }
        if let Some(v) = l.pending_overflow {
            limits.pending_overflow = match v {
                Overflow::DropOldest => OverflowPolicy::DropOldest,
                Overflow::DropNewest => OverflowPolicy::DropNewest,
            };
        }
        if let Some(v) = l.max_inflight {
            limits.max_inflight = v;
        }
        if let Some(v) = l.connect_timeout_secs {
            limits.connect_timeout = Duration::from_secs(v);
        }
        if let Some(v) = l.max_keepalive {
            limits.max_keepalive = v;
        }
        if let Some(v) = l.max_topic_alias {
            limits.max_topic_alias = v;
        }
        if let Some(v) = l.max_session_expiry_secs {
            limits.max_session_expiry_interval = v;
        }
        if let Some(v) = l.retain_available {
            limits.retain_available = v;
        }
        if let Some(v) = l.park_idle_after_ms {
            limits.park_idle_after = (v > 0).then(|| Duration::from_millis(v));
        }
        options.sys_interval = match config.sys_interval {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => options.sys_interval,
        };
        // `allow_anonymous` is enforced by the validator `security` installs, so that SIGHUP can change it.
        options.allow_anonymous = true;
    }
    options
}

/// A start-up failure that the exit code reports.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{0}")]
    Store(String),
}

async fn run(
    args: Args,
    config: Option<Config>,
    security: Arc<Security>,
    mut reloader: reload::Reloader,
) -> anyhow::Result<()> {
    let mut options = options(&args, config.as_ref(), &security);
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("data"));
    let storage = config.as_ref().map(|c| &c.storage);
    let window = Duration::from_millis(storage.and_then(|s| s.batch_window_ms).unwrap_or(2));
    let policy = match storage.and_then(|s| s.sync) {
        Some(Sync::Always) => SyncPolicy::Always,
        Some(Sync::Never) => SyncPolicy::Never,
        Some(Sync::Batched) | None => SyncPolicy::Batched(window),
    };
    if storage.and_then(|s| s.engine) != Some(Engine::Memory) {
        let path = data_dir.join("corvid.redb");
        let store = RedbStore::open(&path).map_err(|e| StartError::Store(e.to_string()))?;
        tracing::info!(path = %path.display(), sync = ?policy, "durable store");
        options.set_persistent_store(store, policy);
    }
    let metrics_config = config.as_ref().and_then(|c| c.metrics.as_ref());
    let metrics_addr = args.metrics.or(metrics_config.map(|m| m.bind));
    let drain = Duration::from_secs(metrics_config.and_then(|m| m.drain_secs).unwrap_or(0));
    // Bound before the broker starts, so that a taken port stops the start before any client is accepted.
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let mut signals = Signals::new()?;
    let kinds: Vec<&'static str> = options.endpoints.iter().map(Endpoint::kind).collect();
    let server = Server::start(options).await.context("cannot start")?;
    tokio::spawn(allocator::watch(tokio::runtime::Handle::current()));
    let started = Instant::now();
    for (addr, kind) in server.local_addrs().iter().zip(kinds) {
        tracing::info!(%addr, transport = kind, "listening for MQTT");
    }
    security.log();
    let draining = Draining::default();
    let metrics = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "serving /metrics, /livez and /readyz over HTTP");
            Some(MetricsServer::serve(listener, server.handle(), started, draining.clone()))
        }
        None => None,
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "corvid started");
    reloader.current = config;
    while let Signal::Reload = signals.next().await {
        reloader.reload(&server, &security);
    }
    draining.start();
    if !drain.is_zero() {
        // Ready no more: load balancers stop sending clients; new ones are refused, connected ones stay.
        server.pause_accepting();
        tracing::info!(seconds = drain.as_secs(), "draining before stopping (a second signal stops at once)");
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            _ = signals.next_stop() => {}
        }
    }
    tracing::info!("stopping");
    server.stop().await;
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// What a signal asks for.
enum Signal {
    /// SIGHUP: read the configuration file again (see `reload.rs`).
    Reload,
    /// SIGTERM / SIGINT (Ctrl-C): stop.
    Stop,
}

/// The process signals the server reacts to, registered once at start.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }

    /// The next SIGTERM or SIGINT (SIGHUP is ignored meanwhile).
    async fn next_stop(&mut self) {
        while let Signal::Reload = self.next().await {}
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }

    async fn next_stop(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
