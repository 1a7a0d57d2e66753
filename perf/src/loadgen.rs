//! The load generator: many keep-alive hyper connections, open or closed loop.
//!
//! Closed loop (`Mode::Closed`): every connection sends its next request as soon as the previous
//! response is in; this finds the maximum throughput, and latency is measured from the actual
//! send. Open loop (`Mode::Open`): requests are scheduled at fixed intervals (`start + i/rate`)
//! by a pacer thread that releases one semaphore permit per due request; whichever connection
//! is free takes the next ticket. Latency is measured from the ticket's *intended* send time,
//! so a server that stalls is charged for the queue it caused (coordinated-omission
//! correction), not just for the requests that happened to be in flight. The pacer is an OS
//! thread because tokio timers have 1 ms granularity, coarser than what is being measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::report::{Latency, Replay, Report, Stats};
use crate::target::Target;
use crate::traffic::{Mix, Op, OpKind, Traffic};

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Fixed concurrency: one outstanding request per connection.
    Closed,
    /// Fixed request rate (requests/s), latency from the intended send time.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to send.
    pub target: Target,
    /// Open or closed.
    pub mode: Mode,
    /// Keep-alive connections.
    pub connections: usize,
    /// Stop after this many requests.
    pub requests: u64,
    /// Stop after this long (open loop: no new sends after it; in-flight requests finish).
    pub duration: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Traffic mix.
    pub mix: Mix,
    /// PRNG seed.
    pub seed: u64,
    /// Print a progress line per second on stderr.
    pub progress: bool,
    /// Client runtime threads (for the report only; the caller builds the runtime).
    pub threads: usize,
}

/// Counters shared with the progress printer.
#[derive(Debug, Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Runs one load test and returns its report. Must be called inside a tokio runtime.
pub async fn run(cfg: Config) -> Result<Report> {
    let run_id = format!(
        "{:x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos()
    );
    let mut senders = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections.max(1) {
        senders.push(
            connect(&cfg.target)
                .await
                .with_context(|| format!("connecting to {}", cfg.target.addr))?,
        );
    }
    let live = Arc::new(Live::default());
    let next = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(0));
    // A short lead so every connection task is parked before the first ticket is due.
    let start = Instant::now() + Duration::from_millis(20);
    let total = match cfg.mode {
        Mode::Closed => cfg.requests,
        Mode::Open { rate } => cfg
            .requests
            .min((rate * cfg.duration.as_secs_f64()).ceil() as u64),
    };

    let pacer = match cfg.mode {
        Mode::Open { rate } => {
            let (sem, live, n) = (sem.clone(), live.clone(), senders.len());
            Some(std::thread::spawn(move || {
                pace(sem, live, start, rate, total, n)
            }))
        }
        Mode::Closed => None,
    };
    let progress = cfg
        .progress
        .then(|| tokio::spawn(print_progress(live.clone(), start)));
    let deadline = start + cfg.duration;
    let stopper = {
        let live = live.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            live.stop.store(true, Ordering::Relaxed);
        })
    };

    let mut tasks = Vec::with_capacity(senders.len());
    for (i, sender) in senders.into_iter().enumerate() {
        let w = Worker {
            cfg: cfg.clone(),
            sender: Some(sender),
            traffic: Traffic::new(cfg.mix.clone(), cfg.seed, &run_id, i),
            stats: Stats::new(),
            live: live.clone(),
            next: next.clone(),
            sem: sem.clone(),
            start,
            total,
        };
        tasks.push(tokio::spawn(w.run()));
    }
    let mut stats = Stats::new();
    let mut last_done = start;
    for t in tasks {
        let (s, end) = t.await?;
        stats.merge(&s);
        last_done = last_done.max(end);
    }
    live.stop.store(true, Ordering::Relaxed);
    stopper.abort();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(p) = pacer {
        p.join()
            .map_err(|_| anyhow::anyhow!("pacer thread panicked"))?;
    }
    let issued = next.load(Ordering::Relaxed).min(total);
    let elapsed = last_done
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let (mode, latency_from, target_rate, not_sent) = match cfg.mode {
        Mode::Closed => ("closed", "send-time", None, 0),
        Mode::Open { rate } => ("open", "intended-send-time", Some(rate), total - issued),
    };
    let errors = stats.errors.values().sum();
    Ok(Report {
        mode: mode.into(),
        latency_from: latency_from.into(),
        target: format!("http://{}", cfg.target.host_header),
        connections: cfg.connections,
        threads: cfg.threads,
        target_rate,
        request_limit: cfg.requests,
        duration_limit_s: cfg.duration.as_secs_f64(),
        elapsed_s: elapsed,
        count: stats.count,
        ok: stats.ok,
        errors,
        cancel_rejected: stats.cancel_rejected,
        errors_by_code: stats.errors.clone(),
        not_sent,
        achieved_rate: stats.count as f64 / elapsed,
        latency_us: Latency::of(&stats.hist),
        ops: stats
            .ops
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
        replay: Replay {
            replayed: stats.replayed,
            missing: stats.replay_missing,
        },
    })
}

