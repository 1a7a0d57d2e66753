//! A rough timing of the archive on this machine, not a benchmark: 100 batches of 1,000
//! orders, then single-order gets and first list pages. Ignored by default (it writes
//! ~45 MB); run with `cargo test -p oms-archive -- --ignored --nocapture timing`.

use std::time::{Duration, Instant};

use crate::common::{account, fresh, order};

use oms_core::{OrderId, OrderStatus};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "timing run, prints figures"]
fn timing_put_batches_and_gets() {
    const BATCHES: u64 = 100;
    const PER_BATCH: u64 = 1_000;
    let (dir, archive) = fresh();
    let accounts: Vec<String> = (0..100).map(|i| format!("acct-{i}")).collect();
    let mut puts = Vec::new();
    let started = Instant::now();
    for b in 0..BATCHES {
        let batch: Vec<_> = (0..PER_BATCH)
            .map(|i| {
                let id = b * PER_BATCH + i + 1;
                let cid = format!("cid-{id}");
                order(
                    &accounts[(id % 100) as usize],
                    u128::from(id) << 64 | 0x8000,
                    1_700_000_000_000_000_000 + id * 1_000,
                    (id % 7) as u16,
                    OrderStatus::Filled,
                    Some(&cid),
                )
            })
            .collect();
        let t = Instant::now();
        archive.put_batch(&batch).unwrap();
        puts.push(t.elapsed());
    }
    let total = started.elapsed();
    let n = BATCHES * PER_BATCH;
    assert_eq!(archive.len().unwrap(), n);
    puts.sort();

    let mut gets = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = x % n + 1;
        let acct = account(&accounts[(id % 100) as usize]);
        let t = Instant::now();
        let got = archive
            .get(&acct, OrderId(u128::from(id) << 64 | 0x8000))
            .unwrap();
        gets.push(t.elapsed());
        assert!(got.is_some());
    }
    gets.sort();

    let mut lists = Vec::new();
    for a in &accounts {
        let acct = account(a);
        let t = Instant::now();
        let page = archive.list(&acct, None, None, None, 50).unwrap();
        lists.push(t.elapsed());
        assert_eq!(page.len(), 50);
    }
    lists.sort();

    println!(
        "put_batch x{BATCHES} of {PER_BATCH}: total {total:?} ({:.0} orders/s), per batch p50 {:?} p99 {:?} max {:?}",
        n as f64 / total.as_secs_f64(),
        percentile(&puts, 0.5),
        percentile(&puts, 0.99),
        puts[puts.len() - 1],
    );
    println!(
        "get x10000 of {n}: p50 {:?} p99 {:?} max {:?}",
        percentile(&gets, 0.5),
        percentile(&gets, 0.99),
        gets[gets.len() - 1],
    );
    let file = std::fs::metadata(dir.path().join("archive.redb"))
        .unwrap()
        .len();
    println!(
        "file size after {n} orders: {:.1} MiB",
        file as f64 / 1048576.0
    );
    println!(
        "list first page of 50 x100 accounts: p50 {:?} p99 {:?}",
        percentile(&lists, 0.5),
        percentile(&lists, 0.99),
    );
}
