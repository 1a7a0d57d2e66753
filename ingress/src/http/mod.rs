//! The HTTP front: hyper 1 (HTTP/1.1 keep-alive and HTTP/2), routing, correlation ids,
//! body limits, error rendering, per-request metrics and one log line per request.

// Errors travel by value: they are the rare path, and boxing them would add an allocation
// to every rejected request for no gain.
#![allow(clippy::result_large_err)]

pub mod assets;
pub mod auth;
pub mod error;
pub mod market;
pub mod ops;
pub mod orders;
pub mod render;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use oms_core::engine::Engine;
use oms_core::{AccountId, InstrumentTable};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use self::error::ApiError;
use crate::config::AuthMode;
use crate::metrics::{Metrics, Route};
use crate::pipeline::Pipeline;
use crate::processor::Query;

/// A readiness probe of one dependency.
pub type ReadyCheck = Box<dyn Fn() -> (&'static str, bool, String) + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub table: Arc<InstrumentTable>,
    pub pipeline: Pipeline,
    pub queries: crossbeam_channel::Sender<Query>,
    pub metrics: Arc<Metrics>,
    pub auth: AuthMode,
    pub jwt_secret: Option<Vec<u8>>,
    pub max_body: usize,
    /// False while starting and while draining for shutdown.
    pub ready: AtomicBool,
    pub ready_checks: Vec<ReadyCheck>,
    pub node_id: u64,
    pub started: Instant,
    pub correlation_seq: AtomicU64,
    /// Equity shown for accounts that have not traded yet (dev mode).
    pub default_equity: Option<oms_core::Money>,
    /// Set with `--query-store mongo`: GET order routes read the projection.
    pub order_store: Option<std::sync::Arc<crate::backends::StorePool>>,
    /// The WebSocket endpoint `/ws`.
    pub ws: crate::ws::WsHandle,
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

/// What a handler returns.
pub type Outcome = Result<Answer, (ApiError, Option<Bytes>)>;

/// Shorthand for a plain error outcome.
pub fn err<T>(e: ApiError) -> Result<T, (ApiError, Option<Bytes>)> {
    Err((e, None))
}

/// Per-request context.
pub struct Ctx {
    pub correlation_id: String,
    pub started: Instant,
}

impl App {
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

    /// The caller's account (auth off: `X-Account-Id`, default `demo`).
    pub fn account(&self, req: &Request<Incoming>) -> Result<AccountId, ApiError> {
        match self.auth {
            AuthMode::Off => {
                let raw = req
                    .headers()
                    .get("x-account-id")
                    .map(|v| v.to_str().unwrap_or("\u{0}"));
                let raw = raw.unwrap_or("demo");
                AccountId::new(raw).map_err(|e| {
                    ApiError::bad_request("INVALID_ACCOUNT", format!("X-Account-Id {e}"))
                        .field("X-Account-Id")
                })
            }
            AuthMode::Jwt => {
                auth::account_from_jwt(req, self.jwt_secret.as_deref().unwrap_or_default())
            }
        }
    }

    fn correlation_id(&self, req: &Request<Incoming>) -> String {
        if let Some(v) = req
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            && !v.is_empty()
            && v.len() <= 64
            && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return v.to_owned();
        }
        let n = self.correlation_seq.fetch_add(1, Ordering::Relaxed);
        let t = self.started.elapsed().as_nanos() as u64;
        format!(
            "{:04x}-{:012x}-{:08x}",
            self.node_id & 0xffff,
            t & 0xffff_ffff_ffff,
            n & 0xffff_ffff
        )
    }
}

