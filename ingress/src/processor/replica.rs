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
//!   a while ([`ReplicaPlan::keep`]).
//! - **In-doubt places.** A place whose append timed out with an unknown outcome is decided by
//!   the log ([`super::doubt`]): read back → written, its void read first → undone.
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

use super::doubt::Doubts;
use super::{Query, StopRequest, answer};
use crate::archive::{ArchiveMsg, Archiver};
use crate::cluster::replica::ReplicaBatch;
use crate::cluster::{Cluster, Takeover};
use crate::config::SnapshotEncode;
use crate::metrics::{Metrics, Stage};
use crate::pipeline::handoff::{Durable, Feedback};
use crate::pipeline::slot::{Reply, Ticket};
use crate::pipeline::stages::IdemMsg;
use crate::pipeline::stages::publish::undo;
use crate::snapshots::SnapMsg;
use crate::telemetry::{self, Step, TraceParent};

/// How long an applied command of a led account waits for its registration, and a
/// registration for its record, before it is dropped (at least; see [`ReplicaPlan::keep`]).
pub const EARLY_KEEP: Duration = Duration::from_secs(10);
/// How long an in-doubt place waits for its record or its void.
const DOUBT_KEEP: Duration = Duration::from_secs(600);
/// Events of a partition this node does not lead, kept so that it can emit what the previous
/// leader had not when it takes the partition over (a killed leader commits its progress
/// every second; more than this many events behind is a gap, counted and logged).
const RECENT_EVENTS: usize = 50_000;
/// How often the processor records how far each leader sink has been given events, so it can
/// tell when they have settled (see [`Mark`]).
const MARK_EVERY: Duration = Duration::from_millis(20);

/// A point in the leader sinks' streams: once every sink has settled `accepted[i]` events,
/// the events of the led partitions up to `emitted` are delivered and may be committed.
struct Mark {
    accepted: Vec<Option<u64>>,
    emitted: Vec<(u32, u64)>,
}

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
    /// Periodic snapshots of the replica (`None`: off).
    pub snapshots: Option<ReplicaSnapshots>,
    /// Places this node answered 503 with an unknown append outcome.
    pub doubts: Receiver<Vec<Command>>,
    /// How long applied commands are remembered for a late registration: longer than the
    /// append timeout, so an in-doubt place read back before its outcome was reported is
    /// still known as written when it is registered.
    pub keep: Duration,
}

