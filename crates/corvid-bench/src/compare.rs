//! Comparing servers: the same cases against each, in alternation, several rounds, then a table of medians.
//!
//! For every case, each round runs the servers in turn (A B C D, A B C D, …), each freshly launched on its own
//! loopback port and killed afterwards, so no run inherits another's state and slow drifts of the machine fall on
//! every server alike. The table shows each metric's median over the rounds, its ratio to Mosquitto, and the
//! throughput as a percentage of the null relay's.

use crate::launch::{BrokerKind, LaunchConfig, launch};
use crate::report::{CaseResult, Verdict};
use crate::scenarios::{Case, Settings, run_case};
use std::fmt::Write as _;
use std::path::PathBuf;

/// The outcome of running cases against servers.
#[derive(Debug, Default)]
pub struct Matrix {
    /// Every result, in the order run.
    pub results: Vec<CaseResult>,
    /// Servers that could not be started, and why.
    pub launch_failures: Vec<(BrokerKind, String)>,
    /// Servers skipped because their binary is missing, and why.
    pub missing: Vec<(BrokerKind, String)>,
}

impl Matrix {
    /// Whether any result failed.
    pub fn any_failed(&self) -> bool {
        self.results.iter().any(|r| r.verdict.is_fail())
    }
}

/// Runs every case against every server in `kinds`, `rounds` times, alternating servers within each round.
pub async fn run_matrix(
    kinds: &[BrokerKind],
    binaries: &crate::launch::Binaries,
    cases: &[Case],
    rounds: usize,
    settings: &Settings,
) -> Matrix {
    let mut matrix = Matrix::default();
    let mut available = Vec::new();
    for &kind in kinds {
        match binaries.find(kind) {
            Ok(path) => available.push((kind, path)),
            Err(why) => {
                println!("skipping {}: {why}", kind.name());
                matrix.missing.push((kind, why));
            }
        }
    }
    for case in cases {
        for round in 1..=rounds.max(1) {
            for (kind, path) in &available {
                if matrix.launch_failures.iter().any(|(k, _)| k == kind) {
                    continue;
                }
                let config = LaunchConfig {
                    inflight: case.inflight,
                    version: settings.version(),
                    relay_threads: binaries.relay_threads,
                    corvid_storage: binaries.corvid_storage,
                    mosquitto_persistence: binaries.mosquitto_persistence,
                    tls: case.scenario.needs_tls(),
                    ws: case.scenario.needs_ws(),
                };
                let broker = match launch(*kind, path, config).await {
                    Ok(b) => b,
                    Err(e) => {
                        println!("{} failed to start: {e:#}", kind.name());
                        matrix.launch_failures.push((*kind, format!("{e:#}")));
                        continue;
                    }
                };
                let result = run_case(&broker.target(), settings, case).await;
                if rounds > 1 {
                    print!("round {round}/{rounds} ");
                }
                result.print();
                drop(broker);
                matrix.results.push(result);
            }
        }
    }
    matrix
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 })
}

