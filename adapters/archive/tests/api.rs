//! The archive's queries, case by case: what the REST read path will observe.

use crate::common::{account, cid, fresh, key, order};

use oms_archive::{ArchivedOrder, OrderArchive};
use oms_core::{OrderId, OrderStatus, SymbolId};

use OrderStatus::{Canceled, Expired, Filled, Rejected};

#[test]
fn put_then_get_returns_the_same_order_and_byte_identical_json() {
    let (_dir, archive) = fresh();
    let mut o = order("acct-1", 7, 1_000, 3, Filled, Some("c-1"));
    // JSON with bytes a re-serialisation would change: spacing, key order, escapes, non-ASCII.
    o.json = "{ \"z\":1,  \"a\" : \"caf\u{e9} \\u00e9\\n\" }"
        .as_bytes()
        .to_vec();
    archive.put_batch(std::slice::from_ref(&o)).unwrap();
    let got = archive.get(&account("acct-1"), OrderId(7)).unwrap();
    assert_eq!(got.as_ref(), Some(&o));
    assert_eq!(got.unwrap().json, o.json);
    assert_eq!(archive.len().unwrap(), 1);
    assert_eq!(archive.get(&account("acct-1"), OrderId(8)).unwrap(), None);
}

#[test]
fn another_accounts_order_is_not_found() {
    let (_dir, archive) = fresh();
    archive
        .put_batch(&[order("alice", 1, 10, 0, Filled, Some("same"))])
        .unwrap();
    assert_eq!(archive.get(&account("bob"), OrderId(1)).unwrap(), None);
    assert_eq!(
        archive.by_client_id(&account("bob"), &cid("same")).unwrap(),
        None
    );
    assert!(
        archive
            .list(&account("bob"), None, None, None, 10)
            .unwrap()
            .is_empty()
    );
    // An account whose name extends the other's does not see it either.
    assert!(
        archive
            .list(&account("alice2"), None, None, None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        archive
            .get(&account("alice"), OrderId(1))
            .unwrap()
            .is_some()
    );
}

fn ids(orders: &[ArchivedOrder]) -> Vec<u128> {
    orders.iter().map(|o| o.order_id.0).collect()
}

#[test]
fn list_is_newest_first_and_pages_by_cursor_without_gaps_or_repeats() {
    let (_dir, archive) = fresh();
    // Ids deliberately not in time order, and a created_at tie (ids 30 and 5 at t=300).
    let batch = vec![
        order("a", 10, 100, 1, Filled, None),
        order("a", 30, 300, 1, Canceled, None),
        order("a", 5, 300, 2, Filled, None),
        order("a", 20, 200, 2, Expired, None),
        order("a", 1, 400, 1, Rejected, None),
        order("b", 99, 350, 1, Filled, None),
    ];
    archive.put_batch(&batch).unwrap();
    let acct = account("a");
    let all = archive.list(&acct, None, None, None, 100).unwrap();
    assert_eq!(ids(&all), vec![1, 30, 5, 20, 10]);

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = archive.list(&acct, cursor, None, None, 2).unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(key);
        pages.push(ids(&page));
    }
    assert_eq!(pages, vec![vec![1, 30], vec![5, 20], vec![10]]);

    // The cursor is exclusive and need not be an archived key.
    let after = archive
        .list(&acct, Some((300, OrderId(6))), None, None, 10)
        .unwrap();
    assert_eq!(ids(&after), vec![5, 20, 10]);
    assert!(
        archive
            .list(&acct, Some((100, OrderId(10))), None, None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(archive.list(&acct, None, None, None, 0).unwrap().is_empty());
}

#[test]
fn list_filters_by_symbol_and_status_and_pages_within_the_filter() {
    let (_dir, archive) = fresh();
    let batch: Vec<_> = (0..40u64)
        .map(|i| {
            let status = [Filled, Canceled, Expired, Rejected][(i % 4) as usize];
            order(
                "a",
                u128::from(i) + 1,
                1_000 + i,
                (i % 3) as u16,
                status,
                None,
            )
        })
        .collect();
    archive.put_batch(&batch).unwrap();
    let acct = account("a");

    let sym1 = archive
        .list(&acct, None, Some(SymbolId(1)), None, 100)
        .unwrap();
    assert!(!sym1.is_empty());
    assert!(sym1.iter().all(|o| o.symbol == SymbolId(1)));
    assert_eq!(
        sym1.len(),
        batch.iter().filter(|o| o.symbol == SymbolId(1)).count()
    );

    let both = archive
        .list(&acct, None, Some(SymbolId(2)), Some(Canceled), 100)
        .unwrap();
    let expected: Vec<u128> = batch
        .iter()
        .rev()
        .filter(|o| o.symbol == SymbolId(2) && o.status == Canceled)
        .map(|o| o.order_id.0)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ids(&both), expected);

    // Paging with a filter: each page holds `limit` matches, not `limit` scanned entries.
    let first = archive.list(&acct, None, None, Some(Filled), 3).unwrap();
    assert_eq!(first.len(), 3);
    let second = archive
        .list(&acct, first.last().map(key), None, Some(Filled), 3)
        .unwrap();
    assert_eq!(second.len(), 3);
    assert!(
        second
            .iter()
            .all(|o| o.status == Filled && key(o) < key(&first[2]))
    );
    assert!(
        archive
            .list(&acct, None, Some(SymbolId(9)), None, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn by_client_id_returns_the_newest_order_with_that_id() {
    let (_dir, archive) = fresh();
    archive
        .put_batch(&[
            order("a", 1, 100, 0, Filled, Some("dup")),
            order("a", 2, 300, 0, Canceled, Some("dup")),
            order("a", 3, 200, 0, Filled, Some("dup")),
            order("a", 4, 900, 0, Filled, Some("dup2")),
            order("a", 5, 950, 0, Filled, Some("du")),
        ])
        .unwrap();
    let acct = account("a");
    let newest = archive.by_client_id(&acct, &cid("dup")).unwrap().unwrap();
    assert_eq!(newest.order_id, OrderId(2));
    assert_eq!(newest.status, Canceled);
    // A later order with the same cid, in a later batch, takes over.
    archive
        .put_batch(&[order("a", 6, 400, 0, Expired, Some("dup"))])
        .unwrap();
    let newest = archive.by_client_id(&acct, &cid("dup")).unwrap().unwrap();
    assert_eq!(newest.order_id, OrderId(6));
    assert_eq!(archive.by_client_id(&acct, &cid("nope")).unwrap(), None);
}

#[test]
fn put_batch_twice_changes_nothing_and_an_upsert_moves_the_indexes() {
    let (_dir, archive) = fresh();
    let batch = vec![
        order("a", 1, 100, 0, Filled, Some("x")),
        order("a", 2, 200, 1, Canceled, Some("y")),
    ];
    archive.put_batch(&batch).unwrap();
    archive.put_batch(&batch).unwrap();
    let acct = account("a");
    assert_eq!(archive.len().unwrap(), 2);
    assert_eq!(
        archive.list(&acct, None, None, None, 10).unwrap(),
        vec![batch[1].clone(), batch[0].clone()]
    );

    // The same id again with a new status, client id and time: one order, old entries gone.
    let replaced = order("a", 2, 50, 1, Expired, Some("z"));
    archive.put_batch(std::slice::from_ref(&replaced)).unwrap();
    assert_eq!(archive.len().unwrap(), 2);
    assert_eq!(
        ids(&archive.list(&acct, None, None, None, 10).unwrap()),
        vec![1, 2]
    );
    assert!(
        archive
            .list(&acct, None, None, Some(Canceled), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(archive.by_client_id(&acct, &cid("y")).unwrap(), None);
    assert_eq!(
        archive.by_client_id(&acct, &cid("z")).unwrap(),
        Some(replaced)
    );
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.redb");
    let batch: Vec<_> = (1..=50u128)
        .map(|i| order("a", i, 1_000 + i as u64, 0, Filled, Some(&format!("c{i}"))))
        .collect();
    {
        let archive = OrderArchive::open(&path).unwrap();
        archive.put_batch(&batch).unwrap();
    }
    let archive = OrderArchive::open(&path).unwrap();
    let acct = account("a");
    assert_eq!(archive.len().unwrap(), 50);
    assert_eq!(
        archive.get(&acct, OrderId(17)).unwrap().as_ref(),
        Some(&batch[16])
    );
    assert_eq!(
        archive.by_client_id(&acct, &cid("c3")).unwrap().as_ref(),
        Some(&batch[2])
    );
    let listed = archive.list(&acct, None, None, None, 100).unwrap();
    assert_eq!(listed, batch.into_iter().rev().collect::<Vec<_>>());
}

#[test]
fn a_second_open_of_the_same_file_is_refused_not_corrupting() {
    let (dir, archive) = fresh();
    archive
        .put_batch(&[order("a", 1, 1, 0, Filled, None)])
        .unwrap();
    assert!(OrderArchive::open(&dir.path().join("archive.redb")).is_err());
    assert_eq!(archive.len().unwrap(), 1);
}

#[test]
fn clones_share_one_database_and_readers_run_beside_the_writer() {
    let (_dir, archive) = fresh();
    let writer = archive.clone();
    let acct = account("a");
    let handle = std::thread::spawn(move || {
        for b in 0..20u128 {
            let batch: Vec<_> = (0..50u128)
                .map(|i| order("a", b * 50 + i + 1, (b * 50 + i) as u64, 0, Filled, None))
                .collect();
            writer.put_batch(&batch).unwrap();
        }
    });
    // Every snapshot a reader sees holds whole batches only.
    while !handle.is_finished() {
        let n = archive.list(&acct, None, None, None, 10_000).unwrap().len();
        assert_eq!(n % 50, 0, "a reader saw part of a batch: {n} orders");
    }
    handle.join().unwrap();
    assert_eq!(archive.len().unwrap(), 1_000);
}
