//! Stage 2: idempotency claims, batched; assigns order ids and acceptance timestamps.
//!
//! Two layers. The local index (rebuilt from the log at start) is this node's truth and
//! never fails. The optional shared store (Redis) makes keys unique across nodes: every key
//! that is new locally is claimed there too, all of a ring batch in one pipelined round trip.
//! If the shared store fails or is slow, the batch falls back to the local verdicts (counted
//! in `oms_idempotency_total{result="fallback"}`) and requests keep flowing; the store is
//! tried again on the next batch once its cool-down ends.
//!
//! Completions and releases of shared claims do not wait for the next ring batch: the
//! [`Completer`] thread sits between the publish stage and this stage, writes every final
//! answer (or release) to the shared store as soon as it arrives — batched, one round trip
//! for all that queued meanwhile — and forwards it here for the local index. So a node that
//! goes idle, or stops, leaves no `pending` record behind (issue 11).

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use oms_core::idempotency::MemoryIdempotency;
use oms_core::ids::{Clock, IdGen, Uuid7Gen};
use oms_core::ports::{Claim, ClaimRequest, Completion, IdemKey, IdempotencyStore};
use oms_wire::ApiError;

use super::slot::{Reply, Slot, SlotData, Work};
use super::stages::IdemMsg;

use crate::clock::SystemClock;
use crate::metrics::{IdemResult, Metrics, Stage};

/// The batching idempotency stage.
pub struct IdempotencyStage {
    local: MemoryIdempotency,
    shared: Option<Box<dyn IdempotencyStore>>,
    inbox: Receiver<IdemMsg>,
    metrics: Arc<Metrics>,
    ids: Uuid7Gen,
    /// Where acceptance timestamps come from (the wall clock in `oms serve`).
    clock: Box<dyn Clock + Send>,
    last_ts: u64,
    max_batch: usize,
    pending: Vec<*const Slot>,
    claims: Vec<ClaimRequest>,
    claim_slots: Vec<usize>,
    verdicts: Vec<Claim>,
    done: Vec<Completion>,
    released: Vec<IdemKey>,
    batch_start: Option<Instant>,
}

// SAFETY: the raw slot pointers are only dereferenced on the stage's own thread within the
// batch they were collected in (see `flush`); the stores are `Send`.
unsafe impl Send for IdempotencyStage {}

impl IdempotencyStage {
    pub fn new(
        local: MemoryIdempotency,
        shared: Option<Box<dyn IdempotencyStore>>,
        inbox: Receiver<IdemMsg>,
        node_id: u64,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut clock: Box<dyn Clock + Send> = Box::new(SystemClock);
        let seed = node_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ clock.now_nanos();
        IdempotencyStage {
            local,
            shared,
            inbox,
            metrics,
            ids: Uuid7Gen::new(seed),
            clock,
            last_ts: 0,
            max_batch: max_batch.max(1),
            pending: Vec::with_capacity(max_batch),
            claims: Vec::with_capacity(max_batch),
            claim_slots: Vec::with_capacity(max_batch),
            verdicts: Vec::with_capacity(max_batch),
            done: Vec::new(),
            released: Vec::new(),
            batch_start: None,
        }
    }

    /// Replaces the wall clock (tests, simulations).
    pub fn with_clock(mut self, clock: Box<dyn Clock + Send>) -> Self {
        self.clock = clock;
        self
    }

    /// The disruptor handler.
    pub fn handle(&mut self, slot: &Slot, _seq: i64, end_of_batch: bool) {
        self.batch_start.get_or_insert_with(Instant::now);
        self.pending.push(slot as *const Slot);
        if end_of_batch || self.pending.len() >= self.max_batch {
            self.flush();
        }
        if end_of_batch && let Some(s) = self.batch_start.take() {
            self.metrics.stage(Stage::Idempotency).observe(s.elapsed());
        }
    }

