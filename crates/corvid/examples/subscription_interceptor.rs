//! Intercepting subscriptions: decide, per topic filter of every SUBSCRIBE, whether a client may subscribe.
//!
//! - Filters starting with `admin/foo/bar` are refused unless the client is `theAdmin` (SUBACK failure: 0x80 for
//!   MQTT 3.1.1, 0x87 "not authorized" for MQTT 5).
//! - Filters starting with `the/secret/stuff` are refused, and the connection closed, unless the client is
//!   `Imperator` (MQTT 5 clients receive DISCONNECT 0x87 after the SUBACK).
//!
//! Run with `--async` for the same rules as an asynchronous interceptor
//! ([`corvid::ServerOptionsBuilder::with_async_subscription_interceptor`]), the form to use when the decision needs
//! I/O, such as asking a database: the hook takes the context by value and gives it back when done.
//!
//! ```text
//! cargo run -p corvid --example subscription_interceptor
//! cargo run -p corvid --example subscription_interceptor -- --async
//! ```

mod support;

use corvid::{ReasonCode, Server, ServerOptions, SubscriptionContext, SubscriptionDecision};
use std::time::Duration;

/// The rules, shared by both variants.
fn decide(context: &mut SubscriptionContext) {
    let filter = context.topic_filter.as_str();
    if filter.starts_with("admin/foo/bar") && &*context.client_id != "theAdmin" {
        context.decision = SubscriptionDecision::Refuse(ReasonCode::NotAuthorized);
    }
    if filter.starts_with("the/secret/stuff") && &*context.client_id != "Imperator" {
        context.decision = SubscriptionDecision::RefuseAndDisconnect(ReasonCode::NotAuthorized);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let use_async = std::env::args().any(|a| a == "--async");
    let builder = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883));
    let builder = if use_async {
        builder.with_async_subscription_interceptor(|mut context: SubscriptionContext| async move {
            // Stands in for an asynchronous look-up (a database, an authorization service...).
            tokio::time::sleep(Duration::from_millis(5)).await;
            decide(&mut context);
            context
        })
    } else {
        builder.with_subscription_interceptor(decide)
    };
    let server = Server::start(builder.build()).await?;
    println!("subscription interceptor: {}", if use_async { "async" } else { "sync" });
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
