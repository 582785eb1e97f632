//! MQTT 5 reason codes and their 3.x equivalents.

use crate::packet::PacketType;
use std::fmt;

/// An MQTT 5 reason code (MQTT 5.0 section 2.4). 3.x return codes are mapped onto these by the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// 0x00: success, normal disconnection, granted QoS 0.
    Success,
    /// 0x01: granted QoS 1.
    GrantedQoS1,
    /// 0x02: granted QoS 2.
    GrantedQoS2,
    /// 0x04: disconnect with will message.
    DisconnectWithWillMessage,
    /// 0x10: no matching subscribers.
    NoMatchingSubscribers,
    /// 0x11: no subscription existed.
    NoSubscriptionExisted,
    /// 0x18: continue authentication.
    ContinueAuthentication,
    /// 0x19: re-authenticate.
    ReAuthenticate,
    /// 0x80: unspecified error.
    UnspecifiedError,
    /// 0x81: malformed packet.
    MalformedPacket,
    /// 0x82: protocol error.
    ProtocolError,
    /// 0x83: implementation specific error.
    ImplementationSpecificError,
    /// 0x84: unsupported protocol version.
    UnsupportedProtocolVersion,
    /// 0x85: client identifier not valid.
    ClientIdentifierNotValid,
    /// 0x86: bad user name or password.
    BadUserNameOrPassword,
    /// 0x87: not authorized.
    NotAuthorized,
    /// 0x88: server unavailable.
    ServerUnavailable,
    /// 0x89: server busy.
    ServerBusy,
    /// 0x8A: banned.
    Banned,
    /// 0x8B: server shutting down.
    ServerShuttingDown,
    /// 0x8C: bad authentication method.
    BadAuthenticationMethod,
    /// 0x8D: keep alive timeout.
    KeepAliveTimeout,
    /// 0x8E: session taken over.
    SessionTakenOver,
    /// 0x8F: topic filter invalid.
    TopicFilterInvalid,
    /// 0x90: topic name invalid.
    TopicNameInvalid,
    /// 0x91: packet identifier in use.
    PacketIdentifierInUse,
    /// 0x92: packet identifier not found.
    PacketIdentifierNotFound,
    /// 0x93: receive maximum exceeded.
    ReceiveMaximumExceeded,
    /// 0x94: topic alias invalid.
    TopicAliasInvalid,
    /// 0x95: packet too large.
    PacketTooLarge,
    /// 0x96: message rate too high.
    MessageRateTooHigh,
    /// 0x97: quota exceeded.
    QuotaExceeded,
    /// 0x98: administrative action.
    AdministrativeAction,
    /// 0x99: payload format invalid.
    PayloadFormatInvalid,
    /// 0x9A: retain not supported.
    RetainNotSupported,
    /// 0x9B: QoS not supported.
    QoSNotSupported,
    /// 0x9C: use another server.
    UseAnotherServer,
    /// 0x9D: server moved.
    ServerMoved,
    /// 0x9E: shared subscriptions not supported.
    SharedSubscriptionsNotSupported,
    /// 0x9F: connection rate exceeded.
    ConnectionRateExceeded,
    /// 0xA0: maximum connect time.
    MaximumConnectTime,
    /// 0xA1: subscription identifiers not supported.
    SubscriptionIdentifiersNotSupported,
    /// 0xA2: wildcard subscriptions not supported.
    WildcardSubscriptionsNotSupported,
}

const TABLE: &[(u8, ReasonCode)] = &[
    (0x00, ReasonCode::Success),
    (0x01, ReasonCode::GrantedQoS1),
    (0x02, ReasonCode::GrantedQoS2),
    (0x04, ReasonCode::DisconnectWithWillMessage),
    (0x10, ReasonCode::NoMatchingSubscribers),
    (0x11, ReasonCode::NoSubscriptionExisted),
    (0x18, ReasonCode::ContinueAuthentication),
    (0x19, ReasonCode::ReAuthenticate),
    (0x80, ReasonCode::UnspecifiedError),
    (0x81, ReasonCode::MalformedPacket),
    (0x82, ReasonCode::ProtocolError),
    (0x83, ReasonCode::ImplementationSpecificError),
    (0x84, ReasonCode::UnsupportedProtocolVersion),
    (0x85, ReasonCode::ClientIdentifierNotValid),
    (0x86, ReasonCode::BadUserNameOrPassword),
    (0x87, ReasonCode::NotAuthorized),
    (0x88, ReasonCode::ServerUnavailable),
    (0x89, ReasonCode::ServerBusy),
    (0x8A, ReasonCode::Banned),
    (0x8B, ReasonCode::ServerShuttingDown),
    (0x8C, ReasonCode::BadAuthenticationMethod),
    (0x8D, ReasonCode::KeepAliveTimeout),
    (0x8E, ReasonCode::SessionTakenOver),
    (0x8F, ReasonCode::TopicFilterInvalid),
    (0x90, ReasonCode::TopicNameInvalid),
    (0x91, ReasonCode::PacketIdentifierInUse),
    (0x92, ReasonCode::PacketIdentifierNotFound),
    (0x93, ReasonCode::ReceiveMaximumExceeded),
    (0x94, ReasonCode::TopicAliasInvalid),
    (0x95, ReasonCode::PacketTooLarge),
    (0x96, ReasonCode::MessageRateTooHigh),
    (0x97, ReasonCode::QuotaExceeded),
    (0x98, ReasonCode::AdministrativeAction),
    (0x99, ReasonCode::PayloadFormatInvalid),
    (0x9A, ReasonCode::RetainNotSupported),
    (0x9B, ReasonCode::QoSNotSupported),
    (0x9C, ReasonCode::UseAnotherServer),
    (0x9D, ReasonCode::ServerMoved),
    (0x9E, ReasonCode::SharedSubscriptionsNotSupported),
    (0x9F, ReasonCode::ConnectionRateExceeded),
    (0xA0, ReasonCode::MaximumConnectTime),
    (0xA1, ReasonCode::SubscriptionIdentifiersNotSupported),
    (0xA2, ReasonCode::WildcardSubscriptionsNotSupported),
];

