//! Storing data in the session: [`SessionItems`] is a typed map that lives with a session. The connection
//! validator writes items; every later hook of that session reads or changes them.
//!
//! Here the validator stores the client's tenant (its user name) and a publish counter. Then:
//! - the subscription interceptor allows only filters under `tenants/<tenant>/`;
//! - the publish interceptor allows publishing only under `tenants/<tenant>/`, counts the client's messages and
//!   stamps each one with MQTT 5 user properties `tenant` and `publish-count`;
//! - the delivery filter keeps messages from reaching sessions marked `Muted` (a client that connects with the
//!   MQTT 5 user property `muted` = `true`).
//!
//! ```text
//! cargo run -p corvid --example session_items
//! mosquitto_sub -p 1883 -V 5 -u acme -t 'tenants/acme/#' -F '%t %p %P'
//! mosquitto_pub -p 1883 -V 5 -u acme -t tenants/acme/temp -m 21.5
//! ```

mod support;

use corvid::protocol::UserProperty;
use corvid::{
    ConnectReturnCode, PublishDecision, ReasonCode, Server, ServerOptions, SessionItems, SubscriptionDecision,
};

/// The tenant a client belongs to.
#[derive(Clone, Debug)]
struct Tenant(String);

/// How many messages the client published in this session.
#[derive(Clone, Debug, Default)]
struct PublishCount(u64);

/// Marks a session that receives nothing.
#[derive(Clone, Debug)]
struct Muted;

/// The topic prefix of the session's tenant.
fn prefix(items: &SessionItems) -> Option<String> {
    items.get::<Tenant>().map(|Tenant(name)| format!("tenants/{name}/"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .with_connection_validator(|c| {
            let Some(user) = c.username.clone() else {
                c.refuse(ConnectReturnCode::NotAuthorized);
                return;
            };
            c.session_items.insert(Tenant(user.to_string()));
            c.session_items.insert(PublishCount::default());
            if c.user_properties.iter().any(|p| &*p.key == "muted" && &*p.value == "true") {
                c.session_items.insert(Muted);
            }
        })
        .with_subscription_interceptor(|c| {
            let allowed = prefix(&c.session_items).is_some_and(|p| c.topic_filter.starts_with(&p));
            if !allowed {
                c.decision = SubscriptionDecision::Refuse(ReasonCode::NotAuthorized);
            }
        })
        .with_publish_interceptor(|c| {
            // Messages published by the process have no session, and no items.
            let Some(client_id) = c.client_id.clone() else { return };
            let Some(prefix) = prefix(&c.session_items) else { return };
            if !c.message.topic.starts_with(&prefix) {
                c.decision = PublishDecision::Refuse(ReasonCode::NotAuthorized);
                return;
            }
            let mut count = 0;
            c.session_items.update(|n: &mut PublishCount| {
                n.0 += 1;
                count = n.0;
            });
            let tenant = c.session_items.get::<Tenant>().map(|t| t.0).unwrap_or_default();
            println!("{client_id} (tenant {tenant}) published message {count} to {}", c.message.topic);
            let properties = &mut c.message.properties.user_properties;
            properties.push(UserProperty::new("tenant", tenant));
            properties.push(UserProperty::new("publish-count", count.to_string()));
        })
        .with_delivery_filter(|d| !d.session_items.contains::<Muted>())
        .build();
    let server = Server::start(options).await?;
    support::announce(&server);

    support::shutdown_signal().await;
    server.stop().await;
    Ok(())
}
