//! The client registry: which session each client identifier has, and whether a connection serves it.
//!
//! Takeover is race-free: a connection claims a client identifier under the registry lock, and if another
//! connection holds it, leaves a hand-off request in that connection's control block under the same lock. The old
//! connection, when it ends for whatever reason, looks for that request under the lock before it stores its session,
//! so the session goes to exactly one place.

use crate::connection::CloseReason;
use crate::session::{PendingWill, SessionShared, SessionState};
use corvid_protocol::{ByteString, ProtocolVersion, ReasonCode};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;
use std::time::SystemTime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Why a connection is asked to end.
pub(crate) enum Handoff {
    /// Another connection with the same client identifier wants the session.
    TakeOver(oneshot::Sender<SessionState>),
    /// The process disconnects the client with this reason.
    Kick(ReasonCode),
    /// The client sent nothing for longer than one and a half times its keep-alive.
    KeepAliveTimeout,
}

/// Facts and counters of a running connection.
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) username: Option<ByteString>,
    pub(crate) connected_at: SystemTime,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
}

impl ConnInfo {
    pub(crate) fn new(remote: SocketAddr, protocol: ProtocolVersion, username: Option<ByteString>) -> Self {
        Self {
            remote,
            protocol,
            username,
            connected_at: SystemTime::now(),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
        }
    }
}

/// How the registry reaches a running connection.
pub(crate) struct ConnControl {
    pub(crate) cancel: CancellationToken,
    handoff: Mutex<Option<Handoff>>,
    /// Set when the process deletes the session: the connection ends it instead of storing it.
    pub(crate) delete_session: AtomicBool,
    /// When the client was last active, in [`crate::broker::Broker::millis`]. Written by the connection, read by
    /// the broker's keep-alive sweep: an atomic here instead of a timer in every connection's task.
    last_active: AtomicU32,
    /// The keep-alive in seconds, 0 for none; set once the connection is established.
    keep_alive: AtomicU16,
    pub(crate) info: ConnInfo,
}

impl ConnControl {
    /// `shutdown` is the broker's: the connection's token is its child, so that one wait covers both.
    pub(crate) fn new(info: ConnInfo, shutdown: &CancellationToken) -> Self {
        Self {
            cancel: shutdown.child_token(),
            handoff: Mutex::new(None),
            delete_session: AtomicBool::new(false),
            last_active: AtomicU32::new(0),
            keep_alive: AtomicU16::new(0),
            info,
        }
    }

    /// Starts keep-alive checks (`seconds` 0: none), counting the client active at `now`.
    pub(crate) fn start_keep_alive(&self, seconds: u16, now: u32) {
        self.last_active.store(now, Ordering::Relaxed);
        self.keep_alive.store(seconds, Ordering::Relaxed);
    }

    /// Records that the client was active at `now` (in [`crate::broker::Broker::millis`]).
    pub(crate) fn active(&self, now: u32) {
        self.last_active.store(now, Ordering::Relaxed);
    }

    /// Whether the client, which has a keep-alive, has been silent at `now` for longer than one and a half times it.
    fn is_silent(&self, now: u32) -> bool {
        let seconds = self.keep_alive.load(Ordering::Relaxed);
        if seconds == 0 {
            return false;
        }
        // Wrapping milliseconds, read as signed: the connection may record a time later than the sweep's `now`.
        // At most 98,303 s (1.5 times 65,535) matter, far within the 24 days an `i32` of milliseconds spans.
        let silent = now.wrapping_sub(self.last_active.load(Ordering::Relaxed)) as i32;
        i64::from(silent) > i64::from(seconds) * 1500
    }

    /// The hand-off request left for this connection, if any. Only called under the registry lock.
    fn take_handoff(&self) -> Option<Handoff> {
        self.handoff.lock().take()
    }

