//! MQTT 5 properties (MQTT 5.0 section 2.2.2), one typed set for each packet type.
//!
//! Each set is generated from a table of (field, identifier, wire kind), so which properties a packet may carry is
//! written once and the decoder, the encoder and the length computation agree. Properties not allowed in a packet,
//! unknown identifiers, repeats and out-of-range values are decode errors.

use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::sparse::{Sparse, Unset};
use crate::version::QoS;
use crate::wire::{MAX_VARINT, Reader, put_binary, put_varint, varint_len};
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

/// A user property: a key and a value, both UTF-8 strings; keys may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The key.
    pub key: ByteString,
    /// The value.
    pub value: ByteString,
}

impl UserProperty {
    /// A user property from a key and a value.
    pub fn new(key: impl Into<ByteString>, value: impl Into<ByteString>) -> Self {
        Self { key: key.into(), value: value.into() }
    }
}

const USER_PROPERTY: u8 = 0x26;

/// Every property identifier the specification defines.
fn is_known(id: u32) -> bool {
    matches!(
        id,
        0x01 | 0x02
            | 0x03
            | 0x08
            | 0x09
            | 0x0B
            | 0x11
            | 0x12
            | 0x13
            | 0x15
            | 0x16
            | 0x17
            | 0x18
            | 0x19
            | 0x1A
            | 0x1C
            | 0x1F
            | 0x21
            | 0x22
            | 0x23
            | 0x24
            | 0x25
            | 0x26
            | 0x27
            | 0x28
            | 0x29
            | 0x2A
    )
}

fn mark_seen(seen: &mut u64, id: u8) -> Result<(), DecodeError> {
    let bit = 1u64 << id;
    if *seen & bit != 0 {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *seen |= bit;
    Ok(())
}

/// How each kind of property value is read, measured and written. `len` and `write` include the identifier.
mod kind {
    use super::*;

    macro_rules! single {
        ($name:ident, $ty:ty, $read:expr, $len:expr, $write:expr) => {
            single!($name, $ty, $read, $len, $write, |_, _| Ok(()));
        };
        ($name:ident, $ty:ty, $read:expr, $len:expr, $write:expr, $check:expr) => {
            pub(super) mod $name {
                use super::*;
                pub(crate) fn read(
                    field: &mut Option<$ty>,
                    r: &mut Reader<'_>,
                    id: u8,
                    seen: &mut u64,
                ) -> Result<(), DecodeError> {
                    mark_seen(seen, id)?;
                    let read: fn(&mut Reader<'_>, u8) -> Result<$ty, DecodeError> = $read;
                    *field = Some(read(r, id)?);
                    Ok(())
                }
                pub(crate) fn len(field: &Option<$ty>) -> usize {
                    let len: fn(&$ty) -> usize = $len;
                    field.as_ref().map_or(0, |v| 1 + len(v))
                }
                pub(crate) fn write(field: &Option<$ty>, id: u8, buf: &mut BytesMut) {
                    if let Some(v) = field {
                        buf.put_u8(id);
                        let write: fn(&$ty, &mut BytesMut) = $write;
                        write(v, buf);
                    }
                }
                /// Whether the value can be sent: in range for the property, and short enough for its length prefix.
                pub(crate) fn check(field: &Option<$ty>, id: u8) -> Result<(), EncodeError> {
                    let check: fn(&$ty, u8) -> Result<(), EncodeError> = $check;
                    field.as_ref().map_or(Ok(()), |v| check(v, id))
                }
            }
        };
    }

    fn nonzero(zero: bool, id: u8) -> Result<(), EncodeError> {
        if zero { Err(EncodeError::InvalidPropertyValue(id)) } else { Ok(()) }
    }

    pub(super) fn fits(len: usize) -> Result<(), EncodeError> {
        if len > 0xFFFF { Err(EncodeError::FieldTooLong) } else { Ok(()) }
    }

    /// A variable byte integer property: 1 to 268,435,455.
    fn varint_in_range(v: u32, id: u8) -> Result<(), EncodeError> {
        nonzero(v == 0 || v > MAX_VARINT, id)
    }

    single!(
        u8_flag,
        bool,
        |r, id| match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        },
        |_| 1,
        |v, b| b.put_u8(u8::from(*v))
    );
    single!(
        max_qos,
        QoS,
        |r, id| match r.u8()? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        },
        |_| 1,
        |v, b| b.put_u8(v.as_u8()),
        // Maximum QoS is 0 or 1; its absence means 2.
        |v, id| nonzero(*v == QoS::ExactlyOnce, id)
    );
    single!(u16, u16, |r, _| r.u16(), |_| 2, |v, b| b.put_u16(*v));
    single!(
        nonzero_u16,
        u16,
        |r, id| match r.u16()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            v => Ok(v),
        },
        |_| 2,
        |v, b| b.put_u16(*v),
        |v, id| nonzero(*v == 0, id)
    );
    single!(u32, u32, |r, _| r.u32(), |_| 4, |v, b| b.put_u32(*v));
    single!(
        nonzero_u32,
        u32,
        |r, id| match r.u32()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            v => Ok(v),
        },
        |_| 4,
        |v, b| b.put_u32(*v),
        |v, id| nonzero(*v == 0, id)
    );
    single!(
        varint,
        u32,
        |r, id| match r.varint()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            v => Ok(v),
        },
        |v| varint_len(*v),
        |v, b| put_varint(b, *v),
        |v, id| varint_in_range(*v, id)
    );
    single!(string, ByteString, |r, _| r.string(), |v| 2 + v.len(), |v, b| put_binary(b, v.as_bytes()), |v, _| fits(
        v.len()
    ));
    single!(binary, Bytes, |r, _| r.binary(), |v| 2 + v.len(), |v, b| put_binary(b, v), |v, _| fits(v.len()));

    /// Subscription identifiers in PUBLISH: repeatable, each a non-zero variable byte integer.
    pub(super) mod varints {
        use super::*;
        pub(crate) fn read(field: &mut Vec<u32>, r: &mut Reader<'_>, id: u8, _: &mut u64) -> Result<(), DecodeError> {
            match r.varint()? {
                0 => Err(DecodeError::InvalidPropertyValue(id)),
                v => {
                    field.push(v);
                    Ok(())
                }
            }
        }
        pub(crate) fn len(field: &[u32]) -> usize {
            field.iter().map(|v| 1 + varint_len(*v)).sum()
        }
        pub(crate) fn write(field: &[u32], id: u8, buf: &mut BytesMut) {
            for v in field {
                buf.put_u8(id);
                put_varint(buf, *v);
            }
        }
        pub(crate) fn check(field: &[u32], id: u8) -> Result<(), EncodeError> {
            field.iter().try_for_each(|v| varint_in_range(*v, id))
        }
    }
}

