//! The projector loop: events in from a channel, orders and executions out to MongoDB.
//!
//! It runs on its own OS thread, off the ring's critical path. Batches that are already
//! waiting are coalesced into one write (so a backlog after an outage drains in large
//! chunks); a failed write is retried with exponential backoff until it succeeds, so no event
//! is ever skipped, and the caller learns a batch is written only through `on_written` (where
//! a Kafka consumer commits its offsets). `lag` = events received − events written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SendError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use oms_core::ports::{OrderStore, StoreError};
use oms_core::{Event, ExecutionReport, Order};

/// A batch of events as the projector receives it. `(C, Vec<Event>)` carries a caller's
/// context (a Kafka offset, a checkpoint) that comes back through `on_written`.
pub trait EventBatch {
    fn events(&self) -> &[Event];
}

impl EventBatch for Vec<Event> {
    fn events(&self) -> &[Event] {
        self
    }
}

impl EventBatch for Box<[Event]> {
    fn events(&self) -> &[Event] {
        self
    }
}

impl EventBatch for Arc<[Event]> {
    fn events(&self) -> &[Event] {
        self
    }
}

impl<C> EventBatch for (C, Vec<Event>) {
    fn events(&self) -> &[Event] {
        &self.1
    }
}

/// Counters and the stop switch of a [`Projector`], shared with whoever watches it.
#[derive(Debug, Default)]
pub struct ProjectorStats {
    /// Events sent through a [`ProjectorSender`] (still in the channel or taken).
    pub queued: AtomicU64,
    /// Events taken from the channel.
    pub received: AtomicU64,
    /// Events whose batch was written (events that need no write count as soon as their
    /// batch is done).
    pub written: AtomicU64,
    /// Failed write attempts (each retried).
    pub retries: AtomicU64,
    /// Writes (one per coalesced group of batches).
    pub writes: AtomicU64,
    stop: AtomicBool,
}

impl ProjectorStats {
    /// Events received but not yet written. With a [`ProjectorSender`] this includes the
    /// events still waiting in the channel; with a plain sender only those already taken.
    pub fn lag(&self) -> u64 {
        let w = self.written.load(Ordering::Acquire);
        let r = self.received.load(Ordering::Acquire);
        let q = self.queued.load(Ordering::Acquire);
        q.max(r).saturating_sub(w)
    }

    /// Asks [`Projector::run`] to return after the write in progress (or the current backoff).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The sending half of a projector's channel that counts what it sends, so
/// [`ProjectorStats::lag`] includes events not yet taken from the channel.
pub struct ProjectorSender<T> {
    tx: Sender<T>,
    stats: Arc<ProjectorStats>,
}

impl<T> Clone for ProjectorSender<T> {
    fn clone(&self) -> Self {
        ProjectorSender {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<T> ProjectorSender<T> {
    /// The counters of the projector this sender feeds.
    pub fn stats(&self) -> &Arc<ProjectorStats> {
        &self.stats
    }
}

impl<T: EventBatch> ProjectorSender<T> {
    /// Sends a batch; gives it back if the projector is gone.
    pub fn send(&self, batch: T) -> Result<(), SendError<T>> {
        let n = batch.events().len() as u64;
        self.stats.queued.fetch_add(n, Ordering::Release);
        self.tx.send(batch).inspect_err(|_| {
            self.stats.queued.fetch_sub(n, Ordering::Release);
        })
    }
}

/// Why [`Projector::run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum ProjectorExit {
    /// Every sender is gone and everything received was written.
    Drained,
    /// [`ProjectorStats::request_stop`]; `unwritten` events were received but not written.
    Stopped { unwritten: u64 },
}

/// Retry and coalescing settings.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Coalesce waiting batches up to about this many events per write.
    pub max_events_per_write: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_events_per_write: 5_000,
        }
    }
}

