//! One run of a rule: its sink tasks, its dataflow on every worker (or its place in a rule
//! group) and its source tasks; and the teardown that undoes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use quiver_compiler::StreamDef;
use quiver_connectors::{SourceEvent, SourceOutput};
use tokio::sync::{mpsc, watch};

use super::Engine;
use super::entry::{InputElsewhere, RuleEntry, RuleRun, SourceHandle};
use super::options::buffer_batches;
use super::shared::Subscriber;
use super::sink_task::run_sink;
use super::transitions::{self, Change};
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::metrics::{NodeMetrics, RuleMetrics};
use crate::render::RuleDataflow;
use crate::runtime::{Command, Workers};
use crate::sinkprops::SinkSettings;

impl Engine {
    /// Builds a run of the rule: sink tasks, the dataflow on every worker, the source task.
    pub(super) fn launch(&self, entry: &mut RuleEntry) -> Result<(), EngineError> {
        let stream = self.rule_stream(entry)?;
        let physical = Arc::new(self.physical(entry, &stream)?);
        let n = self.inner.workers.count();
        // Every node's counters, created from the plan's node list: operators find theirs by id.
        let metrics = Arc::new(RuleMetrics::with_nodes(&physical.nodes));
        // Streams joined to the FROM stream: each has a source node of its own.
        let joined: Vec<(StreamDef, String, Arc<NodeMetrics>)> = physical
            .joined
            .iter()
            .map(|(name, qualifier, node)| {
                let def = self
                    .stream(name)
                    .map(|def| self.as_read(entry, def))
                    .ok_or_else(|| EngineError::NotFound(format!("stream \"{name}\" not found")))?;
                Ok((def, qualifier.clone(), metrics.at(*node)))
            })
            .collect::<Result<_, EngineError>>()?;
        // Scan tables the rule keeps its own copy of (qos 1 and 2): read like joined streams.
        let own_tables: Vec<(StreamDef, Arc<NodeMetrics>)> = physical
            .own_tables
            .iter()
            .map(|(name, node)| {
                let def = self
                    .stream(name)
                    .ok_or_else(|| EngineError::NotFound(format!("table \"{name}\" not found")))?;
                Ok((def, metrics.at(*node)))
            })
            .collect::<Result<_, EngineError>>()?;
        // qos 1: the checkpoint the run resumes from, its input log and its trigger.
        let recovery = self.recovery(
            entry,
            &physical,
            &stream.options.source_type,
            &joined
                .iter()
                .map(|(def, _, _)| (def, false))
                .chain(own_tables.iter().map(|(def, _)| (def, true)))
                .map(|(def, table)| super::recovery::JoinedStream {
                    name: def.name.clone(),
                    source_type: def.options.source_type.clone(),
                    table,
                    keyed: def.options.key.is_some(),
                    consumed: table && self.consumes_its_files(entry, def),
                })
                .collect::<Vec<_>>(),
            n,
        )?;
        // In a cluster every process launches in the sequence's order: the numbers agree.
        entry.runs = 1 + self
            .inner
            .launches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = entry.run_key();

        let queue = buffer_batches(&entry.spec.options)?;
        let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (done_tx, done_rx) = watch::channel(false);
        let done_tx = Arc::new(done_tx);
        let finished_at = Arc::new(std::sync::atomic::AtomicI64::new(0));

        // Sinks first, so results have somewhere to go.
        let mut sink_senders = Vec::new();
        // `sendError`: each sink also reads the operators' error texts from a queue of its own.
        let send_errors = super::options::flag(&entry.spec.options, "sendError");
        let mut error_senders = Vec::new();
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(
            entry.spec.actions.len(),
        ));
        let discard_caches = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut cached_sinks = Vec::new();
        let exactly_once = recovery
            .as_ref()
            .is_some_and(|r| r.checkpointing.exactly_once());
        if exactly_once {
            // Every sink is checked before any task starts.
            for (action, &node) in entry.spec.actions.iter().zip(&physical.sinks) {
                let id = format!("{}/{}", entry.spec.id, physical.nodes[node]);
                if id.len() > super::epoch_sink::MAX_ID {
                    return Err(EngineError::Invalid(format!(
                        "rule option qos = 2 records each sink's progress under \"<rule id>/<sink>\", at most {} bytes; \"{id}\" is longer: use a shorter rule id",
                        super::epoch_sink::MAX_ID
                    )));
                }
                let (settings, props) = SinkSettings::parse_for(
                    quiver_connectors::Connectors::sink_own_keys(&action.sink_type),
                    &action.props,
                )?;
                let sink = self.inner.connectors.sink(&action.sink_type, &props)?;
                super::epoch_sink::check(&action.sink_type, &settings, &action.props, &*sink)?;
            }
        }
        for (j, (action, &node)) in entry.spec.actions.iter().zip(&physical.sinks).enumerate() {
            let m = metrics.at(node);
            let (settings, props) = SinkSettings::parse_for(
                quiver_connectors::Connectors::sink_own_keys(&action.sink_type),
                &action.props,
            )?;
            let sink = self.inner.connectors.sink(&action.sink_type, &props)?;
            let cache = match &settings.cache {
                None => None,
                Some(cache) => {
                    let sink_name = physical.nodes[node].clone();
                    cached_sinks.push(sink_name.clone());
                    let owner = self
                        .inner
                        .cache_owners
                        .lock()
                        .expect("cache owners lock")
                        .entry((entry.spec.id.clone(), sink_name.clone()))
                        .or_default()
                        .clone();
                    let resend = match &cache.destination {
                        None => None,
                        Some(dest) => Some(self.resend_sink(&action.sink_type, &props, dest)?),
                    };
                    Some((
                        crate::sink_cache::CacheSpec {
                            dir: self.cache_dir()?,
                            rule: entry.spec.id.clone(),
                            sink: sink_name,
                            owner,
                            settings: cache.clone(),
                            discard: discard_caches.clone(),
                        },
                        resend,
                    ))
                }
            };
            let (tx, rx) =
                mpsc::channel::<RecordBatch>(settings.buffer_length.unwrap_or(queue).max(1));
            sink_senders.push(tx);
            let errors = send_errors.then(|| {
                let (etx, erx) = mpsc::channel::<String>(crate::send_error::ERROR_QUEUE);
                error_senders.push(etx);
                erx
            });
            let done_tx = done_tx.clone();
            let remaining = remaining.clone();
            let error = error.clone();
            let finished_at = finished_at.clone();
            // A follower reports a finished run's counters at once, so the leader's status is
            // whole as soon as the run is over everywhere (not up to a report period later).
            let report_done = self.is_follower().then(|| Arc::downgrade(&self.inner));
            let checkpoint = recovery.as_ref().map(|r| (r.checkpointing.clone(), j));
            let epochs =
                checkpoint
                    .clone()
                    .filter(|_| exactly_once)
                    .map(|(checkpointing, index)| super::epoch_sink::EpochSinkSpec {
                        checkpointing,
                        index,
                        id: format!("{}/{}", entry.spec.id, physical.nodes[node]),
                        // One run at a time writes a sink's epochs: a restarted run reads the
                        // progress table only once the previous run's last commit is done.
                        owner: self
                            .inner
                            .cache_owners
                            .lock()
                            .expect("cache owners lock")
                            .entry((entry.spec.id.clone(), physical.nodes[node].clone()))
                            .or_default()
                            .clone(),
                    });
            self.inner.runtime.spawn(async move {
                match epochs {
                    Some(spec) => {
                        super::epoch_sink::run_epoch_sink(sink, settings, rx, m, error, spec).await
                    }
                    None => {
                        let c = checkpoint.as_ref().map(|(c, _)| c.clone());
                        run_sink(sink, settings, rx, errors, m, error, cache, checkpoint).await;
                        // A run whose input ended is over once its last checkpoint is durable:
                        // a restart then finds everything done.
                        if let Some(c) = c
                            && !c.final_committed(super::epoch_sink::FINAL_WAIT).await
                        {
                            tracing::warn!("the input's last checkpoint was not durable in time; a restart replays what came after the one before");
                        }
                    }
                }
                if remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                    finished_at.store(now_ms(), std::sync::atomic::Ordering::Release);
                    let _ = done_tx.send(true);
                    if let Some(inner) = report_done.and_then(|w| w.upgrade()) {
                        Engine { inner }.report_counters();
                    }
                }
            });
        }

        // Pages left by sinks that no longer cache (the rule was changed) would never be sent.
        self.forget_caches(&entry.spec.id, cached_sinks);
        if send_errors {
            metrics.send_errors_to(&Arc::new(crate::send_error::ErrorRelay::new(error_senders)));
        }
        // An operator's panic fails this rule only, through the run's error slot.
        let fault = Arc::new(crate::fault::Fault::new(error.clone()));
        if let Some(r) = &recovery {
            r.checkpointing.on_fault(fault.clone());
        }

        let (ingest_tx, ingest_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(queue)).unzip();
        let late_rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Events of a shared stream this rule lost for falling behind the stream's other rules.
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // A stateless or processing-time window rule of a shared stream joins the stream's
        // rule group instead of running a dataflow of its own (see `render::group`).
        if physical.grouped {
            let member = crate::render::group::Member {
                key: key.clone(),
                id: 0,
                ops: physical.source_ops().to_vec(),
                window: physical.grouped_window(),
                sinks: Mutex::new(sink_senders),
                source_metrics: metrics.at(physical.source),
                decoder_metrics: metrics.at(physical.decoder),
                metrics: metrics.clone(),
                rule: Arc::new(quiver_compiler::eval::RuleContext {
                    id: entry.spec.id.clone(),
                    start_ms: now_ms(),
                }),
                fault: fault.clone(),
                dropped: dropped.clone(),
                behind: Default::default(),
            };
            let (group, connection) = self.join_group(&stream, member, queue)?;
            entry.run = Some(RuleRun {
                key,
                joined_tasks: Vec::new(),
                connection,
                source_node: format!("source_{}", stream.name),
                metrics,
                source: SourceHandle::Grouped(stream.name.clone(), group),
                done: done_rx,
                error,
                late_rows,
                dropped: dropped.clone(),
                finished_at,
                in_flight,
                indexes: Vec::new(),
                discard_caches,
                checkpoint: None,
                save_before_stop: None,
            });
            started(entry);
            return Ok(());
        }
        let activators = Arc::new(Mutex::new(vec![None; n]));
        let tables: HashMap<String, crate::tables::TableSide> = {
            let tables = self.inner.tables.lock().expect("tables lock");
            physical
                .tables()
                .map(|name| {
                    tables
                        .get(name)
                        .map(|t| (name.clone(), t.side.clone()))
                        .ok_or_else(|| EngineError::NotFound(format!("table \"{name}\" not found")))
                })
                .collect::<Result<_, _>>()?
        };
        // The scan-table indexes the joins read, by the plan's slots.
        let mut indexes: Vec<crate::tables::feed::IndexSpec> = physical
            .indexes
            .iter()
            .map(|read| match tables.get(&read.table) {
                Some(crate::tables::TableSide::Scan(feed)) => {
                    Ok(crate::tables::feed::IndexSpec::new(
                        feed.clone(),
                        read.keys.clone(),
                        if read.partitioned {
                            crate::tables::feed::Placement::Partitioned
                        } else {
                            crate::tables::feed::Placement::Replicated
                        },
                    ))
                }
                _ => Err(EngineError::NotFound(format!(
                    "scan table \"{}\" not found",
                    read.table
                ))),
            })
            .collect::<Result<_, _>>()?;
        for index in &mut indexes {
            let feed = index.feed.clone();
            feed.acquire(index);
        }
        let columns: Option<std::collections::BTreeSet<String>> = physical
            .decode
            .columns
            .as_ref()
            .map(|c| c.iter().cloned().collect());
        let dataflow_decoder = self
            .stream_decoder(&stream, physical.decode.meta)?
            .reading(columns.as_ref());
        let dataflow = Arc::new(RuleDataflow {
            key: key.clone(),
            physical: physical.clone(),
            metrics: metrics.clone(),
            decoder: dataflow_decoder.clone(),
            ingest: Mutex::new(ingest_rx.into_iter().map(Some).collect()),
            activators: activators.clone(),
            sinks: sink_senders,
            late_rows: late_rows.clone(),
            tables: crate::render::TableInputs {
                tables,
                indexes: indexes.clone(),
            },
            to_windows: in_flight.clone(),
            rule: Arc::new(quiver_compiler::eval::RuleContext {
                id: entry.spec.id.clone(),
                start_ms: now_ms(),
            }),
            fault: fault.clone(),
            checkpoint: recovery.as_ref().map(|r| r.checkpointing.clone()),
            replay_until: recovery
                .as_ref()
                .map(|r| r.replay_until.clone())
                .unwrap_or_default(),
            hits: quiver_compiler::hit::plan_sites(&entry.plan.plan),
        });
        self.inner
            .workers
            .broadcast(|| Command::Build(dataflow.clone()));
        drop(dataflow);
        // Should the rest of the launch fail, the built dataflow and its index uses go again.
        let unbuilt = Unbuilt {
            workers: &self.inner.workers,
            key: key.clone(),
            indexes,
            armed: true,
        };
        // A new index fills from its table's base arrangement: the rule reads no row before
        // the index holds what the table held when the rule started.
        for index in &unbuilt.indexes {
            if !index.feed.wait_current(&index.id(), Duration::from_secs(5)) {
                tracing::warn!(table = %index.feed.name, "table index still filling as the rule starts");
            }
        }

        let mut spec = self.rule_source_spec(entry, &stream);
        // What the leader read its input with, told to the followers when it ends.
        let spec_digest = super::input_share::spec_digest(&spec);
        // MQTT client ids of the rule's persistent sessions, by stream: one session each.
        let mut sessions: Vec<(String, String)> = Vec::new();
        if recovery.is_some()
            && let Some(id) = super::recovery::durable_source(
                format!("quiver-{}", entry.spec.id),
                &mut spec,
                self.is_shared(&stream.name)
                    .then_some(entry.spec.id.as_str()),
            )?
        {
            sessions.push((id, stream.name.clone()));
        }
        let wake: quiver_connectors::WakeFn = Arc::new(move |i| {
            if let Some(a) = activators.lock().expect("activator lock")[i].as_ref() {
                // A dropped dataflow's activator fails harmlessly.
                let _ = a.activate();
            }
        });
        let wake_all = wake.clone();
        let ordered = physical.input == crate::physical::Input::FirstWorker;
        let local = self.inner.workers.local();
        // The queues of this process's workers only (all of them outside a cluster; of those,
        // the first worker's alone for a rule read in order): the others' are read in their own
        // processes, or by nobody.
        let ingest_tx: Vec<_> = ingest_tx
            .into_iter()
            .take(if ordered { 1 } else { n })
            .take(local.end)
            .skip(local.start)
            .collect();
        // In a cluster, an MQTT stream or a file is read by every process, each taking a share.
        let share = self.take_input_share(&entry.spec.id, ordered, &mut spec);
        let shared_input = share.is_some();
        let (source_handle, connection, joined_tasks, save_before_stop) = if self.is_follower()
            && !shared_input
        {
            // Other sources run on the leader (process 0): this process's workers read nothing,
            // but their queues stay open until the run stops, so their sources' time moves on
            // (processing-time ticks) instead of ending the input.
            for i in local.clone() {
                wake(i);
            }
            (
                SourceHandle::Elsewhere(InputElsewhere {
                    queues: ingest_tx,
                    wake: wake.clone(),
                    local: local.clone(),
                }),
                None,
                Vec::new(),
                None,
            )
        } else {
            // The other workers' queues are closed now; a worker whose source already looked
            // at its (then empty) queue must look again, or it would hold back time forever.
            for i in (0..n).filter(|i| !(local.start..local.start + ingest_tx.len()).contains(i)) {
                wake(i);
            }
            // The source output numbers this process's queues from 0; the workers' activators
            // are numbered over the cluster.
            let local_wake: quiver_connectors::WakeFn = match local.start {
                0 => wake.clone(),
                start => {
                    let wake = wake.clone();
                    Arc::new(move |i| wake(i + start))
                }
            };
            // Aborted if the launch fails before the run holds them.
            let mut joined_tasks = Started::default();
            // qos 1 and 2 with joins: the FROM stream's source and the joined ones write worker 0's
            // log and queue in turns, and the joined ones wait until the log is replayed.
            let order = Arc::new(tokio::sync::Mutex::new(()));
            let (replayed_tx, replayed_rx) = watch::channel(recovery.is_none());
            let mut prepares: Vec<crate::checkpoint::PrepareJoined> = Vec::new();
            // Every joined stream's and own table's rows as worker 0 gets them, by source number.
            let mut inputs: Vec<(StreamDef, crate::checkpoint::PrepareJoined)> = Vec::new();
            for (i, (def, qualifier, m)) in joined.into_iter().enumerate() {
                let prepare = self.joined_rows(
                    &def,
                    qualifier,
                    i as i64 + 1,
                    physical.event_time.is_some(),
                    m,
                )?;
                inputs.push((def, prepare));
            }
            for (def, m) in own_tables {
                let prepare = own_table_rows(&def, inputs.len() as u32 + 1, m);
                inputs.push((def, prepare));
            }
            // Every joined source's spec is ready (and its session checked) before any starts.
            let mut specs = Vec::new();
            for (def, _) in &inputs {
                let mut spec = self.rule_source_spec(entry, def);
                if recovery.is_some() {
                    let client_id = format!("quiver-{}-{}", entry.spec.id, def.name);
                    // A table's own profile `clientid` is its shared feed's: the rule's session
                    // takes it suffixed with the rule, as a shared stream's does.
                    let of_shared = (self.is_shared(&def.name)
                        || def.kind == quiver_compiler::StreamKind::Table)
                        .then_some(entry.spec.id.as_str());
                    if let Some(id) =
                        super::recovery::durable_source(client_id, &mut spec, of_shared)?
                    {
                        if let Some((_, other)) = sessions.iter().find(|(s, _)| *s == id) {
                            return Err(EngineError::Invalid(format!(
                                "rule options qos = 1 and 2 keep a persistent MQTT session per stream: streams \"{other}\" and \"{}\" name the same clientid \"{id}\"",
                                def.name
                            )));
                        }
                        sessions.push((id, def.name.clone()));
                    }
                }
                specs.push(spec);
            }
            for (i, ((def, prepare), spec)) in inputs.into_iter().zip(specs).enumerate() {
                prepares.push(prepare.clone());
                let logged = recovery.as_ref().map(|r| JoinedLogging {
                    writer: crate::checkpoint::JoinedLogWriter {
                        log: r
                            .checkpointing
                            .log()
                            .expect("a checkpointed run logs")
                            .clone(),
                        source: i as u32 + 1,
                        prepare: prepare.clone(),
                    },
                    order: order.clone(),
                    replayed: replayed_rx.clone(),
                });
                joined_tasks.extend(self.start_joined_source(
                    &def,
                    &spec,
                    prepare,
                    ingest_tx[0].clone(),
                    wake.clone(),
                    queue,
                    error.clone(),
                    logged,
                )?);
            }
            // qos 1: the queues the logged events are replayed into before the live source starts.
            let replay_queues = ingest_tx.clone();
            let replay_wake = wake.clone();
            let trigger_wake = wake.clone();
            // `enableSaveStateBeforeStop`: a checkpoint before a stop, which wakes the sources too.
            let save_before_stop = recovery
                .as_ref()
                .filter(|_| super::options::flag(&entry.spec.options, "enableSaveStateBeforeStop"))
                .map(|r| super::save_state::SaveBeforeStop {
                    checkpointing: r.checkpointing.clone(),
                    wake: wake.clone(),
                    workers: n,
                });
            let mut out = SourceOutput::new(ingest_tx, local_wake);
            if let Some(r) = &recovery {
                let log = r
                    .checkpointing
                    .log()
                    .expect("a checkpointed run logs")
                    .clone();
                out = out.with_log(Arc::new(crate::checkpoint::LogWriter(log)));
                if !physical.joined.is_empty() || !physical.own_tables.is_empty() {
                    out = out.with_order(order);
                }
            }
            if ordered {
                // One worker reads every row: a source with a thread of its own (the file source)
                // decodes there, so decoding runs in parallel with that worker's windows (at qos
                // 1 and 2, the events its input log does not hold).
                out = out.with_decoder(dataflow_decoder);
            }
            let (source_handle, connection) = if stream.options.shared {
                let subscriber = Subscriber {
                    key: key.clone(),
                    out,
                    wake_all: Arc::new(move || (0..n).for_each(|i| wake_all(i))),
                    dropped: dropped.clone(),
                };
                let connection = self.join_shared(&stream.name, &spec, subscriber, queue)?;
                (SourceHandle::Shared(stream.name.clone()), connection)
            } else {
                let mut source = self.input_source(share.as_ref(), &spec, &entry.spec.id, &key)?;
                let connection = source.connection();
                let source_error = error.clone();
                let rule_id = entry.spec.id.clone();
                let replay = recovery.as_ref().map(|r| {
                    let log = r
                        .checkpointing
                        .log()
                        .expect("a checkpointed run logs")
                        .clone();
                    (
                        log,
                        r.positions.clone(),
                        replay_queues,
                        prepares,
                        replay_wake,
                    )
                });
                let last_checkpoint = recovery.as_ref().map(|r| r.checkpointing.clone());
                // In a cluster, a source read here alone tells the other processes when its
                // input ends, so their share of the dataflow ends too. (Of a shared input, every
                // process's source ends its own workers' input: a file's ranges once read.)
                // Split file input ends in every process by itself; the leader still says so,
                // with `split`, so a follower that read the input otherwise can tell.
                let split = matches!(share, Some(super::input_share::InputShare::FileRanges(_)));
                let announce_end = (self.cluster().is_some() && (!shared_input || split))
                    .then(|| (Arc::downgrade(&self.inner), key.clone()));
                // A follower's own source (a share of the input) reports its failure to the
                // leader, whose status answers for the cluster.
                let report_failure = self
                    .is_follower()
                    .then(|| (Arc::downgrade(&self.inner), key.clone()));
                let task = self.inner.runtime.spawn(async move {
                    // Keeps the queues open past the source's end until the input's last
                    // checkpoint is pending, so the workers meet it at the end of their queues.
                    let held_open = last_checkpoint.as_ref().map(|_| out.clone());
                    let replayed = match replay {
                        None => Ok(0),
                        Some((log, positions, queues, prepares, wake)) => {
                            tokio::task::spawn_blocking(move || {
                                super::recovery::replay(&log, &positions, &queues, &prepares, &wake)
                            })
                            .await
                            .unwrap_or_else(|e| Err(e.to_string()))
                        }
                    };
                    if replayed.is_ok() {
                        // The joined streams' sources may log and queue now.
                        let _ = replayed_tx.send(true);
                    }
                    let result = match replayed {
                        Ok(0) => source.run(out).await,
                        Ok(n) => {
                            tracing::info!(rule = %rule_id, "replayed {n} logged events after the last checkpoint");
                            source.run(out).await
                        }
                        Err(e) => Err(quiver_connectors::ConnectorError::Fatal {
                            connector: "input log".into(),
                            reason: format!("replay failed: {e}"),
                        }),
                    };
                    if result.is_ok()
                        && let Some(c) = &last_checkpoint
                    {
                        super::save_state::start_final(c, &rule_id).await;
                    }
                    drop(held_open);
                    // The error is recorded before the workers learn the input ended: the run may
                    // finish as soon as they do, and its status must then say why.
                    if let Err(e) = result
                        && !matches!(e, quiver_connectors::ConnectorError::Closed)
                    {
                        tracing::error!(rule = %rule_id, "source failed: {e}");
                        *source_error.lock().expect("error lock") = Some(e.to_string());
                        if let Some((engine, key)) = &report_failure
                            && let Some(inner) = engine.upgrade()
                        {
                            let error = e.to_string();
                            let report =
                                || Engine { inner }.report_source_failure(&rule_id, key, &error);
                            match tokio::runtime::Handle::try_current() {
                                Ok(h)
                                    if h.runtime_flavor()
                                        == tokio::runtime::RuntimeFlavor::MultiThread =>
                                {
                                    tokio::task::block_in_place(report)
                                }
                                _ => report(),
                            }
                        }
                    }
                    // The queues are closed now; wake every worker so each sees the end of its
                    // input, drops its capability and lets the results drain to the sinks.
                    drop(source);
                    for i in 0..n {
                        wake_all(i);
                    }
                    if let Some((engine, key)) = announce_end
                        && let Some(inner) = engine.upgrade()
                    {
                        Engine { inner }.announce_input_end(&rule_id, &key, split, spec_digest);
                    }
                });
                // A failed rule stops reading: its source ends, the workers see the end of input
                // and the run finishes, "stopped by error" with the panic's message.
                let (source_task, joined) = (
                    task.abort_handle(),
                    joined_tasks
                        .iter()
                        .map(tokio::task::JoinHandle::abort_handle)
                        .collect::<Vec<_>>(),
                );
                let watched = fault.clone();
                // Kept with the joined sources' tasks, so stopping the rule ends it too.
                joined_tasks.push(self.inner.runtime.spawn(async move {
                    watched.failed_wait().await;
                    source_task.abort();
                    joined.iter().for_each(tokio::task::AbortHandle::abort);
                }));
                if let Some(r) = &recovery {
                    joined_tasks.push(self.checkpoint_trigger(r, n, trigger_wake));
                }
                (SourceHandle::Own(task), connection)
            };
            (
                source_handle,
                connection,
                joined_tasks.into_inner(),
                save_before_stop,
            )
        };
        entry.run = Some(RuleRun {
            key,
            joined_tasks,
            connection,
            source_node: format!("source_{}", stream.name),
            metrics,
            source: source_handle,
            done: done_rx,
            error,
            late_rows,
            dropped,
            finished_at,
            in_flight,
            indexes: unbuilt.disarm(),
            discard_caches,
            checkpoint: recovery.map(|r| r.checkpointing),
            save_before_stop,
        });
        started(entry);
        Ok(())
    }

    /// What worker 0 gets for an event of the `source`-th stream joined to the rule: its rows
    /// decoded here (counted on the stream's node `metrics`), renamed `qualifier.column` and
    /// tagged with `source`. The same function prepares a logged event again on replay.
    fn joined_rows(
        &self,
        def: &StreamDef,
        qualifier: String,
        source: i64,
        event_time: bool,
        metrics: Arc<NodeMetrics>,
    ) -> Result<crate::checkpoint::PrepareJoined, EngineError> {
        let decoder = self.stream_decoder(def, false)?;
        let field = def.options.timestamp.clone().filter(|_| event_time);
        let name = def.name.clone();
        Ok(Arc::new(move |event: SourceEvent| {
            decoded_here(event, &decoder, &name, &metrics, |b| {
                crate::operators::join_streams::qualify(b, &qualifier, source, field.as_deref())
            })
        }))
    }

    /// True for a file source that deletes or moves its files once read (`actionAfterRead`).
    fn consumes_its_files(&self, entry: &RuleEntry, def: &StreamDef) -> bool {
        if def.options.source_type != "file" {
            return false;
        }
        let spec = self.rule_source_spec(entry, def);
        quiver_connectors::file::FileSourceConfig::parse_for_format(
            &spec.datasource,
            &spec.props,
            &spec.format,
        )
        .is_ok_and(|c| c.after_read != quiver_connectors::file::AfterRead::Keep)
    }

    /// Starts the source of a stream joined to a rule's FROM stream (or of a scan table the
    /// rule keeps its own copy of): `prepare` turns its events into rows, queued (`forward`)
    /// for worker 0 with the FROM stream's rows (a join's window runs there). The bounded
    /// queue holds the source back. With `logged` (qos 1 and 2) each event is written to
    /// worker 0's input log first, in turn with the FROM stream's events, and the source
    /// starts only once the log's replay is done.
    #[allow(clippy::too_many_arguments)]
    fn start_joined_source(
        &self,
        def: &StreamDef,
        spec: &quiver_connectors::SourceSpec,
        prepare: crate::checkpoint::PrepareJoined,
        forward: mpsc::Sender<SourceEvent>,
        wake: quiver_connectors::WakeFn,
        queue: usize,
        error: Arc<Mutex<Option<String>>>,
        logged: Option<JoinedLogging>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, EngineError> {
        let mut src = self.inner.connectors.source(spec)?;
        let name = def.name.clone();
        if let Some(logged) = logged {
            let out = SourceOutput::new(vec![forward], wake)
                .with_log(Arc::new(logged.writer))
                .with_order(logged.order);
            let mut replayed = logged.replayed;
            let reader = self.inner.runtime.spawn(async move {
                // A live event must not overtake a replayed one in worker 0's queue.
                if replayed.wait_for(|done| *done).await.is_err() {
                    return;
                }
                if let Err(e) = src.run(out).await
                    && !matches!(e, quiver_connectors::ConnectorError::Closed)
                {
                    tracing::error!(stream = %name, "joined source failed: {e}");
                    *error.lock().expect("error lock") = Some(e.to_string());
                }
            });
            return Ok(vec![reader]);
        }
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(queue);
        let out = SourceOutput::new(vec![tx], Arc::new(|_| {}));
        let reader = self.inner.runtime.spawn(async move {
            if let Err(e) = src.run(out).await
                && !matches!(e, quiver_connectors::ConnectorError::Closed)
            {
                tracing::error!(stream = %name, "joined source failed: {e}");
                *error.lock().expect("error lock") = Some(e.to_string());
            }
        });
        let feeder = self.inner.runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                if forward.send(prepare(event)).await.is_err() {
                    return;
                }
                wake(0);
            }
            // The input ended: let worker 0 see the queue close once every source has ended.
            drop(forward);
            wake(0);
        });
        Ok(vec![reader, feeder])
    }

    /// The directory of the sink caches; a rule that asks for one needs it.
    pub(super) fn cache_dir(&self) -> Result<std::path::PathBuf, EngineError> {
        self.inner.data_dir.clone().ok_or_else(|| {
            EngineError::Invalid(
                "sink property \"enableCache\" needs a data directory, which this engine was started without".into(),
            )
        })
    }

    /// Drops the cached pages of `rule`'s sinks other than `keep`, on a blocking thread (the
    /// rules lock is held here).
    pub(super) fn forget_caches(&self, rule: &str, keep: Vec<String>) {
        let Some(dir) = self.inner.data_dir.clone() else {
            return;
        };
        let rule = rule.to_string();
        self.inner.runtime.spawn_blocking(move || {
            if let Err(e) = crate::sink_cache::retain(&dir, &rule, &keep) {
                tracing::warn!("rule {rule}: {e}");
            }
        });
    }

    /// Stops the current run, if any: the source ends, the dataflow is dropped on every worker,
    /// and the sinks finish with what they already received.
    pub(super) fn teardown(&self, entry: &mut RuleEntry, message: &str) {
        self.forget_listing(&entry.spec.id);
        if let Some(run) = entry.run.take() {
            match &run.source {
                SourceHandle::Own(task) => task.abort(),
                SourceHandle::Shared(stream) => self.leave_shared(stream, &run.key),
                SourceHandle::Grouped(stream, group) => self.leave_group(stream, group, &run.key),
                // The queues close with the run.
                SourceHandle::Elsewhere(_) => {}
            }
            run.joined_tasks.iter().for_each(|t| t.abort());
            self.inner
                .workers
                .broadcast(|| Command::Drop(run.key.clone()));
            for index in &run.indexes {
                index.feed.release(index);
            }
            entry.last_metrics = Some(run.metrics);
            entry.last_stop_ms = now_ms();
            entry.stop_message = message.to_string();
            // A run that already ended by itself was logged then (by the supervisor).
            if entry.restart.handled_run.as_deref() != Some(run.key.as_str()) {
                transitions::log(&entry.spec.id, Change::Stopped(message));
            }
        }
    }
}

