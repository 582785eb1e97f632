//! Runs every example of `crates/corvid/examples` as a process against real MQTT clients (rumqttc, and a raw
//! client on the corvid codec where exact packets matter).
//!
//! The example binaries are the ones `cargo test -p corvid` builds next to this test (`target/<profile>/examples/`);
//! when running this test alone, build them first with `cargo build -p corvid --examples`.

mod embedding_common;

use bytes::Bytes;
use corvid::protocol::{Connect, QoS, UserProperty};
use corvid::{ProtocolVersion, ReasonCode};
use embedding_common::{QUIET, Raw, V4Client, WAIT, free_port, within};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Where cargo put the example `name`: `target/<profile>/examples/<name>`, beside `target/<profile>/deps/` that
/// holds this test.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p corvid` (which builds the examples) or `cargo build -p corvid --examples`",
        path.display()
    );
    path
}

/// A running example. Dropping it kills the process.
struct Example {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines read while looking for another one, oldest first.
    skipped: VecDeque<String>,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Example {
    /// Starts example `name` on a free port and waits for its `listening on ADDR` line.
    async fn start(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(example_binary(name));
        command
            .args(args)
            .env("CORVID_PORT", port.to_string())
            // A safety net: the example ends by itself even if this test dies without killing it.
            .env("CORVID_EXIT_AFTER_SECS", "60")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut example = Self { child, stdin, lines, skipped: VecDeque::new(), addr };
        let line = example.line("the `listening on` line", |l| l.starts_with("listening on ")).await;
        let addr: SocketAddr = line["listening on ".len()..].trim().parse().expect("an address after `listening on`");
        assert_eq!(addr, example.addr, "the example listens on 127.0.0.1 and CORVID_PORT");
        example
    }

    /// The first line of the example's output, not yet returned, that satisfies `pred`; waits for it.
    async fn line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(i) = self.skipped.iter().position(|l| pred(l)) {
            return self.skipped.remove(i).expect("a line at this index");
        }
        within(what, async {
            loop {
                match self.lines.recv().await {
                    Some(line) if pred(&line) => return line,
                    Some(line) => self.skipped.push_back(line),
                    None => panic!("the example ended before printing {what}"),
                }
            }
        })
        .await
    }

    /// Sends a command line to the example's standard input and returns the answer line that starts with
    /// `answer_prefix`.
    async fn command(&mut self, command: &str, answer_prefix: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{command}").expect("write to the example");
        stdin.flush().expect("flush to the example");
        self.line(&format!("the answer to `{command}`"), |l| l.starts_with(answer_prefix)).await
    }

