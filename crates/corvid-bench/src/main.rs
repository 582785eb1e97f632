//! The `corvid-bench` command line: `run`, `relay`, `compare`, `list`.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use corvid_bench::compare::{print_table, run_matrix};
use corvid_bench::launch::{Binaries, BrokerKind};
use corvid_bench::scenarios::{Case, Scenario, Settings, Target, TargetKind, TlsEndpoint, WsEndpoint, run_case};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status when a scenario failed (loss or duplicates at QoS 1/2, errors).
const EXIT_FAIL: u8 = 1;
/// Exit status when the server `run --launch` was asked to start did not start.
const EXIT_LAUNCH: u8 = 3;
/// Exit status after SIGINT or SIGTERM.
const EXIT_INTERRUPTED: u8 = 130;

/// Load generator and benchmark tool for MQTT brokers (loopback only).
#[derive(Debug, Parser)]
#[command(name = "corvid-bench", version)]
struct Cli {
    /// Worker threads of the tokio runtime.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios against a broker that is running (`--addr`, `--broker-pid`) or that this tool launches
    /// (`--launch`).
    Run(RunArgs),
    /// Serve the null relay: the baseline brokers are measured against.
    Relay {
        /// Where to listen (loopback only).
        #[arg(long, default_value = "127.0.0.1:1884")]
        bind: SocketAddr,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 6 * 3600)]
        max_seconds: u64,
    },
    /// Launch each server, run the same scenarios against each in alternation, print a table of medians.
    Compare(CompareArgs),
    /// List the scenarios.
    List,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios to run, or `all`.
    #[arg(default_value = "all", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// The broker's address (loopback only); ignored with `--launch`.
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: SocketAddr,
    /// The broker's pid, for CPU and memory measurement.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// What the target is (the relay has no retained messages or sessions).
    #[arg(long, value_enum, default_value = "broker")]
    kind: TargetKind,
    /// The broker's TLS listener (loopback only), for tls-handshake; ignored with `--launch`.
    #[arg(long)]
    tls_addr: Option<SocketAddr>,
    /// PEM file of the CA certificates to trust on `--tls-addr`.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name the server certificate of `--tls-addr` is checked against.
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
    /// The broker's WebSocket listener (loopback only), for ws-throughput; ignored with `--launch`.
    #[arg(long)]
    ws_addr: Option<SocketAddr>,
    /// The HTTP path of `--ws-addr`.
    #[arg(long, default_value = "/mqtt")]
    ws_path: String,
    /// Launch this server (a fresh one per case) instead of using `--addr`.
    #[arg(long, value_enum)]
    launch: Option<BrokerKind>,
    #[command(flatten)]
    binaries: Binaries,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Servers to compare, in the order they alternate; missing binaries are skipped.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "corvid,mosquitto,rumqttd,relay")]
    brokers: Vec<BrokerKind>,
    /// Rounds of alternation.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Scenarios to run, or `all`.
    #[arg(long, default_value = "all", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Also write the table to this Markdown file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    binaries: Binaries,
    #[command(flatten)]
    settings: Settings,
}

fn parse_scenarios(names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let mut out = Vec::new();
    for name in names {
        if name == "all" {
            out.extend(Scenario::ALL);
            continue;
        }
        match Scenario::from_str(name, true) {
            Ok(s) => out.push(s),
            Err(_) => bail!("unknown scenario {name:?} (try `corvid-bench list`)"),
        }
    }
    Ok(out)
}

fn cases(settings: &Settings, scenarios: &[Scenario]) -> Vec<Case> {
    scenarios.iter().flat_map(|&s| settings.cases(s)).collect()
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenarios = parse_scenarios(&args.scenarios)?;
    let cases = cases(&args.settings, &scenarios);
    if let Some(kind) = args.launch {
        let matrix = run_matrix(&[kind], &args.binaries, &cases, 1, &args.settings).await;
        if let Some((_, why)) = matrix.missing.first() {
            eprintln!("cannot launch {}: {why}", kind.name());
            return Ok(ExitCode::from(EXIT_LAUNCH));
        }
        if !matrix.launch_failures.is_empty() {
            eprintln!("{} failed to start (see above)", kind.name());
            return Ok(ExitCode::from(EXIT_LAUNCH));
        }
        return Ok(summary(matrix.results.iter()));
    }
    for addr in [Some(args.addr), args.tls_addr, args.ws_addr].into_iter().flatten() {
        if !addr.ip().is_loopback() {
            bail!("{addr} is not a loopback address: corvid-bench only loads this machine");
        }
    }
    let mut target = Target::tcp(format!("{}", args.addr), args.addr, args.broker_pid, args.kind);
    if let Some(addr) = args.tls_addr {
        let Some(ca) = &args.tls_ca else {
            bail!("--tls-addr needs --tls-ca (the PEM file of the CA to trust)");
        };
        let roots = corvid_bench::certs::read_pem_certs(ca)?;
        target.tls = Ok(TlsEndpoint { addr, roots, server_name: args.tls_server_name.clone() });
    }
    if let Some(addr) = args.ws_addr {
        target.ws = Ok(WsEndpoint { addr, path: args.ws_path.clone() });
    }
    let mut results = Vec::new();
    for case in &cases {
        let result = run_case(&target, &args.settings, case).await;
        result.print();
        results.push(result);
    }
    Ok(summary(results.iter()))
}

fn summary<'a>(results: impl Iterator<Item = &'a corvid_bench::report::CaseResult>) -> ExitCode {
    let (mut pass, mut fail, mut skipped) = (0, 0, 0);
    for r in results {
        match r.verdict {
            corvid_bench::report::Verdict::Pass => pass += 1,
            corvid_bench::report::Verdict::Fail(_) => fail += 1,
            corvid_bench::report::Verdict::Skipped(_) => skipped += 1,
        }
    }
    println!("{pass} passed, {fail} failed, {skipped} skipped");
    if fail > 0 { ExitCode::from(EXIT_FAIL) } else { ExitCode::SUCCESS }
}

async fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let scenarios = parse_scenarios(&args.scenarios)?;
    let cases = cases(&args.settings, &scenarios);
    let matrix = run_matrix(&args.brokers, &args.binaries, &cases, args.rounds, &args.settings).await;
    print_table(&matrix, args.markdown.as_ref())?;
    Ok(if matrix.any_failed() { ExitCode::from(EXIT_FAIL) } else { ExitCode::SUCCESS })
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Before any server is launched: they inherit the limit (idle-100k needs one descriptor per connection).
    corvid_bench::limits::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async move {
        // On SIGINT / SIGTERM the command's future is dropped, and with it every launched server (killed on drop).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = command(cli.command) => result,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(EXIT_INTERRUPTED)),
            _ = term.recv() => Ok(ExitCode::from(EXIT_INTERRUPTED)),
        }
    })
}

async fn command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Relay { bind, max_seconds } => {
            corvid_bench::relay::run(bind, Duration::from_secs(max_seconds)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => compare(args).await,
        Command::List => {
            for s in Scenario::ALL {
                let about = s.to_possible_value().and_then(|v| v.get_help().map(|h| h.to_string()));
                println!("{:<15} {}", s.name(), about.unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
