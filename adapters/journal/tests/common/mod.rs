//! Deterministic commands of every kind and varied encoded length, for journal tests.

#![allow(dead_code)]

use oms_core::command::{
    AmendOrder, CancelOrder, Command, HaltScope, PlaceOrder, RiskDecision, SetHalt,
};
use oms_core::ids::{AccountId, OrderId, ShortStr, SymbolId};
use oms_core::num::{Money, Price, Qty};
use oms_core::order::{OrderType, Side, TimeInForce};
use oms_core::validate::ValidatedOrder;

/// The `i`-th test command: unique (its order id or timestamp is `i`), of a kind and length
/// that vary with `i`.
pub fn cmd(i: u64) -> Command {
    let name = format!("acct-{}{}", i % 97, "x".repeat((i % 23) as usize));
    let account = AccountId::new(&name).unwrap();
    let corr = i
        .is_multiple_of(3)
        .then(|| ShortStr::new(&format!("corr-{i}")).unwrap());
    match i % 7 {
        0..=3 => Command::Place(PlaceOrder {
            order_id: OrderId(u128::from(i) << 64 | 0x7000),
            account,
            order: ValidatedOrder {
                symbol: SymbolId((i % 3) as u16),
                side: if i.is_multiple_of(2) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                post_only: i.is_multiple_of(5),
                quantity: Qty(1 + (i % 1000) as i64),
                price: Some(Price(1_000_000 + i as i64)),
                client_order_id: i
                    .is_multiple_of(4)
                    .then(|| ShortStr::new(&format!("c-{i}")).unwrap()),
            },
            ts: 1_700_000_000_000_000_000 + i,
            idempotency_key: i
                .is_multiple_of(2)
                .then(|| ShortStr::new(&format!("k-{i}")).unwrap()),
            fingerprint: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            correlation_id: corr,
            risk: RiskDecision::Accepted {
                reserved: Money(i as i64 * 10),
            },
        }),
        4 => Command::Cancel(CancelOrder {
            order_id: OrderId(u128::from(i)),
            account,
            symbol: SymbolId(1),
            ts: i,
            correlation_id: corr,
        }),
        5 => Command::Amend(AmendOrder {
            order_id: OrderId(u128::from(i)),
            account,
            symbol: SymbolId(2),
            quantity: Some(Qty(i as i64)),
            price: None,
            ts: i,
            correlation_id: corr,
            risk: RiskDecision::Unchecked,
        }),
        _ => Command::Halt(SetHalt {
            scope: if i.is_multiple_of(2) {
                HaltScope::Global
            } else {
                HaltScope::Account(account)
            },
            halted: i % 4 == 1,
            ts: i,
        }),
    }
}

/// Commands `range` as a batch.
pub fn cmds(range: std::ops::Range<u64>) -> Vec<Command> {
    range.map(cmd).collect()
}
