//! The CONNECT handshake: validation, client identifier rules, session claim or takeover, CONNACK.

use super::Connection;
use crate::broker::Broker;
use crate::events::Event;
use crate::hooks::ConnectContext;
use crate::items::{ItemsSlot, SessionItems};
use crate::registry::{ConnControl, ConnInfo, Previous};
use crate::session::{SessionShared, SessionState};
use crate::stats::add;
use bytes::BytesMut;
use corvid_protocol::{
    ByteString, ConnAck, ConnAckProperties, Connect, DecodeError, Packet, PacketType, ProtocolVersion, ReasonCode,
    encode,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a new connection waits for the old one to hand its session over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads CONNECT within the connect timeout, establishes the session and sends CONNACK. `None` when the
/// connection ends here (refused, malformed, timed out).
pub(super) async fn handshake<S>(
    broker: Arc<Broker>,
    mut stream: S,
    remote: SocketAddr,
    client_certificate_subject: Option<String>,
) -> Option<Connection<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut rbuf = BytesMut::with_capacity(512);
    let timeout = broker.options.limits.connect_timeout;
    let max = broker.options.limits.max_packet_size;
    let first = tokio::time::timeout(timeout, async {
        loop {
            match corvid_protocol::decode(&mut rbuf, ProtocolVersion::V3_1_1, max) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            match stream.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => add(&broker.stats.bytes_received, n as u64),
            }
        }
    })
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(other)) => {
            tracing::debug!(%remote, packet = ?other.packet_type(), "first packet is not CONNECT");
            return None;
        }
        Ok(Err(Some(DecodeError::UnsupportedProtocolVersion(level)))) => {
            tracing::debug!(%remote, level, "unsupported protocol version");
            refuse(&mut stream, ProtocolVersion::V3_1_1, ReasonCode::UnsupportedProtocolVersion).await;
            return None;
        }
        Ok(Err(Some(error))) => {
            tracing::debug!(%remote, %error, "malformed CONNECT");
            return None;
        }
        Ok(Err(None)) => return None,
        Err(_) => {
            tracing::debug!(%remote, "no CONNECT within the connect timeout");
            return None;
        }
    };
    add(&broker.stats.messages_received, 1);
    establish(broker, stream, remote, rbuf, *connect, client_certificate_subject).await
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, version: ProtocolVersion, code: ReasonCode) {
    refuse_with(stream, version, code, ConnAckProperties::default()).await;
}

async fn refuse_with<S: AsyncWrite + Unpin>(
    stream: &mut S,
    version: ProtocolVersion,
    code: ReasonCode,
    properties: ConnAckProperties,
) {
    let reason_code = super::refusal(code, PacketType::ConnAck);
    let connack = ConnAck { session_present: false, reason_code, properties };
    let mut buf = BytesMut::new();
    if encode(&Packet::ConnAck(connack), version, &mut buf).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(&buf).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}

