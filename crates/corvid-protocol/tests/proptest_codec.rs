//! Property tests: arbitrary valid packets of every type and version round-trip exactly; arbitrary and mutated bytes
//! never panic the decoder, decode the same whole or split at any position, and never make it reserve more than the
//! packet size limit.

mod support;

use bytes::{Bytes, BytesMut};
use corvid_protocol::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use support::fuzz_check::{check_decode, decode_all, decode_split};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------------------------------------------
// Field strategies

fn string() -> impl Strategy<Value = ByteString> {
    "[a-zA-Z0-9é€𝄞 _/+#-]{0,10}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((string(), string()).prop_map(|(k, v)| UserProperty { key: k, value: v }), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).unwrap())
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    (prop_oneof![4 => Just(""), 1 => Just("$SYS/")], vec("[a-z0-9é€ _-]{0,4}", 1..5))
        .prop_filter_map("empty topic", |(prefix, levels)| TopicName::new(format!("{prefix}{}", levels.join("/"))).ok())
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    (vec(prop_oneof![3 => "[a-z0-9é _-]{0,4}", 1 => Just("+".to_string())], 1..5), any::<bool>(), of("[a-z0-9]{1,4}"))
        .prop_filter_map("invalid filter", |(mut levels, hash, share)| {
            if hash {
                levels.push("#".into());
            }
            let filter = levels.join("/");
            let filter = match share {
                Some(group) => format!("$share/{group}/{filter}"),
                None => filter,
            };
            TopicFilter::new(filter).ok()
        })
}

/// One of `codes`, as a reason code.
fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(|c| ReasonCode::from_u8(c).unwrap())
}

/// Authentication method and data: data only with a method.
fn auth_pair() -> impl Strategy<Value = (Option<ByteString>, Option<Bytes>)> {
    prop_oneof![Just((None, None)), (string(), of(binary())).prop_map(|(m, d)| (Some(m), d)),]
}

// ---------------------------------------------------------------------------------------------------------------
// Property strategies (MQTT 5 only)

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(1..=u32::MAX),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        auth_pair(),
        users(),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, (am, ad), up)| ConnectProperties {
            session_expiry_interval: sei,
            receive_maximum: rm,
            maximum_packet_size: mps,
            topic_alias_maximum: tam,
            request_response_information: rri,
            request_problem_information: rpi,
            authentication_method: am,
            authentication_data: ad,
            user_properties: up,
        })
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (of(any::<u32>()), of(any::<bool>()), of(any::<u32>()), of(string()), of(string()), of(binary()), users()).prop_map(
        |(wdi, pfi, mei, ct, rt, cd, up)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        },
    )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            of(any::<u32>()),
            of(1..=u16::MAX),
            of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
            of(any::<bool>()),
            of(1..=u32::MAX),
            of(string()),
            of(any::<u16>()),
            of(string()),
        ),
        (
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
            of(string()),
            of(string()),
            auth_pair(),
            users(),
        ),
    )
        .prop_map(|((sei, rm, mq, ra, mps, aci, tam, rs), (wsa, sia, ssa, ska, ri, sr, (am, ad), up))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_method: am,
                authentication_data: ad,
                user_properties: up,
            }
        })
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        of(any::<bool>()),
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(string()),
        of(binary()),
        vec(1..=268_435_455u32, 0..3),
        of(string()),
        users(),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, si, ct, up)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            subscription_identifiers: si,
            content_type: ct,
            user_properties: up,
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (of(string()), users()).prop_map(|(rs, up)| AckProperties { reason_string: rs, user_properties: up })
}

