//! The processor is a pure function of the log: 100k random commands applied twice give
//! byte-identical event streams and state hashes; a snapshot/restore in the middle changes
//! nothing; and a log whose risk decisions were recorded up front (as the ingress risk stage
//! does, fed by the processor's events) replays to the same state.

use oms_core::book::StpMode;
use oms_core::ids::{IdGen, Uuid7Gen};
use oms_core::ports::OrderQuery;
use oms_core::{
    AccountId, AmendOrder, CancelOrder, Command, CorrelationId, Engine, EngineConfig, Event,
    HaltScope, InstrumentTable, Money, OrderId, OrderStatus, OrderType, PlaceOrder, Price, Qty,
    RiskConfig, RiskDecision, RiskEngine, SetHalt, Side, SymbolId, TimeInForce, ValidatedOrder,
};

const COMMANDS: usize = 100_000;
const ACCOUNTS: usize = 50;

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

pub(crate) fn account(i: usize) -> AccountId {
    AccountId::new(&format!("acct-{i:02}")).unwrap()
}

pub(crate) fn config() -> EngineConfig {
    EngineConfig {
        risk: RiskConfig {
            dev_default_equity: Some(Money::parse("250000").unwrap()),
            // A few poor accounts so INSUFFICIENT_MARGIN happens.
            accounts: (0..5)
                .map(|i| (account(i), Money::parse("3000").unwrap()))
                .collect(),
            max_open_orders: 100,
        },
        recent_trades: 200,
        ..EngineConfig::default()
    }
}

/// Prices on a 1-unit grid around the reference so orders cross; quantities per symbol.
fn params(t: &InstrumentTable, s: SymbolId) -> (i64, i64, (i64, i64)) {
    let ins = t.get(s);
    let r = ins.reference_price.0;
    let step = (r / 2000 / ins.tick).max(1) * ins.tick; // 0.05 % steps
    let q = match s.0 {
        0 => (10, 500),   // 0.001 .. 0.05 BTC
        1 => (10, 1000),  // 0.01 .. 1 ETH
        _ => (100, 5000), // 1 .. 50 SOL
    };
    (r, step, q)
}

pub(crate) fn generate(t: &InstrumentTable, seed: u64, n: usize) -> Vec<Command> {
    let mut rng = Rng(seed);
    let mut ids = Uuid7Gen::new(seed);
    let mut ts: u64 = 1_700_000_000_000_000_000;
    let mut placed: Vec<(OrderId, AccountId, SymbolId)> = Vec::new();
    let corr = CorrelationId::new("det").unwrap();
    let mut out = Vec::with_capacity(n);
    // Halts are lifted a while later: (command index, command).
    let mut lifts: Vec<(usize, Command)> = Vec::new();
    while out.len() < n {
        if let Some(i) = lifts.iter().position(|(due, _)| *due <= out.len()) {
            out.push(lifts.swap_remove(i).1);
            continue;
        }
        ts += rng.below(3_000_000);
        let roll = rng.below(1000);
        if roll < 780 || placed.is_empty() {
            let acct = account(rng.below(ACCOUNTS as u64) as usize);
            let symbol = SymbolId(rng.below(3) as u16);
            let (r, step, (qlo, qhi)) = params(t, symbol);
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            // Buyers lean below the reference, sellers above, with overlap so they cross.
            let off = rng.range(-8, 6) * step;
            let mut price = match side {
                Side::Buy => r + off,
                Side::Sell => r - off,
            };
            if rng.below(100) == 0 {
                price = r + r / 14; // out of band
            }
            let lot = t.get(symbol).lot;
            let mut quantity = Qty(rng.range(qlo, qhi) / lot * lot);
            if rng.below(100) == 0 {
                // Whale: past the position limit (or the max quantity for SOL).
                quantity = Qty(t.get(symbol).max_position.0 / 5 * 6);
            }
            let kind = rng.below(100);
            let (order_type, time_in_force, post_only, price) = match kind {
                0..=54 => (OrderType::Limit, TimeInForce::Gtc, false, Some(price)),
                55..=64 => (OrderType::Limit, TimeInForce::Gtc, true, Some(price)),
                65..=76 => (OrderType::Limit, TimeInForce::Ioc, false, Some(price)),
                77..=84 => (OrderType::Limit, TimeInForce::Fok, false, Some(price)),
                85..=94 => (OrderType::Market, TimeInForce::Ioc, false, None),
                _ => (OrderType::Market, TimeInForce::Fok, false, None),
            };
            let order_id = ids.next_order_id(ts);
            placed.push((order_id, acct, symbol));
            out.push(Command::Place(PlaceOrder {
                order_id,
                account: acct,
                order: ValidatedOrder {
                    symbol,
                    side,
                    order_type,
                    time_in_force,
                    post_only,
                    quantity,
                    price: price.map(Price),
                    client_order_id: None,
                },
                ts,
                idempotency_key: None,
                fingerprint: rng.next(),
                correlation_id: Some(corr),
                risk: RiskDecision::Unchecked,
            }));
        } else if roll < 990 {
            // Mostly recent orders, sometimes a stranger's (ORDER_NOT_OPEN).
            let back = (rng.below(400) as usize).min(placed.len() - 1);
            let (order_id, mut acct, symbol) = placed[placed.len() - 1 - back];
            if rng.below(50) == 0 {
                acct = account(rng.below(ACCOUNTS as u64) as usize);
            }
            if roll < 940 {
                out.push(Command::Cancel(CancelOrder {
                    order_id,
                    account: acct,
                    symbol,
                    ts,
                    correlation_id: None,
                }));
            } else {
                let (r, step, (qlo, qhi)) = params(t, symbol);
                let lot = t.get(symbol).lot;
                let quantity = (rng.below(3) != 0).then(|| Qty(rng.range(qlo, qhi) / lot * lot));
                let price = (rng.below(2) == 0).then(|| Price(r + rng.range(-10, 10) * step));
                out.push(Command::Amend(AmendOrder {
                    order_id,
                    account: acct,
                    symbol,
                    quantity,
                    price,
                    ts,
                    correlation_id: None,
                    risk: RiskDecision::Unchecked,
                }));
            }
        } else {
            // Kill switches: mostly accounts, rarely global; always turned off again later.
            let scope = if rng.below(10) == 0 {
                HaltScope::Global
            } else {
                HaltScope::Account(account(rng.below(ACCOUNTS as u64) as usize))
            };
            out.push(Command::Halt(SetHalt {
                scope,
                halted: true,
                ts,
            }));
            lifts.push((
                out.len() + 20 + rng.below(200) as usize,
                Command::Halt(SetHalt {
                    scope,
                    halted: false,
                    ts,
                }),
            ));
        }
    }
    out.truncate(n);
    out
}

