//! `quiver-mqtt-bench`: quiverd over MQTT, end to end, against the broker's own ceiling.
//!
//! ```text
//! cargo build --release -p quiver-server --bin quiverd
//! cargo run --release -p quiver-benches --bin quiver-mqtt-bench -- [options]
//! ```
//!
//! One run, every phase against the same broker on loopback (a private Mosquitto on a free
//! port unless `--broker-port` names a running one), quiverd started as a child process with
//! its own data directory and REST port, `--workers 2`:
//!
//! 1. **Ingest.** A Rust publisher (rumqttc, QoS 0, ~100-byte JSON sensor messages) first
//!    feeds one plain subscriber (no Quiver): the broker's ceiling, the highest rate at which
//!    the subscriber receives every message. Then the same publisher feeds quiverd running W1
//!    (`SELECT device, temperature FROM demo WHERE temperature > 20`) with a memory sink nobody
//!    subscribes to (a no-op), and then W1 with an MQTT sink (`sendSingle`) whose output a
//!    subscriber counts. Each trial publishes for `--trial-secs`; a trial passes when every
//!    message reached the rule's source (`records_in`) and, with the MQTT sink, every result
//!    row reached the subscriber. Quiver's trials offer the ceiling's rate first, then step
//!    down, so the first passing trial reads directly as a fraction of the ceiling.
//! 2. **Many rules.** A fresh quiverd, one `SHARED` MQTT stream, `--rules` counts (default
//!    1,000 then 10,000) of `SELECT temperature FROM demo WHERE temperature > 20` with memory
//!    sinks: RSS before and after creating them, then publish rates (800 msg/s first, then
//!    higher) with every rule reading every message; a rate passes when every rule's
//!    `records_in` grew by exactly the number published (checked on all rules).
//! 3. **Latency.** `SELECT * FROM demo` with an MQTT sink (`sendSingle`), publishing at
//!    `--latency-rate` with the send time (µs since the epoch) in `ts`; the subscriber records
//!    receive time minus `ts` for every result.
//! 4. **Footprint.** quiverd's RSS right after start (no streams, no rules) and the size of the
//!    binary as built, stripped (`strip`) and stripped + gzip -9.
//! 5. **Checkpoints (`qos`, not in the default list).** What a rule's `"qos": 1` costs: W2
//!    over MQTT at qos 0 and qos 1, checkpoint size and duration with many open groups, and
//!    the time from a SIGKILL to the first result after the restart (see `mqtt_bench/qos.rs`).
//! 6. **Cluster (`cluster`, not in the default list).** W1 and W2 on 1, 2 and 3 quiverd
//!    processes of one worker each (`--cluster-hosts` on loopback) and on one process with 2
//!    and 3 workers, their trials interleaved: highest lossless rate, CPU per message summed
//!    over the processes, bytes exchanged between them per message (see `mqtt_bench/cluster.rs`).
//!
//! 7. **Window rules (`window-rules`, not in the default list).** A fresh quiverd, one
//!    `SHARED` MQTT stream, `--rules` counts of 1-second tumbling-window rules with different
//!    filters and group keys; per `--window-rates` rate: quiverd CPU per message, whether the
//!    sampled rules kept up, and the latency of window results (receive time minus
//!    `window_end()`); with `--quiverd-b`, A and B in turn per rule count (see
//!    `mqtt_bench/window_rules.rs`).
//!
//! Everything it starts (quiverd, Mosquitto) is killed when it ends, also on error.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use quiver_benches::{DEFAULT_SEED, Generator};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

#[path = "mqtt_bench/cluster.rs"]
mod cluster;
#[path = "mqtt_bench/qos.rs"]
mod qos;
#[path = "mqtt_bench/window_rules.rs"]
mod window_rules;

const USAGE: &str =
    "usage: quiver-mqtt-bench [--quiverd PATH] [--broker-port PORT] [--trial-secs S]
       [--rules 1000,10000] [--rule-rates 800,2000,5000,10000] [--latency-rate 10000]
       [--latency-secs S] [--phases ingest,rules,latency,footprint,qos] [--workers 2]
       [--broker-conf LINE]... [--client-nodelay] [--quiverd-b PATH] [--qos-cases 1,2]
       [--window-rates 1000,10000]
  --quiverd      the server binary (default: quiverd next to this binary)
  --quiverd-b    a second server binary (A/B): phases qos-throughput and window-rules run
                 each case on both, alternating
  --qos-cases    only these qos throughput cases (0-based, e.g. 1,2; to profile one)
  --rules        rule counts of phases rules and window-rules
  --rule-rates   publish rates (msgs/s) of phase rules (a ladder: up while kept up)
  --window-rates publish rates (msgs/s) of phase window-rules (each one runs)
  --broker-port  use the broker already listening on this port (default: start a private
                 Mosquitto on a free port)
  --broker-conf  one more line for the private Mosquitto's config (repeatable), e.g.
                 \"set_tcp_nodelay true\"
  --client-nodelay  TCP_NODELAY on the bench's own publisher and subscribers
  --phases       default footprint,ingest,latency,rules; not in the default list, run only
                 when named: `qos` (checkpoints: qos 0 against qos 1 and 2; `qos-throughput`
                 is its first part alone), `cluster` (W1 and W2 on 1-3 processes; ignores
                 --workers) and `window-rules` (--rules tumbling-window rules with different
                 filters and keys on one SHARED stream, at each --window-rates)";

/// Size every published message is padded to.
const MESSAGE_BYTES: usize = 100;

/// The W1 rule.
const W1_SQL: &str = "SELECT device, temperature FROM demo WHERE temperature > 20";

/// The many-rules rule.
const MANY_SQL: &str = "SELECT temperature FROM demo WHERE temperature > 20";

struct Options {
    quiverd: PathBuf,
    /// A second server binary: the qos throughput cases run on both, alternating (A/B).
    quiverd_b: Option<PathBuf>,
    /// The qos throughput cases to run (indices; all when empty).
    qos_cases: Vec<usize>,
    broker_port: Option<u16>,
    trial: Duration,
    rules: Vec<usize>,
    rule_rates: Vec<u64>,
    /// Publish rates of the `window-rules` phase.
    window_rates: Vec<u64>,
    latency_rate: u64,
    latency_secs: u64,
    phases: Vec<String>,
    workers: usize,
    /// Extra lines for the private broker's config.
    broker_conf: Vec<String>,
}

