//! MQTT over WebSocket: the HTTP/1.1 upgrade (path, `mqtt` / `mqttv3.1` subprotocol) and an adapter that turns
//! the binary frames into one byte stream for the connection driver, whatever the frame boundaries.

use bytes::Bytes;
use futures_util::{Sink, Stream};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

/// The subprotocols of MQTT over WebSocket: `mqtt` (3.1.1 and 5.0) and `mqttv3.1` (3.1).
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The largest HTTP request head accepted.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The settings of a WebSocket endpoint.
///
/// ```
/// let ws = corvid::transport::WebSocketOptions::default().with_path("/ws");
/// assert_eq!(ws.path, "/ws");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebSocketOptions {
    /// The HTTP path clients connect to (`/mqtt` by default); requests for other paths get 404.
    pub path: String,
    /// How long a client has to send its upgrade request (10 s by default).
    pub handshake_timeout: Duration,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        Self { path: "/mqtt".to_owned(), handshake_timeout: Duration::from_secs(10) }
    }
}

impl WebSocketOptions {
    /// Another path (a leading `/` is added if missing).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = if path.starts_with('/') { path } else { format!("/{path}") };
        self
    }

    /// How long a client has to send its upgrade request.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

/// The read buffer of a WebSocket connection (tungstenite allocates it up front; its default is 128 KiB).
pub(crate) const READ_BUFFER: usize = 16 * 1024;

/// Frames a client may send: a bound on the whole message of several MQTT packets.
pub(crate) fn max_message_size(max_packet_size: u32) -> usize {
    usize::try_from(max_packet_size).unwrap_or(usize::MAX).saturating_mul(2).max(1 << 20)
}

/// The WebSocket side of an endpoint.
pub(crate) struct WsAcceptor {
    options: WebSocketOptions,
    config: WebSocketConfig,
}

impl WsAcceptor {
    pub(crate) fn new(options: WebSocketOptions, max_packet_size: u32) -> Self {
        let max = max_message_size(max_packet_size);
        // The driver writes a batch of packets and flushes: no need to gather frames in a write buffer.
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        Self { options, config }
    }

    /// Reads the upgrade request and answers it, within the handshake timeout. `None` (logged, after an HTTP
    /// error response where one makes sense) when it is not a WebSocket upgrade for MQTT on our path.
    pub(crate) async fn accept<S>(&self, mut stream: S, remote: SocketAddr) -> Option<WsByteStream<WebSocketStream<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let upgrade = tokio::time::timeout(self.options.handshake_timeout, upgrade(&mut stream, &self.options)).await;
        let rest = match upgrade {
            Ok(Ok(rest)) => rest,
            Ok(Err(reason)) => {
                tracing::debug!(%remote, %reason, "WebSocket upgrade refused");
                return None;
            }
            Err(_) => {
                tracing::debug!(%remote, "WebSocket upgrade timed out");
                return None;
            }
        };
        let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(self.config)).await;
        Some(WsByteStream::new(ws))
    }
}

/// An HTTP error answer to a request that is not a valid upgrade.
struct Refusal {
    status: u16,
    reason: &'static str,
    message: String,
    extra_headers: &'static str,
}

impl Refusal {
    fn new(status: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { status, reason, message: message.into(), extra_headers: "" }
    }

    fn response(&self) -> String {
        let body = format!("{}\n", self.message);
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
            self.status,
            self.reason,
            body.len(),
            self.extra_headers,
            body
        )
    }
}

/// Reads the request head, answers 101 or an HTTP error. Returns the bytes read after the head (the start of
/// the first frames) or why the upgrade failed.
async fn upgrade<S>(stream: &mut S, options: &WebSocketOptions) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST_HEAD {
            let refusal = Refusal::new(431, "Request Header Fields Too Large", "request head too large");
            return Err(refuse(stream, refusal).await);
        }
        let mut chunk = [0u8; 2048];
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("connection closed before the request head ended".to_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read failed: {e}")),
        }
    };
    match check_request(&buf[..head_len], &options.path) {
        Ok(response) => {
            let written = async {
                stream.write_all(response.as_bytes()).await?;
                stream.flush().await
            };
            written.await.map_err(|e| format!("write failed: {e}"))?;
            Ok(buf.split_off(head_len))
        }
        Err(refusal) => Err(refuse(stream, refusal).await),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: Refusal) -> String {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(refusal.response().as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
    format!("{} {}: {}", refusal.status, refusal.reason, refusal.message)
}

/// Checks an upgrade request head; the 101 response, or the refusal.
fn check_request(head: &[u8], path: &str) -> Result<String, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::new(400, "Bad Request", "incomplete request")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(431, "Request Header Fields Too Large", "too many header fields"));
        }
        Err(e) => return Err(Refusal::new(400, "Bad Request", format!("malformed HTTP request: {e}"))),
    }
    let target = request.path.unwrap_or("");
    let request_path = target.split(['?', '#']).next().unwrap_or("");
    if request_path != path {
        return Err(Refusal::new(404, "Not Found", format!("no MQTT endpoint at {request_path}; use {path}")));
    }
    if request.method != Some("GET") {
        let mut refusal = Refusal::new(405, "Method Not Allowed", "MQTT over WebSocket needs a GET upgrade request");
        refusal.extra_headers = "Allow: GET\r\n";
        return Err(refusal);
    }
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let upgrade_required = |message: &str| {
        let mut refusal = Refusal::new(426, "Upgrade Required", message);
        refusal.extra_headers = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
        refusal
    };
    if !values("upgrade").any(|v| v.eq_ignore_ascii_case("websocket"))
        || !values("connection").any(|v| v.eq_ignore_ascii_case("upgrade"))
    {
        return Err(upgrade_required("this is an MQTT over WebSocket endpoint: send a WebSocket upgrade request"));
    }
    if !values("sec-websocket-version").any(|v| v == "13") {
        return Err(upgrade_required("unsupported WebSocket version (13 expected)"));
    }
    let Some(key) = values("sec-websocket-key").next() else {
        return Err(Refusal::new(400, "Bad Request", "Sec-WebSocket-Key missing"));
    };
    let offered: Vec<&str> = values("sec-websocket-protocol").collect();
    let protocol = offered.iter().find(|p| SUBPROTOCOLS.iter().any(|s| s.eq_ignore_ascii_case(p)));
    if protocol.is_none() && !offered.is_empty() {
        return Err(Refusal::new(
            400,
            "Bad Request",
            format!("unsupported WebSocket subprotocol {}; use mqtt", offered.join(", ")),
        ));
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let protocol_header = protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol_header}\r\n"
    ))
}

