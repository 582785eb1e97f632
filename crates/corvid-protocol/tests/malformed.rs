//! A corpus of malformed packets, written by hand: bytes, the connection's protocol version, the exact
//! `DecodeError` and the reason code it maps to. Every entry is decoded whole and fed in two pieces split at every
//! position; both must give that error (after `Ok(None)` for incomplete prefixes).

mod support;

use bytes::BytesMut;
use corvid_protocol::*;
use support::hex;

use DecodeError as E;
use ReasonCode as R;
use TopicError as T;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The maximum packet size every case is decoded with.
const MAX: u32 = 1024;

const MALFORMED: R = R::MalformedPacket;
const PROTOCOL: R = R::ProtocolError;

struct Case {
    what: &'static str,
    hex: &'static str,
    version: ProtocolVersion,
    error: DecodeError,
    reason: ReasonCode,
}

fn case(
    what: &'static str,
    hex: &'static str,
    version: ProtocolVersion,
    error: DecodeError,
    reason: ReasonCode,
) -> Case {
    Case { what, hex, version, error, reason }
}

fn flags(packet_type: PacketType, flags: u8) -> DecodeError {
    E::InvalidFlags { packet_type, flags }
}

fn reason_code(packet_type: PacketType, code: u8) -> DecodeError {
    E::InvalidReasonCode { packet_type, code }
}

fn not_allowed(id: u32, packet_type: PacketType) -> DecodeError {
    E::PropertyNotAllowed { id, packet_type }
}

