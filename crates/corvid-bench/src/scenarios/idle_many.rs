//! `idle-100k`: many idle MQTT connections (default 100,000; smoke 2,000), CONNECT only, held open.
//!
//! - Source addresses: each connection binds `127.0.0.K:0` before it connects, `--per-source` connections per
//!   address (default 10,000) over 127.0.0.2 ..= 127.0.0.254, continuing where the previous run stopped, so
//!   neither the ephemeral port range (about 28,000 ports per source address) nor the previous runs' TIME_WAIT
//!   sockets run out of ports.
//! - Open files: the generator raises its `RLIMIT_NOFILE` before it launches any server (see [`crate::limits`]);
//!   the case checks its own limit and the broker's (`/proc/PID/limits`) first. When the count was not given and
//!   the limits allow fewer, it runs with as many as they allow and says so in a note; a count given with
//!   `--connections` that the limits do not allow fails at once.
//! - Pace: at most `--connect-rate` new connections per second (default 20,000) and 64 handshakes in flight
//!   (below Mosquitto's listen backlog of 100, so no SYN is dropped and retried a second later).
//! - Each connection sends CONNECT (Keep Alive 900 s) and must get a successful CONNACK within 15 s. The
//!   connection keeps only its socket: no buffers, no task.
//!
//! After `--hold` seconds (default 2; smoke 0.2) it verifies: every connection is still open (a non-blocking read
//! finds neither end of stream nor unexpected bytes), and a sample of up to 1,000 connections, spread over the
//! whole set, each get a PINGRESP for a PINGREQ. Any failed connection, closed connection or missing PINGRESP
//! fails the case. Reported: accept rate (connections / time to connect them all), time to connect all,
//! CONNECT-to-CONNACK latency p50 / p99, the broker's resident memory per connection (`VmRSS` after the hold minus
//! before the first connection, over the count), its peak RSS, and its CPU time per connection while connecting.

use super::{Case, Settings, Target};
use crate::client::{KEEP_ALIVE, SETUP_TIMEOUT};
use crate::histogram::Histogram;
use crate::limits::{nofile, nofile_of};
use crate::measure::{CpuMark, PeakRss, Pid};
use crate::report::{CaseResult, Unit};
use anyhow::{Context, anyhow, bail, ensure};
use bytes::BytesMut;
use corvid_protocol::{Connect, Packet, ProtocolVersion, decode, encode};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Connections that get a PINGREQ at the end.
const PING_SAMPLE: usize = 1000;
/// Descriptors kept free on both sides (listeners, logs, the runtime).
const FD_MARGIN: u64 = 64;
/// Source addresses 127.0.0.2 ..= 127.0.0.254.
const SOURCES: u32 = 253;

/// The next source address to use (an index into 127.0.0.2 ..= 127.0.0.254).
static NEXT_SOURCE: AtomicU32 = AtomicU32::new(0);

/// `count` source addresses, continuing after the ones the previous run used.
fn source_addrs(count: usize) -> Vec<Ipv4Addr> {
    let count = count.clamp(1, SOURCES as usize) as u32;
    let first = NEXT_SOURCE.fetch_add(count, Ordering::Relaxed);
    (0..count).map(|i| Ipv4Addr::new(127, 0, 0, (2 + (first + i) % SOURCES) as u8)).collect()
}

