//! The incremental, strict decoder.
//!
//! [`decode`] takes whatever bytes have arrived: a partial packet (it answers `Ok(None)` and waits), one packet, or
//! many (call it again). The packet size is checked against the limit from the fixed header alone, before the body
//! is buffered. PUBLISH topics, properties and payloads come out as slices of the read buffer, with no copy. The
//! strings and binary fields of CONNECT, SUBSCRIBE and UNSUBSCRIBE are copies of exactly their size: a server keeps
//! them (client identifier, user name, will, topic filters) as long as the session lives, and a slice would keep
//! the whole read buffer alive with them (a copy of the whole packet, its headers and the strings not kept).

use crate::error::DecodeError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, PubResponse, Publish, RetainHandling, SubAck,
    Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, PublishProperties,
    SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use crate::reason::ReasonCode;
use crate::sparse::Sparse;
use crate::topic::{TopicError, TopicFilter, TopicName};
use crate::version::{ProtocolVersion, QoS};
use crate::wire::Reader;
use bytes::{Buf, Bytes, BytesMut};

/// Reads the fixed header at the start of `buf`: `Some((header_len, remaining_len))`, or `None` when more bytes
/// are needed to know.
///
/// The remaining length must be a minimally encoded variable byte integer of at most four bytes (MQTT 5.0
/// section 1.5.5); anything else is [`DecodeError::MalformedVariableInteger`].
pub fn decode_frame_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                // A last byte of zero after a continuation: not the minimum number of bytes [MQTT-1.5.5-1].
                return Err(DecodeError::MalformedVariableInteger);
            }
            return Ok(Some((2 + i, remaining)));
        }
    }
    Err(DecodeError::MalformedVariableInteger)
}

/// Decodes one packet from the front of `buf`, removing its bytes.
///
/// `version` is the connection's protocol version; CONNECT is decoded whatever it is, since it names its own.
/// `max_packet_size` bounds the whole packet (fixed header included). `Ok(None)` means more bytes are needed; the
/// buffer has then been given the capacity for the rest of the packet, growing to at most `max_packet_size` bytes.
///
/// Errors are reported as early as the bytes allow: a bad first byte (packet type or flags) as soon as it arrives,
/// an oversized packet as soon as its fixed header is complete, before the body is buffered. After an error the
/// connection is to be closed: the buffer's contents are unspecified.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_first_byte(first, version)?;
    let Some((header_len, remaining)) = decode_frame_length(buf)? else {
        return Ok(None);
    };
    let size = header_len + remaining;
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
    }
    if buf.len() < size {
        if buf.capacity() < size {
            grow(buf, size, max_packet_size);
        }
        return Ok(None);
    }
    if packet_type == PacketType::Publish {
        // The payload takes the frame itself: a slice of the read buffer, no copy.
        let frame = buf.split_to(size).freeze();
        return publish(frame, header_len, first & 0x0F, version.is_v5());
    }
    let frame = buf.split_to(size).freeze();
    decode_frame(&frame, packet_type, first & 0x0F, header_len, version).map(Some)
}

/// The capacity a buffer is grown to at least, when the packet size limit allows: a typical read buffer.
const MIN_GROWTH: usize = 4096;

/// Gives `buf` room for a whole packet of `size` bytes, never more than the limit.
///
/// `BytesMut::reserve` grows amortized and may double the allocation, so a peer announcing a packet just under the
/// limit could make a connection hold up to twice the limit. The partial packet is moved instead into a buffer of
/// exactly the packet's size (or [`MIN_GROWTH`] when larger and within the limit, so that later reads into it are
/// not tiny).
fn grow(buf: &mut BytesMut, size: usize, max_packet_size: u32) {
    let capacity = size.max(MIN_GROWTH.min(max_packet_size as usize));
    let mut grown = BytesMut::with_capacity(capacity);
    grown.extend_from_slice(buf);
    *buf = grown;
}

