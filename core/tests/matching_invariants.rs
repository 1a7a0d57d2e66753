//! The book's invariants, one property each, on random streams of places and cancels.

use std::collections::HashMap;

use oms_core::book::{BookConfig, Incoming, MatchEvent, OrderBook, StpMode};
use oms_core::{AccountId, OrderId, OrderType, Price, Qty, Side, SymbolId, TimeInForce};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Place {
        buy: bool,
        price: i64,
        qty: i64,
        tif: u8,
        account: u8,
    },
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 95i64..=105, 1i64..=20, 0u8..3, 0u8..4)
            .prop_map(|(buy, price, qty, tif, account)| Op::Place { buy, price, qty, tif, account }),
        1 => (0usize..200).prop_map(Op::Cancel),
    ]
}

/// Runs `ops`; returns each order's quantity and every event.
fn run(
    ops: &[Op],
    mut after_each: impl FnMut(&OrderBook),
) -> (HashMap<OrderId, i64>, Vec<MatchEvent>) {
    let mut book = OrderBook::new(SymbolId(0), BookConfig { stp: StpMode::Off });
    let mut qty = HashMap::new();
    let mut all = Vec::new();
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        out.clear();
        match *op {
            Op::Place {
                buy,
                price,
                qty: q,
                tif,
                account,
            } => {
                let id = OrderId(i as u128 + 1);
                qty.insert(id, q);
                let o = Incoming {
                    order_id: id,
                    account: AccountId::new(&format!("a{account}")).unwrap(),
                    side: if buy { Side::Buy } else { Side::Sell },
                    order_type: OrderType::Limit,
                    time_in_force: [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok]
                        [tif as usize],
                    post_only: false,
                    quantity: Qty(q),
                    price: Some(Price(price)),
                };
                book.submit(&o, (Price(1), Price(1000)), &mut out);
            }
            Op::Cancel(n) => {
                let _ = book.cancel(OrderId(n as u128 + 1), &mut out);
            }
        }
        all.extend_from_slice(&out);
        after_each(&book);
    }
    (qty, all)
}

fn filled(events: &[MatchEvent]) -> (HashMap<OrderId, i64>, HashMap<OrderId, i64>) {
    let (mut as_taker, mut as_maker) = (HashMap::new(), HashMap::new());
    for e in events {
        if let MatchEvent::Fill {
            maker_order_id,
            taker_order_id,
            qty,
            ..
        } = e
        {
            *as_taker.entry(*taker_order_id).or_insert(0) += qty.0;
            *as_maker.entry(*maker_order_id).or_insert(0) += qty.0;
        }
    }
    (as_taker, as_maker)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_book_never_crossed_after_matching(ops in proptest::collection::vec(op(), 1..200)) {
        let mut crossed = false;
        run(&ops, |b| {
            if let (Some(bid), Some(ask)) = (b.best_bid(), b.best_ask()) {
                crossed |= bid >= ask;
            }
        });
        prop_assert!(!crossed);
    }

    /// Every fill moves the same quantity out of the taker and out of the maker: the total
    /// filled by takers equals the total filled by makers, and per order, what left the order
    /// (quantity − final leaves) is exactly what its fills add up to.
    #[test]
    fn prop_quantity_conserved(ops in proptest::collection::vec(op(), 1..200)) {
        let (qty, events) = run(&ops, |_| {});
        let (taker, maker) = filled(&events);
        prop_assert_eq!(taker.values().sum::<i64>(), maker.values().sum::<i64>());
        let mut last_leaves: HashMap<OrderId, i64> = HashMap::new();
        for e in &events {
            match e {
                MatchEvent::Fill { maker_order_id, taker_order_id, maker_leaves, taker_leaves, .. } => {
                    last_leaves.insert(*maker_order_id, maker_leaves.0);
                    last_leaves.insert(*taker_order_id, taker_leaves.0);
                }
                MatchEvent::Rested { order_id, leaves, .. } => { last_leaves.insert(*order_id, leaves.0); }
                MatchEvent::Ended { .. } => {}
            }
        }
        for (id, leaves) in last_leaves {
            let f = taker.get(&id).copied().unwrap_or(0) + maker.get(&id).copied().unwrap_or(0);
            prop_assert_eq!(qty[&id] - leaves, f, "order {:?}", id);
        }
    }

    #[test]
    fn prop_no_order_filled_beyond_its_quantity(ops in proptest::collection::vec(op(), 1..200)) {
        let (qty, events) = run(&ops, |_| {});
        let (taker, maker) = filled(&events);
        for (id, q) in qty {
            let f = taker.get(&id).copied().unwrap_or(0) + maker.get(&id).copied().unwrap_or(0);
            prop_assert!(f <= q, "order {:?} filled {} of {}", id, f, q);
        }
    }
}