fn parse_args() -> anyhow::Result<Options> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut o = Options {
        quiverd: exe.with_file_name("quiverd"),
        quiverd_b: None,
        qos_cases: Vec::new(),
        broker_port: None,
        trial: Duration::from_secs(5),
        rules: vec![1_000, 10_000],
        rule_rates: vec![800, 2_000, 5_000, 10_000],
        window_rates: vec![1_000, 10_000],
        latency_rate: 10_000,
        latency_secs: 10,
        phases: ["footprint", "ingest", "latency", "rules"]
            .map(String::from)
            .to_vec(),
        workers: 2,
        broker_conf: Vec::new(),
    };
    let list = |s: &str| -> anyhow::Result<Vec<u64>> {
        s.split(',')
            .map(|x| x.trim().parse::<u64>().context("expected numbers like 1,2"))
            .collect()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quiverd" => o.quiverd = PathBuf::from(value()?),
            "--quiverd-b" => o.quiverd_b = Some(PathBuf::from(value()?)),
            "--qos-cases" => {
                o.qos_cases = list(&value()?)?.into_iter().map(|n| n as usize).collect()
            }
            "--broker-port" => o.broker_port = Some(value()?.parse()?),
            "--trial-secs" => o.trial = Duration::from_secs_f64(value()?.parse()?),
            "--rules" => o.rules = list(&value()?)?.into_iter().map(|n| n as usize).collect(),
            "--rule-rates" => o.rule_rates = list(&value()?)?,
            "--window-rates" => o.window_rates = list(&value()?)?,
            "--latency-rate" => o.latency_rate = value()?.parse()?,
            "--latency-secs" => o.latency_secs = value()?.parse()?,
            "--phases" => o.phases = value()?.split(',').map(String::from).collect(),
            "--workers" => o.workers = value()?.parse()?,
            "--broker-conf" => o.broker_conf.push(value()?),
            "--client-nodelay" => CLIENT_NODELAY.store(true, Ordering::Relaxed),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument \"{other}\"\n{USAGE}"),
        }
    }
    if o.broker_port.is_some() && !o.broker_conf.is_empty() {
        bail!(
            "--broker-conf configures the private broker; it cannot change one given by --broker-port"
        );
    }
    if !o.quiverd.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p quiver-server --bin quiverd` \
             or pass --quiverd",
            o.quiverd.display()
        );
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Processes: a private Mosquitto and quiverd, killed on drop.

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A Mosquitto of our own (default settings unless `--broker-conf` adds lines, no
/// persistence, 127.0.0.1 only).
struct Broker {
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16, extra: &[String]) -> anyhow::Result<Broker> {
        let conf = dir.join("mosquitto.conf");
        let mut text =
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&conf, text)?;
        // Its log tells why it did not start (a bad `--broker-conf` line, say).
        let log_path = dir.join("mosquitto.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting /usr/sbin/mosquitto")?;
        let broker = Broker { child };
        wait_port(port, "mosquitto").with_context(|| {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            format!("mosquitto's log ({}): {}", log_path.display(), said.trim())
        })?;
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `dir/quiver.yaml`, whose default MQTT profile is the broker on `broker_port`.
fn write_config(dir: &Path, broker_port: u16) -> anyhow::Result<PathBuf> {
    let config = dir.join("quiver.yaml");
    std::fs::write(
        &config,
        format!("mqtt:\n  default:\n    server: \"tcp://127.0.0.1:{broker_port}\"\n"),
    )?;
    Ok(config)
}

/// Starts `bin` with its data directory and log (`quiverd.log`) in `dir`, `workers` workers,
/// `config` as its `--config` file and the arguments `more` adds; returns at once.
fn spawn_quiverd(
    bin: &Path,
    dir: &Path,
    config: &Path,
    workers: usize,
    more: impl FnOnce(&mut Command),
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.join("quiverd.log"))?;
    let mut command = Command::new(bin);
    command
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--workers", &workers.to_string(), "--config"])
        .arg(config)
        // Warnings only, unless the bench's own RUST_LOG asks for more (to see what a run did).
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        // quiverd logs to stdout.
        .stdout(log.try_clone()?)
        .stderr(log);
    more(&mut command);
    command
        .spawn()
        .with_context(|| format!("starting {} in {}", bin.display(), dir.display()))
}

/// A running quiverd with its own data directory and REST port.
struct Quiverd {
    child: Child,
    addr: String,
    started: Instant,
}

impl Quiverd {
    fn start(bin: &Path, dir: &Path, broker_port: u16, workers: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = write_config(dir, broker_port)?;
        Self::start_with(bin, dir, &config, workers, &[])
    }

    /// A quiverd with `config` as its `--config` file and `extra` arguments (a cluster's
    /// flags, say); returns once it answers `/ping`.
    fn start_with(
        bin: &Path,
        dir: &Path,
        config: &Path,
        workers: usize,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port());
        let push = format!("127.0.0.1:{}", free_port());
        let started = Instant::now();
        let child = spawn_quiverd(bin, dir, config, workers, |c| {
            c.args(["--bind", &addr, "--push-bind", &push]).args(extra);
        })?;
        let q = Quiverd {
            child,
            addr,
            started,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(&q.addr, "GET", "/ping", None).is_err() {
            if Instant::now() > deadline {
                bail!("quiverd did not answer /ping (log: {})", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(q)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `(VmRSS, VmHWM)` in kB.
    fn rss_kb(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let body = body.map(Value::to_string);
        let (status, text) = http(&self.addr, method, path, body.as_deref())
            .with_context(|| format!("{method} {path}"))?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn create_stream(&self, sql: &str) -> anyhow::Result<()> {
        self.request("POST", "/streams", Some(&json!({ "sql": sql })))
            .map(drop)
    }

    /// The stream `demo` of the many-rules phases: `SHARED`, over the MQTT topic `topic`.
    fn create_shared_demo(&self, topic: &str) -> anyhow::Result<()> {
        self.create_stream(&format!(
            "CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) \
             WITH (DATASOURCE=\"{topic}\", TYPE=\"mqtt\", FORMAT=\"json\", SHARED=\"true\")"
        ))
    }

    fn create_rule(&self, id: &str, sql: &str, action: Value) -> anyhow::Result<()> {
        self.request(
            "POST",
            "/rules",
            Some(&json!({"id": id, "sql": sql, "actions": [action]})),
        )
        .map(drop)
    }

    fn delete_rule(&self, id: &str) -> anyhow::Result<()> {
        self.request("DELETE", &format!("/rules/{id}"), None)
            .map(drop)
    }

    fn status(&self, rule: &str) -> anyhow::Result<Value> {
        self.request("GET", &format!("/rules/{rule}/status"), None)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills it.
    }
}

impl Drop for Quiverd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of process `pid` (or `self`) so far, in seconds (all threads).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15,
    // and `after` starts at field 3 (state), so field n is index n - 3.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU use of quiverd, the broker and this process (publisher and subscribers) over a trial.
#[derive(Clone, Copy)]
struct CpuMeter {
    pids: [Option<u32>; 2],
    start: [f64; 3],
}

/// CPU shares (1.0 = one core) of quiverd, the broker and this process.
#[derive(Clone, Copy, Default)]
struct CpuUse([Option<f64>; 3]);

impl CpuMeter {
    fn start(quiverd: Option<u32>, broker: Option<u32>) -> CpuMeter {
        let pids = [quiverd, broker];
        CpuMeter {
            pids,
            start: [
                quiverd.map_or(0.0, |p| cpu_secs(&p.to_string())),
                broker.map_or(0.0, |p| cpu_secs(&p.to_string())),
                cpu_secs("self"),
            ],
        }
    }

    fn finish(&self, secs: f64) -> CpuUse {
        let secs = secs.max(1e-9);
        let share = |pid: Option<u32>, i: usize| {
            pid.map(|p| (cpu_secs(&p.to_string()) - self.start[i]) / secs)
        };
        CpuUse([
            share(self.pids[0], 0),
            share(self.pids[1], 1),
            Some((cpu_secs("self") - self.start[2]) / secs),
        ])
    }
}

impl CpuUse {
    fn cells(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|c| c.map_or("-".into(), |c| format!("{:.0}%", c * 100.0)))
            .collect()
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sum of the status fields whose name starts with `prefix` and ends with `suffix`.
fn metric(status: &Value, prefix: &str, suffix: &str) -> u64 {
    status.as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    })
}

fn records_in(status: &Value) -> u64 {
    metric(status, "source_", "_records_in_total")
}

/// A minimal HTTP/1.1 client (one connection per request).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// MQTT clients.

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn unique() -> String {
    format!("{}-{}", std::process::id(), now_us() % 1_000_000_000)
}

/// Set by `--client-nodelay`: the bench's own clients turn Nagle's algorithm off.
static CLIENT_NODELAY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The bench's own event loop for `options`, with `--client-nodelay` applied.
fn client(options: MqttOptions, capacity: usize) -> (AsyncClient, rumqttc::EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(CLIENT_NODELAY.load(Ordering::Relaxed));
    eventloop.set_network_options(network);
    (client, eventloop)
}

fn options(port: u16, id: String) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// A publisher, QoS 0 unless [`Publisher::connect_qos`] says otherwise.
struct Publisher {
    client: AsyncClient,
    generator: Generator,
    payload: Vec<u8>,
    qos: QoS,
}

/// What one publishing run did.
#[derive(Debug, Clone, Copy, Default)]
struct Published {
    sent: u64,
    /// Messages the W1 filter keeps (`temperature > 20`).
    hot: u64,
    secs: f64,
}

impl Published {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-9)
    }
}

impl Publisher {
    async fn connect(port: u16) -> anyhow::Result<Publisher> {
        Self::connect_qos(port, QoS::AtMostOnce).await
    }

    /// A publisher whose messages go out at `qos`.
    async fn connect_qos(port: u16, qos: QoS) -> anyhow::Result<Publisher> {
        let mut o = options(port, format!("qbench-pub-{}", unique()));
        if qos != QoS::AtMostOnce {
            // Enough unacknowledged messages on the way that the broker's PUBACKs do not pace
            // the publisher.
            o.set_inflight(1000);
        }
        let (client, mut eventloop) = client(o, 4096);
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .context("publisher: no CONNACK")??;
        Ok(Publisher {
            client,
            generator: Generator::new(DEFAULT_SEED),
            payload: Vec::with_capacity(MESSAGE_BYTES + 16),
            qos,
        })
    }

    /// One message padded to [`MESSAGE_BYTES`]; `ts` is the send time in µs since the epoch.
    fn next_message(&mut self) -> (Vec<u8>, bool) {
        let r = self.generator.next_reading();
        let p = &mut self.payload;
        p.clear();
        let _ = write!(
            p,
            "{{\"device\":\"dev-{}\",\"temperature\":{}.{},\"humidity\":{},\"ts\":{},\"pad\":\"",
            r.device,
            r.temperature_tenths / 10,
            r.temperature_tenths % 10,
            r.humidity,
            now_us()
        );
        while p.len() < MESSAGE_BYTES - 2 {
            p.push(b'x');
        }
        p.extend_from_slice(b"\"}");
        (p.clone(), r.is_hot())
    }

    /// Publishes to `topic` for `duration`, at `rate` messages/s or as fast as it can.
    async fn run(
        &mut self,
        topic: &str,
        rate: Option<u64>,
        duration: Duration,
    ) -> anyhow::Result<Published> {
        let start = Instant::now();
        let mut out = Published::default();
        let topic = topic.to_string();
        loop {
            let elapsed = start.elapsed();
            if elapsed >= duration {
                break;
            }
            let target = match rate {
                Some(r) => (r as f64 * elapsed.as_secs_f64()) as u64,
                None => out.sent + 256,
            };
            if out.sent >= target {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            while out.sent < target {
                let (payload, hot) = self.next_message();
                self.client
                    .publish(topic.clone(), self.qos, false, payload)
                    .await?;
                out.sent += 1;
                out.hot += u64::from(hot);
            }
            if rate.is_none() {
                tokio::task::yield_now().await;
            }
        }
        out.secs = start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Publishes messages with `temperature` 0 (filtered out by every rule here) until `done`
    /// says they arrive; for waiting until a subscription is live.
    async fn probe(&self, topic: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            if Instant::now() > deadline {
                bail!("probe messages on {topic} never arrived");
            }
            let probe = format!(
                "{{\"device\":\"probe\",\"temperature\":0,\"humidity\":0,\"ts\":{}}}",
                now_us()
            );
            self.client
                .publish(topic, QoS::AtMostOnce, false, probe.into_bytes())
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// What a subscriber has seen, shared with its event loop task.
#[derive(Default)]
struct Received {
    messages: AtomicU64,
    /// JSON objects (rows) in the messages: one per message, or several in an array.
    rows: AtomicU64,
    /// Microseconds since the subscriber started, of the last message.
    last_us: AtomicU64,
    /// Receive time minus the payload's `ts` (µs), when recording latencies.
    latencies: Mutex<Vec<i64>>,
    /// Every message with its arrival time, when keeping them.
    payloads: Mutex<Vec<(Instant, Vec<u8>)>>,
}

struct Subscriber {
    received: Arc<Received>,
    client: AsyncClient,
    started: Instant,
}

impl Subscriber {
    async fn connect(port: u16, topic: &str, latencies: bool) -> anyhow::Result<Subscriber> {
        Self::connect_with(port, topic, latencies, false).await
    }

    /// A subscriber that also keeps every message (`keep`) in [`Received::payloads`].
    async fn connect_with(
        port: u16,
        topic: &str,
        latencies: bool,
        keep: bool,
    ) -> anyhow::Result<Subscriber> {
        let mut o = options(port, format!("qbench-sub-{}", unique()));
        o.set_inflight(1000);
        let (client, mut eventloop) = client(o, 64);
        let received = Arc::new(Received::default());
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let sub = client.clone();
        let topic = topic.to_string();
        let r = received.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(topic.clone(), QoS::AtMostOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = now_us();
                        let rows = p.payload.iter().filter(|&&b| b == b'{').count() as u64;
                        r.rows.fetch_add(rows.max(1), Ordering::Relaxed);
                        if latencies
                            && let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                            && let Some(ts) = v.get("ts").and_then(Value::as_i64)
                            && v.get("device").and_then(Value::as_str) != Some("probe")
                        {
                            r.latencies.lock().expect("latency lock").push(at - ts);
                        }
                        if keep {
                            let kept = (Instant::now(), p.payload.to_vec());
                            r.payloads.lock().expect("payloads lock").push(kept);
                        }
                        r.last_us
                            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        r.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .context("subscriber: no SUBACK")??;
        Ok(Subscriber {
            received,
            client,
            started,
        })
    }

    fn messages(&self) -> u64 {
        self.received.messages.load(Ordering::Relaxed)
    }

    fn rows(&self) -> u64 {
        self.received.rows.load(Ordering::Relaxed)
    }

    /// Seconds since `since` of the last message received.
    fn last_at(&self, since: Instant) -> f64 {
        let last = Duration::from_micros(self.received.last_us.load(Ordering::Relaxed));
        (self.started + last)
            .saturating_duration_since(since)
            .as_secs_f64()
    }

    async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// Waits until `count()` reaches `want` or stops moving for `quiet`; returns the final count
/// and the seconds since `since` at which it last moved.
fn drain(since: Instant, want: u64, quiet: Duration, mut count: impl FnMut() -> u64) -> (u64, f64) {
    let mut last = count();
    let mut last_change = since.elapsed().as_secs_f64();
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while last < want && still_since.elapsed() < quiet && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = count();
        if now != last {
            last = now;
            last_change = since.elapsed().as_secs_f64();
            still_since = Instant::now();
        }
    }
    (last, last_change)
}

/// Creates rules `r0` .. `r{n-1}` on `q` over REST from 4 client threads, rule `i` being
/// `rule(i)` = (SQL, action); returns the seconds it took, or the first error.
fn create_rules(
    q: &Quiverd,
    n: usize,
    rule: impl Fn(usize) -> (String, Value) + Sync,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let (sql, action) = rule(i);
                    if let Err(e) = q.create_rule(&format!("r{i}"), &sql, action) {
                        errors.lock().expect("errors lock").push(e.to_string());
                    }
                }
            });
        }
    });
    let took = start.elapsed().as_secs_f64();
    let errors = errors.into_inner().expect("errors lock");
    if !errors.is_empty() {
        bail!(
            "{} of {n} rules failed to be created, first: {}",
            errors.len(),
            errors[0]
        );
    }
    Ok(took)
}

// ---------------------------------------------------------------------------------------------
// Results.

struct Row(Vec<String>);

struct Table {
    title: String,
    header: Vec<&'static str>,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: &str, header: &[&'static str]) -> Table {
        Table {
            title: title.to_string(),
            header: header.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        println!("  | {} |", cells.join(" | "));
        self.rows.push(Row(cells));
    }

    fn note(&mut self, note: String) {
        println!("  note: {note}");
        self.notes.push(note);
    }

    fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n| {} |\n|", self.title, self.header.join(" | "));
        for _ in &self.header {
            s.push_str("---|");
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.0.join(" | ")));
        }
        for n in &self.notes {
            s.push_str(&format!("\n{n}\n"));
        }
        s
    }
}

fn k(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Phases.

struct Bench {
    opts: Options,
    rt: Runtime,
    broker_port: u16,
    /// The private broker's pid, for its CPU use.
    broker_pid: Option<u32>,
    dir: PathBuf,
    prefix: String,
    tables: Vec<Table>,
    /// The broker's no-loss ceiling measured in this run (msgs/s).
    ceiling: Option<f64>,
}

/// One ingest trial's outcome.
struct Trial {
    offered: Option<u64>,
    published: Published,
    arrived: u64,
    /// Seconds from the first publish to the last arrival.
    last_at: f64,
    cpu: CpuUse,
    /// Result rows expected and received at the sink subscriber, when there is one.
    sink_rows: Option<(u64, u64)>,
}

impl Trial {
    /// A trial that only counts arrivals, its CPU measured by `meter` until the last one.
    fn without_sink(
        offered: Option<u64>,
        published: Published,
        arrived: u64,
        last_at: f64,
        meter: &CpuMeter,
    ) -> Trial {
        Trial {
            offered,
            published,
            arrived,
            last_at,
            cpu: meter.finish(last_at.max(published.secs)),
            sink_rows: None,
        }
    }

    fn lossless(&self) -> bool {
        self.arrived == self.published.sent && self.sink_rows.is_none_or(|(want, got)| got == want)
    }

    fn row(&self, what: &str) -> Vec<String> {
        vec![
            what.to_string(),
            self.offered.map_or("max".into(), |r| k(r as f64)),
            k(self.published.rate()),
            thousands(self.published.sent),
            thousands(self.arrived),
            self.sink_rows.map_or("-".into(), |(want, got)| {
                format!("{} / {}", thousands(got), thousands(want))
            }),
            format!("{:.2}", (self.last_at - self.published.secs).max(0.0)),
        ]
        .into_iter()
        .chain(self.cpu.cells())
        .chain([self.micros_per_message(), self.lossless_cell()])
        .collect()
    }

    /// CPU time of quiverd, broker and this process together per message that arrived.
    fn micros_per_message(&self) -> String {
        let window = self.last_at.max(self.published.secs);
        let all: f64 = self.cpu.0.iter().flatten().sum();
        let per = |share: f64| share * window * 1e6 / self.arrived.max(1) as f64;
        match self.cpu.0[0] {
            Some(q) => format!("{:.1} ({:.1} quiverd)", per(all), per(q)),
            None => format!("{:.1}", per(all)),
        }
    }

    /// The console line of a trial of `what`.
    fn print(&self, what: &str) {
        println!(
            "  {what}: offered {:>8} published {:>9.0}/s sent {} arrived {} lossless {}",
            self.offered.map_or("max".into(), |r| r.to_string()),
            self.published.rate(),
            self.published.sent,
            self.arrived,
            self.lossless()
        );
    }

    /// The rate to offer after this trial lost messages: 95% of the rate that arrived,
    /// rounded down to `step`, and at most 90% of this trial's offer.
    fn next_rate(&self, step: u64) -> u64 {
        let got = self.arrived as f64 / self.last_at.max(1e-9);
        let next = ((got * 0.95) as u64 / step * step).max(step);
        self.offered.map_or(next, |r| next.min(r * 9 / 10))
    }

    fn lossless_cell(&self) -> String {
        if self.lossless() { "yes" } else { "**no**" }.into()
    }
}

const TRIAL_HEADER: &[&str] = &[
    "case",
    "offered msgs/s",
    "published msgs/s",
    "published",
    "arrived",
    "sink rows (got / want)",
    "drain after publish (s)",
    "quiverd CPU",
    "broker CPU",
    "bench client CPU",
    "CPU µs per message (all three)",
    "no loss",
];

impl Bench {
    fn topic(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    fn start_quiverd(&self, name: &str) -> anyhow::Result<Quiverd> {
        Quiverd::start(
            &self.opts.quiverd,
            &self.dir.join(name),
            self.broker_port,
            self.opts.workers,
        )
    }

    /// Phase 4: idle RSS and binary size.
    fn footprint(&mut self) -> anyhow::Result<()> {
        println!("== footprint");
        let mut t = Table::new(
            "Idle footprint",
            &[
                "measure",
                "Quiver (measured)",
                "eKuiper (published, not measured)",
            ],
        );
        let q = self.start_quiverd("idle")?;
        let answered = q.started.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let (rss, hwm) = q.rss_kb();
        q.stop();
        t.row(vec![
            "idle RSS after start (no streams, no rules)".into(),
            format!("{} (peak {})", mb(rss), mb(hwm)),
            "about 10 MB".into(),
        ]);
        t.row(vec![
            "start to first /ping answer".into(),
            format!("{:.0} ms", answered.as_secs_f64() * 1000.0),
            "-".into(),
        ]);
        let size = std::fs::metadata(&self.opts.quiverd)?.len();
        t.row(vec![
            "quiverd binary as built (release, line tables)".into(),
            format!("{:.1} MB", size as f64 / 1e6),
            "-".into(),
        ]);
        let stripped = self.dir.join("quiverd.stripped");
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&self.opts.quiverd)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let s = std::fs::metadata(&stripped)?.len();
            t.row(vec![
                "quiverd stripped".into(),
                format!("{:.1} MB", s as f64 / 1e6),
                "4.5 MB core package".into(),
            ]);
            let gz = Command::new("gzip")
                .args(["-9", "-c"])
                .arg(&stripped)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| o.stdout.len());
            if let Some(gz) = gz {
                t.row(vec![
                    "quiverd stripped + gzip -9 (a package)".into(),
                    format!("{:.1} MB", gz as f64 / 1e6),
                    "4.5 MB core package".into(),
                ]);
            }
        } else {
            t.note("`strip` failed or is missing: no stripped size.".into());
        }
        self.tables.push(t);
        Ok(())
    }

    /// Runs trials at the offered rates until one passes; returns the trials.
    fn trials(
        &self,
        rates: &[Option<u64>],
        mut trial: impl FnMut(Option<u64>) -> anyhow::Result<Trial>,
    ) -> anyhow::Result<Vec<Trial>> {
        let mut out = Vec::new();
        for &rate in rates {
            let t = trial(rate)?;
            println!(
                "  offered {:>8} published {:>9.0}/s sent {} arrived {} sink {:?} lossless {}",
                rate.map_or("max".into(), |r| r.to_string()),
                t.published.rate(),
                t.published.sent,
                t.arrived,
                t.sink_rows,
                t.lossless()
            );
            let pass = t.lossless();
            out.push(t);
            if pass {
                break;
            }
        }
        Ok(out)
    }

    /// The broker's ceiling: the publisher at full speed to one plain subscriber; on loss,
    /// paced below what arrived until a trial has none.
    fn ceiling_trials(&self, topic: &str) -> anyhow::Result<Vec<Trial>> {
        let trial_len = self.opts.trial;
        let broker_pid = self.broker_pid;
        self.rt.block_on(async {
            let mut publisher = Publisher::connect(self.broker_port).await?;
            let sub = Subscriber::connect(self.broker_port, topic, false).await?;
            let mut out = Vec::new();
            let mut rate: Option<u64> = None;
            for _ in 0..5 {
                let base = sub.messages();
                let meter = CpuMeter::start(None, broker_pid);
                let start = Instant::now();
                let published = publisher.run(topic, rate, trial_len).await?;
                let (arrived, last_at) = tokio::task::block_in_place(|| {
                    drain(start, base + published.sent, Duration::from_secs(1), || {
                        sub.messages()
                    })
                });
                let last_at = last_at.max(sub.last_at(start));
                let t = Trial::without_sink(rate, published, arrived - base, last_at, &meter);
                t.print("ceiling");
                let pass = t.lossless();
                let next = t.next_rate(1000);
                out.push(t);
                if pass {
                    break;
                }
                rate = Some(next);
            }
            sub.disconnect().await;
            anyhow::Ok(out)
        })
    }

    /// Phase 1: the broker's ceiling, then Quiver with a no-op sink and with an MQTT sink;
    /// the ceiling is measured again right before each Quiver case (the machine is shared,
    /// so adjacent trials compare best).
    fn ingest(&mut self) -> anyhow::Result<()> {
        let trial_len = self.opts.trial;
        let port = self.broker_port;
        let broker_pid = self.broker_pid;
        let mut table = Table::new(
            "MQTT ingest (QoS 0, 100-byte JSON, one publisher on loopback)",
            TRIAL_HEADER,
        );
        let q = self.start_quiverd("ingest")?;
        let mut results = Vec::new();
        for (case, sink) in [("memory", false), ("mqtt", true)] {
            println!("== ingest: broker ceiling");
            let ceiling_trials = self.ceiling_trials(&self.topic(&format!("plain-{case}")))?;
            for t in &ceiling_trials {
                table.row(t.row("broker → 1 plain subscriber"));
            }
            let Some(ceiling) = ceiling_trials
                .iter()
                .filter(|t| t.lossless())
                .map(|t| t.published.rate())
                .reduce(f64::max)
            else {
                table.note(
                    "The broker never delivered every message to the plain subscriber: no ceiling."
                        .into(),
                );
                continue;
            };
            self.ceiling = Some(self.ceiling.map_or(ceiling, |c| c.max(ceiling)));
            let steps: Vec<Option<u64>> = [None]
                .into_iter()
                .chain(
                    [0.9, 0.75, 0.5, 0.25]
                        .iter()
                        .map(|f| Some((ceiling * f) as u64)),
                )
                .collect();
            println!("== ingest: quiverd W1 with the {case} sink");
            let stream = format!("demo_{case}");
            let in_topic = self.topic(&format!("{case}/in"));
            let out_topic = self.topic(&format!("{case}/out"));
            q.create_stream(&format!(
                "CREATE STREAM {stream} (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) \
                 WITH (DATASOURCE=\"{in_topic}\", TYPE=\"mqtt\", FORMAT=\"json\")"
            ))?;
            let action = if sink {
                json!({"mqtt": {"server": format!("tcp://127.0.0.1:{port}"), "topic": out_topic, "sendSingle": true}})
            } else {
                json!({"memory": {"topic": format!("bench/{case}/nobody")}})
            };
            let rule = format!("w1_{case}");
            q.create_rule(&rule, &W1_SQL.replace("demo", &stream), action)?;
            let mut publisher = self.rt.block_on(Publisher::connect(port))?;
            let sub = if sink {
                Some(
                    self.rt
                        .block_on(Subscriber::connect(port, &out_topic, false))?,
                )
            } else {
                None
            };
            let st = || q.status(&rule).map(|s| records_in(&s)).unwrap_or(0);
            self.rt.block_on(
                publisher.probe(&in_topic, || tokio::task::block_in_place(|| st() > 0)),
            )?;
            std::thread::sleep(Duration::from_millis(500));
            let trials = self.trials(&steps, |rate| {
                let base = st();
                let base_rows = sub.as_ref().map_or(0, Subscriber::rows);
                let meter = CpuMeter::start(Some(q.pid()), broker_pid);
                let start = Instant::now();
                let published = self
                    .rt
                    .block_on(publisher.run(&in_topic, rate, trial_len))?;
                let (arrived, last_at) =
                    drain(start, base + published.sent, Duration::from_secs(2), st);
                let mut last_at = last_at;
                let sink_rows = sub.as_ref().map(|s| {
                    let (rows, at) = drain(
                        start,
                        base_rows + published.hot,
                        Duration::from_secs(2),
                        || s.rows(),
                    );
                    last_at = last_at.max(at);
                    (published.hot, rows - base_rows)
                });
                Ok(Trial {
                    offered: rate,
                    published,
                    arrived: arrived - base,
                    last_at,
                    cpu: meter.finish(last_at.max(published.secs)),
                    sink_rows,
                })
            })?;
            if let Some(s) = sub {
                self.rt.block_on(s.disconnect());
            }
            q.delete_rule(&rule)?;
            let label = if sink {
                "quiverd W1 → MQTT sink (sendSingle)"
            } else {
                "quiverd W1 → memory sink (no-op)"
            };
            for t in &trials {
                table.row(t.row(label));
            }
            results.push((label, ceiling, trials));
        }
        q.stop();
        table.note(
            "Broker ceiling = the highest rate at which one plain rumqttc subscriber received \
             every message, measured right before each Quiver case. Each Quiver case first runs \
             the same publisher at full speed (\"max\"), then, on loss, paced at 90%, 75%, 50%, \
             25% of the ceiling, stopping at the first trial without loss. CPU columns: share of \
             one core over the trial (quiverd, the private Mosquitto, this process = publisher \
             and subscribers); the machine has 2 cores. CPU µs per message: the three \
             processes' CPU time over the trial divided by the messages that arrived."
                .into(),
        );
        for (label, ceiling, trials) in &results {
            match trials.iter().find(|t| t.lossless()) {
                Some(t) => table.note(format!(
                    "{label}: **{}/s with no loss = {:.0}% of the broker ceiling measured just \
                     before it ({}/s)** (target ≥ 90%).",
                    k(t.published.rate()),
                    100.0 * t.published.rate() / ceiling,
                    k(*ceiling)
                )),
                None => table.note(format!("{label}: lost messages at every offered rate.")),
            }
        }
        self.tables.push(table);
        Ok(())
    }

    /// One latency run: publishes to `in_topic` at `rate` for `secs` while a subscriber on
    /// `out_topic` records receive time minus send time; `ready` says the path is live.
    fn latency_run(
        &self,
        q: Option<&Quiverd>,
        in_topic: &str,
        out_topic: &str,
    ) -> anyhow::Result<(Published, u64, Vec<i64>, CpuUse)> {
        let port = self.broker_port;
        let rate = self.opts.latency_rate;
        let secs = self.opts.latency_secs;
        self.rt.block_on(async {
            let mut publisher = Publisher::connect(port).await?;
            let sub = Subscriber::connect(port, out_topic, true).await?;
            publisher.probe(in_topic, || sub.messages() > 0).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let base = sub.messages();
            sub.received.latencies.lock().expect("latency lock").clear();
            let meter = CpuMeter::start(q.map(Quiverd::pid), self.broker_pid);
            let start = Instant::now();
            let published = publisher
                .run(in_topic, Some(rate), Duration::from_secs(secs))
                .await?;
            let (got, last_at) = tokio::task::block_in_place(|| {
                drain(start, base + published.sent, Duration::from_secs(2), || {
                    sub.messages()
                })
            });
            let cpu = meter.finish(last_at.max(published.secs));
            let mut lats =
                std::mem::take(&mut *sub.received.latencies.lock().expect("latency lock"));
            sub.disconnect().await;
            lats.sort_unstable();
            anyhow::Ok((published, got - base, lats, cpu))
        })
    }

    /// Phase 3: publish → rule → MQTT sink → subscriber latency, and the broker's own.
    fn latency(&mut self) -> anyhow::Result<()> {
        println!("== latency");
        let port = self.broker_port;
        let rate = self.opts.latency_rate;
        let secs = self.opts.latency_secs;
        let mut t = Table::new(
            "Latency: publish → (quiverd `SELECT * FROM demo` → MQTT sink, sendSingle) → subscriber",
            &[
                "path",
                "offered msgs/s",
                "published msgs/s",
                "published",
                "received",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "quiverd CPU",
                "broker CPU",
                "bench client CPU",
            ],
        );
        let row = |t: &mut Table, what: &str, r: (Published, u64, Vec<i64>, CpuUse)| {
            let (published, received, lats, cpu) = r;
            let pct = |p: f64| -> String {
                if lats.is_empty() {
                    return "-".into();
                }
                let i = ((lats.len() as f64 * p).ceil() as usize).clamp(1, lats.len()) - 1;
                format!("{:.2} ms", lats[i] as f64 / 1000.0)
            };
            t.row(
                vec![
                    what.into(),
                    k(rate as f64),
                    k(published.rate()),
                    thousands(published.sent),
                    thousands(received),
                    pct(0.50),
                    pct(0.90),
                    pct(0.99),
                    pct(0.999),
                    pct(1.0),
                ]
                .into_iter()
                .chain(cpu.cells())
                .collect(),
            );
        };
        // The broker alone: one hop, publisher → broker → subscriber.
        let plain = self.topic("lat/plain");
        let r = self.latency_run(None, &plain, &plain)?;
        row(&mut t, "broker only (1 hop)", r);

        let in_topic = self.topic("lat/in");
        let out_topic = self.topic("lat/out");
        let q = self.start_quiverd("latency")?;
        q.create_stream(&format!(
            "CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) \
             WITH (DATASOURCE=\"{in_topic}\", TYPE=\"mqtt\", FORMAT=\"json\")"
        ))?;
        q.create_rule(
            "lat",
            "SELECT * FROM demo",
            json!({"mqtt": {"server": format!("tcp://127.0.0.1:{port}"), "topic": out_topic, "sendSingle": true}}),
        )?;
        let r = self.latency_run(Some(&q), &in_topic, &out_topic)?;
        q.stop();
        row(&mut t, "through quiverd (2 hops)", r);
        t.note(format!(
            "Latency = the subscriber's receive time minus the send time the publisher wrote into \
             `ts` (same process, same clock), over every message of a {secs} s run at a paced \
             {rate} msgs/s. Through quiverd it includes both broker hops (publisher → broker → \
             quiverd, quiverd → broker → subscriber)."
        ));
        self.tables.push(t);
        Ok(())
    }

    /// Phase 2: many rules on one shared MQTT stream, a fresh quiverd for each rule count.
    fn many_rules(&mut self) -> anyhow::Result<()> {
        let port = self.broker_port;
        let mut mem = Table::new(
            "Many rules on one SHARED MQTT stream: memory (a fresh quiverd per rule count)",
            &[
                "rules",
                "create time (s)",
                "rules/s created",
                "RSS before rules",
                "RSS after",
                "per rule",
                "RSS after the first messages",
                "per rule with data",
                "eKuiper (published, not measured)",
            ],
        );
        let mut load = Table::new(
            "Many rules on one SHARED MQTT stream: sustained rate (every rule reads every message)",
            &[
                "rules",
                "offered msgs/s",
                "published msgs/s",
                "rule-rows/s (rules × msgs/s)",
                "published",
                "rules that got every message",
                "min / max records_in per rule",
                "catch-up after publish (s)",
                "quiverd CPU µs per rule-row",
                "quiverd CPU",
                "broker CPU",
                "bench client CPU",
                "RSS after the run",
                "kept up",
            ],
        );
        let mut publisher = self.rt.block_on(Publisher::connect(port))?;
        for &n in &self.opts.rules.clone() {
            let in_topic = self.topic(&format!("many{n}/in"));
            let q = self.start_quiverd(&format!("many-{n}"))?;
            q.create_shared_demo(&in_topic)?;
            std::thread::sleep(Duration::from_secs(1));
            let (rss0, _) = q.rss_kb();
            println!("== many rules: creating {n}");
            let took = create_rules(&q, n, |_| {
                (
                    MANY_SQL.to_string(),
                    json!({"memory": {"topic": "bench/many/nobody"}}),
                )
            })?;
            std::thread::sleep(Duration::from_secs(2));
            let (rss, _) = q.rss_kb();
            let per_rule = (rss.saturating_sub(rss0)) as f64 / n as f64;
            // Make sure the shared source is subscribed (the last rule sees the probes).
            let probe_rule = format!("r{}", n - 1);
            self.rt.block_on(publisher.probe(&in_topic, || {
                tokio::task::block_in_place(|| {
                    q.status(&probe_rule).map(|s| records_in(&s)).unwrap_or(0) > 0
                })
            }))?;
            std::thread::sleep(Duration::from_secs(2));
            let (rss_data, _) = q.rss_kb();
            mem.row(vec![
                thousands(n as u64),
                format!("{took:.1}"),
                format!("{:.0}", n as f64 / took),
                mb(rss0),
                mb(rss),
                format!("{per_rule:.1} KB"),
                mb(rss_data),
                format!("{:.1} KB", rss_data.saturating_sub(rss0) as f64 / n as f64),
                "400–500 KB per rule".into(),
            ]);

            let sample: Vec<String> = (0..n)
                .step_by((n / 20).max(1))
                .chain([n - 1])
                .map(|i| format!("r{i}"))
                .collect();
            // Up the ladder while the rules keep up; if the first rate is too much, down by
            // quarters (at most three times) to find one they keep up with.
            let mut ladder = self.opts.rule_rates.clone();
            let mut step = 0;
            let mut any_kept = false;
            let mut descents = 0;
            while step < ladder.len() {
                let rate = ladder[step];
                step += 1;
                println!("  {n} rules at {rate} msg/s");
                let before = self.all_records_in(&q)?;
                let meter = CpuMeter::start(Some(q.pid()), self.broker_pid);
                let start = Instant::now();
                let published =
                    self.rt
                        .block_on(publisher.run(&in_topic, Some(rate), self.opts.trial))?;
                // A sample of rules first (cheap to poll), then all of them.
                let base: u64 = sample
                    .iter()
                    .map(|r| before.get(r).copied().unwrap_or(0))
                    .sum();
                let want = base + published.sent * sample.len() as u64;
                let (_, mut caught_up) = drain(start, want, Duration::from_secs(3), || {
                    sample
                        .iter()
                        .map(|r| q.status(r).map(|s| records_in(&s)).unwrap_or(0))
                        .sum()
                });
                // CPU up to the sample catching up (`/rules/status/all` below costs CPU too).
                let cpu_window = caught_up.max(published.secs);
                let cpu = meter.finish(cpu_window);
                let mut deltas;
                let mut last_total = 0;
                let mut still = Instant::now();
                let mut first = true;
                loop {
                    // When all rules are complete at once, the sample's time stands; else the
                    // time this request was sent (building 10,000 statuses takes a while).
                    let asked = start.elapsed().as_secs_f64();
                    let after = self.all_records_in(&q)?;
                    deltas = (0..n)
                        .map(|i| {
                            let id = format!("r{i}");
                            after.get(&id).copied().unwrap_or(0)
                                - before.get(&id).copied().unwrap_or(0)
                        })
                        .collect::<Vec<u64>>();
                    let total: u64 = deltas.iter().sum();
                    if total == published.sent * n as u64 {
                        if !first {
                            caught_up = caught_up.max(asked);
                        }
                        break;
                    }
                    first = false;
                    if total != last_total {
                        last_total = total;
                        still = Instant::now();
                    } else if still.elapsed() > Duration::from_secs(3) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                let (rss, _) = q.rss_kb();
                let complete = deltas.iter().filter(|&&d| d == published.sent).count();
                let min = deltas.iter().copied().min().unwrap_or(0);
                let max = deltas.iter().copied().max().unwrap_or(0);
                let lag = (caught_up - published.secs).max(0.0);
                let kept_up = complete == n && lag <= 1.0;
                println!(
                    "    published {} ({:.0}/s); {complete}/{n} rules complete; min {min} max {max}; caught up {lag:.1} s after publishing",
                    published.sent,
                    published.rate(),
                );
                load.row(
                    vec![
                        thousands(n as u64),
                        k(rate as f64),
                        k(published.rate()),
                        k(published.rate() * n as f64),
                        thousands(published.sent),
                        format!("{} / {}", thousands(complete as u64), thousands(n as u64)),
                        format!("{} / {}", thousands(min), thousands(max)),
                        if complete == n {
                            format!("{lag:.1}")
                        } else {
                            "never".into()
                        },
                        match (cpu.0[0], deltas.iter().sum::<u64>()) {
                            (Some(c), rows) if rows > 0 => {
                                format!("{:.2}", c * cpu_window * 1e6 / rows as f64)
                            }
                            _ => "-".into(),
                        },
                    ]
                    .into_iter()
                    .chain(cpu.cells())
                    .chain([
                        mb(rss),
                        if kept_up {
                            "yes".into()
                        } else if complete == n {
                            "**no** (behind, no loss)".into()
                        } else {
                            "**no** (loss)".into()
                        },
                    ])
                    .collect(),
                );
                if kept_up {
                    any_kept = true;
                } else if !any_kept && descents < 3 && rate >= 40 {
                    descents += 1;
                    ladder = vec![rate / 4];
                    step = 0;
                } else {
                    break;
                }
            }
            q.stop();
        }
        mem.note(
            "RSS is quiverd's VmRSS from /proc; \"before\" is after the stream was created, \
             \"per rule\" = (after − before) / rules, measured 2 s after the last rule was \
             created and before any message; \"with data\" is the same 2 s after the probe \
             messages (a few messages with `temperature` 0 published until the last rule has \
             seen one): the first messages make every rule allocate its buffers. Rules are \
             created over REST by 4 client threads; each has a memory sink nobody subscribes to \
             (a no-op)."
                .into(),
        );
        load.note(
            "Each rate publishes for the trial length. A rate is kept up when every rule's \
             source `records_in` grew by exactly the number published (all rules checked through \
             `/rules/status/all`) and the last rule caught up within 1 s of the end of \
             publishing; the ladder goes up from the first rate until one is not kept up, or, \
             when the first is not kept up, down by quarters (at most three times). eKuiper's published \
             figures (not measured here): 8,000 rules at 800 msg/s *in total* on 2 cores / 4 GB \
             (25% CPU, 400–500 KB per rule, log sink, a source per rule), and 300 rules on one \
             shared MQTT stream at 500 msg/s = 150,000 rule-rows/s (2 cores / 2 GB, 50% CPU, \
             95 MB). Here every rule reads every message, so rule-rows/s is the comparable load."
                .into(),
        );
        self.tables.push(mem);
        self.tables.push(load);
        Ok(())
    }

    /// `records_in` of every rule, from `/rules/status/all`.
    fn all_records_in(&self, q: &Quiverd) -> anyhow::Result<HashMap<String, u64>> {
        let all = q.request("GET", "/rules/status/all", None)?;
        let map = all
            .as_object()
            .context("/rules/status/all is not an object")?;
        Ok(map
            .iter()
            .map(|(id, st)| (id.clone(), records_in(st)))
            .collect())
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let mosquitto = Command::new("/usr/sbin/mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default();
    format!(
        "{cores} CPUs ({cpu}), {:.1} GiB RAM; {mosquitto}",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

fn run() -> anyhow::Result<()> {
    let opts = parse_args()?;
    let dir = std::env::temp_dir().join(format!("quiver-mqtt-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (broker, broker_port) = match opts.broker_port {
        Some(p) => (None, p),
        None => {
            let p = free_port();
            (Some(Broker::start(&dir, p, &opts.broker_conf)?), p)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let load0 = loadavg();
    let mut bench = Bench {
        prefix: format!("quiver-bench/{}", unique()),
        opts,
        rt,
        broker_port,
        broker_pid: broker.as_ref().map(|b| b.child.id()),
        dir: dir.clone(),
        tables: Vec::new(),
        ceiling: None,
    };
    println!("machine: {}; load average {}", machine(), loadavg());
    println!(
        "broker: {} on 127.0.0.1:{broker_port}; quiverd: {}",
        if broker.is_some() {
            "private mosquitto"
        } else {
            "existing broker"
        },
        bench.opts.quiverd.display()
    );
    let phases = bench.opts.phases.clone();
    let mut failures = Vec::new();
    for phase in &phases {
        let result = match phase.as_str() {
            "footprint" => bench.footprint(),
            "ingest" => bench.ingest(),
            "latency" => bench.latency(),
            "rules" => bench.many_rules(),
            "qos" => bench.qos(),
            "qos-throughput" => bench.qos_throughput(),
            "cluster" => bench.cluster(),
            "window-rules" => bench.window_rules(),
            other => Err(anyhow::anyhow!("unknown phase \"{other}\"")),
        };
        if let Err(e) = result {
            eprintln!("phase {phase} failed: {e:#}");
            failures.push(format!("{phase}: {e:#}"));
        }
    }
    let took = started.elapsed().as_secs_f64();
    bench.rt.shutdown_timeout(Duration::from_secs(1));
    drop(broker);
    println!("\n## Results\n");
    let broker_setup = if bench.opts.broker_port.is_some() {
        "existing".to_string()
    } else if bench.opts.broker_conf.is_empty() {
        "private, default settings".to_string()
    } else {
        format!("private, plus `{}`", bench.opts.broker_conf.join("; "))
    };
    let clients = if CLIENT_NODELAY.load(Ordering::Relaxed) {
        "bench clients with TCP_NODELAY"
    } else {
        "bench clients with Nagle's algorithm (the default)"
    };
    println!(
        "Machine: {}. Broker: Mosquitto on loopback ({broker_setup}); {clients}. quiverd `--workers {}`. \
         Total run {took:.0} s. Load average (1, 5, 15 min) at the start: {load0}; at the end: {}.\n",
        machine(),
        bench.opts.workers,
        loadavg()
    );
    for t in &bench.tables {
        println!("{}\n", t.markdown());
    }
    if let Some(c) = bench.ceiling {
        println!("Broker ceiling in this run: {}/s", k(c));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !failures.is_empty() {
        bail!("failed phases: {}", failures.join("; "));
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quiver-mqtt-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
