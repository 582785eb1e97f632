//! Every MQTT 5 property (MQTT 5.0 section 2.2.2.2, table 2-4) in every packet that may carry it, as bytes written by
//! hand. The property bytes are written out in full; only the property length and the remaining length are
//! computed, by `props` and `frame`. Each vector decodes to the expected packet and the packet encodes back to it.

mod support;

use bytes::{Bytes, BytesMut};
use corvid_protocol::*;
use support::hex;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A variable byte integer (MQTT 5.0 section 1.5.5).
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

/// A property list: its length, then the properties.
fn props(hex_props: &str) -> String {
    let body = hex(hex_props);
    let mut out: Vec<String> = varint(body.len()).iter().map(|b| format!("{b:02X}")).collect();
    out.push(hex_props.to_string());
    out.join(" ")
}

/// A whole packet: first byte, remaining length, body.
fn frame(first: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend(body);
    out
}

fn check(bytes: Vec<u8>, packet: Packet) {
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, V5, 1 << 20).unwrap(), Some(packet.clone()), "decoding {bytes:02X?}");
    assert!(buf.is_empty());
    let mut out = BytesMut::new();
    encode(&packet, V5, &mut out).unwrap();
    assert_eq!(out.to_vec(), bytes, "encoding {packet:?}");
    assert_eq!(encoded_len(&packet, V5).unwrap(), bytes.len());
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

// User property "k" = "v": 26 00 01 6B 00 01 76.
const USER_KV: &str = "26 00 01 6B 00 01 76";

fn user_kv() -> Vec<UserProperty> {
    vec![UserProperty::new("k", "v")]
}

#[test]
fn connect_and_will_properties() {
    let connect_props = props(
        "11 00 00 0E 10
         21 00 14
         27 00 00 40 00
         22 00 0A
         19 01
         17 00
         15 00 05 53 43 52 41 4D
         16 00 02 AB CD
         26 00 01 6B 00 01 76",
    );
    let will_props = props(
        "18 00 00 00 1E
         01 01
         02 00 00 01 2C
         03 00 0A 74 65 78 74 2F 70 6C 61 69 6E
         08 00 03 72 2F 74
         09 00 02 01 02
         26 00 01 6B 00 01 76",
    );
    let body = format!(
        "00 04 4D 51 54 54  05  06  00 3C  {connect_props}
         00 01 63  {will_props}  00 03 77 2F 74  00 03 62 79 65"
    );
    let mut c = Connect::new(V5, "c");
    c.properties = ConnectProperties {
        session_expiry_interval: Some(3600),
        receive_maximum: Some(20),
        maximum_packet_size: Some(16384),
        topic_alias_maximum: Some(10),
        request_response_information: Some(true),
        request_problem_information: Some(false),
        authentication_method: Some("SCRAM".into()),
        authentication_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
        user_properties: user_kv(),
    };
    c.will = Some(Will {
        topic: TopicName::new("w/t").unwrap(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(30),
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(300),
            content_type: Some("text/plain".into()),
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(&[1, 2])),
            user_properties: user_kv(),
        },
    });
    check(frame(0x10, &body), Packet::Connect(Box::new(c)));
}

#[test]
fn connack_properties() {
    let p = props(
        "11 00 00 00 3C
         21 00 0A
         24 01
         25 00
         27 00 01 00 00
         12 00 04 61 75 74 6F
         22 00 05
         1F 00 02 6F 6B
         28 00
         29 01
         2A 00
         13 00 1E
         1A 00 03 72 2F 69
         1C 00 05 6F 74 68 65 72
         15 00 05 53 43 52 41 4D
         16 00 01 FF
         26 00 01 6B 00 01 76",
    );
    let c = ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: Some(60),
            receive_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(65536),
            assigned_client_identifier: Some("auto".into()),
            topic_alias_maximum: Some(5),
            reason_string: Some("ok".into()),
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some("r/i".into()),
            server_reference: Some("other".into()),
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(&[0xFF])),
            user_properties: user_kv(),
        },
    };
    check(frame(0x20, &format!("00 00 {p}")), Packet::ConnAck(c));
    // Maximum QoS 0 is the other allowed value.
    let c = ConnAck {
        session_present: true,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties { maximum_qos: Some(QoS::AtMostOnce), ..Default::default() },
    };
    check(frame(0x20, "01 00 02 24 00"), Packet::ConnAck(c));
}

