//! The HTTP front: hyper 1 (HTTP/1.1 keep-alive and HTTP/2) under a stack of tower layers
//! (`layers.rs`: correlation id, routing, logging and metrics, timeout, auth, rate limit,
//! body limit) over thin route handlers, with connection-level limits in `conn.rs`.
//!
//! Handlers parse, submit to the ring or query the processor, and return an [`Answer`] or an
//! [`ApiError`]; everything they render is an `oms-wire` type.

// Errors travel by value: they are the rare path, and boxing them would add an allocation
// to every rejected request for no gain.
#![allow(clippy::result_large_err)]

pub mod assets;

pub mod archived;
pub mod batch;
pub mod body;
pub mod cancel_all;
pub mod conn;
pub mod forward;
#[cfg(test)]
mod fuzz;
pub mod layers;
pub mod limits;
pub mod market;
pub mod ops;
pub mod orders;
pub mod router;
pub mod venue;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use oms_core::engine::Engine;
use oms_core::{InstrumentTable, Money};
use oms_wire::ApiError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_service::Service as _;

use self::body::Body;
use self::conn::{ConnLimits, Registry};
use self::limits::RateLimits;
use self::router::Router;
use crate::auth::Authenticator;
use crate::backends::{ReadyCheck, StorePool};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::processor::Query;

pub use self::layers::Ctx;

/// Everything a request handler needs. Built once by `oms serve` from [`AppParts`]; its
/// state is private to the HTTP front.
pub struct App {
    table: Arc<InstrumentTable>,
    pipeline: Pipeline,
    queries: crossbeam_channel::Sender<Query>,
    metrics: Arc<Metrics>,
    router: Router,
    auth: Arc<Authenticator>,
    limits: RateLimits,
    clock: Arc<dyn SharedClock>,
    max_body: usize,
    request_timeout: Duration,
    /// False while starting and while draining for shutdown.
    ready: AtomicBool,
    ready_checks: Vec<ReadyCheck>,
    ids: CorrelationIds,
    /// Equity shown for accounts that have not traded yet (dev mode).
    default_equity: Option<Money>,
    /// Set with `--query-store mongo`: GET order routes read the projection.
    order_store: Option<Arc<StorePool>>,
    /// Finished orders evicted from the engine (GET, list and clientOrderId fall back to it).
    archive: Option<crate::archive::Archiver>,
    /// Batch limits, dead-man's switches, the audit log.
    trading: venue::Trading,
    /// The WebSocket endpoint `/ws`.
    ws: crate::ws::WsHandle,
    /// Cluster mode: who leads which account, and the client that forwards to them.
    forwarder: Option<forward::Forwarder>,
}

/// What [`App::new`] is built from.
pub struct AppParts {
    pub table: Arc<InstrumentTable>,
    pub pipeline: Pipeline,
    pub queries: crossbeam_channel::Sender<Query>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Authenticator>,
    pub limits: RateLimits,
    pub clock: Arc<dyn SharedClock>,
    pub max_body: usize,
    pub request_timeout: Duration,
    pub ready_checks: Vec<ReadyCheck>,
    pub node_id: u64,
    pub default_equity: Option<Money>,
    pub order_store: Option<Arc<StorePool>>,
    pub archive: Option<crate::archive::Archiver>,
    pub trading: venue::Trading,
    pub ws: crate::ws::WsHandle,
    pub forwarder: Option<forward::Forwarder>,
}

/// Generated correlation ids: node, time since start, sequence.
struct CorrelationIds {
    node_id: u64,
    started: Instant,
    seq: AtomicU64,
}

impl CorrelationIds {
    fn next(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = self.started.elapsed().as_nanos() as u64;
        format!(
            "{:04x}-{:012x}-{:08x}",
            self.node_id & 0xffff,
            t & 0xffff_ffff_ffff,
            n & 0xffff_ffff
        )
    }
}

/// A successful answer: status, JSON body, and whether it is an idempotent replay.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub replayed: bool,
    pub content_type: &'static str,
}

impl Answer {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Answer {
            status,
            body: body.into(),
            replayed: false,
            content_type: "application/json",
        }
    }
}

/// What a handler returns: an answer, or an error with (for idempotent replays of stored
/// errors) its stored body.
pub type Outcome = Result<Answer, (ApiError, Option<Bytes>)>;

/// Shorthand for a plain error outcome.
pub fn err<T>(e: ApiError) -> Result<T, (ApiError, Option<Bytes>)> {
    Err((e, None))
}

impl App {
    pub fn new(p: AppParts) -> App {
        App {
            table: p.table,
            pipeline: p.pipeline,
            queries: p.queries,
            metrics: p.metrics,
            router: Router::new(),
            auth: p.auth,
            limits: p.limits,
            clock: p.clock,
            max_body: p.max_body,
            request_timeout: p.request_timeout,
            ready: AtomicBool::new(false),
            ready_checks: p.ready_checks,
            ids: CorrelationIds {
                node_id: p.node_id,
                started: Instant::now(),
                seq: AtomicU64::new(0),
            },
            default_equity: p.default_equity,
            order_store: p.order_store,
            archive: p.archive,
            trading: p.trading,
            ws: p.ws,
            forwarder: p.forwarder,
        }
    }

    /// Readiness: false while starting and while draining for shutdown.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Cluster mode's routing (`None` on a single node).
    pub fn forwarder(&self) -> Option<&forward::Forwarder> {
        self.forwarder.as_ref()
    }

