//! Intercepting application messages: the publish interceptor sees every message before it is retained or
//! dispatched, and may rewrite, refuse or drop it.
//!
//! - Messages on `my/custom/topic` are rewritten into a JSON document that adds the time the server received them
//!   (for devices without a clock): `{"payload": "...", "received_at_ms": 1700000000000}`.
//! - Messages from the client `Someone` are refused: an MQTT 5 publisher receives PUBACK/PUBREC with reason code
//!   0x87 (not authorized); nobody receives the message.
//! - Messages on `trash/...` are dropped silently (MQTTnet: setting the payload to null); the publisher is
//!   acknowledged as usual.
//!
//! ```text
//! cargo run -p corvid --example publish_interceptor
//! ```

mod support;

use corvid::{PublishDecision, ReasonCode, Server, ServerOptions};
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .with_publish_interceptor(|context| {
            // It is possible to disallow the sending of messages for a certain client id like this:
            if context.client_id.as_deref() == Some("Someone") {
                context.decision = PublishDecision::Refuse(ReasonCode::NotAuthorized);
                return;
            }
            // Stop processing a message completely:
            if context.message.topic.starts_with("trash/") {
                context.decision = PublishDecision::Drop;
                return;
            }
            // Extend the payload, e.g. with a timestamp in a JSON document:
            if context.message.topic.as_str() == "my/custom/topic" {
                let received_at_ms =
                    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
                let document = serde_json::json!({
                    "payload": String::from_utf8_lossy(&context.message.payload),
                    "received_at_ms": received_at_ms,
                });
                context.message.payload = document.to_string().into();
            }
        })
        .build();
    let server = Server::start(options).await?;
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
