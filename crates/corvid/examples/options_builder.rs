//! Configuring the server with [`corvid::ServerOptionsBuilder`]: a connection backlog of 100 on port 1884 (as in
//! MQTTnet's `WithConnectionBacklog(100).WithDefaultEndpointPort(1884)`), plus a few limits of the core.
//!
//! ```text
//! cargo run -p corvid --example options_builder        # CORVID_PORT=1884 by default
//! ```

mod support;

use corvid::{OverflowPolicy, Server, ServerOptions};
use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_connection_backlog(100)
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1884))
        // Limits: packets of at most 256 KiB, at most 32 unacknowledged QoS 1/2 messages per client, 1000 queued
        // messages per session (the oldest goes first), 5 s to send CONNECT, `$SYS` topics every 30 s.
        .with_max_packet_size(256 * 1024)
        .with_max_inflight(32)
        .with_max_pending_messages(1000, OverflowPolicy::DropOldest)
        .with_connect_timeout(Duration::from_secs(5))
        .with_sys_interval(Some(Duration::from_secs(30)))
        .build();
    let (backlog, limits) = (options.backlog, options.limits.clone());
    let server = Server::start(options).await?;
    println!(
        "backlog {backlog}, max packet size {} bytes, max inflight {}, max pending {}",
        limits.max_packet_size, limits.max_inflight, limits.max_pending_messages_per_client
    );
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
