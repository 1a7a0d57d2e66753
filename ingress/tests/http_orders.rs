//! Orders over HTTP as a client sees them: place, get, list, cancel, amend, and the matching
//! outcomes that show up on the order afterwards.

use crate::common;

use common::*;
use serde_json::{Value, json};

const ORDER_FIELDS: [&str; 19] = [
    "orderId",
    "clientOrderId",
    "account",
    "symbol",
    "side",
    "orderType",
    "timeInForce",
    "postOnly",
    "quantity",
    "price",
    "status",
    "filledQuantity",
    "avgFillPrice",
    "createdAt",
    "updatedAt",
    "version",
    "idempotencyKey",
    "rejectReason",
    "timestamp",
];

#[track_caller]
fn assert_order_shape(o: &Value) {
    let obj = o
        .as_object()
        .unwrap_or_else(|| panic!("order is not an object: {o}"));
    for f in ORDER_FIELDS {
        assert!(obj.contains_key(f), "order lacks `{f}`: {o}");
    }
    for f in ["createdAt", "updatedAt", "timestamp"] {
        assert!(
            is_timestamp(&o[f]),
            "`{f}` is not RFC 3339 UTC with microseconds: {o}"
        );
    }
    assert_eq!(o["timestamp"], o["updatedAt"], "timestamp = updatedAt: {o}");
    assert!(
        o["version"].as_u64().is_some_and(|v| v >= 1),
        "version: {o}"
    );
    let oid = o["orderId"].as_str().expect("orderId string");
    assert_eq!(oid.len(), 36, "orderId is a UUID: {oid}");
    assert_eq!(&oid[14..15], "7", "orderId is a UUIDv7: {oid}");
}

