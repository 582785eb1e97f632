//! The embedded, durable default store of the Corvid MQTT broker: sessions, their queued and inflight messages,
//! inbound QoS 2 packet identifiers and retained messages, in one crash-safe [redb] file.
//!
//! Every [`PersistentStore::apply`] call is one redb write transaction: after a crash, either all of a batch is
//! there or none of it. Records are corvid's versioned binary records ([`corvid::store::record`]); a record that
//! does not decode makes [`PersistentStore::load`] fail with the file and the key, and nothing is discarded.
//!
//! ```no_run
//! use corvid::store::SyncPolicy;
//! use corvid_store_redb::RedbStore;
//!
//! let store = RedbStore::open("data/corvid.redb").expect("store");
//! let options = corvid::ServerOptions::builder().with_persistent_store(store, SyncPolicy::Always).build();
//! ```

use bytes::Bytes;
use corvid::store::StoreError;
use corvid::store::persistent::{Loaded, PersistentStore, SessionOp, StoredSession};
use corvid::store::record::{self, SessionRecord};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// Format of the file's tables; stored under `format` in the meta table.
const FORMAT: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const INCOMING: TableDefinition<(&str, u16), ()> = TableDefinition::new("incoming_qos2");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// The durable store in one redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it (and its directory) if needed. A file that is not a store of this
    /// format is an error naming the file; it is left as it is.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_owned(), source })?;
        }
        let db = Database::create(&path).map_err(|e| corrupt(&path, e))?;
        let store = Self { db, path };
        store.check_format()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        corrupt(&self.path, e.into())
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let found = meta.get("format").map_err(|e| self.err(e))?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("format", FORMAT).map_err(|e| self.err(e))?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: format!("store format {other}, this build reads format {FORMAT}"),
                    });
                }
            }
            txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
            txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
            txn.open_table(INCOMING).map_err(|e| self.err(e))?;
            txn.open_table(RETAINED).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn damaged(&self, what: String, e: record::RecordError) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), detail: format!("{what}: {e}") }
    }
}

fn corrupt(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(source) => StoreError::Io { path: path.to_owned(), source },
        other => StoreError::Corrupt { path: path.to_owned(), detail: other.to_string() },
    }
}

