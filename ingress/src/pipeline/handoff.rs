//! What crosses from the pipeline to the processor and back: a durable command with the
//! ticket of the request waiting for it, and the settlement news the risk stage needs.
//!
//! The types live with the pipeline (which produces `Durable` and consumes `Feedback`) so the
//! dependency points one way: the processor depends on the pipeline, never the reverse.

use oms_core::command::Command;
use oms_core::command::HaltScope;
use oms_core::risk::{RiskEngine, RiskImage};
use oms_core::{AccountId, Event, OrderId, OrderStatus, Price, Qty, Side, SymbolId};

use super::slot::Ticket;
use crate::telemetry::TraceParent;

/// A command that is durable in the log, with the ticket of a request still waiting for it.
pub struct Durable {
    pub cmd: Command,
    pub ticket: Option<Ticket>,
    /// Traced: the context of the command's log-append span (the parent of its apply span).
    pub trace: Option<TraceParent>,
}

/// Settlement news for the risk stage's R1 book.
#[derive(Clone, Debug)]
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
    /// A kill switch another node logged (cluster mode: every node's R1 follows it).
    Halt {
        scope: HaltScope,
        halted: bool,
    },
    /// Cluster mode: this node now leads these accounts; their state, from the replica
    /// (sent on this channel so it lands after every settlement it already includes).
    Reseed(Box<RiskImage>),
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
            Feedback::Halt { scope, halted } => risk.set_halt(&scope, halted),
            Feedback::Reseed(image) => risk.import_accounts(*image),
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
