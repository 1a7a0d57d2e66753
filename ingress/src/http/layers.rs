//! The HTTP edge as a stack of small tower layers, outermost first:
//!
//! 1. [`Edge`]: correlation id (taken or generated, echoed), routing (404/405), one log line
//!    and the request metrics per request, `Connection: close` when the answer leaves request
//!    body unread (HTTP/1), and the connection watchdog's busy/idle bookkeeping.
//! 2. [`Timeout`]: a bound on the whole request (408 `REQUEST_TIMEOUT`).
//! 3. [`Auth`]: the caller ([`Principal`]) from the bearer token or `X-Account-Id`, and the
//!    route's role (401 with `WWW-Authenticate: Bearer`, 403 `FORBIDDEN`).
//! 4. [`Forward`] (cluster mode, `http/forward.rs`): an account's request goes to the node
//!    that leads the account — handled here, or forwarded there.
//! 5. [`RateLimit`]: the caller's token bucket for the route (429 `RATE_LIMITED`), and the
//!    `X-RateLimit-*` headers on every answer.
//! 6. [`BodyLimit`]: a declared body over the limit is 413 before a byte of it is read.
//! 7. [`Handlers`]: thin route handlers that parse, submit to the ring or query, and answer.
//!
//! Each layer reads what the ones before it established from the request's extensions
//! ([`Ctx`], [`Principal`]). Errors anywhere are the one JSON error body of `oms-wire`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use oms_wire::ApiError;
use tower_layer::Layer;
use tower_service::Service;

use super::body::Body;
use super::conn::ConnState;
use super::forward::{Forward, ForwardLayer};
use super::limits::RateInfo;
use super::router::{Access, RouteInfo};
use super::{App, assets, market, ops, orders, venue};
use crate::auth::Principal;
use crate::metrics::Route;
use crate::telemetry::{self, TraceParent};

pub type Req = Request<Body>;
pub type Resp = Response<Full<Bytes>>;
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

/// What every layer and handler knows about the request.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub correlation_id: Arc<str>,
    pub started: Instant,
    pub route: RouteInfo,
    /// Traces on: the context of the request's root span (`oms.request`).
    pub trace: Option<TraceParent>,
}

/// The stable code of an error answer, for the metrics.
#[derive(Clone, Copy, Debug)]
struct ErrorCode(&'static str);

/// An answer with `content_type` and the correlation id.
pub fn response(status: u16, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The error answer: JSON body (or the given stored body), `Retry-After`, `Allow`,
/// `WWW-Authenticate` as the error asks.
pub fn error_response(correlation_id: &str, e: &ApiError, body: Option<Bytes>) -> Resp {
    let body = body.unwrap_or_else(|| Bytes::from(e.body(correlation_id)));
    let mut r = response(e.status, "application/json", body);
    let h = r.headers_mut();
    if let Some(secs) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = e.allow {
        h.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if e.status == 401 {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"oms\""),
        );
    }
    if e.status == 408 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r.extensions_mut().insert(ErrorCode(e.code));
    r
}

fn ctx_of(req: &Req) -> Ctx {
    req.extensions()
        .get::<Ctx>()
        .cloned()
        .expect("the Edge layer sets the context first")
}

// ---------------------------------------------------------------------------------------------

/// Layer 1: correlation id, routing, logging, metrics, connection bookkeeping.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    app: Arc<App>,
    conn: Arc<ConnState>,
}

impl<S> Edge<S> {
    pub fn new(inner: S, app: Arc<App>, conn: Arc<ConnState>) -> Self {
        Edge { inner, app, conn }
    }
}

/// Marks the connection idle again however the request ends (answered or dropped).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

