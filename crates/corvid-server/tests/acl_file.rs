//! `acl_file` in the real `corvid` binary, over real sockets with rumqttc (MQTT 3.1.1 and 5): write checked on
//! PUBLISH and on wills, read checked on SUBSCRIBE and on every delivery (retained messages included), `%c` / `%u`
//! patterns, wildcards in names never widening a pattern, a malformed file stopping the start, SIGHUP reloading
//! both the password and the ACL file while connections stay up, and a persistent session keeping its client's user
//! name (for its read rules) across restarts of the broker, in the durable store.

mod common;

use common::{
    Broker, Dir, PubAckReason, SubscribeReasonCode, V4, V5, V5Connect, config, corvid, free_port, run, users,
};
use rumqttc::v5::mqttbytes::QoS;

const ACL: &str = "\
# anonymous clients
topic read public/#

user admin
topic readwrite #

user alice
topic readwrite alice/#
topic read sensors/#
topic deny sensors/private/#

user eve
topic read eve/#

user +
topic read plus/#

pattern readwrite devices/%c/#
pattern readwrite home/%u/#
";

/// A broker with the password file (alice, admin, eve and a user named "+") and the ACL above; anonymous clients
/// allowed; denied publishes logged.
fn broker(dir: &Dir) -> Broker {
    dir.write("passwd", &users::file(&[users::ALICE, users::ADMIN, users::EVE, users::PLUS]));
    dir.write("acl", ACL);
    let port = free_port();
    let extra = "allow_anonymous = true\npassword_file = \"passwd\"\nacl_file = \"acl\"\n\
                 log_level = \"info,corvid::security=debug\"";
    let cfg = dir.write("corvid.toml", &config(port, extra));
    let mut broker = Broker::start(dir, &cfg, port, &[]);
    broker.wait_for_log("ACL file");
    broker
}

