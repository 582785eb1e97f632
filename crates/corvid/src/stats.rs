//! Broker-wide counters, read by `$SYS` topics and the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters since the broker started. All updates are relaxed atomic additions.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) publish_received: AtomicU64,
    pub(crate) publish_sent: AtomicU64,
    pub(crate) publish_dropped: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) publish_bytes_received: AtomicU64,
    pub(crate) publish_bytes_sent: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) clients_connected: AtomicU64,
    pub(crate) clients_maximum: AtomicU64,
    pub(crate) clients_expired: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Every MQTT packet received.
    pub messages_received: u64,
    /// Every MQTT packet sent.
    pub messages_sent: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Messages dropped: full queues, expired, or too large for the receiver.
    pub publish_dropped: u64,
    /// Bytes received on every connection.
    pub bytes_received: u64,
    /// Bytes sent on every connection.
    pub bytes_sent: u64,
    /// Payload bytes of PUBLISH received.
    pub publish_bytes_received: u64,
    /// Payload bytes of PUBLISH sent.
    pub publish_bytes_sent: u64,
    /// Connections accepted (CONNECT accepted) since start.
    pub connections_total: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// The most clients connected at once.
    pub clients_maximum: u64,
    /// Sessions removed because they expired.
    pub clients_expired: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            messages_received: self.messages_received.load(Relaxed),
            messages_sent: self.messages_sent.load(Relaxed),
            publish_received: self.publish_received.load(Relaxed),
            publish_sent: self.publish_sent.load(Relaxed),
            publish_dropped: self.publish_dropped.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            publish_bytes_received: self.publish_bytes_received.load(Relaxed),
            publish_bytes_sent: self.publish_bytes_sent.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            clients_connected: self.clients_connected.load(Relaxed),
            clients_maximum: self.clients_maximum.load(Relaxed),
            clients_expired: self.clients_expired.load(Relaxed),
        }
    }

    pub(crate) fn client_connected(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        let now = self.clients_connected.fetch_add(1, Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Relaxed);
    }

    pub(crate) fn client_disconnected(&self) {
        self.clients_connected.fetch_sub(1, Relaxed);
    }
}

/// Adds to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}
