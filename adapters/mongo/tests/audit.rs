//! The venue-wide `audit` collection against a real MongoDB-wire server: records of several
//! nodes in one place, a retried insert is not doubled, queries filter by account and time
//! and come back oldest first.

use crate::common;

use oms_mongo::{MongoAudit, MongoConfig};
use serde::{Deserialize, Serialize};

use common::*;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rec {
    seq: u64,
    ts: u64,
    node: String,
    account: String,
    status: u16,
    code: Option<String>,
}

fn rec(node: &str, seq: u64, ts: u64, account: &str) -> Rec {
    Rec {
        seq,
        ts,
        node: node.into(),
        account: account.into(),
        status: if seq.is_multiple_of(2) { 403 } else { 200 },
        code: seq.is_multiple_of(2).then(|| "FORBIDDEN".into()),
    }
}

#[test]
fn records_of_every_node_are_stored_once_and_queried_in_time_order() {
    let Some(url) = mongo_url() else { return };
    let mut cfg = MongoConfig::new(&url);
    cfg.db = unique_db("audit");
    let guard = DropDb(connect_cfg(cfg.clone()));
    let audit = std::thread::spawn(move || MongoAudit::connect(cfg))
        .join()
        .unwrap()
        .expect("connect");
    // Two nodes, interleaved in time; ts near 2026 in ns (beyond i32, within i64).
    let base = 1_796_000_000_000_000_000u64;
    let n1: Vec<Rec> = (1..=4)
        .map(|s| rec("n1", s, base + s * 10, if s <= 2 { "a" } else { "b" }))
        .collect();
    let n2: Vec<Rec> = (1..=3)
        .map(|s| rec("n2", s, base + s * 10 + 5, "a"))
        .collect();
    audit.insert(&n1).expect("insert n1");
    audit.insert(&n2).expect("insert n2");
    // A retried copy (the sink's retry after a timeout) is not doubled, and the new record in
    // the same batch is stored.
    let mut again = n1[2..].to_vec();
    again.push(rec("n1", 5, base + 50, "a"));
    audit.insert(&again).expect("insert again");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all: Vec<Rec> = rt.block_on(audit.query(None, 0, 100)).expect("query all");
    let keys: Vec<(String, u64)> = all.iter().map(|r| (r.node.clone(), r.seq)).collect();
    let want: Vec<(String, u64)> = [
        ("n1", 1),
        ("n2", 1),
        ("n1", 2),
        ("n2", 2),
        ("n1", 3),
        ("n2", 3),
        ("n1", 4),
        ("n1", 5),
    ]
    .iter()
    .map(|(n, s)| ((*n).to_owned(), *s))
    .collect();
    assert_eq!(keys, want, "every record once, oldest first");
    assert_eq!(all[1], n2[0], "the record comes back as written");

    let a: Vec<Rec> = rt
        .block_on(audit.query(Some("a".into()), base + 15, 100))
        .expect("query a");
    assert_eq!(
        a.iter()
            .map(|r| (r.node.as_str(), r.seq))
            .collect::<Vec<_>>(),
        [("n2", 1), ("n1", 2), ("n2", 2), ("n2", 3), ("n1", 5)],
        "account a from base+15"
    );
    let two: Vec<Rec> = rt.block_on(audit.query(None, 0, 2)).expect("limit");
    assert_eq!(two.len(), 2);
    drop(guard);
}
