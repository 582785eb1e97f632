//! Publishing from the process: [`Server::publish`] hands a message to the broker directly, with no loopback
//! connection (MQTTnet: "the server is able to publish its own messages").
//!
//! At start the server sets the retained message `server/status` = `online`; then every 500 ms it publishes the
//! time (milliseconds since the Unix epoch) to `server/time` at QoS 1. Subscribe with
//! `mosquitto_sub -p 1883 -t 'server/#' -v` to watch.
//!
//! ```text
//! cargo run -p corvid --example server_publish
//! ```

mod support;

use corvid::{Message, QoS, Server, ServerOptions, TopicName};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .build();
    let server = Server::start(options).await?;

    // A retained message: every later subscriber to `server/status` receives it.
    let status = TopicName::new("server/status").expect("valid topic");
    server.publish(Message::new(status, "online", QoS::AtLeastOnce, true)).await;
    support::announce(&server);

    let time = TopicName::new("server/time").expect("valid topic");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stop = support::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
                // `publish` runs the publish interceptor (if any) and returns how many sessions it was queued for.
                let receivers = server.publish(Message::new(time.clone(), now.to_string(), QoS::AtLeastOnce, false)).await;
                if receivers > 0 {
                    println!("published {now} to {receivers} session(s)");
                }
            }
        }
    }
    server.stop().await;
    Ok(())
}
