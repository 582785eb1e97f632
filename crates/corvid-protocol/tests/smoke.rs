//! Smoke test: one round trip per version.
use bytes::BytesMut;
use corvid_protocol::*;

#[test]
fn publish_round_trip_all_versions() {
    for v in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut p = Publish::new(TopicName::new("a/b").unwrap(), "hello", QoS::AtLeastOnce);
        p.packet_id = PacketId::new(7);
        if v.is_v5() {
            p.properties.message_expiry_interval = Some(30);
            p.properties.user_properties.push(UserProperty::new("k", "v"));
        }
        let mut buf = BytesMut::new();
        encode(&Packet::Publish(p.clone()), v, &mut buf).unwrap();
        assert_eq!(decode(&mut buf, v, 1 << 20).unwrap(), Some(Packet::Publish(p)));
    }
}
