//! Black-box tests of the WebSocket endpoint `/ws` (docs/websocket.md): the real `oms`
//! binary, a real WebSocket client (tokio-tungstenite), orders placed over REST.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use common::{Server, dec, key, limit, market};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound for anything to arrive on a loaded machine.
const ARRIVE: Duration = Duration::from_secs(10);

/// A WebSocket client that keeps messages it was not waiting for.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    backlog: VecDeque<Value>,
    /// Every message received, in order.
    log: Vec<Value>,
}

fn ws_url(s: &Server) -> String {
    format!("{}/ws", s.base.replacen("http://", "ws://", 1))
}

impl Client {
    async fn connect(s: &Server, headers: &[(&str, &str)]) -> Client {
        let mut req = ws_url(s).into_client_request().expect("ws request");
        for (k, v) in headers {
            req.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("connect /ws: {e}; log:\n{}", s.log_tail()));
        assert_eq!(resp.status().as_u16(), 101);
        Client {
            ws,
            backlog: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Connected with `X-Account-Id` on the upgrade (auth off).
    async fn as_account(s: &Server, account: &str) -> Client {
        Self::connect(s, &[("X-Account-Id", account)]).await
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("ws send");
    }

    /// The next JSON message from the socket (pings and pongs skipped); None on close/timeout.
    async fn read(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match m.ok()? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server sent JSON");
                    if let Err(e) = check_message(&v) {
                        panic!("message does not match docs/asyncapi.json: {e}\n{v}");
                    }
                    self.log.push(v.clone());
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// The first message (backlog first) matching `pred`; others stay in the backlog.
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).expect("index");
        }
        let deadline = Instant::now() + ARRIVE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Some(v) if pred(&v) => return v,
                Some(v) => self.backlog.push_back(v),
                None => panic!("never got {what}; saw {:?}", self.backlog),
            }
        }
    }

    /// Sends a request with `id` and returns its reply.
    async fn request(&mut self, mut req: Value, id: u64) -> Value {
        req["id"] = json!(id);
        self.send(req).await;
        self.until(&format!("reply {id}"), |v| {
            v["id"] == id && v.get("ok").is_some()
        })
        .await
    }

    async fn subscribe(&mut self, args: Value, id: u64) -> Value {
        let r = self
            .request(json!({"op":"subscribe","args":args}), id)
            .await;
        assert_eq!(r["ok"], true, "subscribe {args}: {r}");
        r
    }

    /// Every message that arrives within `quiet` of the previous one.
    async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.backlog.drain(..).collect();
        while let Some(v) = self.read(quiet).await {
            out.push(v);
        }
        out
    }
}

/// docs/asyncapi.json, the machine-readable description every received message must match.
static ASYNCAPI: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("../../docs/asyncapi.json")).expect("asyncapi.json is JSON")
});

