//! The order book against an obviously-correct reference model.
//!
//! The model keeps resting orders in a `Vec` with an arrival sequence number and finds the
//! next maker by a linear scan for the best (price, sequence); FOK is decided by running the
//! match on a clone and throwing it away. It shares no code with the book. Thousands of random
//! command sequences (every order type, time in force, post-only, each STP mode, cancels and
//! amends, including unknown ids and invalid amends) must produce identical event streams,
//! identical results and identical books after every command.

use oms_core::book::{
    BookConfig, BookError, Incoming, MatchEvent, OrderBook, RestingOrder, StpMode,
};
use oms_core::{
    AccountId, OrderId, OrderStatus, OrderType, Price, Qty, RejectCode, Side, SymbolId, TimeInForce,
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
struct RefOrder {
    id: OrderId,
    account: AccountId,
    side: Side,
    price: Price,
    leaves: Qty,
    post_only: bool,
    seq: u64,
}

#[derive(Clone, Debug)]
struct RefBook {
    stp: StpMode,
    orders: Vec<RefOrder>,
    seq: u64,
}

fn crosses(side: Side, maker: Price, limit: Price) -> bool {
    match side {
        Side::Buy => maker <= limit,
        Side::Sell => maker >= limit,
    }
}

fn ended(
    id: OrderId,
    account: AccountId,
    leaves: Qty,
    status: OrderStatus,
    reason: Option<RejectCode>,
) -> MatchEvent {
    MatchEvent::Ended {
        order_id: id,
        account,
        leaves,
        status,
        reason,
    }
}

impl RefBook {
    fn new(stp: StpMode) -> Self {
        RefBook {
            stp,
            orders: Vec::new(),
            seq: 0,
        }
    }

    /// Index of the best maker for a taker on `side` limited by `limit`.
    fn best_maker(&self, side: Side, limit: Price) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, o) in self.orders.iter().enumerate() {
            if o.side == side || !crosses(side, o.price, limit) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let b = &self.orders[b];
                    let price_better = match side {
                        Side::Buy => o.price < b.price,
                        Side::Sell => o.price > b.price,
                    };
                    price_better || (o.price == b.price && o.seq < b.seq)
                }
            };
            if better {
                best = Some(i);
            }
        }
        best
    }

    fn take(
        &mut self,
        id: OrderId,
        account: AccountId,
        side: Side,
        limit: Price,
        qty: Qty,
        out: &mut Vec<MatchEvent>,
    ) -> Option<Qty> {
        let mut remaining = qty;
        while remaining.0 > 0 {
            let Some(i) = self.best_maker(side, limit) else {
                break;
            };
            let m = self.orders[i];
            if self.stp != StpMode::Off && m.account == account {
                let stp_ended = |leaves| {
                    ended(
                        id,
                        account,
                        leaves,
                        OrderStatus::Canceled,
                        Some(RejectCode::SelfTradePrevented),
                    )
                };
                match self.stp {
                    StpMode::CancelNewest => {
                        out.push(stp_ended(remaining));
                        return None;
                    }
                    StpMode::CancelOldest | StpMode::CancelBoth => {
                        self.orders.remove(i);
                        out.push(ended(
                            m.id,
                            m.account,
                            m.leaves,
                            OrderStatus::Canceled,
                            Some(RejectCode::SelfTradePrevented),
                        ));
                        if self.stp == StpMode::CancelBoth {
                            out.push(stp_ended(remaining));
                            return None;
                        }
                        continue;
                    }
                    StpMode::Off => unreachable!(),
                }
            }
            let q = Qty(remaining.0.min(m.leaves.0));
            remaining = Qty(remaining.0 - q.0);
            self.orders[i].leaves = Qty(m.leaves.0 - q.0);
            out.push(MatchEvent::Fill {
                maker_order_id: m.id,
                maker_account: m.account,
                taker_order_id: id,
                taker_account: account,
                price: m.price,
                qty: q,
                maker_leaves: self.orders[i].leaves,
                taker_leaves: remaining,
            });
            if self.orders[i].leaves.0 == 0 {
                self.orders.remove(i);
            }
        }
        Some(remaining)
    }

    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        id: OrderId,
        account: AccountId,
        side: Side,
        limit: Price,
        qty: Qty,
        post_only: bool,
        fok: bool,
        market: bool,
        rest: bool,
        out: &mut Vec<MatchEvent>,
    ) {
        if post_only
            && self
                .orders
                .iter()
                .any(|o| o.side != side && crosses(side, o.price, limit))
        {
            out.push(ended(
                id,
                account,
                qty,
                OrderStatus::Canceled,
                Some(RejectCode::PostOnlyWouldTake),
            ));
            return;
        }
        if fok {
            let mut trial = self.clone();
            let mut scratch = Vec::new();
            if trial.take(id, account, side, limit, qty, &mut scratch) != Some(Qty(0)) {
                out.push(ended(
                    id,
                    account,
                    qty,
                    OrderStatus::Expired,
                    Some(RejectCode::FokNotFillable),
                ));
                return;
            }
        }
        let Some(leaves) = self.take(id, account, side, limit, qty, out) else {
            return;
        };
        if leaves.0 == 0 {
            return;
        }
        if market {
            let reason = (leaves == qty).then_some(RejectCode::NoLiquidity);
            out.push(ended(id, account, leaves, OrderStatus::Expired, reason));
        } else if rest {
            self.seq += 1;
            self.orders.push(RefOrder {
                id,
                account,
                side,
                price: limit,
                leaves,
                post_only,
                seq: self.seq,
            });
            out.push(MatchEvent::Rested {
                order_id: id,
                price: limit,
                leaves,
            });
        } else {
            out.push(ended(id, account, leaves, OrderStatus::Expired, None));
        }
    }

    fn submit(&mut self, o: &Incoming, band: (Price, Price), out: &mut Vec<MatchEvent>) {
        let market = o.order_type == OrderType::Market;
        let limit = if market {
            if o.side == Side::Buy { band.1 } else { band.0 }
        } else {
            o.price.expect("limit has a price")
        };
        let fok = o.time_in_force == TimeInForce::Fok;
        let rest = o.time_in_force == TimeInForce::Gtc;
        self.place(
            o.order_id,
            o.account,
            o.side,
            limit,
            o.quantity,
            o.post_only,
            fok,
            market,
            rest,
            out,
        );
    }

    fn cancel(&mut self, id: OrderId, out: &mut Vec<MatchEvent>) -> Result<(), BookError> {
        let i = self
            .orders
            .iter()
            .position(|o| o.id == id)
            .ok_or(BookError::UnknownOrder)?;
        let o = self.orders.remove(i);
        out.push(ended(
            o.id,
            o.account,
            o.leaves,
            OrderStatus::Canceled,
            None,
        ));
        Ok(())
    }

    fn amend(
        &mut self,
        id: OrderId,
        q: Option<Qty>,
        p: Option<Price>,
        out: &mut Vec<MatchEvent>,
    ) -> Result<(), BookError> {
        let i = self
            .orders
            .iter()
            .position(|o| o.id == id)
            .ok_or(BookError::UnknownOrder)?;
        if q.is_some_and(|q| q.0 <= 0) {
            return Err(BookError::InvalidAmend);
        }
        let o = self.orders[i];
        let (price, leaves) = (p.unwrap_or(o.price), q.unwrap_or(o.leaves));
        if price == o.price && leaves <= o.leaves {
            self.orders[i].leaves = leaves;
            return Ok(());
        }
        self.orders.remove(i);
        self.place(
            id,
            o.account,
            o.side,
            price,
            leaves,
            o.post_only,
            false,
            false,
            true,
            out,
        );
        Ok(())
    }

    /// Bids best→worst, then asks best→worst, each level by arrival.
    fn resting(&self) -> Vec<RestingOrder> {
        let mut v = self.orders.clone();
        v.sort_by_key(|o| {
            let side = if o.side == Side::Buy { 0 } else { 1 };
            let price = if o.side == Side::Buy {
                -o.price.0
            } else {
                o.price.0
            };
            (side, price, o.seq)
        });
        v.into_iter()
            .map(|o| RestingOrder {
                order_id: o.id,
                account: o.account,
                side: o.side,
                price: o.price,
                leaves: o.leaves,
                post_only: o.post_only,
            })
            .collect()
    }
}

