//! Phase `cluster` (not in the default list): W1 and W2 over MQTT on 1, 2 and 3 quiverd
//! processes of one worker each (a cluster on loopback, `--cluster-hosts`), and on one process
//! with 2 and 3 workers (the same total workers without a network between them), in one
//! invocation against the run's private Mosquitto.
//!
//! Every layout runs at once, each with its own processes, streams and topics, so that their
//! trials alternate: round after round, every case (workload × layout) not yet settled runs one
//! trial, the publisher first at full speed, then paced at 95% of what arrived, until a trial
//! loses nothing (the `qos` phase's search). The machine's noise so falls on every case alike;
//! the layouts not in a trial sit idle (their idle cost is measured and printed).
//!
//! Per trial: quiverd's CPU summed over the layout's processes (`/proc/<pid>/stat` utime +
//! stime), the broker's and this process's, and the bytes the layout's processes sent each
//! other: the sum of `bytes_sent` over the established loopback TCP sockets with one of the
//! layout's cluster ports (its hosts file) at either end, from `ss -tinH` before and after
//! (each connection's two sockets: both directions). The MQTT and REST connections have other
//! ports and are not counted.

use super::qos::{W2_SQL, print_warnings, window_rows};
use super::*;

/// Processes × worker threads per process.
#[derive(Clone, Copy)]
struct Layout {
    processes: usize,
    workers: usize,
}

/// The layouts, in the order their trials run in each round.
const LAYOUTS: [Layout; 5] = [
    Layout {
        processes: 1,
        workers: 1,
    },
    Layout {
        processes: 2,
        workers: 1,
    },
    Layout {
        processes: 3,
        workers: 1,
    },
    Layout {
        processes: 1,
        workers: 2,
    },
    Layout {
        processes: 1,
        workers: 3,
    },
];

impl Layout {
    fn label(&self) -> String {
        format!("{} proc × {} worker", self.processes, self.workers)
    }

    /// A name for its directory, topics and rule ids.
    fn name(&self) -> String {
        format!("p{}w{}", self.processes, self.workers)
    }
}

/// A rule measured on every layout.
struct Workload {
    name: &'static str,
    /// Over the stream `demo`.
    sql: &'static str,
    /// Whether a message counts as arrived at the window (W2: past the key exchange) rather
    /// than at the source.
    windowed: bool,
}

static WORKLOADS: [Workload; 2] = [
    Workload {
        name: "W1",
        sql: W1_SQL,
        windowed: false,
    },
    Workload {
        name: "W2",
        sql: W2_SQL,
        windowed: true,
    },
];

/// Trials of one case at most.
const MAX_TRIALS: usize = 6;

/// Seconds the idle cost of every layout is measured over.
const IDLE_SECS: u64 = 3;

/// A follower process, killed on drop.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One layout's processes: the leader (it serves REST) and its followers.
struct Deployment {
    layout: Layout,
    leader: Quiverd,
    followers: Vec<Follower>,
    /// The ports of the hosts file; none for one process.
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Deployment {
    fn start(bin: &Path, dir: &Path, broker_port: u16, layout: Layout) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = write_config(dir, broker_port)?;
        let mut ports: Vec<u16> = Vec::new();
        if layout.processes > 1 {
            // `free_port` may hand out a port twice; the hosts file refuses that.
            while ports.len() < layout.processes {
                let p = free_port();
                if p != 0 && !ports.contains(&p) {
                    ports.push(p);
                }
            }
        }
        let hosts = dir.join("hosts");
        let text: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
        std::fs::write(&hosts, text)?;
        let flags = |p: usize| -> Vec<String> {
            if ports.is_empty() {
                return Vec::new();
            }
            vec![
                "--cluster-hosts".into(),
                hosts.display().to_string(),
                "--process".into(),
                p.to_string(),
            ]
        };
        let mut followers = Vec::new();
        for p in 1..layout.processes {
            let pdir = dir.join(format!("p{p}"));
            let child = spawn_quiverd(bin, &pdir, &config, layout.workers, |c| {
                c.args(flags(p));
            })?;
            followers.push(Follower(child));
        }
        // The leader answers /ping once every follower has connected.
        let leader = Quiverd::start_with(bin, &dir.join("p0"), &config, layout.workers, &flags(0))?;
        Ok(Deployment {
            layout,
            leader,
            followers,
            ports,
            dir: dir.to_path_buf(),
        })
    }

