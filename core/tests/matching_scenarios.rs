//! Hand-written scenarios for every matching rule of the order book: each order type and time
//! in force, post-only, each self-trade-prevention mode, cancel, amend and the market band.

use oms_core::book::{
    BookConfig, BookError, Incoming, LevelView, MatchEvent, OrderBook, RestingOrder, StpMode,
};
use oms_core::{
    AccountId, OrderId, OrderStatus, OrderType, Price, Qty, RejectCode, Side, SymbolId, TimeInForce,
};

const BAND: (Price, Price) = (Price(1), Price(1_000_000));

fn acct(s: &str) -> AccountId {
    AccountId::new(s).expect("valid account")
}

fn book(stp: StpMode) -> OrderBook {
    OrderBook::new(SymbolId(0), BookConfig { stp })
}

fn order(
    id: u128,
    who: &str,
    side: Side,
    ty: OrderType,
    tif: TimeInForce,
    price: Option<i64>,
    qty: i64,
) -> Incoming {
    Incoming {
        order_id: OrderId(id),
        account: acct(who),
        side,
        order_type: ty,
        time_in_force: tif,
        post_only: false,
        quantity: Qty(qty),
        price: price.map(Price),
    }
}

fn gtc(id: u128, who: &str, side: Side, price: i64, qty: i64) -> Incoming {
    order(
        id,
        who,
        side,
        OrderType::Limit,
        TimeInForce::Gtc,
        Some(price),
        qty,
    )
}

fn submit(b: &mut OrderBook, o: Incoming) -> Vec<MatchEvent> {
    let mut out = Vec::new();
    b.submit(&o, BAND, &mut out);
    out
}

#[allow(clippy::too_many_arguments)]
fn fill(
    maker: u128,
    mk: &str,
    taker: u128,
    tk: &str,
    price: i64,
    qty: i64,
    ml: i64,
    tl: i64,
) -> MatchEvent {
    MatchEvent::Fill {
        maker_order_id: OrderId(maker),
        maker_account: acct(mk),
        taker_order_id: OrderId(taker),
        taker_account: acct(tk),
        price: Price(price),
        qty: Qty(qty),
        maker_leaves: Qty(ml),
        taker_leaves: Qty(tl),
    }
}

fn rested(id: u128, price: i64, leaves: i64) -> MatchEvent {
    MatchEvent::Rested {
        order_id: OrderId(id),
        price: Price(price),
        leaves: Qty(leaves),
    }
}

fn ended(
    id: u128,
    who: &str,
    leaves: i64,
    status: OrderStatus,
    reason: Option<RejectCode>,
) -> MatchEvent {
    MatchEvent::Ended {
        order_id: OrderId(id),
        account: acct(who),
        leaves: Qty(leaves),
        status,
        reason,
    }
}

fn ids(b: &OrderBook) -> Vec<u128> {
    b.resting_orders().map(|o| o.order_id.0).collect()
}

/// Asks: 1@100 (qty 5, "m1"), 2@101 (qty 5, "m2"), 3@101 (qty 5, "m3"), 4@103 (qty 5, "m4").
fn ask_ladder(stp: StpMode) -> OrderBook {
    let mut b = book(stp);
    for (id, who, p) in [
        (1, "m1", 100),
        (2, "m2", 101),
        (3, "m3", 101),
        (4, "m4", 103),
    ] {
        assert_eq!(
            submit(&mut b, gtc(id, who, Side::Sell, p, 5)),
            vec![rested(id, p, 5)]
        );
    }
    b
}

#[test]
fn gtc_limit_fills_in_price_time_priority_then_rests() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let ev = submit(&mut b, gtc(10, "t", Side::Buy, 101, 17));
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "t", 100, 5, 0, 12),
            fill(2, "m2", 10, "t", 101, 5, 0, 7),
            fill(3, "m3", 10, "t", 101, 5, 0, 2),
            rested(10, 101, 2),
        ]
    );
    assert_eq!(b.best_bid(), Some(Price(101)));
    assert_eq!(b.best_ask(), Some(Price(103)));
    assert_eq!(b.get(OrderId(10)).map(|o| o.leaves), Some(Qty(2)));
    assert_eq!(b.get(OrderId(1)), None);
    assert_eq!(b.len(), 2);
}

