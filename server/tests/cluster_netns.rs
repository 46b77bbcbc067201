//! quiverd as a cluster whose processes each run in a network namespace of their own, joined
//! by veth pairs on a bridge in the test's namespace: the cluster's traffic crosses real
//! interfaces, and one process's link can be taken down (a partition) while it runs.
//!
//! These tests need root (`ip netns`, veth pairs, bridges) and fail, saying so, without it.
//! Each takes a private /24 (`10.231.<n>.0/24`; the bridge `qvb<n>` is the claim on `n`), a
//! private Mosquitto on the bridge's address, and removes what it made when it ends, failed or
//! not; what a killed test left behind is removed by the next one.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::cluster::{
    Follower, publish_to_every_process, pushed_rows_reach_every_process, says_the_cluster_stopped,
    source_in, wait_running, window_in, window_rule_on_pushed_rows, windows_add_up,
};
use common::mqtt::{PrivateBroker, TestClient, free_port, unique};
use common::{Server, temp_dir, wait_rule_status};
use serde_json::json;

/// The port every process's cluster connections listen on (each in its own namespace).
const CLUSTER_PORT: u16 = 7101;
/// The leader's REST API and push listener ports, on its namespace's address.
const REST_PORT: u16 = 9081;
const PUSH_PORT: u16 = 10081;
/// Keys of the input: enough that every process's workers own some.
const KEYS: usize = 12;

/// Runs `ip` with `args`; its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}): these tests need iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip` with `args`, failing the test when it fails.
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The namespaces, veth pairs and bridge of one test; removed on drop.
struct Net {
    /// The third octet of the test's /24, and the number in its bridge's and links' names.
    n: u8,
    bridge: String,
    /// Per process: its namespace and the host end of its veth pair (on the bridge).
    nodes: Vec<(String, String)>,
}

