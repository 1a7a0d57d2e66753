//! Properties of the risk engine over random order lifecycles.

use proptest::prelude::*;

use oms_core::{
    AccountId, InstrumentTable, Money, OrderId, OrderType, Price, Qty, RiskConfig, RiskEngine,
    Side, SymbolId, TimeInForce, ValidatedOrder,
};

#[derive(Clone, Debug)]
enum Op {
    Place {
        account: u8,
        symbol: u16,
        buy: bool,
        market: bool,
        lots: i64,
        ticks_off: i64,
    },
    Fill {
        pick: usize,
        part: u8,
        ticks_off: i64,
    },
    Amend {
        pick: usize,
        lots: i64,
    },
    Done {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u16..3, any::<bool>(), prop::bool::weighted(0.2), 1i64..5000, -400i64..400)
            .prop_map(|(account, symbol, buy, market, lots, ticks_off)| Op::Place {
                account, symbol, buy, market, lots, ticks_off
            }),
        4 => (any::<usize>(), 1u8..=100, -400i64..400)
            .prop_map(|(pick, part, ticks_off)| Op::Fill { pick, part, ticks_off }),
        1 => (any::<usize>(), 1i64..5000).prop_map(|(pick, lots)| Op::Amend { pick, lots }),
        2 => any::<usize>().prop_map(|pick| Op::Done { pick }),
    ]
}

fn account(i: u8) -> AccountId {
    AccountId::new(&format!("acct-{i}")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// After every order has ended, no account has margin reserved or orders open, whatever
    /// fills, partial fills, amends and cancels happened on the way.
    #[test]
    fn prop_reserved_margin_returns_to_zero(ops in prop::collection::vec(op(), 1..300)) {
        let t = InstrumentTable::demo();
        let mut r = RiskEngine::new(&t, RiskConfig {
            dev_default_equity: Some(Money::parse("300000").unwrap()),
            max_open_orders: 50,
            ..RiskConfig::default()
        });
        // Open orders: id, account, symbol, side.
        let mut open: Vec<(OrderId, AccountId, SymbolId, Side)> = Vec::new();
        let mut next_id = 1u128;
        for op in ops {
            match op {
                Op::Place { account: ai, symbol, buy, market, lots, ticks_off } => {
                    let s = SymbolId(symbol);
                    let ins = t.get(s);
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let price = Price(r.reference_price(s).0 + ticks_off * ins.tick * 10);
                    let o = ValidatedOrder {
                        symbol: s,
                        side,
                        order_type: if market { OrderType::Market } else { OrderType::Limit },
                        time_in_force: if market { TimeInForce::Ioc } else { TimeInForce::Gtc },
                        post_only: false,
                        quantity: Qty(lots * ins.lot),
                        price: (!market).then_some(price),
                        client_order_id: None,
                    };
                    let id = OrderId(next_id);
                    next_id += 1;
                    let a = account(ai);
                    let before = r.account(&a);
                    match r.check_place(&a, id, &o) {
                        Ok(reserved) => {
                            prop_assert!(reserved.0 >= 0);
                            open.push((id, a, s, side));
                        }
                        Err(_) => prop_assert_eq!(r.account(&a), before),
                    }
                }
                Op::Fill { pick, part, ticks_off } if !open.is_empty() => {
                    let i = pick % open.len();
                    let (id, a, s, side) = open[i];
                    let leaves = r.open_order(id).unwrap().leaves;
                    let q = Qty((leaves.0 * i64::from(part) / 100).max(1).min(leaves.0));
                    let ins = t.get(s);
                    let price = Price(r.reference_price(s).0 + ticks_off * ins.tick);
                    r.on_fill(&a, id, s, side, q, price);
                    r.on_trade_price(s, price);
                    if q == leaves {
                        r.on_order_done(&a, id);
                        open.swap_remove(i);
                    }
                }
                Op::Amend { pick, lots } if !open.is_empty() => {
                    let (id, a, s, _) = open[pick % open.len()];
                    let _ = r.check_amend(&a, id, Qty(lots * t.get(s).lot), None);
                }
                Op::Done { pick } if !open.is_empty() => {
                    let (id, a, _, _) = open.swap_remove(pick % open.len());
                    r.on_order_done(&a, id);
                }
                _ => {}
            }
            for ai in 0..4 {
                if let Some(v) = r.account(&account(ai)) {
                    prop_assert!(v.reserved_margin.0 >= 0, "{:?}", v);
                    prop_assert_eq!(
                        v.available,
                        v.equity + v.realized_pnl - v.used_margin - v.reserved_margin
                    );
                }
            }
        }
        for (id, a, _, _) in open.drain(..) {
            r.on_order_done(&a, id);
        }
        for ai in 0..4 {
            if let Some(v) = r.account(&account(ai)) {
                prop_assert_eq!((v.reserved_margin, v.open_orders), (Money::ZERO, 0), "{:?}", v);
            }
        }
    }
}
