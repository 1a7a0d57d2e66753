//! Market data a chart or a trading screen reads: symbols, book, trades, candles.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn symbols_list_the_instrument_table() {
    let s = Server::start().await;
    let r = s.get("/api/symbols", None).await.expect(200, "symbols");
    let list = r.json["symbols"].as_array().expect("symbols array");
    let names: Vec<&str> = list.iter().map(|x| x["symbol"].as_str().unwrap()).collect();
    assert_eq!(names, ["BTC/USD", "ETH/USD", "SOL/USD"]);
    let btc = &list[0];
    for f in [
        "symbol",
        "base",
        "quote",
        "tickSize",
        "lotSize",
        "minQty",
        "maxQty",
        "minNotional",
        "maxNotional",
        "priceBandPct",
        "initialMarginPct",
        "maxPosition",
        "referencePrice",
        "lastPrice",
    ] {
        assert!(btc.get(f).is_some(), "symbol lacks `{f}`: {btc}");
    }
    assert_eq!(btc["base"], "BTC");
    assert_eq!(btc["quote"], "USD");
    assert_eq!(btc["tickSize"], "0.01");
    assert_eq!(btc["lotSize"], "0.0001");
    assert_eq!(btc["referencePrice"], "45000.00");
    let nums = [
        ("minQty", 0.0001),
        ("maxQty", 100.0),
        ("minNotional", 10.0),
        ("maxNotional", 5_000_000.0),
        ("priceBandPct", 5.0),
        ("initialMarginPct", 10.0),
        ("maxPosition", 50.0),
    ];
    for (f, v) in nums {
        assert_eq!(dec(&btc[f]), v, "BTC/USD {f}: {btc}");
    }
    assert_eq!(
        btc["lastPrice"], "45000.00",
        "the reference price until the first trade"
    );

    s.place_ok("md-1", &limit("BTC/USD", "SELL", "0.1", "45100.00"))
        .await;
    let b = s.place_ok("md-2", &market("BTC/USD", "BUY", "0.1")).await;
    s.wait_status("md-2", b["orderId"].as_str().unwrap(), "FILLED")
        .await;
    let r = s.get("/api/symbols", None).await.expect(200, "symbols");
    assert_eq!(
        r.json["symbols"][0]["lastPrice"], "45100.00",
        "lastPrice follows trades"
    );
}

#[tokio::test]
async fn book_levels_best_first_with_depth() {
    let s = Server::start().await;
    s.place_ok("bk-1", &limit("BTC/USD", "BUY", "0.1", "44980.00"))
        .await;
    s.place_ok("bk-2", &limit("BTC/USD", "BUY", "0.2", "44990.00"))
        .await;
    s.place_ok("bk-3", &limit("BTC/USD", "BUY", "0.3", "44980.00"))
        .await;
    s.place_ok("bk-1", &limit("BTC/USD", "SELL", "0.5", "45020.00"))
        .await;
    s.place_ok("bk-2", &limit("BTC/USD", "SELL", "0.4", "45010.00"))
        .await;

    let r = s.get("/api/book/BTC-USD", None).await.expect(200, "book");
    assert_eq!(r.json["symbol"], "BTC/USD");
    assert!(is_timestamp(&r.json["timestamp"]), "{}", r.text);
    assert_eq!(
        r.json["bids"],
        json!([
            {"price":"44990.00","quantity":"0.2000","orders":1},
            {"price":"44980.00","quantity":"0.4000","orders":2}
        ]),
        "bids best (highest) first, aggregated per level"
    );
    assert_eq!(
        r.json["asks"],
        json!([
            {"price":"45010.00","quantity":"0.4000","orders":1},
            {"price":"45020.00","quantity":"0.5000","orders":1}
        ]),
        "asks best (lowest) first"
    );
    let top = s
        .get("/api/book/BTC-USD?depth=1", None)
        .await
        .expect(200, "depth=1");
    assert_eq!(top.json["bids"].as_array().unwrap().len(), 1);
    assert_eq!(top.json["asks"].as_array().unwrap().len(), 1);
    assert_eq!(top.json["bids"][0]["price"], "44990.00");

    let eth = s
        .get("/api/book/ETH-USD", None)
        .await
        .expect(200, "empty book");
    assert_eq!(
        (eth.json["bids"].clone(), eth.json["asks"].clone()),
        (json!([]), json!([]))
    );

    for bad in ["depth=0", "depth=1001", "depth=x"] {
        s.get(&format!("/api/book/BTC-USD?{bad}"), None)
            .await
            .expect_error(400, "INVALID_PARAMETER", bad);
    }
    s.get("/api/book/DOGE-USD", None)
        .await
        .expect_error(404, "UNKNOWN_SYMBOL", "unknown book");
}