    /// Waits for the process to end by itself and returns whether it succeeded.
    async fn wait_exit(&mut self) -> bool {
        within("the example to exit", async {
            loop {
                if let Some(status) = self.child.try_wait().expect("wait for the example") {
                    return status.success();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

fn v4_options(addr: SocketAddr, client_id: &str) -> rumqttc::MqttOptions {
    V4Client::options(addr, client_id)
}

fn v5_connect(client_id: &str) -> Connect {
    Connect::new(ProtocolVersion::V5, client_id.to_owned())
}

fn v311_connect(client_id: &str) -> Connect {
    Connect::new(ProtocolVersion::V3_1_1, client_id.to_owned())
}

#[tokio::test]
async fn minimal_serves_clients_and_exits_after_the_deadline() {
    let mut example = Example::start("minimal", &[], &[("CORVID_EXIT_AFTER_SECS", "3")]).await;
    let mut sub = V4Client::connect(example.addr, "minimal-sub").await;
    sub.subscribe("greetings/#", rumqttc::QoS::AtLeastOnce).await;
    let publisher = V4Client::connect(example.addr, "minimal-pub").await;
    publisher.client.publish("greetings/world", rumqttc::QoS::AtLeastOnce, false, "hello").await.unwrap();
    let p = sub.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("greetings/world", &b"hello"[..]));
    assert!(example.wait_exit().await, "the example exits cleanly once CORVID_EXIT_AFTER_SECS has elapsed");
}

#[tokio::test]
async fn options_builder_applies_the_limits() {
    let mut example = Example::start("options_builder", &[], &[]).await;
    let line = example.line("the options line", |l| l.starts_with("backlog")).await;
    assert!(line.starts_with("backlog 100,"), "{line}");
    let (_client, ack) = Raw::connect_with(example.addr, v5_connect("options-client")).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(256 * 1024));
    assert_eq!(ack.properties.receive_maximum, Some(32));
}

#[tokio::test]
async fn connection_validator_refuses_short_ids_and_bad_credentials() {
    use rumqttc::ConnectReturnCode as Rc;
    let example = Example::start("connection_validator", &[], &[]).await;
    let addr = example.addr;

    // MQTT 3.1.1, with the return codes of the validator.
    let mut short = v4_options(addr, "short");
    short.set_credentials("mySecretUser", "mySecretPassword");
    assert_eq!(V4Client::refused(short).await, Rc::BadClientId);
    let anonymous = v4_options(addr, "long-enough-client");
    assert_eq!(V4Client::refused(anonymous).await, Rc::BadUserNamePassword);
    let mut wrong_user = v4_options(addr, "long-enough-client");
    wrong_user.set_credentials("someoneElse", "mySecretPassword");
    assert_eq!(V4Client::refused(wrong_user).await, Rc::BadUserNamePassword);
    let mut wrong_password = v4_options(addr, "long-enough-client");
    wrong_password.set_credentials("mySecretUser", "guess");
    assert_eq!(V4Client::refused(wrong_password).await, Rc::BadUserNamePassword);
    let mut good = v4_options(addr, "long-enough-client");
    good.set_credentials("mySecretUser", "mySecretPassword");
    let _accepted = V4Client::connect_with(good).await;

    // MQTT 5 clients get the matching reason codes.
    let (_, ack) = Raw::handshake(addr, v5_connect("short")).await;
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    let mut connect = v5_connect("long-enough-v5-client");
    connect.username = Some("mySecretUser".into());
    connect.password = Some(Bytes::from_static(b"wrong"));
    let (_, ack) = Raw::handshake(addr, connect.clone()).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    connect.password = Some(Bytes::from_static(b"mySecretPassword"));
    let (_, ack) = Raw::handshake(addr, connect).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
}

#[tokio::test]
async fn server_publish_reaches_subscribers_without_a_client_connection() {
    let mut example = Example::start("server_publish", &[], &[]).await;
    let mut sub = V4Client::connect(example.addr, "server-publish-sub").await;
    sub.subscribe("server/#", rumqttc::QoS::AtLeastOnce).await;
    let status = sub.next_publish().await;
    assert_eq!((status.topic.as_str(), &status.payload[..], status.retain), ("server/status", &b"online"[..], true));
    let time = sub.next_publish().await;
    assert_eq!(time.topic, "server/time");
    let millis: u128 = std::str::from_utf8(&time.payload).unwrap().parse().expect("a number of milliseconds");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert!(now.abs_diff(millis) < 60_000, "{millis} is the time now ({now})");
    let line = example.line("a publish report", |l| l.starts_with("published")).await;
    assert!(line.ends_with("to 1 session(s)"), "only the test's subscriber is connected: {line}");
}

#[tokio::test]
async fn consume_messages_prints_every_message_with_its_client_id() {
    let mut example = Example::start("consume_messages", &[], &[]).await;
    let publisher = V4Client::connect(example.addr, "consumer-test-1").await;
    publisher.client.publish("sensors/1/temp", rumqttc::QoS::AtLeastOnce, false, "21.5").await.unwrap();
    publisher.client.publish("sensors/2/temp", rumqttc::QoS::AtMostOnce, true, "19").await.unwrap();
    let line = example.line("the first message", |l| l.contains("sensors/1/temp")).await;
    assert_eq!(line, "message from consumer-test-1 on sensors/1/temp (QoS 1, retain false): 21.5");
    let line = example.line("the second message", |l| l.contains("sensors/2/temp")).await;
    assert_eq!(line, "message from consumer-test-1 on sensors/2/temp (QoS 0, retain true): 19");
}

#[tokio::test]
async fn publish_interceptor_rewrites_refuses_and_drops() {
    let example = Example::start("publish_interceptor", &[], &[]).await;
    let addr = example.addr;
    let mut sub = Raw::v5(addr, "interceptor-sub").await;
    for f in ["my/#", "trash/#", "plain/#"] {
        assert_eq!(sub.subscribe_code(f, QoS::AtLeastOnce).await, ReasonCode::GrantedQoS1);
    }
    let mut publisher = Raw::v5(addr, "interceptor-pub").await;

    // Rewritten: a JSON document with the original payload and a timestamp.
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert_eq!(publisher.publish1("my/custom/topic", b"21.5", false).await.reason_code, ReasonCode::Success);
    let p = sub.recv_publish_ack().await;
    let doc: serde_json::Value = serde_json::from_slice(&p.payload).expect("a JSON payload");
    assert_eq!(doc["payload"], "21.5");
    let stamped = doc["received_at_ms"].as_u64().expect("a timestamp");
    assert!(stamped >= before && stamped < before + 60_000, "{stamped} vs {before}");

    // Other topics pass unchanged.
    publisher.publish1("plain/topic", b"as is", false).await;
    assert_eq!(&sub.recv_publish_ack().await.payload[..], b"as is");

    // Refused for the client `Someone`: PUBACK 0x87, and nobody receives it.
    let mut someone = Raw::v5(addr, "Someone").await;
    assert_eq!(someone.publish1("plain/topic", b"refused", false).await.reason_code, ReasonCode::NotAuthorized);
    let mut someone311 = Raw::connect_with(addr, v311_connect("Someone")).await.0;
    someone311.publish1("plain/topic", b"refused too", false).await;

    // Dropped: the publisher is acknowledged with success, nobody receives it.
    assert_eq!(publisher.publish1("trash/can", b"gone", false).await.reason_code, ReasonCode::Success);
    sub.expect_silence().await;
}

async fn check_subscription_rules(variant: &str, args: &[&str]) {
    use rumqttc::SubscribeReasonCode as Sub;
    let mut example = Example::start("subscription_interceptor", args, &[]).await;
    let line = example.line("the variant line", |l| l.starts_with("subscription interceptor:")).await;
    assert_eq!(line, format!("subscription interceptor: {variant}"));
    let addr = example.addr;
    let q1 = rumqttc::QoS::AtLeastOnce;

    let mut someone = V4Client::connect(addr, "someone").await;
    assert_eq!(someone.subscribe("admin/foo/bar", q1).await, vec![Sub::Failure]);
    assert_eq!(someone.subscribe("admin/foo/bar/baz", q1).await, vec![Sub::Failure]);
    assert_eq!(someone.subscribe("public/news", q1).await, vec![Sub::Success(q1)]);
    let mut admin = V4Client::connect(addr, "theAdmin").await;
    assert_eq!(admin.subscribe("admin/foo/bar", q1).await, vec![Sub::Success(q1)]);

    // The secret stuff: refused and the connection closed, for 3.1.1 (SUBACK 0x80, then close) and MQTT 5 clients.
    let mut someone311 = Raw::v311(addr, "someone-else").await;
    assert_eq!(someone311.subscribe_code("the/secret/stuff", QoS::AtLeastOnce).await.as_u8(), 0x80);
    assert!(someone311.expect_closed().await.is_empty(), "3.1.1 has no server DISCONNECT");
    let mut intruder = Raw::v5(addr, "intruder").await;
    assert_eq!(intruder.subscribe_code("the/secret/stuff/#", QoS::AtLeastOnce).await, ReasonCode::NotAuthorized);
    intruder.expect_disconnect(ReasonCode::NotAuthorized).await;
    let mut imperator = V4Client::connect(addr, "Imperator").await;
    assert_eq!(imperator.subscribe("the/secret/stuff", q1).await, vec![Sub::Success(q1)]);
}

#[tokio::test]
async fn subscription_interceptor_protects_topics() {
    check_subscription_rules("sync", &[]).await;
}

#[tokio::test]
async fn async_subscription_interceptor_protects_topics() {
    check_subscription_rules("async", &["--async"]).await;
}

fn tenant_connect(client_id: &str, tenant: Option<&str>) -> Connect {
    let mut connect = v5_connect(client_id);
    connect.username = tenant.map(Into::into);
    connect
}

fn user_property<'a>(p: &'a corvid::protocol::Publish, key: &str) -> Option<&'a str> {
    p.properties.user_properties.iter().find(|u| &*u.key == key).map(|u| &*u.value)
}

#[tokio::test]
async fn session_items_carry_the_tenant_through_every_hook() {
    let mut example = Example::start("session_items", &[], &[]).await;
    let addr = example.addr;

    let (_, ack) = Raw::handshake(addr, tenant_connect("nobody", None)).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized, "the validator needs a user name");

    let mut sub = Raw::connect_with(addr, tenant_connect("acme-sub", Some("acme"))).await.0;
    assert_eq!(sub.subscribe_code("tenants/acme/#", QoS::AtLeastOnce).await, ReasonCode::GrantedQoS1);
    assert_eq!(sub.subscribe_code("tenants/globex/#", QoS::AtLeastOnce).await, ReasonCode::NotAuthorized);
    let mut muted_connect = tenant_connect("acme-muted", Some("acme"));
    muted_connect.properties.user_properties.push(UserProperty::new("muted", "true"));
    let mut muted = Raw::connect_with(addr, muted_connect).await.0;
    assert_eq!(muted.subscribe_code("tenants/acme/#", QoS::AtLeastOnce).await, ReasonCode::GrantedQoS1);

    let mut publisher = Raw::connect_with(addr, tenant_connect("acme-pub", Some("acme"))).await.0;
    assert_eq!(publisher.publish1("tenants/globex/x", b"no", false).await.reason_code, ReasonCode::NotAuthorized);
    for n in 1..=2 {
        assert_eq!(publisher.publish1("tenants/acme/temp", b"21.5", false).await.reason_code, ReasonCode::Success);
        let p = sub.recv_publish_ack().await;
        assert_eq!(user_property(&p, "tenant"), Some("acme"));
        assert_eq!(user_property(&p, "publish-count"), Some(n.to_string().as_str()));
    }
    let line = example.line("the publish counter", |l| l.contains("published message 2")).await;
    assert_eq!(line, "acme-pub (tenant acme) published message 2 to tenants/acme/temp");
    // The delivery filter keeps everything from the muted session.
    muted.expect_silence().await;
}

/// A path for a test file in the temporary directory, unique to this process and `name`.
fn temp_path(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("corvid-{name}-{}-{nanos}.json", std::process::id()))
}

