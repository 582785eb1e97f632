//! The encoder: exact lengths first, then one pass of writes into a `BytesMut`.

use crate::error::EncodeError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketType, PubResponse, Publish, RetainHandling, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};
use crate::reason::ReasonCode;
use crate::version::{ProtocolVersion, QoS};
use crate::wire::{MAX_VARINT, put_binary, put_varint, varint_len};
use bytes::{BufMut, Bytes, BytesMut};

/// Encodes `packet` as `version` speaks it, appending to `buf`.
///
/// Fields a version lacks (properties and reason codes before 5.0) are left out; reason codes map onto 3.x return
/// codes. The whole length is computed first, so `buf` grows at most once. A packet its receiver would have to
/// refuse as malformed (a QoS 1 PUBLISH without packet identifier, an empty topic without alias, ...) is an error
/// and nothing is written.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if let Packet::Publish(p) = packet {
        return encode_publish(p, version, buf);
    }
    let remaining = remaining_len(packet, version)?;
    buf.reserve(1 + varint_len(remaining as u32) + remaining);
    buf.put_u8(first_byte(packet));
    put_varint(buf, remaining as u32);
    let body_start = buf.len();
    write_body(packet, version, buf);
    debug_assert_eq!(buf.len() - body_start, remaining, "length of {:?}", packet.packet_type());
    Ok(())
}

/// The whole encoded size of `packet` in `version`, fixed header included: what [`encode`] appends.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let remaining = remaining_len(packet, version)?;
    Ok(1 + varint_len(remaining as u32) + remaining)
}

impl Publish {
    /// Encodes this PUBLISH once into shareable bytes, for sending the same bytes to many receivers.
    pub fn to_bytes(&self, version: ProtocolVersion) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        encode_publish(self, version, &mut buf)?;
        Ok(buf.freeze())
    }
}

fn encode_publish(p: &Publish, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    let remaining = publish_len(p, v5)?;
    buf.reserve(1 + varint_len(remaining as u32) + remaining);
    buf.put_u8((PacketType::Publish.as_u8() << 4) | (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain));
    put_varint(buf, remaining as u32);
    let body_start = buf.len();
    write_publish(p, v5, buf);
    debug_assert_eq!(buf.len() - body_start, remaining, "length of PUBLISH");
    Ok(())
}

fn first_byte(packet: &Packet) -> u8 {
    let flags = match packet {
        Packet::Publish(p) => (u8::from(p.dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    (packet.packet_type().as_u8() << 4) | flags
}

/// The remaining length of a PUBLISH, after checking that its receiver would accept it.
fn publish_len(p: &Publish, v5: bool) -> Result<usize, EncodeError> {
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, Some(_)) => return Err(EncodeError::UnexpectedPacketId),
        (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => return Err(EncodeError::MissingPacketId),
        _ => {}
    }
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError::DupWithQoS0);
    }
    if p.topic.is_empty() && !(v5 && p.properties.topic_alias.is_some()) {
        return Err(EncodeError::EmptyTopic);
    }
    let props = if v5 {
        p.properties.check()?;
        p.properties.wire_len()
    } else {
        0
    };
    let len = string_len(p.topic.as_bytes())? + if p.packet_id.is_some() { 2 } else { 0 } + props + p.payload.len();
    if len > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(len)
}

fn string_len(s: &[u8]) -> Result<usize, EncodeError> {
    if s.len() > 0xFFFF {
        return Err(EncodeError::FieldTooLong);
    }
    Ok(2 + s.len())
}

/// Whether a response carries only the packet identifier (3.x always; 5.0 when it is a plain success).
fn short_response(r: &PubResponse, v5: bool) -> bool {
    !v5 || (r.reason_code == ReasonCode::Success && r.properties.is_empty())
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let v5 = version.is_v5();
    let len = match packet {
        Packet::Connect(c) => connect_len(c)?,
        Packet::ConnAck(c) => {
            2 + if v5 {
                c.properties.check()?;
                c.properties.wire_len()
            } else {
                0
            }
        }
        Packet::Publish(p) => publish_len(p, v5)?,
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            if short_response(r, v5) {
                2
            } else {
                r.properties.check()?;
                3 + r.properties.wire_len()
            }
        }
        Packet::Subscribe(s) => {
            if s.filters.is_empty() {
                return Err(EncodeError::EmptyList);
            }
            if v5 {
                s.properties.check()?;
            }
            let mut len = 2 + if v5 { s.properties.wire_len() } else { 0 };
            for (filter, _) in &s.filters {
                len += string_len(filter.as_bytes())? + 1;
            }
            len
        }
        Packet::SubAck(s) => {
            if s.reason_codes.is_empty() {
                return Err(EncodeError::EmptyList);
            }
            2 + s.reason_codes.len() + if v5 { ack_props_len(&s.properties)? } else { 0 }
        }
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(EncodeError::EmptyList);
            }
            if v5 {
                u.properties.check()?;
            }
            let mut len = 2 + if v5 { u.properties.wire_len() } else { 0 };
            for filter in &u.filters {
                len += string_len(filter.as_bytes())?;
            }
            len
        }
        Packet::UnsubAck(u) => {
            if v5 {
                if u.reason_codes.is_empty() {
                    return Err(EncodeError::EmptyList);
                }
                2 + ack_props_len(&u.properties)? + u.reason_codes.len()
            } else {
                2
            }
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => {
            if !v5 || (d.reason_code == ReasonCode::Success && d.properties == Default::default()) {
                0
            } else {
                d.properties.check()?;
                1 + d.properties.wire_len()
            }
        }
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotInVersion(PacketType::Auth));
            }
            if short_auth(a) {
                0
            } else {
                a.properties.check()?;
                1 + a.properties.wire_len()
            }
        }
    };
    if len > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(len)
}

