//! Idempotency keys as a retrying client relies on them: replays, conflicts, races, scope,
//! durability across a crash, and keys released by a 503.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn replay_mismatch_scope_and_header_spellings() {
    let s = Server::start().await;
    let first = s
        .place("i-1", "same", &seed_order())
        .await
        .expect(201, "first");
    let id = first.json["orderId"].clone();

    // `Idempotency-Key` is the same key as `X-Idempotency-Key`.
    let alt = s
        .send(
            Method::POST,
            "/api/orders",
            Some("i-1"),
            &[("Idempotency-Key", "same")],
            Some(&seed_order()),
        )
        .await
        .expect(201, "replay via Idempotency-Key");
    assert_eq!(alt.header("idempotent-replayed"), Some("true"));
    assert_eq!(alt.json, first.json);

    // Same body written differently (string vs number, key order) is the same request.
    let same_meaning = json!({"orderType":"LIMIT","price":"45000.00","quantity":"0.1000","side":"BUY","symbol":"BTC/USD"});
    let r = s.place("i-1", "same", &same_meaning).await;
    if r.status == 201 {
        assert_eq!(
            r.json["orderId"], id,
            "an equivalent body replays the same order"
        );
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
    } else {
        // A byte-level fingerprint is allowed by the contract; then it is a mismatch.
        r.expect_error(422, "IDEMPOTENCY_KEY_REUSED", "equivalent body");
    }

    // Same key, different body: 422, nothing new, the first order untouched.
    let other = limit("BTC/USD", "BUY", "0.2", "45000.00");
    let r = s.place("i-1", "same", &other).await.expect_error(
        422,
        "IDEMPOTENCY_KEY_REUSED",
        "different body",
    );
    assert_eq!(r.header("idempotent-replayed"), None);
    let orders = s.orders_when("i-1", "", 1).await;
    assert_eq!(orders.len(), 1, "still one order");
    assert_eq!(orders[0]["orderId"], id);
    assert_eq!(orders[0]["quantity"], "0.1000");

    // Keys are per account: the same key from another account is a new order.
    let mine = s
        .place("i-2", "same", &seed_order())
        .await
        .expect(201, "other account");
    assert_eq!(mine.header("idempotent-replayed"), None);
    assert_ne!(mine.json["orderId"], id);
    assert_eq!(mine.json["account"], "i-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_make_one_order() {
    let s = Arc::new(Server::start().await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.place("racer", "one-key", &seed_order()).await
        }));
    }
    let mut created = Vec::new();
    let mut replays = Vec::new();
    let mut in_use = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match (r.status, r.header("idempotent-replayed")) {
            (201, None) => created.push(r),
            (201, Some("true")) => replays.push(r),
            (409, _) => {
                let r = r.expect_error(409, "IDEMPOTENCY_KEY_IN_USE", "racing key");
                let retry = r.header("retry-after").unwrap_or("");
                assert!(
                    retry.parse::<u64>().is_ok(),
                    "409 carries Retry-After seconds: {:?}",
                    r.headers
                );
                in_use += 1;
            }
            _ => panic!(
                "unexpected answer to a racing request: {} {}",
                r.status, r.text
            ),
        }
    }
    assert_eq!(
        created.len(),
        1,
        "exactly one request created the order ({} replays, {in_use} in use)",
        replays.len()
    );
    for r in &replays {
        assert_eq!(
            r.json, created[0].json,
            "every replay is identical to the 201"
        );
    }
    assert_eq!(
        s.orders_when("racer", "", 1).await.len(),
        1,
        "one order in the account"
    );
    // Once settled, a retry is a replay.
    let late = s
        .place("racer", "one-key", &seed_order())
        .await
        .expect(201, "late retry");
    assert_eq!(late.header("idempotent-replayed"), Some("true"));
    assert_eq!(late.json, created[0].json);
}

#[tokio::test]
async fn keys_survive_a_crash_and_restart() {
    let mut s = Server::start().await;
    let first = s
        .place("dur", "k-durable", &seed_order())
        .await
        .expect(201, "first");
    let rejected = s
        .place(
            "dur",
            "k-rejected",
            &limit("BTC/USD", "BUY", "0.1", "49999.00"),
        )
        .await
        .expect_error(422, "PRICE_OUT_OF_BAND", "out of band");

    s.restart().await;

    let again = s
        .place("dur", "k-durable", &seed_order())
        .await
        .expect(201, "replay after restart");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json, first.json,
        "the replay after a crash answers identically"
    );
    let r = s
        .place(
            "dur",
            "k-rejected",
            &limit("BTC/USD", "BUY", "0.1", "49999.00"),
        )
        .await
        .expect(422, "422 replay after restart");
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(r.json["order"], rejected.json["order"]);
    s.place(
        "dur",
        "k-durable",
        &limit("BTC/USD", "BUY", "0.2", "45000.00"),
    )
    .await
    .expect_error(422, "IDEMPOTENCY_KEY_REUSED", "mismatch after restart");
    assert_eq!(
        s.all_orders("dur", "").await.len(),
        2,
        "no duplicates after replay"
    );
    let got = s
        .order("dur", first.json["orderId"].as_str().unwrap())
        .await
        .expect(200, "get");
    assert_eq!(got.json["status"], "ACCEPTED");
}

