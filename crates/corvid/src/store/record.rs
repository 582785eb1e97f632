//! Versioned binary records for durable stores: sessions, queued messages and retained messages.
//!
//! Every record starts with a version byte: message records are at version 1, session records at version 2 (which
//! added the user name; a version 1 session record still loads, its user name unknown). A message is kept as an
//! MQTT 5 PUBLISH packet, so loading it goes through the strict decoder: a damaged record is an error, never a wrong
//! message.

use crate::message::Message;
use crate::store::persistent::{StoredMessage, StoredMessageState, StoredUsername};
use crate::wallclock::{from_unix_millis, unix_millis};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use corvid_protocol::{
    ByteString, Packet, PacketId, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions, TopicFilter,
};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The format version of message records (retained and queued messages) written now.
pub const VERSION: u8 = 1;

/// The format version of session records written now. Version 1 had no user name.
pub const SESSION_VERSION: u8 = 2;

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record's version is not one this build reads.
    #[error("record version {0} is not supported by this build")]
    Version(u8),
    /// The record ends early or its fields are invalid.
    #[error("damaged record: {0}")]
    Damaged(&'static str),
}

/// The wall-clock time an `Instant` deadline falls at.
fn wall(deadline: Instant) -> SystemTime {
    let now = Instant::now();
    let wall_now = SystemTime::now();
    if deadline >= now { wall_now + (deadline - now) } else { wall_now - (now - deadline) }
}

/// The `Instant` for a wall-clock deadline.
fn instant(deadline: SystemTime) -> Instant {
    let now = Instant::now();
    match deadline.duration_since(SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

struct Cursor(Bytes);

impl Cursor {
    fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n { Err(RecordError::Damaged("record ends early")) } else { Ok(()) }
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        Ok(self.0.split_to(len))
    }
    fn string(&mut self) -> Result<ByteString, RecordError> {
        ByteString::try_from(self.bytes()?).map_err(|_| RecordError::Damaged("invalid UTF-8"))
    }
    /// The record's version, one from 1 to `newest`.
    fn version(&mut self, newest: u8) -> Result<u8, RecordError> {
        match self.u8()? {
            v @ 1.. if v <= newest => Ok(v),
            v => Err(RecordError::Version(v)),
        }
    }
}

/// Encodes an application message (retained, or the body of a queued one).
pub fn encode_message(message: &Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + message.topic.len() + message.payload.len());
    buf.put_u8(VERSION);
    write_message(&mut buf, message);
    buf.freeze()
}

/// Decodes what [`encode_message`] wrote.
pub fn decode_message(record: Bytes) -> Result<Message, RecordError> {
    let mut c = Cursor(record);
    c.version(VERSION)?;
    read_message(&mut c)
}

fn write_message(buf: &mut BytesMut, message: &Message) {
    buf.put_u64(message.expires_at.map_or(0, |t| unix_millis(wall(t)).max(1)));
    match &message.publisher {
        Some(p) => {
            buf.put_u8(1);
            put_str(buf, p.as_bytes());
        }
        None => buf.put_u8(0),
    }
    let mut publish = Publish::new(message.topic.clone(), message.payload.clone(), message.qos);
    publish.retain = message.retain;
    publish.packet_id = (message.qos != QoS::AtMostOnce).then(|| PacketId::new(1)).flatten();
    publish.properties = message.properties.clone();
    if let Some(p) = publish.properties.set_mut() {
        p.message_expiry_interval = None;
    }
    let mut packet = BytesMut::new();
    // A message that came through the decoder always encodes; an error here would be a broker bug.
    if corvid_protocol::encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut packet).is_ok() {
        buf.put_u32(packet.len() as u32);
        buf.put_slice(&packet);
    } else {
        buf.put_u32(0);
    }
}