/// Opens one connection from `source`: TCP, CONNECT, a successful CONNACK. Returns the socket and the time from
/// the TCP connect to the CONNACK.
async fn open(
    addr: SocketAddr,
    source: Ipv4Addr,
    version: ProtocolVersion,
    client_id: String,
) -> anyhow::Result<(TcpStream, Duration)> {
    let mut connect = Connect::new(version, client_id.as_str());
    connect.keep_alive = KEEP_ALIVE;
    let mut buf = BytesMut::with_capacity(128);
    encode(&Packet::Connect(Box::new(connect)), version, &mut buf)?;
    let began = Instant::now();
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("binding {source}:0"))?;
    let mut stream = socket.connect(addr).await.with_context(|| format!("connecting {source} to {addr}"))?;
    stream.write_all(&buf).await.context("sending CONNECT")?;
    buf.clear();
    loop {
        if let Some(packet) = decode(&mut buf, version, 64 * 1024).context("decoding CONNACK")? {
            match packet {
                Packet::ConnAck(ack) => {
                    ensure!(!ack.reason_code.is_error(), "CONNACK refused: {}", ack.reason_code.description());
                    return Ok((stream, began.elapsed()));
                }
                other => bail!("expected CONNACK, got {:?}", other.packet_type()),
            }
        }
        if stream.read_buf(&mut buf).await.context("reading CONNACK")? == 0 {
            bail!("the broker closed the connection before CONNACK");
        }
    }
}

/// The connections made so far, and the failures.
#[derive(Debug, Default)]
struct Tally {
    streams: Vec<TcpStream>,
    latency: Histogram,
    errors: Vec<String>,
    failed: usize,
}