// ---------------------------------------------------------------------------------------------------------------
// Packet strategies, one per packet type; `v5` decides whether properties and reason codes are generated.

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let will = (topic_name(), binary(), qos(), any::<bool>(), will_properties()).prop_map(
        move |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties: if v5 { properties } else { Default::default() },
        },
    );
    (any::<bool>(), any::<u16>(), string(), of(will), of(string()), of(binary()), connect_properties()).prop_map(
        move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
            // Before 5.0 a password needs a user name.
            let password = if v5 || username.is_some() { password } else { None };
            Packet::Connect(Box::new(Connect {
                protocol: version,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties: if v5 { properties } else { Default::default() },
            }))
        },
    )
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B,
    0x9C, 0x9D, 0x9F,
];
const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (any::<bool>(), reason(if v5 { CONNACK_V5 } else { CONNACK_V3 }), connack_properties()).prop_map(
        move |(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                // MQTT 3.1 has no session-present flag.
                session_present: session_present && version != V31,
                reason_code,
                properties: if v5 { properties } else { Default::default() },
            })
        },
    )
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        vec(any::<u8>(), 0..64),
        publish_properties(),
    )
        .prop_map(move |(qos, dup, retain, topic, alias_only, id, payload, properties)| {
            let properties = if v5 { properties } else { Default::default() };
            // In 5.0 a PUBLISH with a topic alias may leave the topic name empty.
            let topic =
                if v5 && alias_only && properties.topic_alias.is_some() { TopicName::alias_only() } else { topic };
            Packet::Publish(Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(id),
                payload: Bytes::from(payload),
                properties: properties.into(),
            })
        })
}

const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_V5: &[u8] = &[0x00, 0x92];

fn pub_response(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (0..4usize, packet_id(), reason(PUBACK_V5), reason(PUBREL_V5), ack_properties()).prop_map(
        move |(kind, packet_id, ack_code, rel_code, properties)| {
            let reason_code = match (v5, kind) {
                (false, _) => ReasonCode::Success,
                (true, 0 | 1) => ack_code,
                (true, _) => rel_code,
            };
            let r =
                PubResponse { packet_id, reason_code, properties: if v5 { properties } else { Default::default() } };
            match kind {
                0 => Packet::PubAck(r),
                1 => Packet::PubRec(r),
                2 => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            }
        },
    )
}

fn subscription_options(version: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let v5 = version.is_v5();
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendIfNew),
            Just(RetainHandling::DoNotSend)
        ],
    )
        .prop_map(move |(qos, no_local, retain_as_published, retain_handling)| {
            if v5 {
                SubscriptionOptions { qos, no_local, retain_as_published, retain_handling }
            } else {
                SubscriptionOptions::qos(qos)
            }
        })
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (packet_id(), vec((topic_filter(), subscription_options(version)), 1..5), of(1..=268_435_455u32), users()).prop_map(
        move |(packet_id, mut filters, id, user_properties)| {
            for (filter, options) in &mut filters {
                // No Local is a protocol error on a shared subscription.
                if filter.shared().is_some() {
                    options.no_local = false;
                }
            }
            let properties = if v5 {
                SubscribeProperties { subscription_identifier: id, user_properties }
            } else {
                Default::default()
            };
            Packet::Subscribe(Subscribe { packet_id, filters, properties })
        },
    )
}

const SUBACK_V5: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (packet_id(), vec(reason(if v5 { SUBACK_V5 } else { SUBACK_V3 }), 1..6), ack_properties()).prop_map(
        move |(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties: if v5 { properties } else { Default::default() },
            })
        },
    )
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (packet_id(), vec(topic_filter(), 1..5), users()).prop_map(move |(packet_id, filters, user_properties)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            properties: if v5 { UnsubscribeProperties { user_properties } } else { Default::default() },
        })
    })
}

const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (packet_id(), vec(reason(UNSUBACK_V5), 1..6), ack_properties()).prop_map(
        move |(packet_id, reason_codes, properties)| {
            // 3.x UNSUBACK carries no reason codes.
            Packet::UnsubAck(if v5 {
                UnsubAck { packet_id, reason_codes, properties }
            } else {
                UnsubAck { packet_id, reason_codes: Vec::new(), properties: Default::default() }
            })
        },
    )
}

const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (reason(DISCONNECT_V5), of(any::<u32>()), of(string()), of(string()), users()).prop_map(
        move |(reason_code, sei, rs, sr, up)| {
            Packet::Disconnect(if v5 {
                Disconnect {
                    reason_code,
                    properties: DisconnectProperties {
                        session_expiry_interval: sei,
                        reason_string: rs,
                        server_reference: sr,
                        user_properties: up,
                    },
                }
            } else {
                Disconnect::new(ReasonCode::Success)
            })
        },
    )
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(&[0x00, 0x18, 0x19]), auth_pair(), of(string()), users()).prop_map(|(reason_code, (am, ad), rs, up)| {
        Packet::Auth(Auth {
            reason_code,
            properties: AuthProperties {
                authentication_method: am,
                authentication_data: ad,
                reason_string: rs,
                user_properties: up,
            },
        })
    })
}

