//! R1: every pre-trade reject code, the order the checks run in, and that a refusal reserves
//! nothing.

use oms_core::instrument::DEFAULT_INSTRUMENTS_TOML;
use oms_core::{
    AccountId, HaltScope, InstrumentTable, Money, OrderId, OrderType, Price, Qty, RejectCode,
    RiskConfig, RiskEngine, Side, SymbolId, TimeInForce, ValidatedOrder,
};

const BTC: SymbolId = SymbolId(0);

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn usd(s: &str) -> Money {
    Money::parse(s).unwrap()
}

/// BTC: price in cents, quantity in 0.0001 BTC.
fn btc(t: &InstrumentTable, side: Side, qty: &str, price: Option<&str>) -> ValidatedOrder {
    let ins = t.get(BTC);
    ValidatedOrder {
        symbol: BTC,
        side,
        order_type: if price.is_some() {
            OrderType::Limit
        } else {
            OrderType::Market
        },
        time_in_force: if price.is_some() {
            TimeInForce::Gtc
        } else {
            TimeInForce::Ioc
        },
        post_only: false,
        quantity: ins.parse_qty(qty).unwrap(),
        price: price.map(|p| ins.parse_price(p).unwrap()),
        client_order_id: None,
    }
}

fn engine(t: &InstrumentTable, equity: &str) -> RiskEngine {
    RiskEngine::new(
        t,
        RiskConfig {
            accounts: vec![(acct("alice"), usd(equity)), (acct("bob"), usd(equity))],
            ..RiskConfig::default()
        },
    )
}

#[test]
fn trading_halted_global_and_per_account_comes_first() {
    let t = InstrumentTable::demo();
    let mut r = engine(&t, "1000000");
    let a = acct("alice");
    r.set_halt(&HaltScope::Global, true);
    // Even an order that breaks every other limit is refused as halted.
    let whale = btc(&t, Side::Buy, "1000", Some("99999"));
    assert_eq!(
        r.check_place(&a, OrderId(1), &whale),
        Err(RejectCode::TradingHalted)
    );
    r.set_halt(&HaltScope::Global, false);
    let o = btc(&t, Side::Buy, "0.1", Some("45000"));
    assert!(r.check_place(&a, OrderId(2), &o).is_ok());
    r.set_halt(&HaltScope::Account(a), true);
    assert_eq!(
        r.check_place(&a, OrderId(3), &o),
        Err(RejectCode::TradingHalted)
    );
    assert!(r.account(&a).unwrap().halted);
    assert!(r.check_place(&acct("bob"), OrderId(4), &o).is_ok());
    r.set_halt(&HaltScope::Account(a), false);
    assert!(r.check_place(&a, OrderId(5), &o).is_ok());
}

#[test]
fn max_quantity_then_max_notional_then_band() {
    // BTC with a 100k max notional so the notional limit is reachable within max_qty.
    let toml = DEFAULT_INSTRUMENTS_TOML.replacen(
        "max_notional = \"5000000\"",
        "max_notional = \"100000\"",
        1,
    );
    let t = InstrumentTable::from_toml(&toml).unwrap();
    let mut r = engine(&t, "10000000");
    let a = acct("alice");
    let too_big = btc(&t, Side::Buy, "100.0001", Some("99999"));
    assert_eq!(
        r.check_place(&a, OrderId(1), &too_big),
        Err(RejectCode::MaxQuantityExceeded)
    );
    // 3 × 45000 = 135k > 100k (and out of band too: notional is checked first).
    let o = btc(&t, Side::Buy, "3", Some("45000"));
    assert_eq!(
        r.check_place(&a, OrderId(2), &o),
        Err(RejectCode::MaxNotionalExceeded)
    );
    let o = btc(&t, Side::Buy, "2.1", Some("49000")); // 102,900
    assert_eq!(
        r.check_place(&a, OrderId(3), &o),
        Err(RejectCode::MaxNotionalExceeded)
    );
    // MARKET is valued at the band edge it may sweep to: a buy at 47250, a sell at 42750.
    let mb = btc(&t, Side::Buy, "2.2", None); // 103,950
    assert_eq!(
        r.check_place(&a, OrderId(4), &mb),
        Err(RejectCode::MaxNotionalExceeded)
    );
    let ms = btc(&t, Side::Sell, "2.2", None); // 94,050
    let reserved = r.check_place(&a, OrderId(5), &ms).unwrap();
    assert_eq!(reserved, usd("9405"));
}