/// One generated command.
#[derive(Clone, Copy, Debug)]
enum Op {
    Place(Incoming, (Price, Price)),
    Cancel(Target),
    Amend(Target, Option<Qty>, Option<Price>),
}

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];

fn account(i: usize) -> AccountId {
    AccountId::new(ACCOUNTS[i % ACCOUNTS.len()]).expect("valid account")
}

/// Which order a cancel or amend targets, resolved against the book when it runs: mostly a
/// resting order, sometimes one that is gone or was never issued.
#[derive(Clone, Copy, Debug)]
struct Target(u64);

impl Target {
    fn resolve(self, resting: &[RestingOrder], next_id: u128) -> OrderId {
        match (self.0 % 10, resting.len()) {
            (0, _) | (_, 0) => OrderId(1 + u128::from(self.0 >> 8) % (next_id + 3)),
            (_, n) => resting[(self.0 >> 8) as usize % n].order_id,
        }
    }
}

/// Decodes raw random numbers into an op; `next_id` is the id a place takes.
fn decode(r: [u64; 8], next_id: &mut u128) -> Op {
    let pick = |v: u64, n: u64| v % n;
    match pick(r[0], 100) {
        0..=54 => {
            *next_id += 1;
            let market = pick(r[1], 10) == 0;
            let tif = match pick(r[2], 10) {
                0..=5 => TimeInForce::Gtc,
                6..=7 => TimeInForce::Ioc,
                _ => TimeInForce::Fok,
            };
            let lo = 93 + pick(r[6], 5) as i64;
            Op::Place(
                Incoming {
                    order_id: OrderId(*next_id),
                    account: account(pick(r[3], 3) as usize),
                    side: if r[4] & 1 == 0 { Side::Buy } else { Side::Sell },
                    order_type: if market {
                        OrderType::Market
                    } else {
                        OrderType::Limit
                    },
                    time_in_force: if market && tif == TimeInForce::Gtc {
                        TimeInForce::Ioc
                    } else {
                        tif
                    },
                    post_only: !market && pick(r[4] >> 1, 7) == 0,
                    quantity: Qty(1 + pick(r[5], 10) as i64),
                    price: (!market).then_some(Price(90 + pick(r[7], 21) as i64)),
                },
                (Price(lo), Price(lo + 4 + pick(r[6] >> 8, 10) as i64)),
            )
        }
        55..=69 => Op::Cancel(Target(r[1])),
        _ => {
            let id = Target(r[1]);
            let q = match pick(r[2], 8) {
                0..=2 => None,
                3 => Some(Qty(pick(r[3], 3) as i64 - 1)),
                _ => Some(Qty(1 + pick(r[3], 12) as i64)),
            };
            let p = match pick(r[4], 3) {
                0 if q.is_some() => None,
                _ => Some(Price(90 + pick(r[5], 21) as i64)),
            };
            Op::Amend(id, q, p)
        }
    }
}

