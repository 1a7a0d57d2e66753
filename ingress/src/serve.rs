//! `oms serve`: recover state from the order log, start the processor and the ring, serve
//! HTTP until SIGTERM/SIGINT, then drain.
//!
//! Start-up order matters: the log is replayed into the engine and the idempotency index
//! *before* the listener opens, so the first request already sees every acknowledged order
//! and every stored idempotent answer.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use oms_core::idempotency::AnswerIndex;
use oms_core::ids::Clock as _;
use oms_core::ports::{Checkpoint, OrderLog};
use oms_core::{Engine, EngineConfig, InstrumentTable, Money, RiskConfig};
use oms_journal::{Retention, SnapshotStore};
use tokio::net::TcpListener;

use crate::archive::{ArchiveMsg, Archiver};
use crate::auth::{Authenticator, JwtSettings, JwtVerifier};
use crate::backends::{Backends, MetricSource, StorePool};
use crate::clock::SystemClock;
use crate::config::{AuthMode, RetentionMode, ServeArgs};
use crate::http::conn::ConnLimits;
use crate::http::limits::RateLimits;
use crate::http::{self, App, AppParts, ListenConfig};
use crate::metrics::Metrics;
use crate::pipeline::idempotency::IdempotencyStage;
use crate::pipeline::stages::{self, PublishConfig, PublishStage};
use crate::pipeline::{Pipeline, RingConfig, Stages};
use crate::processor;

/// Loads the instrument table from `--instruments` or the demo default.
pub fn instruments(path: Option<&Path>) -> anyhow::Result<InstrumentTable> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            InstrumentTable::from_toml(&text)
                .with_context(|| format!("bad instrument file {}", p.display()))
        }
        None => Ok(InstrumentTable::demo()),
    }
}

/// The engine configuration implied by the flags.
pub fn engine_config(args: &ServeArgs) -> anyhow::Result<EngineConfig> {
    let equity = Money::parse(&args.default_equity)
        .map_err(|e| anyhow::anyhow!("--default-equity {}: {e}", args.default_equity))?;
    Ok(EngineConfig {
        risk: RiskConfig {
            max_open_orders: args.max_open_orders,
            dev_default_equity: Some(equity),
            ..RiskConfig::default()
        },
        retain_terminal: args.retain_terminal_orders,
        ..EngineConfig::default()
    })
}

/// Replays the whole log into a fresh engine and the idempotency index over the answer
/// store in `answers_dir` (no snapshot); answers older than the TTL at `now_ms` are dropped.
pub fn recover(
    log: &mut dyn OrderLog,
    table: &InstrumentTable,
    cfg: EngineConfig,
    answers_dir: &std::path::Path,
    now_ms: u64,
    metrics: &Metrics,
) -> anyhow::Result<(Engine, AnswerIndex, oms_journal::AnswerStore, Checkpoint)> {
    let answers = crate::snapshots::AnswersAt {
        dir: answers_dir,
        now_ms,
    };
    let r = crate::snapshots::restore(
        log,
        table,
        cfg,
        crate::snapshots::Recovery::default(),
        answers,
        metrics,
        &mut |_| {},
    )?;
    Ok((r.engine, r.idem, r.answers, r.checkpoint))
}

/// Starts the archive thread of finished orders; it opens the file while the caller
/// recovers (see [`Archiver::open_in_background`]). A directory that cannot be created is
/// an error here; a file that cannot be opened is retried by the thread.
pub fn open_archive(
    args: &ServeArgs,
    table: &Arc<InstrumentTable>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Archiver> {
    let dir = args
        .archive_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("archive"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the archive directory {}", dir.display()))?;
    Ok(Archiver::open_in_background(
        dir.join("orders.redb"),
        Arc::clone(table),
        Arc::clone(metrics),
    )?)
}

/// The snapshot directory per the flags. A Kafka log's snapshots go to a subdirectory named
/// after its topic (and the mode: a cluster replica applies every partition's copy of an
/// all-partition command on its own, a single node applies one copy per batch): a checkpoint
/// is a position in one log, and a data directory reused with another log, topic prefix or
/// mode must never continue from it.
pub fn snapshot_store(args: &ServeArgs) -> anyhow::Result<SnapshotStore> {
    let mut dir = args
        .snapshot_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("snapshots"));
    if args.log == crate::config::LogKind::Kafka {
        let mode = if args.cluster { "cluster" } else { "kafka" };
        dir = dir.join(format!("{mode}-{}orders", args.kafka_topic_prefix));
    }
    SnapshotStore::open(&dir, args.snapshot_keep)
        .with_context(|| format!("cannot open the snapshot directory {}", dir.display()))
}

fn pin_plan(args: &ServeArgs) -> Vec<Option<usize>> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    args.pin_cores
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.trim().parse::<usize>() {
            Ok(c) if available.contains(&c) => Some(c),
            Ok(c) => {
                tracing::warn!(
                    core = c,
                    ?available,
                    "pin core not present; leaving that stage unpinned"
                );
                None
            }
            Err(_) => {
                tracing::warn!(value = %s, "pin core is not a number; ignored");
                None
            }
        })
        .collect()
}