#[test]
fn price_band_follows_the_last_trade() {
    let t = InstrumentTable::demo();
    let mut r = engine(&t, "1000000");
    let a = acct("alice");
    assert_eq!(r.reference_price(BTC), Price(4_500_000));
    let hi = btc(&t, Side::Buy, "0.1", Some("47250.01"));
    assert_eq!(
        r.check_place(&a, OrderId(1), &hi),
        Err(RejectCode::PriceOutOfBand)
    );
    let lo = btc(&t, Side::Sell, "0.1", Some("42749.99"));
    assert_eq!(
        r.check_place(&a, OrderId(2), &lo),
        Err(RejectCode::PriceOutOfBand)
    );
    assert!(
        r.check_place(&a, OrderId(3), &btc(&t, Side::Buy, "0.1", Some("47250")))
            .is_ok()
    );
    r.on_trade_price(BTC, Price(4_600_000));
    assert_eq!(r.reference_price(BTC), Price(4_600_000));
    assert!(r.check_place(&a, OrderId(4), &hi).is_ok());
    let old_low = btc(&t, Side::Sell, "0.1", Some("43000"));
    assert_eq!(
        r.check_place(&a, OrderId(5), &old_low),
        Err(RejectCode::PriceOutOfBand)
    );
}

#[test]
fn too_many_open_orders_until_one_ends() {
    let t = InstrumentTable::demo();
    let mut r = RiskEngine::new(
        &t,
        RiskConfig {
            max_open_orders: 2,
            accounts: vec![(acct("alice"), usd("1000000"))],
            ..RiskConfig::default()
        },
    );
    let a = acct("alice");
    let o = btc(&t, Side::Buy, "0.1", Some("45000"));
    r.check_place(&a, OrderId(1), &o).unwrap();
    r.check_place(&a, OrderId(2), &o).unwrap();
    assert_eq!(
        r.check_place(&a, OrderId(3), &o),
        Err(RejectCode::TooManyOpenOrders)
    );
    r.on_order_done(&a, OrderId(1));
    assert_eq!(r.account(&a).unwrap().open_orders, 1);
    r.check_place(&a, OrderId(3), &o).unwrap();
}

#[test]
fn position_limit_counts_position_and_open_same_side_orders() {
    let t = InstrumentTable::demo(); // BTC max position 50
    let mut r = engine(&t, "100000000");
    let a = acct("alice");
    let buy = |q| btc(&t, Side::Buy, q, Some("45000"));
    let sell = |q| btc(&t, Side::Sell, q, Some("45000"));
    r.check_place(&a, OrderId(1), &buy("30")).unwrap();
    assert_eq!(
        r.check_place(&a, OrderId(2), &buy("20.0001")),
        Err(RejectCode::PositionLimitExceeded)
    );
    r.check_place(&a, OrderId(3), &buy("20")).unwrap();
    r.on_order_done(&a, OrderId(3));
    // Sells are not offset by open buys: they only count against the short side.
    r.check_place(&a, OrderId(4), &sell("50")).unwrap();
    r.on_order_done(&a, OrderId(4));
    // Fill the 30 buy: now long 30 with nothing open.
    r.on_fill(
        &a,
        OrderId(1),
        BTC,
        Side::Buy,
        Qty(300_000),
        Price(4_500_000),
    );
    r.on_order_done(&a, OrderId(1));
    assert_eq!(
        r.check_place(&a, OrderId(5), &buy("20.0001")),
        Err(RejectCode::PositionLimitExceeded)
    );
    r.check_place(&a, OrderId(6), &sell("80")).unwrap(); // 30 − 80 = −50
    assert_eq!(
        r.check_place(&a, OrderId(7), &sell("0.0001")),
        Err(RejectCode::PositionLimitExceeded)
    );
}

