//! Applying commands: place, cancel, amend, and settling what the book did.
//!
//! The order of side effects is part of the contract: for each fill the maker's execution
//! and update, then the taker's, then the trade and candles; risk is called at exactly the
//! points where those events are emitted, which is what lets [`RiskEngine::on_event`] rebuild
//! the same risk state from the event stream alone.
//!
//! Every order that ends (risk reject at place, fill, cancel, expiry, the book's own
//! cancels and rejects) ends through [`transition`] at one of three places here (`place`,
//! `fill`, `settle`'s `Ended`), and each of them queues it for eviction (see the engine docs).
//!
//! [`RiskEngine::on_event`]: crate::risk::RiskEngine::on_event

use crate::book::{Incoming, MatchEvent};
use crate::codes::RejectCode;
use crate::command::{AmendOrder, CancelAll, CancelOrder, CorrelationId, PlaceOrder, RiskDecision};
use crate::event::{Event, ExecutionReport, Liquidity, RiskEvent, Trade};
use crate::ids::{AccountId, OrderId, OrderKey, SymbolId};
use crate::num::{Price, Qty};
use crate::order::{Order, OrderStatus, OrderType};

use super::Engine;

/// Moves an order's status; the table refusing it is a bug in the engine, never the input.
fn transition(order: &mut Order, to: OrderStatus, ts: u64) {
    let r = order.set_status(to, ts);
    debug_assert!(r.is_ok(), "{r:?} for order {}", order.order_id);
}

fn update(order: &Order, correlation_id: Option<CorrelationId>) -> Event {
    Event::OrderUpdate {
        order: Box::new(order.clone()),
        correlation_id,
    }
}

impl Engine {
    pub(super) fn place(&mut self, p: &PlaceOrder, out: &mut Vec<Event>) {
        let o = &p.order;
        // A record seen twice (at-least-once delivery), for an unknown symbol, or that stage 1
        // could never have produced does nothing: the log is trusted only as far as it is sane.
        // "Seen twice" is known only while the first copy is held: once an order has been
        // evicted, a second copy of its place would be applied as a new order.
        let malformed = o.quantity.0 <= 0
            || (o.order_type == OrderType::Limit) != o.price.is_some()
            || o.price.is_some_and(|p| p.0 <= 0);
        if malformed
            || self.orders.contains_key(&p.order_id)
            || self.instruments.try_get(o.symbol).is_none()
        {
            return;
        }
        let mut order = Order {
            order_id: p.order_id,
            client_order_id: o.client_order_id,
            account: p.account,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            time_in_force: o.time_in_force,
            post_only: o.post_only,
            quantity: o.quantity,
            price: o.price,
            status: OrderStatus::New,
            filled_quantity: Qty::ZERO,
            filled_notional: 0,
            created_at: p.ts,
            updated_at: p.ts,
            version: 0,
            idempotency_key: p.idempotency_key.map(OrderKey::from),
            reject_reason: None,
        };
        let verdict = match p.risk {
            RiskDecision::Unchecked => self.risk.check_place(&p.account, p.order_id, o).map(|_| ()),
            RiskDecision::Accepted { reserved } => {
                self.risk.apply_place(&p.account, p.order_id, o, reserved);
                Ok(())
            }
            RiskDecision::Rejected(code) => Err(code),
        };
        self.by_account
            .entry(p.account)
            .or_default()
            .insert((p.ts, p.order_id));
        if let Err(code) = verdict {
            transition(&mut order, OrderStatus::Rejected, p.ts);
            order.reject_reason = Some(code);
            out.push(update(&order, p.correlation_id));
            out.push(Event::Risk(RiskEvent {
                account: p.account,
                order_id: p.order_id,
                symbol: o.symbol,
                code,
                ts: p.ts,
                correlation_id: p.correlation_id,
            }));
            self.orders.insert(p.order_id, order);
            self.terminal.push_back(p.order_id);
            return;
        }
        transition(&mut order, OrderStatus::Accepted, p.ts);
        out.push(update(&order, p.correlation_id));
        self.orders.insert(p.order_id, order);

        let band = self
            .instruments
            .get(o.symbol)
            .band(self.risk.reference_price(o.symbol));
        let mut events = std::mem::take(&mut self.scratch);
        events.clear();
        self.books[o.symbol.0 as usize].submit(
            &Incoming {
                order_id: p.order_id,
                account: p.account,
                side: o.side,
                order_type: o.order_type,
                time_in_force: o.time_in_force,
                post_only: o.post_only,
                quantity: o.quantity,
                price: o.price,
            },
            band,
            &mut events,
        );
        self.settle(&events, p.ts, p.correlation_id, out);
        self.scratch = events;
    }

