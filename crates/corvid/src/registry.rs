//! The client registry: which session each client identifier has, and whether a connection serves it.
//!
//! Takeover is race-free: a connection claims a client identifier under the registry lock, and if another
//! connection holds it, leaves a hand-off request in that connection's control block under the same lock. The old
//! connection, when it ends for whatever reason, looks for that request under the lock before it stores its session,
//! so the session goes to exactly one place.
//!
//! The registry also reaches every running connection to end it: a kick, the keep-alive sweep, and the server
//! stopping all leave their request in the connection's control block and wake its task.

use crate::connection::CloseReason;
use crate::session::{PendingWill, SessionShared, SessionState};
use corvid_protocol::{ByteString, ProtocolVersion, ReasonCode};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use std::time::SystemTime;
use tokio::sync::oneshot;

/// Why a connection is asked to end.
pub(crate) enum Handoff {
    /// Another connection with the same client identifier wants the session.
    TakeOver(oneshot::Sender<SessionState>),
    /// The process disconnects the client with this reason.
    Kick(ReasonCode),
    /// The client sent nothing for longer than one and a half times its keep-alive.
    KeepAliveTimeout,
    /// The server is stopping.
    ServerShutdown,
}

/// Facts and counters of a running connection. Compact: every connection has one, parked or not.
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) username: Option<Box<str>>,
    /// Milliseconds since the Unix epoch (see [`Self::connected_at`]).
    connected_at_ms: u64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
}

impl ConnInfo {
    pub(crate) fn new(remote: SocketAddr, username: Option<&str>) -> Self {
        Self {
            remote,
            username: username.map(Box::from),
            connected_at_ms: crate::wallclock::now_millis(),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
        }
    }

    /// When the connection was established (to the millisecond).
    pub(crate) fn connected_at(&self) -> SystemTime {
        crate::wallclock::from_unix_millis(self.connected_at_ms)
    }
}

/// How the registry reaches a running connection.
pub(crate) struct ConnControl {
    /// Why the connection is asked to end, if it is, and the waker of its task while it waits: under one lock, so
    /// no request slips between the task's look and its wait. No cancellation token: a child token of the
    /// broker's would be one more allocation for every connection.
    end: Mutex<EndRequest>,
    /// Set when the process deletes the session: the connection ends it instead of storing it.
    pub(crate) delete_session: AtomicBool,
    /// When the client was last active, in [`crate::broker::Broker::millis`]. Written by the connection, read by
    /// the broker's keep-alive sweep: an atomic here instead of a timer in every connection's task.
    last_active: AtomicU32,
    /// When bytes last went either way, in [`crate::broker::Broker::millis`]: how long the connection has been idle,
    /// for parking (see [`crate::parking`]).
    last_io: AtomicU32,
    /// The keep-alive in seconds, 0 for none; set once the connection is established.
    keep_alive: AtomicU16,
    /// Whether the connection may be parked, and whether it was asked to be: one of the `PARK_*` values.
    park: AtomicU8,
    /// Here rather than in `info`, where it would cost 8 bytes of padding.
    pub(crate) protocol: ProtocolVersion,
    pub(crate) info: ConnInfo,
}

/// The connection cannot be parked (not plain TCP, or parking is off).
const PARK_NEVER: u8 = 0;
/// The connection can be parked once idle.
const PARK_ABLE: u8 = 1;
/// The keep-alive sweep asked the connection to park (it may decline), or it is parked.
const PARK_ASKED: u8 = 2;

/// What wakes a connection's task from its control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// It is asked to end ([`ConnControl::end_reason`] says why).
    End,
    /// It has been idle long enough to be parked.
    Park,
}

/// See [`ConnControl::end`].
#[derive(Default)]
struct EndRequest {
    handoff: Option<Handoff>,
    waker: Option<Waker>,
}

impl ConnControl {
    pub(crate) fn new(info: ConnInfo, protocol: ProtocolVersion) -> Self {
        Self {
            protocol,
            end: Mutex::new(EndRequest::default()),
            delete_session: AtomicBool::new(false),
            last_active: AtomicU32::new(0),
            last_io: AtomicU32::new(0),
            keep_alive: AtomicU16::new(0),
            park: AtomicU8::new(PARK_NEVER),
            info,
        }
    }