    /// Applies completions and releases sent back by the publish stage (through the
    /// [`Completer`], which already wrote them to the shared store).
    fn drain_inbox(&mut self, now_ms: u64) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                IdemMsg::Done(c) => self.done.push(c),
                IdemMsg::Release(k) => self.released.push(k),
            }
        }
        if !self.done.is_empty() {
            let _ = self.local.complete_batch(&self.done, now_ms);
            self.done.clear();
        }
        if !self.released.is_empty() {
            let _ = self.local.release_batch(&self.released);
            self.released.clear();
        }
    }

    fn flush(&mut self) {
        let now = self.clock.now_nanos();
        let now_ms = now / 1_000_000;
        self.drain_inbox(now_ms);
        let pending = std::mem::take(&mut self.pending);
        // Pass 1: local claims, in ring order (a key repeated within the batch is in flight).
        self.claims.clear();
        self.claim_slots.clear();
        let mut local_verdicts: Vec<Option<Claim>> = Vec::with_capacity(pending.len());
        for (i, p) in pending.iter().enumerate() {
            // SAFETY: `p` was handed to this stage in the current batch; the disruptor keeps
            // the slot (and every later stage's view of it) untouched until `handle` returns
            // for the batch's last event. Pointers are distinct, so no `&mut` aliases.
            let d = unsafe { (**p).data() };
            local_verdicts.push(None);
            if d.ticket.is_none() {
                continue;
            }
            if let Work::Place {
                key,
                fingerprint,
                cmd: Some(_),
                ..
            } = &d.work
            {
                let claim = ClaimRequest {
                    key: IdemKey {
                        account: d.account,
                        key: *key,
                    },
                    fingerprint: *fingerprint,
                };
                self.verdicts.clear();
                let v = match self.local.claim_batch(
                    std::slice::from_ref(&claim),
                    now_ms,
                    &mut self.verdicts,
                ) {
                    Ok(()) => self.verdicts.pop().unwrap_or(Claim::InFlight),
                    Err(_) => Claim::InFlight,
                };
                if v == Claim::New && self.shared.is_some() {
                    self.claims.push(claim);
                    self.claim_slots.push(i);
                }
                local_verdicts[i] = Some(v);
            }
        }
        // Pass 2: one round trip to the shared store for every locally-new key.
        if !self.claims.is_empty()
            && let Some(shared) = self.shared.as_mut()
        {
            self.verdicts.clear();
            match shared.claim_batch(&self.claims, now_ms, &mut self.verdicts) {
                Ok(()) if self.verdicts.len() == self.claims.len() => {
                    for (k, v) in self.verdicts.drain(..).enumerate() {
                        let i = self.claim_slots[k];
                        if v != Claim::New {
                            // Another node owns or answered this key: drop our local claim.
                            let _ = self
                                .local
                                .release_batch(std::slice::from_ref(&self.claims[k].key));
                        }
                        local_verdicts[i] = Some(v);
                    }
                }
                _ => {
                    self.metrics.store_errors.inc();
                    self.metrics
                        .idempotency(IdemResult::Fallback)
                        .inc_by(self.claims.len() as u64);
                    tracing::warn!(
                        keys = self.claims.len(),
                        "shared idempotency store failed; using the local index for this batch"
                    );
                }
            }
        }
        // Pass 3: act on the verdicts, in ring order.
        for (i, p) in pending.iter().enumerate() {
            // SAFETY: as in pass 1.
            let d = unsafe { (**p).data() };
            if d.ticket.is_none() {
                continue;
            }
            let ts = now.max(self.last_ts + 1);
            match local_verdicts[i].take() {
                Some(v) => self.settle(d, v, ts),
                None => {
                    match &mut d.work {
                        Work::Cancel(c) => c.ts = ts,
                        Work::Amend { cmd, .. } => cmd.ts = ts,
                        Work::Halt(h) => h.ts = ts,
                        Work::CancelAll(c) => c.ts = ts,
                        Work::Place { .. } => continue,
                    }
                    self.last_ts = ts;
                }
            }
        }
        self.pending = pending;
        self.pending.clear();
    }

    fn settle(&mut self, d: &mut SlotData, v: Claim, ts: u64) {
        let m = &self.metrics;
        let err = match v {
            Claim::New => {
                m.idempotency(IdemResult::New).inc();
                if let Work::Place { cmd: Some(cmd), .. } = &mut d.work {
                    cmd.order_id = self.ids.next_order_id(ts);
                    cmd.ts = ts;
                    self.last_ts = ts;
                }
                return;
            }
            Claim::Replay(resp) => {
                m.idempotency(IdemResult::Replay).inc();
                if let Some(t) = d.ticket.take() {
                    t.reply(Reply::Json {
                        status: resp.status,
                        body: resp.body,
                        replayed: true,
                    });
                }
                return;
            }
            Claim::InFlight => {
                m.idempotency(IdemResult::InFlight).inc();
                ApiError::new(
                    409,
                    "IDEMPOTENCY_KEY_IN_USE",
                    "a request with this idempotency key is still in flight",
                )
                .field("X-Idempotency-Key")
                .retry_after(1)
            }
            Claim::Mismatch => {
                m.idempotency(IdemResult::Mismatch).inc();
                ApiError::new(
                    422,
                    "IDEMPOTENCY_KEY_REUSED",
                    "this idempotency key was used with a different request body",
                )
                .field("X-Idempotency-Key")
            }
        };
        if let Some(t) = d.ticket.take() {
            t.reply(Reply::Error(err));
        }
    }
}