/// Refuses flag combinations that cannot work. Called before any adapter starts.
pub fn check_settings(args: &ServeArgs) -> anyhow::Result<()> {
    if args.request_timeout_ms <= args.ack_timeout_ms {
        anyhow::bail!(
            "--request-timeout-ms ({}) must exceed --ack-timeout-ms ({}): an order must get its \
             bounded answer from the pipeline before the request is cut",
            args.request_timeout_ms,
            args.ack_timeout_ms
        );
    }
    Ok(())
}

/// The request authenticator the flags describe; fails on a weak secret or a bad key file.
/// Called before any adapter starts, so a bad setting stops `oms serve` at once.
pub fn authenticator(args: &ServeArgs) -> anyhow::Result<Arc<Authenticator>> {
    Ok(Arc::new(match args.auth {
        AuthMode::Off => Authenticator::Off,
        AuthMode::Jwt => Authenticator::Jwt(Box::new(JwtVerifier::new(&JwtSettings {
            secret: args.jwt_secret.clone(),
            jwks: args.jwt_jwks.clone(),
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            leeway_secs: args.jwt_leeway_secs,
        })?)),
    }))
}

/// Runs the server until a shutdown signal. `backends` is built by the caller (embedded
/// journal, or Kafka/Redis/Mongo when configured).
pub async fn run(
    args: ServeArgs,
    table: InstrumentTable,
    backends: Backends,
    metric_sources: Vec<MetricSource>,
    order_store: Option<Arc<StorePool>>,
    auth: Arc<Authenticator>,
) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    run_until(
        args,
        table,
        backends,
        metric_sources,
        order_store,
        auth,
        stop,
    )
    .await
}

