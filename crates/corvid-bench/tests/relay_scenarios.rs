//! End to end: every scenario at smoke size against the null relay served in-process, over loopback TCP.
//! Delivery is verified (loss, duplicates, errors); nothing here measures or asserts speed.

use clap::Parser;
use corvid_bench::relay::serve;
use corvid_bench::scenarios::{Scenario, Settings, Target, TargetKind, run_case};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

fn settings(args: &[&str]) -> Settings {
    let mut argv = vec!["test", "--size", "smoke", "--duration", "0.1", "--connections", "2"];
    argv.extend_from_slice(args);
    Cli::parse_from(argv).settings
}

async fn relay() -> (Target, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, shutdown.clone()));
    let target = Target::tcp("relay", addr, None, TargetKind::Relay);
    (target, shutdown)
}

async fn all_pass(settings: &Settings) {
    let (target, shutdown) = relay().await;
    for scenario in Scenario::ALL {
        for case in settings.cases(scenario) {
            let result = run_case(&target, settings, &case).await;
            assert!(!result.verdict.is_fail(), "{}: {}", case.label, result.verdict);
            // The relay keeps no retained messages or sessions and speaks plain TCP only.
            let skipped = matches!(
                scenario,
                Scenario::Retained | Scenario::Reconnect | Scenario::TlsHandshake | Scenario::WsThroughput
            );
            assert_eq!(result.verdict.is_skipped(), skipped, "{}: {}", case.label, result.verdict);
            // idle-100k sends no messages: it checks CONNACKs and PINGREQ round trips instead.
            let delivers = !skipped && scenario != Scenario::Idle100k;
            assert_eq!(result.delivery.is_some(), delivers, "{}", case.label);
            if let Some(d) = result.delivery {
                assert!(d.received > 0 && d.lost == 0 && d.duplicates == 0, "{}: {d:?}", case.label);
            }
        }
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_against_the_relay_mqtt_3_1_1() {
    all_pass(&settings(&["--inflights", "1,8"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_against_the_relay_mqtt_5_at_qos_1() {
    all_pass(&settings(&["--mqtt", "5", "--qos", "1", "--inflights", "4"])).await;
}

/// The fixed-rate scenarios, whose publishers the pacer thread sends, at QoS 2 (PUBREC / PUBREL / PUBCOMP on the
/// pacer's non-blocking socket, the last acknowledgements back on the runtime) and QoS 1 with an in-flight window
/// of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_scenarios_pass_at_qos_2_and_in_flight_1() {
    let (target, shutdown) = relay().await;
    for args in [&["--qos", "2"][..], &["--qos", "1", "--inflight", "1", "--rate", "5000"][..]] {
        let settings = settings(args);
        for scenario in [Scenario::Latency, Scenario::SlowConsumer] {
            for case in settings.cases(scenario) {
                let result = run_case(&target, &settings, &case).await;
                assert!(
                    !result.verdict.is_fail() && !result.verdict.is_skipped(),
                    "{} {args:?}: {}",
                    case.label,
                    result.verdict
                );
                let Some(d) = result.delivery else { panic!("{}: no delivery", case.label) };
                assert!(d.received > 0 && d.lost == 0 && d.duplicates == 0, "{} {args:?}: {d:?}", case.label);
            }
        }
    }
    shutdown.cancel();
}