/// Validates the first byte of a packet: its type, and the flags that type requires (MQTT 5.0 section 2.1.3).
fn check_first_byte(first: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let flags = first & 0x0F;
    let packet_type = match PacketType::from_u8(first >> 4) {
        Some(PacketType::Auth) if !version.is_v5() => {
            return Err(DecodeError::ReservedPacketType(15));
        }
        Some(packet_type) => packet_type,
        None => return Err(DecodeError::ReservedPacketType(first >> 4)),
    };
    match packet_type {
        PacketType::Publish => {
            if flags & 0x06 == 0x06 {
                return Err(DecodeError::InvalidQoS);
            }
            if flags & 0x0E == 0x08 {
                return Err(DecodeError::DupWithQoS0);
            }
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            if flags != 0b0010 {
                return Err(DecodeError::InvalidFlags { packet_type, flags });
            }
        }
        _ => {
            if flags != 0 {
                return Err(DecodeError::InvalidFlags { packet_type, flags });
            }
        }
    }
    Ok(packet_type)
}

/// Decodes one whole packet other than PUBLISH, whose first byte has been checked and whose body starts at
/// `header_len`.
fn decode_frame(
    frame: &Bytes,
    packet_type: PacketType,
    flags: u8,
    header_len: usize,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let v5 = version.is_v5();
    let mut r = if matches!(packet_type, PacketType::Connect | PacketType::Subscribe | PacketType::Unsubscribe) {
        // What these carry (client identifier, user name, will, topic filters) lives as long as the session.
        Reader::detaching(frame, header_len)
    } else {
        Reader::new(frame, header_len)
    };
    let packet = match packet_type {
        // `decode` calls `publish` itself, so that the payload can take the frame; this arm keeps the match whole.
        PacketType::Publish => {
            return publish(frame.clone(), header_len, flags, v5)?.ok_or(DecodeError::Truncated);
        }
        PacketType::Connect => Packet::Connect(Box::new(connect(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(connack(&mut r, version)?),
        PacketType::PubAck => Packet::PubAck(pub_response(&mut r, packet_type, v5)?),
        PacketType::PubRec => Packet::PubRec(pub_response(&mut r, packet_type, v5)?),
        PacketType::PubRel => Packet::PubRel(pub_response(&mut r, packet_type, v5)?),
        PacketType::PubComp => Packet::PubComp(pub_response(&mut r, packet_type, v5)?),
        PacketType::Subscribe => Packet::Subscribe(subscribe(&mut r, v5)?),
        PacketType::SubAck => Packet::SubAck(suback(&mut r, v5)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(&mut r, v5)?),
        PacketType::UnsubAck => Packet::UnsubAck(unsuback(&mut r, v5)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(disconnect(&mut r, v5)?),
        PacketType::Auth => Packet::Auth(auth(&mut r)?),
    };
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(packet)
}

fn packet_id(r: &mut Reader<'_>) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)
}

fn reason(code: u8, packet_type: PacketType, allowed: &[u8]) -> Result<ReasonCode, DecodeError> {
    if !allowed.contains(&code) {
        return Err(DecodeError::InvalidReasonCode { packet_type, code });
    }
    ReasonCode::from_u8(code).ok_or(DecodeError::InvalidReasonCode { packet_type, code })
}

fn connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        (b"MQTT" | b"MQIsdp", level) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::InvalidWillFlags);
    }
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidWillFlags)?;
    if password_flag && !username_flag && protocol != ProtocolVersion::V5 {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let properties =
        if protocol.is_v5() { ConnectProperties::read(r, PacketType::Connect)? } else { ConnectProperties::default() };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let properties =
            if protocol.is_v5() { WillProperties::read(r, PacketType::Connect)? } else { WillProperties::default() };
        let (topic, wildcard) = r.string_scanned()?;
        let topic = match (topic.is_empty(), wildcard) {
            (true, _) => return Err(DecodeError::InvalidTopicName(TopicError::Empty)),
            (false, true) => return Err(DecodeError::InvalidTopicName(TopicError::WildcardInName)),
            (false, false) => TopicName::from_checked(topic),
        };
        let payload = r.binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    Ok(Connect { protocol, clean_start, keep_alive, client_id, will, username, password, properties })
}

fn connack(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let v5 = version.is_v5();
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::InvalidFlags { packet_type: PacketType::ConnAck, flags });
    }
    let code = r.u8()?;
    let reason_code = if v5 {
        reason(
            code,
            PacketType::ConnAck,
            &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99,
                0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
        )?
    } else {
        ReasonCode::from_connack_return_code(code)
            .ok_or(DecodeError::InvalidReasonCode { packet_type: PacketType::ConnAck, code })?
    };
    let properties = if v5 { ConnAckProperties::read(r, PacketType::ConnAck)? } else { ConnAckProperties::default() };
    Ok(ConnAck {
        // MQTT 3.1 has no session-present flag: its first CONNACK byte is reserved and never sent set.
        session_present: flags & 0x01 != 0 && version != ProtocolVersion::V3_1,
        reason_code,
        properties,
    })
}