#[tokio::test]
async fn seed_walkthrough_place_replay_cross_fill_positions_margin() {
    let s = Server::start().await;

    // 1. The seed's order, with JSON numbers.
    let first = s
        .place("acct-1", "k1", &seed_order())
        .await
        .expect(201, "seed order");
    assert_eq!(
        first.header("idempotent-replayed"),
        None,
        "a first request is not a replay"
    );
    let o = &first.json;
    assert_order_shape(o);
    assert_eq!(o["status"], "ACCEPTED");
    assert_eq!(o["account"], "acct-1");
    assert_eq!(o["symbol"], "BTC/USD");
    assert_eq!(o["side"], "BUY");
    assert_eq!(o["orderType"], "LIMIT");
    assert_eq!(o["timeInForce"], "GTC");
    assert_eq!(o["postOnly"], false);
    assert_eq!(
        o["quantity"], "0.1000",
        "quantity as a string with the lot's decimals"
    );
    assert_eq!(
        o["price"], "45000.00",
        "price as a string with the tick's decimals"
    );
    assert_eq!(o["filledQuantity"], "0.0000");
    assert_eq!(o["avgFillPrice"], Value::Null);
    assert_eq!(o["idempotencyKey"], "k1");
    assert_eq!(o["rejectReason"], Value::Null);
    assert_eq!(o["clientOrderId"], Value::Null);
    assert_eq!(o["version"], 1);
    let buy_id = o["orderId"].as_str().unwrap().to_string();

    // 2. The same request again: the stored answer, marked as a replay, no second order.
    let again = s
        .place("acct-1", "k1", &seed_order())
        .await
        .expect(201, "replay");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json, first.json,
        "a replay answers the identical body"
    );
    assert_eq!(
        s.orders_when("acct-1", "", 1).await.len(),
        1,
        "a replay creates nothing"
    );

    // The resting bid reserves margin: 0.1 × 45000 × 10 % = 450.
    let acct = s
        .account_when("acct-1", |a| dec(&a["reservedMargin"]) == 450.0)
        .await;
    assert_eq!(dec(&acct.json["reservedMargin"]), 450.0, "{}", acct.text);
    assert_eq!(acct.json["openOrders"], 1);

    // 3. A crossing SELL from another account fills both.
    let sell = s
        .place_ok(
            "acct-2",
            &json!({"symbol":"BTC/USD","side":"SELL","quantity":"0.1","price":"45000"}),
        )
        .await;
    let sell_id = sell["orderId"].as_str().unwrap();
    for (acct, id) in [("acct-1", buy_id.as_str()), ("acct-2", sell_id)] {
        let o = s.wait_status(acct, id, "FILLED").await;
        assert_order_shape(&o);
        assert_eq!(o["filledQuantity"], "0.1000", "{o}");
        assert_eq!(o["avgFillPrice"], "45000.00", "{o}");
        assert!(
            o["version"].as_u64().unwrap() >= 2,
            "a fill bumps the version: {o}"
        );
        assert!(o["createdAt"].as_str() <= o["updatedAt"].as_str(), "{o}");
    }

    // 4. Positions: +0.1 / −0.1.
    assert_eq!(s.position("acct-1", "BTC/USD").await, 0.1);
    assert_eq!(s.position("acct-2", "BTC/USD").await, -0.1);
    let pos = s
        .get("/api/positions", Some("acct-1"))
        .await
        .expect(200, "positions");
    assert_eq!(pos.json["account"], "acct-1");
    let p = &pos.json["positions"][0];
    assert_eq!(p["quantity"], "0.1000", "{}", pos.text);
    assert_eq!(dec(&p["avgEntryPrice"]), 45000.0, "{}", pos.text);
    for f in ["realizedPnl", "unrealizedPnl"] {
        assert!(
            p[f].is_string(),
            "position `{f}` is a decimal string: {}",
            pos.text
        );
    }

    // 5. The account now uses margin for the position and reserves none.
    let acct = s
        .account_when("acct-1", |a| dec(&a["usedMargin"]) == 450.0)
        .await;
    let a = &acct.json;
    assert_eq!(a["account"], "acct-1");
    assert_eq!(a["currency"], "USD");
    assert_eq!(dec(&a["equity"]), 1_000_000.0, "{a}");
    assert_eq!(dec(&a["usedMargin"]), 450.0, "{a}");
    assert_eq!(dec(&a["reservedMargin"]), 0.0, "{a}");
    assert_eq!(
        dec(&a["availableMargin"]),
        dec(&a["equity"]) - dec(&a["usedMargin"]) - dec(&a["reservedMargin"]),
        "{a}"
    );
    assert_eq!(a["openOrders"], 0);
    assert_eq!(a["halted"], false);
    assert!(a["realizedPnl"].is_string(), "{a}");
}

#[tokio::test]
async fn market_order_defaults_and_decimal_strings_are_exact() {
    let s = Server::start().await;
    // MARKET: no price, IOC by default; with an empty book it expires for lack of liquidity.
    let m = s
        .place_ok(
            "m-1",
            &json!({"symbol":"BTC-USD","side":"SELL","quantity":"0.25","clientOrderId":"my-1"}),
        )
        .await;
    assert_order_shape(&m);
    assert_eq!(m["orderType"], "MARKET", "no price → MARKET");
    assert_eq!(m["timeInForce"], "IOC", "MARKET defaults to IOC");
    assert_eq!(m["price"], Value::Null);
    assert_eq!(
        m["symbol"], "BTC/USD",
        "the path form is accepted and normalised"
    );
    assert_eq!(m["quantity"], "0.2500");
    assert_eq!(m["clientOrderId"], "my-1");
    let done = s
        .wait_status("m-1", m["orderId"].as_str().unwrap(), "EXPIRED")
        .await;
    assert_eq!(done["rejectReason"], "NO_LIQUIDITY", "{done}");
    assert_eq!(done["filledQuantity"], "0.0000");

    // A MARKET order sweeps resting liquidity.
    s.place_ok("m-2", &limit("ETH/USD", "SELL", "1.5", "2500.00"))
        .await;
    let buy = s.place_ok("m-3", &market("ETH/USD", "BUY", "1")).await;
    let filled = s
        .wait_status("m-3", buy["orderId"].as_str().unwrap(), "FILLED")
        .await;
    assert_eq!(filled["filledQuantity"], "1.000");
    assert_eq!(filled["avgFillPrice"], "2500.00");
}

