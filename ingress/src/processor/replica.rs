//! The processor in cluster mode (docs/scale-out.md): the engine is a replica of the whole
//! log, fed by the `oms-replica` reader in each partition's order, not by this node's ring.
//!
//! What changes against the single-node loop in the parent module:
//!
//! - **Input.** Records come from Kafka (every node's commands). The ring's durable batches
//!   only *register* what this node's clients wait for: a cancel, amend, halt or cancel-all
//!   is answered when its own record is applied here; a read waits until every command this
//!   node acknowledged before it has been applied (read-your-writes). A record may be applied
//!   before its registration arrives, so applied commands of led accounts are remembered for
//!   a while ([`EARLY_KEEP`]).
//! - **Partitions.** Each record is applied as its partition's copy (an all-symbol
//!   cancel-all touches only that partition's symbols), so a partition's books are the same
//!   on every node whatever the interleaving; a cancel-all is answered once every
//!   partition's copy is applied.
//! - **Leadership.** Events go to the WebSocket hub on every node, but to the leader-only
//!   sinks (Kafka event topics, MongoDB) only for led partitions. Other nodes' keyed places
//!   become idempotency answers here, so a retry after a failover gets the original answer.
//! - **Takeover.** Gaining partitions, the node waits until its replica has applied every
//!   partition up to the high watermarks read at that moment (everything the old leader
//!   admitted), then moves the led accounts' R1 state from the replica to the risk stage and
//!   lets the HTTP layer admit their requests.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use crossbeam_channel::{Receiver, Sender, select};
use oms_core::command::Command;
use oms_core::ports::{Checkpoint, Completion, EventSink, IdemKey, StoredResponse};
use oms_core::risk::RiskImage;
use oms_core::{AccountId, Engine, Event, InstrumentTable, SymbolId};

use super::{Query, StopRequest, answer};
use crate::archive::{ArchiveMsg, Archiver};
use crate::cluster::replica::ReplicaBatch;
use crate::cluster::{Cluster, Takeover};
use crate::metrics::{Metrics, Stage};
use crate::pipeline::handoff::{Durable, Feedback};
use crate::pipeline::slot::{Reply, Ticket};
use crate::pipeline::stages::IdemMsg;

/// How long an applied command of a led account waits for its registration, and a
/// registration for its record, before it is dropped.
const EARLY_KEEP: Duration = Duration::from_secs(10);
/// Events of a partition this node does not lead, kept so that it can emit what the previous
/// leader had not when it takes the partition over (a killed leader commits its progress
/// every second; more than this many events behind is a gap, counted and logged).
const RECENT_EVENTS: usize = 50_000;

/// What cluster mode adds to the processor.
pub struct ReplicaPlan {
    pub records: Receiver<ReplicaBatch>,
    pub takeovers: Receiver<Takeover>,
    pub cluster: Arc<Cluster>,
    pub idem: Sender<IdemMsg>,
    /// Sinks that only the leader of a partition feeds (Kafka event topics, MongoDB).
    pub leader_sinks: Vec<Box<dyn EventSink>>,
    pub table: Arc<InstrumentTable>,
    /// Where the replica's reader started (every partition's next offset).
    pub start: Checkpoint,
}

/// Identifies a command across the ring and the log (`ts` is unique per node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: u8,
    ts: u64,
    id: u128,
    account: Option<AccountId>,
}

fn key(cmd: &Command) -> Key {
    let (kind, id) = match cmd {
        Command::Place(p) => (1, p.order_id.0),
        Command::Cancel(c) => (2, c.order_id.0),
        Command::Amend(a) => (3, a.order_id.0),
        Command::Halt(h) => (4, u128::from(h.halted)),
        Command::Void(v) => (5, v.order_id.0),
        Command::CancelAll(_) => (6, 0),
    };
    Key {
        kind,
        ts: cmd.ts(),
        id,
        account: cmd.account().copied(),
    }
}

