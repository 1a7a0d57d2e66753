//! Prometheus metrics without locks: fixed label sets, atomic counters and fixed-bucket
//! histograms, rendered to text format 0.0.4 on scrape.
//!
//! Label values are closed sets (route templates, status codes, stages, codes), so every
//! series is a preallocated atomic and recording one is a relaxed `fetch_add`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    Health,
    Ready,
    Metrics,
    OpenApi,
    Other,
}

impl Route {
    pub const ALL: [Route; 17] = [
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
            Route::Health => "GET /health",
            Route::Ready => "GET /ready",
            Route::Metrics => "GET /metrics",
            Route::OpenApi => "GET /openapi.json",
            Route::Other => "other",
        }
    }
}

const STATUSES: [u16; 14] = [
    200, 201, 400, 401, 404, 405, 409, 413, 415, 421, 422, 500, 503, 0,
];

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len() - 1)
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

/// A fixed-bucket histogram (latency in nanoseconds rendered as seconds, or plain counts).
pub struct Histogram {
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

impl Histogram {
    fn new(bounds: &'static [u64], unit: f64) -> Self {
        Histogram {
            bounds,
            unit,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
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
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, c) in self.buckets.iter().enumerate() {
            cum += c.load(Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => format!("{}", *b as f64 / self.unit),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let sum = self.sum.load(Relaxed) as f64 / self.unit;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count.load(Relaxed));
    }
}

/// Renders extra series on scrape (adapter gauges and counters).
pub type MetricSource = Box<dyn Fn(&mut String) + Send + Sync>;

/// Pipeline stages (the `stage` label).
pub const STAGES: [&str; 5] = ["validate", "idempotency", "risk", "publish", "process"];

/// Idempotency outcomes (the `result` label).
pub const IDEM_RESULTS: [&str; 5] = ["new", "replay", "in_flight", "mismatch", "fallback"];

/// All of oms's metrics.
pub struct Metrics {
    requests: Vec<[AtomicU64; STATUSES.len()]>,
    request_latency: Vec<Histogram>,
    pub ack_latency: Histogram,
    pub stage_latency: [Histogram; 5],
    pub ring_in_flight: AtomicI64,
    pub ring_full: AtomicU64,
    pub idempotency: [AtomicU64; 5],
    rejections: std::collections::BTreeMap<&'static str, AtomicU64>,
    pub log_batch_size: Histogram,
    pub log_append_latency: Histogram,
    pub log_errors: AtomicU64,
    /// Milliseconds (since `epoch`) of the last failed / successful append; feeds `/ready`.
    pub log_failed_at_ms: AtomicU64,
    pub log_ok_at_ms: AtomicU64,
    pub epoch: std::time::Instant,
    pub orders_accepted: AtomicU64,
    pub executions: AtomicU64,
    pub trades: AtomicU64,
    pub processed_commands: AtomicU64,
    pub replayed_commands: AtomicU64,
    pub replay_millis: AtomicU64,
    pub event_sink_dropped: AtomicU64,
    pub store_errors: AtomicU64,
    pub abandoned: AtomicU64,
    /// Snapshots written, failed (write or unusable at start), last size and write time.
    pub snapshots_written: AtomicU64,
    pub snapshot_errors: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub snapshot_write_millis: AtomicU64,
    /// Extra text appended on scrape by adapters (Kafka, Redis, Mongo gauges).
    pub extra: parking_lot::Mutex<Vec<MetricSource>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut rejections = std::collections::BTreeMap::new();
        for c in oms_core::RejectCode::ALL {
            rejections.insert(c.as_str(), AtomicU64::new(0));
        }
        for c in oms_core::ValidationCode::ALL {
            rejections.insert(c.as_str(), AtomicU64::new(0));
        }
        for c in crate::http::error::API_CODES {
            rejections.insert(c, AtomicU64::new(0));
        }
        Metrics {
            requests: Route::ALL
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            request_latency: Route::ALL.iter().map(|_| Histogram::default()).collect(),
            ack_latency: Histogram::default(),
            stage_latency: std::array::from_fn(|_| Histogram::default()),
            ring_in_flight: AtomicI64::new(0),
            ring_full: AtomicU64::new(0),
            idempotency: std::array::from_fn(|_| AtomicU64::new(0)),
            rejections,
            log_batch_size: Histogram::counts(),
            log_append_latency: Histogram::default(),
            log_errors: AtomicU64::new(0),
            log_failed_at_ms: AtomicU64::new(0),
            log_ok_at_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            orders_accepted: AtomicU64::new(0),
            executions: AtomicU64::new(0),
            trades: AtomicU64::new(0),
            processed_commands: AtomicU64::new(0),
            replayed_commands: AtomicU64::new(0),
            replay_millis: AtomicU64::new(0),
            event_sink_dropped: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            snapshots_written: AtomicU64::new(0),
            snapshot_errors: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            snapshot_write_millis: AtomicU64::new(0),
            extra: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, route: Route, status: u16, latency: Duration) {
        let r = route as usize;
        self.requests[r][status_index(status)].fetch_add(1, Relaxed);
        self.request_latency[r].observe(latency);
    }

    /// Milliseconds since this process's metrics were created (never 0).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether the order log is healthy for readiness: no failed append, or a success after
    /// it, or the failure is older than 5 s (so traffic can probe a recovered log).
    pub fn log_healthy(&self) -> bool {
        let failed = self.log_failed_at_ms.load(Relaxed);
        failed == 0 || self.log_ok_at_ms.load(Relaxed) > failed || self.now_ms() - failed > 5_000
    }

