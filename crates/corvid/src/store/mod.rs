//! Storage: pluggable retained-message stores (loaded at start, saved on change), and the durable store of
//! sessions and retained messages that the server keeps under its data directory.
//!
//! # Layout
//! - this module: [`StoreError`], [`RetainedStore`] and [`RetainedChange`].
//! - `retained_writer`: the task that saves retained changes to a [`RetainedStore`].
//! - [`persistent`]: [`PersistentStore`], the durable store of sessions, queued messages and retained messages,
//!   its operations and the [`SyncPolicy`].
//! - `writer`: the group-commit task in front of a [`PersistentStore`].
//! - [`record`]: the versioned binary records a durable store keeps.
//! - [`memory`]: [`MemoryStore`], an in-memory [`PersistentStore`] and [`RetainedStore`].
//! - [`json`]: [`JsonRetainedStore`], retained messages in a JSON file, written atomically.

pub mod json;
pub mod memory;
pub mod persistent;
pub mod record;
pub(crate) mod restore;
pub(crate) mod retained_writer;
pub(crate) mod writer;

pub use json::JsonRetainedStore;
pub use memory::MemoryStore;
pub use persistent::{
    Loaded, PersistentStore, SessionOp, StoredMessage, StoredMessageState, StoredSession, StoredUsername, SyncPolicy,
};

use crate::message::Message;
use corvid_protocol::TopicName;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file's content is not what the store wrote.
    #[error("{}: corrupt: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        detail: String,
    },
    /// Any other failure of a user-written store.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// One change to the retained messages.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RetainedChange {
    /// The retained message of a topic was set.
    Set(Arc<Message>),
    /// The retained message of a topic was deleted.
    Delete(TopicName),
}

/// A store of retained messages.
///
/// Implement [`RetainedStore::load`], and [`RetainedStore::save`] in one of two forms: write the whole list
/// (`all()`, as MQTTnet's `SaveRetainedMessagesAsync` does), or apply `changes` one by one. Both methods run on a
/// blocking thread, so plain file or database I/O is fine.
///
/// ```
/// use corvid::{Message, RetainedChange, RetainedStore, ServerOptions, StoreError};
/// use std::sync::Mutex;
///
/// /// Keeps the list in memory; a real store writes a file or a database.
/// #[derive(Default)]
/// struct WholeList(Mutex<Vec<Message>>);
///
/// impl RetainedStore for WholeList {
///     fn load(&self) -> Result<Vec<Message>, StoreError> {
///         Ok(self.0.lock().unwrap().clone())
///     }
///
///     fn save(&self, _changes: &[RetainedChange], all: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError> {
///         *self.0.lock().unwrap() = all();
///         Ok(())
///     }
/// }
///
/// let options = ServerOptions::builder().with_retained_store(WholeList::default()).build();
/// ```
pub trait RetainedStore: Send + Sync + 'static {
    /// Every stored retained message; called once when the server starts.
    fn load(&self) -> Result<Vec<Message>, StoreError>;

    /// Saves the changes since the last call, in order. `all` returns every retained message now.
    fn save(&self, changes: &[RetainedChange], all: &dyn Fn() -> Vec<Message>) -> Result<(), StoreError>;
}