/// A command this node waits for, or has applied and may be waited for.
struct Waiting {
    ticket: Option<Ticket>,
    /// Registration sequence (reads wait for it); `None` until registered.
    seq: Option<u64>,
    copies: u32,
    needed: u32,
    events: Vec<Event>,
    reply: Option<Reply>,
    since: Instant,
}

impl Waiting {
    fn new(needed: u32) -> Self {
        Waiting {
            ticket: None,
            seq: None,
            copies: 0,
            needed,
            events: Vec::new(),
            reply: None,
            since: Instant::now(),
        }
    }

    fn applied(&self) -> bool {
        self.copies >= self.needed
    }
}

struct Replica {
    plan: ReplicaPlan,
    feedback: Sender<Vec<Feedback>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
    archive: Option<Archiver>,
    part_of_symbol: Vec<u32>,
    applied: Checkpoint,
    waiting: AHashMap<Key, Waiting>,
    outstanding: BTreeSet<u64>,
    next_seq: u64,
    parked: VecDeque<(u64, Query)>,
    takeovers: Vec<Takeover>,
    events: Vec<Event>,
    all_events: Vec<Event>,
    leader_events: Vec<Event>,
    /// Per partition not emitted directly: `(offset, event)` of the newest events.
    recent: Vec<VecDeque<(u64, Event)>>,
    fb: Vec<Feedback>,
    evicted: Vec<oms_core::Order>,
}

/// Runs the cluster-mode processor until stopped or its inputs close.
#[allow(clippy::too_many_arguments)]
pub fn run(
    mut engine: Engine,
    durable: Receiver<Vec<Durable>>,
    queries: Receiver<Query>,
    feedback: Sender<Vec<Feedback>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
    stop: Receiver<StopRequest>,
    archive: Option<Archiver>,
    plan: ReplicaPlan,
) {
    let part_of_symbol = plan
        .table
        .iter()
        .map(|i| plan.cluster.symbol_partition(&i.symbol))
        .collect();
    let n_parts = plan.cluster.partitions() as usize;
    for &(p, next) in &plan.start.next {
        plan.cluster.set_applied(p, next);
    }
    let records = plan.records.clone();
    let takeovers = plan.takeovers.clone();
    let mut r = Replica {
        applied: plan.start.clone(),
        plan,
        feedback,
        sinks,
        metrics,
        archive,
        part_of_symbol,
        waiting: AHashMap::new(),
        outstanding: BTreeSet::new(),
        next_seq: 0,
        parked: VecDeque::new(),
        takeovers: Vec::new(),
        events: Vec::with_capacity(256),
        all_events: Vec::with_capacity(1024),
        leader_events: Vec::with_capacity(1024),
        recent: (0..n_parts).map(|_| VecDeque::new()).collect(),
        fb: Vec::with_capacity(256),
        evicted: Vec::new(),
    };
    let tick = Duration::from_millis(100);
    loop {
        select! {
            recv(records) -> batch => {
                let Ok(batch) = batch else { break };
                r.apply(&mut engine, batch);
            }
            recv(durable) -> batch => {
                let Ok(batch) = batch else { break };
                r.register(batch);
            }
            recv(queries) -> q => {
                let Ok(q) = q else { break };
                // Read-your-writes: wait for every command registered before this read.
                let upto = r.next_seq;
                if r.outstanding.first().is_some_and(|&s| s < upto) {
                    r.parked.push_back((upto, q));
                } else {
                    q(&engine);
                }
            }
            recv(takeovers) -> t => {
                if let Ok(t) = t {
                    r.takeovers.push(t);
                }
            }
            recv(stop) -> req => {
                if let Ok(done) = req {
                    let _ = done.send(());
                }
                return;
            }
            default(tick) => {}
        }
        r.release_reads(&engine);
        r.finish_takeovers(&engine);
        r.expire();
    }
}