/// [`run`], shutting down when `stop` completes instead of on a signal (in-process tests).
pub async fn run_until(
    args: ServeArgs,
    table: InstrumentTable,
    mut backends: Backends,
    metric_sources: Vec<MetricSource>,
    order_store: Option<Arc<StorePool>>,
    auth: Arc<Authenticator>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    if args.auth == AuthMode::Off {
        tracing::warn!(
            "auth is off: the account is taken from X-Account-Id (default 'demo'); do not expose this"
        );
    }
    let listen = ListenConfig {
        limits: ConnLimits {
            max_connections: connection_cap(args.max_connections),
            header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms.max(1)),
        },
        max_header_bytes: args.max_header_bytes,
    };
    let metrics = Arc::new(Metrics::default());
    metrics.extra.lock().extend(metric_sources);
    let cfg = engine_config(&args)?;
    let default_equity = cfg.risk.dev_default_equity;
    let store = snapshot_store(&args)?;
    let table = Arc::new(table);
    let archiver = open_archive(&args, &table, &metrics)?;
    let mut cluster = if args.cluster {
        Some(ClusterSetup::new(&args)?)
    } else {
        None
    };
    // Cluster mode: each copy of a command to its partition's books, as the replica does.
    let copies: Option<Vec<u32>> = cluster.as_ref().map(|c| {
        table
            .iter()
            .map(|i| c.cluster.symbol_partition(&i.symbol))
            .collect()
    });
    let restored = {
        let archiver = archiver.clone();
        crate::snapshots::restore(
            backends.log.as_mut(),
            &table,
            cfg,
            crate::snapshots::Recovery {
                store: Some(&store),
                copies: copies.as_deref(),
            },
            crate::snapshots::AnswersAt {
                dir: &args.data_dir.join("answers"),
                now_ms: SystemClock.now_nanos() / 1_000_000,
            },
            &metrics,
            &mut move |orders| archiver.send(ArchiveMsg::Put(orders)),
        )?
    };
    let (mut engine, mut idem) = (restored.engine, restored.idem);
    // publish → completer (stores answers) → idempotency stage.
    let (idem_tx, completer_rx) = crossbeam_channel::unbounded();
    let (stage_tx, idem_rx) = crossbeam_channel::unbounded();
    let answered_tx = stage_tx.clone();
    let answers = restored.answers.reader();
    let completer = crate::pipeline::idempotency::Completer::spawn(
        restored.answers,
        backends.shared_completion.take(),
        completer_rx,
        stage_tx,
        Arc::clone(&metrics),
    )?;
    engine.reserve(args.reserve_orders);
    idem.reserve(args.reserve_orders);
    let r1 = engine.risk().clone();
    if let Some(c) = cluster.as_mut() {
        c.start = restored.checkpoint.clone();
    }
    let cluster = cluster;
    let (stop_processor_tx, stop_processor_rx) = crossbeam_channel::bounded(1);
    let mut control = processor::Control {
        snapshots: None,
        stop: stop_processor_rx,
        archive: Some(archiver.clone()),
    };
    let mut replica_snapshots = None;
    let snapshot_config = crate::snapshots::SnapshotConfig {
        journal_root: (args.log == crate::config::LogKind::Embedded).then(|| args.data_dir.clone()),
        retention: match args.journal_retention {
            RetentionMode::Keep => Retention::Keep,
            RetentionMode::Delete => Retention::Delete,
            RetentionMode::Archive => Retention::Archive,
        },
    };
    // A cluster replica knows the exact offsets it applied and snapshots on its own; a single
    // node snapshots when its log reports positions. Either way one snapshot thread writes them.
    let snapshots_tx = if cluster.is_some() || backends.log.position().is_some() {
        Some(crate::snapshots::Snapshotter::spawn(
            store,
            Some(completer.clone()),
            snapshot_config,
            Arc::clone(&metrics),
        )?)
    } else {
        tracing::warn!(
            "this order log reports no positions: snapshots are off, start-up replays the whole log"
        );
        None
    };
    if let Some(tx) = snapshots_tx {
        if cluster.is_some() {
            replica_snapshots = Some(processor::replica::ReplicaSnapshots {
                tx,
                every_commands: args.snapshot_every_commands,
                every: Duration::from_secs(args.snapshot_every_secs),
                encode: args.snapshot_encode.resolve(),
                applied_before: restored.applied,
                tail: metrics.replayed_commands.get(),
            });
        } else {
            let (log, positions) = crate::snapshots::PositionedLog::new(backends.log);
            backends.log = Box::new(log);
            control.snapshots = Some(processor::SnapshotPlan {
                tx,
                positions,
                start: restored.checkpoint,
                applied_before: restored.applied,
                tail: metrics.replayed_commands.get(),
                every_commands: args.snapshot_every_commands,
                every: Duration::from_secs(args.snapshot_every_secs),
                encode: args.snapshot_encode.resolve(),
                archive: Some(archiver.clone()),
            });
        }
    }

    let (feedback_tx, feedback_rx) = crossbeam_channel::unbounded();
    let (processor_tx, processor_rx) = crossbeam_channel::unbounded();
    let (query_tx, query_rx) = crossbeam_channel::bounded(4096);

    let (ws, ws_sink) = crate::ws::start(
        args.ws.clone(),
        Arc::clone(&table),
        query_tx.clone(),
        Arc::clone(&auth),
        Arc::new(SystemClock),
        &metrics,
    )?;
    let ws_sink: Box<dyn oms_core::ports::EventSink> = Box::new(ws_sink);
    let (sinks, leader_sinks) = if cluster.is_some() {
        // Every node streams every event over WebSocket; only a partition's leader writes
        // its events to Kafka and MongoDB.
        (vec![ws_sink], std::mem::take(&mut backends.sinks))
    } else {
        backends.sinks.push(ws_sink);
        (std::mem::take(&mut backends.sinks), Vec::new())
    };

    let pins = pin_plan(&args);
    let processor_pin = pins.get(4).copied().flatten();
    let mut cluster_run = None;
    let (doubts_tx, doubts_rx) = crossbeam_channel::unbounded();
    {
        let metrics = Arc::clone(&metrics);
        let feedback_tx = feedback_tx.clone();
        let replica_plan = match &cluster {
            Some(c) => {
                let (records_tx, records_rx) = crossbeam_channel::bounded(64);
                let (takeover_tx, takeover_rx) = crossbeam_channel::unbounded();
                let replica =
                    crate::cluster::replica::Replica::start(&c.kafka, c.start.clone(), records_tx)?;
                let membership = crate::cluster::member::Membership::start(
                    &c.kafka,
                    Arc::clone(&c.cluster),
                    takeover_tx,
                )?;
                cluster_run = Some((membership, replica));
                Some(processor::replica::ReplicaPlan {
                    records: records_rx,
                    takeovers: takeover_rx,
                    cluster: Arc::clone(&c.cluster),
                    // Through the completer: it stores the answer bytes; the stage keeps
                    // 16 bytes per key pointing at them.
                    idem: idem_tx.clone(),
                    leader_sinks,
                    table: Arc::clone(&table),
                    start: c.start.clone(),
                    snapshots: replica_snapshots.take(),
                    doubts: doubts_rx,
                    keep: Duration::from_millis(args.ack_timeout_ms) * 2
                        + processor::replica::EARLY_KEEP,
                })
            }
            None => None,
        };
        std::thread::Builder::new()
            .name("oms-processor".into())
            .spawn(move || {
                if let Some(c) = processor_pin {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                match replica_plan {
                    Some(plan) => processor::replica::run(
                        engine,
                        processor_rx,
                        query_rx,
                        feedback_tx,
                        sinks,
                        metrics,
                        control.stop,
                        control.archive,
                        plan,
                    ),
                    None => processor::run(
                        engine,
                        processor_rx,
                        query_rx,
                        feedback_tx,
                        sinks,
                        metrics,
                        control,
                    ),
                }
            })?;
    }
    if let Some(c) = &cluster {
        let cl = Arc::clone(&c.cluster);
        backends.ready_checks.push(Box::new(move || {
            let owned = cl.owned();
            (
                "cluster",
                cl.is_ready(),
                format!("node {} leads partitions {owned:?}", cl.node),
            )
        }));
    }

    let publish = PublishStage::new(
        backends.log,
        Arc::clone(&table),
        Arc::clone(&metrics),
        idem_tx,
        feedback_tx,
        processor_tx,
        PublishConfig {
            max_batch: args.max_batch.max(1),
            max_in_flight: args.log_in_flight.max(2),
            test_stall: Duration::from_millis(args.test_stall_log_ms),
            answered_to: Some(answered_tx),
            doubts_to: cluster.is_some().then_some(doubts_tx),
            record_traces: backends.record_traces.take(),
        },
    );
    let ring_size = args.ring_size.max(64).next_power_of_two();
    let pipeline = Pipeline::start(
        RingConfig {
            size: ring_size,
            wait: args.wait_strategy,
            layout: args.stages,
            pin: pins.clone(),
            ack_timeout: Duration::from_millis(args.ack_timeout_ms),
            ring_full_wait: Duration::from_millis(args.ring_full_wait_ms),
        },
        Stages {
            validate: stages::validate_stage(Arc::clone(&table), Arc::clone(&metrics)),
            idempotency: IdempotencyStage::new(
                idem,
                answers,
                backends.shared_idempotency.take(),
                idem_rx,
                args.node_seed(),
                args.max_batch,
                Arc::clone(&metrics),
            ),
            risk: stages::risk_stage(r1, feedback_rx, Arc::clone(&metrics)),
            publish,
        },
        Arc::clone(&metrics),
    );

    let audit = match crate::audit::AuditLog::open_with(
        &args.data_dir.join("audit"),
        &args.node_name(),
        std::mem::take(&mut backends.audit_sinks),
        backends.audit_query.clone(),
    ) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "audit log not writable; keeping it in memory only");
            crate::audit::AuditLog::in_memory()
        }
    };
    {
        let copied = audit.sink_stats();
        let failed = audit.sink_stats();
        metrics.extra.lock().extend([
            MetricSource::counter(
                "oms_audit_copied",
                "Audit records copied to a venue-wide store (Kafka topic, MongoDB), once per store",
                move || copied.written.load(std::sync::atomic::Ordering::Relaxed),
            ),
            MetricSource::counter(
                "oms_audit_copy_failures",
                "Audit records a venue-wide store did not take after retries, or that found the \
                 copy queue full (the node's audit file holds them)",
                move || failed.failed.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ]);
    }
    let app = Arc::new(App::new(AppParts {
        table: Arc::clone(&table),
        pipeline,
        queries: query_tx,
        metrics: Arc::clone(&metrics),
        auth,
        limits: RateLimits::new(args.rate_limit_orders.0, args.rate_limit_queries.0),
        clock: Arc::new(SystemClock),
        max_body: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        ready_checks: std::mem::take(&mut backends.ready_checks),
        node_id: args.node_seed(),
        default_equity,
        order_store,
        archive: Some(archiver.clone()),
        trading: http::venue::Trading {
            deadman: Default::default(),
            audit,
            max_batch_items: args.max_batch_orders as usize,
        },
        ws,
        forwarder: cluster.as_ref().map(|c| {
            http::forward::Forwarder::new(
                Arc::clone(&c.cluster),
                Duration::from_millis(args.request_timeout_ms),
            )
        }),
    }));

    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        Arc::clone(&app),
        listen,
        stop_rx.clone(),
    ));
    tokio::spawn(http::cancel_all::run_timer(Arc::clone(&app), stop_rx));
    app.set_ws_on_close(http::cancel_all::on_disconnect(Arc::downgrade(&app)));
    {
        // Rate-limit state of accounts gone quiet is dropped, so it follows active accounts.
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                app.prune_rate_limits();
            }
        });
    }
    app.set_ready(true);
    tracing::info!(%addr, log = ?args.log, ring = ring_size, startup_ms = t0.elapsed().as_millis() as u64, "listening");
    eprintln!("listening on http://{addr}");

    stop.await;
    let stop_started = Instant::now();
    tracing::info!(
        drain_ms = args.shutdown_drain_ms,
        "shutting down: readiness off, draining"
    );
    app.set_ready(false);
    let replica = match cluster_run.take() {
        Some((membership, replica)) => {
            // Hand the led partitions to the other nodes now (the revoke waits for the
            // requests already admitted), not after the session timeout.
            let _ = tokio::task::spawn_blocking(move || membership.stop()).await;
            Some(replica)
        }
        None => None,
    };
    tokio::time::sleep(Duration::from_millis(args.shutdown_drain_ms)).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    app.close_pipeline();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.ring_in_flight.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything acknowledged is in the log; the processor applies what is queued and
    // writes a final snapshot so the next start replays (almost) nothing.
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    if stop_processor_tx.send(done_tx).is_ok() {
        let _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(30)))
            .await;
    }
    if let Some(r) = replica {
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    // No claim of this node stays `pending` in the shared store after it stops, and every
    // answer is on disk.
    let _ = tokio::task::spawn_blocking(move || completer.sync(Duration::from_secs(2))).await;
    let _ = tokio::task::spawn_blocking(move || archiver.close(Duration::from_secs(2))).await;
    tracing::info!(
        stop_ms = stop_started.elapsed().as_millis() as u64,
        "stopped"
    );
    Ok(())
}

