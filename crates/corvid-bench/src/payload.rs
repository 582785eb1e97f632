//! The benchmark payload and pre-encoded PUBLISH templates.
//!
//! Every message the load generator sends starts with a [`Stamp`]: the publisher's index (u32), its sequence
//! number (u64) and the send time in nanoseconds on the process clock (u64), big endian, then padding up to the
//! payload size. Subscribers read the stamp back to count deliveries per publisher, detect loss, duplicates and
//! reordering, and measure latency.
//!
//! A [`PublishTemplate`] is one PUBLISH encoded once with `corvid_protocol::encode`; sending a message copies the
//! template into the connection's write buffer and patches the packet identifier and the stamp in place, so the
//! hot path neither encodes nor allocates.

use anyhow::{Context, bail, ensure};
use bytes::BytesMut;
use corvid_protocol::{Packet, PacketId, ProtocolVersion, Publish, QoS, TopicName, decode_frame_length, encode};
use std::sync::OnceLock;
use std::time::Instant;

/// Bytes of the stamp every benchmark payload starts with.
pub const STAMP_LEN: usize = 20;

/// The default payload size in bytes.
pub const DEFAULT_PAYLOAD: usize = 64;

/// The byte the padding after the stamp is filled with.
const PADDING: u8 = b'.';

/// The header of a benchmark payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The index of the publisher within its scenario.
    pub publisher: u32,
    /// The publisher's sequence number, from 0.
    pub seq: u64,
    /// When the message was sent, in nanoseconds on [`now_ns`]'s clock.
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp into the first [`STAMP_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.publisher.to_be_bytes());
        out[4..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Reads the stamp at the start of `payload`, `None` when it is too short to hold one.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let head: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        let mut publisher = [0u8; 4];
        let mut seq = [0u8; 8];
        let mut sent = [0u8; 8];
        publisher.copy_from_slice(&head[..4]);
        seq.copy_from_slice(&head[4..12]);
        sent.copy_from_slice(&head[12..20]);
        Some(Self {
            publisher: u32::from_be_bytes(publisher),
            seq: u64::from_be_bytes(seq),
            sent_ns: u64::from_be_bytes(sent),
        })
    }
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's benchmark epoch: the monotonic clock publishers stamp and subscribers read.
pub fn now_ns() -> u64 {
    instant_ns(Instant::now())
}

/// The time `t` on [`now_ns`]'s clock (0 for instants before the epoch).
pub fn instant_ns(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// One PUBLISH encoded once, to be copied and patched for every message.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    frame: Vec<u8>,
    packet_id_at: Option<usize>,
    stamp_at: usize,
}

impl PublishTemplate {
    /// Encodes a PUBLISH of a `payload_len`-byte payload to `topic`.
    ///
    /// `payload_len` must hold at least the [`STAMP_LEN`]-byte stamp.
    pub fn new(
        topic: &str,
        qos: QoS,
        retain: bool,
        payload_len: usize,
        version: ProtocolVersion,
    ) -> anyhow::Result<Self> {
        ensure!(payload_len >= STAMP_LEN, "payload of {payload_len} bytes cannot hold the {STAMP_LEN}-byte stamp");
        let topic_name = TopicName::new(topic).with_context(|| format!("topic {topic:?}"))?;
        let mut publish = Publish::new(topic_name, vec![PADDING; payload_len], qos);
        publish.retain = retain;
        if qos != QoS::AtMostOnce {
            publish.packet_id = PacketId::new(1);
        }
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(publish), version, &mut buf).context("encoding PUBLISH")?;
        let Some((header_len, _)) = decode_frame_length(&buf)? else {
            bail!("encoded PUBLISH has no complete fixed header");
        };
        let packet_id_at = (qos != QoS::AtMostOnce).then_some(header_len + 2 + topic.len());
        if let Some(at) = packet_id_at {
            ensure!(buf.get(at..at + 2) == Some(&[0, 1][..]), "packet identifier not where expected");
        }
        Ok(Self { stamp_at: buf.len() - payload_len, frame: buf.to_vec(), packet_id_at })
    }

    /// The encoded size of every message from this template.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the template is empty (never: a PUBLISH has a fixed header).
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Appends one message to `out`: the template with `packet_id` (ignored at QoS 0) and `stamp` patched in.
    pub fn append(&self, out: &mut BytesMut, packet_id: u16, stamp: Stamp) {
        let start = out.len();
        out.extend_from_slice(&self.frame);
        let frame = &mut out[start..];
        if let Some(at) = self.packet_id_at {
            frame[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        stamp.write(&mut frame[self.stamp_at..]);
    }
}

/// Encodes an empty retained PUBLISH at QoS 0, which clears the retained message of `topic`.
pub fn clear_retained(topic: &str, version: ProtocolVersion, out: &mut BytesMut) -> anyhow::Result<()> {
    let mut publish = Publish::new(TopicName::new(topic)?, Vec::new(), QoS::AtMostOnce);
    publish.retain = true;
    encode(&Packet::Publish(publish), version, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid_protocol::decode;

    #[test]
    fn stamp_round_trips() {
        let stamp = Stamp { publisher: 7, seq: u64::MAX - 3, sent_ns: 123_456_789 };
        let mut buf = [0u8; 32];
        stamp.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(Stamp::read(&buf[..19]), None);
    }

    #[test]
    fn templates_decode_with_patched_fields() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let template = PublishTemplate::new("a/b/c", qos, true, 64, version).unwrap();
                let mut buf = BytesMut::new();
                let stamp = Stamp { publisher: 3, seq: 42, sent_ns: 99 };
                template.append(&mut buf, 0xBEEF, stamp);
                template.append(&mut buf, 2, Stamp { seq: 43, ..stamp });
                assert_eq!(buf.len(), 2 * template.len());
                let Some(Packet::Publish(first)) = decode(&mut buf, version, 1 << 20).unwrap() else {
                    panic!("not a PUBLISH");
                };
                assert_eq!(first.topic.as_str(), "a/b/c");
                assert_eq!(first.qos, qos);
                assert!(first.retain);
                assert_eq!(first.payload.len(), 64);
                assert_eq!(Stamp::read(&first.payload), Some(stamp));
                if qos == QoS::AtMostOnce {
                    assert_eq!(first.packet_id, None);
                } else {
                    assert_eq!(first.packet_id.map(PacketId::get), Some(0xBEEF));
                }
                let Some(Packet::Publish(second)) = decode(&mut buf, version, 1 << 20).unwrap() else {
                    panic!("not a PUBLISH");
                };
                assert_eq!(Stamp::read(&second.payload).map(|s| s.seq), Some(43));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn payload_must_hold_the_stamp() {
        assert!(PublishTemplate::new("t", QoS::AtMostOnce, false, 19, ProtocolVersion::V5).is_err());
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
    }
}