/// Any valid packet of `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        pub_response(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() { prop_oneof![10 => common, 1 => auth()].boxed() } else { common.boxed() }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V31), Just(V311), Just(V5)]
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

fn encode_to_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    buf.to_vec()
}

// ---------------------------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_packets_round_trip((version, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).unwrap();
        prop_assert_eq!(encoded_len(&packet, version).unwrap(), buf.len());
        let len = buf.len() as u32;
        // The exact size is within the limit; one byte less is not.
        let decoded = decode(&mut buf, version, len).unwrap();
        prop_assert_eq!(decoded.as_ref(), Some(&packet));
        prop_assert!(buf.is_empty());
        let mut again = BytesMut::from(&encode_to_vec(&packet, version)[..]);
        let too_small = decode(&mut again, version, len - 1);
        let is_too_large = matches!(too_small, Err(DecodeError::PacketTooLarge { .. }));
        prop_assert!(is_too_large);
    }

    #[test]
    fn publish_to_bytes_equals_encode((version, packet) in version().prop_flat_map(|v| publish(v).prop_map(move |p| (v, p)))) {
        let Packet::Publish(p) = &packet else { unreachable!() };
        prop_assert_eq!(p.to_bytes(version).unwrap().to_vec(), encode_to_vec(&packet, version));
    }

    #[test]
    fn streams_of_valid_packets_decode_the_same_at_any_split(
        version in version(),
        packets in version().prop_flat_map(|v| vec(packet(v).prop_map(move |p| (v, p)), 1..4)),
    ) {
        // Each packet is encoded in its own version's wire format, decoded with the stream's version only when
        // they match; otherwise just the framing and the no-panic property are checked.
        let bytes: Vec<u8> = packets.iter().flat_map(|(v, p)| encode_to_vec(p, *v)).collect();
        let whole = decode_all(&bytes, version, 1 << 20);
        if packets.iter().all(|(v, _)| *v == version) {
            let expected: Vec<_> = packets.iter().map(|(_, p)| Ok(p.clone())).collect();
            prop_assert_eq!(&whole, &expected);
        }
        for at in 0..=bytes.len() {
            prop_assert_eq!(&decode_split(&bytes, at, version, 1 << 20), &whole, "split at {}", at);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_the_same(data in vec(any::<u8>(), 0..200)) {
        // check_decode: every version and size limit, every split position, capacity bound, round trips.
        check_decode(&data);
    }

    #[test]
    fn mutated_packets_never_panic_and_split_the_same(
        (version, packet) in versioned_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
    ) {
        let mut bytes = encode_to_vec(&packet, version);
        for (at, byte, op) in edits {
            match op {
                0 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] = byte; }
                1 => { let i = at.index(bytes.len() + 1); bytes.insert(i, byte); }
                _ if !bytes.is_empty() => { bytes.remove(at.index(bytes.len())); }
                _ => {}
            }
        }
        check_decode(&bytes);
    }

    #[test]
    fn large_declared_lengths_never_reserve_past_the_limit(
        first in any::<u8>(),
        remaining in 0..268_435_455u32,
        max in 2..100_000u32,
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![first];
        let mut v = remaining;
        loop {
            let mut b = (v % 128) as u8;
            v /= 128;
            if v > 0 { b |= 0x80; }
            bytes.push(b);
            if v == 0 { break; }
        }
        bytes.extend_from_slice(&body);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode(&mut buf, V5, max);
        prop_assert!(buf.capacity() <= max as usize + bytes.len(), "capacity {}", buf.capacity());
    }
}

#[test]
fn every_packet_type_is_generated_in_every_version() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for version in [V31, V311, V5] {
        let strategy = packet(version);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let p = strategy.new_tree(&mut runner).unwrap().current();
            seen.insert(p.packet_type().as_u8());
        }
        let expected = if version.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{version}: {seen:?}");
    }
}
