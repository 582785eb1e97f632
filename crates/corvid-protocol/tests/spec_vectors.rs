//! Byte vectors written by hand from the examples and tables of the MQTT 3.1, 3.1.1 and 5.0 specifications, for
//! every packet type and every version. Each vector is checked both ways where the encoding is canonical: decoding
//! the bytes gives the packet, and encoding the packet gives the bytes (and `encoded_len` their length).

mod support;

use bytes::{Bytes, BytesMut};
use corvid_protocol::*;
use support::hex;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const ALL: [ProtocolVersion; 3] = [V31, V311, V5];

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

fn topic(s: &'static str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &'static str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// Decodes the whole of `bytes` as one packet.
fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, 1 << 20)
        .unwrap_or_else(|e| panic!("{version} {bytes:02X?}: {e}"))
        .unwrap_or_else(|| panic!("{version} {bytes:02X?}: incomplete"));
    assert!(buf.is_empty(), "{version}: bytes left over");
    packet
}

fn encode_one(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    assert_eq!(encoded_len(packet, version).unwrap(), buf.len());
    buf.to_vec()
}

/// `hex_bytes` decodes to `packet` and `packet` encodes to `hex_bytes`, in `version`.
fn both_ways(hex_bytes: &str, version: ProtocolVersion, packet: Packet) {
    let bytes = hex(hex_bytes);
    assert_eq!(decode_one(&bytes, version), packet, "decode in {version}");
    assert_eq!(encode_one(&packet, version), bytes, "encode in {version} of {packet:?}");
}

/// `hex_bytes` decodes to `packet` in `version` (a valid but not canonical encoding).
fn decodes_to(hex_bytes: &str, version: ProtocolVersion, packet: Packet) {
    assert_eq!(decode_one(&hex(hex_bytes), version), packet, "{version}");
}

// ---------------------------------------------------------------------------------------------------------------
// CONNECT