/// The JSON file's entries, once it exists and satisfies `pred`.
async fn json_file(path: &PathBuf, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    within("the JSON file", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                let entries: Vec<serde_json::Value> = serde_json::from_str(&text).expect("the file is whole JSON");
                if pred(&entries) {
                    return entries;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn retained_json_store_saves_atomically_and_reloads_after_restart() {
    let path = temp_path("retained");
    let file = path.to_str().unwrap().to_owned();
    let env = [("CORVID_RETAINED_FILE", file.as_str())];
    {
        let mut example = Example::start("retained_json_store", &[], &env).await;
        let line = example.line("the load report", |l| l.starts_with("loaded")).await;
        assert!(line.starts_with("loaded 0 retained message(s)"), "{line}");
        let mut publisher = Raw::v5(example.addr, "json-pub").await;
        publisher.publish1("home/temp", b"21.5", true).await;
        publisher.publish1("home/blob", &[0xff, 0x00, 0x7f], true).await;
        publisher.publish1("home/not-retained", b"x", false).await;
        let entries = json_file(&path, |e| e.len() == 2).await;
        let temp = entries.iter().find(|e| e["topic"] == "home/temp").expect("home/temp saved");
        assert_eq!((temp["payload"].as_str(), temp["qos"].as_u64()), (Some("21.5"), Some(1)));
        let blob = entries.iter().find(|e| e["topic"] == "home/blob").expect("home/blob saved");
        assert_eq!(blob["payload_hex"], "ff007f");
        // Deleting a retained message (empty payload) rewrites the file without it.
        publisher.publish1("home/blob", b"", true).await;
        json_file(&path, |e| e.len() == 1 && e[0]["topic"] == "home/temp").await;
        publisher.publish1("home/blob", &[0xff, 0x00, 0x7f], true).await;
        json_file(&path, |e| e.len() == 2).await;
        // Killed here, without a clean stop: the file on disk is still whole.
    }
    let tmp = PathBuf::from(format!("{file}.tmp"));
    assert!(!tmp.exists(), "no temporary file is left behind");

    let mut example = Example::start("retained_json_store", &[], &env).await;
    let line = example.line("the load report", |l| l.starts_with("loaded")).await;
    assert!(line.starts_with("loaded 2 retained message(s)"), "{line}");
    let mut sub = Raw::v5(example.addr, "json-sub").await;
    assert_eq!(sub.subscribe_code("home/#", QoS::AtLeastOnce).await, ReasonCode::GrantedQoS1);
    let mut got = [sub.recv_publish_ack().await, sub.recv_publish_ack().await];
    got.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    assert_eq!((got[0].topic.as_str(), &got[0].payload[..], got[0].retain), ("home/blob", &[0xff, 0, 0x7f][..], true));
    assert_eq!((got[1].topic.as_str(), &got[1].payload[..], got[1].retain), ("home/temp", &b"21.5"[..], true));
    sub.expect_silence().await;
    drop(example);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn admin_commands_act_on_clients_sessions_and_retained_messages() {
    let mut example = Example::start("admin", &[], &[]).await;
    let addr = example.addr;

    // Clients.
    let mut watched = Raw::v5(addr, "admin-watched").await;
    watched.ping().await;
    let line = example.command("clients", "clients:").await;
    assert!(line.contains("admin-watched (5.0 from 127.0.0.1:"), "{line}");

    // Drain and resume.
    assert_eq!(example.command("drain", "accepting:").await, "accepting: false");
    assert_eq!(V4Client::refused(v4_options(addr, "admin-late")).await, rumqttc::ConnectReturnCode::ServiceUnavailable);
    assert_eq!(example.command("resume", "accepting:").await, "accepting: true");
    let _late = V4Client::connect(addr, "admin-late").await;

    // Retained messages: set (visible to a new subscriber), get, delete.
    assert_eq!(example.command("set status/door open", "set").await, "set status/door");
    assert_eq!(example.command("get status/door", "retained status/door").await, "retained status/door: open");
    assert_eq!(example.command("retained", "retained:").await, "retained: [status/door=open]");
    let mut reader = Raw::v5(addr, "admin-reader").await;
    reader.subscribe_code("status/#", QoS::AtLeastOnce).await;
    let p = reader.recv_publish_ack().await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.retain), ("status/door", &b"open"[..], true));
    assert_eq!(example.command("unset status/door", "unset").await, "unset status/door: true");
    assert_eq!(example.command("get status/door", "retained status/door").await, "retained status/door: none");
    let mut late_reader = Raw::v5(addr, "admin-late-reader").await;
    late_reader.subscribe_code("status/#", QoS::AtLeastOnce).await;
    late_reader.expect_silence().await;

    // Subscribe a client on its behalf, and feed one session only.
    assert_eq!(
        example.command("subscribe admin-watched alerts/#", "subscribed").await,
        "subscribed admin-watched: true"
    );
    assert_eq!(
        example.command("enqueue admin-watched direct/hello hi", "enqueued").await,
        "enqueued for admin-watched: true"
    );
    let p = watched.recv_publish_ack().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("direct/hello", &b"hi"[..]));
    let mut alerter = Raw::v5(addr, "admin-alerter").await;
    alerter.publish1("alerts/fire", b"!", false).await;
    assert_eq!(&watched.recv_publish_ack().await.payload[..], b"!");

    // Disconnect a client: MQTT 5 receives DISCONNECT 0x98.
    assert_eq!(example.command("kick admin-watched", "kicked").await, "kicked admin-watched: true");
    watched.expect_disconnect(ReasonCode::AdministrativeAction).await;

    // An offline persistent session with queued messages; clear it, then delete it.
    let (persistent, _) = Raw::v5_persistent(addr, "admin-persistent", true, 300).await;
    let mut persistent = persistent;
    persistent.subscribe_code("jobs/#", QoS::AtLeastOnce).await;
    persistent.disconnect().await;
    alerter.publish1("jobs/1", b"one", false).await;
    alerter.publish1("jobs/2", b"two", false).await;
    let line = example.command("sessions", "sessions:").await;
    assert!(line.contains(r#"admin-persistent (offline, 2 pending, subscriptions ["jobs/#"])"#), "{line}");
    assert_eq!(example.command("clear admin-persistent", "cleared").await, "cleared admin-persistent: true");
    let line = example.command("sessions", "sessions:").await;
    assert!(line.contains("admin-persistent (offline, 0 pending"), "{line}");
    assert_eq!(example.command("delete admin-persistent", "deleted").await, "deleted admin-persistent: true");
    let line = example.command("sessions", "sessions:").await;
    assert!(!line.contains("admin-persistent"), "{line}");
    let (_back, session_present) = Raw::v5_persistent(addr, "admin-persistent", false, 300).await;
    assert!(!session_present, "the deleted session is gone");
    tokio::time::sleep(QUIET.min(WAIT)).await;
}
