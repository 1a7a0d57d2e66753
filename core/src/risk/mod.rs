//! The risk engine: R1 pre-trade checks with margin reservation, R2 settlement.
//!
//! Two instances run in a live system: the ingress ring's risk stage decides before the log
//! (its verdict is recorded in the command, [`crate::RiskDecision`]), and the processor's
//! [`crate::engine::Engine`] replays those verdicts (`apply_*`) while settling fills. The
//! ingress instance learns about fills by being fed the processor's events
//! ([`RiskEngine::on_event`]), which calls exactly what the processor calls, in the same
//! order, so both instances hold the same state once caught up.
//!
//! Every reservation is kept per order (reserved margin and leaves) and released exactly:
//! a fill of `q` releases `reserved × q / leaves` (integer), the end of the order releases
//! the rest, so an account with no open orders has exactly zero reserved margin.

mod image;
mod position;

pub use image::RiskImage;

use ahash::AHashMap;

use crate::codes::RejectCode;
use crate::command::HaltScope;
use crate::event::Event;
use crate::ids::{AccountId, ClientOrderId, OrderId, SymbolId};
use crate::instrument::{Instrument, InstrumentTable};
use crate::num::{MONEY_DECIMALS, Money, Price, Qty, pow10};
use crate::order::{OrderStatus, OrderType, Side};
use crate::validate::ValidatedOrder;

pub(crate) use position::Position;

/// Default cap on open orders per account.
pub const DEFAULT_MAX_OPEN_ORDERS: u32 = 1000;

/// Risk limits and the accounts known at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskConfig {
    /// Open orders one account may have at once.
    pub max_open_orders: u32,
    /// Dev mode: an unknown account is created with this equity on its first order.
    /// `None`: orders of unknown accounts are rejected with `INSUFFICIENT_MARGIN`.
    pub dev_default_equity: Option<Money>,
    /// Configured accounts and their equity.
    pub accounts: Vec<(AccountId, Money)>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            max_open_orders: DEFAULT_MAX_OPEN_ORDERS,
            dev_default_equity: None,
            accounts: Vec::new(),
        }
    }
}

/// An account's balances as served by `GET /api/account`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub account: AccountId,
    pub equity: Money,
    pub realized_pnl: Money,
    /// Against the last trade price of each symbol.
    pub unrealized_pnl: Money,
    /// Initial margin of the open positions at their entry cost.
    pub used_margin: Money,
    /// Margin reserved for open orders.
    pub reserved_margin: Money,
    /// `equity + realized − used − reserved` (what a new order may reserve).
    pub available: Money,
    pub open_orders: u32,
    pub halted: bool,
}

/// One position as served by `GET /api/positions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionView {
    pub symbol: SymbolId,
    /// Signed quantity in the instrument's quantity units (long > 0).
    pub qty: i64,
    pub avg_entry: Price,
    pub realized_pnl: Money,
    pub unrealized_pnl: Money,
}