#[test]
fn partial_fill_of_a_maker_keeps_it_at_the_head() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    assert_eq!(
        submit(&mut b, gtc(10, "t", Side::Buy, 101, 7)),
        vec![
            fill(1, "m1", 10, "t", 100, 5, 0, 2),
            fill(2, "m2", 10, "t", 101, 2, 3, 0),
        ]
    );
    assert_eq!(ids(&b), vec![2, 3, 4]);
    assert_eq!(b.get(OrderId(2)).map(|o| o.leaves), Some(Qty(3)));
    let mut d = Vec::new();
    b.depth(Side::Sell, 5, &mut d);
    assert_eq!(
        d,
        vec![
            LevelView {
                price: Price(101),
                qty: Qty(8),
                orders: 2
            },
            LevelView {
                price: Price(103),
                qty: Qty(5),
                orders: 1
            },
        ]
    );
}

#[test]
fn sell_side_matches_highest_bid_first() {
    let mut b = book(StpMode::CancelNewest);
    submit(&mut b, gtc(1, "a", Side::Buy, 99, 3));
    submit(&mut b, gtc(2, "b", Side::Buy, 100, 3));
    assert_eq!(
        submit(&mut b, gtc(3, "c", Side::Sell, 99, 4)),
        vec![
            fill(2, "b", 3, "c", 100, 3, 0, 1),
            fill(1, "a", 3, "c", 99, 1, 2, 0),
        ]
    );
}

#[test]
fn non_crossing_limit_rests_without_fills() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    assert_eq!(
        submit(&mut b, gtc(10, "t", Side::Buy, 99, 4)),
        vec![rested(10, 99, 4)]
    );
    assert_eq!(
        (b.best_bid(), b.best_ask()),
        (Some(Price(99)), Some(Price(100)))
    );
}

#[test]
fn market_sweeps_within_band_and_expires_the_rest() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    b.submit(
        &order(
            10,
            "t",
            Side::Buy,
            OrderType::Market,
            TimeInForce::Ioc,
            None,
            30,
        ),
        (Price(1), Price(101)),
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            fill(1, "m1", 10, "t", 100, 5, 0, 25),
            fill(2, "m2", 10, "t", 101, 5, 0, 20),
            fill(3, "m3", 10, "t", 101, 5, 0, 15),
            ended(10, "t", 15, OrderStatus::Expired, None),
        ]
    );
    assert_eq!(ids(&b), vec![4], "the 103 ask is beyond the band and stays");
    assert_eq!(b.best_bid(), None, "market never rests");
}

#[test]
fn market_sell_sweeps_down_to_band_low() {
    let mut b = book(StpMode::CancelNewest);
    submit(&mut b, gtc(1, "a", Side::Buy, 100, 2));
    submit(&mut b, gtc(2, "a", Side::Buy, 90, 2));
    let mut out = Vec::new();
    b.submit(
        &order(
            3,
            "t",
            Side::Sell,
            OrderType::Market,
            TimeInForce::Ioc,
            None,
            5,
        ),
        (Price(95), Price(105)),
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            fill(1, "a", 3, "t", 100, 2, 0, 3),
            ended(3, "t", 3, OrderStatus::Expired, None)
        ]
    );
}