impl Tally {
    fn reap(&mut self, joined: Result<anyhow::Result<(TcpStream, Duration)>, tokio::task::JoinError>) {
        let error = match joined {
            Ok(Ok((stream, took))) => {
                self.latency.record(took.as_nanos() as u64);
                self.streams.push(stream);
                return;
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => format!("connect task: {e}"),
        };
        self.failed += 1;
        if self.errors.len() < 5 {
            self.errors.push(error);
        }
    }
}

/// Runs the `idle-100k` case.
pub(super) async fn run(target: &Target, settings: &Settings, case: &Case, run: &str) -> anyhow::Result<CaseResult> {
    let mut notes = Vec::new();
    let mut n = settings.pick(settings.connections, 100_000, 2000).max(1);
    let (own_limit, _) = nofile();
    let broker_limit = target.pid.and_then(nofile_of).unwrap_or(u64::MAX);
    let allowed = usize::try_from(own_limit.min(broker_limit).saturating_sub(FD_MARGIN)).unwrap_or(usize::MAX);
    if n > allowed {
        let why = format!(
            "open-file limits allow about {allowed} connections (RLIMIT_NOFILE: generator {own_limit}, broker {}; \
             raising the hard limit needs CAP_SYS_RESOURCE or `ulimit -Hn` before the run)",
            if broker_limit == u64::MAX { "unknown".to_owned() } else { broker_limit.to_string() }
        );
        ensure!(settings.connections.is_none(), "{n} connections asked for, but the {why}");
        notes.push(format!("ran {allowed} connections instead of {n}: the {why}"));
        n = allowed;
    }
    ensure!(n > 0, "no connection allowed by the open-file limits");
    let rate = settings.connect_rate.max(1.0);
    let per_source = settings.per_source.max(1);
    let sources = source_addrs(n.div_ceil(per_source));
    ensure!(
        sources.len() * per_source >= n,
        "{n} connections need more than {SOURCES} source addresses at {per_source} each (--per-source)"
    );
    let hold = Duration::from_secs_f64(settings.pick(settings.hold, 2.0, 0.2).max(0.0));
    let broker = target.pid.map(Pid::Other);
    let peak = broker.map(PeakRss::start);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = broker.and_then(|p| p.rss_bytes().ok());
    let cpu = broker.and_then(CpuMark::start);

    // Connect, at most `rate` per second and CONNECT_CONCURRENCY at once; stop launching at the first failure.
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let mut set = JoinSet::new();
    let mut tally = Tally { streams: Vec::with_capacity(n), ..Tally::default() };
    let started = Instant::now();
    for i in 0..n {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = Arc::clone(&permits).acquire_owned().await?;
        while let Some(joined) = set.try_join_next() {
            tally.reap(joined);
        }
        if tally.failed > 0 {
            break;
        }
        let (addr, source, version) = (target.addr, sources[i / per_source], settings.version());
        let client_id = format!("{run}-h{i}");
        set.spawn(async move {
            let _permit = permit;
            tokio::time::timeout(SETUP_TIMEOUT, open(addr, source, version, client_id))
                .await
                .map_err(|_| anyhow!("no CONNACK within {SETUP_TIMEOUT:?}"))?
        });
    }
    while let Some(joined) = set.join_next().await {
        tally.reap(joined);
    }
    let Tally { mut streams, latency, errors, failed } = tally;
    let connect_time = started.elapsed();
    let cpu = cpu.and_then(|m| m.elapsed());
    let connected = streams.len();

    tokio::time::sleep(hold).await;
    let rss_after = broker.and_then(|p| p.rss_bytes().ok());

    // Every connection still open, nothing unexpected on any.
    let (mut closed, mut unexpected) = (0usize, 0usize);
    let mut probe = [0u8; 16];
    for stream in &streams {
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) | Err(_) => closed += 1,
            Ok(_) => unexpected += 1,
        }
    }
    // PINGREQ round trips on a sample spread over the whole set.
    let step = connected.div_ceil(PING_SAMPLE).max(1);
    let sample: Vec<usize> = (0..connected).step_by(step).collect();
    let ping_deadline = Instant::now() + SETUP_TIMEOUT;
    let mut pongs = 0usize;
    for &i in &sample {
        if streams[i].write_all(&[0xC0, 0x00]).await.is_err() {
            continue;
        }
    }
    for &i in &sample {
        let mut answer = [0u8; 2];
        let left = ping_deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(_)) = tokio::time::timeout(left, streams[i].read_exact(&mut answer)).await {
            if answer == [0xD0, 0x00] {
                pongs += 1;
            }
        }
    }
    // DISCONNECT, then close every socket.
    for stream in &streams {
        let _ = stream.try_write(&[0xE0, 0x00]);
    }
    drop(streams);

    let mut result = CaseResult::new(&case.label, &target.name);
    result.push("conn/s", connected as f64 / connect_time.as_secs_f64().max(1e-9), Unit::PerSecond);
    result.push("connect all", connect_time.as_secs_f64(), Unit::Seconds);
    if latency.count() > 0 {
        result.push("p50", latency.quantile(0.50) as f64, Unit::Nanos);
        result.push("p99", latency.quantile(0.99) as f64, Unit::Nanos);
    }
    if let (Some(before), Some(after), true) = (rss_before, rss_after, connected > 0) {
        result.push("bytes/conn", after.saturating_sub(before) as f64 / connected as f64, Unit::Bytes);
    }
    if let (Some(cpu), true) = (cpu, connected > 0) {
        result.push("broker CPU/conn", cpu * 1e6 / connected as f64, Unit::CpuMicros);
    }
    if let Some(peak) = peak {
        if let Some(rss) = peak.finish().await {
            result.push("peak RSS", rss as f64, Unit::Bytes);
        }
    }
    result.push("connections", connected as f64, Unit::Count);
    if failed > 0 {
        result.fail(format!("{failed} connections failed (stopped at {connected} of {n}): {}", errors.join("; ")));
    }
    if closed > 0 {
        result.fail(format!("{closed} of {connected} connections were closed by the broker during the hold"));
    }
    if unexpected > 0 {
        result.fail(format!("{unexpected} idle connections received unexpected bytes"));
    }
    if pongs < sample.len() {
        result.fail(format!("{} of {} sampled connections got no PINGRESP", sample.len() - pongs, sample.len()));
    }
    notes.push(format!(
        "{connected} connections from {} source addresses, PINGREQ round trips on {pongs} of them",
        sources.len()
    ));
    result.notes = notes;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_rotate_over_127_0_0_2_to_254() {
        let a = source_addrs(3);
        assert_eq!(a.len(), 3);
        let b = source_addrs(300);
        assert_eq!(b.len(), SOURCES as usize);
        for ip in a.iter().chain(&b) {
            let o = ip.octets();
            assert!(o[0] == 127 && o[1] == 0 && o[2] == 0 && (2..=254).contains(&o[3]), "{ip}");
        }
        // A later run starts after the earlier ones.
        assert_ne!(source_addrs(1)[0], a[0]);
    }
}
