//! Helpers of the embedding API tests and the example tests: those of `tests/support` with a 5 s bound on every
//! wait, a free port for an example to listen on, and an event recorder.

#![allow(dead_code)]

use corvid::{Event, Server};
use std::time::Duration;
use tokio::sync::broadcast;

/// The longest any single wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

#[path = "../support/mod.rs"]
mod support;

pub(crate) use support::*;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Records every event of a server from the moment it is created.
pub(crate) struct Recorder {
    rx: broadcast::Receiver<Event>,
    seen: Vec<Event>,
}

impl Recorder {
    /// Starts recording `server`'s events.
    pub(crate) fn new(server: &Server) -> Self {
        Self { rx: server.events(), seen: Vec::new() }
    }

    /// Waits for an event matching `pred` (looking at those already seen first) and returns it.
    pub(crate) async fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        within(what, async {
            loop {
                match self.rx.recv().await {
                    Ok(e) => {
                        self.seen.push(e.clone());
                        if pred(&e) {
                            return e;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => panic!("recorder lagged by {n} events"),
                    Err(broadcast::error::RecvError::Closed) => panic!("event channel closed waiting for {what}"),
                }
            }
        })
        .await
    }

    /// Every event received so far (after draining what is ready).
    pub(crate) fn seen(&mut self) -> &[Event] {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }
}
