//! Matching throughput of `oms_core::book::OrderBook`, and of crates.io order books on the
//! very same command stream.
//!
//! Streams are generated once, outside the timed region, with a seeded RNG and a simulation on
//! our own book so that every cancel and amend targets an order that is actually resting. Each
//! book gets the stream pre-translated into its own command type; a timed iteration starts from
//! a fresh book prefilled with the same ~1k resting orders (setup, untimed) and applies the
//! whole stream. Throughput is commands per second.
//!
//! Mixes:
//! - `exchange_core`: ≈9% GTC place, 3% IOC, 6% cancel, 82% amend (70% move price, 12% reduce
//!   quantity), one symbol, ~1k resting orders (the exchange-core benchmark's shape).
//! - `place_cancel_cross`: 45% passive GTC place, 35% cancel, 10% crossing GTC, 10% IOC.
//!
//! Self-trade prevention is off in our book for the comparison (the peers run without it);
//! `oms_stp_cancel_newest` shows its cost with the default mode and distinct accounts.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use oms_core::book::{BookConfig, Incoming, MatchEvent, OrderBook, StpMode};
use oms_core::{AccountId, OrderId, OrderType, Price, Qty, Side, SymbolId, TimeInForce};

const MID: i64 = 100_000;
const PREFILL: usize = 1_000;
const STREAM: usize = 200_000;
const BAND: (Price, Price) = (Price(1), Price(i64::MAX));

/// One command in book-neutral form.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Place {
        id: u64,
        side: Side,
        price: i64,
        qty: i64,
        ioc: bool,
        account: u8,
    },
    Cancel {
        id: u64,
    },
    Amend {
        id: u64,
        price: Option<i64>,
        qty: Option<i64>,
    },
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Mix {
    ExchangeCore,
    PlaceCancelCross,
}

/// The live set of resting ids, O(1) insert/remove/pick.
#[derive(Default)]
struct Live {
    ids: Vec<u64>,
    pos: HashMap<u64, usize>,
}
impl Live {
    fn insert(&mut self, id: u64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.pos.entry(id) {
            e.insert(self.ids.len());
            self.ids.push(id);
        }
    }
    fn remove(&mut self, id: u64) {
        if let Some(i) = self.pos.remove(&id) {
            let last = self.ids.pop().expect("non-empty");
            if last != id {
                self.ids[i] = last;
                self.pos.insert(last, i);
            }
        }
    }
    fn pick(&self, rng: &mut Rng) -> Option<u64> {
        (!self.ids.is_empty()).then(|| self.ids[rng.below(self.ids.len() as u64) as usize])
    }
}

fn account(i: u8) -> AccountId {
    AccountId::new(&format!("acct-{i}")).expect("valid account")
}

/// A passive price for `side`, 0..50 ticks behind the mid.
fn passive(rng: &mut Rng, side: Side) -> i64 {
    let off = 1 + rng.below(50) as i64;
    match side {
        Side::Buy => MID - off,
        Side::Sell => MID + off,
    }
}

/// A price crossing into the other side by up to `depth` ticks past the mid.
fn aggressive(rng: &mut Rng, side: Side, depth: u64) -> i64 {
    let off = rng.below(depth) as i64;
    match side {
        Side::Buy => MID + off,
        Side::Sell => MID - off,
    }
}

