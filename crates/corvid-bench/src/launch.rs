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
//! - Corvid: `corvid --config FILE --bind 127.0.0.1:PORT --data-dir DIR --log-level warn`, the file setting the same
//!   queue bound (`max_pending_messages_per_client` 10,000,000) and in-flight window as Mosquitto's, and the
//!   in-memory store (Mosquitto runs with `persistence false`); with `--corvid-storage always|batched|never`, the
//!   durable redb store with that sync policy (`batch_window_ms` 2, Corvid's default).
//! - relay: this binary's `relay` subcommand.

use crate::client::{Client, ConnectOptions};
use crate::scenarios::{Target, TargetKind};
use anyhow::{Context, anyhow, bail};
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

/// A running server, killed on drop.
#[derive(Debug)]
pub struct Broker {
    kind: BrokerKind,
    label: String,
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn fresh_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("corvid-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data"))?;
    Ok(dir)
}

fn corvid_config(inflight: u16, storage: CorvidStorage) -> String {
    let mut c = format!(
        "allow_anonymous = true\n[limits]\nmax_pending_messages_per_client = 10000000\nmax_inflight = {inflight}\n\
         [storage]\n"
    );
    match storage.sync() {
        None => c.push_str("engine = \"memory\"\n"),
        Some(sync) => {
            let _ = writeln!(c, "engine = \"redb\"\nsync = \"{sync}\"\nbatch_window_ms = 2");
        }
    }
    c
}

fn mosquitto_config(port: u16, inflight: u16, persistence: Option<&Path>) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "listener {port} 127.0.0.1");
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
    c
}

fn rumqttd_config(port: u16, inflight: u16, version: ProtocolVersion) -> String {
    let section = if version.is_v5() { "v5" } else { "v4" };
    format!(
        "id = 0\n\n[router]\nid = 0\nmax_connections = 100000\nmax_outgoing_packet_count = 200\n\
         max_segment_size = 104857600\nmax_segment_count = 10\n\n\
         [{section}.1]\nname = \"{section}-1\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 0\n\n\
         [{section}.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 1048576\n\
         max_inflight_count = {inflight}\ndynamic_filters = true\n"
    )
}

/// Launches `kind` from `binary` and waits until it accepts MQTT connections.
pub async fn launch(kind: BrokerKind, binary: &Path, config: LaunchConfig) -> anyhow::Result<Broker> {
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let dir = fresh_dir()?;
    let mut command = Command::new(binary);
    match kind {
        BrokerKind::Corvid => {
            let path = dir.join("corvid.toml");
            std::fs::write(&path, corvid_config(config.inflight, config.corvid_storage))?;
            command
                .arg("--config")
                .arg(path)
                .arg("--bind")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(dir.join("data"))
                .args(["--log-level", "warn"]);
        }
        BrokerKind::Mosquitto => {
            let path = dir.join("mosquitto.conf");
            let data = dir.join("data");
            let persistence = config.mosquitto_persistence.then_some(data.as_path());
            std::fs::write(&path, mosquitto_config(port, config.inflight, persistence))?;
            command.arg("-c").arg(path);
        }
        BrokerKind::Rumqttd => {
            let path = dir.join("rumqttd.toml");
            std::fs::write(&path, rumqttd_config(port, config.inflight, config.version))?;
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
    let mut broker = Broker { kind, label: config.label(kind), child, addr, dir };
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
                bail!("{} exited during start-up ({status}); its output:\n{}", self.kind.name(), self.log_tail());
            }
            let attempt = tokio::time::timeout(Duration::from_secs(1), Client::connect(self.addr, &options));
            if let Ok(Ok(client)) = attempt.await {
                client.disconnect().await;
                return Ok(());
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

    #[test]
    fn configs_listen_on_loopback_only() {
        let m = mosquitto_config(1883, 16, None);
        assert!(m.contains("listener 1883 127.0.0.1"));
        assert!(m.contains("max_inflight_messages 16"));
        assert!(!m.contains("0.0.0.0"));
        let r = rumqttd_config(1884, 16, ProtocolVersion::V3_1_1);
        assert!(r.contains("[v4.1]") && r.contains("listen = \"127.0.0.1:1884\""));
        assert!(!r.contains("0.0.0.0") && !r.contains("console"));
        assert!(rumqttd_config(1884, 16, ProtocolVersion::V5).contains("[v5.1.connections]"));
    }

    #[test]
    fn storage_settings() {
        assert!(corvid_config(16, CorvidStorage::Memory).contains("engine = \"memory\""));
        let c = corvid_config(16, CorvidStorage::Batched);
        assert!(c.contains("engine = \"redb\"") && c.contains("sync = \"batched\""), "{c}");
        assert!(corvid_config(16, CorvidStorage::Always).contains("sync = \"always\""));
        assert!(mosquitto_config(1883, 16, None).contains("persistence false"));
        let m = mosquitto_config(1883, 16, Some(Path::new("/tmp/x/data")));
        assert!(m.contains("persistence true\npersistence_location /tmp/x/data/\nautosave_interval 1"), "{m}");
        let config = LaunchConfig {
            inflight: 16,
            version: ProtocolVersion::V3_1_1,
            relay_threads: 1,
            corvid_storage: CorvidStorage::Never,
            mosquitto_persistence: true,
        };
        assert_eq!(config.label(BrokerKind::Corvid), "corvid-redb-never");
        assert_eq!(config.label(BrokerKind::Mosquitto), "mosquitto-persist");
        assert_eq!(config.label(BrokerKind::Relay), "relay");
    }
}
