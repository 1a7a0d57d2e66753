//! The trading API of a real venue, as a client sees it: batch place and cancel,
//! clientOrderId uniqueness and lookups, cancel-all and the dead-man's switch, the audit log,
//! and the spec's strictness (decimal grammar, repeated headers, correlation ids).

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Generous bound for "within 1 s" on a loaded machine: assert behaviour, not speed.
const DEADMAN_BOUND: Duration = Duration::from_secs(10);

async fn batch_place(s: &Server, account: &str, key: &str, orders: &[Value]) -> Resp {
    s.send(
        Method::POST,
        "/api/orders/batch",
        Some(account),
        &[("X-Idempotency-Key", key)],
        Some(&json!({ "orders": orders })),
    )
    .await
}

async fn audit(s: &Server, account: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/admin/audit?account={account}&limit=1000"),
            Some("ops"),
        )
        .await
        .expect(200, "audit query");
    r.json["records"].as_array().cloned().unwrap_or_default()
}

async fn audit_when(s: &Server, account: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = audit(s, account).await.into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no matching audit record for {account}: {:?}",
            audit(s, account).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_batch_of_20_with_3_invalid_items_answers_each_in_place_and_replays() {
    let s = Server::start().await;
    let bad = [3usize, 9, 16];
    let orders: Vec<Value> = (0..20)
        .map(|i| match i {
            // Refused by stage-1 validation (off tick).
            3 => limit("BTC/USD", "BUY", "0.01", "44000.001"),
            // Refused while parsing (unknown field).
            9 => {
                json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.01","price":"44000","oops":1})
            }
            // Refused by the strict decimal grammar.
            16 => limit("BTC/USD", "BUY", "+0.01", "44000"),
            _ => json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.01",
                        "price": format!("{}", 44000 + i), "clientOrderId": format!("b-{i}")}),
        })
        .collect();
    let k = key("batch");
    let r = batch_place(&s, "bat-1", &k, &orders)
        .await
        .expect(200, "batch");
    let results = r.json["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 20, "{}", r.text);
    let mut accepted = 0;
    for (i, item) in results.iter().enumerate() {
        assert_eq!(item["index"], i, "results are in request order: {item}");
        if bad.contains(&i) {
            assert_eq!(item["status"], 400, "item {i}: {item}");
        } else {
            assert_eq!(item["status"], 201, "item {i}: {item}");
            assert_eq!(item["order"]["status"], "ACCEPTED", "item {i}: {item}");
            assert_eq!(item["order"]["clientOrderId"], format!("b-{i}"));
            accepted += 1;
        }
    }
    assert_eq!(accepted, 17);
    assert_eq!(results[3]["error"]["code"], "PRICE_NOT_ON_TICK");
    assert_eq!(results[9]["error"]["code"], "UNKNOWN_FIELD");
    assert_eq!(results[16]["error"]["code"], "INVALID_QUANTITY");

    // The 17 orders exist, once.
    let open = s.orders_when("bat-1", "&status=ACCEPTED", 17).await;
    assert_eq!(open.len(), 17);

    // Resending the batch with the same key replays every item; nothing is placed twice.
    let again = batch_place(&s, "bat-1", &k, &orders)
        .await
        .expect(200, "batch replay");
    for (i, item) in again.json["results"].as_array().unwrap().iter().enumerate() {
        if bad.contains(&i) {
            assert_eq!(item["status"], 400, "{item}");
        } else {
            assert_eq!(item["status"], 201, "{item}");
            assert_eq!(item["replayed"], true, "{item}");
            assert_eq!(item["order"]["orderId"], results[i]["order"]["orderId"]);
        }
    }
    assert_eq!(s.all_orders("bat-1", "").await.len(), 17);

    // Over the limit: refused as a whole.
    let too_many: Vec<Value> = (0..21).map(|_| seed_order()).collect();
    batch_place(&s, "bat-1", &key("big"), &too_many)
        .await
        .expect_error(400, "BATCH_TOO_LARGE", "21 items");

    // Batch cancel by order id and by client order id, with per-item errors.
    let id0 = results[0]["order"]["orderId"].as_str().unwrap().to_owned();
    let r = s
        .send(
            Method::DELETE,
            "/api/orders/batch",
            Some("bat-1"),
            &[],
            Some(&json!({"orders":[
                {"orderId": id0},
                {"clientOrderId": "b-1"},
                {"clientOrderId": "nope"},
                {"orderId": "not-an-id"},
                {"orderId": id0},
            ]})),
        )
        .await
        .expect(200, "batch cancel");
    let st: Vec<u64> = r.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect();
    assert_eq!(st[..4], [200, 200, 404, 400], "{}", r.text);
    // The same order twice in one batch: the second finds it no longer open.
    assert!(st[4] == 409 || st[4] == 200, "{}", r.text);
    assert_eq!(r.json["results"][0]["order"]["status"], "CANCELED");
    assert_eq!(r.json["results"][1]["order"]["clientOrderId"], "b-1");
}

