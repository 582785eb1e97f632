//! The incremental, strict decoder.
//!
//! [`decode`] takes whatever bytes have arrived: a partial packet (it answers `Ok(None)` and waits), one packet, or
//! many (call it again). The packet size is checked against the limit from the fixed header alone, before the body
//! is buffered. Strings, topics and payloads come out as slices of the read buffer.

use crate::error::DecodeError;
use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, PubResponse, Publish,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use crate::reason::ReasonCode;
use crate::topic::{TopicFilter, TopicName};
use crate::version::{ProtocolVersion, QoS};
use crate::wire::Reader;
use bytes::{Bytes, BytesMut};

/// Reads the fixed header at the start of `buf`: `Some((header_len, remaining_len))`, or `None` when more bytes
/// are needed to know.
pub fn decode_frame_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, remaining)));
        }
    }
    Err(DecodeError::MalformedVariableInteger)
}

/// Decodes one packet from the front of `buf`, removing its bytes.
///
/// `version` is the connection's protocol version; CONNECT is decoded whatever it is, since it names its own.
/// `max_packet_size` bounds the whole packet (fixed header included). `Ok(None)` means more bytes are needed; the
/// buffer has then been given the capacity for the rest of the packet.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = decode_frame_length(buf)? else {
        return Ok(None);
    };
    let size = header_len + remaining;
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let frame = buf.split_to(size).freeze();
    decode_frame(&frame, header_len, version).map(Some)
}

/// Decodes one whole packet whose body starts at `header_len`.
fn decode_frame(
    frame: &Bytes,
    header_len: usize,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let first = frame[0];
    let flags = first & 0x0F;
    let packet_type =
        PacketType::from_u8(first >> 4).ok_or(DecodeError::ReservedPacketType(first >> 4))?;
    let expected_flags = match packet_type {
        PacketType::Publish => flags,
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        _ => 0,
    };
    if flags != expected_flags {
        return Err(DecodeError::InvalidFlags { packet_type, flags });
    }
    let v5 = version.is_v5();
    let mut r = Reader::new(frame, header_len);
    let packet = match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(connect(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(connack(&mut r, v5)?),
        PacketType::Publish => Packet::Publish(publish(&mut r, flags, v5)?),
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
        PacketType::Auth if v5 => Packet::Auth(auth(&mut r)?),
        PacketType::Auth => return Err(DecodeError::ReservedPacketType(15)),
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
    let properties = if protocol.is_v5() {
        ConnectProperties::read(r)?
    } else {
        ConnectProperties::default()
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if protocol.is_v5() {
            WillProperties::read(r)?
        } else {
            WillProperties::default()
        };
        let topic = TopicName::new(r.string()?).map_err(DecodeError::InvalidTopicName)?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader<'_>, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::InvalidFlags {
            packet_type: PacketType::ConnAck,
            flags,
        });
    }
    let code = r.u8()?;
    let reason_code = if v5 {
        reason(
            code,
            PacketType::ConnAck,
            &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
        )?
    } else {
        ReasonCode::from_connack_return_code(code).ok_or(DecodeError::InvalidReasonCode {
            packet_type: PacketType::ConnAck,
            code,
        })?
    };
    let properties = if v5 {
        ConnAckProperties::read(r)?
    } else {
        ConnAckProperties::default()
    };
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason_code,
        properties,
    })
}

fn publish(r: &mut Reader<'_>, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0);
    }
    let topic = r.string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties = if v5 {
        PublishProperties::read(r)?
    } else {
        PublishProperties::default()
    };
    let topic = if topic.is_empty() && v5 {
        if properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicWithoutAlias);
        }
        TopicName::alias_only()
    } else {
        TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?
    };
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload,
        properties,
    })
}

fn pub_response(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    v5: bool,
) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 || r.is_empty() {
        return Ok(PubResponse::new(packet_id));
    }
    let allowed: &[u8] = match packet_type {
        PacketType::PubRel | PacketType::PubComp => &[0x00, 0x92],
        _ => &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
    };
    let reason_code = reason(r.u8()?, packet_type, allowed)?;
    let properties = if r.is_empty() {
        AckProperties::default()
    } else {
        AckProperties::read(r)?
    };
    Ok(PubResponse {
        packet_id,
        reason_code,
        properties,
    })
}

fn subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        SubscribeProperties::read(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = TopicFilter::new(r.string()?).map_err(DecodeError::InvalidTopicFilter)?;
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
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn suback(r: &mut Reader<'_>, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        AckProperties::read(r)?
    } else {
        AckProperties::default()
    };
    let allowed: &[u8] = if v5 {
        &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ]
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
    Ok(SubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        UnsubscribeProperties::read(r)?
    } else {
        UnsubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(TopicFilter::new(r.string()?).map_err(DecodeError::InvalidTopicFilter)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters);
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn unsuback(r: &mut Reader<'_>, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: AckProperties::default(),
        });
    }
    let properties = AckProperties::read(r)?;
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(
            r.u8()?,
            PacketType::UnsubAck,
            &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
        )?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn disconnect(r: &mut Reader<'_>, v5: bool) -> Result<Disconnect, DecodeError> {
    if !v5 || r.is_empty() {
        return Ok(Disconnect::new(ReasonCode::Success));
    }
    let allowed = [
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    let reason_code = reason(r.u8()?, PacketType::Disconnect, &allowed)?;
    let properties = if r.is_empty() {
        DisconnectProperties::default()
    } else {
        DisconnectProperties::read(r)?
    };
    Ok(Disconnect {
        reason_code,
        properties,
    })
}

fn auth(r: &mut Reader<'_>) -> Result<Auth, DecodeError> {
    if r.is_empty() {
        return Ok(Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        });
    }
    let reason_code = reason(r.u8()?, PacketType::Auth, &[0x00, 0x18, 0x19])?;
    let properties = if r.is_empty() {
        AuthProperties::default()
    } else {
        AuthProperties::read(r)?
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(Auth {
        reason_code,
        properties,
    })
}
