//! The running server: listeners, accept loops, background tasks, in-process publishing and shutdown.

use crate::broker::Broker;
use crate::connection;
use crate::events::Event;
use crate::items::SessionItems;
use crate::message::Message;
use crate::options::ServerOptions;
use crate::stats::StatsSnapshot;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};

/// A running MQTT broker.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let server = corvid::Server::start(corvid::ServerOptions::default()).await?;
/// // ... serve until it is time to stop:
/// server.stop().await;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    pub(crate) broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) transports: Vec<crate::transport::Acceptor>,
    /// The durable store's writer, joined at stop.
    durable_task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Server {
    /// Binds every endpoint and starts serving. Fails if an endpoint cannot be bound.
    pub async fn start(options: ServerOptions) -> io::Result<Self> {
        let mut listeners = Vec::new();
        for endpoint in &options.endpoints {
            let acceptor = crate::transport::Acceptor::new(endpoint, &options)?;
            listeners.push((bind(endpoint.addr(), options.backlog)?, acceptor));
        }
        let store = options.retained_store.clone();
        let (writer, write_task) = match &store {
            Some(store) => {
                let (writer, task) = crate::store::retained_writer::writer(store.clone());
                (Some(writer), Some(task))
            }
            None => (None, None),
        };
        let durable = options
            .persistent_store
            .clone()
            .map(|store| Arc::new(crate::store::writer::Durable::new(store, options.sync_policy)));
        let broker = Arc::new(Broker::new(options, writer, durable.clone()));
        let durable_task = match &durable {
            Some(durable) => {
                let store = durable.store().clone();
                let loaded = tokio::task::spawn_blocking(move || store.load())
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io::Error::other)?;
                let (sessions, retained) = crate::store::restore::restore(&broker, loaded);
                tracing::info!(sessions, retained, "restored from the durable store");
                Some(tokio::spawn(durable.clone().run()))
            }
            None => None,
        };
        if let Some(store) = &store {
            let now = Instant::now();
            for mut message in crate::store::retained_writer::load(store).await.map_err(io::Error::other)? {
                message.retain = true;
                message.stamp_expiry(now);
                broker.retained.set(Arc::new(message));
            }
        }
        if let Some(task) = write_task {
            broker.tasks.spawn(task.run(broker.clone()));
        }
        for handler in broker.options.event_handlers.clone() {
            let events = broker.events.subscribe();
            broker.tasks.spawn(run_event_handler(handler, events));
        }
        broker.emit(|| Event::ServerStarted);
        let mut local_addrs = Vec::new();
        let mut transports = Vec::new();
        for (listener, acceptor) in listeners {
            local_addrs.push(listener.local_addr()?);
            transports.push(acceptor.clone());
            broker.tasks.spawn(accept_loop(broker.clone(), listener, acceptor));
        }
        broker.tasks.spawn(sweep_loop(broker.clone()));
        broker.tasks.spawn(keep_alive_loop(broker.clone()));
        crate::parking::start(&broker);
        if let Some(interval) = broker.options.sys_interval {
            broker.tasks.spawn(crate::sys::publish_loop(broker.clone(), interval));
        }
        Ok(Self { broker, local_addrs, transports, durable_task: parking_lot::Mutex::new(durable_task) })
    }

    /// The addresses the endpoints are bound to (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Publishes a message from the process itself, with no network connection, through the publish interceptor.
    /// Returns how many sessions it was queued for.
    pub async fn publish(&self, mut message: Message) -> usize {
        message.publisher = None;
        message.stamp_expiry(Instant::now());
        let items = SessionItems::default();
        self.broker.intercept_and_publish(None, &items, message, None, Vec::new()).await.1.delivered
    }

    /// A receiver of every [`Event`] from now on. It holds up to [`ServerOptions::event_capacity`] events; one
    /// that falls further behind skips the oldest (`RecvError::Lagged`).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.broker.events.subscribe()
    }

    /// The broker's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.broker.stats.snapshot()
    }

    /// Serves one client over an already-established byte stream (a custom transport). The future ends when the
    /// connection does.
    pub async fn serve_connection<S>(&self, stream: S, remote: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let broker = self.broker.clone();
        if broker.shutdown.is_cancelled() {
            return;
        }
        let task = broker.tasks.spawn(connection::serve(broker.clone(), stream, remote));
        let _ = task.await;
    }

    /// Stops: closes the listeners, sends MQTT 5 clients DISCONNECT 0x8B (server shutting down), and waits for
    /// every connection task to end (at most a few seconds).
    pub async fn stop(self) {
        self.shutdown().await;
    }

    async fn shutdown(&self) {
        self.broker.stop();
        self.broker.tasks.close();
        self.broker.emit(|| Event::ServerStopped);
        if tokio::time::timeout(Duration::from_secs(5), self.broker.tasks.wait()).await.is_err() {
            tracing::warn!("connections still open five seconds after stop");
        }
        // Connections have stored their sessions: let the durable writer finish.
        if let Some(durable) = &self.broker.durable {
            durable.close();
        }
        let task = self.durable_task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    /// Cancels every task of the server; [`Server::stop`] also waits for them.
    fn drop(&mut self) {
        self.broker.stop();
        if let Some(durable) = &self.broker.durable {
            durable.close();
        }
    }
}

async fn run_event_handler(handler: crate::events::EventHandler, mut events: tokio::sync::broadcast::Receiver<Event>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(event) => {
                let last = matches!(event, Event::ServerStopped);
                handler(event).await;
                if last {
                    return;
                }
            }
            Err(RecvError::Lagged(n)) => tracing::warn!(skipped = n, "event handler fell behind"),
            Err(RecvError::Closed) => return,
        }
    }
}

fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    socket.listen(backlog)
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, acceptor: crate::transport::Acceptor) {
    loop {
        tokio::select! {
            () = broker.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    acceptor.spawn(&broker, stream, remote);
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn sweep_loop(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = broker.shutdown.cancelled() => return,
            _ = tick.tick() => broker.sweep(Instant::now()).await,
        }
    }
}

/// How often the keep-alive sweep looks at every connection. A client is closed between 1.5 times its keep-alive
/// and that plus this period after its last packet. Each sweep costs one or two atomic loads per connection, 1.5
/// to 3 ms for 100,000 of them: well under 1% of a core at this period.
const KEEP_ALIVE_SWEEP: Duration = Duration::from_millis(500);

/// Closes connections whose client has been silent for longer than one and a half keep-alives, and asks idle ones
/// to park: one task for the broker instead of a timer in every connection.
async fn keep_alive_loop(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(KEEP_ALIVE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let park_after = broker
        .parking
        .as_ref()
        .and(broker.options.limits.park_idle_after)
        .map(|idle| u32::try_from(idle.as_millis()).unwrap_or(u32::MAX));
    loop {
        tokio::select! {
            () = broker.shutdown.cancelled() => return,
            _ = tick.tick() => broker.registry.sweep_connections(broker.tick_coarse_millis(), park_after),
        }
    }
}