#[tokio::test]
async fn get_order_is_per_account() {
    let s = Server::start().await;
    let o = s
        .place_ok("owner", &limit("BTC/USD", "BUY", "0.1", "44900.00"))
        .await;
    let id = o["orderId"].as_str().unwrap();

    let got = s.order("owner", id).await.expect(200, "own order");
    assert_order_shape(&got.json);
    assert_eq!(got.json["orderId"], id);
    assert_eq!(got.json["status"], "ACCEPTED");
    assert_eq!(got.json["price"], "44900.00");

    s.order("someone-else", id).await.expect_error(
        404,
        "ORDER_NOT_FOUND",
        "another account's order is 404, not 403",
    );
    s.order("owner", "01900000-0000-7000-8000-000000000000")
        .await
        .expect_error(404, "ORDER_NOT_FOUND", "unknown id");
    s.order("owner", "not-an-order-id")
        .await
        .expect_error(400, "INVALID_ORDER_ID", "malformed id");
}

/// What a fast client does: act on the order the moment the 201 arrives. The acknowledged
/// order must be there for GET, DELETE and PATCH at once, never a transient 404.
#[tokio::test]
async fn the_acknowledged_order_is_usable_at_once() {
    let s = Server::start().await;
    for i in 0..150 {
        let price = format!("{}.00", 44000 + i);
        let body = limit("BTC/USD", "BUY", "0.1", &price);
        let o = s
            .place("fast", &key("fast"), &body)
            .await
            .expect(201, "place");
        let id = o.json["orderId"].as_str().unwrap();
        match i % 3 {
            0 => {
                let g = s.order("fast", id).await.expect(200, "GET right after 201");
                assert_eq!(g.json["orderId"], id);
            }
            1 => {
                let c = s
                    .cancel("fast", id)
                    .await
                    .expect(200, "DELETE right after 201");
                assert_eq!(c.json["status"], "CANCELED");
            }
            _ => {
                let a = s
                    .amend("fast", id, &json!({"quantity":"0.05"}))
                    .await
                    .expect(200, "PATCH right after 201");
                assert_eq!(a.json["quantity"], "0.0500");
            }
        }
    }
}

#[tokio::test]
async fn list_orders_newest_first_with_filters_and_cursor() {
    let s = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let price = format!("{}.00", 44900 + i);
        let o = s
            .place_ok("lister", &limit("BTC/USD", "BUY", "0.01", &price))
            .await;
        ids.push(o["orderId"].as_str().unwrap().to_string());
    }
    let eth = s
        .place_ok("lister", &limit("ETH/USD", "BUY", "0.1", "2490.00"))
        .await;
    ids.push(eth["orderId"].as_str().unwrap().to_string());
    s.place_ok("other", &limit("BTC/USD", "BUY", "0.01", "44000.00"))
        .await;

    // Default page: everything of this account only, newest first.
    let all = s
        .get("/api/orders", Some("lister"))
        .await
        .expect(200, "list");
    let got: Vec<&str> = all.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, newest_first, "newest first, only the caller's orders");
    assert_eq!(all.json["nextCursor"], Value::Null, "one page");

    // Pages of 2 follow the cursor to the same sequence.
    let mut paged = Vec::new();
    let mut path = "/api/orders?limit=2".to_string();
    for _ in 0..10 {
        let r = s.get(&path, Some("lister")).await.expect(200, &path);
        let page = r.json["orders"].as_array().unwrap();
        assert!(page.len() <= 2, "limit respected: {}", r.text);
        paged.extend(
            page.iter()
                .map(|o| o["orderId"].as_str().unwrap().to_string()),
        );
        match r.json["nextCursor"].as_str() {
            Some(c) => path = format!("/api/orders?limit=2&cursor={}", urlencode(c)),
            None => break,
        }
    }
    assert_eq!(paged, ids.iter().rev().cloned().collect::<Vec<_>>());

    // Filters.
    let eth_only = s
        .get("/api/orders?symbol=ETH-USD", Some("lister"))
        .await
        .expect(200, "symbol");
    assert_eq!(eth_only.json["orders"].as_array().unwrap().len(), 1);
    assert_eq!(eth_only.json["orders"][0]["symbol"], "ETH/USD");
    let btc = s
        .get("/api/orders?symbol=BTC%2FUSD", Some("lister"))
        .await
        .expect(200, "symbol");
    assert_eq!(btc.json["orders"].as_array().unwrap().len(), 5);

    s.cancel("lister", &ids[0]).await.expect(200, "cancel");
    let canceled = s
        .get("/api/orders?status=CANCELED", Some("lister"))
        .await
        .expect(200, "status");
    let c = canceled.json["orders"].as_array().unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["orderId"], ids[0].as_str());
    let open = s.all_orders("lister", "&status=ACCEPTED").await;
    assert_eq!(open.len(), 5);

    // Bad parameters.
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "status=BOGUS",
        "cursor=%00garbage",
    ] {
        s.get(&format!("/api/orders?{bad}"), Some("lister"))
            .await
            .expect_error(400, "INVALID_PARAMETER", bad);
    }
    s.get("/api/orders?symbol=DOGE-USD", Some("lister"))
        .await
        .expect_error(400, "UNKNOWN_SYMBOL", "unknown symbol filter");
}