/// What worker 0 gets for an event of a scan table the rule keeps its own copy of (source
/// number `source`): its rows decoded as the table's shared feed decodes them (counted on the
/// table's source node `metrics`) and tagged with `source` (`tables::own`). The same on replay.
fn own_table_rows(
    def: &StreamDef,
    source: u32,
    metrics: Arc<NodeMetrics>,
) -> crate::checkpoint::PrepareJoined {
    // Tables are JSON only (the DDL refuses other formats on them).
    let decoder = quiver_connectors::codec::Decoder::json(
        quiver_connectors::codec::json::JsonDecoder::new(def.arrow_schema(), false),
    );
    let name = def.name.clone();
    Arc::new(move |event: SourceEvent| {
        match decoded_here(event, &decoder, &name, &metrics, |b| {
            crate::tables::own::tag(b, source)
        }) {
            // Every row was malformed: still a table event (no rows), not a stream's.
            SourceEvent::Decoded { decoded, .. } if decoded.batches.is_empty() => {
                SourceEvent::Decoded {
                    messages: 0,
                    decoded: Arc::new(quiver_connectors::codec::json::Decoded {
                        batches: vec![crate::tables::own::tag(
                            RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty())),
                            source,
                        )],
                        errors: Vec::new(),
                    }),
                }
            }
            e => e,
        }
    })
}