impl<S> Service<Req> for Edge<S>
where
    S: Service<Req, Response = Resp, Error = Infallible, Future = BoxFuture>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> BoxFuture {
        self.conn.request_started();
        let guard = InFlight(Arc::clone(&self.conn));
        // The dashboard's static files: no API semantics (no correlation id, no metrics).
        if let Some(page) = assets::serve(req.method(), req.uri().path(), req.headers()) {
            drop(guard);
            return Box::pin(async move { Ok(page) });
        }
        let started = Instant::now();
        let correlation_id: Arc<str> = self.app.correlation_id(req.headers()).into();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let http1 = req.version() < http::Version::HTTP_2;
        let app = Arc::clone(&self.app);
        let conn = Arc::clone(&self.conn);
        let routed = if assets::is_asset(uri.path()) {
            // A dashboard file asked with another method than GET/HEAD.
            Err(ApiError::method_not_allowed("GET, HEAD"))
        } else {
            self.app
                .router
                .route(&method, uri.path())
                .and_then(|r| venue::check_headers(req.headers()).map(|()| r))
        };
        match routed {
            Ok(route) => {
                // Traces on: the request's root span, continuing the caller's trace if it sent
                // a `traceparent`; it ends when the answer is ready. Not for the probes and
                // the scrape, which would be most traces and say nothing.
                let probe = matches!(
                    route.route,
                    Route::Health | Route::Ready | Route::Metrics | Route::OpenApi
                );
                let span = (telemetry::enabled() && !probe).then(|| {
                    telemetry::request_span(
                        method.as_str(),
                        uri.path(),
                        &correlation_id,
                        req.headers()
                            .get(telemetry::TRACEPARENT)
                            .map(HeaderValue::as_bytes),
                    )
                });
                req.extensions_mut().insert(Ctx {
                    correlation_id: Arc::clone(&correlation_id),
                    started,
                    route,
                    trace: span.as_ref().and_then(TraceParent::of),
                });
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let r = fut.await?;
                    drop(span);
                    let done = Done {
                        route: route.route,
                        correlation_id: &correlation_id,
                        method: &method,
                        path: uri.path(),
                        started,
                        http1,
                    };
                    Ok(done.finish(&app, &conn, r, guard))
                })
            }
            Err(e) => {
                let r = error_response(&correlation_id, &e, None);
                Box::pin(async move {
                    let done = Done {
                        route: Route::Other,
                        correlation_id: &correlation_id,
                        method: &method,
                        path: uri.path(),
                        started,
                        http1,
                    };
                    Ok(done.finish(&app, &conn, r, guard))
                })
            }
        }
    }
}

/// What the log line and the metrics say about a finished request.
struct Done<'a> {
    route: Route,
    correlation_id: &'a str,
    method: &'a http::Method,
    path: &'a str,
    started: Instant,
    http1: bool,
}

impl Done<'_> {
    /// Decorates the answer and accounts for it.
    fn finish(self, app: &App, conn: &ConnState, mut r: Resp, guard: InFlight) -> Resp {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(self.correlation_id) {
            h.insert("x-correlation-id", v);
        }
        if self.http1 && !conn.body_done.load(std::sync::atomic::Ordering::Acquire) {
            // Unread body would be parsed as the next request: close instead.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let status = r.status().as_u16();
        if let Some(ErrorCode(code)) = r.extensions().get::<ErrorCode>() {
            app.metrics.reject(code);
        }
        let latency = self.started.elapsed();
        app.metrics.record_request(self.route, status, latency);
        let (correlation_id, method, path) = (self.correlation_id, self.method, self.path);
        let latency_us = latency.as_micros() as u64;
        if status >= 500 {
            tracing::warn!(correlation_id, %method, path, status, latency_us, "request");
        } else if status >= 400 {
            tracing::info!(correlation_id, %method, path, status, latency_us, "request");
        } else {
            tracing::debug!(correlation_id, %method, path, status, latency_us, "request");
        }
        drop(guard);
        r
    }
}

// ---------------------------------------------------------------------------------------------

/// Layer 2: bounds the whole request.
#[derive(Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Timeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Timeout { inner, limit }
    }
}

