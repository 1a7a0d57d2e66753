//! oms's Prometheus metrics: typed, labelled families in one `prometheus-client` registry,
//! rendered in the Prometheus text format 0.0.4 on scrape.
//!
//! Label values are closed sets (route templates, status codes, stages, codes), named by
//! enums, never by bare indices. Recording stays lock-free: counters and gauges are atomics
//! (`prometheus_client` types), the series of a family are resolved once (at start, or on
//! first use through a `OnceLock`) and kept as handles, and histograms are this module's
//! fixed-bucket atomic [`Histogram`], which implements the crate's `EncodeMetric`. The
//! registry's own locks are taken only at registration and on scrape.
//!
//! Counting rule: `oms_rejections_total{code}` counts rejections by their stable code, once
//! each: error answers at the edge that sends them ([`Metrics::reject`]), never also in the
//! stage that decided them; a place's risk rejection, whose 422 is the stored order answer
//! rather than an error, in the risk stage. A replayed stored answer is not counted again.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Route templates (the `route` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    PlaceOrder,
    GetOrder,
    ListOrders,
    CancelOrder,
    AmendOrder,
    Positions,
    Account,
    Symbols,
    Book,
    Trades,
    Candles,
    Halt,
    CancelAll,
    CancelAllAfter,
    BatchPlace,
    BatchCancel,
    GetByClientId,
    CancelByClientId,
    Audit,
    Cluster,
    Health,
    Ready,
    Metrics,
    OpenApi,
    Other,
}

impl Route {
    pub const ALL: [Route; 25] = [
        Route::PlaceOrder,
        Route::GetOrder,
        Route::ListOrders,
        Route::CancelOrder,
        Route::AmendOrder,
        Route::Positions,
        Route::Account,
        Route::Symbols,
        Route::Book,
        Route::Trades,
        Route::Candles,
        Route::Halt,
        Route::CancelAll,
        Route::CancelAllAfter,
        Route::BatchPlace,
        Route::BatchCancel,
        Route::GetByClientId,
        Route::CancelByClientId,
        Route::Audit,
        Route::Cluster,
        Route::Health,
        Route::Ready,
        Route::Metrics,
        Route::OpenApi,
        Route::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::PlaceOrder => "POST /api/orders",
            Route::GetOrder => "GET /api/orders/{orderId}",
            Route::ListOrders => "GET /api/orders",
            Route::CancelOrder => "DELETE /api/orders/{orderId}",
            Route::AmendOrder => "PATCH /api/orders/{orderId}",
            Route::Positions => "GET /api/positions",
            Route::Account => "GET /api/account",
            Route::Symbols => "GET /api/symbols",
            Route::Book => "GET /api/book/{symbol}",
            Route::Trades => "GET /api/trades/{symbol}",
            Route::Candles => "GET /api/candles/{symbol}",
            Route::Halt => "POST /api/admin/halt",
            Route::CancelAll => "DELETE /api/orders",
            Route::CancelAllAfter => "POST /api/orders/cancel-all-after",
            Route::BatchPlace => "POST /api/orders/batch",
            Route::BatchCancel => "DELETE /api/orders/batch",
            Route::GetByClientId => "GET /api/orders/by-client-id/{clientOrderId}",
            Route::CancelByClientId => "DELETE /api/orders/by-client-id/{clientOrderId}",
            Route::Audit => "GET /api/admin/audit",
            Route::Cluster => "GET /api/cluster",
            Route::Health => "GET /health",
            Route::Ready => "GET /ready",
            Route::Metrics => "GET /metrics",
            Route::OpenApi => "GET /openapi.json",
            Route::Other => "other",
        }
    }
}

/// Pipeline stages (the `stage` label of `oms_pipeline_stage_duration_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Validate,
    Idempotency,
    Risk,
    Publish,
    Process,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Validate,
        Stage::Idempotency,
        Stage::Risk,
        Stage::Publish,
        Stage::Process,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Idempotency => "idempotency",
            Stage::Risk => "risk",
            Stage::Publish => "publish",
            Stage::Process => "process",
        }
    }
}

/// Idempotency-key outcomes (the `result` label of `oms_idempotency_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdemResult {
    New,
    Replay,
    InFlight,
    Mismatch,
    /// The shared store failed; the local index decided.
    Fallback,
}

