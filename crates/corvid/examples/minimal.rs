//! The smallest embedded broker: start a server with the default options on one TCP endpoint, serve until Ctrl-C,
//! stop.
//!
//! MQTTnet: `mqttServer.StartAsync(new MqttServerOptions())` ... `StopAsync()`.
//!
//! ```text
//! cargo run -p corvid --example minimal        # CORVID_PORT=1883 by default
//! ```

mod support;

use corvid::{Server, ServerOptions};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // The defaults, except that the example listens on 127.0.0.1 only.
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .build();
    let server = Server::start(options).await?;
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