#[tokio::test]
async fn client_order_ids_are_unique_among_open_orders_and_address_orders() {
    let s = Server::start().await;
    let body = json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.01","price":"44000","clientOrderId":"c-1"});
    let first = s.place_ok("cid-1", &body).await;

    let dup = s.place("cid-1", &key("dup"), &body).await;
    let dup = dup.expect_error(409, "DUPLICATE_CLIENT_ORDER_ID", "second open c-1");
    assert_eq!(dup.json["order"]["status"], "REJECTED", "{}", dup.text);
    // Another account may use the same id.
    s.place_ok("cid-2", &body).await;

    let got = s
        .get("/api/orders/by-client-id/c-1", Some("cid-1"))
        .await
        .expect(200, "by client id");
    assert_eq!(got.json["orderId"], first["orderId"]);
    s.get("/api/orders/by-client-id/c-1", Some("cid-3"))
        .await
        .expect_error(404, "ORDER_NOT_FOUND", "other account");

    let c = s
        .send(
            Method::DELETE,
            "/api/orders/by-client-id/c-1",
            Some("cid-1"),
            &[],
            None,
        )
        .await
        .expect(200, "cancel by client id");
    assert_eq!(c.json["status"], "CANCELED");
    s.send(
        Method::DELETE,
        "/api/orders/by-client-id/c-1",
        Some("cid-1"),
        &[],
        None,
    )
    .await
    .expect_error(409, "ORDER_NOT_OPEN", "cancel twice");

    // Closed: the id is free again; the lookup now finds the new open order.
    let second = s.place_ok("cid-1", &body).await;
    let got = s
        .get("/api/orders/by-client-id/c-1", Some("cid-1"))
        .await
        .expect(200, "by client id after reuse");
    assert_eq!(got.json["orderId"], second["orderId"]);

    // `null` is the same as absent.
    let r = s
        .place(
            "cid-1",
            &key("null"),
            &json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.01","price":"44000","clientOrderId":null}),
        )
        .await
        .expect(201, "null clientOrderId");
    assert_eq!(r.json["clientOrderId"], Value::Null);

    // The verdicts survive a restart (replayed from the log).
    let mut s = s;
    s.restart().await;
    s.place("cid-1", &key("dup2"), &body).await.expect_error(
        409,
        "DUPLICATE_CLIENT_ORDER_ID",
        "after restart",
    );
}

#[tokio::test]
async fn cancel_all_filters_by_symbol_and_side() {
    let s = Server::start().await;
    let a = s
        .place_ok("ca-1", &limit("BTC/USD", "BUY", "0.01", "44000"))
        .await;
    let b = s
        .place_ok("ca-1", &limit("BTC/USD", "SELL", "0.01", "46000"))
        .await;
    let c = s
        .place_ok("ca-1", &limit("ETH/USD", "BUY", "0.1", "2500"))
        .await;
    let other = s
        .place_ok("ca-2", &limit("BTC/USD", "BUY", "0.01", "44000"))
        .await;

    let r = s
        .send(
            Method::DELETE,
            "/api/orders?symbol=BTC-USD&side=BUY",
            Some("ca-1"),
            &[],
            None,
        )
        .await
        .expect(200, "cancel-all BTC buys");
    assert_eq!(r.json["count"], 1, "{}", r.text);
    assert_eq!(r.json["canceled"][0], a["orderId"]);

    let r = s
        .send(Method::DELETE, "/api/orders", Some("ca-1"), &[], None)
        .await
        .expect(200, "cancel-all");
    assert_eq!(r.json["count"], 2, "{}", r.text);
    for o in [&a, &b, &c] {
        let id = o["orderId"].as_str().unwrap();
        assert_eq!(s.order("ca-1", id).await.json["status"], "CANCELED");
    }
    let id = other["orderId"].as_str().unwrap();
    assert_eq!(s.order("ca-2", id).await.json["status"], "ACCEPTED");

    s.send(
        Method::DELETE,
        "/api/orders?side=UP",
        Some("ca-1"),
        &[],
        None,
    )
    .await
    .expect_error(400, "INVALID_PARAMETER", "bad side");
    s.send(
        Method::DELETE,
        "/api/orders?symbol=DOGE-USD",
        Some("ca-1"),
        &[],
        None,
    )
    .await
    .expect_error(400, "UNKNOWN_SYMBOL", "bad symbol");
}