/// Decodes a PUBLISH. The payload is the frame itself, advanced past the other fields: no copy, and no reference
/// count taken beyond the topic's. The packet is built in the caller's return slot (one struct literal, no moves of
/// the large `Publish` through intermediate results).
#[inline(always)]
fn publish(frame: Bytes, header_len: usize, flags: u8, v5: bool) -> Result<Option<Packet>, DecodeError> {
    // QoS 3 and DUP on QoS 0 were refused with the first byte.
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0x01 != 0;
    let mut r = Reader::new(&frame, header_len);
    let (topic, wildcard) = r.string_scanned()?;
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(packet_id(&mut r)?) };
    if !v5 {
        if topic.is_empty() {
            return Err(DecodeError::InvalidTopicName(TopicError::Empty));
        }
        if wildcard {
            return Err(DecodeError::InvalidTopicName(TopicError::WildcardInName));
        }
        let payload_start = r.position();
        let mut payload = frame;
        payload.advance(payload_start);
        return Ok(Some(Packet::Publish(Publish {
            dup,
            qos,
            retain,
            topic: TopicName::from_checked(topic),
            packet_id,
            payload,
            properties: Sparse::unset(),
        })));
    }
    let properties = PublishProperties::read_sparse(&mut r)?;
    let topic = if topic.is_empty() {
        if properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicWithoutAlias);
        }
        TopicName::alias_only()
    } else if wildcard {
        return Err(DecodeError::InvalidTopicName(TopicError::WildcardInName));
    } else {
        TopicName::from_checked(topic)
    };
    let payload_start = r.position();
    let mut payload = frame;
    payload.advance(payload_start);
    Ok(Some(Packet::Publish(Publish { dup, qos, retain, topic, packet_id, payload, properties })))
}

fn pub_response(r: &mut Reader<'_>, packet_type: PacketType, v5: bool) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 || r.is_empty() {
        return Ok(PubResponse::new(packet_id));
    }
    let allowed: &[u8] = match packet_type {
        PacketType::PubRel | PacketType::PubComp => &[0x00, 0x92],
        _ => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
    };
    let reason_code = reason(r.u8()?, packet_type, allowed)?;
    let properties = if r.is_empty() { AckProperties::default() } else { AckProperties::read(r, packet_type)? };
    Ok(PubResponse { packet_id, reason_code, properties })
}

