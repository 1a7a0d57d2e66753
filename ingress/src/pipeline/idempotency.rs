//! Stage 2: idempotency claims, batched; assigns order ids and acceptance timestamps.
//!
//! Two layers. The local index (rebuilt from the log at start) is this node's truth and
//! never fails. The optional shared store (Redis) makes keys unique across nodes: every key
//! that is new locally is claimed there too, all of a ring batch in one pipelined round trip.
//! If the shared store fails or is slow, the batch falls back to the local verdicts (counted
//! in `oms_idempotency_total{result="fallback"}`) and requests keep flowing; the store is
//! tried again on the next batch once its cool-down ends.
//!
//! The local index keeps 16 bytes per answered key ([`AnswerIndex`]); the answers themselves,
//! the exact bytes sent, are in the on-disk answer store ([`AnswerStore`]) and are read back
//! only for a retry. The [`Completer`] thread sits between the publish stage and this stage:
//! it appends every final answer to the answer store, writes it (or the release) to the
//! shared store as soon as it arrives — batched, one round trip for all that queued
//! meanwhile — and forwards its location here for the local index. So a node that goes idle,
//! or stops, leaves no `pending` record behind (issue 11), and the snapshot thread can make
//! every answer durable before a snapshot ([`Completer::sync`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use oms_core::idempotency::{AnswerIndex, SHARDS};
use oms_core::ids::{Clock, IdGen, Uuid7Gen};
use oms_core::ports::{Claim, ClaimRequest, Completion, IdemKey, IdempotencyStore};
use oms_journal::{AnswerReader, AnswerStore};
use oms_wire::ApiError;

use super::slot::{Reply, Slot, SlotData, Work};
use super::stages::IdemMsg;

use crate::clock::SystemClock;
use crate::metrics::{IdemResult, Metrics, Stage};

/// The batching idempotency stage.
pub struct IdempotencyStage {
    local: AnswerIndex,
    answers: AnswerReader,
    /// Answer-store segment deletions seen, and shards still to purge after the last one.
    deletions_seen: u64,
    purge_left: usize,
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
    batch_start: Option<Instant>,
}

// SAFETY: the raw slot pointers are only dereferenced on the stage's own thread within the
// batch they were collected in (see `flush`); the stores are `Send`.
unsafe impl Send for IdempotencyStage {}

