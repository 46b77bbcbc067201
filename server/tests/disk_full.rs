//! A qos 1 rule whose input log's disk fills up: the rule stops and says why, and what it
//! could not log stays with the broker, so nothing is lost once there is room again.
//!
//! The rule's checkpoint directory is a small tmpfs mounted by the test, so this test needs
//! root (`mount`), and fails, saying so, without it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mqtt::{TestClient, unique};
use common::{Server, temp_dir, wait_rule_status};
use serde_json::{Value, json};

/// Messages published: about twice what the small tmpfs holds.
const MESSAGES: i64 = 400;

/// Bytes of padding per message, so a few hundred fill the tmpfs.
const PAD: usize = 1500;

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir,
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Gives the tmpfs room again, keeping what it holds.
    fn grow(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.0);
    }
}

/// Runs `mount` with `args` on `dir`; fails the test, saying it needs root, when it fails.
fn mount(args: &[&str], dir: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .expect("running mount");
    assert!(
        out.status.success(),
        "this test mounts a small tmpfs and needs root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn message(id: i64) -> String {
    json!({"id": id, "pad": "x".repeat(PAD)}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_a_qos_1_rule_and_loses_nothing() {
    let dir = temp_dir("disk-full");
    // The rule's checkpoints and input log live in `<data dir>/checkpoints/<rule id>`.
    let disk = Tmpfs::mount(&dir.join("checkpoints").join("full"), "256k");
    let input = format!("ck/{}/full", unique());
    let output = format!("ck/{}/out", unique());
    let mut results = TestClient::start(1883, Some(output.clone()));
    results.subscribed().await;
    let publisher = TestClient::start(1883, None);
    let server = Server::start_args(&dir, &[], Some(&dir.join("quiverd.log")));
    server.create_stream(&format!(
        r#"CREATE STREAM full (id BIGINT, pad STRING) WITH (TYPE="mqtt", DATASOURCE="{input}", FORMAT="json")"#
    ));
    let rule = json!({"id": "full", "sql": "SELECT id FROM full",
        "actions": [{"mqtt": {"server": "tcp://127.0.0.1:1883", "topic": output, "sendSingle": true, "qos": 1}}],
        "options": {"qos": 1, "checkpointInterval": 200}});
    let (status, body) = server.call("POST", "/rules", Some(rule));
    assert_eq!(status, 201, "{body}");
    wait_rule_status(&server, "full", |s| s["status"] == "running");
    // The rule's source subscribes on its own: publish a probe until a result comes back.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.is_empty() {
        assert!(Instant::now() < deadline, "the rule never read its topic");
        publisher.publish(&input, &message(-1)).await;
        if let Ok(Some(p)) =
            tokio::time::timeout(Duration::from_millis(300), results.publishes.recv()).await
        {
            let v: Value = serde_json::from_slice(&p.payload).unwrap();
            seen.insert(v["id"].as_i64().unwrap());
        }
    }
    for id in 0..MESSAGES {
        publisher.publish(&input, &message(id)).await;
        if id % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // The log's disk fills: the rule stops by error, naming the input log.
    let stopped = wait_rule_status(&server, "full", |s| s["status"] != "running");
    let why = stopped["message"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("input log"),
        "the rule should say its input log failed: {stopped}"
    );

    // With room again and the rule started again, every message arrives: those it had not
    // logged were not acknowledged, so the broker kept them for its session.
    disk.grow("64m");
    let (status, body) = server.call("POST", "/rules/full/start", None);
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = |seen: &BTreeSet<i64>| (0..MESSAGES).filter(|i| !seen.contains(i)).count();
    while missing(&seen) > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, results.publishes.recv()).await {
            Ok(Some(p)) => {
                let v: Value = serde_json::from_slice(&p.payload).unwrap();
                seen.insert(v["id"].as_i64().unwrap());
            }
            _ => panic!(
                "{} of {MESSAGES} messages lost after the disk filled: {:?}",
                missing(&seen),
                (0..MESSAGES)
                    .filter(|i| !seen.contains(i))
                    .take(20)
                    .collect::<Vec<_>>()
            ),
        }
    }
    drop(server);
    drop(disk);
}
