//! The fan-out's copy of the public market state (books, recent trades, candle history) and
//! the queries that load it and an account's private state from the engine.
//!
//! Loads run as processor queries: the closure reads the engine between two batches and
//! pushes its answer into the same queue the processor's events use, so the fan-out sees
//! the answer exactly between the events before and after it (a consistent cut).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;
use oms_core::book::RestingOrder;
use oms_core::engine::Engine;
use oms_core::{AccountId, Candle, CandleInterval, Event, Order, PositionView, SymbolId, Trade};

use super::book::MirrorBook;
use crate::processor::Query;

/// Candle intervals served over `/ws` (1s stays REST-only).
pub const WS_INTERVALS: [CandleInterval; 4] = [
    CandleInterval::M1,
    CandleInterval::M5,
    CandleInterval::H1,
    CandleInterval::D1,
];

fn interval_slot(i: CandleInterval) -> Option<usize> {
    WS_INTERVALS.iter().position(|x| *x == i)
}

/// What reaches the fan-out thread in processor order.
pub enum Feed {
    /// One processor batch; `at`/`wall` when it was published.
    Events {
        events: Vec<Event>,
        at: std::time::Instant,
        wall: u64,
    },
    /// The whole market state, after which events apply again.
    Init(Box<Market>),
    /// One account's open orders and/or positions.
    Private(Box<PrivateState>),
}

/// An account's state read from the engine.
pub struct PrivateState {
    pub account: AccountId,
    pub orders: Option<Vec<Order>>,
    pub positions: Option<Vec<PositionView>>,
}

/// Books, trades and candles of every symbol.
pub struct Market {
    pub books: Vec<MirrorBook>,
    /// Newest last.
    pub trades: Vec<VecDeque<Trade>>,
    /// `symbol × WS_INTERVALS`; oldest first.
    candles: Vec<VecDeque<Candle>>,
    keep_trades: usize,
    keep_candles: usize,
}

impl Market {
    /// Reads everything from the engine (runs on the processor thread).
    pub fn capture(e: &Engine, keep_trades: usize, keep_candles: usize) -> Market {
        let n = e.instruments().len();
        let mut candles = Vec::with_capacity(n * WS_INTERVALS.len());
        for s in 0..n {
            let sym = SymbolId(s as u16);
            for i in WS_INTERVALS {
                candles.push(e.candles(sym, i, keep_candles).into_iter().collect());
            }
        }
        Market {
            books: (0..n)
                .map(|s| MirrorBook::from_resting(e.book(SymbolId(s as u16)).resting_orders()))
                .collect(),
            trades: (0..n)
                .map(|s| {
                    let mut t: VecDeque<Trade> = e
                        .recent_trades(SymbolId(s as u16), keep_trades)
                        .into_iter()
                        .collect();
                    t.make_contiguous().reverse();
                    t
                })
                .collect(),
            candles,
            keep_trades: keep_trades.max(1),
            keep_candles: keep_candles.max(1),
        }
    }

    pub fn on_trade(&mut self, t: &Trade) {
        if let Some(q) = self.trades.get_mut(t.symbol.0 as usize) {
            if q.len() == self.keep_trades {
                q.pop_front();
            }
            q.push_back(*t);
        }
    }

    /// Records a candle update; false for intervals `/ws` does not serve.
    pub fn on_candle(&mut self, c: &Candle) -> bool {
        let Some(slot) = interval_slot(c.interval) else {
            return false;
        };
        let Some(series) = self
            .candles
            .get_mut(c.symbol.0 as usize * WS_INTERVALS.len() + slot)
        else {
            return false;
        };
        match series.iter_mut().rev().find(|k| k.open_time == c.open_time) {
            Some(k) => *k = *c,
            None => {
                if series.len() == self.keep_candles {
                    series.pop_front();
                }
                series.push_back(*c);
            }
        }
        true
    }

    pub fn candles(&self, sym: SymbolId, i: CandleInterval) -> impl Iterator<Item = &Candle> {
        let slot = interval_slot(i).map(|s| sym.0 as usize * WS_INTERVALS.len() + s);
        slot.and_then(|s| self.candles.get(s)).into_iter().flatten()
    }
}

/// A query that loads the market into `feed` (flags `lost` if the queue is full).
pub fn init_query(
    feed: Sender<Feed>,
    lost: Arc<AtomicBool>,
    keep_trades: usize,
    keep_candles: usize,
) -> Query {
    Box::new(move |e: &Engine| {
        let m = Market::capture(e, keep_trades, keep_candles);
        if feed.try_send(Feed::Init(Box::new(m))).is_err() {
            lost.store(true, Ordering::Release);
        }
    })
}

/// A query that reads an account's open orders and/or positions into `feed`.
pub fn private_query(
    feed: Sender<Feed>,
    lost: Arc<AtomicBool>,
    account: AccountId,
    orders: bool,
    positions: bool,
) -> Query {
    Box::new(move |e: &Engine| {
        let orders = orders.then(|| {
            let mut v: Vec<Order> = (0..e.instruments().len())
                .flat_map(|s| e.book(SymbolId(s as u16)).resting_orders())
                .filter(|r: &RestingOrder| r.account == account)
                .filter_map(|r| e.order(r.order_id).cloned())
                .collect();
            v.sort_by_key(|o| (o.created_at, o.order_id));
            v
        });
        let positions = positions.then(|| e.risk().positions(&account));
        let state = PrivateState {
            account,
            orders,
            positions,
        };
        if feed.try_send(Feed::Private(Box::new(state))).is_err() {
            lost.store(true, Ordering::Release);
        }
    })
}