#[test]
fn market_with_nothing_to_take_expires_no_liquidity() {
    let mut b = book(StpMode::CancelNewest);
    let ev = submit(
        &mut b,
        order(
            1,
            "t",
            Side::Buy,
            OrderType::Market,
            TimeInForce::Ioc,
            None,
            5,
        ),
    );
    assert_eq!(
        ev,
        vec![ended(
            1,
            "t",
            5,
            OrderStatus::Expired,
            Some(RejectCode::NoLiquidity)
        )]
    );
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    b.submit(
        &order(
            20,
            "t",
            Side::Buy,
            OrderType::Market,
            TimeInForce::Ioc,
            None,
            5,
        ),
        (Price(1), Price(99)),
        &mut out,
    );
    assert_eq!(
        out,
        vec![ended(
            20,
            "t",
            5,
            OrderStatus::Expired,
            Some(RejectCode::NoLiquidity)
        )]
    );
    assert_eq!(b.len(), 4);
}

#[test]
fn market_fully_filled_has_no_end_event() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let ev = submit(
        &mut b,
        order(
            10,
            "t",
            Side::Buy,
            OrderType::Market,
            TimeInForce::Ioc,
            None,
            5,
        ),
    );
    assert_eq!(ev, vec![fill(1, "m1", 10, "t", 100, 5, 0, 0)]);
}

#[test]
fn ioc_fills_what_it_can_and_expires_the_rest() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let ev = submit(
        &mut b,
        order(
            10,
            "t",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Ioc,
            Some(100),
            8,
        ),
    );
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "t", 100, 5, 0, 3),
            ended(10, "t", 3, OrderStatus::Expired, None)
        ]
    );
    let ev = submit(
        &mut b,
        order(
            11,
            "t",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Ioc,
            Some(99),
            8,
        ),
    );
    assert_eq!(ev, vec![ended(11, "t", 8, OrderStatus::Expired, None)]);
    assert_eq!(b.best_bid(), None);
}

#[test]
fn fok_fills_completely_when_enough_crosses() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let ev = submit(
        &mut b,
        order(
            10,
            "t",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            Some(101),
            15,
        ),
    );
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "t", 100, 5, 0, 10),
            fill(2, "m2", 10, "t", 101, 5, 0, 5),
            fill(3, "m3", 10, "t", 101, 5, 0, 0),
        ]
    );
}

#[test]
fn fok_that_cannot_fill_changes_nothing() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let before: Vec<RestingOrder> = b.resting_orders().collect();
    let ev = submit(
        &mut b,
        order(
            10,
            "t",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            Some(101),
            16,
        ),
    );
    assert_eq!(
        ev,
        vec![ended(
            10,
            "t",
            16,
            OrderStatus::Expired,
            Some(RejectCode::FokNotFillable)
        )]
    );
    assert_eq!(b.resting_orders().collect::<Vec<_>>(), before);
    // A FOK market order respects the band.
    let mut out = Vec::new();
    b.submit(
        &order(
            11,
            "t",
            Side::Buy,
            OrderType::Market,
            TimeInForce::Fok,
            None,
            16,
        ),
        (Price(1), Price(101)),
        &mut out,
    );
    assert_eq!(
        out,
        vec![ended(
            11,
            "t",
            16,
            OrderStatus::Expired,
            Some(RejectCode::FokNotFillable)
        )]
    );
    out.clear();
    b.submit(
        &order(
            12,
            "t",
            Side::Buy,
            OrderType::Market,
            TimeInForce::Fok,
            None,
            16,
        ),
        (Price(1), Price(103)),
        &mut out,
    );
    assert_eq!(out.len(), 4);
    assert_eq!(out[3], fill(4, "m4", 12, "t", 103, 1, 4, 0));
}

