//! Bounded hot state: the engine holds open orders and only the newest `retain_terminal`
//! terminal ones; older terminal orders come out of `take_evicted` exactly as they were,
//! oldest (first ended) first, and snapshots carry the queue so a restore evicts the same.

use oms_core::command::{CancelAll, CancelAllTrigger};
use oms_core::ports::OrderQuery;
use oms_core::{
    AccountId, AmendOrder, CancelOrder, ClientOrderId, Command, Engine, EngineConfig, Event,
    HaltScope, InstrumentTable, Money, Order, OrderId, OrderStatus, OrderType, PlaceOrder, Price,
    Qty, RejectCode, RiskConfig, RiskDecision, SetHalt, Side, SnapshotError, SymbolId, TimeInForce,
    ValidatedOrder,
};

pub(crate) const BTC: SymbolId = SymbolId(0);
pub(crate) const T0: u64 = 1_700_000_000_000_000_000;
/// BTC reference price (45000.00); the band is ±5 %.
pub(crate) const REF: i64 = 4_500_000;

pub(crate) fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub(crate) fn config(retain_terminal: usize) -> EngineConfig {
    EngineConfig {
        risk: RiskConfig {
            dev_default_equity: Some(Money::parse("1000000").unwrap()),
            ..RiskConfig::default()
        },
        retain_terminal,
        ..EngineConfig::default()
    }
}

/// One place command; `price: None` is a market order.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub id: u128,
    pub who: &'a str,
    pub side: Side,
    pub qty: i64,
    pub price: Option<i64>,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub coid: Option<&'a str>,
    pub risk: RiskDecision,
}

impl<'a> Place<'a> {
    pub(crate) fn limit(id: u128, who: &'a str, side: Side, qty: i64, price: i64) -> Self {
        Place {
            id,
            who,
            side,
            qty,
            price: Some(price),
            tif: TimeInForce::Gtc,
            post_only: false,
            coid: None,
            risk: RiskDecision::Unchecked,
        }
    }

    pub(crate) fn cmd(&self, ts: u64) -> Command {
        Command::Place(PlaceOrder {
            order_id: OrderId(self.id),
            account: acct(self.who),
            order: ValidatedOrder {
                symbol: BTC,
                side: self.side,
                order_type: if self.price.is_some() {
                    OrderType::Limit
                } else {
                    OrderType::Market
                },
                time_in_force: self.tif,
                post_only: self.post_only,
                quantity: Qty(self.qty),
                price: self.price.map(Price),
                client_order_id: self.coid.map(|c| ClientOrderId::new(c).unwrap()),
            },
            ts,
            idempotency_key: None,
            fingerprint: 0,
            correlation_id: None,
            risk: self.risk,
        })
    }
}

pub(crate) fn cancel_cmd(id: u128, who: &str, ts: u64) -> Command {
    Command::Cancel(CancelOrder {
        order_id: OrderId(id),
        account: acct(who),
        symbol: BTC,
        ts,
        correlation_id: None,
    })
}

pub(crate) fn amend_cmd(
    id: u128,
    who: &str,
    qty: Option<i64>,
    price: Option<i64>,
    ts: u64,
) -> Command {
    Command::Amend(AmendOrder {
        order_id: OrderId(id),
        account: acct(who),
        symbol: BTC,
        quantity: qty.map(Qty),
        price: price.map(Price),
        ts,
        correlation_id: None,
        risk: RiskDecision::Unchecked,
    })
}

pub(crate) fn cancel_all_cmd(who: &str, ts: u64) -> Command {
    Command::CancelAll(CancelAll {
        account: acct(who),
        symbol: None,
        side: None,
        trigger: CancelAllTrigger::Request,
        ts,
        correlation_id: None,
    })
}

/// An engine and a clock; every command gets a later timestamp.
struct Run {
    e: Engine,
    ts: u64,
    out: Vec<Event>,
}

impl Run {
    fn new(retain: usize) -> Self {
        Run {
            e: Engine::new(InstrumentTable::demo(), config(retain)),
            ts: T0,
            out: Vec::new(),
        }
    }

    /// Applies `c` and returns the orders it evicted.
    fn apply(&mut self, c: impl FnOnce(u64) -> Command) -> Vec<Order> {
        self.ts += 1_000_000;
        self.out.clear();
        self.e.apply(&c(self.ts), &mut self.out);
        let mut ev = Vec::new();
        self.e.take_evicted(&mut ev);
        ev
    }

