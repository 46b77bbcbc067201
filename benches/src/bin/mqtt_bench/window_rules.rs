//! Phase `window-rules` (not in the default list): many processing-time tumbling-window rules
//! on one `SHARED` MQTT stream, what they cost and how late their results come; with
//! `--quiverd-b`, on two server binaries (A/B) in one invocation.
//!
//! For each `--rules` count, A then B (so that the machine's noise falls on both alike): a
//! fresh quiverd, the `rules` phase's stream `demo` (`SHARED="true"`) and `n` rules `r{i}`,
//! [`window_sql`]: each its own filter (`temperature > i % 40`; temperatures are in `[0, 40)`,
//! so every filter keeps some rows) and, alternately, the key `device` (1,000 groups) or
//! `humidity` (100 groups). All but [`SAMPLED`] of them write to a memory sink nobody reads; the
//! sampled ones, spread over the range and over both keys, write to an MQTT topic this bench
//! subscribes to.
//!
//! Then each `--window-rates` rate in turn: publish for `--trial-secs`, then wait at most
//! [`GRACE`] for every sampled rule's source `records_in` to have grown by the number published
//! and for the last window to close. Measured: quiverd's CPU from the first message to the end
//! of that wait, the sampled rules' `records_in`, the latency of window results (receive time
//! minus the row's `window_end()`, over every result message received during the trial and the
//! wait) and RSS. Every wait is bounded: a binary that falls behind ends its trial at the
//! usual time and reports how far its sampled rules got.

use super::qos::print_warnings;
use super::*;

/// Rules with an MQTT sink (the rest have a memory sink), spread over the range.
const SAMPLED: usize = 10;

/// How long after publishing the sampled rules may take to catch up (and the last window to
/// close) before the trial ends anyway.
const GRACE: Duration = Duration::from_secs(3);

/// Catch-up time after publishing within which a rate counts as kept up (as in `rules`).
const KEPT_UP_LAG_SECS: f64 = 1.0;

/// Rule `i`: a 1-second tumbling window with its own filter, keyed by `device` (even `i`) or
/// `humidity` (odd `i`).
fn window_sql(i: usize) -> String {
    let key = if i.is_multiple_of(2) {
        "device"
    } else {
        "humidity"
    };
    format!(
        "SELECT {key}, count(*) AS c, avg(temperature) AS t, window_end() AS we FROM demo \
         WHERE temperature > {} GROUP BY {key}, TUMBLINGWINDOW(ss, 1)",
        i % 40
    )
}

/// The indices of the rules with an MQTT sink among `n`: spread over the range, odd and even
/// (both keys) alternately.
fn sampled(n: usize) -> Vec<usize> {
    let s = SAMPLED.min(n);
    let mut out: Vec<usize> = (0..s).map(|j| (j * n / s + j % 2).min(n - 1)).collect();
    out.dedup();
    out
}

/// `window_end()` (ms since the epoch) of a result message: a JSON object or an array of them,
/// all of one window.
fn window_end(payload: &[u8]) -> Option<i64> {
    let v = serde_json::from_slice::<Value>(payload).ok()?;
    let row = match &v {
        Value::Array(rows) => rows.first()?,
        row => row,
    };
    row.get("we").and_then(Value::as_i64)
}

/// The `p` quantile of `sorted`, in ms, or "-" when empty.
fn quantile_ms(sorted: &[f64], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.0} ms", sorted[i])
}

const HEADER: &[&str] = &[
    "binary",
    "rules",
    "create time (s)",
    "RSS before rules",
    "RSS after rules",
    "per rule",
    "offered msgs/s",
    "published msgs/s",
    "published",
    "sampled rules' records_in growth (min / max)",
    "caught up after publish (s)",
    "quiverd CPU",
    "quiverd CPU µs per message",
    "window results received (of ~expected)",
    "result latency p50",
    "result latency p99",
    "RSS after the trial",
    "kept up",
];

/// What one binary with `n` rules measured before its trials.
struct Setup {
    label: String,
    n: usize,
    took: f64,
    rss_before: u64,
    rss_after: u64,
}

impl Setup {
    /// The first cells of each of its rows.
    fn cells(&self) -> Vec<String> {
        vec![
            self.label.clone(),
            thousands(self.n as u64),
            format!("{:.1}", self.took),
            mb(self.rss_before),
            mb(self.rss_after),
            format!(
                "{:.1} KB",
                self.rss_after.saturating_sub(self.rss_before) as f64 / self.n as f64
            ),
        ]
    }
}

