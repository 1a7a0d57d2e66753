//! Every error code of docs/errors.md that a client can provoke over HTTP, with its status,
//! its `field`, the error-body shape, and whether anything was recorded.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn body(pairs: &[(&str, Value)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.clone());
    }
    Value::Object(m)
}

#[tokio::test]
async fn validation_codes_are_400_with_the_field_and_record_nothing() {
    let s = Server::start().await;
    let base = |extra: &[(&str, Value)]| {
        let mut b = body(&[
            ("symbol", json!("BTC/USD")),
            ("side", json!("BUY")),
            ("quantity", json!("0.1")),
            ("price", json!("45000.00")),
        ]);
        for (k, v) in extra {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(*k);
            } else {
                b[*k] = v.clone();
            }
        }
        b
    };
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "UNKNOWN_SYMBOL",
            "symbol",
            base(&[("symbol", json!("DOGE/USD"))]),
        ),
        ("INVALID_SIDE", "side", base(&[("side", json!("HOLD"))])),
        (
            "INVALID_ORDER_TYPE",
            "orderType",
            base(&[("orderType", json!("STOP"))]),
        ),
        (
            "INVALID_TIME_IN_FORCE",
            "timeInForce",
            base(&[("timeInForce", json!("DAY"))]),
        ),
        (
            "INVALID_TIME_IN_FORCE",
            "timeInForce",
            base(&[
                ("price", Value::Null),
                ("orderType", json!("MARKET")),
                ("timeInForce", json!("GTC")),
            ]),
        ),
        (
            "INVALID_QUANTITY",
            "quantity",
            base(&[("quantity", json!("0"))]),
        ),
        (
            "INVALID_QUANTITY",
            "quantity",
            base(&[("quantity", json!("-1"))]),
        ),
        (
            "INVALID_QUANTITY",
            "quantity",
            base(&[("quantity", json!("lots"))]),
        ),
        (
            "INVALID_PRICE",
            "price",
            base(&[("price", json!("-45000"))]),
        ),
        ("INVALID_PRICE", "price", base(&[("price", json!("cheap"))])),
        (
            "PRICE_NOT_ON_TICK",
            "price",
            base(&[("price", json!("45000.001"))]),
        ),
        (
            "QUANTITY_NOT_ON_LOT",
            "quantity",
            base(&[("quantity", json!("0.00001"))]),
        ),
        (
            "QUANTITY_ABOVE_MAX",
            "quantity",
            base(&[("quantity", json!("100.0001"))]),
        ),
        (
            "BELOW_MIN_NOTIONAL",
            "quantity",
            base(&[("quantity", json!("0.0001"))]),
        ),
        (
            "PRICE_REQUIRED",
            "price",
            base(&[("price", Value::Null), ("orderType", json!("LIMIT"))]),
        ),
        (
            "PRICE_NOT_ALLOWED",
            "price",
            base(&[("orderType", json!("MARKET"))]),
        ),
        (
            "POST_ONLY_NOT_ALLOWED",
            "postOnly",
            base(&[("postOnly", json!(true)), ("timeInForce", json!("IOC"))]),
        ),
        (
            "INVALID_CLIENT_ORDER_ID",
            "clientOrderId",
            base(&[("clientOrderId", json!("x".repeat(65)))]),
        ),
        (
            "INVALID_CLIENT_ORDER_ID",
            "clientOrderId",
            base(&[("clientOrderId", json!(""))]),
        ),
    ];
    for (i, (code, field, b)) in cases.iter().enumerate() {
        let k = format!("v-{i}");
        let r = s.place("validator", &k, b).await;
        let r = r.expect_error(400, code, &format!("{b}"));
        assert_eq!(r.field(), Some(*field), "field for {code}: {}", r.text);
        assert!(
            r.json.get("order").is_none(),
            "validation errors carry no order: {}",
            r.text
        );
    }
    // The key of a refused request is not consumed: the corrected request goes through.
    let fixed = s
        .place("validator", "v-0", &base(&[]))
        .await
        .expect(201, "key reuse after 400");
    assert_eq!(fixed.header("idempotent-replayed"), None);
    // Once that order is visible, everything before it was processed: it is the only one.
    let id = fixed.json["orderId"].as_str().unwrap();
    s.wait_order("validator", id, "visible", |_| true).await;
    let all = s.all_orders("validator", "").await;
    assert_eq!(all.len(), 1, "validation errors record nothing: {all:?}");

    // INVALID_ACCOUNT: a malformed X-Account-Id.
    for bad in ["has space", &"a".repeat(65), "semi;colon"] {
        s.place(bad, &key("acct"), &seed_order())
            .await
            .expect_error(400, "INVALID_ACCOUNT", bad);
    }
}

