//! The commands: submit (match, then rest or end the remainder), cancel, amend, restore.
//!
//! Every path decides before it mutates when the outcome must be atomic: post-only and FOK are
//! checked against the book first and, when they fail, leave it untouched. Events are pushed
//! in the order things happen (fills level by level in time priority, then the remainder's
//! fate), so replaying the same commands yields the same events.

use super::level::Level;
use super::slab::Node;
use super::{BookError, Incoming, MatchEvent, OrderBook, StpMode};
use crate::codes::RejectCode;
use crate::ids::{AccountId, OrderId};
use crate::num::{Price, Qty};
use crate::order::{OrderStatus, OrderType, Side, TimeInForce};

/// What happens to an incoming order's unfilled remainder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Remainder {
    /// GTC limit: rest on the book.
    Rest,
    /// IOC/FOK limit: expire, no reason.
    Expire,
    /// MARKET: expire; `NO_LIQUIDITY` when nothing filled.
    ExpireMarket,
}

/// The working form of an incoming order.
struct Taker {
    order_id: OrderId,
    account: AccountId,
    /// `account` in the book's account table ([`super::accounts::NO_ACCOUNT`] if it never
    /// rested here).
    acct: u32,
    side: Side,
    /// Worst price it may trade at (the band edge for MARKET).
    limit: Price,
    quantity: Qty,
    post_only: bool,
    fok: bool,
    remainder: Remainder,
}

/// Whether a taker on `side` with `limit` trades with a maker resting at `maker`.
#[inline]
fn crosses(side: Side, maker: Price, limit: Price) -> bool {
    match side {
        Side::Buy => maker <= limit,
        Side::Sell => maker >= limit,
    }
}

#[inline]
fn ended(t: &Taker, leaves: Qty, status: OrderStatus, reason: Option<RejectCode>) -> MatchEvent {
    MatchEvent::Ended {
        order_id: t.order_id,
        account: t.account,
        leaves,
        status,
        reason,
    }
}

impl OrderBook {
    /// Matches `o`; `band` = inclusive `(lo, hi)`: a MARKET buy sweeps asks up to `hi`, a
    /// MARKET sell bids down to `lo`, and the rest expires. Limit orders are not band-checked
    /// here (risk does it). A non-positive quantity is a caller bug and does nothing.
    pub fn submit(&mut self, o: &Incoming, band: (Price, Price), out: &mut Vec<MatchEvent>) {
        debug_assert!(o.quantity.0 > 0, "submit with non-positive quantity");
        debug_assert!(
            !self.index.contains_key(&o.order_id),
            "submit of an order id already resting"
        );
        if o.quantity.0 <= 0 {
            return;
        }
        let market = o.order_type == OrderType::Market || o.price.is_none();
        let band_edge = match o.side {
            Side::Buy => band.1,
            Side::Sell => band.0,
        };
        let (limit, remainder) = match o.price {
            Some(p) if !market => {
                let r = if o.time_in_force == TimeInForce::Gtc {
                    Remainder::Rest
                } else {
                    Remainder::Expire
                };
                (p, r)
            }
            _ => (band_edge, Remainder::ExpireMarket),
        };
        let t = Taker {
            order_id: o.order_id,
            account: o.account,
            acct: self.accounts.find(&o.account),
            side: o.side,
            limit,
            quantity: o.quantity,
            post_only: o.post_only,
            fok: o.time_in_force == TimeInForce::Fok,
            remainder,
        };
        self.place(&t, out);
    }

    /// Removes a resting order; emits `Ended { status: Canceled, reason: None }`.
    pub fn cancel(&mut self, id: OrderId, out: &mut Vec<MatchEvent>) -> Result<(), BookError> {
        let idx = self.index.remove(&id).ok_or(BookError::UnknownOrder)?;
        let n = self.detach(idx);
        out.push(MatchEvent::Ended {
            order_id: n.order_id,
            account: self.accounts.get(n.acct),
            leaves: n.leaves,
            status: OrderStatus::Canceled,
            reason: None,
        });
        Ok(())
    }

