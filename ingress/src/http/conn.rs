//! Connections: the global cap, the header-read and idle timeouts, and JSON bodies on the
//! error answers hyper writes by itself.
//!
//! - **Cap.** At most `max_connections` are served at once. A connection arriving at the cap
//!   first evicts the connection that has been idle longest (no request in flight for at
//!   least [`EVICT_IDLE_AFTER`]); if none is idle it is refused at once with a canned 503
//!   `OVERLOADED` and closed. The accept loop never stops, so a flood of idle sockets cannot
//!   lock fresh clients out, and the process stays below its file-descriptor limit.
//! - **Timeouts.** A connection must deliver each request head within `header_read_timeout`
//!   from its first byte (and its first request within that time from connecting): a
//!   slowloris trickling a header is cut. Between requests, a keep-alive connection that
//!   sends nothing for `idle_timeout` is closed. Requests in flight are bounded by the
//!   request-timeout layer instead.
//! - **hyper's own answers.** hyper answers a malformed request (400), an oversized head
//!   (431) or an unsupported version (505) itself, with an empty body. [`Io`] recognises those
//!   writes (every answer of ours carries `x-correlation-id`; hyper's do not) and replaces
//!   them with the same status and the JSON error body with a code, `Connection: close`.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use oms_wire::ApiError;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// An idle connection younger than this is never evicted to admit a new one (so a burst of
/// new connections is refused rather than churning through each other).
pub const EVICT_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What the watchdog, the body tracker and the cap know about one connection.
pub struct ConnState {
    base: Instant,
    /// Milliseconds since `base` when the connection last became idle.
    idle_since_ms: AtomicU64,
    /// Milliseconds since `base` when the first byte of the next request head arrived
    /// ([`NONE`] while idle with nothing received, or while a request is served).
    head_since_ms: AtomicU64,
    /// Requests being served (HTTP/2 may have several).
    in_flight: AtomicU32,
    /// HTTP/1: the current request's body has been read to its end.
    pub(crate) body_done: AtomicBool,
    /// Wakes the watchdog when the connection is evicted (nothing else does: see
    /// [`supervise`]).
    wake: Notify,
    closing: AtomicBool,
}

const NONE: u64 = u64::MAX;

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            base: Instant::now(),
            idle_since_ms: AtomicU64::new(0),
            // A new connection owes its first request head within the header timeout.
            head_since_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            body_done: AtomicBool::new(true),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// A request head was parsed and handed to the service.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(NONE, Ordering::Release);
    }

    /// The service answered.
    pub fn request_finished(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since_ms.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// How long the connection has made no progress (no request in flight; since it became
    /// idle or since its pending head started), in ms; `None` while a request is served.
    fn idle_for(&self) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = self.idle_since_ms.load(Ordering::Acquire);
        let since = match self.head_since_ms.load(Ordering::Acquire) {
            NONE => idle,
            head => head.max(idle),
        };
        Some(self.now_ms().saturating_sub(since))
    }

    /// When the connection must close if nothing changes; `None` while a request is served.
    fn deadline(&self, l: &ConnLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_since_ms.load(Ordering::Acquire);
        Some(if head != NONE {
            self.base + Duration::from_millis(head) + l.header_read_timeout
        } else {
            let idle = self.idle_since_ms.load(Ordering::Acquire);
            self.base + Duration::from_millis(idle) + l.idle_timeout
        })
    }

    fn evict(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// The live connections, for the cap and for eviction.
pub struct Registry {
    limits: ConnLimits,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
    freed: Notify,
    metrics: Arc<Metrics>,
}

/// A connection's place under the cap; leaving it frees the place.
pub struct Slot {
    registry: Arc<Registry>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut conns = self.registry.conns.lock();
        conns.remove(&self.id);
        self.registry
            .metrics
            .http_connections
            .set(conns.len() as i64);
        drop(conns);
        self.registry.freed.notify_one();
    }
}

impl Registry {
    pub fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            freed: Notify::new(),
            metrics,
        })
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn try_insert(self: &Arc<Self>) -> Option<Slot> {
        let mut conns = self.conns.lock();
        if conns.len() >= self.limits.max_connections {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new());
        conns.insert(id, Arc::clone(&state));
        self.metrics.http_connections.set(conns.len() as i64);
        Some(Slot {
            registry: Arc::clone(self),
            id,
            state,
        })
    }

    /// A place for a new connection: free, or made by evicting the longest-idle one; `None`
    /// when every connection is busy (or only just idle): refuse.
    pub async fn admit(self: &Arc<Self>) -> Option<Slot> {
        if let Some(s) = self.try_insert() {
            return Some(s);
        }
        let victim = {
            let conns = self.conns.lock();
            conns
                .values()
                .filter(|c| !c.closing.load(Ordering::Acquire))
                .filter_map(|c| c.idle_for().map(|ms| (ms, c)))
                .filter(|(ms, _)| *ms >= EVICT_IDLE_AFTER.as_millis() as u64)
                .max_by_key(|(ms, _)| *ms)
                .map(|(_, c)| Arc::clone(c))
        };
        let victim = victim?;
        victim.evict();
        self.metrics.http_connections_evicted.inc();
        // The evicted task drops its slot as soon as it runs; wait for it, bounded.
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            let freed = self.freed.notified();
            if let Some(s) = self.try_insert() {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_insert();
            }
        }
    }
}