fn side(rng: &mut Rng) -> Side {
    if rng.next() & 1 == 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

/// Generates (prefill, stream) for `mix`, simulating on our book to keep targets valid.
fn generate(mix: Mix, seed: u64) -> (Vec<Cmd>, Vec<Cmd>) {
    let mut rng = Rng(seed);
    let mut book =
        OrderBook::with_capacity(SymbolId(0), BookConfig { stp: StpMode::Off }, 4 * PREFILL);
    let mut live = Live::default();
    let mut out = Vec::new();
    let mut next_id = 0u64;
    let mut prefill = Vec::with_capacity(PREFILL);
    let mut stream = Vec::with_capacity(STREAM);
    for n in 0..PREFILL + STREAM {
        let is_prefill = n < PREFILL;
        let roll = rng.below(100);
        let cmd = if is_prefill {
            next_id += 1;
            let s = if n % 2 == 0 { Side::Buy } else { Side::Sell };
            Some(Cmd::Place {
                id: next_id,
                side: s,
                price: passive(&mut rng, s),
                qty: 1 + rng.below(20) as i64,
                ioc: false,
                account: rng.below(16) as u8,
            })
        } else {
            // Keep the book near its working size whatever the fills do.
            let (place, cancel) = match live.ids.len() {
                n if n < PREFILL * 9 / 10 => (true, false),
                n if n > PREFILL * 11 / 10 => (false, true),
                _ => (false, false),
            };
            let account = rng.below(16) as u8;
            match mix {
                Mix::ExchangeCore => match roll {
                    _ if place => None,
                    _ if cancel => live.pick(&mut rng).map(|id| Cmd::Cancel { id }),
                    0..=8 => None,
                    9..=11 => {
                        next_id += 1;
                        let s = side(&mut rng);
                        Some(Cmd::Place {
                            id: next_id,
                            side: s,
                            price: aggressive(&mut rng, s, 5),
                            qty: 1 + rng.below(20) as i64,
                            ioc: true,
                            account,
                        })
                    }
                    12..=17 => live.pick(&mut rng).map(|id| Cmd::Cancel { id }),
                    18..=87 => live.pick(&mut rng).map(|id| {
                        let o = book.get(OrderId(u128::from(id))).expect("live order rests");
                        let price = if rng.below(20) == 0 {
                            aggressive(&mut rng, o.side, 3)
                        } else {
                            passive(&mut rng, o.side)
                        };
                        Cmd::Amend {
                            id,
                            price: Some(price),
                            qty: None,
                        }
                    }),
                    _ => live.pick(&mut rng).map(|id| {
                        let o = book.get(OrderId(u128::from(id))).expect("live order rests");
                        if o.leaves.0 > 1 {
                            Cmd::Amend {
                                id,
                                price: None,
                                qty: Some(1 + rng.below(o.leaves.0 as u64 - 1) as i64),
                            }
                        } else {
                            Cmd::Amend {
                                id,
                                price: Some(passive(&mut rng, o.side)),
                                qty: None,
                            }
                        }
                    }),
                },
                Mix::PlaceCancelCross => match roll {
                    _ if place => None,
                    _ if cancel => live.pick(&mut rng).map(|id| Cmd::Cancel { id }),
                    0..=44 => None,
                    45..=79 => live.pick(&mut rng).map(|id| Cmd::Cancel { id }),
                    80..=89 => {
                        next_id += 1;
                        let s = side(&mut rng);
                        Some(Cmd::Place {
                            id: next_id,
                            side: s,
                            price: aggressive(&mut rng, s, 8),
                            qty: 1 + rng.below(40) as i64,
                            ioc: false,
                            account,
                        })
                    }
                    _ => {
                        next_id += 1;
                        let s = side(&mut rng);
                        Some(Cmd::Place {
                            id: next_id,
                            side: s,
                            price: aggressive(&mut rng, s, 8),
                            qty: 1 + rng.below(40) as i64,
                            ioc: true,
                            account,
                        })
                    }
                },
            }
            .or_else(|| {
                next_id += 1;
                let s = side(&mut rng);
                Some(Cmd::Place {
                    id: next_id,
                    side: s,
                    price: passive(&mut rng, s),
                    qty: 1 + rng.below(20) as i64,
                    ioc: false,
                    account,
                })
            })
        };
        let cmd = cmd.expect("a command");
        out.clear();
        apply_ours(&mut book, &ours(&cmd), &mut out);
        for e in &out {
            match *e {
                MatchEvent::Rested { order_id, .. } => live.insert(order_id.0 as u64),
                MatchEvent::Fill {
                    maker_order_id,
                    maker_leaves,
                    taker_order_id,
                    taker_leaves,
                    ..
                } => {
                    if maker_leaves.0 == 0 {
                        live.remove(maker_order_id.0 as u64);
                    }
                    // An amended order re-entering is the taker and may be used up.
                    if taker_leaves.0 == 0 {
                        live.remove(taker_order_id.0 as u64);
                    }
                }
                MatchEvent::Ended { order_id, .. } => live.remove(order_id.0 as u64),
            }
        }
        if is_prefill {
            prefill.push(cmd)
        } else {
            stream.push(cmd)
        }
    }
    (prefill, stream)
}

// ---- oms -----------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Ours {
    Submit(Incoming),
    Cancel(OrderId),
    Amend(OrderId, Option<Qty>, Option<Price>),
}

