//! Even pacing of fixed-rate publishers: one thread sends every message at its nominal instant.
//!
//! A tokio task cannot pace itself finer than the runtime's timer, which has a granularity of 1 ms: with 1,000
//! publishers at 20 msgs/s each (20,000 msgs/s in total), the 20 publishers due in each millisecond all woke at
//! the tick and wrote back to back, and their subscribers' reads queued behind each other and behind the burst on
//! the generator's thread. The latency measured was mostly the generator's own queueing.
//!
//! Here the flow's fixed-rate publishers on plain TCP are taken off the runtime ([`Client::detach`]) and handed to
//! one dedicated thread. Message `k` of a publisher is due at `start + k / rate` ([`Cadence`]); the thread keeps
//! every publisher's next due instant in a [`Schedule`], waits for the earliest ([`Sleeper`]: a sleep with a
//! 1 ns timer slack, then a spin of at most [`SPIN_MAX`]), and writes the due messages to that publisher's
//! socket with a non-blocking write. The stamp is taken when the message is written, as in
//! [`crate::publisher`]. With the flow's phases (publisher `i` starts `i / (n * rate)` into the period), 1,000
//! publishers at 20 msgs/s send one message every 50 us.
//!
//! At QoS 1/2 the thread reads a publisher's acknowledgements without waiting at each of its turns (as the tokio
//! publisher does after each of its writes) and writes the PUBRELs with the next write. When the in-flight
//! window is full, or the socket takes nothing, the publisher is looked at again after [`RETRY_MIN`], doubling
//! up to [`RETRY_MAX`]; messages that fell behind go out together at the next turn, at most `--batch` per write.
//! After the deadline (or the message budget, or `stop`) the connections go back on the runtime, which waits for
//! the last acknowledgements ([`crate::publisher::settle`]).
//!
//! The thread runs until the flow's deadline at the latest and never spins longer than [`SPIN_MAX`] at a time.

use crate::client::Client;
use crate::payload::now_ns;
use crate::publisher::{Progress, PublisherPlan, PublisherReport, failed, report, settle};
use anyhow::anyhow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest the pacer spins (busy-waits) at a time; longer waits sleep.
pub const SPIN_MAX: Duration = Duration::from_micros(5);
/// The first retry of a publisher whose in-flight window is full or whose socket takes nothing.
pub const RETRY_MIN: Duration = Duration::from_micros(50);
/// The longest between retries of such a publisher.
pub const RETRY_MAX: Duration = Duration::from_millis(10);
/// The longest the pacer sleeps before it looks at `stop` again.
const STOP_POLL: Duration = Duration::from_millis(10);
/// The shortest sleep asked for: below the wake-up latency of any kernel, so a sleep is always worth one.
const MIN_SLEEP: Duration = Duration::from_micros(1);
/// The most the pacer assumes a sleep oversleeps.
const MAX_OVERSLEEP: Duration = Duration::from_micros(200);

/// When publisher `i` of `count` fixed-rate publishers, each at `rate` messages per second, starts: spread
/// evenly over one period, as independent clients would be (started together, 1,000 publishers at 20 msgs/s each
/// would send in bursts of 1,000 every 50 ms).
pub fn phase(i: usize, count: usize, rate: f64) -> Duration {
    let slot = 1.0 / (count.max(1) as f64 * rate);
    if slot.is_finite() { Duration::from_secs_f64(i as f64 * slot) } else { Duration::ZERO }
}

/// When each message of a fixed-rate publisher is due: message `k` (from 0) at `start + k / rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    start: Instant,
    interval_ns: f64,
}

impl Cadence {
    /// Messages at `rate` per second from `start` (rates below one message a day count as one a day).
    pub fn new(start: Instant, rate: f64) -> Self {
        let rate = if rate.is_finite() { rate.max(1.0 / 86_400.0) } else { 1.0 / 86_400.0 };
        Self { start, interval_ns: 1e9 / rate }
    }

    /// When message `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }

    /// How many of the `max` messages from message `from` on are due at `now`.
    pub fn due_by(&self, from: u64, max: u64, now: Instant) -> u64 {
        (from..from.saturating_add(max)).take_while(|&k| self.due(k) <= now).count() as u64
    }
}

/// The next due instant of each publisher, earliest first (ties by publisher index).
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publisher `index` is next due at `at`.
    pub fn push(&mut self, at: Instant, index: usize) {
        self.heap.push(Reverse((at, index)));
    }

    /// The earliest due instant.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The publisher due earliest, if it is due at `now`; removed from the schedule.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Whether no publisher is left.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// How to wait for an instant `left` away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Busy-wait for the rest (at most [`SPIN_MAX`]).
    Spin,
    /// Sleep this long, then look again.
    Sleep(Duration),
}