    /// The order if it exists, belongs to `account` and is open.
    fn open_order_of(&self, id: OrderId, account: &AccountId) -> Option<&Order> {
        self.orders
            .get(&id)
            .filter(|o| o.account == *account && o.status.is_open())
    }

    fn reject_command(
        id: OrderId,
        account: AccountId,
        code: RejectCode,
        ts: u64,
        correlation_id: Option<CorrelationId>,
    ) -> Event {
        Event::CommandRejected {
            order_id: id,
            account,
            code,
            ts,
            correlation_id,
        }
    }

    pub(super) fn cancel(&mut self, c: &CancelOrder, out: &mut Vec<Event>) {
        let Some(symbol) = self.open_order_of(c.order_id, &c.account).map(|o| o.symbol) else {
            out.push(Self::reject_command(
                c.order_id,
                c.account,
                RejectCode::OrderNotOpen,
                c.ts,
                c.correlation_id,
            ));
            return;
        };
        let mut events = std::mem::take(&mut self.scratch);
        events.clear();
        match self.books[symbol.0 as usize].cancel(c.order_id, &mut events) {
            Ok(()) => self.settle(&events, c.ts, c.correlation_id, out),
            Err(_) => out.push(Self::reject_command(
                c.order_id,
                c.account,
                RejectCode::OrderNotOpen,
                c.ts,
                c.correlation_id,
            )),
        }
        self.scratch = events;
    }

    /// Cancels every matching open order of the account, oldest first, at this point of the
    /// log. Orders that are not open are skipped; nothing is rejected.
    pub(super) fn cancel_all(&mut self, c: &CancelAll, out: &mut Vec<Event>) {
        self.cancel_all_where(c, &|_| true, out);
    }

    /// [`Engine::cancel_all`] restricted to the orders of `symbols`.
    pub(super) fn cancel_all_where(
        &mut self,
        c: &CancelAll,
        symbols: &dyn Fn(SymbolId) -> bool,
        out: &mut Vec<Event>,
    ) {
        let ids = self.open_orders_of(&c.account, c.symbol, c.side);
        let mut events = std::mem::take(&mut self.scratch);
        for id in ids {
            let Some(symbol) = self.orders.get(&id).map(|o| o.symbol) else {
                continue;
            };
            if !symbols(symbol) {
                continue;
            }
            events.clear();
            if self.books[symbol.0 as usize]
                .cancel(id, &mut events)
                .is_ok()
            {
                self.settle(&events, c.ts, c.correlation_id, out);
            }
        }
        self.scratch = events;
    }

    pub(super) fn amend(&mut self, a: &AmendOrder, out: &mut Vec<Event>) {
        let reject =
            |code| Self::reject_command(a.order_id, a.account, code, a.ts, a.correlation_id);
        let Some(order) = self.open_order_of(a.order_id, &a.account) else {
            out.push(reject(RejectCode::OrderNotOpen));
            return;
        };
        let ins = self.instruments.get(order.symbol);
        let total = a.quantity.unwrap_or(order.quantity);
        let new_price = a.price.filter(|&p| Some(p) != order.price);
        let qty_changes = total != order.quantity;
        let malformed = total.0 % ins.lot != 0
            || new_price.is_some_and(|p| p.0 <= 0 || p.0 % ins.tick != 0)
            || (new_price.is_some() && order.price.is_none());
        if total <= order.filled_quantity || (!qty_changes && new_price.is_none()) || malformed {
            out.push(reject(RejectCode::InvalidAmend));
            return;
        }
        let (symbol, filled) = (order.symbol, order.filled_quantity);
        let new_leaves = total - filled;
        match a.risk {
            RiskDecision::Unchecked => {
                if let Err(code) = self
                    .risk
                    .check_amend(&a.account, a.order_id, new_leaves, new_price)
                {
                    out.push(reject(code));
                    return;
                }
            }
            RiskDecision::Accepted { reserved } => {
                self.risk
                    .apply_amend(&a.account, a.order_id, new_leaves, new_price, reserved);
            }
            RiskDecision::Rejected(code) => {
                out.push(reject(code));
                return;
            }
        }
        let band = ins.band(self.risk.reference_price(symbol));
        let mut events = std::mem::take(&mut self.scratch);
        events.clear();
        let r = self.books[symbol.0 as usize].amend(
            a.order_id,
            qty_changes.then_some(new_leaves),
            new_price,
            band,
            &mut events,
        );
        debug_assert!(r.is_ok(), "book refused amend of an open order: {r:?}");
        if let Some(order) = self.orders.get_mut(&a.order_id) {
            order.quantity = total;
            if new_price.is_some() {
                order.price = new_price;
            }
            order.updated_at = a.ts;
            order.version += 1;
            out.push(update(order, a.correlation_id));
        }
        self.settle(&events, a.ts, a.correlation_id, out);
        self.scratch = events;
    }