#[test]
fn insufficient_margin_and_nothing_reserved_on_refusal() {
    let t = InstrumentTable::demo(); // IM 10 %
    let mut r = engine(&t, "1000");
    let a = acct("alice");
    assert_eq!(
        r.check_place(&a, OrderId(1), &btc(&t, Side::Buy, "0.2", Some("45000"))),
        Ok(usd("900"))
    );
    assert_eq!(
        r.check_place(&a, OrderId(2), &btc(&t, Side::Buy, "0.02", Some("45000"))),
        Ok(usd("90"))
    );
    let before = r.account(&a).unwrap();
    assert_eq!(before.available, usd("10"));
    // 0.0023 × 45000 × 10 % = 10.35 > 10.
    assert_eq!(
        r.check_place(&a, OrderId(3), &btc(&t, Side::Buy, "0.0023", Some("45000"))),
        Err(RejectCode::InsufficientMargin)
    );
    assert_eq!(r.account(&a).unwrap(), before);
    assert!(r.open_order(OrderId(3)).is_none());
    // Margin rounds up to a money unit and the boundary is inclusive.
    assert_eq!(
        r.check_place(&a, OrderId(4), &btc(&t, Side::Buy, "0.0022", Some("45000"))),
        Ok(usd("9.9"))
    );
    r.on_order_done(&a, OrderId(1));
    assert_eq!(r.account(&a).unwrap().available, usd("900.1"));
}

#[test]
fn unknown_accounts_need_a_dev_default() {
    let t = InstrumentTable::demo();
    let o = btc(&t, Side::Buy, "0.1", Some("45000"));
    let stranger = acct("stranger");
    let mut strict = RiskEngine::new(&t, RiskConfig::default());
    assert_eq!(
        strict.check_place(&stranger, OrderId(1), &o),
        Err(RejectCode::InsufficientMargin)
    );
    assert!(strict.account(&stranger).is_none());
    let mut dev = RiskEngine::new(
        &t,
        RiskConfig {
            dev_default_equity: Some(usd("100000")),
            ..RiskConfig::default()
        },
    );
    assert_eq!(dev.check_place(&stranger, OrderId(1), &o), Ok(usd("450")));
    let v = dev.account(&stranger).unwrap();
    assert_eq!(
        (v.equity, v.reserved_margin, v.open_orders),
        (usd("100000"), usd("450"), 1)
    );
    let poor = RiskConfig {
        dev_default_equity: Some(usd("100")),
        ..RiskConfig::default()
    };
    assert_eq!(
        RiskEngine::new(&t, poor).check_place(&stranger, OrderId(1), &o),
        Err(RejectCode::InsufficientMargin)
    );
}

#[test]
fn amend_checks_only_what_grows() {
    let t = InstrumentTable::demo();
    let mut r = engine(&t, "1000");
    let a = acct("alice");
    r.check_place(&a, OrderId(1), &btc(&t, Side::Buy, "0.1", Some("45000")))
        .unwrap(); // 450
    // Grow to 0.3: 1350 > 1000.
    assert_eq!(
        r.check_amend(&a, OrderId(1), Qty(3000), None),
        Err(RejectCode::InsufficientMargin)
    );
    assert_eq!(r.open_order(OrderId(1)).unwrap().reserved, usd("450"));
    assert_eq!(
        r.check_amend(&a, OrderId(1), Qty(2000), None),
        Ok(usd("900"))
    );
    assert_eq!(r.account(&a).unwrap().reserved_margin, usd("900"));
    assert_eq!(
        r.check_amend(&a, OrderId(1), Qty(1000), Some(Price(4_800_000))),
        Err(RejectCode::PriceOutOfBand)
    );
    assert_eq!(
        r.check_amend(&acct("bob"), OrderId(1), Qty(500), None),
        Err(RejectCode::OrderNotOpen)
    );
    assert_eq!(
        r.check_amend(&a, OrderId(9), Qty(500), None),
        Err(RejectCode::OrderNotOpen)
    );
    r.set_halt(&HaltScope::Account(a), true);
    assert_eq!(
        r.check_amend(&a, OrderId(1), Qty(2500), None),
        Err(RejectCode::TradingHalted)
    );
    assert_eq!(
        r.check_amend(&a, OrderId(1), Qty(1000), None),
        Ok(usd("450"))
    );
    let o = r.open_order(OrderId(1)).unwrap();
    assert_eq!((o.quantity, o.leaves), (Qty(1000), Qty(1000)));
    // apply_amend replays a recorded decision exactly.
    r.apply_amend(&a, OrderId(1), Qty(500), Some(Price(4_400_000)), usd("220"));
    let o = r.open_order(OrderId(1)).unwrap();
    assert_eq!(
        (o.leaves, o.price, o.reserved),
        (Qty(500), Some(Price(4_400_000)), usd("220"))
    );
    assert_eq!(r.account(&a).unwrap().reserved_margin, usd("220"));
}