fn read_message(c: &mut Cursor) -> Result<Message, RecordError> {
    let expires = c.u64()?;
    let publisher = match c.u8()? {
        0 => None,
        1 => Some(c.string()?),
        _ => return Err(RecordError::Damaged("bad publisher flag")),
    };
    let len = c.u32()? as usize;
    c.need(len)?;
    let mut packet = BytesMut::from(&c.0.split_to(len)[..]);
    let publish = match corvid_protocol::decode(&mut packet, ProtocolVersion::V5, u32::MAX) {
        Ok(Some(Packet::Publish(p))) if packet.is_empty() => p,
        _ => return Err(RecordError::Damaged("message is not a valid PUBLISH")),
    };
    let mut message = Message::new(publish.topic, publish.payload, publish.qos, publish.retain);
    message.properties = publish.properties;
    message.publisher = publisher;
    if expires != 0 {
        let deadline = from_unix_millis(expires);
        message.expires_at = Some(instant(deadline));
        let left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        message.properties.message_expiry_interval = Some(left.as_secs().max(1).min(u64::from(u32::MAX)) as u32);
    }
    Ok(message)
}

/// Encodes a queued message with its delivery state.
pub fn encode_stored_message(m: &StoredMessage) -> Bytes {
    let mut buf = BytesMut::with_capacity(48 + m.message.topic.len() + m.message.payload.len());
    buf.put_u8(VERSION);
    write_stored_head(&mut buf, m);
    write_message(&mut buf, &m.message);
    buf.freeze()
}

fn write_stored_head(buf: &mut BytesMut, m: &StoredMessage) {
    buf.put_u64(m.seq);
    let (kind, id) = match m.state {
        StoredMessageState::Queued => (0u8, 0u16),
        StoredMessageState::Sent(id) => (1, id.get()),
        StoredMessageState::Released(id) => (2, id.get()),
    };
    buf.put_u8(m.qos.as_u8() | u8::from(m.retain) << 2 | kind << 3);
    buf.put_u16(id);
    buf.put_u16(m.subscription_ids.len() as u16);
    for id in &m.subscription_ids {
        buf.put_u32(*id);
    }
}

/// Decodes what [`encode_stored_message`] wrote.
pub fn decode_stored_message(record: Bytes) -> Result<StoredMessage, RecordError> {
    let mut c = Cursor(record);
    c.version(VERSION)?;
    let seq = c.u64()?;
    let flags = c.u8()?;
    let qos = QoS::from_u8(flags & 0x03).ok_or(RecordError::Damaged("bad QoS"))?;
    let id = c.u16()?;
    let state = match flags >> 3 {
        0 => StoredMessageState::Queued,
        1 => StoredMessageState::Sent(PacketId::new(id).ok_or(RecordError::Damaged("packet identifier 0"))?),
        2 => StoredMessageState::Released(PacketId::new(id).ok_or(RecordError::Damaged("packet identifier 0"))?),
        _ => return Err(RecordError::Damaged("bad message state")),
    };
    let n = c.u16()?;
    let mut subscription_ids = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        subscription_ids.push(c.u32()?);
    }
    let message = read_message(&mut c)?;
    Ok(StoredMessage { seq, message: Arc::new(message), qos, retain: flags & 0x04 != 0, subscription_ids, state })
}

/// A session's own record: user name, expiry, disconnect time, subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The user name its client last connected with ([`StoredUsername::Unknown`] in a version 1 record).
    pub username: StoredUsername,
    /// Expiry interval in seconds.
    pub expiry_interval: u32,
    /// When its client went away.
    pub disconnected_at: Option<SystemTime>,
    /// Subscriptions with their identifiers.
    pub subscriptions: Vec<(TopicFilter, SubscriptionOptions, Option<u32>)>,
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    let rh = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    o.qos.as_u8() | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | rh << 4
}

fn options_from(bits: u8) -> Result<SubscriptionOptions, RecordError> {
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(bits & 0x03).ok_or(RecordError::Damaged("bad subscription QoS"))?,
        no_local: bits & 0x04 != 0,
        retain_as_published: bits & 0x08 != 0,
        retain_handling: match (bits >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(RecordError::Damaged("bad retain handling")),
        },
    })
}