impl Replica {
    /// Registers what this node's clients wait for (see the module docs).
    fn register(&mut self, batch: Vec<Durable>) {
        for d in batch {
            let k = key(&d.cmd);
            let seq = self.next_seq;
            self.next_seq += 1;
            let needed = self.copies_needed(&d.cmd);
            let w = self
                .waiting
                .entry(k)
                .or_insert_with(|| Waiting::new(needed));
            if w.applied() {
                if let (Some(t), Some(reply)) = (d.ticket, w.reply.take()) {
                    t.reply(reply);
                }
                self.waiting.remove(&k);
            } else {
                w.ticket = d.ticket;
                w.seq = Some(seq);
                self.outstanding.insert(seq);
            }
        }
    }

    /// An all-symbol cancel-all and a halt are written to every partition.
    fn copies_needed(&self, cmd: &Command) -> u32 {
        match cmd {
            Command::CancelAll(c) if c.symbol.is_none() => self.plan.cluster.partitions(),
            _ => 1,
        }
    }

    /// Whether this node may have a client waiting for `cmd` (it leads the account).
    fn maybe_ours(&self, cmd: &Command) -> bool {
        match cmd.account() {
            Some(a) => {
                let p = self.plan.cluster.account_partition(a.as_str());
                self.plan.cluster.leads(p)
            }
            None => true,
        }
    }

    fn apply(&mut self, engine: &mut Engine, batch: ReplicaBatch) {
        let started = Instant::now();
        for rec in batch.records {
            let p = rec.partition;
            let cmd = rec.command;
            self.events.clear();
            let parts = &self.part_of_symbol;
            engine.apply_partition(
                &cmd,
                &|s: SymbolId| parts[s.0 as usize] == p,
                &mut self.events,
            );
            self.applied.set(p, rec.offset + 1);
            self.plan.cluster.set_applied(p, rec.offset + 1);
            self.metrics.processed_commands.inc();
            for e in &self.events {
                match e {
                    Event::Execution(_) => {
                        self.metrics.executions.inc();
                    }
                    Event::Trade(_) => {
                        self.metrics.trades.inc();
                    }
                    _ => {}
                }
                if let Some(f) = Feedback::from_event(e) {
                    self.fb.push(f);
                }
            }
            if let Command::Halt(h) = &cmd {
                self.fb.push(Feedback::Halt {
                    scope: h.scope,
                    halted: h.halted,
                });
            }
            self.answer(engine, &cmd);
            // Every keyed place, ours included (an idempotent overwrite): whether it was ours
            // can change with leadership while the replica is catching up.
            self.remember_answer(&cmd);
            if self.plan.cluster.is_ready_partition(p) {
                self.leader_events.extend_from_slice(&self.events);
                self.plan.cluster.set_emitted(p, rec.offset + 1);
            } else if let Some(q) = self.recent.get_mut(p as usize) {
                q.extend(self.events.iter().map(|e| (rec.offset, e.clone())));
                while q.len() > RECENT_EVENTS {
                    q.pop_front();
                }
            }
            self.all_events.append(&mut self.events);
        }
        for (p, next) in batch.positions {
            if next > self.applied.next_offset(p) {
                self.applied.set(p, next);
                self.plan.cluster.set_applied(p, next);
            }
        }
        if !self.fb.is_empty() {
            let _ = self.feedback.send(std::mem::take(&mut self.fb));
        }
        for s in self.sinks.iter_mut() {
            s.publish(&self.all_events);
        }
        for s in self.plan.leader_sinks.iter_mut() {
            s.publish(&self.leader_events);
        }
        self.all_events.clear();
        self.leader_events.clear();
        engine.take_evicted(&mut self.evicted);
        if !self.evicted.is_empty() {
            match &self.archive {
                Some(a) => a.send(ArchiveMsg::Put(std::mem::take(&mut self.evicted))),
                None => self.evicted.clear(),
            }
        }
        self.metrics.orders_held.set(engine.order_count() as i64);
        self.metrics
            .stage(Stage::Process)
            .observe(started.elapsed());
    }

