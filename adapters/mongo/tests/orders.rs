//! Integration tests of the MongoDB order store against a real MongoDB-wire server
//! (`scripts/services up`; `OMS_MONGO_URL`, default mongodb://127.0.0.1:27017/?directConnection=true).
//! Each test works in a database of its own, dropped at the end.

use crate::common;

use std::sync::atomic::Ordering;

use oms_core::ports::{IdemKey, OrderQuery, OrderStore};
use oms_core::{IdempotencyKey, OrderStatus, SymbolId};

use common::*;

#[test]
fn upsert_round_trips_and_the_version_guard_keeps_the_newest() {
    let Some(url) = mongo_url() else { return };
    let mut s = DropDb(connect(&url, "guard"));
    let v1 = order("acct-a", 1, 1_000, 1);
    let v2 = order("acct-a", 1, 1_000, 2);
    let v3 = order("acct-a", 1, 1_000, 3);
    s.0.upsert_orders(std::slice::from_ref(&v1)).unwrap();
    assert_eq!(
        s.0.get_order(&acct("acct-a"), v1.order_id).unwrap(),
        Some(v1.clone())
    );

    s.0.upsert_orders(std::slice::from_ref(&v3)).unwrap();
    // Older versions arrive late (at-least-once replay): they must not overwrite.
    s.0.upsert_orders(&[v2.clone(), v1.clone()]).unwrap();
    let got =
        s.0.get_order(&acct("acct-a"), v1.order_id)
            .unwrap()
            .unwrap();
    assert_eq!(got, v3);
    assert_eq!(got.status, OrderStatus::Filled);
    // (Within one call only the newest of [v2, v1] is sent: one stale upsert.)
    let stats = s.0.stats();
    assert_eq!(stats.stale_upserts.load(Ordering::Relaxed), 1);
    s.0.upsert_orders(std::slice::from_ref(&v1)).unwrap();
    assert_eq!(stats.stale_upserts.load(Ordering::Relaxed), 2);
    assert_eq!(stats.conflicts.load(Ordering::Relaxed), 0);

    // Same version again: harmless too.
    s.0.upsert_orders(std::slice::from_ref(&v3)).unwrap();
    assert_eq!(stats.stale_upserts.load(Ordering::Relaxed), 3);
    assert_eq!(
        s.0.get_order(&acct("acct-a"), v1.order_id).unwrap(),
        Some(v3)
    );

    // Another account never sees it.
    assert_eq!(s.0.get_order(&acct("acct-b"), v1.order_id).unwrap(), None);
    assert_eq!(s.0.get_order(&acct("acct-a"), oid(999)).unwrap(), None);
}

#[test]
fn replaying_a_batch_twice_is_harmless() {
    let Some(url) = mongo_url() else { return };
    let mut s = DropDb(connect(&url, "replay"));
    // 40 orders, each appearing at versions 1..=3 in the same batch, shuffled by version.
    let mut batch = Vec::new();
    for v in [2, 1, 3] {
        for n in 0..40 {
            batch.push(order("acct-r", n, 10_000 + n, v));
        }
    }
    s.0.upsert_orders(&batch).unwrap();
    s.0.upsert_orders(&batch).unwrap();
    let page =
        s.0.list_orders(&OrderQuery {
            account: acct("acct-r"),
            symbol: None,
            status: None,
            limit: 1000,
            cursor: None,
        })
        .unwrap();
    assert_eq!(page.len(), 40);
    assert!(
        page.iter()
            .all(|o| o.version == 3 && o.status == OrderStatus::Filled)
    );
    let stats = s.0.stats();
    assert_eq!(stats.orders_written.load(Ordering::Relaxed), 40);
    assert_eq!(stats.stale_upserts.load(Ordering::Relaxed), 40);
    assert_eq!(stats.conflicts.load(Ordering::Relaxed), 0);
}

#[test]
fn executions_are_deduplicated() {
    let Some(url) = mongo_url() else { return };
    let mut s = DropDb(connect(&url, "execs"));
    let o = order("acct-e", 1, 5, 1);
    let execs: Vec<_> = (1..=50).map(|i| execution(i, &o)).collect();
    s.0.insert_executions(&execs).unwrap();
    s.0.insert_executions(&execs[10..30]).unwrap();
    let mut again = execs[40..].to_vec();
    again.push(execution(51, &o));
    s.0.insert_executions(&again).unwrap();
    let stats = s.0.stats();
    assert_eq!(stats.executions_written.load(Ordering::Relaxed), 51);
    assert_eq!(stats.duplicate_executions.load(Ordering::Relaxed), 30);
    let db = s.0.database().clone();
    let n = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            db.collection::<mongodb::bson::Document>("executions")
                .count_documents(mongodb::bson::doc! {})
                .await
        })
        .unwrap();
    assert_eq!(n, 51);
}

