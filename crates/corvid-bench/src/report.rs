//! Results of a scenario run: verdict, metrics, delivery totals, and how they print.

use crate::tracker::Delivery;
use std::fmt;

/// What a metric measures, which decides how it prints and which direction is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Events per second (higher is better).
    PerSecond,
    /// Nanoseconds, printed as microseconds (lower is better).
    Nanos,
    /// Microseconds of CPU per message (lower is better).
    CpuMicros,
    /// Milliseconds of CPU, e.g. per 1000 handshakes (lower is better).
    CpuMillis,
    /// A percentage, e.g. WebSocket throughput as a share of TCP's (higher is better).
    Percent,
    /// Bytes (lower is better).
    Bytes,
    /// Seconds (lower is better).
    Seconds,
    /// A plain count (informational).
    Count,
}

impl Unit {
    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::PerSecond | Self::Percent)
    }

    /// `value` in a short human form: `412.3k/s`, `85.2 us`, `8.1 MiB`.
    pub fn format(self, value: f64) -> String {
        match self {
            Self::PerSecond => format!("{}/s", si(value)),
            Self::Nanos => {
                if value >= 1e6 {
                    format!("{:.2} ms", value / 1e6)
                } else {
                    format!("{:.1} us", value / 1e3)
                }
            }
            Self::CpuMicros => format!("{value:.2} us"),
            Self::CpuMillis => format!("{value:.1} ms"),
            Self::Percent => format!("{value:.0}%"),
            Self::Bytes => {
                if value >= 1024.0 * 1024.0 {
                    format!("{:.1} MiB", value / (1024.0 * 1024.0))
                } else if value >= 1024.0 {
                    format!("{:.1} KiB", value / 1024.0)
                } else {
                    format!("{value:.0} B")
                }
            }
            Self::Seconds => format!("{value:.3} s"),
            Self::Count => si(value),
        }
    }
}

/// A number with a k/M/G suffix.
fn si(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if abs >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// A short name, e.g. `msgs/s` or `p99`.
    pub name: &'static str,
    /// The value, in the unit's base (nanoseconds for [`Unit::Nanos`]).
    pub value: f64,
    /// The unit.
    pub unit: Unit,
}

impl Metric {
    /// A metric.
    pub fn new(name: &'static str, value: f64, unit: Unit) -> Self {
        Self { name, value, unit }
    }
}

/// Whether a run passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything delivered as the QoS requires, no errors.
    Pass,
    /// Loss or duplicates at QoS 1/2, errors, or nothing delivered.
    Fail(Vec<String>),
    /// Not run against this target, and why.
    Skipped(String),
}

impl Verdict {
    /// Whether this is a failure.
    pub fn is_fail(&self) -> bool {
        matches!(self, Self::Fail(_))
    }

    /// Whether the case was skipped.
    pub fn is_skipped(&self) -> bool {
        matches!(self, Self::Skipped(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("PASS"),
            Self::Fail(reasons) => write!(f, "FAIL ({})", reasons.join("; ")),
            Self::Skipped(why) => write!(f, "skipped ({why})"),
        }
    }
}

/// The result of one case of a scenario against one target.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's label, e.g. `fanin` or `qos/q1-if16`.
    pub case: String,
    /// The target's name, e.g. `mosquitto`.
    pub target: String,
    /// Pass, fail or skipped.
    pub verdict: Verdict,
    /// The measured values.
    pub metrics: Vec<Metric>,
    /// Delivery totals of the verifying subscribers.
    pub delivery: Option<Delivery>,
    /// Remarks that do not fail the run (e.g. loss at QoS 0).
    pub notes: Vec<String>,
}

impl CaseResult {
    /// A result with no metrics yet.
    pub fn new(case: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            case: case.into(),
            target: target.into(),
            verdict: Verdict::Pass,
            metrics: Vec::new(),
            delivery: None,
            notes: Vec::new(),
        }
    }

    /// A skipped case.
    pub fn skipped(case: impl Into<String>, target: impl Into<String>, why: String) -> Self {
        Self { verdict: Verdict::Skipped(why), ..Self::new(case, target) }
    }

    /// Adds a metric.
    pub fn push(&mut self, name: &'static str, value: f64, unit: Unit) {
        self.metrics.push(Metric::new(name, value, unit));
    }

    /// Adds a failure reason.
    pub fn fail(&mut self, reason: impl Into<String>) {
        match &mut self.verdict {
            Verdict::Fail(reasons) => reasons.push(reason.into()),
            _ => self.verdict = Verdict::Fail(vec![reason.into()]),
        }
    }

    /// The value of the metric called `name`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    /// Prints the result as a few lines of text.
    pub fn print(&self) {
        println!("[{}] {}: {}", self.case, self.target, self.verdict);
        if !self.metrics.is_empty() {
            let line = self
                .metrics
                .iter()
                .map(|m| format!("{}={}", m.name, m.unit.format(m.value)))
                .collect::<Vec<_>>()
                .join("  ");
            println!("    {line}");
        }
        if let Some(d) = &self.delivery {
            println!(
                "    delivery: expected={} received={} lost={} duplicates={} reordered={} foreign={}",
                d.expected, d.received, d.lost, d.duplicates, d.reordered, d.foreign
            );
        }
        for note in &self.notes {
            println!("    note: {note}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(Unit::PerSecond.format(412_345.0), "412.3k/s");
        assert_eq!(Unit::PerSecond.format(2_500_000.0), "2.50M/s");
        assert_eq!(Unit::Nanos.format(85_200.0), "85.2 us");
        assert_eq!(Unit::Nanos.format(12_500_000.0), "12.50 ms");
        assert_eq!(Unit::Bytes.format(8.5 * 1024.0 * 1024.0), "8.5 MiB");
        assert_eq!(Unit::Bytes.format(3000.0), "2.9 KiB");
        assert_eq!(Unit::CpuMicros.format(1.234), "1.23 us");
        assert_eq!(Unit::CpuMillis.format(512.34), "512.3 ms");
        assert_eq!(Unit::Percent.format(85.4), "85%");
    }

    #[test]
    fn failing_collects_reasons() {
        let mut r = CaseResult::new("fanin", "relay");
        assert_eq!(r.verdict, Verdict::Pass);
        r.fail("lost 3");
        r.fail("duplicates 1");
        assert!(r.verdict.is_fail());
        assert_eq!(r.verdict.to_string(), "FAIL (lost 3; duplicates 1)");
        r.push("msgs/s", 10.0, Unit::PerSecond);
        assert_eq!(r.metric("msgs/s"), Some(10.0));
    }
}