/// Writes final answers and releases to the shared store as they arrive, then forwards
/// them to the idempotency stage. See the module docs.
pub struct Completer {
    flush: crossbeam_channel::Sender<crossbeam_channel::Sender<()>>,
}

impl Completer {
    /// Starts the thread between `from_publish` and `to_stage`.
    pub fn spawn(
        mut shared: Box<dyn IdempotencyStore>,
        from_publish: Receiver<IdemMsg>,
        to_stage: crossbeam_channel::Sender<IdemMsg>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Completer> {
        let mut clock = SystemClock;
        let (flush, flush_rx) = crossbeam_channel::bounded::<crossbeam_channel::Sender<()>>(4);
        std::thread::Builder::new()
            .name("oms-idem-complete".into())
            .spawn(move || {
                let mut done: Vec<Completion> = Vec::new();
                let mut released: Vec<IdemKey> = Vec::new();
                loop {
                    let mut ack = None;
                    let first = crossbeam_channel::select! {
                        recv(from_publish) -> m => match m {
                            Ok(m) => Some(m),
                            Err(_) => return,
                        },
                        recv(flush_rx) -> a => {
                            ack = a.ok();
                            None
                        }
                    };
                    // One round trip per 4096 queued messages; a flush is answered once all that was
                    // queued before it is written.
                    let mut next = first.or_else(|| from_publish.try_recv().ok());
                    while let Some(msg) = next {
                        match &msg {
                            IdemMsg::Done(c) => done.push(c.clone()),
                            IdemMsg::Release(k) => released.push(*k),
                        }
                        let _ = to_stage.send(msg);
                        next = from_publish.try_recv().ok();
                        if next.is_none() || done.len() + released.len() >= 4096 {
                            let now_ms = clock.now_nanos() / 1_000_000;
                            if !done.is_empty() && shared.complete_batch(&done, now_ms).is_err() {
                                metrics.store_errors.inc();
                            }
                            if !released.is_empty() && shared.release_batch(&released).is_err() {
                                metrics.store_errors.inc();
                            }
                            done.clear();
                            released.clear();
                        }
                    }
                    if let Some(a) = ack {
                        let _ = a.send(());
                    }
                }
            })?;
        Ok(Completer { flush })
    }

    /// Waits (at most `bound`) until everything queued so far is in the shared store.
    pub fn flush(&self, bound: std::time::Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.flush.send(tx).is_ok() && rx.recv_timeout(bound).is_ok()
    }
}
