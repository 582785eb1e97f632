//! [`JsonRetainedStore`]: retained messages in one JSON file, rewritten whole and atomically on every save
//! (temporary file, flush, rename), as a user of other brokers would write it by hand.

use super::{RetainedChange, RetainedStore, StoreError};
use crate::message::Message;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use corvid_protocol::{QoS, TopicName};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Retained messages in a JSON file: an array of `{"topic", "payload_base64", "qos"}` objects (plus
/// `content_type` and `user_properties` when set). A missing file is an empty store; an unreadable or malformed
/// one is an error naming the file, the line and the column, and is never overwritten.
#[derive(Debug, Clone)]
pub struct JsonRetainedStore {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    topic: String,
    payload_base64: String,
    qos: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<(String, String)>,
}

impl JsonRetainedStore {
    /// A store in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), detail }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }
}

impl RetainedStore for JsonRetainedStore {
    fn load(&self) -> Result<Vec<Message>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let entries: Vec<Entry> = serde_json::from_str(&text)
            .map_err(|e| self.corrupt(format!("line {}, column {}: {e}", e.line(), e.column())))?;
        entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let topic = TopicName::new(e.topic).map_err(|err| self.corrupt(format!("entry {i}: topic: {err}")))?;
                let payload = STANDARD
                    .decode(e.payload_base64)
                    .map_err(|err| self.corrupt(format!("entry {i}: payload_base64: {err}")))?;
                let qos = QoS::from_u8(e.qos).ok_or_else(|| self.corrupt(format!("entry {i}: qos {}", e.qos)))?;
                let mut m = Message::new(topic, payload, qos, true);
                m.properties.content_type = e.content_type.map(Into::into);
                m.properties.user_properties =
                    e.user_properties.into_iter().map(|(k, v)| corvid_protocol::UserProperty::new(k, v)).collect();
                Ok(m)
            })
            .collect()
    }

    fn save(&self, _changes: &[RetainedChange], all: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError> {
        let mut messages = all();
        messages.sort_by(|a, b| a.topic.cmp(&b.topic));
        let entries: Vec<Entry> = messages
            .iter()
            .map(|m| Entry {
                topic: m.topic.to_string(),
                payload_base64: STANDARD.encode(&m.payload),
                qos: m.qos.as_u8(),
                content_type: m.properties.content_type.as_ref().map(ToString::to_string),
                user_properties: m
                    .properties
                    .user_properties
                    .iter()
                    .map(|p| (p.key.to_string(), p.value.to_string()))
                    .collect(),
            })
            .collect();
        let json = serde_json::to_vec_pretty(&entries).map_err(|e| StoreError::Other(Box::new(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("corvid-json-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_atomic_write() {
        let d = dir();
        let store = JsonRetainedStore::new(d.join("retained.json"));
        assert!(store.load().unwrap().is_empty());
        let mut m = Message::new(TopicName::new("a/b").unwrap(), vec![0u8, 159, 146, 150], QoS::AtLeastOnce, true);
        m.properties.content_type = Some("application/octet-stream".into());
        store.save(&[], &|| vec![m.clone()]).unwrap();
        assert!(!d.join("retained.json.tmp").exists());
        let back = store.load().unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].payload, m.payload);
        assert_eq!(back[0].qos, QoS::AtLeastOnce);
        assert_eq!(back[0].properties.content_type, m.properties.content_type);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn corrupted_file_names_file_and_place_and_is_kept() {
        let d = dir().join("corrupt");
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("retained.json");
        std::fs::write(&path, "[{\"topic\": \"a\", \"payload_base64\": \n").unwrap();
        let err = JsonRetainedStore::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("retained.json") && err.contains("line 2"), "{err}");
        std::fs::write(&path, r#"[{"topic": "a/+", "payload_base64": "", "qos": 0}]"#).unwrap();
        let err = JsonRetainedStore::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("entry 0: topic"), "{err}");
        assert!(path.exists());
        std::fs::remove_dir_all(d).unwrap();
    }
}
