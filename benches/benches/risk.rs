//! Pre-trade risk per order, and the whole processor (`Engine::apply`) on a mixed stream.
//!
//! - `risk/check_place+on_order_done`: one R1 check with reservation and its release, for
//!   orders spread over 1000 accounts and 3 symbols (the ingress risk stage's cost per order).
//! - `engine/apply_mixed_unchecked`: the processor deciding risk itself (single-process mode).
//! - `engine/apply_mixed_recorded`: the processor replaying recorded verdicts (the log
//!   written by the ingress pipeline; also what recovery replays).
//!
//! Streams are generated before timing with a seeded RNG; each timed iteration starts from a
//! fresh engine (setup, untimed) and applies the whole stream. Throughput is commands/s.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use oms_core::ids::{IdGen, Uuid7Gen};
use oms_core::{
    AccountId, AmendOrder, CancelOrder, Command, Engine, EngineConfig, InstrumentTable, Money,
    OrderId, OrderType, PlaceOrder, Price, Qty, RiskConfig, RiskDecision, RiskEngine, Side,
    SymbolId, TimeInForce, ValidatedOrder,
};

const ACCOUNTS: usize = 1000;
const STREAM: usize = 100_000;

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
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

fn accounts() -> Vec<AccountId> {
    (0..ACCOUNTS)
        .map(|i| AccountId::new(&format!("acct-{i:04}")).unwrap())
        .collect()
}

fn risk_config() -> RiskConfig {
    RiskConfig {
        dev_default_equity: Some(Money::parse("10000000").unwrap()),
        ..RiskConfig::default()
    }
}

/// A limit or market order near the reference price of a random symbol.
fn order(t: &InstrumentTable, rng: &mut Rng) -> ValidatedOrder {
    let symbol = SymbolId(rng.below(3) as u16);
    let ins = t.get(symbol);
    let r = ins.reference_price.0;
    let step = (r / 2000 / ins.tick).max(1) * ins.tick;
    let side = if rng.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    };
    let off = rng.range(-8, 6) * step;
    let price = match side {
        Side::Buy => r + off,
        Side::Sell => r - off,
    };
    let qty = (ins.min_qty.0 * rng.range(1, 50)).min(ins.max_qty.0);
    let kind = rng.below(100);
    let (order_type, time_in_force, post_only, price) = match kind {
        0..=59 => (OrderType::Limit, TimeInForce::Gtc, false, Some(price)),
        60..=69 => (OrderType::Limit, TimeInForce::Gtc, true, Some(price)),
        70..=84 => (OrderType::Limit, TimeInForce::Ioc, false, Some(price)),
        85..=89 => (OrderType::Limit, TimeInForce::Fok, false, Some(price)),
        _ => (OrderType::Market, TimeInForce::Ioc, false, None),
    };
    ValidatedOrder {
        symbol,
        side,
        order_type,
        time_in_force,
        post_only,
        quantity: Qty(qty),
        price: price.map(Price),
        client_order_id: None,
    }
}

/// 75% places, 18% cancels, 7% amends of recent orders, from 1000 accounts on 3 symbols.
fn stream(t: &InstrumentTable) -> Vec<Command> {
    let mut rng = Rng(0xbe9c);
    let mut ids = Uuid7Gen::new(7);
    let accts = accounts();
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut placed: Vec<(OrderId, AccountId, SymbolId)> = Vec::new();
    let mut out = Vec::with_capacity(STREAM);
    while out.len() < STREAM {
        ts += rng.below(200_000);
        let roll = rng.below(100);
        if roll < 75 || placed.is_empty() {
            let account = accts[rng.below(ACCOUNTS as u64) as usize];
            let o = order(t, &mut rng);
            let order_id = ids.next_order_id(ts);
            placed.push((order_id, account, o.symbol));
            out.push(Command::Place(PlaceOrder {
                order_id,
                account,
                order: o,
                ts,
                idempotency_key: None,
                fingerprint: 0,
                correlation_id: None,
                risk: RiskDecision::Unchecked,
            }));
        } else {
            let back = (rng.below(200) as usize).min(placed.len() - 1);
            let (order_id, account, symbol) = placed[placed.len() - 1 - back];
            if roll < 93 {
                out.push(Command::Cancel(CancelOrder {
                    order_id,
                    account,
                    symbol,
                    ts,
                    correlation_id: None,
                }));
            } else {
                let ins = t.get(symbol);
                out.push(Command::Amend(AmendOrder {
                    order_id,
                    account,
                    symbol,
                    quantity: Some(Qty(ins.min_qty.0 * rng.range(1, 50))),
                    price: None,
                    ts,
                    correlation_id: None,
                    risk: RiskDecision::Unchecked,
                }));
            }
        }
    }
    out
}

