//! The archive against a model that is obviously right: a map of the last put of every id,
//! filtered and sorted in memory. Random batches of inserts and re-puts (same id, new
//! account, time, symbol, status or client id) over few accounts, symbols and times, so ties
//! and collisions are common; then every query is compared, the list page by page.

use std::collections::BTreeMap;

use crate::common::{account, cid, fresh, key, order};

use oms_archive::ArchivedOrder;
use oms_core::{OrderId, OrderStatus, SymbolId};
use proptest::prelude::*;

const ACCOUNTS: [&str; 3] = ["a", "ab", "b"];
const CIDS: [&str; 3] = ["x", "xy", "y"];

fn arb_order() -> impl Strategy<Value = ArchivedOrder> {
    (
        0usize..ACCOUNTS.len(),
        1u128..40,
        0u64..20,
        0u16..3,
        0usize..OrderStatus::ALL.len(),
        prop::option::of(0usize..CIDS.len()),
    )
        .prop_map(|(a, id, t, sym, st, c)| {
            // Ids spread over the whole u128 range so byte order vs numeric order matters.
            let id = id.rotate_right(7) | id;
            order(
                ACCOUNTS[a],
                id,
                t * 1_000_000_007,
                sym,
                OrderStatus::ALL[st],
                c.map(|c| CIDS[c]),
            )
        })
}

fn model_list(
    model: &BTreeMap<OrderId, ArchivedOrder>,
    acct: &str,
    symbol: Option<SymbolId>,
    status: Option<OrderStatus>,
) -> Vec<ArchivedOrder> {
    let mut v: Vec<_> = model
        .values()
        .filter(|o| o.account == account(acct))
        .filter(|o| symbol.is_none_or(|s| o.symbol == s))
        .filter(|o| status.is_none_or(|s| o.status == s))
        .cloned()
        .collect();
    v.sort_by_key(|o| std::cmp::Reverse(key(o)));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn archive_matches_an_in_memory_model(
        batches in prop::collection::vec(prop::collection::vec(arb_order(), 0..12), 1..8),
        page in 1usize..6,
        symbol in prop::option::of(0u16..3),
        status in prop::option::of(0usize..OrderStatus::ALL.len()),
    ) {
        let (_dir, archive) = fresh();
        let mut model = BTreeMap::new();
        for batch in &batches {
            archive.put_batch(batch).unwrap();
            for o in batch {
                model.insert(o.order_id, o.clone());
            }
        }
        prop_assert_eq!(archive.len().unwrap(), model.len() as u64);
        let symbol = symbol.map(SymbolId);
        let status = status.map(|s| OrderStatus::ALL[s]);

        for acct in ACCOUNTS {
            // The whole list in one call, and page by page with the cursor.
            for (sym, st) in [(None, None), (symbol, status)] {
                let expected = model_list(&model, acct, sym, st);
                let all = archive.list(&account(acct), None, sym, st, usize::MAX).unwrap();
                prop_assert_eq!(&all, &expected);
                let mut paged = Vec::new();
                let mut cursor = None;
                loop {
                    let p = archive.list(&account(acct), cursor, sym, st, page).unwrap();
                    prop_assert!(p.len() <= page);
                    if p.is_empty() {
                        break;
                    }
                    cursor = p.last().map(key);
                    paged.extend(p);
                }
                prop_assert_eq!(&paged, &expected);
            }
            for c in CIDS {
                let newest = model_list(&model, acct, None, None)
                    .into_iter()
                    .find(|o| o.client_order_id == Some(cid(c)));
                prop_assert_eq!(archive.by_client_id(&account(acct), &cid(c)).unwrap(), newest);
            }
        }
        for (id, o) in &model {
            for acct in ACCOUNTS {
                let expected = (o.account == account(acct)).then(|| o.clone());
                prop_assert_eq!(archive.get(&account(acct), *id).unwrap(), expected);
            }
        }
    }
}