fn ours(c: &Cmd) -> Ours {
    match *c {
        Cmd::Place {
            id,
            side,
            price,
            qty,
            ioc,
            account: a,
        } => Ours::Submit(Incoming {
            order_id: OrderId(u128::from(id)),
            account: account(a),
            side,
            order_type: OrderType::Limit,
            time_in_force: if ioc {
                TimeInForce::Ioc
            } else {
                TimeInForce::Gtc
            },
            post_only: false,
            quantity: Qty(qty),
            price: Some(Price(price)),
        }),
        Cmd::Cancel { id } => Ours::Cancel(OrderId(u128::from(id))),
        Cmd::Amend { id, price, qty } => {
            Ours::Amend(OrderId(u128::from(id)), qty.map(Qty), price.map(Price))
        }
    }
}

#[inline]
fn apply_ours(book: &mut OrderBook, c: &Ours, out: &mut Vec<MatchEvent>) {
    match c {
        Ours::Submit(o) => book.submit(o, BAND, out),
        Ours::Cancel(id) => {
            let _ = book.cancel(*id, out);
        }
        Ours::Amend(id, q, p) => {
            let _ = book.amend(*id, *q, *p, BAND, out);
        }
    }
}

fn ours_prefilled(prefill: &[Ours], stp: StpMode) -> OrderBook {
    let mut book = OrderBook::with_capacity(SymbolId(0), BookConfig { stp }, 4 * PREFILL);
    let mut out = Vec::with_capacity(256);
    for c in prefill {
        apply_ours(&mut book, c, &mut out);
        out.clear();
    }
    book
}

fn run_ours(mut book: OrderBook, stream: &[Ours]) -> OrderBook {
    let mut out = Vec::with_capacity(256);
    let mut n = 0usize;
    for c in stream {
        apply_ours(&mut book, c, &mut out);
        n += out.len();
        out.clear();
    }
    black_box(n);
    book
}

// ---- matchcore -----------------------------------------------------------------------------

mod mc {
    use super::Cmd;
    use matchcore::*;
    use std::collections::HashMap;

    /// Translates to matchcore commands: it numbers orders by the submitting command's sequence.
    pub fn translate(prefill: &[Cmd], stream: &[Cmd]) -> (Vec<Command>, Vec<Command>) {
        let mut ids: HashMap<u64, u64> = HashMap::new();
        let mut seq = 0u64;
        let mut one = |c: &Cmd| {
            let meta = CommandMeta {
                sequence_number: SequenceNumber(seq),
                timestamp: Timestamp(seq),
            };
            let kind = match *c {
                Cmd::Place {
                    id,
                    side,
                    price,
                    qty,
                    ioc,
                    ..
                } => {
                    ids.insert(id, seq);
                    let side = if side == oms_core::Side::Buy {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    let tif = if ioc {
                        TimeInForce::Ioc
                    } else {
                        TimeInForce::Gtc
                    };
                    CommandKind::Submit(SubmitCmd {
                        order: NewOrder::Limit(LimitOrder::new(
                            Price(price as u64),
                            QuantityPolicy::Standard {
                                quantity: Quantity(qty as u64),
                            },
                            OrderFlags::new(side, false, tif),
                        )),
                    })
                }
                Cmd::Cancel { id } => CommandKind::Cancel(CancelCmd {
                    order_id: OrderId(ids[&id]),
                    order_kind: OrderKind::Limit,
                }),
                Cmd::Amend { id, price, qty } => {
                    let mut patch = LimitOrderPatch::new();
                    if let Some(p) = price {
                        patch = patch.with_price(Price(p as u64));
                    }
                    if let Some(q) = qty {
                        patch = patch.with_quantity_policy(QuantityPolicy::Standard {
                            quantity: Quantity(q as u64),
                        });
                    }
                    CommandKind::Amend(AmendCmd {
                        order_id: OrderId(ids[&id]),
                        patch: AmendPatch::Limit(patch),
                    })
                }
            };
            seq += 1;
            Command { meta, kind }
        };
        let p = prefill.iter().map(&mut one).collect();
        let s = stream.iter().map(&mut one).collect();
        (p, s)
    }

    pub fn prefilled(prefill: &[Command]) -> OrderBook {
        let mut book = OrderBook::new("BTC/USD");
        for c in prefill {
            std::hint::black_box(book.execute(c));
        }
        book
    }

    pub fn run(mut book: OrderBook, stream: &[Command]) -> OrderBook {
        for c in stream {
            std::hint::black_box(book.execute(c));
        }
        book
    }
}

// ---- orderbook-rs --------------------------------------------------------------------------

mod obrs {
    use super::Cmd;
    use orderbook_rs::{Id, OrderBook, Side, TimeInForce};
    use pricelevel::{OrderUpdate, Price, Quantity};