/// The pacer: releases one permit per request as its intended time passes. When done (or
/// stopped) it releases one extra permit per connection so every worker wakes, sees that the
/// tickets are exhausted and exits.
fn pace(sem: Arc<Semaphore>, live: Arc<Live>, start: Instant, rate: f64, total: u64, conns: usize) {
    let interval_ns = 1e9 / rate;
    let mut released = 0u64;
    while released < total && !live.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= start {
            let due = ((now - start).as_nanos() as f64 / interval_ns) as u64 + 1;
            let due = due.min(total);
            if due > released {
                sem.add_permits((due - released) as usize);
                released = due;
                continue;
            }
        }
        let next_at = start + Duration::from_nanos((released as f64 * interval_ns) as u64);
        // Sleep at most 1 ms at a time so a stop request is noticed promptly.
        let wait = next_at
            .saturating_duration_since(now)
            .min(Duration::from_millis(1));
        std::thread::sleep(wait);
    }
    sem.add_permits(conns);
}

async fn print_progress(live: Arc<Live>, start: Instant) {
    tokio::time::sleep_until(start.into()).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut prev = 0;
    loop {
        tick.tick().await;
        let done = live.done.load(Ordering::Relaxed);
        eprintln!(
            "[oms-perf] t={:>4.0}s responses={done} last_1s={}/s errors={}",
            start.elapsed().as_secs_f64(),
            done - prev,
            live.errors.load(Ordering::Relaxed)
        );
        prev = done;
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

struct Worker {
    cfg: Config,
    sender: Option<SendRequest<Full<Bytes>>>,
    traffic: Traffic,
    stats: Stats,
    live: Arc<Live>,
    next: Arc<AtomicU64>,
    sem: Arc<Semaphore>,
    start: Instant,
    total: u64,
}

/// The part of a 201 body the generator needs.
#[derive(Deserialize)]
struct Created {
    #[serde(rename = "orderId")]
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
}

impl Worker {
    async fn run(mut self) -> (Stats, Instant) {
        let mut last = self.start;
        tokio::time::sleep_until(self.start.into()).await;
        loop {
            if self.live.stop.load(Ordering::Relaxed) {
                break;
            }
            let t0 = match self.cfg.mode {
                Mode::Closed => {
                    if self.next.fetch_add(1, Ordering::Relaxed) >= self.total {
                        break;
                    }
                    Instant::now()
                }
                Mode::Open { rate } => {
                    match self.sem.acquire().await {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                    if self.live.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = self.next.fetch_add(1, Ordering::Relaxed);
                    if i >= self.total {
                        break;
                    }
                    self.start + Duration::from_nanos((i as f64 * 1e9 / rate) as u64)
                }
            };
            let op = self.traffic.next_op();
            self.send(op, t0).await;
            last = Instant::now();
        }
        (self.stats, last)
    }

    async fn send(&mut self, op: Op, t0: Instant) {
        let kind = op.kind;
        let result = tokio::time::timeout(self.cfg.timeout, self.exchange(&op)).await;
        let latency_us = t0.elapsed().as_micros() as u64;
        self.live.done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(Ok((status, replayed, body))) => {
                let code = if (200..300).contains(&status) {
                    if status == 201
                        && kind == OpKind::Place
                        && let Ok(c) = serde_json::from_slice::<Created>(&body)
                        && let Some(id) = c.order_id
                    {
                        self.traffic.created(op.account, id);
                    }
                    None
                } else {
                    self.live.errors.fetch_add(1, Ordering::Relaxed);
                    serde_json::from_slice::<ErrorBody>(&body)
                        .ok()
                        .map(|e| e.error.code)
                };
                self.stats
                    .response(kind, latency_us, status, code.as_deref(), replayed);
            }
            Ok(Err(e)) => {
                self.live.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.transport_error(kind, e);
                self.sender = None;
            }
            Err(_) => {
                self.live.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.transport_error(kind, "timeout");
                self.sender = None;
            }
        }
    }

    /// One request/response on this worker's connection, reconnecting if it was lost.
    async fn exchange(&mut self, op: &Op) -> std::result::Result<(u16, bool, Bytes), &'static str> {
        if self.sender.is_none() {
            self.sender = Some(connect(&self.cfg.target).await.map_err(|_| "connect")?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await.map_err(|_| "io")?;
        let method = if op.kind == OpKind::Cancel {
            Method::DELETE
        } else {
            Method::POST
        };
        let mut req = Request::builder()
            .method(method)
            .uri(op.path.as_str())
            .header(header::HOST, self.cfg.target.host_header.as_str())
            .header("x-account-id", op.account.as_str());
        if let Some(key) = &op.key {
            req = req.header("x-idempotency-key", key.as_str());
        }
        let body = match &op.body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|_| "request")?;
        let resp = sender.send_request(req).await.map_err(|_| "io")?;
        let status = resp.status().as_u16();
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| "io")?
            .to_bytes();
        Ok((status, replayed, body))
    }
}