#[tokio::test]
async fn request_format_errors() {
    let s = Server::start().await;
    let post = |ct: &'static str, raw: Vec<u8>, hdrs: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let h: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.send_raw(Method::POST, "/api/orders", Some("fmt"), &h, ct, raw)
                .await
        }
    };
    let k = || vec![("X-Idempotency-Key", key("fmt"))];

    post(
        "application/json",
        b"{\"symbol\": \"BTC/USD\",".to_vec(),
        k(),
    )
    .await
    .expect_error(400, "INVALID_JSON", "truncated JSON");
    post("application/json", b"[1,2,3]".to_vec(), k())
        .await
        .expect_error(400, "INVALID_JSON", "not an object");
    let r = s
        .place(
            "fmt",
            &key("fmt"),
            &json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":"45000","qty":"1"}),
        )
        .await
        .expect_error(400, "UNKNOWN_FIELD", "unknown field");
    assert_eq!(
        r.field(),
        Some("qty"),
        "UNKNOWN_FIELD names the field: {}",
        r.text
    );

    s.send(
        Method::POST,
        "/api/orders",
        Some("fmt"),
        &[],
        Some(&seed_order()),
    )
    .await
    .expect_error(400, "IDEMPOTENCY_KEY_MISSING", "no key");
    s.place("fmt", &"k".repeat(256), &seed_order())
        .await
        .expect_error(400, "INVALID_IDEMPOTENCY_KEY", "256-char key");
    s.place("fmt", "", &seed_order()).await.expect_error(
        400,
        "INVALID_IDEMPOTENCY_KEY",
        "empty key",
    );
    s.place("fmt", &"k".repeat(255), &seed_order())
        .await
        .expect(201, "255-char key is fine");

    let big = format!(
        r#"{{"symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":"45000","clientOrderId":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    post("application/json", big.into_bytes(), k())
        .await
        .expect_error(413, "PAYLOAD_TOO_LARGE", "70 KiB body");

    post(
        "text/plain",
        serde_json::to_vec(&seed_order()).unwrap(),
        k(),
    )
    .await
    .expect_error(415, "UNSUPPORTED_MEDIA_TYPE", "text/plain body");
    post(
        "application/json; charset=utf-8",
        serde_json::to_vec(&seed_order()).unwrap(),
        k(),
    )
    .await
    .expect(201, "application/json with a charset parameter is JSON");

    assert_eq!(
        s.orders_when("fmt", "", 2).await.len(),
        2,
        "only the two valid requests recorded orders"
    );
}

#[tokio::test]
async fn routing_errors_404_405() {
    let s = Server::start().await;
    s.get("/api/nope", None)
        .await
        .expect_error(404, "NOT_FOUND", "unknown path");
    s.get("/api", None)
        .await
        .expect_error(404, "NOT_FOUND", "bare /api (`/` is the dashboard)");
    let r = s
        .send(Method::PUT, "/api/orders", Some("x"), &[], Some(&json!({})))
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED", "PUT /api/orders");
    let allow = r.header("allow").unwrap_or("").to_ascii_uppercase();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
    let r = s
        .send(Method::DELETE, "/api/symbols", None, &[], None)
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED", "DELETE /api/symbols");
    assert!(
        r.header("allow").unwrap_or("").contains("GET"),
        "{:?}",
        r.headers
    );
    let r = s
        .send(
            Method::POST,
            "/api/orders/01900000-0000-7000-8000-000000000000",
            Some("x"),
            &[],
            Some(&json!({})),
        )
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED", "POST /api/orders/{id}");
    let allow = r.header("allow").unwrap_or("").to_ascii_uppercase();
    for m in ["GET", "DELETE", "PATCH"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow}");
    }
}

