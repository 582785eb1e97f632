//! Replays the committed seed corpus (`tests/fuzz_corpus/`) through the fuzz targets' checks, and runs a bounded
//! mutational fuzzing loop over it: a short deterministic one on every `cargo test`, and a longer one on demand:
//!
//! ```text
//! CORVID_FUZZ_SECS=300 cargo test --release -p corvid-protocol --test fuzz_replay -- --ignored --nocapture
//! ```
//!
//! `CORVID_FUZZ_SEED` picks the random seed of the long run (default: the time).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::fuzz_check::{MAX_SIZES, VERSIONS, check_decode, check_topic, decode_all};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn replay_decode_seed_corpus() {
    let seeds = seeds("decode");
    assert!(seeds.len() >= 36, "{} seeds", seeds.len());
    for (name, data) in &seeds {
        check_decode(data);
        let results: Vec<_> = VERSIONS.iter().flat_map(|&v| MAX_SIZES.map(|max| decode_all(data, v, max))).collect();
        if name.starts_with("bad-") {
            // A malformed seed fails in at least one version (5.0-only rules do not apply to 3.x, where the same
            // bytes may be a payload).
            assert!(
                results.iter().any(|r| r.iter().any(Result::is_err)),
                "{name} decodes in every version: {results:?}"
            );
        } else {
            // A valid seed decodes, whole and without error, in at least one version.
            assert!(results.iter().any(|r| !r.is_empty() && r.iter().all(Result::is_ok)), "{name}: {results:?}");
        }
    }
}

#[test]
fn regression_capacity_doubling() {
    // Found by the mutational loop: a SUBACK, then 22 bytes of a 56-byte UNSUBSCRIBE under a 64-byte limit. The
    // decoder's `BytesMut::reserve` doubled the allocation past the limit; `check_decode` bounds the capacity.
    let data = std::fs::read(corpus_dir("decode").join("regression-capacity-doubling")).unwrap();
    check_decode(&data);
}

#[test]
fn replay_topic_seed_corpus() {
    let seeds = seeds("topic");
    assert!(seeds.len() >= 8);
    for (_, data) in &seeds {
        check_topic(data);
    }
}

/// xorshift64*: a small deterministic generator, enough for mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A variable byte integer.
fn varint(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return out;
        }
    }
}

/// Rewrites the remaining length to fit the bytes after the fixed header, so mutations of the body reach the
/// field decoders instead of stopping at the framing.
fn reframe(data: &[u8]) -> Vec<u8> {
    let Some(&first) = data.first() else {
        return Vec::new();
    };
    let header = corvid_protocol::decode_frame_length(data).ok().flatten().map_or(2.min(data.len()), |(h, _)| h);
    let body = &data[header.min(data.len())..];
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

const INTERESTING: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF, 0x2B, 0x23, 0x26];

fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                data.remove(rng.below(len));
            }
            4 if len > 1 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a);
                let chunk = data[a..=b].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, chunk);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())].1;
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => data.truncate(rng.below(len)),
            7 => {
                // Two packets back to back.
                data.extend_from_slice(&seeds[rng.below(seeds.len())].1);
            }
            _ => {}
        }
    }
    if rng.below(3) > 0 {
        data = reframe(&data);
    }
    data
}

struct Stats {
    inputs: u64,
    packets: u64,
}

fn fuzz(rng: &mut Rng, until: impl Fn(u64) -> bool) -> Stats {
    let decode_seeds = seeds("decode");
    let topic_seeds = seeds("topic");
    let mut stats = Stats { inputs: 0, packets: 0 };
    while !until(stats.inputs) {
        let data = mutate(rng, &decode_seeds);
        let result = std::panic::catch_unwind(|| check_decode(&data));
        match result {
            Ok(n) => stats.packets += n as u64,
            Err(_) => panic!("decode check failed on {data:02X?}"),
        }
        let topic = mutate(rng, &topic_seeds);
        if std::panic::catch_unwind(|| check_topic(&topic)).is_err() {
            panic!("topic check failed on {topic:02X?}");
        }
        stats.inputs += 1;
    }
    stats
}

#[test]
fn short_mutational_fuzz() {
    let mut rng = Rng(0x00C0_FFEE_D00D_F00D);
    let stats = fuzz(&mut rng, |n| n >= 3000);
    eprintln!("{} inputs, {} packets decoded", stats.inputs, stats.packets);
    // The mutations must reach the decoders, not only the framing.
    assert!(stats.packets > 1000, "{} packets decoded", stats.packets);
}

#[test]
#[ignore = "long: run with CORVID_FUZZ_SECS=N -- --ignored"]
fn mutational_fuzz_for_a_while() {
    let secs: u64 = std::env::var("CORVID_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = std::env::var("CORVID_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let start = Instant::now();
    let deadline = Duration::from_secs(secs);
    let mut rng = Rng(seed);
    let stats = fuzz(&mut rng, |_| start.elapsed() >= deadline);
    eprintln!(
        "mutational fuzz: seed {seed}, {} inputs (each under 3 versions x 2 size limits, split at every \
         position), {} packets decoded and round-tripped, {:.0} s, no failure",
        stats.inputs,
        stats.packets,
        start.elapsed().as_secs_f64()
    );
}
