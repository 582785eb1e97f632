//! The `corvid` binary with `tls`, `ws` and `wss` listeners: certificate problems stop the start with exit code 2
//! and a message naming the file; a valid configuration listens on every transport and reloads its certificates
//! on SIGHUP.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory with a certificate and key for localhost, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("corvid-server-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("server.crt"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), certified.signing_key.serialize_pem()).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
        std::fs::write(dir.join("other.key"), other.signing_key.serialize_pem()).unwrap();
        Self(dir)
    }

    fn config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn corvid(args: &[&str], config: &Path, data: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvid"));
    cmd.args(args).arg(config);
    if args == ["--config"] {
        cmd.arg("--data-dir").arg(data);
    }
    cmd.output().expect("run corvid")
}

fn tls_listener(port: u16, files: &str) -> String {
    format!("allow_anonymous = true\n[[listener]]\ntype = \"tls\"\nbind = \"127.0.0.1:{port}\"\n{files}")
}

#[test]
fn certificate_problems_exit_2_naming_the_file() {
    let dir = Dir::new("errors");
    let data = dir.0.join("data");
    let port = free_port();
    let cases = [
        ("missing.toml", "cert = \"missing.crt\"\nkey = \"server.key\"\n", "missing.crt"),
        ("mismatch.toml", "cert = \"server.crt\"\nkey = \"other.key\"\n", "other.key"),
        ("not-a-cert.toml", "cert = \"server.key\"\nkey = \"server.key\"\n", "server.key"),
        ("no-key.toml", "cert = \"server.crt\"\n", "needs `cert` and `key`"),
    ];
    for (name, files, expected) in cases {
        let config = dir.config(name, &tls_listener(port, files));
        for mode in ["--config", "--check-config"] {
            let out = corvid(&[mode], &config, &data);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {mode}: {stderr}");
            assert!(stderr.contains(expected) && stderr.contains(name), "{name} {mode}: {stderr}");
        }
    }
    // A wrong PKCS#12 password (the file made with the openssl command, when it is installed).
    let p12 = dir.0.join("server.p12");
    let made = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:right", "-in"])
        .arg(dir.0.join("server.crt"))
        .arg("-inkey")
        .arg(dir.0.join("server.key"))
        .arg("-out")
        .arg(&p12)
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        let config =
            dir.config("p12.toml", &tls_listener(port, "pkcs12 = \"server.p12\"\npkcs12_password = \"wrong\"\n"));
        let out = corvid(&["--config"], &config, &data);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("server.p12") && stderr.contains("wrong password"), "{stderr}");
        let config =
            dir.config("p12-ok.toml", &tls_listener(port, "pkcs12 = \"server.p12\"\npkcs12_password = \"right\"\n"));
        assert_eq!(corvid(&["--check-config"], &config, &data).status.code(), Some(0));
    } else {
        eprintln!("openssl not available: PKCS#12 password check skipped");
    }
}

#[test]
fn every_transport_listens_and_sighup_reloads() {
    let dir = Dir::new("listen");
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let config = dir.config(
        "corvid.toml",
        &format!(
            "allow_anonymous = true\nsys_interval = 0\n\
             [[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:{}\"\n\
             [[listener]]\ntype = \"tls\"\nbind = \"127.0.0.1:{}\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             tls_versions = [\"1.3\"]\n\
             [[listener]]\ntype = \"ws\"\nbind = \"127.0.0.1:{}\"\n\
             [[listener]]\ntype = \"wss\"\nbind = \"127.0.0.1:{}\"\ncert = \"server.crt\"\nkey = \"server.key\"\n\
             path = \"/ws\"\n",
            ports[0], ports[1], ports[2], ports[3]
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_corvid"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corvid");
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in ports {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "port {port} not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let pid = child.id().to_string();
    let signal = |name: &str| {
        let ok = Command::new("kill").args([name, &pid]).status().unwrap().success();
        assert!(ok, "kill {name}");
    };
    // Read the log as it comes, so the test waits for the reload itself rather than for a fixed time.
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while matches!(std::io::BufRead::read_line(&mut log, &mut line), Ok(n) if n > 0) {
            if lines_tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    let mut stderr = String::new();
    signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stderr.contains("TLS certificates reloaded") {
        let left = deadline.checked_duration_since(Instant::now()).expect("no reload logged within 10 s");
        match lines.recv_timeout(left) {
            Ok(line) => stderr.push_str(&line),
            Err(_) => panic!("no reload logged within 10 s: {stderr}"),
        }
    }
    signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "corvid did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap();
    stderr.extend(lines.try_iter());
    for kind in ["\"tcp\"", "\"tls\"", "\"ws\"", "\"wss\""] {
        assert!(stderr.contains(&format!("transport={kind}")), "{kind} missing: {stderr}");
    }
    assert!(stderr.contains("TLS certificates reloaded listeners=2"), "{stderr}");
}
