//! Parking idle connections needs a Unix poller: elsewhere, connections keep their tasks.

use crate::broker::Broker;
use crate::connection::ParkedConnection;
use std::sync::Arc;

/// Never made on this platform.
pub(crate) struct ParkingLot;

impl ParkingLot {
    pub(crate) fn new() -> std::io::Result<Self> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn len(&self) -> usize {
        0
    }

    pub(crate) fn stop(&self) {}
}

/// Hands the connection back: it keeps its task.
pub(crate) fn park(conn: ParkedConnection) -> Option<ParkedConnection> {
    Some(conn)
}

pub(crate) fn start(_: &Arc<Broker>) {}
