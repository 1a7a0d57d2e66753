//! The processor thread: applies durable commands to the deterministic [`Engine`] in log
//! order, answers cancels/amends/halts, feeds settlements back to the risk stage, hands
//! events to the adapters, and serves read queries between batches.
//!
//! It depends on the core and the wire schema only, never on the HTTP front: its answers are
//! serialized wire types and [`ApiError`]s that any transport can deliver.
//!
//! It is the single writer of the engine. Queries arrive as closures on a channel and run on
//! this thread, so readers never lock the matching state.
//!
//! It also decides when to snapshot (every N commands or T seconds, and at stop): only the
//! engine encode runs here; hashing, making the idempotency answers durable and the file write
//! run on the snapshot thread ([`crate::snapshots`]).

pub mod doubt;
pub mod replica;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use oms_core::command::{Command, RiskDecision};
use oms_core::engine::Engine;
use oms_core::ports::{Checkpoint, EventSink};
use oms_core::{Event, OrderId};
use oms_wire::{ApiError, HaltJson, OrderJson};

use crate::archive::{ArchiveMsg, Archiver};
use crate::config::SnapshotEncode;
use crate::metrics::{Metrics, Stage};
use crate::pipeline::handoff::{Durable, Feedback};
use crate::pipeline::slot::Reply;
use crate::snapshots::SnapMsg;
use crate::telemetry::{self, Step, TraceParent};

/// A read query run on the processor thread.
pub type Query = Box<dyn FnOnce(&Engine) + Send>;

/// When and where the processor snapshots.
pub struct SnapshotPlan {
    pub tx: Sender<SnapMsg>,
    /// `(commands appended so far, log position)` after each append (see `PositionedLog`).
    pub positions: Receiver<(u64, Checkpoint)>,
    /// The position recovery ended at (nothing applied since).
    pub start: Checkpoint,
    /// Commands applied before this run (snapshot + tail), for the snapshot header.
    pub applied_before: u64,
    /// Commands start-up applied on top of the snapshot it loaded (all of them without
    /// one): they count towards the first snapshot.
    pub tail: u64,
    pub every_commands: u64,
    pub every: Duration,
    /// Which thread encodes the image (resolved, never `Auto`).
    pub encode: SnapshotEncode,
    /// Where evicted orders go; snapshots wait for it (see `crate::archive`).
    pub archive: Option<Archiver>,
}

/// The snapshot bookkeeping of a running processor.
struct Snaps {
    plan: SnapshotPlan,
    /// Commands applied in this run.
    applied: u64,
    /// The newest log position received and the commands it covers.
    position: Checkpoint,
    position_count: u64,
    /// A position received ahead of the commands it covers.
    ahead: Option<(u64, Checkpoint)>,
    last_applied: u64,
    /// Commands not in any snapshot from before this run (the start-up tail), until the
    /// first snapshot.
    carried: u64,
    last_at: Instant,
    /// Answered when the last periodic snapshot is on disk (a stop waits for it, so a stop
    /// right after one started does not cut its write short).
    in_flight: Option<Receiver<()>>,
}

impl Snaps {
    /// Advances `position` to the newest one the applied commands cover.
    fn catch_up(&mut self) {
        loop {
            let next = match self.ahead.take() {
                Some(p) => p,
                None => match self.plan.positions.try_recv() {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            if next.0 <= self.applied {
                self.position_count = next.0;
                self.position = next.1;
            } else {
                self.ahead = Some(next);
                return;
            }
        }
    }

    /// Commands applied since the last snapshot.
    fn fresh(&self) -> u64 {
        self.applied - self.last_applied + self.carried
    }

    fn due(&mut self) -> bool {
        let fresh = self.fresh();
        fresh > 0
            && !writing(&mut self.in_flight)
            && ((self.plan.every_commands > 0 && fresh >= self.plan.every_commands)
                || (!self.plan.every.is_zero() && self.last_at.elapsed() >= self.plan.every))
    }

    /// Captures the engine (and encodes it, per `--snapshot-encode`) and hands it to the
    /// snapshot thread.
    fn take(&mut self, engine: &Engine, done: Option<Sender<()>>, metrics: &Metrics) {
        let done = done.or_else(|| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.in_flight = Some(rx);
            Some(tx)
        });
        self.catch_up();
        // Positions are sent before their commands, so this only fails if the log stopped
        // reporting them: then no checkpoint matches the state and no snapshot is written.
        if self.position_count != self.applied {
            if let Some(d) = done {
                let _ = d.send(());
            }
            return;
        }
        let archived = self.plan.archive.as_ref().map(|a| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            a.send(ArchiveMsg::Flush(tx));
            rx
        });
        let image = crate::snapshots::image(engine, self.plan.encode, metrics);
        let _ = self.plan.tx.send(SnapMsg::Take {
            engine: image,
            checkpoint: self.position.clone(),
            applied: self.plan.applied_before + self.applied,
            done,
            archived,
        });
        self.last_applied = self.applied;
        self.carried = 0;
        self.last_at = Instant::now();
    }
}