/// What cluster mode needs before the processor starts.
struct ClusterSetup {
    kafka: oms_kafka::KafkaConfig,
    cluster: Arc<crate::cluster::Cluster>,
    /// Where the replica's reader starts: where recovery ended.
    start: Checkpoint,
}

impl ClusterSetup {
    /// `start` is set once recovery has ended.
    fn new(args: &ServeArgs) -> anyhow::Result<ClusterSetup> {
        let brokers = args
            .kafka_brokers
            .as_deref()
            .context("--cluster needs --log kafka and --kafka-brokers")?;
        anyhow::ensure!(
            args.log == crate::config::LogKind::Kafka,
            "--cluster needs --log kafka: the nodes share the Kafka order log"
        );
        let kafka = crate::backends::kafka_config(args, brokers);
        let partitions = oms_kafka::orders_partitions(&kafka)?;
        anyhow::ensure!(
            (1..=crate::cluster::MAX_PARTITIONS).contains(&partitions),
            "cluster mode supports 1..={} partitions of the orders topic, found {partitions}",
            crate::cluster::MAX_PARTITIONS
        );
        let cluster = Arc::new(crate::cluster::Cluster::new(
            args.node_name(),
            args.advertised_url(),
            partitions,
        ));
        tracing::info!(node = %cluster.node, url = %cluster.url, partitions, "cluster mode");
        Ok(ClusterSetup {
            kafka,
            cluster,
            start: Checkpoint::start(),
        })
    }
}