#[test]
fn fok_counts_self_trade_prevention() {
    // CancelNewest: the taker would stop at its own order, so only 5 are reachable.
    let mut b = ask_ladder(StpMode::CancelNewest);
    let ev = submit(
        &mut b,
        order(
            10,
            "m2",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            Some(101),
            6,
        ),
    );
    assert_eq!(
        ev,
        vec![ended(
            10,
            "m2",
            6,
            OrderStatus::Expired,
            Some(RejectCode::FokNotFillable)
        )]
    );
    assert_eq!(b.len(), 4);
    // CancelOldest: its own order is skipped (and canceled on execution), 10 reachable.
    let mut b = ask_ladder(StpMode::CancelOldest);
    let ev = submit(
        &mut b,
        order(
            10,
            "m2",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            Some(101),
            10,
        ),
    );
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "m2", 100, 5, 0, 5),
            ended(
                2,
                "m2",
                5,
                OrderStatus::Canceled,
                Some(RejectCode::SelfTradePrevented)
            ),
            fill(3, "m3", 10, "m2", 101, 5, 0, 0),
        ]
    );
    let mut b = ask_ladder(StpMode::CancelOldest);
    let ev = submit(
        &mut b,
        order(
            10,
            "m2",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            Some(101),
            11,
        ),
    );
    assert_eq!(
        ev,
        vec![ended(
            10,
            "m2",
            11,
            OrderStatus::Expired,
            Some(RejectCode::FokNotFillable)
        )]
    );
    assert_eq!(
        b.len(),
        4,
        "a failed FOK does not cancel the self order either"
    );
    // Off: everything counts.
    let mut b = ask_ladder(StpMode::Off);
    let ev = submit(
        &mut b,
        order(
            10,
            "m2",
            Side::Buy,
            OrderType::Limit,
            TimeInForce::Fok,
            Some(101),
            15,
        ),
    );
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[1], fill(2, "m2", 10, "m2", 101, 5, 0, 5));
}

#[test]
fn post_only_that_would_take_is_canceled_and_otherwise_rests() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut o = gtc(10, "t", Side::Buy, 100, 3);
    o.post_only = true;
    assert_eq!(
        submit(&mut b, o),
        vec![ended(
            10,
            "t",
            3,
            OrderStatus::Canceled,
            Some(RejectCode::PostOnlyWouldTake)
        )]
    );
    assert_eq!(b.len(), 4);
    o.order_id = OrderId(11);
    o.price = Some(Price(99));
    assert_eq!(submit(&mut b, o), vec![rested(11, 99, 3)]);
    assert!(b.get(OrderId(11)).is_some_and(|r| r.post_only));
}

#[test]
fn stp_cancel_newest_cancels_the_taker_and_keeps_earlier_fills() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let ev = submit(&mut b, gtc(10, "m2", Side::Buy, 103, 20));
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "m2", 100, 5, 0, 15),
            ended(
                10,
                "m2",
                15,
                OrderStatus::Canceled,
                Some(RejectCode::SelfTradePrevented)
            ),
        ]
    );
    assert_eq!(ids(&b), vec![2, 3, 4]);
    assert_eq!(b.get(OrderId(10)), None);
}

#[test]
fn stp_cancel_oldest_cancels_the_maker_and_continues() {
    let mut b = ask_ladder(StpMode::CancelOldest);
    let ev = submit(&mut b, gtc(10, "m2", Side::Buy, 103, 12));
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "m2", 100, 5, 0, 7),
            ended(
                2,
                "m2",
                5,
                OrderStatus::Canceled,
                Some(RejectCode::SelfTradePrevented)
            ),
            fill(3, "m3", 10, "m2", 101, 5, 0, 2),
            fill(4, "m4", 10, "m2", 103, 2, 3, 0),
        ]
    );
    assert_eq!(ids(&b), vec![4]);
}

#[test]
fn stp_cancel_both_cancels_maker_then_taker() {
    let mut b = ask_ladder(StpMode::CancelBoth);
    let ev = submit(&mut b, gtc(10, "m2", Side::Buy, 103, 12));
    assert_eq!(
        ev,
        vec![
            fill(1, "m1", 10, "m2", 100, 5, 0, 7),
            ended(
                2,
                "m2",
                5,
                OrderStatus::Canceled,
                Some(RejectCode::SelfTradePrevented)
            ),
            ended(
                10,
                "m2",
                7,
                OrderStatus::Canceled,
                Some(RejectCode::SelfTradePrevented)
            ),
        ]
    );
    assert_eq!(ids(&b), vec![3, 4]);
    // The emptied level is gone.
    let mut b = book(StpMode::CancelBoth);
    submit(&mut b, gtc(1, "x", Side::Sell, 100, 5));
    submit(&mut b, gtc(2, "x", Side::Buy, 100, 5));
    assert!(b.is_empty());
    assert_eq!((b.best_ask(), b.best_bid()), (None, None));
}

