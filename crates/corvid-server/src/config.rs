//! The TOML configuration file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Where the durable store lives.
    pub(crate) data_dir: Option<PathBuf>,
    /// Whether clients without a user name may connect. Absent in a file means false, as in Mosquitto 2.
    pub(crate) allow_anonymous: Option<bool>,
    /// Seconds between `$SYS` updates; 0 turns them off.
    pub(crate) sys_interval: Option<u64>,
    /// Log filter, e.g. "info" or "corvid=debug".
    pub(crate) log_level: Option<String>,
    /// Users and password hashes, Mosquitto's format (see `password.rs`); relative to the config file's folder.
    pub(crate) password_file: Option<PathBuf>,
    /// Access rules, Mosquitto's format (see `acl.rs`); relative to the config file's folder.
    pub(crate) acl_file: Option<PathBuf>,
    /// Network listeners.
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<Listener>,
    /// Core limits.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// The durable store.
    #[serde(default)]
    pub(crate) storage: StorageConfig,
    /// The metrics and health endpoints; absent means off.
    pub(crate) metrics: Option<MetricsConfig>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Where `/metrics`, `/livez` and `/readyz` are served (plain HTTP).
    pub(crate) bind: SocketAddr,
    /// On SIGTERM / SIGINT: seconds to answer 503 on `/readyz` and refuse new clients before stopping.
    pub(crate) drain_secs: Option<u64>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageConfig {
    /// "always", "batched" or "never".
    pub(crate) sync: Option<Sync>,
    /// The group-commit window of `sync = "batched"`, in milliseconds.
    pub(crate) batch_window_ms: Option<u64>,
    /// "redb" (the default, durable) or "memory" (nothing survives a restart).
    pub(crate) engine: Option<Engine>,
}

/// `sync` values.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Sync {
    Always,
    Batched,
    Never,
}

/// `engine` values.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Engine {
    Redb,
    Memory,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    /// The transport.
    #[serde(rename = "type")]
    pub(crate) kind: ListenerKind,
    /// Address and port.
    pub(crate) bind: SocketAddr,
    /// TLS (`tls`, `wss`): the certificate chain, PEM (see `listeners.rs` for these keys).
    pub(crate) cert: Option<PathBuf>,
    /// TLS: the private key, PEM.
    pub(crate) key: Option<PathBuf>,
    /// TLS: a PKCS#12 file instead of `cert` and `key`.
    pub(crate) pkcs12: Option<PathBuf>,
    /// TLS: the password of `pkcs12`.
    pub(crate) pkcs12_password: Option<String>,
    /// TLS: "1.2", "1.3" or both (the default).
    pub(crate) tls_versions: Option<Vec<String>>,
    /// TLS: require client certificates issued by these CAs (PEM).
    pub(crate) client_ca: Option<PathBuf>,
    /// TLS, with `client_ca`: false lets clients without a certificate connect (true by default).
    pub(crate) require_certificate: Option<bool>,
    /// WebSocket (`ws`, `wss`): the HTTP path, "/mqtt" by default.
    pub(crate) path: Option<String>,
}

/// Listener transports.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ListenerKind {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    pub(crate) max_packet_size: Option<u32>,
    pub(crate) max_pending_messages_per_client: Option<usize>,
    pub(crate) pending_overflow: Option<Overflow>,
    pub(crate) max_inflight: Option<u16>,
    pub(crate) connect_timeout_secs: Option<u64>,
    pub(crate) max_keepalive: Option<u16>,
    pub(crate) max_topic_alias: Option<u16>,
    pub(crate) max_session_expiry_secs: Option<u32>,
    pub(crate) retain_available: Option<bool>,
    /// Milliseconds a plain-TCP connection is idle before it is parked; 0: never.
    pub(crate) park_idle_after_ms: Option<u64>,
}

/// `pending_overflow` values.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Overflow {
    DropOldest,
    DropNewest,
}

/// A configuration error, naming the file and, from the TOML parser, the line, column and key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads and checks a configuration file.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text, path)?;
        crate::listeners::resolve_paths(&mut config.listeners, path);
        let dir = path.parent().unwrap_or(Path::new(""));
        for file in [&mut config.password_file, &mut config.acl_file].into_iter().flatten() {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        Ok(config)
    }

    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: describe(&e, text) })?;
        config.check().map_err(|r| ConfigError::Invalid { path: path.to_owned(), message: r.describe(text) })?;
        Ok(config)
    }

    /// The values the parser took but the broker does not.
    fn check(&self) -> Result<(), Rejected> {
        crate::listeners::check(&self.listeners)?;
        let reject = |table: &'static str, key: &'static str, message: &str| {
            Err(Rejected { table, index: 0, key: Some(key), message: message.to_owned() })
        };
        if self.limits.max_inflight == Some(0) {
            return reject("limits", "max_inflight", "must be at least 1");
        }
        if self.limits.max_pending_messages_per_client == Some(0) {
            return reject("limits", "max_pending_messages_per_client", "must be at least 1");
        }
        if self.storage.batch_window_ms.is_some_and(|ms| ms > 1000) {
            return reject("storage", "batch_window_ms", "at most 1000");
        }
        if let Some(size) = self.limits.max_packet_size
            && size < 64
        {
            return reject("limits", "max_packet_size", "must be at least 64 bytes");
        }
        if self.metrics.as_ref().and_then(|m| m.drain_secs).is_some_and(|s| s > 3600) {
            return reject("metrics", "drain_secs", "at most 3600");
        }
        Ok(())
    }
}

