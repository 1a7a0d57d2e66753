//! Seed-shaped JSON for the event topics (ARCHITECTURE.md §6).
//!
//! Downstream consumers of the seed system read `eventType`-tagged camelCase JSON with
//! decimal numbers as strings (exact, in the instrument's decimals) and ISO-8601 UTC
//! timestamps, so that is what we write. The order object is the one the REST API returns.

use oms_core::event::{Candle, Event, ExecutionReport, RiskEvent, Trade};
use oms_core::instrument::{Instrument, InstrumentTable};
use oms_core::order::Order;
use serde::Serialize;

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
    pub json: String,
    pub correlation_id: Option<String>,
}

/// RFC 3339 UTC with microseconds, the same text the REST API shows.
pub use oms_core::time::rfc3339;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionJson<'a> {
    event_type: &'static str,
    order_id: String,
    exec_id: u64,
    trade_id: u64,
    account: &'a str,
    symbol: &'a str,
    side: &'static str,
    last_qty: String,
    last_px: String,
    cum_qty: String,
    leaves_qty: String,
    avg_px: String,
    liquidity: &'static str,
    timestamp: String,
}

/// The order as the REST API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderJson<'a> {
    order_id: String,
    client_order_id: Option<&'a str>,
    account: &'a str,
    symbol: &'a str,
    side: &'static str,
    order_type: &'static str,
    time_in_force: &'static str,
    post_only: bool,
    quantity: String,
    price: Option<String>,
    status: &'static str,
    filled_quantity: String,
    avg_fill_price: Option<String>,
    created_at: String,
    updated_at: String,
    version: u32,
    idempotency_key: Option<&'a str>,
    reject_reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderUpdateJson<'a> {
    event_type: &'static str,
    order: OrderJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TradeJson<'a> {
    event_type: &'static str,
    trade_id: u64,
    symbol: &'a str,
    price: String,
    quantity: String,
    aggressor_side: &'static str,
    maker_order_id: String,
    taker_order_id: String,
    timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CandleJson<'a> {
    event_type: &'static str,
    symbol: &'a str,
    interval: &'static str,
    open_time: String,
    open: String,
    high: String,
    low: String,
    close: String,
    volume: String,
    trades: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RiskJson<'a> {
    event_type: &'static str,
    account: &'a str,
    order_id: String,
    symbol: &'a str,
    reason: &'static str,
    timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommandRejectedJson<'a> {
    event_type: &'static str,
    order_id: String,
    account: &'a str,
    reason: &'static str,
    timestamp: String,
}

fn order_json<'a>(o: &'a Order, ins: &'a Instrument) -> OrderJson<'a> {
    let avg = (o.filled_quantity.0 > 0)
        .then(|| ins.format_price(ins.avg_price(o.filled_notional, o.filled_quantity)));
    OrderJson {
        order_id: o.order_id.to_string(),
        client_order_id: o.client_order_id.as_ref().map(|c| c.as_str()),
        account: o.account.as_str(),
        symbol: &ins.symbol,
        side: o.side.as_str(),
        order_type: o.order_type.as_str(),
        time_in_force: o.time_in_force.as_str(),
        post_only: o.post_only,
        quantity: ins.format_qty(o.quantity),
        price: o.price.map(|p| ins.format_price(p)),
        status: o.status.as_str(),
        filled_quantity: ins.format_qty(o.filled_quantity),
        avg_fill_price: avg,
        created_at: rfc3339(o.created_at),
        updated_at: rfc3339(o.updated_at),
        version: o.version,
        idempotency_key: o.idempotency_key.as_ref().map(|k| k.as_str()),
        reject_reason: o.reject_reason.map(|r| r.as_str()),
    }
}

