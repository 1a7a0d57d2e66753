//! WebSocket `/ws` on the HTTP listener: live orders, executions, positions, trades, book
//! and candles (docs/websocket.md, ARCHITECTURE.md §5).
//!
//! Three parts, so a slow client can never slow matching:
//! - [`WsSink`], an event sink of the processor: one `try_send` of each batch into a bounded
//!   queue, and nothing at all while no client is connected;
//! - the fan-out thread ([`hub`]): keeps a mirror of the books, trades and candles, renders
//!   each message once and offers it to every subscriber's bounded queue;
//! - one task per connection ([`conn`]): operations, limits, writes.
//!
//! The HTTP router hands `/ws` to [`upgrade`] before its own routing.

pub mod book;

pub mod conn;
pub mod data;
pub mod hub;
pub mod market;
pub mod metrics;
pub mod protocol;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use oms_core::{AccountId, Event, InstrumentTable};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use self::hub::{Control, Hub, HubConfig};
use self::market::Feed;
use self::metrics::WsMetrics;
use crate::config::ws::WsArgs;
use oms_core::ports::EventSink;
use oms_wire::ApiError;

use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::processor::Query;

/// Called with the account when an authenticated connection closes (cancel-on-disconnect).
pub type OnClose = Box<dyn Fn(&AccountId) + Send + Sync>;

/// What the upgrade handler and the connections share.
pub struct WsShared {
    pub cfg: WsArgs,
    pub table: Arc<InstrumentTable>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn SharedClock>,
    pub metrics: Arc<WsMetrics>,
    control: crossbeam_channel::Sender<Control>,
    next_id: AtomicU64,
    /// Open connections, and authenticated ones per account.
    counts: parking_lot::Mutex<(usize, HashMap<AccountId, usize>)>,
    /// Set once by whoever wants to act when an account's connection closes.
    pub on_close: OnceLock<OnClose>,
}

/// Handle on the endpoint, kept by the HTTP app.
pub type WsHandle = Arc<WsShared>;

impl WsShared {
    /// Counts one more connection of `a`; `Err(limit)` when it has too many.
    fn claim(&self, a: &AccountId) -> Result<(), usize> {
        let max = self.cfg.ws_max_connections_per_account;
        let mut g = self.counts.lock();
        let n = g.1.entry(*a).or_insert(0);
        if *n >= max {
            return Err(max);
        }
        *n += 1;
        Ok(())
    }

    /// Forgets a closed connection.
    fn release(&self, a: Option<&AccountId>) {
        let mut g = self.counts.lock();
        g.0 = g.0.saturating_sub(1);
        if let Some(a) = a
            && let Some(n) = g.1.get_mut(a)
        {
            *n -= 1;
            if *n == 0 {
                g.1.remove(a);
            }
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The processor's side: hands each batch to the fan-out without ever waiting.
pub struct WsSink {
    feed: crossbeam_channel::Sender<Feed>,
    active: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    metrics: Arc<WsMetrics>,
}

impl EventSink for WsSink {
    fn publish(&mut self, events: &[Event]) {
        if events.is_empty() || !self.active.load(Ordering::Acquire) {
            return;
        }
        let feed = Feed::Events {
            events: events.to_vec(),
            at: Instant::now(),
            wall: data::now_nanos(),
        };
        if self.feed.try_send(feed).is_err() {
            self.lost.store(true, Ordering::Release);
            self.metrics.hub_overflows.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the fan-out thread; returns the handle for the router and the processor's sink.
/// `queries` is the processor's query queue (the fan-out loads state through it).
pub fn start(
    cfg: WsArgs,
    table: Arc<InstrumentTable>,
    queries: crossbeam_channel::Sender<Query>,
    auth: Arc<Authenticator>,
    clock: Arc<dyn SharedClock>,
    http_metrics: &crate::metrics::Metrics,
) -> anyhow::Result<(WsHandle, WsSink)> {
    let metrics = Arc::new(WsMetrics::default());
    {
        let m = Arc::clone(&metrics);
        http_metrics.add_text_source(Box::new(move |o: &mut String| m.render(o)));
    }
    let (feed_tx, feed_rx) = crossbeam_channel::bounded(cfg.ws_hub_queue.max(16));
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    let active = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicBool::new(false));
    let hub = Hub::new(
        Arc::clone(&table),
        HubConfig {
            trades_snapshot: cfg.ws_trades_snapshot,
            candle_history: cfg.ws_candle_history,
            checksum_levels: cfg.ws_book_checksum_levels,
        },
        Arc::clone(&metrics),
        queries,
        feed_tx.clone(),
        Arc::clone(&lost),
        Arc::clone(&active),
    );
    std::thread::Builder::new()
        .name("oms-ws-fanout".into())
        .spawn(move || hub.run(feed_rx, control_rx))?;
    let shared = Arc::new(WsShared {
        cfg,
        table,
        auth,
        clock,
        metrics: Arc::clone(&metrics),
        control: control_tx,
        next_id: AtomicU64::new(1),
        counts: parking_lot::Mutex::new((0, HashMap::new())),
        on_close: OnceLock::new(),
    });
    let sink = WsSink {
        feed: feed_tx,
        active,
        lost,
        metrics,
    };
    Ok((shared, sink))
}

impl WsShared {
    /// Seconds since the epoch from the injected clock (token expiry).
    fn now_secs(&self) -> u64 {
        self.clock.now() / 1_000_000_000
    }
}

/// Whether a request is for the WebSocket endpoint.
pub fn is_ws(req: &Request<Incoming>) -> bool {
    req.uri().path() == "/ws"
}

fn refuse(e: &ApiError) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(e.body(""))));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    })
}