/// Writes the order and execution events of a stream into an [`OrderStore`].
pub struct Projector<S: OrderStore> {
    store: S,
    cfg: ProjectorConfig,
    stats: Arc<ProjectorStats>,
}

impl<S: OrderStore> Projector<S> {
    pub fn new(store: S, cfg: ProjectorConfig) -> Self {
        Projector {
            store,
            cfg,
            stats: Arc::new(ProjectorStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<ProjectorStats> {
        self.stats.clone()
    }

    /// A channel whose sender counts into this projector's lag; pass the receiver to
    /// [`Projector::run`].
    pub fn channel<T: EventBatch>(&self) -> (ProjectorSender<T>, Receiver<T>) {
        let (tx, rx) = mpsc::channel();
        (
            ProjectorSender {
                tx,
                stats: self.stats.clone(),
            },
            rx,
        )
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Runs until every sender of `rx` is dropped and all is written, or a stop is requested.
    /// `on_written` gets each batch, in order, once it and everything before it is written.
    pub fn run<T: EventBatch>(
        &mut self,
        rx: &Receiver<T>,
        mut on_written: impl FnMut(T),
    ) -> ProjectorExit {
        let mut pending: Vec<T> = Vec::new();
        let mut orders: Vec<Order> = Vec::new();
        let mut execs: Vec<ExecutionReport> = Vec::new();
        loop {
            if self.stats.stop_requested() {
                return ProjectorExit::Stopped {
                    unwritten: self.stats.lag(),
                };
            }
            // Block for the first batch (waking to notice a stop), then take what waits.
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => self.take(b, &mut pending),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return ProjectorExit::Drained,
            }
            let mut events: usize = pending.iter().map(|b| b.events().len()).sum();
            while events < self.cfg.max_events_per_write {
                match rx.try_recv() {
                    Ok(b) => {
                        events += b.events().len();
                        self.take(b, &mut pending);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            orders.clear();
            execs.clear();
            for b in &pending {
                for e in b.events() {
                    match e {
                        Event::OrderUpdate { order, .. } => orders.push((**order).clone()),
                        Event::Execution(x) => execs.push(*x),
                        _ => {}
                    }
                }
            }
            if !self.write_with_retry(&orders, &execs) {
                return ProjectorExit::Stopped {
                    unwritten: self.stats.lag(),
                };
            }
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.stats
                .written
                .fetch_add(events as u64, Ordering::Release);
            for b in pending.drain(..) {
                on_written(b);
            }
        }
    }

    fn take<T: EventBatch>(&self, b: T, pending: &mut Vec<T>) {
        self.stats
            .received
            .fetch_add(b.events().len() as u64, Ordering::Release);
        pending.push(b);
    }

    /// Writes until success; `false` only if a stop was requested meanwhile.
    fn write_with_retry(&mut self, orders: &[Order], execs: &[ExecutionReport]) -> bool {
        let mut backoff = self.cfg.backoff_min;
        let mut first_failure: Option<Instant> = None;
        loop {
            match self.write_once(orders, execs) {
                Ok(()) => {
                    if let Some(t) = first_failure {
                        tracing::info!(
                            down_for = ?t.elapsed(),
                            "projector: MongoDB writes succeed again"
                        );
                    }
                    return true;
                }
                Err(e) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if first_failure.is_none() {
                        first_failure = Some(Instant::now());
                        tracing::warn!(error = %e, "projector: write failed, retrying with backoff");
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if self.stats.stop_requested() {
                            return false;
                        }
                        std::thread::sleep(Duration::from_millis(10).min(backoff));
                    }
                    backoff = (backoff * 2).min(self.cfg.backoff_max);
                }
            }
        }
    }

    fn write_once(
        &mut self,
        orders: &[Order],
        execs: &[ExecutionReport],
    ) -> Result<(), StoreError> {
        if !orders.is_empty() {
            self.store.upsert_orders(orders)?;
        }
        if !execs.is_empty() {
            self.store.insert_executions(execs)?;
        }
        Ok(())
    }
}
