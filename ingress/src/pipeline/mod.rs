//! The order pipeline: a multi-producer disruptor ring between the HTTP tasks and four
//! dependent stages (validate ▶ idempotency ▶ risk ▶ publish), each on its own thread.
//!
//! HTTP tasks claim a slot with `try_publish` and write the request into it in place; if the
//! ring stays full for `ring_full_wait` they answer 503 `OVERLOADED`. A request waits for its
//! answer at most `ack_timeout`; if by then the publish stage has not yet taken the command,
//! the task marks it abandoned (a compare-and-swap the publish stage also races for), answers
//! 503 `LOG_UNAVAILABLE`, and the command is never logged — so it never executes later. If
//! the publish stage took it first, the task waits for the log's own bounded outcome.

pub mod idempotency;
pub mod slot;
pub mod stages;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use disruptor::wait_strategies::WaitStrategy;
use disruptor::{
    BusySpinWithSpinLoopHint, MultiProducer, ProcessorSettings, Producer, RingBufferFull,
    SingleConsumerBarrier, build_multi_producer,
};
use tokio::sync::oneshot;

use self::slot::{ABANDONED, QUEUED, Reply, Slot, SlotData, Ticket};
use crate::config::WaitKind;
use crate::http::error::ApiError;
use crate::metrics::Metrics;

type RingProducer = MultiProducer<Slot, SingleConsumerBarrier>;

/// Sleeps while idle, with the thread's timer slack cut to 1 µs on first use: Linux's
/// default 50 µs slack would stretch every 20 µs nap and, over four chained stages, add a
/// few hundred microseconds to each acknowledgement at low load.
#[derive(Clone, Copy)]
pub struct PreciseSleep(pub Duration);

thread_local! {
    static SLACK_SET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl WaitStrategy for PreciseSleep {
    fn wait_for(&self, _sequence: i64) {
        if !SLACK_SET.get() {
            #[cfg(target_os = "linux")]
            // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack; the argument
            // is a plain integer (nanoseconds) and no pointers are passed.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0);
            }
            SLACK_SET.set(true);
        }
        std::thread::sleep(self.0);
    }
}

/// Where each stage thread can be woken. Leaked once per pipeline so the (`Copy`) wait
/// strategy can hold a `&'static` to it.
pub struct Wakers {
    threads: [std::sync::OnceLock<std::thread::Thread>; 4],
}

impl Wakers {
    fn new() -> &'static Wakers {
        Box::leak(Box::new(Wakers {
            threads: Default::default(),
        }))
    }

    /// Wakes stage `i` if it is parked (a cheap atomic swap when it is not).
    pub fn wake(&self, i: usize) {
        if let Some(t) = self.threads.get(i).and_then(|t| t.get()) {
            t.unpark();
        }
    }
}

