//! Phase `qos`: what a rule's `"qos": 1` costs against `"qos": 0`, over the same private
//! Mosquitto as the other phases.
//!
//! 1. **Throughput.** W2 (the `file_to_memory_w2` case's tumbling-window aggregate, here in
//!    processing time over the MQTT stream) into a memory sink, at qos 0 and at qos 1 with
//!    `checkpointInterval` 1000 ms, each from the publisher at full speed and then paced at
//!    95% of what arrived until a trial loses nothing. The stream subscribes at QoS 1 (the MQTT
//!    source's default, as eKuiper's); what the broker hands on is the lower of that and the
//!    publisher's QoS, so qos 0 is measured with a QoS 0 publisher (nothing acknowledged) and
//!    with a QoS 1 publisher (acknowledged on arrival), and qos 1 with a QoS 1 publisher (only a
//!    QoS 1 message is kept by the broker until quiverd has logged it). One more qos 1 case
//!    runs against a second private broker with `max_inflight_messages 1000`, to tell
//!    Mosquitto's in-flight limit (20 unacknowledged messages per client) from the log's fsync;
//!    and the fsync itself is timed on the data directory's disk.
//! 2. **Checkpoint size.** `GROUP BY k, TUMBLINGWINDOW(ss, 60)` with 1,000 and 100,000
//!    distinct keys, fed in the first seconds of a minute (windows are aligned to the minute),
//!    then `checkpoint_last_bytes` and `checkpoint_last_duration_ms` over several checkpoints.
//! 3. **Restart.** A qos 1 window rule with an MQTT sink, fed at a steady rate; quiverd is
//!    killed with SIGKILL half a second before a window ends and started again a second later,
//!    so the window ended while it was down: the time to its result is the recovery time.

use super::*;

/// W2 over the MQTT stream `demo` (processing time: live MQTT has no event-time column here).
pub(super) const W2_SQL: &str = "SELECT device, avg(temperature), count(*), max(humidity) FROM demo \
                      GROUP BY device, TUMBLINGWINDOW(ss, 10)";

/// `checkpointInterval` of every qos 1 rule here, ms.
const CHECKPOINT_MS: u64 = 1000;

/// Rows per message when feeding many groups (a JSON array per message).
const ROWS_PER_MESSAGE: u64 = 500;

/// Group counts of the checkpoint-size part.
const GROUPS: [u64; 2] = [1_000, 100_000];

/// Publish rate during the restart part, msgs/s.
const RESTART_RATE: u64 = 1_000;

/// Tumbling window of the restart part, s.
const RESTART_WINDOW_SECS: u64 = 10;

/// SIGKILLs in the restart part.
const RESTARTS: usize = 3;

/// Where a throughput case's rule writes.
#[derive(Clone, Copy, PartialEq)]
enum Out {
    /// A memory sink nobody reads.
    Memory,
    /// The sql sink into a MariaDB table (qos 2 needs a transactional sink).
    MariaDb,
}

/// One throughput case.
struct Case {
    label: &'static str,
    /// The rule's `qos` option.
    rule_qos: u8,
    /// The publisher's QoS.
    publish: QoS,
    /// Whether this case runs against the second broker (`max_inflight_messages 1000`).
    wide_broker: bool,
    /// Where the rule writes.
    out: Out,
    /// Whether the rule joins W2's stream with an MQTT scan table of the devices (W2J).
    table: bool,
    /// The case (index) its rate is compared with: qos 0 into the same sink, from the same
    /// publisher.
    baseline: usize,
}