macro_rules! property_set {
    (
        $(#[$meta:meta])*
        $name:ident => {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $id:literal as $kind:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// User properties, in the order received.
            pub user_properties: Vec<UserProperty>,
        }

        impl $name {
            /// Whether no property is set (encoded as a single zero byte). Field by field: no comparison of values.
            pub fn is_empty(&self) -> bool {
                true $( && Field::is_unset(&self.$field) )* && self.user_properties.is_empty()
            }

            /// Reads the property length and the properties of a `packet_type` packet (named in errors).
            // PUBLISH reads its own with `read_sparse`.
            #[allow(dead_code)]
            pub(crate) fn read(r: &mut Reader<'_>, packet_type: PacketType) -> Result<Self, DecodeError> {
                let len = r.varint()? as usize;
                let mut props = Self::default();
                props.fill(&mut r.take(len)?, packet_type)?;
                Ok(props)
            }

            /// Reads every property `r` holds (the properties without their length prefix) into `self`.
            fn fill(&mut self, r: &mut Reader<'_>, packet_type: PacketType) -> Result<(), DecodeError> {
                #[allow(unused_mut, unused_variables)]
                let mut seen = 0u64;
                while !r.is_empty() {
                    let id = r.varint()?;
                    match id {
                        0x26 => {
                            let key = r.string()?;
                            let value = r.string()?;
                            self.user_properties.push(UserProperty { key, value });
                        }
                        $( $id => kind::$kind::read(&mut self.$field, r, $id, &mut seen)?, )*
                        other if is_known(other) => {
                            return Err(DecodeError::PropertyNotAllowed { id: other, packet_type })
                        }
                        other => return Err(DecodeError::UnknownProperty(other)),
                    }
                }
                Ok(())
            }

            /// The encoded length of the properties, without the length prefix.
            pub(crate) fn body_len(&self) -> usize {
                0 $( + kind::$kind::len(&self.$field) )*
                    + self.user_properties.iter().map(|p| 5 + p.key.len() + p.value.len()).sum::<usize>()
            }

            /// The encoded length with the length prefix.
            pub(crate) fn wire_len(&self) -> usize {
                let body = self.body_len();
                varint_len(body as u32) + body
            }

            /// Writes the length prefix and the properties.
            pub(crate) fn write(&self, buf: &mut BytesMut) {
                put_varint(buf, self.body_len() as u32);
                $( kind::$kind::write(&self.$field, $id, buf); )*
                for p in &self.user_properties {
                    buf.put_u8(USER_PROPERTY);
                    put_binary(buf, p.key.as_bytes());
                    put_binary(buf, p.value.as_bytes());
                }
            }

            /// Whether the properties can be sent: every value in its range
            /// ([`EncodeError::InvalidPropertyValue`]), every string and binary value at most 65,535 bytes
            /// ([`EncodeError::FieldTooLong`]).
            pub(crate) fn check(&self) -> Result<(), EncodeError> {
                $( kind::$kind::check(&self.$field, $id)?; )*
                self.user_properties.iter().try_for_each(|p| {
                    kind::fits(p.key.len())?;
                    kind::fits(p.value.len())
                })
            }
        }
    };
}

property_set! {
    /// CONNECT properties (MQTT 5.0 section 3.1.2.11).
    ConnectProperties => {
        /// Session Expiry Interval in seconds (0x11); absent means 0.
        session_expiry_interval: Option<u32> = 0x11 as u32,
        /// Receive Maximum (0x21): how many QoS 1 and 2 PUBLISH the client accepts unacknowledged.
        receive_maximum: Option<u16> = 0x21 as nonzero_u16,
        /// Maximum Packet Size (0x27) the client accepts.
        maximum_packet_size: Option<u32> = 0x27 as nonzero_u32,
        /// Topic Alias Maximum (0x22) the client accepts.
        topic_alias_maximum: Option<u16> = 0x22 as u16,
        /// Request Response Information (0x19).
        request_response_information: Option<bool> = 0x19 as u8_flag,
        /// Request Problem Information (0x17).
        request_problem_information: Option<bool> = 0x17 as u8_flag,
        /// Authentication Method (0x15).
        authentication_method: Option<ByteString> = 0x15 as string,
        /// Authentication Data (0x16).
        authentication_data: Option<Bytes> = 0x16 as binary,
    }
}

property_set! {
    /// Will properties (MQTT 5.0 section 3.1.3.2).
    WillProperties => {
        /// Will Delay Interval in seconds (0x18).
        will_delay_interval: Option<u32> = 0x18 as u32,
        /// Payload Format Indicator (0x01): `true` for UTF-8 payload.
        payload_format_indicator: Option<bool> = 0x01 as u8_flag,
        /// Message Expiry Interval in seconds (0x02).
        message_expiry_interval: Option<u32> = 0x02 as u32,
        /// Content Type (0x03).
        content_type: Option<ByteString> = 0x03 as string,
        /// Response Topic (0x08).
        response_topic: Option<ByteString> = 0x08 as string,
        /// Correlation Data (0x09).
        correlation_data: Option<Bytes> = 0x09 as binary,
    }
}

property_set! {
    /// CONNACK properties (MQTT 5.0 section 3.2.2.3).
    ConnAckProperties => {
        /// Session Expiry Interval (0x11) the server uses, when it differs from the client's.
        session_expiry_interval: Option<u32> = 0x11 as u32,
        /// Receive Maximum (0x21) of the server.
        receive_maximum: Option<u16> = 0x21 as nonzero_u16,
        /// Maximum QoS (0x24) the server supports, when below 2.
        maximum_qos: Option<QoS> = 0x24 as max_qos,
        /// Retain Available (0x25).
        retain_available: Option<bool> = 0x25 as u8_flag,
        /// Maximum Packet Size (0x27) the server accepts.
        maximum_packet_size: Option<u32> = 0x27 as nonzero_u32,
        /// Assigned Client Identifier (0x12), when the client sent an empty one.
        assigned_client_identifier: Option<ByteString> = 0x12 as string,
        /// Topic Alias Maximum (0x22) the server accepts.
        topic_alias_maximum: Option<u16> = 0x22 as u16,
        /// Reason String (0x1F).
        reason_string: Option<ByteString> = 0x1F as string,
        /// Wildcard Subscription Available (0x28).
        wildcard_subscription_available: Option<bool> = 0x28 as u8_flag,
        /// Subscription Identifiers Available (0x29).
        subscription_identifiers_available: Option<bool> = 0x29 as u8_flag,
        /// Shared Subscription Available (0x2A).
        shared_subscription_available: Option<bool> = 0x2A as u8_flag,
        /// Server Keep Alive (0x13): the keep-alive the client must use.
        server_keep_alive: Option<u16> = 0x13 as u16,
        /// Response Information (0x1A).
        response_information: Option<ByteString> = 0x1A as string,
        /// Server Reference (0x1C).
        server_reference: Option<ByteString> = 0x1C as string,
        /// Authentication Method (0x15).
        authentication_method: Option<ByteString> = 0x15 as string,
        /// Authentication Data (0x16).
        authentication_data: Option<Bytes> = 0x16 as binary,
    }
}

property_set! {
    /// PUBLISH properties (MQTT 5.0 section 3.3.2.3).
    PublishProperties => {
        /// Payload Format Indicator (0x01): `true` for UTF-8 payload.
        payload_format_indicator: Option<bool> = 0x01 as u8_flag,
        /// Message Expiry Interval in seconds (0x02).
        message_expiry_interval: Option<u32> = 0x02 as u32,
        /// Topic Alias (0x23), never 0.
        topic_alias: Option<u16> = 0x23 as nonzero_u16,
        /// Response Topic (0x08).
        response_topic: Option<ByteString> = 0x08 as string,
        /// Correlation Data (0x09).
        correlation_data: Option<Bytes> = 0x09 as binary,
        /// Subscription Identifiers (0x0B) of the subscriptions that matched, server to client only.
        subscription_identifiers: Vec<u32> = 0x0B as varints,
        /// Content Type (0x03).
        content_type: Option<ByteString> = 0x03 as string,
    }
}

property_set! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and user properties.
    AckProperties => {
        /// Reason String (0x1F).
        reason_string: Option<ByteString> = 0x1F as string,
    }
}