/// What a received WebSocket message means for the byte stream.
pub(crate) enum Frame {
    /// Bytes of the stream.
    Data(Bytes),
    /// The peer closes.
    Close,
    /// Ping and pong (answered by the WebSocket library).
    Control,
    /// A text frame: not allowed for MQTT.
    Text,
}

/// A WebSocket message type (tungstenite's, axum's).
pub(crate) trait WsMessage: Sized {
    /// A binary message.
    fn binary(data: Bytes) -> Self;
    /// What it means.
    fn frame(self) -> Frame;
}

impl WsMessage for Message {
    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn frame(self) -> Frame {
        match self {
            Self::Binary(data) => Frame::Data(data),
            Self::Close(_) => Frame::Close,
            Self::Ping(_) | Self::Pong(_) | Self::Frame(_) => Frame::Control,
            Self::Text(_) => Frame::Text,
        }
    }
}

/// A WebSocket connection: a stream and a sink of its messages.
pub(crate) trait WsTransport: Unpin {
    /// Its message type.
    type Message: WsMessage;
    /// Its error type.
    type Error: std::error::Error + Send + Sync + 'static;
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsTransport for WebSocketStream<S> {
    type Message = Message;
    type Error = tungstenite::Error;
}

/// Binary WebSocket frames as one byte stream: a read returns the data of the frames in order, whatever their
/// boundaries; each write sends one binary frame.
pub(crate) struct WsByteStream<W> {
    inner: W,
    pending: Bytes,
    closed: bool,
}

impl<W> WsByteStream<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, pending: Bytes::new(), closed: false }
    }
}

fn io_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> io::Error {
    io::Error::other(error)
}

impl<W> AsyncRead for WsByteStream<W>
where
    W: WsTransport + Stream<Item = Result<<W as WsTransport>::Message, <W as WsTransport>::Error>>,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => this.closed = true,
                Some(Err(error)) => return Poll::Ready(Err(io_error(error))),
                Some(Ok(message)) => match message.frame() {
                    Frame::Data(data) => this.pending = data,
                    Frame::Close => this.closed = true,
                    Frame::Control => {}
                    Frame::Text => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "text WebSocket frame (MQTT uses binary frames only)",
                        )));
                    }
                },
            }
        }
    }
}

impl<W> AsyncWrite for WsByteStream<W>
where
    W: WsTransport + Sink<<W as WsTransport>::Message, Error = <W as WsTransport>::Error>,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut this.inner).start_send(W::Message::binary(Bytes::copy_from_slice(buf))).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str) -> Vec<u8> {
        format!(
            "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn upgrade_echoes_the_mqtt_subprotocol() {
        let response = check_request(&request("Sec-WebSocket-Protocol: mqtt\r\n"), "/mqtt").ok().unwrap();
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{response}");
        assert!(response.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{response}");
        let response = check_request(&request("Sec-WebSocket-Protocol: foo, mqttv3.1\r\n"), "/mqtt").ok().unwrap();
        assert!(response.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"), "{response}");
        let response = check_request(&request(""), "/mqtt").ok().unwrap();
        assert!(!response.contains("Sec-WebSocket-Protocol"), "{response}");
    }

    #[test]
    fn refusals() {
        let status = |head: &[u8], path: &str| check_request(head, path).err().map(|r| r.status);
        assert_eq!(status(&request("Sec-WebSocket-Protocol: soap\r\n"), "/mqtt"), Some(400));
        assert_eq!(status(&request(""), "/other"), Some(404));
        assert_eq!(status(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "/mqtt"), Some(426));
        assert_eq!(status(b"POST /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "/mqtt"), Some(405));
        assert_eq!(status(b"\x10\x0c\x00\x04MQTT\r\n\r\n", "/mqtt"), Some(400));
    }
}