#[tokio::test]
async fn an_unrefreshed_dead_mans_switch_cancels_everything_and_is_audited() {
    let mut s = Server::start().await;
    let mut ids = Vec::new();
    for (sym, px) in [
        ("BTC/USD", "44000"),
        ("ETH/USD", "2500"),
        ("SOL/USD", "100"),
    ] {
        let o = s.place_ok("dm-1", &limit(sym, "BUY", "0.1", px)).await;
        ids.push(o["orderId"].as_str().unwrap().to_owned());
    }
    let keep = s
        .place_ok("dm-2", &limit("BTC/USD", "BUY", "0.01", "44000"))
        .await;

    // A disarmed switch never fires.
    let arm = |t: u64| json!({ "timeoutMs": t });
    s.send(
        Method::POST,
        "/api/orders/cancel-all-after",
        Some("dm-2"),
        &[],
        Some(&arm(500)),
    )
    .await
    .expect(200, "arm dm-2");
    let off = s
        .send(
            Method::POST,
            "/api/orders/cancel-all-after",
            Some("dm-2"),
            &[],
            Some(&arm(0)),
        )
        .await
        .expect(200, "disarm dm-2");
    assert_eq!(off.json["triggerAt"], Value::Null);

    let armed_at = Instant::now();
    let r = s
        .send(
            Method::POST,
            "/api/orders/cancel-all-after",
            Some("dm-1"),
            &[],
            Some(&arm(500)),
        )
        .await
        .expect(200, "arm dm-1");
    assert!(is_timestamp(&r.json["triggerAt"]), "{}", r.text);
    for id in &ids {
        let o = s
            .wait_order("dm-1", id, "CANCELED", |o| o["status"] == "CANCELED")
            .await;
        assert_eq!(o["status"], "CANCELED");
    }
    let took = armed_at.elapsed();
    assert!(took < DEADMAN_BOUND, "switch fired after {took:?}");
    let rec = audit_when(&s, "dm-1", |r| r["action"] == "CANCEL_ALL_AFTER_EXPIRED").await;
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(rec["role"], "system");
    for id in &ids {
        assert!(
            rec["detail"].as_str().unwrap().contains(id.as_str()),
            "{rec}"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let kid = keep["orderId"].as_str().unwrap();
    assert_eq!(s.order("dm-2", kid).await.json["status"], "ACCEPTED");

    // The expiry is a logged command: a replay reaches the same state without any timer.
    s.restart().await;
    for id in &ids {
        assert_eq!(s.order("dm-1", id).await.json["status"], "CANCELED");
    }
    assert_eq!(s.order("dm-2", kid).await.json["status"], "ACCEPTED");
    // The audit file survives the restart too.
    assert!(
        audit(&s, "dm-1")
            .await
            .iter()
            .any(|r| r["action"] == "CANCEL_ALL_AFTER_EXPIRED")
    );

    for bad in [
        json!({"timeoutMs": 5}),
        json!({"timeoutMs": -1}),
        json!({"timeout": 1}),
    ] {
        let r = s
            .send(
                Method::POST,
                "/api/orders/cancel-all-after",
                Some("dm-1"),
                &[],
                Some(&bad),
            )
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}

#[tokio::test]
async fn state_changing_requests_are_audited_with_their_result() {
    let s = Server::start().await;
    let o = s
        .place_ok("au-1", &limit("BTC/USD", "BUY", "0.01", "44000"))
        .await;
    let id = o["orderId"].as_str().unwrap().to_owned();
    s.cancel("au-1", &id).await.expect(200, "cancel");
    s.cancel("au-1", &id)
        .await
        .expect_error(409, "ORDER_NOT_OPEN", "cancel again");
    s.send(
        Method::POST,
        "/api/admin/halt",
        Some("au-1"),
        &[("X-Correlation-Id", "halt-attempt-1")],
        Some(&json!({"scope":"GLOBAL","halted":false})),
    )
    .await;

    let recs = audit(&s, "au-1").await;
    let actions: Vec<(&str, u64)> = recs
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert!(actions.contains(&("POST /api/orders", 201)), "{actions:?}");
    assert!(
        actions.contains(&("DELETE /api/orders/{orderId}", 200)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("DELETE /api/orders/{orderId}", 409)),
        "{actions:?}"
    );
    let refused = recs
        .iter()
        .find(|r| r["status"] == 409)
        .expect("the refused cancel");
    assert_eq!(refused["code"], "ORDER_NOT_OPEN");
    assert_eq!(refused["target"], id.as_str());
    let halt = recs
        .iter()
        .find(|r| r["action"] == "POST /api/admin/halt")
        .expect("the halt attempt");
    assert_eq!(halt["correlationId"], "halt-attempt-1");
    // Reads are not audited.
    assert!(
        recs.iter()
            .all(|r| !r["action"].as_str().unwrap().starts_with("GET"))
    );

    // `from` filters by time; bad parameters are refused.
    s.get("/api/admin/audit?from=2500-01-01T00:00:00Z", Some("ops"))
        .await
        .expect(200, "future from");
    let later = s
        .get(
            "/api/admin/audit?account=au-1&from=16725225600000",
            Some("ops"),
        )
        .await
        .expect(200, "epoch ms from");
    assert_eq!(later.json["records"].as_array().unwrap().len(), 0);
    s.get("/api/admin/audit?from=yesterday", Some("ops"))
        .await
        .expect_error(400, "INVALID_PARAMETER", "bad from");
}

#[tokio::test]
async fn the_server_holds_to_its_spec() {
    let s = Server::start().await;
    // Strict decimals.
    for (q, p) in [
        ("+0.01", "44000"),
        (" 0.01", "44000"),
        ("0.01 ", "44000"),
        ("0.01", "+44000"),
        ("0.01", " 44000"),
        ("-0", "44000"),
        (".5", "44000"),
        ("0.01", "4e4000"),
    ] {
        let r = s
            .place("sp-1", &key("dec"), &limit("BTC/USD", "BUY", q, p))
            .await;
        assert_eq!(r.status, 400, "quantity {q:?} price {p:?}: {}", r.text);
        assert!(
            ["INVALID_QUANTITY", "INVALID_PRICE"].contains(&r.code()),
            "{q:?}/{p:?}: {}",
            r.text
        );
    }
    // Repeated identity and idempotency headers.
    let body = seed_order();
    for (h, v1, v2) in [
        ("X-Idempotency-Key", "k-a", "k-b"),
        ("X-Account-Id", "sp-1", "sp-2"),
        ("X-Correlation-Id", "c-1", "c-2"),
    ] {
        let mut rb = s
            .client
            .post(s.url("/api/orders"))
            .header(h, v1)
            .header(h, v2)
            .json(&body);
        if h != "X-Idempotency-Key" {
            rb = rb.header("X-Idempotency-Key", key("dh"));
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{h} twice");
        let j: Value = r.json().await.unwrap();
        assert_eq!(j["error"]["code"], "DUPLICATE_HEADER", "{h}: {j}");
    }
    s.send(
        Method::POST,
        "/api/orders",
        Some("sp-1"),
        &[("X-Idempotency-Key", "k-1"), ("Idempotency-Key", "k-2")],
        Some(&body),
    )
    .await
    .expect_error(400, "DUPLICATE_HEADER", "disagreeing spellings");
    let r = s
        .send(
            Method::GET,
            "/api/symbols",
            None,
            &[("X-Correlation-Id", "has space")],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "INVALID_CORRELATION_ID"),
        "{}",
        r.text
    );

    // Candle limit bounds as documented: 1–1440.
    s.get("/api/candles/BTC-USD?interval=1m&limit=1440", None)
        .await
        .expect(200, "limit 1440");
    for bad in ["limit=0", "limit=1441"] {
        let r = s
            .get(&format!("/api/candles/BTC-USD?interval=1m&{bad}"), None)
            .await;
        assert_eq!((r.status, r.code()), (400, "INVALID_PARAMETER"), "{bad}");
    }
    // DELETE is now allowed on /api/orders; PUT still is not.
    let r = s.send(Method::PUT, "/api/orders", None, &[], None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
}
