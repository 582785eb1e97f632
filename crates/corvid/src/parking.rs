//! Parking idle connections: an idle plain-TCP connection gives up its task and its registration with the runtime
//! (together 768 bytes), and waits as a small record in the server's parking lot.
//!
//! A connection is idle when no byte went either way for [`crate::Limits::park_idle_after`] and it has nothing
//! queued, nothing in flight, no partial packet and nothing unwritten. The keep-alive sweep asks it to park (see
//! [`crate::registry::ConnControl`]); the connection's task, if it agrees, turns into a [`Parked`] record: the socket
//! goes from the runtime's poller to the lot's own (one `epoll` instance, itself watched by the runtime's poller),
//! and the record becomes the waker of the session's queue and of the connection's control block.
//!
//! Whichever comes first resumes it in a new task, exactly once: the socket turning readable (a packet, or the
//! client closing), a delivery queued for the session, or an end request (kick, takeover, keep-alive timeout,
//! server stop). The client cannot tell: nothing of the protocol state is lost, only the task is made anew.

use crate::broker::Broker;
use crate::connection::{self, ParkedConnection};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use parking_lot::Mutex;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Wake, Waker};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// The poller token of the lot's stop signal.
const STOP: Token = Token(usize::MAX);

/// The parked connections of a server, and the poller that watches their sockets.
pub(crate) struct ParkingLot {
    /// Registers sockets with the poller, from any thread.
    registry: mio::Registry,
    /// Wakes the lot's task to stop.
    stop: mio::Waker,
    /// The poller, until the lot's task takes it.
    poll: Mutex<Option<mio::Poll>>,
    /// The parked connections by poller token.
    slots: Mutex<Slots>,
    /// The runtime resumed connections are spawned on; set when the lot starts, and nothing parks before.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Set when the lot stops: nothing parks any more.
    closed: AtomicBool,
}

#[derive(Default)]
struct Slots {
    parked: Vec<Option<Arc<Parked>>>,
    free: Vec<u32>,
}

/// A parked connection: the waker of its session's queue and of its control block, and the poller's entry for its
/// socket. Whoever takes the connection out resumes it; the others find nothing.
pub(crate) struct Parked {
    token: u32,
    conn: Mutex<Option<ParkedConnection>>,
}