impl IdempotencyStage {
    pub fn new(
        local: AnswerIndex,
        answers: AnswerReader,
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
            deletions_seen: answers.deletions(),
            answers,
            purge_left: 0,
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
    /// [`Completer`], which already stored them), and purges one shard of the index while
    /// answer-store segments were deleted since the last cycle.
    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                IdemMsg::Stored { key, loc } => self.local.complete(&key, loc, &self.answers),
                IdemMsg::Release(k) => self.local.release(&k),
                // The answer, sent before its client heard it; replays use it until the
                // completer has stored it.
                IdemMsg::Done(c) => self.local.answered(c),
            }
        }
        let deletions = self.answers.deletions();
        if deletions != self.deletions_seen {
            self.deletions_seen = deletions;
            self.purge_left = SHARDS;
        }
        if self.purge_left > 0 {
            self.purge_left -= 1;
            self.local.purge_step(&self.answers);
        }
        self.metrics.idempotency_keys.set(self.local.len() as i64);
    }

    fn flush(&mut self) {
        let now = self.clock.now_nanos();
        let now_ms = now / 1_000_000;
        self.drain_inbox();
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
                let v = self
                    .local
                    .claim(&claim.key, claim.fingerprint, now_ms, &self.answers);
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
                            self.local.release(&self.claims[k].key);
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

/// What the completer is asked besides answers.
enum Control {
    /// Answer once everything queued before is written (`sync`: and fsynced in the answer
    /// store).
    Flush { ack: Sender<bool>, sync: bool },
}

/// Stores final answers (answer store, then the shared store) and releases as they arrive,
/// then forwards them to the idempotency stage. See the module docs.
#[derive(Clone)]
pub struct Completer {
    control: Sender<Control>,
}

/// Answers stored per write and per shared-store round trip, at most.
const COMPLETER_BATCH: usize = 4096;

struct CompleterLoop {
    answers: AnswerStore,
    shared: Option<Box<dyn IdempotencyStore>>,
    to_stage: Sender<IdemMsg>,
    metrics: Arc<Metrics>,
    clock: SystemClock,
    done: Vec<Completion>,
    released: Vec<IdemKey>,
    forward: Vec<IdemMsg>,
}

impl CompleterLoop {
    fn now_ms(&mut self) -> u64 {
        self.clock.now_nanos() / 1_000_000
    }

    fn take(&mut self, msg: IdemMsg, now_ms: u64) {
        match msg {
            IdemMsg::Done(c) => {
                match self
                    .answers
                    .append(&c.key, c.fingerprint, now_ms, &c.response)
                {
                    Ok(loc) => self.forward.push(IdemMsg::Stored { key: c.key, loc }),
                    Err(e) => {
                        // Without a stored answer a retry cannot replay it: free the key.
                        self.metrics.store_errors.inc();
                        tracing::error!(error = %e, "answer store append failed");
                        self.forward.push(IdemMsg::Release(c.key));
                    }
                }
                if self.shared.is_some() {
                    self.done.push(c);
                }
            }
            IdemMsg::Release(k) => {
                if self.shared.is_some() {
                    self.released.push(k);
                }
                self.forward.push(IdemMsg::Release(k));
            }
            m @ IdemMsg::Stored { .. } => self.forward.push(m),
        }
    }

    /// Writes the batch: answer store (page cache), forward to the stage, shared store.
    fn write(&mut self, now_ms: u64) {
        if let Err(e) = self.answers.flush() {
            self.metrics.store_errors.inc();
            tracing::error!(error = %e, "answer store write failed");
        }
        for m in self.forward.drain(..) {
            let _ = self.to_stage.send(m);
        }
        if let Some(shared) = self.shared.as_mut() {
            if !self.done.is_empty() && shared.complete_batch(&self.done, now_ms).is_err() {
                self.metrics.store_errors.inc();
            }
            if !self.released.is_empty() && shared.release_batch(&self.released).is_err() {
                self.metrics.store_errors.inc();
            }
        }
        self.done.clear();
        self.released.clear();
    }

    fn run(mut self, from_publish: Receiver<IdemMsg>, control: Receiver<Control>) {
        let tick = Duration::from_secs(10);
        loop {
            let mut ctl = None;
            let first = crossbeam_channel::select! {
                recv(from_publish) -> m => match m {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
                recv(control) -> c => {
                    ctl = c.ok();
                    None
                }
                default(tick) => None,
            };
            // One write and one round trip per COMPLETER_BATCH queued messages; a flush is
            // answered once all that was queued before it is written.
            let mut next = first.or_else(|| from_publish.try_recv().ok());
            let mut n = 0;
            let now_ms = self.now_ms();
            while let Some(msg) = next {
                self.take(msg, now_ms);
                n += 1;
                next = from_publish.try_recv().ok();
                if next.is_none() || n >= COMPLETER_BATCH {
                    self.write(now_ms);
                    n = 0;
                }
            }
            if let Some(Control::Flush { ack, sync }) = ctl {
                let ok = !sync || self.answers.sync().is_ok();
                let _ = ack.send(ok);
            }
            let expired = self.answers.expire(now_ms);
            if expired > 0 {
                tracing::info!(segments = expired, "expired idempotency answers deleted");
            }
        }
    }
}

impl Completer {
    /// Starts the thread between `from_publish` and `to_stage`.
    pub fn spawn(
        answers: AnswerStore,
        shared: Option<Box<dyn IdempotencyStore>>,
        from_publish: Receiver<IdemMsg>,
        to_stage: Sender<IdemMsg>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Completer> {
        let (control, control_rx) = crossbeam_channel::bounded(4);
        let lp = CompleterLoop {
            answers,
            shared,
            to_stage,
            metrics,
            clock: SystemClock,
            done: Vec::new(),
            released: Vec::new(),
            forward: Vec::new(),
        };
        std::thread::Builder::new()
            .name("oms-idem-complete".into())
            .spawn(move || lp.run(from_publish, control_rx))?;
        Ok(Completer { control })
    }

    fn ask(&self, sync: bool, bound: Duration) -> bool {
        let (ack, rx) = crossbeam_channel::bounded(1);
        self.control.send(Control::Flush { ack, sync }).is_ok()
            && rx.recv_timeout(bound).unwrap_or(false)
    }

    /// Waits (at most `bound`) until everything queued so far is in the answer store (page
    /// cache) and the shared store.
    pub fn flush(&self, bound: Duration) -> bool {
        self.ask(false, bound)
    }

    /// Like [`Completer::flush`], and the answer store is fsynced: every answer queued so
    /// far survives a crash. The snapshot writer calls it before each snapshot.
    pub fn sync(&self, bound: Duration) -> bool {
        self.ask(true, bound)
    }
}
