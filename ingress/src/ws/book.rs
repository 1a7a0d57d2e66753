//! The fan-out's mirror of every order book, kept from the processor's order updates, and
//! the per-depth views that turn it into `book` snapshots and incremental updates.
//!
//! The mirror lives on the fan-out thread so the processor never renders market data; it is
//! rebuilt from the engine (a query on the processor thread) whenever its event stream could
//! have a hole, so it always equals the engine's book between batches.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use oms_core::book::RestingOrder;
use oms_core::{Instrument, Order, OrderId, OrderStatus, OrderType, Price, Qty, Side};

/// One aggregated level as the REST book shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price: Price,
    pub qty: Qty,
    pub orders: u32,
}

/// The mirror of one symbol's book.
#[derive(Default)]
pub struct MirrorBook {
    resting: HashMap<OrderId, (Side, Price, Qty)>,
    bids: BTreeMap<Price, (Qty, u32)>,
    asks: BTreeMap<Price, (Qty, u32)>,
}

impl MirrorBook {
    /// A mirror holding `orders` (the engine's resting orders).
    pub fn from_resting(orders: impl IntoIterator<Item = RestingOrder>) -> Self {
        let mut b = MirrorBook::default();
        for o in orders {
            b.add(o.order_id, o.side, o.price, o.leaves);
        }
        b
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Price, (Qty, u32)> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn add(&mut self, id: OrderId, side: Side, price: Price, leaves: Qty) {
        self.resting.insert(id, (side, price, leaves));
        let l = self.side_mut(side).entry(price).or_insert((Qty::ZERO, 0));
        l.0 += leaves;
        l.1 += 1;
    }

    fn remove(&mut self, id: OrderId) {
        let Some((side, price, leaves)) = self.resting.remove(&id) else {
            return;
        };
        let levels = self.side_mut(side);
        if let Some(l) = levels.get_mut(&price) {
            l.0 -= leaves;
            l.1 -= 1;
            if l.1 == 0 {
                levels.remove(&price);
            }
        }
    }

    /// Applies the order's new state: it rests iff it is an open limit order with leaves.
    pub fn on_order(&mut self, o: &Order) {
        self.remove(o.order_id);
        let leaves = o.quantity - o.filled_quantity;
        if let (true, OrderType::Limit, Some(price), true) = (
            matches!(
                o.status,
                OrderStatus::Accepted | OrderStatus::PartiallyFilled
            ),
            o.order_type,
            o.price,
            leaves > Qty::ZERO,
        ) {
            self.add(o.order_id, o.side, price, leaves);
        }
    }

    /// The best `depth` levels of one side, best first, into `out` (cleared).
    pub fn top(&self, side: Side, depth: usize, out: &mut Vec<Level>) {
        out.clear();
        let level = |(p, (q, n)): (&Price, &(Qty, u32))| Level {
            price: *p,
            qty: *q,
            orders: *n,
        };
        match side {
            Side::Buy => out.extend(self.bids.iter().rev().take(depth).map(level)),
            Side::Sell => out.extend(self.asks.iter().take(depth).map(level)),
        }
    }

    /// Ids of the resting orders (for an account's open-order snapshot).
    pub fn order_ids(&self) -> impl Iterator<Item = OrderId> + '_ {
        self.resting.keys().copied()
    }
}

/// What a depth-limited subscriber last saw of one book.
#[derive(Default)]
pub struct DepthView {
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// The levels that differ between `old` and `new` (both best first): changed or new levels
/// with their quantity, vanished ones with quantity 0.
pub fn diff(old: &[Level], new: &[Level], out: &mut Vec<Level>) {
    out.clear();
    for n in new {
        if !old.iter().any(|o| o == n) {
            out.push(*n);
        }
    }
    for o in old {
        if !new.iter().any(|n| n.price == o.price) {
            out.push(Level {
                price: o.price,
                qty: Qty::ZERO,
                orders: 0,
            });
        }
    }
}

/// Appends `[{"price":…,"quantity":…,"orders":…},…]`, the REST book's level objects.
pub fn levels_json(s: &mut String, ins: &Instrument, levels: &[Level]) {
    s.push('[');
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"price\":\"{}\",\"quantity\":\"{}\",\"orders\":{}}}",
            ins.format_price(l.price),
            ins.format_qty(l.qty),
            l.orders
        );
    }
    s.push(']');
}

/// CRC-32 (IEEE) of the top `n` asks then the top `n` bids, best first, each level as
/// `price:quantity` in the instrument's decimals, joined with `|` (docs/websocket.md).
pub fn checksum(ins: &Instrument, bids: &[Level], asks: &[Level], n: usize) -> u32 {
    let mut text = String::with_capacity(64 * n);
    for l in asks.iter().take(n).chain(bids.iter().take(n)) {
        if !text.is_empty() {
            text.push('|');
        }
        let _ = write!(
            text,
            "{}:{}",
            ins.format_price(l.price),
            ins.format_qty(l.qty)
        );
    }
    crc32fast::hash(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(p: i64, q: i64) -> Level {
        Level {
            price: Price(p),
            qty: Qty(q),
            orders: 1,
        }
    }

    #[test]
    fn diff_reports_changes_and_removals() {
        let mut out = Vec::new();
        diff(&[lv(10, 1), lv(9, 2)], &[lv(10, 3), lv(8, 1)], &mut out);
        assert_eq!(
            out,
            [
                lv(10, 3),
                lv(8, 1),
                Level {
                    price: Price(9),
                    qty: Qty::ZERO,
                    orders: 0
                }
            ]
        );
        diff(&[lv(10, 1)], &[lv(10, 1)], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn mirror_aggregates_levels_and_forgets_closed_orders() {
        let mut b = MirrorBook::default();
        b.add(OrderId(1), Side::Buy, Price(100), Qty(5));
        b.add(OrderId(2), Side::Buy, Price(100), Qty(7));
        b.add(OrderId(3), Side::Buy, Price(101), Qty(1));
        b.add(OrderId(4), Side::Sell, Price(105), Qty(2));
        let mut top = Vec::new();
        b.top(Side::Buy, 10, &mut top);
        assert_eq!(
            top,
            [
                lv(101, 1),
                Level {
                    price: Price(100),
                    qty: Qty(12),
                    orders: 2
                }
            ]
        );
        b.remove(OrderId(3));
        b.remove(OrderId(3));
        b.top(Side::Buy, 1, &mut top);
        assert_eq!(top[0].price, Price(100));
        b.top(Side::Sell, 10, &mut top);
        assert_eq!(top, [lv(105, 2)]);
    }
}