/// The account named by the upgrade request, if any (JWT, or `X-Account-Id` with auth off).
fn upgrade_account(ws: &WsShared, req: &Request<Incoming>) -> Result<Option<AccountId>, ApiError> {
    match &*ws.auth {
        Authenticator::Jwt(_) => {
            if req.headers().contains_key(header::AUTHORIZATION) {
                ws.auth
                    .principal(req.headers(), ws.now_secs())
                    .map(|p| Some(p.account))
            } else {
                Ok(None)
            }
        }
        Authenticator::Off => match req.headers().get("x-account-id") {
            None => Ok(None),
            Some(v) => AccountId::new(v.to_str().unwrap_or("\u{0}"))
                .map(Some)
                .map_err(|e| {
                    ApiError::bad_request("INVALID_ACCOUNT", format!("X-Account-Id {e}"))
                        .field("X-Account-Id")
                }),
        },
    }
}

/// Answers `GET /ws`: checks the handshake and the limits, answers 101 and starts the
/// connection task on the upgraded stream.
pub fn upgrade(ws: &WsHandle, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let is_upgrade = req.method() == http::Method::GET
        && header_has(&req, header::CONNECTION, "upgrade")
        && header_has(&req, header::UPGRADE, "websocket")
        && req
            .headers()
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let Some(accept) = key.filter(|_| is_upgrade) else {
        let mut r = refuse(&ApiError::new(
            426,
            "UPGRADE_REQUIRED",
            "/ws is a WebSocket endpoint: send GET with Upgrade: websocket, Sec-WebSocket-Version: 13",
        ));
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    };
    let account = match upgrade_account(ws, &req) {
        Ok(a) => a,
        Err(e) => return refuse(&e),
    };
    {
        let mut g = ws.counts.lock();
        if g.0 >= ws.cfg.ws_max_connections {
            return refuse(
                &ApiError::new(
                    503,
                    "TOO_MANY_CONNECTIONS",
                    "the server's WebSocket connection limit is reached",
                )
                .retry_after(1),
            );
        }
        g.0 += 1;
    }
    ws.metrics.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(a) = &account
        && let Err(max) = ws.claim(a)
    {
        ws.release(None);
        return refuse(&ApiError::new(
            429,
            "TOO_MANY_CONNECTIONS",
            format!("at most {max} WebSocket connections per account"),
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ws2 = Arc::clone(ws);
    let id = ws.next_id.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => conn::run(ws2, upgraded, account, id).await,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                ws2.release(account.as_ref());
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