impl Bench {
    /// Phase 7: many window rules on one shared stream, A then B per rule count.
    pub(super) fn window_rules(&mut self) -> anyhow::Result<()> {
        println!("== window rules");
        let mut binaries = vec![("A", self.opts.quiverd.clone())];
        if let Some(b) = &self.opts.quiverd_b {
            binaries.push(("B", b.clone()));
        }
        let mut table = Table::new(
            "Window rules on one SHARED MQTT stream (1 s tumbling windows, a fresh quiverd per \
             binary and rule count)",
            HEADER,
        );
        let mut publisher = self.rt.block_on(Publisher::connect(self.broker_port))?;
        let mut failures = Vec::new();
        for &n in &self.opts.rules.clone() {
            for (s, (label, bin)) in binaries.iter().enumerate() {
                if let Err(e) = self.window_rules_run(&mut table, &mut publisher, label, bin, n, s)
                {
                    eprintln!("  {label} with {n} window rules failed: {e:#}");
                    failures.push(format!("{label} with {n} rules: {e:#}"));
                }
            }
        }
        self.rt.block_on(publisher.client.disconnect())?;
        let names = binaries
            .iter()
            .map(|(l, b)| format!("{l} = `{}`", b.display()))
            .collect::<Vec<_>>()
            .join(", ");
        table.note(format!(
            "{names}. Rule `r{{i}}` = `{}` (`{}` for odd `i`); all but {SAMPLED} rules (spread \
             over the range, both keys) have a memory sink nobody reads, those {SAMPLED} an MQTT \
             sink the bench subscribes to. Rules are created over REST by 4 client threads; \
             \"RSS after rules\" is 2 s after the last. Each rate publishes for the trial \
             length, then waits up to {} s for the sampled rules to catch up and the last window \
             to close. Kept up = every sampled rule's source `records_in` grew by exactly the \
             number published, within {KEPT_UP_LAG_SECS:.0} s of the end of publishing. CPU is \
             over the trial and that wait; µs per message = CPU time / messages published. \
             Result latency = the subscriber's receive time minus the result's `window_end()` \
             (ms since the epoch, same clock), over every result message of the sampled rules \
             received during the trial and the wait; about one result is expected per sampled \
             rule and second that publishing touched.",
            window_sql(0),
            window_sql(1),
            GRACE.as_secs()
        ));
        for f in &failures {
            table.note(format!("failed: {f}"));
        }
        self.tables.push(table);
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(())
    }

