//! MQTT 5 enhanced authentication (MQTT 5.0 section 4.12): the AUTH exchange between CONNECT and CONNACK, and
//! re-authentication of a connected client (section 4.12.1), both driven by the server's enhanced-authentication
//! hook.

use super::{CloseReason, Connection};
use crate::broker::Broker;
use crate::hooks::{AuthContext, AuthDecision};
use crate::items::SessionItems;
use bytes::{Bytes, BytesMut};
use corvid_protocol::{Auth, AuthProperties, ByteString, Packet, PacketType, ProtocolVersion, ReasonCode, encode};
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
            reauthentication: false,
            session_items: items.clone(),
            decision: AuthDecision::Fail(ReasonCode::NotAuthorized),
        };
        let ctx = hook.run(ctx).await;
        let challenge = match ctx.decision {
            AuthDecision::Success(data) => return Outcome::Success(data),
            AuthDecision::Fail(code) => return Outcome::Refused(code),
            AuthDecision::Continue(challenge) => challenge,
        };
        let auth = auth_packet(ReasonCode::ContinueAuthentication, method, challenge);
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

/// An AUTH packet from the server.
fn auth_packet(reason_code: ReasonCode, method: &ByteString, data: Option<Bytes>) -> Packet {
    let properties = AuthProperties {
        authentication_method: Some(method.clone()),
        authentication_data: data,
        ..AuthProperties::default()
    };
    Packet::Auth(Auth { reason_code, properties })
}

/// What a connection that authenticated with a method keeps for re-authentication.
pub(super) struct ReAuth {
    method: ByteString,
    /// While a re-authentication is under way: the step the hook is called with for the client's next AUTH.
    next_step: Option<u32>,
}

impl ReAuth {
    pub(super) fn new(method: ByteString) -> Self {
        Self { method, next_step: None }
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// An AUTH from a connected client: re-authentication (MQTT 5.0 section 4.12.1). The client must have
    /// authenticated with a method and name the same one, and start with "re-authenticate", then answer each
    /// challenge with "continue authentication"; anything else is a protocol error. The hook's refusal closes the
    /// connection with DISCONNECT. Packets keep flowing both ways between the steps.
    pub(super) async fn on_auth(&mut self, auth: Auth) -> Result<(), CloseReason> {
        let Some(state) = self.rest.extras.as_ref().and_then(|e| e.auth.as_ref()) else {
            return Err(self.violation(ReasonCode::ProtocolError, "AUTH without authentication method"));
        };
        if auth.properties.authentication_method.as_ref() != Some(&state.method) {
            return Err(self.violation(ReasonCode::ProtocolError, "AUTH with another authentication method"));
        }
        let step = match (auth.reason_code, state.next_step) {
            (ReasonCode::ReAuthenticate, None) => 0,
            (ReasonCode::ContinueAuthentication, Some(step)) => step,
            _ => return Err(self.violation(ReasonCode::ProtocolError, "AUTH out of sequence")),
        };
        let method = state.method.clone();
        let Some(hook) = self.broker.options.hooks.enhanced_authentication.clone() else {
            return Err(self.violation(ReasonCode::NotAuthorized, "no enhanced authentication"));
        };
        let ctx = AuthContext {
            client_id: self.client_id().clone(),
            method: method.clone(),
            data: auth.properties.authentication_data,
            step,
            reauthentication: true,
            session_items: self.state.shared.items(),
            decision: AuthDecision::Fail(ReasonCode::NotAuthorized),
        };
        let decision = hook.run(ctx).await.decision;
        let (next_step, reply) = match decision {
            AuthDecision::Continue(challenge) if step + 1 < MAX_STEPS => {
                (Some(step + 1), auth_packet(ReasonCode::ContinueAuthentication, &method, challenge))
            }
            AuthDecision::Continue(_) => {
                return Err(self.violation(ReasonCode::NotAuthorized, "too many re-authentication steps"));
            }
            AuthDecision::Success(data) => (None, auth_packet(ReasonCode::Success, &method, data)),
            AuthDecision::Fail(code) => {
                let code = code.or_if_invalid_in(PacketType::Disconnect, ReasonCode::NotAuthorized);
                tracing::info!(client_id = %self.client_id(), remote = %self.remote(), %code, "re-authentication failed");
                return Err(self.violation(code, "re-authentication failed"));
            }
        };
        if let Some(state) = self.rest.extras.as_mut().and_then(|e| e.auth.as_mut()) {
            state.next_step = next_step;
        }
        self.send(&reply);
        Ok(())
    }
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
