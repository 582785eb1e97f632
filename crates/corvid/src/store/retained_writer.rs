//! The task that saves retained changes to a [`RetainedStore`]. The broker never waits for it on the publish path:
//! changes go through a bounded channel; the writer groups them and calls the store on a blocking thread. A full
//! channel makes the next save a whole-list save, so nothing is lost, only coalesced.

use super::{RetainedChange, RetainedStore, StoreError};
use crate::broker::Broker;
use crate::message::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// How many changes wait for the writer before saves coalesce into a whole-list save.
const CHANGE_QUEUE: usize = 16 * 1024;

/// The broker's side of the retained store: the change queue.
pub(crate) struct RetainedWriter {
    tx: mpsc::Sender<RetainedChange>,
    /// Set when a change could not be queued; the next save then covers the whole list.
    overflowed: Arc<AtomicBool>,
}

impl RetainedWriter {
    /// Queues a change for the writer task; never waits.
    pub(crate) fn changed(&self, change: RetainedChange) {
        if self.tx.try_send(change).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }
}

/// The writer task, before it runs.
pub(crate) struct WriterTask {
    store: Arc<dyn RetainedStore>,
    rx: mpsc::Receiver<RetainedChange>,
    overflowed: Arc<AtomicBool>,
}

/// Creates the change queue and the writer task that drains it.
pub(crate) fn writer(store: Arc<dyn RetainedStore>) -> (RetainedWriter, WriterTask) {
    let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
    let overflowed = Arc::new(AtomicBool::new(false));
    (RetainedWriter { tx, overflowed: overflowed.clone() }, WriterTask { store, rx, overflowed })
}

impl WriterTask {
    /// Saves changes as they come, until the server stops (then saves what is left).
    pub(crate) async fn run(self, broker: Arc<Broker>) {
        let WriterTask { store, mut rx, overflowed } = self;
        let mut batch = Vec::new();
        loop {
            let stopping = tokio::select! {
                n = rx.recv_many(&mut batch, 1024) => n == 0,
                () = broker.shutdown.cancelled() => true,
            };
            while let Ok(change) = rx.try_recv() {
                batch.push(change);
            }
            let whole = overflowed.swap(false, Ordering::Relaxed);
            if !batch.is_empty() || whole {
                let changes = std::mem::take(&mut batch);
                let store = store.clone();
                let b = broker.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    let all = || b.retained.all().into_iter().map(|m| (*m).clone()).collect::<Vec<_>>();
                    store.save(&changes, &all)
                })
                .await;
                match saved {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::error!(%error, "saving retained messages failed");
                        overflowed.store(true, Ordering::Relaxed);
                    }
                    Err(error) => tracing::error!(%error, "retained store panicked"),
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// Loads the stored retained messages, on a blocking thread.
pub(crate) async fn load(store: &Arc<dyn RetainedStore>) -> Result<Vec<Message>, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.load()).await.map_err(|e| StoreError::Other(Box::new(e)))?
}
