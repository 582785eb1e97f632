//! MQTT over WebSocket at a route of an axum [`Router`](axum::Router), next to ordinary HTTP routes, served by a
//! running [`Server`](crate::Server) that may also have its own TCP, TLS and WebSocket listeners.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use std::net::SocketAddr;
//!
//! let server = corvid::Server::start(corvid::ServerOptions::builder().with_default_endpoint_port(1883).build()).await?;
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/mqtt", corvid::transport::axum::mqtt_websocket(server.handle()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // With the connect info, the broker sees each client's address.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```

use super::ServerHandle;
use super::ws::{READ_BUFFER, SUBPROTOCOLS, WsByteStream, WsMessage, WsTransport, max_message_size};
use axum::extract::ConnectInfo;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use std::net::{Ipv4Addr, SocketAddr};

impl WsTransport for axum::extract::ws::WebSocket {
    type Message = Message;
    type Error = axum::Error;
}

impl WsMessage for Message {
    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn frame(self) -> super::ws::Frame {
        use super::ws::Frame;
        match self {
            Self::Binary(data) => Frame::Data(data),
            Self::Close(_) => Frame::Close,
            Self::Ping(_) | Self::Pong(_) => Frame::Control,
            Self::Text(_) => Frame::Text,
        }
    }
}

/// A `GET` route that upgrades to MQTT over WebSocket (subprotocol `mqtt` or `mqttv3.1`, echoed) and serves the
/// client with `server`. A request that is not a WebSocket upgrade gets axum's HTTP error; an offer of only
/// non-MQTT subprotocols gets 400.
///
/// The client's address is known when the router is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`; otherwise the broker sees `0.0.0.0:0`.
pub fn mqtt_websocket<S>(server: ServerHandle) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(move |upgrade: WebSocketUpgrade, extensions: Extensions| {
        let server = server.clone();
        async move { respond(server, upgrade, &extensions) }
    })
}

fn respond(server: ServerHandle, upgrade: WebSocketUpgrade, extensions: &Extensions) -> Response {
    if !server.is_running() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the MQTT server is stopped\n").into_response();
    }
    let offered: Vec<String> =
        upgrade.requested_protocols().filter_map(|p| p.to_str().ok()).map(str::to_owned).collect();
    let upgrade = upgrade.protocols(SUBPROTOCOLS);
    if upgrade.selected_protocol().is_none() && !offered.is_empty() {
        let message = format!("unsupported WebSocket subprotocol {}; use mqtt\n", offered.join(", "));
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let remote =
        extensions.get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |info| info.0);
    let max = max_message_size(server.broker().options.limits.max_packet_size);
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move { server.serve_connection(WsByteStream::new(socket), remote).await })
}