impl PersistentStore for RedbStore {
    fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let sessions_t = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
        let messages_t = txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
        let incoming_t = txn.open_table(INCOMING).map_err(|e| self.err(e))?;
        let retained_t = txn.open_table(RETAINED).map_err(|e| self.err(e))?;
        let mut loaded = Loaded::default();
        for entry in sessions_t.iter().map_err(|e| self.err(e))? {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            let client_id = key.value().to_owned();
            let rec = record::decode_session(Bytes::copy_from_slice(value.value()))
                .map_err(|e| self.damaged(format!("session {client_id:?}"), e))?;
            let mut session = StoredSession::new(client_id.clone().into(), rec.expiry_interval);
            session.username = rec.username;
            session.disconnected_at = rec.disconnected_at;
            session.subscriptions = rec.subscriptions;
            let range = messages_t
                .range((client_id.as_str(), 0u64)..=(client_id.as_str(), u64::MAX))
                .map_err(|e| self.err(e))?;
            for m in range {
                let (k, v) = m.map_err(|e| self.err(e))?;
                let seq = k.value().1;
                let message = record::decode_stored_message(Bytes::copy_from_slice(v.value()))
                    .map_err(|e| self.damaged(format!("session {client_id:?} message {seq}"), e))?;
                session.messages.push(message);
            }
            let range = incoming_t
                .range((client_id.as_str(), 0u16)..=(client_id.as_str(), u16::MAX))
                .map_err(|e| self.err(e))?;
            for id in range {
                let (k, _) = id.map_err(|e| self.err(e))?;
                session.incoming_qos2.push(k.value().1);
            }
            loaded.sessions.push(session);
        }
        for entry in retained_t.iter().map_err(|e| self.err(e))? {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            let message = record::decode_message(Bytes::copy_from_slice(value.value()))
                .map_err(|e| self.damaged(format!("retained {:?}", key.value()), e))?;
            loaded.retained.push(message);
        }
        Ok(loaded)
    }

    fn apply(&self, ops: &[SessionOp], sync: bool) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(if sync { Durability::Immediate } else { Durability::None })
            .map_err(|e| StoreError::Other(Box::new(e)))?;
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
            let mut messages = txn.open_table(MESSAGES).map_err(|e| self.err(e))?;
            let mut incoming = txn.open_table(INCOMING).map_err(|e| self.err(e))?;
            let mut retained = txn.open_table(RETAINED).map_err(|e| self.err(e))?;
            for op in ops {
                match op {
                    SessionOp::PutSession { client_id, username, expiry_interval, disconnected_at, subscriptions } => {
                        let rec = SessionRecord {
                            username: username.clone(),
                            expiry_interval: *expiry_interval,
                            disconnected_at: *disconnected_at,
                            subscriptions: subscriptions.clone(),
                        };
                        sessions.insert(&**client_id, &record::encode_session(&rec)[..]).map_err(|e| self.err(e))?;
                    }
                    SessionOp::DeleteSession { client_id } => {
                        let id: &str = client_id;
                        sessions.remove(id).map_err(|e| self.err(e))?;
                        messages.retain_in((id, 0u64)..=(id, u64::MAX), |_, _| false).map_err(|e| self.err(e))?;
                        incoming.retain_in((id, 0u16)..=(id, u16::MAX), |_, _| false).map_err(|e| self.err(e))?;
                    }
                    SessionOp::PutMessage { client_id, message } => {
                        let value = record::encode_stored_message(message);
                        messages.insert((&**client_id, message.seq), &value[..]).map_err(|e| self.err(e))?;
                    }
                    SessionOp::SetMessageState { client_id, seq, state } => {
                        let key = (&**client_id, *seq);
                        let current =
                            messages.get(key).map_err(|e| self.err(e))?.map(|v| Bytes::copy_from_slice(v.value()));
                        if let Some(bytes) = current {
                            let mut message = record::decode_stored_message(bytes)
                                .map_err(|e| self.damaged(format!("session {client_id:?} message {seq}"), e))?;
                            message.state = *state;
                            messages
                                .insert(key, &record::encode_stored_message(&message)[..])
                                .map_err(|e| self.err(e))?;
                        }
                    }
                    SessionOp::DeleteMessage { client_id, seq } => {
                        messages.remove((&**client_id, *seq)).map_err(|e| self.err(e))?;
                    }
                    SessionOp::AddIncoming { client_id, packet_id } => {
                        incoming.insert((&**client_id, *packet_id), ()).map_err(|e| self.err(e))?;
                    }
                    SessionOp::RemoveIncoming { client_id, packet_id } => {
                        incoming.remove((&**client_id, *packet_id)).map_err(|e| self.err(e))?;
                    }
                    SessionOp::SetRetained(message) => {
                        retained
                            .insert(message.topic.as_str(), &record::encode_message(message)[..])
                            .map_err(|e| self.err(e))?;
                    }
                    SessionOp::DeleteRetained(topic) => {
                        retained.remove(topic.as_str()).map_err(|e| self.err(e))?;
                    }
                    _ => {}
                }
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

impl corvid::store::RetainedStore for RedbStore {
    fn load(&self) -> Result<Vec<corvid::Message>, StoreError> {
        PersistentStore::load(self).map(|l| l.retained)
    }

    fn save(
        &self,
        changes: &[corvid::store::RetainedChange],
        _all: &dyn Fn() -> Vec<corvid::Message>,
    ) -> Result<(), StoreError> {
        let ops: Vec<SessionOp> = changes
            .iter()
            .map(|c| match c {
                corvid::store::RetainedChange::Set(m) => SessionOp::SetRetained(m.clone()),
                corvid::store::RetainedChange::Delete(t) => SessionOp::DeleteRetained(t.clone()),
                _ => SessionOp::DeleteRetained(corvid::TopicName::alias_only()),
            })
            .filter(|op| !matches!(op, SessionOp::DeleteRetained(t) if t.is_empty()))
            .collect();
        self.apply(&ops, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid::store::StoredUsername;

    /// A store file in the temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("corvid-store-redb-{tag}-{}.redb", std::process::id()));
            let _ = std::fs::remove_file(&path);
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A file holding a session record of version 1 (as stores were written before user names were kept) loads,
    /// its user name unknown; written again, the session keeps the user name it is given.
    #[test]
    fn a_version_1_session_record_loads_and_is_replaced_by_one_with_a_user_name() {
        let file = TempFile::new("v1-session");
        let store = RedbStore::open(&file.0).unwrap();
        #[rustfmt::skip]
        let v1: &[u8] = &[
            0x01,                                               // version 1
            0x00, 0x00, 0x0e, 0x10,                             // expiry 3600 s
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,     // connected when written
            0x00, 0x00, 0x00, 0x01,                             // 1 subscription
            0x00, 0x07, b'a', b'l', b'i', b'c', b'e', b'/', b'#',
            0x01,                                               // QoS 1
            0x00, 0x00, 0x00, 0x00,                             // no subscription identifier
        ];
        let txn = store.db.begin_write().unwrap();
        txn.open_table(SESSIONS).unwrap().insert("alice-1", v1).unwrap();
        txn.commit().unwrap();
        drop(store);

        let store = RedbStore::open(&file.0).unwrap();
        let loaded = PersistentStore::load(&store).unwrap();
        let session = &loaded.sessions[0];
        assert_eq!((&*session.client_id, session.expiry_interval), ("alice-1", 3600));
        assert_eq!(session.username, StoredUsername::Unknown);
        assert_eq!(session.subscriptions[0].0.as_str(), "alice/#");

        let put = SessionOp::PutSession {
            client_id: "alice-1".into(),
            username: StoredUsername::Named("alice".into()),
            expiry_interval: 3600,
            disconnected_at: None,
            subscriptions: session.subscriptions.clone(),
        };
        store.apply(&[put], true).unwrap();
        drop(store);
        let loaded = PersistentStore::load(&RedbStore::open(&file.0).unwrap()).unwrap();
        assert_eq!(loaded.sessions[0].username, StoredUsername::Named("alice".into()));
    }
}