/// Reads a whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::new(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    format!("request body larger than {limit} bytes"),
                ))
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
pub fn require_json(req: &Request<Incoming>) -> Result<(), ApiError> {
    match req
        .headers()
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

fn route(method: &Method, path: &str) -> (Route, Result<(), ApiError>) {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let allow = |r: Route, ok: bool, allow: &'static str| {
        if ok {
            (r, Ok(()))
        } else {
            (r, Err(ApiError::method_not_allowed(allow)))
        }
    };
    match segs.as_slice() {
        ["api", "orders"] => match *method {
            Method::POST => (Route::PlaceOrder, Ok(())),
            Method::GET => (Route::ListOrders, Ok(())),
            _ => (Route::Other, Err(ApiError::method_not_allowed("GET, POST"))),
        },
        ["api", "orders", _] => match *method {
            Method::GET => (Route::GetOrder, Ok(())),
            Method::DELETE => (Route::CancelOrder, Ok(())),
            Method::PATCH => (Route::AmendOrder, Ok(())),
            _ => (
                Route::Other,
                Err(ApiError::method_not_allowed("GET, DELETE, PATCH")),
            ),
        },
        ["api", "positions"] => allow(Route::Positions, method == Method::GET, "GET"),
        ["api", "account"] => allow(Route::Account, method == Method::GET, "GET"),
        ["api", "symbols"] => allow(Route::Symbols, method == Method::GET, "GET"),
        ["api", "book", _] => allow(Route::Book, method == Method::GET, "GET"),
        ["api", "trades", _] => allow(Route::Trades, method == Method::GET, "GET"),
        ["api", "candles", _] => allow(Route::Candles, method == Method::GET, "GET"),
        ["api", "admin", "halt"] => allow(Route::Halt, method == Method::POST, "POST"),
        ["health"] => allow(Route::Health, method == Method::GET, "GET"),
        ["ready"] => allow(Route::Ready, method == Method::GET, "GET"),
        ["metrics"] => allow(Route::Metrics, method == Method::GET, "GET"),
        ["openapi.json"] => allow(Route::OpenApi, method == Method::GET, "GET"),
        _ => (Route::Other, Err(ApiError::not_found())),
    }
}

/// Handles one request end to end.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(page) = assets::serve(req.method(), req.uri().path(), req.headers()) {
        return page;
    }
    let ctx = Ctx {
        correlation_id: app.correlation_id(&req),
        started: Instant::now(),
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (route, allowed) = route(&method, &path);
    let outcome: Outcome = match allowed {
        Err(e) => Err((e, None)),
        Ok(()) => dispatch(&app, route, req, &ctx).await,
    };
    let (status, resp) = match outcome {
        Ok(a) => (a.status, respond(&ctx, a)),
        Err((e, body)) => {
            app.metrics.reject(e.code);
            let status = e.status;
            (status, respond_error(&ctx, &e, body))
        }
    };
    let latency = ctx.started.elapsed();
    app.metrics.record_request(route, status, latency);
    if status >= 500 {
        tracing::warn!(correlation_id = %ctx.correlation_id, %method, path, status, latency_us = latency.as_micros() as u64, "request");
    } else if status >= 400 {
        tracing::info!(correlation_id = %ctx.correlation_id, %method, path, status, latency_us = latency.as_micros() as u64, "request");
    } else {
        tracing::debug!(correlation_id = %ctx.correlation_id, %method, path, status, latency_us = latency.as_micros() as u64, "request");
    }
    resp
}

async fn dispatch(app: &Arc<App>, route: Route, req: Request<Incoming>, ctx: &Ctx) -> Outcome {
    match route {
        Route::PlaceOrder => orders::place(app, req, ctx).await,
        Route::GetOrder => orders::get(app, req).await,
        Route::ListOrders => orders::list(app, req).await,
        Route::CancelOrder => orders::cancel(app, req, ctx).await,
        Route::AmendOrder => orders::amend(app, req, ctx).await,
        Route::Halt => orders::halt(app, req, ctx).await,
        Route::Positions => market::positions(app, req).await,
        Route::Account => market::account(app, req).await,
        Route::Symbols => market::symbols(app).await,
        Route::Book => market::book(app, req).await,
        Route::Trades => market::trades(app, req).await,
        Route::Candles => market::candles(app, req).await,
        Route::Health => Ok(Answer::json(200, &b"{\"status\":\"ok\"}"[..])),
        Route::Ready => Ok(ops::ready(app)),
        Route::Metrics => Ok(ops::metrics(app)),
        Route::OpenApi => Ok(ops::openapi()),
        Route::Other => err(ApiError::not_found()),
    }
}

fn base(ctx: &Ctx, status: u16, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&ctx.correlation_id) {
        h.insert("x-correlation-id", v);
    }
    r
}

fn respond(ctx: &Ctx, a: Answer) -> Response<Full<Bytes>> {
    let mut r = base(ctx, a.status, a.content_type, a.body);
    if a.replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

fn respond_error(ctx: &Ctx, e: &ApiError, body: Option<Bytes>) -> Response<Full<Bytes>> {
    let body = body.unwrap_or_else(|| {
        let mut s = String::with_capacity(256);
        render::error_body(&mut s, e, &ctx.correlation_id, None);
        Bytes::from(s)
    });
    let mut r = base(ctx, e.status, "application/json", body);
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = e.allow {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    r
}

/// Accepts connections until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = shutdown.changed() => break,
        };
        let (stream, _) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = Arc::clone(&app);
                async move {
                    if crate::ws::is_ws(&req) {
                        return Ok::<_, Infallible>(crate::ws::upgrade(&app.ws, req));
                    }
                    Ok::<_, Infallible>(handle(app, req).await)
                }
            });
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
