//! OHLCV candles built from the trade stream.
//!
//! Buckets are aligned to the epoch (`open_time = ts − ts mod width`) so every consumer that
//! sees the same trades builds the same candles. Each (symbol, interval) keeps a bounded ring
//! of the most recent buckets; a trade updates every interval's current bucket and the
//! updated candles are emitted, which is what a live chart needs.

use std::collections::VecDeque;

use crate::event::{Candle, CandleInterval, Trade};
use crate::ids::SymbolId;

/// Buckets kept per symbol and interval unless configured otherwise (a day of minutes).
pub const DEFAULT_CANDLES_KEPT: usize = 1440;

/// Candle series for every symbol and interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandleStore {
    keep: usize,
    /// Indexed by `symbol × intervals + interval`; oldest first.
    series: Vec<VecDeque<Candle>>,
}

const INTERVALS: usize = CandleInterval::ALL.len();

fn slot(symbol: SymbolId, interval: CandleInterval) -> usize {
    symbol.0 as usize * INTERVALS + interval as usize
}

impl CandleStore {
    /// Series for `symbols` symbols (ids `0..symbols`), keeping the last `keep` buckets each.
    pub fn new(symbols: usize, keep: usize) -> Self {
        CandleStore {
            keep: keep.max(1),
            series: (0..symbols * INTERVALS).map(|_| VecDeque::new()).collect(),
        }
    }

    /// Adds a trade; pushes the updated candle of every interval to `out`. A trade older than
    /// the series' current bucket updates its bucket if still kept, and is dropped otherwise.
    pub fn on_trade(&mut self, t: &Trade, out: &mut Vec<Candle>) {
        let keep = self.keep;
        for interval in CandleInterval::ALL {
            let Some(series) = self.series.get_mut(slot(t.symbol, interval)) else {
                return;
            };
            let open_time = t.ts - t.ts % interval.nanos();
            let last_open = series.back().map(|c| c.open_time);
            let candle = match last_open {
                Some(o) if o == open_time => series.back_mut(),
                Some(o) if o > open_time => {
                    series.iter_mut().rev().find(|c| c.open_time == open_time)
                }
                _ => {
                    if series.len() == keep {
                        series.pop_front();
                    }
                    series.push_back(Candle {
                        symbol: t.symbol,
                        interval,
                        open_time,
                        open: t.price,
                        high: t.price,
                        low: t.price,
                        close: t.price,
                        volume: crate::num::Qty::ZERO,
                        trades: 0,
                    });
                    series.back_mut()
                }
            };
            if let Some(c) = candle {
                c.high = c.high.max(t.price);
                c.low = c.low.min(t.price);
                if open_time == last_open.unwrap_or(open_time) || c.trades == 0 {
                    c.close = t.price;
                }
                c.volume += t.qty;
                c.trades += 1;
                out.push(*c);
            }
        }
    }

    /// The newest `limit` candles, oldest first (what a chart draws left to right).
    pub fn candles(&self, symbol: SymbolId, interval: CandleInterval, limit: usize) -> Vec<Candle> {
        match self.series.get(slot(symbol, interval)) {
            Some(s) => s
                .iter()
                .skip(s.len().saturating_sub(limit))
                .copied()
                .collect(),
            None => Vec::new(),
        }
    }

    /// Every kept candle, by symbol, interval, time (for snapshots).
    pub(crate) fn all(&self) -> impl Iterator<Item = &Candle> {
        self.series.iter().flatten()
    }

    /// Puts back a candle from a snapshot (in the order [`CandleStore::all`] gave).
    pub(crate) fn restore(&mut self, c: Candle) {
        if let Some(s) = self.series.get_mut(slot(c.symbol, c.interval)) {
            if s.len() == self.keep {
                s.pop_front();
            }
            s.push_back(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrderId;
    use crate::num::{Price, Qty};
    use crate::order::Side;

    const S: u64 = 1_000_000_000;

    fn trade(ts: u64, px: i64, q: i64) -> Trade {
        Trade {
            trade_id: 0,
            symbol: SymbolId(1),
            price: Price(px),
            qty: Qty(q),
            aggressor: Side::Buy,
            maker_order_id: OrderId(1),
            taker_order_id: OrderId(2),
            ts,
        }
    }

    #[test]
    fn ohlcv_per_bucket_and_interval() {
        let mut c = CandleStore::new(2, 3);
        let mut out = Vec::new();
        let t0 = 1_700_000_040 * S; // on a minute boundary
        c.on_trade(&trade(t0, 100, 1), &mut out);
        c.on_trade(&trade(t0 + S / 2, 105, 2), &mut out);
        c.on_trade(&trade(t0 + S / 2, 95, 3), &mut out);
        assert_eq!(out.len(), 3 * CandleInterval::ALL.len());
        let s1 = c.candles(SymbolId(1), CandleInterval::S1, 10);
        assert_eq!(s1.len(), 1);
        let k = s1[0];
        assert_eq!(
            (
                k.open_time,
                k.open,
                k.high,
                k.low,
                k.close,
                k.volume,
                k.trades
            ),
            (t0, Price(100), Price(105), Price(95), Price(95), Qty(6), 3)
        );
        c.on_trade(&trade(t0 + S, 101, 1), &mut out);
        assert_eq!(c.candles(SymbolId(1), CandleInterval::S1, 10).len(), 2);
        let m1 = c.candles(SymbolId(1), CandleInterval::M1, 10);
        assert_eq!(
            (m1.len(), m1[0].close, m1[0].volume),
            (1, Price(101), Qty(7))
        );
        // A late trade updates its own (older) bucket but not the close of the newer one.
        c.on_trade(&trade(t0 + S / 4, 90, 1), &mut out);
        let s1 = c.candles(SymbolId(1), CandleInterval::S1, 10);
        assert_eq!(
            (s1[0].low, s1[0].close, s1[1].close),
            (Price(90), Price(95), Price(101))
        );
        assert!(c.candles(SymbolId(0), CandleInterval::H1, 10).is_empty());
    }

    #[test]
    fn keeps_only_the_last_n() {
        let mut c = CandleStore::new(2, 3);
        let mut out = Vec::new();
        for i in 0..5 {
            c.on_trade(&trade(i * S, 100 + i as i64, 1), &mut out);
        }
        let s1 = c.candles(SymbolId(1), CandleInterval::S1, 10);
        assert_eq!(
            s1.iter().map(|k| k.open.0).collect::<Vec<_>>(),
            [102, 103, 104]
        );
        assert_eq!(
            c.candles(SymbolId(1), CandleInterval::S1, 1)[0].open,
            Price(104)
        );
    }
}