#[test]
fn stp_off_lets_an_account_trade_with_itself() {
    let mut b = ask_ladder(StpMode::Off);
    let ev = submit(&mut b, gtc(10, "m1", Side::Buy, 100, 5));
    assert_eq!(ev, vec![fill(1, "m1", 10, "m1", 100, 5, 0, 0)]);
}

#[test]
fn default_config_is_cancel_newest() {
    assert_eq!(BookConfig::default().stp, StpMode::CancelNewest);
}

#[test]
fn cancel_removes_the_order_and_its_empty_level() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    assert_eq!(b.cancel(OrderId(1), &mut out), Ok(()));
    assert_eq!(out, vec![ended(1, "m1", 5, OrderStatus::Canceled, None)]);
    assert_eq!(b.best_ask(), Some(Price(101)));
    assert_eq!(b.cancel(OrderId(1), &mut out), Err(BookError::UnknownOrder));
    assert_eq!(out.len(), 1);
    b.cancel(OrderId(3), &mut out).expect("resting");
    assert_eq!(ids(&b), vec![2, 4]);
    assert_eq!(b.level_count(Side::Sell), 2);
}

#[test]
fn amend_quantity_down_keeps_priority_and_emits_nothing() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    b.amend(OrderId(2), Some(Qty(2)), None, BAND, &mut out)
        .expect("resting");
    b.amend(OrderId(3), Some(Qty(3)), Some(Price(101)), BAND, &mut out)
        .expect("resting");
    assert!(out.is_empty());
    assert_eq!(ids(&b), vec![1, 2, 3, 4]);
    let mut d = Vec::new();
    b.depth(Side::Sell, 2, &mut d);
    assert_eq!(
        d[1],
        LevelView {
            price: Price(101),
            qty: Qty(5),
            orders: 2
        }
    );
    let ev = submit(&mut b, gtc(10, "t", Side::Buy, 101, 6));
    assert_eq!(ev[1], fill(2, "m2", 10, "t", 101, 1, 1, 0));
}

#[test]
fn amend_quantity_up_loses_priority() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    b.amend(OrderId(2), Some(Qty(6)), None, BAND, &mut out)
        .expect("resting");
    assert_eq!(out, vec![rested(2, 101, 6)]);
    assert_eq!(ids(&b), vec![1, 3, 2, 4]);
}

#[test]
fn amend_price_loses_priority_and_may_cross() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    // Move 2 away and back: it is now behind 3.
    b.amend(OrderId(2), None, Some(Price(102)), BAND, &mut out)
        .expect("resting");
    b.amend(OrderId(2), None, Some(Price(101)), BAND, &mut out)
        .expect("resting");
    assert_eq!(out, vec![rested(2, 102, 5), rested(2, 101, 5)]);
    assert_eq!(ids(&b), vec![1, 3, 2, 4]);
    // A bid amended through the asks trades as the same order id.
    submit(&mut b, gtc(10, "t", Side::Buy, 99, 7));
    out.clear();
    b.amend(OrderId(10), None, Some(Price(100)), BAND, &mut out)
        .expect("resting");
    assert_eq!(
        out,
        vec![fill(1, "m1", 10, "t", 100, 5, 0, 2), rested(10, 100, 2)]
    );
    assert_eq!(b.best_bid(), Some(Price(100)));
}

