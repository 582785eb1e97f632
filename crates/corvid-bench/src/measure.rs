//! Process measurement from `/proc`: CPU time, current and peak resident memory.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (fields 14 and 15, all threads) divided by `CLK_TCK`
//! (`getconf CLK_TCK`, usually 100). Peak memory is `VmHWM` from `/proc/PID/status`, reset at the start of a
//! measurement by writing `5` to `/proc/PID/clear_refs`; where that is refused, a sampler polling `VmRSS` every
//! 20 ms stands in.

use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Clock ticks per second of the `/proc/PID/stat` times, from `getconf CLK_TCK` (100 if that fails).
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Which process to read: a pid, or this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// This process (`/proc/self`).
    Myself,
    /// Another process.
    Other(u32),
}

impl Pid {
    fn path(self, file: &str) -> String {
        match self {
            Self::Myself => format!("/proc/self/{file}"),
            Self::Other(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// CPU seconds used so far, user plus system, all threads.
    pub fn cpu_seconds(self) -> anyhow::Result<f64> {
        let path = self.path("stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let (utime, stime) = parse_stat_times(&stat).with_context(|| format!("parsing {path}"))?;
        Ok((utime + stime) as f64 / clock_ticks() as f64)
    }

    /// Current resident memory (`VmRSS`) in bytes.
    pub fn rss_bytes(self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:").map(|k| k * 1024)
    }

    /// Peak resident memory (`VmHWM`) in bytes.
    pub fn peak_rss_bytes(self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:").map(|k| k * 1024)
    }

    /// Resets the peak resident memory to the current one; `false` when the kernel refuses.
    pub fn reset_peak_rss(self) -> bool {
        std::fs::write(self.path("clear_refs"), "5").is_ok()
    }

    /// Whether the process still exists.
    pub fn is_alive(self) -> bool {
        std::fs::metadata(self.path("stat")).is_ok()
    }

    fn status_kib(self, key: &str) -> anyhow::Result<u64> {
        let path = self.path("status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_status_kib(&status, key).with_context(|| format!("no {key} in {path}"))
    }
}

/// `(utime, stime)` in clock ticks from the text of `/proc/PID/stat`.
fn parse_stat_times(stat: &str) -> anyhow::Result<(u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    let Some(close) = stat.rfind(')') else {
        bail!("no command name");
    };
    let mut fields = stat[close + 1..].split_whitespace();
    // After ')' the first field is the state (field 3); utime and stime are fields 14 and 15.
    let utime = fields.nth(11).context("no utime")?.parse()?;
    let stime = fields.next().context("no stime")?.parse()?;
    Ok((utime, stime))
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU used by a process between two points in time.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pid: Pid,
    start: f64,
}

impl CpuMark {
    /// Starts measuring `pid`; `None` if its stat cannot be read.
    pub fn start(pid: Pid) -> Option<Self> {
        pid.cpu_seconds().ok().map(|start| Self { pid, start })
    }

    /// CPU seconds since the start; `None` if the process is gone.
    pub fn elapsed(&self) -> Option<f64> {
        self.pid.cpu_seconds().ok().map(|now| (now - self.start).max(0.0))
    }
}

/// Tracks the peak resident memory of a process over a scenario.
#[derive(Debug)]
pub struct PeakRss {
    pid: Pid,
    hwm_reset: bool,
    sampled_max: Arc<AtomicU64>,
    stop: CancellationToken,
    sampler: Option<JoinHandle<()>>,
}

impl PeakRss {
    /// Starts tracking: resets `VmHWM` and starts the `VmRSS` sampler (which also covers a refused reset).
    pub fn start(pid: Pid) -> Self {
        let hwm_reset = pid.reset_peak_rss();
        let sampled_max = Arc::new(AtomicU64::new(pid.rss_bytes().unwrap_or(0)));
        let stop = CancellationToken::new();
        let sampler = {
            let sampled_max = Arc::clone(&sampled_max);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                // Bounded: the owner cancels it; a gone process ends it too; and 6 hours is the hard stop.
                for _ in 0..(6 * 3600 * 50) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    match pid.rss_bytes() {
                        Ok(rss) => {
                            sampled_max.fetch_max(rss, Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Self { pid, hwm_reset, sampled_max, stop, sampler: Some(sampler) }
    }

    /// Stops tracking and returns the peak in bytes (`None` if nothing could be read).
    pub async fn finish(mut self) -> Option<u64> {
        self.stop.cancel();
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.await;
        }
        let sampled = self.sampled_max.load(Ordering::Relaxed);
        let hwm = if self.hwm_reset { self.pid.peak_rss_bytes().ok() } else { None };
        match (hwm, sampled) {
            (Some(h), s) => Some(h.max(s)),
            (None, 0) => None,
            (None, s) => Some(s),
        }
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_stat_times(stat).unwrap(), (250, 75));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(Pid::Myself.cpu_seconds().unwrap() >= 0.0);
        assert!(Pid::Myself.rss_bytes().unwrap() > 0);
        assert!(Pid::Myself.peak_rss_bytes().unwrap() >= Pid::Myself.rss_bytes().unwrap() / 2);
        assert!(clock_ticks() > 0);
    }
}
