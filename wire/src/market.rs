//! Executions, trades, candles, the order book and the instrument list: the market-data and
//! fill objects shown over REST, the Kafka event topics and WebSocket channels.

use oms_core::book::LevelView;
use oms_core::{Candle, CandleInterval, ExecutionReport, Instrument, Price, Qty, Trade};
use serde::Serialize;

use crate::text::{Decimal, Id, Timestamp};

/// One fill of one order (the `executions` topic and channel).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionJson<'a> {
    pub order_id: Id,
    pub exec_id: u64,
    pub trade_id: u64,
    pub account: &'a str,
    pub symbol: &'a str,
    pub side: &'static str,
    pub last_qty: Decimal,
    pub last_px: Decimal,
    pub cum_qty: Decimal,
    pub leaves_qty: Decimal,
    pub avg_px: Decimal,
    pub liquidity: &'static str,
    pub timestamp: Timestamp,
}

impl<'a> ExecutionJson<'a> {
    pub fn new(e: &'a ExecutionReport, ins: &'a Instrument) -> Self {
        ExecutionJson {
            order_id: Id(e.order_id),
            exec_id: e.exec_id,
            trade_id: e.trade_id,
            account: e.account.as_str(),
            symbol: &ins.symbol,
            side: e.side.as_str(),
            last_qty: Decimal::qty(ins, e.last_qty),
            last_px: Decimal::price(ins, e.last_px),
            cum_qty: Decimal::qty(ins, e.cum_qty),
            leaves_qty: Decimal::qty(ins, e.leaves_qty),
            avg_px: Decimal::price(ins, e.avg_px),
            liquidity: e.liquidity.as_str(),
            timestamp: Timestamp(e.ts),
        }
    }
}

/// A trade with both order ids (the `prices` topic: an internal audience).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeJson<'a> {
    pub trade_id: u64,
    pub symbol: &'a str,
    pub price: Decimal,
    pub quantity: Decimal,
    pub aggressor_side: &'static str,
    pub maker_order_id: Id,
    pub taker_order_id: Id,
    pub timestamp: Timestamp,
}

impl<'a> TradeJson<'a> {
    pub fn new(t: &Trade, ins: &'a Instrument) -> Self {
        TradeJson {
            trade_id: t.trade_id,
            symbol: &ins.symbol,
            price: Decimal::price(ins, t.price),
            quantity: Decimal::qty(ins, t.qty),
            aggressor_side: t.aggressor.as_str(),
            maker_order_id: Id(t.maker_order_id),
            taker_order_id: Id(t.taker_order_id),
            timestamp: Timestamp(t.ts),
        }
    }
}

/// A trade on the public tape (`GET /api/trades`, the `trades` channel): no order ids, which
/// would tell other clients whose orders traded; `side` is the aggressor's.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicTradeJson {
    pub trade_id: u64,
    pub price: Decimal,
    pub quantity: Decimal,
    pub side: &'static str,
    pub timestamp: Timestamp,
}

impl PublicTradeJson {
    pub fn new(t: &Trade, ins: &Instrument) -> Self {
        PublicTradeJson {
            trade_id: t.trade_id,
            price: Decimal::price(ins, t.price),
            quantity: Decimal::qty(ins, t.qty),
            side: t.aggressor.as_str(),
            timestamp: Timestamp(t.ts),
        }
    }
}

/// `GET /api/trades/{symbol}`.
#[derive(Serialize)]
pub struct TradesJson<'a> {
    pub symbol: &'a str,
    pub trades: Vec<PublicTradeJson>,
}

/// One OHLCV candle.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CandleJson {
    pub open_time: Timestamp,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
    pub trades: u32,
}

impl CandleJson {
    pub fn new(c: &Candle, ins: &Instrument) -> Self {
        CandleJson {
            open_time: Timestamp(c.open_time),
            open: Decimal::price(ins, c.open),
            high: Decimal::price(ins, c.high),
            low: Decimal::price(ins, c.low),
            close: Decimal::price(ins, c.close),
            volume: Decimal::qty(ins, c.volume),
            trades: c.trades,
        }
    }
}

/// A candle that names its symbol and interval (the `prices` topic).
#[derive(Clone, Debug, Serialize)]
pub struct SymbolCandleJson<'a> {
    pub symbol: &'a str,
    pub interval: &'static str,
    #[serde(flatten)]
    pub candle: CandleJson,
}

impl<'a> SymbolCandleJson<'a> {
    pub fn new(c: &Candle, ins: &'a Instrument) -> Self {
        SymbolCandleJson {
            symbol: &ins.symbol,
            interval: c.interval.as_str(),
            candle: CandleJson::new(c, ins),
        }
    }
}

/// `GET /api/candles/{symbol}`: oldest first.
#[derive(Serialize)]
pub struct CandlesJson<'a> {
    pub symbol: &'a str,
    pub interval: &'static str,
    pub candles: Vec<CandleJson>,
}

impl<'a> CandlesJson<'a> {
    pub fn new(ins: &'a Instrument, interval: CandleInterval, candles: &[Candle]) -> Self {
        CandlesJson {
            symbol: &ins.symbol,
            interval: interval.as_str(),
            candles: candles.iter().map(|c| CandleJson::new(c, ins)).collect(),
        }
    }
}

/// One price level of the book.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BookLevelJson {
    pub price: Decimal,
    pub quantity: Decimal,
    pub orders: u32,
}

impl BookLevelJson {
    pub fn new(l: &LevelView, ins: &Instrument) -> Self {
        BookLevelJson {
            price: Decimal::price(ins, l.price),
            quantity: Decimal::qty(ins, l.qty),
            orders: l.orders,
        }
    }
}

/// A book snapshot, best levels first (`GET /api/book/{symbol}`, the `book` channel).
#[derive(Serialize)]
pub struct BookJson<'a> {
    pub symbol: &'a str,
    pub bids: Vec<BookLevelJson>,
    pub asks: Vec<BookLevelJson>,
    pub timestamp: Timestamp,
}

/// An instrument as `GET /api/symbols` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolJson<'a> {
    pub symbol: &'a str,
    pub base: &'a str,
    pub quote: &'a str,
    pub tick_size: Decimal,
    pub lot_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    pub min_notional: Decimal,
    pub max_notional: Decimal,
    pub price_band_pct: Decimal,
    pub initial_margin_pct: Decimal,
    pub max_position: Decimal,
    pub reference_price: Decimal,
    pub last_price: Decimal,
}

impl<'a> SymbolJson<'a> {
    pub fn new(ins: &'a Instrument, last: Price) -> Self {
        SymbolJson {
            symbol: &ins.symbol,
            base: &ins.base,
            quote: &ins.quote,
            tick_size: Decimal::price(ins, Price(ins.tick)),
            lot_size: Decimal::qty(ins, Qty(ins.lot)),
            min_qty: Decimal::qty(ins, ins.min_qty),
            max_qty: Decimal::qty(ins, ins.max_qty),
            min_notional: Decimal::money(ins.min_notional),
            max_notional: Decimal::money(ins.max_notional),
            price_band_pct: Decimal::pct_of_bps(ins.price_band_bps),
            initial_margin_pct: Decimal::pct_of_bps(ins.initial_margin_bps),
            max_position: Decimal::qty(ins, ins.max_position),
            reference_price: Decimal::price(ins, ins.reference_price),
            last_price: Decimal::price(ins, last),
        }
    }
}

/// `GET /api/symbols`.
#[derive(Serialize)]
pub struct SymbolsJson<'a> {
    pub symbols: Vec<SymbolJson<'a>>,
}
