//! A crash in the middle of a busy load: every acknowledged order survives with the same id
//! and a consistent state, nothing refused appears, and every fill still has two sides.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ACCOUNTS: [&str; 4] = ["cr-a", "cr-b", "cr-c", "cr-d"];
const TASKS: usize = 8;
const PLANNED: usize = 2000;
/// SIGKILL once this many orders were acknowledged.
const KILL_AFTER_ACKS: usize = 700;

#[derive(Default)]
struct Outcomes {
    /// (account, key, body, 201 answer)
    accepted: Vec<(String, String, Value, Value)>,
    /// (account, key) answered 503.
    unavailable: Vec<(String, String)>,
    /// (account, orderId) answered 200 to DELETE.
    canceled: Vec<(String, String)>,
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_order(rng: &mut Rng) -> Value {
    let side = if rng.below(2) == 0 { "BUY" } else { "SELL" };
    let lots = 1 + rng.below(5);
    let (symbol, mid, qty) = if rng.below(4) == 0 {
        ("ETH/USD", 2500, format!("0.{:02}0", lots)) // 0.010 … 0.050 ETH
    } else {
        ("BTC/USD", 45000, format!("0.00{lots}0")) // 0.0010 … 0.0050 BTC
    };
    if rng.below(5) == 0 {
        return market(symbol, side, &qty);
    }
    // Prices straddle the mid so that about half the limits cross.
    let px = format!("{}.00", mid - 5 + rng.below(11) as i64);
    limit(symbol, side, &qty, &px)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_load_loses_no_acknowledged_order() {
    let mut server = Server::start().await;
    let base = server.base.clone();
    let client = server.client.clone();
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let sent = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (base, client, out, sent, acks, dead) = (
            base.clone(),
            client.clone(),
            out.clone(),
            sent.clone(),
            acks.clone(),
            dead.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let account = ACCOUNTS[t % ACCOUNTS.len()];
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            let mut mine: Vec<String> = Vec::new();
            let mut n = 0u64;
            while sent.fetch_add(1, Ordering::Relaxed) < PLANNED && !dead.load(Ordering::Relaxed) {
                n += 1;
                if !mine.is_empty() && rng.below(6) == 0 {
                    let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                    let r = client
                        .delete(format!("{base}/api/orders/{id}"))
                        .header("X-Account-Id", account)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 200 => {
                            out.lock().unwrap().canceled.push((account.to_string(), id));
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    continue;
                }
                let body = random_order(&mut rng);
                let key = format!("crash-{t}-{n}");
                let r = client
                    .post(format!("{base}/api/orders"))
                    .header("X-Account-Id", account)
                    .header("X-Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = r else { break };
                let status = r.status().as_u16();
                let Ok(text) = r.text().await else { break };
                match status {
                    201 => {
                        let v: Value = serde_json::from_str(&text).expect("201 body is JSON");
                        mine.push(v["orderId"].as_str().unwrap().to_string());
                        out.lock()
                            .unwrap()
                            .accepted
                            .push((account.to_string(), key, body, v));
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    503 => out
                        .lock()
                        .unwrap()
                        .unavailable
                        .push((account.to_string(), key)),
                    other => panic!("unexpected {other} under load for {body}: {text}"),
                }
            }
        }));
    }

    // Crash once enough orders were acknowledged (or the load finished first).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.load(Ordering::Relaxed) < KILL_AFTER_ACKS && Instant::now() < deadline {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let acked_before_kill = acks.load(Ordering::Relaxed);
    assert!(
        acked_before_kill >= KILL_AFTER_ACKS,
        "load too slow: {acked_before_kill} acks in 60 s"
    );
    server.signal_kill();
    let sent_at_kill = sent.load(Ordering::Relaxed);
    assert!(
        sent_at_kill < PLANNED,
        "the crash must hit the load mid-way"
    );
    dead.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let out = std::mem::take(&mut *out.lock().unwrap());
    assert!(!out.accepted.is_empty());

    server.restart().await;

    // Every acknowledged order is there, with the same id and fields, in a consistent state.
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for (account, key, body, ack) in &out.accepted {
        let id = ack["orderId"].as_str().unwrap();
        let r = server.order(account, id).await;
        assert_eq!(
            r.status, 200,
            "acknowledged order {id} lost after the crash: {}",
            r.text
        );
        let o = r.json;
        for f in [
            "orderId",
            "account",
            "symbol",
            "side",
            "orderType",
            "timeInForce",
            "quantity",
            "price",
            "createdAt",
        ] {
            assert_eq!(
                o[f], ack[f],
                "`{f}` changed across the crash for {key}: {o} vs {ack}"
            );
        }
        assert_eq!(o["idempotencyKey"], key.as_str());
        let status = o["status"].as_str().unwrap();
        let filled = dec(&o["filledQuantity"]);
        let qty = dec(&o["quantity"]);
        assert!(filled <= qty + 1e-9, "filled ≤ quantity: {o}");
        match status {
            "ACCEPTED" => assert_eq!(filled, 0.0, "{o}"),
            "PARTIALLY_FILLED" => assert!(filled > 0.0 && filled < qty, "{o}"),
            "FILLED" => assert!((filled - qty).abs() < 1e-9, "{o}"),
            "CANCELED" | "EXPIRED" => {}
            other => panic!("acknowledged order {id} in state {other} after the crash: {o}"),
        }
        if body["orderType"] == "MARKET" {
            assert_ne!(status, "ACCEPTED", "a MARKET order never rests: {o}");
            assert_ne!(
                status, "PARTIALLY_FILLED",
                "a MARKET order never rests: {o}"
            );
        }
        by_id.insert(id.to_string(), o);
    }
    for (account, id) in &out.canceled {
        let o = server
            .order(account, id)
            .await
            .expect(200, "canceled order");
        assert_eq!(
            o.json["status"], "CANCELED",
            "a confirmed cancel survives the crash"
        );
    }

    // Nothing that got a 503 exists; every fill has two sides.
    let refused: HashSet<(&str, &str)> = out
        .unavailable
        .iter()
        .map(|(a, k)| (a.as_str(), k.as_str()))
        .collect();
    let mut filled_lots: HashMap<(String, String), i64> = HashMap::new();
    let mut net_positions: HashMap<String, i64> = HashMap::new();
    // Resting quantity per (symbol, side) according to the orders, to compare with the book.
    let mut resting_lots: HashMap<(String, String), i64> = HashMap::new();
    for account in ACCOUNTS {
        let orders = server.all_orders(account, "").await;
        let open: Vec<&Value> = orders
            .iter()
            .filter(|o| o["status"] == "ACCEPTED" || o["status"] == "PARTIALLY_FILLED")
            .collect();
        for o in &open {
            let leaves = dec(&o["quantity"]) - dec(&o["filledQuantity"]);
            *resting_lots
                .entry((
                    o["symbol"].as_str().unwrap().to_string(),
                    o["side"].as_str().unwrap().to_string(),
                ))
                .or_default() += (leaves * 10_000.0).round() as i64;
        }
        // The recovered risk state agrees with the recovered orders.
        let a = server
            .get("/api/account", Some(account))
            .await
            .expect(200, "account");
        assert_eq!(
            a.json["openOrders"].as_u64(),
            Some(open.len() as u64),
            "{account}: openOrders after recovery = open orders listed: {}",
            a.text
        );
        assert!(dec(&a.json["reservedMargin"]) >= 0.0, "{}", a.text);
        if open.is_empty() {
            assert_eq!(dec(&a.json["reservedMargin"]), 0.0, "{}", a.text);
        }
        for o in orders {
            let k = o["idempotencyKey"].as_str().unwrap_or("");
            assert!(
                !refused.contains(&(account, k)),
                "an order refused with 503 exists: {o}"
            );
            let lots = (dec(&o["filledQuantity"]) * 10_000.0).round() as i64;
            *filled_lots
                .entry((
                    o["symbol"].as_str().unwrap().to_string(),
                    o["side"].as_str().unwrap().to_string(),
                ))
                .or_default() += lots;
        }
        let p = server
            .get("/api/positions", Some(account))
            .await
            .expect(200, "positions");
        for pos in p.json["positions"].as_array().unwrap() {
            let lots = (dec(&pos["quantity"]) * 10_000.0).round() as i64;
            *net_positions
                .entry(pos["symbol"].as_str().unwrap().to_string())
                .or_default() += lots;
        }
    }
    for sym in ["BTC/USD", "ETH/USD"] {
        let buy = filled_lots
            .get(&(sym.to_string(), "BUY".to_string()))
            .copied()
            .unwrap_or(0);
        let sell = filled_lots
            .get(&(sym.to_string(), "SELL".to_string()))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            buy, sell,
            "{sym}: bought and sold quantities match after recovery"
        );
        assert_eq!(
            net_positions.get(sym).copied().unwrap_or(0),
            0,
            "{sym}: positions net to zero across accounts"
        );
    }
    // The recovered books hold exactly the open orders' remaining quantities.
    for (sym, path) in [("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")] {
        let book = server
            .get(&format!("/api/book/{path}?depth=1000"), None)
            .await
            .expect(200, "book");
        for (side, levels) in [("BUY", "bids"), ("SELL", "asks")] {
            let in_book: i64 = book.json[levels]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (dec(&l["quantity"]) * 10_000.0).round() as i64)
                .sum();
            let expected = resting_lots
                .get(&(sym.to_string(), side.to_string()))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                in_book, expected,
                "{sym} {levels}: the recovered book holds the open orders' leaves"
            );
        }
    }

    let traded: i64 = filled_lots.values().sum();
    assert!(traded > 0, "the load produced fills");
    eprintln!(
        "crash after {sent_at_kill} requests: {} acknowledged, {} refused (503), {} canceled, \
         {traded} lots filled (both sides)",
        out.accepted.len(),
        out.unavailable.len(),
        out.canceled.len()
    );

    // Retries after the crash are replays of the acknowledged answer.
    for (account, key, body, ack) in out.accepted.iter().step_by(out.accepted.len().div_ceil(40)) {
        let r = server
            .place(account, key, body)
            .await
            .expect(201, "replay after crash");
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
        assert_eq!(
            &r.json, ack,
            "the replay after a crash is the acknowledged body"
        );
    }

    // And the recovered server keeps trading (on a symbol the load did not touch).
    server
        .place_ok("cr-new-1", &limit("SOL/USD", "SELL", "1", "100.000"))
        .await;
    let bid = server
        .place_ok("cr-new-2", &market("SOL/USD", "BUY", "1"))
        .await;
    let id = bid["orderId"].as_str().unwrap();
    server.wait_status("cr-new-2", id, "FILLED").await;
    assert!(
        !by_id.contains_key(id),
        "new ids never collide with old ones"
    );
}
