//! Builds what `oms serve` runs on from the flags: the order log (embedded journal or Kafka),
//! the Kafka event publisher, the shared Redis idempotency store and the MongoDB projection.
//!
//! Everything here is constructed on the main thread before the async runtime starts,
//! because the adapters block on runtimes of their own and refuse an async context.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use oms_core::{Event, InstrumentTable};
use oms_kafka::{EventPublisher, KafkaConfig, KafkaLog, StatsSnapshot};
use oms_mongo::{
    MongoAudit, MongoConfig, MongoOrderStore, Projector, ProjectorConfig, ProjectorSender,
};

use crate::audit::{AuditQuery, AuditSink, QueryFuture, Stored};
use oms_redis::{RedisConfig, RedisIdempotencyStore};

use oms_core::ports::{EventSink, OrderLog, OrderStore, SinkProgress, StoreError};
use oms_journal::{FsyncPolicy, Journal, JournalConfig};
use oms_wire::ApiError;

use crate::config::{FsyncMode, LogKind, QueryStore, ServeArgs};
use crate::telemetry::{self, RecordTraces, TraceParent};

pub use crate::metrics::MetricSource;

/// A readiness probe of one dependency: `(name, ok, detail)`.
pub type ReadyCheck = Box<dyn Fn() -> (&'static str, bool, String) + Send + Sync>;

/// The log, its recovered state, and what the adapters add.
pub struct Backends {
    pub log: Box<dyn OrderLog>,
    pub sinks: Vec<Box<dyn EventSink>>,
    pub ready_checks: Vec<ReadyCheck>,
    /// Cross-node idempotency (Redis), in front of the local index.
    pub shared_idempotency: Option<Box<dyn oms_core::ports::IdempotencyStore>>,
    /// A second handle on the same store, for the completion thread.
    pub shared_completion: Option<Box<dyn oms_core::ports::IdempotencyStore>>,
    /// Venue-wide copies of the audit records (Kafka `audit` topic, MongoDB `audit`).
    pub audit_sinks: Vec<Box<dyn AuditSink>>,
    /// Where `GET /api/admin/audit` reads every node's records (MongoDB).
    pub audit_query: Option<Arc<dyn AuditQuery>>,
    /// Traces on and the log is Kafka: where the publish stage puts each command's
    /// `traceparent` for its record header (see `telemetry`).
    pub record_traces: Option<RecordTraces>,
}

/// Audit records to `{prefix}audit`, keyed by account, as the API shows them.
struct KafkaAuditSink(oms_kafka::AuditProducer);

impl AuditSink for KafkaAuditSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write(&mut self, batch: &[Stored]) -> Result<(), String> {
        for s in batch {
            let json = serde_json::to_vec(s).map_err(|e| e.to_string())?;
            self.0.send(&s.record.account, &json);
        }
        Ok(())
    }
}

/// Audit records to the MongoDB `audit` collection (insert-or-ignore by node and seq).
struct MongoAuditSink(MongoAudit);

impl AuditSink for MongoAuditSink {
    fn name(&self) -> &'static str {
        "mongo"
    }

    fn write(&mut self, batch: &[Stored]) -> Result<(), String> {
        self.0.insert(batch).map_err(|e| e.to_string())
    }
}

/// Every node's audit records, read from MongoDB.
struct MongoAuditQuery(MongoAudit);

