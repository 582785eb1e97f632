//! MQTT 5 enhanced authentication (MQTT 5.0 section 4.12): the AUTH exchange between CONNECT and CONNACK, driven by
//! the server's enhanced-authentication hook.

use crate::broker::Broker;
use crate::hooks::{AuthContext, AuthDecision};
use crate::items::SessionItems;
use bytes::{Bytes, BytesMut};
use corvid_protocol::{Auth, AuthProperties, ByteString, Packet, ProtocolVersion, ReasonCode, encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most AUTH round trips one connection may take.
const MAX_STEPS: u32 = 16;

/// The outcome of an exchange.
pub(super) enum Outcome {
    /// Authenticated: CONNACK carries the method and this data.
    Success(Option<Bytes>),
    /// Refused with this reason code.
    Refused(ReasonCode),
}

/// Runs the exchange for `method`, starting with the CONNECT's authentication data.
pub(super) async fn exchange<S>(
    broker: &Broker,
    stream: &mut S,
    rbuf: &mut BytesMut,
    client_id: &ByteString,
    method: &ByteString,
    first_data: Option<Bytes>,
    items: &SessionItems,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(hook) = broker.options.hooks.enhanced_authentication.clone() else {
        return Outcome::Refused(ReasonCode::BadAuthenticationMethod);
    };
    let mut data = first_data;
    for step in 0..MAX_STEPS {
        let ctx = AuthContext {
            client_id: client_id.clone(),
            method: method.clone(),
            data: data.take(),
            step,
            session_items: items.clone(),
            decision: AuthDecision::Fail(ReasonCode::NotAuthorized),
        };
        let ctx = hook.run(ctx).await;
        let challenge = match ctx.decision {
            AuthDecision::Success(data) => return Outcome::Success(data),
            AuthDecision::Fail(code) => return Outcome::Refused(code),
            AuthDecision::Continue(challenge) => challenge,
        };
        let properties = AuthProperties {
            authentication_method: Some(method.clone()),
            authentication_data: challenge,
            ..AuthProperties::default()
        };
        let auth = Packet::Auth(Auth { reason_code: ReasonCode::ContinueAuthentication, properties });
        let mut out = BytesMut::new();
        if encode(&auth, ProtocolVersion::V5, &mut out).is_err() || stream.write_all(&out).await.is_err() {
            return Outcome::Refused(ReasonCode::UnspecifiedError);
        }
        match read_packet(broker, stream, rbuf).await {
            Some(Packet::Auth(reply))
                if reply.reason_code == ReasonCode::ContinueAuthentication
                    && reply.properties.authentication_method.as_ref() == Some(method) =>
            {
                data = reply.properties.authentication_data;
            }
            Some(_) => return Outcome::Refused(ReasonCode::ProtocolError),
            None => return Outcome::Refused(ReasonCode::NotAuthorized),
        }
    }
    Outcome::Refused(ReasonCode::NotAuthorized)
}

/// The next packet within the connect timeout; `None` on timeout, error or close.
async fn read_packet<S>(broker: &Broker, stream: &mut S, rbuf: &mut BytesMut) -> Option<Packet>
where
    S: AsyncRead + Unpin,
{
    let max = broker.options.limits.max_packet_size;
    tokio::time::timeout(broker.options.limits.connect_timeout, async {
        loop {
            match corvid_protocol::decode(rbuf, ProtocolVersion::V5, max) {
                Ok(Some(packet)) => return Some(packet),
                Ok(None) => {}
                Err(_) => return None,
            }
            match stream.read_buf(rbuf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
}