    fn side(s: oms_core::Side) -> Side {
        if s == oms_core::Side::Buy {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    #[inline]
    pub fn apply(book: &OrderBook<()>, c: &Cmd) {
        match *c {
            Cmd::Place {
                id,
                side: s,
                price,
                qty,
                ioc,
                ..
            } => {
                let tif = if ioc {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Gtc
                };
                let _ = std::hint::black_box(book.add_limit_order(
                    Id::Sequential(id),
                    price as u128,
                    qty as u64,
                    side(s),
                    tif,
                    None,
                ));
            }
            Cmd::Cancel { id } => {
                let _ = std::hint::black_box(book.cancel_order(Id::Sequential(id)));
            }
            Cmd::Amend { id, price, qty } => {
                let order_id = Id::Sequential(id);
                let update = match (price, qty) {
                    (Some(p), None) => OrderUpdate::UpdatePrice {
                        order_id,
                        new_price: Price::new(p as u128),
                    },
                    (None, Some(q)) => OrderUpdate::UpdateQuantity {
                        order_id,
                        new_quantity: Quantity::new(q as u64),
                    },
                    (Some(p), Some(q)) => OrderUpdate::UpdatePriceAndQuantity {
                        order_id,
                        new_price: Price::new(p as u128),
                        new_quantity: Quantity::new(q as u64),
                    },
                    (None, None) => return,
                };
                let _ = std::hint::black_box(book.update_order(update));
            }
        }
    }

    pub fn prefilled(prefill: &[Cmd]) -> OrderBook<()> {
        let book = OrderBook::new("BTC/USD");
        for c in prefill {
            apply(&book, c);
        }
        book
    }

    pub fn run(book: OrderBook<()>, stream: &[Cmd]) -> OrderBook<()> {
        for c in stream {
            apply(&book, c);
        }
        book
    }
}

fn bench_mix(c: &mut Criterion, name: &str, mix: Mix) {
    let (prefill, stream) = generate(mix, 0x0005_eed0 ^ name.len() as u64);
    let mut g = c.benchmark_group(format!("matching/{name}"));
    g.throughput(Throughput::Elements(stream.len() as u64));
    g.sample_size(10);

    let (op, os): (Vec<Ours>, Vec<Ours>) = (
        prefill.iter().map(ours).collect(),
        stream.iter().map(ours).collect(),
    );
    g.bench_function("oms", |b| {
        b.iter_batched(
            || ours_prefilled(&op, StpMode::Off),
            |book| run_ours(book, &os),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("oms_stp_cancel_newest", |b| {
        b.iter_batched(
            || ours_prefilled(&op, StpMode::CancelNewest),
            |book| run_ours(book, &os),
            BatchSize::PerIteration,
        )
    });

    let (mp, ms) = mc::translate(&prefill, &stream);
    g.bench_function("matchcore", |b| {
        b.iter_batched(
            || mc::prefilled(&mp),
            |book| mc::run(book, &ms),
            BatchSize::PerIteration,
        )
    });

    g.bench_function("orderbook-rs", |b| {
        b.iter_batched(
            || obrs::prefilled(&prefill),
            |book| obrs::run(book, &stream),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn matching(c: &mut Criterion) {
    bench_mix(c, "exchange_core", Mix::ExchangeCore);
    bench_mix(c, "place_cancel_cross", Mix::PlaceCancelCross);
}

criterion_group!(benches, matching);
criterion_main!(benches);