/// What the risk engine holds for one open order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOrderView {
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub price: Option<Price>,
    /// Total quantity (filled + leaves).
    pub quantity: Qty,
    pub leaves: Qty,
    pub reserved: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountState {
    pub id: AccountId,
    pub equity: Money,
    pub realized: Money,
    pub used: Money,
    pub reserved: Money,
    pub open_orders: u32,
    pub halted: bool,
    /// Indexed by symbol id.
    pub positions: Vec<Position>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderRisk {
    pub account: u32,
    pub symbol: SymbolId,
    pub side: Side,
    pub price: Option<Price>,
    pub quantity: Qty,
    pub leaves: Qty,
    pub reserved: Money,
}

/// Per-instrument constants the checks need, copied out of the table.
#[derive(Clone, Debug)]
struct Limits {
    max_qty: Qty,
    max_notional: Money,
    max_position: i64,
    /// Money units per price-unit × quantity-unit.
    money_scale: i128,
}

/// Pre-trade checks and settlement for every account. See the module docs.
#[derive(Clone, Debug)]
pub struct RiskEngine {
    instruments: InstrumentTable,
    limits: Vec<Limits>,
    pub(crate) cfg: RiskConfig,
    pub(crate) global_halt: bool,
    pub(crate) accounts: Vec<AccountState>,
    pub(crate) index: AHashMap<AccountId, u32>,
    pub(crate) orders: AHashMap<OrderId, OrderRisk>,
    /// Last trade price per symbol (0 = none yet).
    pub(crate) last_price: Vec<Price>,
    /// `clientOrderId`s of open orders, unique per account (derived from the open orders, so
    /// not part of the snapshot: [`RiskEngine::index_client_order_id`] rebuilds it).
    client_ids: AHashMap<(AccountId, ClientOrderId), OrderId>,
    client_of: AHashMap<OrderId, ClientOrderId>,
}

impl RiskEngine {
    pub fn new(instruments: &InstrumentTable, cfg: RiskConfig) -> Self {
        let limits = instruments
            .iter()
            .map(|i| Limits {
                max_qty: i.max_qty,
                max_notional: i.max_notional,
                max_position: i.max_position.0,
                money_scale: pow10(MONEY_DECIMALS - i.price_decimals - i.qty_decimals),
            })
            .collect();
        let mut r = RiskEngine {
            instruments: instruments.clone(),
            limits,
            global_halt: false,
            accounts: Vec::new(),
            index: AHashMap::new(),
            orders: AHashMap::new(),
            last_price: vec![Price(0); instruments.len()],
            client_ids: AHashMap::new(),
            client_of: AHashMap::new(),
            cfg,
        };
        for (id, equity) in r.cfg.accounts.clone() {
            let i = r.account_index(&id, equity);
            r.accounts[i].equity = equity;
        }
        r
    }

    /// R1: checks a new order and reserves its margin. `Ok(reserved)`, or the first failed
    /// check's code with nothing reserved.
    pub fn check_place(
        &mut self,
        account: &AccountId,
        order_id: OrderId,
        o: &ValidatedOrder,
    ) -> Result<Money, RejectCode> {
        let known = self.index.get(account).map(|&i| i as usize);
        if self.global_halt || known.is_some_and(|i| self.accounts[i].halted) {
            return Err(RejectCode::TradingHalted);
        }
        if let Some(c) = o.client_order_id
            && self.client_ids.contains_key(&(*account, c))
        {
            return Err(RejectCode::DuplicateClientOrderId);
        }
        let lim = &self.limits[o.symbol.0 as usize];
        if o.quantity > lim.max_qty {
            return Err(RejectCode::MaxQuantityExceeded);
        }
        let ins = self.instruments.get(o.symbol);
        let band = ins.band(self.reference_price(o.symbol));
        let px = reservation_price(o.order_type, o.side, o.price, band);
        let notional = ins.notional_wide(px, o.quantity);
        if notional > i128::from(lim.max_notional.0) {
            return Err(RejectCode::MaxNotionalExceeded);
        }
        if let Some(p) = o.price
            && (p < band.0 || p > band.1)
        {
            return Err(RejectCode::PriceOutOfBand);
        }
        let reserved = ins.margin_for(Money(notional as i64));
        let Some(ai) = known else {
            let Some(equity) = self.cfg.dev_default_equity else {
                return Err(RejectCode::InsufficientMargin);
            };
            // A fresh account: no orders, no position.
            if self.cfg.max_open_orders == 0 {
                return Err(RejectCode::TooManyOpenOrders);
            }
            if o.quantity.0 > lim.max_position {
                return Err(RejectCode::PositionLimitExceeded);
            }
            if reserved > equity {
                return Err(RejectCode::InsufficientMargin);
            }
            self.reserve(account, order_id, o, reserved);
            return Ok(reserved);
        };
        let acct = &self.accounts[ai];
        if acct.open_orders >= self.cfg.max_open_orders {
            return Err(RejectCode::TooManyOpenOrders);
        }
        let pos = &acct.positions[o.symbol.0 as usize];
        if exceeds_position(pos, o.side, o.quantity.0, lim.max_position) {
            return Err(RejectCode::PositionLimitExceeded);
        }
        if reserved > available(acct) {
            return Err(RejectCode::InsufficientMargin);
        }
        self.reserve(account, order_id, o, reserved);
        Ok(reserved)
    }

    /// Replays a recorded acceptance: reserves exactly `reserved`, no checks.
    pub fn apply_place(
        &mut self,
        account: &AccountId,
        order_id: OrderId,
        o: &ValidatedOrder,
        reserved: Money,
    ) {
        self.reserve(account, order_id, o, reserved);
    }

    fn reserve(&mut self, account: &AccountId, order_id: OrderId, o: &ValidatedOrder, r: Money) {
        let ai = self.account_index(account, self.default_equity());
        let acct = &mut self.accounts[ai];
        acct.reserved += r;
        acct.open_orders += 1;
        *acct.positions[o.symbol.0 as usize].open_mut(o.side) += o.quantity.0;
        let prev = self.orders.insert(
            order_id,
            OrderRisk {
                account: ai as u32,
                symbol: o.symbol,
                side: o.side,
                price: o.price,
                quantity: o.quantity,
                leaves: o.quantity,
                reserved: r,
            },
        );
        debug_assert!(prev.is_none(), "order {order_id} reserved twice");
        if let Some(c) = o.client_order_id {
            self.index_client_order_id(*account, c, order_id);
        }
    }

    /// Records that open order `order_id` of `account` carries `client_order_id`.
    pub fn index_client_order_id(
        &mut self,
        account: AccountId,
        client_order_id: ClientOrderId,
        order_id: OrderId,
    ) {
        self.client_ids.insert((account, client_order_id), order_id);
        self.client_of.insert(order_id, client_order_id);
    }

    /// The open order of `account` with this `clientOrderId`, if any.
    pub fn open_by_client_order_id(
        &self,
        account: &AccountId,
        client_order_id: &ClientOrderId,
    ) -> Option<OrderId> {
        self.client_ids.get(&(*account, *client_order_id)).copied()
    }

    /// R1 for an amend of an open order to `new_leaves` (what remains to work) and, if given,
    /// a new limit price. `Ok(new total reservation)`, applied; nothing changes on `Err`.
    /// A halt blocks every amend except a pure quantity reduction.
    pub fn check_amend(
        &mut self,
        account: &AccountId,
        order_id: OrderId,
        new_leaves: Qty,
        new_price: Option<Price>,
    ) -> Result<Money, RejectCode> {
        let Some(o) = self.orders.get(&order_id).copied() else {
            return Err(RejectCode::OrderNotOpen);
        };
        let acct = &self.accounts[o.account as usize];
        if acct.id != *account {
            return Err(RejectCode::OrderNotOpen);
        }
        if new_leaves.0 <= 0 {
            return Err(RejectCode::InvalidAmend);
        }
        let price_changes = new_price.is_some_and(|p| Some(p) != o.price);
        let grows = new_leaves > o.leaves;
        if (self.global_halt || acct.halted) && (grows || price_changes) {
            return Err(RejectCode::TradingHalted);
        }
        let lim = &self.limits[o.symbol.0 as usize];
        if new_leaves > lim.max_qty {
            return Err(RejectCode::MaxQuantityExceeded);
        }
        let ins = self.instruments.get(o.symbol);
        let band = ins.band(self.reference_price(o.symbol));
        let price = if price_changes { new_price } else { o.price };
        let px = reservation_price(
            if price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            o.side,
            price,
            band,
        );
        let notional = ins.notional_wide(px, new_leaves);
        if notional > i128::from(lim.max_notional.0) {
            return Err(RejectCode::MaxNotionalExceeded);
        }
        if price_changes
            && let Some(p) = price
            && (p < band.0 || p > band.1)
        {
            return Err(RejectCode::PriceOutOfBand);
        }
        if grows {
            let pos = &acct.positions[o.symbol.0 as usize];
            if exceeds_position(pos, o.side, new_leaves.0 - o.leaves.0, lim.max_position) {
                return Err(RejectCode::PositionLimitExceeded);
            }
        }
        let reserved = ins.margin_for(Money(notional as i64));
        if reserved > o.reserved && (reserved - o.reserved) > available(acct) {
            return Err(RejectCode::InsufficientMargin);
        }
        self.apply_amend(account, order_id, new_leaves, new_price, reserved);
        Ok(reserved)
    }

    /// Replays a recorded amend acceptance: the order now works `new_leaves` at the new price
    /// (if given) and reserves exactly `reserved` in total.
    pub fn apply_amend(
        &mut self,
        _account: &AccountId,
        order_id: OrderId,
        new_leaves: Qty,
        new_price: Option<Price>,
        reserved: Money,
    ) {
        let Some(o) = self.orders.get_mut(&order_id) else {
            return;
        };
        let acct = &mut self.accounts[o.account as usize];
        acct.reserved = acct.reserved - o.reserved + reserved;
        *acct.positions[o.symbol.0 as usize].open_mut(o.side) += new_leaves.0 - o.leaves.0;
        o.quantity = o.quantity + new_leaves - o.leaves;
        o.leaves = new_leaves;
        o.reserved = reserved;
        if new_price.is_some() {
            o.price = new_price;
        }
    }

    /// R2: one side of a fill. Releases the filled part's reservation, moves the position,
    /// realizes PnL on a reduction and re-computes the position's margin.
    pub fn on_fill(
        &mut self,
        account: &AccountId,
        order_id: OrderId,
        symbol: SymbolId,
        side: Side,
        qty: Qty,
        price: Price,
    ) {
        let ai = match self.orders.get_mut(&order_id) {
            Some(o) => {
                let release = if qty >= o.leaves || o.leaves.0 <= 0 {
                    o.reserved
                } else {
                    Money(
                        (i128::from(o.reserved.0) * i128::from(qty.0) / i128::from(o.leaves.0))
                            as i64,
                    )
                };
                let filled = qty.min(o.leaves);
                o.reserved -= release;
                o.leaves -= filled;
                let ai = o.account as usize;
                let acct = &mut self.accounts[ai];
                acct.reserved -= release;
                *acct.positions[symbol.0 as usize].open_mut(side) -= filled.0;
                ai
            }
            None => self.account_index(account, self.default_equity()),
        };
        let ins = self.instruments.get(symbol);
        let scale = self.limits[symbol.0 as usize].money_scale;
        let acct = &mut self.accounts[ai];
        let pos = &mut acct.positions[symbol.0 as usize];
        acct.used -= position_margin(ins, scale, pos);
        let pnl = Money((pos.apply_fill(side, qty, price) * scale) as i64);
        pos.realized += pnl;
        acct.realized += pnl;
        acct.used += position_margin(ins, scale, pos);
    }

    /// The order ended (filled, canceled, expired): releases what it still reserves.
    pub fn on_order_done(&mut self, _account: &AccountId, order_id: OrderId) {
        let Some(o) = self.orders.remove(&order_id) else {
            return;
        };
        let acct = &mut self.accounts[o.account as usize];
        if let Some(c) = self.client_of.remove(&order_id) {
            self.client_ids.remove(&(acct.id, c));
        }
        acct.reserved -= o.reserved;
        acct.open_orders -= 1;
        *acct.positions[o.symbol.0 as usize].open_mut(o.side) -= o.leaves.0;
    }

    /// A trade printed: the new reference for the band and the marks.
    pub fn on_trade_price(&mut self, symbol: SymbolId, price: Price) {
        if let Some(p) = self.last_price.get_mut(symbol.0 as usize) {
            *p = price;
        }
    }

    /// Turns a kill switch on or off (an unknown account is created so the halt sticks).
    pub fn set_halt(&mut self, scope: &HaltScope, halted: bool) {
        match scope {
            HaltScope::Global => self.global_halt = halted,
            HaltScope::Account(a) => {
                let i = self.account_index(a, self.default_equity());
                self.accounts[i].halted = halted;
            }
        }
    }

    /// Settlement feed from the processor's event stream, for a risk instance that does not
    /// run inside the processor (the ingress stage). Applies exactly what the processor's own
    /// instance applied for these events, in the same order.
    pub fn on_event(&mut self, e: &Event) {
        match e {
            Event::Execution(x) => {
                self.on_fill(
                    &x.account, x.order_id, x.symbol, x.side, x.last_qty, x.last_px,
                );
            }
            Event::OrderUpdate { order, .. }
                if matches!(
                    order.status,
                    OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Expired
                ) =>
            {
                self.on_order_done(&order.account, order.order_id);
            }
            Event::Trade(t) => self.on_trade_price(t.symbol, t.price),
            _ => {}
        }
    }

    pub fn account(&self, a: &AccountId) -> Option<AccountView> {
        let acct = &self.accounts[*self.index.get(a)? as usize];
        let unrealized = acct
            .positions
            .iter()
            .enumerate()
            .map(|(s, p)| self.unrealized(SymbolId(s as u16), p))
            .fold(Money::ZERO, |a, b| a + b);
        Some(AccountView {
            account: acct.id,
            equity: acct.equity,
            realized_pnl: acct.realized,
            unrealized_pnl: unrealized,
            used_margin: acct.used,
            reserved_margin: acct.reserved,
            available: available(acct),
            open_orders: acct.open_orders,
            halted: acct.halted || self.global_halt,
        })
    }

    /// Positions that are open or have realized PnL, by symbol.
    pub fn positions(&self, a: &AccountId) -> Vec<PositionView> {
        let Some(&i) = self.index.get(a) else {
            return Vec::new();
        };
        self.accounts[i as usize]
            .positions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.qty != 0 || p.realized != Money::ZERO)
            .map(|(s, p)| {
                let symbol = SymbolId(s as u16);
                PositionView {
                    symbol,
                    qty: p.qty,
                    avg_entry: p.avg_entry(),
                    realized_pnl: p.realized,
                    unrealized_pnl: self.unrealized(symbol, p),
                }
            })
            .collect()
    }

    /// What the risk engine holds for an open order (ingress uses it to turn an amend's new
    /// total quantity into new leaves).
    pub fn open_order(&self, order_id: OrderId) -> Option<OpenOrderView> {
        self.orders.get(&order_id).map(|o| OpenOrderView {
            account: self.accounts[o.account as usize].id,
            symbol: o.symbol,
            side: o.side,
            price: o.price,
            quantity: o.quantity,
            leaves: o.leaves,
            reserved: o.reserved,
        })
    }

    /// The last trade price, else the instrument's configured reference.
    pub fn reference_price(&self, symbol: SymbolId) -> Price {
        match self.last_price.get(symbol.0 as usize) {
            Some(&p) if p.0 > 0 => p,
            _ => self.instruments.get(symbol).reference_price,
        }
    }

    pub fn is_globally_halted(&self) -> bool {
        self.global_halt
    }

    pub fn instruments(&self) -> &InstrumentTable {
        &self.instruments
    }

    fn unrealized(&self, symbol: SymbolId, p: &Position) -> Money {
        if p.qty == 0 {
            return Money::ZERO;
        }
        let scale = self.limits[symbol.0 as usize].money_scale;
        Money((p.unrealized(self.reference_price(symbol)) * scale) as i64)
    }

    fn default_equity(&self) -> Money {
        self.cfg.dev_default_equity.unwrap_or(Money::ZERO)
    }

    /// The account's dense index, creating it with `equity` if unknown.
    pub(crate) fn account_index(&mut self, a: &AccountId, equity: Money) -> usize {
        if let Some(&i) = self.index.get(a) {
            return i as usize;
        }
        let i = self.accounts.len();
        self.accounts.push(AccountState {
            id: *a,
            equity,
            realized: Money::ZERO,
            used: Money::ZERO,
            reserved: Money::ZERO,
            open_orders: 0,
            halted: false,
            positions: vec![Position::default(); self.instruments.len()],
        });
        self.index.insert(*a, i as u32);
        i
    }

    /// Rebuilds the derived parts (index, used margin) after a restore filled `accounts`.
    pub(crate) fn rebuild_index(&mut self) {
        self.index.clear();
        for (i, a) in self.accounts.iter().enumerate() {
            self.index.insert(a.id, i as u32);
        }
    }
}

/// The price a new order's notional and margin are computed at: its limit, or for MARKET
/// the edge of the band it may sweep to.
fn reservation_price(
    t: OrderType,
    side: Side,
    price: Option<Price>,
    band: (Price, Price),
) -> Price {
    match (t, price) {
        (OrderType::Limit, Some(p)) => p,
        _ => match side {
            Side::Buy => band.1,
            Side::Sell => band.0,
        },
    }
}

/// Whether adding `add` to the open same-side quantity could take the position past the limit.
fn exceeds_position(pos: &Position, side: Side, add: i64, max: i64) -> bool {
    match side {
        Side::Buy => pos.qty + pos.open_buy + add > max,
        Side::Sell => pos.qty - pos.open_sell - add < -max,
    }
}

fn available(a: &AccountState) -> Money {
    a.equity + a.realized - a.used - a.reserved
}

fn position_margin(ins: &Instrument, scale: i128, p: &Position) -> Money {
    if p.cost == 0 {
        Money::ZERO
    } else {
        ins.margin_for(Money((p.cost * scale) as i64))
    }
}
