//! Throughput of bulk order upserts and execution inserts against the real server. Ignored by
//! default (a measurement, not a check):
//! `cargo test -p oms-mongo --test perf -- --ignored --nocapture`

use crate::common;

use std::time::Instant;

use oms_core::ports::OrderStore;

use common::*;

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn bulk_upserts_and_inserts_per_second() {
    let Some(url) = mongo_url() else { return };
    let mut s = DropDb(connect(&url, "perf"));
    let n = 5_000u64;
    let v1: Vec<_> = (0..n)
        .map(|i| order("acct-perf", i, 1_000 + i, 1))
        .collect();
    let v2: Vec<_> = (0..n)
        .map(|i| order("acct-perf", i, 1_000 + i, 2))
        .collect();
    let execs: Vec<_> = v1.iter().zip(1..).map(|(o, i)| execution(i, o)).collect();

    let t = Instant::now();
    for c in v1.chunks(1000) {
        s.0.upsert_orders(c).unwrap();
    }
    let insert_new = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for c in v2.chunks(1000) {
        s.0.upsert_orders(c).unwrap();
    }
    let update = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for c in v1.chunks(1000) {
        s.0.upsert_orders(c).unwrap();
    }
    let stale = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for c in execs.chunks(1000) {
        s.0.insert_executions(c).unwrap();
    }
    let ins = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{n} orders, chunks of 1000: upsert-new {insert_new:.0}/s, upsert-newer {update:.0}/s, \
         stale replay {stale:.0}/s; executions insert {ins:.0}/s"
    );
}
