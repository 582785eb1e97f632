//! Launching the servers under test on loopback: Corvid, Mosquitto, rumqttd and the null relay.
//!
//! Each launch gets a fresh port on 127.0.0.1, a fresh directory under the system temp directory (config file,
//! data directory, log) and is ready once an MQTT CONNECT succeeds. Dropping the [`Broker`] kills the process
//! (only that pid) and removes its directory.
//!
//! Configurations:
//! - Mosquitto: `listener PORT 127.0.0.1`, anonymous, no persistence (with `--mosquitto-persistence`:
//!   `persistence true`, `persistence_location DIR/data/`, `autosave_interval 1`), `max_queued_messages` 10,000,000 (a large
//!   bound rather than 0: 0 means "no maximum" only in some versions) and `max_queued_bytes 0` (no limit), so no
//!   queued QoS 1/2 message is dropped; `max_inflight_messages` = the tool's in-flight window;
//!   `set_tcp_nodelay true` like every other server here.
//! - rumqttd: one listener (`[v4.1]` for MQTT 3.1.1, `[v5.1]` for 5.0) on the port, no console, no metrics,
//!   `next_connection_delay_ms = 0`, `max_inflight_count` = the in-flight window.
//! - Corvid: `corvid --config FILE --data-dir DIR --log-level warn`, the file holding the listeners
//!   (`[[listener]] type = "tcp"`, `bind = "127.0.0.1:PORT"`, and the extra ones below; `--bind` would replace
//!   them) and setting the same queue bound (`max_pending_messages_per_client` 10,000,000) and in-flight window
//!   as Mosquitto's, and the in-memory store (Mosquitto runs with `persistence false`); with
//!   `--corvid-storage always|batched|never`, the durable redb store with that sync policy (`batch_window_ms` 2,
//!   Corvid's default).
//! - relay: this binary's `relay` subcommand.
//!
//! Extra listeners, only for the cases that need them ([`LaunchConfig::tls`], [`LaunchConfig::ws`]), each on its
//! own fresh 127.0.0.1 port:
//! - TLS: a fresh test CA and server certificate (see [`crate::certs`]) in the server's directory. Corvid:
//!   `[[listener]] type = "tls"` with `cert` and `key` (TLS 1.2 and 1.3); Mosquitto: `listener PORT 127.0.0.1`
//!   with `certfile` and `keyfile`; rumqttd: a second `[v4.2]` / `[v5.2]` server with `tls = { certpath, keypath }`.
//! - WebSocket on `/mqtt`: Corvid `[[listener]] type = "ws"`; Mosquitto `listener PORT 127.0.0.1` with `protocol
//!   websockets`; rumqttd `[ws.1]` (MQTT 3.1.1 only: with `--mqtt 5` rumqttd has no WebSocket listener).
//! - The relay speaks plain TCP only.
//!
//! Mosquitto's plain TCP listener has `max_connections -1` (no limit), rumqttd's router `max_connections` is
//! 100,000; the open-file limit every server inherits is the generator's (see [`crate::limits`]).

use crate::certs::{ServerCerts, make_server_certs};
use crate::client::{Client, ConnectOptions};
use crate::scenarios::{Target, TargetKind, TlsEndpoint, WsEndpoint};
use anyhow::{Context, anyhow};
use clap::ValueEnum;
use corvid_protocol::ProtocolVersion;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a launched server has to accept an MQTT connection.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A server the tool can launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum BrokerKind {
    /// Corvid (`target/release/corvid`).
    Corvid,
    /// Eclipse Mosquitto.
    Mosquitto,
    /// rumqttd.
    Rumqttd,
    /// The null relay of this tool.
    Relay,
}

impl BrokerKind {
    /// Every kind, in the order they alternate.
    pub const ALL: [Self; 4] = [Self::Corvid, Self::Mosquitto, Self::Rumqttd, Self::Relay];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Corvid => "corvid",
            Self::Mosquitto => "mosquitto",
            Self::Rumqttd => "rumqttd",
            Self::Relay => "relay",
        }
    }
}