/// The same stream with the verdicts an ingress risk stage (fed the processor's events)
/// would have recorded.
fn recorded(t: &InstrumentTable, cmds: &[Command]) -> Vec<Command> {
    let mut ingress = RiskEngine::new(t, risk_config());
    let mut e = Engine::new(t.clone(), config());
    let mut out = Vec::new();
    cmds.iter()
        .map(|c| {
            let mut c = *c;
            match &mut c {
                Command::Place(p) => {
                    p.risk = match ingress.check_place(&p.account, p.order_id, &p.order) {
                        Ok(reserved) => RiskDecision::Accepted { reserved },
                        Err(code) => RiskDecision::Rejected(code),
                    }
                }
                Command::Amend(a) => {
                    if let Some(o) = ingress
                        .open_order(a.order_id)
                        .filter(|o| o.account == a.account)
                    {
                        let filled = o.quantity - o.leaves;
                        let total = a.quantity.unwrap_or(o.quantity);
                        if total > filled && total != o.quantity {
                            a.risk = match ingress.check_amend(
                                &a.account,
                                a.order_id,
                                total - filled,
                                None,
                            ) {
                                Ok(reserved) => RiskDecision::Accepted { reserved },
                                Err(code) => RiskDecision::Rejected(code),
                            };
                        }
                    }
                }
                _ => {}
            }
            out.clear();
            e.apply(&c, &mut out);
            for ev in &out {
                ingress.on_event(ev);
            }
            c
        })
        .collect()
}

fn config() -> EngineConfig {
    EngineConfig {
        risk: risk_config(),
        ..EngineConfig::default()
    }
}

fn bench_risk(c: &mut Criterion) {
    let t = InstrumentTable::demo();
    let accts = accounts();
    let mut rng = Rng(42);
    let orders: Vec<(AccountId, ValidatedOrder)> = (0..4096)
        .map(|_| {
            let mut o = order(&t, &mut rng);
            // Limit GTC so every check runs the full path (band, position, margin).
            o.order_type = OrderType::Limit;
            o.time_in_force = TimeInForce::Gtc;
            o.price = Some(o.price.unwrap_or(t.get(o.symbol).reference_price));
            (accts[rng.below(ACCOUNTS as u64) as usize], o)
        })
        .collect();
    let mut r = RiskEngine::new(&t, risk_config());
    // Create every account first (steady state, no first-order allocation).
    for (i, (a, o)) in orders.iter().enumerate() {
        let _ = r.check_place(a, OrderId(i as u128), o);
        r.on_order_done(a, OrderId(i as u128));
    }
    let mut g = c.benchmark_group("risk");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut id = 1u128 << 64;
    g.bench_function("check_place+on_order_done", |b| {
        b.iter(|| {
            let (a, o) = &orders[i & 4095];
            i += 1;
            id += 1;
            let res = r.check_place(a, OrderId(id), o);
            if res.is_ok() {
                r.on_order_done(a, OrderId(id));
            }
            black_box(res)
        })
    });
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    let t = InstrumentTable::demo();
    let unchecked = stream(&t);
    let replay = recorded(&t, &unchecked);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(STREAM as u64));
    g.sample_size(10);
    for (name, cmds) in [
        ("apply_mixed_unchecked", &unchecked),
        ("apply_mixed_recorded", &replay),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || (Engine::new(t.clone(), config()), Vec::with_capacity(256)),
                |(mut e, mut out)| {
                    for cmd in cmds.iter() {
                        out.clear();
                        e.apply(cmd, &mut out);
                    }
                    black_box(e.order_count());
                    (e, out) // dropped outside the timed region
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// CPU time of the calling thread in ns (`/proc/thread-self/schedstat`, Linux): on a shared,
/// overloaded machine this is the figure that does not count time spent waiting for a core.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// With `OMS_BENCH_CPU=1`: the same measurements in thread CPU time, printed once.
fn cpu_time_report(_: &mut Criterion) {
    if std::env::var_os("OMS_BENCH_CPU").is_none() || thread_cpu_ns().is_none() {
        return;
    }
    let t = InstrumentTable::demo();
    let unchecked = stream(&t);
    let replay = recorded(&t, &unchecked);
    for (name, cmds) in [("unchecked", &unchecked), ("recorded", &replay)] {
        let mut best = u64::MAX;
        for _ in 0..10 {
            let mut e = Engine::new(t.clone(), config());
            let mut out = Vec::with_capacity(256);
            let start = thread_cpu_ns().unwrap_or(0);
            for cmd in cmds.iter() {
                out.clear();
                e.apply(cmd, &mut out);
            }
            best = best.min(thread_cpu_ns().unwrap_or(0) - start);
            black_box(e.order_count());
        }
        let per = best as f64 / STREAM as f64;
        println!(
            "cpu-time engine/apply_mixed_{name}: {per:.0} ns/command, {:.0} commands/s (best of 10)",
            1e9 / per
        );
    }
    let accts = accounts();
    let mut rng = Rng(42);
    let mut r = RiskEngine::new(&t, risk_config());
    let orders: Vec<(AccountId, ValidatedOrder)> = (0..4096)
        .map(|_| {
            let mut o = order(&t, &mut rng);
            o.order_type = OrderType::Limit;
            o.time_in_force = TimeInForce::Gtc;
            o.price = Some(o.price.unwrap_or(t.get(o.symbol).reference_price));
            (accts[rng.below(ACCOUNTS as u64) as usize], o)
        })
        .collect();
    let n = 2_000_000u64;
    let start = thread_cpu_ns().unwrap_or(0);
    for i in 0..n {
        let (a, o) = &orders[(i & 4095) as usize];
        let id = OrderId(u128::from(i));
        if r.check_place(a, id, o).is_ok() {
            r.on_order_done(a, id);
        }
    }
    let per = (thread_cpu_ns().unwrap_or(0) - start) as f64 / n as f64;
    println!("cpu-time risk/check_place+on_order_done: {per:.0} ns/order");
}

criterion_group!(benches, cpu_time_report, bench_risk, bench_engine);
criterion_main!(benches);
