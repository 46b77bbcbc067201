//! Test support shared by the MQTT tests of several crates (included with `#[path]`):
//! a plain MQTT client for the test side and private Mosquitto brokers for outage tests.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A short random id for topics and client ids, so parallel tests never meet.
pub fn unique() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// A plain rumqttc client for the test side: forwards received publishes and SubAcks, and keeps
/// reconnecting (and resubscribing to `subscribe`) if the broker goes away.
pub struct TestClient {
    pub client: AsyncClient,
    pub publishes: mpsc::UnboundedReceiver<rumqttc::Publish>,
    subacks: mpsc::UnboundedReceiver<()>,
    driver: JoinHandle<()>,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl TestClient {
    pub fn start(port: u16, subscribe: Option<String>) -> Self {
        let mut options = MqttOptions::new(format!("quiver-test-{}", unique()), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (ack_tx, subacks) = mpsc::unbounded_channel();
        let sub_client = client.clone();
        let driver = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(topic) = &subscribe {
                            sub_client
                                .try_subscribe(topic.clone(), QoS::AtLeastOnce)
                                .unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = pub_tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        TestClient {
            client,
            publishes,
            subacks,
            driver,
        }
    }

    pub async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Publishes raw bytes (compressed or binary payloads).
    pub async fn publish_bytes(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub async fn subscribed(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.subacks.recv())
            .await
            .expect("no SUBACK within 10 s")
            .unwrap();
    }

    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        tokio::time::timeout(Duration::from_secs(10), self.publishes.recv())
            .await
            .expect("no message within 10 s")
            .unwrap()
    }
}

/// A Mosquitto of our own on `port` (127.0.0.1 only); killed on drop.
pub struct PrivateBroker {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PrivateBroker {
    pub fn start(port: u16) -> Self {
        Self::start_with(port, "")
    }

    /// A broker that keeps its sessions and queued messages on disk across [`Self::restart`]:
    /// in a folder of its own that mosquitto can write also once, started as root, it runs as
    /// user `mosquitto`.
    #[allow(dead_code)] // Only the tests of broker restarts use it.
    pub fn start_persistent(port: u16) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let store = std::env::temp_dir().join(format!("quiver-mosquitto-store-{}", unique()));
        std::fs::create_dir_all(&store).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
        Self::start_with(
            port,
            &format!(
                "persistence true\npersistence_location {}/\n",
                store.display()
            ),
        )
    }

    /// A broker whose configuration also has the lines of `extra`.
    pub fn start_with(port: u16, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("quiver-mosquitto-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"),
        )
        .unwrap();
        PrivateBroker {
            child: spawn_mosquitto(&conf, port),
            dir,
            port,
        }
    }

    /// Stops the broker with SIGTERM (it writes its persistence file, when its configuration
    /// has one) and starts it again on the same configuration: a broker restart.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.child = spawn_mosquitto(&self.dir.join("mosquitto.conf"), self.port);
    }
}

/// Starts mosquitto on `conf` and waits until it listens on `port`.
fn spawn_mosquitto(conf: &std::path::Path, port: u16) -> Child {
    let child = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start /usr/sbin/mosquitto");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