impl ReasonCode {
    /// The reason code for a wire byte, `None` for a byte the specification does not define.
    pub fn from_u8(value: u8) -> Option<Self> {
        TABLE.iter().find(|(v, _)| *v == value).map(|(_, code)| *code)
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        TABLE.iter().find(|(_, c)| *c == self).map(|(v, _)| *v).unwrap_or(0x80)
    }

    /// Whether this code reports a failure (0x80 and above).
    pub fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// Whether a packet of type `packet` may carry this code: the tables of MQTT 5.0 sections 3.2.2.2 (CONNACK),
    /// 3.4.2.1 (PUBACK), 3.5.2.1 (PUBREC), 3.6.2.1 (PUBREL), 3.7.2.1 (PUBCOMP), 3.9.3 (SUBACK), 3.11.3 (UNSUBACK),
    /// 3.14.2.1 (DISCONNECT) and 3.15.2.1 (AUTH). Packets without a reason code take none.
    pub fn valid_in(self, packet: PacketType) -> bool {
        let code = self.as_u8();
        match packet {
            PacketType::ConnAck => {
                matches!(code, 0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F)
            }
            PacketType::PubAck | PacketType::PubRec => {
                matches!(code, 0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99)
            }
            PacketType::PubRel | PacketType::PubComp => matches!(code, 0x00 | 0x92),
            PacketType::SubAck => {
                matches!(code, 0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2)
            }
            PacketType::UnsubAck => matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
            PacketType::Disconnect => {
                matches!(code, 0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2)
            }
            PacketType::Auth => matches!(code, 0x00 | 0x18 | 0x19),
            _ => false,
        }
    }

    /// This code if a packet of type `packet` may carry it, else `fallback`.
    pub fn or_if_invalid_in(self, packet: PacketType, fallback: ReasonCode) -> ReasonCode {
        if self.valid_in(packet) { self } else { fallback }
    }