/// A value the parser accepted and the broker does not: the key (of the `index`-th `[table]` or `[[table]]`, from
/// 0) and why. `key` is `None` when the table as a whole is at fault.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) table: &'static str,
    pub(crate) index: usize,
    pub(crate) key: Option<&'static str>,
    pub(crate) message: String,
}

impl Rejected {
    /// "line L, key `table.key`: message", with the line found in `text`.
    fn describe(&self, text: &str) -> String {
        let key = match self.key {
            Some(key) => format!("{}.{key}", self.table),
            None => self.table.to_owned(),
        };
        match line_of(text, self.table, self.index, self.key) {
            Some(line) => format!("line {line}, key `{key}`: {}", self.message),
            None => format!("key `{key}`: {}", self.message),
        }
    }
}

/// The line (1-based) of `key` in the `index`-th `[table]` or `[[table]]` of `text`, or of that table's header
/// when `key` is `None`.
fn line_of(text: &str, table: &str, index: usize, key: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().enumerate().filter(|(_, l)| table_header(l) == Some(table)).nth(index)?.0;
    let Some(key) = key else { return Some(start + 1) };
    lines[start + 1..]
        .iter()
        .take_while(|l| table_header(l).is_none())
        .position(|l| key_of(l) == Some(key))
        .map(|i| start + 2 + i)
}

/// The table a `[table]` or `[[table]]` line opens (comments aside).
fn table_header(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    line.starts_with('[').then(|| line.trim_start_matches('[').trim_end_matches(']').trim())
}

/// The key a `key = value` line sets.
fn key_of(line: &str) -> Option<&str> {
    line.split_once('=').map(|(k, _)| k.trim().trim_matches('"'))
}

/// "line L, column C, key `table.key`: message", from the parser's span.
fn describe(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim_end().to_owned();
    let Some(span) = error.span() else { return message };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    match key_at(text, line) {
        Some(key) => format!("line {line}, column {column}, key `{key}`: {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The dotted key defined on line `line` (1-based): the nearest `[table]` or `[[table]]` above, then the key.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let key = key_of(lines.get(line.checked_sub(1)?)?)?;
    let table = lines[..line - 1].iter().rev().find_map(|l| table_header(l));
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("corvid.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn full_example_parses() {
        let config = parse(
            r#"
data_dir = "data"
allow_anonymous = true
sys_interval = 10
[[listener]]
type = "tcp"
bind = "0.0.0.0:1883"
[limits]
max_packet_size = 1048576
max_pending_messages_per_client = 10000
pending_overflow = "drop_oldest"
max_inflight = 64
connect_timeout_secs = 10
park_idle_after_ms = 0
"#,
        )
        .unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.limits.max_inflight, Some(64));
        assert_eq!(config.limits.park_idle_after_ms, Some(0));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("allow_anonymous = true\n[limits]\nmax_inflihgt = 5\n").unwrap_err();
        assert!(err.starts_with("corvid.toml: line 3"), "{err}");
        assert!(err.contains("max_inflihgt"), "{err}");
    }

    #[test]
    fn wrong_type_and_bad_address() {
        let err = parse("sys_interval = \"ten\"\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("sys_interval"), "{err}");
        let err = parse("[[listener]]\ntype = \"tcp\"\nbind = \"localhost:99999\"\n").unwrap_err();
        assert!(err.contains("line 3") && err.contains("listener.bind"), "{err}");
        let err = parse("[[listener]]\ntype = \"carrier-pigeon\"\nbind = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn values_out_of_range() {
        let err = parse("[limits]\nmax_inflight = \"many\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("key `limits.max_inflight`"), "{err}");
        let err = parse("[limits]\nmax_inflight = 0\n").unwrap_err();
        assert_eq!(err, "corvid.toml: line 2, key `limits.max_inflight`: must be at least 1");
        let err = parse("log_level = \"info\"\n\n[storage]  # the store\nsync = \"batched\"\nbatch_window_ms = 5000\n")
            .unwrap_err();
        assert_eq!(err, "corvid.toml: line 5, key `storage.batch_window_ms`: at most 1000");
    }

    #[test]
    fn a_listener_error_names_the_line_of_its_key_or_table() {
        let tcp = "[[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:1\"\n";
        let err = parse(&format!("{tcp}\n[[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:2\"\ncert = \"a.crt\"\n"))
            .unwrap_err();
        assert!(err.starts_with("corvid.toml: line 8, key `listener.cert`: listener 2 (tcp 127.0.0.1:2)"), "{err}");
        let err = parse(&format!("{tcp}[[listener]]\ntype = \"tls\"\nbind = \"127.0.0.1:3\"\n")).unwrap_err();
        assert!(err.starts_with("corvid.toml: line 4, key `listener`: listener 2 (tls 127.0.0.1:3)"), "{err}");
    }

    #[test]
    fn security_files_are_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("corvid-config-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corvid.toml");
        std::fs::write(
            &path,
            "password_file = \"passwd\"\nacl_file = \"/etc/corvid/acl\"\n[metrics]\nbind = \"127.0.0.1:9234\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.password_file, Some(dir.join("passwd")));
        assert_eq!(config.acl_file.as_deref(), Some(Path::new("/etc/corvid/acl")));
        assert_eq!(config.metrics.unwrap().bind, "127.0.0.1:9234".parse().unwrap());
        let err = parse("[metrics]\nbind = \"nowhere\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("metrics.bind"), "{err}");
    }
}