    /// Why a connection whose token was cancelled ends: taken over, kicked, timed out by the keep-alive sweep, or
    /// (nothing asked: the token being a child of the broker's) the server stopping. Any takeover request stays
    /// in place.
    pub(crate) fn end_reason(&self) -> CloseReason {
        match &*self.handoff.lock() {
            Some(Handoff::TakeOver(_)) => CloseReason::TakenOver,
            Some(Handoff::Kick(code)) => CloseReason::Kicked(*code),
            Some(Handoff::KeepAliveTimeout) => CloseReason::KeepAliveTimeout,
            None => CloseReason::ServerShutdown,
        }
    }
}

/// A registry entry.
pub(crate) enum Entry {
    /// A connection serves the session.
    Online { generation: u64, control: Arc<ConnControl>, session: Option<Arc<SessionShared>> },
    /// The client is away; the session waits for it until it expires.
    Offline(Box<OfflineSession>),
}

/// A session whose client is away.
pub(crate) struct OfflineSession {
    pub(crate) state: SessionState,
    pub(crate) disconnected_at: SystemTime,
    pub(crate) expires_at: Option<Instant>,
    pub(crate) will: Option<PendingWill>,
}

/// What a connection found when it claimed its client identifier.
pub(crate) enum Previous {
    /// No session.
    None,
    /// A session with nobody connected, and its pending will (which the new connection cancels).
    Offline(Box<OfflineSession>),
    /// A connection serves the session: it will hand it over through this receiver.
    Online(oneshot::Receiver<SessionState>),
}

/// Where an ending connection's session went.
pub(crate) enum Released {
    /// Handed to the connection that took it over, or stored offline.
    Kept,
    /// The session ended; the caller removes its subscriptions.
    Ended(SessionState),
}

/// Every client identifier with a session.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<HashMap<ByteString, Entry>>,
}

/// What the registry sweep found due.
#[derive(Default)]
pub(crate) struct Swept {
    pub(crate) expired: Vec<SessionState>,
    pub(crate) wills: Vec<PendingWill>,
}

impl Registry {
    /// Makes the calling connection the owner of `client_id` and says what it found.
    pub(crate) fn claim(&self, client_id: &ByteString, generation: u64, control: Arc<ConnControl>) -> Previous {
        let mut entries = self.entries.lock();
        let new = Entry::Online { generation, control, session: None };
        match entries.insert(client_id.clone(), new) {
            None => Previous::None,
            Some(Entry::Offline(offline)) => Previous::Offline(offline),
            Some(Entry::Online { control: old, .. }) => {
                let (tx, rx) = oneshot::channel();
                *old.handoff.lock() = Some(Handoff::TakeOver(tx));
                old.cancel.cancel();
                Previous::Online(rx)
            }
        }
    }

    /// Records which session the connection that claimed `client_id` serves, once it has decided.
    pub(crate) fn attach(&self, client_id: &ByteString, generation: u64, shared: Arc<SessionShared>) {
        if let Some(Entry::Online { generation: g, session, .. }) = self.entries.lock().get_mut(client_id)
            && *g == generation
        {
            *session = Some(shared);
        }
    }

    /// Called by a connection that ends: hands its session to a connection taking it over, stores it offline
    /// (`persist`), or ends it.
    pub(crate) fn release(
        &self,
        client_id: &ByteString,
        generation: u64,
        control: &ConnControl,
        state: SessionState,
        persist: Option<(Option<Instant>, Option<PendingWill>)>,
    ) -> Released {
        let mut entries = self.entries.lock();
        if let Some(Handoff::TakeOver(tx)) = control.take_handoff() {
            return match tx.send(state) {
                Ok(()) => Released::Kept,
                Err(state) => Released::Ended(state),
            };
        }
        let ours = matches!(entries.get(client_id), Some(Entry::Online { generation: g, .. }) if *g == generation);
        if !ours {
            return Released::Ended(state);
        }
        match persist {
            Some((expires_at, will)) => {
                entries.insert(
                    client_id.clone(),
                    Entry::Offline(Box::new(OfflineSession {
                        state,
                        disconnected_at: SystemTime::now(),
                        expires_at,
                        will,
                    })),
                );
                Released::Kept
            }
            None => {
                entries.remove(client_id);
                Released::Ended(state)
            }
        }
    }