const CASES: [Case; 9] = [
    Case {
        label: "qos 0, published at QoS 0",
        rule_qos: 0,
        publish: QoS::AtMostOnce,
        wide_broker: false,
        out: Out::Memory,
        table: false,
        baseline: 0,
    },
    Case {
        label: "qos 0, published at QoS 1",
        rule_qos: 0,
        publish: QoS::AtLeastOnce,
        wide_broker: false,
        out: Out::Memory,
        table: false,
        baseline: 1,
    },
    Case {
        label: "qos 1, published at QoS 1",
        rule_qos: 1,
        publish: QoS::AtLeastOnce,
        wide_broker: false,
        out: Out::Memory,
        table: false,
        baseline: 1,
    },
    Case {
        label: "qos 1, published at QoS 1, broker max_inflight_messages 1000",
        rule_qos: 1,
        publish: QoS::AtLeastOnce,
        wide_broker: true,
        out: Out::Memory,
        table: false,
        baseline: 6,
    },
    Case {
        label: "qos 0 into MariaDB, published at QoS 1",
        rule_qos: 0,
        publish: QoS::AtLeastOnce,
        wide_broker: false,
        out: Out::MariaDb,
        table: false,
        baseline: 4,
    },
    Case {
        label: "qos 2 into MariaDB, published at QoS 1",
        rule_qos: 2,
        publish: QoS::AtLeastOnce,
        wide_broker: false,
        out: Out::MariaDb,
        table: false,
        baseline: 4,
    },
    // Last, so the earlier cases keep their numbers (`--qos-cases`): the wide-broker case's
    // baseline.
    Case {
        label: "qos 0, published at QoS 1, broker max_inflight_messages 1000",
        rule_qos: 0,
        publish: QoS::AtLeastOnce,
        wide_broker: true,
        out: Out::Memory,
        table: false,
        baseline: 6,
    },
    // W2J: at qos 0 every rule shares the table's arrangement; at qos 1 the rule keeps its own
    // copy, on worker 0, logged and checkpointed.
    Case {
        label: "W2J qos 0 (shared table), published at QoS 1",
        rule_qos: 0,
        publish: QoS::AtLeastOnce,
        wide_broker: false,
        out: Out::Memory,
        table: true,
        baseline: 7,
    },
    Case {
        label: "W2J qos 1 (the rule's own table), published at QoS 1",
        rule_qos: 1,
        publish: QoS::AtLeastOnce,
        wide_broker: false,
        out: Out::Memory,
        table: true,
        baseline: 7,
    },
];

/// W2 joined with a scan table of the devices (`zone` per device), grouped by zone too.
const W2J_SQL: &str = "SELECT demo.device, devs.zone, avg(temperature), count(*), max(humidity) \
                       FROM demo INNER JOIN devs ON demo.device = devs.device \
                       GROUP BY demo.device, devs.zone, TUMBLINGWINDOW(ss, 10)";

/// Devices the W2J table holds (every device the publisher sends).
const TABLE_DEVICES: usize = 1000;

/// W2 with its columns named, for a table: `t`, `c`, `h`.
const W2_TABLE_SQL: &str = "SELECT device, avg(temperature) AS t, count(*) AS c, max(humidity) AS h \
                            FROM demo GROUP BY device, TUMBLINGWINDOW(ss, 10)";

/// Runs `sql` in MariaDB's `test` database (127.0.0.1:3306, root) with its own client.
fn mariadb(sql: &str) -> anyhow::Result<()> {
    let out = Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", "test", "-e", sql])
        .output()
        .context("running the mariadb client")?;
    if !out.status.success() {
        bail!("mariadb: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The rule body: `sql` into `action`, with the qos options when `qos` is 1 or 2.
fn rule(id: &str, sql: &str, action: Value, qos: u8) -> Value {
    let mut r = json!({"id": id, "sql": sql, "actions": [action]});
    if qos > 0 {
        r["options"] = json!({"qos": qos, "checkpointInterval": CHECKPOINT_MS});
    }
    r
}

/// An integer status field (0 when missing).
fn field(status: &Value, name: &str) -> u64 {
    status.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// Rows into the rule's window operators (the source counts messages, and a message here
/// holds an array of rows). Only the rule's own counters (`op_...`): in a cluster the status
/// also holds each process's (`process_<p>_op_...`), which add up to them.
pub(super) fn window_rows(status: &Value) -> u64 {
    status.as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| {
                k.starts_with("op_") && k.contains("_window_") && k.ends_with("_records_in_total")
            })
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    })
}

/// Milliseconds since the epoch, now.
fn now_ms() -> u64 {
    (now_us() / 1000) as u64
}

/// `sync_data` after a small append on the disk of `dir`, `n` times: (p50, p99) in ms.
fn fsync_ms(dir: &Path, n: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![b'x'; 2048];
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        f.write_all(&block)?;
        let t = Instant::now();
        f.sync_data()?;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    Ok((at(0.5), at(0.99)))
}

/// Prints how many warnings quiverd logged and the first few (a dropped ack would show here).
pub(super) fn print_warnings(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    println!("  {}: {} warnings", log.display(), warnings.len());
    for w in warnings.iter().take(3) {
        println!("    {w}");
    }
}

/// Message `i` of those `sub` kept (in arrival order), when it has arrived.
fn kept(sub: &Subscriber, i: usize) -> Option<(Instant, Vec<u8>)> {
    sub.received
        .payloads
        .lock()
        .expect("payloads lock")
        .get(i)
        .cloned()
}

/// The sum of `c` over the rows of a sink message (a JSON object or an array of them).
fn rows_counted(payload: &[u8]) -> (u64, u64) {
    let rows = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Array(rows)) => rows,
        Ok(row) => vec![row],
        Err(_) => Vec::new(),
    };
    let c = rows.iter().map(|r| field(r, "c")).sum();
    (rows.len() as u64, c)
}