#[tokio::test]
async fn trades_newest_first_with_aggressor_side() {
    let s = Server::start().await;
    s.place_ok("tr-1", &limit("ETH/USD", "SELL", "1", "2500.00"))
        .await;
    s.place_ok("tr-1", &limit("ETH/USD", "BUY", "2", "2490.00"))
        .await;
    let b = s
        .place_ok("tr-2", &limit("ETH/USD", "BUY", "1", "2500.00"))
        .await;
    s.wait_status("tr-2", b["orderId"].as_str().unwrap(), "FILLED")
        .await;
    let sl = s.place_ok("tr-3", &market("ETH/USD", "SELL", "0.5")).await;
    s.wait_status("tr-3", sl["orderId"].as_str().unwrap(), "FILLED")
        .await;

    let r = s
        .get("/api/trades/ETH-USD", None)
        .await
        .expect(200, "trades");
    assert_eq!(r.json["symbol"], "ETH/USD");
    let t = r.json["trades"].as_array().expect("trades array");
    assert_eq!(t.len(), 2, "{}", r.text);
    assert_eq!(
        (
            t[0]["side"].clone(),
            t[0]["price"].clone(),
            t[0]["quantity"].clone()
        ),
        (json!("SELL"), json!("2490.00"), json!("0.500")),
        "newest first, side = aggressor"
    );
    assert_eq!(
        (
            t[1]["side"].clone(),
            t[1]["price"].clone(),
            t[1]["quantity"].clone()
        ),
        (json!("BUY"), json!("2500.00"), json!("1.000"))
    );
    for x in t {
        assert!(
            x["tradeId"].as_u64().is_some_and(|id| id >= 1),
            "tradeId: {x}"
        );
        assert!(is_timestamp(&x["timestamp"]), "{x}");
    }
    assert!(
        t[0]["tradeId"].as_u64() > t[1]["tradeId"].as_u64(),
        "trade ids increase: {}",
        r.text
    );

    let one = s
        .get("/api/trades/ETH-USD?limit=1", None)
        .await
        .expect(200, "limit=1");
    assert_eq!(one.json["trades"].as_array().unwrap().len(), 1);
    assert_eq!(one.json["trades"][0]["tradeId"], t[0]["tradeId"]);
    let none = s
        .get("/api/trades/SOL-USD", None)
        .await
        .expect(200, "no trades");
    assert_eq!(none.json["trades"], json!([]));
    s.get("/api/trades/DOGE-USD", None)
        .await
        .expect_error(404, "UNKNOWN_SYMBOL", "unknown trades");
}

#[tokio::test]
async fn candles_aggregate_trades() {
    let s = Server::start().await;
    // Three trades: 100.000 ×2, 101.000 ×1, 99.500 ×3 (in that order).
    for (px, qty) in [("100.000", "2"), ("101.000", "1"), ("99.500", "3")] {
        s.place_ok("cd-1", &limit("SOL/USD", "SELL", qty, px)).await;
        let b = s.place_ok("cd-2", &market("SOL/USD", "BUY", qty)).await;
        s.wait_status("cd-2", b["orderId"].as_str().unwrap(), "FILLED")
            .await;
    }
    let r = s
        .get("/api/candles/SOL-USD?interval=1h", None)
        .await
        .expect(200, "candles");
    assert_eq!(r.json["symbol"], "SOL/USD");
    assert_eq!(r.json["interval"], "1h");
    let c = r.json["candles"].as_array().expect("candles array");
    // Within one hour bucket unless the test straddles the hour: then two candles.
    let last = c.last().expect("a candle");
    assert!(is_timestamp(&last["openTime"]), "{last}");
    let trades: u64 = c.iter().map(|x| x["trades"].as_u64().unwrap()).sum();
    let volume: f64 = c.iter().map(|x| dec(&x["volume"])).sum();
    assert_eq!(trades, 3, "{}", r.text);
    assert_eq!(volume, 6.0, "{}", r.text);
    if c.len() == 1 {
        assert_eq!(
            (
                last["open"].clone(),
                last["high"].clone(),
                last["low"].clone(),
                last["close"].clone()
            ),
            (
                json!("100.000"),
                json!("101.000"),
                json!("99.500"),
                json!("99.500")
            ),
            "OHLC of the trades"
        );
    }
    let ots: Vec<&str> = c.iter().map(|x| x["openTime"].as_str().unwrap()).collect();
    let mut sorted = ots.clone();
    sorted.sort();
    assert_eq!(ots, sorted, "oldest first");

    for iv in ["1s", "1m", "5m"] {
        let r = s
            .get(&format!("/api/candles/SOL-USD?interval={iv}"), None)
            .await
            .expect(200, iv);
        assert_eq!(r.json["interval"], iv);
        let n: u64 = r.json["candles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["trades"].as_u64().unwrap())
            .sum();
        assert_eq!(n, 3, "{iv}: {}", r.text);
    }
    let d = s
        .get("/api/candles/SOL-USD", None)
        .await
        .expect(200, "default interval");
    assert_eq!(d.json["interval"], "1m");
    let one = s
        .get("/api/candles/SOL-USD?interval=1s&limit=1", None)
        .await
        .expect(200, "limit");
    assert_eq!(one.json["candles"].as_array().unwrap().len(), 1);

    for bad in ["interval=2m", "interval=", "limit=0"] {
        s.get(&format!("/api/candles/SOL-USD?{bad}"), None)
            .await
            .expect_error(400, "INVALID_PARAMETER", bad);
    }
    s.get("/api/candles/DOGE-USD?interval=1m", None)
        .await
        .expect_error(404, "UNKNOWN_SYMBOL", "unknown candles");
}