    /// Removes the sessions that expired at `now`, returning them for cleanup, and takes the wills that are due.
    pub(crate) fn sweep(&self, now: Instant) -> Swept {
        let mut swept = Swept::default();
        let mut entries = self.entries.lock();
        let expired: Vec<ByteString> = entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Offline(o) if o.expires_at.is_some_and(|t| t <= now)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(Entry::Offline(offline)) = entries.remove(&key) {
                let OfflineSession { state, will, .. } = *offline;
                swept.expired.push(state);
                swept.wills.extend(will);
            }
        }
        for entry in entries.values_mut() {
            if let Entry::Offline(offline) = entry
                && offline.will.as_ref().is_some_and(|w| w.due <= now)
            {
                swept.wills.extend(offline.will.take());
            }
        }
        swept
    }

    /// Asks the connection of `client_id` to end with `reason`; with `delete`, its session ends too. Returns
    /// whether one was connected.
    pub(crate) fn kick(&self, client_id: &str, reason: ReasonCode, delete: bool) -> bool {
        let entries = self.entries.lock();
        match entries.get(client_id) {
            Some(Entry::Online { control, .. }) => {
                if delete {
                    control.delete_session.store(true, Ordering::Relaxed);
                }
                let mut slot = control.handoff.lock();
                if slot.is_none() {
                    *slot = Some(Handoff::Kick(reason));
                }
                control.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Asks every connection whose client has been silent for longer than one and a half keep-alives to end.
    ///
    /// One or two atomic loads per connection under the registry lock: a sweep of 100,000 connections takes 1.5
    /// to 3 ms.
    pub(crate) fn end_silent(&self, now: u32) {
        for entry in self.entries.lock().values() {
            if let Entry::Online { control, .. } = entry
                && control.is_silent(now)
            {
                let mut slot = control.handoff.lock();
                if slot.is_none() {
                    *slot = Some(Handoff::KeepAliveTimeout);
                    control.cancel.cancel();
                }
            }
        }
    }

    /// Runs `f` on every entry, under the lock: keep it short.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&ByteString, &Entry)) {
        for (id, entry) in self.entries.lock().iter() {
            f(id, entry);
        }
    }

    /// The shared part of the session of `client_id`, online or not.
    pub(crate) fn session(&self, client_id: &str) -> Option<Arc<SessionShared>> {
        match self.entries.lock().get(client_id)? {
            Entry::Online { session, .. } => session.clone(),
            Entry::Offline(offline) => Some(offline.state.shared.clone()),
        }
    }

    /// Adds a session restored from the durable store, its client away.
    pub(crate) fn insert_offline(
        &self,
        client_id: ByteString,
        state: SessionState,
        expires_at: Option<Instant>,
        disconnected_at: SystemTime,
    ) {
        let offline = OfflineSession { state, disconnected_at, expires_at, will: None };
        self.entries.lock().insert(client_id, Entry::Offline(Box::new(offline)));
    }

    /// Removes the session of an offline client and returns it for cleanup.
    pub(crate) fn remove_offline(&self, client_id: &str) -> Option<SessionState> {
        let mut entries = self.entries.lock();
        match entries.get(client_id)? {
            Entry::Offline(_) => match entries.remove(client_id) {
                Some(Entry::Offline(offline)) => Some(offline.state),
                _ => None,
            },
            Entry::Online { .. } => None,
        }
    }

    /// How many sessions exist, and how many of them have a connected client.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let entries = self.entries.lock();
        let online = entries.values().filter(|e| matches!(e, Entry::Online { .. })).count();
        (entries.len(), online)
    }
}