/// The 422 answer of a risk rejection: the recorded order, REJECTED with the reason; the order
/// is visible afterwards and the replay answers the same.
async fn expect_risk_reject(s: &Server, account: &str, body: &Value, code: &str) -> Value {
    let k = key("risk");
    let r = s
        .place(account, &k, body)
        .await
        .expect_error(422, code, &format!("{code}: {body}"));
    let o = r.json["order"].clone();
    assert_eq!(o["status"], "REJECTED", "{}", r.text);
    assert_eq!(o["rejectReason"], code, "{}", r.text);
    assert_eq!(o["account"], account);
    let id = o["orderId"]
        .as_str()
        .unwrap_or_else(|| panic!("rejected order has an id: {}", r.text));
    let got = s
        .wait_order(account, id, "recorded as REJECTED", |o| {
            o["status"] == "REJECTED"
        })
        .await;
    assert_eq!(got["rejectReason"], code);
    let again = s
        .place(account, &k, body)
        .await
        .expect(422, "replay of a 422");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json["order"], r.json["order"],
        "the replay answers the stored body"
    );
    assert_eq!(again.code(), code);
    o
}

#[tokio::test]
async fn risk_margin_band_position_rejections_are_422_and_recorded() {
    let s = Server::start_with(&["--default-equity", "100000"]).await;
    // 10 BTC @ 45000 reserves 45,000 of margin; the third exceeds an equity of 100,000.
    let big = limit("BTC/USD", "BUY", "10", "45000.00");
    s.place_ok("margin", &big).await;
    s.place_ok("margin", &big).await;
    expect_risk_reject(&s, "margin", &big, "INSUFFICIENT_MARGIN").await;
    let a = s.account_when("margin", |a| a["openOrders"] == 2).await;
    assert_eq!(
        dec(&a.json["reservedMargin"]),
        90000.0,
        "a rejection reserves nothing: {}",
        a.text
    );
    assert_eq!(dec(&a.json["availableMargin"]), 10000.0, "{}", a.text);
    assert_eq!(a.json["openOrders"], 2);

    // Price band: 5 % around the 45000.00 reference.
    expect_risk_reject(
        &s,
        "band",
        &limit("BTC/USD", "BUY", "0.1", "49500.00"),
        "PRICE_OUT_OF_BAND",
    )
    .await;
    expect_risk_reject(
        &s,
        "band",
        &limit("BTC/USD", "SELL", "0.1", "40500.00"),
        "PRICE_OUT_OF_BAND",
    )
    .await;
    s.place_ok("band", &limit("BTC/USD", "BUY", "0.1", "47250.00"))
        .await;

    // Position limit: BTC max position 50 (60 BTC is 270,000 of margin: fine for the default
    // equity of 1,000,000).
    let s2 = Server::start().await;
    expect_risk_reject(
        &s2,
        "pos",
        &limit("BTC/USD", "BUY", "60", "45000.00"),
        "POSITION_LIMIT_EXCEEDED",
    )
    .await;
    s2.place_ok("pos", &limit("BTC/USD", "BUY", "30", "45000.00"))
        .await;
    // Open orders count towards the limit on their side: 30 + 30 > 50.
    expect_risk_reject(
        &s2,
        "pos",
        &limit("BTC/USD", "BUY", "30", "45000.00"),
        "POSITION_LIMIT_EXCEEDED",
    )
    .await;
}

