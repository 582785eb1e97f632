//! Helpers of the tests that run the real `corvid` binary: a temporary directory, a broker process with its log,
//! rumqttc clients (MQTT 3.1.1 and 5) and a tiny HTTP client.

// Each test crate uses some of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc as tmpsc;
use tokio::task::JoinHandle;

/// How long any single wait of these tests lasts at most.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A temporary directory, removed on drop.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("corvid-server-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        Self(dir)
    }

    /// Writes `name` in the directory and gives its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `corvid` binary under test.
pub(crate) fn corvid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corvid"))
}

/// A TOML config with one TCP listener on `port`, an in-memory store and no `$SYS` topics, then `extra`.
pub(crate) fn config(port: u16, extra: &str) -> String {
    format!(
        "sys_interval = 0\n{extra}\n[storage]\nengine = \"memory\"\n\
         [[listener]]\ntype = \"tcp\"\nbind = \"127.0.0.1:{port}\"\n"
    )
}

/// A running `corvid` process, killed on drop, whose log (stderr) is read as it comes.
pub(crate) struct Broker {
    child: Child,
    pub(crate) port: u16,
    lines: mpsc::Receiver<String>,
    /// Every log line read so far.
    pub(crate) log: String,
}

impl Broker {
    /// Starts `corvid --config CONFIG --data-dir DIR/data ARGS...` and waits until `port` accepts connections.
    pub(crate) fn start(dir: &Dir, config: &Path, port: u16, args: &[&str]) -> Self {
        let mut child = corvid()
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(dir.path("data"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start corvid");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(stderr.read_line(&mut line), Ok(n) if n > 0) {
                if tx.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        });
        let mut broker = Self { child, port, lines, log: String::new() };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.child.try_wait().unwrap() {
                broker.drain_log();
                panic!("corvid exited ({status}) during start: {}", broker.log);
            }
            assert!(Instant::now() < deadline, "port {port} not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn drain_log(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
            self.log.push_str(&line);
        }
    }

