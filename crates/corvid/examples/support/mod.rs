//! What every example shares: the listen address (127.0.0.1, port from `CORVID_PORT`), the `listening on ADDR`
//! line, and waiting for Ctrl-C or for `CORVID_EXIT_AFTER_SECS` to elapse.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The examples listen on the IPv4 loopback only.
pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The port from the `CORVID_PORT` environment variable, or `default`.
pub(crate) fn port(default: u16) -> u16 {
    std::env::var("CORVID_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

/// Prints `listening on ADDR` for the server's endpoint.
pub(crate) fn announce(server: &corvid::Server) {
    for addr in server.local_addrs() {
        println!("listening on {addr}");
    }
}

/// Resolves on Ctrl-C, or once `CORVID_EXIT_AFTER_SECS` seconds have passed when that variable is set.
pub(crate) async fn shutdown_signal() {
    let exit_after = std::env::var("CORVID_EXIT_AFTER_SECS").ok().and_then(|s| s.parse::<f64>().ok());
    let deadline = async {
        match exit_after {
            Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = deadline => {}
    }
}