/// Corvid's store when the tool launches it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CorvidStorage {
    /// `engine = "memory"`: nothing is written to disk.
    #[default]
    Memory,
    /// redb, `sync = "always"`: every commit is flushed before the publishers it covers are acknowledged.
    Always,
    /// redb, `sync = "batched"`: like `always`, gathering operations for up to `batch_window_ms` per commit.
    Batched,
    /// redb, `sync = "never"`: publishers are acknowledged at once, commits flushed about once a second.
    Never,
}

impl CorvidStorage {
    /// The `sync` value, `None` for the in-memory store.
    pub fn sync(self) -> Option<&'static str> {
        match self {
            Self::Memory => None,
            Self::Always => Some("always"),
            Self::Batched => Some("batched"),
            Self::Never => Some("never"),
        }
    }
}

/// Where the servers' binaries are (unset: searched for), and how they are launched.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Binaries {
    /// The Corvid binary [default: $CORVID_BIN, else target/release/corvid of $CARGO_TARGET_DIR, the workspace or
    /// the current directory].
    #[arg(long)]
    pub corvid_bin: Option<PathBuf>,
    /// The Mosquitto binary [default: `mosquitto` on PATH, /usr/sbin, /usr/local/sbin].
    #[arg(long)]
    pub mosquitto_bin: Option<PathBuf>,
    /// The rumqttd binary [default: `rumqttd` on PATH, then ~/.cargo/bin].
    #[arg(long)]
    pub rumqttd_bin: Option<PathBuf>,
    /// Worker threads of the launched relay.
    #[arg(long, default_value_t = 1)]
    pub relay_threads: usize,
    /// Corvid's store: `memory`, or redb with sync policy `always`, `batched` or `never`.
    #[arg(long, value_enum, default_value = "memory")]
    pub corvid_storage: CorvidStorage,
    /// Run Mosquitto with persistence on (`persistence true`, `autosave_interval 1`).
    #[arg(long)]
    pub mosquitto_persistence: bool,
}

fn on_path(name: &str) -> Vec<PathBuf> {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect()).unwrap_or_default()
}

impl Binaries {
    /// The binary for `kind`, or why there is none.
    pub fn find(&self, kind: BrokerKind) -> Result<PathBuf, String> {
        let (given, candidates): (Option<&PathBuf>, Vec<PathBuf>) = match kind {
            BrokerKind::Relay => {
                return std::env::current_exe().map_err(|e| format!("no path to this binary: {e}"));
            }
            BrokerKind::Corvid => {
                let mut c: Vec<PathBuf> = std::env::var_os("CORVID_BIN").map(PathBuf::from).into_iter().collect();
                if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
                    c.push(PathBuf::from(dir).join("release/corvid"));
                }
                c.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/corvid"));
                c.push(PathBuf::from("target/release/corvid"));
                (self.corvid_bin.as_ref(), c)
            }
            BrokerKind::Mosquitto => {
                let mut c = on_path("mosquitto");
                c.push("/usr/sbin/mosquitto".into());
                c.push("/usr/local/sbin/mosquitto".into());
                (self.mosquitto_bin.as_ref(), c)
            }
            BrokerKind::Rumqttd => {
                let mut c = on_path("rumqttd");
                let cargo_home = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
                c.extend(cargo_home.map(|h| h.join("bin/rumqttd")));
                (self.rumqttd_bin.as_ref(), c)
            }
        };
        if let Some(path) = given {
            return if path.is_file() { Ok(path.clone()) } else { Err(format!("{} not found", path.display())) };
        }
        candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| format!("no {} binary found", kind.name()))
    }
}

/// What a launch configures.
#[derive(Debug, Clone, Copy)]
pub struct LaunchConfig {
    /// The MQTT in-flight window the server is configured with.
    pub inflight: u16,
    /// The protocol version clients will speak (rumqttd listens per version).
    pub version: ProtocolVersion,
    /// Worker threads of the relay.
    pub relay_threads: usize,
    /// Corvid's store.
    pub corvid_storage: CorvidStorage,
    /// Mosquitto with persistence on.
    pub mosquitto_persistence: bool,
    /// Add a TLS listener (where the server has one).
    pub tls: bool,
    /// Add a WebSocket listener on `/mqtt` (where the server has one).
    pub ws: bool,
}

