//! Events: what the processor emits for every command it applies.
//!
//! They are the only output of the deterministic core: the query views, the WebSocket
//! fan-out, the Kafka event topics and the MongoDB projection are all built from this stream,
//! so two runs over the same log produce byte-identical event streams.

use crate::codes::RejectCode;
use crate::command::CorrelationId;
use crate::ids::{AccountId, OrderId, SymbolId};
use crate::num::{Price, Qty};
use crate::order::{Order, Side};

/// Maker (rested, provided liquidity) or taker (crossed the spread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liquidity {
    Maker,
    Taker,
}

impl Liquidity {
    pub fn as_str(self) -> &'static str {
        match self {
            Liquidity::Maker => "MAKER",
            Liquidity::Taker => "TAKER",
        }
    }
}

/// One side of a fill, as reported to the owner of the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutionReport {
    /// Unique per report, monotonic within the processor.
    pub exec_id: u64,
    pub trade_id: u64,
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub last_qty: Qty,
    pub last_px: Price,
    pub cum_qty: Qty,
    pub leaves_qty: Qty,
    /// Average fill price so far (floor to a price unit).
    pub avg_px: Price,
    pub liquidity: Liquidity,
    pub ts: u64,
}

/// A public trade print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub trade_id: u64,
    pub symbol: SymbolId,
    pub price: Price,
    pub qty: Qty,
    /// Side of the taker.
    pub aggressor: Side,
    pub maker_order_id: OrderId,
    pub taker_order_id: OrderId,
    pub ts: u64,
}

/// Candle bucket widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandleInterval {
    S1,
    M1,
    M5,
    H1,
    /// One UTC day (appended last: snapshots store the index into [`CandleInterval::ALL`]).
    D1,
}

impl CandleInterval {
    pub const ALL: [CandleInterval; 5] = [
        CandleInterval::S1,
        CandleInterval::M1,
        CandleInterval::M5,
        CandleInterval::H1,
        CandleInterval::D1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CandleInterval::S1 => "1s",
            CandleInterval::M1 => "1m",
            CandleInterval::M5 => "5m",
            CandleInterval::H1 => "1h",
            CandleInterval::D1 => "1d",
        }
    }

    pub fn parse(s: &str) -> Option<CandleInterval> {
        CandleInterval::ALL.into_iter().find(|i| i.as_str() == s)
    }

    pub fn nanos(self) -> u64 {
        const S: u64 = 1_000_000_000;
        match self {
            CandleInterval::S1 => S,
            CandleInterval::M1 => 60 * S,
            CandleInterval::M5 => 300 * S,
            CandleInterval::H1 => 3600 * S,
            CandleInterval::D1 => 86_400 * S,
        }
    }
}

/// OHLCV for one bucket; emitted (updated) on every trade in the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    pub symbol: SymbolId,
    pub interval: CandleInterval,
    /// Bucket start, nanoseconds since the epoch.
    pub open_time: u64,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub volume: Qty,
    pub trades: u32,
}

/// A pre-trade risk rejection, published on `risk-events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiskEvent {
    pub account: AccountId,
    pub order_id: OrderId,
    pub symbol: SymbolId,
    pub code: RejectCode,
    pub ts: u64,
    /// The correlation id of the request that was rejected.
    pub correlation_id: Option<CorrelationId>,
}

/// Everything the processor emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The order after a change (new status, fill, amend); `correlation_id` is the one of the
    /// command that caused it.
    OrderUpdate {
        order: Box<Order>,
        correlation_id: Option<CorrelationId>,
    },
    Execution(ExecutionReport),
    Trade(Trade),
    Candle(Candle),
    Risk(RiskEvent),
    /// A cancel or amend that could not be applied (unknown or closed order, bad amend).
    CommandRejected {
        order_id: OrderId,
        account: AccountId,
        code: RejectCode,
        ts: u64,
        /// The correlation id of the cancel or amend request.
        correlation_id: Option<CorrelationId>,
    },
}