fn will(qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

#[test]
fn connect_3_1_1_variable_header_example() {
    // MQTT 3.1.1 section 3.1.2.10, figure 3.6: "MQTT", level 4, flags 0xCE (user name, password, will QoS 1, will,
    // clean session), keep alive 10. Payload: client id "cid", will topic "w/t", will message "bye", "u", "p".
    let mut c = Connect::new(V311, "cid");
    c.keep_alive = 10;
    c.will = Some(will(QoS::AtLeastOnce, false));
    c.username = Some("u".into());
    c.password = Some(Bytes::from_static(b"p"));
    let packet = Packet::Connect(Box::new(c));
    let bytes = "10 1F  00 04 4D 51 54 54  04  CE  00 0A
                 00 03 63 69 64  00 03 77 2F 74  00 03 62 79 65  00 01 75  00 01 70";
    both_ways(bytes, V311, packet.clone());
    // CONNECT names its own version, so it decodes the same whatever the connection's version is so far.
    both_ways(bytes, V31, packet.clone());
    both_ways(bytes, V5, packet);
}

#[test]
fn connect_3_1_mqisdp() {
    // MQTT 3.1: protocol name "MQIsdp", level 3; clean session, keep alive 60, client id "test".
    let c = Connect::new(V31, "test");
    both_ways("10 12  00 06 4D 51 49 73 64 70  03  02  00 3C  00 04 74 65 73 74", V31, Packet::Connect(Box::new(c)));
}

#[test]
fn connect_3_1_1_minimal_and_will_retain_qos2() {
    let mut c = Connect::new(V311, "");
    c.clean_start = true;
    c.keep_alive = 0;
    both_ways("10 0C  00 04 4D 51 54 54  04  02  00 00  00 00", V311, Packet::Connect(Box::new(c)));
    // Will QoS 2 and will retain: flags 0011 0100 = 0x34; no clean session.
    let mut c = Connect::new(V311, "c");
    c.clean_start = false;
    c.keep_alive = 60;
    c.will = Some(will(QoS::ExactlyOnce, true));
    both_ways(
        "10 17  00 04 4D 51 54 54  04  34  00 3C  00 01 63  00 03 77 2F 74  00 03 62 79 65",
        V311,
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_5_with_properties_example() {
    // MQTT 5.0 section 3.1.2.11, figure 3-6: "MQTT", level 5, flags 0xCE, keep alive 10, properties length 5,
    // Session Expiry Interval (0x11) 10. Will properties: Will Delay Interval (0x18) 5.
    let mut c = Connect::new(V5, "cid");
    c.keep_alive = 10;
    c.properties.session_expiry_interval = Some(10);
    let mut w = will(QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(5);
    c.will = Some(w);
    c.username = Some("u".into());
    c.password = Some(Bytes::from_static(b"p"));
    both_ways(
        "10 2B  00 04 4D 51 54 54  05  CE  00 0A  05 11 00 00 00 0A
                00 03 63 69 64  05 18 00 00 00 05  00 03 77 2F 74  00 03 62 79 65  00 01 75  00 01 70",
        V5,
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_5_password_without_user_name() {
    // MQTT 5.0 section 3.1.2.9 allows a password without a user name (flags 0x42).
    let mut c = Connect::new(V5, "c");
    c.password = Some(Bytes::from_static(b"tok"));
    both_ways(
        "10 13  00 04 4D 51 54 54  05  42  00 3C  00  00 01 63  00 03 74 6F 6B",
        V5,
        Packet::Connect(Box::new(c)),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// CONNACK

fn connack(session_present: bool, reason_code: ReasonCode) -> Packet {
    Packet::ConnAck(ConnAck { session_present, reason_code, properties: ConnAckProperties::default() })
}

#[test]
fn connack_3_x_return_codes() {
    // MQTT 3.1.1 section 3.2.2.3, table 3.1: return codes 0 to 5.
    let table = [
        (0x00, ReasonCode::Success),
        (0x01, ReasonCode::UnsupportedProtocolVersion),
        (0x02, ReasonCode::ClientIdentifierNotValid),
        (0x03, ReasonCode::ServerUnavailable),
        (0x04, ReasonCode::BadUserNameOrPassword),
        (0x05, ReasonCode::NotAuthorized),
    ];
    for (code, reason) in table {
        both_ways(&format!("20 02 00 {code:02X}"), V311, connack(false, reason));
        both_ways(&format!("20 02 00 {code:02X}"), V31, connack(false, reason));
    }
    // Session present (3.1.1 section 3.2.2.2).
    both_ways("20 02 01 00", V311, connack(true, ReasonCode::Success));
}

#[test]
fn connack_5_reason_codes_map_onto_3_x_return_codes() {
    // The broker thinks in MQTT 5 reason codes; a 3.x client gets the nearest return code.
    for (reason, code) in [
        (ReasonCode::Success, 0),
        (ReasonCode::UnsupportedProtocolVersion, 1),
        (ReasonCode::ClientIdentifierNotValid, 2),
        (ReasonCode::ServerUnavailable, 3),
        (ReasonCode::ServerBusy, 3),
        (ReasonCode::ServerShuttingDown, 3),
        (ReasonCode::UseAnotherServer, 3),
        (ReasonCode::ServerMoved, 3),
        (ReasonCode::ConnectionRateExceeded, 3),
        (ReasonCode::BadUserNameOrPassword, 4),
        (ReasonCode::BadAuthenticationMethod, 4),
        (ReasonCode::NotAuthorized, 5),
        (ReasonCode::Banned, 5),
        (ReasonCode::QuotaExceeded, 5),
    ] {
        for v in [V31, V311] {
            assert_eq!(encode_one(&connack(false, reason), v), vec![0x20, 0x02, 0x00, code], "{reason:?} in {v}");
        }
    }
}

#[test]
fn connack_3_1_has_no_session_present() {
    // Regression: MQTT 3.1's first CONNACK byte is reserved. A set bit used to decode as session present, which
    // the encoder then dropped, so decode(encode(decode(b))) differed from decode(b).
    assert_eq!(encode_one(&connack(true, ReasonCode::Success), V31), hex("20 02 00 00"));
    decodes_to("20 02 01 00", V31, connack(false, ReasonCode::Success));
}

#[test]
fn connack_5() {
    both_ways("20 03 00 00 00", V5, connack(false, ReasonCode::Success));
    both_ways("20 03 01 00 00", V5, connack(true, ReasonCode::Success));
    for code in [
        0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B,
        0x9C, 0x9D, 0x9F,
    ] {
        let reason = ReasonCode::from_u8(code).unwrap();
        both_ways(&format!("20 03 00 {code:02X} 00"), V5, connack(false, reason));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// PUBLISH

#[test]
fn publish_with_packet_id_example() {
    // MQTT 3.1.1 section 3.3.2.3, figure 3.11: topic "a/b", packet identifier 10; payload "abc".
    let mut p = Publish::new(topic("a/b"), "abc", QoS::AtLeastOnce);
    p.packet_id = Some(pid(10));
    for v in [V31, V311] {
        both_ways("32 0A  00 03 61 2F 62  00 0A  61 62 63", v, Packet::Publish(p.clone()));
    }
    // MQTT 5.0 adds the property length (0) after the packet identifier.
    both_ways("32 0B  00 03 61 2F 62  00 0A  00  61 62 63", V5, Packet::Publish(p));
}

#[test]
fn publish_qos0_qos2_flags() {
    let p = Publish::new(topic("a/b"), "hi", QoS::AtMostOnce);
    for v in [V31, V311] {
        both_ways("30 07  00 03 61 2F 62  68 69", v, Packet::Publish(p.clone()));
    }
    both_ways("30 08  00 03 61 2F 62  00  68 69", V5, Packet::Publish(p));
    // DUP, QoS 2, RETAIN: flags 1101; empty payload.
    let mut p = Publish::new(topic("a"), Bytes::new(), QoS::ExactlyOnce);
    p.dup = true;
    p.retain = true;
    p.packet_id = Some(pid(0xFFFF));
    both_ways("3D 05  00 01 61  FF FF", V311, Packet::Publish(p.clone()));
    both_ways("3D 06  00 01 61  FF FF  00", V5, Packet::Publish(p));
    // QoS 0 with RETAIN.
    let mut p = Publish::new(topic("$SYS/x"), "1", QoS::AtMostOnce);
    p.retain = true;
    both_ways("31 09  00 06 24 53 59 53 2F 78  31", V311, Packet::Publish(p));
}

#[test]
fn publish_5_topic_alias_with_empty_topic() {
    // MQTT 5.0 section 3.3.2.3.4: an empty topic name with a Topic Alias (0x23).
    let mut p = Publish::new(TopicName::alias_only(), "x", QoS::AtMostOnce);
    p.properties.topic_alias = Some(3);
    both_ways("30 07  00 00  03 23 00 03  78", V5, Packet::Publish(p));
}

#[test]
fn publish_utf8_topic_from_the_spec() {
    // MQTT 5.0 section 1.5.4, figure 1-1: "A" followed by U+2A6D4, encoded 41 F0 AA 9B 94.
    let p = Publish::new(topic("A\u{2A6D4}"), Bytes::new(), QoS::AtMostOnce);
    both_ways("30 07  00 05 41 F0 AA 9B 94", V311, Packet::Publish(p));
}

#[test]
fn publish_large_remaining_length() {
    // A remaining length of 321 takes two bytes: C1 02.
    let payload = vec![0x55; 321 - 5];
    let p = Publish::new(topic("a/b"), payload.clone(), QoS::AtMostOnce);
    let mut bytes = hex("30 C1 02  00 03 61 2F 62");
    bytes.extend_from_slice(&payload);
    assert_eq!(encode_one(&Packet::Publish(p.clone()), V311), bytes);
    assert_eq!(decode_one(&bytes, V311), Packet::Publish(p));
}

// ---------------------------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP

#[test]
fn pub_responses_3_x() {
    for v in [V31, V311] {
        both_ways("40 02 00 0A", v, Packet::PubAck(PubResponse::new(pid(10))));
        both_ways("50 02 00 0A", v, Packet::PubRec(PubResponse::new(pid(10))));
        // PUBREL has the fixed flags 0010 (3.1.1 section 3.6.1).
        both_ways("62 02 00 0A", v, Packet::PubRel(PubResponse::new(pid(10))));
        both_ways("70 02 00 0A", v, Packet::PubComp(PubResponse::new(pid(10))));
    }
}

#[test]
fn pub_responses_5() {
    // A success without properties is the two-byte form (MQTT 5.0 section 3.4.2.1).
    both_ways("40 02 00 0A", V5, Packet::PubAck(PubResponse::new(pid(10))));
    decodes_to("40 03 00 0A 00", V5, Packet::PubAck(PubResponse::new(pid(10))));
    decodes_to("40 04 00 0A 00 00", V5, Packet::PubAck(PubResponse::new(pid(10))));
    let with =
        |code: ReasonCode| PubResponse { packet_id: pid(10), reason_code: code, properties: AckProperties::default() };
    // Without properties the property length may be left out (remaining length 3).
    decodes_to("40 03 00 0A 10", V5, Packet::PubAck(with(ReasonCode::NoMatchingSubscribers)));
    for code in [0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        let r = with(ReasonCode::from_u8(code).unwrap());
        both_ways(&format!("40 04 00 0A {code:02X} 00"), V5, Packet::PubAck(r.clone()));
        both_ways(&format!("50 04 00 0A {code:02X} 00"), V5, Packet::PubRec(r));
    }
    let r = with(ReasonCode::PacketIdentifierNotFound);
    both_ways("62 04 00 0A 92 00", V5, Packet::PubRel(r.clone()));
    both_ways("70 04 00 0A 92 00", V5, Packet::PubComp(r));
    // In 3.x the reason code is not sent.
    assert_eq!(encode_one(&Packet::PubAck(with(ReasonCode::QuotaExceeded)), V311), hex("40 02 00 0A"));
}

// ---------------------------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK

#[test]
fn subscribe_3_1_1_payload_example() {
    // MQTT 3.1.1 section 3.8.3.1, figure 3.22: "a/b" QoS 1, "c/d" QoS 2; packet identifier 10.
    let s = Subscribe {
        packet_id: pid(10),
        filters: vec![
            (filter("a/b"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (filter("c/d"), SubscriptionOptions::qos(QoS::ExactlyOnce)),
        ],
        properties: SubscribeProperties::default(),
    };
    for v in [V31, V311] {
        both_ways("82 0E  00 0A  00 03 61 2F 62 01  00 03 63 2F 64 02", v, Packet::Subscribe(s.clone()));
    }
    both_ways("82 0F  00 0A  00  00 03 61 2F 62 01  00 03 63 2F 64 02", V5, Packet::Subscribe(s));
}

#[test]
fn subscribe_5_options_bits() {
    // MQTT 5.0 section 3.8.3.1, figure 3-21: bits 0-1 QoS, bit 2 No Local, bit 3 Retain As Published, bits 4-5
    // Retain Handling, bits 6-7 reserved.
    let cases = [
        (0x00, QoS::AtMostOnce, false, false, RetainHandling::SendAtSubscribe),
        (0x01, QoS::AtLeastOnce, false, false, RetainHandling::SendAtSubscribe),
        (0x02, QoS::ExactlyOnce, false, false, RetainHandling::SendAtSubscribe),
        (0x04, QoS::AtMostOnce, true, false, RetainHandling::SendAtSubscribe),
        (0x08, QoS::AtMostOnce, false, true, RetainHandling::SendAtSubscribe),
        (0x10, QoS::AtMostOnce, false, false, RetainHandling::SendIfNew),
        (0x20, QoS::AtMostOnce, false, false, RetainHandling::DoNotSend),
        (0x2E, QoS::ExactlyOnce, true, true, RetainHandling::DoNotSend),
        (0x1D, QoS::AtLeastOnce, true, true, RetainHandling::SendIfNew),
    ];
    for (bits, qos, no_local, retain_as_published, retain_handling) in cases {
        let s = Subscribe {
            packet_id: pid(1),
            filters: vec![(filter("a/b"), SubscriptionOptions { qos, no_local, retain_as_published, retain_handling })],
            properties: SubscribeProperties::default(),
        };
        both_ways(&format!("82 09  00 01  00  00 03 61 2F 62 {bits:02X}"), V5, Packet::Subscribe(s.clone()));
        // 3.x has only the QoS bits: the other options are not sent.
        assert_eq!(
            encode_one(&Packet::Subscribe(s), V311),
            hex(&format!("82 08  00 01  00 03 61 2F 62 {:02X}", bits & 0x03))
        );
    }
}

#[test]
fn subscribe_5_shared_and_wildcards() {
    let s = Subscribe {
        packet_id: pid(2),
        filters: vec![
            (filter("$share/g/a/+"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (filter("#"), SubscriptionOptions::qos(QoS::AtMostOnce)),
        ],
        properties: SubscribeProperties::default(),
    };
    both_ways("82 16  00 02  00  00 0C 24 73 68 61 72 65 2F 67 2F 61 2F 2B 01  00 01 23 00", V5, Packet::Subscribe(s));
}

fn suback(codes: &[ReasonCode]) -> Packet {
    Packet::SubAck(SubAck { packet_id: pid(10), reason_codes: codes.to_vec(), properties: AckProperties::default() })
}

#[test]
fn suback_3_x_return_codes() {
    // MQTT 3.1.1 section 3.9.3, figure 3.26: 0x00, 0x01, 0x02 and failure 0x80.
    let codes = [ReasonCode::Success, ReasonCode::GrantedQoS2, ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError];
    for v in [V31, V311] {
        both_ways("90 06 00 0A 00 02 01 80", v, suback(&codes));
    }
    // MQTT 5 failure codes all become 0x80 in 3.x.
    for code in [
        ReasonCode::ImplementationSpecificError,
        ReasonCode::NotAuthorized,
        ReasonCode::TopicFilterInvalid,
        ReasonCode::QuotaExceeded,
        ReasonCode::SharedSubscriptionsNotSupported,
        ReasonCode::WildcardSubscriptionsNotSupported,
    ] {
        assert_eq!(encode_one(&suback(&[code]), V311), hex("90 03 00 0A 80"));
    }
}

#[test]
fn suback_5() {
    let codes: Vec<ReasonCode> = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
        .into_iter()
        .map(|c| ReasonCode::from_u8(c).unwrap())
        .collect();
    both_ways("90 0F 00 0A 00  00 01 02 80 83 87 8F 91 97 9E A1 A2", V5, suback(&codes));
}

// ---------------------------------------------------------------------------------------------------------------
// UNSUBSCRIBE, UNSUBACK

#[test]
fn unsubscribe() {
    // MQTT 3.1.1 section 3.10.3.1, figure 3.30: "a/b" and "c/d".
    let u = Unsubscribe {
        packet_id: pid(11),
        filters: vec![filter("a/b"), filter("c/d")],
        properties: UnsubscribeProperties::default(),
    };
    for v in [V31, V311] {
        both_ways("A2 0C  00 0B  00 03 61 2F 62  00 03 63 2F 64", v, Packet::Unsubscribe(u.clone()));
    }
    both_ways("A2 0D  00 0B  00  00 03 61 2F 62  00 03 63 2F 64", V5, Packet::Unsubscribe(u));
}

#[test]
fn unsuback_3_1_1_has_no_payload() {
    // MQTT 3.1.1 section 3.11: remaining length 2, the packet identifier only.
    let u = UnsubAck { packet_id: pid(11), reason_codes: Vec::new(), properties: AckProperties::default() };
    for v in [V31, V311] {
        both_ways("B0 02 00 0B", v, Packet::UnsubAck(u.clone()));
    }
    // MQTT 5 reason codes are dropped in 3.x.
    let u5 = UnsubAck { reason_codes: vec![ReasonCode::NoSubscriptionExisted], ..u };
    assert_eq!(encode_one(&Packet::UnsubAck(u5), V311), hex("B0 02 00 0B"));
}

#[test]
fn unsuback_5() {
    let codes: Vec<ReasonCode> =
        [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91].into_iter().map(|c| ReasonCode::from_u8(c).unwrap()).collect();
    both_ways(
        "B0 0A 00 0B 00  00 11 80 83 87 8F 91",
        V5,
        Packet::UnsubAck(UnsubAck { packet_id: pid(11), reason_codes: codes, properties: AckProperties::default() }),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH

#[test]
fn ping() {
    for v in ALL {
        both_ways("C0 00", v, Packet::PingReq);
        both_ways("D0 00", v, Packet::PingResp);
    }
}

#[test]
fn disconnect() {
    for v in ALL {
        both_ways("E0 00", v, Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
    }
    // MQTT 5.0 section 3.14.2.1: the reason code, then the properties; both may be left out.
    decodes_to("E0 01 04", V5, Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)));
    for code in [
        0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
        0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ] {
        let d = Disconnect::new(ReasonCode::from_u8(code).unwrap());
        both_ways(&format!("E0 02 {code:02X} 00"), V5, Packet::Disconnect(d.clone()));
        // 3.x DISCONNECT has no reason code.
        assert_eq!(encode_one(&Packet::Disconnect(d), V311), hex("E0 00"));
    }
}

#[test]
fn disconnect_5_with_reason_code_and_properties() {
    // Server shutting down (0x8B), Session Expiry Interval 0 (0x11), Reason String "bye" (0x1F).
    let mut d = Disconnect::new(ReasonCode::ServerShuttingDown);
    d.properties.session_expiry_interval = Some(0);
    d.properties.reason_string = Some("bye".into());
    both_ways("E0 0D  8B  0B  11 00 00 00 00  1F 00 03 62 79 65", V5, Packet::Disconnect(d));
}

#[test]
fn auth() {
    // MQTT 5.0 section 3.15: remaining length 0 means success without properties.
    let success = Auth { reason_code: ReasonCode::Success, properties: AuthProperties::default() };
    both_ways("F0 00", V5, Packet::Auth(success.clone()));
    decodes_to("F0 01 00", V5, Packet::Auth(success.clone()));
    decodes_to("F0 02 00 00", V5, Packet::Auth(success));
    // Continue authentication (0x18) with method "SCRAM" (0x15) and data 01 02 03 (0x16).
    let mut a = Auth { reason_code: ReasonCode::ContinueAuthentication, properties: AuthProperties::default() };
    a.properties.authentication_method = Some("SCRAM".into());
    a.properties.authentication_data = Some(Bytes::from_static(&[1, 2, 3]));
    both_ways("F0 10  18  0E  15 00 05 53 43 52 41 4D  16 00 03 01 02 03", V5, Packet::Auth(a.clone()));
    // Re-authenticate (0x19).
    a.reason_code = ReasonCode::ReAuthenticate;
    both_ways("F0 10  19  0E  15 00 05 53 43 52 41 4D  16 00 03 01 02 03", V5, Packet::Auth(a.clone()));
    // AUTH does not exist before 5.0.
    for v in [V31, V311] {
        let mut buf = BytesMut::new();
        assert_eq!(encode(&Packet::Auth(a.clone()), v, &mut buf), Err(EncodeError::NotInVersion(PacketType::Auth)));
        assert!(buf.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Framing

#[test]
fn several_packets_in_one_buffer_and_byte_by_byte() {
    let bytes = hex("C0 00  32 0A 00 03 61 2F 62 00 0A 61 62 63  E0 00");
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    while let Some(p) = decode(&mut buf, V311, 1024).unwrap() {
        out.push(p);
    }
    assert_eq!(out.len(), 3);
    assert!(buf.is_empty());
    // Fed one byte at a time, the same packets come out.
    let mut buf = BytesMut::new();
    let mut slow = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[b]);
        while let Some(p) = decode(&mut buf, V311, 1024).unwrap() {
            slow.push(p);
        }
    }
    assert_eq!(slow, out);
}

#[test]
fn frame_length() {
    assert_eq!(decode_frame_length(&[]), Ok(None));
    assert_eq!(decode_frame_length(&[0x30]), Ok(None));
    assert_eq!(decode_frame_length(&[0x30, 0x00]), Ok(Some((2, 0))));
    assert_eq!(decode_frame_length(&[0x30, 0xC1]), Ok(None));
    assert_eq!(decode_frame_length(&[0x30, 0xC1, 0x02]), Ok(Some((3, 321))));
    assert_eq!(decode_frame_length(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]), Ok(Some((5, 268_435_455))));
    assert_eq!(decode_frame_length(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]), Err(DecodeError::MalformedVariableInteger));
    // Regression: a remaining length must use the fewest bytes [MQTT-1.5.5-1].
    assert_eq!(decode_frame_length(&[0x30, 0x80, 0x00]), Err(DecodeError::MalformedVariableInteger));
}

#[test]
fn publish_to_bytes_is_encode() {
    let mut p = Publish::new(topic("a/b"), "abc", QoS::AtLeastOnce);
    p.packet_id = Some(pid(10));
    for v in ALL {
        assert_eq!(p.to_bytes(v).unwrap().to_vec(), encode_one(&Packet::Publish(p.clone()), v));
    }
}

#[test]
fn encoder_refuses_packets_the_receiver_must_refuse() {
    let mut buf = BytesMut::new();
    let publish = |qos, id: Option<u16>| {
        let mut p = Publish::new(topic("a"), "x", qos);
        p.packet_id = id.and_then(PacketId::new);
        p
    };
    let mut cases: Vec<(Packet, ProtocolVersion, EncodeError)> = vec![
        (Packet::Publish(publish(QoS::AtLeastOnce, None)), V311, EncodeError::MissingPacketId),
        (Packet::Publish(publish(QoS::AtMostOnce, Some(1))), V311, EncodeError::UnexpectedPacketId),
        // Regression: DUP on QoS 0 and empty topics used to be encoded, and refused by every receiver.
        (Packet::Publish(Publish { dup: true, ..publish(QoS::AtMostOnce, None) }), V5, EncodeError::DupWithQoS0),
        (Packet::Publish(Publish::new(TopicName::alias_only(), "x", QoS::AtMostOnce)), V5, EncodeError::EmptyTopic),
        (
            Packet::Publish({
                let mut p = Publish::new(TopicName::alias_only(), "x", QoS::AtMostOnce);
                p.properties.topic_alias = Some(1);
                p
            }),
            V311,
            EncodeError::EmptyTopic,
        ),
        (
            Packet::Connect(Box::new(Connect {
                will: Some(Will { topic: TopicName::alias_only(), ..will(QoS::AtMostOnce, false) }),
                ..Connect::new(V5, "c")
            })),
            V5,
            EncodeError::EmptyTopic,
        ),
        (
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![],
                properties: SubscribeProperties::default(),
            }),
            V5,
            EncodeError::EmptyList,
        ),
        (
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(1),
                filters: vec![],
                properties: UnsubscribeProperties::default(),
            }),
            V311,
            EncodeError::EmptyList,
        ),
        (suback(&[]), V311, EncodeError::EmptyList),
        (
            Packet::Publish({
                let mut p = publish(QoS::AtMostOnce, None);
                p.properties.content_type = Some("x".repeat(65_536).into());
                p
            }),
            V5,
            EncodeError::FieldTooLong,
        ),
        (
            Packet::Publish(Publish::new(topic("a"), vec![0u8; 268_435_455], QoS::AtMostOnce)),
            V311,
            EncodeError::PacketTooLarge,
        ),
    ];
    // Regression: out-of-range property values used to be encoded, and a Subscription Identifier above 268,435,455
    // made a corrupt frame (its length counted as 4 bytes, written as 5).
    let mut property_cases: Vec<(Packet, EncodeError)> = Vec::new();
    for ids in [vec![268_435_456], vec![u32::MAX], vec![1, 0]] {
        let mut p = publish(QoS::AtMostOnce, None);
        p.properties.subscription_identifiers = ids;
        property_cases.push((Packet::Publish(p), EncodeError::InvalidPropertyValue(0x0B)));
    }
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties.topic_alias = Some(0);
    property_cases.push((Packet::Publish(p), EncodeError::InvalidPropertyValue(0x23)));
    let mut c = Connect::new(V5, "c");
    c.properties.receive_maximum = Some(0);
    property_cases.push((Packet::Connect(Box::new(c)), EncodeError::InvalidPropertyValue(0x21)));
    let mut c = Connect::new(V5, "c");
    c.properties.user_properties.push(UserProperty::new("k", "v".repeat(65_536)));
    property_cases.push((Packet::Connect(Box::new(c)), EncodeError::FieldTooLong));
    for (props, id) in [
        (ConnAckProperties { maximum_qos: Some(QoS::ExactlyOnce), ..Default::default() }, 0x24),
        (ConnAckProperties { maximum_packet_size: Some(0), ..Default::default() }, 0x27),
        (ConnAckProperties { receive_maximum: Some(0), ..Default::default() }, 0x21),
    ] {
        let packet =
            Packet::ConnAck(ConnAck { session_present: false, reason_code: ReasonCode::Success, properties: props });
        property_cases.push((packet, EncodeError::InvalidPropertyValue(id)));
    }
    property_cases.push((
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(filter("a"), SubscriptionOptions::default())],
            properties: SubscribeProperties { subscription_identifier: Some(0), ..Default::default() },
        }),
        EncodeError::InvalidPropertyValue(0x0B),
    ));
    for (packet, err) in property_cases {
        cases.push((packet, V5, err));
    }
    for (packet, version, err) in cases {
        assert_eq!(encode(&packet, version, &mut buf), Err(err.clone()), "{packet:?}");
        assert_eq!(encoded_len(&packet, version), Err(err));
        assert!(buf.is_empty(), "nothing written on error");
    }
    // The same PUBLISH with a topic alias is fine in 5.0.
    let mut p = Publish::new(TopicName::alias_only(), "x", QoS::AtMostOnce);
    p.properties.topic_alias = Some(1);
    assert!(encode(&Packet::Publish(p), V5, &mut buf).is_ok());
}