    /// The MQTT 3.1 / 3.1.1 CONNACK return code that carries the same meaning.
    pub fn connack_return_code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::ServerUnavailable
            | Self::ServerBusy
            | Self::ServerShuttingDown
            | Self::UseAnotherServer
            | Self::ServerMoved
            | Self::ConnectionRateExceeded => 3,
            Self::BadUserNameOrPassword | Self::BadAuthenticationMethod => 4,
            _ => 5,
        }
    }

    /// The reason code for an MQTT 3.1 / 3.1.1 CONNACK return code, `None` for 6 and above.
    pub fn from_connack_return_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::UnsupportedProtocolVersion,
            2 => Self::ClientIdentifierNotValid,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The name the specification gives this code.
    pub fn description(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::GrantedQoS1 => "granted QoS 1",
            Self::GrantedQoS2 => "granted QoS 2",
            Self::DisconnectWithWillMessage => "disconnect with will message",
            Self::NoMatchingSubscribers => "no matching subscribers",
            Self::NoSubscriptionExisted => "no subscription existed",
            Self::ContinueAuthentication => "continue authentication",
            Self::ReAuthenticate => "re-authenticate",
            Self::UnspecifiedError => "unspecified error",
            Self::MalformedPacket => "malformed packet",
            Self::ProtocolError => "protocol error",
            Self::ImplementationSpecificError => "implementation specific error",
            Self::UnsupportedProtocolVersion => "unsupported protocol version",
            Self::ClientIdentifierNotValid => "client identifier not valid",
            Self::BadUserNameOrPassword => "bad user name or password",
            Self::NotAuthorized => "not authorized",
            Self::ServerUnavailable => "server unavailable",
            Self::ServerBusy => "server busy",
            Self::Banned => "banned",
            Self::ServerShuttingDown => "server shutting down",
            Self::BadAuthenticationMethod => "bad authentication method",
            Self::KeepAliveTimeout => "keep alive timeout",
            Self::SessionTakenOver => "session taken over",
            Self::TopicFilterInvalid => "topic filter invalid",
            Self::TopicNameInvalid => "topic name invalid",
            Self::PacketIdentifierInUse => "packet identifier in use",
            Self::PacketIdentifierNotFound => "packet identifier not found",
            Self::ReceiveMaximumExceeded => "receive maximum exceeded",
            Self::TopicAliasInvalid => "topic alias invalid",
            Self::PacketTooLarge => "packet too large",
            Self::MessageRateTooHigh => "message rate too high",
            Self::QuotaExceeded => "quota exceeded",
            Self::AdministrativeAction => "administrative action",
            Self::PayloadFormatInvalid => "payload format invalid",
            Self::RetainNotSupported => "retain not supported",
            Self::QoSNotSupported => "QoS not supported",
            Self::UseAnotherServer => "use another server",
            Self::ServerMoved => "server moved",
            Self::SharedSubscriptionsNotSupported => "shared subscriptions not supported",
            Self::ConnectionRateExceeded => "connection rate exceeded",
            Self::MaximumConnectTime => "maximum connect time",
            Self::SubscriptionIdentifiersNotSupported => "subscription identifiers not supported",
            Self::WildcardSubscriptionsNotSupported => "wildcard subscriptions not supported",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.description(), self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for (byte, code) in TABLE {
            assert_eq!(ReasonCode::from_u8(*byte), Some(*code));
            assert_eq!(code.as_u8(), *byte);
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xFF), None);
    }

    #[test]
    fn connack_codes_map_both_ways() {
        for rc in 0..=5u8 {
            let code = ReasonCode::from_connack_return_code(rc).unwrap();
            assert_eq!(code.connack_return_code(), rc);
        }
        assert_eq!(ReasonCode::from_connack_return_code(6), None);
        assert_eq!(ReasonCode::Banned.connack_return_code(), 5);
        assert_eq!(ReasonCode::ServerBusy.connack_return_code(), 3);
    }

    /// The bytes of the codes `packet` may carry.
    fn valid_in(packet: PacketType) -> Vec<u8> {
        TABLE.iter().filter(|(_, c)| c.valid_in(packet)).map(|(b, _)| *b).collect()
    }

    #[test]
    fn each_packet_takes_the_codes_of_its_table() {
        // How many codes each table of MQTT 5.0 chapter 3 lists.
        for (packet, count) in [
            (PacketType::ConnAck, 22),
            (PacketType::PubAck, 9),
            (PacketType::PubRec, 9),
            (PacketType::PubRel, 2),
            (PacketType::PubComp, 2),
            (PacketType::SubAck, 12),
            (PacketType::UnsubAck, 7),
            (PacketType::Auth, 3),
            (PacketType::Publish, 0),
        ] {
            assert_eq!(valid_in(packet).len(), count, "{packet:?}");
        }
        assert!(ReasonCode::BadUserNameOrPassword.valid_in(PacketType::ConnAck));
        assert!(!ReasonCode::BadUserNameOrPassword.valid_in(PacketType::PubAck));
        assert!(ReasonCode::NoMatchingSubscribers.valid_in(PacketType::PubRec));
        assert!(!ReasonCode::SessionTakenOver.valid_in(PacketType::ConnAck));
        assert!(ReasonCode::GrantedQoS2.valid_in(PacketType::SubAck));
        assert!(!ReasonCode::GrantedQoS2.valid_in(PacketType::UnsubAck));
        let fallback = ReasonCode::UnspecifiedError;
        assert_eq!(ReasonCode::Banned.or_if_invalid_in(PacketType::ConnAck, fallback), ReasonCode::Banned);
        assert_eq!(ReasonCode::Banned.or_if_invalid_in(PacketType::Disconnect, fallback), fallback);
    }

    #[test]
    fn disconnect_takes_its_own_codes_only() {
        // MQTT 5.0 section 3.14.2.1: the 29 codes a DISCONNECT may carry.
        let valid = valid_in(PacketType::Disconnect);
        assert_eq!(valid.len(), 29);
        for byte in [0x00, 0x04, 0x82, 0x87, 0x8B, 0x8E, 0x93, 0x98, 0x9C, 0xA2] {
            assert!(valid.contains(&byte), "{byte:#04x}");
        }
        for code in [
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::BadAuthenticationMethod,
            ReasonCode::Banned,
            ReasonCode::ContinueAuthentication,
            ReasonCode::ReAuthenticate,
            ReasonCode::PacketIdentifierNotFound,
            ReasonCode::GrantedQoS1,
        ] {
            assert!(!code.valid_in(PacketType::Disconnect), "{code:?}");
        }
    }
}