/// A rolling FNV-1a over an explicit encoding of every field of every event.
#[derive(PartialEq, Eq, Debug, Clone, Copy)]
struct StreamHash {
    h: u64,
    events: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            h: 0xcbf2_9ce4_8422_2325,
            events: 0,
        }
    }
}

impl StreamHash {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.h ^= u64::from(x);
            self.h = self.h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn n(&mut self, v: i128) {
        self.bytes(&v.to_le_bytes());
    }
    fn s(&mut self, v: Option<&[u8]>) {
        match v {
            Some(b) => {
                self.n(b.len() as i128);
                self.bytes(b);
            }
            None => self.n(-1),
        }
    }

    fn feed(&mut self, events: &[Event]) {
        for e in events {
            self.events += 1;
            match e {
                Event::OrderUpdate {
                    order: o,
                    correlation_id,
                } => {
                    self.n(1);
                    self.n(o.order_id.0 as i128);
                    self.s(o.client_order_id.as_ref().map(|c| c.as_bytes()));
                    self.s(Some(o.account.as_str().as_bytes()));
                    self.n(o.symbol.0.into());
                    self.s(Some(o.side.as_str().as_bytes()));
                    self.s(Some(o.order_type.as_str().as_bytes()));
                    self.s(Some(o.time_in_force.as_str().as_bytes()));
                    self.n(o.post_only.into());
                    self.n(o.quantity.0.into());
                    self.n(o.price.map_or(-1, |p| p.0).into());
                    self.s(Some(o.status.as_str().as_bytes()));
                    self.n(o.filled_quantity.0.into());
                    self.n(o.filled_notional);
                    self.n(o.created_at.into());
                    self.n(o.updated_at.into());
                    self.n(o.version.into());
                    self.s(o.idempotency_key.as_ref().map(|k| k.as_bytes()));
                    self.s(o.reject_reason.map(|r| r.as_str().as_bytes()));
                    self.s(correlation_id.as_ref().map(|c| c.as_bytes()));
                }
                Event::Execution(x) => {
                    self.n(2);
                    for v in [x.exec_id, x.trade_id, x.ts] {
                        self.n(v.into());
                    }
                    self.n(x.order_id.0 as i128);
                    self.s(Some(x.account.as_str().as_bytes()));
                    self.n(x.symbol.0.into());
                    self.s(Some(x.side.as_str().as_bytes()));
                    for v in [
                        x.last_qty.0,
                        x.last_px.0,
                        x.cum_qty.0,
                        x.leaves_qty.0,
                        x.avg_px.0,
                    ] {
                        self.n(v.into());
                    }
                    self.s(Some(x.liquidity.as_str().as_bytes()));
                }
                Event::Trade(t) => {
                    self.n(3);
                    for v in [t.trade_id, t.ts, t.symbol.0.into()] {
                        self.n(v.into());
                    }
                    self.n(t.price.0.into());
                    self.n(t.qty.0.into());
                    self.s(Some(t.aggressor.as_str().as_bytes()));
                    self.n(t.maker_order_id.0 as i128);
                    self.n(t.taker_order_id.0 as i128);
                }
                Event::Candle(c) => {
                    self.n(4);
                    self.n(c.symbol.0.into());
                    self.s(Some(c.interval.as_str().as_bytes()));
                    self.n(c.open_time.into());
                    for v in [c.open.0, c.high.0, c.low.0, c.close.0, c.volume.0] {
                        self.n(v.into());
                    }
                    self.n(c.trades.into());
                }
                Event::Risk(r) => {
                    self.n(5);
                    self.s(Some(r.account.as_str().as_bytes()));
                    self.n(r.order_id.0 as i128);
                    self.n(r.symbol.0.into());
                    self.s(Some(r.code.as_str().as_bytes()));
                    self.n(r.ts.into());
                }
                Event::CommandRejected {
                    order_id,
                    account,
                    code,
                    ts,
                    ..
                } => {
                    self.n(6);
                    self.n(order_id.0 as i128);
                    self.s(Some(account.as_str().as_bytes()));
                    self.s(Some(code.as_str().as_bytes()));
                    self.n((*ts).into());
                }
            }
        }
    }
}