#[tokio::test]
async fn risk_max_notional_and_open_orders() {
    // BTC/USD with max notional 100,000 and min quantity 0.001 (ten lots).
    let table = instruments_with_btc("100000", "0.001");
    let path = table.path().to_str().unwrap().to_string();
    let s = Server::start_with(&["--instruments", &path, "--max-open-orders", "2"]).await;
    let syms = s.get("/api/symbols", None).await.expect(200, "symbols");
    assert_eq!(
        syms.json["symbols"].as_array().unwrap().len(),
        2,
        "the custom table is served"
    );

    let r = s
        .place(
            "notional",
            &key("min"),
            &limit("BTC/USD", "BUY", "0.0005", "45000.00"),
        )
        .await
        .expect_error(400, "QUANTITY_BELOW_MIN", "below the configured minimum");
    assert_eq!(r.field(), Some("quantity"));

    // 3 BTC × 45000 = 135,000 > 100,000.
    expect_risk_reject(
        &s,
        "notional",
        &limit("BTC/USD", "BUY", "3", "45000.00"),
        "MAX_NOTIONAL_EXCEEDED",
    )
    .await;
    s.place_ok("notional", &limit("BTC/USD", "BUY", "2", "45000.00"))
        .await;

    s.place_ok("opens", &limit("ETH/USD", "BUY", "1", "2490.00"))
        .await;
    s.place_ok("opens", &limit("ETH/USD", "BUY", "1", "2480.00"))
        .await;
    expect_risk_reject(
        &s,
        "opens",
        &limit("ETH/USD", "BUY", "1", "2470.00"),
        "TOO_MANY_OPEN_ORDERS",
    )
    .await;
    // Another account is not affected.
    s.place_ok("other", &limit("ETH/USD", "BUY", "1", "2470.00"))
        .await;
}

#[tokio::test]
async fn halt_account_and_global() {
    let s = Server::start().await;
    let resting = s
        .place_ok("h-1", &limit("BTC/USD", "BUY", "0.1", "44000.00"))
        .await;

    let r = s
        .halt(&json!({"scope":"ACCOUNT","account":"h-1","halted":true}))
        .await
        .expect(200, "halt account");
    assert_eq!(
        r.json,
        json!({"scope":"ACCOUNT","account":"h-1","halted":true})
    );
    let a = s.account_when("h-1", |a| a["halted"] == true).await;
    assert_eq!(a.json["halted"], true);
    expect_risk_reject(&s, "h-1", &seed_order(), "TRADING_HALTED").await;
    s.place_ok("h-2", &seed_order()).await;
    // Cancels still work while halted.
    s.cancel("h-1", resting["orderId"].as_str().unwrap())
        .await
        .expect(200, "cancel while halted");

    s.halt(&json!({"scope":"ACCOUNT","account":"h-1","halted":false}))
        .await
        .expect(200, "unhalt");
    s.place_ok("h-1", &seed_order()).await;

    let r = s
        .halt(&json!({"scope":"GLOBAL","halted":true}))
        .await
        .expect(200, "global halt");
    assert_eq!(r.json["scope"], "GLOBAL");
    assert_eq!(r.json["halted"], true);
    assert_eq!(r.json["account"], Value::Null);
    expect_risk_reject(&s, "h-3", &seed_order(), "TRADING_HALTED").await;
    expect_risk_reject(&s, "h-2", &seed_order(), "TRADING_HALTED").await;
    s.halt(&json!({"scope":"GLOBAL","halted":false}))
        .await
        .expect(200, "global unhalt");
    s.place_ok("h-3", &seed_order()).await;

    // Bad halt bodies.
    for bad in [
        json!({"scope":"ACCOUNT","halted":true}),
        json!({"scope":"PLANET","halted":true}),
        json!({"scope":"GLOBAL"}),
        json!({"scope":"GLOBAL","halted":true,"extra":1}),
    ] {
        let r = s.halt(&bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}

// The JWT tests (roles, expiry, signatures, JWKS) are in http_auth.rs.