impl Wait {
    /// Spin when `left` is at most [`SPIN_MAX`]; otherwise sleep long enough to wake (given that sleeps wake
    /// about `oversleep` late) [`SPIN_MAX`] early, or, when the wake-up latency is longer than `left`, as short
    /// as possible: a little late rather than a long spin.
    pub fn plan(left: Duration, oversleep: Duration) -> Self {
        if left <= SPIN_MAX {
            Self::Spin
        } else {
            Self::Sleep(left.saturating_sub(SPIN_MAX + oversleep).max(MIN_SLEEP))
        }
    }
}

/// Waits for instants with short sleeps and spins of at most [`SPIN_MAX`], learning how late sleeps wake.
#[derive(Debug, Default)]
pub struct Sleeper {
    /// A low estimate of how late a sleep wakes: follows a shorter oversleep at once, a longer one slowly, so that
    /// most sleeps end a little early (a short spin) rather than late.
    oversleep: Duration,
}

impl Sleeper {
    /// A sleeper that has not slept yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current estimate of how late a sleep wakes.
    pub fn oversleep(&self) -> Duration {
        self.oversleep
    }

    /// Returns at `at` or soon after: the spin at the end lasts at most [`SPIN_MAX`].
    pub fn wait_until(&mut self, at: Instant) {
        loop {
            let now = Instant::now();
            let Some(left) = at.checked_duration_since(now).filter(|d| !d.is_zero()) else {
                return;
            };
            match Wait::plan(left, self.oversleep) {
                Wait::Spin => {
                    while Instant::now() < at {
                        std::hint::spin_loop();
                    }
                    return;
                }
                Wait::Sleep(d) => {
                    std::thread::sleep(d);
                    let late = now.elapsed().saturating_sub(d).min(MAX_OVERSLEEP);
                    self.learn(late);
                }
            }
        }
    }

    fn learn(&mut self, late: Duration) {
        self.oversleep = if late < self.oversleep { late } else { self.oversleep + (late - self.oversleep) / 16 };
    }
}

/// One publisher on the pacer thread.
struct Paced {
    /// Its place in [`run_paced`]'s list.
    slot: usize,
    client: Client,
    plan: PublisherPlan,
    progress: Progress,
    cadence: Cadence,
    /// The next retry interval while the in-flight window is full or the socket takes nothing.
    retry: Duration,
    error: Option<anyhow::Error>,
}

impl Paced {
    /// Sends what is due at `now`; returns when to look at this publisher again (`None`: it is finished).
    fn turn(&mut self, now: Instant) -> anyhow::Result<Option<Instant>> {
        let plan = &self.plan;
        let progress = &mut self.progress;
        if now >= plan.deadline || progress.sent >= plan.max_messages {
            return Ok(None);
        }
        if progress.acked && progress.inflight.outstanding() > 0 {
            self.client.try_read_more()?;
            progress.inflight.process(&mut self.client, plan.qos)?;
        }
        let writable = self.client.try_flush()?;
        let budget = (plan.max_messages - progress.sent).min(plan.batch.max(1) as u64);
        let due = self.cadence.due_by(progress.sent, budget, now);
        if due == 0 {
            // Early (a retry, or a sleep that ended before the instant): come back when it is due.
            return Ok(Some(self.cadence.due(progress.sent)));
        }
        let n = if progress.acked { due.min(progress.inflight.free() as u64) } else { due };
        if !writable || n == 0 {
            let at = now + self.retry;
            self.retry = (self.retry * 2).min(RETRY_MAX);
            return Ok(Some(at));
        }
        self.retry = RETRY_MIN;
        progress.append(&mut self.client, plan, n, now_ns());
        plan.counters[plan.index as usize].sent.store(progress.sent, Ordering::Release);
        let flushed = self.client.try_flush()?;
        if progress.sent >= plan.max_messages {
            return Ok(None);
        }
        let next = self.cadence.due(progress.sent);
        Ok(Some(if flushed { next } else { next.min(now + RETRY_MIN) }))
    }
}