#[test]
fn list_filters_and_paginates_with_a_cursor() {
    let Some(url) = mongo_url() else { return };
    let mut s = DropDb(connect(&url, "list"));
    let mut all = Vec::new();
    for n in 0..45u64 {
        // Some share a createdAt so the orderId tie-break is exercised.
        all.push(order(
            "acct-l",
            n,
            1_000_000 + (n / 3) * 10,
            1 + (n % 3) as u32,
        ));
    }
    all.push(order("acct-other", 100, 1_000_500, 1));
    s.0.upsert_orders(&all).unwrap();

    let mine: Vec<_> = all.iter().filter(|o| o.account == acct("acct-l")).collect();
    let mut expected: Vec<_> = mine.clone();
    expected.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.order_id)));

    let page = |s: &mut DropDb, symbol, status, cursor| {
        s.0.list_orders(&OrderQuery {
            account: acct("acct-l"),
            symbol,
            status,
            limit: 7,
            cursor,
        })
        .unwrap()
    };
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(&mut s, None, None, cursor);
        assert!(p.len() <= 7);
        if p.is_empty() {
            break;
        }
        let last = p.last().unwrap();
        cursor = Some((last.created_at, last.order_id));
        got.extend(p);
    }
    assert_eq!(got.len(), 45);
    assert!(
        got.iter().zip(&expected).all(|(a, b)| a == *b),
        "newest first, no gaps"
    );

    let btc = page(&mut s, Some(SymbolId(0)), None, None);
    assert!(!btc.is_empty() && btc.iter().all(|o| o.symbol == SymbolId(0)));
    let filled = page(&mut s, None, Some(OrderStatus::Filled), None);
    assert!(!filled.is_empty() && filled.iter().all(|o| o.status == OrderStatus::Filled));
    let both = page(&mut s, Some(SymbolId(1)), Some(OrderStatus::Accepted), None);
    let want = mine
        .iter()
        .filter(|o| o.symbol == SymbolId(1) && o.status == OrderStatus::Accepted)
        .count();
    assert_eq!(both.len(), want.min(7));
    assert!(
        both.iter()
            .all(|o| o.symbol == SymbolId(1) && o.status == OrderStatus::Accepted)
    );
}

#[test]
fn finds_by_idempotency_key_and_counts_key_conflicts() {
    let Some(url) = mongo_url() else { return };
    let mut s = DropDb(connect(&url, "idem"));
    let a = order("acct-i", 1, 10, 1);
    let mut no_key = order("acct-i", 2, 11, 1);
    no_key.idempotency_key = None;
    let mut no_key2 = order("acct-i", 3, 12, 1);
    no_key2.idempotency_key = None;
    s.0.upsert_orders(&[a.clone(), no_key, no_key2]).unwrap();
    let key = IdemKey {
        account: acct("acct-i"),
        key: IdempotencyKey::new("key-1").unwrap(),
    };
    assert_eq!(s.0.find_by_idempotency_key(&key).unwrap(), Some(a.clone()));
    let other = IdemKey {
        account: acct("acct-j"),
        key: key.key,
    };
    assert_eq!(s.0.find_by_idempotency_key(&other).unwrap(), None);

    // A different order with the same (account, key): not written, counted, no error.
    let mut dup = order("acct-i", 4, 13, 1);
    dup.idempotency_key = a.idempotency_key.clone();
    s.0.upsert_orders(&[dup.clone()]).unwrap();
    assert_eq!(s.0.stats().conflicts.load(Ordering::Relaxed), 1);
    assert_eq!(s.0.get_order(&acct("acct-i"), dup.order_id).unwrap(), None);
}

#[test]
fn indexes_exist() {
    let Some(url) = mongo_url() else { return };
    let s = DropDb(connect(&url, "indexes"));
    let mut names = s.0.order_index_names().unwrap();
    names.sort();
    for want in [
        "_id_",
        "account_createdAt",
        "account_idempotencyKey_unique",
        "createdAt",
        "orderId_unique",
        "status",
        "symbol",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing index {want}: {names:?}"
        );
    }
    // Creating them again is a no-op.
    s.0.ensure_indexes().unwrap();
}