async fn establish<S>(
    broker: Arc<Broker>,
    mut stream: S,
    remote: SocketAddr,
    mut rbuf: BytesMut,
    connect: Connect,
    client_certificate_subject: Option<String>,
) -> Option<Connection<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let version = connect.protocol;
    let limits = &broker.options.limits;
    let v5 = version.is_v5();

    // Client identifier rules (MQTT 3.1.1 section 3.1.3.1, 5.0 section 3.1.3.1).
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && (!connect.clean_start || version == ProtocolVersion::V3_1) {
            refuse(&mut stream, version, ReasonCode::ClientIdentifierNotValid).await;
            return None;
        }
        let id = ByteString::from(format!("corvid-{:x}-{:x}", broker.next_id(), nanos()));
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id.clone()
    };
    if !broker.accepting.load(std::sync::atomic::Ordering::Relaxed) {
        refuse(&mut stream, version, ReasonCode::ServerUnavailable).await;
        return None;
    }
    let method = connect.properties.authentication_method.clone();
    if connect.username.is_none() && method.is_none() && !broker.options.allow_anonymous {
        refuse(&mut stream, version, ReasonCode::NotAuthorized).await;
        return None;
    }
    // Made only for the hooks of the handshake; a session whose hooks store nothing has no items at all.
    let mut items: Option<SessionItems> = None;
    // MQTT 5 enhanced authentication: the AUTH exchange, before the validator sees the connection.
    let mut auth_data = None;
    if let Some(method) = &method {
        let first = connect.properties.authentication_data.clone();
        match super::auth::exchange(
            &broker,
            &mut stream,
            &mut rbuf,
            &client_id,
            method,
            first,
            items.get_or_insert_default(),
        )
        .await
        {
            super::auth::Outcome::Success(data) => auth_data = data,
            super::auth::Outcome::Refused(code) => {
                tracing::info!(client_id = %client_id, %remote, code = %code, "enhanced authentication failed");
                refuse(&mut stream, version, code).await;
                return None;
            }
        }
    }
    // What the validator adds to the CONNACK.
    let mut response = ConnAckProperties::default();
    if let Some(validator) = &broker.options.hooks.connection_validator {
        let ctx = ConnectContext {
            client_id: client_id.clone(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            remote_addr: remote,
            protocol: version,
            clean_start: connect.clean_start,
            will: connect.will.clone(),
            user_properties: connect.properties.user_properties.clone(),
            client_certificate_subject,
            session_items: items.get_or_insert_default().clone(),
            reason_code: ReasonCode::Success,
            reason_string: None,
            response_user_properties: Vec::new(),
            server_reference: None,
            request_response_information: connect.properties.request_response_information.unwrap_or(false),
            response_information: None,
        };
        let ctx = validator.run(ctx).await;
        response.user_properties = ctx.response_user_properties;
        response.server_reference = ctx.server_reference.map(ByteString::from);
        if ctx.reason_code != ReasonCode::Success {
            tracing::info!(client_id = %client_id, %remote, code = %ctx.reason_code, "connection refused by validator");
            response.reason_string = ctx.reason_string.map(ByteString::from);
            refuse_with(&mut stream, version, ctx.reason_code, response).await;
            return None;
        }
        // MQTT 5.0 section 3.1.2.11.6: never unless the client asked.
        if connect.properties.request_response_information == Some(true) {
            response.response_information = ctx.response_information.map(ByteString::from);
        }
    }

    let expiry_interval = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0).min(limits.max_session_expiry_interval)
    } else if connect.clean_start {
        0
    } else {
        limits.max_session_expiry_interval
    };

    // Claim the client identifier; take the session over from another connection if needed.
    let generation = broker.next_id();
    let info = ConnInfo::new(remote, connect.username.as_deref());
    let control = Arc::new(ConnControl::new(info, version));
    crate::stats::add(&control.info.messages_received, 1); // the CONNECT
    let previous = match broker.registry.claim(&client_id, generation, control.clone()) {
        Previous::None => None,
        // Reconnecting cancels a will still waiting for its delay.
        Previous::Offline(offline) => Some(offline.state),
        Previous::Online(rx) => tokio::time::timeout(TAKEOVER_TIMEOUT, rx).await.ok().and_then(Result::ok),
    };
    let (state, session_present) = match previous {
        // A session with expiry 0 (clean session) ends with its connection, even one closed by this takeover.
        Some(state) if !connect.clean_start && state.shared.expiry_interval() > 0 => {
            if let Some(items) = &items {
                state.shared.items().absorb(items);
            }
            (state, true)
        }
        Some(old) => {
            broker.end_session(old);
            (new_state(&broker, &client_id, items), false)
        }
        None => (new_state(&broker, &client_id, items), false),
    };
    let was_durable = state.shared.is_durable();
    state.shared.set_expiry_interval(expiry_interval, broker.durable.is_some());
    if state.shared.is_durable() {
        // Stored with the session; it replaces the user name of an earlier connection of a resumed session.
        state.shared.set_username(connect.username.clone().into());
        broker.persist_session(&state.shared, None);
    } else if was_durable && state.shared.was_stored() {
        // Resumed with expiry 0: the session ends with this connection; drop its stored copy now.
        broker.store_ops(vec![crate::store::persistent::SessionOp::DeleteSession { client_id: client_id.clone() }]);
    }
    broker.registry.attach(&client_id, generation, state.shared.clone());

    // A client that authenticated with a method may authenticate again later with it (MQTT 5.0 section 4.12.1).
    let extras = method.as_ref().map(|method| Box::new(super::Extras::authenticated(method.clone())));
    let mut properties = response;
    let mut keep_alive = connect.keep_alive;
    if v5 {
        properties.assigned_client_identifier = assigned;
        properties.authentication_method = method;
        properties.authentication_data = auth_data;
        properties.receive_maximum = Some(limits.max_inflight);
        properties.maximum_packet_size = Some(limits.max_packet_size);
        properties.topic_alias_maximum = Some(limits.max_topic_alias);
        if !limits.retain_available {
            properties.retain_available = Some(false);
        }
        if connect.properties.session_expiry_interval.unwrap_or(0) != expiry_interval {
            properties.session_expiry_interval = Some(expiry_interval);
        }
        if limits.max_keepalive > 0 && (keep_alive == 0 || keep_alive > limits.max_keepalive) {
            keep_alive = limits.max_keepalive;
            properties.server_keep_alive = Some(keep_alive);
        }
    }
    let connack = ConnAck { session_present, reason_code: ReasonCode::Success, properties };
    let client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
    let rest = super::Rest {
        broker: broker.clone(),
        generation,
        control,
        state,
        will: connect.will.map(Box::new),
        send_quota: client_receive_maximum.min(limits.max_inflight),
        client_max_packet_size: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        client_topic_alias_max: connect.properties.topic_alias_maximum.unwrap_or(0),
        extras,
        problem_information: connect.properties.request_problem_information.unwrap_or(true),
        version,
        read_window: super::MIN_READ_WINDOW,
    };
    let mut conn = Connection {
        rest,
        stream,
        rbuf,
        wbuf: BytesMut::new(),
        route_cache: None,
        pending_acks: super::PendingAcks::default(),
    };
    conn.control.start_keep_alive(keep_alive, broker.millis());
    conn.send(&Packet::ConnAck(connack));
    conn.state.shared.set_online(true);
    broker.stats.client_connected();
    tracing::info!(
        client_id = %client_id, %remote, protocol = %version, clean_start = connect.clean_start,
        session_present, "client connected"
    );
    broker.emit(|| Event::ClientConnected {
        client_id: client_id.clone(),
        remote_addr: remote,
        protocol: version,
        username: connect.username.clone(),
        session_present,
    });
    // Resend unacknowledged messages of a resumed session, in order, with DUP.
    conn.resend_inflight();
    if conn.flush().await.is_err() {
        conn.finish(super::CloseReason::ConnectionLost).await;
        return None;
    }
    Some(conn)
}

fn new_state(broker: &Broker, client_id: &ByteString, items: Option<SessionItems>) -> SessionState {
    let limits = &broker.options.limits;
    let shared = Arc::new(SessionShared::new(
        broker.next_id(),
        client_id.clone(),
        ItemsSlot::adopt(items),
        limits.max_pending_messages_per_client,
        limits.pending_overflow,
    ));
    SessionState::new(shared)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
