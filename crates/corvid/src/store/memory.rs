//! [`MemoryStore`]: sessions and retained messages in memory. Nothing survives the process; useful for tests and
//! for embedding a broker whose state may be lost.

use super::persistent::{Loaded, PersistentStore, SessionOp, StoredSession};
use super::{RetainedChange, RetainedStore, StoreError};
use crate::message::Message;
use corvid_protocol::ByteString;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Default)]
struct State {
    sessions: HashMap<ByteString, StoredSession>,
    messages: HashMap<ByteString, BTreeMap<u64, super::persistent::StoredMessage>>,
    retained: BTreeMap<String, Arc<Message>>,
}

/// An in-memory [`PersistentStore`] and [`RetainedStore`]. Cloning gives another handle to the same data, so a
/// test can restart a server on the same store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sessions and queued messages it holds.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.sessions.len(), s.messages.values().map(BTreeMap::len).sum())
    }
}

impl PersistentStore for MemoryStore {
    fn load(&self) -> Result<Loaded, StoreError> {
        let s = self.state.lock();
        let sessions = s
            .sessions
            .values()
            .map(|session| {
                let mut session = session.clone();
                session.messages =
                    s.messages.get(&session.client_id).map(|m| m.values().cloned().collect()).unwrap_or_default();
                session
            })
            .collect();
        let retained = s.retained.values().map(|m| (**m).clone()).collect();
        Ok(Loaded { sessions, retained })
    }

    fn apply(&self, ops: &[SessionOp], _sync: bool) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        for op in ops {
            match op {
                SessionOp::PutSession { client_id, username, expiry_interval, disconnected_at, subscriptions } => {
                    let session = s
                        .sessions
                        .entry(client_id.clone())
                        .or_insert_with(|| StoredSession::new(client_id.clone(), *expiry_interval));
                    session.username.clone_from(username);
                    session.expiry_interval = *expiry_interval;
                    session.disconnected_at = *disconnected_at;
                    session.subscriptions.clone_from(subscriptions);
                }
                SessionOp::DeleteSession { client_id } => {
                    s.sessions.remove(client_id);
                    s.messages.remove(client_id);
                }
                SessionOp::PutMessage { client_id, message } => {
                    s.messages.entry(client_id.clone()).or_default().insert(message.seq, message.clone());
                }
                SessionOp::SetMessageState { client_id, seq, state } => {
                    if let Some(m) = s.messages.get_mut(client_id).and_then(|q| q.get_mut(seq)) {
                        m.state = *state;
                    }
                }
                SessionOp::DeleteMessage { client_id, seq } => {
                    if let Some(q) = s.messages.get_mut(client_id) {
                        q.remove(seq);
                    }
                }
                SessionOp::AddIncoming { client_id, packet_id } => {
                    if let Some(session) = s.sessions.get_mut(client_id)
                        && !session.incoming_qos2.contains(packet_id)
                    {
                        session.incoming_qos2.push(*packet_id);
                    }
                }
                SessionOp::RemoveIncoming { client_id, packet_id } => {
                    if let Some(session) = s.sessions.get_mut(client_id) {
                        session.incoming_qos2.retain(|id| id != packet_id);
                    }
                }
                SessionOp::SetRetained(message) => {
                    s.retained.insert(message.topic.to_string(), message.clone());
                }
                SessionOp::DeleteRetained(topic) => {
                    s.retained.remove(topic.as_str());
                }
            }
        }
        Ok(())
    }
}

impl RetainedStore for MemoryStore {
    fn load(&self) -> Result<Vec<Message>, StoreError> {
        Ok(self.state.lock().retained.values().map(|m| (**m).clone()).collect())
    }

    fn save(&self, changes: &[RetainedChange], _all: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        for change in changes {
            match change {
                RetainedChange::Set(m) => {
                    s.retained.insert(m.topic.to_string(), m.clone());
                }
                RetainedChange::Delete(topic) => {
                    s.retained.remove(topic.as_str());
                }
            }
        }
        Ok(())
    }
}
