//! Decode and encode errors.

use crate::packet::PacketType;
use crate::reason::ReasonCode;
use crate::topic::TopicError;

/// Why bytes from a peer are not a valid packet. Each error knows the MQTT 5 reason code to close the connection
/// with ([`DecodeError::reason_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining length, or another variable byte integer, runs over four bytes.
    #[error("variable byte integer longer than 4 bytes")]
    MalformedVariableInteger,
    /// The packet is larger than the receiver accepts; known from the fixed header alone.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// The packet's whole size.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// Packet type 0, or AUTH before MQTT 5.0.
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header's flag bits are not those the packet type requires.
    #[error("invalid fixed header flags 0x{flags:X} for {packet_type:?}")]
    InvalidFlags {
        /// The packet's type.
        packet_type: PacketType,
        /// The four flag bits received.
        flags: u8,
    },
    /// QoS 3.
    #[error("QoS 3 is not a valid QoS")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A packet identifier of 0 where one is required.
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A field runs past the end of the packet.
    #[error("packet ends inside a field")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("unexpected bytes after the last field")]
    TrailingBytes,
    /// A string is not valid UTF-8 (this includes UTF-16 surrogates).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string contains U+0000.
    #[error("string contains U+0000")]
    NullCharacter,
    /// A PUBLISH or will topic is not a valid topic name.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE filter is not a valid topic filter.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("no topic filter in SUBSCRIBE or UNSUBSCRIBE")]
    NoTopicFilters,
    /// Reserved bits of a subscription options byte set, QoS 3, or retain handling 3.
    #[error("invalid subscription options 0x{0:02X}")]
    InvalidSubscriptionOptions(u8),
    /// No Local set on a shared subscription.
    #[error("no-local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`. (A known name with a level it does not have, e.g.
    /// `MQTT` level 3, is [`DecodeError::UnsupportedProtocolVersion`].)
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// A protocol level other than 3, 4 or 5.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set.
    #[error("reserved CONNECT flag set")]
    ConnectReservedFlag,
    /// Will QoS or will retain set without the will flag, or will QoS 3.
    #[error("inconsistent will flags")]
    InvalidWillFlags,
    /// A password without a user name, before MQTT 5.0.
    #[error("password flag set without user name flag")]
    PasswordWithoutUsername,
    /// A reason code that this packet type may not carry.
    #[error("reason code 0x{code:02X} not valid in {packet_type:?}")]
    InvalidReasonCode {
        /// The packet's type.
        packet_type: PacketType,
        /// The byte received.
        code: u8,
    },
    /// A property identifier the specification does not define.
    #[error("unknown property 0x{0:02X}")]
    UnknownProperty(u32),
    /// A property this packet may not carry.
    #[error("property 0x{id:02X} not allowed in {packet_type:?}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u32,
        /// The packet's type.
        packet_type: PacketType,
    },
    /// A property that may appear once appears twice.
    #[error("property 0x{0:02X} repeated")]
    DuplicateProperty(u8),
    /// A property value out of its range (e.g. Receive Maximum 0, Topic Alias 0, a boolean other than 0 or 1).
    #[error("invalid value for property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// Authentication data without an authentication method.
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// A PUBLISH with an empty topic name and no topic alias.
    #[error("empty topic name without topic alias")]
    EmptyTopicWithoutAlias,
}

impl DecodeError {
    /// The MQTT 5 reason code to send in CONNACK or DISCONNECT before closing.
    ///
    /// Where the specification calls a violation a Protocol Error (0x82) rather than a Malformed Packet (0x81), so
    /// does this: repeated properties, out-of-range property values, authentication data without method, an empty
    /// topic without alias, SUBSCRIBE or UNSUBSCRIBE without filters (MQTT-3.8.3-2, MQTT-3.10.3-2), QoS 3 or
    /// Retain Handling 3 in subscription options (section 3.8.3.1), No Local on a shared subscription.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            Self::DuplicateProperty(_)
            | Self::InvalidPropertyValue(_)
            | Self::AuthDataWithoutMethod
            | Self::EmptyTopicWithoutAlias
            | Self::NoLocalOnSharedSubscription
            | Self::NoTopicFilters
            | Self::InvalidProtocolName
            | Self::ReservedPacketType(_) => ReasonCode::ProtocolError,
            // Reserved bits set make the packet malformed; with them clear, QoS 3 or Retain Handling 3 is a
            // protocol error.
            Self::InvalidSubscriptionOptions(bits)
                if bits & 0xC0 == 0 && (bits & 0x03 == 0x03 || bits & 0x30 == 0x30) =>
            {
                ReasonCode::ProtocolError
            }
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A QoS 1 or 2 PUBLISH without a packet identifier.
    #[error("QoS 1 or 2 PUBLISH without packet identifier")]
    MissingPacketId,
    /// A QoS 0 PUBLISH with a packet identifier.
    #[error("QoS 0 PUBLISH with a packet identifier")]
    UnexpectedPacketId,
    /// A string or binary field longer than 65,535 bytes.
    #[error("field longer than 65535 bytes")]
    FieldTooLong,
    /// The packet would exceed the largest remaining length, 268,435,455 bytes.
    #[error("packet larger than the protocol allows")]
    PacketTooLarge,
    /// The packet type does not exist in this protocol version (AUTH before 5.0).
    #[error("{0:?} does not exist in this protocol version")]
    NotInVersion(PacketType),
    /// A SUBSCRIBE or UNSUBSCRIBE with no filter, or a SUBACK with no reason code.
    #[error("empty list of topic filters or reason codes")]
    EmptyList,
    /// A property value out of its range, which the receiver would refuse (Receive Maximum, Maximum Packet Size or
    /// Topic Alias 0, Maximum QoS 2, a Subscription Identifier of 0 or above 268,435,455): the property identifier.
    #[error("invalid value for property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// A QoS 0 PUBLISH with the DUP flag set, which the receiver must treat as malformed.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// An empty topic name (see [`crate::TopicName::alias_only`]) where the receiver would refuse it: in a will,
    /// in any 3.x PUBLISH, or in an MQTT 5 PUBLISH without a topic alias.
    #[error("empty topic name without topic alias")]
    EmptyTopic,
}
