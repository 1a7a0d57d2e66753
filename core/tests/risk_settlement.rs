//! R2: positions, realized and unrealized PnL, used margin and reservation release, exactly.

use oms_core::{
    AccountId, InstrumentTable, Money, OrderId, OrderType, Price, Qty, RiskConfig, RiskEngine,
    Side, SymbolId, TimeInForce, ValidatedOrder,
};

const BTC: SymbolId = SymbolId(0);

fn usd(s: &str) -> Money {
    Money::parse(s).unwrap()
}

fn px(s: &str) -> Price {
    InstrumentTable::demo().get(BTC).parse_price(s).unwrap()
}

fn qty(s: &str) -> Qty {
    InstrumentTable::demo().get(BTC).parse_qty(s).unwrap()
}

fn setup() -> (RiskEngine, AccountId) {
    let a = AccountId::new("alice").unwrap();
    let r = RiskEngine::new(
        &InstrumentTable::demo(),
        RiskConfig {
            accounts: vec![(a, usd("1000000"))],
            ..RiskConfig::default()
        },
    );
    (r, a)
}

fn limit(side: Side, q: &str, p: &str) -> ValidatedOrder {
    ValidatedOrder {
        symbol: BTC,
        side,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        quantity: qty(q),
        price: Some(px(p)),
        client_order_id: None,
    }
}

/// Places and fully fills an order at `fill_px`.
fn trade(r: &mut RiskEngine, a: &AccountId, id: u128, side: Side, q: &str, fill_px: &str) {
    let o = limit(side, q, fill_px);
    r.check_place(a, OrderId(id), &o).unwrap();
    r.on_fill(a, OrderId(id), BTC, side, qty(q), px(fill_px));
    r.on_order_done(a, OrderId(id));
}

#[test]
fn open_add_reduce_flip_close() {
    let (mut r, a) = setup();
    trade(&mut r, &a, 1, Side::Buy, "1", "45000");
    let p = r.positions(&a)[0];
    assert_eq!(
        (p.qty, p.avg_entry, p.realized_pnl),
        (10_000, px("45000"), Money::ZERO)
    );
    let v = r.account(&a).unwrap();
    assert_eq!(
        (v.used_margin, v.reserved_margin, v.open_orders),
        (usd("4500"), Money::ZERO, 0)
    );

    trade(&mut r, &a, 2, Side::Buy, "1", "46000");
    let p = r.positions(&a)[0];
    assert_eq!((p.qty, p.avg_entry), (20_000, px("45500")));
    assert_eq!(r.account(&a).unwrap().used_margin, usd("9100"));

    // Reduce 0.5 at 47000: +0.5 × 1500 = 750.
    trade(&mut r, &a, 3, Side::Sell, "0.5", "47000");
    let p = r.positions(&a)[0];
    assert_eq!(
        (p.qty, p.avg_entry, p.realized_pnl),
        (15_000, px("45500"), usd("750"))
    );
    assert_eq!(r.account(&a).unwrap().used_margin, usd("6825"));

    // Sell 3 at 44000: closes 1.5 at −1500 each (−2250), opens short 1.5 at 44000.
    trade(&mut r, &a, 4, Side::Sell, "3", "44000");
    let p = r.positions(&a)[0];
    assert_eq!(
        (p.qty, p.avg_entry, p.realized_pnl),
        (-15_000, px("44000"), usd("-1500"))
    );
    let v = r.account(&a).unwrap();
    assert_eq!((v.realized_pnl, v.used_margin), (usd("-1500"), usd("6600")));
    assert_eq!(v.available, usd("1000000") - usd("1500") - usd("6600"));

    // Marked against the last trade: short 1.5 from 44000 at 43000 = +1500.
    r.on_trade_price(BTC, px("43000"));
    assert_eq!(r.positions(&a)[0].unrealized_pnl, usd("1500"));
    assert_eq!(r.account(&a).unwrap().unrealized_pnl, usd("1500"));

    trade(&mut r, &a, 5, Side::Buy, "1.5", "43000");
    // Flat with zero realized PnL overall: nothing left to show.
    assert!(r.positions(&a).is_empty());
    let v = r.account(&a).unwrap();
    assert_eq!(
        (v.realized_pnl, v.used_margin, v.reserved_margin),
        (Money::ZERO, Money::ZERO, Money::ZERO)
    );
}

#[test]
fn realized_pnl_is_exact_when_the_average_is_not() {
    let (mut r, a) = setup();
    // Three buys whose average is not a whole cent: 45000.00, 45000.01, 45000.01.
    trade(&mut r, &a, 1, Side::Buy, "0.0001", "45000");
    trade(&mut r, &a, 2, Side::Buy, "0.0001", "45000.01");
    trade(&mut r, &a, 3, Side::Buy, "0.0001", "45000.01");
    assert_eq!(r.positions(&a)[0].avg_entry, px("45000")); // floor of 45000.0066…
    for (i, p) in ["45001", "45001", "45001"].into_iter().enumerate() {
        trade(&mut r, &a, 10 + i as u128, Side::Sell, "0.0001", p);
    }
    // Σ exit − Σ entry = 3 × 4.5001 − (4.5 + 4.500001 × 2) = 0.000298 USD.
    let p = r.positions(&a);
    assert_eq!(p[0].qty, 0);
    assert_eq!(p[0].realized_pnl, usd("0.000298"));
    assert_eq!(r.account(&a).unwrap().used_margin, Money::ZERO);
}

#[test]
fn partial_fills_release_the_reservation_exactly() {
    let (mut r, a) = setup();
    let o = limit(Side::Buy, "0.0003", "45000");
    // Replay of a recorded reservation that does not divide evenly.
    r.apply_place(&a, OrderId(1), &o, Money(1001));
    let mut reserved = vec![r.account(&a).unwrap().reserved_margin];
    for _ in 0..3 {
        r.on_fill(&a, OrderId(1), BTC, Side::Buy, Qty(1), px("45000"));
        reserved.push(r.account(&a).unwrap().reserved_margin);
    }
    assert_eq!(reserved, [Money(1001), Money(668), Money(334), Money(0)]);
    r.on_order_done(&a, OrderId(1));
    let v = r.account(&a).unwrap();
    assert_eq!((v.reserved_margin, v.open_orders), (Money::ZERO, 0));

    // Canceled after a partial fill: the rest is released on done.
    r.check_place(&a, OrderId(2), &limit(Side::Sell, "0.5", "45000"))
        .unwrap();
    r.on_fill(&a, OrderId(2), BTC, Side::Sell, qty("0.2"), px("45100"));
    assert_eq!(r.open_order(OrderId(2)).unwrap().reserved, usd("1350"));
    r.on_order_done(&a, OrderId(2));
    assert_eq!(r.account(&a).unwrap().reserved_margin, Money::ZERO);
    assert!(r.open_order(OrderId(2)).is_none());
}

#[test]
fn fills_for_orders_risk_never_saw_still_settle() {
    // The ingress instance after a restart: fills of orders placed before it existed.
    let (mut r, a) = setup();
    r.on_fill(&a, OrderId(77), BTC, Side::Sell, qty("2"), px("45000"));
    let p = r.positions(&a)[0];
    assert_eq!((p.qty, p.avg_entry), (-20_000, px("45000")));
    assert_eq!(r.account(&a).unwrap().reserved_margin, Money::ZERO);
    r.on_order_done(&a, OrderId(77)); // harmless
    assert_eq!(r.account(&a).unwrap().open_orders, 0);
}