    pub fn reject(&self, code: &str) {
        if let Some(c) = self.rejections.get(code) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .flat_map(|r| r.iter())
            .map(|c| c.load(Relaxed))
            .sum()
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(32 * 1024);
        o.push_str("# HELP oms_http_requests_total HTTP requests by route and status.\n");
        o.push_str("# TYPE oms_http_requests_total counter\n");
        for route in Route::ALL {
            for (i, s) in STATUSES.iter().enumerate() {
                let v = self.requests[route as usize][i].load(Relaxed);
                if v > 0 {
                    let status = if *s == 0 {
                        "other".to_owned()
                    } else {
                        s.to_string()
                    };
                    let _ = writeln!(
                        o,
                        "oms_http_requests_total{{route=\"{}\",status=\"{status}\"}} {v}",
                        route.label()
                    );
                }
            }
        }
        o.push_str("# HELP oms_http_request_duration_seconds HTTP request latency by route.\n");
        o.push_str("# TYPE oms_http_request_duration_seconds histogram\n");
        for route in Route::ALL {
            let h = &self.request_latency[route as usize];
            if h.count.load(Relaxed) > 0 {
                h.render(
                    &mut o,
                    "oms_http_request_duration_seconds",
                    &format!("route=\"{}\"", route.label()),
                );
            }
        }
        o.push_str("# HELP oms_ack_latency_seconds Time from request arrival to a durable acknowledgement.\n");
        o.push_str("# TYPE oms_ack_latency_seconds histogram\n");
        self.ack_latency
            .render(&mut o, "oms_ack_latency_seconds", "");
        o.push_str(
            "# HELP oms_pipeline_stage_duration_seconds Time a batch spends in each stage.\n",
        );
        o.push_str("# TYPE oms_pipeline_stage_duration_seconds histogram\n");
        for (i, s) in STAGES.iter().enumerate() {
            self.stage_latency[i].render(
                &mut o,
                "oms_pipeline_stage_duration_seconds",
                &format!("stage=\"{s}\""),
            );
        }
        gauge(
            &mut o,
            "oms_ring_in_flight",
            "Commands in the ring or awaiting durability.",
            self.ring_in_flight.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_ring_full_total",
            "Requests refused because the ring stayed full.",
            self.ring_full.load(Relaxed),
        );
        o.push_str("# HELP oms_idempotency_total Idempotency key outcomes.\n# TYPE oms_idempotency_total counter\n");
        for (i, r) in IDEM_RESULTS.iter().enumerate() {
            let _ = writeln!(
                o,
                "oms_idempotency_total{{result=\"{r}\"}} {}",
                self.idempotency[i].load(Relaxed)
            );
        }
        o.push_str("# HELP oms_rejections_total Rejections and errors by stable code.\n# TYPE oms_rejections_total counter\n");
        for (code, c) in &self.rejections {
            let v = c.load(Relaxed);
            if v > 0 {
                let _ = writeln!(o, "oms_rejections_total{{code=\"{code}\"}} {v}");
            }
        }
        o.push_str("# HELP oms_log_append_batch_size Commands per order-log append.\n# TYPE oms_log_append_batch_size histogram\n");
        self.log_batch_size
            .render(&mut o, "oms_log_append_batch_size", "");
        o.push_str("# HELP oms_log_append_duration_seconds Order-log append latency (write + fsync or Kafka ack).\n# TYPE oms_log_append_duration_seconds histogram\n");
        self.log_append_latency
            .render(&mut o, "oms_log_append_duration_seconds", "");
        counter(
            &mut o,
            "oms_log_append_errors_total",
            "Failed order-log appends.",
            self.log_errors.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_orders_accepted_total",
            "Orders accepted and durable.",
            self.orders_accepted.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_executions_total",
            "Execution reports emitted.",
            self.executions.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_trades_total",
            "Trades matched.",
            self.trades.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_processed_commands_total",
            "Commands applied by the processor.",
            self.processed_commands.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_replayed_commands_total",
            "Commands replayed from the log at start.",
            self.replayed_commands.load(Relaxed),
        );
        let _ = write!(
            o,
            "# HELP oms_replay_duration_seconds Duration of the start-up replay of the order log.\n\
             # TYPE oms_replay_duration_seconds gauge\noms_replay_duration_seconds {}\n",
            self.replay_millis.load(Relaxed) as f64 / 1e3
        );
        counter(
            &mut o,
            "oms_snapshots_written_total",
            "Snapshots written by the processor.",
            self.snapshots_written.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_snapshot_errors_total",
            "Snapshots that failed to write, or were unusable at start (an older one was used).",
            self.snapshot_errors.load(Relaxed),
        );
        let _ = write!(
            o,
            "# HELP oms_snapshot_bytes Size of the last snapshot written.
             # TYPE oms_snapshot_bytes gauge
oms_snapshot_bytes {}
             # HELP oms_snapshot_write_seconds Time the snapshot thread took for the last one.
             # TYPE oms_snapshot_write_seconds gauge
oms_snapshot_write_seconds {}
",
            self.snapshot_bytes.load(Relaxed),
            self.snapshot_write_millis.load(Relaxed) as f64 / 1e3
        );
        counter(
            &mut o,
            "oms_event_sink_dropped_total",
            "Events dropped because an adapter queue was full.",
            self.event_sink_dropped.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_store_errors_total",
            "Errors from Redis/Mongo adapters (fallbacks taken).",
            self.store_errors.load(Relaxed),
        );
        counter(
            &mut o,
            "oms_abandoned_total",
            "Requests answered 503 before their command was logged.",
            self.abandoned.load(Relaxed),
        );
        for f in self.extra.lock().iter() {
            f(&mut o);
        }
        o
    }
}

/// Writes one counter with HELP and TYPE.
pub fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = write!(
        o,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
    );
}

/// Writes one gauge with HELP and TYPE.
pub fn gauge(o: &mut String, name: &str, help: &str, v: i64) {
    let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
}
