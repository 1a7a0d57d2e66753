//! Seed-shaped JSON for the event topics (ARCHITECTURE.md §6).
//!
//! Downstream consumers of the seed system read `eventType`-tagged camelCase JSON with
//! decimal numbers as strings (exact, in the instrument's decimals) and ISO-8601 UTC
//! timestamps, so that is what we write. Every object is the `oms-wire` type the REST API and
//! the WebSocket channels use too (the order without REST's `timestamp`), inside an
//! `eventType`-tagged envelope.

use oms_core::event::Event;
use oms_core::instrument::InstrumentTable;
use oms_wire::{
    CommandRejectedJson, ExecutionJson, OrderJson, OrderUpdateJson, RiskRejectedJson,
    SymbolCandleJson, Tagged, TradeJson,
};

/// Which event topic a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventTopic {
    Executions,
    OrderUpdates,
    Prices,
    RiskEvents,
}

/// One event ready to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMessage {
    pub topic: EventTopic,
    /// Account (executions, order updates, risk events) or symbol (prices).
    pub key: String,
    pub json: Vec<u8>,
    pub correlation_id: Option<String>,
}

/// RFC 3339 UTC with microseconds, the same text the REST API shows.
pub use oms_core::time::rfc3339;

/// The topic, key, JSON and correlation id of one event; `None` if it names a symbol the
/// table does not know (logged by the caller, never a panic on the event path).
pub fn event_json(event: &Event, table: &InstrumentTable) -> Option<EventMessage> {
    let msg = |topic, key: &str, json: Vec<u8>| EventMessage {
        topic,
        key: key.to_owned(),
        json,
        correlation_id: None,
    };
    Some(match event {
        Event::Execution(e) => {
            let ins = table.try_get(e.symbol)?;
            msg(
                EventTopic::Executions,
                e.account.as_str(),
                Tagged::new("EXECUTION", ExecutionJson::new(e, ins)).to_vec(),
            )
        }
        Event::OrderUpdate {
            order,
            correlation_id,
        } => {
            table.try_get(order.symbol)?;
            let body = Tagged::new(
                "ORDER_UPDATE",
                OrderUpdateJson {
                    order: OrderJson::new(table, order),
                },
            );
            EventMessage {
                correlation_id: correlation_id.as_ref().map(|c| c.as_str().to_owned()),
                ..msg(
                    EventTopic::OrderUpdates,
                    order.account.as_str(),
                    body.to_vec(),
                )
            }
        }
        Event::Trade(t) => {
            let ins = table.try_get(t.symbol)?;
            msg(
                EventTopic::Prices,
                &ins.symbol,
                Tagged::new("TRADE", TradeJson::new(t, ins)).to_vec(),
            )
        }
        Event::Candle(c) => {
            let ins = table.try_get(c.symbol)?;
            msg(
                EventTopic::Prices,
                &ins.symbol,
                Tagged::new("CANDLE", SymbolCandleJson::new(c, ins)).to_vec(),
            )
        }
        Event::Risk(r) => {
            let ins = table.try_get(r.symbol)?;
            EventMessage {
                correlation_id: r.correlation_id.as_ref().map(|c| c.as_str().to_owned()),
                ..msg(
                    EventTopic::RiskEvents,
                    r.account.as_str(),
                    Tagged::new("RISK_REJECTED", RiskRejectedJson::new(r, ins)).to_vec(),
                )
            }
        }
        Event::CommandRejected {
            order_id,
            account,
            code,
            ts,
            correlation_id,
        } => EventMessage {
            correlation_id: correlation_id.as_ref().map(|c| c.as_str().to_owned()),
            ..msg(
                EventTopic::OrderUpdates,
                account.as_str(),
                Tagged::new(
                    "COMMAND_REJECTED",
                    CommandRejectedJson::new(*order_id, account, *code, *ts),
                )
                .to_vec(),
            )
        },
    })
}