/// Whether the snapshot handed over last is still being written; forgets it once written.
/// A new image waits until then, so at most one image (the size of the state) is in memory
/// besides the engine, however slow the disk or the archive.
pub(crate) fn writing(in_flight: &mut Option<Receiver<()>>) -> bool {
    match in_flight.as_ref().map(Receiver::try_recv) {
        Some(Err(crossbeam_channel::TryRecvError::Empty)) => true,
        Some(_) => {
            *in_flight = None;
            false
        }
        None => false,
    }
}

/// Asks the processor to stop: it applies what is queued, writes a final snapshot, and
/// answers on the sender once the snapshot is on disk.
pub type StopRequest = Sender<()>;

/// The processor's reusable buffers and outputs.
struct Ctx {
    feedback: Sender<Vec<Feedback>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
    events: Vec<Event>,
    all_events: Vec<Event>,
    fb: Vec<Feedback>,
    snaps: Option<Snaps>,
    archive: Option<Archiver>,
    evicted: Vec<oms_core::Order>,
}

/// Applies one durable batch: engine, replies, risk feedback, sinks.
fn apply_batch(engine: &mut Engine, batch: Vec<Durable>, ctx: &mut Ctx) {
    let started = Instant::now();
    for d in batch {
        // Traced: the apply span, child of the command's log-append span.
        let span = d.trace.map(|t| telemetry::child(Step::Apply, t));
        let _entered = span.as_ref().map(tracing::Span::enter);
        ctx.events.clear();
        engine.apply(&d.cmd, &mut ctx.events);
        ctx.metrics.processed_commands.inc();
        for e in &ctx.events {
            match e {
                Event::Execution(_) => {
                    ctx.metrics.executions.inc();
                }
                Event::Trade(_) => {
                    ctx.metrics.trades.inc();
                }
                _ => {}
            }
            if let Some(f) = Feedback::from_event(e) {
                ctx.fb.push(f);
            }
        }
        if let Some(t) = d.ticket {
            t.reply(answer(engine, &d.cmd, &ctx.events));
        }
        if !ctx.sinks.is_empty() {
            match span.as_ref().and_then(TraceParent::of) {
                // A traced command's events go to the projectors on their own, inside its
                // `oms.project` span (after the batch's earlier events, keeping their order).
                Some(apply) => {
                    for s in ctx.sinks.iter_mut() {
                        s.publish(&ctx.all_events);
                    }
                    ctx.all_events.clear();
                    telemetry::project(apply, || {
                        for s in ctx.sinks.iter_mut() {
                            s.publish(&ctx.events);
                        }
                    });
                }
                None => ctx.all_events.append(&mut ctx.events),
            }
        }
        if let Some(sn) = ctx.snaps.as_mut() {
            sn.applied += 1;
        }
    }
    if !ctx.fb.is_empty() {
        let _ = ctx.feedback.send(std::mem::take(&mut ctx.fb));
    }
    for s in ctx.sinks.iter_mut() {
        s.publish(&ctx.all_events);
    }
    ctx.all_events.clear();
    // Finished orders beyond the engine's bound leave memory for the archive.
    engine.take_evicted(&mut ctx.evicted);
    if !ctx.evicted.is_empty() {
        match &ctx.archive {
            Some(a) => a.send(ArchiveMsg::Put(std::mem::take(&mut ctx.evicted))),
            None => ctx.evicted.clear(),
        }
    }
    ctx.metrics.orders_held.set(engine.order_count() as i64);
    ctx.metrics.stage(Stage::Process).observe(started.elapsed());
}

