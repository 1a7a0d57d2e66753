//! Cluster mode's routing layer (docs/scale-out.md), between [`super::layers::Auth`] and the
//! rate limit: a request of an account is handled by the node that leads the account's
//! partition, whichever node it reached.
//!
//! - led here and caught up: handled locally, counted in flight for its partition (a leader
//!   losing the partition waits for these before it lets go);
//! - led by another node: forwarded over HTTP to it, unchanged (same credentials, idempotency
//!   key and correlation id), and its answer returned as is — the API contract does not
//!   change, a client never needs to know the topology;
//! - nobody leads it right now (a rebalance), or this node is still catching up on it:
//!   503 `REBALANCING` with `Retry-After: 1`.
//!
//! A forwarded request carries `X-Oms-Forwarded-By`; a node never forwards it again (two
//! nodes with stale tables would otherwise bounce it), answering 503 `REBALANCING` instead.
//! Market data, health, metrics and the admin routes are served by whichever node is asked:
//! every node holds the whole state.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oms_wire::ApiError;
use tower_layer::Layer;
use tower_service::Service;

use super::layers::{BoxFuture, Ctx, Req, Resp, error_response, response};
use super::{App, read_body};
use crate::auth::Principal;
use crate::cluster::{Cluster, Route as Where};
use crate::metrics::Route;

/// The header a forwarded request carries (the forwarding node's id).
pub const FORWARDED_BY: &str = "x-oms-forwarded-by";

/// Hop-by-hop headers and those the answer rebuilds itself.
const DROP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::HOST,
    header::UPGRADE,
];

/// The cluster, and a pooled HTTP/1 client to the other nodes.
pub struct Forwarder {
    pub cluster: Arc<Cluster>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(cluster: Arc<Cluster>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Forwarder {
            cluster,
            client,
            timeout,
        }
    }
}

/// Routes that act on (or read) one account's orders, positions or balance.
fn account_scoped(r: Route) -> bool {
    matches!(
        r,
        Route::PlaceOrder
            | Route::GetOrder
            | Route::ListOrders
            | Route::CancelOrder
            | Route::AmendOrder
            | Route::Positions
            | Route::Account
            | Route::CancelAll
            | Route::CancelAllAfter
            | Route::BatchPlace
            | Route::BatchCancel
            | Route::GetByClientId
            | Route::CancelByClientId
    )
}

fn rebalancing(detail: &str) -> ApiError {
    ApiError::new(
        503,
        "REBALANCING",
        format!("the account's partition is moving between nodes ({detail}); retry shortly"),
    )
    .retry_after(1)
}

/// The routing layer; see the module docs.
#[derive(Clone)]
pub struct Forward<S> {
    inner: S,
    app: Arc<App>,
}

impl<S> Forward<S> {
    pub fn new(inner: S, app: Arc<App>) -> Self {
        Forward { inner, app }
    }
}

impl<S> Service<Req> for Forward<S>
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
        let Some(fw) = self.app.forwarder() else {
            return self.inner.call(req);
        };
        let Some(ctx) = req.extensions().get::<Ctx>().cloned() else {
            return self.inner.call(req);
        };
        if !account_scoped(ctx.route.route) {
            return self.inner.call(req);
        }
        let Some(account) = req.extensions().get::<Principal>().map(|p| p.account) else {
            return self.inner.call(req);
        };
        let cluster = &fw.cluster;
        match cluster.route(account.as_str()) {
            Where::Local => {
                let guard = cluster.admit(cluster.account_partition(account.as_str()));
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let r = fut.await;
                    drop(guard);
                    r
                })
            }
            Where::Forward(_) if req.headers().contains_key(FORWARDED_BY) => {
                let e = rebalancing("forwarded here, but led elsewhere");
                Box::pin(async move { Ok(error_response(&ctx.correlation_id, &e, None)) })
            }
            Where::Forward(url) => {
                let app = Arc::clone(&self.app);
                Box::pin(async move {
                    Ok(match forward(&app, &ctx, req, &url).await {
                        Ok(r) => r,
                        Err(e) => error_response(&ctx.correlation_id, &e, None),
                    })
                })
            }
            Where::Unavailable => {
                let e = rebalancing("no node leads it yet");
                Box::pin(async move { Ok(error_response(&ctx.correlation_id, &e, None)) })
            }
        }
    }
}

/// Sends `req` to the leader at `base` and returns its answer.
async fn forward(app: &App, ctx: &Ctx, req: Req, base: &str) -> Result<Resp, ApiError> {
    let fw = app.forwarder().expect("checked by the caller");
    let (parts, body) = req.into_parts();
    let body = read_body(body, app.max_body).await?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: http::Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| ApiError::internal(format!("bad leader address {base}: {e}")))?;
    let mut out = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let h = out.headers_mut();
    for (k, v) in &parts.headers {
        if !DROP.contains(k) {
            h.append(k, v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.correlation_id) {
        h.insert("x-correlation-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&fw.cluster.node) {
        h.insert(FORWARDED_BY, v);
    }
    // Traced: the leader's root span becomes a child of this node's.
    if let Some(t) = ctx.trace
        && let Ok(v) = HeaderValue::from_bytes(&t.to_text())
    {
        h.insert(crate::telemetry::TRACEPARENT, v);
    }
    let answer = tokio::time::timeout(fw.timeout, fw.client.request(out))
        .await
        .map_err(|_| leader_unreachable(base, "timed out"))?
        .map_err(|e| leader_unreachable(base, &e.to_string()))?;
    let (parts, body) = answer.into_parts();
    let bytes = Limited::new(body, 64 << 20)
        .collect()
        .await
        .map_err(|e| leader_unreachable(base, &e.to_string()))?
        .to_bytes();
    let mut r = response(parts.status.as_u16(), "application/json", bytes);
    let h = r.headers_mut();
    for (k, v) in &parts.headers {
        if !DROP.contains(k) {
            h.insert(k, v.clone());
        }
    }
    Ok(r)
}

fn leader_unreachable(base: &str, detail: &str) -> ApiError {
    ApiError::new(
        503,
        "LEADER_UNREACHABLE",
        format!("the node leading this account ({base}) did not answer: {detail}"),
    )
    .retry_after(1)
}

/// [`Forward`] as a [`Layer`].
pub struct ForwardLayer(pub Arc<App>);

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Forward<S> {
        Forward::new(inner, Arc::clone(&self.0))
    }
}
