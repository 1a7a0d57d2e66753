//! Properties of the order book that must hold after any sequence of commands.

use std::collections::HashMap;

use oms_core::book::{
    BookConfig, Incoming, LevelView, MatchEvent, OrderBook, RestingOrder, StpMode,
};
use oms_core::{
    AccountId, OrderId, OrderStatus, OrderType, Price, Qty, RejectCode, Side, SymbolId, TimeInForce,
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    Place {
        side: Side,
        market: bool,
        tif: TimeInForce,
        post_only: bool,
        account: u8,
        price: i64,
        qty: i64,
        band: (i64, i64),
    },
    Cancel(usize),
    Amend(usize, Option<i64>, Option<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![3 => Just(TimeInForce::Gtc), 1 => Just(TimeInForce::Ioc), 1 => Just(TimeInForce::Fok)];
    let place = (
        side,
        any::<u8>(),
        tif,
        any::<u8>(),
        0u8..3,
        90i64..=110,
        1i64..=12,
        92i64..=100,
        4i64..=16,
    )
        .prop_map(|(side, m, tif, po, account, price, qty, lo, w)| Op::Place {
            side,
            market: m % 8 == 0,
            tif,
            post_only: po % 6 == 0,
            account,
            price,
            qty,
            band: (lo, lo + w),
        });
    prop_oneof![
        6 => place,
        2 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), proptest::option::of(-1i64..=14), proptest::option::of(90i64..=110))
            .prop_map(|(t, q, p)| Op::Amend(t, q, p)),
    ]
}

fn stp() -> impl Strategy<Value = StpMode> {
    prop_oneof![
        Just(StpMode::CancelNewest),
        Just(StpMode::CancelOldest),
        Just(StpMode::CancelBoth),
        Just(StpMode::Off)
    ]
}

fn account(i: u8) -> AccountId {
    AccountId::new(["a", "b", "c"][i as usize % 3]).expect("valid account")
}

/// Per-order bookkeeping derived only from events.
#[derive(Default)]
struct Ledger {
    quantity: HashMap<OrderId, i64>,
    filled: HashMap<OrderId, i64>,
}

fn leaves_of(e: &MatchEvent, id: OrderId) -> Option<(i64, bool)> {
    // (leaves, whether the order may still rest after this event)
    match *e {
        MatchEvent::Fill {
            maker_order_id,
            maker_leaves,
            taker_order_id,
            taker_leaves,
            ..
        } => {
            if maker_order_id == id {
                Some((maker_leaves.0, true))
            } else if taker_order_id == id {
                Some((taker_leaves.0, false))
            } else {
                None
            }
        }
        MatchEvent::Rested {
            order_id, leaves, ..
        } if order_id == id => Some((leaves.0, true)),
        MatchEvent::Ended { order_id, .. } if order_id == id => Some((0, false)),
        _ => None,
    }
}