impl Net {
    /// A bridge with `processes` namespaces on it, each with its address on the test's /24
    /// and loopback up. Fails the test, saying why, when it cannot make them (not root, no
    /// network namespaces).
    fn new(processes: usize) -> Net {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next().map(str::to_string))
            })
            .unwrap_or_default();
        assert_eq!(
            uid, "0",
            "the network namespace tests need root (ip netns, veth pairs, bridges); run them as root"
        );
        sweep_stale();
        let pid = std::process::id();
        let start = (pid % 200) as u8;
        let taken = Command::new("ip")
            .args(["-4", "-o", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut claimed = None;
        let mut last_error = String::new();
        for i in 0..250u16 {
            let n = ((u16::from(start) + i) % 250 + 1) as u8;
            // A namespace deleted with connections still retransmitting lives on, with its
            // links, until they give up: such links keep their `n` from being reused for now.
            let lingering =
                (0..processes).any(|p| Path::new(&format!("/sys/class/net/qv{n}p{p}")).exists());
            if lingering || taken.contains(&format!("10.231.{n}.")) {
                continue;
            }
            let bridge = format!("qvb{n}");
            // Creating the bridge claims `n`: another test's attempt at it fails.
            match ip(&["link", "add", &bridge, "type", "bridge"]) {
                Ok(()) => {
                    claimed = Some((n, bridge));
                    break;
                }
                Err(e) if e.contains("File exists") => continue,
                Err(e) => {
                    last_error = e;
                    break;
                }
            }
        }
        let Some((n, bridge)) = claimed else {
            panic!("cannot make a bridge for the namespaces' links: {last_error}");
        };
        let mut net = Net {
            n,
            bridge: bridge.clone(),
            nodes: Vec::new(),
        };
        // Names what made it, so a later test can remove it if this one was killed.
        ip_ok(&[
            "link",
            "set",
            &bridge,
            "alias",
            &format!("quiver-test-{pid}"),
        ]);
        ip_ok(&["addr", "add", &format!("{}/24", net.host()), "dev", &bridge]);
        ip_ok(&["link", "set", &bridge, "up"]);
        for p in 0..processes {
            let ns = format!("quiver-{pid}-{n}-p{p}");
            let veth = format!("qv{n}p{p}");
            if let Err(e) = ip(&["netns", "add", &ns]) {
                panic!("cannot make a network namespace (these tests need `ip netns`): {e}");
            }
            net.nodes.push((ns.clone(), veth.clone()));
            ip_ok(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip_ok(&["link", "set", &veth, "master", &bridge, "up"]);
            let addr = format!("{}/24", net.addr(p));
            ip_ok(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Process `p`'s address.
    fn addr(&self, p: usize) -> String {
        format!("10.231.{}.{}", self.n, p + 1)
    }

    /// The test's own address on the bridge (where its broker listens).
    fn host(&self) -> String {
        format!("10.231.{}.254", self.n)
    }

    /// Process `p`'s namespace.
    fn ns(&self, p: usize) -> &str {
        &self.nodes[p].0
    }

    /// The bridge's end of process `p`'s link.
    fn link(&self, p: usize) -> &str {
        &self.nodes[p].1
    }

    /// Bytes process `p` sent over its link: what the bridge's end of it received.
    fn sent_by(&self, p: usize) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/rx_bytes", self.link(p));
        std::fs::read_to_string(&path)
            .expect("the link's counters")
            .trim()
            .parse()
            .expect("a byte count")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // A namespace's end of a veth pair goes with it, and takes the bridge's end along.
        for (ns, _) in &self.nodes {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Removes the bridges and namespaces of tests whose process is gone (killed before their
/// `Net` was dropped).
fn sweep_stale() {
    let Ok(links) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for link in links.flatten() {
        let name = link.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("qvb") else {
            continue;
        };
        let alias = std::fs::read_to_string(link.path().join("ifalias")).unwrap_or_default();
        let Some(pid) = alias
            .trim()
            .strip_prefix("quiver-test-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        let prefix = format!("quiver-{pid}-{n}-p");
        if let Ok(namespaces) = std::fs::read_dir("/run/netns") {
            for ns in namespaces.flatten() {
                let ns = ns.file_name().to_string_lossy().into_owned();
                if ns.starts_with(&prefix) {
                    let _ = ip(&["netns", "del", &ns]);
                }
            }
        }
        let _ = ip(&["link", "del", &name]);
    }
}

/// A private Mosquitto: on loopback for the test's own clients (`local`), and on the
/// bridge's address for the cluster's processes (`port`); killed on drop.
struct Broker {
    _broker: PrivateBroker,
    port: u16,
    local: u16,
}

impl Broker {
    fn start(net: &Net) -> Broker {
        let (port, local) = (free_port(), free_port());
        let bridge = format!("listener {port} {}\n", net.host());
        // It listens on both once it listens on loopback, which `start_with` waits for.
        let broker = PrivateBroker::start_with(local, &bridge);
        Broker {
            _broker: broker,
            port,
            local,
        }
    }
}

/// The test's network, broker and cluster. Dropped in field order: the processes before the
/// broker and the namespaces they run in.
struct Cluster {
    leader: Server,
    followers: Vec<Follower>,
    broker: Broker,
    net: Net,
}

/// Starts a cluster of `processes` quiverd processes of `workers` workers each, process `p` in
/// namespace `p`; returns once the leader answers over the bridge (it waits for every
/// follower to connect before it serves).
fn cluster(name: &str, processes: usize, workers: usize) -> Cluster {
    let net = Net::new(processes);
    let dir = temp_dir(name);
    let broker = Broker::start(&net);
    let hosts = dir.join("hosts");
    let text: String = (0..processes)
        .map(|p| format!("{}:{CLUSTER_PORT}\n", net.addr(p)))
        .collect();
    std::fs::write(&hosts, text).expect("hosts file");
    // Every process reads the streams' broker from the same profile.
    let config = dir.join("profiles.yaml");
    let profiles = format!(
        "mqtt:\n  bridge:\n    server: tcp://{}:{}\n",
        net.host(),
        broker.port
    );
    std::fs::write(&config, profiles).expect("config file");
    let spawn = |p: usize, extra: &[String]| -> Child {
        let log = std::fs::File::create(dir.join(format!("p{p}.log"))).expect("log file");
        Command::new("ip")
            .args(["netns", "exec", net.ns(p), env!("CARGO_BIN_EXE_quiverd")])
            .arg("--data-dir")
            .arg(dir.join(format!("p{p}")))
            .arg("--cluster-hosts")
            .arg(&hosts)
            .arg("--config")
            .arg(&config)
            .args([
                "--process",
                &p.to_string(),
                "--workers",
                &workers.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("quiverd starts in its namespace")
    };
    let (addr, push_addr) = (
        format!("{}:{REST_PORT}", net.addr(0)),
        format!("{}:{PUSH_PORT}", net.addr(0)),
    );
    // Not on loopback, quiverd refuses to serve without authentication unless told the
    // network is trusted: this one is the test's own bridge.
    let leader_args = [
        "--bind".to_string(),
        addr.clone(),
        "--push-bind".to_string(),
        push_addr.clone(),
        "--allow-unauthenticated".to_string(),
    ];
    // `ip netns exec` runs quiverd in its own process: killing the child kills quiverd.
    let mut leader = Server::adopt(spawn(0, &leader_args), addr, push_addr);
    let followers = (1..processes).map(|p| Follower(spawn(p, &[]))).collect();
    leader.wait_ready();
    Cluster {
        leader,
        followers,
        broker,
        net,
    }
}

impl Cluster {
    /// The MQTT server the processes reach, for rules' actions.
    fn broker_url(&self) -> String {
        format!("tcp://{}:{}", self.net.host(), self.broker.port)
    }

    /// Creates an MQTT stream `name` on a fresh topic of the private broker; the topic.
    fn mqtt_stream(&self, name: &str) -> String {
        let topic = format!("quiver-netns/{}/in", unique());
        self.leader.create_stream(&format!(
            r#"CREATE STREAM {name} (k STRING, v BIGINT) WITH (DATASOURCE="{topic}", TYPE="mqtt", FORMAT="json", CONF_KEY="bridge")"#
        ));
        topic
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_window_rule_runs_across_three_namespaces_and_counts_every_row_once() {
    const PROCESSES: usize = 3;
    let cluster = tokio::task::block_in_place(|| cluster("netns-window", PROCESSES, 2));
    let server = &cluster.leader;
    let topic = tokio::task::block_in_place(|| cluster.mqtt_stream("readings"));
    let out = format!("quiver-netns/{}/out", unique());
    let mut subscriber = TestClient::start(cluster.broker.local, Some(out.clone()));
    subscriber.subscribed().await;
    let rule = json!({
        "id": "windows",
        "sql": "SELECT k, count(*) AS c, sum(v) AS total FROM readings GROUP BY k, TUMBLINGWINDOW(ss, 1)",
        "actions": [{"mqtt": {"server": cluster.broker_url(), "topic": out, "sendSingle": true}}]
    });
    let (status, body) = tokio::task::block_in_place(|| server.call("POST", "/rules", Some(rule)));
    assert_eq!(status, 201, "{body}");
    let sent_before: Vec<u64> = (0..PROCESSES).map(|p| cluster.net.sent_by(p)).collect();

    // Rows once every process's source takes some; however the processes split them and
    // the wall clock cut the windows, the windows add up to them, per key, each row once.
    let publisher = TestClient::start(cluster.broker.local, None);
    let (want, _, probes) =
        publish_to_every_process(server, "windows", &publisher, &topic, PROCESSES, KEYS).await;
    let sent: u64 = want.values().map(|(c, _)| *c as u64).sum::<u64>() + probes;
    windows_add_up(&mut subscriber, &want).await;

    // Every process's windows took rows, each row once; and rows went to the windows of other
    // processes than the one that read them, over the links: a process's windows took more
    // rows than its sources read, so the exchange by key brought it rows from elsewhere.
    let st = tokio::task::block_in_place(|| {
        wait_rule_status(server, "windows", |st| {
            (0..PROCESSES).map(|p| window_in(st, p)).sum::<u64>() == sent
        })
    });
    assert_eq!(st["status"], json!("running"), "{st}");
    for p in 0..PROCESSES {
        assert!(
            window_in(&st, p) > 0,
            "process {p}'s windows took no row: {st}"
        );
    }
    assert!(
        (0..PROCESSES).any(|p| window_in(&st, p) > source_in(&st, p)),
        "no row reached another process's windows: {st}"
    );
    // Every process sent over its own link (the leader's exchange, the followers' exchange and
    // sinks): nothing took a shortcut through a shared loopback.
    for (p, before) in sent_before.iter().enumerate() {
        let after = cluster.net.sent_by(p);
        assert!(after > *before, "process {p}'s link carried nothing");
    }
    tokio::task::block_in_place(|| {
        assert_eq!(server.call("DELETE", "/rules/windows", None).0, 200);
        assert_eq!(server.call("DELETE", "/streams/readings", None).0, 200);
    });
}

#[test]
fn a_process_cut_off_by_a_link_down_stops_the_cluster_until_the_link_is_back() {
    let mut cluster = cluster("netns-partition", 3, 1);
    let server = &cluster.leader;
    window_rule_on_pushed_rows(server);
    // Rows reach every process's windows before the cut (the leader reads them all).
    let rows = (KEYS * 4) as u64;
    pushed_rows_reach_every_process(server, 3, KEYS, rows);

    // Process 2's link goes down at the bridge: no connection closes, its packets just stop.
    let cut = Instant::now();
    ip_ok(&["link", "set", cluster.net.link(2), "down"]);
    let deadline = cut + Duration::from_secs(45);
    let st = loop {
        let (_, st) = server.json("GET", "/rules/w/status", None);
        if st["status"] == json!("stopped by error") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not see the partition: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "the leader reported the partition after {:?}",
        cut.elapsed()
    );
    says_the_cluster_stopped(server, &st);
    let (status, body) = server.json(
        "POST",
        "/rules",
        Some(json!({"id": "after", "sql": "SELECT k FROM s", "actions": [{"log": {}}]})),
    );
    assert_eq!(status, 500, "{body}");
    assert!(body.to_string().contains("the cluster stopped"), "{body}");
    // The followers wait for the cluster to form again instead of leaving.
    for (i, follower) in cluster.followers.iter_mut().enumerate() {
        let status = follower.exited_within(Duration::from_millis(500));
        assert!(status.is_none(), "process {} left: {status:?}", i + 1);
    }
    // The link is back: every process connects again, and the leader starts the rule again
    // on all three, whose windows take rows again.
    ip_ok(&["link", "set", cluster.net.link(2), "up"]);
    wait_running(server, "w");
    pushed_rows_reach_every_process(server, 3, KEYS, rows);
}