    fn place(&mut self, p: Place<'_>) -> Vec<Order> {
        self.apply(|ts| p.cmd(ts))
    }

    fn cancel(&mut self, id: u128, who: &str) -> Vec<Order> {
        self.apply(|ts| cancel_cmd(id, who, ts))
    }

    fn held(&self, id: u128) -> Option<Order> {
        self.e.order(OrderId(id)).cloned()
    }

    fn list(&self, who: &str) -> Vec<u128> {
        self.e
            .list_orders(&OrderQuery {
                account: acct(who),
                symbol: None,
                status: None,
                limit: 100,
                cursor: None,
            })
            .iter()
            .map(|o| o.order_id.0)
            .collect()
    }
}

fn ids(orders: &[Order]) -> Vec<u128> {
    orders.iter().map(|o| o.order_id.0).collect()
}

#[test]
fn the_first_orders_to_end_leave_first_and_at_most_retain_stay() {
    let mut r = Run::new(2);
    for id in 1..=5 {
        assert!(
            r.place(Place::limit(id, "a", Side::Buy, 1000, 4_400_000))
                .is_empty()
        );
    }
    assert!(r.cancel(3, "a").is_empty());
    assert!(r.cancel(1, "a").is_empty());
    assert_eq!(r.e.terminal_held(), 2);
    let three = r.held(3).unwrap();
    let ev = r.cancel(4, "a");
    assert_eq!(ev, [three], "the whole order, as it was held");
    assert_eq!(ev[0].status, OrderStatus::Canceled);
    let one = r.held(1).unwrap();
    assert_eq!(r.cancel(2, "a"), [one]);
    assert_eq!((r.held(3), r.held(1)), (None, None));
    assert!(r.held(4).is_some() && r.held(2).is_some());
    assert_eq!(r.e.terminal_held(), 2);
    assert_eq!(r.e.order_count(), 3);
    assert_eq!(r.e.open_orders_of(&acct("a"), None, None), [OrderId(5)]);
    assert_eq!(r.list("a"), [5, 4, 2]);
    // A cancel of an evicted order is refused like that of any ended order.
    r.cancel(3, "a");
    assert!(matches!(
        r.out[..],
        [Event::CommandRejected {
            code: RejectCode::OrderNotOpen,
            ..
        }]
    ));
}

#[test]
fn risk_rejected_places_are_terminal_and_evicted_too() {
    let mut r = Run::new(1);
    let rejected = |id| Place {
        risk: RiskDecision::Rejected(RejectCode::InsufficientMargin),
        ..Place::limit(id, "a", Side::Buy, 1000, REF)
    };
    assert!(r.place(rejected(1)).is_empty());
    assert_eq!(r.e.terminal_held(), 1);
    let ev = r.place(rejected(2));
    assert_eq!(ids(&ev), [1]);
    assert_eq!(
        (ev[0].status, ev[0].reject_reason),
        (OrderStatus::Rejected, Some(RejectCode::InsufficientMargin))
    );
    // The processor's own risk check (a halt) rejects and evicts the same way.
    r.apply(|ts| {
        Command::Halt(SetHalt {
            scope: HaltScope::Global,
            halted: true,
            ts,
        })
    });
    let ev = r.place(Place::limit(3, "a", Side::Buy, 1000, REF));
    assert_eq!(ids(&ev), [2]);
    let three = r.held(3).unwrap();
    assert_eq!(
        (three.status, three.reject_reason),
        (OrderStatus::Rejected, Some(RejectCode::TradingHalted))
    );
    assert_eq!((r.e.order_count(), r.list("a")), (1, vec![3]));
}

