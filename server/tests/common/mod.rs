//! Shared support for quiverd's end-to-end tests: the real binary on free ports, a minimal
//! HTTP client, and polling helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The MQTT test support shared with the connectors crate (a test client, private brokers).
#[path = "../../../connectors/tests/support/mqtt.rs"]
pub mod mqtt;

pub mod cluster;
pub mod pki;
pub mod plugin_zip;
pub mod proxy;

/// A running quiverd, killed on drop.
pub struct Server {
    child: Child,
    addr: String,
    push_addr: String,
    /// Where quiverd's output goes: read when it exits early.
    printed: Option<PathBuf>,
    /// Whether `printed` is this handle's own file (no log was asked for), removed on drop.
    own_file: bool,
}

pub use mqtt::free_port;

impl Server {
    /// Starts quiverd with `data_dir` and no config file.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, None)
    }

    /// Starts quiverd with `data_dir` and an optional `--config` file.
    pub fn start_with(data_dir: &Path, config: Option<&Path>) -> Server {
        let mut args = Vec::new();
        if let Some(c) = config {
            args.push("--config".to_string());
            args.push(c.display().to_string());
        }
        Self::start_args(data_dir, &args, None)
    }

    /// Starts quiverd allowing `file://` plugin installs from `zips` only.
    pub fn start_with_plugin_files(data_dir: &Path, zips: &Path) -> Server {
        let zips = zips.to_str().expect("a UTF-8 path").to_string();
        Self::start_args(data_dir, &["--plugin-file-dir".to_string(), zips], None)
    }

    /// Starts quiverd on loopback with `data_dir` and extra `args`; with `log`, its stdout and
    /// stderr (at debug level) go to that file.
    ///
    /// A port [`free_port`] handed out can be taken by another test's socket before quiverd
    /// binds it; quiverd then exits saying so, and it is started again on other ports.
    pub fn start_args(data_dir: &Path, args: &[String], log: Option<&Path>) -> Server {
        for _ in 0..4 {
            let mut server = Self::spawn(data_dir, args, &[], log);
            match server.ready_or_exit() {
                Ok(()) => return server,
                Err(why) if why.contains("in use") => continue,
                Err(why) => panic!("{why}"),
            }
        }
        panic!("quiverd found its ports taken four times in a row")
    }

    /// Waits up to 20 s until quiverd answers `GET /ping` over plain HTTP.
    pub fn wait_ready(&mut self) {
        if let Err(why) = self.ready_or_exit() {
            panic!("{why}");
        }
    }

    /// Waits up to 20 s for `GET /ping` to answer; an error says why it did not, with what
    /// quiverd printed if it exited.
    fn ready_or_exit(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answered = self.try_request("GET", "/ping", None).is_ok();
            // Checked after an answer too: another test's quiverd may hold the port ours
            // failed to bind.
            if let Some(status) = self.child.try_wait().expect("quiverd's status") {
                let printed = self
                    .printed
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                return Err(format!(
                    "quiverd exited with {status} before it answered /ping: {printed}"
                ));
            }
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("quiverd did not answer /ping within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts quiverd like [`Server::start_args`], with extra environment variables `env`,
    /// without waiting for it to answer (for servers plain HTTP cannot reach, such as HTTPS
    /// ones).
    pub fn spawn(
        data_dir: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let push_addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiverd"));
        cmd.args(["--bind", &addr, "--push-bind", &push_addr, "--data-dir"])
            .arg(data_dir)
            .args(["--workers", "2"])
            .args(args)
            .envs(env.iter().copied());
        let (printed, own_file) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("log file");
                cmd.env("RUST_LOG", "debug")
                    .stdout(file.try_clone().expect("log file"))
                    .stderr(file);
                (path.to_path_buf(), false)
            }
            None => {
                // Beside the data directory, inside the test's own directory.
                let path = data_dir.with_extension(format!("{}.stderr", free_port()));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("the test's directory");
                }
                let file = std::fs::File::create(&path).expect("stderr file");
                cmd.stdout(Stdio::null()).stderr(file);
                (path, true)
            }
        };
        let child = cmd.spawn().expect("quiverd starts");
        Server {
            child,
            addr,
            push_addr,
            printed: Some(printed),
            own_file,
        }
    }

    /// A quiverd the caller started (in another network namespace, say) whose REST API is at
    /// `addr` and push listener at `push_addr`; killed on drop like the others.
    pub fn adopt(child: Child, addr: String, push_addr: String) -> Server {
        Server {
            child,
            addr,
            push_addr,
            printed: None,
            own_file: false,
        }
    }

    /// Kills with SIGKILL and waits: a crash, with no chance to save anything.
    pub fn kill(mut self) {
        self.crash();
    }

    /// [`Server::kill`], keeping the handle (to be replaced by a restarted server).
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM and waits, as a service manager would.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "quiverd exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "quiverd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        http(&self.addr, method, path, &[], body)
    }

    /// A REST request with extra headers (a `Host` here replaces the default one).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, String) {
        http(&self.addr, method, path, headers, body).expect("HTTP request")
    }

    pub fn push(&self, path: &str, body: &str) -> (u16, String) {
        self.push_with(path, &[], body)
    }

    /// A push request with extra headers.
    pub fn push_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        http(&self.push_addr, "POST", path, headers, Some(body)).expect("push request")
    }

    /// The REST address (`127.0.0.1:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The push listener's address.
    pub fn push_addr(&self) -> &str {
        &self.push_addr
    }
}

/// One HTTP/1.1 request; `Host: addr` unless `headers` names a Host.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    request_on(s, addr, method, path, headers, body.unwrap_or(""))
}