    /// Starts keep-alive checks (`seconds` 0: none), counting the client active at `now`.
    pub(crate) fn start_keep_alive(&self, seconds: u16, now: u32) {
        self.active(now);
        self.keep_alive.store(seconds, Ordering::Relaxed);
    }

    /// Records that the client was active at `now` (in [`crate::broker::Broker::millis`]).
    pub(crate) fn active(&self, now: u32) {
        self.last_active.store(now, Ordering::Relaxed);
        self.last_io.store(now, Ordering::Relaxed);
    }

    /// Records that bytes were sent to the client at `now` (a coarse clock, see
    /// [`crate::broker::Broker::coarse_millis`]): not activity of the client (keep-alive), but not idle. Stores only
    /// a later time than the one there: the common case, the same coarse time, costs one load.
    pub(crate) fn sent(&self, now: u32) {
        if now.wrapping_sub(self.last_io.load(Ordering::Relaxed)) as i32 > 0 {
            self.last_io.store(now, Ordering::Relaxed);
        }
    }

    /// Makes the connection parkable from now on, or again (after it was parked, or declined to be): the sweep
    /// asks it to park once it has been idle for the broker's `park_idle_after`, counted from `now`.
    pub(crate) fn parkable(&self, now: u32) {
        self.last_io.store(now, Ordering::Relaxed);
        self.park.store(PARK_ABLE, Ordering::Release);
    }