#[test]
fn with_retain_zero_fills_expiries_and_book_cancels_leave_in_the_same_command() {
    let mut r = Run::new(0);
    assert!(
        r.place(Place::limit(1, "m", Side::Sell, 2000, REF))
            .is_empty()
    );
    let ioc = |id, qty| Place {
        tif: TimeInForce::Ioc,
        ..Place::limit(id, "t", Side::Buy, qty, REF)
    };
    let ev = r.place(ioc(2, 1000));
    assert_eq!(ids(&ev), [2]);
    assert_eq!(ev[0].status, OrderStatus::Filled);
    assert_eq!(r.held(1).unwrap().status, OrderStatus::PartiallyFilled);
    // The maker fills first, then the taker's remainder expires.
    let ev = r.place(ioc(3, 3000));
    assert_eq!(ids(&ev), [1, 3]);
    assert_eq!(
        (ev[0].status, ev[1].status, ev[1].filled_quantity),
        (OrderStatus::Filled, OrderStatus::Expired, Qty(1000))
    );
    // A post-only that would take is canceled by the book, and evicted.
    r.place(Place::limit(4, "m", Side::Sell, 1000, REF));
    let po = Place {
        post_only: true,
        ..Place::limit(5, "t", Side::Buy, 1000, REF)
    };
    let ev = r.place(po);
    assert_eq!(
        (ids(&ev), ev[0].reject_reason),
        (vec![5], Some(RejectCode::PostOnlyWouldTake))
    );
    // A cancel-all ends (and evicts) every open order of the account, oldest first.
    r.place(Place::limit(6, "m", Side::Sell, 1000, REF + 100));
    let ev = r.apply(|ts| cancel_all_cmd("m", ts));
    assert_eq!(ids(&ev), [4, 6]);
    assert_eq!((r.e.order_count(), r.e.terminal_held()), (0, 0));
    assert!(r.list("m").is_empty() && r.list("t").is_empty());
}

#[test]
fn open_and_partially_filled_orders_are_never_evicted() {
    let mut r = Run::new(0);
    r.place(Place::limit(1, "m", Side::Sell, 3000, REF));
    r.place(Place::limit(2, "m", Side::Sell, 3000, REF + 100));
    r.place(Place::limit(3, "t", Side::Buy, 1000, REF));
    // An amend that keeps it open keeps it held.
    assert!(
        r.apply(|ts| amend_cmd(2, "m", Some(2000), None, ts))
            .is_empty()
    );
    assert_eq!(
        (r.held(1).unwrap().status, r.held(2).unwrap().quantity),
        (OrderStatus::PartiallyFilled, Qty(2000))
    );
    assert_eq!(r.held(3), None);
    assert_eq!(
        r.e.open_orders_of(&acct("m"), None, None),
        [OrderId(1), OrderId(2)]
    );
}

#[test]
fn client_order_id_lookups_find_held_orders_only() {
    let mut r = Run::new(1);
    let with = |id, coid| Place {
        coid: Some(coid),
        ..Place::limit(id, "a", Side::Buy, 1000, 4_400_000)
    };
    let x = ClientOrderId::new("x").unwrap();
    let by_x = |r: &Run| r.e.order_by_client_id(&acct("a"), &x).map(|o| o.order_id.0);
    r.place(with(1, "x"));
    r.cancel(1, "a");
    assert_eq!(by_x(&r), Some(1), "a held ended order is still found");
    r.place(with(2, "x"));
    assert_eq!(by_x(&r), Some(2), "the open one first");
    assert_eq!(ids(&r.cancel(2, "a")), [1]);
    assert_eq!(by_x(&r), Some(2));
    r.place(with(3, "y"));
    assert_eq!(ids(&r.cancel(3, "a")), [2]);
    assert_eq!(by_x(&r), None);
    assert_eq!(r.list("a"), [3]);
}

#[test]
fn a_snapshot_keeps_evicted_orders_not_yet_taken() {
    let table = InstrumentTable::demo();
    let mut e = Engine::new(table.clone(), config(0));
    let mut out = Vec::new();
    for (i, id) in [1u128, 2].into_iter().enumerate() {
        let ts = T0 + i as u64 * 10;
        e.apply(
            &Place::limit(id, "a", Side::Buy, 1000, 4_400_000).cmd(ts),
            &mut out,
        );
        e.apply(&cancel_cmd(id, "a", ts + 1), &mut out);
    }
    let mut restored = Engine::restore(table, config(0), &e.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), e.state_hash());
    let owed = e.state_hash();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    e.take_evicted(&mut a);
    restored.take_evicted(&mut b);
    assert_eq!(ids(&a), [1, 2]);
    assert_eq!(a, b);
    let drained = e.state_hash();
    assert_ne!(drained, owed);
    assert_eq!(restored.state_hash(), drained);
    // Taking them is part of the state: the hash says whether they are still owed.
    let again = Engine::restore(InstrumentTable::demo(), config(0), &e.snapshot()).unwrap();
    assert_eq!(again.state_hash(), drained);
}