/// Checks `v` against the JSON-schema subset the AsyncAPI document uses: `$ref`, `type`,
/// `const`, `enum`, `minimum`, `properties`, `required`, `additionalProperties: false`,
/// `items`.
fn check_schema(s: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or("");
        let target = &ASYNCAPI["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: dangling $ref {r}"));
        }
        return check_schema(target, v, at);
    }
    if let Some(c) = s.get("const")
        && v != c
    {
        return Err(format!("{at}: {v} is not {c}"));
    }
    if let Some(e) = s["enum"].as_array()
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty()
        && !types.iter().any(|t| match *t {
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            _ => false,
        })
    {
        return Err(format!("{at}: {v} is not of type {types:?}"));
    }
    if let (Some(min), Some(n)) = (s["minimum"].as_i64(), v.as_i64())
        && n < min
    {
        return Err(format!("{at}: {n} < {min}"));
    }
    if let (Some(props), Some(o)) = (s["properties"].as_object(), v.as_object()) {
        for r in s["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or("");
            if !o.contains_key(r) {
                return Err(format!("{at}: missing required {r}"));
            }
        }
        for (k, x) in o {
            match props.get(k) {
                Some(p) => check_schema(p, x, &format!("{at}.{k}"))?,
                None if s["additionalProperties"] == false => {
                    return Err(format!("{at}: undocumented field {k}"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check_schema(items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The message's schema in docs/asyncapi.json (by `ok` / `channel`), and the check.
fn check_message(v: &Value) -> Result<(), String> {
    let name = if v.get("ok").is_some() {
        "Reply"
    } else {
        match v["channel"].as_str().unwrap_or("") {
            "book" => "BookMessage",
            "trades" => "TradesMessage",
            "candles" => "CandlesMessage",
            "orders" => "OrdersMessage",
            "executions" => "ExecutionsMessage",
            "positions" => "PositionsMessage",
            "heartbeat" => "HeartbeatMessage",
            other => return Err(format!("unknown channel {other:?}")),
        }
    };
    let msg = &ASYNCAPI["components"]["messages"][name]["payload"];
    if msg.is_null() {
        return Err(format!("no message {name} in asyncapi.json"));
    }
    check_schema(msg, v, name)
}

#[test]
fn the_asyncapi_checker_refuses_what_the_document_does_not_allow() {
    let good = json!({"channel":"book","symbol":"BTC/USD","depth":10,"type":"update","seq":1,
        "ts":"2026-01-01T00:00:00.000000Z","data":{"bids":[{"price":"1.00","quantity":"0","orders":0}],"asks":[],"checksum":5}});
    check_message(&good).unwrap();
    let mut extra = good.clone();
    extra["data"]["bids"][0]["size"] = json!(1);
    assert!(
        check_message(&extra)
            .unwrap_err()
            .contains("undocumented field size")
    );
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("seq");
    assert!(check_message(&missing).is_err());
    let mut depth = good;
    depth["depth"] = json!(7);
    assert!(check_message(&depth).is_err());
    assert!(
        check_message(
            &json!({"op":"subscribe","id":1,"ok":false,"error":{"code":"NOPE","message":""}})
        )
        .is_err()
    );
    // Every channel and every ws error code of the server is in the document.
    let channels =
        ASYNCAPI["components"]["schemas"]["Arg"]["properties"]["channel"]["enum"].clone();
    assert_eq!(
        channels,
        json!([
            "orders",
            "executions",
            "positions",
            "trades",
            "book",
            "candles",
            "heartbeat"
        ])
    );
}

fn of(channel: &str, kind: &str) -> impl Fn(&Value) -> bool {
    let (channel, kind) = (channel.to_owned(), kind.to_owned());
    move |v| v["channel"] == channel.as_str() && v["type"] == kind.as_str()
}

#[tokio::test]
async fn orders_and_executions_reach_their_owner_only() {
    let s = Server::start_with(&["--fsync", "never"]).await;
    let mut alice = Client::as_account(&s, "ws-alice").await;
    let mut bob = Client::connect(&s, &[]).await;
    let r = bob
        .request(json!({"op":"auth","account":"ws-bob"}), 1)
        .await;
    assert_eq!(
        (r["ok"].clone(), r["account"].clone()),
        (json!(true), json!("ws-bob"))
    );
    let mut carol = Client::as_account(&s, "ws-carol").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.subscribe(json!([{"channel":"orders"},{"channel":"executions"}]), 2)
            .await;
        let snap = c.until("orders snapshot", of("orders", "snapshot")).await;
        assert_eq!(snap["data"], json!([]), "no open orders yet: {snap}");
        assert!(snap["symbol"].is_null());
        c.until("executions snapshot", of("executions", "snapshot"))
            .await;
    }

    let sell = s
        .place_ok("ws-alice", &limit("BTC/USD", "SELL", "0.1", "45000"))
        .await;
    let sell_id = sell["orderId"].as_str().unwrap().to_owned();
    let placed = Instant::now();
    let buy = s
        .place(
            "ws-bob",
            &key("ws"),
            &limit("BTC/USD", "BUY", "0.1", "45000"),
        )
        .await;
    assert_eq!(buy.status, 201, "{}", buy.text);
    let buy_id = buy.json["orderId"].as_str().unwrap().to_owned();

    // Alice: ACCEPTED, then FILLED, and an execution, all for her order.
    let is_order = |id: &str, status: &str| {
        let (id, status) = (id.to_owned(), status.to_owned());
        move |v: &Value| {
            v["channel"] == "orders"
                && v["data"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|o| o["orderId"] == id.as_str() && o["status"] == status.as_str())
                })
        }
    };
    let acc = alice
        .until("ACCEPTED", is_order(&sell_id, "ACCEPTED"))
        .await;
    assert_eq!(acc["type"], "update");
    let filled = alice.until("FILLED", is_order(&sell_id, "FILLED")).await;
    assert!(
        filled["seq"].as_u64() > acc["seq"].as_u64(),
        "{acc} then {filled}"
    );
    let o = filled["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["orderId"] == sell_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (o["filledQuantity"].clone(), o["account"].clone()),
        (json!("0.1000"), json!("ws-alice"))
    );
    let x = alice
        .until("execution", |v| {
            v["channel"] == "executions" && v["type"] == "update"
        })
        .await;
    let e = &x["data"][0];
    assert_eq!(
        (e["orderId"].clone(), e["side"].clone()),
        (json!(sell_id), json!("SELL"))
    );
    assert_eq!(dec(&e["lastQty"]), 0.1);

    // Bob: his order's updates (the taker fills at once) and his execution.
    bob.until("bob FILLED", is_order(&buy_id, "FILLED")).await;
    let bx = bob
        .until("bob execution", |v| {
            v["channel"] == "executions" && v["type"] == "update"
        })
        .await;
    let latency = placed.elapsed();
    eprintln!(
        "REST 201 → both owners saw FILLED and the execution: {latency:?} (50 ms budget is measured in perf/, not asserted here)"
    );
    assert_eq!(bx["data"][0]["orderId"], buy_id.as_str());

    // Nobody sees another account's orders or executions; carol sees nothing at all.
    alice.drain(Duration::from_millis(300)).await;
    bob.drain(Duration::from_millis(300)).await;
    for (c, me, other) in [(&alice, "ws-alice", &buy_id), (&bob, "ws-bob", &sell_id)] {
        let text = serde_json::to_string(&c.log).unwrap();
        assert!(!text.contains(other.as_str()), "{me} saw {other}: {text}");
        for m in &c.log {
            for o in m["data"].as_array().into_iter().flatten() {
                assert_eq!(o["account"], me, "{m}");
            }
        }
    }
    carol.drain(Duration::from_millis(500)).await;
    assert!(
        carol
            .log
            .iter()
            .all(|m| m["type"] == "snapshot" || m.get("ok").is_some()),
        "carol saw {:?}",
        carol.log
    );
}

#[tokio::test]
async fn private_channels_need_auth_and_the_connection_survives_bad_requests() {
    let s = Server::start_with(&["--ws-max-message-bytes", "1024"]).await;
    let mut c = Client::connect(&s, &[]).await;
    let r = c
        .request(json!({"op":"subscribe","args":[{"channel":"orders"}]}), 1)
        .await;
    assert_eq!(
        (r["ok"].clone(), r["error"]["code"].clone()),
        (json!(false), json!("UNAUTHORIZED")),
        "{r}"
    );
    assert_eq!(r["op"], "subscribe");

    c.ws.send(Message::text("{not json")).await.unwrap();
    let r = c.until("malformed reply", |v| v["ok"] == false).await;
    assert_eq!(r["error"]["code"], "INVALID_MESSAGE", "{r}");
    let r = c.request(json!({"op":"dance"}), 2).await;
    assert_eq!(r["error"]["code"], "UNKNOWN_OP", "{r}");
    let r = c
        .request(json!({"op":"subscribe","args":[{"channel":"news"}]}), 3)
        .await;
    assert_eq!(r["error"]["code"], "UNKNOWN_CHANNEL", "{r}");
    let r = c
        .request(
            json!({"op":"subscribe","args":[{"channel":"trades","symbol":"NOPE/USD"}]}),
            4,
        )
        .await;
    assert_eq!(r["error"]["code"], "UNKNOWN_SYMBOL", "{r}");
    let r = c
        .request(
            json!({"op":"subscribe","args":[{"channel":"book","symbol":"BTC/USD","depth":7}]}),
            5,
        )
        .await;
    assert_eq!(r["error"]["code"], "INVALID_PARAMETER", "{r}");
    let r = c
        .request(
            json!({"op":"unsubscribe","args":[{"channel":"trades","symbol":"BTC/USD"}]}),
            6,
        )
        .await;
    assert_eq!(r["error"]["code"], "NOT_SUBSCRIBED", "{r}");
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let r = c
        .until("binary reply", |v| {
            v["ok"] == false
                && v["id"].is_null()
                && v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("binary"))
        })
        .await;
    assert_eq!(r["error"]["code"], "INVALID_MESSAGE");

    // Still connected: ping, then a public subscription works.
    let r = c.request(json!({"op":"ping"}), 7).await;
    assert_eq!(
        (r["op"].clone(), r["ok"].clone()),
        (json!("pong"), json!(true))
    );
    c.subscribe(json!([{"channel":"trades","symbol":"BTC-USD"}]), 8)
        .await;
    let snap = c.until("trades snapshot", of("trades", "snapshot")).await;
    assert_eq!(snap["symbol"], "BTC/USD");

    // After auth, the private channel is allowed.
    let r = c.request(json!({"op":"auth","account":"ws-late"}), 9).await;
    assert_eq!(r["ok"], true, "{r}");
    c.subscribe(json!([{"channel":"orders"}]), 10).await;
    let r = c
        .request(json!({"op":"auth","account":"someone-else"}), 11)
        .await;
    assert_eq!(r["error"]["code"], "ALREADY_AUTHENTICATED", "{r}");

    // An oversize frame closes with 1009 and a reason; the server keeps serving.
    c.ws.send(Message::text("x".repeat(4096))).await.unwrap();
    let close = loop {
        match tokio::time::timeout(ARRIVE, c.ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let f = close.expect("close frame with a code");
    assert_eq!(f.code, CloseCode::Size);
    assert!(f.reason.contains("1024"), "{}", f.reason);
    let mut again = Client::connect(&s, &[]).await;
    let r = again.request(json!({"op":"ping"}), 1).await;
    assert_eq!(r["op"], "pong");
    s.get("/health", None)
        .await
        .expect(200, "health after bad ws input");

    // Not a WebSocket handshake: 426 with a code.
    let r = s.get("/ws", None).await;
    assert_eq!(
        (r.status, r.code()),
        (426, "UPGRADE_REQUIRED"),
        "{}",
        r.text
    );
}

/// A client's copy of one book stream, from a snapshot and updates.
#[derive(Default)]
struct LocalBook {
    seq: Option<u64>,
    bids: BTreeMap<i64, Value>,
    asks: BTreeMap<i64, Value>,
    snapshots: usize,
    updates: usize,
}

fn ticks(price: &Value) -> i64 {
    (dec(price) * 100.0).round() as i64
}

impl LocalBook {
    fn apply(&mut self, m: &Value) {
        let seq = m["seq"].as_u64().expect("seq");
        let d = &m["data"];
        match m["type"].as_str() {
            Some("snapshot") => {
                if let Some(prev) = self.seq {
                    assert!(seq >= prev, "snapshot seq {seq} after {prev}");
                }
                self.bids.clear();
                self.asks.clear();
                self.snapshots += 1;
            }
            Some("update") => {
                let prev = self.seq.expect("an update before any snapshot");
                assert_eq!(seq, prev + 1, "gap in book seq: {prev} then {m}");
                self.updates += 1;
            }
            other => panic!("book message type {other:?}"),
        }
        self.seq = Some(seq);
        for (side, book) in [("bids", &mut self.bids), ("asks", &mut self.asks)] {
            for l in d[side].as_array().expect("levels") {
                if dec(&l["quantity"]) == 0.0 {
                    book.remove(&ticks(&l["price"]));
                } else {
                    book.insert(ticks(&l["price"]), l.clone());
                }
            }
        }
        if let Some(sum) = d["checksum"].as_u64() {
            assert_eq!(sum, u64::from(self.checksum(10)), "checksum after {m}");
        }
    }

    fn levels(&self) -> (Vec<Value>, Vec<Value>) {
        (
            self.bids.values().rev().cloned().collect(),
            self.asks.values().cloned().collect(),
        )
    }

    /// docs/websocket.md: CRC-32 of `price:quantity` of the top asks then bids, joined by `|`.
    fn checksum(&self, n: usize) -> u32 {
        let (bids, asks) = self.levels();
        let parts: Vec<String> = asks
            .iter()
            .take(n)
            .chain(bids.iter().take(n))
            .map(|l| {
                format!(
                    "{}:{}",
                    l["price"].as_str().unwrap(),
                    l["quantity"].as_str().unwrap()
                )
            })
            .collect();
        crc32fast::hash(parts.join("|").as_bytes())
    }
}

/// A tiny deterministic generator (xorshift) for the random order flow.
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

/// Places `n` random orders (limits on both sides around 45000, some market orders, some
/// cancels) from `accounts` parallel clients.
async fn random_flow(s: &Server, n: usize, accounts: usize, seed: u64) -> usize {
    let per = n / accounts;
    let mut tasks = Vec::new();
    for a in 0..accounts {
        let client = s.client.clone();
        let base = s.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed + a as u64 * 7919 + 1);
            let account = format!("flow-{a}");
            let mut open: Vec<String> = Vec::new();
            let mut acked = 0;
            for i in 0..per {
                let roll = rng.below(100);
                let resp = if roll < 15 && !open.is_empty() {
                    let id = open.swap_remove(rng.below(open.len() as u64) as usize);
                    client
                        .delete(format!("{base}/api/orders/{id}"))
                        .header("X-Account-Id", &account)
                        .send()
                        .await
                } else {
                    let side = if rng.below(2) == 0 { "BUY" } else { "SELL" };
                    let qty = format!("0.{:04}", 1 + rng.below(500));
                    let body = if roll < 25 {
                        market("BTC/USD", side, &qty)
                    } else {
                        let px =
                            44_900 + rng.below(200) as i64 + if side == "BUY" { -40 } else { 40 };
                        limit(
                            "BTC/USD",
                            side,
                            &qty,
                            &format!("{px}.{:02}", rng.below(4) * 25),
                        )
                    };
                    client
                        .post(format!("{base}/api/orders"))
                        .header("X-Account-Id", &account)
                        .header("X-Idempotency-Key", format!("{account}-{seed}-{i}"))
                        .json(&body)
                        .send()
                        .await
                };
                let r = resp.expect("REST request");
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if status == 201 {
                    acked += 1;
                    if let Some(id) = v["orderId"].as_str()
                        && v["orderType"] == "LIMIT"
                    {
                        open.push(id.to_owned());
                    }
                }
            }
            acked
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.expect("flow task");
    }
    acked
}

#[tokio::test]
async fn book_snapshot_plus_updates_equals_the_rest_book_after_1000_random_orders() {
    let s = Server::start_with(&["--fsync", "never"]).await;
    // Some resting orders before anyone subscribes: the snapshot must hold them.
    random_flow(&s, 40, 4, 99).await;
    let mut c = Client::connect(&s, &[]).await;
    c.subscribe(
        json!([{"channel":"book","symbol":"BTC/USD","depth":1000},{"channel":"book","symbol":"BTC/USD","depth":10}]),
        1,
    )
    .await;
    let acked = random_flow(&s, 1000, 8, 7).await;
    assert!(acked > 500, "only {acked} of 1000 orders acknowledged");

    let mut full = LocalBook::default();
    let mut top10 = LocalBook::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for m in c.drain(Duration::from_millis(300)).await {
            assert_eq!(m["channel"], "book", "{m}");
            match m["depth"].as_u64() {
                Some(1000) => full.apply(&m),
                Some(10) => top10.apply(&m),
                other => panic!("depth {other:?}"),
            }
        }
        let rest_full = s
            .get("/api/book/BTC-USD?depth=1000", None)
            .await
            .expect(200, "book");
        let rest_10 = s
            .get("/api/book/BTC-USD?depth=10", None)
            .await
            .expect(200, "book");
        let want = |r: &Value| {
            (
                r["bids"].as_array().unwrap().clone(),
                r["asks"].as_array().unwrap().clone(),
            )
        };
        if full.levels() == want(&rest_full.json) && top10.levels() == want(&rest_10.json) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the WebSocket book never matched REST:\nws bids {:?}\nrest {}",
            full.levels().0.iter().take(5).collect::<Vec<_>>(),
            rest_full.text.chars().take(600).collect::<String>()
        );
    }
    assert!(full.updates > 50, "{} updates", full.updates);
    assert!(!full.bids.is_empty() && !full.asks.is_empty());

    // A forced resync gets a fresh snapshot at the current seq, equal to the book.
    let before = full.seq;
    let r = c
        .request(
            json!({"op":"resync","channel":"book","symbol":"BTC/USD","depth":1000}),
            2,
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let snap = c.until("resync snapshot", of("book", "snapshot")).await;
    assert_eq!(
        snap["seq"].as_u64(),
        before,
        "a resync snapshot carries the current seq"
    );
    let mut fresh = LocalBook::default();
    fresh.apply(&snap);
    assert_eq!(fresh.levels(), full.levels());
    let r = c
        .request(
            json!({"op":"resync","channel":"trades","symbol":"BTC/USD"}),
            3,
        )
        .await;
    assert_eq!(r["error"]["code"], "NOT_SUBSCRIBED", "{r}");

    // Metrics report the stream.
    let m = s.get("/metrics", None).await.expect(200, "metrics").text;
    assert!(m.contains("oms_ws_connections 1"), "{m}");
    assert!(m.contains("oms_ws_subscriptions{channel=\"book\"} 2"));
    let sent = m
        .lines()
        .find(|l| l.starts_with("oms_ws_messages_sent_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(sent as usize >= full.updates, "{sent}");
}

#[tokio::test]
async fn trades_candles_positions_and_heartbeat_stream() {
    let s = Server::start_with(&["--fsync", "never", "--ws-heartbeat-ms", "300"]).await;
    s.place_ok("hist-a", &limit("ETH/USD", "SELL", "1", "2500"))
        .await;
    let b = s
        .place("hist-b", &key("h"), &limit("ETH/USD", "BUY", "1", "2500"))
        .await
        .expect(201, "cross");
    s.wait_status("hist-b", b.json["orderId"].as_str().unwrap(), "FILLED")
        .await;
    let mut c = Client::as_account(&s, "pos-buyer").await;
    c.subscribe(
        json!([
            {"channel":"trades","symbol":"ETH/USD"},
            {"channel":"candles","symbol":"ETH/USD","interval":"1m"},
            {"channel":"candles","symbol":"ETH/USD","interval":"1d"},
            {"channel":"positions"}
        ]),
        1,
    )
    .await;
    let t = c.until("trades snapshot", of("trades", "snapshot")).await;
    assert_eq!(
        t["data"].as_array().map(Vec::len),
        Some(1),
        "history holds the earlier trade: {t}"
    );
    let h = c
        .until("1m history", |v| {
            of("candles", "snapshot")(v) && v["interval"] == "1m"
        })
        .await;
    assert_eq!(h["data"][0]["interval"], "1m");
    let d = c
        .until("1d history", |v| {
            of("candles", "snapshot")(v) && v["interval"] == "1d"
        })
        .await;
    assert_eq!(dec(&d["data"][0]["volume"]), 1.0, "{d}");
    let p = c
        .until("positions snapshot", of("positions", "snapshot"))
        .await;
    assert_eq!(p["data"], json!([]));

    s.place_ok("hist-a", &limit("ETH/USD", "SELL", "2", "2510"))
        .await;
    s.place(
        "pos-buyer",
        &key("p"),
        &limit("ETH/USD", "BUY", "2", "2510"),
    )
    .await
    .expect(201, "buy");
    let tu = c.until("trade update", of("trades", "update")).await;
    assert_eq!(tu["seq"], t["seq"].as_u64().unwrap() + 1);
    assert_eq!(tu["data"][0]["price"], "2510.00");
    let cu = c
        .until("1d forming candle", |v| {
            of("candles", "update")(v) && v["interval"] == "1d"
        })
        .await;
    assert_eq!(
        (
            dec(&cu["data"][0]["volume"]),
            cu["data"][0]["close"].clone()
        ),
        (3.0, json!("2510.00"))
    );
    let pu = c
        .until("position update", |v| {
            v["channel"] == "positions" && v["type"] == "update"
        })
        .await;
    assert_eq!(pu["data"][0]["symbol"], "ETH/USD");
    assert_eq!(dec(&pu["data"][0]["quantity"]), 2.0, "{pu}");

    c.subscribe(json!([{"channel":"heartbeat"}]), 2).await;
    let hb1 = c.until("heartbeat", |v| v["channel"] == "heartbeat").await;
    let hb2 = c
        .until("second heartbeat", |v| v["channel"] == "heartbeat")
        .await;
    assert_eq!(hb2["seq"].as_u64(), hb1["seq"].as_u64().map(|s| s + 1));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_1008_and_orders_keep_being_acked() {
    let s = Server::start_with(&["--fsync", "never", "--ws-send-queue", "32"]).await;
    // A socket with a small receive buffer that the test then stops reading.
    let addr = s.base.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let req = ws_url(&s).into_client_request().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .expect("handshake");
    let mut slow = Client {
        ws,
        backlog: VecDeque::new(),
        log: Vec::new(),
    };
    let mut args = Vec::new();
    for sym in ["BTC/USD", "ETH/USD"] {
        args.push(json!({"channel":"trades","symbol":sym}));
        for d in [1, 10, 25, 50, 100, 500, 1000] {
            args.push(json!({"channel":"book","symbol":sym,"depth":d}));
        }
        for i in ["1m", "5m", "1h", "1d"] {
            args.push(json!({"channel":"candles","symbol":sym,"interval":i}));
        }
    }
    slow.subscribe(Value::Array(args), 1).await;
    // A healthy client on the same streams keeps receiving.
    let mut healthy = Client::connect(&s, &[]).await;
    healthy
        .subscribe(json!([{"channel":"trades","symbol":"BTC/USD"}]), 1)
        .await;

    let mut killed = false;
    // Bounded: up to 60 rounds of 200 orders (the socket buffers absorb a varying amount
    // before the server-side queue fills, so the number of rounds needed varies with load).
    for round in 0..60 {
        let acked = random_flow(&s, 200, 4, 1000 + round).await;
        assert!(
            acked > 100,
            "orders must keep being acked (round {round}: {acked}/200)"
        );
        let m = s.get("/metrics", None).await.expect(200, "metrics").text;
        if m.contains("oms_ws_server_closes_total{reason=\"slow_consumer\"} 1") {
            killed = true;
            break;
        }
    }
    assert!(killed, "the slow reader was never disconnected");
    // The healthy client was not affected.
    healthy
        .until("a trade on the healthy connection", of("trades", "update"))
        .await;

    // Reading again, the slow client finds a 1008 close with a reason.
    let close = loop {
        match tokio::time::timeout(ARRIVE, slow.ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let f = close.expect("close code");
    assert_eq!(f.code, CloseCode::Policy);
    assert!(f.reason.contains("slow consumer"), "{}", f.reason);
}

#[tokio::test]
async fn cancel_on_disconnect_cancels_the_accounts_open_orders_only_when_opted_in() {
    let s = Server::start_with(&["--fsync", "never"]).await;
    // Opted in: its orders are canceled when the connection closes.
    let mut opted = Client::connect(&s, &[]).await;
    let r = opted
        .request(
            json!({"op":"auth","account":"ws-cod","cancelOnDisconnect":true}),
            1,
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // Not opted in: closing changes nothing.
    let mut plain = Client::connect(&s, &[]).await;
    let r = plain
        .request(json!({"op":"auth","account":"ws-plain"}), 1)
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let mut ids = Vec::new();
    for account in ["ws-cod", "ws-cod", "ws-plain"] {
        let o = s
            .place_ok(account, &limit("BTC/USD", "BUY", "0.1", "44000"))
            .await;
        ids.push((account, o["orderId"].as_str().unwrap().to_owned()));
    }
    // The option belongs to auth only.
    let r = plain
        .request(json!({"op":"ping","cancelOnDisconnect":true}), 2)
        .await;
    assert_eq!(r["error"]["code"], "INVALID_PARAMETER", "{r}");

    drop(plain);
    opted.ws.close(None).await.expect("close");
    drop(opted);
    let deadline = Instant::now() + Duration::from_secs(1);
    let status = |s: &Server, account: &'static str, id: String| {
        let s = s.url(&format!("/api/orders/{id}"));
        async move {
            reqwest::Client::new()
                .get(s)
                .header("X-Account-Id", account)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    loop {
        let mut canceled = 0;
        for (account, id) in &ids[..2] {
            if status(&s, account, id.clone()).await == "CANCELED" {
                canceled += 1;
            }
        }
        if canceled == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the opted-in account's orders were not canceled within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (account, id) = &ids[2];
    assert_eq!(
        status(&s, account, id.clone()).await,
        "ACCEPTED",
        "not opted in"
    );
    let audit = s
        .get("/api/admin/audit", Some("ws-admin"))
        .await
        .expect(200, "audit")
        .json;
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "CANCEL_ON_DISCONNECT"
                && r["account"] == "ws-cod"
                && r["status"] == 200),
        "{audit}"
    );
}