const ALICE: Option<(&str, &str)> = Some(("alice", "secret"));
const ADMIN: Option<(&str, &str)> = Some(("admin", "adminpw"));
const EVE: Option<(&str, &str)> = Some(("eve", "evepw"));
const PLUS: Option<(&str, &str)> = Some(("+", "pluspw"));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_is_checked_on_publish() {
    let dir = Dir::new("acl-write");
    let broker = broker(&dir);
    let port = broker.port;
    let mut admin = V5::connect(port, "admin", ADMIN).await;
    assert_eq!(admin.subscribe("#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));

    // MQTT 5: PUBACK 0x87, and the subscriber gets nothing (the next message it gets is the allowed one).
    let mut alice = V5::connect(port, "alice-5", ALICE).await;
    assert_eq!(alice.publish("other/x", "no").await, PubAckReason::NotAuthorized);
    assert_eq!(alice.publish("sensors/x", "read only").await, PubAckReason::NotAuthorized);
    assert_eq!(alice.publish("alice/ok", "yes").await, PubAckReason::Success);
    assert_eq!(admin.next_message().await, ("alice/ok".to_owned(), "yes".to_owned()));

    // MQTT 3.1.1: acknowledged, and dropped.
    let mut alice4 = V4::connect(port, "alice-4", ALICE).await;
    alice4.publish("other/y", "no", false).await;
    alice4.publish("alice/ok", "yes 3.1.1", false).await;
    assert_eq!(admin.next_message().await, ("alice/ok".to_owned(), "yes 3.1.1".to_owned()));

    // Anonymous clients have the lines before any `user`: read only.
    let mut anon = V5::connect(port, "anon", None).await;
    assert_eq!(anon.publish("public/x", "no").await, PubAckReason::NotAuthorized);
    // A user with no rule for a topic: denied (what is not granted is denied).
    let mut eve = V5::connect(port, "eve", EVE).await;
    assert_eq!(eve.publish("eve/x", "read only").await, PubAckReason::NotAuthorized);
    assert_eq!(admin.publish("eve/x", "from admin").await, PubAckReason::Success);
    assert_eq!(admin.next_message().await, ("eve/x".to_owned(), "from admin".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_is_checked_on_subscribe_and_on_delivery() {
    let dir = Dir::new("acl-read");
    let broker = broker(&dir);
    let port = broker.port;
    let mut admin = V5::connect(port, "admin", ADMIN).await;
    // Retained messages, one of them on a topic alice may not read.
    admin.client.publish("sensors/private/r", QoS::AtLeastOnce, true, "secret retained").await.unwrap();
    admin.client.publish("sensors/public/r", QoS::AtLeastOnce, true, "public retained").await.unwrap();
    assert_eq!(admin.publish("sync", "").await, PubAckReason::Success);

    // SUBSCRIBE: a filter no read rule could match is refused (0x87 / 0x80); one that some rule could match is
    // granted, and each message is checked as it is delivered.
    let mut alice = V5::connect(port, "alice-5", ALICE).await;
    assert_eq!(alice.subscribe("bob/#").await, SubscribeReasonCode::NotAuthorized);
    assert_eq!(alice.subscribe("sensors/private/#").await, SubscribeReasonCode::NotAuthorized, "deny covers it");
    assert_eq!(alice.subscribe("sensors/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    let mut alice4 = V4::connect(port, "alice-4", ALICE).await;
    assert_eq!(alice4.subscribe("bob/#").await, rumqttc::SubscribeReasonCode::Failure);
    assert_eq!(alice4.subscribe("#").await, rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce));

    // Retained: only the readable one.
    assert_eq!(alice.next_message().await, ("sensors/public/r".to_owned(), "public retained".to_owned()));
    assert_eq!(alice4.next_message().await.0, "sensors/public/r");
    // Live: denied on delivery, in order.
    assert_eq!(admin.publish("sensors/private/live", "secret").await, PubAckReason::Success);
    assert_eq!(admin.publish("bob/live", "not for alice").await, PubAckReason::Success);
    assert_eq!(admin.publish("sensors/public/live", "hello").await, PubAckReason::Success);
    assert_eq!(alice.next_message().await, ("sensors/public/live".to_owned(), "hello".to_owned()));
    assert_eq!(alice4.next_message().await, ("sensors/public/live".to_owned(), "hello".to_owned()));

    // Anonymous clients: the lines before any `user`.
    let mut anon = V4::connect(port, "anon", None).await;
    assert_eq!(anon.subscribe("alice/#").await, rumqttc::SubscribeReasonCode::Failure);
    assert_eq!(anon.subscribe("public/#").await, rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce));
    assert_eq!(admin.publish("public/news", "n").await, PubAckReason::Success);
    assert_eq!(anon.next_message().await, ("public/news".to_owned(), "n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_substitute_client_id_and_user_name() {
    let dir = Dir::new("acl-patterns");
    let broker = broker(&dir);
    let port = broker.port;
    let mut eve = V5::connect(port, "dev1", EVE).await;
    assert_eq!(eve.publish("devices/dev1/temp", "21").await, PubAckReason::Success);
    assert_eq!(eve.publish("devices/dev2/temp", "21").await, PubAckReason::NotAuthorized);
    assert_eq!(eve.publish("home/eve/light", "on").await, PubAckReason::Success);
    assert_eq!(eve.publish("home/alice/light", "on").await, PubAckReason::NotAuthorized);
    assert_eq!(eve.subscribe("devices/dev1/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(eve.subscribe("home/alice/#").await, SubscribeReasonCode::NotAuthorized);
    assert_eq!(eve.publish("devices/dev1/cmd", "go").await, PubAckReason::Success);
    assert_eq!(eve.next_message().await, ("devices/dev1/cmd".to_owned(), "go".to_owned()));
    // The same patterns for an anonymous client: %c only.
    let mut anon = V5::connect(port, "dev9", None).await;
    assert_eq!(anon.publish("devices/dev9/temp", "20").await, PubAckReason::Success);
    assert_eq!(anon.publish("home/dev9/x", "20").await, PubAckReason::NotAuthorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_in_names_never_widen_a_pattern() {
    let dir = Dir::new("acl-wildcards");
    let broker = broker(&dir);
    let port = broker.port;
    let mut admin = V5::connect(port, "admin", ADMIN).await;
    assert_eq!(admin.subscribe("#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    // User "+" (a valid MQTT user name): `home/%u/#` must not become `home/+/#`.
    let mut plus = V5::connect(port, "plus-client", PLUS).await;
    assert_eq!(plus.publish("home/alice/light", "off").await, PubAckReason::NotAuthorized);
    assert_eq!(plus.subscribe("home/#").await, SubscribeReasonCode::NotAuthorized);
    assert_eq!(plus.subscribe("home/+/light").await, SubscribeReasonCode::NotAuthorized);
    // Its own rules still apply.
    assert_eq!(plus.subscribe("plus/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    // Client id "#" and "+": `devices/%c/#` must not become `devices/#/#` or `devices/+/#`.
    for id in ["#", "+"] {
        let mut c = V5::connect(port, id, EVE).await;
        assert_eq!(c.publish("devices/dev1/temp", "x").await, PubAckReason::NotAuthorized, "client id {id}");
        assert_eq!(c.subscribe("devices/#").await, SubscribeReasonCode::NotAuthorized, "client id {id}");
    }
    // Nothing reached a subscriber meanwhile: the first message the admin gets is its own.
    assert_eq!(admin.publish("plus/hello", "h").await, PubAckReason::Success);
    assert_eq!(admin.next_message().await, ("plus/hello".to_owned(), "h".to_owned()));
    assert_eq!(plus.next_message().await, ("plus/hello".to_owned(), "h".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_are_checked_when_published() {
    let dir = Dir::new("acl-wills");
    let mut broker = broker(&dir);
    let port = broker.port;
    let mut admin = V5::connect(port, "admin", ADMIN).await;
    assert_eq!(admin.subscribe("#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    let with_will = |id: &str, topic: &str| {
        let mut options = V5::options(port, id, ALICE);
        options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(topic, "gone", QoS::AtLeastOnce, false, None));
        options
    };
    // Mosquitto 2 accepts the CONNECT of a will the client may not publish, and checks it when it is published.
    let bad = V5::try_connect(with_will("will-bad", "other/will")).await.expect("CONNECT with a will is accepted");
    let good = V5::try_connect(with_will("will-good", "alice/will")).await.unwrap();
    drop(bad); // closes the socket without DISCONNECT: the will is due
    let line = broker.wait_for_log("ACL: publish denied");
    assert!(line.contains("will-bad") && line.contains("other/will"), "{line}");
    drop(good);
    assert_eq!(admin.next_message().await, ("alice/will".to_owned(), "gone".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_both_files_and_keeps_connections() {
    let dir = Dir::new("acl-reload");
    let passwd = dir.write("passwd", &users::file(&[users::ALICE]));
    let acl = dir.write("acl", "user alice\ntopic readwrite a/#\n");
    let port = free_port();
    let cfg = dir.write("corvid.toml", &config(port, "password_file = \"passwd\"\nacl_file = \"acl\""));
    let mut broker = Broker::start(&dir, &cfg, port, &[]);

    let mut alice = V5::connect(port, "alice-old", ALICE).await;
    assert_eq!(alice.publish("a/1", "x").await, PubAckReason::Success);
    assert_eq!(alice.publish("b/1", "x").await, PubAckReason::NotAuthorized);
    let refused = V5::try_connect(V5::options(port, "carol", Some(("carol", "carolpw")))).await.err();
    assert_eq!(refused, Some(V5Connect::BadUserNamePassword));

    // New files: alice has another password and other rules; carol appears.
    std::fs::write(&passwd, users::file(&[users::ALICE_NEW, users::CAROL])).unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite b/#\nuser carol\ntopic readwrite c/#\n").unwrap();
    broker.signal("-HUP");
    broker.wait_for_log("SIGHUP: ACL file reloaded");
    assert!(broker.log.contains("SIGHUP: password file reloaded"), "{}", broker.log);

    // The connection made before is still up, under the new rules.
    assert_eq!(alice.publish("b/2", "x").await, PubAckReason::Success);
    assert_eq!(alice.publish("a/2", "x").await, PubAckReason::NotAuthorized);
    // New connections: the new passwords.
    let mut carol = V5::connect(port, "carol", Some(("carol", "carolpw"))).await;
    assert_eq!(carol.publish("c/1", "x").await, PubAckReason::Success);
    V5::connect(port, "alice-new", Some(("alice", "newpw"))).await;
    let refused = V4::try_connect(V4::options(port, "alice-4", ALICE)).await.err();
    assert_eq!(refused, Some(rumqttc::ConnectReturnCode::BadUserNamePassword));

    // Broken files: errors logged, the previous contents stay in force.
    std::fs::write(&passwd, format!("{}\ncarol:hunter2\n", users::ALICE_NEW)).unwrap();
    std::fs::write(&acl, "user alice\ntopic readwrite b/#\ntopci read x\n").unwrap();
    broker.signal("-HUP");
    let line = broker.wait_for_log("ACL file not reloaded");
    assert!(line.contains("line 3") && line.contains("acl"), "{line}");
    let line = broker.log.lines().find(|l| l.contains("password file not reloaded")).unwrap_or_default();
    assert!(line.contains("line 2"), "{}", broker.log);
    V5::connect(port, "carol-2", Some(("carol", "carolpw"))).await;
    assert_eq!(alice.publish("b/3", "x").await, PubAckReason::Success);
    assert_eq!(alice.publish("a/3", "x").await, PubAckReason::NotAuthorized);
    assert!(!broker.log.contains("client disconnected client_id=alice-old"), "{}", broker.log);
}

/// A broker on `port` with the password file (alice, admin, eve) and the ACL above, anonymous clients allowed, and
/// the durable store: redb in `dir`'s data directory, `sync = "always"` (a PUBACK means the message is on disk).
fn durable_broker(dir: &Dir, port: u16) -> Broker {
    dir.write("passwd", &users::file(&[users::ALICE, users::ADMIN, users::EVE]));
    dir.write("acl", ACL);
    let cfg = dir.write(
        "corvid.toml",
        &format!(
            "sys_interval = 0\nallow_anonymous = true\npassword_file = \"passwd\"\nacl_file = \"acl\"\n\
             [storage]\nengine = \"redb\"\nsync = \"always\"\n\
             [[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:{port}\"\n"
        ),
    );
    let mut broker = Broker::start(dir, &cfg, port, &[]);
    broker.wait_for_log("ACL file");
    broker
}

/// A persistent (clean session false) MQTT 3.1.1 connection of `client_id`.
async fn persistent(port: u16, client_id: &str, login: Option<(&str, &str)>) -> V4 {
    let mut options = V4::options(port, client_id, login);
    options.set_clean_session(false);
    V4::try_connect(options).await.expect("connection refused")
}

/// Stops the broker with SIGTERM (it writes its sessions' last records) and waits for it to exit.
fn stop(mut broker: Broker) {
    broker.signal("-TERM");
    assert_eq!(broker.wait_exit(), Some(0), "{}", broker.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_session_reads_under_its_user_name() {
    let dir = Dir::new("acl-restored");
    let port = free_port();
    let mut broker = durable_broker(&dir, port);
    let mut alice = persistent(port, "alice-sub", ALICE).await;
    assert_eq!(alice.subscribe("sensors/#").await, rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce));
    alice.client.disconnect().await.unwrap();
    broker.wait_for_log("client disconnected");
    drop(alice);
    stop(broker);

    // Restarted: alice's session comes back from the store, her client still away. A message she may read is
    // queued for her (and stored before the PUBACK); one a `deny` rule covers is not.
    let broker = durable_broker(&dir, port);
    let mut admin = V5::connect(port, "admin", ADMIN).await;
    assert_eq!(admin.publish("sensors/private/p", "not for alice").await, PubAckReason::Success);
    assert_eq!(admin.publish("sensors/t", "21.5").await, PubAckReason::Success);
    drop(admin);
    // Killed and started again: the session is restored a second time, with its queued message.
    drop(broker);
    let _broker = durable_broker(&dir, port);
    let mut alice = persistent(port, "alice-sub", ALICE).await;
    assert_eq!(alice.next_message().await, ("sensors/t".to_owned(), "21.5".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_name_of_a_persistent_session_replaces_the_stored_one() {
    let dir = Dir::new("acl-restored-new-user");
    let port = free_port();
    let broker = durable_broker(&dir, port);
    let mut alice = persistent(port, "shared-id", ALICE).await;
    assert_eq!(alice.subscribe("#").await, rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce));
    drop(alice);
    // The same session, resumed by eve: from now on it reads what eve may read, also after a restart.
    let eve = persistent(port, "shared-id", EVE).await;
    eve.client.disconnect().await.unwrap();
    drop(eve);
    stop(broker);

    let _broker = durable_broker(&dir, port);
    let mut admin = V5::connect(port, "admin", ADMIN).await;
    assert_eq!(admin.publish("sensors/t", "for alice only").await, PubAckReason::Success);
    assert_eq!(admin.publish("eve/t", "for eve").await, PubAckReason::Success);
    let mut eve = persistent(port, "shared-id", EVE).await;
    assert_eq!(eve.next_message().await, ("eve/t".to_owned(), "for eve".to_owned()));
}

#[test]
fn malformed_acl_file_stops_the_start_with_file_and_line() {
    let dir = Dir::new("acl-malformed");
    let port = free_port();
    let cases = [
        ("keyword", "user alice\ntopic read a/#\ntopci read b\n", "line 3", "unknown keyword \"topci\""),
        ("filter", "# c\ntopic read a/#/b\n", "line 2", "not a valid topic filter"),
        ("no-topic", "user bob\n\ntopic deny\n", "line 3", "`deny` needs a topic"),
        ("no-user", "user\n", "line 1", "needs a user name"),
        ("partial-level", "pattern read a/x%u\n", "line 1", "whole topic level"),
    ];
    for (name, text, line, what) in cases {
        let file = dir.write(name, text);
        let cfg = dir.write(&format!("{name}.toml"), &config(port, &format!("acl_file = \"{name}\"")));
        for mode in ["--config", "--check-config"] {
            let (code, _, stderr) = run(corvid().arg(mode).arg(&cfg).arg("--data-dir").arg(dir.path("data")));
            assert_eq!(code, Some(2), "{name} {mode}: {stderr}");
            let expected = format!("acl_file {}: {line}: ", file.display());
            assert!(stderr.contains(&expected) && stderr.contains(what), "{name} {mode}: {stderr}");
        }
    }
}