impl AuditQuery for MongoAuditQuery {
    fn name(&self) -> &'static str {
        "mongo"
    }

    fn query(&self, account: Option<String>, from: u64, limit: usize) -> QueryFuture {
        let a = self.0.clone();
        Box::pin(async move {
            a.query::<Stored>(account, from, limit)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Opens the embedded journal per the flags.
pub fn open_journal(args: &ServeArgs) -> anyhow::Result<Box<dyn OrderLog>> {
    let fsync = match args.fsync {
        FsyncMode::Batch => FsyncPolicy::EveryBatch,
        FsyncMode::Interval => FsyncPolicy::Interval(Duration::from_millis(args.fsync_interval_ms)),
        FsyncMode::Never => FsyncPolicy::Never,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let (journal, report) = Journal::open(
        &args.data_dir,
        JournalConfig {
            segment_bytes: args.segment_mib << 20,
            fsync,
        },
    )
    .with_context(|| format!("cannot open the journal in {}", args.data_dir.display()))?;
    if let Some(t) = &report.torn_tail {
        tracing::warn!(
            ?t,
            "journal had a torn tail (an unacknowledged write cut by a crash); truncated"
        );
    }
    tracing::info!(
        segments = report.segments,
        records = report.records,
        "journal opened"
    );
    Ok(Box::new(journal))
}

/// The Redis store, connected lazily: if Redis is down when oms starts, oms starts anyway
/// (the local index answers, counted as fallback) and a background thread keeps trying; the
/// stage picks the connection up as soon as it exists.
struct LazyRedis {
    store: Option<RedisIdempotencyStore>,
    rx: crossbeam_channel::Receiver<RedisIdempotencyStore>,
    stats: Arc<std::sync::OnceLock<Arc<oms_redis::RedisStats>>>,
}

impl LazyRedis {
    fn start(cfg: RedisConfig) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stats: Arc<std::sync::OnceLock<Arc<oms_redis::RedisStats>>> = Arc::default();
        let connect = {
            let stats = Arc::clone(&stats);
            move |cfg: &RedisConfig| match RedisIdempotencyStore::connect(cfg.clone()) {
                Ok(s) => {
                    let _ = stats.set(s.stats());
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(url = %cfg.url, error = %e, "Redis not reachable; using the local idempotency index until it is");
                    None
                }
            }
        };
        let store = connect(&cfg);
        if store.is_none() {
            let _ = std::thread::Builder::new()
                .name("oms-redis-connect".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(2));
                        if let Some(s) = connect(&cfg) {
                            tracing::info!(url = %cfg.url, "Redis connected");
                            let _ = tx.send(s);
                            return;
                        }
                    }
                });
        }
        LazyRedis { store, rx, stats }
    }

    fn get(&mut self) -> Result<&mut RedisIdempotencyStore, StoreError> {
        if self.store.is_none()
            && let Ok(s) = self.rx.try_recv()
        {
            self.store = Some(s);
        }
        self.store
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("Redis not connected yet".into()))
    }
}

impl oms_core::ports::IdempotencyStore for LazyRedis {
    fn claim_batch(
        &mut self,
        claims: &[oms_core::ports::ClaimRequest],
        now_ms: u64,
        out: &mut Vec<oms_core::ports::Claim>,
    ) -> Result<(), StoreError> {
        self.get()?.claim_batch(claims, now_ms, out)
    }

    fn complete_batch(
        &mut self,
        done: &[oms_core::ports::Completion],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.get()?.complete_batch(done, now_ms)
    }

    fn release_batch(&mut self, keys: &[oms_core::ports::IdemKey]) -> Result<(), StoreError> {
        self.get()?.release_batch(keys)
    }
}

/// A job for the query-store workers.
type StoreJob = Box<dyn FnOnce(&mut dyn OrderStore) + Send>;

/// A few plain OS threads, each with its own handle on the query store. The store blocks on
/// a runtime of its own and refuses to run on any tokio thread (blocking pool included), so
/// HTTP tasks hand it jobs here and await the answer.
pub struct StorePool {
    tx: crossbeam_channel::Sender<StoreJob>,
}

impl StorePool {
    pub fn new(threads: usize, make: impl Fn() -> Box<dyn OrderStore>) -> anyhow::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<StoreJob>(1024);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let mut store = make();
            std::thread::Builder::new()
                .name(format!("oms-store-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job(store.as_mut());
                    }
                })?;
        }
        Ok(StorePool { tx })
    }

    /// Runs `f` on a worker; 503 if the pool is saturated or the store does not answer.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn OrderStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: StoreJob = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        self.tx.try_send(job).map_err(|_| {
            ApiError::new(503, "OVERLOADED", "the order store is saturated").retry_after(1)
        })?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(r)) => r.map_err(store_error),
            _ => Err(
                ApiError::new(503, "OVERLOADED", "the order store did not answer in time")
                    .retry_after(1),
            ),
        }
    }
}

/// The Kafka settings implied by the flags.
pub fn kafka_config(args: &ServeArgs, brokers: &str) -> KafkaConfig {
    let mut k = KafkaConfig::new(brokers, args.kafka_topic_prefix.clone());
    k.linger = Duration::from_micros(args.kafka_linger_us);
    k.extra.clone_from(&args.kafka_options);
    k.ack_timeout = Duration::from_millis(args.ack_timeout_ms.clamp(100, 30_000));
    if args.cluster {
        // Transactions: see docs/scale-out.md, "In-doubt appends" — the design wants them,
        // the test broker (tansu 0.6) does not run them reliably, so they are opt-in.
        if args.cluster_transactions {
            k.transactional_id = Some(format!(
                "{}oms-{}",
                args.kafka_topic_prefix,
                args.node_name()
            ));
        }
        k.session_timeout = Duration::from_millis(args.cluster_session_timeout_ms.max(1000));
    }
    k
}

struct KafkaSink(EventPublisher);