#[tokio::test]
async fn cancel_releases_the_order_and_its_margin() {
    let s = Server::start().await;
    let o = s
        .place_ok("c-1", &limit("BTC/USD", "BUY", "1", "44000.00"))
        .await;
    let id = o["orderId"].as_str().unwrap();
    let a = s
        .account_when("c-1", |a| dec(&a["reservedMargin"]) == 4400.0)
        .await;
    assert_eq!(dec(&a.json["reservedMargin"]), 4400.0, "{}", a.text);

    s.cancel("intruder", id).await.expect_error(
        404,
        "ORDER_NOT_FOUND",
        "cancel another account's order",
    );
    let c = s.cancel("c-1", id).await.expect(200, "cancel");
    assert_eq!(c.json["status"], "CANCELED");
    assert_eq!(c.json["orderId"], id);
    assert!(c.json["version"].as_u64().unwrap() > o["version"].as_u64().unwrap());
    assert_eq!(s.order("c-1", id).await.json["status"], "CANCELED");

    s.cancel("c-1", id)
        .await
        .expect_error(409, "ORDER_NOT_OPEN", "cancel twice");
    s.cancel("c-1", "nope")
        .await
        .expect_error(400, "INVALID_ORDER_ID", "bad id");

    let a = s.account_when("c-1", |a| a["openOrders"] == 0).await;
    assert_eq!(dec(&a.json["reservedMargin"]), 0.0, "{}", a.text);
    assert_eq!(a.json["openOrders"], 0);
    let book = s.get("/api/book/BTC-USD", None).await.expect(200, "book");
    assert_eq!(
        book.json["bids"],
        json!([]),
        "a canceled order leaves the book"
    );

    // A filled order is not open either.
    let sell = s
        .place_ok("c-2", &limit("BTC/USD", "SELL", "0.1", "45000.00"))
        .await;
    let sid = sell["orderId"].as_str().unwrap();
    s.place_ok("c-3", &market("BTC/USD", "BUY", "0.1")).await;
    s.wait_status("c-2", sid, "FILLED").await;
    s.cancel("c-2", sid)
        .await
        .expect_error(409, "ORDER_NOT_OPEN", "cancel a filled order");
}