#[test]
fn amend_of_post_only_that_would_cross_is_canceled() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut o = gtc(10, "t", Side::Buy, 99, 3);
    o.post_only = true;
    submit(&mut b, o);
    let mut out = Vec::new();
    b.amend(OrderId(10), None, Some(Price(100)), BAND, &mut out)
        .expect("resting");
    assert_eq!(
        out,
        vec![ended(
            10,
            "t",
            3,
            OrderStatus::Canceled,
            Some(RejectCode::PostOnlyWouldTake)
        )]
    );
    assert_eq!(b.get(OrderId(10)), None);
    assert_eq!(b.best_bid(), None);
}

#[test]
fn amend_errors() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    let mut out = Vec::new();
    assert_eq!(
        b.amend(OrderId(99), Some(Qty(1)), None, BAND, &mut out),
        Err(BookError::UnknownOrder)
    );
    assert_eq!(
        b.amend(OrderId(1), Some(Qty(0)), None, BAND, &mut out),
        Err(BookError::InvalidAmend)
    );
    assert_eq!(
        b.amend(OrderId(1), Some(Qty(-3)), None, BAND, &mut out),
        Err(BookError::InvalidAmend)
    );
    assert_eq!(b.amend(OrderId(1), None, None, BAND, &mut out), Ok(()));
    assert!(out.is_empty());
    assert_eq!(b.get(OrderId(1)).map(|o| o.leaves), Some(Qty(5)));
}

#[test]
fn depth_best_first_and_resting_orders_round_trip() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    submit(&mut b, gtc(20, "b1", Side::Buy, 98, 1));
    submit(&mut b, gtc(21, "b2", Side::Buy, 99, 2));
    submit(&mut b, gtc(22, "b3", Side::Buy, 98, 3));
    let mut d = Vec::new();
    b.depth(Side::Buy, 10, &mut d);
    assert_eq!(
        d,
        vec![
            LevelView {
                price: Price(99),
                qty: Qty(2),
                orders: 1
            },
            LevelView {
                price: Price(98),
                qty: Qty(4),
                orders: 2
            },
        ]
    );
    b.depth(Side::Sell, 1, &mut d);
    assert_eq!(
        d,
        vec![LevelView {
            price: Price(100),
            qty: Qty(5),
            orders: 1
        }]
    );
    assert_eq!(ids(&b), vec![21, 20, 22, 1, 2, 3, 4]);

    let mut copy = book(StpMode::CancelNewest);
    for o in b.resting_orders() {
        copy.restore_resting(o);
    }
    assert_eq!(
        copy.resting_orders().collect::<Vec<_>>(),
        b.resting_orders().collect::<Vec<_>>()
    );
    let (mut e1, mut e2) = (Vec::new(), Vec::new());
    b.submit(&gtc(30, "t", Side::Sell, 98, 9), BAND, &mut e1);
    copy.submit(&gtc(30, "t", Side::Sell, 98, 9), BAND, &mut e2);
    assert_eq!(e1, e2);
}

#[test]
#[should_panic(expected = "cross")]
fn restore_that_would_cross_panics() {
    let mut b = ask_ladder(StpMode::CancelNewest);
    b.restore_resting(RestingOrder {
        order_id: OrderId(50),
        account: acct("x"),
        side: Side::Buy,
        price: Price(100),
        leaves: Qty(1),
        post_only: false,
    });
}

#[test]
fn slots_are_reused_in_steady_state() {
    let mut b = OrderBook::with_capacity(SymbolId(1), BookConfig::default(), 8);
    let mut out = Vec::new();
    for round in 0..1000u128 {
        for i in 0..8 {
            b.submit(
                &gtc(round * 8 + i, "a", Side::Buy, 100 + i as i64, 1),
                BAND,
                &mut out,
            );
        }
        for i in 0..8 {
            b.cancel(OrderId(round * 8 + i), &mut out).expect("resting");
        }
    }
    assert!(b.is_empty());
    assert_eq!(b.symbol(), SymbolId(1));
}