#[tokio::test]
async fn log_unavailable_is_503_and_the_order_never_executes() {
    // Every journal append stalls 1 s; the ack timeout is 200 ms. A first order occupies the
    // publish stage (its append is under way, so it waits for the log's own outcome); an
    // order queued behind it cannot be acknowledged in time and is refused.
    let mut s =
        Server::start_with(&["--test-stall-log-ms", "1000", "--ack-timeout-ms", "200"]).await;
    let blocker_body = limit("BTC/USD", "SELL", "0.1", "46000.00");
    let blocker = s.place("blocker", "k-first", &blocker_body);
    let queued = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.place("stall", "k-503", &seed_order()).await
    };
    let (first, r) = tokio::join!(blocker, queued);
    let r = r.expect_error(503, "LOG_UNAVAILABLE", "order queued behind a stalled log");
    let retry = r.header("retry-after").unwrap_or("");
    assert!(
        retry.parse::<u64>().is_ok(),
        "503 carries Retry-After seconds: {:?}",
        r.headers
    );
    assert!(r.json.get("order").is_none());
    assert!(
        first.status == 201 || first.code() == "LOG_UNAVAILABLE",
        "the order whose append was under way: {} {}",
        first.status,
        first.text
    );

    // Give the stalled append time to finish, then crash and come back without the stall:
    // the timed-out order must not exist, neither before nor after the replay of the log.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        s.all_orders("stall", "").await.is_empty(),
        "a 503 order never executes"
    );
    s.restart_with(&[]).await;
    assert!(
        s.all_orders("stall", "").await.is_empty(),
        "…not even after a restart"
    );
    let book = s.get("/api/book/BTC-USD", None).await.expect(200, "book");
    assert_eq!(
        book.json["bids"],
        json!([]),
        "nothing rests from the 503 order"
    );
    let blockers = s.all_orders("blocker", "").await;
    assert_eq!(
        blockers.len(),
        usize::from(first.status == 201),
        "the first order exists exactly when it was acknowledged"
    );

    // The key was released: the same key now creates a new order.
    let fresh = s
        .place("stall", "k-503", &seed_order())
        .await
        .expect(201, "reuse the key");
    assert_eq!(fresh.header("idempotent-replayed"), None);
    assert_eq!(s.orders_when("stall", "", 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_503_with_retry_after_and_nothing_recorded() {
    // The smallest ring (64 slots) whose publish stage is stuck: 160 concurrent requests do
    // not fit, and those that find no room within --ring-full-wait-ms are refused.
    let s = Arc::new(
        Server::start_with(&[
            "--ring-size",
            "64",
            "--ring-full-wait-ms",
            "20",
            "--test-stall-log-ms",
            "1500",
            "--ack-timeout-ms",
            "300",
        ])
        .await,
    );
    let mut tasks = Vec::new();
    for i in 0..160 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let k = format!("ov-{i}");
            (
                k.clone(),
                s.place("flood", &k, &limit("BTC/USD", "BUY", "0.01", "44000.00"))
                    .await,
            )
        }));
    }
    let mut overloaded = 0;
    let mut failed_keys = Vec::new();
    for t in tasks {
        let (k, r) = t.await.unwrap();
        match r.status {
            503 => {
                assert!(
                    ["OVERLOADED", "LOG_UNAVAILABLE"].contains(&r.code()),
                    "503 code: {}",
                    r.text
                );
                assert!(r.header("retry-after").is_some(), "503 carries Retry-After");
                if r.code() == "OVERLOADED" {
                    overloaded += 1;
                }
                failed_keys.push(k);
            }
            201 => {}
            _ => panic!("unexpected answer under overload: {} {}", r.status, r.text),
        }
    }
    assert!(
        overloaded > 0,
        "a full ring answers OVERLOADED ({} refused in all)",
        failed_keys.len()
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let orders = s.all_orders("flood", "").await;
    for o in &orders {
        let k = o["idempotencyKey"].as_str().unwrap_or("");
        assert!(
            !failed_keys.iter().any(|f| f == k),
            "an order that got 503 executed: {o}"
        );
    }
}

#[tokio::test]
async fn a_key_in_flight_is_409_then_replays() {
    // Appends stall 800 ms (within the default ack timeout): the first request is in flight
    // long enough for a retry with the same key to arrive.
    let s = Server::start_with(&["--test-stall-log-ms", "800"]).await;
    let seed = seed_order();
    let first = s.place("inflight", "k-fly", &seed);
    let retry = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.place("inflight", "k-fly", &seed_order()).await
    };
    let (first, retry) = tokio::join!(first, retry);
    let first = first.expect(201, "the first request");
    let retry = retry.expect_error(409, "IDEMPOTENCY_KEY_IN_USE", "same key while in flight");
    let after = retry.header("retry-after").unwrap_or("");
    assert!(
        after.parse::<u64>().is_ok(),
        "409 carries Retry-After seconds: {:?}",
        retry.headers
    );
    let again = s
        .place("inflight", "k-fly", &seed_order())
        .await
        .expect(201, "retry after the first finished");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json, first.json);
    assert_eq!(s.orders_when("inflight", "", 1).await.len(), 1);
}
