//! The processor thread: applies durable commands to the deterministic [`Engine`] in log
//! order, answers cancels/amends/halts, feeds settlements back to the risk stage, hands
//! events to the adapters, and serves read queries between batches.
//!
//! It depends on the core and the wire schema only, never on the HTTP front: its answers are
//! serialized wire types and [`ApiError`]s that any transport can deliver.
//!
//! It is the single writer of the engine. Queries arrive as closures on a channel and run on
//! this thread, so readers never lock the matching state.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use oms_core::command::{Command, RiskDecision};
use oms_core::engine::Engine;
use oms_core::ports::EventSink;
use oms_core::risk::RiskEngine;
use oms_core::{AccountId, Event, OrderId, OrderStatus, Price, Qty, Side, SymbolId};
use oms_wire::{ApiError, HaltJson, OrderJson};

use crate::metrics::{Metrics, Stage};
use crate::pipeline::slot::{Reply, Ticket};

/// A command that is durable in the log, with the ticket of a request still waiting for it.
pub struct Durable {
    pub cmd: Command,
    pub ticket: Option<Ticket>,
}

/// Settlement news for the risk stage's R1 book.
#[derive(Clone, Copy, Debug)]
pub enum Feedback {
    Fill {
        account: AccountId,
        order_id: OrderId,
        symbol: SymbolId,
        side: Side,
        qty: Qty,
        price: Price,
    },
    Done {
        account: AccountId,
        order_id: OrderId,
    },
    TradePrice {
        symbol: SymbolId,
        price: Price,
    },
}

impl Feedback {
    pub fn apply(self, risk: &mut RiskEngine) {
        match self {
            Feedback::Fill {
                account,
                order_id,
                symbol,
                side,
                qty,
                price,
            } => risk.on_fill(&account, order_id, symbol, side, qty, price),
            Feedback::Done { account, order_id } => risk.on_order_done(&account, order_id),
            Feedback::TradePrice { symbol, price } => risk.on_trade_price(symbol, price),
        }
    }

    /// The feedback an event implies, if any.
    pub fn from_event(e: &Event) -> Option<Feedback> {
        match e {
            Event::Execution(x) => Some(Feedback::Fill {
                account: x.account,
                order_id: x.order_id,
                symbol: x.symbol,
                side: x.side,
                qty: x.last_qty,
                price: x.last_px,
            }),
            Event::OrderUpdate { order, .. }
                if order.status.is_terminal() && order.status != OrderStatus::Rejected =>
            {
                Some(Feedback::Done {
                    account: order.account,
                    order_id: order.order_id,
                })
            }
            Event::Trade(t) => Some(Feedback::TradePrice {
                symbol: t.symbol,
                price: t.price,
            }),
            _ => None,
        }
    }
}

/// A read query run on the processor thread.
pub type Query = Box<dyn FnOnce(&Engine) + Send>;

/// The processor's reusable buffers and outputs.
struct Ctx {
    feedback: Sender<Vec<Feedback>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
    events: Vec<Event>,
    all_events: Vec<Event>,
    fb: Vec<Feedback>,
}

/// Applies one durable batch: engine, replies, risk feedback, sinks.
fn apply_batch(engine: &mut Engine, batch: Vec<Durable>, ctx: &mut Ctx) {
    let started = Instant::now();
    for d in batch {
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
            ctx.all_events.append(&mut ctx.events);
        }
    }
    if !ctx.fb.is_empty() {
        let _ = ctx.feedback.send(std::mem::take(&mut ctx.fb));
    }
    for s in ctx.sinks.iter_mut() {
        s.publish(&ctx.all_events);
    }
    ctx.all_events.clear();
    ctx.metrics.stage(Stage::Process).observe(started.elapsed());
}

/// Runs the processor loop until both channels close.
pub fn run(
    mut engine: Engine,
    commands: Receiver<Vec<Durable>>,
    queries: Receiver<Query>,
    feedback: Sender<Vec<Feedback>>,
    sinks: Vec<Box<dyn EventSink>>,
    metrics: Arc<Metrics>,
) {
    let mut ctx = Ctx {
        feedback,
        sinks,
        metrics,
        events: Vec::with_capacity(256),
        all_events: Vec::with_capacity(1024),
        fb: Vec::with_capacity(256),
    };
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