fn stp_of(v: u64) -> StpMode {
    [
        StpMode::CancelNewest,
        StpMode::CancelOldest,
        StpMode::CancelBoth,
        StpMode::Off,
    ][(v % 4) as usize]
}

/// How often each outcome occurred: fills, rests, user cancels, STP cancels, post-only
/// cancels, FOK kills, NO_LIQUIDITY, plain expiries, error results.
type Coverage = [usize; 9];

fn tally(cov: &mut Coverage, events: &[MatchEvent]) {
    for e in events {
        let k = match e {
            MatchEvent::Fill { .. } => 0,
            MatchEvent::Rested { .. } => 1,
            MatchEvent::Ended {
                reason: None,
                status: OrderStatus::Canceled,
                ..
            } => 2,
            MatchEvent::Ended {
                reason: Some(RejectCode::SelfTradePrevented),
                ..
            } => 3,
            MatchEvent::Ended {
                reason: Some(RejectCode::PostOnlyWouldTake),
                ..
            } => 4,
            MatchEvent::Ended {
                reason: Some(RejectCode::FokNotFillable),
                ..
            } => 5,
            MatchEvent::Ended {
                reason: Some(RejectCode::NoLiquidity),
                ..
            } => 6,
            MatchEvent::Ended { .. } => 7,
        };
        cov[k] += 1;
    }
}