impl<S> Service<Req> for Timeout<S>
where
    S: Service<Req, Response = Resp, Error = Infallible, Future = BoxFuture>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> BoxFuture {
        let ctx = ctx_of(&req);
        let limit = self.limit;
        let fut = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => {
                    let e = ApiError::new(
                        408,
                        "REQUEST_TIMEOUT",
                        format!("the request did not complete within {limit:?}"),
                    );
                    Ok(error_response(&ctx.correlation_id, &e, None))
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Layer 3: who is calling, and may they use this route.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    app: Arc<App>,
}

impl<S> Auth<S> {
    pub fn new(inner: S, app: Arc<App>) -> Self {
        Auth { inner, app }
    }
}

impl<S> Service<Req> for Auth<S>
where
    S: Service<Req, Response = Resp, Error = Infallible, Future = BoxFuture>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> BoxFuture {
        let ctx = ctx_of(&req);
        if ctx.route.access == Access::Public {
            return self.inner.call(req);
        }
        let now = self.app.clock.now() / 1_000_000_000;
        let principal = self.app.auth.principal(req.headers(), now);
        let checked = principal.clone().and_then(|p| match ctx.route.access {
            Access::Role(role) => p.require(role).map(|()| p),
            Access::Read if !p.roles.any() => Err(ApiError::forbidden(
                "the token carries no role (trader, admin or readonly)",
            )),
            _ => Ok(p),
        });
        match checked {
            Ok(p) => {
                req.extensions_mut().insert(p);
                self.inner.call(req)
            }
            Err(e) => {
                // A known caller denied a state-changing route is audited (who tried what).
                if e.status == 403
                    && let Ok(p) = &principal
                    && let Some(start) = venue::audit_start(&req, ctx.route.route, Some(p))
                {
                    venue::audit_finish(&self.app, start, &ctx, e.status, Some(e.code), None);
                }
                let r = error_response(&ctx.correlation_id, &e, None);
                Box::pin(async move { Ok(r) })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Layer 4: the caller's token bucket for the route.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    app: Arc<App>,
}

impl<S> RateLimit<S> {
    pub fn new(inner: S, app: Arc<App>) -> Self {
        RateLimit { inner, app }
    }
}

fn rate_headers(r: &mut Resp, info: RateInfo) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(info.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(info.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(info.reset_secs));
}

impl<S> Service<Req> for RateLimit<S>
where
    S: Service<Req, Response = Resp, Error = Infallible, Future = BoxFuture>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> BoxFuture {
        let ctx = ctx_of(&req);
        let (Some(bucket), Some(p)) = (ctx.route.bucket, req.extensions().get::<Principal>())
        else {
            return self.inner.call(req);
        };
        match self.app.limits.check(bucket, &p.account) {
            Ok(None) => self.inner.call(req),
            Ok(Some(info)) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let mut r = fut.await?;
                    rate_headers(&mut r, info);
                    Ok(r)
                })
            }
            Err((e, info)) => {
                let mut r = error_response(&ctx.correlation_id, &e, None);
                rate_headers(&mut r, info);
                Box::pin(async move { Ok(r) })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Layer 5: a declared body over the limit is refused before it is read.
#[derive(Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> BodyLimit<S> {
    pub fn new(inner: S, limit: usize) -> Self {
        BodyLimit { inner, limit }
    }
}

impl<S> Service<Req> for BodyLimit<S>
where
    S: Service<Req, Response = Resp, Error = Infallible, Future = BoxFuture>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> BoxFuture {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(n) if n > self.limit as u64 => {
                let ctx = ctx_of(&req);
                let r = error_response(&ctx.correlation_id, &super::too_large(self.limit), None);
                Box::pin(async move { Ok(r) })
            }
            _ => self.inner.call(req),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The innermost service: dispatches to the route's handler.
#[derive(Clone)]
pub struct Handlers {
    app: Arc<App>,
}

impl Handlers {
    pub fn new(app: Arc<App>) -> Self {
        Handlers { app }
    }
}

impl Service<Req> for Handlers {
    type Response = Resp;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> BoxFuture {
        let app = Arc::clone(&self.app);
        Box::pin(async move {
            let ctx = ctx_of(&req);
            let principal = req.extensions().get::<Principal>().copied();
            let audit = venue::audit_start(&req, ctx.route.route, principal.as_ref());
            let outcome = dispatch(&app, req, &ctx, principal).await;
            if let Some(start) = audit {
                match &outcome {
                    Ok(a) => {
                        let route = ctx.route.route;
                        let detail = (route == Route::CancelAll || route == Route::BatchCancel)
                            .then(|| String::from_utf8_lossy(&a.body).into_owned());
                        venue::audit_finish(&app, start, &ctx, a.status, None, detail);
                    }
                    Err((e, _)) => {
                        venue::audit_finish(&app, start, &ctx, e.status, Some(e.code), None)
                    }
                }
            }
            Ok(match outcome {
                Ok(a) => {
                    let mut r = response(a.status, a.content_type, a.body);
                    if a.replayed {
                        r.headers_mut()
                            .insert("idempotent-replayed", HeaderValue::from_static("true"));
                    }
                    r
                }
                Err((e, body)) => error_response(&ctx.correlation_id, &e, body),
            })
        })
    }
}

async fn dispatch(
    app: &Arc<App>,
    req: Req,
    ctx: &Ctx,
    principal: Option<Principal>,
) -> super::Outcome {
    let caller = || {
        principal
            .map(|p| p.account)
            .ok_or_else(|| (ApiError::internal("no caller for a private route"), None))
    };
    let req = match ctx.route.access {
        Access::Public => req,
        _ => match venue::dispatch(app, req, ctx, caller()?).await {
            Ok(outcome) => return outcome,
            Err(req) => req,
        },
    };
    match ctx.route.route {
        Route::PlaceOrder => orders::place(app, req, ctx, caller()?).await,
        Route::GetOrder => orders::get(app, req, caller()?).await,
        Route::ListOrders => orders::list(app, req, caller()?).await,
        Route::CancelOrder => orders::cancel(app, req, ctx, caller()?).await,
        Route::AmendOrder => orders::amend(app, req, ctx, caller()?).await,
        Route::Halt => orders::halt(app, req, ctx, caller()?).await,
        Route::Positions => market::positions(app, caller()?).await,
        Route::Account => market::account(app, caller()?).await,
        Route::Symbols => market::symbols(app).await,
        Route::Book => market::book(app, req).await,
        Route::Trades => market::trades(app, req).await,
        Route::Candles => market::candles(app, req).await,
        Route::Health => Ok(super::Answer::json(200, &b"{\"status\":\"ok\"}"[..])),
        Route::Ready => Ok(ops::ready(app)),
        Route::Cluster => ops::cluster(app).await,
        Route::Metrics => Ok(ops::metrics(app)),
        Route::OpenApi => Ok(ops::openapi()),
        // Answered by `venue::dispatch` above.
        Route::CancelAll
        | Route::CancelAllAfter
        | Route::BatchPlace
        | Route::BatchCancel
        | Route::GetByClientId
        | Route::CancelByClientId
        | Route::Audit
        | Route::Other => super::err(ApiError::not_found()),
    }
}

/// [`Edge`] as a [`Layer`].
pub struct EdgeLayer {
    pub app: Arc<App>,
    pub conn: Arc<ConnState>,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge::new(inner, Arc::clone(&self.app), Arc::clone(&self.conn))
    }
}

/// [`Timeout`] as a [`Layer`].
pub struct TimeoutLayer(pub Duration);

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self.0)
    }
}