    /// Binary `bin` (row label `label`, the `s`-th binary) with `n` window rules: its trials
    /// at every window rate, one row each.
    fn window_rules_run(
        &self,
        table: &mut Table,
        publisher: &mut Publisher,
        label: &str,
        bin: &Path,
        n: usize,
        s: usize,
    ) -> anyhow::Result<()> {
        let port = self.broker_port;
        let name = format!("window{n}-{s}");
        let in_topic = self.topic(&format!("{name}/in"));
        let out_topic = self.topic(&format!("{name}/out"));
        let dir = self.dir.join(&name);
        println!("== window rules: {label} ({}), creating {n}", bin.display());
        let q = Quiverd::start(bin, &dir, port, self.opts.workers)?;
        q.create_shared_demo(&in_topic)?;
        std::thread::sleep(Duration::from_secs(1));
        let (rss_before, _) = q.rss_kb();
        let sample = sampled(n);
        let sink =
            json!({"mqtt": {"server": format!("tcp://127.0.0.1:{port}"), "topic": out_topic}});
        let memory = json!({"memory": {"topic": "bench/window/nobody"}});
        let took = create_rules(&q, n, |i| {
            let action = if sample.contains(&i) { &sink } else { &memory };
            (window_sql(i), action.clone())
        })?;
        std::thread::sleep(Duration::from_secs(2));
        let (rss_after, _) = q.rss_kb();
        let setup = Setup {
            label: label.to_string(),
            n,
            took,
            rss_before,
            rss_after,
        };
        println!(
            "  created in {took:.1} s; RSS {} → {}",
            mb(rss_before),
            mb(rss_after)
        );
        let sub = self
            .rt
            .block_on(Subscriber::connect_with(port, &out_topic, false, true))?;
        let ids: Vec<String> = sample.iter().map(|i| format!("r{i}")).collect();
        let counts = || -> Vec<u64> {
            ids.iter()
                .map(|r| q.status(r).map(|s| records_in(&s)).unwrap_or(0))
                .collect()
        };
        // Every sampled rule reads the stream (the probes have temperature 0: no results).
        self.rt.block_on(publisher.probe(&in_topic, || {
            tokio::task::block_in_place(|| counts().iter().all(|&c| c > 0))
        }))?;
        std::thread::sleep(Duration::from_millis(500));
        for &rate in &self.opts.window_rates {
            println!("  {label}: {n} window rules at {rate} msg/s");
            let base = counts();
            sub.received.payloads.lock().expect("payloads lock").clear();
            let (t0, wall0) = (Instant::now(), now_us());
            let meter = CpuMeter::start(Some(q.pid()), self.broker_pid);
            let published =
                self.rt
                    .block_on(publisher.run(&in_topic, Some(rate), self.opts.trial))?;
            let want = published.sent;
            let deadline = Instant::now() + GRACE;
            let mut caught_up = None;
            let mut deltas;
            loop {
                deltas = counts()
                    .iter()
                    .zip(&base)
                    .map(|(now, was)| now.saturating_sub(*was))
                    .collect::<Vec<u64>>();
                if deltas.iter().all(|&d| d == want) {
                    caught_up = Some(t0.elapsed().as_secs_f64());
                    break;
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let cpu_secs = t0.elapsed().as_secs_f64();
            let cpu = meter.finish(cpu_secs);
            // The last window with data ends on the second after publishing stopped; give its
            // result half a second more, within the grace.
            let end_us = wall0 + (published.secs * 1e6) as i64;
            let closed_us = (end_us / 1_000_000 + 1) * 1_000_000 + 500_000;
            while now_us() < closed_us && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let payloads =
                std::mem::take(&mut *sub.received.payloads.lock().expect("payloads lock"));
            let mut lats: Vec<f64> = payloads
                .iter()
                .filter_map(|(at, p)| {
                    let at_us = if *at >= t0 {
                        wall0 + at.duration_since(t0).as_micros() as i64
                    } else {
                        wall0 - t0.duration_since(*at).as_micros() as i64
                    };
                    window_end(p).map(|we| (at_us / 1000 - we) as f64)
                })
                .collect();
            lats.sort_by(f64::total_cmp);
            // One result per sampled rule and second that publishing touched (about: a
            // strict filter may keep no row of a short first second).
            let seconds = (end_us / 1_000_000 - wall0 / 1_000_000 + 1) as u64;
            let expected = sample.len() as u64 * seconds;
            let (rss, _) = q.rss_kb();
            let min = deltas.iter().copied().min().unwrap_or(0);
            let max = deltas.iter().copied().max().unwrap_or(0);
            let lag = caught_up.map(|c| (c - published.secs).max(0.0));
            let kept = if lag.is_some_and(|l| l <= KEPT_UP_LAG_SECS) {
                "yes".to_string()
            } else if let Some(l) = lag {
                format!("**no** (caught up {l:.1} s after publishing)")
            } else if max > want {
                "**no** (a backlog from before: more than published)".to_string()
            } else {
                format!(
                    "**no** ({:.0}% within {} s)",
                    min as f64 * 100.0 / want.max(1) as f64,
                    GRACE.as_secs()
                )
            };
            println!(
                "    published {} ({:.0}/s); sampled records_in min {min} max {max}; {} of ~{expected} \
                 results, latency p50 {} p99 {}; {kept}",
                published.sent,
                published.rate(),
                lats.len(),
                quantile_ms(&lats, 0.5),
                quantile_ms(&lats, 0.99),
            );
            let pct = |d: u64| format!("{:.1}%", d as f64 * 100.0 / want.max(1) as f64);
            table.row(
                setup
                    .cells()
                    .into_iter()
                    .chain([
                        k(rate as f64),
                        k(published.rate()),
                        thousands(published.sent),
                        format!("{} / {}", pct(min), pct(max)),
                        lag.map_or("never".into(), |l| format!("{l:.1}")),
                        cpu.cells()[0].clone(),
                        cpu.0[0].map_or("-".into(), |c| {
                            format!("{:.1}", c * cpu_secs * 1e6 / want.max(1) as f64)
                        }),
                        format!(
                            "{} of ~{}",
                            thousands(lats.len() as u64),
                            thousands(expected)
                        ),
                        quantile_ms(&lats, 0.5),
                        quantile_ms(&lats, 0.99),
                        mb(rss),
                        kept,
                    ])
                    .collect(),
            );
        }
        self.rt.block_on(sub.disconnect());
        print_warnings(&dir.join("quiverd.log"));
        q.stop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_rules_spread_over_both_keys() {
        assert_eq!(sampled(20), vec![0, 3, 4, 7, 8, 11, 12, 15, 16, 19]);
        assert_eq!(sampled(1), vec![0]);
        assert_eq!(sampled(3), vec![0, 2]);
        let s = sampled(10_000);
        assert_eq!(s.len(), SAMPLED);
        assert!(s.iter().any(|i| i % 2 == 1) && s.iter().any(|i| i % 2 == 0));
    }

    #[test]
    fn window_end_of_an_object_or_array() {
        assert_eq!(
            window_end(br#"[{"we":1000,"c":2},{"we":1000}]"#),
            Some(1000)
        );
        assert_eq!(window_end(br#"{"we":2000}"#), Some(2000));
        assert_eq!(window_end(b"[]"), None);
    }
}