impl LaunchConfig {
    /// The name of `kind` in reports: the kind's name, with the storage setting when it is not the default.
    pub fn label(&self, kind: BrokerKind) -> String {
        match (kind, self.corvid_storage.sync()) {
            (BrokerKind::Corvid, Some(sync)) => format!("corvid-redb-{sync}"),
            (BrokerKind::Mosquitto, _) if self.mosquitto_persistence => "mosquitto-persist".to_owned(),
            _ => kind.name().to_owned(),
        }
    }
}

/// The HTTP path of the WebSocket listeners.
pub const WS_PATH: &str = "/mqtt";

/// A running server, killed on drop.
#[derive(Debug)]
pub struct Broker {
    kind: BrokerKind,
    label: String,
    child: Child,
    addr: SocketAddr,
    tls: Result<TlsEndpoint, String>,
    ws: Result<WsEndpoint, String>,
    dir: PathBuf,
}

/// `count` distinct free ports on 127.0.0.1.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    // Hold every listener until all ports are known, so they differ.
    let listeners =
        (0..count).map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).collect::<Result<Vec<_>, _>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The listeners of one launch besides plain TCP.
#[derive(Debug, Clone, Copy, Default)]
struct Extra<'a> {
    tls: Option<(u16, &'a ServerCerts)>,
    ws: Option<u16>,
}

/// A path as a TOML basic string.
fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

fn fresh_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("corvid-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data"))?;
    Ok(dir)
}

fn corvid_config(inflight: u16, storage: CorvidStorage, port: u16, extra: Extra<'_>) -> String {
    let mut c = "allow_anonymous = true\n".to_owned();
    let _ = writeln!(c, "[[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:{port}\"");
    if let Some((port, certs)) = extra.tls {
        let _ = writeln!(
            c,
            "[[listener]]\ntype = \"tls\"\nbind = \"127.0.0.1:{port}\"\ncert = {}\nkey = {}",
            toml_path(&certs.cert_file),
            toml_path(&certs.key_file)
        );
    }
    if let Some(port) = extra.ws {
        let _ = writeln!(c, "[[listener]]\ntype = \"ws\"\nbind = \"127.0.0.1:{port}\"\npath = \"{WS_PATH}\"");
    }
    let _ = write!(c, "[limits]\nmax_pending_messages_per_client = 10000000\nmax_inflight = {inflight}\n[storage]\n");
    match storage.sync() {
        None => c.push_str("engine = \"memory\"\n"),
        Some(sync) => {
            let _ = writeln!(c, "engine = \"redb\"\nsync = \"{sync}\"\nbatch_window_ms = 2");
        }
    }
    c
}

fn mosquitto_config(port: u16, inflight: u16, persistence: Option<&Path>, extra: Extra<'_>) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "listener {port} 127.0.0.1\nmax_connections -1");
    c.push_str("allow_anonymous true\n");
    match persistence {
        None => c.push_str("persistence false\n"),
        Some(dir) => {
            // The location must end with a slash: Mosquitto appends the file name to it.
            let _ = writeln!(c, "persistence true\npersistence_location {}/\nautosave_interval 1", dir.display());
        }
    }
    c.push_str("max_queued_messages 10000000\nmax_queued_bytes 0\n");
    let _ = writeln!(c, "max_inflight_messages {inflight}");
    c.push_str("set_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n");
    // Listener options apply to the listener line above them.
    if let Some((port, certs)) = extra.tls {
        let _ = writeln!(
            c,
            "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}",
            certs.cert_file.display(),
            certs.key_file.display()
        );
    }
    if let Some(port) = extra.ws {
        let _ = writeln!(c, "listener {port} 127.0.0.1\nprotocol websockets");
    }
    c
}

