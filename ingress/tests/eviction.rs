//! Bounded hot state (issue 11): with `--retain-terminal-orders N` the engine keeps open
//! orders and only the newest N finished ones; the rest move to the on-disk archive and every
//! order route still finds them, byte for byte, across restarts.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::*;

const ACCT: &str = "evict-1";

async fn place(s: &Server, cid: &str, price: u32) -> Value {
    let body = json!({"symbol":"BTC/USD","side":"BUY","quantity":"0.1","price":price.to_string(),
        "orderType":"LIMIT","clientOrderId":cid});
    let k = key(cid);
    s.send(
        Method::POST,
        "/api/orders",
        Some(ACCT),
        &[("X-Idempotency-Key", &k)],
        Some(&body),
    )
    .await
    .expect(201, "place")
    .json
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1.0)
}

/// Every order of the account through the list, following cursors.
async fn list_all(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/orders?limit=3".to_owned();
    loop {
        let page = s.get(&path, Some(ACCT)).await.expect(200, "list").json;
        out.extend(page["orders"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/orders?limit=3&cursor={c}"),
            None => return out,
        }
    }
}

async fn check(s: &Server, finished: &[(String, String, String)]) {
    for (id, cid, text) in finished {
        let got = s
            .get(&format!("/api/orders/{id}"), Some(ACCT))
            .await
            .expect(200, "get after eviction");
        assert_eq!(&got.text, text, "same bytes for {id}");
        let by_cid = s
            .get(&format!("/api/orders/by-client-id/{cid}"), Some(ACCT))
            .await
            .expect(200, "by client id after eviction");
        assert_eq!(&by_cid.text, text, "same bytes by clientOrderId {cid}");
        // Another account never sees it.
        s.get(&format!("/api/orders/{id}"), Some("someone-else"))
            .await
            .expect_error(404, "ORDER_NOT_FOUND", "another account");
    }
    // The list spans memory and archive: all 10, newest first, no duplicates.
    let all = list_all(s).await;
    assert_eq!(all.len(), 10, "{all:?}");
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|o| {
            (
                o["createdAt"].as_str().unwrap().to_owned(),
                o["orderId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.reverse();
    sorted.dedup();
    assert_eq!(keys, sorted, "newest first, each once");
    let canceled = s
        .get("/api/orders?status=CANCELED&limit=100", Some(ACCT))
        .await
        .expect(200, "filtered list")
        .json;
    assert_eq!(canceled["orders"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn finished_orders_leave_memory_and_are_still_found_with_the_same_json() {
    let mut s = Server::start_with(&["--retain-terminal-orders", "2"]).await;
    // 8 orders canceled (finished) and 2 left open; the JSON of each finished order is read
    // while the engine still holds it.
    let mut finished = Vec::new();
    for i in 0..8 {
        let cid = format!("ev-{i}");
        let o = place(&s, &cid, 44_000 + i * 10).await;
        let id = o["orderId"].as_str().unwrap().to_owned();
        s.send(
            Method::DELETE,
            &format!("/api/orders/{id}"),
            Some(ACCT),
            &[],
            None,
        )
        .await
        .expect(200, "cancel");
        let before = s
            .get(&format!("/api/orders/{id}"), Some(ACCT))
            .await
            .expect(200, "get while held");
        assert_eq!(before.json["status"], "CANCELED");
        finished.push((id, cid, before.text));
    }
    let open: Vec<String> = [0, 1].iter().map(|i| format!("open-{i}")).collect();
    for (i, cid) in open.iter().enumerate() {
        place(&s, cid, 43_500 + i as u32).await;
    }

    // The processor applies (and the archive writes) after the acknowledgement, on their own
    // threads: give them a moment on a loaded machine.
    let mut m = String::new();
    for _ in 0..100 {
        m = s.get("/metrics", None).await.expect(200, "metrics").text;
        if metric(&m, "oms_orders_archived_total") >= 6.0 && metric(&m, "oms_orders_held") == 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&m, "oms_orders_held"),
        4.0,
        "2 open + the 2 newest finished are held"
    );
    assert!(
        metric(&m, "oms_orders_archived_total") >= 6.0,
        "6 finished orders archived: {}",
        metric(&m, "oms_orders_archived_total")
    );

    check(&s, &finished).await;

    // Cancelling an archived order by clientOrderId: it is finished, not missing.
    s.send(
        Method::DELETE,
        "/api/orders/by-client-id/ev-0",
        Some(ACCT),
        &[],
        None,
    )
    .await
    .expect_error(409, "ORDER_NOT_OPEN", "cancel an archived order");

    // After a crash (kill -9) and a restart, the same answers.
    s.restart_with(&["--retain-terminal-orders", "2"]).await;
    check(&s, &finished).await;
}