fn run(engine: &mut Engine, cmds: &[Command], hash: &mut StreamHash) {
    let mut out = Vec::with_capacity(64);
    for c in cmds {
        out.clear();
        engine.apply(c, &mut out);
        hash.feed(&out);
    }
}

#[test]
fn same_log_same_events_same_state_and_snapshots_are_transparent() {
    let table = InstrumentTable::demo();
    let cmds = generate(&table, 0x5eed, COMMANDS);

    let mut a = Engine::new(table.clone(), config());
    let mut ha = StreamHash::default();
    run(&mut a, &cmds, &mut ha);

    let mut b = Engine::new(table.clone(), config());
    let mut hb = StreamHash::default();
    run(&mut b, &cmds, &mut hb);
    assert_eq!(ha, hb, "event streams differ");
    assert_eq!(a.state_hash(), b.state_hash());
    assert_eq!(a.snapshot(), b.snapshot());

    // The run actually exercised the interesting paths.
    let trades: usize = (0..3).map(|s| a.recent_trades(SymbolId(s), 1).len()).sum();
    assert_eq!(trades, 3, "every symbol traded");
    assert!(ha.events > COMMANDS as u64, "too few events: {}", ha.events);

    // Snapshot at the midpoint, restore, continue: same stream and state.
    let (first, second) = cmds.split_at(COMMANDS / 2);
    let mut c = Engine::new(table.clone(), config());
    let mut hc = StreamHash::default();
    run(&mut c, first, &mut hc);
    let image = c.snapshot();
    let mut restored = Engine::restore(table.clone(), config(), &image).expect("restore");
    assert_eq!(restored.state_hash(), c.state_hash());
    assert_eq!(restored.snapshot(), image);
    drop(c);
    run(&mut restored, second, &mut hc);
    assert_eq!(hc, ha, "snapshot/restore changed the event stream");
    assert_eq!(restored.state_hash(), a.state_hash());

    // Cancel everything still open: every reservation returns exactly to zero.
    let mut open = Vec::new();
    for i in 0..ACCOUNTS {
        for status in [OrderStatus::Accepted, OrderStatus::PartiallyFilled] {
            let q = OrderQuery {
                account: account(i),
                symbol: None,
                status: Some(status),
                limit: usize::MAX,
                cursor: None,
            };
            open.extend(
                a.list_orders(&q)
                    .iter()
                    .map(|o| (o.order_id, o.account, o.symbol)),
            );
        }
    }
    assert!(open.len() > 100, "only {} open orders", open.len());
    let mut out = Vec::new();
    for (order_id, account, symbol) in open {
        a.apply(
            &Command::Cancel(CancelOrder {
                order_id,
                account,
                symbol,
                ts: u64::MAX / 2,
                correlation_id: None,
            }),
            &mut out,
        );
    }
    assert!(
        !out.iter()
            .any(|e| matches!(e, Event::CommandRejected { .. }))
    );
    for i in 0..ACCOUNTS {
        let v = a.risk().account(&account(i)).expect("account exists");
        assert_eq!(
            (v.reserved_margin, v.open_orders),
            (Money::ZERO, 0),
            "{v:?}"
        );
    }
    for s in 0..3 {
        assert!(a.book(SymbolId(s)).is_empty());
    }
}