impl IdemResult {
    pub const ALL: [IdemResult; 5] = [
        IdemResult::New,
        IdemResult::Replay,
        IdemResult::InFlight,
        IdemResult::Mismatch,
        IdemResult::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdemResult::New => "new",
            IdemResult::Replay => "replay",
            IdemResult::InFlight => "in_flight",
            IdemResult::Mismatch => "mismatch",
            IdemResult::Fallback => "fallback",
        }
    }
}

/// HTTP statuses with a series of their own; anything else is `status="other"`.
const STATUSES: [u16; 13] = [
    200, 201, 400, 401, 404, 405, 409, 413, 415, 421, 422, 500, 503,
];

fn status_label(i: usize) -> &'static str {
    const LABELS: [&str; 14] = [
        "200", "201", "400", "401", "404", "405", "409", "413", "415", "421", "422", "500", "503",
        "other",
    ];
    LABELS[i]
}

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    route: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// Latency bucket bounds in nanoseconds: 10 µs … 10 s.
const LATENCY_NANOS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Count bucket bounds (batch sizes): 1 … 4096.
const COUNT_BOUNDS: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// A lock-free fixed-bucket histogram (latency in nanoseconds rendered as seconds, or plain
/// counts). Clones share the same buckets.
#[derive(Clone)]
pub struct Histogram(Arc<HistogramInner>);

struct HistogramInner {
    bounds: &'static [u64],
    /// Divisor applied when rendering (1e9 for nanoseconds → seconds, 1 for counts).
    unit: f64,
    /// One per bound plus +Inf.
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&LATENCY_NANOS, 1e9)
    }
}