/// Runs `ops` on both; returns the first divergence.
fn run(stp: StpMode, ops: &[Op], cov: &mut Coverage) -> Result<(), String> {
    let mut book = OrderBook::with_capacity(SymbolId(0), BookConfig { stp }, 64);
    let mut model = RefBook::new(stp);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    let mut resting: Vec<RestingOrder> = Vec::new();
    let mut next_id = 0;
    for (step, op) in ops.iter().enumerate() {
        got.clear();
        want.clear();
        let (r1, r2) = match *op {
            Op::Place(o, band) => {
                next_id = o.order_id.0;
                book.submit(&o, band, &mut got);
                model.submit(&o, band, &mut want);
                (Ok(()), Ok(()))
            }
            Op::Cancel(t) => {
                let id = t.resolve(&resting, next_id);
                (book.cancel(id, &mut got), model.cancel(id, &mut want))
            }
            Op::Amend(t, q, p) => {
                let id = t.resolve(&resting, next_id);
                (
                    book.amend(id, q, p, (Price(0), Price(0)), &mut got),
                    model.amend(id, q, p, &mut want),
                )
            }
        };
        if r1 != r2 || got != want {
            return Err(format!(
                "step {step} {op:?}: result {r1:?} vs {r2:?}\n got  {got:?}\n want {want:?}"
            ));
        }
        resting.clear();
        resting.extend(book.resting_orders());
        if resting != model.resting() {
            return Err(format!(
                "step {step} {op:?}: books differ\n got  {resting:?}\n want {:?}",
                model.resting()
            ));
        }
        if book.len() != resting.len() {
            return Err(format!(
                "step {step}: len {} vs {}",
                book.len(),
                resting.len()
            ));
        }
        tally(cov, &got);
        if r1.is_err() {
            cov[8] += 1;
        }
    }
    Ok(())
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// 10,000 seeded sequences of 60 commands each (600k commands), every STP mode.
#[test]
fn ten_thousand_random_sequences_match_the_reference() {
    let sequences = 10_000u64;
    let mut cov = Coverage::default();
    for seed in 0..sequences {
        let mut rng = SplitMix(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let stp = stp_of(rng.next());
        let mut next_id = 0u128;
        let ops: Vec<Op> = (0..60)
            .map(|_| {
                let r = std::array::from_fn(|_| rng.next());
                decode(r, &mut next_id)
            })
            .collect();
        if let Err(e) = run(stp, &ops, &mut cov) {
            panic!("seed {seed} ({stp:?}): {e}");
        }
    }
    // The generator must exercise every outcome, not just rest orders.
    assert!(cov.iter().all(|&n| n > 1_000), "coverage too thin: {cov:?}");
    eprintln!(
        "coverage [fill, rested, cancel, stp, post-only, fok, no-liquidity, expired, err]: {cov:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The same comparison with shrinking, for readable counterexamples.
    #[test]
    fn prop_book_matches_reference(stp in any::<u64>(), raw in proptest::collection::vec(any::<[u64; 8]>(), 1..120)) {
        let mut next_id = 0u128;
        let ops: Vec<Op> = raw.into_iter().map(|r| decode(r, &mut next_id)).collect();
        if let Err(e) = run(stp_of(stp), &ops, &mut Coverage::default()) {
            prop_assert!(false, "{}", e);
        }
    }
}
