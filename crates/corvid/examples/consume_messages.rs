//! Consuming messages: every message the broker processes is an [`Event::MessageReceived`], with the identifier of
//! the client that published it (MQTTnet's `ApplicationMessageReceived` event with its `ClientId`).
//!
//! The example prints one line per message: `message from CLIENT on TOPIC (QoS n, retain b): PAYLOAD`, where
//! CLIENT is `<server>` for messages the process itself published (such as `$SYS` topics).
//!
//! ```text
//! cargo run -p corvid --example consume_messages
//! mosquitto_pub -p 1883 -i sensor-1 -t sensors/1/temp -m 21.5
//! ```

mod support;

use corvid::{Event, Server, ServerOptions};
use tokio::sync::broadcast::error::RecvError;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .build();
    let server = Server::start(options).await?;

    // Subscribe to events before announcing the server, so that no message is missed. Events never slow the
    // broker down: a receiver that falls behind skips the oldest events and is told how many.
    let mut events = server.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::MessageReceived { client_id, message }) => {
                    let client = client_id.as_deref().unwrap_or("<server>");
                    println!(
                        "message from {client} on {} (QoS {}, retain {}): {}",
                        message.topic,
                        message.qos.as_u8(),
                        message.retain,
                        String::from_utf8_lossy(&message.payload)
                    );
                }
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) => eprintln!("fell behind: {skipped} events skipped"),
                Err(RecvError::Closed) => return,
            }
        }
    });
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
