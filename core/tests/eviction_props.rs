//! Eviction against random logs, with a small `retain_terminal`, next to a shadow engine
//! that keeps everything: eviction changes no event, holds at most `retain_terminal` ended
//! orders, never drops an open one, hands out each ended order exactly as the shadow still
//! has it, and a snapshot anywhere (with or without evictions still owed) restores to the same
//! state and the same eviction stream.

use std::collections::HashSet;

use oms_core::ports::OrderQuery;
use oms_core::{
    Command, Engine, Event, InstrumentTable, Order, OrderId, RejectCode, RiskDecision, Side,
    TimeInForce,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::eviction::{Place, REF, T0, acct, amend_cmd, cancel_all_cmd, cancel_cmd, config};

const WHO: [&str; 3] = ["a", "b", "c"];
const COIDS: [&str; 2] = ["x", "y"];

#[derive(Clone, Copy, Debug)]
enum Op {
    Place {
        who: usize,
        side: Side,
        kind: u8,
        /// Ticks of 1.00 from the reference.
        off: i64,
        lots: i64,
        coid: Option<usize>,
        rejected: bool,
    },
    Cancel(usize, usize),
    Amend(usize, Option<i64>, Option<i64>),
    CancelAll(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let place = (
        0..WHO.len(),
        side,
        0u8..6,
        -5i64..=5,
        1i64..=5,
        proptest::option::of(0..COIDS.len()),
        0u8..8,
    )
        .prop_map(|(who, side, kind, off, lots, coid, r)| Op::Place {
            who,
            side,
            kind,
            off,
            lots,
            coid,
            rejected: r == 0,
        });
    prop_oneof![
        6 => place,
        3 => (any::<usize>(), 0..WHO.len()).prop_map(|(i, w)| Op::Cancel(i, w)),
        2 => (any::<usize>(), proptest::option::of(1i64..=6), proptest::option::of(-5i64..=5))
            .prop_map(|(i, q, p)| Op::Amend(i, q, p)),
        1 => (0..WHO.len()).prop_map(Op::CancelAll),
    ]
}

/// The log for `ops`: order ids 1, 2, … in place order, a millisecond apart. Cancels and
/// amends name an earlier order (mostly its own account's).
fn render(ops: &[Op]) -> Vec<Command> {
    let mut placed: Vec<(u128, usize)> = Vec::new();
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let ts = T0 + (i as u64 + 1) * 1_000_000;
        let earlier = |k: usize| placed.get(k % placed.len().max(1)).copied();
        let cmd = match *op {
            Op::Place {
                who,
                side,
                kind,
                off,
                lots,
                coid,
                rejected,
            } => {
                let id = placed.len() as u128 + 1;
                placed.push((id, who));
                let price = Some(REF + off * 100);
                let (price, tif, post_only) = match kind {
                    0 => (price, TimeInForce::Gtc, false),
                    1 => (price, TimeInForce::Gtc, true),
                    2 => (price, TimeInForce::Ioc, false),
                    3 => (price, TimeInForce::Fok, false),
                    4 => (None, TimeInForce::Ioc, false),
                    _ => (None, TimeInForce::Fok, false),
                };
                Place {
                    id,
                    who: WHO[who],
                    side,
                    qty: lots * 1000,
                    price,
                    tif,
                    post_only,
                    coid: coid.map(|c| COIDS[c]),
                    risk: if rejected {
                        RiskDecision::Rejected(RejectCode::InsufficientMargin)
                    } else {
                        RiskDecision::Unchecked
                    },
                }
                .cmd(ts)
            }
            Op::Cancel(k, w) => match earlier(k) {
                // One in three names another account's order.
                Some((id, owner)) => cancel_cmd(id, WHO[if k % 3 == 0 { w } else { owner }], ts),
                None => cancel_all_cmd(WHO[w], ts),
            },
            Op::Amend(k, lots, off) => match earlier(k) {
                Some((id, owner)) => amend_cmd(
                    id,
                    WHO[owner],
                    lots.map(|l| l * 1000),
                    off.map(|o| REF + o * 100),
                    ts,
                ),
                None => cancel_all_cmd(WHO[0], ts),
            },
            Op::CancelAll(w) => cancel_all_cmd(WHO[w], ts),
        };
        out.push(cmd);
    }
    out
}

fn list(e: &Engine, who: &str) -> Vec<OrderId> {
    e.list_orders(&OrderQuery {
        account: acct(who),
        symbol: None,
        status: None,
        limit: usize::MAX,
        cursor: None,
    })
    .iter()
    .map(|o| o.order_id)
    .collect()
}

fn check(
    ops: &[Op],
    retain: usize,
    snap_at: usize,
    drain_before_snapshot: bool,
) -> Result<(), TestCaseError> {
    let cmds = render(ops);
    let table = InstrumentTable::demo();
    let mut shadow = Engine::new(table.clone(), config(usize::MAX));
    let mut main = Engine::new(table.clone(), config(retain));
    let (mut out_s, mut out_m): (Vec<Event>, Vec<Event>) = (Vec::new(), Vec::new());
    let mut stream: Vec<Order> = Vec::new();
    let mut gone: HashSet<OrderId> = HashSet::new();
    let ids = 1..=cmds.len() as u128;
    for c in &cmds {
        out_s.clear();
        out_m.clear();
        shadow.apply(c, &mut out_s);
        main.apply(c, &mut out_m);
        prop_assert_eq!(&out_m, &out_s, "eviction changed what {:?} did", c);
        let from = stream.len();
        main.take_evicted(&mut stream);
        for o in &stream[from..] {
            // (c) exactly the order as it was held: the shadow's copy, which cannot change
            // any more because the order has ended.
            prop_assert!(o.status.is_terminal());
            prop_assert_eq!(Some(o), shadow.order(o.order_id));
            prop_assert!(main.order(o.order_id).is_none());
            prop_assert!(gone.insert(o.order_id), "{} evicted twice", o.order_id);
        }
        // (a) the bound, and nothing evicted early.
        let mut ended = 0;
        for id in ids.clone().map(OrderId) {
            let Some(s) = shadow.order(id) else {
                prop_assert!(main.order(id).is_none());
                continue;
            };
            ended += usize::from(s.status.is_terminal());
            match main.order(id) {
                Some(m) => prop_assert_eq!(m, s),
                // (b) only ended orders are ever missing.
                None => prop_assert!(s.status.is_terminal() && gone.contains(&id)),
            }
        }
        prop_assert!(main.terminal_held() <= retain);
        prop_assert_eq!(main.terminal_held(), ended.min(retain));
        for who in WHO {
            let held: Vec<OrderId> = list(&shadow, who)
                .into_iter()
                .filter(|id| !gone.contains(id))
                .collect();
            prop_assert_eq!(list(&main, who), held);
            prop_assert_eq!(
                main.open_orders_of(&acct(who), None, None),
                shadow.open_orders_of(&acct(who), None, None)
            );
        }
    }

    // (d) snapshot after `snap_at` commands, restore, replay the rest.
    let (first, rest) = cmds.split_at(snap_at);
    let mut a = Engine::new(table.clone(), config(retain));
    let mut replayed: Vec<Order> = Vec::new();
    for (i, c) in first.iter().enumerate() {
        a.apply(c, &mut out_m);
        if drain_before_snapshot || i + 1 < first.len() {
            a.take_evicted(&mut replayed);
        }
    }
    let mut b = Engine::restore(table, config(retain), &a.snapshot())
        .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
    prop_assert_eq!(b.state_hash(), a.state_hash());
    b.take_evicted(&mut replayed);
    for c in rest {
        b.apply(c, &mut out_m);
        b.take_evicted(&mut replayed);
    }
    prop_assert_eq!(b.state_hash(), main.state_hash());
    prop_assert_eq!(replayed, stream);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn eviction_is_bounded_exact_and_snapshot_transparent(
        ops in proptest::collection::vec(op(), 1..80),
        retain in 0usize..5,
        snap in any::<proptest::sample::Index>(),
        drain in any::<bool>(),
    ) {
        let snap_at = snap.index(ops.len() + 1);
        check(&ops, retain, snap_at, drain)?;
    }
}

/// The random logs above reach every way an order ends (so "exactly as held" covers them).
#[test]
fn the_random_logs_end_orders_every_way() {
    use oms_core::OrderStatus::*;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = HashSet::new();
    for _ in 0..64 {
        let ops = proptest::collection::vec(op(), 60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut e = Engine::new(InstrumentTable::demo(), config(0));
        let mut out = Vec::new();
        let mut ev = Vec::new();
        for c in render(&ops) {
            e.apply(&c, &mut out);
            e.take_evicted(&mut ev);
        }
        seen.extend(ev.iter().map(|o| (o.status, o.filled_quantity.0 > 0)));
    }
    for want in [
        (Filled, true),
        (Canceled, false),
        (Canceled, true),
        (Expired, false),
        (Expired, true),
        (Rejected, false),
    ] {
        assert!(seen.contains(&want), "never evicted {want:?}: {seen:?}");
    }
}