/// `event` decoded for worker 0 by the source task of a joined stream or own table `name`
/// (malformed messages counted on its node `metrics`), each batch passed through `then`.
fn decoded_here(
    event: SourceEvent,
    decoder: &quiver_connectors::codec::Decoder,
    name: &str,
    metrics: &NodeMetrics,
    then: impl Fn(RecordBatch) -> RecordBatch,
) -> SourceEvent {
    let started = std::time::Instant::now();
    let (messages, decoded) = event.decode(decoder);
    if let Some(first) = decoded.errors.first() {
        tracing::warn!(stream = %name, "dropping malformed messages: {first}");
        metrics.exceptions(decoded.errors.len(), first);
    }
    metrics.batch(messages, decoded.rows(), started);
    let batches: Vec<RecordBatch> = decoded.batches.iter().cloned().map(then).collect();
    // The failures were counted here, on the source's own node.
    SourceEvent::Decoded {
        messages: batches.iter().map(RecordBatch::num_rows).sum(),
        decoded: Arc::new(quiver_connectors::codec::json::Decoded {
            batches,
            errors: Vec::new(),
        }),
    }
}

/// How a joined stream's source logs at qos 1 and 2 (see [`Engine::start_joined_source`]).
struct JoinedLogging {
    writer: crate::checkpoint::JoinedLogWriter,
    /// Shared with the FROM stream's output: one writer of worker 0's log and queue at a time.
    order: Arc<tokio::sync::Mutex<()>>,
    /// Set once the input log's replay is done.
    replayed: watch::Receiver<bool>,
}

