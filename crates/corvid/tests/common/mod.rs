//! Helpers of the protocol and broker tests: those of `tests/support` with a 3 s bound on every wait.

#![allow(dead_code)]

use std::time::Duration;

/// The longest any single wait in a test may take. 3 s, shorter than the server's own 5 s fallbacks (for its tasks
/// to end on stop, for a taken-over connection to end), so that awaiting `Server::stop` or a takeover within it
/// fails when such a fallback, not the behaviour under test, ended the wait.
pub(crate) const WAIT: Duration = Duration::from_secs(3);

#[path = "../support/mod.rs"]
mod support;

pub(crate) use support::*;