impl ParkingLot {
    pub(crate) fn new() -> std::io::Result<Self> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let stop = mio::Waker::new(&registry, STOP)?;
        Ok(Self {
            registry,
            stop,
            poll: Mutex::new(Some(poll)),
            slots: Mutex::new(Slots::default()),
            runtime: OnceLock::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// How many connections are parked.
    pub(crate) fn len(&self) -> usize {
        let slots = self.slots.lock();
        slots.parked.len() - slots.free.len()
    }

    fn insert(&self, conn: ParkedConnection) -> Arc<Parked> {
        let mut slots = self.slots.lock();
        let token = match slots.free.pop() {
            Some(token) => token,
            None => {
                slots.parked.push(None);
                (slots.parked.len() - 1) as u32
            }
        };
        let parked = Arc::new(Parked { token, conn: Mutex::new(Some(conn)) });
        if let Some(slot) = slots.parked.get_mut(token as usize) {
            *slot = Some(parked.clone());
        }
        parked
    }

    fn remove(&self, token: u32, fd: std::os::fd::RawFd) {
        // Fails only for a socket that was never registered: nothing to undo then.
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.parked.get_mut(token as usize)
            && slot.take().is_some()
        {
            slots.free.push(token);
        }
    }

    /// Resumes the connection parked under `token`, if any (its socket turned readable).
    fn ready(&self, token: usize) {
        let parked = self.slots.lock().parked.get(token).cloned().flatten();
        if let Some(parked) = parked {
            parked.wake_by_ref();
        }
    }

    /// Stops the lot's task (it resumes every parked connection).
    pub(crate) fn stop(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if self.stop.wake().is_err() {
            self.close();
        }
    }

    /// Stops parking and resumes every parked connection.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let parked: Vec<Arc<Parked>> = self.slots.lock().parked.iter().flatten().cloned().collect();
        for parked in parked {
            parked.wake_by_ref();
        }
    }
}

/// Parks an idle connection. Hands it back when it must go on at once: a delivery or an end request came while it
/// was being parked, or the server does not park.
pub(crate) fn park(conn: ParkedConnection) -> Option<ParkedConnection> {
    let broker = conn.rest.broker.clone();
    let Some(lot) = broker.parking.as_ref() else { return Some(conn) };
    if lot.runtime.get().is_none() || lot.closed.load(Ordering::Relaxed) {
        return Some(conn);
    }
    let fd = conn.stream.as_raw_fd();
    let control = conn.rest.control.clone();
    let shared = conn.rest.state.shared.clone();
    let parked = lot.insert(conn);
    let waker = Waker::from(parked.clone());
    let mut cx = Context::from_waker(&waker);
    // Under the record's lock, nothing resumes it before the poller and both wakers know it: a resumed task's own
    // wakers are never replaced by this record's. A wake meanwhile waits for the lock, then resumes it.
    let mut slot = parked.conn.lock();
    // Data that arrived before this registration is reported at once: nothing slips between the task's last read
    // and the poller. The wakers are kept under the locks their wakers take: whatever comes after this look wakes
    // the record.
    let go_on = lot.registry.register(&mut SourceFd(&fd), Token(parked.token as usize), Interest::READABLE).is_err()
        || control.poll_end(&mut cx).is_ready()
        || shared.poll_queued(&mut cx).is_ready();
    if !go_on {
        return None;
    }
    let conn = slot.take();
    drop(slot);
    lot.remove(parked.token, fd);
    conn
}

impl Parked {
    /// Takes the connection out, once, and its socket out of the lot's poller.
    fn unpark(&self) -> Option<ParkedConnection> {
        let conn = self.conn.lock().take()?;
        if let Some(lot) = conn.rest.broker.parking.as_ref() {
            lot.remove(self.token, conn.stream.as_raw_fd());
        }
        Some(conn)
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(conn) = self.unpark() else { return };
        let broker = conn.rest.broker.clone();
        // Set before anything parked: see `park`.
        if let Some(runtime) = broker.parking.as_ref().and_then(|lot| lot.runtime.get()) {
            connection::resume(conn, runtime);
        }
    }
}

/// Starts the lot's task, which resumes the parked connections whose sockets turn readable until the server stops
/// (which resumes every parked connection through its control block, to end it). Must run in the runtime the
/// resumed connections go to.
pub(crate) fn start(broker: &Arc<Broker>) {
    let Some(lot) = broker.parking.as_ref() else { return };
    let Some(poll) = lot.poll.lock().take() else { return };
    let _ = lot.runtime.set(tokio::runtime::Handle::current());
    match watched(poll) {
        Ok(poll) => {
            tokio::spawn(watch(broker.clone(), poll));
        }
        Err(error) => {
            tracing::warn!(%error, "idle connections will not be parked");
            lot.close();
        }
    }
}

/// The lot's poller, registered with the runtime's.
#[allow(unsafe_code)]
fn watched(poll: mio::Poll) -> std::io::Result<AsyncFd<mio::Poll>> {
    // SAFETY: the `AsyncFd` owns the poller, whose `epoll` descriptor is open from its creation to its drop and is
    // the one `as_raw_fd` always returns; the poller is only ever polled through `get_inner_mut`, never replaced.
    unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
        .map_err(|refused| refused.into_parts().1)
}

/// How many poller events the lot's task takes per system call.
const EVENTS: usize = 256;

/// Waits for parked sockets to turn readable. The lot's poller is itself watched by the runtime's (an `epoll`
/// instance is readable while it has events), so a socket turning readable wakes a worker of the runtime, which
/// resumes the connection in its own run queue: no thread of the lot's to wake, nor a worker from it.
async fn watch(broker: Arc<Broker>, mut poll: AsyncFd<mio::Poll>) {
    let Some(lot) = broker.parking.as_ref() else { return };
    let mut events = mio::Events::with_capacity(EVENTS);
    while !lot.closed.load(Ordering::Relaxed) {
        let mut ready = match poll.readable_mut().await {
            Ok(ready) => ready,
            Err(error) => {
                tracing::warn!(%error, "parking idle connections stopped");
                break;
            }
        };
        // Everything the poller has, without waiting: the runtime reports it again only for events after this.
        loop {
            match ready.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!(%error, "parking idle connections stopped");
                    lot.close();
                    return;
                }
            }
            let mut taken = 0;
            for event in &events {
                taken += 1;
                if event.token() != STOP {
                    lot.ready(event.token().0);
                }
            }
            if taken < EVENTS {
                break;
            }
        }
        // Clears only what was seen: readiness the runtime recorded meanwhile stays.
        ready.clear_ready();
    }
    lot.close();
}
