//! Test support shared by the Redis tests of several crates (included with `#[path]`): a
//! private `redis-server` on a port of its own, for tests that stop Redis or measure it
//! without the machine's shared server.
#![allow(dead_code)]

use std::time::Duration;

/// Deletes every key that starts with `prefix` (a test's keys, when it ends).
pub fn delete_prefixed(conn: &mut redis::Connection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(conn);
    }
}

/// A private redis-server on a free port, killed when dropped.
pub struct PrivateRedis {
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    /// Starts redis-server on `port` (no persistence) and waits until it answers.
    pub fn start(port: u16) -> PrivateRedis {
        Self::start_with(port, &[])
    }

    /// [`PrivateRedis::start`] with extra server arguments (`--requirepass x`).
    pub fn start_with(port: u16, args: &[&str]) -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!("quiver-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        // Owned at once: a panic below drops it, which kills and reaps the process.
        let server = PrivateRedis { port, child, dir };
        let addr = server.addr();
        for _ in 0..200 {
            if redis::Client::open(format!("redis://{addr}/"))
                .unwrap()
                .get_connection_with_timeout(Duration::from_millis(200))
                // A server that wants a password answers, refusing: it is up.
                .map_or_else(
                    |e| e.to_string().contains("NOAUTH") || e.to_string().contains("auth"),
                    |_| true,
                )
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on {addr}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A new connection to it.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.addr()))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Lifts the output-buffer limit of subscribers (benchmarks): a slow subscriber is then
    /// measured rather than cut off.
    pub fn unlimit_subscribers(&self) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("pubsub 0 0 0")
            .query(&mut self.connection())
            .unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