impl Bench {
    /// Phase 5: the cost of `"qos": 1`.
    pub(super) fn qos(&mut self) -> anyhow::Result<()> {
        self.qos_throughput()?;
        self.checkpoint_size()?;
        self.restart()
    }

    /// Trials of one case: the publisher at full speed, then paced at 95% of the rate that
    /// arrived (and at most 90% of the last offer) until a trial loses nothing.
    fn qos_trials(
        &self,
        q: &Quiverd,
        broker: (u16, Option<u32>),
        case: &Case,
        name: &str,
    ) -> anyhow::Result<Vec<Trial>> {
        let (port, broker_pid) = broker;
        let stream = format!("demo_{name}");
        let in_topic = self.topic(&format!("qos/{name}/in"));
        q.create_stream(&format!(
            "CREATE STREAM {stream} (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) \
             WITH (DATASOURCE=\"{in_topic}\", TYPE=\"mqtt\", FORMAT=\"json\")"
        ))?;
        let id = format!("w2_{name}");
        let devs = format!("devs_{name}");
        if case.table {
            // One retained message per device: the shared table and the rule's own copy both
            // get every row when they subscribe.
            let table_topic = self.topic(&format!("qos/{name}/devs"));
            let sql = format!(
                "CREATE TABLE {devs} (device STRING, zone STRING) \
                 WITH (DATASOURCE=\"{table_topic}/#\", TYPE=\"mqtt\", KEY=\"device\")"
            );
            q.request("POST", "/tables", Some(&json!({ "sql": sql })))?;
            self.rt.block_on(async {
                let (client, mut events) = rumqttc::AsyncClient::new(
                    rumqttc::MqttOptions::new(format!("bench-devs-{name}"), "127.0.0.1", port),
                    TABLE_DEVICES + 16,
                );
                for d in 0..TABLE_DEVICES {
                    let row = format!("{{\"device\":\"dev-{d}\",\"zone\":\"z{}\"}}", d % 10);
                    client
                        .publish(
                            format!("{table_topic}/dev-{d}"),
                            QoS::AtLeastOnce,
                            true,
                            row,
                        )
                        .await?;
                }
                // Until the broker acknowledged every row.
                let mut acked = 0;
                while acked < TABLE_DEVICES {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                        events.poll().await?
                    {
                        acked += 1;
                    }
                }
                client.disconnect().await?;
                anyhow::Ok(())
            })?;
        }
        let (sql, action) = match case.out {
            Out::Memory if case.table => (
                W2J_SQL.replace("demo", &stream).replace("devs", &devs),
                json!({"memory": {"topic": format!("bench/{name}/nobody")}}),
            ),
            Out::Memory => (
                W2_SQL.replace("demo", &stream),
                json!({"memory": {"topic": format!("bench/{name}/nobody")}}),
            ),
            Out::MariaDb => {
                let table = format!("bench_qos_{name}_{}", std::process::id());
                mariadb(&format!(
                    "DROP TABLE IF EXISTS {table}; \
                     CREATE TABLE {table} (device VARCHAR(32), t DOUBLE, c BIGINT, h BIGINT)"
                ))?;
                (
                    W2_TABLE_SQL.replace("demo", &stream),
                    json!({"sql": {"url": "mysql://root@127.0.0.1:3306/test", "table": table}}),
                )
            }
        };
        q.request(
            "POST",
            "/rules",
            Some(&rule(&id, &sql, action, case.rule_qos)),
        )?;
        let mut publisher = self
            .rt
            .block_on(Publisher::connect_qos(port, case.publish))?;
        // The stream's messages only: a W2J rule at qos 1 counts its table's on a node of its own.
        let stream_in = format!("source_{stream}_");
        let st = || {
            q.status(&id)
                .map(|s| metric(&s, &stream_in, "_records_in_total"))
                .unwrap_or(0)
        };
        self.rt
            .block_on(publisher.probe(&in_topic, || tokio::task::block_in_place(|| st() > 0)))?;
        std::thread::sleep(Duration::from_millis(500));
        let mut out = Vec::new();
        let mut rate: Option<u64> = None;
        for _ in 0..7 {
            let base = st();
            let meter = CpuMeter::start(Some(q.pid()), broker_pid);
            let start = Instant::now();
            let published = self
                .rt
                .block_on(publisher.run(&in_topic, rate, self.opts.trial))?;
            let (arrived, last_at) =
                drain(start, base + published.sent, Duration::from_secs(2), st);
            let t = Trial::without_sink(rate, published, arrived - base, last_at, &meter);
            t.print(case.label);
            let pass = t.lossless();
            if !pass {
                // Late or lost: what still arrives after the drain's quiet period.
                std::thread::sleep(Duration::from_secs(3));
                let late = st() - arrived;
                println!("    {late} more arrived in the next 3 s");
            }
            let got = t.arrived as f64 / t.last_at.max(1e-9);
            let next = t.next_rate(if got >= 10_000.0 { 1000 } else { 100 });
            out.push(t);
            if pass {
                break;
            }
            rate = Some(next);
        }
        let status = q.status(&id)?;
        if case.rule_qos > 0 {
            println!(
                "  checkpoints: epoch {} last {} bytes in {} ms",
                field(&status, "checkpoint_last_epoch"),
                field(&status, "checkpoint_last_bytes"),
                field(&status, "checkpoint_last_duration_ms")
            );
        }
        self.rt.block_on(publisher.client.disconnect())?;
        q.delete_rule(&id)?;
        if case.out == Out::MariaDb {
            mariadb(&format!(
                "DROP TABLE IF EXISTS bench_qos_{name}_{}",
                std::process::id()
            ))?;
        }
        Ok(out)
    }