/// Encodes a session record (version [`SESSION_VERSION`]).
///
/// Version 2: version byte, expiry interval (u32), disconnect time (u64 milliseconds since the epoch, 0 for none),
/// user name (one byte, 0 unknown, 1 none, 2 followed by the name as a u16-length string), subscription count
/// (u32), then per subscription its filter (u16-length string), options byte and identifier (u32, 0 for none).
/// Version 1 is the same without the user name.
pub fn encode_session(r: &SessionRecord) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(SESSION_VERSION);
    buf.put_u32(r.expiry_interval);
    buf.put_u64(r.disconnected_at.map_or(0, |t| unix_millis(t).max(1)));
    match &r.username {
        StoredUsername::Named(name) => {
            buf.put_u8(2);
            put_str(&mut buf, name.as_bytes());
        }
        StoredUsername::Anonymous => buf.put_u8(1),
        StoredUsername::Unknown => buf.put_u8(0),
    }
    buf.put_u32(r.subscriptions.len() as u32);
    for (filter, options, id) in &r.subscriptions {
        put_str(&mut buf, filter.as_bytes());
        buf.put_u8(options_byte(options));
        buf.put_u32(id.unwrap_or(0));
    }
    buf.freeze()
}

/// Decodes what [`encode_session`] wrote, or a version 1 session record.
pub fn decode_session(record: Bytes) -> Result<SessionRecord, RecordError> {
    let mut c = Cursor(record);
    let version = c.version(SESSION_VERSION)?;
    let expiry_interval = c.u32()?;
    let disconnected_at = match c.u64()? {
        0 => None,
        ms => Some(from_unix_millis(ms)),
    };
    let username = match version {
        1 => StoredUsername::Unknown,
        _ => match c.u8()? {
            0 => StoredUsername::Unknown,
            1 => StoredUsername::Anonymous,
            2 => StoredUsername::Named(c.string()?),
            _ => return Err(RecordError::Damaged("bad user name flag")),
        },
    };
    let n = c.u32()?;
    let mut subscriptions = Vec::new();
    for _ in 0..n {
        let filter = TopicFilter::new(c.string()?).map_err(|_| RecordError::Damaged("invalid topic filter"))?;
        let options = options_from(c.u8()?)?;
        let id = c.u32()?;
        subscriptions.push((filter, options, (id != 0).then_some(id)));
    }
    Ok(SessionRecord { username, expiry_interval, disconnected_at, subscriptions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid_protocol::{TopicName, UserProperty};

    fn message() -> Message {
        let mut m = Message::new(TopicName::new("a/b").unwrap(), "payload", QoS::ExactlyOnce, true);
        m.publisher = Some("pub-1".into());
        m.properties.user_properties.push(UserProperty::new("k", "v"));
        m.properties.content_type = Some("text/plain".into());
        m
    }

    #[test]
    fn message_round_trip() {
        let m = message();
        assert_eq!(decode_message(encode_message(&m)).unwrap(), m);
    }

    #[test]
    fn stored_message_round_trip_with_state() {
        let stored = StoredMessage {
            seq: 42,
            message: Arc::new(message()),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![3, 9],
            state: StoredMessageState::Released(PacketId::new(17).unwrap()),
        };
        let back = decode_stored_message(encode_stored_message(&stored)).unwrap();
        assert_eq!(back.seq, 42);
        assert_eq!(back.state, stored.state);
        assert_eq!(back.subscription_ids, vec![3, 9]);
        assert_eq!(*back.message, *stored.message);
    }

    #[test]
    fn expiry_survives_as_wall_clock() {
        let mut m = message();
        m.properties.message_expiry_interval = Some(100);
        m.stamp_expiry(Instant::now());
        let back = decode_message(encode_message(&m)).unwrap();
        let left = back.properties.message_expiry_interval.unwrap();
        assert!((98..=100).contains(&left), "{left}");
        assert!(back.expires_at.is_some());
    }

    #[test]
    fn session_round_trip() {
        let r = SessionRecord {
            username: StoredUsername::Named("alice".into()),
            expiry_interval: 3600,
            disconnected_at: Some(from_unix_millis(1_700_000_000_123)),
            subscriptions: vec![(
                TopicFilter::new("$share/g/a/+").unwrap(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    retain_handling: RetainHandling::SendIfNew,
                    ..Default::default()
                },
                Some(7),
            )],
        };
        assert_eq!(decode_session(encode_session(&r)).unwrap(), r);
    }

    #[test]
    fn session_user_name_round_trip_in_each_form() {
        for username in [StoredUsername::Named("".into()), StoredUsername::Anonymous, StoredUsername::Unknown] {
            let r = SessionRecord {
                username,
                expiry_interval: u32::MAX,
                disconnected_at: None,
                subscriptions: vec![(TopicFilter::new("a/#").unwrap(), SubscriptionOptions::default(), None)],
            };
            let bytes = encode_session(&r);
            assert_eq!(bytes[0], SESSION_VERSION);
            assert_eq!(decode_session(bytes).unwrap(), r);
        }
    }

    /// A session record as the version before user names were stored wrote it (`encode_session` of record version
    /// 1, byte for byte): it still loads, with the user name unknown.
    #[test]
    fn session_record_of_version_1_loads_with_its_user_name_unknown() {
        #[rustfmt::skip]
        let v1: &[u8] = &[
            0x01,                                               // version 1
            0x00, 0x00, 0x0e, 0x10,                             // expiry 3600 s
            0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b,     // disconnected at 1,700,000,000,123 ms
            0x00, 0x00, 0x00, 0x02,                             // 2 subscriptions
            0x00, 0x09, b's', b'e', b'n', b's', b'o', b'r', b's', b'/', b'#',
            0x01,                                               // QoS 1
            0x00, 0x00, 0x00, 0x00,                             // no subscription identifier
            0x00, 0x0c, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'a', b'/', b'+',
            0x16,                                               // QoS 2, no local, send retained if new
            0x00, 0x00, 0x00, 0x07,                             // subscription identifier 7
        ];
        let expected = SessionRecord {
            username: StoredUsername::Unknown,
            expiry_interval: 3600,
            disconnected_at: Some(from_unix_millis(1_700_000_000_123)),
            subscriptions: vec![
                (
                    TopicFilter::new("sensors/#").unwrap(),
                    SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
                    None,
                ),
                (
                    TopicFilter::new("$share/g/a/+").unwrap(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_handling: RetainHandling::SendIfNew,
                        ..Default::default()
                    },
                    Some(7),
                ),
            ],
        };
        assert_eq!(decode_session(Bytes::from_static(v1)).unwrap(), expected);
        // Written again, it is a version 2 record that keeps the user name unknown.
        let v2 = encode_session(&expected);
        assert_eq!((v2[0], v2[13]), (SESSION_VERSION, 0));
        assert_eq!(decode_session(v2).unwrap(), expected);
    }

    #[test]
    fn damaged_session_records_are_errors() {
        let r = SessionRecord {
            username: StoredUsername::Named("alice".into()),
            expiry_interval: 60,
            disconnected_at: None,
            subscriptions: vec![(TopicFilter::new("a/+").unwrap(), SubscriptionOptions::default(), Some(1))],
        };
        let bytes = encode_session(&r);
        for cut in 0..bytes.len() {
            assert!(decode_session(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let with = |i: usize, b: u8| {
            let mut changed = BytesMut::from(&bytes[..]);
            changed[i] = b;
            decode_session(changed.freeze())
        };
        assert_eq!(with(0, 0), Err(RecordError::Version(0)));
        assert_eq!(with(0, 3), Err(RecordError::Version(3)));
        assert_eq!(with(13, 3), Err(RecordError::Damaged("bad user name flag")));
        // Records of other kinds have not moved past version 1.
        let mut message = BytesMut::from(&encode_message(&message())[..]);
        message[0] = SESSION_VERSION;
        assert_eq!(decode_message(message.freeze()), Err(RecordError::Version(SESSION_VERSION)));
    }

    #[test]
    fn damage_is_an_error() {
        let bytes = encode_message(&message());
        for cut in 0..bytes.len() {
            assert!(decode_message(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut future = BytesMut::from(&bytes[..]);
        future[0] = 9;
        assert_eq!(decode_message(future.freeze()), Err(RecordError::Version(9)));
        let mut flipped = BytesMut::from(&bytes[..]);
        let last = flipped.len() - 8;
        flipped[12] ^= 0xFF; // inside the PUBLISH header
        let _ = last;
        assert!(decode_message(flipped.freeze()).is_err());
    }
}