/// The Markdown table of medians: one row per case and metric, one column per server, ratios against Mosquitto
/// and throughput as a percentage of the relay's.
pub fn table(matrix: &Matrix) -> String {
    let mut targets: Vec<&str> = Vec::new();
    let mut cases: Vec<&str> = Vec::new();
    for r in &matrix.results {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "| case | metric | {} |", targets.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(targets.len()));
    for case in cases {
        let of = |target: &str| -> Vec<&CaseResult> {
            matrix.results.iter().filter(|r| r.case == case && r.target == target).collect()
        };
        // Verdicts.
        let verdicts: Vec<String> = targets
            .iter()
            .map(|t| {
                let runs = of(t);
                let failed = runs.iter().filter(|r| r.verdict.is_fail()).count();
                match runs.first().map(|r| &r.verdict) {
                    None => "-".to_owned(),
                    Some(Verdict::Skipped(why)) => format!("n/a ({why})"),
                    _ if failed > 0 => format!("**FAIL** {failed}/{}", runs.len()),
                    _ => format!("pass {}/{}", runs.len(), runs.len()),
                }
            })
            .collect();
        let _ = writeln!(out, "| {case} | verdict | {} |", verdicts.join(" | "));
        // Metric names in order of first appearance.
        let mut metrics = Vec::new();
        for r in matrix.results.iter().filter(|r| r.case == case) {
            for m in &r.metrics {
                if !metrics.iter().any(|(n, _)| *n == m.name) {
                    metrics.push((m.name, m.unit));
                }
            }
        }
        for (name, unit) in metrics {
            let medians: Vec<Option<f64>> = targets
                .iter()
                .map(|t| {
                    let mut values: Vec<f64> = of(t).iter().filter_map(|r| r.metric(name)).collect();
                    median(&mut values)
                })
                .collect();
            // The base of the ratios: Mosquitto, with or without persistence.
            let base_at = targets.iter().position(|t| t.starts_with(BrokerKind::Mosquitto.name()));
            let base = base_at.and_then(|i| medians[i]);
            let cells: Vec<String> = targets
                .iter()
                .enumerate()
                .zip(&medians)
                .map(|((i, _), m)| match (m, base) {
                    (None, _) => "-".to_owned(),
                    (Some(v), Some(b)) if Some(i) != base_at && b > 0.0 => {
                        format!("{} ({:.2}x)", unit.format(*v), v / b)
                    }
                    (Some(v), _) => unit.format(*v),
                })
                .collect();
            let _ = writeln!(out, "| {case} | {name} | {} |", cells.join(" | "));
            let relay = targets.iter().position(|t| *t == BrokerKind::Relay.name()).and_then(|i| medians[i]);
            if let (true, Some(relay)) = (name == "msgs/s", relay) {
                let cells: Vec<String> = medians
                    .iter()
                    .map(|m| match m {
                        Some(v) if relay > 0.0 => format!("{:.0}%", 100.0 * v / relay),
                        _ => "-".to_owned(),
                    })
                    .collect();
                let _ = writeln!(out, "| {case} | % of relay | {} |", cells.join(" | "));
            }
        }
    }
    out
}

/// Prints the table (and writes it to `markdown`, if given), with the servers that were skipped.
pub fn print_table(matrix: &Matrix, markdown: Option<&PathBuf>) -> anyhow::Result<()> {
    let table = table(matrix);
    println!();
    println!("{table}");
    for (kind, why) in &matrix.missing {
        println!("skipped {}: {why}", kind.name());
    }
    for (kind, why) in &matrix.launch_failures {
        let first = why.lines().next().unwrap_or_default();
        println!("failed to start {}: {first}", kind.name());
    }
    if let Some(path) = markdown {
        std::fs::write(path, &table)?;
        println!("table written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Unit;

    fn result(case: &str, target: &str, rate: f64) -> CaseResult {
        let mut r = CaseResult::new(case, target);
        r.push("msgs/s", rate, Unit::PerSecond);
        r
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn table_has_ratios_and_relay_share() {
        let mut matrix = Matrix::default();
        for (m, r) in [(100_000.0, 400_000.0), (110_000.0, 420_000.0), (90_000.0, 380_000.0)] {
            matrix.results.push(result("fanin", "mosquitto", m));
            matrix.results.push(result("fanin", "relay", r));
        }
        let mut failed = result("fanin", "rumqttd", 200_000.0);
        failed.fail("lost 1");
        matrix.results.push(failed);
        let t = table(&matrix);
        assert!(t.contains("| case | metric | mosquitto | relay | rumqttd |"), "{t}");
        assert!(t.contains("| fanin | msgs/s | 100.0k/s | 400.0k/s (4.00x) | 200.0k/s (2.00x) |"), "{t}");
        assert!(t.contains("| fanin | % of relay | 25% | 100% | 50% |"), "{t}");
        assert!(t.contains("**FAIL** 1/1"), "{t}");
    }
}
