//! The checks the fuzz targets run on arbitrary bytes, shared with the seed-corpus replay and the bounded
//! mutational loop in `tests/fuzz_replay.rs`. The cargo-fuzz targets under `/fuzz` include this file with
//! `#[path]`, so the same code runs under libFuzzer and under `cargo test`.
//!
//! Every check panics on failure: that is how a fuzzer learns of it.

use bytes::BytesMut;
use corvid_protocol::topic::matches;
use corvid_protocol::{
    DecodeError, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName, decode, encode, encoded_len,
};

/// Every protocol version.
pub(crate) const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// The packet size limits the decoder is run with: a small one, so that the too-large path is exercised, and a
/// generous one.
pub(crate) const MAX_SIZES: [u32; 2] = [64, 1 << 20];

/// The largest possible packet: a 4-byte remaining length of 268,435,455 after the first byte.
const LARGEST: u32 = 268_435_455 + 5;

/// Decodes `buf` until it needs more bytes or fails, appending each result to `out`. Returns whether it failed.
/// Checks that no call grows the buffer beyond the packet size limit plus the input's length.
pub(crate) fn drain(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max: u32,
    input_len: usize,
    out: &mut Vec<Result<Packet, DecodeError>>,
) -> bool {
    loop {
        let capacity_before = buf.capacity();
        let result = decode(buf, version, max);
        let bound = capacity_before.max(max as usize + input_len);
        assert!(
            buf.capacity() <= bound,
            "{version}: capacity {} after decode, bound {bound} (max {max}, input {input_len})",
            buf.capacity()
        );
        match result {
            Ok(Some(packet)) => out.push(Ok(packet)),
            Ok(None) => return false,
            Err(e) => {
                out.push(Err(e));
                return true;
            }
        }
    }
}

/// Decodes the whole of `data` as a stream of packets.
pub(crate) fn decode_all(data: &[u8], version: ProtocolVersion, max: u32) -> Vec<Result<Packet, DecodeError>> {
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    drain(&mut buf, version, max, data.len(), &mut out);
    out
}

/// Decodes `data` fed in two pieces, split at `at`.
pub(crate) fn decode_split(
    data: &[u8],
    at: usize,
    version: ProtocolVersion,
    max: u32,
) -> Vec<Result<Packet, DecodeError>> {
    let mut buf = BytesMut::from(&data[..at]);
    let mut out = Vec::new();
    if !drain(&mut buf, version, max, data.len(), &mut out) {
        buf.extend_from_slice(&data[at..]);
        drain(&mut buf, version, max, data.len(), &mut out);
    }
    out
}

/// A decoded packet is valid, so it encodes; `encoded_len` is what `encode` writes; and it decodes back to itself
/// (encoding is canonical: the second encoding is the first).
pub(crate) fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf)
        .unwrap_or_else(|e| panic!("{version}: decoded packet does not encode: {e}: {packet:?}"));
    assert_eq!(encoded_len(packet, version), Ok(buf.len()), "{version}: encoded_len of {packet:?}");
    let bytes = buf.clone().freeze();
    let again = decode(&mut buf, version, LARGEST)
        .unwrap_or_else(|e| panic!("{version}: re-encoded packet does not decode: {e}: {packet:?}"));
    assert_eq!(again.as_ref(), Some(packet), "{version}: {bytes:02X?}");
    assert!(buf.is_empty(), "{version}: bytes left after re-decoding");
    let mut second = BytesMut::new();
    encode(packet, version, &mut second).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.freeze(), bytes, "{version}: encoding is not stable");
}

/// Positions to split `data` at: all of them for short inputs, a spread of them for long ones.
fn split_points(len: usize) -> Vec<usize> {
    if len <= 256 {
        (0..=len).collect()
    } else {
        let step = len / 32;
        (0..=len).step_by(step.max(1)).chain([len - 1, len]).collect()
    }
}

