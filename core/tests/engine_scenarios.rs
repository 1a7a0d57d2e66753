//! The processor end to end: what each command produces, and the read queries.

use oms_core::ports::OrderQuery;
use oms_core::{
    AccountId, AmendOrder, CancelOrder, CandleInterval, Command, Engine, EngineConfig, Event,
    HaltScope, InstrumentTable, Liquidity, Money, OrderId, OrderStatus, OrderType, PlaceOrder,
    Price, Qty, RejectCode, RiskConfig, RiskDecision, SetHalt, Side, SnapshotError, SymbolId,
    TimeInForce, ValidatedOrder,
};

const BTC: SymbolId = SymbolId(0);
const T0: u64 = 1_700_000_000_000_000_000;

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn engine() -> Engine {
    Engine::new(
        InstrumentTable::demo(),
        EngineConfig {
            risk: RiskConfig {
                dev_default_equity: Some(Money::parse("1000000").unwrap()),
                ..RiskConfig::default()
            },
            ..EngineConfig::default()
        },
    )
}

struct Book {
    e: Engine,
    ts: u64,
    out: Vec<Event>,
}

impl Book {
    fn new() -> Self {
        Book {
            e: engine(),
            ts: T0,
            out: Vec::new(),
        }
    }

    fn apply(&mut self, c: Command) -> &[Event] {
        self.out.clear();
        self.e.apply(&c, &mut self.out);
        &self.out
    }

    #[allow(clippy::too_many_arguments)]
    fn place_full(
        &mut self,
        id: u128,
        who: &str,
        side: Side,
        qty: i64,
        price: Option<i64>,
        tif: TimeInForce,
        post_only: bool,
        risk: RiskDecision,
    ) -> &[Event] {
        self.ts += 1_000_000;
        let cmd = Command::Place(PlaceOrder {
            order_id: OrderId(id),
            account: acct(who),
            order: ValidatedOrder {
                symbol: BTC,
                side,
                order_type: if price.is_some() {
                    OrderType::Limit
                } else {
                    OrderType::Market
                },
                time_in_force: tif,
                post_only,
                quantity: Qty(qty),
                price: price.map(Price),
                client_order_id: None,
            },
            ts: self.ts,
            idempotency_key: None,
            fingerprint: 0,
            correlation_id: None,
            risk,
        });
        self.apply(cmd)
    }

    fn limit(&mut self, id: u128, who: &str, side: Side, qty: i64, price: i64) -> &[Event] {
        self.place_full(
            id,
            who,
            side,
            qty,
            Some(price),
            TimeInForce::Gtc,
            false,
            RiskDecision::Unchecked,
        )
    }

    fn cancel(&mut self, id: u128, who: &str) -> &[Event] {
        self.ts += 1;
        let c = Command::Cancel(CancelOrder {
            order_id: OrderId(id),
            account: acct(who),
            symbol: BTC,
            ts: self.ts,
            correlation_id: None,
        });
        self.apply(c)
    }

    fn amend(&mut self, id: u128, who: &str, qty: Option<i64>, price: Option<i64>) -> &[Event] {
        self.ts += 1;
        let c = Command::Amend(AmendOrder {
            order_id: OrderId(id),
            account: acct(who),
            symbol: BTC,
            quantity: qty.map(Qty),
            price: price.map(Price),
            ts: self.ts,
            correlation_id: None,
            risk: RiskDecision::Unchecked,
        });
        self.apply(c)
    }

    fn status(&self, id: u128) -> (OrderStatus, Option<RejectCode>) {
        let o = self.e.order(OrderId(id)).expect("order exists");
        (o.status, o.reject_reason)
    }
}

fn statuses(events: &[Event]) -> Vec<(u128, OrderStatus)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::OrderUpdate { order, .. } => Some((order.order_id.0, order.status)),
            _ => None,
        })
        .collect()
}