    /// Changes a resting order's remaining quantity and/or price.
    ///
    /// Quantity down at the same price keeps queue priority and emits nothing (the engine
    /// reports it). A price change or a quantity increase loses priority: the order re-enters
    /// at the back as the same id, and a new price may cross and fill like a GTC limit (a
    /// post-only order that would cross ends Canceled with `POST_ONLY_WOULD_TAKE`). No change
    /// at all is a no-op. `band` is unused for limit orders and kept for symmetry with submit.
    pub fn amend(
        &mut self,
        id: OrderId,
        new_leaves: Option<Qty>,
        new_price: Option<Price>,
        band: (Price, Price),
        out: &mut Vec<MatchEvent>,
    ) -> Result<(), BookError> {
        let _ = band;
        let idx = *self.index.get(&id).ok_or(BookError::UnknownOrder)?;
        if new_leaves.is_some_and(|q| q.0 <= 0) {
            return Err(BookError::InvalidAmend);
        }
        let node = *self.slab.get(idx);
        let price = new_price.unwrap_or(node.price);
        let leaves = new_leaves.unwrap_or(node.leaves);
        if price == node.price && leaves <= node.leaves {
            if leaves < node.leaves {
                let level = self.level_of(&node);
                level.qty -= node.leaves - leaves;
                self.slab.get_mut(idx).leaves = leaves;
            }
            return Ok(());
        }
        self.index.remove(&id);
        self.detach(idx);
        let t = Taker {
            order_id: id,
            account: self.accounts.get(node.acct),
            acct: node.acct,
            side: node.side,
            limit: price,
            quantity: leaves,
            post_only: node.post_only,
            fok: false,
            remainder: Remainder::Rest,
        };
        self.place(&t, out);
        Ok(())
    }

    /// Inserts a resting order without matching (snapshot restore), at the back of its level.
    ///
    /// # Panics
    /// If the order would cross the book, its id is already resting, or its leaves are not
    /// positive: a snapshot that does any of these is corrupt.
    pub fn restore_resting(&mut self, o: super::RestingOrder) {
        assert!(o.leaves.0 > 0, "restored order with non-positive leaves");
        assert!(
            !self.index.contains_key(&o.order_id),
            "restored order id already resting"
        );
        let would_cross = match o.side {
            Side::Buy => self.best_ask().is_some_and(|a| a <= o.price),
            Side::Sell => self.best_bid().is_some_and(|b| b >= o.price),
        };
        assert!(!would_cross, "restored order would cross the book");
        self.rest(
            o.order_id,
            o.account,
            o.side,
            o.price,
            o.leaves,
            o.post_only,
        );
    }

    fn place(&mut self, t: &Taker, out: &mut Vec<MatchEvent>) {
        if t.post_only
            && self
                .opposite(t.side)
                .best()
                .is_some_and(|l| crosses(t.side, l.price, t.limit))
        {
            out.push(ended(
                t,
                t.quantity,
                OrderStatus::Canceled,
                Some(RejectCode::PostOnlyWouldTake),
            ));
            return;
        }
        if t.fok && self.fillable(t) < t.quantity {
            out.push(ended(
                t,
                t.quantity,
                OrderStatus::Expired,
                Some(RejectCode::FokNotFillable),
            ));
            return;
        }
        let Some(leaves) = self.take(t, out) else {
            return;
        };
        if leaves.is_zero() {
            return;
        }
        match t.remainder {
            Remainder::Rest => {
                self.rest(t.order_id, t.account, t.side, t.limit, leaves, t.post_only);
                out.push(MatchEvent::Rested {
                    order_id: t.order_id,
                    price: t.limit,
                    leaves,
                });
            }
            Remainder::Expire => out.push(ended(t, leaves, OrderStatus::Expired, None)),
            Remainder::ExpireMarket => {
                let reason = (leaves == t.quantity).then_some(RejectCode::NoLiquidity);
                out.push(ended(t, leaves, OrderStatus::Expired, reason));
            }
        }
    }

    /// How much `t` could fill right now, stopping once it reaches `t.quantity`: the crossing
    /// makers in priority order, skipping (CancelOldest) or stopping at (CancelNewest,
    /// CancelBoth) the first one of the same account.
    fn fillable(&self, t: &Taker) -> Qty {
        let stp = self.config.stp;
        let mut acc = Qty::ZERO;
        for level in self.opposite(t.side).iter_best_first() {
            if !crosses(t.side, level.price, t.limit) {
                break;
            }
            if stp == StpMode::Off {
                acc += level.qty;
            } else {
                for m in level.iter(&self.slab) {
                    if m.acct == t.acct {
                        if stp == StpMode::CancelOldest {
                            continue;
                        }
                        return acc;
                    }
                    acc += m.leaves;
                    if acc >= t.quantity {
                        return acc;
                    }
                }
            }
            if acc >= t.quantity {
                return acc;
            }
        }
        acc
    }