    /// The answer to a command a client of this node may wait for.
    fn answer(&mut self, engine: &Engine, cmd: &Command) {
        if !self.maybe_ours(cmd) {
            return;
        }
        let k = key(cmd);
        let needed = self.copies_needed(cmd);
        let w = self
            .waiting
            .entry(k)
            .or_insert_with(|| Waiting::new(needed));
        w.copies += 1;
        if matches!(cmd, Command::CancelAll(_)) {
            w.events.extend_from_slice(&self.events);
        }
        if !w.applied() {
            return;
        }
        let reply = match cmd {
            // A place was answered at its acknowledgement; only reads wait for it.
            Command::Place(_) | Command::Void(_) => None,
            Command::CancelAll(_) => Some(answer(engine, cmd, &w.events)),
            _ => Some(answer(engine, cmd, &self.events)),
        };
        if let Some(seq) = w.seq {
            self.outstanding.remove(&seq);
            if let (Some(t), Some(r)) = (w.ticket.take(), reply) {
                t.reply(r);
            }
            self.waiting.remove(&k);
        } else {
            w.reply = reply;
        }
    }

    /// A logged keyed place's answer for the local idempotency index, so that a retry
    /// reaching this node after a failover gets the original answer, not a second order.
    fn remember_answer(&self, cmd: &Command) {
        let Command::Place(p) = cmd else { return };
        let Some(key) = p.idempotency_key else { return };
        let corr = p.correlation_id.as_ref().map_or("", |c| c.as_str());
        let (status, body) = oms_wire::place_ack(&self.plan.table, p, corr);
        let _ = self.plan.idem.send(IdemMsg::Done(Completion {
            key: IdemKey {
                account: p.account,
                key,
            },
            fingerprint: p.fingerprint,
            response: StoredResponse { status, body },
        }));
    }

    fn release_reads(&mut self, engine: &Engine) {
        let floor = self.outstanding.first().copied().unwrap_or(u64::MAX);
        while self.parked.front().is_some_and(|(upto, _)| *upto <= floor) {
            if let Some((_, q)) = self.parked.pop_front() {
                q(engine);
            }
        }
    }

    /// Completes takeovers whose high watermarks the replica has reached.
    fn finish_takeovers(&mut self, engine: &Engine) {
        let applied = &self.applied;
        let (done, pending): (Vec<Takeover>, Vec<Takeover>) = std::mem::take(&mut self.takeovers)
            .into_iter()
            .partition(|t| {
                t.high_watermarks
                    .iter()
                    .enumerate()
                    .all(|(p, &hw)| applied.next_offset(p as u32) >= hw)
            });
        self.takeovers = pending;
        for t in done {
            let cluster = &self.plan.cluster;
            let led: Vec<u32> = t.partitions.clone();
            let image: RiskImage = engine
                .risk()
                .export_accounts(&|a| led.contains(&cluster.account_partition(a.as_str())));
            tracing::info!(
                partitions = ?t.partitions,
                accounts = image.accounts(),
                open_orders = image.open_orders(),
                "cluster: caught up, taking over"
            );
            // On the feedback channel, so it lands after every settlement it includes.
            let _ = self.feedback.send(vec![Feedback::Reseed(Box::new(image))]);
            cluster.mark_ready(&t.partitions);
        }
    }

    /// Drops what waited too long: a registration whose record never came (answered 503),
    /// an applied command of a led account nobody registered.
    fn expire(&mut self) {
        let now = Instant::now();
        let outstanding = &mut self.outstanding;
        self.waiting.retain(|_, w| {
            if now.duration_since(w.since) < EARLY_KEEP {
                return true;
            }
            if let Some(seq) = w.seq {
                outstanding.remove(&seq);
            }
            if let Some(t) = w.ticket.take() {
                t.reply(Reply::Error(oms_wire::ApiError::log_unavailable(
                    "the command was acknowledged but this node has not read it back from the log",
                )));
            }
            false
        });
    }
}