fn rumqttd_config(port: u16, inflight: u16, version: ProtocolVersion, extra: Extra<'_>) -> String {
    let section = if version.is_v5() { "v5" } else { "v4" };
    let server = |name: &str, port: u16, tls: Option<&ServerCerts>| {
        let tls = tls
            .map(|c| {
                format!(
                    "[{name}.tls]\ncertpath = {}\nkeypath = {}\n\n",
                    toml_path(&c.cert_file),
                    toml_path(&c.key_file)
                )
            })
            .unwrap_or_default();
        format!(
            "[{name}]\nname = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 0\n\n{tls}\
             [{name}.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 1048576\n\
             max_inflight_count = {inflight}\ndynamic_filters = true\n\n",
            name.replace('.', "-")
        )
    };
    let mut c = "id = 0\n\n[router]\nid = 0\nmax_connections = 100000\nmax_outgoing_packet_count = 200\n\
                 max_segment_size = 104857600\nmax_segment_count = 10\n\n"
        .to_owned();
    c.push_str(&server(&format!("{section}.1"), port, None));
    if let Some((port, certs)) = extra.tls {
        c.push_str(&server(&format!("{section}.2"), port, Some(certs)));
    }
    if let (Some(port), false) = (extra.ws, version.is_v5()) {
        c.push_str(&server("ws.1", port, None));
    }
    c
}

/// How many times a server that exits during start-up is launched again, on other ports.
const LAUNCH_ATTEMPTS: u32 = 3;

/// Launches `kind` from `binary` and waits until it accepts MQTT connections.
///
/// The ports are found free just before the start, and another process may take one in between (Mosquitto's
/// WebSocket listener also binds more widely than the 127.0.0.1 probe): a server that exits during start-up is
/// launched again on fresh ports, up to [`LAUNCH_ATTEMPTS`] times.
pub async fn launch(kind: BrokerKind, binary: &Path, config: LaunchConfig) -> anyhow::Result<Broker> {
    let mut attempt = 1;
    loop {
        match launch_once(kind, binary, config).await {
            Err(e) if attempt < LAUNCH_ATTEMPTS && e.downcast_ref::<ExitedDuringStart>().is_some() => {
                eprintln!("{e:#}\nlaunching {} again on other ports", kind.name());
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The server process ended before it accepted connections.
#[derive(Debug)]
struct ExitedDuringStart {
    name: &'static str,
    status: std::process::ExitStatus,
    log: String,
}

impl std::fmt::Display for ExitedDuringStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exited during start-up ({}); its output:\n{}", self.name, self.status, self.log)
    }
}

impl std::error::Error for ExitedDuringStart {}

async fn launch_once(kind: BrokerKind, binary: &Path, config: LaunchConfig) -> anyhow::Result<Broker> {
    let ports = free_ports(3)?;
    let (port, tls_port, ws_port) = (ports[0], ports[1], ports[2]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let dir = fresh_dir()?;
    let certs = if config.tls && kind != BrokerKind::Relay { Some(make_server_certs(&dir)?) } else { None };
    let ws_supported = match kind {
        BrokerKind::Relay => Err("the relay speaks plain TCP only".to_owned()),
        BrokerKind::Rumqttd if config.version.is_v5() => {
            Err("rumqttd 0.20 serves MQTT over WebSocket for MQTT 3.1.1 only".to_owned())
        }
        _ => Ok(()),
    };
    let extra = Extra {
        tls: certs.as_ref().map(|c| (tls_port, c)),
        ws: (config.ws && ws_supported.is_ok()).then_some(ws_port),
    };
    let tls = match (&certs, kind) {
        (_, BrokerKind::Relay) => Err("the relay speaks plain TCP only".to_owned()),
        (None, _) => Err("launched without a TLS listener".to_owned()),
        (Some(c), _) => Ok(TlsEndpoint {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, tls_port)),
            roots: vec![c.ca.clone()],
            server_name: "localhost".to_owned(),
        }),
    };
    let ws = match (ws_supported, extra.ws) {
        (Err(why), _) => Err(why),
        (Ok(()), None) => Err("launched without a WebSocket listener".to_owned()),
        (Ok(()), Some(port)) => {
            Ok(WsEndpoint { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path: WS_PATH.to_owned() })
        }
    };
    let mut command = Command::new(binary);
    match kind {
        BrokerKind::Corvid => {
            let path = dir.join("corvid.toml");
            std::fs::write(&path, corvid_config(config.inflight, config.corvid_storage, port, extra))?;
            command.arg("--config").arg(path).arg("--data-dir").arg(dir.join("data")).args(["--log-level", "warn"]);
        }
        BrokerKind::Mosquitto => {
            let path = dir.join("mosquitto.conf");
            let data = dir.join("data");
            let persistence = config.mosquitto_persistence.then_some(data.as_path());
            std::fs::write(&path, mosquitto_config(port, config.inflight, persistence, extra))?;
            command.arg("-c").arg(path);
        }
        BrokerKind::Rumqttd => {
            let path = dir.join("rumqttd.toml");
            std::fs::write(&path, rumqttd_config(port, config.inflight, config.version, extra))?;
            command.arg("-q").arg("-c").arg(path);
        }
        BrokerKind::Relay => {
            command.args(["--threads", &config.relay_threads.max(1).to_string()]).args([
                "relay",
                "--bind",
                &addr.to_string(),
            ]);
        }
    }
    let log = std::fs::File::create(dir.join("server.log"))?;
    command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).current_dir(&dir);
    let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
    let mut broker = Broker { kind, label: config.label(kind), child, addr, tls, ws, dir };
    broker.wait_ready(config.version).await?;
    Ok(broker)
}

