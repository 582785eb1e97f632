//! Transports: MQTT over TLS, over WebSocket and over WebSocket with TLS, and a [`ServerHandle`] to serve
//! connections accepted elsewhere (for example by an axum router, see the `axum` module with the `axum` feature).
//!
//! Every transport ends as a byte stream that the same per-connection driver consumes, so MQTT behaves the same
//! on all of them. A failure of a transport (a bad TLS handshake, plain TCP on a TLS port, an HTTP request that is
//! not a WebSocket upgrade, a non-MQTT subprotocol) closes that connection only.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use corvid::transport::{TlsOptions, TlsVersion, WebSocketOptions};
//! use corvid::{Endpoint, Server, ServerOptions};
//!
//! let tls = TlsOptions::pem("server.crt", "server.key").with_versions(&[TlsVersion::Tls13]);
//! let options = ServerOptions::builder()
//!     .with_endpoint(Endpoint::Tls("0.0.0.0:8883".parse()?, tls.clone()))
//!     .with_endpoint(Endpoint::WebSocket("0.0.0.0:8083".parse()?, WebSocketOptions::default()))
//!     .with_endpoint(Endpoint::WebSocketTls("0.0.0.0:8084".parse()?, WebSocketOptions::default(), tls))
//!     .build();
//! let server = Server::start(options).await?;
//! // Later, after the certificate files were replaced (connected clients stay connected):
//! server.reload_tls()?;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "tls")]
pub mod tls;
pub mod ws;

#[cfg(feature = "tls")]
pub use tls::{TlsError, TlsIdentity, TlsOptions, TlsVersion};
pub use ws::WebSocketOptions;

use crate::broker::Broker;
use crate::connection;
use crate::options::{Endpoint, ServerOptions};
use crate::server::Server;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

impl Endpoint {
    /// The address the endpoint listens on.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Tcp(addr) | Self::WebSocket(addr, _) => *addr,
            #[cfg(feature = "tls")]
            Self::Tls(addr, _) | Self::WebSocketTls(addr, _, _) => *addr,
        }
    }

    /// A short name of the transport: `tcp`, `tls`, `ws` or `wss`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tcp(_) => "tcp",
            Self::WebSocket(..) => "ws",
            #[cfg(feature = "tls")]
            Self::Tls(..) => "tls",
            #[cfg(feature = "tls")]
            Self::WebSocketTls(..) => "wss",
        }
    }
}

/// A cheap, cloneable handle to a running [`Server`], to serve connections accepted by other code (an HTTP
/// framework, a custom listener). It does not keep the server running: once the server stops, new connections
/// are closed at once.
#[derive(Clone)]
pub struct ServerHandle {
    broker: Arc<Broker>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("running", &self.is_running()).finish()
    }
}

impl ServerHandle {
    /// Serves one client over an already-established byte stream. The future ends when the connection does.
    pub async fn serve_connection<S>(&self, stream: S, remote: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.broker.shutdown.is_cancelled() {
            return;
        }
        let task = self.broker.tasks.spawn(connection::serve(self.broker.clone(), stream, remote));
        let _ = task.await;
    }

    /// Whether the server is still running (not stopped).
    pub fn is_running(&self) -> bool {
        !self.broker.shutdown.is_cancelled()
    }

    /// Whether new clients are accepted (see [`Server::pause_accepting`]).
    pub fn is_accepting(&self) -> bool {
        self.broker.accepting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The broker's counters now (as [`Server::stats`]), e.g. for a metrics endpoint.
    pub fn stats(&self) -> crate::StatsSnapshot {
        self.broker.stats.snapshot()
    }

    /// How many sessions there are (connected or not), and how many of them have a client connected.
    pub fn session_counts(&self) -> (usize, usize) {
        self.broker.registry.counts()
    }

    /// How many connected clients are parked now: idle, their connection waiting without a task (see
    /// [`crate::Limits::park_idle_after`]).
    pub fn parked_count(&self) -> usize {
        self.broker.parking.as_ref().map_or(0, |lot| lot.len())
    }

    /// How many retained messages there are.
    pub fn retained_count(&self) -> usize {
        self.broker.retained.len()
    }

    /// How many subscriptions there are (each filter of each session once).
    pub fn subscription_count(&self) -> usize {
        self.broker.subscriptions.len()
    }

    #[cfg(feature = "axum")]
    pub(crate) fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

impl Server {
    /// A cloneable handle to this server, e.g. for [`axum`](crate::transport) routes or custom listeners.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle { broker: self.broker.clone() }
    }

    /// Reloads the certificate, key and client CA files of every TLS and WebSocket-over-TLS endpoint. New
    /// handshakes use the new files; connected clients are not affected. All files are read first: if any of them
    /// fails, nothing changes and the error names the file. Returns how many endpoints were reloaded.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> Result<usize, TlsError> {
        let acceptors: Vec<&Arc<tls::TlsAcceptor>> = self.transports.iter().filter_map(Acceptor::tls).collect();
        let configs = acceptors.iter().map(|a| a.load()).collect::<Result<Vec<_>, _>>()?;
        for (acceptor, config) in acceptors.iter().zip(configs) {
            acceptor.replace(config);
        }
        tracing::debug!(endpoints = acceptors.len(), "TLS certificates reloaded");
        Ok(acceptors.len())
    }
}