fn ack_props_len(props: &crate::properties::AckProperties) -> Result<usize, EncodeError> {
    props.check()?;
    Ok(props.wire_len())
}

fn connect_len(c: &Connect) -> Result<usize, EncodeError> {
    let v5 = c.protocol.is_v5();
    let mut len = string_len(c.protocol.protocol_name().as_bytes())? + 1 + 1 + 2;
    if v5 {
        c.properties.check()?;
        len += c.properties.wire_len();
    }
    len += string_len(c.client_id.as_bytes())?;
    if let Some(will) = &c.will {
        if will.topic.is_empty() {
            return Err(EncodeError::EmptyTopic);
        }
        if v5 {
            will.properties.check()?;
            len += will.properties.wire_len();
        }
        len += string_len(will.topic.as_bytes())? + string_len(&will.payload)?;
    }
    if let Some(username) = &c.username {
        len += string_len(username.as_bytes())?;
    }
    if let Some(password) = &c.password {
        len += string_len(password)?;
    }
    Ok(len)
}

fn write_body(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => write_connect(c, buf),
        Packet::ConnAck(c) => write_connack(c, version, buf),
        Packet::Publish(p) => write_publish(p, v5, buf),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            buf.put_u16(r.packet_id.get());
            if !short_response(r, v5) {
                buf.put_u8(r.reason_code.as_u8());
                r.properties.write(buf);
            }
        }
        Packet::Subscribe(s) => write_subscribe(s, v5, buf),
        Packet::SubAck(s) => write_suback(s, v5, buf),
        Packet::Unsubscribe(u) => write_unsubscribe(u, v5, buf),
        Packet::UnsubAck(u) => write_unsuback(u, v5, buf),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => write_disconnect(d, v5, buf),
        Packet::Auth(a) => write_auth(a, buf),
    }
}

fn write_connect(c: &Connect, buf: &mut BytesMut) {
    put_binary(buf, c.protocol.protocol_name().as_bytes());
    buf.put_u8(c.protocol.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos.as_u8() << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    let v5 = c.protocol.is_v5();
    if v5 {
        c.properties.write(buf);
    }
    put_binary(buf, c.client_id.as_bytes());
    if let Some(will) = &c.will {
        if v5 {
            will.properties.write(buf);
        }
        put_binary(buf, will.topic.as_bytes());
        put_binary(buf, &will.payload);
    }
    if let Some(username) = &c.username {
        put_binary(buf, username.as_bytes());
    }
    if let Some(password) = &c.password {
        put_binary(buf, password);
    }
}

fn write_connack(c: &ConnAck, version: ProtocolVersion, buf: &mut BytesMut) {
    // MQTT 3.1 has no session-present flag: the byte is reserved.
    let session_present = c.session_present && version != ProtocolVersion::V3_1;
    buf.put_u8(u8::from(session_present));
    if version.is_v5() {
        buf.put_u8(c.reason_code.as_u8());
        c.properties.write(buf);
    } else {
        buf.put_u8(c.reason_code.connack_return_code());
    }
}

fn write_publish(p: &Publish, v5: bool, buf: &mut BytesMut) {
    put_binary(buf, p.topic.as_bytes());
    if let Some(id) = p.packet_id {
        buf.put_u16(id.get());
    }
    if v5 {
        p.properties.write(buf);
    }
    buf.put_slice(&p.payload);
}

fn write_subscribe(s: &Subscribe, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id.get());
    if v5 {
        s.properties.write(buf);
    }
    for (filter, o) in &s.filters {
        put_binary(buf, filter.as_bytes());
        let mut bits = o.qos.as_u8();
        if v5 {
            bits |= u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3;
            bits |= match o.retain_handling {
                RetainHandling::SendAtSubscribe => 0,
                RetainHandling::SendIfNew => 1,
                RetainHandling::DoNotSend => 2,
            } << 4;
        }
        buf.put_u8(bits);
    }
}

fn write_suback(s: &SubAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id.get());
    if v5 {
        s.properties.write(buf);
        for code in &s.reason_codes {
            buf.put_u8(code.as_u8());
        }
    } else {
        for code in &s.reason_codes {
            let byte = code.as_u8();
            buf.put_u8(if byte <= 0x02 { byte } else { 0x80 });
        }
    }
}

fn write_unsubscribe(u: &Unsubscribe, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(u.packet_id.get());
    if v5 {
        u.properties.write(buf);
    }
    for filter in &u.filters {
        put_binary(buf, filter.as_bytes());
    }
}

fn write_unsuback(u: &UnsubAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(u.packet_id.get());
    if v5 {
        u.properties.write(buf);
        for code in &u.reason_codes {
            buf.put_u8(code.as_u8());
        }
    }
}

fn write_disconnect(d: &Disconnect, v5: bool, buf: &mut BytesMut) {
    if v5 && (d.reason_code != ReasonCode::Success || d.properties != Default::default()) {
        buf.put_u8(d.reason_code.as_u8());
        d.properties.write(buf);
    }
}

/// Whether an AUTH is a plain success, sent without reason code and properties (MQTT 5.0 section 3.15.2.1).
fn short_auth(a: &Auth) -> bool {
    a.reason_code == ReasonCode::Success && a.properties == Default::default()
}

fn write_auth(a: &Auth, buf: &mut BytesMut) {
    if !short_auth(a) {
        buf.put_u8(a.reason_code.as_u8());
        a.properties.write(buf);
    }
}