fn subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties =
        if v5 { SubscribeProperties::read(r, PacketType::Subscribe)? } else { SubscribeProperties::default() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = TopicFilter::from_decoded(r.string()?).map_err(DecodeError::InvalidTopicFilter)?;
        let bits = r.u8()?;
        let reserved = if v5 { 0xC0 } else { 0xFC };
        let qos = QoS::from_u8(bits & 0x03);
        let retain_handling = match (bits >> 4) & 0x03 {
            0 => Some(RetainHandling::SendAtSubscribe),
            1 => Some(RetainHandling::SendIfNew),
            2 => Some(RetainHandling::DoNotSend),
            _ => None,
        };
        let (Some(qos), Some(retain_handling), 0) = (qos, retain_handling, bits & reserved) else {
            return Err(DecodeError::InvalidSubscriptionOptions(bits));
        };
        let options = SubscriptionOptions {
            qos,
            no_local: bits & 0x04 != 0,
            retain_as_published: bits & 0x08 != 0,
            retain_handling,
        };
        if options.no_local && filter.shared().is_some() {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Subscribe { packet_id, filters, properties })
}

fn suback(r: &mut Reader<'_>, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 { AckProperties::read(r, PacketType::SubAck)? } else { AckProperties::default() };
    let allowed: &[u8] = if v5 {
        &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
    } else {
        &[0x00, 0x01, 0x02, 0x80]
    };
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(r.u8()?, PacketType::SubAck, allowed)?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(SubAck { packet_id, reason_codes, properties })
}

fn unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties =
        if v5 { UnsubscribeProperties::read(r, PacketType::Unsubscribe)? } else { UnsubscribeProperties::default() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(TopicFilter::from_decoded(r.string()?).map_err(DecodeError::InvalidTopicFilter)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Unsubscribe { packet_id, filters, properties })
}

fn unsuback(r: &mut Reader<'_>, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 {
        return Ok(UnsubAck { packet_id, reason_codes: Vec::new(), properties: AckProperties::default() });
    }
    let properties = AckProperties::read(r, PacketType::UnsubAck)?;
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(r.u8()?, PacketType::UnsubAck, &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91])?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(UnsubAck { packet_id, reason_codes, properties })
}