    /// Waits until a log line read from now on contains `needle`; gives that line.
    pub(crate) fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push_str(&line);
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?} within {WAIT:?}; log so far:\n{}", self.log),
            }
        }
    }

    /// Sends a signal (`"-HUP"`, `"-TERM"`) to the broker.
    pub(crate) fn signal(&self, name: &str) {
        let ok = Command::new("kill").args([name, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {name}");
    }

    /// Waits for the process to end by itself; its exit code.
    pub(crate) fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "corvid did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `future` within [`WAIT`], or a panic naming `what`.
pub(crate) async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

/// An MQTT 3.1.1 client (rumqttc), its event loop in a task of its own.
pub(crate) struct V4 {
    pub(crate) client: rumqttc::AsyncClient,
    incoming: tmpsc::UnboundedReceiver<rumqttc::Packet>,
    task: JoinHandle<()>,
}

impl Drop for V4 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl V4 {
    /// Options for 127.0.0.1:`port`, with credentials if given.
    pub(crate) fn options(port: u16, client_id: &str, login: Option<(&str, &str)>) -> rumqttc::MqttOptions {
        let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        options
    }

    /// Connects; the CONNACK return code if refused.
    pub(crate) async fn try_connect(options: rumqttc::MqttOptions) -> Result<Self, rumqttc::ConnectReturnCode> {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        loop {
            match within("CONNACK", eventloop.poll()).await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("connect: {e}"),
            }
        }
        let (tx, incoming) = tmpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let rumqttc::Event::Incoming(p) = event
                    && tx.send(p).is_err()
                {
                    return;
                }
            }
        });
        Ok(Self { client, incoming, task })
    }

    pub(crate) async fn connect(port: u16, client_id: &str, login: Option<(&str, &str)>) -> Self {
        Self::try_connect(Self::options(port, client_id, login)).await.expect("connection refused")
    }

    async fn next(&mut self) -> rumqttc::Packet {
        within("rumqttc packet", self.incoming.recv()).await.expect("connection ended")
    }

    /// Subscribes and gives the SUBACK's code.
    pub(crate) async fn subscribe(&mut self, filter: &str) -> rumqttc::SubscribeReasonCode {
        self.client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.unwrap();
        loop {
            if let rumqttc::Packet::SubAck(ack) = self.next().await {
                return ack.return_codes[0];
            }
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &str, retain: bool) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_owned()).await.unwrap();
        loop {
            if let rumqttc::Packet::PubAck(_) = self.next().await {
                return;
            }
        }
    }

    /// The next message received: topic and payload.
    pub(crate) async fn next_message(&mut self) -> (String, String) {
        loop {
            if let rumqttc::Packet::Publish(p) = self.next().await {
                return (p.topic, String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    }
}

/// An MQTT 5 client (rumqttc), its event loop in a task of its own.
pub(crate) struct V5 {
    pub(crate) client: rumqttc::v5::AsyncClient,
    incoming: tmpsc::UnboundedReceiver<rumqttc::v5::Incoming>,
    task: JoinHandle<()>,
}

impl Drop for V5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// MQTT 5 packet types and codes.
pub(crate) use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as V5Connect, PubAckReason, SubscribeReasonCode};

impl V5 {
    pub(crate) fn options(port: u16, client_id: &str, login: Option<(&str, &str)>) -> rumqttc::v5::MqttOptions {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        options
    }

    /// Connects; the CONNACK reason code if refused.
    pub(crate) async fn try_connect(options: rumqttc::v5::MqttOptions) -> Result<Self, V5Connect> {
        use rumqttc::v5::{ConnectionError, Event, Incoming};
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        loop {
            match within("CONNACK", eventloop.poll()).await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => break,
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(e) => panic!("connect: {e}"),
            }
        }
        let (tx, incoming) = tmpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(p) = event
                    && tx.send(p).is_err()
                {
                    return;
                }
            }
        });
        Ok(Self { client, incoming, task })
    }

    pub(crate) async fn connect(port: u16, client_id: &str, login: Option<(&str, &str)>) -> Self {
        Self::try_connect(Self::options(port, client_id, login)).await.expect("connection refused")
    }

    async fn next(&mut self) -> rumqttc::v5::Incoming {
        within("rumqttc packet", self.incoming.recv()).await.expect("connection ended")
    }

    /// Subscribes and gives the SUBACK's code.
    pub(crate) async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
        loop {
            if let rumqttc::v5::Incoming::SubAck(ack) = self.next().await {
                return ack.return_codes[0];
            }
        }
    }

    /// Publishes at QoS 1 and gives the PUBACK's reason code.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.client.publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload.to_owned()).await.unwrap();
        loop {
            if let rumqttc::v5::Incoming::PubAck(ack) = self.next().await {
                return ack.reason;
            }
        }
    }

    /// The next message received: topic and payload.
    pub(crate) async fn next_message(&mut self) -> (String, String) {
        loop {
            if let rumqttc::v5::Incoming::Publish(p) = self.next().await {
                return (
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                );
            }
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// The status line and the headers.
    pub(crate) head: String,
    pub(crate) body: String,
}

/// `GET path` over HTTP/1.1 on 127.0.0.1:`port`.
pub(crate) fn http_get(port: u16, path: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Response { status, head: head.to_owned(), body: body.to_owned() }
}

/// Runs `command` to its end (killed and failed after [`WAIT`]): exit code, stdout and stderr.
pub(crate) fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run corvid");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {WAIT:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Password-file lines made by `mosquitto_passwd` 2.0.11 with `-b` ($7$, PBKDF2-HMAC-SHA512, 101 iterations).
pub(crate) mod users {
    /// alice, password "secret".
    pub(crate) const ALICE: &str = "alice:$7$101$0YNLpIZi/zbp/iwF$WMlN27Yq4sU4tEFse2RknjGfQwajOLlatv+UI708G0N4AT9yiYuKTHEMv4O5z1DCy+ZMnd5UGw61LmBRVY0img==";
    /// alice, password "newpw".
    pub(crate) const ALICE_NEW: &str = "alice:$7$101$Tr9NzcIpLH9zGgF+$5/gXt7HS33M88ZW7ECM1JOvZZg6dnf7+On7L/9eHHLxCs7yI4lmD4lQsM4ntYU15Z9KwcieWKv07lLQADQbD6g==";
    /// bob, password "pw2", legacy $6$ (made with `-H sha512`).
    pub(crate) const BOB: &str = "bob:$6$dB3YJCcZ8LUKn1sp$neXhbgNBV0zm8eJ2t6tEQeCPguomYUGYyIZiRQD1Q4oTIdTm8b3i/I9TTXxgMaFgz4ZzdFFy2DuQkR6c+UXjCA==";
    /// admin, password "adminpw".
    pub(crate) const ADMIN: &str = "admin:$7$101$359DSembH/M1MetE$d+B0TeIqaWSTBtTbawOQ035LAz21T8GH9IaOIEReNtpHT8+e5hdipjYeTiG3IG4MWweCfFvbFJcmqQnodCiB1g==";
    /// eve, password "evepw".
    pub(crate) const EVE: &str = "eve:$7$101$SgXZp/A29c8dkuXp$qyT5zTRL6DOrF/eJfGkWnA+MKbF/7dyQJqagTi9tG+fAA512a3kB4JNWes9KH2rwihpLcNGNTh+ofh2Jickr+w==";
    /// The user named "+", password "pluspw".
    pub(crate) const PLUS: &str = "+:$7$101$n9YUAYoDonOke3XS$93Nd1CN2GrDhKZ9bWpX/jnVdazfL7ss/El/nAzjvDGspIOUq6rubkEGhnRyPLTASrfy6Q+n5EWiML7qvGDzb1w==";
    /// carol, password "carolpw".
    pub(crate) const CAROL: &str = "carol:$7$101$iBjCpoy5MHcu1ZAY$LFCJQ8IMx6kY6UqO36KNQ9V6EEWnejIjLE2euj7Q3t4ejt+zBqM5fMuieMVWOigLOK+nybVbskOK6uZ9I1dtCQ==";

    /// A password file of these lines.
    pub(crate) fn file(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}