property_set! {
    /// SUBSCRIBE properties (MQTT 5.0 section 3.8.2.1).
    SubscribeProperties => {
        /// Subscription Identifier (0x0B), 1 to 268,435,455.
        subscription_identifier: Option<u32> = 0x0B as varint,
    }
}

property_set! {
    /// UNSUBSCRIBE properties (MQTT 5.0 section 3.10.2.1): user properties only.
    UnsubscribeProperties => {}
}

property_set! {
    /// DISCONNECT properties (MQTT 5.0 section 3.14.2.2).
    DisconnectProperties => {
        /// Session Expiry Interval (0x11), replacing the one from CONNECT.
        session_expiry_interval: Option<u32> = 0x11 as u32,
        /// Reason String (0x1F).
        reason_string: Option<ByteString> = 0x1F as string,
        /// Server Reference (0x1C).
        server_reference: Option<ByteString> = 0x1C as string,
    }
}

property_set! {
    /// AUTH properties (MQTT 5.0 section 3.15.2.2).
    AuthProperties => {
        /// Authentication Method (0x15).
        authentication_method: Option<ByteString> = 0x15 as string,
        /// Authentication Data (0x16).
        authentication_data: Option<Bytes> = 0x16 as binary,
        /// Reason String (0x1F).
        reason_string: Option<ByteString> = 0x1F as string,
    }
}

impl PublishProperties {
    /// Reads the property length and the properties of a PUBLISH, boxed only if there are any (nearly never).
    pub(crate) fn read_sparse(r: &mut Reader<'_>) -> Result<Sparse<Self>, DecodeError> {
        let len = r.varint()? as usize;
        let mut props = Sparse::<Self>::unset();
        if len > 0 {
            props.fill(&mut r.take(len)?, PacketType::Publish)?;
        }
        Ok(props)
    }
}

/// PUBLISH properties with nothing set, which an unboxed [`Sparse`] reads as.
static UNSET_PUBLISH: PublishProperties = PublishProperties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    topic_alias: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    content_type: None,
    user_properties: Vec::new(),
};

impl Unset for PublishProperties {
    fn unset() -> &'static Self {
        &UNSET_PUBLISH
    }

    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

/// A property field: an `Option`, or a `Vec` for those that repeat.
trait Field {
    fn is_unset(&self) -> bool;
}

impl<T> Field for Option<T> {
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

impl<T> Field for Vec<T> {
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}