/// [`Auth`] as a [`Layer`].
pub struct AuthLayer(pub Arc<App>);

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth::new(inner, Arc::clone(&self.0))
    }
}

/// [`RateLimit`] as a [`Layer`].
pub struct RateLimitLayer(pub Arc<App>);

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, Arc::clone(&self.0))
    }
}

/// [`BodyLimit`] as a [`Layer`].
pub struct BodyLimitLayer(pub usize);

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit::new(inner, self.0)
    }
}

/// The service of one connection: the layers of the module doc, outermost first.
pub type Stack = Edge<Timeout<Auth<Forward<RateLimit<BodyLimit<Handlers>>>>>>;

/// Builds [`Stack`] for one connection.
pub fn stack(app: &Arc<App>, conn: &Arc<ConnState>) -> Stack {
    let edge = EdgeLayer {
        app: Arc::clone(app),
        conn: Arc::clone(conn),
    };
    let timeout = TimeoutLayer(app.request_timeout);
    let auth = AuthLayer(Arc::clone(app));
    let forward = ForwardLayer(Arc::clone(app));
    let rate = RateLimitLayer(Arc::clone(app));
    let body = BodyLimitLayer(app.max_body);
    let handlers = Handlers::new(Arc::clone(app));
    edge.layer(timeout.layer(auth.layer(forward.layer(rate.layer(body.layer(handlers))))))
}