#[tokio::test]
async fn amend_quantity_and_refusals() {
    let s = Server::start().await;
    let o = s
        .place_ok("a-1", &limit("BTC/USD", "BUY", "1", "44000.00"))
        .await;
    let id = o["orderId"].as_str().unwrap();

    let down = s
        .amend("a-1", id, &json!({"quantity":"0.5"}))
        .await
        .expect(200, "qty down");
    assert_eq!(down.json["quantity"], "0.5000");
    assert_eq!(down.json["price"], "44000.00");
    assert_eq!(down.json["status"], "ACCEPTED");
    assert!(down.json["version"].as_u64().unwrap() > o["version"].as_u64().unwrap());
    let a = s
        .account_when("a-1", |a| dec(&a["reservedMargin"]) == 2200.0)
        .await;
    assert_eq!(
        dec(&a.json["reservedMargin"]),
        2200.0,
        "0.5 × 44000 × 10 %: {}",
        a.text
    );

    // Quantity and price together (price changes lose priority).
    let moved = s
        .amend("a-1", id, &json!({"quantity":"0.5","price":"44100.00"}))
        .await
        .expect(200, "quantity and price");
    assert_eq!(moved.json["price"], "44100.00");
    let book = s.get("/api/book/BTC-USD", None).await.expect(200, "book");
    assert_eq!(book.json["bids"][0]["price"], "44100.00", "{}", book.text);
    assert_eq!(book.json["bids"][0]["quantity"], "0.5000", "{}", book.text);

    s.amend("a-1", id, &json!({}))
        .await
        .expect_error(400, "INVALID_AMEND", "empty amend");
    s.amend("a-1", id, &json!({"quantity":"0.12345"}))
        .await
        .expect_error(400, "QUANTITY_NOT_ON_LOT", "too many decimals");
    s.amend("a-1", id, &json!({"quantity":"0.5","price":"44100.001"}))
        .await
        .expect_error(400, "PRICE_NOT_ON_TICK", "too many decimals");
    s.amend("a-1", id, &json!({"quantity":"0.5","price":"60000.00"}))
        .await
        .expect_error(422, "PRICE_OUT_OF_BAND", "amend out of the band");
    s.amend("a-1", id, &json!({"qty":"1"})).await.expect_error(
        400,
        "UNKNOWN_FIELD",
        "unknown amend field",
    );
    s.amend("other", id, &json!({"quantity":"0.4"}))
        .await
        .expect_error(404, "ORDER_NOT_FOUND", "amend another account's order");
    s.amend("a-1", "bogus", &json!({"quantity":"0.4"}))
        .await
        .expect_error(400, "INVALID_ORDER_ID", "amend a malformed id");
    let still = s.order("a-1", id).await.expect(200, "get");
    assert_eq!(
        (still.json["quantity"].clone(), still.json["price"].clone()),
        (json!("0.5000"), json!("44100.00")),
        "refused amends change nothing"
    );

    // Partially filled: the new total must stay above what was filled.
    s.place_ok("a-2", &market("BTC/USD", "SELL", "0.2")).await;
    s.wait_status("a-1", id, "PARTIALLY_FILLED").await;
    s.amend("a-1", id, &json!({"quantity":"0.2"}))
        .await
        .expect_error(400, "INVALID_AMEND", "quantity at the filled quantity");
    let up = s
        .amend("a-1", id, &json!({"quantity":"0.3"}))
        .await
        .expect(200, "amend partial");
    assert_eq!(up.json["quantity"], "0.3000");
    assert_eq!(up.json["filledQuantity"], "0.2000");

    s.cancel("a-1", id).await.expect(200, "cancel");
    s.amend("a-1", id, &json!({"quantity":"0.25"}))
        .await
        .expect_error(409, "ORDER_NOT_OPEN", "amend a canceled order");
}