    /// Turns the book's events into order changes, reports and settlement.
    fn settle(
        &mut self,
        events: &[MatchEvent],
        ts: u64,
        corr: Option<CorrelationId>,
        out: &mut Vec<Event>,
    ) {
        for ev in events {
            match *ev {
                MatchEvent::Fill {
                    maker_order_id,
                    taker_order_id,
                    price,
                    qty,
                    maker_leaves,
                    taker_leaves,
                    ..
                } => {
                    let Some(sym) = self
                        .orders
                        .get(&maker_order_id)
                        .map(|o| o.symbol.0 as usize)
                    else {
                        continue;
                    };
                    let trade_id = self.next_trade_id[sym];
                    self.next_trade_id[sym] += 1;
                    self.fill(
                        maker_order_id,
                        price,
                        qty,
                        maker_leaves,
                        Liquidity::Maker,
                        trade_id,
                        ts,
                        corr,
                        out,
                    );
                    let aggressor = self.fill(
                        taker_order_id,
                        price,
                        qty,
                        taker_leaves,
                        Liquidity::Taker,
                        trade_id,
                        ts,
                        corr,
                        out,
                    );
                    let Some((symbol, aggressor)) = aggressor else {
                        continue;
                    };
                    let trade = Trade {
                        trade_id,
                        symbol,
                        price,
                        qty,
                        aggressor,
                        maker_order_id,
                        taker_order_id,
                        ts,
                    };
                    out.push(Event::Trade(trade));
                    self.risk.on_trade_price(symbol, price);
                    let kept = &mut self.trades[symbol.0 as usize];
                    if self.cfg.recent_trades > 0 {
                        if kept.len() == self.cfg.recent_trades {
                            kept.pop_front();
                        }
                        kept.push_back(trade);
                    }
                    self.candle_scratch.clear();
                    self.candles.on_trade(&trade, &mut self.candle_scratch);
                    out.extend(self.candle_scratch.iter().map(|c| Event::Candle(*c)));
                }
                MatchEvent::Rested { .. } => {}
                MatchEvent::Ended {
                    order_id,
                    status,
                    reason,
                    ..
                } => {
                    let Some(order) = self.orders.get_mut(&order_id) else {
                        continue;
                    };
                    let was_open = order.status.is_open();
                    transition(order, status, ts);
                    if was_open && order.status.is_terminal() {
                        self.terminal.push_back(order_id);
                    }
                    order.reject_reason = reason;
                    out.push(update(order, corr));
                    let account = order.account;
                    self.risk.on_order_done(&account, order_id);
                }
            }
        }
    }

    /// One side of a fill; returns the order's symbol and side.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        id: OrderId,
        price: Price,
        qty: Qty,
        leaves: Qty,
        liquidity: Liquidity,
        trade_id: u64,
        ts: u64,
        corr: Option<CorrelationId>,
        out: &mut Vec<Event>,
    ) -> Option<(crate::ids::SymbolId, crate::order::Side)> {
        let order = self.orders.get_mut(&id)?;
        let was_open = order.status.is_open();
        order.filled_quantity += qty;
        order.filled_notional += i128::from(price.0) * i128::from(qty.0);
        let done = order.filled_quantity >= order.quantity;
        transition(
            order,
            if done {
                OrderStatus::Filled
            } else {
                OrderStatus::PartiallyFilled
            },
            ts,
        );
        if was_open && order.status.is_terminal() {
            self.terminal.push_back(id);
        }
        debug_assert_eq!(order.leaves_quantity(), leaves, "book and order disagree");
        let ins = self.instruments.get(order.symbol);
        let exec_id = self.next_exec_id[order.symbol.0 as usize];
        self.next_exec_id[order.symbol.0 as usize] += 1;
        out.push(Event::Execution(ExecutionReport {
            exec_id,
            trade_id,
            order_id: id,
            account: order.account,
            symbol: order.symbol,
            side: order.side,
            last_qty: qty,
            last_px: price,
            cum_qty: order.filled_quantity,
            leaves_qty: order.leaves_quantity(),
            avg_px: ins.avg_price(order.filled_notional, order.filled_quantity),
            liquidity,
            ts,
        }));
        out.push(update(order, corr));
        let (account, symbol, side) = (order.account, order.symbol, order.side);
        self.risk.on_fill(&account, id, symbol, side, qty, price);
        if done {
            self.risk.on_order_done(&account, id);
        }
        Some((symbol, side))
    }
}