#[rustfmt::skip]
fn corpus() -> Vec<Case> {
    use PacketType::*;
    vec![
        // Fixed header.
        case("remaining length over 4 bytes", "30 FF FF FF FF 01", V311, E::MalformedVariableInteger, MALFORMED),
        case("remaining length: 4th byte continues", "30 80 80 80 80", V5, E::MalformedVariableInteger, MALFORMED),
        case("remaining length not minimal", "30 80 00", V311, E::MalformedVariableInteger, MALFORMED),
        case("remaining length not minimal, 4 bytes", "C0 80 80 80 00", V5, E::MalformedVariableInteger, MALFORMED),
        case("packet too large, header only", "30 D0 0F", V311, E::PacketTooLarge { size: 2003, max: MAX }, R::PacketTooLarge),
        case("packet too large, largest length", "30 FF FF FF 7F", V5, E::PacketTooLarge { size: 268_435_460, max: MAX }, R::PacketTooLarge),
        case("reserved packet type 0", "00 00", V311, E::ReservedPacketType(0), PROTOCOL),
        case("AUTH in 3.1.1", "F0 00", V311, E::ReservedPacketType(15), PROTOCOL),
        case("AUTH in 3.1", "F0 02 18 00", V31, E::ReservedPacketType(15), PROTOCOL),
        // Fixed header flags.
        case("SUBSCRIBE flags 0000", "80 06 00 01 00 01 23 00", V311, flags(Subscribe, 0), MALFORMED),
        case("SUBSCRIBE flags 0011", "83 06 00 01 00 01 23 00", V5, flags(Subscribe, 3), MALFORMED),
        case("UNSUBSCRIBE flags 0000", "A0 05 00 01 00 01 23", V311, flags(Unsubscribe, 0), MALFORMED),
        case("UNSUBSCRIBE flags 1010", "AA 05 00 01 00 01 23", V5, flags(Unsubscribe, 0xA), MALFORMED),
        case("PUBREL flags 0000", "60 02 00 01", V311, flags(PubRel, 0), MALFORMED),
        case("PUBREL flags 0011", "63 02 00 01", V5, flags(PubRel, 3), MALFORMED),
        case("CONNECT flags 0001", "11 0D 00 04 4D 51 54 54 04 02 00 3C 00 01 63", V311, flags(Connect, 1), MALFORMED),
        case("CONNACK flags 1000", "28 02 00 00", V311, flags(ConnAck, 8), MALFORMED),
        case("PUBACK flags 0001", "41 02 00 01", V311, flags(PubAck, 1), MALFORMED),
        case("PUBREC flags 0010", "52 02 00 01", V5, flags(PubRec, 2), MALFORMED),
        case("PUBCOMP flags 0100", "74 02 00 01", V311, flags(PubComp, 4), MALFORMED),
        case("SUBACK flags 0010", "92 03 00 01 00", V311, flags(SubAck, 2), MALFORMED),
        case("UNSUBACK flags 0010", "B2 02 00 01", V311, flags(UnsubAck, 2), MALFORMED),
        case("PINGREQ flags 0001", "C1 00", V31, flags(PingReq, 1), MALFORMED),
        case("PINGRESP flags 1000", "D8 00", V311, flags(PingResp, 8), MALFORMED),
        case("DISCONNECT flags 0010", "E2 00", V5, flags(Disconnect, 2), MALFORMED),
        case("AUTH flags 0001", "F1 00", V5, flags(Auth, 1), MALFORMED),
        case("CONNACK acknowledge flags 0x02", "20 02 02 00", V311, flags(ConnAck, 2), MALFORMED),
        // PUBLISH flags.
        case("PUBLISH QoS 3", "36 07 00 03 61 2F 62 00 01", V311, E::InvalidQoS, MALFORMED),
        case("PUBLISH QoS 3 with DUP", "3E 07 00 03 61 2F 62 00 01", V5, E::InvalidQoS, MALFORMED),
        case("PUBLISH DUP on QoS 0", "38 05 00 03 61 2F 62", V311, E::DupWithQoS0, MALFORMED),
        // Packet identifier 0.
        case("PUBLISH QoS 1 packet id 0", "32 07 00 03 61 2F 62 00 00", V311, E::ZeroPacketId, MALFORMED),
        case("PUBLISH QoS 2 packet id 0", "34 08 00 03 61 2F 62 00 00 00", V5, E::ZeroPacketId, MALFORMED),
        case("PUBACK packet id 0", "40 02 00 00", V311, E::ZeroPacketId, MALFORMED),
        case("PUBREC packet id 0", "50 02 00 00", V5, E::ZeroPacketId, MALFORMED),
        case("PUBREL packet id 0", "62 02 00 00", V311, E::ZeroPacketId, MALFORMED),
        case("PUBCOMP packet id 0", "70 02 00 00", V31, E::ZeroPacketId, MALFORMED),
        case("SUBSCRIBE packet id 0", "82 08 00 00 00 03 61 2F 62 00", V311, E::ZeroPacketId, MALFORMED),
        case("SUBACK packet id 0", "90 03 00 00 00", V311, E::ZeroPacketId, MALFORMED),
        case("UNSUBSCRIBE packet id 0", "A2 07 00 00 00 03 61 2F 62", V311, E::ZeroPacketId, MALFORMED),
        case("UNSUBACK packet id 0", "B0 02 00 00", V311, E::ZeroPacketId, MALFORMED),
        // Strings.
        case("topic: invalid UTF-8 C3 28", "30 06 00 02 C3 28 78 78", V311, E::InvalidUtf8, MALFORMED),
        case("topic: surrogate ED A0 80", "30 05 00 03 ED A0 80", V311, E::InvalidUtf8, MALFORMED),
        case("topic: U+0000", "30 05 00 03 61 00 62", V5, E::NullCharacter, MALFORMED),
        case("topic: overlong NUL C0 80", "30 04 00 02 C0 80", V311, E::InvalidUtf8, MALFORMED),
        case("client id: surrogate", "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 ED A0 80", V311, E::InvalidUtf8, MALFORMED),
        case("client id: U+0000", "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 61 00", V311, E::NullCharacter, MALFORMED),
        case("user property key: surrogate", "30 0D 00 01 61 09 26 00 03 ED A0 80 00 01 76", V5, E::InvalidUtf8, MALFORMED),
        case("user property value: U+0000", "30 0B 00 01 61 07 26 00 01 6B 00 01 00", V5, E::NullCharacter, MALFORMED),
        case("user name: invalid UTF-8", "10 11 00 04 4D 51 54 54 04 82 00 3C 00 01 63 00 02 FF FE", V311, E::InvalidUtf8, MALFORMED),
        case("SUBSCRIBE filter: surrogate", "82 08 00 01 00 03 ED A0 80 00", V311, E::InvalidUtf8, MALFORMED),
        // Topic names.
        case("topic name with +", "30 05 00 03 61 2F 2B", V311, E::InvalidTopicName(T::WildcardInName), MALFORMED),
        case("topic name #", "30 04 00 01 23 00", V5, E::InvalidTopicName(T::WildcardInName), MALFORMED),
        case("empty topic in 3.1.1", "30 02 00 00", V311, E::InvalidTopicName(T::Empty), MALFORMED),
        case("empty topic without alias in 5.0", "30 03 00 00 00", V5, E::EmptyTopicWithoutAlias, PROTOCOL),
        case("will topic with #", "10 14 00 04 4D 51 54 54 04 06 00 3C 00 01 63 00 03 61 2F 23 00 00", V311, E::InvalidTopicName(T::WildcardInName), MALFORMED),
        case("empty will topic", "10 11 00 04 4D 51 54 54 04 06 00 3C 00 01 63 00 00 00 00", V311, E::InvalidTopicName(T::Empty), MALFORMED),
        // Topic filters.
        case("filter a/#/b", "82 0A 00 01 00 05 61 2F 23 2F 62 00", V311, E::InvalidTopicFilter(T::MisplacedWildcard), MALFORMED),
        case("filter a+", "82 07 00 01 00 02 61 2B 00", V311, E::InvalidTopicFilter(T::MisplacedWildcard), MALFORMED),
        case("filter #a", "82 08 00 01 00 00 02 23 61 00", V5, E::InvalidTopicFilter(T::MisplacedWildcard), MALFORMED),
        case("empty filter", "82 05 00 01 00 00 00", V311, E::InvalidTopicFilter(T::Empty), MALFORMED),
        case("UNSUBSCRIBE filter a/#/b", "A2 09 00 01 00 05 61 2F 23 2F 62", V311, E::InvalidTopicFilter(T::MisplacedWildcard), MALFORMED),
        case("shared filter without filter", "82 0D 00 01 00 08 24 73 68 61 72 65 2F 67 00", V311, E::InvalidTopicFilter(T::MalformedShare), MALFORMED),
        // Empty payloads; a protocol error in 5.0 [MQTT-3.8.3-2] [MQTT-3.10.3-2].
        case("SUBSCRIBE without filters", "82 02 00 01", V311, E::NoTopicFilters, PROTOCOL),
        case("SUBSCRIBE without filters, 5.0", "82 03 00 01 00", V5, E::NoTopicFilters, PROTOCOL),
        case("UNSUBSCRIBE without filters", "A2 03 00 01 00", V5, E::NoTopicFilters, PROTOCOL),
        // Repeated properties.
        case("Message Expiry twice", "30 0E 00 01 61 0A 02 00 00 00 01 02 00 00 00 02", V5, E::DuplicateProperty(0x02), PROTOCOL),
        case("Topic Alias twice", "30 0A 00 01 61 06 23 00 01 23 00 02", V5, E::DuplicateProperty(0x23), PROTOCOL),
        case("Reason String twice in PUBACK", "40 0E 00 01 80 0A 1F 00 02 61 62 1F 00 02 63 64", V5, E::DuplicateProperty(0x1F), PROTOCOL),
        case("Subscription Identifier twice in SUBSCRIBE", "82 0B 00 01 04 0B 01 0B 02 00 01 23 00", V5, E::DuplicateProperty(0x0B), PROTOCOL),
        case("Authentication Method twice", "F0 10 18 0E 15 00 04 53 43 52 41 15 00 04 53 43 52 41", V5, E::DuplicateProperty(0x15), PROTOCOL),
        // Properties not allowed in the packet. The packet type named is the one decoded (a regression: every
        // acknowledgement used to be reported as PUBACK).
        case("Topic Alias in CONNECT", "10 11 00 04 4D 51 54 54 05 02 00 3C 03 23 00 01 00 01 63", V5, not_allowed(0x23, Connect), MALFORMED),
        case("Will Delay in CONNECT properties", "10 13 00 04 4D 51 54 54 05 02 00 3C 05 18 00 00 00 01 00 01 63", V5, not_allowed(0x18, Connect), MALFORMED),
        case("Session Expiry in PUBLISH", "30 09 00 01 61 05 11 00 00 00 01", V5, not_allowed(0x11, Publish), MALFORMED),
        case("Subscription Identifier in SUBACK", "90 06 00 01 02 0B 01 00", V5, not_allowed(0x0B, SubAck), MALFORMED),
        case("Reason String in UNSUBSCRIBE", "A2 0A 00 01 04 1F 00 01 78 00 01 23", V5, not_allowed(0x1F, Unsubscribe), MALFORMED),
        case("Server Reference in PUBREL", "62 08 00 01 92 04 1C 00 01 78", V5, not_allowed(0x1C, PubRel), MALFORMED),
        case("Topic Alias in UNSUBACK", "B0 07 00 01 03 23 00 01 00", V5, not_allowed(0x23, UnsubAck), MALFORMED),
        case("Content Type in AUTH", "F0 06 18 04 03 00 01 78", V5, not_allowed(0x03, Auth), MALFORMED),
        case("Topic Alias in Will properties", "10 14 00 04 4D 51 54 54 05 06 00 3C 00 00 01 63 03 23 00 01 00 01 61 00 00", V5, not_allowed(0x23, Connect), MALFORMED),
        // Unknown property identifiers.
        case("unknown property 0x04", "30 05 00 01 61 01 04", V5, E::UnknownProperty(0x04), MALFORMED),
        case("unknown property 0x7F", "20 04 00 00 01 7F", V5, E::UnknownProperty(0x7F), MALFORMED),
        case("unknown property 128", "E0 04 00 02 80 01", V5, E::UnknownProperty(128), MALFORMED),
        case("property identifier not minimal", "E0 04 00 02 A6 00", V5, E::MalformedVariableInteger, MALFORMED),
        // Property values.
        case("Topic Alias 0", "30 07 00 01 61 03 23 00 00", V5, E::InvalidPropertyValue(0x23), PROTOCOL),
        case("Receive Maximum 0 in CONNECT", "10 11 00 04 4D 51 54 54 05 02 00 3C 03 21 00 00 00 01 63", V5, E::InvalidPropertyValue(0x21), PROTOCOL),
        case("Receive Maximum 0 in CONNACK", "20 06 00 00 03 21 00 00", V5, E::InvalidPropertyValue(0x21), PROTOCOL),
        case("Maximum Packet Size 0", "10 13 00 04 4D 51 54 54 05 02 00 3C 05 27 00 00 00 00 00 01 63", V5, E::InvalidPropertyValue(0x27), PROTOCOL),
        case("Payload Format Indicator 2", "30 06 00 01 61 02 01 02", V5, E::InvalidPropertyValue(0x01), PROTOCOL),
        case("Maximum QoS 2", "20 05 00 00 02 24 02", V5, E::InvalidPropertyValue(0x24), PROTOCOL),
        case("Subscription Identifier 0", "82 09 00 01 02 0B 00 00 01 23 00", V5, E::InvalidPropertyValue(0x0B), PROTOCOL),
        case("Subscription Identifier 0 in PUBLISH", "30 06 00 01 61 02 0B 00", V5, E::InvalidPropertyValue(0x0B), PROTOCOL),
        case("Authentication Data without Method in CONNECT", "10 12 00 04 4D 51 54 54 05 02 00 3C 04 16 00 01 AA 00 01 63", V5, E::AuthDataWithoutMethod, PROTOCOL),
        case("Authentication Data without Method in AUTH", "F0 06 18 04 16 00 01 AA", V5, E::AuthDataWithoutMethod, PROTOCOL),
        // Subscription options: reserved bits are malformed, QoS 3 and Retain Handling 3 protocol errors.
        case("options reserved bits 0xC0", "82 07 00 01 00 00 01 23 C0", V5, E::InvalidSubscriptionOptions(0xC0), MALFORMED),
        case("options reserved bit 0x40 with QoS 3", "82 07 00 01 00 00 01 23 43", V5, E::InvalidSubscriptionOptions(0x43), MALFORMED),
        case("options Retain Handling 3", "82 07 00 01 00 00 01 23 30", V5, E::InvalidSubscriptionOptions(0x30), PROTOCOL),
        case("options QoS 3", "82 07 00 01 00 00 01 23 03", V5, E::InvalidSubscriptionOptions(0x03), PROTOCOL),
        case("3.1.1 options reserved bit 0x04", "82 06 00 01 00 01 23 04", V311, E::InvalidSubscriptionOptions(0x04), MALFORMED),
        case("3.1.1 options reserved bit 0x80", "82 06 00 01 00 01 23 81", V311, E::InvalidSubscriptionOptions(0x81), MALFORMED),
        case("No Local on a shared subscription", "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04", V5, E::NoLocalOnSharedSubscription, PROTOCOL),
        // CONNECT.
        case("protocol name MQTX", "10 0D 00 04 4D 51 54 58 04 02 00 3C 00 01 63", V311, E::InvalidProtocolName, PROTOCOL),
        case("protocol name empty", "10 09 00 00 04 02 00 3C 00 01 63", V5, E::InvalidProtocolName, PROTOCOL),
        case("MQTT level 6", "10 0D 00 04 4D 51 54 54 06 02 00 3C 00 01 63", V311, E::UnsupportedProtocolVersion(6), R::UnsupportedProtocolVersion),
        case("MQTT level 0x84", "10 0D 00 04 4D 51 54 54 84 02 00 3C 00 01 63", V311, E::UnsupportedProtocolVersion(0x84), R::UnsupportedProtocolVersion),
        case("MQTT level 3", "10 0D 00 04 4D 51 54 54 03 02 00 3C 00 01 63", V31, E::UnsupportedProtocolVersion(3), R::UnsupportedProtocolVersion),
        case("MQIsdp level 4", "10 0F 00 06 4D 51 49 73 64 70 04 02 00 3C 00 01 63", V311, E::UnsupportedProtocolVersion(4), R::UnsupportedProtocolVersion),
        case("CONNECT reserved flag", "10 0D 00 04 4D 51 54 54 04 03 00 3C 00 01 63", V311, E::ConnectReservedFlag, MALFORMED),
        case("will QoS without will flag", "10 0D 00 04 4D 51 54 54 04 0A 00 3C 00 01 63", V311, E::InvalidWillFlags, MALFORMED),
        case("will retain without will flag", "10 0D 00 04 4D 51 54 54 05 22 00 3C 00 00 01 63", V5, E::InvalidWillFlags, MALFORMED),
        case("will QoS 3", "10 14 00 04 4D 51 54 54 04 1E 00 3C 00 01 63 00 03 61 2F 62 00 00", V311, E::InvalidWillFlags, MALFORMED),
        case("password without user name, 3.1.1", "10 10 00 04 4D 51 54 54 04 42 00 3C 00 01 63 00 01 70", V311, E::PasswordWithoutUsername, MALFORMED),
        case("password without user name, 3.1", "10 12 00 06 4D 51 49 73 64 70 03 42 00 3C 00 01 63 00 01 70", V31, E::PasswordWithoutUsername, MALFORMED),
        // Trailing bytes.
        case("PINGREQ with a body", "C0 01 00", V311, E::TrailingBytes, MALFORMED),
        case("3.1.1 PUBACK with a reason code", "40 03 00 01 00", V311, E::TrailingBytes, MALFORMED),
        case("CONNECT with a byte after the payload", "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 01 63 FF", V311, E::TrailingBytes, MALFORMED),
        case("3.1.1 UNSUBACK with a payload", "B0 03 00 01 00", V311, E::TrailingBytes, MALFORMED),
        case("3.1.1 DISCONNECT with a reason code", "E0 01 00", V311, E::TrailingBytes, MALFORMED),
        case("CONNACK with a byte after the properties", "20 04 00 00 00 00", V5, E::TrailingBytes, MALFORMED),
        // Truncated fields.
        case("topic length cut", "30 01 00", V311, E::Truncated, MALFORMED),
        case("topic shorter than its length", "30 03 00 05 61", V311, E::Truncated, MALFORMED),
        case("QoS 1 PUBLISH without packet id", "32 05 00 03 61 2F 62", V311, E::Truncated, MALFORMED),
        case("PUBACK with one byte", "40 01 00", V5, E::Truncated, MALFORMED),
        case("CONNACK with one byte", "20 01 00", V311, E::Truncated, MALFORMED),
        case("CONNECT protocol name cut", "10 05 00 04 4D 51 54", V311, E::Truncated, MALFORMED),
        case("CONNECT without client id", "10 0A 00 04 4D 51 54 54 04 02 00 3C", V311, E::Truncated, MALFORMED),
        case("property length past the packet", "30 05 00 01 61 05 01", V5, E::Truncated, MALFORMED),
        case("property past the property length", "30 08 00 01 61 02 02 00 00 00", V5, E::Truncated, MALFORMED),
        case("SUBSCRIBE without options byte", "82 06 00 01 00 02 61 62", V311, E::Truncated, MALFORMED),
        case("SUBACK without reason codes", "90 02 00 01", V311, E::Truncated, MALFORMED),
        case("UNSUBACK 5.0 without reason codes", "B0 03 00 01 00", V5, E::Truncated, MALFORMED),
        case("will payload cut", "10 13 00 04 4D 51 54 54 04 06 00 3C 00 01 63 00 01 61 00 05 78", V311, E::Truncated, MALFORMED),
        // Reason codes not valid for the packet.
        case("3.1.1 CONNACK return code 6", "20 02 00 06", V311, reason_code(ConnAck, 6), MALFORMED),
        case("3.1 CONNACK return code 0x80", "20 02 00 80", V31, reason_code(ConnAck, 0x80), MALFORMED),
        case("CONNACK reason 0x01", "20 03 00 01 00", V5, reason_code(ConnAck, 0x01), MALFORMED),
        case("CONNACK reason 0x8B", "20 03 00 8B 00", V5, reason_code(ConnAck, 0x8B), MALFORMED),
        case("PUBACK reason 0x92", "40 03 00 01 92", V5, reason_code(PubAck, 0x92), MALFORMED),
        case("PUBREC reason 0x11", "50 03 00 01 11", V5, reason_code(PubRec, 0x11), MALFORMED),
        case("PUBREL reason 0x10", "62 03 00 01 10", V5, reason_code(PubRel, 0x10), MALFORMED),
        case("PUBCOMP reason 0x80", "70 03 00 01 80", V5, reason_code(PubComp, 0x80), MALFORMED),
        case("3.1.1 SUBACK code 0x03", "90 03 00 01 03", V311, reason_code(SubAck, 0x03), MALFORMED),
        case("3.1.1 SUBACK code 0x87", "90 03 00 01 87", V311, reason_code(SubAck, 0x87), MALFORMED),
        case("SUBACK reason 0x11", "90 04 00 01 00 11", V5, reason_code(SubAck, 0x11), MALFORMED),
        case("UNSUBACK reason 0x01", "B0 04 00 01 00 01", V5, reason_code(UnsubAck, 0x01), MALFORMED),
        case("DISCONNECT reason 0x01", "E0 01 01", V5, reason_code(Disconnect, 0x01), MALFORMED),
        case("DISCONNECT reason 0x84", "E0 01 84", V5, reason_code(Disconnect, 0x84), MALFORMED),
        case("AUTH reason 0x01", "F0 01 01", V5, reason_code(Auth, 0x01), MALFORMED),
        case("AUTH reason 0x87", "F0 02 87 00", V5, reason_code(Auth, 0x87), MALFORMED),
    ]
}

