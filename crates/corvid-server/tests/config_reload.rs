//! SIGHUP reads the configuration file again, in the real `corvid` binary: `allow_anonymous`, `password_file`,
//! `log_level` and `acl_file` changes apply to new connections at once; settings that need a restart are named in
//! the log; a file that does not parse changes nothing.

mod common;

use common::{Broker, Dir, V4, V5, V5Connect, config, free_port, users};
use rumqttc::ConnectReturnCode as V4Connect;

const ALICE: Option<(&str, &str)> = Some(("alice", "secret"));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_configuration_file_again() {
    let dir = Dir::new("reload-config");
    dir.write("passwd", &users::file(&[users::ALICE]));
    let port = free_port();
    // allow_anonymous absent: false.
    let cfg = dir.write("corvid.toml", &config(port, ""));
    let mut broker = Broker::start(&dir, &cfg, port, &[]);
    let refused = V4::try_connect(V4::options(port, "anon-1", None)).await.err();
    assert_eq!(refused, Some(V4Connect::NotAuthorized));
    let mut kept = V5::connect(port, "alice-kept", ALICE).await;

    // Anonymous clients allowed.
    std::fs::write(&cfg, config(port, "allow_anonymous = true")).unwrap();
    broker.signal("-HUP");
    broker.wait_for_log("SIGHUP: configuration reloaded");
    assert!(broker.log.contains("allow_anonymous=true"), "{}", broker.log);
    V4::connect(port, "anon-2", None).await;
    V5::connect(port, "anon-3", None).await;

    // A password file appears: user names are checked from now on; anonymous clients still allowed.
    std::fs::write(&cfg, config(port, "allow_anonymous = true\npassword_file = \"passwd\"")).unwrap();
    broker.signal("-HUP");
    broker.wait_for_log("SIGHUP: configuration reloaded");
    assert!(broker.log.contains("SIGHUP: password file reloaded"), "{}", broker.log);
    let refused = V5::try_connect(V5::options(port, "alice-bad", Some(("alice", "wrong")))).await.err();
    assert_eq!(refused, Some(V5Connect::BadUserNamePassword));
    V5::connect(port, "alice-good", ALICE).await;
    V4::connect(port, "anon-4", None).await;

    // Restart-only settings are named; the log level changes at once.
    let text = config(port, "allow_anonymous = true\npassword_file = \"passwd\"\nlog_level = \"debug\"");
    std::fs::write(&cfg, text.replace("[storage]", "[limits]\nmax_inflight = 7\n[storage]")).unwrap();
    broker.signal("-HUP");
    let line = broker.wait_for_log("takes effect at the next start");
    assert!(line.contains("[limits]") && !line.contains("[storage]"), "{line}");
    broker.wait_for_log("SIGHUP: log level changed");
    broker.wait_for_log("SIGHUP: configuration reloaded");
    // At debug level, a connection whose first packet is not CONNECT is logged.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut raw, &[0xC0, 0x00]).unwrap();
    let line = broker.wait_for_log("first packet is not CONNECT");
    assert!(line.contains("DEBUG"), "{line}");

    // A file that does not parse: the error names the file, line and key; nothing changes.
    std::fs::write(&cfg, config(port, "allow_anonymous = false\nallow_anonymus = true")).unwrap();
    broker.signal("-HUP");
    let line = broker.wait_for_log("the running configuration stays in force");
    assert!(line.contains("corvid.toml") && line.contains("line 3") && line.contains("allow_anonymus"), "{line}");
    V4::connect(port, "anon-5", None).await;

    // No password file and no anonymous clients; an ACL file cannot appear without a restart (its hooks are not
    // installed), and says so.
    dir.write("acl", "user alice\ntopic read x/#\n");
    std::fs::write(&cfg, config(port, "acl_file = \"acl\"")).unwrap();
    broker.signal("-HUP");
    broker.wait_for_log("SIGHUP: configuration reloaded");
    assert!(broker.log.contains("password_file removed"), "{}", broker.log);
    assert!(broker.log.contains("acl_file added"), "{}", broker.log);
    let refused = V5::try_connect(V5::options(port, "anon-6", None)).await.err();
    assert_eq!(refused, Some(V5Connect::NotAuthorized));
    V5::connect(port, "alice-any", Some(("alice", "any password"))).await;

    // The connection made at the start lived through every reload.
    assert_eq!(kept.publish("still/here", "x").await, rumqttc::v5::mqttbytes::v5::PubAckReason::Success);
}