/// Records and logs the start of a run.
fn started(entry: &mut RuleEntry) {
    entry.last_start_ms = now_ms();
    entry.stop_message.clear();
    transitions::log(&entry.spec.id, Change::Started);
}

/// A rule run whose dataflow is built but whose launch has not finished: dropped while still
/// armed (the launch failed), it drops the dataflow on the workers and releases the table
/// indexes it counted on.
struct Unbuilt<'a> {
    workers: &'a Workers,
    key: String,
    indexes: Vec<crate::tables::feed::IndexSpec>,
    armed: bool,
}

impl Unbuilt<'_> {
    /// The launch succeeded: the run keeps its indexes.
    fn disarm(mut self) -> Vec<crate::tables::feed::IndexSpec> {
        self.armed = false;
        std::mem::take(&mut self.indexes)
    }
}

impl Drop for Unbuilt<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let key = self.key.clone();
        self.workers.broadcast(|| Command::Drop(key.clone()));
        for index in &self.indexes {
            index.feed.release(index);
        }
    }
}

/// Tasks started for a run that is being launched (the joined streams' sources): aborted when
/// the launch fails before the run holds them, since a dropped `JoinHandle` leaves its task
/// running (an MQTT connection, say, until a send fails).
#[derive(Default)]
struct Started(Vec<tokio::task::JoinHandle<()>>);

impl Started {
    /// The tasks, for the run to hold: no longer aborted here.
    fn into_inner(mut self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for Started {
    type Target = Vec<tokio::task::JoinHandle<()>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Started {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}