/// Places and cancels `ids` in that order, each in its own command.
fn ended_in_order(retain: usize, ended: &[u128]) -> Engine {
    let mut e = Engine::new(InstrumentTable::demo(), config(retain));
    let mut out = Vec::new();
    for id in 1..=4 {
        e.apply(
            &Place::limit(id, "a", Side::Buy, 1000, 4_400_000).cmd(T0 + id as u64),
            &mut out,
        );
    }
    for (i, id) in ended.iter().enumerate() {
        e.apply(&cancel_cmd(*id, "a", T0 + 100 + i as u64), &mut out);
    }
    e
}

#[test]
fn a_restore_with_a_smaller_retain_evicts_the_oldest_excess() {
    let e = ended_in_order(10, &[3, 1, 4]);
    let mut r = Engine::restore(InstrumentTable::demo(), config(1), &e.snapshot()).unwrap();
    let mut ev = Vec::new();
    r.take_evicted(&mut ev);
    assert_eq!(ids(&ev), [3, 1]);
    assert_eq!(r.terminal_held(), 1);
    assert!(r.order(OrderId(4)).is_some() && r.order(OrderId(2)).is_some());
}

fn reseal(mut data: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&data);
    data.extend_from_slice(&crc.to_le_bytes());
    data
}

/// The same image in layout 1: one exec/trade counter for all symbols (layout 3 has one pair
/// per symbol; these engines never traded, so every counter is still 1), no eviction queue
/// and no untaken evictions at the end.
fn as_version_1(image: &[u8], queued: usize) -> Vec<u8> {
    let tail = 8 + 16 * queued + 8 + 4;
    let data = &image[..image.len() - tail];
    // Header (magic, version), symbol count, symbol names (u16 length + bytes).
    let n = u16::from_le_bytes([data[10], data[11]]) as usize;
    let mut at = 12;
    for _ in 0..n {
        at += 2 + u16::from_le_bytes([data[at], data[at + 1]]) as usize;
    }
    let mut v1 = data[..at].to_vec();
    v1[8..10].copy_from_slice(&1u16.to_le_bytes());
    v1.extend_from_slice(&1u64.to_le_bytes());
    v1.extend_from_slice(&1u64.to_le_bytes());
    v1.extend_from_slice(&data[at + 16 * n..]);
    reseal(v1)
}

#[test]
fn version_1_images_restore_with_the_queue_rebuilt_from_end_times() {
    let e = ended_in_order(10, &[3, 1, 2]);
    let v1 = as_version_1(&e.snapshot(), 3);
    let r = Engine::restore(InstrumentTable::demo(), config(10), &v1).unwrap();
    assert_eq!(r.state_hash(), e.state_hash());
    assert_eq!(
        Engine::snapshot_state_hash(&v1),
        Err(SnapshotError::Version(1))
    );
    let mut r = Engine::restore(InstrumentTable::demo(), config(1), &v1).unwrap();
    let mut ev = Vec::new();
    r.take_evicted(&mut ev);
    assert_eq!(ids(&ev), [3, 1]);
}

#[test]
fn a_queue_that_names_an_open_order_or_a_newer_layout_is_refused() {
    let e = ended_in_order(10, &[1]);
    let image = e.snapshot();
    // The tail is: queue length 1, order id 1, no untaken evictions, CRC.
    let at = image.len() - 4 - 8 - 16;
    assert_eq!(image[at..at + 16], 1u128.to_le_bytes());
    let mut bad = image[..image.len() - 4].to_vec();
    bad[at..at + 16].copy_from_slice(&2u128.to_le_bytes());
    assert_eq!(
        Engine::restore(InstrumentTable::demo(), config(10), &reseal(bad)).unwrap_err(),
        SnapshotError::Invalid("eviction queue entry")
    );
    let mut newer = image[..image.len() - 4].to_vec();
    newer[8..10].copy_from_slice(&4u16.to_le_bytes());
    assert_eq!(
        Engine::restore(InstrumentTable::demo(), config(10), &reseal(newer)).unwrap_err(),
        SnapshotError::Version(4)
    );
}