#[tokio::test]
async fn amend_price_only_moves_the_order() {
    let s = Server::start().await;
    let o = s
        .place_ok("ap-1", &limit("BTC/USD", "BUY", "0.5", "44000.00"))
        .await;
    let id = o["orderId"].as_str().unwrap();
    let moved = s
        .amend("ap-1", id, &json!({"price":"44100.00"}))
        .await
        .expect(200, "price-only amend");
    assert_eq!(moved.json["price"], "44100.00");
    assert_eq!(moved.json["quantity"], "0.5000", "the quantity is kept");
    let book = s.get("/api/book/BTC-USD", None).await.expect(200, "book");
    assert_eq!(book.json["bids"][0]["price"], "44100.00", "{}", book.text);
    let a = s
        .account_when("ap-1", |a| dec(&a["reservedMargin"]) == 2205.0)
        .await;
    assert_eq!(
        dec(&a.json["reservedMargin"]),
        2205.0,
        "0.5 × 44100 × 10 %: {}",
        a.text
    );
    // A price-only amend that crosses trades like a new limit order.
    s.place_ok("ap-2", &limit("BTC/USD", "SELL", "0.5", "44200.00"))
        .await;
    s.amend("ap-1", id, &json!({"price":"44200.00"}))
        .await
        .expect(200, "crossing amend");
    s.wait_status("ap-1", id, "FILLED").await;
}

#[tokio::test]
async fn matching_outcomes_appear_on_the_order() {
    let s = Server::start().await;
    // Resting ask from a maker.
    let ask = s
        .place_ok("maker", &limit("BTC/USD", "SELL", "0.1", "45000.00"))
        .await;
    let ask_id = ask["orderId"].as_str().unwrap();

    // Post-only that would take: accepted, then canceled with the reason.
    let po = s
        .place_ok(
            "taker",
            &json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":"45000.00","postOnly":true}),
        )
        .await;
    assert_eq!(po["postOnly"], true);
    let po = s
        .wait_status("taker", po["orderId"].as_str().unwrap(), "CANCELED")
        .await;
    assert_eq!(po["rejectReason"], "POST_ONLY_WOULD_TAKE", "{po}");

    // FOK bigger than the book: expires, nothing filled.
    let fok = s
        .place_ok(
            "taker",
            &json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.2","price":"45000.00","timeInForce":"FOK"}),
        )
        .await;
    let fok = s
        .wait_status("taker", fok["orderId"].as_str().unwrap(), "EXPIRED")
        .await;
    assert_eq!(fok["rejectReason"], "FOK_NOT_FILLABLE", "{fok}");
    assert_eq!(fok["filledQuantity"], "0.0000");

    // Self-trade: the maker crossing its own ask; the newest order is canceled.
    let own = s
        .place_ok("maker", &limit("BTC/USD", "BUY", "0.1", "45000.00"))
        .await;
    let own = s
        .wait_status("maker", own["orderId"].as_str().unwrap(), "CANCELED")
        .await;
    assert_eq!(own["rejectReason"], "SELF_TRADE_PREVENTED", "{own}");
    assert_eq!(
        s.order("maker", ask_id).await.json["status"],
        "ACCEPTED",
        "the resting order stays"
    );

    // Partial fill, then the IOC remainder expires.
    let ioc = s
        .place_ok(
            "taker",
            &json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.3","price":"45000.00","timeInForce":"IOC"}),
        )
        .await;
    let ioc = s
        .wait_status("taker", ioc["orderId"].as_str().unwrap(), "EXPIRED")
        .await;
    assert_eq!(ioc["filledQuantity"], "0.1000", "{ioc}");
    assert_eq!(ioc["avgFillPrice"], "45000.00", "{ioc}");
    s.wait_status("maker", ask_id, "FILLED").await;

    // A GTC remainder rests as PARTIALLY_FILLED.
    s.place_ok("maker", &limit("BTC/USD", "SELL", "0.1", "45000.00"))
        .await;
    let gtc = s
        .place_ok("taker", &limit("BTC/USD", "BUY", "0.3", "45000.00"))
        .await;
    let gtc = s
        .wait_status(
            "taker",
            gtc["orderId"].as_str().unwrap(),
            "PARTIALLY_FILLED",
        )
        .await;
    assert_eq!(gtc["filledQuantity"], "0.1000");
    let book = s.get("/api/book/BTC-USD", None).await.expect(200, "book");
    assert_eq!(
        book.json["bids"][0]["quantity"], "0.2000",
        "the remainder rests: {}",
        book.text
    );
}