/// How the connections of one endpoint are accepted.
#[derive(Clone)]
pub(crate) enum Acceptor {
    /// Plain TCP: straight to the connection driver.
    Tcp,
    #[cfg(feature = "tls")]
    Tls(Arc<tls::TlsAcceptor>),
    WebSocket(Arc<ws::WsAcceptor>),
    #[cfg(feature = "tls")]
    WebSocketTls(Arc<ws::WsAcceptor>, Arc<tls::TlsAcceptor>),
}

impl Acceptor {
    /// Prepares an endpoint: reads its certificate files. The error names the file at fault.
    pub(crate) fn new(endpoint: &Endpoint, options: &ServerOptions) -> io::Result<Self> {
        let max_packet_size = options.limits.max_packet_size;
        Ok(match endpoint {
            Endpoint::Tcp(_) => Self::Tcp,
            Endpoint::WebSocket(_, ws) => Self::WebSocket(Arc::new(ws::WsAcceptor::new(ws.clone(), max_packet_size))),
            #[cfg(feature = "tls")]
            Endpoint::Tls(addr, tls) => Self::Tls(Arc::new(tls_acceptor(*addr, tls)?)),
            #[cfg(feature = "tls")]
            Endpoint::WebSocketTls(addr, ws, tls) => Self::WebSocketTls(
                Arc::new(ws::WsAcceptor::new(ws.clone(), max_packet_size)),
                Arc::new(tls_acceptor(*addr, tls)?),
            ),
        })
    }

    #[cfg(feature = "tls")]
    fn tls(&self) -> Option<&Arc<tls::TlsAcceptor>> {
        match self {
            Self::Tls(tls) | Self::WebSocketTls(_, tls) => Some(tls),
            Self::Tcp | Self::WebSocket(_) => None,
        }
    }

    /// Starts serving an accepted TCP connection in a task of the server.
    pub(crate) fn spawn(&self, broker: &Arc<Broker>, stream: TcpStream, remote: SocketAddr) {
        match self {
            // Plain TCP keeps its own, smallest, task, and gives it up while idle.
            Self::Tcp => {
                broker.tasks.spawn(connection::serve_tcp(broker.clone(), stream, remote));
            }
            #[cfg(feature = "tls")]
            Self::Tls(tls) => {
                broker.tasks.spawn(serve_tls(broker.clone(), tls.clone(), stream, remote));
            }
            Self::WebSocket(ws) => {
                broker.tasks.spawn(serve_ws(broker.clone(), ws.clone(), stream, remote));
            }
            #[cfg(feature = "tls")]
            Self::WebSocketTls(ws, tls) => {
                broker.tasks.spawn(serve_wss(broker.clone(), ws.clone(), tls.clone(), stream, remote));
            }
        }
    }
}

#[cfg(feature = "tls")]
fn tls_acceptor(addr: SocketAddr, options: &TlsOptions) -> io::Result<tls::TlsAcceptor> {
    tls::TlsAcceptor::new(options.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS endpoint {addr}: {e}")))
}

/// Runs `f` unless the server stops first.
async fn unless_stopping<F: Future>(broker: &Broker, f: F) -> Option<F::Output> {
    tokio::select! {
        () = broker.shutdown.cancelled() => None,
        output = f => Some(output),
    }
}

// The serve functions below are plain functions returning their future: an `async fn` would keep its arguments in
// the connection's task, unused, for as long as the connection lasts. They go into the boxed handshake instead,
// which hands them back.

/// Serves the connection a handshake yields (with the verified client certificate's subject, if any). The
/// handshake is boxed: its state does not stay in the connection's task.
fn serve_after<S>(
    handshake: impl Future<Output = Option<(Arc<Broker>, S, SocketAddr, Option<String>)>> + Send + 'static,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = Box::pin(handshake);
    async move {
        let Some((broker, stream, remote, subject)) = handshake.await else {
            return;
        };
        connection::serve_with_certificate(broker, stream, remote, subject).await;
    }
}

#[cfg(feature = "tls")]
fn serve_tls(
    broker: Arc<Broker>,
    tls: Arc<tls::TlsAcceptor>,
    stream: TcpStream,
    remote: SocketAddr,
) -> impl Future<Output = ()> + Send {
    serve_after(async move {
        let (stream, subject) = unless_stopping(&broker, tls.accept(stream, remote)).await??;
        Some((broker, stream, remote, subject))
    })
}

fn serve_ws(
    broker: Arc<Broker>,
    ws: Arc<ws::WsAcceptor>,
    stream: TcpStream,
    remote: SocketAddr,
) -> impl Future<Output = ()> + Send {
    serve_after(async move {
        let stream = unless_stopping(&broker, ws.accept(stream, remote)).await??;
        Some((broker, stream, remote, None))
    })
}

#[cfg(feature = "tls")]
fn serve_wss(
    broker: Arc<Broker>,
    ws: Arc<ws::WsAcceptor>,
    tls: Arc<tls::TlsAcceptor>,
    stream: TcpStream,
    remote: SocketAddr,
) -> impl Future<Output = ()> + Send {
    serve_after(async move {
        let handshakes = async {
            let (stream, subject) = tls.accept(stream, remote).await?;
            Some((ws.accept(stream, remote).await?, subject))
        };
        let (stream, subject) = unless_stopping(&broker, handshakes).await??;
        Some((broker, stream, remote, subject))
    })
}