    /// The dependency probes `/ready` runs.
    pub fn ready_checks(&self) -> &[ReadyCheck] {
        &self.ready_checks
    }

    /// The venue features' state (dead-man's switches, audit log).
    pub fn trading(&self) -> &venue::Trading {
        &self.trading
    }

    /// What the WebSocket endpoint does when an opted-in session closes.
    pub fn set_ws_on_close(&self, hook: crate::ws::OnClose) {
        let _ = self.ws.on_close.set(hook);
    }

    /// Refuses every later order submission (shutdown), so the ring drains.
    pub fn close_pipeline(&self) {
        self.pipeline.close();
    }

    /// Forgets rate-limit state of idle accounts (called periodically).
    pub fn prune_rate_limits(&self) {
        self.limits.prune();
    }

    /// Runs `f` on the processor thread against the engine.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        let q: Query = Box::new(move |e| {
            let _ = tx.send(f(e));
        });
        self.queries
            .send(q)
            .map_err(|_| ApiError::internal("processor stopped"))?;
        match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(
                ApiError::new(503, "OVERLOADED", "the processor did not answer in time")
                    .retry_after(1),
            ),
        }
    }

    /// The request's `X-Correlation-Id` when it is usable, else a generated one.
    fn correlation_id(&self, headers: &HeaderMap) -> String {
        if let Some(v) = headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            && venue::valid_correlation_id(v.as_bytes())
        {
            return v.to_owned();
        }
        self.ids.next()
    }
}

/// 413 for a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "PAYLOAD_TOO_LARGE",
        format!("request body larger than {limit} bytes"),
    )
}

/// Reads a whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large(limit))
            } else {
                Err(ApiError::bad_request(
                    "INVALID_JSON",
                    format!("could not read the body: {e}"),
                ))
            }
        }
    }
}

/// Requires `Content-Type: application/json` when a body is sent.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct)
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json") =>
        {
            Ok(())
        }
        Some(ct) => Err(ApiError::new(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("expected application/json, got {ct}"),
        )),
    }
}

/// Connection settings of the listener.
#[derive(Clone, Copy, Debug)]
pub struct ListenConfig {
    pub limits: ConnLimits,
    /// Largest request head (line + headers) hyper buffers before answering 431.
    pub max_header_bytes: usize,
}

/// Most accepted sockets waiting for admission (or being refused) at once.
const ADMITTING: usize = 128;

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    cfg: ListenConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(cfg.max_header_bytes.max(8192));
    let builder = Arc::new(builder);
    let registry = Registry::new(cfg.limits, Arc::clone(&app.metrics));
    let correlation: Arc<dyn Fn() -> String + Send + Sync> = {
        let app = Arc::clone(&app);
        Arc::new(move || app.ids.next())
    };
    let mut last_warn: Option<Instant> = None;
    // Sockets accepted but not yet admitted or refused hold file descriptors too: bounding
    // them keeps the process under `ulimit -n` (the cap leaves `ADMITTING` + slack of room),
    // so a flood waits in the kernel's backlog instead of driving accept into EMFILE.
    let admitting = Arc::new(tokio::sync::Semaphore::new(ADMITTING));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&admitting).acquire_owned() => p.expect("never closed"),
            _ = shutdown.changed() => break,
        };
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.changed() => break,
        };
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: keep accepting, log at most once a second.
                if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, connections = registry.len(), "accept failed");
                    last_warn = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let builder = Arc::clone(&builder);
        let registry = Arc::clone(&registry);
        let correlation = Arc::clone(&correlation);
        tokio::spawn(async move {
            let Some(slot) = registry.admit().await else {
                app.metrics.http_connections_refused.inc();
                refuse(stream, &correlation()).await;
                drop(permit);
                return;
            };
            drop(permit);
            let state = Arc::clone(&slot.state);
            let svc = layers::stack(&app, &state);
            let ws_app = Arc::clone(&app);
            let hyper_svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    if crate::ws::is_ws(&req) {
                        // The upgrade leaves the HTTP stack: the WebSocket has its own
                        // limits (docs/websocket.md). Its answers carry a correlation id like
                        // every answer of ours (and so are never taken for hyper's own).
                        let corr = ws_app.correlation_id(req.headers());
                        let mut r = crate::ws::upgrade(&ws_app.ws, req);
                        if let Ok(v) = http::HeaderValue::from_str(&corr) {
                            r.headers_mut().insert("x-correlation-id", v);
                        }
                        return Box::pin(async move { Ok(r) }) as layers::BoxFuture;
                    }
                    let mut svc = svc.clone();
                    let req = req.map(|b| Body::new(b, Arc::clone(&state)));
                    svc.call(req)
                });
            let io = TokioIo::new(conn::Io::new(stream, Arc::clone(&slot.state), correlation));
            let served = Box::pin(async move {
                if let Err(e) = builder.serve_connection_with_upgrades(io, hyper_svc).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            conn::supervise(served, &slot.state, registry.limits()).await;
            drop(slot);
        });
    }
}

/// Answers a connection refused at the cap and closes it, within a second at most.
async fn refuse(mut stream: tokio::net::TcpStream, correlation_id: &str) {
    use tokio::io::AsyncWriteExt as _;
    let bytes = conn::refusal(correlation_id);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