#[test]
fn corpus_is_large_and_covers_every_packet_type() {
    let corpus = corpus();
    assert!(corpus.len() >= 60, "{} cases", corpus.len());
    for first in 0..16u8 {
        assert!(corpus.iter().any(|c| hex(c.hex)[0] >> 4 == first), "no case for packet type {first}");
    }
}

#[test]
fn every_case_fails_with_its_error_and_reason_code() {
    let mut failures = Vec::new();
    for c in corpus() {
        let bytes = hex(c.hex);
        let mut buf = BytesMut::from(&bytes[..]);
        let got = decode(&mut buf, c.version, MAX);
        if got != Err(c.error.clone()) {
            failures.push(format!("{}: expected {:?}, got {got:?}", c.what, c.error));
            continue;
        }
        if c.error.reason_code() != c.reason {
            failures.push(format!(
                "{}: {:?} maps to {:?}, expected {:?}",
                c.what,
                c.error,
                c.error.reason_code(),
                c.reason
            ));
        }
        // The error's text names something (thiserror Display).
        assert!(!c.error.to_string().is_empty());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_case_fails_the_same_when_split() {
    for c in corpus() {
        let bytes = hex(c.hex);
        for at in 0..=bytes.len() {
            let mut buf = BytesMut::from(&bytes[..at]);
            let first = decode(&mut buf, c.version, MAX);
            let result = match first {
                Ok(None) => {
                    buf.extend_from_slice(&bytes[at..]);
                    decode(&mut buf, c.version, MAX)
                }
                other => other,
            };
            assert_eq!(result, Err(c.error.clone()), "{} split at {at}", c.what);
        }
    }
}

#[test]
fn every_case_is_refused_by_the_packets_own_version_only_where_it_should_be() {
    // The 3.x-only and 5.0-only cases above are tagged with the version they break; the same bytes in another
    // version may be valid. Spot checks that the version matters where the specification says it does.
    let ok = |hex_bytes: &str, version| {
        let bytes = hex(hex_bytes);
        decode(&mut BytesMut::from(&bytes[..]), version, MAX)
    };
    // Password without user name is allowed in 5.0.
    assert!(matches!(ok("10 11 00 04 4D 51 54 54 05 42 00 3C 00 00 01 63 00 01 70", V5), Ok(Some(Packet::Connect(_)))));
    // No Local is a reserved bit in 3.1.1, an option in 5.0.
    assert!(matches!(ok("82 07 00 01 00 00 01 23 04", V5), Ok(Some(Packet::Subscribe(_)))));
    // A 5.0 PUBACK's reason code is trailing bytes in 3.1.1, and fine in 5.0.
    assert!(matches!(ok("40 03 00 01 00", V5), Ok(Some(Packet::PubAck(_)))));
}

#[test]
fn packet_too_large_is_known_from_the_fixed_header_alone() {
    // Only the fixed header has arrived: the decoder errors at once, without buffering or reserving for the body.
    for (header, size) in [
        (&[0x30, 0x81, 0x08][..], 3 + 1025),
        (&[0x30, 0xD0, 0x0F], 3 + 2000),
        (&[0x82, 0xFF, 0xFF, 0xFF, 0x7F], 5 + 268_435_455),
    ] {
        let mut buf = BytesMut::from(header);
        let capacity = buf.capacity();
        assert_eq!(decode(&mut buf, V311, MAX), Err(E::PacketTooLarge { size, max: MAX }));
        assert_eq!(buf.capacity(), capacity, "nothing reserved");
        assert_eq!(E::PacketTooLarge { size, max: MAX }.reason_code(), R::PacketTooLarge);
    }
    // A packet of exactly the maximum size is accepted; one byte more is not.
    let mut exact = vec![0x30, 0xFD, 0x07, 0x00, 0x01, 0x61];
    exact.resize(1024, 0x78);
    assert!(decode(&mut BytesMut::from(&exact[..]), V311, MAX).unwrap().is_some());
    let mut over = vec![0x30, 0xFE, 0x07, 0x00, 0x01, 0x61];
    over.resize(1025, 0x78);
    assert_eq!(decode(&mut BytesMut::from(&over[..]), V311, MAX), Err(E::PacketTooLarge { size: 1025, max: MAX }));
}

#[test]
fn a_bad_first_byte_is_refused_before_the_rest_arrives() {
    for (first, version, error) in [
        (0x00, V311, E::ReservedPacketType(0)),
        (0xF0, V311, E::ReservedPacketType(15)),
        (0x80, V5, flags(PacketType::Subscribe, 0)),
        (0x36, V5, E::InvalidQoS),
        (0x38, V311, E::DupWithQoS0),
        // What an HTTP request starts with: "G" is PUBACK with flags 0111.
        (b'G', V311, flags(PacketType::PubAck, 7)),
    ] {
        let mut buf = BytesMut::from(&[first][..]);
        assert_eq!(decode(&mut buf, version, MAX), Err(error));
    }
}