impl Broker {
    /// The kind of server.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The target to run scenarios against.
    pub fn target(&self) -> Target {
        Target {
            name: self.label.clone(),
            addr: self.addr,
            pid: Some(self.pid()),
            kind: if self.kind == BrokerKind::Relay { TargetKind::Relay } else { TargetKind::Broker },
            tls: self.tls.clone(),
            ws: self.ws.clone(),
        }
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    async fn wait_ready(&mut self, version: ProtocolVersion) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let options = ConnectOptions::new(version, "corvid-bench-ready");
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(ExitedDuringStart { name: self.kind.name(), status, log: self.log_tail() }.into());
            }
            let attempt = tokio::time::timeout(Duration::from_secs(1), Client::connect(self.addr, &options));
            if let Ok(Ok(client)) = attempt.await {
                client.disconnect().await;
                // The extra listeners must accept TCP connections too.
                let extra: Vec<SocketAddr> =
                    self.tls.iter().map(|t| t.addr).chain(self.ws.iter().map(|w| w.addr)).collect();
                let mut all = true;
                for addr in extra {
                    let probe = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr));
                    all &= matches!(probe.await, Ok(Ok(_)));
                }
                if all {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "{} did not accept an MQTT connection on {} within {READY_TIMEOUT:?}; its output:\n{}",
                    self.kind.name(),
                    self.addr,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that exits during start-up (as Mosquitto does when a port was taken in the meantime) is launched
    /// again, on other ports, up to the limit; the error names the exit.
    #[tokio::test]
    async fn a_server_that_exits_at_start_is_launched_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir().unwrap();
        let runs = dir.join("runs");
        let script = dir.join("exits.sh");
        std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 3\n", runs.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = LaunchConfig {
            inflight: 16,
            version: ProtocolVersion::V3_1_1,
            relay_threads: 1,
            corvid_storage: CorvidStorage::default(),
            mosquitto_persistence: false,
            tls: false,
            ws: false,
        };
        let error = launch(BrokerKind::Relay, &script, config).await.unwrap_err();
        assert!(error.downcast_ref::<ExitedDuringStart>().is_some(), "{error:#}");
        let lines = std::fs::read_to_string(&runs).unwrap();
        assert_eq!(lines.lines().count(), LAUNCH_ATTEMPTS as usize, "{lines}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn configs_listen_on_loopback_only() {
        let m = mosquitto_config(1883, 16, None, Extra::default());
        assert!(m.contains("listener 1883 127.0.0.1\nmax_connections -1"));
        assert!(m.contains("max_inflight_messages 16"));
        assert!(!m.contains("0.0.0.0") && !m.contains("websockets"));
        let r = rumqttd_config(1884, 16, ProtocolVersion::V3_1_1, Extra::default());
        assert!(r.contains("[v4.1]") && r.contains("listen = \"127.0.0.1:1884\""));
        assert!(!r.contains("0.0.0.0") && !r.contains("console") && !r.contains("[ws.1]"));
        assert!(rumqttd_config(1884, 16, ProtocolVersion::V5, Extra::default()).contains("[v5.1.connections]"));
        let c = corvid_config(16, CorvidStorage::Memory, 1885, Extra::default());
        assert!(c.contains("[[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:1885\""), "{c}");
        assert!(!c.contains("0.0.0.0"));
    }

    #[test]
    fn extra_listeners() {
        let certs = ServerCerts {
            ca_file: "/t/ca.crt".into(),
            cert_file: "/t/server.crt".into(),
            key_file: "/t/server.key".into(),
            ca: rustls::pki_types::CertificateDer::from(vec![1u8]),
        };
        let extra = Extra { tls: Some((8883, &certs)), ws: Some(8083) };
        let c = corvid_config(16, CorvidStorage::Memory, 1883, extra);
        assert!(
            c.contains("type = \"tls\"\nbind = \"127.0.0.1:8883\"\ncert = \"/t/server.crt\"\nkey = \"/t/server.key\""),
            "{c}"
        );
        assert!(c.contains("type = \"ws\"\nbind = \"127.0.0.1:8083\"\npath = \"/mqtt\""), "{c}");
        assert!(c.find("[[listener]]") < c.find("[limits]"), "{c}");
        let m = mosquitto_config(1883, 16, None, extra);
        assert!(m.contains("listener 8883 127.0.0.1\ncertfile /t/server.crt\nkeyfile /t/server.key"), "{m}");
        assert!(m.contains("listener 8083 127.0.0.1\nprotocol websockets"), "{m}");
        let r = rumqttd_config(1883, 16, ProtocolVersion::V3_1_1, extra);
        assert!(r.contains("[v4.2]\nname = \"v4-2\"\nlisten = \"127.0.0.1:8883\""), "{r}");
        assert!(r.contains("[v4.2.tls]\ncertpath = \"/t/server.crt\"\nkeypath = \"/t/server.key\""), "{r}");
        assert!(r.contains("[ws.1]\nname = \"ws-1\"\nlisten = \"127.0.0.1:8083\""), "{r}");
        assert!(!rumqttd_config(1883, 16, ProtocolVersion::V5, extra).contains("[ws.1]"));
        let ports = free_ports(3).unwrap();
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }

    #[test]
    fn storage_settings() {
        let plain = |s| corvid_config(16, s, 1883, Extra::default());
        assert!(plain(CorvidStorage::Memory).contains("engine = \"memory\""));
        let c = plain(CorvidStorage::Batched);
        assert!(c.contains("engine = \"redb\"") && c.contains("sync = \"batched\""), "{c}");
        assert!(plain(CorvidStorage::Always).contains("sync = \"always\""));
        assert!(mosquitto_config(1883, 16, None, Extra::default()).contains("persistence false"));
        let m = mosquitto_config(1883, 16, Some(Path::new("/tmp/x/data")), Extra::default());
        assert!(m.contains("persistence true\npersistence_location /tmp/x/data/\nautosave_interval 1"), "{m}");
        let config = LaunchConfig {
            inflight: 16,
            version: ProtocolVersion::V3_1_1,
            relay_threads: 1,
            corvid_storage: CorvidStorage::Never,
            mosquitto_persistence: true,
            tls: false,
            ws: false,
        };
        assert_eq!(config.label(BrokerKind::Corvid), "corvid-redb-never");
        assert_eq!(config.label(BrokerKind::Mosquitto), "mosquitto-persist");
        assert_eq!(config.label(BrokerKind::Relay), "relay");
    }
}