    /// Matches `t` against the opposite side. Returns the unfilled quantity, or `None` when
    /// self-trade prevention ended the taker (its `Ended` already emitted).
    fn take(&mut self, t: &Taker, out: &mut Vec<MatchEvent>) -> Option<Qty> {
        let stp = self.config.stp;
        let OrderBook {
            bids,
            asks,
            slab,
            index,
            accounts,
            ..
        } = self;
        let book = match t.side {
            Side::Buy => asks,
            Side::Sell => bids,
        };
        let mut remaining = t.quantity;
        while !remaining.is_zero() {
            let Some(level) = book.best_mut() else { break };
            if !crosses(t.side, level.price, t.limit) {
                break;
            }
            // Every maker reached is the level's head: those before it were filled or
            // canceled and removed, and a partial fill of the head exhausts the taker.
            while !remaining.is_zero() && !level.is_empty() {
                let idx = level.head;
                let maker = slab.get_mut(idx);
                if stp != StpMode::Off && maker.acct == t.acct {
                    if stp == StpMode::CancelNewest {
                        out.push(ended(
                            t,
                            remaining,
                            OrderStatus::Canceled,
                            Some(RejectCode::SelfTradePrevented),
                        ));
                        return None;
                    }
                    level.unlink(slab, idx);
                    let m = slab.remove(idx);
                    index.remove(&m.order_id);
                    out.push(MatchEvent::Ended {
                        order_id: m.order_id,
                        account: accounts.get(m.acct),
                        leaves: m.leaves,
                        status: OrderStatus::Canceled,
                        reason: Some(RejectCode::SelfTradePrevented),
                    });
                    if stp == StpMode::CancelBoth {
                        if level.is_empty() {
                            book.pop_best();
                        }
                        out.push(ended(
                            t,
                            remaining,
                            OrderStatus::Canceled,
                            Some(RejectCode::SelfTradePrevented),
                        ));
                        return None;
                    }
                    continue;
                }
                let q = remaining.min(maker.leaves);
                maker.leaves -= q;
                remaining -= q;
                level.qty -= q;
                let (maker_id, maker_leaves) = (maker.order_id, maker.leaves);
                out.push(MatchEvent::Fill {
                    maker_order_id: maker_id,
                    maker_account: accounts.get(maker.acct),
                    taker_order_id: t.order_id,
                    taker_account: t.account,
                    price: level.price,
                    qty: q,
                    maker_leaves,
                    taker_leaves: remaining,
                });
                if maker_leaves.is_zero() {
                    level.unlink(slab, idx);
                    slab.remove(idx);
                    index.remove(&maker_id);
                }
            }
            if level.is_empty() {
                book.pop_best();
            }
        }
        Some(remaining)
    }

    fn rest(
        &mut self,
        order_id: OrderId,
        account: AccountId,
        side: Side,
        price: Price,
        leaves: Qty,
        post_only: bool,
    ) {
        let acct = self.accounts.intern(&account);
        let idx = self.slab.insert(Node {
            order_id,
            price,
            leaves,
            prev: super::slab::NIL,
            next: super::slab::NIL,
            side,
            post_only,
            acct,
        });
        let previous = self.index.insert(order_id, idx);
        debug_assert!(previous.is_none(), "order id rested twice");
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let i = ladder.get_or_insert(price);
        ladder.at_mut(i).push_back(&mut self.slab, idx);
    }

    /// Takes slot `idx` out of its level (dropping an emptied level) and frees it. The caller
    /// has already removed the id from the index.
    fn detach(&mut self, idx: u32) -> Node {
        let (side, price) = {
            let n = self.slab.get(idx);
            (n.side, n.price)
        };
        let ladder = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let i = ladder.find(price).expect("a resting order's level exists");
        let level = ladder.at_mut(i);
        level.unlink(&mut self.slab, idx);
        if level.is_empty() {
            ladder.remove(i);
        }
        self.slab.remove(idx)
    }

    fn level_of(&mut self, n: &Node) -> &mut Level {
        let ladder = match n.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let i = ladder
            .find(n.price)
            .expect("a resting order's level exists");
        ladder.at_mut(i)
    }

    fn opposite(&self, side: Side) -> &super::ladder::Ladder {
        match side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        }
    }
}
