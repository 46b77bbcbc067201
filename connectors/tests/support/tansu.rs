//! A private Kafka-protocol broker per test: tansu (a Kafka-compatible broker in one binary)
//! with in-memory storage on a free loopback port (SQLite storage when logins are required:
//! only it keeps SCRAM credentials), stopped when the test ends.
//!
//! The binary is found through `QUIVER_TANSU`, then where `scripts/test.sh` installs it
//! (`~/.local/share/quiver/tansu-0.6.0-lite/bin/tansu`), then `tansu` on the PATH. Without it the
//! test fails and says how to install it: these tests are never skipped. A test crate includes
//! support/mqtt.rs as `mqtt` beside this file.
#![allow(dead_code)]

// Random names and free ports as the MQTT tests make them (support/mqtt.rs, included beside
// this file by each test crate).
pub use super::mqtt::{free_port, unique};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the broker, for the failure message.
const INSTALL: &str = "cargo install --locked tansu@0.6.0 --features dynostore,libsql \
     --root ~/.local/share/quiver/tansu-0.6.0-lite (or run scripts/test.sh, which does), \
     or set QUIVER_TANSU to a tansu 0.6 binary built with the dynostore and libsql features";

/// The tansu binary, or a panic saying how to install it.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("QUIVER_TANSU") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "QUIVER_TANSU={} is not a file; {INSTALL}",
            p.display()
        );
        return p;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".local/share/quiver/tansu-0.6.0-lite/bin/tansu");
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("the Kafka tests need the tansu broker, which is not installed: {INSTALL}");
}

/// A running broker; killed on drop.
pub struct Tansu {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Tansu {
    /// Starts a broker on a free port, in a fresh working directory (tansu reads a `.env`
    /// from there), and waits until it accepts connections.
    pub fn start() -> Tansu {
        Self::start_on(free_port())
    }

    /// [`Tansu::start`] on a given port.
    pub fn start_on(port: u16) -> Tansu {
        Self::launch(port, port, None)
    }

    /// A broker that requires a SASL SCRAM login of every client (`--authentication`), with
    /// `users` (name, password, SHA-512 or else SHA-256) made beforehand by tansu's own
    /// `user create` while the broker was still open (it cannot log in itself).
    pub fn start_authenticated(users: &[(&str, &str, bool)]) -> Tansu {
        let port = free_port();
        let mut open = Self::launch(port, port, Some(false));
        for (name, password, sha512) in users {
            let mechanism = if *sha512 { "scram512" } else { "scram256" };
            open.tansu(&["user", "create", name, password, "--mechanism", mechanism]);
        }
        let dir = std::mem::take(&mut open.dir);
        drop(open);
        Self::launch_in(dir, port, port, Some(true))
    }

    /// [`Tansu::start`], telling clients (in metadata) to connect to `advertised` instead: a
    /// proxy in front of it. (tansu 0.6's own TLS cannot be switched on: its CLI refuses
    /// `--cert` together with `--key`.)
    pub fn start_behind(advertised: u16) -> Tansu {
        Self::launch(free_port(), advertised, None)
    }

    /// Starts tansu in a fresh directory; `sqlite` is None for in-memory storage, else
    /// storage in a SQLite file there, with `--authentication` when true.
    fn launch(port: u16, advertised: u16, sqlite: Option<bool>) -> Tansu {
        let dir = std::env::temp_dir().join(format!("quiver-tansu-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        Self::launch_in(dir, port, advertised, sqlite)
    }

    fn launch_in(dir: PathBuf, port: u16, advertised: u16, sqlite: Option<bool>) -> Tansu {
        let storage = match sqlite {
            None => "memory://tansu/".to_string(),
            // Relative to the broker's working directory, `dir`.
            Some(_) => "sqlite://tansu.db".to_string(),
        };
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
        let child = Command::new(binary())
            .arg("broker")
            .args(["--storage-engine", &storage])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            .current_dir(&dir)
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .args((sqlite == Some(true)).then_some("--authentication"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        let mut broker = Tansu { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("tansu exited ({status}): {}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// `host:port` for the `brokers` property.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions through tansu's own CLI.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.tansu(&[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    /// Runs tansu's CLI against this broker (`args`, then `--broker`); panics on failure.
    fn tansu(&self, args: &[&str]) {
        let out = Command::new(binary())
            .args(args)
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .current_dir(&self.dir)
            .output()
            .expect("tansu's CLI runs");
        assert!(
            out.status.success(),
            "tansu {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    /// A file in the broker's working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