/// The pacer thread: every publisher's turns in order of due time until all are finished or `stop`.
fn pace(paced: &mut [Paced], stop: &CancellationToken) {
    // Sleeps end when asked, not up to the default 50 us later.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let mut schedule = Schedule::new();
    for (i, p) in paced.iter().enumerate() {
        if p.error.is_none() && p.plan.max_messages > 0 {
            schedule.push(p.cadence.due(0), i);
        }
    }
    let mut sleeper = Sleeper::new();
    while !stop.is_cancelled() {
        let Some(next) = schedule.next() else { break };
        let now = Instant::now();
        let Some((_, i)) = schedule.pop_due(now) else {
            sleeper.wait_until(next.min(now + STOP_POLL));
            continue;
        };
        let p = &mut paced[i];
        match p.turn(now) {
            Ok(Some(at)) if at < p.plan.deadline => schedule.push(at, i),
            Ok(_) => {}
            Err(e) => p.error = Some(e),
        }
    }
}

/// Runs fixed-rate publishers on plain TCP (see [`Client::is_tcp`]) from one pacing thread until their deadline,
/// their message budgets or `stop`, then waits for their acknowledgements; one report per publisher, in order.
pub async fn run_paced(publishers: Vec<(Client, PublisherPlan)>, stop: CancellationToken) -> Vec<PublisherReport> {
    // Who is who, for the reports should the thread fail.
    let who: Vec<_> = publishers.iter().map(|(_, plan)| (plan.index, Arc::clone(&plan.counters))).collect();
    let mut reports: Vec<Option<PublisherReport>> = (0..publishers.len()).map(|_| None).collect();
    let mut paced = Vec::with_capacity(publishers.len());
    for (slot, (client, plan)) in publishers.into_iter().enumerate() {
        let progress = Progress::new(&client, &plan);
        let cadence = Cadence::new(plan.start, plan.rate.unwrap_or(1.0));
        match client.detach() {
            Ok(client) => {
                paced.push(Paced { slot, client, plan, progress, cadence, retry: RETRY_MIN, error: None });
            }
            Err(e) => reports[slot] = Some(failed(plan.index, &plan.counters[plan.index as usize], 0, &e)),
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("corvid-bench-pacer".to_owned()).spawn(move || {
        pace(&mut paced, &stop);
        let _ = tx.send(paced);
    });
    let paced = match spawned {
        Ok(_) => rx.await.map_err(|_| anyhow!("the pacer thread ended without its publishers")),
        Err(e) => Err(anyhow!("starting the pacer thread: {e}")),
    };
    let paced = match paced {
        Ok(paced) => paced,
        Err(e) => {
            return who
                .iter()
                .zip(reports)
                .map(|((index, counters), r)| r.unwrap_or_else(|| failed(*index, &counters[*index as usize], 0, &e)))
                .collect();
        }
    };
    // Every publisher settles at once: each may wait up to its acknowledgement timeout.
    let mut settling = Vec::with_capacity(paced.len());
    for p in paced {
        let slot = p.slot;
        settling.push((
            slot,
            tokio::spawn(async move {
                let Paced { client, plan, mut progress, error, .. } = p;
                let counters = &plan.counters[plan.index as usize];
                if let Some(e) = error {
                    return failed(plan.index, counters, progress.sent, &e);
                }
                let mut client = match client.attach() {
                    Ok(client) => client,
                    Err(e) => return failed(plan.index, counters, progress.sent, &e),
                };
                let result = settle(&mut client, &plan, &mut progress).await;
                report(client, &plan, progress.sent, result)
            }),
        ));
    }
    for (slot, handle) in settling {
        let report = handle.await.unwrap_or_else(|e| {
            let (index, counters) = &who[slot];
            failed(*index, &counters[*index as usize], 0, &anyhow!("settling: {e}"))
        });
        reports[slot] = Some(report);
    }
    reports.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instants of every turn of `cadences` from their first message until `deadline`, in schedule order.
    fn turns(cadences: &[Cadence], deadline: Instant) -> Vec<(Instant, usize)> {
        let mut schedule = Schedule::new();
        for (i, c) in cadences.iter().enumerate() {
            schedule.push(c.due(0), i);
        }
        let mut next = vec![1u64; cadences.len()];
        let mut out = Vec::new();
        while let Some((at, i)) = schedule.pop_due(deadline) {
            assert!(out.len() < 1_000_000, "unbounded schedule");
            out.push((at, i));
            let due = cadences[i].due(next[i]);
            next[i] += 1;
            if due < deadline {
                schedule.push(due, i);
            }
        }
        assert!(schedule.next().is_none_or(|at| at >= deadline));
        out
    }

    #[test]
    fn a_thousand_publishers_send_one_message_every_50_us() {
        // latency/1000x20k: 1,000 publishers at 20 msgs/s each, phased as the flow does.
        let (n, rate) = (1000, 20.0);
        let start = Instant::now();
        let cadences: Vec<_> = (0..n).map(|i| Cadence::new(start + phase(i, n, rate), rate)).collect();
        let deadline = start + Duration::from_secs(1);
        let turns = turns(&cadences, deadline);
        assert_eq!(turns.len(), 20_000);
        for pair in turns.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap >= Duration::from_nanos(49_990) && gap <= Duration::from_nanos(50_010), "{gap:?}");
        }
        // Round robin: publisher i's turns are 50 ms apart, and every publisher has the same number.
        let mut per = vec![Vec::new(); n];
        for (at, i) in &turns {
            per[*i].push(*at);
        }
        for instants in &per {
            assert_eq!(instants.len(), 20);
            for pair in instants.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(gap >= Duration::from_micros(49_999) && gap <= Duration::from_micros(50_001), "{gap:?}");
            }
        }
        // No millisecond holds more than its share: 20 messages.
        let mut per_ms = vec![0; 1000];
        for (at, _) in &turns {
            per_ms[(*at - start).as_millis() as usize] += 1;
        }
        assert!(per_ms.iter().all(|&c| c == 20), "{per_ms:?}");
    }

    #[test]
    fn mixed_rates_are_merged_in_order_and_bounded() {
        let start = Instant::now();
        let rates = [10_000.0, 333.0, 7.5, 1.0];
        let cadences: Vec<_> =
            rates.iter().enumerate().map(|(i, &r)| Cadence::new(start + phase(i, rates.len(), r), r)).collect();
        let deadline = start + Duration::from_millis(200);
        let turns = turns(&cadences, deadline);
        assert!(turns.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(turns.iter().all(|(at, _)| *at >= start && *at < deadline));
        for (i, rate) in rates.iter().enumerate() {
            let count = turns.iter().filter(|(_, p)| *p == i).count() as f64;
            let expected = rate * 0.2;
            assert!((count - expected).abs() <= 1.0, "publisher {i}: {count} turns, expected {expected}");
        }
    }

    #[test]
    fn due_messages_are_counted_from_the_cadence() {
        let start = Instant::now();
        let c = Cadence::new(start, 10_000.0);
        assert_eq!(c.due(0), start);
        assert_eq!(c.due(3), start + Duration::from_micros(300));
        assert_eq!(c.due_by(0, 64, start - Duration::from_nanos(1)), 0);
        assert_eq!(c.due_by(0, 64, start), 1);
        // After a 2 ms stall, 21 messages are due (0 to 2 ms inclusive), at most a batch at a time.
        let late = start + Duration::from_micros(2_050);
        assert_eq!(c.due_by(0, 64, late), 21);
        assert_eq!(c.due_by(0, 5, late), 5);
        assert_eq!(c.due_by(20, 64, late), 1);
        assert_eq!(c.due_by(21, 64, late), 0);
        assert_eq!(c.due_by(u64::MAX - 1, 64, late), 0);
        // A turn at a message's own instant always finds it due.
        for k in [0, 1, 7, 999, 123_456] {
            assert_eq!(c.due_by(k, 1, c.due(k)), 1);
        }
        // Degenerate rates stay bounded.
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Cadence::new(start, rate).due(1) >= start + Duration::from_secs(86_399));
        }
        assert_eq!(phase(3, 0, 0.0), Duration::ZERO);
        assert_eq!(phase(3, 1000, 20.0), Duration::from_micros(150));
    }

    #[test]
    fn waits_spin_only_briefly() {
        for oversleep in [Duration::ZERO, Duration::from_micros(20), Duration::from_micros(200)] {
            for us in [0, 1, 5, 6, 10, 30, 50, 100, 1000, 10_000] {
                let left = Duration::from_micros(us);
                match Wait::plan(left, oversleep) {
                    Wait::Spin => assert!(left <= SPIN_MAX),
                    Wait::Sleep(d) => {
                        assert!(left > SPIN_MAX);
                        assert!(d >= MIN_SLEEP);
                        // Aimed to wake before the instant, unless even the shortest sleep would not.
                        assert!(d + SPIN_MAX + oversleep <= left || d == MIN_SLEEP, "{left:?} {oversleep:?} {d:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn sleeper_never_returns_early_and_learns_low() {
        let mut sleeper = Sleeper::new();
        for us in [0, 3, 40, 200, 1500] {
            let at = Instant::now() + Duration::from_micros(us);
            sleeper.wait_until(at);
            assert!(Instant::now() >= at);
            assert!(sleeper.oversleep() <= MAX_OVERSLEEP);
        }
        let mut s = Sleeper::new();
        s.learn(Duration::from_micros(160));
        assert_eq!(s.oversleep(), Duration::from_micros(10));
        s.learn(Duration::from_micros(4));
        assert_eq!(s.oversleep(), Duration::from_micros(4));
    }
}
