//! The order pipeline: a multi-producer disruptor ring between the HTTP tasks and four
//! dependent stages (validate ▶ idempotency ▶ risk ▶ publish).
//!
//! Two layouts (`--stages`): `threads` runs each stage on its own thread (for machines with
//! a core per stage); `fused` runs validate, idempotency and risk in one handler on one thread
//! (`oms-stages`) and publish on another, which on a machine with fewer cores than stages
//! saves two thread hand-offs per request. `auto` picks `fused` below 6 cores. The default
//! stays `threads` until the fused layout is measured (perf/RESULTS.md, section "perf").
//!
//! HTTP tasks claim a slot with `try_publish` and write the request into it in place; if the
//! ring stays full for `ring_full_wait` they answer 503 `OVERLOADED`. A request waits for its
//! answer at most `ack_timeout`; if by then the publish stage has not yet taken the command,
//! the task marks it abandoned (a compare-and-swap the publish stage also races for), answers
//! 503 `LOG_UNAVAILABLE`, and the command is never logged — so it never executes later. If
//! the publish stage took it first, the task waits for the log's own bounded outcome.

pub mod handoff;
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
use oms_wire::ApiError;
use tokio::sync::oneshot;

use self::slot::{ABANDONED, QUEUED, Reply, Slot, SlotData, Ticket};
use crate::config::{StageLayout, WaitKind};
use crate::metrics::Metrics;
use crate::telemetry::{self, Step, TraceParent};

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
    static STAGE: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
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
        let (_, next) = STAGE.get().unwrap_or_else(|| {
            // (waker slot of this thread, slot of the stage after it)
            let (i, next) = match std::thread::current().name() {
                Some("oms-validate") => (0, 1),
                Some("oms-idempotency") => (1, 2),
                Some("oms-risk") => (2, 3),
                Some("oms-stages") => (0, 3),
                Some("oms-publish") => (3, usize::MAX),
                _ => (usize::MAX, usize::MAX),
            };
            if let Some(slot) = self.wakers.threads.get(i) {
                let _ = slot.set(std::thread::current());
            }
            STAGE.set(Some((i, next)));
            (i, next)
        });
        if WORKED.replace(false) {
            self.wakers.wake(next);
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

/// Validate, idempotency and risk in one handler, on one thread: each slot is validated and
/// handed to the (batching) idempotency stage; risk runs over the whole ring batch once the
/// idempotency verdicts are in (at the end of the batch, when that stage has flushed).
struct Fused<V, R> {
    validate: V,
    idem: idempotency::IdempotencyStage,
    risk: R,
    held: Vec<*const Slot>,
}

// SAFETY: the raw slot pointers in `held` are only dereferenced on the handler's own thread,
// within the ring batch they were collected in (the disruptor publishes this consumer's cursor,
// letting later stages and producers at those slots, only after the batch's last event).
unsafe impl<V: Send, R: Send> Send for Fused<V, R> {}

impl<V, R> Fused<V, R>
where
    V: FnMut(&Slot, i64, bool),
    R: FnMut(&Slot, i64, bool),
{
    fn handle(&mut self, slot: &Slot, seq: i64, eob: bool) {
        {
            let _span = stage_span(Step::Validate, slot);
            (self.validate)(slot, seq, eob);
        }
        {
            let _span = stage_span(Step::Idempotency, slot);
            self.idem.handle(slot, seq, eob);
        }
        self.held.push(slot as *const Slot);
        if eob {
            let n = self.held.len();
            for (i, p) in self.held.drain(..).enumerate() {
                // SAFETY: see the `Send` impl: `p` is a slot of the current batch, still owned
                // by this consumer; the idempotency stage has flushed (end of batch).
                let s = unsafe { &*p };
                let _span = stage_span(Step::Risk, s);
                (self.risk)(s, seq, i + 1 == n);
            }
        }
    }
}

/// Ring settings.
pub struct RingConfig {
    pub size: usize,
    pub wait: WaitKind,
    pub layout: StageLayout,
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

/// The entered span of ring stage `step` for the request in `slot`, if it is traced and not
/// answered yet. Untraced (always, when traces are off): one read of the slot, nothing else.
fn stage_span(step: Step, slot: &Slot) -> Option<tracing::span::EnteredSpan> {
    // SAFETY: called only by the stage that owns the slot, right before (and not during) its
    // handler's own access (see slot.rs); the reference does not outlive this line.
    let d = unsafe { slot.data() };
    let trace = d.trace.filter(|_| d.ticket.is_some())?;
    Some(telemetry::child(step, trace).entered())
}

/// Wraps a stage's handler with its span (see [`stage_span`]).
fn traced<H>(step: Step, mut h: H) -> impl FnMut(&Slot, i64, bool) + Send + 'static
where
    H: FnMut(&Slot, i64, bool) + Send + 'static,
{
    move |slot, seq, eob| {
        let _span = stage_span(step, slot);
        h(slot, seq, eob);
    }
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
    if cfg.layout.fused() {
        return install_fused(cfg, wait, wakers, s);
    }
    let mut publish = s.publish;
    let mut idem = s.idempotency;
    let b = build_multi_producer(cfg.size, Slot::new, wait);
    let b = match cfg.pin.first().copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let b = b
        .thread_name("oms-validate")
        .handle_events_with(waking(traced(Step::Validate, s.validate), wakers, 1))
        .and_then();
    let b = match cfg.pin.get(1).copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let b = b
        .thread_name("oms-idempotency")
        .handle_events_with(waking(
            traced(
                Step::Idempotency,
                move |slot: &Slot, seq: i64, eob: bool| idem.handle(slot, seq, eob),
            ),
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
        .handle_events_with(waking(traced(Step::Risk, s.risk), wakers, 3))
        .and_then();
    let b = match cfg.pin.get(3).copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    b.thread_name("oms-publish")
        .handle_events_with(move |slot: &Slot, seq: i64, eob: bool| publish.handle(slot, seq, eob))
        .build()
}

fn install_fused<W, V, R>(
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
    let mut front = Fused {
        validate: s.validate,
        idem: s.idempotency,
        risk: s.risk,
        held: Vec::with_capacity(cfg.size),
    };
    let b = build_multi_producer(cfg.size, Slot::new, wait);
    let b = match cfg.pin.first().copied().flatten() {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let b = b
        .thread_name("oms-stages")
        .handle_events_with(waking(
            move |slot: &Slot, seq: i64, eob: bool| front.handle(slot, seq, eob),
            wakers,
            3,
        ))
        .and_then();
    let b = match cfg.pin.get(1).copied().flatten() {
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

    /// The answer to a submission after [`Pipeline::close`].
    fn refuse_if_closed(&self) -> Option<Reply> {
        self.closed.load(Ordering::Acquire).then(|| {
            Reply::Error(
                ApiError::new(
                    503,
                    "OVERLOADED",
                    "the server is shutting down; retry on another node",
                )
                .retry_after(1),
            )
        })
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
        self.submit_traced(started, None, fill).await
    }

    /// [`Pipeline::submit`] of a request that is part of a trace (`trace`: its root span's
    /// context; the stages' spans are its children).
    pub async fn submit_traced(
        &self,
        started: Instant,
        trace: Option<TraceParent>,
        fill: impl FnOnce(&mut SlotData),
    ) -> Reply {
        if let Some(refused) = self.refuse_if_closed() {
            return refused;
        }
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let ticket = Ticket {
            tx,
            state: Arc::clone(&state),
            started,
        };
        let mut fill = Some(move |d: &mut SlotData| {
            fill(d);
            d.trace = trace;
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
                        self.metrics.ring_full.inc();
                        return Reply::Error(ApiError::overloaded());
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
        self.await_reply(rx, &state).await
    }

    /// Claims `n` consecutive slots in one go (a batch travels the ring as one unit).
    fn try_publish_many(
        &self,
        n: usize,
        fill: &mut dyn FnMut(usize, &mut SlotData),
    ) -> Result<(), disruptor::MissingFreeSlots> {
        PRODUCER.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(id, _)| *id != self.id) {
                *cell = Some((self.id, self.template.lock().clone()));
            }
            let (_, producer) = cell.as_mut().expect("just installed");
            producer
                .try_batch_publish(n, |iter| {
                    for (i, slot) in iter.enumerate() {
                        fill(i, slot.data_mut());
                    }
                })
                .map(|_| ())
        })
    }

    /// Puts several commands on consecutive slots at once (so they reach the log in the same
    /// group commit when they fit one batch) and waits for every answer, in order. If the
    /// ring cannot take them all within `ring_full_wait`, none is queued: every item is 503.
    pub async fn submit_batch(
        &self,
        started: Instant,
        trace: Option<TraceParent>,
        mut fill: impl FnMut(usize, &mut SlotData),
        n: usize,
    ) -> Vec<Reply> {
        if self.refuse_if_closed().is_some() {
            return (0..n).filter_map(|_| self.refuse_if_closed()).collect();
        }
        let mut rxs = Vec::with_capacity(n);
        let mut tickets = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = oneshot::channel();
            let state = Arc::new(AtomicU8::new(QUEUED));
            tickets.push(Some(Ticket {
                tx,
                state: Arc::clone(&state),
                started,
            }));
            rxs.push((rx, state));
        }
        let full_deadline = Instant::now() + self.ring_full_wait;
        loop {
            let published = {
                let mut put = |i: usize, d: &mut SlotData| {
                    fill(i, d);
                    d.trace = trace;
                    d.ticket = tickets[i].take();
                };
                self.try_publish_many(n, &mut put)
            };
            match published {
                Ok(()) => {
                    self.wakers.wake(0);
                    break;
                }
                Err(_) => {
                    if Instant::now() >= full_deadline {
                        self.metrics.ring_full.inc();
                        return (0..n)
                            .map(|_| Reply::Error(ApiError::overloaded()))
                            .collect();
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
        let mut out = Vec::with_capacity(n);
        for (rx, state) in rxs {
            out.push(self.await_reply(rx, &state).await);
        }
        out
    }

    /// Waits (bounded by `ack_timeout`) for a queued command's answer; see the module docs.
    async fn await_reply(&self, mut rx: oneshot::Receiver<Reply>, state: &AtomicU8) -> Reply {
        self.metrics.ring_in_flight.inc();
        let reply = match tokio::time::timeout(self.ack_timeout, &mut rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Reply::Error(ApiError::internal("the pipeline dropped the request")),
            Err(_) => {
                if state
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
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
        self.metrics.ring_in_flight.dec();
        reply
    }
}