fn execution<'a>(e: &'a ExecutionReport, ins: &'a Instrument) -> ExecutionJson<'a> {
    ExecutionJson {
        event_type: "EXECUTION",
        order_id: e.order_id.to_string(),
        exec_id: e.exec_id,
        trade_id: e.trade_id,
        account: e.account.as_str(),
        symbol: &ins.symbol,
        side: e.side.as_str(),
        last_qty: ins.format_qty(e.last_qty),
        last_px: ins.format_price(e.last_px),
        cum_qty: ins.format_qty(e.cum_qty),
        leaves_qty: ins.format_qty(e.leaves_qty),
        avg_px: ins.format_price(e.avg_px),
        liquidity: e.liquidity.as_str(),
        timestamp: rfc3339(e.ts),
    }
}

fn trade<'a>(t: &'a Trade, ins: &'a Instrument) -> TradeJson<'a> {
    TradeJson {
        event_type: "TRADE",
        trade_id: t.trade_id,
        symbol: &ins.symbol,
        price: ins.format_price(t.price),
        quantity: ins.format_qty(t.qty),
        aggressor_side: t.aggressor.as_str(),
        maker_order_id: t.maker_order_id.to_string(),
        taker_order_id: t.taker_order_id.to_string(),
        timestamp: rfc3339(t.ts),
    }
}

fn candle<'a>(c: &'a Candle, ins: &'a Instrument) -> CandleJson<'a> {
    CandleJson {
        event_type: "CANDLE",
        symbol: &ins.symbol,
        interval: c.interval.as_str(),
        open_time: rfc3339(c.open_time),
        open: ins.format_price(c.open),
        high: ins.format_price(c.high),
        low: ins.format_price(c.low),
        close: ins.format_price(c.close),
        volume: ins.format_qty(c.volume),
        trades: c.trades,
    }
}

fn risk<'a>(r: &'a RiskEvent, ins: &'a Instrument) -> RiskJson<'a> {
    RiskJson {
        event_type: "RISK_REJECTED",
        account: r.account.as_str(),
        order_id: r.order_id.to_string(),
        symbol: &ins.symbol,
        reason: r.code.as_str(),
        timestamp: rfc3339(r.ts),
    }
}

fn to_string<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("event JSON has only strings, numbers and bools")
}

/// The topic, key, JSON and correlation id of one event; `None` if it names a symbol the
/// table does not know (logged by the caller, never a panic on the event path).
pub fn event_json(event: &Event, table: &InstrumentTable) -> Option<EventMessage> {
    let msg = |topic, key: &str, json| EventMessage {
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
                to_string(&execution(e, ins)),
            )
        }
        Event::OrderUpdate {
            order,
            correlation_id,
        } => {
            let ins = table.try_get(order.symbol)?;
            let body = OrderUpdateJson {
                event_type: "ORDER_UPDATE",
                order: order_json(order, ins),
            };
            EventMessage {
                correlation_id: correlation_id.as_ref().map(|c| c.as_str().to_owned()),
                ..msg(
                    EventTopic::OrderUpdates,
                    order.account.as_str(),
                    to_string(&body),
                )
            }
        }
        Event::Trade(t) => {
            let ins = table.try_get(t.symbol)?;
            msg(EventTopic::Prices, &ins.symbol, to_string(&trade(t, ins)))
        }
        Event::Candle(c) => {
            let ins = table.try_get(c.symbol)?;
            msg(EventTopic::Prices, &ins.symbol, to_string(&candle(c, ins)))
        }
        Event::Risk(r) => {
            let ins = table.try_get(r.symbol)?;
            EventMessage {
                correlation_id: r.correlation_id.as_ref().map(|c| c.as_str().to_owned()),
                ..msg(
                    EventTopic::RiskEvents,
                    r.account.as_str(),
                    to_string(&risk(r, ins)),
                )
            }
        }
        Event::CommandRejected {
            order_id,
            account,
            code,
            ts,
            correlation_id,
        } => {
            let body = CommandRejectedJson {
                event_type: "COMMAND_REJECTED",
                order_id: order_id.to_string(),
                account: account.as_str(),
                reason: code.as_str(),
                timestamp: rfc3339(*ts),
            };
            EventMessage {
                correlation_id: correlation_id.as_ref().map(|c| c.as_str().to_owned()),
                ..msg(EventTopic::OrderUpdates, account.as_str(), to_string(&body))
            }
        }
    })
}
