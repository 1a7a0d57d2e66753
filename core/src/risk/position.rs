//! One account's position in one instrument, settled fill by fill (R2).
//!
//! The position keeps its cost basis as the exact Σ price × quantity of what is still open
//! (in price-units × quantity-units), not a rounded average price: a reduction removes the
//! cost of the closed part proportionally (integer division, the remainder stays in the
//! basis), so realized PnL summed over any sequence of fills is exact and the basis of a
//! flat position is exactly zero.

use crate::num::{Money, Price, Qty};
use crate::order::Side;

/// Signed position, cost basis and realized PnL of one account in one instrument, plus the
/// quantity its open orders are still working on each side (for the position limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Position {
    /// Signed quantity: long > 0, short < 0.
    pub qty: i64,
    /// Σ price × quantity of the open quantity, ≥ 0, in price-units × quantity-units.
    pub cost: i128,
    /// Realized PnL in money units.
    pub realized: Money,
    /// Leaves of open buy orders.
    pub open_buy: i64,
    /// Leaves of open sell orders.
    pub open_sell: i64,
}

impl Position {
    /// Average entry price (floor), 0 when flat.
    pub fn avg_entry(&self) -> Price {
        if self.qty == 0 {
            Price(0)
        } else {
            Price((self.cost / i128::from(self.qty.unsigned_abs())) as i64)
        }
    }

    /// Applies a fill of `qty` at `price` on `side`; returns the realized PnL in
    /// price-units × quantity-units (multiply by the money scale for [`Money`]).
    pub fn apply_fill(&mut self, side: Side, qty: Qty, price: Price) -> i128 {
        let q = qty.0;
        let px = i128::from(price.0);
        let signed = side.sign() * q;
        if self.qty == 0 || (self.qty > 0) == (signed > 0) {
            self.qty += signed;
            self.cost += px * i128::from(q);
            return 0;
        }
        let open = self.qty.unsigned_abs() as i64;
        let close = q.min(open);
        let removed = self.cost * i128::from(close) / i128::from(open);
        let dir = if self.qty > 0 { 1 } else { -1 };
        let pnl = (px * i128::from(close) - removed) * dir;
        self.cost -= removed;
        self.qty -= dir as i64 * close;
        let rest = q - close;
        if rest > 0 {
            // Flipped through zero: the remainder opens a new position at the fill price.
            self.qty = side.sign() * rest;
            self.cost = px * i128::from(rest);
        }
        pnl
    }

    /// Unrealized PnL against `mark`, in price-units × quantity-units.
    pub fn unrealized(&self, mark: Price) -> i128 {
        let abs = i128::from(self.qty.unsigned_abs());
        let value = i128::from(mark.0) * abs;
        if self.qty >= 0 {
            value - self.cost
        } else {
            self.cost - value
        }
    }

    /// Open same-side leaves for `side`.
    pub fn open_mut(&mut self, side: Side) -> &mut i64 {
        match side {
            Side::Buy => &mut self.open_buy,
            Side::Sell => &mut self.open_sell,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_add_reduce_flip() {
        let mut p = Position::default();
        assert_eq!(p.apply_fill(Side::Buy, Qty(10), Price(100)), 0);
        assert_eq!(p.apply_fill(Side::Buy, Qty(10), Price(110)), 0);
        assert_eq!((p.qty, p.cost, p.avg_entry()), (20, 2100, Price(105)));
        // Sell 5 at 120: closes 5 of basis 525 → +75.
        assert_eq!(p.apply_fill(Side::Sell, Qty(5), Price(120)), 75);
        assert_eq!((p.qty, p.cost), (15, 1575));
        // Sell 25 at 100: closes 15 (basis 1575 → -75), opens short 10 at 100.
        assert_eq!(p.apply_fill(Side::Sell, Qty(25), Price(100)), -75);
        assert_eq!((p.qty, p.cost, p.avg_entry()), (-10, 1000, Price(100)));
        assert_eq!(p.unrealized(Price(90)), 100);
        // Buy back 10 at 90: +100, flat with zero basis.
        assert_eq!(p.apply_fill(Side::Buy, Qty(10), Price(90)), 100);
        assert_eq!((p.qty, p.cost), (0, 0));
    }

    #[test]
    fn basis_is_exact_under_uneven_division() {
        let mut p = Position::default();
        p.apply_fill(Side::Buy, Qty(3), Price(101)); // cost 303
        let mut total = 0;
        for _ in 0..3 {
            total += p.apply_fill(Side::Sell, Qty(1), Price(101));
        }
        assert_eq!(total, 0);
        assert_eq!((p.qty, p.cost), (0, 0));
    }
}
