//! Positions and the account summary (`GET /api/positions`, `GET /api/account`, the
//! `positions` WebSocket channel).

use oms_core::{AccountView, Instrument, Money, PositionView, Qty};
use serde::Serialize;

use crate::text::Decimal;

/// One position.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PositionJson<'a> {
    pub symbol: &'a str,
    /// Signed: long > 0.
    pub quantity: Decimal,
    pub avg_entry_price: Decimal,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
}

impl<'a> PositionJson<'a> {
    pub fn new(p: &PositionView, ins: &'a Instrument) -> Self {
        PositionJson {
            symbol: &ins.symbol,
            quantity: Decimal::qty(ins, Qty(p.qty)),
            avg_entry_price: Decimal::price(ins, p.avg_entry),
            realized_pnl: Decimal::money(p.realized_pnl),
            unrealized_pnl: Decimal::money(p.unrealized_pnl),
        }
    }
}

/// `GET /api/positions`.
#[derive(Serialize)]
pub struct PositionsJson<'a> {
    pub account: &'a str,
    pub positions: Vec<PositionJson<'a>>,
}

/// `GET /api/account`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountJson<'a> {
    pub account: &'a str,
    pub currency: &'a str,
    pub equity: Decimal,
    pub realized_pnl: Decimal,
    pub used_margin: Decimal,
    pub reserved_margin: Decimal,
    pub available_margin: Decimal,
    pub open_orders: u32,
    pub halted: bool,
}

impl<'a> AccountJson<'a> {
    pub fn new(v: &'a AccountView, currency: &'a str) -> Self {
        AccountJson {
            account: v.account.as_str(),
            currency,
            equity: Decimal::money(v.equity),
            realized_pnl: Decimal::money(v.realized_pnl),
            used_margin: Decimal::money(v.used_margin),
            reserved_margin: Decimal::money(v.reserved_margin),
            available_margin: Decimal::money(v.available),
            open_orders: v.open_orders,
            halted: v.halted,
        }
    }

    /// An account that has not traded yet: its (dev-mode default) equity, nothing used.
    pub fn fresh(account: &'a str, currency: &'a str, equity: Money) -> Self {
        AccountJson {
            account,
            currency,
            equity: Decimal::money(equity),
            realized_pnl: Decimal::money(Money::ZERO),
            used_margin: Decimal::money(Money::ZERO),
            reserved_margin: Decimal::money(Money::ZERO),
            available_margin: Decimal::money(equity),
            open_orders: 0,
            halted: false,
        }
    }
}