fn disconnect(r: &mut Reader<'_>, v5: bool) -> Result<Disconnect, DecodeError> {
    if !v5 || r.is_empty() {
        return Ok(Disconnect::new(ReasonCode::Success));
    }
    let allowed = [
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    let reason_code = reason(r.u8()?, PacketType::Disconnect, &allowed)?;
    let properties = if r.is_empty() {
        DisconnectProperties::default()
    } else {
        DisconnectProperties::read(r, PacketType::Disconnect)?
    };
    Ok(Disconnect { reason_code, properties })
}

fn auth(r: &mut Reader<'_>) -> Result<Auth, DecodeError> {
    if r.is_empty() {
        return Ok(Auth { reason_code: ReasonCode::Success, properties: AuthProperties::default() });
    }
    let reason_code = reason(r.u8()?, PacketType::Auth, &[0x00, 0x18, 0x19])?;
    let properties = if r.is_empty() { AuthProperties::default() } else { AuthProperties::read(r, PacketType::Auth)? };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(Auth { reason_code, properties })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn waiting_for_a_packet_never_grows_the_buffer_past_the_limit() {
        // Regression (found by the mutational fuzz loop): `BytesMut::reserve` doubled a 60-byte allocation to 120
        // bytes for a 60-byte packet under a 64-byte limit.
        let mut buf = BytesMut::with_capacity(60);
        buf.put_slice(&[0xC0, 0x00]); // PINGREQ
        buf.put_slice(&[0x30, 0x3A, 0x00, 0x01, b'a']); // PUBLISH of 60 bytes in all...
        buf.put_slice(&[b'x'; 45]); // ...of which 50 have arrived.
        assert_eq!(decode(&mut buf, ProtocolVersion::V3_1_1, 64), Ok(Some(Packet::PingReq)));
        assert_eq!(decode(&mut buf, ProtocolVersion::V3_1_1, 64), Ok(None));
        assert!(buf.capacity() >= 60, "room for the packet");
        assert!(buf.capacity() <= 64, "capacity {}", buf.capacity());
        buf.put_slice(&[b'x'; 10]);
        let Ok(Some(Packet::Publish(p))) = decode(&mut buf, ProtocolVersion::V3_1_1, 64) else { panic!("no PUBLISH") };
        assert_eq!(p.payload.len(), 55);
    }

    #[test]
    fn growth_keeps_a_read_buffer_worth_of_room() {
        // A partial 100-byte packet under a large limit: room for the packet and for the reads after it.
        let mut buf = BytesMut::from(&[0x30, 0x62, 0x00, 0x01, b'a'][..]);
        assert_eq!(decode(&mut buf, ProtocolVersion::V5, 1 << 20), Ok(None));
        assert_eq!(buf.capacity(), MIN_GROWTH);
        // Under a small limit, never past it.
        let mut buf = BytesMut::from(&[0x30, 0x62, 0x00, 0x01, b'a'][..]);
        assert_eq!(decode(&mut buf, ProtocolVersion::V5, 200), Ok(None));
        assert_eq!(buf.capacity(), 200);
        // Enough room already: nothing moves.
        let mut buf = BytesMut::with_capacity(8192);
        buf.put_slice(&[0x30, 0x62, 0x00, 0x01, b'a']);
        let ptr = buf.as_ptr();
        assert_eq!(decode(&mut buf, ProtocolVersion::V5, 1 << 20), Ok(None));
        assert_eq!(buf.as_ptr(), ptr);
    }

    #[test]
    fn kept_strings_are_copies_of_their_own_and_publish_copies_nothing() {
        let mut buf = BytesMut::with_capacity(256);
        // CONNECT 3.1.1, client "c1", will "w/t" -> "bye", user "u", password "p".
        buf.put_slice(&[0x10, 0x1E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xC6, 0x00, 0x3C]);
        buf.put_slice(&[0x00, 0x02, b'c', b'1', 0x00, 0x03, b'w', b'/', b't', 0x00, 0x03, b'b', b'y', b'e']);
        buf.put_slice(&[0x00, 0x01, b'u', 0x00, 0x01, b'p']);
        // SUBSCRIBE "a/+" QoS 1, UNSUBSCRIBE "a/+", PUBLISH "a/b" "hi".
        buf.put_slice(&[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'+', 0x01]);
        buf.put_slice(&[0xA2, 0x07, 0x00, 0x02, 0x00, 0x03, b'a', b'/', b'+']);
        buf.put_slice(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i']);
        let start = buf.as_ptr() as usize;
        let in_buffer = |p: *const u8| (start..start + 256).contains(&(p as usize));
        let v = ProtocolVersion::V3_1_1;
        let Ok(Some(Packet::Connect(c))) = decode(&mut buf, v, 1024) else { panic!("no CONNECT") };
        let (Some(will), Some(username), Some(password)) = (&c.will, &c.username, &c.password) else {
            panic!("CONNECT without its will, user name or password")
        };
        assert_eq!((&*c.client_id, &*will.topic, &will.payload[..]), ("c1", "w/t", &b"bye"[..]));
        // Each its own allocation: no other field, no packet copy and no read buffer shares it.
        let kept = [c.client_id.as_bytes(), will.topic.as_byte_string().as_bytes(), &will.payload];
        for bytes in kept.into_iter().chain([username.as_bytes(), password]) {
            assert!(bytes.is_unique() && !in_buffer(bytes.as_ptr()));
        }
        let Ok(Some(Packet::Subscribe(s))) = decode(&mut buf, v, 1024) else { panic!("no SUBSCRIBE") };
        assert!(s.filters[0].0.as_byte_string().as_bytes().is_unique());
        let Ok(Some(Packet::Unsubscribe(u))) = decode(&mut buf, v, 1024) else { panic!("no UNSUBSCRIBE") };
        assert!(u.filters[0].as_byte_string().as_bytes().is_unique());
        let Ok(Some(Packet::Publish(p))) = decode(&mut buf, v, 1024) else { panic!("no PUBLISH") };
        assert!(in_buffer(p.topic.as_ptr()) && in_buffer(p.payload.as_ptr()));
    }
}