/// The decode target: decodes `data` under every version and size limit, checks that feeding it in two pieces
/// gives the same results, and round-trips every packet decoded. Returns how many packets decoded.
pub(crate) fn check_decode(data: &[u8]) -> usize {
    let mut decoded = 0;
    for version in VERSIONS {
        for max in MAX_SIZES {
            let whole = decode_all(data, version, max);
            for at in split_points(data.len()) {
                let split = decode_split(data, at, version, max);
                assert_eq!(split, whole, "{version} max {max}: split at {at}");
            }
            for result in &whole {
                match result {
                    Ok(packet) => {
                        decoded += 1;
                        check_round_trip(packet, version);
                    }
                    Err(e) => {
                        // Every error maps to a failure reason code.
                        assert!(e.reason_code().is_error(), "{e:?}");
                    }
                }
            }
        }
    }
    decoded
}

/// Topic matching as the specification describes it (MQTT 5.0 section 4.7), written independently of the crate's:
/// level lists compared recursively.
pub(crate) fn reference_matches(filter: &str, name: &str) -> bool {
    fn levels(f: &[&str], n: &[&str]) -> bool {
        match (f.split_first(), n.split_first()) {
            // '#' matches its parent level and any number of child levels.
            (Some((&"#", _)), _) => true,
            (Some((&"+", f_rest)), Some((_, n_rest))) => levels(f_rest, n_rest),
            (Some((fl, f_rest)), Some((nl, n_rest))) => fl == nl && levels(f_rest, n_rest),
            (None, None) => true,
            _ => false,
        }
    }
    if name.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    levels(&f, &n)
}

/// The topic target: `data` is a filter and a name separated by a 0xFF byte (never part of UTF-8). Checks that
/// validation never panics and agrees with `new`, that matching agrees with the reference, that a valid filter or
/// name survives a SUBSCRIBE or PUBLISH round trip, and the shared-subscription rules.
pub(crate) fn check_topic(data: &[u8]) {
    let (filter_bytes, name_bytes) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (Ok(filter), Ok(name)) = (std::str::from_utf8(filter_bytes), std::str::from_utf8(name_bytes)) else {
        return;
    };
    let filter_valid = TopicFilter::validate(filter);
    let name_valid = TopicName::validate(name);
    assert_eq!(
        TopicFilter::new(filter.to_string()).map(|f| f.as_str().to_string()),
        filter_valid.map(|()| filter.to_string())
    );
    assert_eq!(TopicName::new(name.to_string()).map(|n| n.as_str().to_string()), name_valid.map(|()| name.to_string()));
    // A valid name has no wildcard; every valid filter without wildcards or "$share/" prefix is a valid name.
    if name_valid.is_ok() {
        assert!(!name.contains(['+', '#']));
    }
    if let Ok(f) = TopicFilter::new(filter.to_string()) {
        if !f.has_wildcard() && f.shared().is_none() {
            assert!(TopicName::validate(filter).is_ok(), "{filter:?}");
        }
        // Round trip in a SUBSCRIBE, in every version.
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            filters: vec![(f.clone(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            properties: Default::default(),
        });
        for version in VERSIONS {
            check_round_trip(&subscribe, version);
        }
        // Shared subscriptions: "$share/g/" + filter is valid exactly when filter is, and matches the same.
        if f.shared().is_none() && filter.len() + 9 <= 65_535 {
            let shared =
                TopicFilter::new(format!("$share/g/{filter}")).unwrap_or_else(|e| panic!("$share/g/{filter:?}: {e}"));
            let parts = shared.shared().unwrap();
            assert_eq!((parts.group, parts.filter), ("g", filter));
            if let Ok(n) = TopicName::new(name.to_string()) {
                assert_eq!(shared.matches(&n), f.matches(&n));
            }
        }
    }
    if let Ok(n) = TopicName::new(name.to_string()) {
        let publish = Packet::Publish(Publish::new(n.clone(), "x", QoS::AtMostOnce));
        for version in VERSIONS {
            check_round_trip(&publish, version);
        }
        // A name is matched by itself as a filter, when it is one, and by '#' unless it starts with '$'.
        if let Ok(f) = TopicFilter::new(name.to_string()) {
            if f.shared().is_none() {
                assert!(f.matches(&n), "{name:?}");
            }
        }
        assert_eq!(matches("#", name), !name.starts_with('$'));
        if let Ok(f) = TopicFilter::new(filter.to_string()) {
            let inner = f.shared().map_or(filter, |s| s.filter);
            assert_eq!(f.matches(&n), reference_matches(inner, name), "{filter:?} {name:?}");
        }
    }
}