/// Snapshots and stop control for [`run`].
pub struct Control {
    pub snapshots: Option<SnapshotPlan>,
    pub stop: Receiver<StopRequest>,
    /// Where the orders the engine evicts go (`None`: they are dropped — tests, benches).
    pub archive: Option<Archiver>,
}

/// Runs the processor loop until both channels close or a stop request arrives.
pub fn run(
    mut engine: Engine,
    commands: Receiver<Vec<Durable>>,
    queries: Receiver<Query>,
    feedback: Sender<Vec<Feedback>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
    control: Control,
) {
    let mut ctx = Ctx {
        feedback,
        sinks,
        metrics,
        events: Vec::with_capacity(256),
        all_events: Vec::with_capacity(1024),
        fb: Vec::with_capacity(256),
        archive: control.archive,
        evicted: Vec::new(),
        snaps: control.snapshots.map(|plan| Snaps {
            position: plan.start.clone(),
            carried: plan.tail,
            plan,
            applied: 0,
            position_count: 0,
            ahead: None,
            last_applied: 0,
            last_at: Instant::now(),
            in_flight: None,
        }),
    };
    let tick = Duration::from_millis(100);
    loop {
        select! {
            recv(commands) -> batch => {
                let Ok(batch) = batch else { break };
                apply_batch(&mut engine, batch, &mut ctx);
            }
            recv(queries) -> q => {
                let Ok(q) = q else { break };
                // Reads see every command made durable before they were asked: apply what is
                // queued first (read-your-writes after a 201).
                while let Ok(batch) = commands.try_recv() {
                    apply_batch(&mut engine, batch, &mut ctx);
                }
                q(&engine);
            }
            recv(control.stop) -> req => {
                while let Ok(batch) = commands.try_recv() {
                    apply_batch(&mut engine, batch, &mut ctx);
                }
                let done = req.ok();
                if let Some(sn) = ctx.snaps.as_mut() {
                    if sn.fresh() > 0 {
                        let (tx, rx) = crossbeam_channel::bounded(1);
                        sn.take(&engine, Some(tx), &ctx.metrics);
                        let _ = rx.recv_timeout(Duration::from_secs(30));
                    } else if let Some(rx) = sn.in_flight.take() {
                        // Nothing new since the last snapshot: let its write finish.
                        let _ = rx.recv_timeout(Duration::from_secs(30));
                    }
                }
                if let Some(d) = done {
                    let _ = d.send(());
                }
                return;
            }
            default(tick) => {}
        }
        if let Some(sn) = ctx.snaps.as_mut()
            && sn.due()
        {
            sn.take(&engine, None, &ctx.metrics);
        }
    }
}

/// The HTTP answer to a cancel, amend or halt once applied.
fn answer(engine: &Engine, cmd: &Command, events: &[Event]) -> Reply {
    for e in events {
        if let Event::CommandRejected { code, .. } = e {
            return Reply::Error(ApiError::reject(*code));
        }
    }
    match cmd {
        Command::Cancel(c) => order_reply(engine, c.order_id),
        Command::Amend(a) => {
            if let RiskDecision::Rejected(code) = a.risk {
                return Reply::Error(ApiError::reject(code));
            }
            order_reply(engine, a.order_id)
        }
        Command::Halt(h) => {
            let (scope, account) = match &h.scope {
                oms_core::HaltScope::Global => ("GLOBAL", None),
                oms_core::HaltScope::Account(a) => ("ACCOUNT", Some(a.as_str())),
            };
            let body = HaltJson {
                scope,
                account,
                halted: h.halted,
            };
            Reply::Json {
                status: 200,
                body: oms_wire::to_vec(&body, 96),
                replayed: false,
            }
        }
        Command::CancelAll(_) => Reply::Json {
            status: 200,
            body: oms_wire::to_vec(&oms_wire::CancelAllJson::from_events(events), 256),
            replayed: false,
        },
        Command::Place(_) | Command::Void(_) => Reply::Error(ApiError::internal(
            "this command is answered by the publish stage",
        )),
    }
}

fn order_reply(engine: &Engine, id: OrderId) -> Reply {
    match engine.order(id) {
        Some(o) => Reply::Json {
            status: 200,
            body: OrderJson::rest(engine.instruments(), o),
            replayed: false,
        },
        None => Reply::Error(ApiError::order_not_found()),
    }
}
