//! `password_file` in the real `corvid` binary, over real sockets with rumqttc (MQTT 3.1.1 and 5): Mosquitto 2's
//! CONNACK codes, hashes made by `mosquitto_passwd`, a malformed file stopping the start with the file and the line,
//! and `corvid passwd` making a file the broker accepts.

mod common;

use common::{Broker, Dir, V4, V5, V5Connect, config, corvid, free_port, run, users};
use rumqttc::ConnectReturnCode as V4Connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_get_mosquitto_2_codes() {
    let dir = Dir::new("pw-logins");
    dir.write("passwd", &format!("# made by mosquitto_passwd\n\n{}", users::file(&[users::ALICE, users::BOB])));
    let port = free_port();
    // allow_anonymous is absent: false, since a config file is given.
    let cfg = dir.write("corvid.toml", &config(port, "password_file = \"passwd\""));
    let mut broker = Broker::start(&dir, &cfg, port, &[]);
    broker.wait_for_log("password file");
    assert!(broker.log.contains("users=2"), "{}", broker.log);

    // The right password: $7$ (PBKDF2) and legacy $6$, both protocol versions.
    V4::connect(port, "alice-4", Some(("alice", "secret"))).await;
    V5::connect(port, "alice-5", Some(("alice", "secret"))).await;
    V4::connect(port, "bob-4", Some(("bob", "pw2"))).await;
    V5::connect(port, "bob-5", Some(("bob", "pw2"))).await;

    // Wrong password, another user's password, unknown user: 4 / 0x86.
    for (user, password) in [("alice", "Secret"), ("alice", "pw2"), ("alice", ""), ("mallory", "secret")] {
        let refused = V4::try_connect(V4::options(port, "x4", Some((user, password)))).await.err();
        assert_eq!(refused, Some(V4Connect::BadUserNamePassword), "{user}/{password} (3.1.1)");
        let refused = V5::try_connect(V5::options(port, "x5", Some((user, password)))).await.err();
        assert_eq!(refused, Some(V5Connect::BadUserNamePassword), "{user}/{password} (5)");
    }
    // No user name while allow_anonymous is false: 5 / 0x87.
    let refused = V4::try_connect(V4::options(port, "anon-4", None)).await.err();
    assert_eq!(refused, Some(V4Connect::NotAuthorized));
    let refused = V5::try_connect(V5::options(port, "anon-5", None)).await.err();
    assert_eq!(refused, Some(V5Connect::NotAuthorized));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_with_a_password_file_when_allowed() {
    let dir = Dir::new("pw-anon");
    dir.write("passwd", &users::file(&[users::ALICE]));
    let port = free_port();
    let cfg = dir.write("corvid.toml", &config(port, "allow_anonymous = true\npassword_file = \"passwd\""));
    let _broker = Broker::start(&dir, &cfg, port, &[]);
    V4::connect(port, "anon-4", None).await;
    V5::connect(port, "anon-5", None).await;
    V5::connect(port, "alice-5", Some(("alice", "secret"))).await;
    // A user name is still checked.
    let refused = V5::try_connect(V5::options(port, "x5", Some(("alice", "wrong")))).await.err();
    assert_eq!(refused, Some(V5Connect::BadUserNamePassword));
}

#[test]
fn malformed_files_stop_the_start_with_file_and_line() {
    let dir = Dir::new("pw-malformed");
    let port = free_port();
    let cases = [
        ("bad-hash", format!("{}\nbob:hunter2\n", users::ALICE), "line 2", "not a $7$ or $6$ hash"),
        ("no-colon", format!("# users\n{}\n\nbob\n", users::ALICE), "line 4", "no ':'"),
        ("short-hash", "carol:$7$101$AAAAAAAAAAAAAAAA$AAAA\n".to_owned(), "line 1", "the hash is 3 bytes"),
        ("bad-iterations", "carol:$7$many$AAAA$AAAA\n".to_owned(), "line 1", "iterations"),
    ];
    for (name, text, line, what) in cases {
        let file = dir.write(name, &text);
        let cfg = dir.write(&format!("{name}.toml"), &config(port, &format!("password_file = \"{name}\"")));
        for mode in ["--config", "--check-config"] {
            let (code, _, stderr) = run(corvid().arg(mode).arg(&cfg).arg("--data-dir").arg(dir.path("data")));
            assert_eq!(code, Some(2), "{name} {mode}: {stderr}");
            let expected = format!("{}: {line}: ", file.display());
            assert!(stderr.contains(&expected) && stderr.contains(what), "{name} {mode}: {stderr}");
            assert!(stderr.contains("password_file"), "{name} {mode}: {stderr}");
        }
    }
    // A missing file.
    let cfg = dir.write("missing.toml", &config(port, "password_file = \"nowhere\""));
    let (code, _, stderr) = run(corvid().arg("--check-config").arg(&cfg));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nowhere: cannot read"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corvid_passwd_makes_files_the_broker_accepts() {
    let dir = Dir::new("pw-tool");
    let pw = dir.path("passwd");
    let passwd = |args: &[&str]| {
        let mut command = corvid();
        command.arg("passwd").args(args);
        run(&mut command)
    };
    let file = pw.to_str().unwrap();
    assert_eq!(passwd(&["-c", "-b", file, "alice", "a-1"]).0, Some(0));
    assert_eq!(passwd(&["-b", file, "bob", "b-1"]).0, Some(0));
    assert_eq!(passwd(&["--iterations", "1000", "-b", file, "dave", "d-1"]).0, Some(0));
    assert_eq!(passwd(&["-H", "sha512", "-b", file, "erin", "e-1"]).0, Some(0));
    // Without -b and with standard input not a terminal: one line of standard input.
    let mut child = corvid()
        .args(["passwd", file, "carol"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"c-1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Updating a user replaces its line; deleting removes it.
    assert_eq!(passwd(&["-b", file, "alice", "a-2"]).0, Some(0));
    assert_eq!(passwd(&["-D", file, "bob"]).0, Some(0));
    let (code, _, stderr) = passwd(&["-D", file, "bob"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"bob\" is not in"), "{stderr}");
    // Errors: no file without -c, a ':' in a user name, a password without -b.
    let missing = dir.path("missing");
    let (code, _, stderr) = passwd(&["-b", missing.to_str().unwrap(), "x", "y"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("-c creates it"), "{stderr}");
    assert!(!missing.exists());
    assert_eq!(passwd(&["-b", file, "a:b", "y"]).0, Some(1));
    assert_eq!(passwd(&[file, "x", "y"]).0, Some(1));

    let text = std::fs::read_to_string(&pw).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("alice:$7$101$"), "{text}");
    assert!(lines[1].starts_with("dave:$7$1000$"), "{text}");
    assert!(lines[2].starts_with("erin:$6$"), "{text}");
    assert!(lines[3].starts_with("carol:$7$101$"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // -U: a plain-text file hashed in place; it joins the others.
    let plain = dir.write("plain", "# plain text\nfrank:f-1\n");
    assert_eq!(passwd(&["-U", plain.to_str().unwrap()]).0, Some(0));
    let upgraded = std::fs::read_to_string(&plain).unwrap();
    assert!(upgraded.starts_with("# plain text\nfrank:$7$101$") && !upgraded.contains("f-1"), "{upgraded}");
    std::fs::write(&pw, format!("{text}{upgraded}")).unwrap();

    let port = free_port();
    let cfg = dir.write("corvid.toml", &config(port, "password_file = \"passwd\""));
    let _broker = Broker::start(&dir, &cfg, port, &[]);
    for (user, password) in [("alice", "a-2"), ("carol", "c-1"), ("dave", "d-1"), ("erin", "e-1"), ("frank", "f-1")] {
        V5::connect(port, &format!("{user}-5"), Some((user, password))).await;
    }
    for (user, password) in [("alice", "a-1"), ("bob", "b-1")] {
        let refused = V4::try_connect(V4::options(port, "x4", Some((user, password)))).await.err();
        assert_eq!(refused, Some(V4Connect::BadUserNamePassword), "{user}");
    }
}