    /// Part 1: W2's highest lossless rate at qos 0, 1 and 2; with `--quiverd-b`, each case on
    /// both binaries, one after the other.
    pub(super) fn qos_throughput(&mut self) -> anyhow::Result<()> {
        println!("== qos: W2 throughput, qos 0 against qos 1 and 2");
        let (fsync_p50, fsync_p99) = fsync_ms(&self.dir, 200)?;
        println!(
            "  fsync on the data directory's disk: p50 {fsync_p50:.2} ms, p99 {fsync_p99:.2} ms"
        );
        let wide_dir = self.dir.join("broker-inflight-1000");
        std::fs::create_dir_all(&wide_dir)?;
        let wide_port = free_port();
        let wide = Broker::start(
            &wide_dir,
            wide_port,
            &["max_inflight_messages 1000".to_string()],
        )?;
        let mut binaries = vec![("", self.opts.quiverd.clone())];
        if let Some(b) = &self.opts.quiverd_b {
            binaries = vec![("A: ", self.opts.quiverd.clone()), ("B: ", b.clone())];
        }
        // (label prefix, server on the shared broker, server on the wide one, data dir names)
        let mut servers = Vec::new();
        for (i, (prefix, bin)) in binaries.iter().enumerate() {
            let dirs = (
                format!("qos-throughput-{i}"),
                format!("qos-throughput-wide-{i}"),
            );
            let q = Quiverd::start(
                bin,
                &self.dir.join(&dirs.0),
                self.broker_port,
                self.opts.workers,
            )?;
            let q_wide =
                Quiverd::start(bin, &self.dir.join(&dirs.1), wide_port, self.opts.workers)?;
            servers.push((*prefix, q, q_wide, dirs));
        }
        let mut table = Table::new(
            "Checkpoints: W2 throughput trials (tumbling 10 s window)",
            TRIAL_HEADER,
        );
        // best[server][case]
        let mut best: Vec<Vec<Option<Trial>>> = servers.iter().map(|_| Vec::new()).collect();
        for (i, case) in CASES.iter().enumerate() {
            if !self.opts.qos_cases.is_empty() && !self.opts.qos_cases.contains(&i) {
                for b in &mut best {
                    b.push(None);
                }
                continue;
            }
            for (s, (prefix, q, q_wide, _)) in servers.iter().enumerate() {
                let (server, broker) = if case.wide_broker {
                    (q_wide, (wide_port, Some(wide.child.id())))
                } else {
                    (q, (self.broker_port, self.broker_pid))
                };
                let label = format!("{prefix}{}", case.label);
                let trials = self.qos_trials(server, broker, case, &format!("c{i}s{s}"))?;
                for t in &trials {
                    table.row(t.row(&label));
                }
                best[s].push(trials.into_iter().find(Trial::lossless));
            }
        }
        for (_, q, q_wide, (d, d_wide)) in servers {
            print_warnings(&self.dir.join(&d).join("quiverd.log"));
            print_warnings(&self.dir.join(&d_wide).join("quiverd.log"));
            q.stop();
            q_wide.stop();
        }
        drop(wide);
        table.note(format!(
            "W2 = `{W2_SQL}` (processing time) into a memory sink nobody reads, or (named \
             `AS t, c, h`) into a MariaDB table by the sql sink; qos 1 and 2 rules have \
             `checkpointInterval` {CHECKPOINT_MS} ms. The stream subscribes at QoS 1 (the MQTT \
             source's default); the broker delivers at the lower of that and the publisher's \
             QoS. Each case first publishes at full speed (\"max\"), then, on loss, paced at 95% \
             of the rate that arrived, until a trial loses nothing (every message counted in the \
             rule's source `records_in`). The wide-broker case runs against a second private \
             Mosquitto with `max_inflight_messages 1000` (the default is 20 unacknowledged QoS \
             1 messages per client). W2J = `{W2J_SQL}`, the table fed by {TABLE_DEVICES} \
             retained MQTT messages (one per device, every device the publisher sends): at \
             qos 0 the rule reads the table's shared arrangement, at qos 1 its own copy."
        ));
        self.tables.push(table);

        let mut side = Table::new(
            "Checkpoints: W2 highest lossless rate, qos 0 against qos 1 and 2",
            &[
                "case",
                "highest lossless rate (msgs/s)",
                "quiverd CPU",
                "quiverd CPU µs per message",
                "rate / qos 0 (QoS 0 publisher)",
                "rate / qos 0 (same sink, QoS 1 publisher)",
            ],
        );
        let rate = |t: &Option<Trial>| t.as_ref().map(|t| t.published.rate());
        for (s, (prefix, _)) in binaries.iter().enumerate() {
            for (i, (case, t)) in CASES.iter().zip(&best[s]).enumerate() {
                if !self.opts.qos_cases.is_empty() && !self.opts.qos_cases.contains(&i) {
                    // Not run (`--qos-cases`).
                    continue;
                }
                let label = format!("{prefix}{}", case.label);
                let Some(t) = t else {
                    side.row(vec![
                        label,
                        "lost messages at every rate".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                    continue;
                };
                let r = t.published.rate();
                let ratio = |b: Option<f64>| b.map_or("-".into(), |b| format!("{:.2}", r / b));
                let window = t.last_at.max(t.published.secs);
                side.row(vec![
                    label,
                    k(r),
                    t.cpu.cells()[0].clone(),
                    t.cpu.0[0].map_or("-".into(), |c| {
                        format!("{:.1}", c * window * 1e6 / t.arrived.max(1) as f64)
                    }),
                    ratio(rate(&best[s][0])),
                    ratio(rate(&best[s][case.baseline])),
                ]);
            }
        }
        side.note(format!(
            "fsync (`sync_data` after a 2 KB append) on the data directory's disk: p50 \
             {fsync_p50:.2} ms, p99 {fsync_p99:.2} ms over 200 calls. Mosquitto sends at most \
             `max_inflight_messages` (20) QoS 1 messages to a client before their \
             acknowledgements, and a qos 1 or 2 MQTT source acknowledges a message only once \
             the input log holding it is synced."
        ));
        self.tables.push(side);
        Ok(())
    }

    /// Part 2: checkpoint bytes and duration with 1,000 and 100,000 open groups.
    fn checkpoint_size(&mut self) -> anyhow::Result<()> {
        println!("== qos: checkpoint size with many open groups");
        let port = self.broker_port;
        let q = self.start_quiverd("qos-groups")?;
        let mut topics = Vec::new();
        for n in GROUPS {
            let topic = self.topic(&format!("qos/groups{n}/in"));
            q.create_stream(&format!(
                "CREATE STREAM g{n} (k BIGINT, v FLOAT) \
                 WITH (DATASOURCE=\"{topic}\", TYPE=\"mqtt\", FORMAT=\"json\")"
            ))?;
            q.request(
                "POST",
                "/rules",
                Some(&rule(
                    &format!("g{n}"),
                    &format!(
                        "SELECT k, count(*) AS c, sum(v) AS s FROM g{n} \
                         GROUP BY k, TUMBLINGWINDOW(ss, 60)"
                    ),
                    json!({"memory": {"topic": format!("bench/groups{n}/nobody")}}),
                    1,
                )),
            )?;
            topics.push(topic);
        }
        let publisher = self
            .rt
            .block_on(Publisher::connect_qos(port, QoS::AtLeastOnce))?;
        let records = |n: u64| {
            q.status(&format!("g{n}"))
                .map(|s| window_rows(&s))
                .unwrap_or(0)
        };
        // Subscribed: a row of key 0 until each rule has one.
        for (n, topic) in GROUPS.iter().zip(&topics) {
            self.rt.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(20);
                while tokio::task::block_in_place(|| records(*n)) == 0 {
                    if Instant::now() > deadline {
                        bail!("rule g{n} never read {topic}");
                    }
                    publisher
                        .client
                        .publish(
                            topic,
                            QoS::AtLeastOnce,
                            false,
                            b"{\"k\":0,\"v\":1}".to_vec(),
                        )
                        .await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                anyhow::Ok(())
            })?;
        }
        // Every group must open in the same window: start at a minute's first second.
        let into = now_ms() % 60_000;
        if into > 1_000 {
            let wait = 60_000 - into + 200;
            println!(
                "  waiting {:.1} s for the next minute",
                wait as f64 / 1000.0
            );
            std::thread::sleep(Duration::from_millis(wait));
        }
        let fed_from = Instant::now();
        let mut base = Vec::new();
        for (n, topic) in GROUPS.iter().zip(&topics) {
            base.push(records(*n));
            self.rt.block_on(async {
                let mut k = 0;
                while k < *n {
                    let rows: Vec<String> = (k..(k + ROWS_PER_MESSAGE).min(*n))
                        .map(|i| format!("{{\"k\":{i},\"v\":1.5}}"))
                        .collect();
                    k += rows.len() as u64;
                    let payload = format!("[{}]", rows.join(",")).into_bytes();
                    publisher
                        .client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await?;
                    // The broker queues at most 1,000 QoS 1 messages per subscriber.
                    if (k / ROWS_PER_MESSAGE).is_multiple_of(100) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                anyhow::Ok(())
            })?;
        }
        for (i, n) in GROUPS.iter().enumerate() {
            let (got, _) = drain(fed_from, base[i] + n, Duration::from_secs(5), || {
                records(*n)
            });
            if got < base[i] + n {
                bail!("rule g{n} read {} of {n} rows", got - base[i]);
            }
        }
        let fed = fed_from.elapsed().as_secs_f64();
        println!("  all groups fed in {fed:.1} s");
        // Checkpoints over the next seconds; a trickle on key 0 keeps the input moving.
        let mut seen: Vec<Vec<(u64, u64, u64)>> = vec![Vec::new(); GROUPS.len()];
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && now_ms() % 60_000 < 57_000 {
            for (i, n) in GROUPS.iter().enumerate() {
                let st = q.status(&format!("g{n}"))?;
                let c = (
                    field(&st, "checkpoint_last_epoch"),
                    field(&st, "checkpoint_last_bytes"),
                    field(&st, "checkpoint_last_duration_ms"),
                );
                if seen[i].last().is_none_or(|l| l.0 != c.0) && c.0 > 0 {
                    seen[i].push(c);
                }
                self.rt.block_on(publisher.client.publish(
                    &topics[i],
                    QoS::AtLeastOnce,
                    false,
                    b"{\"k\":0,\"v\":1}".to_vec(),
                ))?;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let (rss, _) = q.rss_kb();
        q.stop();
        self.rt.block_on(publisher.client.disconnect())?;
        let mut t = Table::new(
            "Checkpoints (qos 1): checkpoint size and duration with many open groups",
            &[
                "open groups",
                "checkpoints read",
                "checkpoint bytes (min – max)",
                "bytes per group",
                "duration ms (each)",
                "quiverd RSS after",
            ],
        );
        for (n, s) in GROUPS.iter().zip(&seen) {
            // The checkpoints once every group was in (the first may predate the last rows).
            let s: Vec<_> = s.iter().skip(1).collect();
            let min = s.iter().map(|c| c.1).min().unwrap_or(0);
            let max = s.iter().map(|c| c.1).max().unwrap_or(0);
            t.row(vec![
                thousands(*n),
                s.len().to_string(),
                format!("{} – {}", thousands(min), thousands(max)),
                format!("{:.0}", max as f64 / *n as f64),
                s.iter()
                    .map(|c| c.2.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                mb(rss),
            ]);
        }
        t.note(format!(
            "`SELECT k, count(*) AS c, sum(v) AS s FROM g GROUP BY k, TUMBLINGWINDOW(ss, 60)`, \
             qos 1, `checkpointInterval` {CHECKPOINT_MS} ms, memory sink; both rules in one \
             quiverd. The keys are published as JSON arrays of {ROWS_PER_MESSAGE} rows (QoS 1) \
             in the first seconds of a minute (tumbling windows end on multiples of their size), \
             {fed:.1} s for both; then a row on key 0 every 250 ms while the rules' status is \
             read; the table shows the checkpoints after the first one seen (the first may \
             predate the last rows). Bytes and duration are the status fields \
             `checkpoint_last_bytes` and `checkpoint_last_duration_ms`; RSS is the whole \
             process with both rules."
        ));
        self.tables.push(t);
        Ok(())
    }

    /// Part 3: SIGKILL half a second before a window ends, restart a second later, time to the
    /// first result (the window that ended while quiverd was down).
    fn restart(&mut self) -> anyhow::Result<()> {
        println!("== qos: restart after SIGKILL to the first result");
        let port = self.broker_port;
        let dir = self.dir.join("qos-restart");
        let in_topic = self.topic("qos/restart/in");
        let out_topic = self.topic("qos/restart/out");
        let window_ms = RESTART_WINDOW_SECS * 1000;
        let mut q = self.start_quiverd("qos-restart")?;
        q.create_stream(&format!(
            "CREATE STREAM rs (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) \
             WITH (DATASOURCE=\"{in_topic}\", TYPE=\"mqtt\", FORMAT=\"json\")"
        ))?;
        let sql = format!(
            "SELECT device, count(*) AS c, avg(temperature) AS t FROM rs \
             GROUP BY device, TUMBLINGWINDOW(ss, {RESTART_WINDOW_SECS})"
        );
        q.request(
            "POST",
            "/rules",
            Some(&rule(
                "rs",
                &sql,
                json!({"mqtt": {"server": format!("tcp://127.0.0.1:{port}"), "topic": out_topic, "qos": 1}}),
                1,
            )),
        )?;
        let capture = self
            .rt
            .block_on(Subscriber::connect_with(port, &out_topic, false, true))?;
        // The publisher runs through every kill: the broker keeps what arrives meanwhile for
        // the rule's persistent session.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let feeder = {
            let stop = stop.clone();
            let topic = in_topic.clone();
            self.rt.spawn(async move {
                let mut p = Publisher::connect_qos(port, QoS::AtLeastOnce).await?;
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    sent += p
                        .run(&topic, Some(RESTART_RATE), Duration::from_secs(1))
                        .await?
                        .sent;
                }
                anyhow::Ok(sent)
            })
        };
        let mut t = Table::new(
            "Checkpoints (qos 1): restart after SIGKILL to the first result",
            &[
                "kill",
                "last checkpoint before the kill (bytes)",
                "spawn → /ping answered",
                "spawn → rule running, records_in > 0",
                "spawn → first result on the sink topic",
                "kill → first result",
                "first result: rows (groups), sum of count(*)",
            ],
        );
        let wait_for =
            |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| -> anyhow::Result<()> {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !done() {
                    if Instant::now() > deadline {
                        bail!("{what} did not happen within 60 s");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            };
        // Steady state: a first window result, so the rule has closed a window before.
        let results = || capture.messages() as usize;
        wait_for("a first window result", Box::new(|| results() > 0))?;
        for kill in 1..=RESTARTS {
            // Half a second before a window ends, and a checkpoint behind us.
            let into = now_ms() % window_ms;
            let to = (window_ms - 500 + window_ms - into) % window_ms;
            std::thread::sleep(Duration::from_millis(to.max(1)));
            let ckpt = field(&q.status("rs")?, "checkpoint_last_bytes");
            let seen = results();
            let killed = Instant::now();
            q.child.kill()?;
            let _ = q.child.wait();
            std::thread::sleep(Duration::from_secs(1));
            let spawned = Instant::now();
            q = Quiverd::start(&self.opts.quiverd, &dir, port, self.opts.workers)?;
            let ping = q.started.elapsed();
            wait_for(
                "the rule running with records_in > 0",
                Box::new(|| {
                    q.status("rs").is_ok_and(|s| {
                        s.get("status").and_then(Value::as_str) == Some("running")
                            && records_in(&s) > 0
                    })
                }),
            )?;
            let running = spawned.elapsed();
            wait_for("a result after the restart", Box::new(|| results() > seen))?;
            let (at, payload) = kept(&capture, seen).context("the first result")?;
            let (rows, count) = rows_counted(&payload);
            let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
            println!(
                "  kill {kill}: ping {} running {} first result {} ({rows} rows, {count} counted)",
                ms(ping),
                ms(running),
                ms(at - spawned)
            );
            t.row(vec![
                kill.to_string(),
                thousands(ckpt),
                ms(ping),
                ms(running),
                ms(at.saturating_duration_since(spawned)),
                ms(at.saturating_duration_since(killed)),
                format!("{} groups, {}", thousands(rows), thousands(count)),
            ]);
            // Past the next window too before the next kill.
            std::thread::sleep(Duration::from_secs(2));
        }
        stop.store(true, Ordering::Relaxed);
        let sent = self.rt.block_on(feeder)??;
        q.stop();
        self.rt.block_on(capture.disconnect());
        t.note(format!(
            "`{sql}`, qos 1, `checkpointInterval` {CHECKPOINT_MS} ms, MQTT sink (QoS 1, one \
             message per window); the publisher sends {RESTART_RATE} msgs/s at QoS 1 (1,000 \
             devices) throughout, {} in all. quiverd is killed with SIGKILL 0.5 s before a \
             window ends and started again 1 s later, so that window ended while it was down; \
             \"first result\" is the first message on the sink topic after the kill: that \
             window, restored from the checkpoint plus the logged events after it. It should \
             count about {} rows: the messages of its last 0.5 s reach quiverd only after the \
             restart and so, in processing time, fall in the next window. \"rule running\" = \
             the status says running and the source's `records_in` is above 0.",
            thousands(sent),
            thousands(RESTART_RATE * RESTART_WINDOW_SECS - RESTART_RATE / 2)
        ));
        self.tables.push(t);
        Ok(())
    }
}
