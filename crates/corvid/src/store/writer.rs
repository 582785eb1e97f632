//! The group-commit writer in front of a [`PersistentStore`].
//!
//! Connection tasks hand operations over without waiting ([`Durable::submit`]); the writer takes everything that
//! has gathered, applies it in one [`PersistentStore::apply`] on a blocking thread, and then completes the tickets
//! of the publishers waiting for durability. Pending operations are bounded: past [`MAX_PENDING_OPS`], publishers
//! wait for room before they route more ([`Durable::wait_for_room`]), which slows them to the disk's pace.

use super::persistent::{PersistentStore, SessionOp, SyncPolicy};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, oneshot};

/// Operations waiting for the writer beyond which publishers wait.
pub(crate) const MAX_PENDING_OPS: usize = 64 * 1024;

/// Under [`SyncPolicy::Never`], how often commits are flushed anyway, so a crash loses at most about this much.
const NEVER_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Completes when the operations it covers are durable: `true`, or `false` if the store failed.
pub(crate) type Ticket = oneshot::Receiver<bool>;

struct Batch {
    ops: Vec<SessionOp>,
    done: Option<oneshot::Sender<bool>>,
}

/// The broker's handle on the durable store.
pub(crate) struct Durable {
    pub(crate) policy: SyncPolicy,
    store: Arc<dyn PersistentStore>,
    pending: Mutex<Vec<Batch>>,
    pending_ops: AtomicUsize,
    work: Notify,
    room: Notify,
    closing: AtomicBool,
    failed: AtomicBool,
}

impl Durable {
    pub(crate) fn new(store: Arc<dyn PersistentStore>, policy: SyncPolicy) -> Self {
        Self {
            policy,
            store,
            pending: Mutex::new(Vec::new()),
            pending_ops: AtomicUsize::new(0),
            work: Notify::new(),
            room: Notify::new(),
            closing: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn PersistentStore> {
        &self.store
    }

    /// Hands `ops` to the writer. With `ticket`, returns a receiver that completes once they are durable (under
    /// [`SyncPolicy::Never`], no ticket is ever returned).
    pub(crate) fn submit(&self, ops: Vec<SessionOp>, ticket: bool) -> Option<Ticket> {
        if ops.is_empty() {
            return None;
        }
        let (done, rx) = if ticket && self.policy.waits() {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.pending_ops.fetch_add(ops.len(), Ordering::Relaxed);
        self.pending.lock().push(Batch { ops, done });
        self.work.notify_one();
        rx
    }

    /// Whether publishers must wait for room.
    pub(crate) fn is_full(&self) -> bool {
        self.pending_ops.load(Ordering::Relaxed) > MAX_PENDING_OPS
    }

    /// Waits while too many operations are pending.
    pub(crate) async fn wait_for_room(&self) {
        while self.pending_ops.load(Ordering::Relaxed) > MAX_PENDING_OPS && !self.closing.load(Ordering::Relaxed) {
            let room = self.room.notified();
            if self.pending_ops.load(Ordering::Relaxed) <= MAX_PENDING_OPS {
                return;
            }
            room.await;
        }
    }

    /// Asks the writer to finish once everything submitted so far is written.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.work.notify_one();
    }

    /// Writes batches until closed, then writes what is left, flushes, and returns.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut last_sync = std::time::Instant::now();
        let mut unsynced = false;
        loop {
            let closing = self.closing.load(Ordering::Relaxed);
            if self.pending.lock().is_empty() {
                if closing {
                    if unsynced {
                        let store = self.store.clone();
                        let _ = tokio::task::spawn_blocking(move || store.apply(&[], true)).await;
                    }
                    return;
                }
                if unsynced {
                    // Under SyncPolicy::Never, flush what was written within about a second.
                    if tokio::time::timeout(NEVER_FLUSH_EVERY, self.work.notified()).await.is_err() {
                        let store = self.store.clone();
                        let _ = tokio::task::spawn_blocking(move || store.apply(&[], true)).await;
                        unsynced = false;
                        last_sync = std::time::Instant::now();
                    }
                } else {
                    self.work.notified().await;
                }
                continue;
            }
            if let SyncPolicy::Batched(window) = self.policy
                && !closing
            {
                tokio::time::sleep(window).await;
            }
            let batches = std::mem::take(&mut *self.pending.lock());
            let mut ops = Vec::with_capacity(batches.iter().map(|b| b.ops.len()).sum());
            let mut waiting = Vec::new();
            for batch in batches {
                ops.extend(batch.ops);
                waiting.extend(batch.done);
            }
            let n = ops.len();
            let store = self.store.clone();
            let sync = self.policy.waits() || last_sync.elapsed() >= NEVER_FLUSH_EVERY;
            if sync {
                last_sync = std::time::Instant::now();
            }
            unsynced = !sync;
            let result = tokio::task::spawn_blocking(move || store.apply(&ops, sync)).await;
            let ok = match result {
                Ok(Ok(())) => true,
                Ok(Err(error)) => {
                    if !self.failed.swap(true, Ordering::Relaxed) {
                        tracing::error!(%error, "durable store write failed");
                    }
                    false
                }
                Err(error) => {
                    tracing::error!(%error, "durable store panicked");
                    false
                }
            };
            for done in waiting {
                let _ = done.send(ok);
            }
            self.pending_ops.fetch_sub(n, Ordering::Relaxed);
            self.room.notify_waiters();
        }
    }
}