#[test]
fn publish_properties() {
    let p = props(
        "01 00
         02 00 00 00 0A
         23 00 07
         08 00 05 72 65 70 6C 79
         09 00 03 63 69 64
         0B 01
         0B FF FF FF 7F
         03 00 04 6A 73 6F 6E
         26 00 01 6B 00 01 76
         26 00 01 6B 00 01 77",
    );
    let mut publish = Publish::new(TopicName::new("a/b").unwrap(), "{}", QoS::AtLeastOnce);
    publish.packet_id = Some(pid(5));
    publish.properties = PublishProperties {
        payload_format_indicator: Some(false),
        message_expiry_interval: Some(10),
        topic_alias: Some(7),
        response_topic: Some("reply".into()),
        correlation_data: Some(Bytes::from_static(b"cid")),
        // Subscription identifiers repeat, 1 to 268,435,455.
        subscription_identifiers: vec![1, 268_435_455],
        content_type: Some("json".into()),
        // User properties repeat, keys too, in order.
        user_properties: vec![UserProperty::new("k", "v"), UserProperty::new("k", "w")],
    }
    .into();
    check(frame(0x32, &format!("00 03 61 2F 62  00 05  {p}  7B 7D")), Packet::Publish(publish));
}

#[test]
fn ack_properties_in_every_ack() {
    let p = props(&format!("1F 00 04 62 75 73 79  {USER_KV}"));
    let properties = AckProperties { reason_string: Some("busy".into()), user_properties: user_kv() };
    let response =
        |code: ReasonCode| PubResponse { packet_id: pid(9), reason_code: code, properties: properties.clone() };
    check(frame(0x40, &format!("00 09 97 {p}")), Packet::PubAck(response(ReasonCode::QuotaExceeded)));
    check(frame(0x50, &format!("00 09 00 {p}")), Packet::PubRec(response(ReasonCode::Success)));
    check(frame(0x62, &format!("00 09 92 {p}")), Packet::PubRel(response(ReasonCode::PacketIdentifierNotFound)));
    check(frame(0x70, &format!("00 09 00 {p}")), Packet::PubComp(response(ReasonCode::Success)));
    check(
        frame(0x90, &format!("00 09 {p} 01 80")),
        Packet::SubAck(SubAck {
            packet_id: pid(9),
            reason_codes: vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
            properties: properties.clone(),
        }),
    );
    check(
        frame(0xB0, &format!("00 09 {p} 00")),
        Packet::UnsubAck(UnsubAck { packet_id: pid(9), reason_codes: vec![ReasonCode::Success], properties }),
    );
}

#[test]
fn subscribe_and_unsubscribe_properties() {
    let p = props(&format!("0B 80 01  {USER_KV}"));
    check(
        frame(0x82, &format!("00 03 {p} 00 01 23 01")),
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            filters: vec![(TopicFilter::new("#").unwrap(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            properties: SubscribeProperties { subscription_identifier: Some(128), user_properties: user_kv() },
        }),
    );
    let p = props(USER_KV);
    check(
        frame(0xA2, &format!("00 04 {p} 00 01 23")),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            filters: vec![TopicFilter::new("#").unwrap()],
            properties: UnsubscribeProperties { user_properties: user_kv() },
        }),
    );
}

#[test]
fn disconnect_properties() {
    let p = props(&format!("11 FF FF FF FF  1F 00 03 62 79 65  1C 00 02 73 32  {USER_KV}"));
    check(
        frame(0xE0, &format!("9C {p}")),
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::UseAnotherServer,
            properties: DisconnectProperties {
                session_expiry_interval: Some(u32::MAX),
                reason_string: Some("bye".into()),
                server_reference: Some("s2".into()),
                user_properties: user_kv(),
            },
        }),
    );
}

#[test]
fn auth_properties() {
    let p = props(&format!("15 00 05 53 43 52 41 4D  16 00 00  1F 00 02 6F 6B  {USER_KV}"));
    check(
        frame(0xF0, &format!("18 {p}")),
        Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(Bytes::new()),
                reason_string: Some("ok".into()),
                user_properties: user_kv(),
            },
        }),
    );
}

#[test]
fn property_order_does_not_matter() {
    // The encoder writes properties in one fixed order; any order decodes the same.
    let forward = frame(0x30, &format!("00 01 61 {} 78", props("02 00 00 00 0A  23 00 07  03 00 01 63")));
    let backward = frame(0x30, &format!("00 01 61 {} 78", props("03 00 01 63  23 00 07  02 00 00 00 0A")));
    let a = decode(&mut BytesMut::from(&forward[..]), V5, 1024).unwrap();
    let b = decode(&mut BytesMut::from(&backward[..]), V5, 1024).unwrap();
    assert!(a.is_some());
    assert_eq!(a, b);
}

#[test]
fn properties_are_not_read_before_5_0() {
    // In 3.1.1 the byte after the packet identifier is payload, not a property length.
    let bytes = frame(0x32, "00 01 61  00 01  03 23 00 07");
    let p = decode(&mut BytesMut::from(&bytes[..]), ProtocolVersion::V3_1_1, 1024).unwrap().unwrap();
    let Packet::Publish(p) = p else { panic!("not a PUBLISH") };
    assert_eq!(&p.payload[..], &hex("03 23 00 07")[..]);
    assert_eq!(p.properties, PublishProperties::default());
}
