//! Sans-IO MQTT 3.1, 3.1.1 and 5.0 codec.
//!
//! One version-agnostic packet model (the MQTT 5.0 superset) is decoded from, and encoded into, the wire format of
//! whichever protocol version a connection speaks; differences between the versions stay inside this crate.
//! Nothing here touches a socket or a clock.
//!
//! # Layout
//! - [`version`]: protocol versions and QoS levels.
//! - [`reason`]: MQTT 5 reason codes, and their mapping onto 3.x return codes.
//! - [`topic`]: validated topic names and filters, matching, shared-subscription filters.
//! - [`properties`]: the MQTT 5 properties of each packet type.
//! - [`packet`]: the packet model.
//! - [`mod@decode`]: the incremental, strict decoder.
//! - [`mod@encode`]: the encoder, with exact lengths.
//! - [`error`]: decode and encode errors, each knowing its reason code.
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use corvid_protocol::{decode, encode, Packet, ProtocolVersion, Publish, QoS, TopicName};
//!
//! let publish = Publish::new(TopicName::new("sensors/1/temp").unwrap(), "21.5", QoS::AtMostOnce);
//! let mut buf = BytesMut::new();
//! encode(&Packet::Publish(publish.clone()), ProtocolVersion::V5, &mut buf).unwrap();
//! let decoded = decode(&mut buf, ProtocolVersion::V5, 1024).unwrap();
//! assert_eq!(decoded, Some(Packet::Publish(publish)));
//! assert!(buf.is_empty());
//! ```

pub mod decode;
pub mod encode;
pub mod error;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod sparse;
pub mod topic;
pub mod version;
mod wire;

pub use decode::{decode, decode_frame_length};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, PubResponse, Publish, RetainHandling, SubAck,
    Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, PublishProperties,
    SubscribeProperties, UnsubscribeProperties, UserProperty, WillProperties,
};
pub use reason::ReasonCode;
pub use sparse::{Sparse, Unset};
pub use topic::{SharedFilter, TopicError, TopicFilter, TopicName};
pub use version::{ProtocolVersion, QoS};

/// A UTF-8 string backed by [`bytes::Bytes`], so decoded strings share the read buffer.
pub use bytestring::ByteString;