fn ids_in(events: &[MatchEvent]) -> Vec<OrderId> {
    let mut v = Vec::new();
    for e in events {
        match *e {
            MatchEvent::Fill {
                maker_order_id,
                taker_order_id,
                ..
            } => v.extend([maker_order_id, taker_order_id]),
            MatchEvent::Rested { order_id, .. } | MatchEvent::Ended { order_id, .. } => {
                v.push(order_id)
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Applies `ops`, checking every property after each one.
fn check(stp: StpMode, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut book = OrderBook::with_capacity(SymbolId(0), BookConfig { stp }, 16);
    let mut ledger = Ledger::default();
    let mut out = Vec::new();
    let mut next_id = 0u128;
    for op in ops {
        out.clear();
        let before: Vec<RestingOrder> = book.resting_orders().collect();
        let before_leaves: HashMap<OrderId, i64> =
            before.iter().map(|o| (o.order_id, o.leaves.0)).collect();
        let mut taker: Option<(OrderId, i64, TimeInForce)> = None;
        match *op {
            Op::Place {
                side,
                market,
                tif,
                post_only,
                account: a,
                price,
                qty,
                band,
            } => {
                next_id += 1;
                let o = Incoming {
                    order_id: OrderId(next_id),
                    account: account(a),
                    side,
                    order_type: if market {
                        OrderType::Market
                    } else {
                        OrderType::Limit
                    },
                    time_in_force: tif,
                    post_only,
                    quantity: Qty(qty),
                    price: (!market).then_some(Price(price)),
                };
                ledger.quantity.insert(o.order_id, qty);
                taker = Some((o.order_id, qty, tif));
                book.submit(&o, (Price(band.0), Price(band.1)), &mut out);
            }
            Op::Cancel(t) => {
                if let Some(o) = before.get(t % before.len().max(1)) {
                    book.cancel(o.order_id, &mut out)
                        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                    prop_assert_eq!(
                        &out[..],
                        &[MatchEvent::Ended {
                            order_id: o.order_id,
                            account: o.account,
                            leaves: o.leaves,
                            status: OrderStatus::Canceled,
                            reason: None
                        }]
                    );
                }
            }
            Op::Amend(t, q, p) => {
                if let Some(o) = before.get(t % before.len().max(1)) {
                    let r = book.amend(
                        o.order_id,
                        q.map(Qty),
                        p.map(Price),
                        (Price(0), Price(0)),
                        &mut out,
                    );
                    if q.is_some_and(|q| q <= 0) {
                        prop_assert!(r.is_err());
                        prop_assert_eq!(book.get(o.order_id), Some(*o));
                    } else {
                        prop_assert!(r.is_ok());
                        let filled = ledger.filled.get(&o.order_id).copied().unwrap_or(0);
                        ledger
                            .quantity
                            .insert(o.order_id, filled + q.unwrap_or(o.leaves.0));
                        if p.is_none_or(|p| p != o.price.0) || q.is_some_and(|q| q > o.leaves.0) {
                            taker = Some((o.order_id, q.unwrap_or(o.leaves.0), TimeInForce::Gtc));
                        } else {
                            prop_assert!(out.is_empty(), "quantity down emits nothing");
                        }
                    }
                }
            }
        }

        // Never crossed.
        if let (Some(b), Some(a)) = (book.best_bid(), book.best_ask()) {
            prop_assert!(b < a, "crossed: bid {:?} ask {:?}", b, a);
        }

        // Quantity conserved: what the taker lost equals what the makers lost, fill by fill.
        let mut taker_filled = 0;
        let mut maker_filled: HashMap<OrderId, i64> = HashMap::new();
        for e in &out {
            if let MatchEvent::Fill {
                maker_order_id,
                taker_order_id,
                qty,
                price,
                ..
            } = *e
            {
                prop_assert!(qty.0 > 0);
                prop_assert_ne!(maker_order_id, taker_order_id);
                prop_assert_eq!(Some(taker_order_id), taker.map(|t| t.0));
                prop_assert!(
                    before_leaves.contains_key(&maker_order_id),
                    "maker was resting"
                );
                prop_assert_eq!(
                    before
                        .iter()
                        .find(|o| o.order_id == maker_order_id)
                        .map(|o| o.price),
                    Some(price)
                );
                taker_filled += qty.0;
                *maker_filled.entry(maker_order_id).or_default() += qty.0;
                *ledger.filled.entry(maker_order_id).or_default() += qty.0;
                *ledger.filled.entry(taker_order_id).or_default() += qty.0;
            }
        }
        prop_assert_eq!(taker_filled, maker_filled.values().sum::<i64>());
        for (id, f) in &maker_filled {
            let after = book.get(*id).map_or(0, |o| o.leaves.0);
            let stp_canceled = out
                .iter()
                .any(|e| matches!(e, MatchEvent::Ended { order_id, .. } if order_id == id));
            prop_assert!(!stp_canceled, "a maker that traded is not also canceled");
            prop_assert_eq!(before_leaves[id] - after, *f, "maker {:?} leaves", id);
        }
        if let Some((id, qty, _)) = taker {
            let resting = book.get(id).map_or(0, |o| o.leaves.0);
            let ended = out
                .iter()
                .any(|e| matches!(e, MatchEvent::Ended { order_id, .. } if *order_id == id));
            if !ended {
                prop_assert_eq!(qty - taker_filled, resting, "taker leaves");
            }
        }

        // Nobody is filled beyond their quantity.
        for (id, f) in &ledger.filled {
            prop_assert!(
                *f <= ledger.quantity[id],
                "{:?} filled {} of {}",
                id,
                f,
                ledger.quantity[id]
            );
        }

        // FOK: all or nothing.
        if let Some((id, qty, TimeInForce::Fok)) = taker {
            let killed = out.iter().any(|e| {
                matches!(
                    e,
                    MatchEvent::Ended {
                        reason: Some(RejectCode::FokNotFillable),
                        ..
                    }
                )
            });
            if killed {
                prop_assert_eq!(out.len(), 1);
                prop_assert_eq!(book.resting_orders().collect::<Vec<_>>(), before.clone());
            } else if !out.iter().any(|e| matches!(e, MatchEvent::Ended { order_id, reason: Some(RejectCode::PostOnlyWouldTake), .. } if *order_id == id)) {
                prop_assert_eq!(taker_filled, qty, "FOK filled partially");
                prop_assert_eq!(book.get(id), None);
            }
        }

        // The last leaves an event reports for an order are what get() says.
        for id in ids_in(&out) {
            let (leaves, may_rest) = out
                .iter()
                .rev()
                .find_map(|e| leaves_of(e, id))
                .expect("id came from events");
            match book.get(id) {
                Some(o) => {
                    prop_assert!(may_rest && leaves > 0, "{:?} rests after a final event", id);
                    prop_assert_eq!(o.leaves.0, leaves);
                }
                None => prop_assert_eq!(leaves, 0, "{:?} gone with leaves", id),
            }
        }

        // Aggregates agree with the orders.
        let all: Vec<RestingOrder> = book.resting_orders().collect();
        prop_assert_eq!(all.len(), book.len());
        prop_assert_eq!(book.is_empty(), all.is_empty());
        for side in [Side::Buy, Side::Sell] {
            let mut depth: Vec<LevelView> = Vec::new();
            book.depth(side, usize::MAX, &mut depth);
            let mut expect: Vec<LevelView> = Vec::new();
            for o in all.iter().filter(|o| o.side == side) {
                prop_assert!(o.leaves.0 > 0);
                match expect.last_mut() {
                    Some(l) if l.price == o.price => {
                        l.qty += o.leaves;
                        l.orders += 1;
                    }
                    _ => expect.push(LevelView {
                        price: o.price,
                        qty: o.leaves,
                        orders: 1,
                    }),
                }
            }
            prop_assert_eq!(depth, expect);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_book_invariants_hold_after_every_command(stp in stp(), ops in proptest::collection::vec(op(), 1..150)) {
        check(stp, &ops)?;
    }

    /// A snapshot (resting orders in order) restored into an empty book behaves identically.
    #[test]
    fn prop_snapshot_restore_is_identical(stp in stp(), ops in proptest::collection::vec(op(), 1..80), probe in op()) {
        let mut book = OrderBook::new(SymbolId(0), BookConfig { stp });
        let mut out = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Place { side, price, qty, account: a, .. } = *op {
                let o = Incoming {
                    order_id: OrderId(i as u128 + 1), account: account(a), side, order_type: OrderType::Limit,
                    time_in_force: TimeInForce::Gtc, post_only: false, quantity: Qty(qty), price: Some(Price(price)),
                };
                book.submit(&o, (Price(0), Price(1000)), &mut out);
            }
        }
        let mut copy = OrderBook::new(SymbolId(0), BookConfig { stp });
        for o in book.resting_orders() {
            copy.restore_resting(o);
        }
        prop_assert_eq!(copy.resting_orders().collect::<Vec<_>>(), book.resting_orders().collect::<Vec<_>>());
        if let Op::Place { side, price, qty, account: a, tif, .. } = probe {
            let o = Incoming {
                order_id: OrderId(10_000), account: account(a), side, order_type: OrderType::Limit,
                time_in_force: tif, post_only: false, quantity: Qty(qty * 4), price: Some(Price(price)),
            };
            let (mut e1, mut e2) = (Vec::new(), Vec::new());
            book.submit(&o, (Price(0), Price(1000)), &mut e1);
            copy.submit(&o, (Price(0), Price(1000)), &mut e2);
            prop_assert_eq!(e1, e2);
        }
    }
}