    /// The pids of its processes, the leader first.
    fn pids(&self) -> Vec<u32> {
        std::iter::once(self.leader.pid())
            .chain(self.followers.iter().map(|f| f.0.id()))
            .collect()
    }

    /// Its processes' logs.
    fn logs(&self) -> Vec<PathBuf> {
        (0..self.layout.processes)
            .map(|p| self.dir.join(format!("p{p}")).join("quiverd.log"))
            .collect()
    }
}

/// Bytes sent on the established loopback TCP connections with one of `ports` at either end,
/// from `ss -tinH`: the sum of `bytes_sent` of both ends' sockets, so both directions.
fn exchanged_bytes(ports: &[u16]) -> anyhow::Result<u64> {
    if ports.is_empty() {
        return Ok(0);
    }
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .output()
        .context("running `ss -tinH` (iproute2)")?;
    if !out.status.success() {
        bail!("ss: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .filter(|(host, _)| *host == "127.0.0.1")
            .and_then(|(_, p)| p.parse::<u16>().ok())
    };
    let mut total = 0;
    let mut ours = false;
    // A socket's line (Recv-Q, Send-Q, local, peer), then its details on an indented line.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with(char::is_whitespace) {
            let f: Vec<&str> = line.split_whitespace().collect();
            ours = f.len() >= 4
                && matches!((port(f[2]), port(f[3])), (Some(l), Some(p))
                    if ports.contains(&l) || ports.contains(&p));
        } else if std::mem::take(&mut ours) {
            total += line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bytes_sent:"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// CPU seconds of a layout's processes, the broker and this process, and the bytes its
/// processes have sent each other, at one moment.
struct Sample {
    processes: Vec<f64>,
    broker: Option<f64>,
    bench: f64,
    bytes: u64,
}

impl Sample {
    fn take(d: &Deployment, broker: Option<u32>) -> anyhow::Result<Sample> {
        Ok(Sample {
            processes: d.pids().iter().map(|p| cpu_secs(&p.to_string())).collect(),
            broker: broker.map(|p| cpu_secs(&p.to_string())),
            bench: cpu_secs("self"),
            bytes: exchanged_bytes(&d.ports)?,
        })
    }

    /// Each process's CPU share (1.0 = one core) from `earlier` to this sample over `secs`.
    fn per_process(&self, earlier: &Sample, secs: f64) -> Vec<f64> {
        self.processes
            .iter()
            .zip(&earlier.processes)
            .map(|(a, b)| (a - b) / secs.max(1e-9))
            .collect()
    }

    /// CPU shares of quiverd (all processes), the broker and this process, as a trial's.
    fn shares(&self, earlier: &Sample, secs: f64) -> CpuUse {
        let secs = secs.max(1e-9);
        CpuUse([
            Some(self.per_process(earlier, secs).iter().sum()),
            self.broker.zip(earlier.broker).map(|(a, b)| (a - b) / secs),
            Some((self.bench - earlier.bench) / secs),
        ])
    }
}

/// The rows counted as arrived: at the window for a windowed workload, at the source otherwise.
fn arrived(status: &Value, windowed: bool) -> u64 {
    if windowed {
        window_rows(status)
    } else {
        records_in(status)
    }
}

/// Each process's share of the source (`process_<p>_source_..._records_in_total`).
fn source_shares(status: &Value, processes: usize) -> Vec<u64> {
    (0..processes)
        .map(|p| metric(status, &format!("process_{p}_source_"), "_records_in_total"))
        .collect()
}

/// One trial with what a cluster adds to it.
struct Outcome {
    trial: Trial,
    /// CPU share of each process, the leader first.
    per_process: Vec<f64>,
    /// Bytes the processes sent each other during the trial.
    bytes: u64,
    /// Messages each process's source read (a cluster's shares).
    shares: Vec<u64>,
}

impl Outcome {
    fn bytes_per_message(&self) -> f64 {
        self.bytes as f64 / self.trial.arrived.max(1) as f64
    }

    fn quiverd_micros(&self) -> Option<f64> {
        let window = self.trial.last_at.max(self.trial.published.secs);
        self.trial.cpu.0[0].map(|c| c * window * 1e6 / self.trial.arrived.max(1) as f64)
    }

    fn per_process_cell(&self) -> String {
        self.per_process
            .iter()
            .map(|c| format!("{:.0}%", c * 100.0))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    fn shares_cell(&self) -> String {
        if self.shares.len() < 2 {
            return "-".into();
        }
        let total = self.shares.iter().sum::<u64>().max(1) as f64;
        self.shares
            .iter()
            .map(|s| format!("{:.0}%", *s as f64 * 100.0 / total))
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// One workload on one layout, and its trials so far.
struct Case {
    deployment: usize,
    workload: &'static Workload,
    topic: String,
    rule: String,
    /// The next trial's offered rate (`None`: full speed).
    rate: Option<u64>,
    trials: Vec<Outcome>,
    done: bool,
}

impl Case {
    /// Its first lossless trial.
    fn best(&self) -> Option<&Outcome> {
        self.trials.iter().find(|o| o.trial.lossless())
    }

    fn label(&self, d: &Deployment) -> String {
        format!("{} on {}", self.workload.name, d.layout.label())
    }
}

impl Bench {
    /// Phase `cluster`: W1 and W2 on 1–3 processes and on 1 process with 2 and 3 workers.
    pub(super) fn cluster(&mut self) -> anyhow::Result<()> {
        println!("== cluster: broker ceiling");
        let ceiling = self.ceiling_trials(&self.topic("cluster/plain"))?;
        let mut header: Vec<&'static str> = TRIAL_HEADER.to_vec();
        header.extend([
            "quiverd CPU per process (leader first)",
            "bytes exchanged per message",
            "source share per process",
        ]);
        let mut table = Table::new(
            "Cluster: every trial (W1 and W2 over MQTT, nop sink)",
            &header,
        );
        for t in &ceiling {
            let mut row = t.row("broker → 1 plain subscriber");
            row.extend(["-".into(), "-".into(), "-".into()]);
            table.row(row);
        }
        let ceiling = ceiling
            .iter()
            .filter(|t| t.lossless())
            .map(|t| t.published.rate())
            .reduce(f64::max);

        println!("== cluster: starting every layout");
        let mut deployments = Vec::new();
        for layout in LAYOUTS {
            let d = Deployment::start(
                &self.opts.quiverd,
                &self.dir.join(format!("cluster-{}", layout.name())),
                self.broker_port,
                layout,
            )?;
            deployments.push(d);
        }
        let mut publisher = self.rt.block_on(Publisher::connect(self.broker_port))?;
        let mut cases = Vec::new();
        for workload in &WORKLOADS {
            for (i, d) in deployments.iter().enumerate() {
                cases.push(self.cluster_case(&publisher, d, i, workload)?);
            }
        }
        std::thread::sleep(Duration::from_millis(500));

        // What each layout costs doing nothing (timers, the followers' counter reports).
        let mut idle = Vec::new();
        let before: Vec<Sample> = deployments
            .iter()
            .map(|d| Sample::take(d, None))
            .collect::<anyhow::Result<_>>()?;
        std::thread::sleep(Duration::from_secs(IDLE_SECS));
        for (d, b) in deployments.iter().zip(&before) {
            let a = Sample::take(d, None)?;
            let cpu: f64 = a.per_process(b, IDLE_SECS as f64).iter().sum();
            let bytes = a.bytes.saturating_sub(b.bytes) as f64 / IDLE_SECS as f64;
            println!(
                "  idle {}: {:.1}% CPU, {bytes:.0} B/s exchanged",
                d.layout.label(),
                cpu * 100.0
            );
            idle.push(format!(
                "{}: {:.1}% of a core, {bytes:.0} B/s",
                d.layout.label(),
                cpu * 100.0
            ));
        }

        for round in 0..MAX_TRIALS {
            if cases.iter().all(|c| c.done) {
                break;
            }
            println!("== cluster: round {}", round + 1);
            for case in cases.iter_mut().filter(|c| !c.done) {
                let d = &deployments[case.deployment];
                let outcome = self.cluster_trial(&mut publisher, d, case)?;
                let t = &outcome.trial;
                t.print(&case.label(d));
                println!(
                    "    quiverd CPU {:.1} µs/msg ({}), {:.1} bytes exchanged per message",
                    outcome.quiverd_micros().unwrap_or(0.0),
                    outcome.per_process_cell(),
                    outcome.bytes_per_message()
                );
                let got = t.arrived as f64 / t.last_at.max(1e-9);
                case.rate = Some(t.next_rate(if got >= 10_000.0 { 1000 } else { 100 }));
                case.done = t.lossless();
                case.trials.push(outcome);
            }
        }
        self.rt.block_on(publisher.client.disconnect())?;
        for d in &deployments {
            for log in d.logs() {
                print_warnings(&log);
            }
        }
        drop(deployments);

        for case in &cases {
            let label = format!(
                "{} on {}",
                case.workload.name,
                LAYOUTS[case.deployment].label()
            );
            for o in &case.trials {
                let mut row = o.trial.row(&label);
                row.extend([
                    o.per_process_cell(),
                    format!("{:.1}", o.bytes_per_message()),
                    o.shares_cell(),
                ]);
                table.row(row);
            }
        }
        table.note(format!(
            "All five layouts run at once, each with its own processes, streams and topics on \
             one private Mosquitto; the trials alternate (round after round, each case not yet \
             settled runs one trial of {:.0} s), so the machine's noise falls on every case \
             alike. A case first publishes at full speed (\"max\"), then, on loss, paced at 95% \
             of the rate that arrived, until a trial loses nothing. W1 arrives at its source \
             (`records_in`), W2 at its window (the rule's window `records_in`, past the key \
             exchange). quiverd CPU is the sum over the layout's processes. Bytes exchanged: \
             `bytes_sent` of the established loopback sockets with one of the cluster's ports \
             (its hosts file) at either end, from `ss -tinH` before and after the trial (both \
             directions; MQTT and REST are on other ports). Idle cost of each layout over {IDLE_SECS} \
             s before the trials: {}.",
            self.opts.trial.as_secs_f64(),
            idle.join("; ")
        ));
        self.tables.push(table);
        for workload in &WORKLOADS {
            self.cluster_summary(workload, &cases, ceiling);
        }
        Ok(())
    }

    /// Creates `workload`'s stream and rule on `d` and waits until every process reads its
    /// share of the topic.
    fn cluster_case(
        &self,
        publisher: &Publisher,
        d: &Deployment,
        index: usize,
        workload: &'static Workload,
    ) -> anyhow::Result<Case> {
        let name = workload.name.to_ascii_lowercase();
        let topic = self.topic(&format!("cluster/{}/{name}", d.layout.name()));
        let stream = format!("demo_{name}");
        let rule = format!("{name}_{}", d.layout.name());
        let q = &d.leader;
        q.create_stream(&format!(
            "CREATE STREAM {stream} (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) \
             WITH (DATASOURCE=\"{topic}\", TYPE=\"mqtt\", FORMAT=\"json\")"
        ))?;
        q.create_rule(
            &rule,
            &workload.sql.replace("demo", &stream),
            // Not the memory sink: a cluster refuses it (each process would have its own bus).
            json!({"nop": {}}),
        )?;
        let n = d.layout.processes;
        let ready = || {
            q.status(&rule).is_ok_and(|st| {
                if n == 1 {
                    records_in(&st) > 0
                } else {
                    source_shares(&st, n).iter().all(|&c| c > 0)
                }
            })
        };
        self.rt
            .block_on(publisher.probe(&topic, || tokio::task::block_in_place(ready)))
            .with_context(|| format!("{rule}: not every process read the topic"))?;
        Ok(Case {
            deployment: index,
            workload,
            topic,
            rule,
            rate: None,
            trials: Vec::new(),
            done: false,
        })
    }

    /// One trial of `case` at its rate.
    fn cluster_trial(
        &self,
        publisher: &mut Publisher,
        d: &Deployment,
        case: &Case,
    ) -> anyhow::Result<Outcome> {
        let q = &d.leader;
        let n = d.layout.processes;
        let windowed = case.workload.windowed;
        let count = || {
            q.status(&case.rule)
                .map(|s| arrived(&s, windowed))
                .unwrap_or(0)
        };
        let status0 = q.status(&case.rule)?;
        let base = arrived(&status0, windowed);
        let before = Sample::take(d, self.broker_pid)?;
        let start = Instant::now();
        let published = self
            .rt
            .block_on(publisher.run(&case.topic, case.rate, self.opts.trial))?;
        // The followers report their counters every second: the quiet period is longer.
        let (got, last_at) = drain(start, base + published.sent, Duration::from_secs(2), count);
        let after = Sample::take(d, self.broker_pid)?;
        let window = last_at.max(published.secs);
        let status1 = q.status(&case.rule)?;
        let shares = source_shares(&status1, n)
            .iter()
            .zip(source_shares(&status0, n))
            .map(|(a, b)| a.saturating_sub(b))
            .collect();
        Ok(Outcome {
            trial: Trial {
                offered: case.rate,
                published,
                arrived: got.saturating_sub(base),
                last_at,
                cpu: after.shares(&before, window),
                sink_rows: None,
            },
            per_process: after.per_process(&before, window),
            bytes: after.bytes.saturating_sub(before.bytes),
            shares,
        })
    }

    /// The table of `workload`: each layout's highest lossless rate and its costs.
    fn cluster_summary(&mut self, workload: &Workload, cases: &[Case], ceiling: Option<f64>) {
        let mut t = Table::new(
            &format!(
                "Cluster: {} highest lossless rate per layout ({})",
                workload.name, workload.sql
            ),
            &[
                "layout",
                "highest lossless rate (msgs/s)",
                "last lossy trial: published → arrived",
                "rate / 1 proc × 1 worker",
                "quiverd CPU (all processes)",
                "per process (leader first)",
                "quiverd CPU µs per message",
                "broker CPU",
                "bytes exchanged per message",
                "source share per process",
            ],
        );
        let mine: Vec<&Case> = cases
            .iter()
            .filter(|c| c.workload.name == workload.name)
            .collect();
        let base = mine
            .first()
            .and_then(|c| c.best())
            .map(|o| o.trial.published.rate());
        for c in &mine {
            let layout = LAYOUTS[c.deployment];
            let lossy =
                c.trials
                    .iter()
                    .rev()
                    .find(|o| !o.trial.lossless())
                    .map_or("-".into(), |o| {
                        format!(
                            "{} → {} ({:.0}% lost)",
                            k(o.trial.published.rate()),
                            k(o.trial.arrived as f64 / o.trial.last_at.max(1e-9)),
                            100.0
                                - 100.0 * o.trial.arrived as f64
                                    / o.trial.published.sent.max(1) as f64
                        )
                    });
            let Some(o) = c.best() else {
                t.row(vec![
                    layout.label(),
                    format!("lost at every rate in {MAX_TRIALS} trials"),
                    lossy,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                continue;
            };
            let rate = o.trial.published.rate();
            let cells = o.trial.cpu.cells();
            t.row(vec![
                layout.label(),
                k(rate),
                lossy,
                base.map_or("-".into(), |b| format!("{:.2}", rate / b)),
                cells[0].clone(),
                o.per_process_cell(),
                o.quiverd_micros().map_or("-".into(), |m| format!("{m:.1}")),
                cells[1].clone(),
                format!("{:.1}", o.bytes_per_message()),
                o.shares_cell(),
            ]);
        }
        if let Some(c) = ceiling {
            t.note(format!(
                "Broker ceiling in this run (one plain subscriber, no Quiver): {}/s.",
                k(c)
            ));
        }
        // What an exchanged byte costs: a cluster against one process with as many workers
        // (the same dataflow, its exchange in memory instead of over TCP).
        for (cluster, single) in [(1, 3), (2, 4)] {
            let (Some(a), Some(b)) = (
                mine.get(cluster).and_then(|c| c.best()),
                mine.get(single).and_then(|c| c.best()),
            ) else {
                continue;
            };
            let (Some(ca), Some(cb)) = (a.quiverd_micros(), b.quiverd_micros()) else {
                continue;
            };
            let bytes = a.bytes_per_message();
            if bytes >= 1.0 {
                t.note(format!(
                    "{} against {}: {:+.1} µs of quiverd CPU per message for {bytes:.1} bytes \
                     exchanged per message = {:.1} ns per exchanged byte.",
                    LAYOUTS[cluster].label(),
                    LAYOUTS[single].label(),
                    ca - cb,
                    (ca - cb) * 1000.0 / bytes
                ));
            }
        }
        self.tables.push(t);
    }
}
