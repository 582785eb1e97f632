//! Administering a running server: draining, listing clients and sessions, disconnecting clients, deleting,
//! feeding and subscribing sessions, and reading or changing retained messages.
//!
//! The example reads commands from its standard input, one per line, and answers each with one line:
//!
//! | command | does |
//! | --- | --- |
//! | `drain` / `resume` | refuse new clients with "server unavailable" / accept them again |
//! | `clients` | the connected clients, with their counters |
//! | `sessions` | every session, connected or not, with its queued messages and subscriptions |
//! | `kick ID` | disconnects a client (MQTT 5: DISCONNECT 0x98 administrative action); its session stays |
//! | `delete ID` | deletes a session, disconnecting its client |
//! | `enqueue ID TOPIC PAYLOAD` | queues a QoS 1 message for that session only |
//! | `clear ID` | drops the messages queued for a session |
//! | `subscribe ID FILTER` | subscribes a session at QoS 1, as if its client had |
//! | `retained` | every retained message |
//! | `get TOPIC` / `set TOPIC PAYLOAD` / `unset TOPIC` | one retained message |
//!
//! ```text
//! cargo run -p corvid --example admin
//! clients
//! ```

mod support;

use corvid::protocol::SubscriptionOptions;
use corvid::{Message, QoS, ReasonCode, Server, ServerOptions, TopicFilter, TopicName};
use std::io::BufRead;

/// Runs one command line and gives the answer.
fn run(server: &Server, line: &str) -> String {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    match (command, args.as_slice()) {
        ("drain", []) => {
            server.pause_accepting();
            format!("accepting: {}", server.is_accepting())
        }
        ("resume", []) => {
            server.resume_accepting();
            format!("accepting: {}", server.is_accepting())
        }
        ("clients", []) => {
            let clients: Vec<String> = server
                .clients()
                .iter()
                .map(|c| {
                    format!(
                        "{} ({} from {}, {} packets in, {} out)",
                        c.client_id, c.protocol, c.remote_addr, c.messages_received, c.messages_sent
                    )
                })
                .collect();
            format!("clients: [{}]", clients.join(", "))
        }
        ("sessions", []) => {
            let sessions: Vec<String> = server
                .sessions()
                .iter()
                .map(|s| {
                    let filters: Vec<&str> = s.subscriptions.iter().map(|(f, _)| f.as_str()).collect();
                    let state = if s.connected { "online" } else { "offline" };
                    format!("{} ({state}, {} pending, subscriptions {filters:?})", s.client_id, s.pending_messages)
                })
                .collect();
            format!("sessions: [{}]", sessions.join(", "))
        }
        ("kick", [id]) => format!("kicked {id}: {}", server.disconnect_client(id, ReasonCode::AdministrativeAction)),
        ("delete", [id]) => format!("deleted {id}: {}", server.delete_session(id)),
        ("clear", [id]) => format!("cleared {id}: {}", server.clear_session_queue(id)),
        ("enqueue", [id, topic, payload]) => match TopicName::new(topic.to_string()) {
            Ok(topic) => {
                let message = Message::new(topic, payload.to_string(), QoS::AtLeastOnce, false);
                format!("enqueued for {id}: {}", server.enqueue(id, message))
            }
            Err(e) => format!("error: {e}"),
        },
        ("subscribe", [id, filter]) => match TopicFilter::new(filter.to_string()) {
            Ok(filter) => {
                let done = server.subscribe_client(id, filter, SubscriptionOptions::qos(QoS::AtLeastOnce));
                format!("subscribed {id}: {done}")
            }
            Err(e) => format!("error: {e}"),
        },
        ("retained", []) => {
            let all: Vec<String> = server
                .retained_messages()
                .iter()
                .filter(|m| !m.topic.starts_with('$'))
                .map(|m| format!("{}={}", m.topic, String::from_utf8_lossy(&m.payload)))
                .collect();
            format!("retained: [{}]", all.join(", "))
        }
        ("get", [topic]) => match server.retained_message(topic) {
            Some(m) => format!("retained {topic}: {}", String::from_utf8_lossy(&m.payload)),
            None => format!("retained {topic}: none"),
        },
        ("set", [topic, payload]) => match TopicName::new(topic.to_string()) {
            Ok(name) => {
                // Sets the retained message without publishing it to current subscribers.
                server.set_retained_message(Message::new(name, payload.to_string(), QoS::AtLeastOnce, true));
                format!("set {topic}")
            }
            Err(e) => format!("error: {e}"),
        },
        ("unset", [topic]) => match TopicName::new(topic.to_string()) {
            Ok(name) => format!("unset {topic}: {}", server.delete_retained_message(&name)),
            Err(e) => format!("error: {e}"),
        },
        _ => format!("unknown command: {line}"),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let options = ServerOptions::builder()
        .with_default_endpoint_bound_ip(support::LOCALHOST)
        .with_default_endpoint_port(support::port(1883))
        .build();
    let server = Server::start(options).await?;
    support::announce(&server);

    // Standard input is read on a thread of its own and handed over line by line.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let stop = support::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(line) = lines.recv() => {
                if !line.trim().is_empty() {
                    println!("{}", run(&server, line.trim()));
                }
            }
        }
    }
    server.stop().await;
    Ok(())
}