/// When the replica snapshots: its state at exactly the offsets it applied, so a restart
/// loads it and reads every partition from there (docs/scale-out.md, "Restart").
pub struct ReplicaSnapshots {
    pub tx: Sender<SnapMsg>,
    pub every_commands: u64,
    pub every: Duration,
    /// Which thread encodes the image (resolved, never `Auto`).
    pub encode: SnapshotEncode,
    /// Records applied before this run (snapshot + tail), for the snapshot header.
    pub applied_before: u64,
    /// Records start-up replayed on top of its snapshot: they count towards the first one.
    pub tail: u64,
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
    /// Per partition, the newest offset whose events fell out of `recent` (a takeover from
    /// before it cannot emit everything: a counted gap).
    recent_dropped: Vec<Option<u64>>,
    /// Per partition, the next offset whose events went to the leader sinks.
    emitted: Vec<u64>,
    marks: VecDeque<Mark>,
    last_mark: Instant,
    /// Records applied in this run, and at the last snapshot.
    applied_count: u64,
    snapshot_count: u64,
    /// The start-up tail, until the first snapshot covers it.
    carried: u64,
    last_snapshot: Instant,
    /// Answered when the last periodic snapshot is on disk.
    snapshot_in_flight: Option<Receiver<()>>,
    fb: Vec<Feedback>,
    evicted: Vec<oms_core::Order>,
    doubts: Doubts,
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
    let doubts = plan.doubts.clone();
    let carried = plan.snapshots.as_ref().map_or(0, |s| s.tail);
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
        recent_dropped: vec![None; n_parts],
        emitted: vec![0; n_parts],
        marks: VecDeque::new(),
        last_mark: Instant::now(),
        applied_count: 0,
        snapshot_count: 0,
        carried,
        last_snapshot: Instant::now(),
        snapshot_in_flight: None,
        fb: Vec::with_capacity(256),
        evicted: Vec::new(),
        doubts: Doubts::default(),
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
            recv(doubts) -> d => {
                if let Ok(places) = d {
                    r.doubt(places);
                }
            }
            recv(stop) -> req => {
                // Whatever was applied is exactly `applied`, so the final snapshot is
                // consistent at any point.
                r.final_snapshot(&engine);
                if let Ok(done) = req {
                    let _ = done.send(());
                }
                return;
            }
            default(tick) => {}
        }
        if r.snapshot_due() {
            r.snapshot(&engine, None);
        }
        r.release_reads(&engine);
        r.finish_takeovers(&engine);
        r.settle();
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
            // A record below what this replica applied is read a second time (the reader
            // was reset, e.g. an out-of-range fetch on a broker that misreports its end):
            // applying it again would fork this replica from the others.
            if rec.offset < self.applied.next_offset(p) {
                self.metrics.cluster_rereads.inc();
                continue;
            }
            // Traced (the record's `traceparent` header, whichever node wrote it): the apply
            // span continues the order's trace; its events go out on their own, inside its
            // `oms.project` span, after those of the records before it.
            let span = rec
                .traceparent
                .filter(|_| telemetry::enabled())
                .and_then(|t| TraceParent::parse(&t))
                .map(|t| telemetry::child(Step::Apply, t));
            let _entered = span.as_ref().map(tracing::Span::enter);
            let apply = span.as_ref().and_then(TraceParent::of);
            if apply.is_some() {
                self.hand_over_events();
            }
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
            self.applied_count += 1;
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
            match &cmd {
                Command::Place(pl) if self.doubts.written(pl.order_id) => {
                    tracing::info!(order_id = %pl.order_id, "in-doubt place read back: it was written");
                }
                Command::Void(v) => {
                    if let Some(place) = self.doubts.voided(v.order_id) {
                        tracing::info!(order_id = %v.order_id, "in-doubt place voided before it was read: not written, undone");
                        undo(&self.plan.idem, &place, &mut self.fb);
                    }
                }
                _ => {}
            }
            self.answer(engine, &cmd);
            // Every keyed place, ours included (an idempotent overwrite): whether it was ours
            // can change with leadership while the replica is catching up.
            self.remember_answer(&cmd);
            if self.plan.cluster.is_ready_partition(p) {
                self.leader_events.extend_from_slice(&self.events);
                if let Some(e) = self.emitted.get_mut(p as usize) {
                    *e = rec.offset + 1;
                }
            } else if let Some(q) = self.recent.get_mut(p as usize) {
                q.extend(self.events.iter().map(|e| (rec.offset, e.clone())));
                while q.len() > RECENT_EVENTS {
                    if let Some((o, _)) = q.pop_front() {
                        self.recent_dropped[p as usize] = Some(o);
                    }
                }
            }
            self.all_events.append(&mut self.events);
            if let Some(apply) = apply {
                telemetry::project(apply, || self.hand_over_events());
            }
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
        self.publish_leader_events();
        self.all_events.clear();
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

    /// Records applied since the last snapshot (the start-up tail counts until the first).
    fn fresh(&self) -> u64 {
        self.applied_count - self.snapshot_count + self.carried
    }

    fn snapshot_due(&mut self) -> bool {
        let Some(plan) = &self.plan.snapshots else {
            return false;
        };
        let fresh = self.fresh();
        fresh > 0
            && !super::writing(&mut self.snapshot_in_flight)
            && ((plan.every_commands > 0 && fresh >= plan.every_commands)
                || (!plan.every.is_zero() && self.last_snapshot.elapsed() >= plan.every))
    }

    /// Hands an image of the engine at exactly the applied offsets to the snapshot thread.
    fn snapshot(&mut self, engine: &Engine, done: Option<Sender<()>>) {
        let Some(plan) = &self.plan.snapshots else {
            return;
        };
        let done = done.or_else(|| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.snapshot_in_flight = Some(rx);
            Some(tx)
        });
        // The orders evicted before this image must be in the archive before the file is.
        let archived = self.archive.as_ref().map(|a| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            a.send(ArchiveMsg::Flush(tx));
            rx
        });
        let image = crate::snapshots::image(engine, plan.encode, &self.metrics);
        let _ = plan.tx.send(SnapMsg::Take {
            engine: image,
            checkpoint: self.applied.clone(),
            applied: plan.applied_before + self.applied_count,
            done,
            archived,
        });
        self.snapshot_count = self.applied_count;
        self.carried = 0;
        self.last_snapshot = Instant::now();
    }

    /// At stop: a snapshot of what is new, or the wait for the one being written.
    fn final_snapshot(&mut self, engine: &Engine) {
        if self.plan.snapshots.is_none() {
            return;
        }
        if self.fresh() > 0 {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.snapshot(engine, Some(tx));
            let _ = rx.recv_timeout(Duration::from_secs(30));
        } else if let Some(rx) = self.snapshot_in_flight.take() {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }

    /// Hands the events gathered so far to the sinks, and the led partitions' to the leader
    /// sinks (a traced record's events go out on their own: see `apply`).
    fn hand_over_events(&mut self) {
        if !self.all_events.is_empty() {
            for s in self.sinks.iter_mut() {
                s.publish(&self.all_events);
            }
            self.all_events.clear();
        }
        if !self.leader_events.is_empty() {
            for s in self.plan.leader_sinks.iter_mut() {
                s.publish(&self.leader_events);
            }
            self.leader_events.clear();
        }
    }

    /// Hands the led partitions' events to the leader sinks, then records how far they go.
    fn publish_leader_events(&mut self) {
        if !self.leader_events.is_empty() {
            for s in self.plan.leader_sinks.iter_mut() {
                s.publish(&self.leader_events);
            }
            self.leader_events.clear();
        }
        let cluster = &self.plan.cluster;
        for p in cluster.owned() {
            if cluster.is_ready_partition(p) {
                cluster.set_emitted(p, self.emitted[p as usize]);
            }
        }
        if self.last_mark.elapsed() >= MARK_EVERY {
            self.last_mark = Instant::now();
            let emitted: Vec<(u32, u64)> = cluster
                .owned()
                .into_iter()
                .filter(|&p| cluster.is_ready_partition(p))
                .map(|p| (p, self.emitted[p as usize]))
                .collect();
            if self.marks.back().is_none_or(|m| m.emitted != emitted) {
                let accepted = self
                    .plan
                    .leader_sinks
                    .iter()
                    .map(|s| s.progress().map(|p| p.accepted))
                    .collect();
                self.marks.push_back(Mark { accepted, emitted });
            }
        }
        self.settle();
    }

    /// Records, per led partition, how far every leader sink has delivered its events (the
    /// membership thread commits that to the group).
    fn settle(&mut self) {
        let progress: Vec<Option<u64>> = self
            .plan
            .leader_sinks
            .iter()
            .map(|s| s.progress().map(|p| p.settled))
            .collect();
        while let Some(m) = self.marks.front() {
            let done = m.accepted.iter().zip(&progress).all(|(a, s)| match (a, s) {
                (Some(a), Some(s)) => s >= a,
                _ => true,
            });
            if !done {
                return;
            }
            for &(p, next) in &m.emitted {
                self.plan.cluster.set_settled(p, next);
            }
            self.marks.pop_front();
        }
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
            self.emit_backlog(&t);
            self.plan.cluster.mark_ready(&t.partitions);
            self.publish_leader_events();
        }
    }

    /// A new leader first emits what the previous one may not have delivered: the kept
    /// events of each gained partition from the offset the group records as delivered
    /// (everything kept when nothing is recorded). Events older than the window are a gap,
    /// counted in `oms_cluster_emission_gaps_total`.
    fn emit_backlog(&mut self, t: &Takeover) {
        for &(p, from) in &t.emit_from {
            let i = p as usize;
            let Some(q) = self.recent.get_mut(i) else {
                continue;
            };
            let start = from.unwrap_or(0);
            if self.recent_dropped[i].is_some_and(|d| d >= start) {
                self.metrics.cluster_emission_gaps.inc();
                tracing::warn!(
                    partition = p,
                    from = start,
                    dropped_up_to = self.recent_dropped[i],
                    "cluster: events of the previous leader are older than the kept window; some are not emitted"
                );
            }
            let backlog = q.drain(..).filter(|(o, _)| *o >= start).map(|(_, e)| e);
            self.leader_events.extend(backlog);
            self.recent_dropped[i] = None;
            self.emitted[i] = self.applied.next_offset(p);
            self.plan.cluster.set_settled(p, start);
            tracing::info!(
                partition = p,
                from = start,
                events = self.leader_events.len(),
                "cluster: emitting the previous leader's undelivered events"
            );
        }
    }

    /// Registers places answered 503 with an unknown outcome (see [`super::doubt`]); one this
    /// replica has already applied was written.
    fn doubt(&mut self, places: Vec<Command>) {
        for cmd in places {
            let k = key(&cmd);
            if self.waiting.get(&k).is_some_and(Waiting::applied) {
                self.waiting.remove(&k);
                tracing::info!(order_id = ?cmd.order_id(), "in-doubt place already read back: it was written");
            } else {
                self.doubts.register(cmd);
            }
        }
        self.metrics.cluster_in_doubt.set(self.doubts.len() as i64);
    }

    /// Drops what waited too long: a registration whose record never came (answered 503),
    /// an applied command of a led account nobody registered.
    fn expire(&mut self) {
        self.doubts.trim(DOUBT_KEEP);
        let keep = self.plan.keep.max(EARLY_KEEP);
        let now = Instant::now();
        let outstanding = &mut self.outstanding;
        self.waiting.retain(|_, w| {
            if now.duration_since(w.since) < keep {
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