impl EventSink for KafkaSink {
    fn publish(&mut self, events: &[Event]) {
        // Inside a traced command's `oms.project` span, its records carry the span's context.
        self.0
            .publish_traced(events, telemetry::projecting().map(TraceParent::to_text));
    }

    fn progress(&self) -> Option<SinkProgress> {
        let c = self.0.counters();
        Some(SinkProgress {
            accepted: c.enqueued.load(Ordering::Acquire),
            settled: c.settled.prefix(),
        })
    }
}

/// Feeds the projector through a counting sender, so its lag includes the events still
/// queued in the channel (all of them while MongoDB is down), not only the batch in hand.
struct MongoSink(ProjectorSender<Vec<Event>>);

impl EventSink for MongoSink {
    fn publish(&mut self, events: &[Event]) {
        let mut v = Vec::with_capacity(events.len());
        v.extend(
            events
                .iter()
                .filter(|e| matches!(e, Event::OrderUpdate { .. } | Event::Execution(_)))
                .cloned(),
        );
        if !v.is_empty() {
            // Unbounded on purpose: the projector must never skip an event; its lag is a metric.
            let _ = self.0.send(v);
        }
    }

    /// The projector writes its batches in order and retries until written, so `written`
    /// is a prefix of `queued`.
    fn progress(&self) -> Option<SinkProgress> {
        let s = self.0.stats();
        Some(SinkProgress {
            accepted: s.queued.load(Ordering::Acquire),
            settled: s.written.load(Ordering::Acquire),
        })
    }
}

/// The statistics of one librdkafka client (`name` = `orders` or `events`), read on scrape.
fn kafka_metrics(name: &str, stats: Arc<oms_kafka::KafkaStats>) -> Vec<MetricSource> {
    let read = move |f: fn(&StatsSnapshot) -> f64| {
        let stats = Arc::clone(&stats);
        move || f(&stats.snapshot())
    };
    vec![
        MetricSource::gauge(
            format!("oms_kafka_{name}_tx_messages"),
            format!("Messages sent by the {name} producer"),
            read(|s| s.txmsgs as f64),
        ),
        MetricSource::gauge(
            format!("oms_kafka_{name}_queue_messages"),
            "Messages waiting in librdkafka's queue",
            read(|s| s.msg_cnt as f64),
        ),
        MetricSource::gauge(
            format!("oms_kafka_{name}_broker_rtt_seconds"),
            "Mean broker round-trip time",
            read(|s| s.rtt_avg_us as f64 / 1e6),
        ),
        MetricSource::counter(
            format!("oms_kafka_{name}_tx_errors"),
            "Broker transmission errors",
            {
                let r = read(|s| s.tx_errors as f64);
                move || r() as u64
            },
        ),
        MetricSource::counter(
            format!("oms_kafka_{name}_errors"),
            "Client errors reported by librdkafka",
            {
                let r = read(|s| s.errors as f64);
                move || r() as u64
            },
        ),
    ]
}

/// Counters of the Redis idempotency store (all 0 until it first connects).
/// The Redis metrics of every connection oms holds (the idempotency stage's and the
/// completion thread's): counters and the write-back queue are summed; `connected` is 1 only
/// while all of them answer.
fn redis_metrics(
    stats: &[Arc<std::sync::OnceLock<Arc<oms_redis::RedisStats>>>],
) -> Vec<MetricSource> {
    let read = |f: fn(&oms_redis::RedisStats) -> u64| {
        let stats: Vec<_> = stats.to_vec();
        move || {
            stats
                .iter()
                .map(|s| s.get().map_or(0, |s| f(s)))
                .sum::<u64>()
        }
    };
    let all = stats.to_vec();
    vec![
        MetricSource::gauge(
            "oms_redis_connected",
            "1 while Redis answers the health probe (PING every 500 ms) on every connection, else 0",
            move || {
                f64::from(u8::from(all.iter().all(|s| {
                    s.get().is_some_and(|s| s.connected.load(Ordering::Relaxed))
                })))
            },
        ),
        MetricSource::counter(
            "oms_redis_errors",
            "Failed Redis idempotency batches (fallback to the local index)",
            read(|s| s.errors.load(Ordering::Relaxed)),
        ),
        MetricSource::counter(
            "oms_redis_timeouts",
            "Redis batches over their time bound",
            read(|s| s.timeouts.load(Ordering::Relaxed)),
        ),
        MetricSource::counter(
            "oms_redis_batches",
            "Pipelined Redis batches",
            read(|s| s.batches.load(Ordering::Relaxed)),
        ),
        MetricSource::counter(
            "oms_redis_writeback",
            "Completed idempotency records written back to Redis after it was down or slow",
            read(|s| s.written_back.load(Ordering::Relaxed)),
        ),
        MetricSource::gauge(
            "oms_redis_writeback_pending",
            "Completed idempotency records waiting to be written back to Redis",
            {
                let r = read(|s| s.writeback_pending.load(Ordering::Relaxed));
                move || r() as f64
            },
        ),
        MetricSource::counter(
            "oms_redis_writeback_dropped",
            "Completed records dropped from the full write-back queue",
            read(|s| s.writeback_dropped.load(Ordering::Relaxed)),
        ),
    ]
}