thread_local! {
    static STAGE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    static WORKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Parks while idle and is woken by whoever made work for it: the HTTP task after
/// publishing, and each stage for the next one. The default: no polling, so idle stages
/// cost no CPU and no context switches, which matters on small machines.
///
/// The disruptor publishes a stage's cursor only after its handler returns, so a wake sent
/// from the handler can arrive just before the work is visible. Each stage therefore wakes
/// its successor twice: at the end of a batch (keeps a busy pipeline flowing) and again when
/// it goes idle itself (its cursor is stored by then). A parked stage also re-checks every
/// millisecond as a safety net.
#[derive(Clone, Copy)]
pub struct Park {
    wakers: &'static Wakers,
}

impl WaitStrategy for Park {
    fn wait_for(&self, _sequence: i64) {
        let i = STAGE.get().unwrap_or_else(|| {
            let i = match std::thread::current().name() {
                Some("oms-validate") => 0,
                Some("oms-idempotency") => 1,
                Some("oms-risk") => 2,
                Some("oms-publish") => 3,
                _ => usize::MAX,
            };
            if let Some(slot) = self.wakers.threads.get(i) {
                let _ = slot.set(std::thread::current());
            }
            STAGE.set(Some(i));
            i
        });
        if WORKED.replace(false) {
            self.wakers.wake(i.saturating_add(1));
        }
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// Yields the CPU while idle.
#[derive(Clone, Copy)]
pub struct Yield;

impl WaitStrategy for Yield {
    fn wait_for(&self, _sequence: i64) {
        std::thread::yield_now();
    }
}

/// The four stage handlers, ready to be installed.
pub struct Stages<V, R> {
    pub validate: V,
    pub idempotency: idempotency::IdempotencyStage,
    pub risk: R,
    pub publish: stages::PublishStage,
}

/// Ring settings.
pub struct RingConfig {
    pub size: usize,
    pub wait: WaitKind,
    /// Cores for validate, idempotency, risk, publish (missing entries: unpinned).
    pub pin: Vec<Option<usize>>,
    pub ack_timeout: Duration,
    pub ring_full_wait: Duration,
}

/// The HTTP side's handle on the ring.
pub struct Pipeline {
    template: parking_lot::Mutex<RingProducer>,
    wakers: &'static Wakers,
    id: usize,
    ack_timeout: Duration,
    ring_full_wait: Duration,
    metrics: Arc<Metrics>,
    /// Set at shutdown: new submissions are refused (503 `OVERLOADED`) so the ring drains.
    closed: std::sync::atomic::AtomicBool,
}

thread_local! {
    /// One producer handle per runtime thread (cloned once), so publishing takes no lock.
    static PRODUCER: RefCell<Option<(usize, RingProducer)>> = const { RefCell::new(None) };
}

/// Wraps a handler so that the end of each batch wakes the next stage.
fn waking<H>(
    mut h: H,
    wakers: &'static Wakers,
    next: usize,
) -> impl FnMut(&Slot, i64, bool) + Send + 'static
where
    H: FnMut(&Slot, i64, bool) + Send + 'static,
{
    move |slot, seq, eob| {
        h(slot, seq, eob);
        if eob {
            WORKED.set(true);
            wakers.wake(next);
        }
    }
}

fn install<W, V, R>(
    cfg: &RingConfig,
    wait: W,
    wakers: &'static Wakers,
    s: Stages<V, R>,
) -> RingProducer
where
    W: WaitStrategy + 'static,
    V: FnMut(&Slot, i64, bool) + Send + 'static,
    R: FnMut(&Slot, i64, bool) + Send + 'static,
{
    let mut publish = s.publish;
    let mut idem = s.idempotency;
    let b = build_multi_producer(cfg.size, Slot::new, wait);
    let b = match cfg.pin.first().copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let b = b
        .thread_name("oms-validate")
        .handle_events_with(waking(s.validate, wakers, 1))
        .and_then();
    let b = match cfg.pin.get(1).copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let b = b
        .thread_name("oms-idempotency")
        .handle_events_with(waking(
            move |slot: &Slot, seq: i64, eob: bool| idem.handle(slot, seq, eob),
            wakers,
            2,
        ))
        .and_then();
    let b = match cfg.pin.get(2).copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let b = b
        .thread_name("oms-risk")
        .handle_events_with(waking(s.risk, wakers, 3))
        .and_then();
    let b = match cfg.pin.get(3).copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    b.thread_name("oms-publish")
        .handle_events_with(move |slot: &Slot, seq: i64, eob: bool| publish.handle(slot, seq, eob))
        .build()
}

static NEXT_PIPELINE_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

impl Pipeline {
    /// Starts the stage threads.
    pub fn start<V, R>(cfg: RingConfig, stages: Stages<V, R>, metrics: Arc<Metrics>) -> Pipeline
    where
        V: FnMut(&Slot, i64, bool) + Send + 'static,
        R: FnMut(&Slot, i64, bool) + Send + 'static,
    {
        let wakers = Wakers::new();
        let producer = match cfg.wait {
            WaitKind::Park => install(&cfg, Park { wakers }, wakers, stages),
            WaitKind::Sleep => install(
                &cfg,
                PreciseSleep(Duration::from_micros(20)),
                wakers,
                stages,
            ),
            WaitKind::Yield => install(&cfg, Yield, wakers, stages),
            WaitKind::Spin => install(&cfg, BusySpinWithSpinLoopHint, wakers, stages),
        };
        Pipeline {
            template: parking_lot::Mutex::new(producer),
            wakers,
            id: NEXT_PIPELINE_ID.fetch_add(1, Ordering::Relaxed),
            ack_timeout: cfg.ack_timeout,
            ring_full_wait: cfg.ring_full_wait,
            metrics,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Refuses every later submission (shutdown: requests on kept-alive connections stop
    /// entering the ring, so it drains in a bounded time).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn try_publish(
        &self,
        fill: &mut Option<impl FnOnce(&mut SlotData)>,
    ) -> Result<(), RingBufferFull> {
        PRODUCER.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(id, _)| *id != self.id) {
                *cell = Some((self.id, self.template.lock().clone()));
            }
            let (_, producer) = cell.as_mut().expect("just installed");
            producer
                .try_publish(|slot| {
                    if let Some(f) = fill.take() {
                        f(slot.data_mut());
                    }
                })
                .map(|_| ())
        })
    }

    /// Puts a command on the ring and waits (bounded) for its answer.
    pub async fn submit(&self, started: Instant, fill: impl FnOnce(&mut SlotData)) -> Reply {
        if self.closed.load(Ordering::Acquire) {
            self.metrics.reject("OVERLOADED");
            return Reply::Error(
                ApiError::new(
                    503,
                    "OVERLOADED",
                    "the server is shutting down; retry on another node",
                )
                .retry_after(1),
            );
        }
        let (tx, mut rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let ticket = Ticket {
            tx,
            state: Arc::clone(&state),
            started,
        };
        let mut fill = Some(move |d: &mut SlotData| {
            fill(d);
            d.ticket = Some(ticket);
        });
        let full_deadline = Instant::now() + self.ring_full_wait;
        loop {
            match self.try_publish(&mut fill) {
                Ok(()) => {
                    self.wakers.wake(0);
                    break;
                }
                Err(RingBufferFull) => {
                    if Instant::now() >= full_deadline {
                        self.metrics.ring_full.fetch_add(1, Ordering::Relaxed);
                        self.metrics.reject("OVERLOADED");
                        return Reply::Error(ApiError::overloaded());
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
        self.metrics.ring_in_flight.fetch_add(1, Ordering::Relaxed);
        let reply = match tokio::time::timeout(self.ack_timeout, &mut rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Reply::Error(ApiError::internal("the pipeline dropped the request")),
            Err(_) => {
                if state
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.metrics.reject("LOG_UNAVAILABLE");
                    Reply::Error(ApiError::log_unavailable(
                        "no acknowledgement within the bound",
                    ))
                } else {
                    // The publish stage owns it: its outcome (bounded by the log) decides.
                    match rx.await {
                        Ok(r) => r,
                        Err(_) => {
                            Reply::Error(ApiError::internal("the pipeline dropped the request"))
                        }
                    }
                }
            }
        };
        self.metrics.ring_in_flight.fetch_sub(1, Ordering::Relaxed);
        reply
    }
}