impl Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    fn new(bounds: &'static [u64], unit: f64) -> Self {
        Histogram(Arc::new(HistogramInner {
            bounds,
            unit,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    /// A histogram of counts (batch sizes).
    pub fn counts() -> Self {
        Histogram::new(&COUNT_BOUNDS, 1.0)
    }

    pub fn observe(&self, d: Duration) {
        self.observe_raw(d.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// Records a raw value in the histogram's unit (nanoseconds or a count).
    pub fn observe_raw(&self, v: u64) {
        let h = &self.0;
        let i = h
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(h.bounds.len());
        h.buckets[i].fetch_add(1, Relaxed);
        h.sum.fetch_add(v, Relaxed);
        h.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Relaxed)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        // Per-bucket counts (the encoder accumulates); `+Inf` is written from `count`.
        let buckets: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let le = h
                    .bounds
                    .get(i)
                    .map_or(f64::INFINITY, |b| *b as f64 / h.unit);
                (le, c.load(Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = h.sum.load(Relaxed) as f64 / h.unit;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A metric whose value lives elsewhere (an adapter's counters) and is read on scrape.
pub struct MetricSource {
    name: String,
    help: String,
    kind: MetricType,
    read: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl MetricSource {
    /// A gauge read on scrape.
    pub fn gauge(
        name: impl Into<String>,
        help: impl Into<String>,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        MetricSource {
            name: name.into(),
            help: help.into(),
            kind: MetricType::Gauge,
            read: Box::new(read),
        }
    }

    /// A counter read on scrape; `name` without the `_total` suffix (it is added).
    pub fn counter(
        name: impl Into<String>,
        help: impl Into<String>,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        MetricSource {
            name: name.into(),
            help: help.into(),
            kind: MetricType::Counter,
            read: Box::new(move || read() as f64),
        }
    }
}

/// The adapters' [`MetricSource`]s, encoded by the registry on scrape.
#[derive(Clone, Default)]
struct Sources(Arc<parking_lot::Mutex<Vec<MetricSource>>>);

impl Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for s in self.0.lock().iter() {
            let v = (s.read)();
            let mut m = encoder.encode_descriptor(&s.name, &s.help, None, s.kind)?;
            if s.kind == MetricType::Counter {
                m.encode_counter::<NoLabelSet, _, u64>(&(v as u64), None)?;
            } else {
                m.encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

/// When the order log last failed / succeeded (ms since `epoch`); feeds `/ready` and
/// `oms_log_up`.
#[derive(Debug)]
pub struct LogHealth {
    pub failed_at_ms: AtomicU64,
    pub ok_at_ms: AtomicU64,
    epoch: Instant,
}

impl LogHealth {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// No failed append, or a success after it, or the failure is older than 5 s (so
    /// traffic can probe a recovered log).
    fn healthy(&self) -> bool {
        let failed = self.failed_at_ms.load(Relaxed);
        failed == 0 || self.ok_at_ms.load(Relaxed) > failed || self.now_ms() - failed > 5_000
    }
}

/// All of oms's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatusLabels, Counter>,
    request_handles: Vec<[OnceLock<Counter>; STATUSES.len() + 1]>,
    request_latency: Family<RouteLabels, Histogram>,
    request_latency_handles: Vec<OnceLock<Histogram>>,
    pub ack_latency: Histogram,
    stage_latency: [Histogram; Stage::ALL.len()],
    pub ring_in_flight: Gauge<i64, AtomicI64>,
    pub ring_full: Counter,
    idempotency: [Counter; IdemResult::ALL.len()],
    rejections: Family<CodeLabels, Counter>,
    rejection_handles: BTreeMap<&'static str, OnceLock<Counter>>,
    pub log_batch_size: Histogram,
    pub log_append_latency: Histogram,
    pub log_errors: Counter,
    log_health: Arc<LogHealth>,
    pub orders_accepted: Counter,
    pub executions: Counter,
    pub trades: Counter,
    pub processed_commands: Counter,
    pub replayed_commands: Counter,
    pub replay_seconds: Gauge<f64, AtomicU64>,
    pub event_sink_dropped: Counter,
    pub store_errors: Counter,
    pub abandoned: Counter,
    /// Open HTTP connections; connections refused at the cap; idle ones closed to admit new.
    pub http_connections: Gauge,
    pub http_connections_refused: Counter,
    pub http_connections_evicted: Counter,
    /// Orders the engine holds (open + the newest finished); finished orders archived;
    /// archive write failures (retried).
    pub orders_held: Gauge,
    /// Answered idempotency keys in the local index (16 bytes each; answers are on disk).
    pub idempotency_keys: Gauge,
    pub orders_archived: Counter,
    pub archive_errors: Counter,
    /// Cluster mode: takeovers that could not emit all of the previous leader's unemitted
    /// events (they were older than the kept window).
    pub cluster_emission_gaps: Counter,
    /// Cluster mode: places answered 503 with an unknown append outcome, waiting for the log
    /// to tell whether they were written.
    pub cluster_in_doubt: Gauge,
    /// Cluster mode: records the replica's reader delivered again (skipped).
    pub cluster_rereads: Counter,
    /// Snapshots written; snapshots that failed to write or were unusable at start.
    pub snapshots_written: Counter,
    pub snapshot_errors: Counter,
    /// Size of the last snapshot, and the time the snapshot thread took for it.
    pub snapshot_bytes: Gauge,
    pub snapshot_write_seconds: Gauge<f64, AtomicU64>,
    /// Time the processor spent capturing the last snapshot's state: commands wait
    /// meanwhile.
    pub snapshot_capture_seconds: Gauge<f64, AtomicU64>,
    /// Time the last image took to encode, on the processor or the snapshot thread
    /// (`--snapshot-encode`).
    pub snapshot_encode_seconds: Gauge<f64, AtomicU64>,
    /// Adapter metrics (Kafka, Redis, Mongo), read on scrape.
    pub extra: ExtraSources,
    /// Families rendered as text by their owner (the WebSocket fan-out's metrics), appended
    /// after the registry's.
    text_sources: parking_lot::Mutex<Vec<TextSource>>,
}

/// Writes complete metric families (HELP, TYPE, samples) in text format 0.0.4.
pub type TextSource = Box<dyn Fn(&mut String) + Send + Sync>;

/// Where adapters add their [`MetricSource`]s (`metrics.extra.lock().extend(…)`).
pub struct ExtraSources(Sources);

impl ExtraSources {
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, Vec<MetricSource>> {
        self.0.0.lock()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let requests = Family::<RouteStatusLabels, Counter>::default();
        r.register(
            "oms_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let request_latency = Family::<RouteLabels, Histogram>::default();
        r.register(
            "oms_http_request_duration_seconds",
            "HTTP request latency by route",
            request_latency.clone(),
        );
        let ack_latency = Histogram::default();
        r.register(
            "oms_ack_latency_seconds",
            "Time from request arrival to a durable acknowledgement",
            ack_latency.clone(),
        );
        let stages = Family::<StageLabels, Histogram>::default();
        r.register(
            "oms_pipeline_stage_duration_seconds",
            "Time a batch spends in each stage",
            stages.clone(),
        );
        let stage_latency =
            Stage::ALL.map(|s| stages.get_or_create_owned(&StageLabels { stage: s.as_str() }));
        let ring_in_flight = Gauge::<i64, AtomicI64>::default();
        r.register(
            "oms_ring_in_flight",
            "Commands in the ring or awaiting durability",
            ring_in_flight.clone(),
        );
        let ring_full = Counter::default();
        r.register(
            "oms_ring_full",
            "Requests refused because the ring stayed full",
            ring_full.clone(),
        );
        let idem = Family::<ResultLabels, Counter>::default();
        r.register("oms_idempotency", "Idempotency key outcomes", idem.clone());
        let idempotency =
            IdemResult::ALL.map(|x| idem.get_or_create_owned(&ResultLabels { result: x.as_str() }));
        let rejections = Family::<CodeLabels, Counter>::default();
        r.register(
            "oms_rejections",
            "Error answers by stable code (docs/errors.md), each counted once",
            rejections.clone(),
        );
        let rejection_handles = oms_core::RejectCode::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(oms_core::ValidationCode::ALL.iter().map(|c| c.as_str()))
            .chain(oms_wire::API_CODES.iter().copied())
            .map(|c| (c, OnceLock::new()))
            .collect();
        let log_batch_size = Histogram::counts();
        r.register(
            "oms_log_append_batch_size",
            "Commands per order-log append",
            log_batch_size.clone(),
        );
        let log_append_latency = Histogram::default();
        r.register(
            "oms_log_append_duration_seconds",
            "Order-log append latency (write + fsync or Kafka ack)",
            log_append_latency.clone(),
        );
        let log_health = Arc::new(LogHealth {
            failed_at_ms: AtomicU64::new(0),
            ok_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let sources = Sources::default();
        {
            let h = log_health.clone();
            sources.0.lock().push(MetricSource::gauge(
                "oms_log_up",
                "1 while the order log accepts appends (no failure since the last success, or none for 5 s), else 0",
                move || f64::from(u8::from(h.healthy())),
            ));
        }
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let log_errors = counter("oms_log_append_errors", "Failed order-log appends");
        let orders_accepted = counter("oms_orders_accepted", "Orders accepted and durable");
        let executions = counter("oms_executions", "Execution reports emitted");
        let trades = counter("oms_trades", "Trades matched");
        let processed_commands = counter(
            "oms_processed_commands",
            "Commands applied by the processor",
        );
        let replayed_commands = counter(
            "oms_replayed_commands",
            "Commands replayed from the log at start",
        );
        let event_sink_dropped = counter(
            "oms_event_sink_dropped",
            "Events dropped because an adapter queue was full",
        );
        let store_errors = counter(
            "oms_store_errors",
            "Errors from Redis/Mongo adapters (fallbacks taken)",
        );
        let http_connections_refused = counter(
            "oms_http_connections_refused",
            "Connections answered 503 and closed at the connection cap",
        );
        let http_connections_evicted = counter(
            "oms_http_connections_evicted",
            "Idle connections closed to admit a new one at the connection cap",
        );
        let orders_archived = counter(
            "oms_orders_archived",
            "Finished orders moved from memory to the archive",
        );
        let archive_errors = counter(
            "oms_archive_errors",
            "Failed archive writes (retried until they succeed)",
        );
        let cluster_emission_gaps = counter(
            "oms_cluster_emission_gaps",
            "Cluster takeovers that could not emit every event the previous leader had not",
        );
        let abandoned = counter(
            "oms_abandoned",
            "Requests answered 503 before their command was logged",
        );
        let snapshots_written = counter(
            "oms_snapshots_written",
            "Snapshots written by the processor",
        );
        let snapshot_errors = counter(
            "oms_snapshot_errors",
            "Snapshots that failed to write, or were unusable at start (an older one was used)",
        );
        let cluster_rereads = counter(
            "oms_cluster_replica_rereads",
            "Cluster mode: order-log records the replica's reader delivered a second time (skipped, never applied twice)",
        );
        let cluster_in_doubt = Gauge::default();
        r.register(
            "oms_cluster_in_doubt_places",
            "Cluster mode: places answered 503 with an unknown append outcome whose record or void this node's replica has not read yet",
            cluster_in_doubt.clone(),
        );
        let orders_held = Gauge::default();
        r.register(
            "oms_orders_held",
            "Orders held in memory: open ones and the newest finished ones",
            orders_held.clone(),
        );
        let idempotency_keys = Gauge::default();
        r.register(
            "oms_idempotency_keys",
            "Answered idempotency keys indexed in memory (their answers are in the on-disk answer store)",
            idempotency_keys.clone(),
        );
        let http_connections = Gauge::default();
        r.register(
            "oms_http_connections",
            "Open HTTP connections (under --max-connections)",
            http_connections.clone(),
        );
        let replay_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "oms_replay_duration_seconds",
            "Duration of the start-up replay of the order log",
            replay_seconds.clone(),
        );
        let snapshot_bytes = Gauge::default();
        r.register(
            "oms_snapshot_bytes",
            "Size of the last snapshot written",
            snapshot_bytes.clone(),
        );
        let snapshot_write_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "oms_snapshot_write_seconds",
            "Time the snapshot thread took for the last snapshot",
            snapshot_write_seconds.clone(),
        );
        let snapshot_capture_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "oms_snapshot_capture_seconds",
            "Time the processor spent capturing the state of the last snapshot (commands wait meanwhile)",
            snapshot_capture_seconds.clone(),
        );
        let snapshot_encode_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "oms_snapshot_encode_seconds",
            "Time the last snapshot image took to encode (on the processor or the snapshot thread, per --snapshot-encode)",
            snapshot_encode_seconds.clone(),
        );
        r.register_collector(Box::new(sources.clone()));
        Metrics {
            registry: r,
            requests,
            request_handles: Route::ALL
                .iter()
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
            request_latency,
            request_latency_handles: Route::ALL.iter().map(|_| OnceLock::new()).collect(),
            ack_latency,
            stage_latency,
            ring_in_flight,
            ring_full,
            idempotency,
            rejections,
            rejection_handles,
            log_batch_size,
            log_append_latency,
            log_errors,
            log_health,
            orders_accepted,
            executions,
            trades,
            processed_commands,
            replayed_commands,
            replay_seconds,
            event_sink_dropped,
            store_errors,
            abandoned,
            http_connections,
            http_connections_refused,
            http_connections_evicted,
            orders_held,
            idempotency_keys,
            orders_archived,
            archive_errors,
            cluster_emission_gaps,
            cluster_in_doubt,
            cluster_rereads,
            snapshots_written,
            snapshot_errors,
            snapshot_bytes,
            snapshot_write_seconds,
            snapshot_capture_seconds,
            snapshot_encode_seconds,
            extra: ExtraSources(sources),
            text_sources: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, route: Route, status: u16, latency: Duration) {
        let r = route as usize;
        let s = status_index(status);
        self.request_handles[r][s]
            .get_or_init(|| {
                self.requests.get_or_create_owned(&RouteStatusLabels {
                    route: route.label(),
                    status: status_label(s),
                })
            })
            .inc();
        self.request_latency_handles[r]
            .get_or_init(|| {
                self.request_latency.get_or_create_owned(&RouteLabels {
                    route: route.label(),
                })
            })
            .observe(latency);
    }

    /// Adds families a component renders itself (see [`TextSource`]).
    pub fn add_text_source(&self, f: TextSource) {
        self.text_sources.lock().push(f);
    }

    /// The latency histogram of one pipeline stage.
    pub fn stage(&self, stage: Stage) -> &Histogram {
        &self.stage_latency[stage as usize]
    }

    /// The counter of one idempotency outcome.
    pub fn idempotency(&self, result: IdemResult) -> &Counter {
        &self.idempotency[result as usize]
    }

    /// The order log's failure / success times.
    pub fn log_health(&self) -> &LogHealth {
        &self.log_health
    }

    /// Milliseconds since this process's metrics were created (never 0).
    pub fn now_ms(&self) -> u64 {
        self.log_health.now_ms()
    }

    /// Whether the order log is healthy for readiness (see [`LogHealth`]).
    pub fn log_healthy(&self) -> bool {
        self.log_health.healthy()
    }

    /// Counts one rejection by its code (see the module doc for who calls it).
    pub fn reject(&self, code: &str) {
        if let Some((c, h)) = self.rejection_handles.get_key_value(code) {
            h.get_or_init(|| self.rejections.get_or_create_owned(&CodeLabels { code: c }))
                .inc();
        }
    }

    /// Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(32 * 1024);
        if let Err(e) = prometheus_text::encode(&mut o, &self.registry) {
            tracing::error!(error = %e, "encoding /metrics");
        }
        for f in self.text_sources.lock().iter() {
            f(&mut o);
        }
        o
    }
}