/// A snapshot is captured on the processor thread and encoded later elsewhere, while the
/// processor goes on writing the orders the capture shares: every capture, encoded only after
/// the whole log has been applied, is byte for byte the snapshot of the moment it was taken.
#[test]
fn a_capture_encodes_the_state_it_was_taken_in_whatever_is_applied_after() {
    let table = InstrumentTable::demo();
    let cmds = generate(&table, 0xc0_ffee, COMMANDS);
    let mut e = Engine::new(table.clone(), config());
    let mut taken = Vec::new();
    let mut out = Vec::with_capacity(64);
    for (i, c) in cmds.iter().enumerate() {
        if i % 10_000 == 5_000 {
            taken.push((e.capture(), e.snapshot(), e.state_hash()));
        }
        out.clear();
        e.apply(c, &mut out);
    }
    assert!(
        taken.iter().any(|(c, _, _)| c.orders() > 5_000),
        "the captures must span more than one chunk of orders"
    );
    for (capture, image, hash) in taken {
        assert_eq!(
            capture.clone().encode(),
            image,
            "a capture changed after it was taken"
        );
        assert_eq!(capture.state_hash(), hash);
    }
    // The engine itself is unaffected by the captures it handed out.
    let mut fresh = Engine::new(table.clone(), config());
    for c in &cmds {
        out.clear();
        fresh.apply(c, &mut out);
    }
    assert_eq!(fresh.snapshot(), e.snapshot());
}

#[test]
fn recorded_risk_decisions_replay_to_the_same_state() {
    let table = InstrumentTable::demo();
    let cmds = generate(&table, 0xfeed, COMMANDS / 2);

    let mut live = Engine::new(table.clone(), config());
    let mut h_live = StreamHash::default();
    run(&mut live, &cmds, &mut h_live);

    // The ingress topology: a separate risk instance decides before the log and learns
    // fills from the processor's events.
    let mut ingress = RiskEngine::new(&table, config().risk);
    let mut recorded = Vec::with_capacity(cmds.len());
    let mut proc_ = Engine::new(table.clone(), config());
    let mut h_rec = StreamHash::default();
    let mut out = Vec::new();
    let mut decided = [0usize; 2];
    for cmd in &cmds {
        let mut cmd = *cmd;
        match &mut cmd {
            Command::Place(p) => {
                p.risk = match ingress.check_place(&p.account, p.order_id, &p.order) {
                    Ok(reserved) => RiskDecision::Accepted { reserved },
                    Err(code) => RiskDecision::Rejected(code),
                };
                decided[usize::from(matches!(p.risk, RiskDecision::Rejected(_)))] += 1;
            }
            Command::Amend(a) => a.risk = decide_amend(&mut ingress, a, &table),
            Command::Halt(h) => ingress.set_halt(&h.scope, h.halted),
            Command::Cancel(_) | Command::Void(_) | Command::CancelAll(_) => {}
        }
        recorded.push(cmd);
        out.clear();
        proc_.apply(&cmd, &mut out);
        h_rec.feed(&out);
        for e in &out {
            ingress.on_event(e);
        }
    }
    assert!(
        decided[0] > 1000 && decided[1] > 100,
        "decisions {decided:?}"
    );
    assert_eq!(h_rec, h_live, "recorded decisions changed the event stream");
    assert_eq!(proc_.state_hash(), live.state_hash());
    for i in 0..ACCOUNTS {
        let id = account(i);
        assert_eq!(ingress.account(&id), live.risk().account(&id), "{id}");
        assert_eq!(ingress.positions(&id), live.risk().positions(&id));
    }

    // And replaying the recorded log from scratch gives the same again.
    let mut replay = Engine::new(table, config());
    let mut h_rep = StreamHash::default();
    run(&mut replay, &recorded, &mut h_rep);
    assert_eq!(h_rep, h_live);
    assert_eq!(replay.state_hash(), live.state_hash());
}