/// `oms_log_partitions_owned`: how many order-log partitions this node's processor applies.
fn partitions_owned(n: i32) -> MetricSource {
    MetricSource::gauge(
        "oms_log_partitions_owned",
        "Order-log partitions whose commands this node's processor applies",
        move || f64::from(n),
    )
}

/// Polls a dependency in the background so `/ready` never blocks on the network.
fn background_probe(
    name: &'static str,
    every: Duration,
    probe: impl Fn() -> bool + Send + 'static,
) -> Arc<AtomicBool> {
    let ok = Arc::new(AtomicBool::new(probe()));
    let flag = Arc::clone(&ok);
    let _ = std::thread::Builder::new()
        .name(format!("oms-probe-{name}"))
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                flag.store(probe(), Ordering::Relaxed);
            }
        });
    ok
}

/// Everything the flags ask for.
pub fn build(
    args: &ServeArgs,
    table: &InstrumentTable,
) -> anyhow::Result<(Backends, Vec<MetricSource>, Option<Arc<StorePool>>)> {
    let mut metric_sources: Vec<MetricSource> = Vec::new();
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    let mut ready_checks: Vec<ReadyCheck> = Vec::new();
    let mut audit_sinks: Vec<Box<dyn AuditSink>> = Vec::new();
    let mut audit_query: Option<Arc<dyn AuditQuery>> = None;
    let mut record_traces = None;

    let brokers = args
        .kafka_brokers
        .as_deref()
        .filter(|b| !b.trim().is_empty());
    let log: Box<dyn oms_core::ports::OrderLog> = match args.log {
        LogKind::Embedded => {
            metric_sources.push(partitions_owned(1));
            open_journal(args)?
        }
        LogKind::Kafka => {
            let brokers =
                brokers.context("--log kafka needs --kafka-brokers (OMS_KAFKA_BROKERS)")?;
            if args.kafka_create_topics {
                let created = oms_kafka::create_topics(
                    brokers,
                    &args.kafka_topic_prefix,
                    args.kafka_partitions,
                    args.kafka_replication,
                    args.kafka_min_insync,
                )
                .context("creating the Kafka topics")?;
                if !created.is_empty() {
                    tracing::info!(?created, "created Kafka topics");
                }
            }
            let kcfg = kafka_config(args, brokers);
            let mut log = KafkaLog::new(&kcfg, table).context("connecting the Kafka order log")?;
            if telemetry::enabled() {
                record_traces = Some(log.trace_headers());
            }
            metric_sources.extend(kafka_metrics("orders", log.stats()));
            // In-process topology: this node's processor applies every partition.
            metric_sources.push(partitions_owned(log.partitions()));
            tracing::info!(
                topic = log.topic(),
                partitions = log.partitions(),
                "order log on Kafka"
            );
            Box::new(log)
        }
    };
    if let Some(brokers) = brokers {
        let kcfg = kafka_config(args, brokers);
        let publisher = EventPublisher::new(&kcfg, Arc::new(table.clone()))
            .context("starting the Kafka event publisher")?;
        let counters = publisher.counters();
        metric_sources.extend(kafka_metrics("events", publisher.stats()));
        metric_sources.push(MetricSource::gauge(
            "oms_kafka_events_pending",
            "Events queued for Kafka, not yet acknowledged or failed",
            move || counters.pending() as f64,
        ));
        let counters = publisher.counters();
        metric_sources.push(MetricSource::counter(
            "oms_kafka_events_lost",
            "Events that will never reach the event topics: the publisher's queue was full, the \
             event could not be formatted, or its delivery failed after librdkafka's retries",
            move || {
                let r = Ordering::Relaxed;
                counters.queue_full.load(r)
                    + counters.dropped_invalid.load(r)
                    + counters.delivery_errors.load(r)
            },
        ));
        sinks.push(Box::new(KafkaSink(publisher)));
        let audit =
            oms_kafka::AuditProducer::new(&kcfg).context("starting the Kafka audit producer")?;
        let ac = audit.counters();
        metric_sources.push(MetricSource::counter(
            "oms_audit_kafka_failed",
            "Audit records the Kafka audit topic did not take (queue full or delivery failed); \
             they stay in the node's audit file",
            move || ac.failed.load(Ordering::Relaxed),
        ));
        audit_sinks.push(Box::new(KafkaAuditSink(audit)));
        let b = brokers.to_owned();
        let ok = background_probe("kafka", Duration::from_secs(2), move || {
            oms_kafka::wait_ready(&b, Duration::from_secs(1)).is_ok()
        });
        ready_checks.push(Box::new(move || {
            let good = ok.load(Ordering::Relaxed);
            (
                "kafka",
                good,
                if good {
                    "metadata ok".into()
                } else {
                    "broker not answering".into()
                },
            )
        }));
    }

    let mut shared_completion: Option<Box<dyn oms_core::ports::IdempotencyStore>> = None;
    let shared_idempotency: Option<Box<dyn oms_core::ports::IdempotencyStore>> =
        match args.redis_url.as_deref() {
            Some(url) if !url.trim().is_empty() => {
                let lazy = LazyRedis::start(RedisConfig::new(url));
                // A second connection for the completion thread (writes final answers as they
                // arrive, with its own write-back queue while Redis is away).
                let completer = LazyRedis::start(RedisConfig::new(url));
                metric_sources.extend(redis_metrics(&[
                    Arc::clone(&lazy.stats),
                    Arc::clone(&completer.stats),
                ]));
                tracing::info!(url, "shared idempotency on Redis");
                shared_completion = Some(Box::new(completer));
                Some(Box::new(lazy))
            }
            _ => None,
        };

    let mut store_pool: Option<Arc<StorePool>> = None;
    if let Some(url) = args.mongo_url.as_deref().filter(|u| !u.trim().is_empty()) {
        let mut cfg = MongoConfig::new(url);
        cfg.db = args.mongo_db.clone();
        let store = MongoOrderStore::connect(cfg, table.clone())
            .with_context(|| format!("connecting to MongoDB at {url}"))?;
        store.ensure_indexes().context("creating MongoDB indexes")?;
        let mstats = store.stats();
        if args.query_store == QueryStore::Mongo {
            let q = store.clone();
            store_pool = Some(Arc::new(StorePool::new(4, move || {
                Box::new(q.clone()) as Box<dyn OrderStore>
            })?));
        }
        let mut projector = Projector::new(store, ProjectorConfig::default());
        let (tx, rx) = projector.channel::<Vec<Event>>();
        let pstats = projector.stats();
        std::thread::Builder::new()
            .name("oms-mongo-projector".into())
            .spawn(move || {
                let exit = projector.run(&rx, |_| {});
                tracing::info!(?exit, "mongo projector stopped");
            })?;
        let lag = Arc::clone(&pstats);
        metric_sources.push(MetricSource::gauge(
            "oms_mongo_projection_lag_events",
            "Events sent to the MongoDB projector (queued or in hand) but not yet written",
            move || lag.lag() as f64,
        ));
        metric_sources.push(MetricSource::counter(
            "oms_mongo_projection_retries",
            "Projector write retries (MongoDB down or slow)",
            move || pstats.retries.load(Ordering::Relaxed),
        ));
        metric_sources.push(MetricSource::counter(
            "oms_mongo_errors",
            "MongoDB operation errors",
            move || mstats.errors.load(Ordering::Relaxed),
        ));
        sinks.push(Box::new(MongoSink(tx)));
        let mut acfg = MongoConfig::new(url);
        acfg.db = args.mongo_db.clone();
        let audit = MongoAudit::connect(acfg).context("opening the MongoDB audit collection")?;
        audit_sinks.push(Box::new(MongoAuditSink(audit.clone())));
        audit_query = Some(Arc::new(MongoAuditQuery(audit)));
        tracing::info!(url, db = %args.mongo_db, query_store = ?args.query_store, "MongoDB projection on");
    } else if args.query_store == QueryStore::Mongo {
        anyhow::bail!("--query-store mongo needs --mongo-url (OMS_MONGO_URL)");
    }

    Ok((
        Backends {
            log,
            sinks,
            ready_checks,
            shared_idempotency,
            shared_completion,
            audit_sinks,
            audit_query,
            record_traces,
        },
        metric_sources,
        store_pool,
    ))
}

/// Maps a store failure to an HTTP error.
pub fn store_error(e: StoreError) -> ApiError {
    ApiError::new(
        503,
        "OVERLOADED",
        format!("the order store is unavailable: {e}"),
    )
    .retry_after(1)
}
