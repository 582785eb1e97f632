//! Saving retained messages: a user-written [`RetainedStore`] that keeps every retained message in a JSON file,
//! loaded when the server starts and rewritten on every change (MQTTnet's `IMqttServerStorage` with
//! `SaveRetainedMessagesAsync` / `LoadRetainedMessagesAsync`).
//!
//! The file is written atomically: to a temporary file beside it, flushed to disk, then renamed over the old one,
//! so a crash leaves either the old or the new list, never half of one. The broker calls the store on a blocking
//! thread and never waits for it on the publish path, so plain file I/O is fine.
//!
//! The file is `retained.json` in the current directory, or the path in `CORVID_RETAINED_FILE`.
//!
//! ```text
//! cargo run -p corvid --example retained_json_store
//! mosquitto_pub -p 1883 -t home/temp -m 21.5 -r     # then restart: the message is still retained
//! ```

mod support;

use corvid::{Message, QoS, RetainedChange, RetainedStore, Server, ServerOptions, StoreError, TopicName};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Retained messages in a JSON file: `[{"topic": "...", "qos": 1, "payload": "..."}, ...]`. Payloads that are not
/// UTF-8 are stored as `"payload_hex"` instead of `"payload"`.
struct JsonFileStore {
    path: PathBuf,
}

impl RetainedStore for JsonFileStore {
    fn load(&self) -> Result<Vec<Message>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: self.path.clone(), source }),
        };
        let corrupt = |detail: String| StoreError::Corrupt { path: self.path.clone(), detail };
        let entries: Vec<Value> = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        entries.iter().map(|entry| from_json(entry).ok_or_else(|| corrupt(format!("bad entry {entry}")))).collect()
    }

    fn save(&self, _changes: &[RetainedChange], all: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError> {
        // Write the whole list, as MQTTnet's example does; `_changes` would allow incremental writes instead.
        // `$SYS/...` topics are the broker's own statistics: not worth keeping.
        let messages: Vec<Value> = all().iter().filter(|m| !m.topic.starts_with('$')).map(to_json).collect();
        let text = serde_json::to_string_pretty(&messages).map_err(|e| StoreError::Other(e.into()))?;
        write_atomically(&self.path, text.as_bytes())
            .map_err(|source| StoreError::Io { path: self.path.clone(), source })
    }
}

fn to_json(message: &Message) -> Value {
    let mut entry = json!({ "topic": message.topic.as_str(), "qos": message.qos.as_u8() });
    match std::str::from_utf8(&message.payload) {
        Ok(text) => entry["payload"] = json!(text),
        Err(_) => entry["payload_hex"] = json!(message.payload.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
    entry
}

fn from_json(entry: &Value) -> Option<Message> {
    let topic = TopicName::new(entry["topic"].as_str()?.to_owned()).ok()?;
    let qos = QoS::from_u8(u8::try_from(entry["qos"].as_u64()?).ok()?)?;
    let payload = match (entry["payload"].as_str(), entry["payload_hex"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(hex)) => (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
            .collect::<Option<Vec<u8>>>()?,
        (None, None) => return None,
    };
    Some(Message::new(topic, payload, qos, true))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let path = std::env::var_os("CORVID_RETAINED_FILE").map_or_else(|| PathBuf::from("retained.json"), PathBuf::from);
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .with_retained_store(JsonFileStore { path: path.clone() })
        .build();
    // `start` loads the stored messages before it accepts the first client.
    let server = Server::start(options).await?;
    let loaded = server.retained_messages().iter().filter(|m| !m.topic.starts_with('$')).count();
    println!("loaded {loaded} retained message(s) from {}", path.display());
    support::announce(&server);

    support::shutdown_signal().await;
    // Stopping saves the changes not yet written.
    server.stop().await;
    Ok(())
}