    /// Asks a parkable connection idle at `now` for `idle_millis` or more to park, waking its task.
    fn ask_to_park_if_idle(&self, now: u32, idle_millis: u32) {
        if self.park.load(Ordering::Relaxed) != PARK_ABLE {
            return;
        }
        let idle = now.wrapping_sub(self.last_io.load(Ordering::Relaxed)) as i32;
        if i64::from(idle) < i64::from(idle_millis)
            || self.park.compare_exchange(PARK_ABLE, PARK_ASKED, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        let waker = self.end.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
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

    /// Asks the connection to end and wakes its task. A takeover replaces any earlier request (the session must
    /// go to the new connection); anything else keeps the first one.
    fn request_end(&self, handoff: Handoff) {
        let waker = {
            let mut end = self.end.lock();
            if end.handoff.is_some() && !matches!(handoff, Handoff::TakeOver(_)) {
                return;
            }
            end.handoff = Some(handoff);
            end.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ready once the connection is asked to end; otherwise keeps the waker to wake when it is.
    pub(crate) fn poll_end(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut end = self.end.lock();
        if end.handoff.is_some() {
            return Poll::Ready(());
        }
        crate::session::park(&mut end.waker, cx);
        Poll::Pending
    }

    /// Completes once the connection is asked to end. A hand-written poll: small in every connection's task.
    pub(crate) fn ended(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_end(cx))
    }

    /// Completes once the connection is asked to end, or to park (an end request wins).
    pub(crate) fn signalled(&self) -> impl Future<Output = Signal> + '_ {
        std::future::poll_fn(|cx| {
            let mut end = self.end.lock();
            if end.handoff.is_some() {
                return Poll::Ready(Signal::End);
            }
            // Read under the lock the sweep takes to wake: an ask cannot slip between this look and the wait.
            if self.park.load(Ordering::Acquire) == PARK_ASKED {
                return Poll::Ready(Signal::Park);
            }
            crate::session::park(&mut end.waker, cx);
            Poll::Pending
        })
    }

    /// The hand-off request left for this connection, if any. Only called under the registry lock.
    fn take_handoff(&self) -> Option<Handoff> {
        self.end.lock().handoff.take()
    }

    /// Why a connection asked to end ends (any takeover request stays in place).
    pub(crate) fn end_reason(&self) -> CloseReason {
        match &self.end.lock().handoff {
            Some(Handoff::TakeOver(_)) => CloseReason::TakenOver,
            Some(Handoff::Kick(code)) => CloseReason::Kicked(*code),
            Some(Handoff::KeepAliveTimeout) => CloseReason::KeepAliveTimeout,
            Some(Handoff::ServerShutdown) | None => CloseReason::ServerShutdown,
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
    /// Keyed by a boxed copy of the client identifier: 16 bytes in every slot of the map instead of 32.
    entries: Mutex<HashMap<Box<str>, Entry>>,
    /// Set, under the entries lock, when the server stops: a connection claiming its client identifier later is
    /// asked to end at once.
    stopping: AtomicBool,
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
        if self.stopping.load(Ordering::Relaxed) {
            control.request_end(Handoff::ServerShutdown);
        }
        let new = Entry::Online { generation, control, session: None };
        let old = match entries.get_mut(&**client_id) {
            Some(slot) => Some(std::mem::replace(slot, new)),
            None => entries.insert(Box::from(&**client_id), new),
        };
        match old {
            None => Previous::None,
            Some(Entry::Offline(offline)) => Previous::Offline(offline),
            Some(Entry::Online { control: old, .. }) => {
                let (tx, rx) = oneshot::channel();
                old.request_end(Handoff::TakeOver(tx));
                Previous::Online(rx)
            }
        }
    }

    /// Records which session the connection that claimed `client_id` serves, once it has decided.
    pub(crate) fn attach(&self, client_id: &ByteString, generation: u64, shared: Arc<SessionShared>) {
        if let Some(Entry::Online { generation: g, session, .. }) = self.entries.lock().get_mut(&**client_id)
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
        let ours = matches!(entries.get(&**client_id), Some(Entry::Online { generation: g, .. }) if *g == generation);
        if !ours {
            return Released::Ended(state);
        }
        match persist {
            Some((expires_at, will)) => {
                let offline = OfflineSession { state, disconnected_at: SystemTime::now(), expires_at, will };
                // `ours`: the entry is there.
                if let Some(slot) = entries.get_mut(&**client_id) {
                    *slot = Entry::Offline(Box::new(offline));
                }
                Released::Kept
            }
            None => {
                entries.remove(&**client_id);
                Released::Ended(state)
            }
        }
    }

    /// Removes the sessions that expired at `now`, returning them for cleanup, and takes the wills that are due.
    pub(crate) fn sweep(&self, now: Instant) -> Swept {
        let mut swept = Swept::default();
        let mut entries = self.entries.lock();
        let expired: Vec<Box<str>> = entries
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
                control.request_end(Handoff::Kick(reason));
                true
            }
            _ => false,
        }
    }

    /// Asks every connection whose client has been silent for longer than one and a half keep-alives to end, and
    /// (with `park_after` milliseconds) every parkable connection idle that long to park.
    ///
    /// A few atomic loads per connection under the registry lock: a sweep of 100,000 connections takes 1.5 to 3 ms.
    pub(crate) fn sweep_connections(&self, now: u32, park_after: Option<u32>) {
        for entry in self.entries.lock().values() {
            if let Entry::Online { control, .. } = entry {
                if control.is_silent(now) {
                    control.request_end(Handoff::KeepAliveTimeout);
                } else if let Some(idle) = park_after {
                    control.ask_to_park_if_idle(now, idle);
                }
            }
        }
    }

    /// Asks every running connection to end because the server stops, and any that claims its client identifier
    /// from now on.
    pub(crate) fn stop_all(&self) {
        let entries = self.entries.lock();
        self.stopping.store(true, Ordering::Relaxed);
        for entry in entries.values() {
            if let Entry::Online { control, .. } = entry {
                control.request_end(Handoff::ServerShutdown);
            }
        }
    }

    /// Runs `f` on every entry, under the lock: keep it short.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &Entry)) {
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
        self.entries.lock().insert(Box::from(&*client_id), Entry::Offline(Box::new(offline)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn control() -> Arc<ConnControl> {
        let info = ConnInfo::new(std::net::SocketAddr::from(([127, 0, 0, 1], 1)), None);
        Arc::new(ConnControl::new(info, ProtocolVersion::V5))
    }

    #[test]
    fn a_request_wakes_the_waiting_task_once_and_the_first_reason_stays() {
        let registry = Registry::default();
        let control = control();
        let id = ByteString::from("a");
        assert!(matches!(registry.claim(&id, 1, control.clone()), Previous::None));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(control.poll_end(&mut cx).is_pending());
        assert!(registry.kick(&id, ReasonCode::AdministrativeAction, false));
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(control.poll_end(&mut cx).is_ready());
        registry.stop_all();
        assert_eq!(control.end_reason(), CloseReason::Kicked(ReasonCode::AdministrativeAction));
        // A takeover replaces it: the session must reach the new connection.
        assert!(matches!(registry.claim(&id, 2, self::control()), Previous::Online(_)));
        assert_eq!(control.end_reason(), CloseReason::TakenOver);
    }

    #[test]
    fn a_connection_that_claims_after_stop_is_asked_to_end() {
        let registry = Registry::default();
        registry.stop_all();
        let control = control();
        registry.claim(&ByteString::from("late"), 1, control.clone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(control.poll_end(&mut cx).is_ready());
        assert_eq!(control.end_reason(), CloseReason::ServerShutdown);
    }

    #[test]
    fn only_clients_silent_beyond_one_and_a_half_keep_alives_are_ended() {
        let registry = Registry::default();
        let (quiet, talking, forever) = (control(), control(), control());
        quiet.start_keep_alive(10, 1_000);
        talking.start_keep_alive(10, 1_000);
        forever.start_keep_alive(0, 1_000);
        registry.claim(&ByteString::from("quiet"), 1, quiet.clone());
        registry.claim(&ByteString::from("talking"), 2, talking.clone());
        registry.claim(&ByteString::from("forever"), 3, forever.clone());
        let mut cx = Context::from_waker(Waker::noop());
        registry.sweep_connections(16_000, None);
        assert!(quiet.poll_end(&mut cx).is_pending(), "15 s of silence is not beyond 15 s");
        talking.active(16_000);
        // A time recorded after the sweep's own is no silence.
        talking.active(16_050);
        registry.sweep_connections(16_001, None);
        assert!(quiet.poll_end(&mut cx).is_ready());
        assert_eq!(quiet.end_reason(), CloseReason::KeepAliveTimeout);
        assert!(talking.poll_end(&mut cx).is_pending());
        registry.sweep_connections(u32::MAX, None);
        assert!(forever.poll_end(&mut cx).is_pending());
    }

    #[test]
    fn only_parkable_connections_idle_that_long_are_asked_to_park() {
        let registry = Registry::default();
        let (idle, busy, never) = (control(), control(), control());
        for (name, c) in [("idle", &idle), ("busy", &busy), ("never", &never)] {
            assert!(matches!(registry.claim(&ByteString::from(name), 1, (*c).clone()), Previous::None));
        }
        idle.parkable(1_000);
        busy.parkable(1_000);
        never.active(1_000);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut signalled = |c: &ConnControl| std::pin::pin!(c.signalled()).poll(&mut cx);
        for c in [&idle, &busy, &never] {
            assert!(signalled(c).is_pending());
        }
        busy.sent(1_050);
        registry.sweep_connections(1_099, Some(100));
        assert!(signalled(&idle).is_pending(), "99 ms idle is not 100");
        registry.sweep_connections(1_100, Some(100));
        assert!(flag.0.swap(false, Ordering::SeqCst), "the idle connection's task was woken");
        assert_eq!(signalled(&idle), Poll::Ready(Signal::Park));
        assert!(signalled(&busy).is_pending(), "bytes went out 50 ms ago");
        registry.sweep_connections(u32::MAX / 2, None);
        assert!(signalled(&busy).is_pending(), "no parking without a threshold");
        registry.sweep_connections(5_000, Some(100));
        assert_eq!(signalled(&busy), Poll::Ready(Signal::Park));
        assert!(signalled(&never).is_pending(), "never parkable");
        // Declining (busy after all) makes it parkable again, counted from then.
        busy.parkable(5_000);
        assert!(signalled(&busy).is_pending());
        // An end request wins over a park request.
        registry.kick("idle", ReasonCode::AdministrativeAction, false);
        assert_eq!(signalled(&idle), Poll::Ready(Signal::End));
    }
}