/// What the ingress risk stage records for an amend (mirrors the processor's own checks).
pub(crate) fn decide_amend(
    r: &mut RiskEngine,
    a: &AmendOrder,
    t: &InstrumentTable,
) -> RiskDecision {
    let Some(o) = r.open_order(a.order_id).filter(|o| o.account == a.account) else {
        return RiskDecision::Rejected(oms_core::RejectCode::OrderNotOpen);
    };
    let ins = t.get(o.symbol);
    let filled = o.quantity - o.leaves;
    let total = a.quantity.unwrap_or(o.quantity);
    let new_price = a.price.filter(|&p| Some(p) != o.price);
    if total <= filled
        || (total == o.quantity && new_price.is_none())
        || total.0 % ins.lot != 0
        || new_price.is_some_and(|p| p.0 % ins.tick != 0)
    {
        return RiskDecision::Rejected(oms_core::RejectCode::InvalidAmend);
    }
    match r.check_amend(&a.account, a.order_id, total - filled, new_price) {
        Ok(reserved) => RiskDecision::Accepted { reserved },
        Err(code) => RiskDecision::Rejected(code),
    }
}

/// The random log reaches every outcome the engine has (so the equalities above mean
/// something).
#[test]
fn the_random_log_exercises_every_outcome() {
    let table = InstrumentTable::demo();
    let cmds = generate(&table, 0x5eed, COMMANDS);
    let mut e = Engine::new(table, config());
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut out = Vec::new();
    for c in &cmds {
        out.clear();
        e.apply(c, &mut out);
        for ev in &out {
            let k = match ev {
                Event::OrderUpdate { order, .. } => match order.reject_reason {
                    Some(r) => format!("{} {}", order.status.as_str(), r.as_str()),
                    None => order.status.as_str().to_owned(),
                },
                Event::Execution(_) => "EXEC".into(),
                Event::Trade(_) => "TRADE".into(),
                Event::Candle(_) => "CANDLE".into(),
                Event::Risk(r) => format!("RISK {}", r.code.as_str()),
                Event::CommandRejected { code, .. } => format!("CMD {}", code.as_str()),
            };
            *counts.entry(k).or_default() += 1;
        }
    }
    for k in [
        "ACCEPTED",
        "PARTIALLY_FILLED",
        "FILLED",
        "CANCELED",
        "EXPIRED",
        "CANCELED POST_ONLY_WOULD_TAKE",
        "CANCELED SELF_TRADE_PREVENTED",
        "EXPIRED FOK_NOT_FILLABLE",
        "REJECTED INSUFFICIENT_MARGIN",
        "REJECTED MAX_QUANTITY_EXCEEDED",
        "REJECTED POSITION_LIMIT_EXCEEDED",
        "REJECTED PRICE_OUT_OF_BAND",
        "REJECTED TOO_MANY_OPEN_ORDERS",
        "REJECTED TRADING_HALTED",
        "RISK INSUFFICIENT_MARGIN",
        "CMD ORDER_NOT_OPEN",
        "CMD INVALID_AMEND",
        "EXEC",
        "TRADE",
        "CANDLE",
    ] {
        assert!(
            counts.get(k).copied().unwrap_or(0) > 0,
            "never saw {k}: {counts:?}"
        );
    }
}

/// Every self-trade-prevention mode is deterministic and snapshot-transparent too.
#[test]
fn every_stp_mode_replays_identically() {
    let table = InstrumentTable::demo();
    let cmds = generate(&table, 0x57b, 20_000);
    for stp in [
        StpMode::CancelNewest,
        StpMode::CancelOldest,
        StpMode::CancelBoth,
        StpMode::Off,
    ] {
        let cfg = || EngineConfig { stp, ..config() };
        let mut a = Engine::new(table.clone(), cfg());
        let mut ha = StreamHash::default();
        run(&mut a, &cmds, &mut ha);
        let (first, second) = cmds.split_at(cmds.len() / 3);
        let mut b = Engine::new(table.clone(), cfg());
        let mut hb = StreamHash::default();
        run(&mut b, first, &mut hb);
        let mut b = Engine::restore(table.clone(), cfg(), &b.snapshot()).unwrap();
        run(&mut b, second, &mut hb);
        assert_eq!(ha, hb, "{stp:?}");
        assert_eq!(a.state_hash(), b.state_hash(), "{stp:?}");
    }
}