fn rejected(events: &[Event]) -> Vec<RejectCode> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CommandRejected { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cross_reports_both_sides_prints_and_settles() {
    let mut b = Book::new();
    assert_eq!(
        statuses(b.limit(1, "maker", Side::Sell, 5000, 4_500_000)),
        [(1, OrderStatus::Accepted)]
    );
    b.limit(2, "maker", Side::Sell, 5000, 4_500_100);
    let ev = b.limit(3, "taker", Side::Buy, 8000, 4_500_100).to_vec();
    assert_eq!(
        statuses(&ev),
        [
            (3, OrderStatus::Accepted),
            (1, OrderStatus::Filled),
            (3, OrderStatus::PartiallyFilled),
            (2, OrderStatus::PartiallyFilled),
            (3, OrderStatus::Filled),
        ]
    );
    let execs: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Execution(x) => Some(*x),
            _ => None,
        })
        .collect();
    assert_eq!(execs.len(), 4);
    assert_eq!(
        execs.iter().map(|x| x.exec_id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let (m, t) = (execs[0], execs[1]);
    assert_eq!(
        (m.order_id, m.liquidity, m.trade_id),
        (OrderId(1), Liquidity::Maker, 1)
    );
    assert_eq!(
        (t.order_id, t.liquidity, t.trade_id),
        (OrderId(3), Liquidity::Taker, 1)
    );
    let last = execs[3];
    assert_eq!(
        (last.cum_qty, last.leaves_qty, last.last_px, last.avg_px),
        (Qty(8000), Qty(0), Price(4_500_100), Price(4_500_037)) // (5000×0 + 3000×100)/8000 → .375 floor
    );
    let trades: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(trades.len(), 2);
    assert_eq!((trades[0].aggressor, trades[0].qty), (Side::Buy, Qty(5000)));
    // One candle update per trade and interval (1s, 1m, 5m, 1h, 1d).
    assert_eq!(
        ev.iter().filter(|e| matches!(e, Event::Candle(_))).count(),
        10
    );

    // Queries.
    assert_eq!(
        b.e.recent_trades(BTC, 10)
            .iter()
            .map(|t| t.trade_id)
            .collect::<Vec<_>>(),
        [2, 1]
    );
    let c = b.e.candles(BTC, CandleInterval::M1, 10);
    assert_eq!(
        (c.len(), c[0].volume, c[0].trades, c[0].close),
        (1, Qty(8000), 2, Price(4_500_100))
    );
    assert_eq!(b.e.book(BTC).best_ask(), Some(Price(4_500_100)));
    assert_eq!(b.e.book(BTC).get(OrderId(2)).unwrap().leaves, Qty(2000));
    let taker = b.e.risk().positions(&acct("taker"));
    assert_eq!((taker[0].qty, taker[0].avg_entry), (8000, Price(4_500_037)));
    assert_eq!(b.e.risk().positions(&acct("maker"))[0].qty, -8000);
    assert_eq!(b.e.risk().reference_price(BTC), Price(4_500_100));
    assert_eq!(
        b.e.risk().account(&acct("taker")).unwrap().reserved_margin,
        Money::ZERO
    );
}

#[test]
fn risk_verdicts_recorded_unchecked_and_replayed() {
    let mut b = Book::new();
    let ev = b
        .place_full(
            1,
            "a",
            Side::Buy,
            1000,
            Some(4_500_000),
            TimeInForce::Gtc,
            false,
            RiskDecision::Rejected(RejectCode::InsufficientMargin),
        )
        .to_vec();
    assert_eq!(statuses(&ev), [(1, OrderStatus::Rejected)]);
    assert!(matches!(ev[1], Event::Risk(r) if r.code == RejectCode::InsufficientMargin));
    assert_eq!(
        b.status(1),
        (OrderStatus::Rejected, Some(RejectCode::InsufficientMargin))
    );
    assert!(b.e.book(BTC).is_empty());

    // Unchecked: the processor decides (out of band here).
    let ev = b.limit(2, "a", Side::Buy, 1000, 5_000_000).to_vec();
    assert!(matches!(ev[1], Event::Risk(r) if r.code == RejectCode::PriceOutOfBand));

    // Accepted: reserves exactly what was recorded.
    b.place_full(
        3,
        "a",
        Side::Buy,
        1000,
        Some(4_500_000),
        TimeInForce::Gtc,
        false,
        RiskDecision::Accepted {
            reserved: Money(123),
        },
    );
    assert_eq!(
        b.e.risk().account(&acct("a")).unwrap().reserved_margin,
        Money(123)
    );

    // A halt command stops new orders.
    b.apply(Command::Halt(SetHalt {
        scope: HaltScope::Global,
        halted: true,
        ts: T0,
    }));
    b.limit(4, "a", Side::Buy, 1000, 4_500_000);
    assert_eq!(
        b.status(4),
        (OrderStatus::Rejected, Some(RejectCode::TradingHalted))
    );
}

#[test]
fn tif_post_only_and_market_outcomes() {
    let mut b = Book::new();
    b.limit(1, "m", Side::Sell, 1000, 4_500_000);
    let po = b
        .place_full(
            2,
            "t",
            Side::Buy,
            1000,
            Some(4_500_000),
            TimeInForce::Gtc,
            true,
            RiskDecision::Unchecked,
        )
        .to_vec();
    assert_eq!(
        statuses(&po),
        [(2, OrderStatus::Accepted), (2, OrderStatus::Canceled)]
    );
    assert_eq!(b.status(2).1, Some(RejectCode::PostOnlyWouldTake));
    b.place_full(
        3,
        "t",
        Side::Buy,
        2000,
        Some(4_500_000),
        TimeInForce::Fok,
        false,
        RiskDecision::Unchecked,
    );
    assert_eq!(
        b.status(3),
        (OrderStatus::Expired, Some(RejectCode::FokNotFillable))
    );
    b.place_full(
        4,
        "t",
        Side::Buy,
        2000,
        Some(4_500_000),
        TimeInForce::Ioc,
        false,
        RiskDecision::Unchecked,
    );
    assert_eq!(b.status(4), (OrderStatus::Expired, None));
    assert_eq!(b.e.order(OrderId(4)).unwrap().filled_quantity, Qty(1000));
    b.place_full(
        5,
        "t",
        Side::Buy,
        1000,
        None,
        TimeInForce::Ioc,
        false,
        RiskDecision::Unchecked,
    );
    assert_eq!(
        b.status(5),
        (OrderStatus::Expired, Some(RejectCode::NoLiquidity))
    );
    // Self-trade prevention: cancel newest.
    b.limit(6, "m", Side::Sell, 1000, 4_500_000);
    b.limit(7, "m", Side::Buy, 1000, 4_500_000);
    assert_eq!(
        b.status(7),
        (OrderStatus::Canceled, Some(RejectCode::SelfTradePrevented))
    );
    assert_eq!(b.status(6).0, OrderStatus::Accepted);
    // Everything that ended released its reservation.
    let t = b.e.risk().account(&acct("t")).unwrap();
    assert_eq!((t.reserved_margin, t.open_orders), (Money::ZERO, 0));
}

#[test]
fn duplicate_and_malformed_records_do_nothing() {
    let mut b = Book::new();
    b.limit(1, "a", Side::Buy, 1000, 4_400_000);
    let before = b.e.state_hash();
    assert!(b.limit(1, "a", Side::Buy, 1000, 4_400_000).is_empty());
    assert!(b.limit(2, "a", Side::Buy, 0, 4_400_000).is_empty());
    assert!(b.limit(3, "a", Side::Buy, 1000, -5).is_empty());
    assert_eq!((b.e.order_count(), b.e.state_hash()), (1, before));
}

#[test]
fn cancel_only_own_open_orders() {
    let mut b = Book::new();
    b.limit(1, "a", Side::Buy, 1000, 4_400_000);
    assert_eq!(rejected(b.cancel(1, "b")), [RejectCode::OrderNotOpen]);
    assert_eq!(rejected(b.cancel(9, "a")), [RejectCode::OrderNotOpen]);
    assert_eq!(statuses(b.cancel(1, "a")), [(1, OrderStatus::Canceled)]);
    assert_eq!(rejected(b.cancel(1, "a")), [RejectCode::OrderNotOpen]);
    assert!(b.e.book(BTC).is_empty());
    let v = b.e.risk().account(&acct("a")).unwrap();
    assert_eq!((v.reserved_margin, v.open_orders), (Money::ZERO, 0));
    let o = b.e.order(OrderId(1)).unwrap();
    assert_eq!((o.version, o.updated_at > o.created_at), (2, true));
}

#[test]
fn amend_is_new_total_quantity_and_keeps_priority_only_going_down() {
    let mut b = Book::new();
    b.limit(1, "a", Side::Sell, 3000, 4_500_000);
    b.limit(2, "b", Side::Sell, 3000, 4_500_000);
    b.limit(3, "t", Side::Buy, 1000, 4_500_000); // fills 1000 of #1
    assert_eq!(
        rejected(b.amend(1, "a", Some(1000), None)),
        [RejectCode::InvalidAmend]
    );
    assert_eq!(
        rejected(b.amend(1, "a", Some(3000), None)),
        [RejectCode::InvalidAmend]
    );
    assert_eq!(
        rejected(b.amend(1, "a", None, Some(4_500_000))),
        [RejectCode::InvalidAmend]
    );
    assert_eq!(
        rejected(b.amend(1, "b", Some(2000), None)),
        [RejectCode::OrderNotOpen]
    );
    // Down to a total of 2000: leaves 1000, still first in the queue.
    let ev = b.amend(1, "a", Some(2000), None).to_vec();
    assert_eq!(statuses(&ev), [(1, OrderStatus::PartiallyFilled)]);
    assert_eq!(b.e.book(BTC).get(OrderId(1)).unwrap().leaves, Qty(1000));
    b.limit(4, "t", Side::Buy, 1000, 4_500_000);
    assert_eq!(b.status(1).0, OrderStatus::Filled);
    assert_eq!(b.status(2).0, OrderStatus::Accepted);
    // Up loses priority; a crossing price change trades.
    b.limit(5, "c", Side::Sell, 1000, 4_500_000);
    b.amend(2, "b", Some(4000), None);
    b.limit(6, "t", Side::Buy, 1000, 4_500_000);
    assert_eq!(b.status(5).0, OrderStatus::Filled);
    b.limit(7, "d", Side::Buy, 1000, 4_490_000);
    let ev = b.amend(7, "d", None, Some(4_500_000)).to_vec();
    assert_eq!(
        statuses(&ev),
        [
            (7, OrderStatus::Accepted),
            (2, OrderStatus::PartiallyFilled),
            (7, OrderStatus::Filled)
        ]
    );
    assert_eq!(b.e.order(OrderId(7)).unwrap().price, Some(Price(4_500_000)));
    // Risk follows the amend: only #2's 3000 leaves are reserved for b.
    let r = b.e.risk().open_order(OrderId(2)).unwrap();
    assert_eq!((r.quantity, r.leaves), (Qty(4000), Qty(3000)));
}

#[test]
fn list_orders_pages_newest_first_with_filters() {
    let mut b = Book::new();
    for i in 1..=5 {
        b.limit(i, "a", Side::Buy, 1000, 4_400_000 + i as i64);
    }
    b.limit(6, "b", Side::Buy, 1000, 4_400_000);
    b.cancel(2, "a");
    let q = |cursor, status| OrderQuery {
        account: acct("a"),
        symbol: Some(BTC),
        status,
        limit: 2,
        cursor,
    };
    let ids = |v: Vec<&oms_core::Order>| v.iter().map(|o| o.order_id.0).collect::<Vec<_>>();
    let p1 = b.e.list_orders(&q(None, None));
    assert_eq!(ids(p1.clone()), [5, 4]);
    let last = p1[1];
    let p2 =
        b.e.list_orders(&q(Some((last.created_at, last.order_id)), None));
    assert_eq!(ids(p2), [3, 2]);
    assert_eq!(
        ids(b.e.list_orders(&q(None, Some(OrderStatus::Canceled)))),
        [2]
    );
    assert_eq!(
        ids(b.e.list_orders(&OrderQuery {
            symbol: Some(SymbolId(1)),
            ..q(None, None)
        })),
        Vec::<u128>::new()
    );
    assert!(
        b.e.list_orders(&OrderQuery {
            account: acct("nobody"),
            ..q(None, None)
        })
        .is_empty()
    );
}

#[test]
fn damaged_snapshots_are_refused() {
    let mut b = Book::new();
    b.limit(1, "a", Side::Buy, 1000, 4_400_000);
    b.limit(2, "b", Side::Sell, 500, 4_400_000);
    let img = b.e.snapshot();
    let t = InstrumentTable::demo();
    let cfg = || b.e.config().clone();
    let ok = Engine::restore(t.clone(), cfg(), &img).unwrap();
    assert_eq!(ok.state_hash(), b.e.state_hash());
    assert_eq!(ok.order(OrderId(1)), b.e.order(OrderId(1)));

    let mut flipped = img.clone();
    flipped[img.len() / 2] ^= 0x40;
    assert_eq!(
        Engine::restore(t.clone(), cfg(), &flipped).err(),
        Some(SnapshotError::Checksum)
    );
    for cut in [0, 5, 12, img.len() - 1] {
        assert!(
            Engine::restore(t.clone(), cfg(), &img[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut magic = img.clone();
    magic[0] = b'X';
    assert_eq!(
        Engine::restore(t.clone(), cfg(), &magic).err(),
        Some(SnapshotError::BadMagic)
    );
    let other = InstrumentTable::from_toml(
        &oms_core::instrument::DEFAULT_INSTRUMENTS_TOML.replace("SOL/USD", "ADA/USD"),
    )
    .unwrap();
    assert_eq!(
        Engine::restore(other, cfg(), &img).err(),
        Some(SnapshotError::InstrumentMismatch)
    );
}