/// One HTTPS request to `addr` (as `localhost`), trusting only the CA in the PEM file `ca`.
pub fn https(
    ca: &Path,
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a host name");
    let conn = rustls::ClientConnection::new(pki::Pki::client_config(ca), name)
        .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let host = [("Host", "localhost")];
    request_on(
        rustls::StreamOwned::new(conn, tcp),
        addr,
        method,
        path,
        &host,
        body,
    )
}

/// Writes one request on `s` and reads the whole response: the status and the body.
fn request_on(
    mut s: impl Read + Write,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut head = String::new();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(
        s,
        "{method} {path} HTTP/1.1\r\n{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    // A TLS peer that closes without close_notify still sent the whole response.
    if let Err(e) = s.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e);
    }
    let raw = String::from_utf8_lossy(&raw);
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    ))
}

/// Publishes `payload` on `topic` until a message arrives on the subscriber (a rule may still
/// be subscribing), then returns what arrived.
pub async fn publish_until_received(
    publisher: &mqtt::TestClient,
    subscriber: &mut mqtt::TestClient,
    topic: &str,
    payload: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        publisher.publish(topic, payload).await;
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(500), subscriber.publishes.recv()).await
        {
            return String::from_utf8(p.payload.to_vec()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived on the sink topic"
        );
    }
}

/// A WebSocket client of the push listener.
pub type WsClient = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

impl Server {
    /// Connects a WebSocket client to `path` on the push listener; the HTTP status when the
    /// upgrade is refused.
    pub async fn ws_connect(&self, path: &str) -> Result<WsClient, u16> {
        let tcp = tokio::net::TcpStream::connect(self.push_addr())
            .await
            .unwrap();
        let url = format!("ws://{}{path}", self.push_addr());
        match tokio_tungstenite::client_async(url, tcp).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket handshake: {e}"),
        }
    }

    /// `POST /streams` with `sql`, expecting 201.
    pub fn create_stream(&self, sql: &str) {
        let (status, body) = self.call("POST", "/streams", Some(serde_json::json!({ "sql": sql })));
        assert_eq!(status, 201, "{body}");
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let body = body.map(|b| b.to_string());
        self.try_request(method, path, body.as_deref())
            .expect("HTTP request")
    }

    pub fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(method, path, body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = self.printed.as_ref().filter(|_| self.own_file) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A fresh temp directory for a test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quiver-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls the rule status until `key` reaches `want`.
pub fn wait_metric(server: &Server, rule: &str, key: &str, want: u64) -> Value {
    wait_rule_status(server, rule, |st| st[key].as_u64() == Some(want))
}

/// Polls the rule status until `done` holds; fails after 20 s with the last status.
pub fn wait_rule_status(server: &Server, rule: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, st) = server.json("GET", &format!("/rules/{rule}/status"), None);
        if done(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "rule {rule} never got there: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate is in the repository")
        .to_path_buf()
}

/// Serves the files of `dir` over HTTP on loopback; returns its base URL.
pub fn serve_files(dir: &Path) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            serve_file(&dir, conn);
        }
    });
    base
}

/// Serves the files of `dir` over HTTPS on loopback with the certificate of `pki` (for
/// `localhost`); returns its base URL.
pub fn serve_files_tls(dir: &Path, pki: &pki::Pki) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().expect("addr").port()
    );
    let dir = dir.to_path_buf();
    let config = pki.server_config();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let tls = rustls::ServerConnection::new(config.clone()).expect("TLS session");
            let mut stream = rustls::StreamOwned::new(tls, conn);
            serve_file(&dir, &mut stream);
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    });
    base
}

/// Answers one GET on `conn` with the file of `dir` its path names, or 404.
fn serve_file(dir: &Path, mut conn: impl Read + Write) {
    let mut reader = std::io::BufReader::new(&mut conn);
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut reader, &mut line);
    // Drain the headers.
    let mut h = String::new();
    while std::io::BufRead::read_line(&mut reader, &mut h).is_ok_and(|n| n > 2) {
        h.clear();
    }
    drop(reader);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    match std::fs::read(dir.join(path.trim_start_matches('/'))) {
        Ok(body) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
        Err(_) => {
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

/// Runs SQL with the `mariadb` client in MariaDB's database `test` (127.0.0.1:3306, root);
/// returns the tab-separated output.
#[allow(dead_code)]
pub fn mariadb(statements: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "test",
            "-e",
        ])
        .arg(statements)
        .output()
        .expect("the mariadb client runs");
    assert!(
        out.status.success(),
        "{statements}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs SQL with `psql` in PostgreSQL's database `test` (127.0.0.1:5432, postgres); returns
/// the `|`-separated output.
#[allow(dead_code)]
pub fn psql(statements: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-At",
            "-c",
        ])
        .arg(statements)
        .output()
        .expect("the psql client runs");
    assert!(
        out.status.success(),
        "{statements}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A quiverd on `dir` (its log `quiverd.log` there) with MQTT profile `own` pointing at a
/// broker of the test's own on `port` (streams name it with `CONF_KEY="own"`).
#[allow(dead_code)] // Only the tests with a broker of their own use it.
pub fn server_on_own_broker(dir: &Path, port: u16) -> Server {
    let server = Server::start_args(dir, &[], Some(&dir.join("quiverd.log")));
    let (status, body) = server.call(
        "PUT",
        "/metadata/sources/mqtt/confKeys/own",
        Some(serde_json::json!({"server": format!("tcp://127.0.0.1:{port}")})),
    );
    assert_eq!(status, 200, "{body}");
    server
}