/// The connection cap: as configured, but below the process's open-file limit (minus room for
/// the journal, adapters and the listener), so accepting never fails with EMFILE.
fn connection_cap(configured: usize) -> usize {
    const RESERVE: u64 = 256;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` struct through a valid, exclusive pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return configured.max(1);
    }
    let room = lim.rlim_cur.saturating_sub(RESERVE).max(16) as usize;
    if configured > room {
        tracing::warn!(
            configured,
            open_files = lim.rlim_cur,
            cap = room,
            "--max-connections lowered to fit the open-file limit (ulimit -n)"
        );
    }
    configured.min(room).max(1)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use oms_core::command::{Command, PlaceOrder, RiskDecision};
    use oms_core::ports::{IdemKey, LogError};
    use oms_core::{AccountId, IdempotencyKey, OrderId, OrderRequest, VoidOrder, validate};

    use super::*;

    struct VecLog(Vec<Command>);

    impl OrderLog for VecLog {
        fn append(&mut self, batch: &[Command]) -> Result<(), LogError> {
            self.0.extend_from_slice(batch);
            Ok(())
        }
        fn replay(
            &mut self,
            _: &Checkpoint,
            visit: &mut dyn FnMut(&Command),
        ) -> Result<Checkpoint, LogError> {
            self.0.iter().for_each(visit);
            Ok(Checkpoint::start())
        }
    }

    fn place(table: &InstrumentTable, id: u128, key: &str, ts: u64) -> Command {
        let order = validate(
            table,
            &OrderRequest {
                symbol: "BTC/USD",
                side: "BUY",
                quantity: "0.1",
                price: Some("45000"),
                ..Default::default()
            },
        )
        .unwrap();
        Command::Place(PlaceOrder {
            order_id: OrderId(id),
            account: AccountId::new("a").unwrap(),
            order,
            ts,
            idempotency_key: Some(IdempotencyKey::new(key).unwrap()),
            fingerprint: 1,
            correlation_id: None,
            risk: RiskDecision::Unchecked,
        })
    }

    #[test]
    fn recovery_skips_voided_commands_and_keeps_the_rest() {
        let table = InstrumentTable::demo();
        let voided = place(&table, 1, "k1", 10);
        let kept = place(&table, 2, "k2", 20);
        let mut log = VecLog(vec![
            voided,
            kept,
            Command::Void(VoidOrder::of(&voided).unwrap()),
        ]);
        let metrics = Metrics::default();
        let dir = tempfile::tempdir().unwrap();
        let (engine, mut idem, answers, _) = recover(
            &mut log,
            &table,
            EngineConfig::default(),
            dir.path(),
            30,
            &metrics,
        )
        .unwrap();
        assert!(
            engine.order(OrderId(1)).is_none(),
            "a voided place must never execute"
        );
        assert!(engine.order(OrderId(2)).is_some());
        let key = |key: &str| IdemKey {
            account: AccountId::new("a").unwrap(),
            key: IdempotencyKey::new(key).unwrap(),
        };
        assert_eq!(
            idem.claim(&key("k1"), 1, 30, &answers),
            oms_core::ports::Claim::New,
            "the voided key is free for a retry"
        );
        assert!(matches!(
            idem.claim(&key("k2"), 1, 30, &answers),
            oms_core::ports::Claim::Replay(_)
        ));
    }
}
