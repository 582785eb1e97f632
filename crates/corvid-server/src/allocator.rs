//! The global allocator, and handing memory back to the system after connections freed much of it.
//!
//! mimalloc keeps the pages a thread frees and gives them back to the system only as that thread allocates
//! again. Connections free memory in waves: idle connections park together (each gives up its 512-byte task and
//! 256-byte runtime registration), a storm of clients disconnects. An idle broker then allocates next to nothing,
//! so without help it would hold the memory of a wave for as long as it stays idle. Here a watcher asks for a
//! release when the runtime's task count has dropped well below its peak, and each worker thread, the next time it
//! has nothing to do, collects its own heap once: its free pages go back to the system. A busy worker keeps what
//! it has until it is idle; with a steady task count nothing is asked at all.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The broker allocates each message on the publisher's thread and frees it on the subscriber's; mimalloc does that
/// without the lock the system allocator takes (fan-in 1.4x, BENCHMARKS.md "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many tasks must have ended since the peak (their cells alone are 512 bytes each: 128 KiB here) before the
/// workers are asked to give memory back.
const TASKS_ENDED: usize = 256;

/// How often the watcher looks at the task count.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Release requests so far; each worker remembers the last it served.
static REQUESTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

/// For the runtime's `on_thread_park`: a worker about to wait for work serves a release request it has not served
/// yet. Otherwise an atomic load and a thread-local read.
pub(crate) fn on_worker_idle() {
    if take_request() {
        release_free_pages();
    }
}

/// Whether a release was requested since this thread last looked.
fn take_request() -> bool {
    let requested = REQUESTED.load(Ordering::Relaxed);
    SERVED.with(|served| served.replace(requested)) != requested
}

/// Watches the runtime's task count and asks for a release when [`TASKS_ENDED`] tasks have ended since its peak.
/// Runs until the runtime stops.
pub(crate) async fn watch(runtime: tokio::runtime::Handle) {
    let mut tick = tokio::time::interval(WATCH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = TaskCount::default();
    loop {
        tick.tick().await;
        if tasks.dropped(runtime.metrics().num_alive_tasks()) {
            REQUESTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The task count's peak since the last release request.
#[derive(Debug, Default)]
struct TaskCount {
    peak: usize,
}

impl TaskCount {
    /// Takes the current count: `true` when it is [`TASKS_ENDED`] or more below the peak (which starts again from
    /// here).
    fn dropped(&mut self, alive: usize) -> bool {
        self.peak = self.peak.max(alive);
        if self.peak - alive < TASKS_ENDED {
            return false;
        }
        self.peak = alive;
        true
    }
}

/// Gives the calling thread's free pages back to the system.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
fn release_free_pages() {
    // SAFETY: `mi_collect` takes no pointer and touches only the allocator's own state (the calling thread's heap
    // and the free segments); mimalloc allows it on any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The system allocator: nothing to do.
#[cfg(not(feature = "mimalloc"))]
fn release_free_pages() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_asked_once_the_count_drops_far_enough_below_its_peak() {
        let mut tasks = TaskCount::default();
        assert!(!tasks.dropped(10));
        assert!(!tasks.dropped(5000));
        assert!(!tasks.dropped(5000 - TASKS_ENDED + 1));
        assert!(tasks.dropped(5000 - TASKS_ENDED));
        // The peak starts again from there: a steady count asks nothing more.
        assert!(!tasks.dropped(5000 - TASKS_ENDED));
        assert!(!tasks.dropped(4800));
        assert!(tasks.dropped(4744 - TASKS_ENDED));
    }

    #[test]
    fn each_thread_serves_each_request_once() {
        // Other tests of this binary do not request releases: the count only moves here.
        assert!(!take_request());
        REQUESTED.fetch_add(1, Ordering::Relaxed);
        assert!(take_request());
        assert!(!take_request());
        // Another thread has its own view: it serves the request too, once.
        let other = std::thread::spawn(|| (take_request(), take_request()));
        assert_eq!(other.join().ok(), Some((true, false)));
        // Serving frees memory and nothing else.
        on_worker_idle();
        release_free_pages();
    }
}