/// Serves `conn` (a hyper connection future) until it ends, the watchdog's deadline passes,
/// or the connection is evicted. Dropping the future closes the socket.
///
/// The watchdog is lazy: requests and reads only update atomics, they never wake it (that
/// would cost two task wake-ups and two timer registrations per request). It sleeps until the
/// current deadline but never longer than the shorter of the two timeouts, and recomputes on
/// waking; a deadline that moved earlier meanwhile (a head started, a request finished) is
/// always at least that far in the future, so no cut is ever late.
pub async fn supervise(
    mut conn: Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>,
    state: &ConnState,
    limits: &ConnLimits,
) {
    let recheck = limits.header_read_timeout.min(limits.idle_timeout);
    loop {
        let horizon = Instant::now() + recheck;
        let wake_at = state.deadline(limits).map_or(horizon, |d| d.min(horizon));
        tokio::select! {
            _ = &mut conn => return,
            _ = state.wake.notified() => {
                if state.closing.load(Ordering::Acquire) && state.idle_for().is_some() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(wake_at) => {
                let evicted = state.closing.load(Ordering::Acquire) && state.idle_for().is_some();
                if evicted
                    || state
                        .deadline(limits)
                        .is_some_and(|d| d <= Instant::now())
                {
                    return;
                }
            }
        }
    }
}

/// The canned answer to a connection refused at the cap.
pub fn refusal(correlation_id: &str) -> Vec<u8> {
    let e = ApiError::new(503, "OVERLOADED", "too many connections; retry shortly").retry_after(1);
    raw_response(&e, correlation_id)
}

/// A complete HTTP/1.1 answer with the JSON error body and `Connection: close`.
pub fn raw_response(e: &ApiError, correlation_id: &str) -> Vec<u8> {
    let body = e.body(correlation_id);
    let reason = http::StatusCode::from_u16(e.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\nx-correlation-id: {correlation_id}\r\nconnection: close\r\ncontent-length: {}\r\n",
        e.status,
        body.len()
    );
    if let Some(s) = e.retry_after {
        out.push_str(&format!("retry-after: {s}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// The JSON error for an answer hyper wrote by itself.
fn hyper_error(status: u16) -> ApiError {
    match status {
        431 => ApiError::new(
            431,
            "HEADERS_TOO_LARGE",
            "the request head (line and headers) is larger than the server accepts",
        ),
        408 => ApiError::new(
            408,
            "REQUEST_TIMEOUT",
            "the request head was not received in time",
        ),
        s => ApiError::new(s, "MALFORMED_REQUEST", "the request is not valid HTTP/1.1"),
    }
}

/// If `buf` is an answer hyper produced itself (an HTTP/1.1 error head without our
/// correlation header), its status.
fn hyper_generated(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if status < 400 {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..head_end];
    let ours = head
        .split(|b| *b == b'\n')
        .any(|l| l.len() > 17 && l[..17].eq_ignore_ascii_case(b"x-correlation-id:"));
    (!ours).then_some(status)
}

/// The socket as hyper sees it: counts reads for the watchdog and rewrites hyper's own error
/// answers (see the module doc).
pub struct Io {
    inner: TcpStream,
    state: Arc<ConnState>,
    correlation: Arc<dyn Fn() -> String + Send + Sync>,
    /// A replacement answer still being written.
    pending: Vec<u8>,
    written: usize,
}

impl Io {
    pub fn new(
        inner: TcpStream,
        state: Arc<ConnState>,
        correlation: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Io {
        Io {
            inner,
            state,
            correlation,
            pending: Vec::new(),
            written: 0,
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if self.state.in_flight.load(Ordering::Acquire) == 0
            && let Some(status) = hyper_generated(buf)
        {
            let corr = (self.correlation)();
            self.pending = raw_response(&hyper_error(status), &corr);
            // hyper's head is consumed whole; ours is written by the next polls.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_answers_are_rewritten() {
        let hyper431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_generated(hyper431), Some(431));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nX-Correlation-Id: c\r\n\r\n{}";
        assert_eq!(hyper_generated(ours), None);
        assert_eq!(hyper_generated(b"HTTP/1.1 201 Created\r\n\r\n"), None);
        assert_eq!(hyper_generated(b"garbage"), None);
        let r = String::from_utf8(raw_response(&hyper_error(431), "c-1")).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{r}"
        );
        assert!(r.contains("connection: close\r\n"));
        assert!(r.ends_with(r#"{"error":{"code":"HEADERS_TOO_LARGE","message":"the request head (line and headers) is larger than the server accepts","field":null},"correlationId":"c-1"}"#));
    }
}
